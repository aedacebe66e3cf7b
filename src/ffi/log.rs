//! Logging: env_logger filters, output to stderr or to a host callback.

use super::error::mr_status;
use super::ffi::try_str;
use super::userdata::Userdata;
use once_cell::sync::OnceCell;
use std::ffi::CString;
use std::os::raw::{c_char, c_void};
use std::sync::RwLock;

/// Log levels passed to a log callback.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(non_camel_case_types)]
pub enum mr_log_level {
    MR_LOG_ERROR = 1,
    MR_LOG_WARN = 2,
    MR_LOG_INFO = 3,
    MR_LOG_DEBUG = 4,
    MR_LOG_TRACE = 5,
}

/// Receives one log record. `target` (the Rust module) and `message` are
/// NUL-terminated and valid only during the call. Runs on whichever thread
/// logged (any thread that called into meshring); it must not call back into
/// meshring's logging functions.
pub type mr_log_callback = Option<unsafe extern "C" fn(userdata: *mut c_void, level: mr_log_level, target: *const c_char, message: *const c_char)>;

struct HostLogger {
    filter: RwLock<env_logger::Logger>,
    callback: RwLock<Option<(unsafe extern "C" fn(*mut c_void, mr_log_level, *const c_char, *const c_char), Userdata)>>,
}

/// A logger for `spec`, checked first: env_logger would print a warning
/// to stderr for a bad spec and go on, and the library writes nothing to
/// stderr that the host did not ask for.
fn build_filter(spec: &str) -> crate::error::Result<env_logger::Logger> {
    env_filter::Builder::new()
        .try_parse(spec)
        .map_err(|e| crate::error::Error::invalid(format!("log filter {spec:?}: {e}")))?;
    Ok(env_logger::Builder::new().parse_filters(spec).build())
}

/// The spec `mr_log_init(NULL)` uses: `MESHRING_LOG`, or "warn".
fn env_spec() -> String {
    std::env::var("MESHRING_LOG").unwrap_or_else(|_| "warn".into())
}

fn logger() -> &'static HostLogger {
    static LOGGER: OnceCell<&'static HostLogger> = OnceCell::new();
    LOGGER.get_or_init(|| {
        // A bad MESHRING_LOG falls back to "warn" here; mr_log_init(NULL)
        // reports it.
        let filter = build_filter(&env_spec()).or_else(|_| build_filter("warn")).expect("\"warn\" is a valid filter");
        let host: &'static HostLogger = Box::leak(Box::new(HostLogger { filter: RwLock::new(filter), callback: RwLock::new(None) }));
        if log::set_logger(host).is_ok() {
            log::set_max_level(host.filter.read().map(|f| f.filter()).unwrap_or(log::LevelFilter::Warn));
        }
        host
    })
}

impl log::Log for HostLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        self.filter.read().map(|f| f.enabled(metadata)).unwrap_or(false)
    }

    fn log(&self, record: &log::Record<'_>) {
        let Ok(filter) = self.filter.read() else { return };
        if !filter.matches(record) {
            return;
        }
        let callback = self.callback.read().ok().and_then(|c| *c);
        match callback {
            None => filter.log(record),
            Some((cb, userdata)) => {
                let level = match record.level() {
                    log::Level::Error => mr_log_level::MR_LOG_ERROR,
                    log::Level::Warn => mr_log_level::MR_LOG_WARN,
                    log::Level::Info => mr_log_level::MR_LOG_INFO,
                    log::Level::Debug => mr_log_level::MR_LOG_DEBUG,
                    log::Level::Trace => mr_log_level::MR_LOG_TRACE,
                };
                let target = CString::new(record.target().replace('\0', "")).unwrap_or_default();
                let message = CString::new(record.args().to_string().replace('\0', "")).unwrap_or_default();
                // SAFETY: the host registered `cb` for exactly this signature; the
                // strings live until it returns.
                unsafe { cb(userdata.0, level, target.as_ptr(), message.as_ptr()) };
            }
        }
    }

    fn flush(&self) {}
}

/// Sets the log filter, in env_logger syntax ("warn", "meshring=debug",
/// "info,meshring::uring=trace"). NULL reads `MESHRING_LOG` (default "warn").
/// May be called again to change the filter. Records go to stderr unless a
/// callback is set with `mr_log_set_callback`. MR_INVALID_ARGUMENT (filter
/// unchanged) for a filter env_logger cannot parse, with the reason.
///
/// The library writes nothing to stdout or stderr unless the host asks for
/// it: until this is called, records are dropped (or go to the callback).
#[no_mangle]
pub extern "C" fn mr_log_init(filter: *const c_char) -> mr_status {
    ffi_status!("mr_log_init", {
        let spec = if filter.is_null() { env_spec() } else { try_str(filter, "filter")?.to_string() };
        let built = build_filter(&spec)?;
        let host = logger();
        log::set_max_level(built.filter());
        if let Ok(mut f) = host.filter.write() {
            *f = built;
        }
        Ok(())
    })
}

/// Routes log records to `cb` (with `userdata` passed back as its first
/// argument) instead of stderr; NULL restores stderr. The library keeps
/// `userdata` until the callback is replaced; it never frees it.
#[no_mangle]
pub extern "C" fn mr_log_set_callback(cb: mr_log_callback, userdata: *mut c_void) -> mr_status {
    ffi_status!("mr_log_set_callback", {
        let host = logger();
        if let Ok(mut c) = host.callback.write() {
            *c = cb.map(|cb| (cb, Userdata(userdata)));
        }
        Ok(())
    })
}
