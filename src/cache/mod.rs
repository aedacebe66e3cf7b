//! The xDS snapshot cache: go-control-plane `pkg/cache/v3`
//! `SnapshotCache` semantics over opaque resources.
//!
//! # Model
//!
//! * A [`Snapshot`] holds, per type URL, a version and named resources
//!   (serialized bytes as `Arc<[u8]>`, optional TTL). Every type has a
//!   version: its own (`set_version`) or the snapshot's default, as
//!   go-control-plane's `NewSnapshot(version, ...)` versions every type.
//!   Hosts may declare references between resources (`add_reference`);
//!   [`Snapshot::consistent`] checks they resolve (the cache cannot look
//!   inside opaque bytes, so this replaces go-control-plane's Envoy-aware
//!   `Consistent`). The cache checks it on `set_snapshot` only when
//!   configured to.
//! * A [`Cache`] keeps one snapshot per node key (the host hashes its node)
//!   and a status per node that opened a watch (last request times, open
//!   SOTW and delta watch counts).
//! * Resource versions (delta watches, and the SOTW "returned resources"
//!   state) are a 128-bit hash of the bytes, computed at most once per
//!   stored resource, and not at all for a resource whose bytes equal the
//!   previous snapshot's resource of that name (a compare, then the old
//!   version is reused).
//!
//! # Watches
//!
//! A watch gets at most one response, then the stream opens a new watch
//! with the state the response returned (`next_state`), as with
//! go-control-plane's channels.
//!
//! * **SOTW** (`watch`): answered at once when the type's version differs
//!   from the request's `version_info`, or when a covered resource (a
//!   requested name, or for wildcard any resource) is not in the request's
//!   returned-resources map at its current version (go-control-plane v0.14
//!   subscription state: new names, new resources for wildcard), or, for a
//!   full-state type, a returned resource is gone. Full-state types
//!   (clusters, listeners and those configured) are answered with every
//!   covered resource; other types with the covered resources not yet
//!   returned at their current version (possibly none: a version bump).
//!   Otherwise the watch parks until a `set_snapshot` changes its type.
//!   ADS mode: a watch naming resources is answered only when every
//!   resource of its type in the snapshot is named; until then it stays
//!   parked (go-control-plane drops it, which never answers either).
//! * **Delta** (`delta_watch`): per-resource versions against the stream's
//!   map; answered when a subscribed resource is new or changed, or a known
//!   one was removed, or for the first wildcard request even if empty.
//!   Unsubscribing is leaving a name out of `names` and `known`.
//! * **Delta, continued** (`delta_watch_after`): the stream's next watch
//!   opened after its previous one, whose answer (and so the stream's
//!   version map) the library kept: the host passes no versions in and
//!   gets none encoded out. Asking the same names, on a snapshot edited
//!   from the one that answer saw, only the edited names are looked at.
//! * A watch on a node without a snapshot (never set, or cleared) parks,
//!   as in go-control-plane. `clear_snapshot` ends the node's open watches
//!   (Closed). Closing the cache ends all of them.
//! * Heartbeats (`heartbeat_interval`): a background thread, started only
//!   when an interval is set, answers each SOTW watch that covers TTL'd
//!   resources with just those, flagged as a heartbeat.
//!
//! # Cost
//!
//! A type's resources are a persistent ordered map (`imbl::OrdMap`):
//! editing a node's snapshot copies the map in O(1) and changes it in
//! O(log n), and the copy remembers which names changed since the sets it
//! came from (up to 4 generations back). A delta stream continued in the
//! library therefore costs what changed: one changed resource among 10,000
//! is a few microseconds from edit to encoded answer, where passing the
//! stream's 10,000 versions back and forth costs milliseconds. A SOTW
//! answer is built once per (type state, version, names) and shared, with
//! its encoding, by every watch that asks it (an `mr_bytes` is a reference
//! to the shared bytes, not a copy); a snapshot set for a whole fleet is
//! compared with the previous one once.
//!
//! The cache lock only guards bookkeeping. `set_snapshot` visits only the
//! watches of types whose version or resources changed (watches are indexed
//! per node per type); deciding which types changed (byte compares),
//! evaluation, hashing and response building run outside the lock (the
//! heartbeat round alone picks its watches under it), and a watch whose type changed again meanwhile is
//! evaluated again before it parks. Responses share the stored resources;
//! bytes are copied once, when a response is encoded for the host.
//!
//! # Response encoding (`mr_cache_watch_next`, `mr_cache_fetch`)
//!
//! Little-endian; `u32` lengths; `str` = `u32 len` + UTF-8 bytes (no NUL);
//! `blob` = `u32 len` + bytes.
//!
//! ```text
//! magic     4 bytes "MRX1"
//! kind      u8   1 = SOTW (watch, fetch), 2 = delta
//! flags     u8   bit 0 = heartbeat; bit 1 = next state kept in the library
//!                (a continued delta watch): the next-state count is 0
//! reserved  u16  0
//! version   str  SOTW: version_info; delta: system_version_info
//! type_url  str
//! count     u32, then per resource (sorted by name):
//!           name str, version str (content hash), ttl_ms i64 (-1 = none), bytes blob
//! count     u32, then removed names (delta), str each
//! count     u32, then next_state entries (sorted): name str, version str
//! ```

mod eval;
mod packed;
mod reader;
mod ready;
mod resource;
mod response;
mod snapshot;
mod store;
mod watch;

pub use eval::WatchRequest;
pub use packed::PACKED_MAGIC;
pub use ready::ReadyEvent;
pub use resource::Resource;
pub use response::{decode, Decoded, Response, ResponseKind, FLAG_HEARTBEAT, MAGIC};
pub use snapshot::{Reference, Snapshot, SnapshotBuilder, TypeSet};
pub use store::{Cache, CacheConfig, StatusInfo};
pub use store::{CLUSTER_TYPE, ENDPOINT_TYPE, EXTENSION_CONFIG_TYPE, LISTENER_TYPE, ROUTE_TYPE};
pub use store::{RUNTIME_TYPE, SCOPED_ROUTE_TYPE, SECRET_TYPE, VIRTUAL_HOST_TYPE};
pub use watch::{CacheWatch, WatchKind};

#[cfg(test)]
mod tests;
