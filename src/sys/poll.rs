//! Blocking waits for the batch backend: a socket or a wake fd, with a deadline.

use crate::error::{Error, Result};
use std::os::fd::RawFd;
use std::time::Instant;

#[derive(Debug, PartialEq, Eq)]
pub enum PollResult {
    Ready,
    Woken,
    TimedOut,
}

fn wait(fd: RawFd, events: i16, wake: RawFd, deadline: Option<Instant>) -> Result<PollResult> {
    loop {
        let timeout_ms = match deadline {
            None => -1,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                // Round up so we never wake a hair early and spin.
                left.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32
            }
        };
        let mut fds = [
            libc::pollfd { fd, events, revents: 0 },
            libc::pollfd { fd: wake, events: libc::POLLIN, revents: 0 },
        ];
        // SAFETY: `fds` is a live array of two pollfd for the call's duration.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, timeout_ms) };
        if n < 0 {
            let errno = super::errno();
            if errno == libc::EINTR {
                continue;
            }
            return Err(Error::os("poll", errno));
        }
        if fds[1].revents != 0 {
            return Ok(PollResult::Woken);
        }
        if fds[0].revents != 0 {
            return Ok(PollResult::Ready);
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(PollResult::TimedOut);
        }
    }
}

pub fn wait_readable_or_woken(fd: RawFd, wake: RawFd, deadline: Option<Instant>) -> Result<PollResult> {
    wait(fd, libc::POLLIN, wake, deadline)
}

pub fn wait_writable_or_woken(fd: RawFd, wake: RawFd, deadline: Option<Instant>) -> Result<PollResult> {
    wait(fd, libc::POLLOUT, wake, deadline)
}

/// True if `fd` polls readable within `timeout_ms` (0 = just look).
pub fn is_readable(fd: RawFd, timeout_ms: i32) -> bool {
    let mut p = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    // SAFETY: one live pollfd for the call's duration.
    unsafe { libc::poll(&mut p, 1, timeout_ms) == 1 }
}
