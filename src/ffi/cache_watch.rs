//! `mr_cache_watch_h`: one SOTW or delta watch on an `mr_cache`.

use super::bytes::mr_bytes;
use super::error::{mr_status, value_or};
use super::ffi::{free_handle, try_out, try_ref, Castable};
use crate::cache::CacheWatch;
use crate::sync::Wait;
use std::os::raw::c_int;

/// A watch handle (made by `mr_cache_watch` / `mr_cache_delta_watch`). It
/// delivers at most one response. One thread at a time should call
/// `mr_cache_watch_next`; `mr_cache_watch_close` may come from any thread.
pub struct mr_cache_watch_h {
    _opaque: [u8; 0],
}

impl Castable for mr_cache_watch_h {
    type Rust = CacheWatch;
    const NAME: &'static str = "mr_cache_watch_h";
}

/// The watch's response. On MR_OK `*response` holds bytes the caller
/// releases with `mr_bytes_free`; otherwise {NULL, 0}. MR_WOULD_BLOCK
/// (timeout_ms == 0, no response yet), MR_TIMEOUT, MR_CLOSED (the watch was
/// closed, its node cleared, its cache closed or freed, also while this call
/// waits; and after the one response was taken: open a new watch with the
/// response's next state).
///
/// Encoding (little-endian; u32 lengths; str = u32 length + UTF-8 bytes, no
/// NUL; blob = u32 length + bytes):
///   magic "MRX1" (4 bytes); kind u8 (1 = SOTW/fetch, 2 = delta);
///   flags u8 (bit 0 = heartbeat; bit 1 = next state kept in the library,
///   see `mr_cache_delta_watch_after`: the next-state count is then 0);
///   reserved u16 (0);
///   version str (SOTW: version_info; delta: system_version_info);
///   type_url str;
///   u32 count, then per resource (sorted by name): name str,
///     version str (content hash), ttl_ms i64 (-1 = no TTL), bytes blob;
///   u32 count, then removed names (delta), str each;
///   u32 count, then next-state entries (sorted): name str, version str.
/// The next state is what the stream passes as `known` in its next watch:
/// SOTW = resources returned so far (go-control-plane ReturnedResources),
/// delta = the next version map. The bytes are read-only and may be shared
/// with other watches' `mr_bytes` (the same answer to the same question);
/// release them with `mr_bytes_free` as always. The watch keeps the
/// response it gave until `mr_cache_watch_free`, for
/// `mr_cache_delta_watch_after`.
#[no_mangle]
pub extern "C" fn mr_cache_watch_next(w: *mut mr_cache_watch_h, timeout_ms: i32, response: *mut mr_bytes) -> mr_status {
    ffi_status!("mr_cache_watch_next", {
        let out = try_out(response, "response")?;
        *out = mr_bytes::from_vec(Vec::new());
        *out = mr_bytes::shared(try_ref(w)?.next(Wait::from_ms(timeout_ms))?.encoded());
        Ok(())
    })
}

/// A file descriptor that polls readable once `mr_cache_watch_next` would
/// not block (a response is waiting, or the watch is closed). Owned by the
/// handle: never read, write or close it; valid until `mr_cache_watch_free`.
/// Made on the first call, so watches whose fd is never asked for cost no
/// descriptor. -1 if `w` is NULL or no fd could be made (see mr_last_error).
#[no_mangle]
pub extern "C" fn mr_cache_watch_fd(w: *const mr_cache_watch_h) -> c_int {
    super::panic::boundary("mr_cache_watch_fd", || value_or("mr_cache_watch_fd", try_ref(w).and_then(|w| w.ready_fd()), -1))
}

/// 1 if the cache dropped the watch unanswered under the ADS rule (ADS
/// mode, and the watch names only some of its type's resources), as
/// go-control-plane drops it: `mr_cache_watch_next` then returns MR_CLOSED
/// and the client is expected to ask again. 0 otherwise (for NULL too,
/// with the reason in mr_last_error).
#[no_mangle]
pub extern "C" fn mr_cache_watch_dropped(w: *const mr_cache_watch_h) -> c_int {
    super::panic::boundary("mr_cache_watch_dropped", || {
        value_or("mr_cache_watch_dropped", try_ref(w).map(|w| w.is_dropped() as c_int), 0)
    })
}

/// 1 while the watch waits for its answer (`mr_cache_watch_next` with
/// timeout 0 would return MR_WOULD_BLOCK), 0 once it has one or has ended
/// (also for NULL). Sets no error: a cheap check right after
/// `mr_cache_watch` of whether it was answered at once.
#[no_mangle]
pub extern "C" fn mr_cache_watch_pending(w: *const mr_cache_watch_h) -> c_int {
    super::panic::boundary("mr_cache_watch_pending", || try_ref(w).map(|w| w.is_waiting() as c_int).unwrap_or(0))
}

/// Cancels the watch (go-control-plane's cancel func): it leaves the cache,
/// a blocked `mr_cache_watch_next` returns MR_CLOSED, an undelivered
/// response is dropped. Idempotent (closing twice is MR_OK); any thread.
/// The handle stays allocated until `mr_cache_watch_free`.
#[no_mangle]
pub extern "C" fn mr_cache_watch_close(w: *mut mr_cache_watch_h) -> mr_status {
    ffi_status!("mr_cache_watch_close", {
        try_ref(w)?.close();
        Ok(())
    })
}

/// Cancels (if needed) and releases the watch. NULL is a no-op. It may
/// outlive its cache. No other thread may be using `w` or call with it
/// afterwards.
#[no_mangle]
pub extern "C" fn mr_cache_watch_free(w: *mut mr_cache_watch_h) {
    ffi_value!("mr_cache_watch_free", {
        drop(free_handle(w));
    })
}
