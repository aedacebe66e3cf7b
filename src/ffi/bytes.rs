//! `mr_bytes`: library-owned memory handed to the host.
//!
//! Every `mr_bytes` is one reference to an immutable, reference-counted
//! buffer (`Arc<[u8]>`): the library can hand the same bytes to many
//! callers (one xDS answer to every watch that asked the same) without a
//! copy each, and `mr_bytes_free` drops one reference.

use std::sync::Arc;

/// Bytes the library allocated and the caller now owns (read-only: the
/// same bytes may be shared with other `mr_bytes`). Release with
/// `mr_bytes_free`; do not `free()` it. `ptr` is NULL when `len` is 0.
#[repr(C)]
#[derive(Debug)]
pub struct mr_bytes {
    pub ptr: *const u8,
    pub len: usize,
}

impl mr_bytes {
    /// Hands `data` to the caller.
    pub(crate) fn from_vec(data: Vec<u8>) -> Self {
        if data.is_empty() {
            return mr_bytes { ptr: std::ptr::null(), len: 0 };
        }
        Self::shared(&Arc::from(data))
    }

    /// Hands the caller one more reference to `data` (no copy).
    pub(crate) fn shared(data: &Arc<[u8]>) -> Self {
        if data.is_empty() {
            return mr_bytes { ptr: std::ptr::null(), len: 0 };
        }
        let len = data.len();
        mr_bytes { ptr: Arc::into_raw(data.clone()) as *const u8, len }
    }
}

/// Releases memory the library returned in `*b` and sets it to {NULL, 0}.
/// NULL `b`, or a `b` already released, is a no-op.
#[no_mangle]
pub extern "C" fn mr_bytes_free(b: *mut mr_bytes) {
    ffi_value!("mr_bytes_free", {
        if b.is_null() {
            return;
        }
        // SAFETY: non-NULL; the caller passes an mr_bytes the library filled.
        let b = unsafe { &mut *b };
        if !b.ptr.is_null() && b.len > 0 {
            let slice = std::ptr::slice_from_raw_parts(b.ptr, b.len);
            // SAFETY: ptr/len came from `shared` (Arc::into_raw of an
            // Arc<[u8]> of len bytes) and this reference is dropped exactly
            // once because we reset them below.
            drop(unsafe { Arc::from_raw(slice) });
        }
        b.ptr = std::ptr::null();
        b.len = 0;
    })
}
