//! `recvmmsg` / `sendmmsg` over preallocated header arrays.
//!
//! The buffers are borrowed only for the duration of one call, so the
//! pointers stored in the headers never outlive what they point to.

use super::{cmsg, errno, ControlBuf, LocalInfo, RawSockAddr};
use std::io::IoSlice;
use std::net::SocketAddr;
use std::os::fd::RawFd;

pub struct MmsgBatch {
    headers: Vec<libc::mmsghdr>,
    iovecs: Vec<libc::iovec>,
    names: Vec<RawSockAddr>,
    controls: Vec<ControlBuf>,
}

// SAFETY: the raw pointers in the headers are only meaningful during one
// recv/send call made by whoever holds `&mut self`; between calls they are stale
// and never dereferenced.
unsafe impl Send for MmsgBatch {}

/// What one received message turned out to be.
#[derive(Debug, Clone, Copy)]
pub struct Received {
    pub len: usize,
    pub addr: Option<SocketAddr>,
    pub segment_size: u16,
    /// The local address it was sent to (packet information enabled).
    pub local: Option<LocalInfo>,
    pub truncated: bool,
}

impl MmsgBatch {
    pub fn new(capacity: usize) -> Self {
        // SAFETY: mmsghdr and iovec are plain C structs; all-zero is valid.
        let zero_hdr: libc::mmsghdr = unsafe { std::mem::zeroed() };
        let zero_iov = libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 };
        MmsgBatch {
            headers: vec![zero_hdr; capacity],
            iovecs: vec![zero_iov; capacity],
            names: vec![RawSockAddr::zeroed(); capacity],
            controls: vec![ControlBuf::default(); capacity],
        }
    }

    pub fn capacity(&self) -> usize {
        self.headers.len()
    }

    fn link(&mut self, i: usize, base: *mut u8, len: usize, name_len: libc::socklen_t, control_len: usize) {
        self.iovecs[i] = libc::iovec { iov_base: base.cast(), iov_len: len };
        let iov: *mut libc::iovec = &mut self.iovecs[i];
        self.link_iov(i, iov, 1, name_len, control_len);
    }

    fn link_iov(&mut self, i: usize, iov: *mut libc::iovec, iov_len: usize, name_len: libc::socklen_t, control_len: usize) {
        let hdr = &mut self.headers[i].msg_hdr;
        hdr.msg_name = (&mut self.names[i] as *mut RawSockAddr).cast();
        hdr.msg_namelen = name_len;
        hdr.msg_iov = iov;
        hdr.msg_iovlen = iov_len as _;
        hdr.msg_control = if control_len > 0 { self.controls[i].bytes.as_mut_ptr().cast() } else { std::ptr::null_mut() };
        hdr.msg_controllen = control_len as _;
        hdr.msg_flags = 0;
        self.headers[i].msg_len = 0;
    }

    pub fn result(&self, i: usize) -> Received {
        let hdr = &self.headers[i].msg_hdr;
        let control_len = (hdr.msg_controllen as usize).min(cmsg::CONTROL_SPACE);
        let control = if control_len > 0 { cmsg::parse(&self.controls[i].bytes[..control_len]) } else { cmsg::Control::default() };
        Received {
            len: self.headers[i].msg_len as usize,
            addr: self.names[i].decode(hdr.msg_namelen).map(crate::addr::unmap),
            segment_size: control.segment_size,
            local: control.local,
            truncated: hdr.msg_flags & libc::MSG_TRUNC != 0,
        }
    }
}

/// Receives into `bufs` (at most `batch.capacity()`); returns how many
/// arrived or the errno. `want_control` asks for control messages (GRO,
/// packet information).
pub fn recvmmsg<'a>(
    fd: RawFd,
    batch: &mut MmsgBatch,
    bufs: impl Iterator<Item = &'a mut [u8]>,
    want_control: bool,
) -> Result<usize, i32> {
    let control_len = if want_control { cmsg::CONTROL_SPACE } else { 0 };
    let mut n = 0;
    for buf in bufs.take(batch.capacity()) {
        batch.link(n, buf.as_mut_ptr(), buf.len(), RawSockAddr::CAPACITY, control_len);
        n += 1;
    }
    // SAFETY: headers 0..n point at buffers borrowed for 'a (alive past this call),
    // at `names`/`controls` owned by `batch`, with lengths that match.
    let got = unsafe { libc::recvmmsg(fd, batch.headers.as_mut_ptr(), n as u32, libc::MSG_DONTWAIT, std::ptr::null_mut()) };
    if got < 0 {
        return Err(errno());
    }
    Ok(got as usize)
}

/// The bytes of one outgoing datagram: one buffer, or gathered from several
/// (`writev` style) without copying.
#[derive(Clone, Copy)]
pub enum Payload<'a> {
    One(&'a [u8]),
    Gather(&'a [IoSlice<'a>]),
}

impl Payload<'_> {
    pub fn len(&self) -> usize {
        match self {
            Payload::One(b) => b.len(),
            Payload::Gather(parts) => parts.iter().map(|p| p.len()).sum(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Points `one` at a single buffer, or returns the caller's gather list,
    /// as the iovec array a msghdr takes.
    pub fn iovecs(&self, one: &mut libc::iovec) -> (*mut libc::iovec, usize) {
        match self {
            Payload::One(b) => {
                *one = libc::iovec { iov_base: b.as_ptr() as *mut _, iov_len: b.len() };
                (one as *mut libc::iovec, 1)
            }
            // IoSlice is guaranteed ABI-compatible with struct iovec; the
            // kernel only reads through these pointers for a send.
            Payload::Gather(parts) => (parts.as_ptr() as *mut libc::iovec, parts.len()),
        }
    }
}

/// One datagram to send: payload, destination, GSO segment size (0 = none)
/// and optionally the source address to send from.
pub struct Outgoing<'a> {
    pub payload: Payload<'a>,
    pub addr: SocketAddr,
    pub segment_size: u16,
    pub local: Option<LocalInfo>,
}

/// Sends what `msgs` yields (at most `batch.capacity()`); returns how many went.
pub fn sendmmsg<'a>(
    fd: RawFd,
    batch: &mut MmsgBatch,
    msgs: impl Iterator<Item = Outgoing<'a>>,
    v6_socket: bool,
) -> Result<usize, i32> {
    let mut n = 0;
    for msg in msgs.take(batch.capacity()) {
        let (raw, name_len) = RawSockAddr::encode(&msg.addr, v6_socket);
        batch.names[n] = raw;
        let control_len = batch.controls[n].build(msg.segment_size, msg.local.as_ref(), v6_socket);
        // The kernel only reads through these pointers for a send.
        let (iov, iov_len) = msg.payload.iovecs(&mut batch.iovecs[n]);
        batch.link_iov(n, iov, iov_len, name_len, control_len);
        n += 1;
    }
    if n == 0 {
        return Ok(0);
    }
    // SAFETY: headers 0..n point at payloads (and gather lists) borrowed for 'a and at names/controls
    // owned by `batch`; sendmmsg only reads them.
    let sent = unsafe { libc::sendmmsg(fd, batch.headers.as_mut_ptr(), n as u32, libc::MSG_DONTWAIT) };
    if sent < 0 {
        return Err(errno());
    }
    Ok(sent as usize)
}
