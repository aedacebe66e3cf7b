//! UDP socket creation and options.

use super::{errno, RawSockAddr};
use crate::error::{Error, ErrorKind, Result};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

pub fn setsockopt_int(fd: RawFd, level: i32, name: i32, value: i32, what: &str) -> Result<()> {
    // SAFETY: passes a pointer to a live i32 and its exact size.
    let rc = unsafe {
        libc::setsockopt(fd, level, name, (&value as *const i32).cast(), std::mem::size_of::<i32>() as libc::socklen_t)
    };
    if rc < 0 {
        return Err(Error::os(what, errno()));
    }
    Ok(())
}

pub fn getsockopt_int(fd: RawFd, level: i32, name: i32, what: &str) -> Result<i32> {
    let mut value: i32 = 0;
    let mut len = std::mem::size_of::<i32>() as libc::socklen_t;
    // SAFETY: value/len are live and sized for an int option.
    let rc = unsafe { libc::getsockopt(fd, level, name, (&mut value as *mut i32).cast(), &mut len) };
    if rc < 0 {
        return Err(Error::os(what, errno()));
    }
    Ok(value)
}

/// Creates a UDP socket bound to `addr`. It stays in blocking mode: io_uring
/// answers -EAGAIN instead of polling on O_NONBLOCK files, and the batch
/// backend passes MSG_DONTWAIT per call.
pub fn bind_udp(addr: &SocketAddr, v6only: bool, reuse_port: bool) -> Result<OwnedFd> {
    let domain = if addr.is_ipv4() { libc::AF_INET } else { libc::AF_INET6 };
    // SAFETY: socket takes no pointers; a non-negative result is a new fd.
    let raw = unsafe { libc::socket(domain, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(Error::os("socket", errno()));
    }
    // SAFETY: `raw` is a fresh fd owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    if domain == libc::AF_INET6 {
        setsockopt_int(raw, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, v6only as i32, "setsockopt(IPV6_V6ONLY)")?;
    }
    if reuse_port {
        setsockopt_int(raw, libc::SOL_SOCKET, libc::SO_REUSEPORT, 1, "setsockopt(SO_REUSEPORT)")?;
    }
    let (sa, len) = RawSockAddr::encode(addr, domain == libc::AF_INET6);
    // SAFETY: `sa` is a valid sockaddr of `len` bytes.
    if unsafe { libc::bind(raw, (&sa as *const RawSockAddr).cast(), len) } < 0 {
        let e = errno();
        return Err(Error::os(&format!("bind {addr}"), e));
    }
    Ok(fd)
}

/// Checks that `fd` is a UDP socket and returns its domain (AF_INET/AF_INET6).
pub fn check_udp_fd(fd: RawFd) -> Result<i32> {
    let ty = getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_TYPE, "fd is not a socket (SO_TYPE)")
        .map_err(|e| e.with_kind(ErrorKind::InvalidArgument))?;
    if ty != libc::SOCK_DGRAM {
        return Err(Error::invalid(format!("fd {fd} is not a datagram socket (SO_TYPE={ty})")));
    }
    let domain = getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_DOMAIN, "getsockopt(SO_DOMAIN)")?;
    if domain != libc::AF_INET && domain != libc::AF_INET6 {
        return Err(Error::invalid(format!("fd {fd} is not an IPv4/IPv6 socket (domain {domain})")));
    }
    Ok(domain)
}

/// Clears O_NONBLOCK (see `bind_udp` for why the engines want blocking fds).
pub fn set_blocking(fd: RawFd) -> Result<()> {
    // SAFETY: fcntl with integer arguments only.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    // SAFETY: as above.
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) } < 0 {
        return Err(Error::os("fcntl(F_SETFL)", errno()));
    }
    Ok(())
}

pub fn local_addr(fd: RawFd) -> Result<SocketAddr> {
    let mut sa = RawSockAddr::zeroed();
    let mut len = RawSockAddr::CAPACITY;
    // SAFETY: `sa` has room for `len` bytes; the kernel writes at most that.
    if unsafe { libc::getsockname(fd, (&mut sa as *mut RawSockAddr).cast(), &mut len) } < 0 {
        return Err(Error::os("getsockname", errno()));
    }
    sa.decode(len).ok_or_else(|| Error::invalid("socket has no IP address"))
}

/// Wakes anything polling the socket (it reads as hung up) without closing the fd.
pub fn shutdown(fd: &OwnedFd) {
    // SAFETY: integer arguments only; ENOTCONN on unconnected UDP is expected.
    unsafe { libc::shutdown(fd.as_raw_fd(), libc::SHUT_RDWR) };
}

/// Takes ownership of a caller's fd number (already checked to be a socket).
pub fn adopt_fd(fd: RawFd) -> OwnedFd {
    // SAFETY: the caller hands this fd over; nothing else in the process will
    // close it while the returned OwnedFd lives (the C contract of *_from_fd).
    unsafe { OwnedFd::from_raw_fd(fd) }
}
