//! TUN device syscalls: open /dev/net/tun, TUNSETIFF, MTU ioctls, readv/writev.

use super::errno;
use crate::error::{Error, ErrorKind, Result};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// `struct ifreq` as the TUN and SIOC*IF* ioctls use it: a name and, for
/// our calls, either the flags (short) or the MTU (int) in the union.
#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    value: [u8; 24],
}

impl IfReq {
    fn named(name: &str) -> Result<Self> {
        if name.len() >= libc::IFNAMSIZ || name.as_bytes().contains(&0) {
            return Err(Error::invalid(format!("interface name {name:?} must be 1..{} bytes without NUL", libc::IFNAMSIZ - 1)));
        }
        let mut req = IfReq { name: [0; libc::IFNAMSIZ], value: [0; 24] };
        req.name[..name.len()].copy_from_slice(name.as_bytes());
        Ok(req)
    }

    fn name(&self) -> String {
        let end = self.name.iter().position(|&b| b == 0).unwrap_or(self.name.len());
        String::from_utf8_lossy(&self.name[..end]).into_owned()
    }

    fn set_short(&mut self, v: i16) {
        self.value[..2].copy_from_slice(&v.to_ne_bytes());
    }

    fn short(&self) -> i16 {
        i16::from_ne_bytes([self.value[0], self.value[1]])
    }

    fn set_int(&mut self, v: i32) {
        self.value[..4].copy_from_slice(&v.to_ne_bytes());
    }

    fn int(&self) -> i32 {
        i32::from_ne_bytes(self.value[..4].try_into().unwrap())
    }
}

fn ioctl(fd: RawFd, request: libc::c_ulong, req: &mut IfReq, what: &str) -> Result<()> {
    // SAFETY: `req` is a live, correctly sized ifreq for these requests.
    if unsafe { libc::ioctl(fd, request as _, req as *mut IfReq) } < 0 {
        return Err(Error::os(what, errno()));
    }
    Ok(())
}

/// Opens a TUN device; `name` may be a pattern like "mr%d" (or empty).
/// Returns the fd (non-blocking) and the name the kernel chose.
pub fn open_tun(name: &str, packet_info: bool, multi_queue: bool, vnet_hdr: bool) -> Result<(OwnedFd, String, bool)> {
    let mut req = IfReq::named(name)?;
    let mut flags = libc::IFF_TUN;
    if vnet_hdr {
        flags |= libc::IFF_VNET_HDR;
    }
    if !packet_info {
        flags |= libc::IFF_NO_PI;
    }
    if multi_queue {
        flags |= libc::IFF_MULTI_QUEUE;
    }
    req.set_short(flags as i16);
    // SAFETY: a constant NUL-terminated path; a non-negative result is a new fd.
    let raw = unsafe { libc::open(c"/dev/net/tun".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC | libc::O_NONBLOCK) };
    if raw < 0 {
        let e = errno();
        let kind = if e == libc::ENOENT || e == libc::ENODEV { ErrorKind::Unsupported } else { ErrorKind::Io };
        return Err(Error::os("open /dev/net/tun", e).with_kind(kind));
    }
    // SAFETY: `raw` is a fresh fd owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    ioctl(fd.as_raw_fd(), libc::TUNSETIFF as libc::c_ulong, &mut req, &format!("TUNSETIFF {name:?}")).map_err(|e| {
        if e.os_error == libc::EINVAL || e.os_error == libc::EBUSY {
            e.with_kind(ErrorKind::InvalidArgument)
        } else {
            e
        }
    })?;
    let uso = if vnet_hdr { enable_offloads(fd.as_raw_fd())? } else { false };
    Ok((fd, req.name(), uso))
}

/// Sets the 10-byte virtio-net header and asks for checksum, TSO and (where
/// the kernel has it, 6.2+) USO offloads. Returns whether USO was accepted.
pub fn enable_offloads(fd: RawFd) -> Result<bool> {
    let hdr_len: libc::c_int = 10;
    // SAFETY: TUNSETVNETHDRSZ reads one int through the pointer.
    if unsafe { libc::ioctl(fd, libc::TUNSETVNETHDRSZ as _, &hdr_len as *const libc::c_int) } < 0 {
        return Err(Error::os("TUNSETVNETHDRSZ", errno()).with_kind(ErrorKind::Unsupported));
    }
    const CSUM: libc::c_ulong = 0x01;
    const TSO4: libc::c_ulong = 0x02;
    const TSO6: libc::c_ulong = 0x04;
    const USO4: libc::c_ulong = 0x20;
    const USO6: libc::c_ulong = 0x40;
    for (offloads, uso) in [(CSUM | TSO4 | TSO6 | USO4 | USO6, true), (CSUM | TSO4 | TSO6, false)] {
        // SAFETY: TUNSETOFFLOAD takes the flags by value.
        if unsafe { libc::ioctl(fd, libc::TUNSETOFFLOAD as _, offloads) } == 0 {
            return Ok(uso);
        }
    }
    Err(Error::os("TUNSETOFFLOAD", errno()).with_kind(ErrorKind::Unsupported))
}

/// The interface name and flags of a TUN fd (TUNGETIFF).
pub fn tun_info(fd: RawFd) -> Result<(String, i32)> {
    let mut req = IfReq { name: [0; libc::IFNAMSIZ], value: [0; 24] };
    ioctl(fd, libc::TUNGETIFF as libc::c_ulong, &mut req, "TUNGETIFF (is the fd a TUN device?)").map_err(|e| e.with_kind(ErrorKind::InvalidArgument))?;
    Ok((req.name(), req.short() as u16 as i32))
}

/// A socket for interface ioctls, in the calling thread's network namespace:
/// made when a device is opened so later MTU calls reach that device even
/// from threads in another namespace.
pub fn control_socket() -> Result<OwnedFd> {
    // SAFETY: socket takes no pointers.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(Error::os("socket", errno()));
    }
    // SAFETY: fresh fd.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

pub fn interface_mtu(sock: &OwnedFd, name: &str) -> Result<u32> {
    let mut req = IfReq::named(name)?;
    ioctl(sock.as_raw_fd(), libc::SIOCGIFMTU, &mut req, &format!("SIOCGIFMTU {name}"))?;
    Ok(req.int() as u32)
}

pub fn set_interface_mtu(sock: &OwnedFd, name: &str, mtu: u32) -> Result<()> {
    let mut req = IfReq::named(name)?;
    req.set_int(mtu as i32);
    ioctl(sock.as_raw_fd(), libc::SIOCSIFMTU, &mut req, &format!("SIOCSIFMTU {name} {mtu}")).map_err(|e| {
        if e.os_error == libc::EINVAL {
            e.with_kind(ErrorKind::InvalidArgument)
        } else {
            e
        }
    })
}

pub fn set_nonblocking(fd: RawFd) -> Result<()> {
    // SAFETY: fcntl with integer arguments only.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    // SAFETY: as above.
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(Error::os("fcntl(O_NONBLOCK)", errno()));
    }
    Ok(())
}

/// Reads one packet into `head` then `body` (readv); Err(errno) on failure.
pub fn read_packet(fd: RawFd, head: &mut [u8], body: &mut [u8]) -> std::result::Result<usize, i32> {
    let iov = [
        libc::iovec { iov_base: head.as_mut_ptr().cast(), iov_len: head.len() },
        libc::iovec { iov_base: body.as_mut_ptr().cast(), iov_len: body.len() },
    ];
    let (ptr, count) = if head.is_empty() { (iov[1..].as_ptr(), 1) } else { (iov.as_ptr(), 2) };
    // SAFETY: the iovecs point at live, writable slices for the call's duration.
    let n = unsafe { libc::readv(fd, ptr, count) };
    if n < 0 {
        return Err(errno());
    }
    Ok(n as usize)
}

/// Writes one packet from `head` then `body` (writev).
pub fn write_packet(fd: RawFd, head: &[u8], body: &[u8]) -> std::result::Result<usize, i32> {
    let iov = [
        libc::iovec { iov_base: head.as_ptr() as *mut _, iov_len: head.len() },
        libc::iovec { iov_base: body.as_ptr() as *mut _, iov_len: body.len() },
    ];
    let (ptr, count) = if head.is_empty() { (iov[1..].as_ptr(), 1) } else { (iov.as_ptr(), 2) };
    // SAFETY: the iovecs point at live slices; writev only reads them.
    let n = unsafe { libc::writev(fd, ptr, count) };
    if n < 0 {
        return Err(errno());
    }
    Ok(n as usize)
}

/// Writes one packet gathered from `parts` (writev; at most IOV_MAX parts).
pub fn write_parts(fd: RawFd, parts: &[std::io::IoSlice<'_>]) -> std::result::Result<usize, i32> {
    // SAFETY: IoSlice is ABI-compatible with struct iovec; the slices are
    // live for the call and writev only reads them.
    let n = unsafe { libc::writev(fd, parts.as_ptr().cast(), parts.len() as libc::c_int) };
    if n < 0 {
        return Err(errno());
    }
    Ok(n as usize)
}

/// Moves the calling thread into a new, empty network namespace (needs
/// CAP_SYS_ADMIN). Used by tests so their devices and addresses exist only
/// there and vanish with the thread.
pub fn enter_new_netns() -> Result<()> {
    // SAFETY: unshare takes only flags and affects the calling thread.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } < 0 {
        return Err(Error::os("unshare(CLONE_NEWNET)", errno()));
    }
    Ok(())
}
