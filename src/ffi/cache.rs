//! `mr_cache`: the xDS snapshot cache (go-control-plane SnapshotCache
//! semantics over opaque resources), its config and watch requests.

use super::bytes::mr_bytes;
use super::cache_watch::mr_cache_watch_h;
use super::error::{mr_status, value_or};
use super::ffi::{free_handle, into_handle, try_in, try_out, try_ref, try_slice, try_str, Castable};
use super::snapshot::mr_snapshot;
use crate::cache::{Cache, CacheConfig, SnapshotBuilder, WatchRequest};
use crate::error::{Error, Result};
use crate::sync::Wait;
use std::os::raw::{c_char, c_int};
use std::time::Duration;

/// A snapshot cache handle. Thread-safe.
pub struct mr_cache {
    _opaque: [u8; 0],
}

impl Castable for mr_cache {
    type Rust = Cache;
    const NAME: &'static str = "mr_cache";
}

/// `mr_cache_config.flags`: ADS mode. A SOTW watch that names resources is
/// answered only when every resource of its type in the snapshot is named
/// (go-control-plane's superset rule); until then it stays open.
pub const MR_CACHE_ADS: u32 = 1;
/// `mr_cache_config.flags`: `mr_cache_set_snapshot` rejects a snapshot that
/// `mr_snapshot_consistent` rejects (MR_INVALID_ARGUMENT).
pub const MR_CACHE_CHECK_CONSISTENCY: u32 = 2;
const KNOWN_CACHE_FLAGS: u32 = MR_CACHE_ADS | MR_CACHE_CHECK_CONSISTENCY;

/// Options for `mr_cache_new`. Always fill it with `mr_cache_config_init`
/// first, then change fields.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct mr_cache_config {
    /// sizeof(mr_cache_config), set by mr_cache_config_init (lets the struct grow).
    pub struct_size: u32,
    /// MR_CACHE_* bits.
    pub flags: u32,
    /// Milliseconds; when positive, a background thread resends TTL'd
    /// resources as heartbeats to SOTW watches covering them this often
    /// (go-control-plane's NewSnapshotCacheWithHeartbeating). 0: no
    /// heartbeats, no thread.
    pub heartbeat_interval_ms: i64,
    /// Type URLs answered whole in SOTW (full-state), in addition to
    /// envoy.config.cluster.v3.Cluster and envoy.config.listener.v3.Listener.
    /// Borrowed for the mr_cache_new call only; may be NULL when the count is 0.
    pub full_state_types: *const *const c_char,
    pub n_full_state_types: usize,
}

/// `mr_watch_request.flags`: wildcard subscription. SOTW requests with no
/// names are wildcard anyway (legacy xDS) unless MR_WATCH_EXPLICIT; a name
/// "*" also means wildcard.
pub const MR_WATCH_WILDCARD: u32 = 1;
/// `mr_watch_request.flags` (delta): the stream's first request for this
/// type; a first wildcard delta watch is answered even when empty.
pub const MR_WATCH_FIRST: u32 = 2;
/// `mr_watch_request.flags` (SOTW): the names are an explicit subscription
/// even when there are none, so an empty list subscribes to nothing instead
/// of meaning wildcard (go-control-plane v0.14 streams that left wildcard).
pub const MR_WATCH_EXPLICIT: u32 = 4;
/// `mr_watch_request.flags`: report the watch through the cache's ready
/// queue (`mr_cache_take_ready`, `mr_cache_ready_fd`) under `req->token`,
/// so a host with many open watches needs no fd or thread per watch. An
/// answer already there when `mr_cache_watch` returns is not queued: check
/// each new watch once with `mr_cache_watch_next(w, 0, ...)`.
pub const MR_WATCH_QUEUED: u32 = 8;
const KNOWN_WATCH_FLAGS: u32 = MR_WATCH_WILDCARD | MR_WATCH_FIRST | MR_WATCH_EXPLICIT | MR_WATCH_QUEUED;

/// A SOTW or delta watch (or fetch) request. Fill it with
/// `mr_watch_request_init` first. Every pointer is borrowed for the call only.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct mr_watch_request {
    /// sizeof(mr_watch_request), set by mr_watch_request_init.
    pub struct_size: u32,
    /// MR_WATCH_* bits.
    pub flags: u32,
    /// The node key (the host hashes its Node, as go-control-plane's NodeHash). Required.
    pub node: *const c_char,
    /// Required, non-empty.
    pub type_url: *const c_char,
    /// SOTW / fetch: the version the stream last acknowledged; NULL = "".
    pub version_info: *const c_char,
    /// SOTW: resource_names; delta: the subscribed names.
    pub names: *const *const c_char,
    pub n_names: usize,
    /// The stream's state, parallel arrays of `n_known` entries: SOTW = the
    /// resources returned so far (go-control-plane ReturnedResources, i.e.
    /// the next state of earlier responses); delta = resource versions
    /// (initial_resource_versions, then each response's next state).
    pub known_names: *const *const c_char,
    pub known_versions: *const *const c_char,
    pub n_known: usize,
    /// With MR_WATCH_QUEUED: the host's name for this watch in
    /// `mr_cache_ready.token` (any value; the cache does not interpret it).
    pub token: u64,
}

/// The caller's strings, borrowed for the call.
fn strs<'a>(ptr: *const *const c_char, n: usize, name: &'static str) -> Result<Vec<&'a str>> {
    try_slice(ptr, n, name)?
        .iter()
        .enumerate()
        .map(|(i, &p)| {
            if p.is_null() {
                return Err(Error::invalid(format!("{name}[{i}] is NULL")));
            }
            try_str(p, name)
        })
        .collect()
}

fn strings(ptr: *const *const c_char, n: usize, name: &'static str) -> Result<Vec<String>> {
    Ok(strs(ptr, n, name)?.into_iter().map(str::to_string).collect())
}

/// `versions`: keep the known versions (delta); a SOTW watch only needs
/// the names (they are still checked).
fn to_request(req: *const mr_watch_request, versions: bool) -> Result<WatchRequest> {
    let r = try_in(req, "req")?;
    if r.struct_size as usize != std::mem::size_of::<mr_watch_request>() {
        return Err(Error::invalid("req.struct_size does not match this library: fill it with mr_watch_request_init"));
    }
    if r.flags & !KNOWN_WATCH_FLAGS != 0 {
        return Err(Error::invalid(format!("req.flags has unknown bits {:#x}", r.flags & !KNOWN_WATCH_FLAGS)));
    }
    let known_names = strs(r.known_names, r.n_known, "req.known_names")?;
    let known_versions = strs(r.known_versions, r.n_known, "req.known_versions")?;
    let known = known_names
        .into_iter()
        .zip(known_versions)
        .map(|(n, v)| (n.to_string(), if versions { v.to_string() } else { String::new() }))
        .collect();
    Ok(WatchRequest {
        node: try_str(r.node, "req.node")?.to_string(),
        type_url: try_str(r.type_url, "req.type_url")?.to_string(),
        version_info: if r.version_info.is_null() { String::new() } else { try_str(r.version_info, "req.version_info")?.to_string() },
        names: strings(r.names, r.n_names, "req.names")?,
        wildcard: r.flags & MR_WATCH_WILDCARD != 0,
        known,
        first: r.flags & MR_WATCH_FIRST != 0,
        explicit: r.flags & MR_WATCH_EXPLICIT != 0,
        queue_token: (r.flags & MR_WATCH_QUEUED != 0).then_some(r.token),
    })
}

fn to_config(cfg: *const mr_cache_config) -> Result<CacheConfig> {
    let mut config = CacheConfig::default();
    if cfg.is_null() {
        return Ok(config);
    }
    let c = try_in(cfg, "cfg")?;
    if c.struct_size as usize != std::mem::size_of::<mr_cache_config>() {
        return Err(Error::invalid("cfg.struct_size does not match this library: fill it with mr_cache_config_init"));
    }
    if c.flags & !KNOWN_CACHE_FLAGS != 0 {
        return Err(Error::invalid(format!("cfg.flags has unknown bits {:#x}", c.flags & !KNOWN_CACHE_FLAGS)));
    }
    if c.heartbeat_interval_ms < 0 {
        return Err(Error::invalid("cfg.heartbeat_interval_ms is negative"));
    }
    config.ads = c.flags & MR_CACHE_ADS != 0;
    config.check_consistency = c.flags & MR_CACHE_CHECK_CONSISTENCY != 0;
    config.heartbeat_interval = (c.heartbeat_interval_ms > 0).then(|| Duration::from_millis(c.heartbeat_interval_ms as u64));
    for t in strings(c.full_state_types, c.n_full_state_types, "cfg.full_state_types")? {
        if t.is_empty() {
            return Err(Error::invalid("cfg.full_state_types has an empty type URL"));
        }
        config.full_state_types.insert(t);
    }
    Ok(config)
}

/// Fills `*cfg` with the defaults: not ADS, no consistency check, no
/// heartbeats, no extra full-state types.
#[no_mangle]
pub extern "C" fn mr_cache_config_init(cfg: *mut mr_cache_config) -> mr_status {
    ffi_status!("mr_cache_config_init", {
        *try_out(cfg, "cfg")? = mr_cache_config {
            struct_size: std::mem::size_of::<mr_cache_config>() as u32,
            flags: 0,
            heartbeat_interval_ms: 0,
            full_state_types: std::ptr::null(),
            n_full_state_types: 0,
        };
        Ok(())
    })
}

/// Fills `*req` with an empty request (no flags, every pointer NULL).
#[no_mangle]
pub extern "C" fn mr_watch_request_init(req: *mut mr_watch_request) -> mr_status {
    ffi_status!("mr_watch_request_init", {
        *try_out(req, "req")? = mr_watch_request {
            struct_size: std::mem::size_of::<mr_watch_request>() as u32,
            flags: 0,
            node: std::ptr::null(),
            type_url: std::ptr::null(),
            version_info: std::ptr::null(),
            names: std::ptr::null(),
            n_names: 0,
            known_names: std::ptr::null(),
            known_versions: std::ptr::null(),
            n_known: 0,
            token: 0,
        };
        Ok(())
    })
}

/// Creates a cache. `cfg` NULL = defaults (see `mr_cache_config_init`); it
/// is borrowed for the call only. On success `*out` owns a new handle the
/// caller releases with `mr_cache_free`; on failure `*out` is NULL
/// (MR_INVALID_ARGUMENT for a bad config).
#[no_mangle]
pub extern "C" fn mr_cache_new(cfg: *const mr_cache_config, out: *mut *mut mr_cache) -> mr_status {
    ffi_status!("mr_cache_new", {
        let out = try_out(out, "out")?;
        *out = std::ptr::null_mut();
        *out = into_handle::<mr_cache>(Cache::new(to_config(cfg)?)?);
        Ok(())
    })
}

/// Sets `node`'s snapshot to the current content of `snap` (shared, not
/// copied; later edits of `snap` do not change it) and answers the open
/// watches whose type changed. The caller keeps owning `snap`; `node` is
/// borrowed for the call. MR_INVALID_ARGUMENT for NULLs or (with
/// MR_CACHE_CHECK_CONSISTENCY) an inconsistent snapshot; MR_CLOSED.
#[no_mangle]
pub extern "C" fn mr_cache_set_snapshot(cache: *mut mr_cache, node: *const c_char, snap: *const mr_snapshot) -> mr_status {
    ffi_status!("mr_cache_set_snapshot", {
        let cache = try_ref(cache)?;
        let node = try_str(node, "node")?;
        cache.set_snapshot(node, try_ref(snap)?.snapshot())
    })
}

/// `mr_cache_set_snapshot`, and the answers it produces for queued watches
/// (MR_WATCH_QUEUED) come back in `events[0..*n_out]` (up to `cap`; any
/// more go to the ready queue) instead of through `mr_cache_take_ready`:
/// the caller hands them out on its own thread, with no wake-up of the
/// thread that takes from the queue. Each event is as from
/// `mr_cache_take_ready` (release its response with `mr_bytes_free`). On
/// failure `*n_out` is 0 and nothing was set.
#[no_mangle]
pub extern "C" fn mr_cache_set_snapshot_take(
    cache: *mut mr_cache,
    node: *const c_char,
    snap: *const mr_snapshot,
    events: *mut mr_cache_ready,
    cap: usize,
    n_out: *mut usize,
) -> mr_status {
    ffi_status!("mr_cache_set_snapshot_take", {
        let (events, n_out) = event_slots(events, cap, n_out)?;
        let cache = try_ref(cache)?;
        let node = try_str(node, "node")?;
        let taken = cache.set_snapshot_collect(node, try_ref(snap)?.snapshot(), events.len())?;
        *n_out = fill_events(events, taken);
        Ok(())
    })
}

/// The caller's event array and count, the count zeroed first.
fn event_slots<'a>(events: *mut mr_cache_ready, cap: usize, n_out: *mut usize) -> Result<(&'a mut [mr_cache_ready], &'a mut usize)> {
    let n_out = try_out(n_out, "n_out")?;
    *n_out = 0;
    Ok((super::ffi::try_slice_mut(events, cap, "events")?, n_out))
}

/// Writes `taken` into `events` (which has room for all of them).
fn fill_events(events: &mut [mr_cache_ready], taken: Vec<crate::cache::ReadyEvent>) -> usize {
    let mut n = 0;
    for (slot, event) in events.iter_mut().zip(taken) {
        *slot = match event.outcome {
            Ok(response) => mr_cache_ready { token: event.token, status: mr_status::MR_OK, response: mr_bytes::shared(response.encoded()) },
            Err(_) => mr_cache_ready { token: event.token, status: mr_status::MR_CLOSED, response: mr_bytes::from_vec(Vec::new()) },
        };
        n += 1;
    }
    n
}

/// `node`'s snapshot as a new handle in `*out`, which the caller releases
/// with `mr_snapshot_free` (editing it never changes the cache's copy).
/// MR_NOT_FOUND when the node has no snapshot (then `*out` is NULL).
#[no_mangle]
pub extern "C" fn mr_cache_get_snapshot(cache: *mut mr_cache, node: *const c_char, out: *mut *mut mr_snapshot) -> mr_status {
    ffi_status!("mr_cache_get_snapshot", {
        let out = try_out(out, "out")?;
        *out = std::ptr::null_mut();
        let snapshot = try_ref(cache)?.get_snapshot(try_str(node, "node")?)?;
        *out = into_handle::<mr_snapshot>(SnapshotBuilder::from_snapshot(snapshot));
        Ok(())
    })
}

/// Removes `node`'s snapshot and status. Its open watches end:
/// `mr_cache_watch_next` returns MR_CLOSED (go-control-plane drops them
/// unanswered). A later watch for the node waits for a new snapshot. An
/// unknown node is MR_OK.
#[no_mangle]
pub extern "C" fn mr_cache_clear_snapshot(cache: *mut mr_cache, node: *const c_char) -> mr_status {
    ffi_status!("mr_cache_clear_snapshot", {
        let cache = try_ref(cache)?;
        cache.clear_snapshot(try_str(node, "node")?)?;
        Ok(())
    })
}

/// go-control-plane's GetStatusInfo as JSON in `*json_out` (released by the
/// caller with `mr_bytes_free`): `{"node":..,"num_watches":N,
/// "num_delta_watches":M,"last_watch_request_unix_ms":T|null,
/// "last_delta_watch_request_unix_ms":T|null}`. MR_NOT_FOUND for a node
/// that never opened a watch (or was cleared since).
#[no_mangle]
pub extern "C" fn mr_cache_status(cache: *mut mr_cache, node: *const c_char, json_out: *mut mr_bytes) -> mr_status {
    ffi_status!("mr_cache_status", {
        let out = try_out(json_out, "json_out")?;
        *out = mr_bytes::from_vec(Vec::new());
        let info = try_ref(cache)?.status(try_str(node, "node")?)?;
        *out = mr_bytes::from_vec(info.to_json());
        Ok(())
    })
}

/// go-control-plane's GetStatusKeys: a JSON array of the node keys with a
/// status, sorted, in `*json_out` (released with `mr_bytes_free`).
#[no_mangle]
pub extern "C" fn mr_cache_status_keys(cache: *mut mr_cache, json_out: *mut mr_bytes) -> mr_status {
    ffi_status!("mr_cache_status_keys", {
        let out = try_out(json_out, "json_out")?;
        *out = mr_bytes::from_vec(Vec::new());
        let keys = try_ref(cache)?.status_keys()?;
        *out = mr_bytes::from_vec(serde_json::to_vec(&keys).expect("JSON encodes"));
        Ok(())
    })
}

/// Opens a SOTW watch. It is answered at once (the response is already
/// waiting in the handle) when the type's version differs from
/// `req->version_info` or a covered resource is not in the known/returned
/// state at its current version; otherwise when a later snapshot changes
/// the type (see mr_cache_watch_next for the encoding). Full-state types
/// (clusters, listeners, configured ones) get every covered resource, other
/// types those not yet returned. A node without a snapshot: the watch waits.
/// On success `*out` owns a new watch the caller releases with
/// `mr_cache_watch_free` (cancel = `mr_cache_watch_close`). MR_INVALID_ARGUMENT
/// for NULL strings or a bad request, MR_CLOSED.
#[no_mangle]
pub extern "C" fn mr_cache_watch(cache: *mut mr_cache, req: *const mr_watch_request, out: *mut *mut mr_cache_watch_h) -> mr_status {
    ffi_status!("mr_cache_watch", {
        let out = try_out(out, "out")?;
        *out = std::ptr::null_mut();
        let watch = try_ref(cache)?.watch(to_request(req, false)?)?;
        *out = into_handle::<mr_cache_watch_h>(watch);
        Ok(())
    })
}

/// Opens a delta watch: `req->names` are the subscribed names (with
/// MR_WATCH_WILDCARD: every resource), `known_*` the stream's resource
/// versions, MR_WATCH_FIRST on the stream's first request for the type.
/// Answered when a covered resource is new or changed or a known one was
/// removed (the first wildcard request also when empty); the response's
/// next state is the version map the stream keeps. Ownership and errors as
/// `mr_cache_watch`.
#[no_mangle]
pub extern "C" fn mr_cache_delta_watch(
    cache: *mut mr_cache,
    req: *const mr_watch_request,
    out: *mut *mut mr_cache_watch_h,
) -> mr_status {
    ffi_status!("mr_cache_delta_watch", {
        let out = try_out(out, "out")?;
        *out = std::ptr::null_mut();
        let watch = try_ref(cache)?.delta_watch(to_request(req, true)?)?;
        *out = into_handle::<mr_cache_watch_h>(watch);
        Ok(())
    })
}

/// Opens the next delta watch of a stream after `previous` (a delta watch of
/// the same node and type whose response the caller took with
/// `mr_cache_watch_next` or `mr_cache_take_ready`): the stream's versions
/// are that response's next state, which the library kept, so
/// `req->known_*` must be empty (`n_known` 0). Asking what `previous` asked
/// (the same names or wildcard), the answer costs what changed since that
/// response, not the type's size, and its encoding carries no next state
/// (flags bit 1 set, next-state count 0): the library keeps it for the
/// watch after this one. `previous` is only read: the caller still frees
/// it (it may be freed right after this returns). MR_INVALID_ARGUMENT when
/// `previous` is not such a watch. Ownership and other errors as
/// `mr_cache_watch`.
#[no_mangle]
pub extern "C" fn mr_cache_delta_watch_after(
    cache: *mut mr_cache,
    previous: *const mr_cache_watch_h,
    req: *const mr_watch_request,
    out: *mut *mut mr_cache_watch_h,
) -> mr_status {
    ffi_status!("mr_cache_delta_watch_after", {
        let out = try_out(out, "out")?;
        *out = std::ptr::null_mut();
        let previous = try_ref(previous)?;
        let watch = try_ref(cache)?.delta_watch_after(previous, to_request(req, true)?)?;
        *out = into_handle::<mr_cache_watch_h>(watch);
        Ok(())
    })
}

/// Fetch (REST xDS): the covered resources of `req->type_url` for
/// `req->node`, encoded as in mr_cache_watch_next, in `*response` (released
/// with `mr_bytes_free`). MR_UP_TO_DATE when `req->version_info` equals the
/// type's version (go-control-plane's SkipFetchError), MR_NOT_FOUND when the
/// node has no snapshot; then `*response` is {NULL, 0}.
#[no_mangle]
pub extern "C" fn mr_cache_fetch(cache: *mut mr_cache, req: *const mr_watch_request, response: *mut mr_bytes) -> mr_status {
    ffi_status!("mr_cache_fetch", {
        let out = try_out(response, "response")?;
        *out = mr_bytes::from_vec(Vec::new());
        let r = try_ref(cache)?.fetch(to_request(req, false)?)?;
        *out = mr_bytes::from_vec(r.encode());
        Ok(())
    })
}

/// One event of `mr_cache_take_ready`.
#[repr(C)]
#[derive(Debug)]
pub struct mr_cache_ready {
    /// The `mr_watch_request.token` the watch was opened with.
    pub token: u64,
    /// MR_OK: `response` holds the watch's response (encoded as in
    /// mr_cache_watch_next; the watch itself has nothing more to give).
    /// MR_CLOSED: the watch ended unanswered because its node was cleared
    /// or the cache closed; `response` is {NULL, 0}.
    pub status: mr_status,
    /// Owned by the caller: release it with `mr_bytes_free`.
    pub response: mr_bytes,
}

/// Takes up to `cap` events of queued watches (opened with
/// MR_WATCH_QUEUED) into `events[0..*n_out]`: each queued watch reports
/// exactly once, with its response or as closed (its node cleared, the
/// cache closed), but never for the host's own `mr_cache_watch_close`.
/// Blocks per `timeout_ms` until at least one is ready: MR_WOULD_BLOCK,
/// MR_TIMEOUT; MR_CLOSED once the cache is closed and every event was
/// taken. The watch handles stay the caller's to free. On any status but
/// MR_OK, `*n_out` is 0. Meant for one taking thread per cache (several
/// are safe; each event goes to one of them).
#[no_mangle]
pub extern "C" fn mr_cache_take_ready(
    cache: *mut mr_cache,
    timeout_ms: i32,
    events: *mut mr_cache_ready,
    cap: usize,
    n_out: *mut usize,
) -> mr_status {
    ffi_status!("mr_cache_take_ready", {
        let (events, n_out) = event_slots(events, cap, n_out)?;
        if events.is_empty() {
            return Err(Error::invalid("cap is 0: no room for an event"));
        }
        let taken = try_ref(cache)?.take_ready(Wait::from_ms(timeout_ms), events.len())?;
        *n_out = fill_events(events, taken);
        Ok(())
    })
}

/// A file descriptor that polls readable while `mr_cache_take_ready` would
/// not block (events queued, or the cache closed). Owned by the cache: never
/// read, write or close it; valid until `mr_cache_free`. -1 if `cache` is
/// NULL or no fd could be made (see mr_last_error).
#[no_mangle]
pub extern "C" fn mr_cache_ready_fd(cache: *const mr_cache) -> c_int {
    super::panic::boundary("mr_cache_ready_fd", || value_or("mr_cache_ready_fd", try_ref(cache).and_then(|c| c.ready_fd()), -1))
}

/// Closes the cache: every open watch returns MR_CLOSED, later calls on the
/// cache return MR_CLOSED, the heartbeat thread ends. Idempotent; any
/// thread. The handle stays allocated until `mr_cache_free`.
#[no_mangle]
pub extern "C" fn mr_cache_close(cache: *mut mr_cache) -> mr_status {
    ffi_status!("mr_cache_close", {
        try_ref(cache)?.close();
        Ok(())
    })
}

/// Closes (if needed) and releases the cache. NULL is a no-op. Open watches
/// stay valid handles that return MR_CLOSED until their own
/// `mr_cache_watch_free`; snapshots stay valid until `mr_snapshot_free`. No
/// other thread may be using `cache` or call with it afterwards.
#[no_mangle]
pub extern "C" fn mr_cache_free(cache: *mut mr_cache) {
    ffi_value!("mr_cache_free", {
        drop(free_handle(cache));
    })
}

#[cfg(test)]
mod tests {
    use super::super::bytes::mr_bytes_free;
    use super::super::cache_watch::*;
    use super::super::snapshot::*;
    use super::*;
    use crate::cache::{decode, CLUSTER_TYPE, ENDPOINT_TYPE};
    use std::ffi::CString;

    fn c(s: &str) -> CString {
        CString::new(s).unwrap()
    }

    fn empty() -> mr_bytes {
        mr_bytes::from_vec(Vec::new())
    }

    fn take(b: &mut mr_bytes) -> Vec<u8> {
        // SAFETY: the library filled `b` with `len` readable bytes.
        let v = if b.ptr.is_null() { Vec::new() } else { unsafe { std::slice::from_raw_parts(b.ptr, b.len) }.to_vec() };
        mr_bytes_free(b);
        v
    }

    #[test]
    fn cache_round_trip_through_the_c_boundary() {
        let (cluster, endpoint) = (c(CLUSTER_TYPE), c(ENDPOINT_TYPE));
        let mut cache = std::ptr::null_mut();
        assert_eq!(mr_cache_new(std::ptr::null(), &mut cache), mr_status::MR_OK);

        let mut snap = std::ptr::null_mut();
        assert_eq!(mr_snapshot_new(c("v1").as_ptr(), &mut snap), mr_status::MR_OK);
        let body = b"cluster bytes";
        assert_eq!(mr_snapshot_add_resource(snap, cluster.as_ptr(), c("c0").as_ptr(), body.as_ptr(), body.len(), 0), mr_status::MR_OK);
        assert_eq!(
            mr_snapshot_add_resource(snap, cluster.as_ptr(), c("c0").as_ptr(), body.as_ptr(), body.len(), 0),
            mr_status::MR_INVALID_ARGUMENT,
            "duplicate name"
        );
        assert_eq!(
            mr_snapshot_add_resource(snap, cluster.as_ptr(), std::ptr::null(), body.as_ptr(), 1, 0),
            mr_status::MR_INVALID_ARGUMENT
        );
        assert_eq!(mr_snapshot_add_resource(snap, endpoint.as_ptr(), c("c0").as_ptr(), b"e".as_ptr(), 1, 5000), mr_status::MR_OK);
        assert_eq!(mr_snapshot_set_version(snap, endpoint.as_ptr(), c("e1").as_ptr()), mr_status::MR_OK);
        assert_eq!(mr_snapshot_add_reference(snap, cluster.as_ptr(), c("c0").as_ptr(), endpoint.as_ptr(), c("c0").as_ptr()), mr_status::MR_OK);
        assert_eq!(mr_snapshot_consistent(snap), mr_status::MR_OK);

        let node = c("node-1");
        assert_eq!(mr_cache_set_snapshot(cache, node.as_ptr(), snap), mr_status::MR_OK);
        assert_eq!(mr_cache_set_snapshot(cache, std::ptr::null(), snap), mr_status::MR_INVALID_ARGUMENT);

        // get_snapshot: a separate handle; the version of a type.
        let mut back = std::ptr::null_mut();
        assert_eq!(mr_cache_get_snapshot(cache, node.as_ptr(), &mut back), mr_status::MR_OK);
        let mut buf = [0 as c_char; 16];
        let mut len = 0usize;
        assert_eq!(mr_snapshot_version(back, endpoint.as_ptr(), buf.as_mut_ptr(), buf.len(), &mut len), mr_status::MR_OK);
        assert_eq!(len, 2);
        mr_snapshot_free(back);
        assert_eq!(mr_cache_get_snapshot(cache, c("nobody").as_ptr(), &mut back), mr_status::MR_NOT_FOUND);
        assert!(back.is_null());

        // SOTW watch: answered at once.
        // SAFETY: a plain C struct; all-zero is a valid value before *_init fills it.
        let mut req: mr_watch_request = unsafe { std::mem::zeroed() };
        assert_eq!(mr_watch_request_init(&mut req), mr_status::MR_OK);
        req.node = node.as_ptr();
        req.type_url = endpoint.as_ptr();
        let names = [c("c0")];
        let name_ptrs: Vec<*const c_char> = names.iter().map(|n| n.as_ptr()).collect();
        req.names = name_ptrs.as_ptr();
        req.n_names = 1;
        let mut w = std::ptr::null_mut();
        assert_eq!(mr_cache_watch(cache, &req, &mut w), mr_status::MR_OK);
        assert!(mr_cache_watch_fd(w) >= 0);
        let mut out = empty();
        assert_eq!(mr_cache_watch_next(w, 0, &mut out), mr_status::MR_OK);
        let d = decode(&take(&mut out)).unwrap();
        assert_eq!((d.kind, d.version.as_str(), d.type_url.as_str()), (1, "e1", ENDPOINT_TYPE));
        assert_eq!(d.resources[0].0, "c0");
        assert_eq!(d.resources[0].2, 5000);
        assert_eq!(d.resources[0].3, b"e");
        assert_eq!(mr_cache_watch_next(w, 0, &mut out), mr_status::MR_CLOSED, "one response per watch");
        assert!(out.ptr.is_null());
        mr_cache_watch_free(w);

        // Next watch with the returned state: parks.
        let kn: Vec<CString> = d.next_state.keys().map(|k| c(k)).collect();
        let kv: Vec<CString> = d.next_state.values().map(|v| c(v)).collect();
        let kn_ptrs: Vec<*const c_char> = kn.iter().map(|s| s.as_ptr()).collect();
        let kv_ptrs: Vec<*const c_char> = kv.iter().map(|s| s.as_ptr()).collect();
        let v1 = c("e1");
        req.version_info = v1.as_ptr();
        req.known_names = kn_ptrs.as_ptr();
        req.known_versions = kv_ptrs.as_ptr();
        req.n_known = kn.len();
        assert_eq!(mr_cache_watch(cache, &req, &mut w), mr_status::MR_OK);
        assert_eq!(mr_cache_watch_next(w, 0, &mut out), mr_status::MR_WOULD_BLOCK);
        assert_eq!(mr_cache_watch_next(w, 10, &mut out), mr_status::MR_TIMEOUT);

        // Fetch: up to date / changed / no snapshot.
        assert_eq!(mr_cache_fetch(cache, &req, &mut out), mr_status::MR_UP_TO_DATE);
        req.version_info = std::ptr::null();
        assert_eq!(mr_cache_fetch(cache, &req, &mut out), mr_status::MR_OK);
        assert_eq!(decode(&take(&mut out)).unwrap().resources.len(), 1);
        let other = c("other");
        let saved = req.node;
        req.node = other.as_ptr();
        assert_eq!(mr_cache_fetch(cache, &req, &mut out), mr_status::MR_NOT_FOUND);
        req.node = saved;

        // Delta watch, first wildcard.
        // SAFETY: a plain C struct; all-zero is a valid value before *_init fills it.
        let mut dreq: mr_watch_request = unsafe { std::mem::zeroed() };
        mr_watch_request_init(&mut dreq);
        dreq.node = node.as_ptr();
        dreq.type_url = cluster.as_ptr();
        dreq.flags = MR_WATCH_WILDCARD | MR_WATCH_FIRST;
        let mut dw = std::ptr::null_mut();
        assert_eq!(mr_cache_delta_watch(cache, &dreq, &mut dw), mr_status::MR_OK);
        assert_eq!(mr_cache_watch_next(dw, -1, &mut out), mr_status::MR_OK);
        let d = decode(&take(&mut out)).unwrap();
        assert_eq!((d.kind, d.resources.len(), d.next_state.len()), (2, 1, 1));
        mr_cache_watch_free(dw);
        dreq.flags = 0xff;
        assert_eq!(mr_cache_delta_watch(cache, &dreq, &mut dw), mr_status::MR_INVALID_ARGUMENT);
        assert!(dw.is_null());

        // Status.
        assert_eq!(mr_cache_status(cache, node.as_ptr(), &mut out), mr_status::MR_OK);
        let status: serde_json::Value = serde_json::from_slice(&take(&mut out)).unwrap();
        assert_eq!(status["num_watches"], 1);
        assert!(status["last_delta_watch_request_unix_ms"].is_u64());
        assert_eq!(mr_cache_status(cache, other.as_ptr(), &mut out), mr_status::MR_NOT_FOUND);
        assert_eq!(mr_cache_status_keys(cache, &mut out), mr_status::MR_OK);
        assert_eq!(take(&mut out), br#"["node-1"]"#);

        // Close twice, free the cache with a watch open.
        let mut w2 = std::ptr::null_mut();
        assert_eq!(mr_cache_watch(cache, &req, &mut w2), mr_status::MR_OK);
        let _ = mr_cache_watch_next(w2, 0, &mut out); // answered (no version): drop it
        mr_bytes_free(&mut out);
        assert_eq!(mr_cache_watch_close(w2), mr_status::MR_OK);
        assert_eq!(mr_cache_watch_close(w2), mr_status::MR_OK);
        mr_cache_watch_free(w2);
        mr_cache_free(cache);
        assert_eq!(mr_cache_watch_next(w, -1, &mut out), mr_status::MR_CLOSED);
        assert_eq!(mr_cache_watch_close(w), mr_status::MR_OK);
        mr_cache_watch_free(w);
        mr_snapshot_free(snap);

        // NULLs everywhere are statuses, not crashes.
        assert_eq!(mr_cache_watch(std::ptr::null_mut(), &req, &mut w), mr_status::MR_INVALID_ARGUMENT);
        assert_eq!(mr_cache_watch_close(std::ptr::null_mut()), mr_status::MR_INVALID_ARGUMENT);
        assert_eq!(mr_cache_watch_fd(std::ptr::null()), -1);
        mr_cache_free(std::ptr::null_mut());
        mr_snapshot_free(std::ptr::null_mut());
        mr_cache_watch_free(std::ptr::null_mut());
    }

    #[test]
    fn config_flags_and_consistency_through_the_c_boundary() {
        // SAFETY: a plain C struct; all-zero is a valid value before *_init fills it.
        let mut cfg: mr_cache_config = unsafe { std::mem::zeroed() };
        assert_eq!(mr_cache_config_init(&mut cfg), mr_status::MR_OK);
        let mut cache = std::ptr::null_mut();
        cfg.flags = 0x80;
        assert_eq!(mr_cache_new(&cfg, &mut cache), mr_status::MR_INVALID_ARGUMENT);
        assert!(cache.is_null());
        cfg.struct_size = 3;
        cfg.flags = 0;
        assert_eq!(mr_cache_new(&cfg, &mut cache), mr_status::MR_INVALID_ARGUMENT);
        mr_cache_config_init(&mut cfg);
        cfg.flags = MR_CACHE_ADS | MR_CACHE_CHECK_CONSISTENCY;
        cfg.heartbeat_interval_ms = 1000;
        let extra = c("type.googleapis.com/my.Type");
        let types = [extra.as_ptr()];
        cfg.full_state_types = types.as_ptr();
        cfg.n_full_state_types = 1;
        assert_eq!(mr_cache_new(&cfg, &mut cache), mr_status::MR_OK);
        let config = try_ref(cache).unwrap().config().clone();
        assert!(config.ads && config.check_consistency);
        assert_eq!(config.heartbeat_interval, Some(Duration::from_secs(1)));
        assert!(config.full_state_types.contains("type.googleapis.com/my.Type"));

        let mut snap = std::ptr::null_mut();
        assert_eq!(mr_snapshot_new(std::ptr::null(), &mut snap), mr_status::MR_OK);
        let (t, n) = (c(CLUSTER_TYPE), c("c0"));
        assert_eq!(mr_snapshot_add_reference(snap, t.as_ptr(), n.as_ptr(), c(ENDPOINT_TYPE).as_ptr(), n.as_ptr()), mr_status::MR_OK);
        assert_eq!(mr_snapshot_consistent(snap), mr_status::MR_INVALID_ARGUMENT);
        assert_eq!(mr_cache_set_snapshot(cache, n.as_ptr(), snap), mr_status::MR_INVALID_ARGUMENT);
        assert_eq!(mr_snapshot_add_resource(snap, t.as_ptr(), n.as_ptr(), std::ptr::null(), 0, -1), mr_status::MR_OK);
        assert_eq!(mr_snapshot_add_resource(snap, c(ENDPOINT_TYPE).as_ptr(), n.as_ptr(), std::ptr::null(), 0, -1), mr_status::MR_OK);
        assert_eq!(mr_cache_set_snapshot(cache, n.as_ptr(), snap), mr_status::MR_OK);
        let mut count = 0;
        assert_eq!(mr_snapshot_resource_count(snap, t.as_ptr(), &mut count), mr_status::MR_OK);
        assert_eq!(count, 1);
        assert_eq!(mr_cache_close(cache), mr_status::MR_OK);
        assert_eq!(mr_cache_close(cache), mr_status::MR_OK);
        assert_eq!(mr_cache_set_snapshot(cache, n.as_ptr(), snap), mr_status::MR_CLOSED);
        mr_cache_free(cache);
        mr_snapshot_free(snap);
    }
}
