//! Datagram send on io_uring: a batch becomes one chain of linked SENDMSG
//! SQEs and one submit. Linking keeps the datagrams in order and makes the
//! first failure cancel the rest, so "sent" is always an exact prefix.

use super::ring::{Ring, Waited};
use crate::error::{Error, ErrorKind, Result};
use crate::sys::{ControlBuf, Outgoing, RawSockAddr};
use io_uring::{opcode, squeue, types};
use std::os::fd::RawFd;
use crate::sync::Wait;
use std::time::Instant;


struct Slot {
    hdr: libc::msghdr,
    iov: libc::iovec,
    name: RawSockAddr,
    control: ControlBuf,
}

pub struct MsgSender {
    ring: Ring,
    slots: Box<[Slot]>,
    results: Vec<Option<i32>>,
    fd: RawFd,
    v6_socket: bool,
}

// SAFETY: slot pointers refer to memory owned by this value and are only
// used during one `send` by the thread holding `&mut self`.
unsafe impl Send for MsgSender {}

/// What a send achieved: how many went (a prefix) and why it stopped early.
pub struct SendOutcome {
    pub sent: usize,
    pub bytes: usize,
    pub error: Option<Error>,
}

impl MsgSender {
    pub fn new(fd: RawFd, wake_fd: RawFd, v6_socket: bool, batch: usize) -> Result<Self> {
        let batch = batch.clamp(1, 1024);
        let ring = Ring::new(batch as u32, batch as u32 * 2, wake_fd)?;
        let slots = (0..batch)
            .map(|_| Slot {
                // SAFETY: msghdr is a plain C struct; zero is valid.
                hdr: unsafe { std::mem::zeroed() },
                iov: libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 },
                name: RawSockAddr::zeroed(),
                control: ControlBuf::default(),
            })
            .collect();
        Ok(MsgSender { ring, slots, results: vec![None; batch], fd, v6_socket })
    }

    /// Sends everything `msgs` yields, chunk by chunk, until one fails.
    /// `nonblocking` fails with WouldBlock instead of waiting for buffer space.
    pub fn send<'a>(&mut self, msgs: &mut dyn Iterator<Item = Outgoing<'a>>, wait: Wait) -> SendOutcome {
        let (nonblocking, deadline) = (wait.is_never(), wait.deadline());
        let mut outcome = SendOutcome { sent: 0, bytes: 0, error: None };
        loop {
            match self.send_chunk(msgs, nonblocking, deadline) {
                Ok((0, _)) => return outcome,
                Ok((n, bytes)) => {
                    outcome.sent += n;
                    outcome.bytes += bytes;
                }
                Err((n, bytes, e)) => {
                    outcome.sent += n;
                    outcome.bytes += bytes;
                    outcome.error = Some(e);
                    return outcome;
                }
            }
        }
    }

    #[allow(clippy::type_complexity)]
    fn send_chunk<'a>(
        &mut self,
        msgs: &mut dyn Iterator<Item = Outgoing<'a>>,
        nonblocking: bool,
        deadline: Option<Instant>,
    ) -> std::result::Result<(usize, usize), (usize, usize, Error)> {
        if self.ring.closing() {
            return Err((0, 0, Error::closed("socket is closed")));
        }
        let flags = if nonblocking { libc::MSG_DONTWAIT as u32 } else { 0 };
        let mut queued = 0;
        let mut stop: Option<Error> = None;
        // Each entry is pushed once the next exists, so all but the last are linked.
        let mut previous: Option<squeue::Entry> = None;
        for (i, msg) in msgs.take(self.slots.len()).enumerate() {
            let slot = &mut self.slots[i];
            let (raw, name_len) = RawSockAddr::encode(&msg.addr, self.v6_socket);
            slot.name = raw;
            // A gather list is the caller's own iovec array (read only).
            let (iov, iov_len) = msg.payload.iovecs(&mut slot.iov);
            slot.hdr.msg_name = (&mut slot.name as *mut RawSockAddr).cast();
            slot.hdr.msg_namelen = name_len;
            slot.hdr.msg_iov = iov;
            slot.hdr.msg_iovlen = iov_len as _;
            let control_len = slot.control.build(msg.segment_size, msg.local.as_ref(), self.v6_socket);
            if control_len > 0 {
                slot.hdr.msg_control = slot.control.bytes.as_mut_ptr().cast();
                slot.hdr.msg_controllen = control_len as _;
            } else {
                slot.hdr.msg_control = std::ptr::null_mut();
                slot.hdr.msg_controllen = 0;
            }
            let entry = opcode::SendMsg::new(types::Fd(self.fd), &slot.hdr).flags(flags).build().user_data(i as u64);
            self.results[i] = None;
            if let Some(prev) = previous.replace(entry) {
                // SAFETY: the slot, the payload and any gather list stay valid until every completion
                // of this chunk has been reaped below, before `send` returns.
                if let Err(e) = unsafe { self.ring.push(&prev.flags(squeue::Flags::IO_LINK)) } {
                    stop = Some(e);
                    previous = None;
                    break;
                }
                queued += 1;
            }
        }
        if let Some(last) = previous {
            // SAFETY: as above.
            match unsafe { self.ring.push(&last) } {
                Ok(()) => queued += 1,
                Err(e) => stop = Some(e),
            }
        }
        let push_failed = stop.is_some();
        if queued == 0 {
            return stop.map_or(Ok((0, 0)), |e| Err((0, 0, e)));
        }
        let mut reaped = 0;
        if stop.is_some() {
            // A push failed: what was queued must still finish or be cancelled.
            self.cancel_into_results(queued, &mut reaped);
        }
        // After a stop, `cancel_into_results` has drained the ring: nothing
        // more can arrive, so the loop ends even if a result went missing.
        while reaped < queued && stop.is_none() {
            while let Some(cqe) = self.ring.next_completion() {
                let i = cqe.user_data() as usize;
                if i < queued && self.results[i].is_none() {
                    self.results[i] = Some(cqe.result());
                    reaped += 1;
                }
            }
            if reaped == queued {
                break;
            }
            stop = Some(if self.ring.closing() {
                Error::closed("socket is closed")
            } else {
                // MSG_DONTWAIT sends complete (or fail with EAGAIN) at once,
                // so a non-blocking call can wait for all of them.
                match self.ring.wait(queued - reaped, if nonblocking { None } else { deadline }) {
                    Ok(Waited::Progress) => continue,
                    Ok(Waited::TimedOut) => Error::new(ErrorKind::Timeout, "send timed out waiting for socket buffer space"),
                    Err(e) => e,
                }
            });
            // The caller's payloads must not be referenced after we return.
            self.cancel_into_results(queued, &mut reaped);
        }
        let mut sent = 0;
        let mut bytes = 0;
        for i in 0..queued {
            match self.results[i] {
                Some(n) if n >= 0 => {
                    sent += 1;
                    bytes += n as usize;
                }
                Some(err) => {
                    let e = stop.unwrap_or_else(|| send_error(-err));
                    return Err((sent, bytes, e));
                }
                None => break,
            }
        }
        // A failed push consumed a datagram from the iterator that was never
        // queued, so it must be reported even if everything queued went.
        match stop {
            Some(e) if sent < queued || push_failed => Err((sent, bytes, e)),
            _ => Ok((sent, bytes)),
        }
    }

    /// Cancels what is still in flight and records every completion, so no
    /// caller payload is referenced once this returns.
    fn cancel_into_results(&mut self, queued: usize, reaped: &mut usize) {
        let results = &mut self.results;
        self.ring.cancel_all(|cqe| {
            let i = cqe.user_data() as usize;
            if i < queued && results[i].is_none() {
                results[i] = Some(cqe.result());
                *reaped += 1;
            }
        });
    }

    pub fn shutdown(&mut self) {
        self.ring.cancel_all(|_| {});
    }
}

fn send_error(errno: i32) -> Error {
    match errno {
        libc::EAGAIN => Error::new(ErrorKind::WouldBlock, "socket send buffer is full"),
        _ => Error::os("sendmsg", errno),
    }
}

impl Drop for MsgSender {
    fn drop(&mut self) {
        self.shutdown();
    }
}
