//! Host-defined protocol kinds (`mr_proto_vtable`), the route passed to
//! their `export_route`, and the calls a protocol makes back into its
//! runtime (`mr_proto_notify_state`, `mr_proto_import`, `mr_proto_withdraw`).

use super::error::mr_status;
use super::ffi::{try_ref, try_str};
use super::runtime::mr_runtime;
use super::userdata::Userdata;
use crate::error::{Error, Result};
use crate::lifecycle::{Api, Export, Kind, ProtoConfig, ProtoState};
use std::ffi::CString;
use std::os::raw::{c_char, c_void};
use std::sync::atomic::{AtomicBool, Ordering};

/// Protocol state (BIRD's proto_state) `down`: not running. States are
/// passed as `uint32_t` holding one of the MR_PROTO_* values.
pub const MR_PROTO_DOWN: u32 = 0;
/// Protocol state `start`: starting; report MR_PROTO_UP (or MR_PROTO_DOWN
/// on failure) later.
pub const MR_PROTO_START: u32 = 1;
/// Protocol state `up`: running; the runtime feeds it the table, then
/// exports best-route changes (coalesced per prefix, see
/// `mr_proto_export_fn`).
pub const MR_PROTO_UP: u32 = 2;
/// Protocol state `stop`: stopping; report MR_PROTO_DOWN later.
pub const MR_PROTO_STOP: u32 = 3;

pub(crate) fn state_from(value: u32) -> Result<ProtoState> {
    match value {
        MR_PROTO_DOWN => Ok(ProtoState::Down),
        MR_PROTO_START => Ok(ProtoState::Start),
        MR_PROTO_UP => Ok(ProtoState::Up),
        MR_PROTO_STOP => Ok(ProtoState::Stop),
        other => Err(Error::invalid(format!("state {other} is not an MR_PROTO_* value"))),
    }
}

/// One best-route change sent to a protocol. Every pointer is valid only
/// during the `export_route` call.
#[repr(C)]
#[derive(Debug)]
pub struct mr_route {
    /// The table the change happened in.
    pub table: *const c_char,
    /// "10.0.0.0/8", "fd7a:115c:a1e0::/48".
    pub prefix: *const c_char,
    /// The protocol that imported the route.
    pub proto: *const c_char,
    pub preference: u32,
    /// The route's attributes, a JSON object.
    pub attrs_json: *const c_char,
    /// true: the protocol no longer has a route to `prefix` (the other
    /// fields describe the route that went).
    pub withdrawn: bool,
}

/// `mr_proto_vtable.start`: bring `proto` up with its `config` member (JSON
/// text, "null" when absent). Return MR_PROTO_UP when running,
/// MR_PROTO_START to report MR_PROTO_UP later with `mr_proto_notify_state`,
/// or MR_PROTO_DOWN on failure (counted by the restart limit).
pub type mr_proto_start_fn = Option<unsafe extern "C" fn(userdata: *mut c_void, rt: *mut mr_runtime, proto: *const c_char, config_json: *const c_char) -> u32>;

/// `mr_proto_vtable.shutdown`: take `proto` down. Return MR_PROTO_DOWN when
/// done or MR_PROTO_STOP to report MR_PROTO_DOWN later. Its routes are
/// flushed by the runtime either way.
pub type mr_proto_shutdown_fn = Option<unsafe extern "C" fn(userdata: *mut c_void, rt: *mut mr_runtime, proto: *const c_char) -> u32>;

/// `mr_proto_vtable.reconfigure`: a commit changed only `proto`'s own
/// `config`. Return true if it switched in place, false to be restarted
/// with the new one.
pub type mr_proto_reconfigure_fn = Option<
    unsafe extern "C" fn(userdata: *mut c_void, rt: *mut mr_runtime, proto: *const c_char, old_config_json: *const c_char, new_config_json: *const c_char) -> bool,
>;

/// `mr_proto_vtable.export_route`: a best-route change in `proto`'s table
/// (never one of its own routes): during the feed every route once, then
/// the changes. Changes to one prefix that pile up before the export runs
/// are coalesced: only the latest state is exported (a withdrawal names
/// the route the protocol was last given), and a route added and removed
/// again in between is not exported at all, so the protocol always ends
/// with the current table. Exports for different prefixes keep the order
/// of their first pending change. `*route` is valid only during the call.
pub type mr_proto_export_fn = Option<unsafe extern "C" fn(userdata: *mut c_void, rt: *mut mr_runtime, proto: *const c_char, route: *const mr_route)>;

/// `mr_proto_vtable.free_userdata`: releases the kind's userdata.
pub type mr_proto_free_fn = Option<unsafe extern "C" fn(userdata: *mut c_void)>;

/// A host-defined protocol kind. Every callback runs on the runtime's loop
/// thread, one at a time for the whole runtime (never concurrently), and
/// may call back into the runtime (`mr_proto_import`,
/// `mr_proto_notify_state`, `mr_runtime_show_*`, `mr_runtime_commit`, ...)
/// except `mr_runtime_free`. Strings are valid only during the call. `rt`
/// is the runtime the kind was registered on.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct mr_proto_vtable {
    /// Required.
    pub start: mr_proto_start_fn,
    /// Required.
    pub shutdown: mr_proto_shutdown_fn,
    /// Required.
    pub reconfigure: mr_proto_reconfigure_fn,
    /// Required.
    pub export_route: mr_proto_export_fn,
    /// Optional (NULL: nothing to release). Called once, on the loop
    /// thread, when the runtime is closed (before `mr_runtime_close`
    /// returns, unless that was called from a callback); never if
    /// registration failed.
    pub free_userdata: mr_proto_free_fn,
}

type StartFn = unsafe extern "C" fn(*mut c_void, *mut mr_runtime, *const c_char, *const c_char) -> u32;
type ShutdownFn = unsafe extern "C" fn(*mut c_void, *mut mr_runtime, *const c_char) -> u32;
type ReconfigureFn = unsafe extern "C" fn(*mut c_void, *mut mr_runtime, *const c_char, *const c_char, *const c_char) -> bool;
type ExportFn = unsafe extern "C" fn(*mut c_void, *mut mr_runtime, *const c_char, *const mr_route);

/// A kind implemented by the host through a vtable.
pub(crate) struct HostKind {
    start: StartFn,
    shutdown: ShutdownFn,
    reconfigure: ReconfigureFn,
    export: ExportFn,
    free_userdata: Option<unsafe extern "C" fn(*mut c_void)>,
    userdata: Userdata,
    /// Set once registered: only then is `free_userdata` ours to call.
    owned: AtomicBool,
    /// The `mr_runtime` handle, valid while any callback can run (free
    /// joins the loop thread first).
    rt: usize,
}

/// Names and JSON handed to callbacks: validated text without NUL bytes.
fn c_text(text: &str) -> CString {
    CString::new(text).unwrap_or_default()
}

impl HostKind {
    pub(crate) fn new(vt: &mr_proto_vtable, userdata: *mut c_void, rt: *mut mr_runtime) -> Result<HostKind> {
        let missing = |what: &str| Error::invalid(format!("mr_proto_vtable.{what} is NULL"));
        Ok(HostKind {
            start: vt.start.ok_or_else(|| missing("start"))?,
            shutdown: vt.shutdown.ok_or_else(|| missing("shutdown"))?,
            reconfigure: vt.reconfigure.ok_or_else(|| missing("reconfigure"))?,
            export: vt.export_route.ok_or_else(|| missing("export_route"))?,
            free_userdata: vt.free_userdata,
            userdata: Userdata(userdata),
            owned: AtomicBool::new(false),
            rt: rt as usize,
        })
    }

    pub(crate) fn take_ownership(&self) {
        self.owned.store(true, Ordering::Release);
    }

    fn rt(&self) -> *mut mr_runtime {
        self.rt as *mut mr_runtime
    }

    fn answer(proto: &str, hook: &str, value: u32) -> ProtoState {
        state_from(value).unwrap_or_else(|e| {
            log::warn!("{hook} of protocol {proto}: {e}; taken as MR_PROTO_DOWN");
            ProtoState::Down
        })
    }
}

impl Kind for HostKind {
    fn start(&self, _api: &Api, proto: &str, config: &ProtoConfig) -> ProtoState {
        let (name, cfg) = (c_text(proto), c_text(&config.config));
        // SAFETY: a non-NULL host function from the vtable; the strings
        // outlive the call; the host promised the userdata fits the callback.
        let value = unsafe { (self.start)(self.userdata.0, self.rt(), name.as_ptr(), cfg.as_ptr()) };
        Self::answer(proto, "start", value)
    }

    fn shutdown(&self, _api: &Api, proto: &str) -> ProtoState {
        let name = c_text(proto);
        // SAFETY: as in `start`.
        let value = unsafe { (self.shutdown)(self.userdata.0, self.rt(), name.as_ptr()) };
        Self::answer(proto, "shutdown", value)
    }

    fn reconfigure(&self, _api: &Api, proto: &str, old: &ProtoConfig, new: &ProtoConfig) -> bool {
        let (name, old, new) = (c_text(proto), c_text(&old.config), c_text(&new.config));
        // SAFETY: as in `start`.
        unsafe { (self.reconfigure)(self.userdata.0, self.rt(), name.as_ptr(), old.as_ptr(), new.as_ptr()) }
    }

    fn export(&self, _api: &Api, proto: &str, route: &Export<'_>) {
        let (name, table, prefix) = (c_text(proto), c_text(route.table), c_text(&route.prefix.to_string()));
        let (owner, attrs) = (c_text(route.owner), c_text(route.attrs));
        let r = mr_route {
            table: table.as_ptr(),
            prefix: prefix.as_ptr(),
            proto: owner.as_ptr(),
            preference: route.preference,
            attrs_json: attrs.as_ptr(),
            withdrawn: route.withdrawn,
        };
        // SAFETY: as in `start`; `r` and its strings outlive the call.
        unsafe { (self.export)(self.userdata.0, self.rt(), name.as_ptr(), &r) }
    }
}

impl Drop for HostKind {
    fn drop(&mut self) {
        if !self.owned.load(Ordering::Acquire) {
            return;
        }
        if let Some(free) = self.free_userdata {
            // SAFETY: the host's release function, called exactly once (this drop).
            unsafe { free(self.userdata.0) }
        }
    }
}

/// A protocol reports its state: MR_PROTO_UP after answering
/// MR_PROTO_START, MR_PROTO_DOWN after MR_PROTO_STOP, or a failure
/// (MR_PROTO_DOWN / MR_PROTO_STOP while the runtime wants it up: its routes
/// are flushed and it is started again, unless the restart limit disables
/// it). `info` (NULL = keep) replaces the text `show protocols` prints.
/// MR_STATE for a transition the state machine does not allow (e.g. START
/// while up) or for START/UP before the runtime started it; MR_NOT_FOUND
/// for an unknown or removed protocol; MR_INVALID_ARGUMENT for a value
/// that is not an MR_PROTO_* value. Any thread, also from a callback.
#[no_mangle]
pub extern "C" fn mr_proto_notify_state(rt: *mut mr_runtime, proto: *const c_char, state: u32, info: *const c_char) -> mr_status {
    ffi_status!("mr_proto_notify_state", {
        let rt = try_ref(rt)?;
        let proto = try_str(proto, "proto")?;
        let info = if info.is_null() { None } else { Some(try_str(info, "info")?) };
        rt.notify_state(proto, state_from(state)?, info)
    })
}

/// `proto` imports (or replaces) its route to `prefix` ("10.0.0.0/8"; host
/// bits must be zero) with `preference` (0 = the protocol's configured
/// preference) and `attrs_json` (a JSON object; NULL = {}), all copied.
/// The best route of the prefix is exported to the other protocols of the
/// table if it changed. MR_STATE unless the protocol is starting or up;
/// MR_NOT_FOUND for an unknown or removed protocol; MR_INVALID_ARGUMENT for
/// a bad prefix or attributes that are not an object; MR_PARSE for bad JSON.
#[no_mangle]
pub extern "C" fn mr_proto_import(
    rt: *mut mr_runtime,
    proto: *const c_char,
    prefix: *const c_char,
    preference: u32,
    attrs_json: *const c_char,
) -> mr_status {
    ffi_status!("mr_proto_import", {
        let rt = try_ref(rt)?;
        let (proto, prefix) = (try_str(proto, "proto")?, try_str(prefix, "prefix")?);
        let attrs = if attrs_json.is_null() { None } else { Some(try_str(attrs_json, "attrs_json")?) };
        rt.import(proto, prefix, (preference != 0).then_some(preference), attrs)
    })
}

/// `proto` withdraws its route to `prefix`. MR_NOT_FOUND if it has none (or
/// no such protocol), MR_STATE unless it is starting or up,
/// MR_INVALID_ARGUMENT for a bad prefix.
#[no_mangle]
pub extern "C" fn mr_proto_withdraw(rt: *mut mr_runtime, proto: *const c_char, prefix: *const c_char) -> mr_status {
    ffi_status!("mr_proto_withdraw", {
        let rt = try_ref(rt)?;
        rt.withdraw(try_str(proto, "proto")?, try_str(prefix, "prefix")?)
    })
}
