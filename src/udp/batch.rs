//! The fallback backend: `recvmmsg` / `sendmmsg` with `poll` for waiting.
//! Used where io_uring is unavailable or when asked for.

use crate::error::{Error, ErrorKind, Result};
use crate::sys::{self, MmsgBatch, PollResult};
use crate::uring::{Flow, Incoming};
use std::os::fd::RawFd;
use crate::sync::Wait;
use crate::udp::SendSlot;

/// Receives into an internal arena, then offers datagrams to the consumer
/// exactly like the io_uring receiver, so both backends share one delivery
/// path (and datagrams a caller can't take stay here, not lost).
pub struct BatchRx {
    mmsg: MmsgBatch,
    arena: Vec<u8>,
    slot_size: usize,
    gro: bool,
    filled: usize,
    next: usize,
    pub oversize: u64,
}

impl BatchRx {
    pub fn new(slots: usize, max_datagram: usize, gro: bool) -> Self {
        let slots = if gro { slots.min(16) } else { slots.min(128) }.max(1);
        BatchRx { mmsg: MmsgBatch::new(slots), arena: vec![0; slots * max_datagram], slot_size: max_datagram, gro, filled: 0, next: 0, oversize: 0 }
    }

    pub fn receive(
        &mut self,
        fd: RawFd,
        wake: RawFd,
        room: usize,
        wait: Wait,
        mut consume: impl FnMut(&Incoming) -> Flow,
    ) -> Result<usize> {
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
                let incoming = Incoming {
                    payload: &self.arena[start..start + r.len],
                    addr: r.addr,
                    segment_size: r.segment_size,
                };
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
            match sys::recvmmsg(fd, &mut self.mmsg, slots, self.gro) {
                Ok(got) => {
                    self.filled = got;
                    self.next = 0;
                }
                Err(libc::EAGAIN) | Err(libc::EINTR) => {
                    self.filled = 0;
                    self.next = 0;
                    if taken > 0 {
                        return Ok(taken);
                    }
                    if wait.is_never() {
                        return Err(Error::new(ErrorKind::WouldBlock, "no datagram ready"));
                    }
                    match sys::wait_readable_or_woken(fd, wake, wait.deadline())? {
                        PollResult::Ready => {}
                        PollResult::Woken => return Err(Error::closed("socket is closed")),
                        PollResult::TimedOut => return Err(Error::new(ErrorKind::Timeout, "no datagram before the timeout")),
                    }
                }
                Err(errno) => {
                    self.filled = 0;
                    self.next = 0;
                    if taken > 0 {
                        return Ok(taken);
                    }
                    return Err(Error::os("recvmmsg", errno));
                }
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
