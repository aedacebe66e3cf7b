//! `mr_bytes`: library-owned memory handed to the host.

/// Bytes the library allocated and the caller now owns. Release with
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
        let boxed = data.into_boxed_slice();
        let len = boxed.len();
        mr_bytes { ptr: Box::into_raw(boxed) as *const u8, len }
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
            let slice = std::ptr::slice_from_raw_parts_mut(b.ptr as *mut u8, b.len);
            // SAFETY: ptr/len came from `from_vec` (a leaked Box<[u8]>) and are
            // released exactly once because we reset them below.
            drop(unsafe { Box::from_raw(slice) });
        }
        b.ptr = std::ptr::null();
        b.len = 0;
    })
}
