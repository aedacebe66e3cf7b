//! How a handle sleeps until its fd is readable: `poll(2)` for the batch
//! backend, an io_uring poll (`uring::PollWaiter`) for the io_uring one.
//! Either way the handle's wake eventfd (signalled by close) ends the wait.

use crate::error::{Error, ErrorKind, Result};
use crate::sync::Wait;
use crate::sys::{self, PollResult};
use crate::uring::PollWaiter;
use std::os::fd::RawFd;

pub trait Readiness {
    /// Ok once `fd` may be readable; Closed or Timeout otherwise.
    fn wait_readable(&mut self, fd: RawFd, wait: Wait) -> Result<()>;
}

/// `poll(2)` on the fd and the handle's wake eventfd.
pub struct PollReadiness {
    pub wake: RawFd,
}

impl Readiness for PollReadiness {
    fn wait_readable(&mut self, fd: RawFd, wait: Wait) -> Result<()> {
        match sys::wait_readable_or_woken(fd, self.wake, wait.deadline())? {
            PollResult::Ready => Ok(()),
            PollResult::Woken => Err(Error::closed("handle is closed")),
            PollResult::TimedOut => Err(Error::new(ErrorKind::Timeout, "nothing arrived before the timeout")),
        }
    }
}

impl Readiness for PollWaiter {
    fn wait_readable(&mut self, _fd: RawFd, wait: Wait) -> Result<()> {
        PollWaiter::wait_readable(self, wait)
    }
}
