//! The C ABI's `int32_t timeout_ms` as a deadline.

use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// `timeout_ms < 0`: block until done or closed.
    Forever,
    /// `timeout_ms == 0`: never block (`MR_WOULD_BLOCK`).
    Never,
    /// `timeout_ms > 0`: block until this instant at most (`MR_TIMEOUT`).
    Until(Instant),
}

impl Wait {
    pub fn from_ms(timeout_ms: i32) -> Self {
        match timeout_ms {
            t if t < 0 => Wait::Forever,
            0 => Wait::Never,
            t => Wait::Until(Instant::now() + Duration::from_millis(t as u64)),
        }
    }

    pub fn deadline(self) -> Option<Instant> {
        match self {
            Wait::Forever => None,
            Wait::Never => Some(Instant::now()),
            Wait::Until(t) => Some(t),
        }
    }

    pub fn is_never(self) -> bool {
        self == Wait::Never
    }
}
