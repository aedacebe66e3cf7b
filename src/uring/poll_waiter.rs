//! Readiness on io_uring: a one-shot POLL_ADD on the socket, armed only
//! when a receiver has drained it. The data itself is then read with
//! `recvmmsg` straight into the caller's buffers, so the kernel copies each
//! datagram once, while waiting, wake-on-close, timeouts and the readiness
//! eventfd still go through the ring.

use super::ring::{Ring, Waited};
use crate::error::{Error, ErrorKind, Result};
use crate::sync::Wait;
use io_uring::{opcode, types};
use std::os::fd::RawFd;

const POLL_TAG: u64 = 1;

pub struct PollWaiter {
    ring: Ring,
    fd: RawFd,
    armed: bool,
    fired: bool,
}

impl PollWaiter {
    pub fn new(fd: RawFd, wake_fd: RawFd, ready_fd: Option<RawFd>) -> Result<Self> {
        let ring = Ring::new(8, 16, wake_fd)?;
        if let Some(ready) = ready_fd {
            ring.register_eventfd(ready)?;
        }
        let mut waiter = PollWaiter { ring, fd, armed: false, fired: false };
        // Armed from the start so the readiness fd works before the first receive.
        waiter.arm_and_submit()?;
        Ok(waiter)
    }

    fn arm(&mut self) -> Result<()> {
        if !self.armed {
            let entry = opcode::PollAdd::new(types::Fd(self.fd), libc::POLLIN as u32).build().user_data(POLL_TAG);
            // SAFETY: a poll request holds no pointers, only the socket fd, which
            // outlives the ring (the handle drops its engines first).
            unsafe { self.ring.push(&entry)? };
            self.armed = true;
        }
        Ok(())
    }

    /// Leaves a poll armed in the kernel so the readiness eventfd fires when
    /// data arrives (at once if some is already queued).
    pub fn arm_and_submit(&mut self) -> Result<()> {
        // A poll that already fired is no longer armed, even if nobody reaped it.
        self.reap();
        self.arm()?;
        self.ring.submit()
    }

    fn reap(&mut self) {
        while let Some(cqe) = self.ring.next_completion() {
            if cqe.user_data() == POLL_TAG {
                self.armed = false;
                self.fired = true;
            }
        }
    }

    /// Sleeps until the socket polls readable, the deadline passes, or the
    /// handle closes.
    pub fn wait_readable(&mut self, wait: Wait) -> Result<()> {
        self.fired = false;
        self.reap();
        loop {
            if self.ring.closing() {
                return Err(Error::closed("socket is closed"));
            }
            if std::mem::take(&mut self.fired) {
                return Ok(());
            }
            self.arm()?;
            let waited = self.ring.wait(1, wait.deadline())?;
            self.reap();
            if waited == Waited::TimedOut && !self.fired && !self.ring.closing() {
                return Err(Error::new(ErrorKind::Timeout, "no datagram before the timeout"));
            }
        }
    }
}

impl Drop for PollWaiter {
    fn drop(&mut self) {
        self.ring.cancel_all(|_| {});
    }
}
