//! `mr_runtime`: the lifecycle runtime (protocol instances, route tables,
//! config commit, enable/disable/restart, show).

use super::bus::mr_bus;
use super::bytes::mr_bytes;
use super::error::{mr_status, value_or};
use super::ffi::{free_handle, into_handle, try_in, try_out, try_ref, try_str, Castable};
use super::proto::{mr_proto_vtable, HostKind};
use crate::error::{Error, Result};
use crate::lifecycle::{Options, Runtime};
use crate::sync::Wait;
use std::os::raw::{c_char, c_int, c_void};
use std::sync::Arc;

/// A lifecycle runtime handle: BIRD-style protocol instances over route
/// tables, with one loop thread on which every protocol callback of this
/// runtime runs, one at a time. Every function is thread-safe.
pub struct mr_runtime {
    _opaque: [u8; 0],
}

impl Castable for mr_runtime {
    type Rust = Runtime;
    const NAME: &'static str = "mr_runtime";
}

/// `mr_runtime_commit` mode: reconfigure changed protocols in place where
/// they agree, restart the others, leave unchanged ones alone.
pub const MR_COMMIT_SOFT: u32 = 0;
/// `mr_runtime_commit` mode: restart every protocol that stays (BIRD's
/// forced reconfiguration).
pub const MR_COMMIT_HARD: u32 = 1;

/// Creates a runtime with the built-in kinds `static` and `netmap`, the
/// table `master`, and its loop thread. `opts_json` may be NULL for
/// defaults or hold `feed_chunk` (routes per feed/flush step, 2048) and
/// `event_backlog` (events kept for mr_runtime_next_event, 4096). On
/// success `*out` owns a handle released with `mr_runtime_free`; on failure
/// it is NULL (MR_PARSE / MR_INVALID_ARGUMENT for bad options).
#[no_mangle]
pub extern "C" fn mr_runtime_new(opts_json: *const c_char, out: *mut *mut mr_runtime) -> mr_status {
    ffi_status!("mr_runtime_new", {
        let out = try_out(out, "out")?;
        *out = std::ptr::null_mut();
        let opts = if opts_json.is_null() { None } else { Some(try_str(opts_json, "opts_json")?) };
        *out = into_handle::<mr_runtime>(Runtime::new(Options::from_json(opts)?)?);
        Ok(())
    })
}

/// Registers the protocol kind `kind` (1-64 of A-Z a-z 0-9 _ - . :) so a
/// config can name it. `*vt` is copied; `userdata` is passed to every
/// callback. On MR_OK the runtime owns `userdata` (see free_userdata); on
/// any failure it does not and calls nothing. MR_INVALID_ARGUMENT for a
/// NULL required callback, a bad or taken name (`static` and `netmap` are
/// built in); MR_CLOSED after close.
#[no_mangle]
pub extern "C" fn mr_runtime_register_kind(rt: *mut mr_runtime, kind: *const c_char, vt: *const mr_proto_vtable, userdata: *mut c_void) -> mr_status {
    ffi_status!("mr_runtime_register_kind", {
        let runtime = try_ref(rt)?;
        let name = try_str(kind, "kind")?;
        let host = Arc::new(HostKind::new(try_in(vt, "vt")?, userdata, rt)?);
        runtime.register_kind(name, host.clone())?;
        // Only a registered kind owns (and so releases) the userdata.
        host.take_ownership();
        Ok(())
    })
}

/// Installs a configuration (JSON text, borrowed for the call):
/// `{"tables":["master"], "restart_limit":{"count":5,"seconds":60},
/// "protocols":[{"name":"s1","kind":"static","preference":200,"table":"master",
/// "disabled":false,"routes":[{"prefix":"198.18.0.0/24","attrs":{}}]},
/// {"name":"nm","kind":"netmap"},{"name":"h1","kind":"myhost","config":{...}}]}`.
/// Per protocol name: same kind, table, preference and disabled but a new
/// `config`/`routes` → the protocol's reconfigure decides (in place or
/// restart); other changes → restart; absent → shut down and removed; new →
/// started. Protocols disabled by `mr_runtime_disable` stay down across
/// commits. `mode`: MR_COMMIT_SOFT or MR_COMMIT_HARD. Atomic: on MR_PARSE
/// (not JSON) or MR_INVALID_ARGUMENT (unknown kind, duplicate name, bad
/// prefix, unknown field...; mr_last_error names it) nothing changed.
/// Returns once the start/shutdown/reconfigure callbacks it caused have
/// run (at once when called from a callback). MR_CLOSED after close, and
/// also if the runtime is closed before those callbacks have all run (the
/// config is then installed but not necessarily carried out).
#[no_mangle]
pub extern "C" fn mr_runtime_commit(rt: *mut mr_runtime, config_json: *const c_char, mode: u32) -> mr_status {
    ffi_status!("mr_runtime_commit", {
        let rt = try_ref(rt)?;
        let json = try_str(config_json, "config_json")?;
        let hard = match mode {
            MR_COMMIT_SOFT => false,
            MR_COMMIT_HARD => true,
            other => return Err(Error::invalid(format!("mode {other} is not MR_COMMIT_SOFT or MR_COMMIT_HARD"))),
        };
        rt.commit(json, hard)
    })
}

fn command(rt: *mut mr_runtime, pattern: *const c_char, matched: *mut usize, run: impl FnOnce(&Runtime, &str) -> Result<usize>) -> Result<()> {
    if !matched.is_null() {
        *try_out(matched, "matched")? = 0;
    }
    let n = run(try_ref(rt)?, try_str(pattern, "pattern")?)?;
    if !matched.is_null() {
        *try_out(matched, "matched")? = n;
    }
    Ok(())
}

/// Enables the protocols whose names match `pattern` (`*` any run, `?` one
/// character) and starts them; also clears a restart-limit disable.
/// `*matched` (may be NULL) gets how many matched; MR_NOT_FOUND if none.
/// Returns once their start callbacks have run (at once from a callback);
/// MR_CLOSED after close, also if the runtime is closed before they have
/// all run (as for mr_runtime_commit; likewise for disable and restart).
#[no_mangle]
pub extern "C" fn mr_runtime_enable(rt: *mut mr_runtime, pattern: *const c_char, matched: *mut usize) -> mr_status {
    ffi_status!("mr_runtime_enable", {
        command(rt, pattern, matched, |r, p| r.enable(p))?;
        Ok(())
    })
}

/// Disables the matching protocols: they are shut down, their routes
/// flushed, and they stay down (also across commits) until enabled.
/// `*matched` and MR_NOT_FOUND as for mr_runtime_enable.
#[no_mangle]
pub extern "C" fn mr_runtime_disable(rt: *mut mr_runtime, pattern: *const c_char, matched: *mut usize) -> mr_status {
    ffi_status!("mr_runtime_disable", {
        command(rt, pattern, matched, |r, p| r.disable(p))?;
        Ok(())
    })
}

/// Restarts the matching enabled protocols (shut down, flushed, started
/// again). `*matched` and MR_NOT_FOUND as for mr_runtime_enable.
#[no_mangle]
pub extern "C" fn mr_runtime_restart(rt: *mut mr_runtime, pattern: *const c_char, matched: *mut usize) -> mr_status {
    ffi_status!("mr_runtime_restart", {
        command(rt, pattern, matched, |r, p| r.restart(p))?;
        Ok(())
    })
}

/// `show protocols`: a JSON array, by name, of {"name","kind","table",
/// "state" (down/start/feed/up/stop/flush), "proto_state", "core_state"
/// (hungry/feeding/happy/flushing), "since_ms" (Unix ms of the last
/// change), "info", "disabled", "preference", "routes"}. `*json` holds bytes
/// the caller releases with `mr_bytes_free` ({NULL,0} on failure).
#[no_mangle]
pub extern "C" fn mr_runtime_show_protocols(rt: *mut mr_runtime, json: *mut mr_bytes) -> mr_status {
    ffi_status!("mr_runtime_show_protocols", {
        let out = try_out(json, "json")?;
        *out = mr_bytes::from_vec(Vec::new());
        *out = mr_bytes::from_vec(try_ref(rt)?.show_protocols()?);
        Ok(())
    })
}

/// `show route`: {"routes":[{"table","prefix","proto","preference","best",
/// "attrs"}...]}, every candidate route in prefix order, best first.
/// `prefix_filter` (NULL = all) keeps prefixes equal to or inside it;
/// `proto_filter` (NULL = all; a glob) keeps routes of matching protocols.
/// `*json` as for mr_runtime_show_protocols. MR_INVALID_ARGUMENT for a bad
/// prefix filter.
#[no_mangle]
pub extern "C" fn mr_runtime_show_route(rt: *mut mr_runtime, prefix_filter: *const c_char, proto_filter: *const c_char, json: *mut mr_bytes) -> mr_status {
    ffi_status!("mr_runtime_show_route", {
        let out = try_out(json, "json")?;
        *out = mr_bytes::from_vec(Vec::new());
        let prefix = if prefix_filter.is_null() { None } else { Some(try_str(prefix_filter, "prefix_filter")?) };
        let proto = if proto_filter.is_null() { None } else { Some(try_str(proto_filter, "proto_filter")?) };
        *out = mr_bytes::from_vec(try_ref(rt)?.show_route(prefix, proto)?);
        Ok(())
    })
}

/// The next state-change event, `{"Protocol":{...}}` with the fields of a
/// show-protocols element (or {"name","state":"removed"} when a commit
/// removed the protocol). `*json` as for mr_runtime_show_protocols.
/// Blocks per `timeout_ms`: < 0 forever, 0 never (MR_WOULD_BLOCK), > 0 at
/// most that long (MR_TIMEOUT). MR_CLOSED after close (also while waiting).
/// The oldest events are dropped beyond `event_backlog` unread ones.
#[no_mangle]
pub extern "C" fn mr_runtime_next_event(rt: *mut mr_runtime, timeout_ms: i32, json: *mut mr_bytes) -> mr_status {
    ffi_status!("mr_runtime_next_event", {
        let out = try_out(json, "json")?;
        *out = mr_bytes::from_vec(Vec::new());
        let event = try_ref(rt)?.next_event(Wait::from_ms(timeout_ms))?;
        *out = mr_bytes::from_vec(event.to_vec());
        Ok(())
    })
}

/// A file descriptor that polls readable while events are pending: call
/// `mr_runtime_next_event` with timeout 0 until MR_WOULD_BLOCK (which
/// clears it). Readable after close. Owned by the handle: never read, write
/// or close it; valid until `mr_runtime_free`. -1 if `rt` is NULL.
#[no_mangle]
pub extern "C" fn mr_runtime_event_fd(rt: *const mr_runtime) -> c_int {
    super::panic::boundary("mr_runtime_event_fd", || value_or("mr_runtime_event_fd", try_ref(rt).map(|r| r.event_fd()), -1))
}

/// Waits until the runtime has nothing queued: no callback pending, no
/// feed or flush in progress (protocols the host itself has not yet
/// reported up or down do not count). Blocks per `timeout_ms`: < 0 forever,
/// 0 never (MR_WOULD_BLOCK if busy), > 0 at most that long (MR_TIMEOUT).
/// MR_STATE from a callback; MR_CLOSED after close.
#[no_mangle]
pub extern "C" fn mr_runtime_wait_idle(rt: *mut mr_runtime, timeout_ms: i32) -> mr_status {
    ffi_status!("mr_runtime_wait_idle", { try_ref(rt)?.wait_idle(Wait::from_ms(timeout_ms)) })
}

/// Connects a notify bus: `netmap` protocols import each peer's AllowedIPs
/// as routes with attributes {"peer":NodeID,"stable_id","name"}, updated
/// by peer deltas, and state events are also published on the bus as
/// `{"Protocol":{...}}` host events. The runtime keeps its own reference:
/// `bus` may be freed before the runtime (its peers then stop changing).
/// MR_STATE if a bus is already attached; MR_CLOSED if either is closed.
#[no_mangle]
pub extern "C" fn mr_runtime_attach_bus(rt: *mut mr_runtime, bus: *mut mr_bus) -> mr_status {
    ffi_status!("mr_runtime_attach_bus", {
        let rt = try_ref(rt)?;
        rt.attach_bus(try_ref(bus)?)
    })
}

/// Closes the runtime: later calls return MR_CLOSED, blocked waits return
/// MR_CLOSED, protocols are not shut down. Unless called from a callback,
/// it returns after the loop thread stopped: no callback runs afterwards
/// and every kind's free_userdata has run. Idempotent; any thread. The
/// handle stays allocated until `mr_runtime_free`.
#[no_mangle]
pub extern "C" fn mr_runtime_close(rt: *mut mr_runtime) -> mr_status {
    ffi_status!("mr_runtime_close", {
        try_ref(rt)?.close();
        Ok(())
    })
}

/// Closes (if needed) and releases the runtime. NULL is a no-op. Never
/// from a callback; no other thread may be using `rt` or call with it
/// afterwards.
#[no_mangle]
pub extern "C" fn mr_runtime_free(rt: *mut mr_runtime) {
    ffi_value!("mr_runtime_free", {
        drop(free_handle(rt));
    })
}
