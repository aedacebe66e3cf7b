//! The one panic boundary every export runs inside: a panic becomes
//! `MR_PANIC` (or the export's documented failure value) plus a last-error
//! message and a log record, and never unwinds into C.

use super::error::{mr_status, set_last_error};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// What an export returns when its body panicked.
pub(crate) trait PanicValue {
    fn on_panic() -> Self;
}

impl PanicValue for mr_status {
    fn on_panic() -> Self {
        mr_status::MR_PANIC
    }
}

impl PanicValue for () {
    fn on_panic() -> Self {}
}

impl PanicValue for usize {
    fn on_panic() -> Self {
        0
    }
}

impl PanicValue for u64 {
    fn on_panic() -> Self {
        0
    }
}

impl PanicValue for u32 {
    fn on_panic() -> Self {
        0
    }
}

impl PanicValue for i32 {
    fn on_panic() -> Self {
        -1
    }
}

impl<T> PanicValue for *const T {
    fn on_panic() -> Self {
        std::ptr::null()
    }
}

pub(crate) fn boundary<R: PanicValue>(export: &'static str, body: impl FnOnce() -> R) -> R {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(value) => value,
        Err(payload) => {
            let what = crate::sync::fault::panic_message(&*payload);
            ::log::error!("{export}: internal panic: {what}");
            set_last_error(export, mr_status::MR_PANIC, format!("internal panic: {what}").into(), 0);
            R::on_panic()
        }
    }
}

/// Runs an export body returning `Result<(), Error>` inside the boundary
/// and turns the error into a status plus last-error message.
macro_rules! ffi_status {
    ($export:literal, $body:block) => {
        $crate::ffi::panic::boundary($export, || -> $crate::ffi::mr_status {
            let result: $crate::error::Result<()> = (|| $body)();
            $crate::ffi::error::status_of($export, result)
        })
    };
}

/// Runs an export body returning a plain value inside the boundary.
macro_rules! ffi_value {
    ($export:literal, $body:block) => {
        $crate::ffi::panic::boundary($export, || $body)
    };
}
