//! `Cache`: snapshots and status per node key, watches indexed per node per
//! type. The lock is held for bookkeeping only; evaluation, hashing and
//! response building happen outside it (see `settle`).

use super::eval::{self, Outcome, Req, WatchRequest};
use super::ready::{Collected, ReadyEvent, ReadyQueue};
use super::response::Response;
use super::snapshot::{Snapshot, TypeView};
use super::watch::{CacheWatch, Slot, WatchKind, ADS_DROPPED, CACHE_CLOSED, CANCELLED, NODE_CLEARED, PANICKED};
use crate::error::{Error, ErrorKind, Result};
use crate::sync::{Fault, Wait};
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant, SystemTime};

pub const CLUSTER_TYPE: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
pub const ENDPOINT_TYPE: &str = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";
pub const LISTENER_TYPE: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
pub const ROUTE_TYPE: &str = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
pub const SCOPED_ROUTE_TYPE: &str = "type.googleapis.com/envoy.config.route.v3.ScopedRouteConfiguration";
pub const VIRTUAL_HOST_TYPE: &str = "type.googleapis.com/envoy.config.route.v3.VirtualHost";
pub const SECRET_TYPE: &str = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";
pub const RUNTIME_TYPE: &str = "type.googleapis.com/envoy.service.runtime.v3.Runtime";
pub const EXTENSION_CONFIG_TYPE: &str = "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig";

/// The order responses of one SetSnapshot are delivered in (go-control-plane's
/// ADS response order); other types after these, by name.
const ORDER: [&str; 9] = [
    CLUSTER_TYPE,
    ENDPOINT_TYPE,
    LISTENER_TYPE,
    ROUTE_TYPE,
    SCOPED_ROUTE_TYPE,
    VIRTUAL_HOST_TYPE,
    SECRET_TYPE,
    RUNTIME_TYPE,
    EXTENSION_CONFIG_TYPE,
];

fn type_rank(type_url: &str) -> usize {
    ORDER.iter().position(|t| *t == type_url).unwrap_or(ORDER.len())
}

/// Cache settings; `Default` = not ADS, no heartbeats, clusters and
/// listeners full-state, no consistency check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheConfig {
    /// ADS mode: a SOTW watch naming resources is answered only when every
    /// resource of its type in the snapshot is named (go-control-plane's
    /// superset rule); until then it stays parked.
    pub ads: bool,
    /// Resend TTL'd resources to SOTW watches that cover them this often.
    pub heartbeat_interval: Option<Duration>,
    /// Kept for compatibility; no effect: every SOTW answer carries every
    /// covered resource, as go-control-plane's SnapshotCache sends them.
    pub full_state_types: BTreeSet<String>,
    /// `set_snapshot` rejects snapshots whose references do not resolve.
    pub check_consistency: bool,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            ads: false,
            heartbeat_interval: None,
            full_state_types: [CLUSTER_TYPE, LISTENER_TYPE].into_iter().map(String::from).collect(),
            check_consistency: false,
        }
    }
}

/// go-control-plane's `StatusInfo` for one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusInfo {
    pub node: String,
    pub last_watch_request: Option<SystemTime>,
    pub last_delta_watch_request: Option<SystemTime>,
    pub num_watches: usize,
    pub num_delta_watches: usize,
}

impl StatusInfo {
    /// `{"node":..,"num_watches":N,"num_delta_watches":M,
    /// "last_watch_request_unix_ms":T|null,"last_delta_watch_request_unix_ms":T|null}`
    pub fn to_json(&self) -> Vec<u8> {
        let ms = |t: Option<SystemTime>| {
            t.and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok()).map(|d| d.as_millis() as u64)
        };
        serde_json::to_vec(&serde_json::json!({
            "node": self.node,
            "num_watches": self.num_watches,
            "num_delta_watches": self.num_delta_watches,
            "last_watch_request_unix_ms": ms(self.last_watch_request),
            "last_delta_watch_request_unix_ms": ms(self.last_delta_watch_request),
        }))
        .expect("JSON encodes")
    }
}

pub(crate) struct Parked {
    slot: Arc<Slot>,
    req: Arc<Req>,
    kind: WatchKind,
    id: u64,
    /// The generation of the node entry the watch was opened on: a watch
    /// evaluated while its node was cleared (and made again) must not park
    /// in the new entry.
    node_generation: u64,
}

#[derive(Default)]
struct TypeWatches {
    sotw: HashMap<u64, Parked>,
    delta: HashMap<u64, Parked>,
}

impl TypeWatches {
    fn map(&mut self, kind: WatchKind) -> &mut HashMap<u64, Parked> {
        match kind {
            WatchKind::Sotw => &mut self.sotw,
            WatchKind::Delta => &mut self.delta,
        }
    }
}

#[derive(Default)]
struct Status {
    last_watch: Option<SystemTime>,
    last_delta_watch: Option<SystemTime>,
    /// Parked watches by type URL: a SetSnapshot visits only changed types.
    watches: HashMap<Arc<str>, TypeWatches>,
    n_sotw: usize,
    n_delta: usize,
}

impl Status {
    fn park(&mut self, p: Parked) {
        match p.kind {
            WatchKind::Sotw => self.n_sotw += 1,
            WatchKind::Delta => self.n_delta += 1,
        }
        self.watches.entry(p.req.type_url.clone()).or_default().map(p.kind).insert(p.id, p);
    }

    fn unpark(&mut self, type_url: &str, kind: WatchKind, id: u64) -> Option<Parked> {
        let tw = self.watches.get_mut(type_url)?;
        let p = tw.map(kind).remove(&id)?;
        match kind {
            WatchKind::Sotw => self.n_sotw -= 1,
            WatchKind::Delta => self.n_delta -= 1,
        }
        if tw.sotw.is_empty() && tw.delta.is_empty() {
            self.watches.remove(type_url);
        }
        Some(p)
    }

    /// Removes every watch of `type_url`.
    fn take_type(&mut self, type_url: &str) -> Vec<Parked> {
        let Some(tw) = self.watches.remove(type_url) else { return Vec::new() };
        self.n_sotw -= tw.sotw.len();
        self.n_delta -= tw.delta.len();
        tw.sotw.into_values().chain(tw.delta.into_values()).collect()
    }

    fn take_all(&mut self) -> Vec<Parked> {
        let types: Vec<Arc<str>> = self.watches.keys().cloned().collect();
        types.iter().flat_map(|t| self.take_type(t)).collect()
    }
}

#[derive(Default)]
struct Node {
    /// Unique per entry: a cleared node made again gets a new one.
    generation: u64,
    snapshot: Option<Arc<Snapshot>>,
    /// Present once a watch was opened for the node (as in go-control-plane,
    /// whose status map is filled by watches only).
    status: Option<Status>,
}

impl Core {
    /// The node's entry, made with a fresh generation when missing.
    fn node(&mut self, key: &str) -> &mut Node {
        if !self.nodes.contains_key(key) {
            let generation = self.next_id;
            self.next_id += 1;
            self.nodes.insert(key.to_string(), Node { generation, ..Default::default() });
        }
        self.nodes.get_mut(key).expect("inserted above")
    }
}

struct Core {
    nodes: HashMap<String, Node>,
    closed: bool,
    next_id: u64,
    /// Calls holding watches taken out of the index (to answer or end them
    /// with the lock released). The ready queue reports Closed only once
    /// the cache is closed and none is left, so every event such a call
    /// queues comes before it.
    holders: usize,
}

pub(crate) struct Shared {
    core: Mutex<Core>,
    /// Wakes the heartbeat thread on close.
    wake: Condvar,
    config: CacheConfig,
    /// Where queued watches report (`take_ready`).
    ready: Arc<ReadyQueue>,
    /// Set if the heartbeat thread panicked: calls then fail with Panic.
    fault: Fault,
    #[cfg(test)]
    pub(crate) panic_next_heartbeat: std::sync::atomic::AtomicBool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Core> {
        self.core.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Closed, or Panic with the reason after a heartbeat-thread panic.
    fn closed_error(&self) -> Error {
        self.fault.check().err().unwrap_or_else(|| Error::closed(CLOSED))
    }

    /// Counts the caller as holding watches out of the index until the
    /// returned guard drops (see `Core::holders`).
    fn hold<'a>(&'a self, core: &mut Core) -> Holding<'a> {
        core.holders += 1;
        Holding(self)
    }

    /// `at_open`: the watch is being opened (a SOTW watch is then also
    /// answered for names not yet returned; see `eval::sotw`).
    fn evaluate(&self, p: &Parked, view: &TypeView, at_open: bool) -> Outcome {
        match p.kind {
            WatchKind::Sotw => eval::sotw(&p.req, view, self.config.ads, at_open),
            WatchKind::Delta => match eval::delta(&p.req, view) {
                Some(r) => Outcome::Answer(Arc::new(r)),
                None => Outcome::Park,
            },
        }
    }

    /// Evaluates watches against the views they were taken with, outside
    /// the lock; delivers the answered ones and parks the rest under one
    /// lock, unless their type changed meanwhile (then evaluates again).
    /// Answers of queued watches go to `collect` (up to its room) instead
    /// of the ready queue.
    fn settle(&self, mut pending: Vec<(Parked, TypeView)>, collect: &mut Collected, at_open: bool) {
        while !pending.is_empty() {
            let mut unanswered = Vec::new();
            for (p, view) in pending {
                match self.evaluate(&p, &view, at_open) {
                    Outcome::Answer(response) => p.slot.deliver_into(response, collect),
                    Outcome::Park => unanswered.push((p, view)),
                    Outcome::Drop => p.slot.close(ADS_DROPPED),
                }
            }
            if unanswered.is_empty() {
                return;
            }
            let mut retry = Vec::new();
            let mut core = self.lock();
            for (p, view) in unanswered {
                if p.slot.is_closed() {
                    continue; // cancelled while being evaluated
                }
                if core.closed {
                    p.slot.close(CACHE_CLOSED);
                    continue;
                }
                let Some(node) = core.nodes.get_mut(&*p.req.node).filter(|n| n.generation == p.node_generation) else {
                    p.slot.close(NODE_CLEARED);
                    continue;
                };
                let current = node.snapshot.as_ref().map(|s| s.view(&p.req.type_url));
                let Some(status) = node.status.as_mut() else {
                    p.slot.close(NODE_CLEARED);
                    continue;
                };
                match current {
                    Some(current) if !current.identical(&view) => retry.push((p, current)),
                    _ => {
                        let mut p = p;
                        if at_open && p.kind == WatchKind::Sotw {
                            // Only an opening SOTW watch reads its returned
                            // state: free it now, not when the watch answers.
                            if let Some(req) = Arc::get_mut(&mut p.req) {
                                req.known = eval::Known::default();
                            }
                        }
                        status.park(p)
                    }
                }
            }
            drop(core);
            pending = retry;
        }
    }

    pub(crate) fn cancel(&self, w: &CacheWatch) {
        let mut core = self.lock();
        if let Some(status) = core.nodes.get_mut(&*w.node).and_then(|n| n.status.as_mut()) {
            status.unpark(&w.type_url, w.kind, w.id);
        }
        // Under the cache lock, so `settle` cannot park it afterwards.
        w.slot.close(CANCELLED);
    }

    fn close(&self) {
        let mut core = self.lock();
        core.closed = true;
        let mut slots = Vec::new();
        for node in core.nodes.values_mut() {
            if let Some(status) = node.status.as_mut() {
                slots.extend(status.take_all().into_iter().map(|p| p.slot));
            }
        }
        core.nodes.clear();
        // Also when another close took every slot first: the queue closes
        // when the last holder is done, after each closed event.
        let holding = self.hold(&mut core);
        drop(core);
        self.wake.notify_all();
        let why = if self.fault.is_set() { PANICKED } else { CACHE_CLOSED };
        for slot in slots {
            slot.close(why);
        }
        drop(holding);
    }

    /// One heartbeat round (`eval::heartbeat`): SOTW watches of types with
    /// TTL'd resources are answered with the covered ones (flagged) and
    /// leave the index.
    fn heartbeat_round(&self) {
        #[cfg(test)]
        if self.panic_next_heartbeat.swap(false, std::sync::atomic::Ordering::SeqCst) {
            panic!("heartbeat test panic");
        }
        let mut due = Vec::new();
        let mut core = self.lock();
        for node in core.nodes.values_mut() {
            let (Some(snapshot), Some(status)) = (node.snapshot.as_ref(), node.status.as_mut()) else { continue };
            let types: Vec<Arc<str>> = status.watches.iter().filter(|(_, tw)| !tw.sotw.is_empty()).map(|(t, _)| t.clone()).collect();
            for type_url in types {
                let view = snapshot.view(&type_url);
                if view.ttl_count() == 0 {
                    continue;
                }
                let ids: Vec<(u64, Outcome)> = status.watches[&*type_url]
                    .sotw
                    .values()
                    .filter_map(|p| eval::heartbeat(&p.req, &view, self.config.ads).map(|o| (p.id, o)))
                    .collect();
                for (id, outcome) in ids {
                    if let Some(p) = status.unpark(&type_url, WatchKind::Sotw, id) {
                        due.push((p, outcome));
                    }
                }
            }
        }
        let holding = self.hold(&mut core);
        drop(core);
        for (p, outcome) in due {
            match outcome {
                Outcome::Answer(r) => p.slot.deliver(r),
                _ => p.slot.close(ADS_DROPPED),
            }
        }
        drop(holding);
    }
}

/// See `Shared::hold`.
struct Holding<'a>(&'a Shared);

impl Drop for Holding<'_> {
    fn drop(&mut self) {
        let mut core = self.0.lock();
        core.holders -= 1;
        let last = core.closed && core.holders == 0;
        drop(core);
        if last {
            self.0.ready.close();
        }
    }
}

/// The snapshot cache (go-control-plane `SnapshotCache` semantics over
/// opaque resources). Thread-safe; share it by reference or in an `Arc`.
pub struct Cache {
    pub(crate) shared: Arc<Shared>,
}

const CLOSED: &str = "cache is closed";

impl Cache {
    pub fn new(config: CacheConfig) -> Result<Cache> {
        if config.heartbeat_interval.is_some_and(|d| d.is_zero()) {
            return Err(Error::invalid("heartbeat interval must be positive"));
        }
        let interval = config.heartbeat_interval;
        let shared = Arc::new(Shared {
            core: Mutex::new(Core { nodes: HashMap::new(), closed: false, next_id: 1, holders: 0 }),
            wake: Condvar::new(),
            config,
            ready: Arc::new(ReadyQueue::default()),
            fault: Fault::new(),
            #[cfg(test)]
            panic_next_heartbeat: Default::default(),
        });
        if let Some(interval) = interval {
            spawn_heartbeats(Arc::downgrade(&shared), interval)?;
        }
        Ok(Cache { shared })
    }

    pub fn config(&self) -> &CacheConfig {
        &self.shared.config
    }

    /// Sets the node's snapshot and answers the watches it concerns: only
    /// watches of types whose version or resources changed are visited.
    /// InvalidArgument for an inconsistent snapshot when the cache checks
    /// consistency; Closed after `close`.
    pub fn set_snapshot(&self, node: &str, snapshot: Arc<Snapshot>) -> Result<()> {
        self.set_snapshot_collect(node, snapshot, 0).map(drop)
    }

    /// `set_snapshot`, returning the answers of queued watches it produced
    /// (up to `collect`; any more go to the ready queue) instead of queueing
    /// them: the caller hands them out on its own thread, with no wake-up
    /// of a `take_ready` thread.
    pub fn set_snapshot_collect(&self, node: &str, snapshot: Arc<Snapshot>, collect: usize) -> Result<Vec<ReadyEvent>> {
        if self.shared.config.check_consistency {
            snapshot.consistent()?;
        }
        let previous = {
            let core = self.shared.lock();
            if core.closed {
                return Err(self.shared.closed_error());
            }
            core.nodes.get(node).and_then(|n| n.snapshot.clone())
        };
        // Outside the lock (and once per pair of snapshots, however many
        // nodes move between them): which types changed.
        let diff = previous.as_ref().map(|previous| snapshot.diff_from(previous));
        let mut pending = Vec::new();
        let holding = {
            let mut core = self.shared.lock();
            if core.closed {
                return Err(self.shared.closed_error());
            }
            let holding = self.shared.hold(&mut core);
            let entry = core.node(node);
            let old = entry.snapshot.replace(snapshot.clone());
            // Valid only if no other set_snapshot slipped in between.
            let diff = match (&old, &previous, &diff) {
                (Some(o), Some(p), Some(d)) if Arc::ptr_eq(o, p) => Some(d),
                _ => None,
            };
            if let Some(status) = entry.status.as_mut() {
                let (mut gone_sotw, mut gone_delta) = (0, 0);
                status.watches.retain(|type_url, tw| {
                    let same = match (&old, diff) {
                        (_, Some(d)) => d.unchanged(type_url),
                        (Some(o), None) => o.view(type_url).identical(&snapshot.view(type_url)),
                        (None, None) => false,
                    };
                    if same {
                        return true;
                    }
                    let view = snapshot.view(type_url);
                    gone_sotw += tw.sotw.len();
                    gone_delta += tw.delta.len();
                    let tw = std::mem::take(tw);
                    pending.extend(tw.sotw.into_values().chain(tw.delta.into_values()).map(|p| (p, view.clone())));
                    false
                });
                status.n_sotw -= gone_sotw;
                status.n_delta -= gone_delta;
            }
            holding
        };
        pending.sort_by(|(a, _), (b, _)| {
            (type_rank(&a.req.type_url), &a.req.type_url, a.id).cmp(&(type_rank(&b.req.type_url), &b.req.type_url, b.id))
        });
        let mut collected = Collected::with_room(collect);
        self.shared.settle(pending, &mut collected, false);
        drop(holding);
        Ok(collected.events)
    }

    /// The node's snapshot; NotFound if none is set, Closed after `close`.
    pub fn get_snapshot(&self, node: &str) -> Result<Arc<Snapshot>> {
        let core = self.shared.lock();
        if core.closed {
            return Err(self.shared.closed_error());
        }
        core.nodes
            .get(node)
            .and_then(|n| n.snapshot.clone())
            .ok_or_else(|| Error::new(ErrorKind::NotFound, format!("no snapshot found for node {node:?}")))
    }

    /// Removes the node's snapshot and status. Its open watches end (their
    /// `next` returns Closed): go-control-plane drops them silently, which a
    /// pull API would turn into a watch that never answers. Unknown nodes
    /// are a no-op. Closed after `close`.
    pub fn clear_snapshot(&self, node: &str) -> Result<()> {
        let (removed, holding) = {
            let mut core = self.shared.lock();
            if core.closed {
                return Err(self.shared.closed_error());
            }
            let holding = self.shared.hold(&mut core);
            (core.nodes.remove(node), holding)
        };
        if let Some(mut status) = removed.and_then(|n| n.status) {
            for p in status.take_all() {
                p.slot.close(NODE_CLEARED);
            }
        }
        drop(holding);
        Ok(())
    }

    /// Status of a node that has opened watches; NotFound otherwise, Closed
    /// after `close`.
    pub fn status(&self, node: &str) -> Result<StatusInfo> {
        let core = self.shared.lock();
        if core.closed {
            return Err(self.shared.closed_error());
        }
        let status = core
            .nodes
            .get(node)
            .and_then(|n| n.status.as_ref())
            .ok_or_else(|| Error::new(ErrorKind::NotFound, format!("no status for node {node:?}")))?;
        Ok(StatusInfo {
            node: node.to_string(),
            last_watch_request: status.last_watch,
            last_delta_watch_request: status.last_delta_watch,
            num_watches: status.n_sotw,
            num_delta_watches: status.n_delta,
        })
    }

    /// Node keys with a status (nodes that opened watches), sorted; Closed
    /// after `close`.
    pub fn status_keys(&self) -> Result<Vec<String>> {
        let core = self.shared.lock();
        if core.closed {
            return Err(self.shared.closed_error());
        }
        let mut keys: Vec<String> = core.nodes.iter().filter(|(_, n)| n.status.is_some()).map(|(k, _)| k.clone()).collect();
        keys.sort();
        Ok(keys)
    }

    /// Opens a SOTW watch. Answered at once when the snapshot's version of
    /// the type differs from `version_info` or a covered resource was not
    /// yet returned (see `eval::sotw`); otherwise parked until a
    /// `set_snapshot` changes the type. Without a snapshot it parks.
    pub fn watch(&self, request: WatchRequest) -> Result<CacheWatch> {
        self.open(request, WatchKind::Sotw)
    }

    /// Opens a delta watch: answered when a subscribed resource changed
    /// against `known` or was removed (or at once for a first wildcard
    /// request); otherwise parked.
    pub fn delta_watch(&self, request: WatchRequest) -> Result<CacheWatch> {
        self.open(request, WatchKind::Delta)
    }

    /// A delta watch that continues the stream of `previous` (a delta watch
    /// of the same node and type whose response was taken): the stream's
    /// versions are that response's next state, kept in the library, so
    /// `request.known` must be empty and the host passes nothing back.
    /// Asking the same as `previous` (same names or wildcard), its answer
    /// costs what changed since that response, not the type's size, and
    /// its encoding leaves the next state out (the library keeps it for the
    /// watch after this one). InvalidArgument otherwise.
    pub fn delta_watch_after(&self, previous: &CacheWatch, request: WatchRequest) -> Result<CacheWatch> {
        if previous.kind != WatchKind::Delta {
            return Err(Error::invalid("the previous watch is not a delta watch"));
        }
        if *previous.node != *request.node || *previous.type_url != *request.type_url {
            return Err(Error::invalid("the previous watch is of another node or type"));
        }
        if !request.known.is_empty() {
            return Err(Error::invalid("a watch opened after another takes the stream's state from it: pass no known versions"));
        }
        let Some(prev) = previous.taken_response() else {
            return Err(Error::invalid("the previous watch has no taken response to continue from"));
        };
        let mut req = Req::new(request, true);
        req.known = eval::Known::After(prev);
        self.open_req(req, WatchKind::Delta)
    }

    fn open(&self, request: WatchRequest, kind: WatchKind) -> Result<CacheWatch> {
        if request.type_url.is_empty() {
            return Err(Error::invalid("type URL is empty"));
        }
        self.open_req(Req::new(request, kind == WatchKind::Delta), kind)
    }

    fn open_req(&self, req: Req, kind: WatchKind) -> Result<CacheWatch> {
        let queue = req.queue_token.map(|token| (Arc::downgrade(&self.shared.ready), token));
        let req = Arc::new(req);
        let slot = Arc::new(Slot::new(queue));
        let mut core = self.shared.lock();
        if core.closed {
            return Err(self.shared.closed_error());
        }
        let id = core.next_id;
        core.next_id += 1;
        let node = core.node(&req.node);
        let node_generation = node.generation;
        let status = node.status.get_or_insert_with(Status::default);
        let now = Some(SystemTime::now());
        match kind {
            WatchKind::Sotw => status.last_watch = now,
            WatchKind::Delta => status.last_delta_watch = now,
        }
        let watch = CacheWatch {
            slot: slot.clone(),
            shared: Arc::downgrade(&self.shared),
            node: req.node.clone(),
            type_url: req.type_url.clone(),
            id,
            kind,
        };
        let mut parked = Parked { slot, req, kind, id, node_generation };
        let Some(view) = node.snapshot.as_ref().map(|s| s.view(&parked.req.type_url)) else {
            status.park(parked);
            drop(core);
            watch.slot.opened();
            return Ok(watch);
        };
        if kind == WatchKind::Sotw {
            // Deciding is cheap: a watch that waits parks in this one step.
            match eval::sotw_decide(&parked.req, &view, self.shared.config.ads, true) {
                eval::Decision::Park => {
                    // Read only while opening: freed below, outside the lock.
                    let known = Arc::get_mut(&mut parked.req).map(|r| std::mem::take(&mut r.known));
                    status.park(parked);
                    drop(core);
                    drop(known);
                    watch.slot.opened();
                    return Ok(watch);
                }
                eval::Decision::Drop => {
                    drop(core);
                    parked.slot.close(ADS_DROPPED);
                    watch.slot.opened();
                    return Ok(watch);
                }
                eval::Decision::Answer => {}
            }
        }
        drop(core);
        self.shared.settle(vec![(parked, view)], &mut Collected::with_room(0), true);
        watch.slot.opened();
        Ok(watch)
    }

    /// Fetch (REST): the covered resources, UpToDate when `version_info`
    /// equals the type's version, NotFound without a snapshot.
    pub fn fetch(&self, request: WatchRequest) -> Result<Response> {
        if request.type_url.is_empty() {
            return Err(Error::invalid("type URL is empty"));
        }
        let req = Req::new(request, false);
        let snapshot = {
            let core = self.shared.lock();
            if core.closed {
                return Err(self.shared.closed_error());
            }
            core.nodes.get(&*req.node).and_then(|n| n.snapshot.clone())
        }
        .ok_or_else(|| Error::new(ErrorKind::NotFound, format!("missing snapshot for node {:?}", req.node)))?;
        let view = snapshot.view(&req.type_url);
        if *view.version == *req.version_info {
            return Err(Error::new(ErrorKind::UpToDate, "skip fetch: version up to date"));
        }
        Ok(eval::fetch(&req, &view))
    }

    /// Events of queued watches (opened with `WatchRequest::queue_token`):
    /// up to `max` at once, each a response or the reason the watch ended
    /// (node cleared, cache closed). WouldBlock (`Wait::Never`, none),
    /// Timeout, Closed once the cache is closed and every event was taken.
    /// A queued watch whose answer was already there when `watch` /
    /// `delta_watch` returned is not reported: take it with `next`.
    pub fn take_ready(&self, wait: Wait, max: usize) -> Result<Vec<ReadyEvent>> {
        self.shared.ready.take(wait, max).map_err(|e| if e.kind == ErrorKind::Closed { self.shared.closed_error() } else { e })
    }

    /// Readable while `take_ready` would not block (made on first use).
    pub fn ready_fd(&self) -> Result<std::os::fd::RawFd> {
        self.shared.ready.fd()
    }

    /// Closes the cache: every open watch returns Closed, later calls too,
    /// the heartbeat thread ends. Idempotent.
    pub fn close(&self) {
        self.shared.close();
    }
}

impl Drop for Cache {
    fn drop(&mut self) {
        self.close();
    }
}

/// The heartbeat thread: holds only a weak reference between rounds and
/// ends when the cache closes or goes away.
fn spawn_heartbeats(shared: Weak<Shared>, interval: Duration) -> Result<()> {
    std::thread::Builder::new()
        .name("meshring-cache-hb".into())
        .spawn(move || {
            let mut next = Instant::now() + interval;
            loop {
                let Some(shared) = shared.upgrade() else { return };
                let mut core = shared.lock();
                loop {
                    if core.closed {
                        return;
                    }
                    let now = Instant::now();
                    if now >= next {
                        break;
                    }
                    core = shared.wake.wait_timeout(core, next - now).unwrap_or_else(|p| p.into_inner()).0;
                }
                drop(core);
                // A panic in a round (a bug) closes the cache with the reason.
                if !crate::sync::fault::guard("cache heartbeat thread", &shared.fault, || shared.close(), || shared.heartbeat_round()) {
                    return;
                }
                let now = Instant::now();
                next = if next + interval > now { next + interval } else { now + interval };
            }
        })
        .map(drop)
        .map_err(|e| Error::from_io("spawn heartbeat thread", &e))
}
