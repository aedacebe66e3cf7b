//! `recvmmsg` / `sendmmsg` over preallocated header arrays.
//!
//! The buffers are borrowed only for the duration of one call, so the
//! pointers stored in the headers never outlive what they point to.

use super::{cmsg, errno, ControlBuf, RawSockAddr};
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
        let hdr = &mut self.headers[i].msg_hdr;
        hdr.msg_name = (&mut self.names[i] as *mut RawSockAddr).cast();
        hdr.msg_namelen = name_len;
        hdr.msg_iov = &mut self.iovecs[i];
        hdr.msg_iovlen = 1;
        hdr.msg_control = if control_len > 0 { self.controls[i].bytes.as_mut_ptr().cast() } else { std::ptr::null_mut() };
        hdr.msg_controllen = control_len as _;
        hdr.msg_flags = 0;
        self.headers[i].msg_len = 0;
    }

    pub fn result(&self, i: usize) -> Received {
        let hdr = &self.headers[i].msg_hdr;
        let control_len = (hdr.msg_controllen as usize).min(32);
        Received {
            len: self.headers[i].msg_len as usize,
            addr: self.names[i].decode(hdr.msg_namelen).map(crate::addr::unmap),
            segment_size: if control_len > 0 { cmsg::gro_segment_size(&self.controls[i].bytes[..control_len]) } else { 0 },
            truncated: hdr.msg_flags & libc::MSG_TRUNC != 0,
        }
    }
}

/// Receives into `bufs` (at most `batch.capacity()`); returns how many
/// arrived or the errno. `want_control` asks for GRO control messages.
pub fn recvmmsg<'a>(
    fd: RawFd,
    batch: &mut MmsgBatch,
    bufs: impl Iterator<Item = &'a mut [u8]>,
    want_control: bool,
) -> Result<usize, i32> {
    let control_len = if want_control { cmsg::GRO_CONTROL_SPACE } else { 0 };
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

/// One datagram to send: payload, destination and GSO segment size (0 = none).
pub struct Outgoing<'a> {
    pub payload: &'a [u8],
    pub addr: SocketAddr,
    pub segment_size: u16,
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
        let control_len = if msg.segment_size > 0 { batch.controls[n].set_gso(msg.segment_size) } else { 0 };
        // The kernel only reads through this pointer for a send.
        batch.link(n, msg.payload.as_ptr() as *mut u8, msg.payload.len(), name_len, control_len);
        n += 1;
    }
    if n == 0 {
        return Ok(0);
    }
    // SAFETY: headers 0..n point at payloads borrowed for 'a and at names/controls
    // owned by `batch`; sendmmsg only reads them.
    let sent = unsafe { libc::sendmmsg(fd, batch.headers.as_mut_ptr(), n as u32, libc::MSG_DONTWAIT) };
    if sent < 0 {
        return Err(errno());
    }
    Ok(sent as usize)
}
