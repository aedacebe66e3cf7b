//! `mr_snapshot`: a snapshot of xDS resources being built by the host, set
//! into an `mr_cache` for one or more nodes.

use super::error::mr_status;
use super::ffi::{free_handle, into_handle, try_out, try_ref, try_slice, try_str, write_c_string, Castable};
use crate::cache::SnapshotBuilder;
use std::os::raw::c_char;
use std::sync::Arc;
use std::time::Duration;

/// A snapshot handle: per type URL a version and named resources. Thread-safe.
/// Setting it into a cache freezes what the cache serves: later edits of
/// the handle only affect later `mr_cache_set_snapshot` calls.
pub struct mr_snapshot {
    _opaque: [u8; 0],
}

impl Castable for mr_snapshot {
    type Rust = SnapshotBuilder;
    const NAME: &'static str = "mr_snapshot";
}

/// Creates an empty snapshot whose types all have `version` (NULL = "")
/// unless `mr_snapshot_set_version` says otherwise (go-control-plane's
/// `NewSnapshot(version, ...)`). On success `*out` owns a new handle the
/// caller releases with `mr_snapshot_free`; on failure `*out` is NULL.
#[no_mangle]
pub extern "C" fn mr_snapshot_new(version: *const c_char, out: *mut *mut mr_snapshot) -> mr_status {
    ffi_status!("mr_snapshot_new", {
        let out = try_out(out, "out")?;
        *out = std::ptr::null_mut();
        let version = if version.is_null() { "" } else { try_str(version, "version")? };
        *out = into_handle::<mr_snapshot>(SnapshotBuilder::new(version));
        Ok(())
    })
}

/// Adds resource `name` of `type_url` with serialized bytes `bytes[0..len)`
/// (copied once; every response shares that copy) and a TTL of `ttl_ms`
/// milliseconds (<= 0: no TTL; TTL'd resources get heartbeats when the
/// cache has a heartbeat interval). All arguments are borrowed for the call
/// only. MR_INVALID_ARGUMENT for NULL or empty strings, NULL `bytes` with
/// `len` > 0, or a name already present for that type.
#[no_mangle]
pub extern "C" fn mr_snapshot_add_resource(
    snap: *mut mr_snapshot,
    type_url: *const c_char,
    name: *const c_char,
    bytes: *const u8,
    len: usize,
    ttl_ms: i64,
) -> mr_status {
    ffi_status!("mr_snapshot_add_resource", {
        let snap = try_ref(snap)?;
        let type_url = try_str(type_url, "type_url")?;
        let name = try_str(name, "name")?;
        let bytes: Arc<[u8]> = Arc::from(try_slice(bytes, len, "bytes")?);
        let ttl = (ttl_ms > 0).then(|| Duration::from_millis(ttl_ms as u64));
        snap.edit(|s| s.add(type_url, name, bytes, ttl))
    })
}

/// Removes resource `name` of `type_url`; to replace a resource, remove it
/// and add the new bytes. Together with `mr_cache_get_snapshot` this edits
/// the snapshot a node has: unchanged resources stay shared (never
/// compared or hashed again). MR_NOT_FOUND if there is no such resource.
/// Strings are borrowed for the call only.
#[no_mangle]
pub extern "C" fn mr_snapshot_remove_resource(snap: *mut mr_snapshot, type_url: *const c_char, name: *const c_char) -> mr_status {
    ffi_status!("mr_snapshot_remove_resource", {
        let snap = try_ref(snap)?;
        let type_url = try_str(type_url, "type_url")?;
        let name = try_str(name, "name")?;
        snap.edit(|s| s.remove(type_url, name))
    })
}

/// Adds many versions and resources at once from `buf[0..len)` in the
/// packed encoding (for bindings where each call costs, e.g. cgo):
/// little-endian, str/blob = u32 length + bytes:
///   magic "MRS1"; u32 type count, then per type: type_url str,
///   has_version u8 (0/1), [version str], u32 resource count, then per
///   resource: name str, ttl_ms i64 (<= 0: no TTL), bytes blob.
/// Bytes are copied once, as by `mr_snapshot_add_resource`. All or nothing:
/// MR_PARSE (malformed buffer, bad UTF-8) or MR_INVALID_ARGUMENT (empty
/// names, duplicates) leave the snapshot unchanged. `buf` is borrowed for
/// the call only.
#[no_mangle]
pub extern "C" fn mr_snapshot_add_packed(snap: *mut mr_snapshot, buf: *const u8, len: usize) -> mr_status {
    ffi_status!("mr_snapshot_add_packed", {
        let snap = try_ref(snap)?;
        let buf = try_slice(buf, len, "buf")?;
        snap.edit(|s| s.add_packed(buf))
    })
}

/// Edits the snapshot from `buf[0..len)` in the packed edit encoding (a
/// binding keeps a node's snapshot current by sending what changed):
/// little-endian, str/blob = u32 length + bytes:
///   magic "MRE1"; default_version str; u32 type count, then per type:
///   type_url str, has_version u8 (0: the default version; 1: its own,
///   version str follows), u32 removed count + names (str each; each must
///   be present), u32 resource count + per resource: name str, ttl_ms i64
///   (<= 0: no TTL), bytes blob (added, or replacing the one of that name).
/// Untouched resources stay shared with the snapshot this one was taken
/// from (`mr_cache_get_snapshot`), and the edited types remember what
/// changed, so a delta stream continued with `mr_cache_delta_watch_after`
/// looks at only that. All or nothing: MR_PARSE or MR_INVALID_ARGUMENT
/// leave the snapshot unchanged. `buf` is borrowed for the call only.
#[no_mangle]
pub extern "C" fn mr_snapshot_edit_packed(snap: *mut mr_snapshot, buf: *const u8, len: usize) -> mr_status {
    ffi_status!("mr_snapshot_edit_packed", {
        let snap = try_ref(snap)?;
        let buf = try_slice(buf, len, "buf")?;
        snap.edit(|s| s.apply_edit_packed(buf))
    })
}

/// Sets the version of one type (default: the snapshot's version). Strings
/// are borrowed for the call only. MR_INVALID_ARGUMENT for NULL arguments or
/// an empty type URL.
#[no_mangle]
pub extern "C" fn mr_snapshot_set_version(snap: *mut mr_snapshot, type_url: *const c_char, version: *const c_char) -> mr_status {
    ffi_status!("mr_snapshot_set_version", {
        let snap = try_ref(snap)?;
        let type_url = try_str(type_url, "type_url")?;
        let version = try_str(version, "version")?;
        snap.edit(|s| s.set_version(type_url, version))
    })
}

/// Declares that resource `from_name` of `from_type` refers to `to_name` of
/// `to_type` (a cluster to its ClusterLoadAssignment, a listener to its
/// RouteConfiguration, ...): the cache cannot see inside the bytes, so the
/// host states the references `mr_snapshot_consistent` checks. Strings are
/// borrowed for the call only. MR_INVALID_ARGUMENT for NULL or empty strings.
#[no_mangle]
pub extern "C" fn mr_snapshot_add_reference(
    snap: *mut mr_snapshot,
    from_type: *const c_char,
    from_name: *const c_char,
    to_type: *const c_char,
    to_name: *const c_char,
) -> mr_status {
    ffi_status!("mr_snapshot_add_reference", {
        let snap = try_ref(snap)?;
        let (a, b) = (try_str(from_type, "from_type")?, try_str(from_name, "from_name")?);
        let (c, d) = (try_str(to_type, "to_type")?, try_str(to_name, "to_name")?);
        snap.edit(|s| s.add_reference(a, b, c, d))
    })
}

/// go-control-plane's `Snapshot.Consistent` for opaque resources: MR_OK when
/// every reference declared with `mr_snapshot_add_reference` starts at and
/// resolves to a resource of the snapshot, else MR_INVALID_ARGUMENT naming
/// the first dangling one. (Resources nothing refers to are allowed.)
#[no_mangle]
pub extern "C" fn mr_snapshot_consistent(snap: *const mr_snapshot) -> mr_status {
    ffi_status!("mr_snapshot_consistent", { try_ref(snap)?.snapshot().consistent() })
}

/// Writes the version of `type_url` NUL-terminated into `buf` (`cap`
/// bytes); `*len` (may be NULL) gets its length without the NUL.
/// MR_BUFFER_TOO_SMALL (with `*len` set) when it does not fit.
#[no_mangle]
pub extern "C" fn mr_snapshot_version(
    snap: *const mr_snapshot,
    type_url: *const c_char,
    buf: *mut c_char,
    cap: usize,
    len: *mut usize,
) -> mr_status {
    ffi_status!("mr_snapshot_version", {
        let snapshot = try_ref(snap)?.snapshot();
        write_c_string(snapshot.version(try_str(type_url, "type_url")?), buf, cap, len)
    })
}

/// The number of resources of `type_url` in `*count`.
#[no_mangle]
pub extern "C" fn mr_snapshot_resource_count(snap: *const mr_snapshot, type_url: *const c_char, count: *mut usize) -> mr_status {
    ffi_status!("mr_snapshot_resource_count", {
        let count = try_out(count, "count")?;
        let snapshot = try_ref(snap)?.snapshot();
        *count = snapshot.type_set(try_str(type_url, "type_url")?).map_or(0, |t| t.len());
        Ok(())
    })
}

/// Releases the snapshot handle. NULL is a no-op. Caches it was set into
/// keep serving it. No other thread may be using `snap` or call with it
/// afterwards.
#[no_mangle]
pub extern "C" fn mr_snapshot_free(snap: *mut mr_snapshot) {
    ffi_value!("mr_snapshot_free", {
        drop(free_handle(snap));
    })
}
