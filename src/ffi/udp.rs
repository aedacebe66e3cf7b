//! `mr_udp`: a UDP socket on io_uring (or the recvmmsg/sendmmsg fallback).

use super::addr::mr_addr;
use super::error::{mr_status, value_or};
use super::ffi::{check_options, free_handle, into_handle, try_batch, try_batch_mut, try_in, try_out, try_ref, try_slice, try_str, Castable};
use crate::error::{Error, Result};
use crate::sync::Wait;
use crate::udp::{Backend, BackendChoice, LocalInfo, Payload, RecvSlot, SendSlot, UdpConfig, UdpSocket};
use std::io::IoSlice;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::raw::{c_char, c_int};

/// A UDP socket handle. Thread-safe: one thread may send while another
/// receives, without contending.
pub struct mr_udp {
    _opaque: [u8; 0],
}

impl Castable for mr_udp {
    type Rust = UdpSocket;
    const NAME: &'static str = "mr_udp";
}

/// The I/O mechanism behind a handle.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(non_camel_case_types)]
pub enum mr_backend {
    /// In a config: io_uring where it works, else batch (or `MESHRING_BACKEND`).
    MR_BACKEND_AUTO = 0,
    /// io_uring: linked SENDMSG chains; receive waits on the ring and reads with
    /// recvmmsg into the caller's buffers (or multishot RECVMSG, see
    /// MR_UDP_MULTISHOT_RECV).
    MR_BACKEND_URING = 1,
    /// recvmmsg/sendmmsg with poll.
    MR_BACKEND_BATCH = 2,
}

/// `mr_udp_config.flags`: send with UDP GSO (`mr_datagram.segment_size`).
pub const MR_UDP_GSO: u32 = 1;
/// `mr_udp_config.flags`: receive coalesced datagrams (UDP GRO); receive
/// buffers must then hold 65535 bytes.
pub const MR_UDP_GRO: u32 = 2;
/// `mr_udp_config.flags`: an IPv6 socket that refuses IPv4 peers.
pub const MR_UDP_V6ONLY: u32 = 4;
/// `mr_udp_config.flags`: SO_REUSEPORT.
pub const MR_UDP_REUSEPORT: u32 = 8;
/// `mr_udp_config.flags`: on io_uring, receive with a multishot RECVMSG on
/// a provided-buffer ring (the kernel fills ring buffers ahead of the caller;
/// each datagram is then copied into the caller's buffer) instead of the
/// default io_uring readiness + recvmmsg straight into the caller's buffers.
pub const MR_UDP_MULTISHOT_RECV: u32 = 16;
/// `mr_udp_config.flags`: IP_PKTINFO (IPv4 socket) / IPV6_RECVPKTINFO (IPv6
/// socket): `mr_udp_recvmsg` reports in `mr_msg.local`/`ifindex` the local
/// address each datagram was sent to and the interface it arrived on, so a
/// reply can leave from the address the peer used (`mr_udp_sendmsg` with
/// `local` set; sending from a chosen source works without this flag too).
pub const MR_UDP_PKTINFO: u32 = 32;
const KNOWN_FLAGS: u32 = MR_UDP_GSO | MR_UDP_GRO | MR_UDP_V6ONLY | MR_UDP_REUSEPORT | MR_UDP_MULTISHOT_RECV | MR_UDP_PKTINFO;

/// The socket buffer size wireguard-go asks for (7 MiB) in `so_rcvbuf` /
/// `so_sndbuf`: as root the library sets it with SO_RCVBUFFORCE /
/// SO_SNDBUFFORCE (past net.core.[rw]mem_max), as wireguard-go does;
/// otherwise the kernel caps it at the sysctl.
pub const MR_UDP_WIREGUARD_BUFFER: i32 = 7 << 20;

/// Most buffers one `mr_msg` may gather (`iovcnt`; the kernel's UIO_MAXIOV).
pub const MR_UDP_MAX_IOV: usize = 1024;

/// Options for `mr_udp_bind` / `mr_udp_from_fd`. Always fill it with
/// `mr_udp_config_init` first, then change fields.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct mr_udp_config {
    /// sizeof(mr_udp_config), set by mr_udp_config_init (lets the struct grow).
    pub struct_size: u32,
    /// An `mr_backend` value; MR_BACKEND_AUTO by default.
    pub backend: u32,
    /// MR_UDP_* bits.
    pub flags: u32,
    /// io_uring receive buffers the kernel can fill ahead of the caller
    /// (1024; at most 64 with MR_UDP_GRO, whose buffers are 64 KiB each).
    pub recv_buffers: u32,
    /// Largest datagram received whole, up to 65535; larger ones are dropped
    /// and counted in `rx_oversize`. 0 = 2048, or 65535 with MR_UDP_GRO.
    pub max_datagram: u32,
    /// Datagrams per submit / per sendmmsg (128).
    pub batch: u32,
    /// Socket buffer sizes in bytes (SO_RCVBUFFORCE / SO_SNDBUFFORCE when
    /// privileged, else SO_RCVBUF / SO_SNDBUF, capped by the kernel); 0
    /// leaves the system default.
    pub so_rcvbuf: i32,
    pub so_sndbuf: i32,
}

/// One datagram for `mr_udp_recv` / `mr_udp_send`. The caller owns `buf`.
/// Receive: `buf`/`cap` are the space to fill; the library sets `len`,
/// `addr` (the source) and `segment_size` (GRO: size of each coalesced
/// segment, else 0). Send: the first `len` bytes of `buf` go to `addr`;
/// `segment_size` > 0 asks GSO to split them into segments of that size.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct mr_datagram {
    pub buf: *mut u8,
    pub cap: usize,
    pub len: usize,
    pub addr: mr_addr,
    pub segment_size: u16,
}

/// Counters of one handle since it was opened, filled by `mr_udp_stats`
/// (the struct has its own name because C cannot share one between a type
/// and a function).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct mr_udp_counters {
    pub rx_datagrams: u64,
    pub rx_bytes: u64,
    /// mr_udp_recv calls that returned datagrams.
    pub rx_calls: u64,
    /// Datagrams dropped because they exceeded max_datagram.
    pub rx_oversize: u64,
    /// Times the multishot receive was (re)armed (io_uring).
    pub rx_rearms: u64,
    pub tx_datagrams: u64,
    pub tx_bytes: u64,
    pub tx_calls: u64,
    pub tx_errors: u64,
}

/// The backend a config's `backend` field asks for.
pub(crate) fn backend_choice(value: u32) -> Result<BackendChoice> {
    match value {
        0 => Ok(BackendChoice::Auto),
        1 => Ok(BackendChoice::Uring),
        2 => Ok(BackendChoice::Batch),
        other => Err(Error::invalid(format!("cfg.backend {other} is not an mr_backend"))),
    }
}

impl From<Backend> for mr_backend {
    fn from(backend: Backend) -> Self {
        match backend {
            Backend::Uring => mr_backend::MR_BACKEND_URING,
            Backend::Batch => mr_backend::MR_BACKEND_BATCH,
        }
    }
}

fn default_config() -> mr_udp_config {
    let d = UdpConfig::default();
    mr_udp_config {
        struct_size: std::mem::size_of::<mr_udp_config>() as u32,
        backend: mr_backend::MR_BACKEND_AUTO as u32,
        flags: 0,
        recv_buffers: d.recv_buffers as u32,
        max_datagram: d.max_datagram as u32,
        batch: d.batch as u32,
        so_rcvbuf: 0,
        so_sndbuf: 0,
    }
}

fn to_config(cfg: *const mr_udp_config) -> Result<UdpConfig> {
    if cfg.is_null() {
        return Ok(UdpConfig::default());
    }
    let c = try_in(cfg, "cfg")?;
    check_options("mr_udp_config", c.struct_size, std::mem::size_of::<mr_udp_config>(), c.flags, KNOWN_FLAGS)?;
    let backend = backend_choice(c.backend)?;
    Ok(UdpConfig {
        backend,
        gso: c.flags & MR_UDP_GSO != 0,
        gro: c.flags & MR_UDP_GRO != 0,
        v6only: c.flags & MR_UDP_V6ONLY != 0,
        reuse_port: c.flags & MR_UDP_REUSEPORT != 0,
        pktinfo: c.flags & MR_UDP_PKTINFO != 0,
        recv_buffers: u16::try_from(c.recv_buffers).map_err(|_| Error::invalid(format!("cfg.recv_buffers {} exceeds 32768", c.recv_buffers)))?,
        max_datagram: c.max_datagram as usize,
        batch: c.batch as usize,
        so_rcvbuf: c.so_rcvbuf,
        so_sndbuf: c.so_sndbuf,
        multishot_recv: c.flags & MR_UDP_MULTISHOT_RECV != 0,
        force_single_shot: false,
    })
}

/// Fills `*cfg` with the defaults. Call before changing any field.
#[no_mangle]
pub extern "C" fn mr_udp_config_init(cfg: *mut mr_udp_config) -> mr_status {
    ffi_status!("mr_udp_config_init", {
        *try_out(cfg, "cfg")? = default_config();
        Ok(())
    })
}

fn publish(out: &mut *mut mr_udp, socket: UdpSocket) {
    *out = into_handle::<mr_udp>(socket);
}

/// Opens a UDP socket bound to `addr` ("0.0.0.0:0", "[::]:51820", ...).
/// `cfg` may be NULL for defaults. On success `*out` owns a new handle the
/// caller releases with `mr_udp_free`; on failure `*out` is NULL.
/// An "[::]" socket is dual-stack unless MR_UDP_V6ONLY: IPv4 peers then
/// appear with family 4.
#[no_mangle]
pub extern "C" fn mr_udp_bind(addr: *const c_char, cfg: *const mr_udp_config, out: *mut *mut mr_udp) -> mr_status {
    ffi_status!("mr_udp_bind", {
        let out = try_out(out, "out")?;
        *out = std::ptr::null_mut();
        let addr = crate::addr::parse(try_str(addr, "addr")?)?;
        let cfg = to_config(cfg)?;
        publish(out, UdpSocket::bind(&addr, &cfg)?);
        Ok(())
    })
}

/// Wraps an existing UDP socket `fd` (IPv4 or IPv6, bound or not yet used).
/// On success the handle owns `fd` (it is closed by `mr_udp_free`; it is put
/// in blocking mode); on failure the caller still owns it.
#[no_mangle]
pub extern "C" fn mr_udp_from_fd(fd: c_int, cfg: *const mr_udp_config, out: *mut *mut mr_udp) -> mr_status {
    ffi_status!("mr_udp_from_fd", {
        let out = try_out(out, "out")?;
        *out = std::ptr::null_mut();
        let cfg = to_config(cfg)?;
        publish(out, UdpSocket::from_fd(fd, &cfg)?);
        Ok(())
    })
}

/// A receive slot checked by `mr_udp_recv` (non-NULL buffer, cap > 0).
#[repr(transparent)]
struct CheckedRecv(mr_datagram);

impl RecvSlot for CheckedRecv {
    fn buffer(&mut self) -> &mut [u8] {
        // SAFETY: `mr_udp_recv` checked buf != NULL and cap > 0; the caller
        // promises `cap` writable bytes that nothing else uses during the call.
        unsafe { std::slice::from_raw_parts_mut(self.0.buf, self.0.cap) }
    }
    fn fill(&mut self, len: usize, addr: Option<SocketAddr>, segment_size: u16) {
        self.0.len = len;
        self.0.addr = addr.map(mr_addr::from).unwrap_or_default();
        self.0.segment_size = segment_size;
    }
}

/// A send slot checked by `mr_udp_send` (buf != NULL when len > 0).
#[repr(transparent)]
struct CheckedSend(mr_datagram);

impl SendSlot for CheckedSend {
    fn payload(&self) -> Payload<'_> {
        if self.0.len == 0 {
            return Payload::One(&[]);
        }
        // SAFETY: `mr_udp_send` checked buf != NULL for len > 0; the caller
        // promises `len` readable bytes for the duration of the call.
        Payload::One(unsafe { std::slice::from_raw_parts(self.0.buf, self.0.len) })
    }
    fn addr(&self) -> Option<SocketAddr> {
        self.0.addr.to_socket_addr()
    }
    fn segment_size(&self) -> u16 {
        self.0.segment_size
    }
}

/// Receives up to `n` datagrams into `msgs[0..n]`, setting `*received`.
/// Returns MR_OK with at least one datagram, or: MR_WOULD_BLOCK
/// (timeout_ms == 0, nothing ready), MR_TIMEOUT, MR_CLOSED (also when
/// `mr_udp_close` runs while this call waits), MR_BUFFER_TOO_SMALL (the next
/// datagram is larger than its slot's `cap`; it is kept for the next call),
/// MR_IO. Blocks per `timeout_ms`: < 0 forever, 0 never, > 0 at most that long.
#[no_mangle]
pub extern "C" fn mr_udp_recv(u: *mut mr_udp, msgs: *mut mr_datagram, n: usize, timeout_ms: i32, received: *mut usize) -> mr_status {
    ffi_status!("mr_udp_recv", {
        let received = try_out(received, "received")?;
        *received = 0;
        let u = try_ref(u)?;
        let msgs = try_batch_mut(msgs, n, "msgs")?;
        for (i, m) in msgs.iter().enumerate() {
            if m.buf.is_null() || m.cap == 0 {
                return Err(Error::invalid(format!("msgs[{i}] has no buffer (buf NULL or cap 0)")));
            }
        }
        // SAFETY: CheckedRecv is a transparent wrapper of mr_datagram and every
        // element was just checked.
        let slots = unsafe { &mut *(msgs as *mut [mr_datagram] as *mut [CheckedRecv]) };
        *received = u.recv(slots, Wait::from_ms(timeout_ms))?;
        Ok(())
    })
}

/// Sends `msgs[0..n]` in order, each `len` bytes of `buf` to `addr`. Sets
/// `*sent` to how many went (always a prefix of `msgs`). MR_OK means all
/// `n`; otherwise the status says why it stopped: MR_WOULD_BLOCK
/// (timeout_ms == 0 and the socket buffer is full), MR_TIMEOUT, MR_CLOSED,
/// MR_IO, or MR_INVALID_ARGUMENT (nothing sent) for a bad datagram.
/// The library does not keep `msgs` or the buffers after returning.
#[no_mangle]
pub extern "C" fn mr_udp_send(u: *mut mr_udp, msgs: *const mr_datagram, n: usize, timeout_ms: i32, sent: *mut usize) -> mr_status {
    ffi_status!("mr_udp_send", {
        let sent = try_out(sent, "sent")?;
        *sent = 0;
        let u = try_ref(u)?;
        let msgs = try_batch(msgs, n, "msgs")?;
        for (i, m) in msgs.iter().enumerate() {
            if m.buf.is_null() && m.len > 0 {
                return Err(Error::invalid(format!("msgs[{i}].buf is NULL with len {}", m.len)));
            }
        }
        // SAFETY: CheckedSend is a transparent wrapper of mr_datagram; checked above.
        let slots = unsafe { &*(msgs as *const [mr_datagram] as *const [CheckedSend]) };
        let (count, error) = u.send(slots, Wait::from_ms(timeout_ms));
        *sent = count;
        error.map_or(Ok(()), Err)
    })
}

/// One buffer of a gathered datagram (`mr_msg.iov`): `len` bytes at
/// `base`, owned by the caller. Same layout as `struct iovec`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct mr_iovec {
    pub base: *const u8,
    pub len: usize,
}

/// One datagram for `mr_udp_recvmsg` / `mr_udp_sendmsg`: `mr_datagram`
/// plus a gather list and the local address. The caller owns every buffer
/// it points to; the library uses them only during the call.
///
/// Receive: `buf`/`cap` are the space to fill (`iov` must be NULL); the
/// library sets `len`, `addr` (the source), `segment_size` (GRO: size of
/// each coalesced segment, else 0) and, with MR_UDP_PKTINFO, `local` (the
/// address the datagram was sent to: family 4 or 6, port 0; family 0 when
/// the kernel gave none) and `ifindex` (the interface it arrived on).
///
/// Send: the payload is `iov[0..iovcnt]` gathered in order when `iov` is
/// not NULL (`buf`/`len` are then ignored; up to MR_UDP_MAX_IOV buffers,
/// 65535 bytes in all), else the first `len` bytes of `buf`. It goes to
/// `addr`; `segment_size` > 0 asks GSO to cut it into datagrams of that
/// size (the last may be shorter), so several of a caller's packet buffers
/// leave as one GSO batch without being copied together. `local` with
/// family 4 or 6 sends from that address (IP_PKTINFO / IPV6_PKTINFO; an
/// IPv4 source on an IPv6 socket is sent v4-mapped), leaving through
/// `ifindex` if not 0; family 0 lets the kernel choose.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct mr_msg {
    pub buf: *mut u8,
    pub cap: usize,
    pub len: usize,
    pub iov: *const mr_iovec,
    pub iovcnt: usize,
    pub addr: mr_addr,
    pub local: mr_addr,
    pub ifindex: u32,
    pub segment_size: u16,
    /// Must be 0.
    pub reserved: u16,
}

fn local_to_c(local: Option<LocalInfo>) -> (mr_addr, u32) {
    match local {
        None => (mr_addr::default(), 0),
        Some(l) => (SocketAddr::new(l.ip, 0).into(), l.ifindex),
    }
}

fn local_from_c(a: &mr_addr, ifindex: u32) -> Result<Option<LocalInfo>> {
    let ip = match a.family {
        0 => return Ok(None),
        4 => IpAddr::V4(Ipv4Addr::new(a.ip[0], a.ip[1], a.ip[2], a.ip[3])),
        6 => IpAddr::V6(Ipv6Addr::from(a.ip)),
        f => return Err(Error::invalid(format!("local address family {f} is not 0, 4 or 6"))),
    };
    Ok(Some(LocalInfo { ip, ifindex }))
}

/// A receive slot checked by `mr_udp_recvmsg`.
#[repr(transparent)]
struct CheckedRecvMsg(mr_msg);

impl RecvSlot for CheckedRecvMsg {
    fn buffer(&mut self) -> &mut [u8] {
        // SAFETY: `mr_udp_recvmsg` checked buf != NULL and cap > 0; the caller
        // promises `cap` writable bytes that nothing else uses during the call.
        unsafe { std::slice::from_raw_parts_mut(self.0.buf, self.0.cap) }
    }
    fn fill(&mut self, len: usize, addr: Option<SocketAddr>, segment_size: u16) {
        self.0.len = len;
        self.0.addr = addr.map(mr_addr::from).unwrap_or_default();
        self.0.segment_size = segment_size;
        self.0.local = mr_addr::default();
        self.0.ifindex = 0;
    }
    fn set_local(&mut self, local: Option<LocalInfo>) {
        (self.0.local, self.0.ifindex) = local_to_c(local);
    }
}

/// A send slot checked by `mr_udp_sendmsg`: its gather list converted, its
/// local address parsed.
struct CheckedSendMsg<'a> {
    msg: &'a mr_msg,
    gather: Option<&'a [IoSlice<'a>]>,
    local: Option<LocalInfo>,
}

impl SendSlot for CheckedSendMsg<'_> {
    fn payload(&self) -> Payload<'_> {
        if let Some(parts) = self.gather {
            return Payload::Gather(parts);
        }
        if self.msg.len == 0 {
            return Payload::One(&[]);
        }
        // SAFETY: `mr_udp_sendmsg` checked buf != NULL for len > 0; the caller
        // promises `len` readable bytes for the duration of the call.
        Payload::One(unsafe { std::slice::from_raw_parts(self.msg.buf, self.msg.len) })
    }
    fn addr(&self) -> Option<SocketAddr> {
        self.msg.addr.to_socket_addr()
    }
    fn segment_size(&self) -> u16 {
        self.msg.segment_size
    }
    fn local(&self) -> Option<LocalInfo> {
        self.local
    }
}

/// `mr_udp_recv` with `mr_msg` slots: also reports the local address each
/// datagram was sent to (with MR_UDP_PKTINFO). Same statuses and blocking
/// rules as `mr_udp_recv`; `msgs[i].iov` must be NULL.
#[no_mangle]
pub extern "C" fn mr_udp_recvmsg(u: *mut mr_udp, msgs: *mut mr_msg, n: usize, timeout_ms: i32, received: *mut usize) -> mr_status {
    ffi_status!("mr_udp_recvmsg", {
        let received = try_out(received, "received")?;
        *received = 0;
        let u = try_ref(u)?;
        let msgs = try_batch_mut(msgs, n, "msgs")?;
        for (i, m) in msgs.iter().enumerate() {
            if m.buf.is_null() || m.cap == 0 {
                return Err(Error::invalid(format!("msgs[{i}] has no buffer (buf NULL or cap 0)")));
            }
            if !m.iov.is_null() {
                return Err(Error::invalid(format!("msgs[{i}].iov is set: receive fills buf/cap only")));
            }
        }
        // SAFETY: CheckedRecvMsg is a transparent wrapper of mr_msg and every
        // element was just checked.
        let slots = unsafe { &mut *(msgs as *mut [mr_msg] as *mut [CheckedRecvMsg]) };
        *received = u.recv(slots, Wait::from_ms(timeout_ms))?;
        Ok(())
    })
}

/// `mr_udp_send` with `mr_msg` datagrams: each may be gathered from several
/// caller buffers (`iov`, no copy; with `segment_size` one GSO batch made of
/// separate packet buffers) and sent from a chosen local address. Sets
/// `*sent` to how many went (a prefix). MR_OK means all `n`; otherwise
/// MR_WOULD_BLOCK, MR_TIMEOUT, MR_CLOSED, MR_IO (errno in
/// `mr_last_os_error`: EIO from a GSO send means the route's device cannot
/// checksum-offload; send without `segment_size`), or MR_INVALID_ARGUMENT
/// (nothing sent) for a bad datagram. Nothing is kept after the call.
#[no_mangle]
pub extern "C" fn mr_udp_sendmsg(u: *mut mr_udp, msgs: *const mr_msg, n: usize, timeout_ms: i32, sent: *mut usize) -> mr_status {
    ffi_status!("mr_udp_sendmsg", {
        let sent = try_out(sent, "sent")?;
        *sent = 0;
        let u = try_ref(u)?;
        let msgs = try_batch(msgs, n, "msgs")?;
        let mut slots = Vec::with_capacity(n);
        for (i, m) in msgs.iter().enumerate() {
            if m.reserved != 0 {
                return Err(Error::invalid(format!("msgs[{i}].reserved is {}, must be 0", m.reserved)));
            }
            let gather = if m.iov.is_null() {
                if m.iovcnt != 0 {
                    return Err(Error::invalid(format!("msgs[{i}].iov is NULL with iovcnt {}", m.iovcnt)));
                }
                if m.buf.is_null() && m.len > 0 {
                    return Err(Error::invalid(format!("msgs[{i}].buf is NULL with len {}", m.len)));
                }
                None
            } else {
                if m.iovcnt == 0 || m.iovcnt > MR_UDP_MAX_IOV {
                    return Err(Error::invalid(format!("msgs[{i}].iovcnt {} is not 1..={MR_UDP_MAX_IOV}", m.iovcnt)));
                }
                let iov = try_slice(m.iov, m.iovcnt, "iov")?;
                if let Some(j) = iov.iter().position(|v| v.base.is_null() && v.len > 0) {
                    return Err(Error::invalid(format!("msgs[{i}].iov[{j}].base is NULL with len {}", iov[j].len)));
                }
                // SAFETY: mr_iovec and IoSlice both have the layout of struct
                // iovec (IoSlice is documented ABI-compatible with it on Unix);
                // every entry was checked and the caller keeps the buffers
                // readable for the call.
                Some(unsafe { &*(iov as *const [mr_iovec] as *const [IoSlice<'_>]) })
            };
            slots.push(CheckedSendMsg { msg: m, gather, local: local_from_c(&m.local, m.ifindex)? });
        }
        let (count, error) = u.send(&slots, Wait::from_ms(timeout_ms));
        *sent = count;
        error.map_or(Ok(()), Err)
    })
}

/// Sets SO_MARK on the socket: the firewall mark (fwmark) of every datagram
/// it sends from now on, 0 to clear (what wireguard-go's `fwmark` does).
/// Needs CAP_NET_ADMIN (MR_IO with errno EPERM otherwise). MR_CLOSED after
/// `mr_udp_close`.
#[no_mangle]
pub extern "C" fn mr_udp_set_mark(u: *mut mr_udp, mark: u32) -> mr_status {
    ffi_status!("mr_udp_set_mark", { try_ref(u)?.set_mark(mark) })
}

/// Reads an integer socket option of the handle's socket (`level`, `name`
/// as for getsockopt(2), e.g. SOL_SOCKET/SO_MARK) into `*value`, for checks
/// and diagnostics. MR_IO with the errno if the kernel refuses; MR_CLOSED
/// after `mr_udp_close`.
#[no_mangle]
pub extern "C" fn mr_udp_sockopt(u: *const mr_udp, level: c_int, name: c_int, value: *mut c_int) -> mr_status {
    ffi_status!("mr_udp_sockopt", {
        let value = try_out(value, "value")?;
        *value = try_ref(u)?.sockopt(level, name)?;
        Ok(())
    })
}

/// The address the socket is bound to. MR_CLOSED after `mr_udp_close`.
#[no_mangle]
pub extern "C" fn mr_udp_local_addr(u: *const mr_udp, out: *mut mr_addr) -> mr_status {
    ffi_status!("mr_udp_local_addr", {
        let out = try_out(out, "out")?;
        *out = try_ref(u)?.local_addr()?.into();
        Ok(())
    })
}

/// Copies the handle's counters into `*out` (also after close).
#[no_mangle]
pub extern "C" fn mr_udp_stats(u: *const mr_udp, out: *mut mr_udp_counters) -> mr_status {
    ffi_status!("mr_udp_stats", {
        let out = try_out(out, "out")?;
        let s = try_ref(u)?.stats();
        *out = mr_udp_counters {
            rx_datagrams: s.rx_datagrams,
            rx_bytes: s.rx_bytes,
            rx_calls: s.rx_calls,
            rx_oversize: s.rx_oversize,
            rx_rearms: s.rx_rearms,
            tx_datagrams: s.tx_datagrams,
            tx_bytes: s.tx_bytes,
            tx_calls: s.tx_calls,
            tx_errors: s.tx_errors,
        };
        Ok(())
    })
}

/// Which backend the handle runs on (MR_BACKEND_URING or MR_BACKEND_BATCH);
/// MR_BACKEND_AUTO if `u` is NULL.
#[no_mangle]
pub extern "C" fn mr_udp_backend(u: *const mr_udp) -> mr_backend {
    super::panic::boundary("mr_udp_backend", || {
        let backend = try_ref(u).map(|u| mr_backend::from(u.backend()));
        value_or("mr_udp_backend", backend, mr_backend::MR_BACKEND_AUTO)
    })
}

impl super::panic::PanicValue for mr_backend {
    fn on_panic() -> Self {
        mr_backend::MR_BACKEND_AUTO
    }
}

/// A file descriptor that polls readable while datagrams are waiting, for
/// epoll / Go / DispatchSource hosts: when it is readable, call
/// `mr_udp_recv` with timeout 0 until MR_WOULD_BLOCK. Owned by the handle:
/// never read, write or close it; it stays valid until `mr_udp_free`.
/// Returns -1 (see mr_last_error) if `u` is NULL or closed.
#[no_mangle]
pub extern "C" fn mr_udp_fd(u: *const mr_udp) -> c_int {
    super::panic::boundary("mr_udp_fd", || {
        let fd = try_ref(u).and_then(|u| if u.is_closed() { Err(Error::closed("socket is closed")) } else { Ok(u.ready_fd()) });
        value_or("mr_udp_fd", fd, -1)
    })
}

/// Closes the socket: calls blocked in `mr_udp_recv`/`mr_udp_send` on other
/// threads return MR_CLOSED promptly, in-flight kernel operations are
/// cancelled and reaped, and every later call returns MR_CLOSED. Idempotent;
/// any thread. The handle itself stays allocated until `mr_udp_free`.
#[no_mangle]
pub extern "C" fn mr_udp_close(u: *mut mr_udp) -> mr_status {
    ffi_status!("mr_udp_close", {
        try_ref(u)?.close();
        Ok(())
    })
}

/// Closes (if needed) and releases the handle. NULL is a no-op. No other
/// thread may be using `u` or call with it afterwards.
#[no_mangle]
pub extern "C" fn mr_udp_free(u: *mut mr_udp) {
    ffi_value!("mr_udp_free", {
        drop(free_handle(u));
    })
}
