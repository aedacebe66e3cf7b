//! One io_uring with what every engine needs: a multishot poll on the
//! handle's wake eventfd (so `close` interrupts a blocked wait), deadline
//! waits, in-flight accounting, and cancel-and-drain before teardown.

use crate::error::{Error, ErrorKind, Result};
use io_uring::{cqueue, opcode, squeue, types, IoUring};
use std::os::fd::RawFd;
use std::time::Instant;

/// user_data tags reserved by the ring; engines use small integers.
const WAKE_TAG: u64 = u64::MAX;
const CANCEL_TAG: u64 = u64::MAX - 1;

pub struct Ring {
    ring: IoUring,
    wake_fd: RawFd,
    wake_armed: bool,
    /// Set once the wake eventfd fired: the handle is closing.
    closing: bool,
    /// Operations submitted whose final completion has not been reaped yet.
    inflight: usize,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Waited {
    /// Completions may be ready (or a signal interrupted the wait).
    Progress,
    TimedOut,
}

impl Ring {
    pub fn new(sq_entries: u32, cq_entries: u32, wake_fd: RawFd) -> Result<Self> {
        let ring = IoUring::builder()
            .setup_cqsize(cq_entries.max(sq_entries * 2))
            .setup_clamp()
            .build(sq_entries)
            .map_err(|e| Error::from_io("io_uring_setup", &e).with_kind(ErrorKind::Unsupported))?;
        Ok(Ring { ring, wake_fd, wake_armed: false, closing: false, inflight: 0 })
    }

    pub fn submitter(&self) -> io_uring::Submitter<'_> {
        self.ring.submitter()
    }

    pub fn register_eventfd(&self, fd: RawFd) -> Result<()> {
        self.ring.submitter().register_eventfd(fd).map_err(|e| Error::from_io("io_uring register eventfd", &e))
    }

    pub fn closing(&self) -> bool {
        self.closing
    }

    pub fn inflight(&self) -> usize {
        self.inflight
    }

    /// Queues `entry`, submitting first if the SQ is full.
    ///
    /// # Safety
    /// Every pointer in `entry` must stay valid until its final completion
    /// has been reaped through this ring.
    pub unsafe fn push(&mut self, entry: &squeue::Entry) -> Result<()> {
        // SAFETY: forwarded to the caller's contract.
        while unsafe { self.ring.submission().push(entry) }.is_err() {
            self.ring.submit().map_err(|e| Error::from_io("io_uring_enter(submit)", &e))?;
        }
        self.inflight += 1;
        Ok(())
    }

    fn arm_wake(&mut self) -> Result<()> {
        if self.wake_armed {
            return Ok(());
        }
        let entry = opcode::PollAdd::new(types::Fd(self.wake_fd), libc::POLLIN as u32).multi(true).build().user_data(WAKE_TAG);
        // SAFETY: the entry holds only the wake fd, which outlives the ring.
        unsafe { self.push(&entry)? };
        self.wake_armed = true;
        Ok(())
    }

    pub fn submit(&mut self) -> Result<()> {
        self.ring.submit().map(drop).map_err(|e| Error::from_io("io_uring_enter(submit)", &e))
    }

    /// Submits pending SQEs and sleeps until `want` completions are ready,
    /// the deadline passes (`None` = no deadline) or the handle is closed.
    pub fn wait(&mut self, want: usize, deadline: Option<Instant>) -> Result<Waited> {
        self.arm_wake()?;
        let result = match deadline {
            None => self.ring.submit_and_wait(want),
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    self.submit()?;
                    return Ok(Waited::TimedOut);
                }
                let ts = types::Timespec::from(left);
                let args = types::SubmitArgs::new().timespec(&ts);
                self.ring.submitter().submit_with_args(want, &args)
            }
        };
        match result {
            Ok(_) => Ok(Waited::Progress),
            Err(e) => match e.raw_os_error() {
                Some(libc::ETIME) => Ok(Waited::TimedOut),
                Some(libc::EINTR) | Some(libc::EBUSY) | Some(libc::EAGAIN) => Ok(Waited::Progress),
                _ => Err(Error::from_io("io_uring_enter(wait)", &e)),
            },
        }
    }

    /// Pops the next engine completion, handling the ring's own tags.
    pub fn next_completion(&mut self) -> Option<cqueue::Entry> {
        loop {
            let cqe = self.ring.completion().next()?;
            if !cqueue::more(cqe.flags()) {
                self.inflight = self.inflight.saturating_sub(1);
            }
            match cqe.user_data() {
                WAKE_TAG => {
                    self.wake_armed = cqueue::more(cqe.flags());
                    if cqe.result() >= 0 {
                        self.closing = true;
                    }
                }
                CANCEL_TAG => {}
                _ => return Some(cqe),
            }
        }
    }

    pub fn has_completions(&mut self) -> bool {
        !self.ring.completion().is_empty()
    }

    /// Cancels everything in flight on this ring (engine ops and the wake
    /// poll) and passes each engine completion to `on_cqe` until nothing is
    /// left in the kernel. After this no completion can write to user memory.
    pub fn cancel_all(&mut self, mut on_cqe: impl FnMut(cqueue::Entry)) {
        if self.inflight > 0 {
            let entry = opcode::AsyncCancel2::new(types::CancelBuilder::any()).build().user_data(CANCEL_TAG);
            // SAFETY: a cancel request carries no pointers.
            if unsafe { self.push(&entry) }.is_err() {
                log::error!("io_uring: could not queue cancel; waiting for operations to finish");
            }
        }
        let mut rounds = 0u32;
        while self.inflight > 0 {
            while let Some(cqe) = self.next_completion() {
                on_cqe(cqe);
            }
            if self.inflight == 0 {
                break;
            }
            let slice = types::Timespec::from(std::time::Duration::from_millis(100));
            let waited = self.ring.submitter().submit_with_args(1, &types::SubmitArgs::new().timespec(&slice));
            if let Err(e) = waited {
                if !matches!(e.raw_os_error(), Some(libc::ETIME) | Some(libc::EINTR) | Some(libc::EBUSY)) {
                    log::error!("io_uring: wait during cancel failed: {e}");
                }
            }
            rounds += 1;
            if rounds % 50 == 0 {
                log::warn!("io_uring: still {} operations in flight after cancel", self.inflight);
            }
        }
        self.wake_armed = false;
    }
}
