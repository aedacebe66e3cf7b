//! Numbered status codes and the thread-local last error.

use crate::error::{Error, ErrorKind};
use std::borrow::Cow;
use std::cell::RefCell;
use std::os::raw::{c_char, c_int};

/// The result of every fallible call. Values are fixed and never renumbered;
/// new codes are only appended.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(non_camel_case_types)]
pub enum mr_status {
    MR_OK = 0,
    MR_INVALID_ARGUMENT = 1,
    MR_CLOSED = 2,
    MR_TIMEOUT = 3,
    MR_WOULD_BLOCK = 4,
    MR_IO = 5,
    MR_UNSUPPORTED = 6,
    MR_NOT_FOUND = 7,
    MR_PARSE = 8,
    MR_BUFFER_TOO_SMALL = 9,
    MR_STATE = 10,
    MR_UP_TO_DATE = 11,
    MR_PANIC = 12,
    MR_NO_MEMORY = 13,
    MR_AUTH = 14,
}

/// The deepest nesting of arrays and objects a JSON input may have (the
/// top-level object counts as 1). Every JSON a call takes (bus updates and
/// events, options, runtime configurations, route attributes) is checked
/// first: deeper input is MR_PARSE and changes nothing, so everything the
/// library writes back stays readable by strict decoders.
pub const MR_JSON_MAX_DEPTH: u32 = 64;
const _: () = assert!(MR_JSON_MAX_DEPTH as usize == crate::json::MAX_DEPTH);

const STATUS_NAMES: [&str; 15] = [
    "MR_OK: success\0",
    "MR_INVALID_ARGUMENT: an argument is NULL, out of range or malformed\0",
    "MR_CLOSED: the handle is closed\0",
    "MR_TIMEOUT: the timeout passed first\0",
    "MR_WOULD_BLOCK: the call would have to wait (timeout 0)\0",
    "MR_IO: the operating system reported an error (see mr_last_os_error)\0",
    "MR_UNSUPPORTED: the kernel or build lacks the feature\0",
    "MR_NOT_FOUND: no such item\0",
    "MR_PARSE: the text or JSON could not be parsed\0",
    "MR_BUFFER_TOO_SMALL: the caller's buffer is too small\0",
    "MR_STATE: the call is not valid in the handle's current state\0",
    "MR_UP_TO_DATE: nothing newer than what the caller has\0",
    "MR_PANIC: internal error inside meshring (a bug; see the log)\0",
    "MR_NO_MEMORY: out of memory\0",
    "MR_AUTH: a peer failed authentication (key, frame MAC or replay)\0",
];

impl From<ErrorKind> for mr_status {
    fn from(kind: ErrorKind) -> Self {
        match kind {
            ErrorKind::InvalidArgument => mr_status::MR_INVALID_ARGUMENT,
            ErrorKind::Closed => mr_status::MR_CLOSED,
            ErrorKind::Timeout => mr_status::MR_TIMEOUT,
            ErrorKind::WouldBlock => mr_status::MR_WOULD_BLOCK,
            ErrorKind::Io => mr_status::MR_IO,
            ErrorKind::Unsupported => mr_status::MR_UNSUPPORTED,
            ErrorKind::NotFound => mr_status::MR_NOT_FOUND,
            ErrorKind::Parse => mr_status::MR_PARSE,
            ErrorKind::BufferTooSmall => mr_status::MR_BUFFER_TOO_SMALL,
            ErrorKind::State => mr_status::MR_STATE,
            ErrorKind::UpToDate => mr_status::MR_UP_TO_DATE,
            ErrorKind::NoMemory => mr_status::MR_NO_MEMORY,
            ErrorKind::Panic => mr_status::MR_PANIC,
            ErrorKind::Auth => mr_status::MR_AUTH,
        }
    }
}

/// The last failure, kept as its parts: composing "export: message" only
/// when the host asks keeps failing hot calls (timeout 0 polling) free of
/// allocation.
struct LastError {
    export: &'static str,
    message: Cow<'static, str>,
    os_error: i32,
}

impl LastError {
    const SEPARATOR: &'static str = ": ";

    fn parts(&self) -> [&[u8]; 3] {
        if self.export.is_empty() {
            return [b"", b"", self.message.as_bytes()];
        }
        [self.export.as_bytes(), Self::SEPARATOR.as_bytes(), self.message.as_bytes()]
    }
}

thread_local! {
    static LAST_ERROR: RefCell<LastError> =
        const { RefCell::new(LastError { export: "", message: Cow::Borrowed(""), os_error: 0 }) };
}

pub(crate) fn set_last_error(export: &'static str, status: mr_status, message: Cow<'static, str>, os_error: i32) {
    ::log::debug!("{export}: {status:?}: {message}");
    LAST_ERROR.with(|e| {
        let mut e = e.borrow_mut();
        e.export = export;
        e.message = message;
        if status == mr_status::MR_IO {
            e.os_error = os_error;
        }
    });
}

pub(crate) fn record(export: &'static str, error: &Error) -> mr_status {
    let status = mr_status::from(error.kind);
    set_last_error(export, status, error.message.clone(), error.os_error);
    status
}

pub(crate) fn status_of(export: &'static str, result: crate::error::Result<()>) -> mr_status {
    match result {
        Ok(()) => mr_status::MR_OK,
        Err(e) => record(export, &e),
    }
}

/// For exports that return a value rather than a status: the value, or
/// `fallback` with the error recorded for `mr_last_error`.
pub(crate) fn value_or<R>(export: &'static str, result: crate::error::Result<R>, fallback: R) -> R {
    result.unwrap_or_else(|e| {
        record(export, &e);
        fallback
    })
}

/// A static, NUL-terminated description of `status` ("MR_TIMEOUT: ...").
/// Unknown values give "unknown status". The string is owned by the library
/// and valid forever; do not free it.
#[no_mangle]
pub extern "C" fn mr_status_str(status: c_int) -> *const c_char {
    ffi_value!("mr_status_str", {
        let text: &'static str = usize::try_from(status)
            .ok()
            .and_then(|i| STATUS_NAMES.get(i))
            .copied()
            .unwrap_or("unknown status\0");
        text.as_ptr().cast::<c_char>()
    })
}

/// Copies the message of the most recent failure on the calling thread into
/// `buf` (NUL-terminated, truncated to `cap - 1` bytes) and returns the
/// message's full length in bytes, not counting the NUL. With `buf == NULL`
/// or `cap == 0` nothing is written: call once to size a buffer. The message
/// stays until the next failure on this thread; successful calls leave it.
#[no_mangle]
pub extern "C" fn mr_last_error(buf: *mut c_char, cap: usize) -> usize {
    ffi_value!("mr_last_error", {
        LAST_ERROR.with(|e| {
            let e = e.borrow();
            let parts = e.parts();
            let full: usize = parts.iter().map(|p| p.len()).sum();
            if !buf.is_null() && cap > 0 {
                let mut written = 0;
                for part in parts {
                    let n = part.len().min(cap - 1 - written);
                    // SAFETY: the caller promises `buf` has `cap` writable bytes;
                    // `written + n <= cap - 1`, leaving room for the NUL.
                    unsafe { std::ptr::copy_nonoverlapping(part.as_ptr(), buf.cast::<u8>().add(written), n) };
                    written += n;
                }
                // SAFETY: `written <= cap - 1`, inside the caller's buffer.
                unsafe { *buf.add(written) = 0 };
            }
            full
        })
    })
}

/// The `errno` behind the most recent `MR_IO` failure on the calling thread
/// (0 if there was none).
#[no_mangle]
pub extern "C" fn mr_last_os_error() -> c_int {
    ffi_value!("mr_last_os_error", { LAST_ERROR.with(|e| e.borrow().os_error) })
}
