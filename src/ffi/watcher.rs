//! `mr_watcher`: one watch session on an `mr_bus`.

use super::bytes::mr_bytes;
use super::error::{mr_status, value_or};
use super::ffi::{free_handle, try_out, try_ref, Castable};
use crate::bus::Watcher;
use crate::sync::Wait;
use std::os::raw::c_int;

/// A watch session handle. One thread at a time should call
/// `mr_watcher_next`; `mr_watcher_close` may come from any thread.
pub struct mr_watcher {
    _opaque: [u8; 0],
}

impl Castable for mr_watcher {
    type Rust = Watcher;
    const NAME: &'static str = "mr_watcher";
}

/// The next `ipn.Notify`-shaped JSON message. On MR_OK `*notify_json` holds
/// bytes the caller releases with `mr_bytes_free`; otherwise it is
/// {NULL, 0}. MR_WOULD_BLOCK (timeout_ms == 0, nothing ready), MR_TIMEOUT,
/// MR_CLOSED (watcher or bus closed, also while this call waits). Blocks per
/// `timeout_ms`: < 0 forever, 0 never, > 0 at most that long.
#[no_mangle]
pub extern "C" fn mr_watcher_next(w: *mut mr_watcher, timeout_ms: i32, notify_json: *mut mr_bytes) -> mr_status {
    ffi_status!("mr_watcher_next", {
        let out = try_out(notify_json, "notify_json")?;
        *out = mr_bytes::from_vec(Vec::new());
        let message = try_ref(w)?.next(Wait::from_ms(timeout_ms))?;
        *out = mr_bytes::from_vec(message.to_vec());
        Ok(())
    })
}

/// A file descriptor that polls readable while a message is waiting: when
/// it is readable, call `mr_watcher_next` with timeout 0 until
/// MR_WOULD_BLOCK (which clears it). After close it stays readable and
/// `mr_watcher_next` returns MR_CLOSED. Owned by the handle: never read,
/// write or close it; valid until `mr_watcher_free`. -1 if `w` is NULL.
#[no_mangle]
pub extern "C" fn mr_watcher_fd(w: *const mr_watcher) -> c_int {
    super::panic::boundary("mr_watcher_fd", || value_or("mr_watcher_fd", try_ref(w).map(|w| w.ready_fd()), -1))
}

/// Ends the session: a blocked `mr_watcher_next` returns MR_CLOSED, pending
/// messages are dropped. Idempotent; any thread. The handle stays allocated
/// until `mr_watcher_free`.
#[no_mangle]
pub extern "C" fn mr_watcher_close(w: *mut mr_watcher) -> mr_status {
    ffi_status!("mr_watcher_close", {
        try_ref(w)?.close();
        Ok(())
    })
}

/// Closes (if needed) and releases the watcher. NULL is a no-op. No other
/// thread may be using `w` or call with it afterwards.
#[no_mangle]
pub extern "C" fn mr_watcher_free(w: *mut mr_watcher) {
    ffi_value!("mr_watcher_free", {
        drop(free_handle(w));
    })
}
