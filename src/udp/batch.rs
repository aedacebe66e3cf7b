//! The fallback backend: `recvmmsg` / `sendmmsg` with `poll` for waiting.
//! Used where io_uring is unavailable or when asked for.

use crate::error::{Error, ErrorKind, Result};
pub use crate::readiness::{PollReadiness, Readiness};
use crate::sys::{self, MmsgBatch, PollResult};
use crate::uring::{Flow, Incoming};
use std::os::fd::RawFd;
use crate::sync::Wait;
use crate::udp::{RecvSlot, SendSlot};

/// `recvmmsg` receiver. When every caller buffer can hold `max_datagram`
/// bytes it receives straight into them (no copy). Otherwise it receives
/// into an internal arena and offers datagrams through the same consumer
/// as the io_uring receiver, so a datagram a caller can't take stays here.
pub struct BatchRx {
    mmsg: MmsgBatch,
    /// Allocated on first use: callers with full-size buffers never need it.
    arena: Vec<u8>,
    slot_size: usize,
    /// Ask for control messages (GRO segment sizes, packet information).
    control: bool,
    filled: usize,
    next: usize,
    /// The last `recvmmsg` left the socket empty: the next blocking receive
    /// waits for readiness first instead of paying for a failing syscall.
    drained: bool,
    pub oversize: u64,
}

/// What one direct receive achieved.
pub struct Received {
    pub datagrams: usize,
    pub bytes: usize,
}

impl BatchRx {
    pub fn new(slots: usize, max_datagram: usize, gro: bool, pktinfo: bool) -> Self {
        let slots = if gro { slots.min(64) } else { slots.min(128) }.max(1);
        BatchRx { mmsg: MmsgBatch::new(slots), arena: Vec::new(), slot_size: max_datagram, control: gro || pktinfo, filled: 0, next: 0, drained: false, oversize: 0 }
    }

    /// Datagrams received into the arena that the caller has not taken.
    pub fn has_pending(&self) -> bool {
        self.next < self.filled
    }

    /// True when `slots` can be filled in place: nothing is left in the
    /// arena and every buffer holds a whole datagram.
    pub fn can_receive_direct<S: RecvSlot>(&self, slots: &mut [S]) -> bool {
        self.next >= self.filled && slots.iter_mut().all(|s| s.buffer().len() >= self.slot_size)
    }

    /// Receives straight into the caller's buffers.
    pub fn receive_direct<S: RecvSlot>(&mut self, fd: RawFd, slots: &mut [S], wait: Wait, ready: &mut impl Readiness) -> Result<Received> {
        if self.drained && !wait.is_never() {
            ready.wait_readable(fd, wait)?;
        }
        loop {
            let want = slots.len().min(self.mmsg.capacity());
            // Each buffer is offered up to max_datagram, so larger datagrams are
            // dropped the same way on every path.
            let max = self.slot_size;
            match sys::recvmmsg(fd, &mut self.mmsg, slots[..want].iter_mut().map(|s| &mut s.buffer()[..max]), self.control) {
                Ok(got) => {
                    self.drained = got < want;
                    let received = self.fill_in_place(&mut slots[..want], got);
                    if received.datagrams > 0 {
                        return Ok(received);
                    }
                }
                Err(libc::EINTR) => {}
                Err(libc::EAGAIN) => {
                    if wait.is_never() {
                        return Err(Error::new(ErrorKind::WouldBlock, "no datagram ready"));
                    }
                    ready.wait_readable(fd, wait)?;
                }
                Err(errno) => return Err(Error::os("recvmmsg", errno)),
            }
        }
    }

    /// Reports the `got` results into the slots, dropping (and counting)
    /// truncated ones and closing the gaps they leave.
    fn fill_in_place<S: RecvSlot>(&mut self, slots: &mut [S], got: usize) -> Received {
        let mut out = 0;
        let mut bytes = 0;
        for i in 0..got {
            let r = self.mmsg.result(i);
            if r.truncated {
                self.oversize += 1;
                continue;
            }
            if out != i {
                // Rare: only after an oversize datagram.
                let (front, back) = slots.split_at_mut(i);
                front[out].buffer()[..r.len].copy_from_slice(&back[0].buffer()[..r.len]);
            }
            slots[out].fill(r.len, r.addr, r.segment_size);
            if self.control {
                slots[out].set_local(r.local);
            }
            bytes += r.len;
            out += 1;
        }
        Received { datagrams: out, bytes }
    }

    /// Receives through the arena and offers each datagram to `consume`.
    pub fn receive(&mut self, fd: RawFd, room: usize, wait: Wait, ready: &mut impl Readiness, mut consume: impl FnMut(&Incoming) -> Flow) -> Result<usize> {
        if self.arena.is_empty() {
            self.arena = vec![0; self.mmsg.capacity() * self.slot_size];
        }
        let mut taken = 0;
        loop {
            while self.next < self.filled {
                let r = self.mmsg.result(self.next);
                if r.truncated {
                    self.oversize += 1;
                    self.next += 1;
                    continue;
                }
                let start = self.next * self.slot_size;
                let incoming = Incoming { payload: &self.arena[start..start + r.len], addr: r.addr, segment_size: r.segment_size, local: r.local };
                match consume(&incoming) {
                    Flow::Keep => return Ok(taken),
                    Flow::More => {}
                    Flow::Full => {
                        self.next += 1;
                        return Ok(taken + 1);
                    }
                }
                self.next += 1;
                taken += 1;
            }
            let want = room.saturating_sub(taken).min(self.mmsg.capacity());
            if want == 0 {
                return Ok(taken);
            }
            let slots = self.arena.chunks_mut(self.slot_size).take(want);
            self.filled = 0;
            self.next = 0;
            match sys::recvmmsg(fd, &mut self.mmsg, slots, self.control) {
                Ok(got) => self.filled = got,
                Err(_) if taken > 0 => return Ok(taken),
                Err(libc::EAGAIN) | Err(libc::EINTR) => {
                    if wait.is_never() {
                        return Err(Error::new(ErrorKind::WouldBlock, "no datagram ready"));
                    }
                    ready.wait_readable(fd, wait)?;
                }
                Err(errno) => return Err(Error::os("recvmmsg", errno)),
            }
        }
    }
}

pub struct BatchTx {
    mmsg: MmsgBatch,
}

impl BatchTx {
    pub fn new(batch: usize) -> Self {
        BatchTx { mmsg: MmsgBatch::new(batch.clamp(1, 1024)) }
    }

    /// Sends `msgs` in order; returns how many went, their bytes, and why it stopped early.
    pub fn send<S: SendSlot>(&mut self, fd: RawFd, wake: RawFd, v6_socket: bool, msgs: &[S], wait: Wait) -> (usize, usize, Option<Error>) {
        let mut sent = 0;
        let mut bytes = 0;
        while sent < msgs.len() {
            let chunk = msgs[sent..].iter().map(SendSlot::outgoing);
            match sys::sendmmsg(fd, &mut self.mmsg, chunk, v6_socket) {
                Ok(n) => {
                    bytes += msgs[sent..sent + n].iter().map(|m| m.payload().len()).sum::<usize>();
                    sent += n;
                }
                Err(libc::EINTR) => {}
                Err(libc::EAGAIN) => {
                    if wait.is_never() {
                        return (sent, bytes, Some(Error::new(ErrorKind::WouldBlock, "socket send buffer is full")));
                    }
                    match sys::wait_writable_or_woken(fd, wake, wait.deadline()) {
                        Ok(PollResult::Ready) => {}
                        Ok(PollResult::Woken) => return (sent, bytes, Some(Error::closed("socket is closed"))),
                        Ok(PollResult::TimedOut) => {
                            return (sent, bytes, Some(Error::new(ErrorKind::Timeout, "send timed out waiting for socket buffer space")))
                        }
                        Err(e) => return (sent, bytes, Some(e)),
                    }
                }
                Err(errno) => return (sent, bytes, Some(Error::os("sendmmsg", errno))),
            }
        }
        (sent, bytes, None)
    }
}
