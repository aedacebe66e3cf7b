//! What a library thread leaves behind when it panics.
//!
//! Every component that runs a thread of its own (the runtime loop, the
//! bus's rate-limit ticker, the cache's heartbeat thread, the replication
//! workers) runs its body through [`guard`]. A panic there is a bug, and it
//! must never be silent: the reason is recorded once in the component's
//! [`Fault`], logged at error level, and the component is shut down by the
//! caller-supplied closure. From then on every call on the handle returns
//! `ErrorKind::Panic` (`MR_PANIC`) with the reason in its message, and the
//! handle's readiness fd (where it has one) is readable so an event loop
//! hears of it. The handle is otherwise like a closed one: nothing more
//! happens on it, and freeing it releases everything.

use crate::error::{Error, ErrorKind};
use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, OnceLock};

/// The first panic of a component's threads, if any. Cheap to read.
#[derive(Default)]
pub struct Fault {
    reason: OnceLock<Arc<str>>,
}

impl Fault {
    pub const fn new() -> Fault {
        Fault { reason: OnceLock::new() }
    }

    /// Records `reason` unless a panic was already recorded; returns the
    /// reason that stands.
    pub fn record(&self, reason: String) -> Arc<str> {
        self.reason.get_or_init(|| reason.into()).clone()
    }

    pub fn reason(&self) -> Option<&Arc<str>> {
        self.reason.get()
    }

    pub fn is_set(&self) -> bool {
        self.reason.get().is_some()
    }

    /// `Err(Panic)` naming the reason, once a panic was recorded.
    pub fn check(&self) -> crate::error::Result<()> {
        match self.reason.get() {
            None => Ok(()),
            Some(r) => Err(Error::new(ErrorKind::Panic, r.to_string())),
        }
    }
}

/// The text of a panic payload (`panic!` with a literal or a format).
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// Runs `body` (a thread's whole work). If it panics, the reason
/// (`"<thread> panicked: <message>"`) is recorded in `fault`, logged, and
/// `shut` runs so that nobody waits for the dead thread. Returns whether the
/// body finished normally.
pub fn guard(thread: &str, fault: &Fault, shut: impl FnOnce(), body: impl FnOnce()) -> bool {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(()) => true,
        Err(payload) => {
            let reason = fault.record(format!("{thread} panicked: {}", panic_message(&*payload)));
            log::error!("{reason}; the handle is shut down (every call now returns MR_PANIC)");
            shut();
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_panic_stands_and_shut_runs() {
        let fault = Fault::new();
        assert!(fault.check().is_ok());
        let mut shut = 0;
        assert!(!guard("worker", &fault, || shut += 1, || panic!("boom {}", 7)));
        assert_eq!(shut, 1);
        let e = fault.check().unwrap_err();
        assert_eq!(e.kind, ErrorKind::Panic);
        assert_eq!(e.message, "worker panicked: boom 7");
        assert!(!guard("other", &fault, || (), || panic!("later")));
        assert_eq!(&**fault.reason().unwrap(), "worker panicked: boom 7");
        assert!(guard("fine", &fault, || unreachable!(), || ()));
    }
}
