//! Pointer-to-handle casting and argument checks, done once here so every
//! export reads the same way and every NULL gets the same clear error.

use crate::error::{Error, Result};
use std::ffi::CStr;
use std::os::raw::c_char;

/// Links an opaque C handle type to the Rust value behind it.
pub(crate) trait Castable {
    type Rust;
    const NAME: &'static str;
}

/// The Rust value behind a handle pointer, or InvalidArgument for NULL.
pub(crate) fn try_ref<'a, C: Castable>(ptr: *const C) -> Result<&'a C::Rust> {
    if ptr.is_null() {
        return Err(Error::invalid(format!("{} handle is NULL", C::NAME)));
    }
    // SAFETY: non-NULL handle pointers come from `into_handle` (a leaked Box)
    // and stay valid until the matching free; use after free is the caller's bug.
    Ok(unsafe { &*(ptr as *const C::Rust) })
}

pub(crate) fn into_handle<C: Castable>(value: C::Rust) -> *mut C {
    Box::into_raw(Box::new(value)) as *mut C
}

/// Releases a handle made by `into_handle`; NULL is a no-op.
pub(crate) fn free_handle<C: Castable>(ptr: *mut C) -> Option<Box<C::Rust>> {
    if ptr.is_null() {
        return None;
    }
    // SAFETY: as in `try_ref`; the caller gives up the pointer here.
    Some(unsafe { Box::from_raw(ptr as *mut C::Rust) })
}

/// A writable out-parameter, or InvalidArgument for NULL.
pub(crate) fn try_out<'a, T>(ptr: *mut T, name: &str) -> Result<&'a mut T> {
    if ptr.is_null() {
        return Err(Error::invalid(format!("out parameter {name} is NULL")));
    }
    // SAFETY: non-NULL; the caller promises it points to a writable T.
    Ok(unsafe { &mut *ptr })
}

/// A readable in-parameter, or InvalidArgument for NULL.
pub(crate) fn try_in<'a, T>(ptr: *const T, name: &str) -> Result<&'a T> {
    if ptr.is_null() {
        return Err(Error::invalid(format!("{name} is NULL")));
    }
    // SAFETY: non-NULL; the caller promises it points to a readable T.
    Ok(unsafe { &*ptr })
}

/// A NUL-terminated UTF-8 string argument.
pub(crate) fn try_str<'a>(ptr: *const c_char, name: &str) -> Result<&'a str> {
    if ptr.is_null() {
        return Err(Error::invalid(format!("{name} is NULL")));
    }
    // SAFETY: non-NULL; the caller promises a NUL-terminated string.
    let bytes = unsafe { CStr::from_ptr(ptr) };
    bytes.to_str().map_err(|e| Error::invalid(format!("{name} is not valid UTF-8: {e}")))
}

/// `n` elements at `ptr`; NULL is accepted only when `n == 0`.
pub(crate) fn try_slice<'a, T>(ptr: *const T, n: usize, name: &str) -> Result<&'a [T]> {
    if n == 0 {
        return Ok(&[]);
    }
    if ptr.is_null() {
        return Err(Error::invalid(format!("{name} is NULL with n = {n}")));
    }
    // SAFETY: non-NULL; the caller promises `n` readable elements.
    Ok(unsafe { std::slice::from_raw_parts(ptr, n) })
}

pub(crate) fn try_slice_mut<'a, T>(ptr: *mut T, n: usize, name: &str) -> Result<&'a mut [T]> {
    if n == 0 {
        return Ok(&mut []);
    }
    if ptr.is_null() {
        return Err(Error::invalid(format!("{name} is NULL with n = {n}")));
    }
    // SAFETY: non-NULL; the caller promises `n` writable elements, not aliased during the call.
    Ok(unsafe { std::slice::from_raw_parts_mut(ptr, n) })
}

/// `try_slice` for a batch call: `n` must be at least 1.
pub(crate) fn try_batch<'a, T>(ptr: *const T, n: usize, name: &str) -> Result<&'a [T]> {
    if n == 0 {
        return Err(Error::invalid("n is 0"));
    }
    try_slice(ptr, n, name)
}

/// `try_slice_mut` for a batch call: `n` must be at least 1.
pub(crate) fn try_batch_mut<'a, T>(ptr: *mut T, n: usize, name: &str) -> Result<&'a mut [T]> {
    if n == 0 {
        return Err(Error::invalid("n is 0"));
    }
    try_slice_mut(ptr, n, name)
}

/// Writes `text` NUL-terminated into `buf` of `cap` bytes; `len` gets the
/// full length. BufferTooSmall (with `len` set) if it does not fit.
pub(crate) fn write_c_string(text: &str, buf: *mut c_char, cap: usize, len: *mut usize) -> Result<()> {
    if !len.is_null() {
        // SAFETY: non-NULL; the caller promises a writable size_t.
        unsafe { *len = text.len() };
    }
    if buf.is_null() {
        return Err(Error::invalid("buf is NULL"));
    }
    if text.len() + 1 > cap {
        return Err(Error::new(
            crate::error::ErrorKind::BufferTooSmall,
            format!("{} bytes plus NUL do not fit in a buffer of {cap}", text.len()),
        ));
    }
    // SAFETY: `buf` has `cap` >= len + 1 writable bytes (checked above).
    unsafe {
        std::ptr::copy_nonoverlapping(text.as_ptr(), buf.cast::<u8>(), text.len());
        *buf.add(text.len()) = 0;
    }
    Ok(())
}

/// Checks a versioned options struct filled by its `*_init` function: the
/// size the caller compiled against, and that only known flag bits are set.
pub(crate) fn check_options(name: &str, struct_size: u32, expected: usize, flags: u32, known: u32) -> Result<()> {
    if struct_size as usize != expected {
        return Err(Error::invalid(format!(
            "{name}.struct_size is {struct_size} but this library's {name} is {expected} bytes: fill it with {name}_init"
        )));
    }
    if flags & !known != 0 {
        return Err(Error::invalid(format!("{name}.flags has unknown bits {:#x}", flags & !known)));
    }
    Ok(())
}
