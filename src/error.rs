//! The error type every safe module returns; `ffi::error` maps it to `mr_status`.

use std::borrow::Cow;
use std::fmt;

/// What went wrong, in the categories the C ABI exposes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    InvalidArgument,
    Closed,
    Timeout,
    WouldBlock,
    Io,
    Unsupported,
    NotFound,
    Parse,
    BufferTooSmall,
    State,
    UpToDate,
    NoMemory,
    /// A library thread panicked (a bug); the handle is shut down.
    Panic,
    /// A peer failed authentication (wrong or missing key, a frame that
    /// does not verify, a replayed frame).
    Auth,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub kind: ErrorKind,
    /// Static for the common, hot outcomes (would-block, timeout, closed) so
    /// that returning them allocates nothing.
    pub message: Cow<'static, str>,
    /// errno for `ErrorKind::Io` (and some `Unsupported`), 0 otherwise.
    pub os_error: i32,
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<Cow<'static, str>>) -> Self {
        Error { kind, message: message.into(), os_error: 0 }
    }

    pub fn invalid(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorKind::InvalidArgument, message)
    }

    pub fn closed(message: &'static str) -> Self {
        Self::new(ErrorKind::Closed, message)
    }

    /// An OS error; `context` says which operation failed.
    pub fn os(context: &str, errno: i32) -> Self {
        let text = std::io::Error::from_raw_os_error(errno);
        Error { kind: ErrorKind::Io, message: format!("{context}: {text}").into(), os_error: errno }
    }

    pub fn from_io(context: &str, err: &std::io::Error) -> Self {
        match err.raw_os_error() {
            Some(errno) => Self::os(context, errno),
            None => Error { kind: ErrorKind::Io, message: format!("{context}: {err}").into(), os_error: 0 },
        }
    }

    pub fn with_kind(mut self, kind: ErrorKind) -> Self {
        self.kind = kind;
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}
