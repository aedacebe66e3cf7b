//! Replication modes, stages and the status every handle shares: the
//! stage, the stored replication error (reported by `get_error`, not by the
//! writes it happened behind) and the closed flag.

use crate::error::{Error, ErrorKind, Result};
use crate::sync::Fault;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Primary,
    Secondary,
}

/// When a primary write returns to its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckMode {
    /// After the local write (DRBD protocol A); a sender thread sends from a
    /// bounded queue (`primary::SEND_QUEUE_BYTES`; a full queue makes writes wait).
    Async,
    /// After the secondary acknowledged applying it (DRBD protocol C
    /// without flushes: in both page caches).
    Sync,
    /// After the write is on stable storage on both sides (DRBD protocol C
    /// with flushes): fdatasync locally and on the secondary before its
    /// acknowledgement, each shared by concurrent writers (group commit).
    Durable,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Stage {
    /// Not started.
    None = 0,
    Running = 1,
    /// The secondary is committing its active layer.
    Failover = 2,
    /// Committing failed; the layers are intact and failover can be retried.
    FailoverFailed = 3,
    /// Stopped or failed over: the volume stands alone.
    Done = 4,
}

impl Stage {
    fn from_u8(v: u8) -> Stage {
        match v {
            1 => Stage::Running,
            2 => Stage::Failover,
            3 => Stage::FailoverFailed,
            4 => Stage::Done,
            _ => Stage::None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Stage::None => "NONE",
            Stage::Running => "RUNNING",
            Stage::Failover => "FAILOVER",
            Stage::FailoverFailed => "FAILOVER_FAILED",
            Stage::Done => "DONE",
        }
    }
}

pub struct Status {
    stage: AtomicU8,
    error: Mutex<Option<Error>>,
    closed: AtomicBool,
    /// Set when a replication thread panicked: the replication is halted
    /// and every call fails with Panic and the reason (close still frees).
    pub fault: Fault,
}

impl Status {
    pub fn new() -> Self {
        Status { stage: AtomicU8::new(Stage::None as u8), error: Mutex::new(None), closed: AtomicBool::new(false), fault: Fault::new() }
    }

    pub fn stage(&self) -> Stage {
        Stage::from_u8(self.stage.load(Ordering::Acquire))
    }

    pub fn set_stage(&self, stage: Stage) {
        self.stage.store(stage as u8, Ordering::Release);
    }

    /// Keeps the first error until `take_error` reads it.
    pub fn record(&self, error: Error) {
        log::warn!("replication: {error}");
        let mut slot = self.error.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = Some(error);
        }
    }

    /// Forgets a stored error (a clean stop or a completed failover, as in
    /// the reference).
    pub fn clear_error(&self) {
        *self.error.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// The stored error (cleared), else State if replication is not
    /// running, else Ok.
    pub fn take_error(&self) -> Result<()> {
        self.check_open()?;
        if let Some(e) = self.error.lock().unwrap_or_else(|p| p.into_inner()).take() {
            return Err(e);
        }
        match self.stage() {
            Stage::Running => Ok(()),
            other => Err(Error::new(ErrorKind::State, format!("replication is not running (stage {})", other.name()))),
        }
    }

    pub fn close(&self) -> bool {
        !self.closed.swap(true, Ordering::AcqRel)
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Closed after close; Panic (with the reason) after a thread panic.
    pub fn check_open(&self) -> Result<()> {
        if self.is_closed() {
            return Err(Error::closed("replication handle is closed"));
        }
        self.fault.check()
    }

    /// Entry check for checkpoint/stop/failover: Ok(true) to go ahead
    /// (RUNNING, or FAILOVER_FAILED when `retry_failed`), Ok(false) after
    /// DONE (the call is a no-op, as in the reference), State otherwise.
    pub fn begin(&self, call: &str, retry_failed: bool) -> Result<bool> {
        self.check_open()?;
        match self.stage() {
            Stage::Running => Ok(true),
            Stage::FailoverFailed if retry_failed => Ok(true),
            Stage::Done => Ok(false),
            _ => Err(self.wrong_stage(call)),
        }
    }

    /// State error for a call that needs another stage.
    pub fn wrong_stage(&self, call: &str) -> Error {
        Error::new(ErrorKind::State, format!("{call} is not valid in stage {}", self.stage().name()))
    }
}

impl Default for Status {
    fn default() -> Self {
        Self::new()
    }
}

/// Locks, recovering from poisoning (no lock is held across a panic that
/// could leave the data half-updated).
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Waits on `cv` until `done` holds or the deadline (`None` = none) passes;
/// returns the guard as last seen. `done` should also hold once the handle
/// is stopping, so that waiters leave.
pub fn wait_for<'a, T>(cv: &Condvar, mut guard: MutexGuard<'a, T>, deadline: Option<Instant>, done: impl Fn(&T) -> bool) -> MutexGuard<'a, T> {
    while !done(&guard) {
        let left = match deadline {
            None => Duration::from_secs(1),
            Some(d) => match d.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => left,
                _ => break,
            },
        };
        guard = cv.wait_timeout(guard, left).unwrap_or_else(|p| p.into_inner()).0;
    }
    guard
}
