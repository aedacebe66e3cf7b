//! `Bus`: the store, the shared log of changes, and the watcher slots,
//! all behind one mutex that is only ever held for O(delta) work (plus the
//! inherently O(peers) initial views and legacy whole-NetMap encodes).

use super::change::Change;
use super::delta::PeerDelta;
use super::mask::{Mask, WATCH_INITIAL_CLIENT_VERSION, WATCH_INITIAL_DRIVE_SHARES, WATCH_INITIAL_HEALTH_STATE};
use super::mask::{WATCH_INITIAL_NET_MAP, WATCH_INITIAL_PREFS, WATCH_INITIAL_STATE, WATCH_PEER_WIRE_GUARD_STATE};
use super::mask::{WATCH_INITIAL_STATUS, WATCH_INITIAL_SUGGESTED_EXIT_NODE, WATCH_RATE_LIMIT, WATCH_SYS_POLICY_CHANGES};
use super::notify::{self, NotifyWriter};
use super::parse::{self, MapUpdate};
use super::slot::{Outgoing, Slot};
use super::store::Store;
use super::watcher::Watcher;
use crate::error::{Error, ErrorKind, Result};
use crate::sync::Fault;
use crate::sys::EventFd;
use serde_json::value::RawValue;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant, SystemTime};

/// Tuning knobs; `Default` gives the documented defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusOptions {
    /// `WATCH_RATE_LIMIT` watchers get netmap-type updates at most this often (3 s).
    pub rate_limit: Duration,
    /// Peers per message in an initial view or a coalesced backlog (1000).
    pub initial_chunk: usize,
    /// Log budget (entries + peer deltas) kept for watchers that lag; beyond
    /// it their backlog is folded into their own coalesced map (10 000).
    pub backlog: usize,
    /// The largest `apply` input in bytes (64 MiB). With the store's
    /// per-node cost (about the node's JSON plus 100 bytes) this bounds what
    /// one update can make the bus hold; a full netmap larger than this is
    /// sent as `Peers` plus `PeersChanged` updates.
    pub max_apply_bytes: usize,
}

impl Default for BusOptions {
    fn default() -> Self {
        BusOptions { rate_limit: Duration::from_secs(3), initial_chunk: 1000, backlog: 10_000, max_apply_bytes: 64 << 20 }
    }
}

/// Host event fields remembered for initial messages and `status`.
const REMEMBERED: &[&str] =
    &["State", "Prefs", "Health", "Engine", "BrowseToURL", "ClientVersion", "SuggestedExitNode", "DriveShares", "OutgoingFiles", "Policy"];

pub(crate) struct Core {
    pub store: Store,
    pub remembered: HashMap<String, Box<RawValue>>,
    /// Every peer's WireGuard state as published in `PeerState` deltas
    /// (StableNodeID -> state; a "none" state removes the entry).
    pub peer_state: serde_json::Map<String, serde_json::Value>,
    pub log: VecDeque<Arc<Change>>,
    pub next_seq: u64,
    log_cost: usize,
    pub slots: HashMap<u64, Slot>,
    next_slot: u64,
    pub closed: bool,
    ticker_running: bool,
    /// When the rate-limit ticker wakes next by itself (set while it
    /// sleeps): a due time set earlier than this must wake it (`tick`).
    ticker_until: Option<Instant>,
}

pub(crate) struct Shared {
    pub core: Mutex<Core>,
    /// Woken on every change, watcher close and bus close.
    pub wake: Condvar,
    /// Wakes the rate-limit ticker: on bus close and when a watcher's due
    /// time is earlier than the ticker's current sleep.
    tick: Condvar,
    pub options: BusOptions,
    /// Set when the ticker thread panicked: the bus is closed and every
    /// call fails with Panic and the reason.
    pub fault: Fault,
    #[cfg(test)]
    pub panic_next_tick: std::sync::atomic::AtomicBool,
}

impl Shared {
    /// Closed, or Panic with the reason after a ticker-thread panic.
    pub fn closed_error(&self) -> Error {
        self.fault.check().err().unwrap_or_else(|| Error::closed(CLOSED))
    }

    /// Closes the bus: every watcher ends (its fd turns readable), later
    /// calls fail.
    fn shut(&self) {
        let mut core = self.lock();
        core.closed = true;
        core.log.clear();
        for slot in core.slots.values_mut() {
            slot.closed = true;
            slot.outbox.clear();
            slot.pending = Default::default();
            slot.ready.signal();
        }
        drop(core);
        self.wake.notify_all();
        self.tick.notify_all();
    }

    pub fn lock(&self) -> MutexGuard<'_, Core> {
        self.core.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A rate-limited watcher's coalesced update becomes due at `due` (its
    /// slot's `due` is set, under the lock held as `core`): wakes the ticker
    /// if it sleeps past that, so the readiness fd turns readable on time.
    pub(crate) fn due_at(&self, core: &Core, due: Instant) {
        if core.ticker_running && core.ticker_until.is_none_or(|until| due < until) {
            self.tick.notify_all();
        }
    }
}

impl Core {
    fn push(&mut self, change: Change, backlog: usize) {
        let change = Arc::new(change);
        self.next_seq = change.seq + 1;
        self.log_cost += change.cost();
        for slot in self.slots.values() {
            if !slot.closed && slot.wants(&change) {
                slot.ready.signal();
            }
        }
        self.log.push_back(change);
        self.trim(backlog);
    }

    /// Drops log entries every watcher has read, and beyond the budget the
    /// oldest entries, folding them into the watchers that had not read them.
    /// Cost per dropped entry: O(entry x lagging watchers).
    pub fn trim(&mut self, backlog: usize) {
        let oldest_cursor = self.slots.values().filter(|s| !s.closed).map(|s| s.cursor).min().unwrap_or(self.next_seq);
        while let Some(front) = self.log.front() {
            if front.seq >= oldest_cursor && self.log_cost <= backlog {
                break;
            }
            let front = self.log.pop_front().expect("front exists");
            self.log_cost -= front.cost();
            for slot in self.slots.values_mut() {
                if !slot.closed && slot.cursor <= front.seq {
                    slot.fold(&front);
                }
            }
        }
    }

    fn seq(&self) -> u64 {
        self.next_seq
    }
}

/// The notify bus. Cheap to share: wrap it in an `Arc` or use it by
/// reference from any thread.
pub struct Bus {
    pub(crate) shared: Arc<Shared>,
}

const CLOSED: &str = "bus is closed";

/// 16 random lowercase hex digits, as tailscaled's `rands.HexString(16)`.
fn session_id(slot: u64) -> String {
    use std::hash::{BuildHasher, Hasher};
    // RandomState is seeded from the OS's random source once per process
    // and advanced per instance; the slot and clock make each id distinct.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(slot);
    h.write_u128(SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0));
    h.write_u32(std::process::id());
    format!("{:016x}", h.finish())
}

/// ipn.State numbers to names, for `status`.
fn state_name(raw: Option<&RawValue>) -> Option<String> {
    const NAMES: [&str; 7] = ["NoState", "InUseOtherUser", "NeedsLogin", "NeedsMachineAuth", "Stopped", "Starting", "Running"];
    let value: serde_json::Value = serde_json::from_str(raw?.get()).ok()?;
    match value {
        serde_json::Value::Number(n) => n.as_u64().and_then(|i| NAMES.get(i as usize)).map(|s| s.to_string()),
        serde_json::Value::String(s) => Some(s),
        _ => None,
    }
}

impl Bus {
    pub fn new(options: BusOptions) -> Result<Bus> {
        if options.initial_chunk == 0 {
            return Err(Error::invalid("initial_chunk must be at least 1"));
        }
        let core = Core {
            store: Store::default(),
            remembered: HashMap::new(),
            peer_state: serde_json::Map::new(),
            log: VecDeque::new(),
            next_seq: 0,
            log_cost: 0,
            slots: HashMap::new(),
            next_slot: 0,
            closed: false,
            ticker_running: false,
            ticker_until: None,
        };
        Ok(Bus { shared: Arc::new(Shared { core: Mutex::new(core), wake: Condvar::new(), tick: Condvar::new(), options, fault: Fault::new(), #[cfg(test)] panic_next_tick: Default::default() }) })
    }

    /// Options from JSON (`{"rate_limit_ms":3000,"initial_chunk":1000,"backlog":10000}`,
    /// every field optional); `None` = defaults.
    pub fn options_from_json(json: Option<&str>) -> Result<BusOptions> {
        let mut options = BusOptions::default();
        let Some(json) = json else { return Ok(options) };
        crate::json::check_depth(json.as_bytes(), "bus options")?;
        let value: serde_json::Value = serde_json::from_str(json).map_err(|e| Error::new(ErrorKind::Parse, format!("bus options: {e}")))?;
        let Some(map) = value.as_object() else { return Err(Error::new(ErrorKind::Parse, "bus options must be a JSON object")) };
        for (key, v) in map {
            let n = v.as_u64().ok_or_else(|| Error::new(ErrorKind::Parse, format!("bus option {key} must be a non-negative integer")))?;
            match key.as_str() {
                "rate_limit_ms" => options.rate_limit = Duration::from_millis(n),
                "initial_chunk" => options.initial_chunk = n as usize,
                "backlog" => options.backlog = n as usize,
                "max_apply_bytes" => options.max_apply_bytes = n as usize,
                _ => return Err(Error::invalid(format!("unknown bus option {key:?}"))),
            }
        }
        Ok(options)
    }

    /// Applies a `tailcfg.MapResponse`-shaped update. Parse errors leave the
    /// store unchanged. Cost O(size of the update), whatever the peer count.
    pub fn apply(&self, json: &[u8]) -> Result<()> {
        let limit = self.shared.options.max_apply_bytes;
        if json.len() > limit {
            return Err(Error::invalid(format!(
                "MapResponse of {} bytes is larger than the bus's max_apply_bytes ({limit}); split it into Peers and PeersChanged updates",
                json.len()
            )));
        }
        // Display names need the MagicDNS suffix of the self node's name:
        // parsed (outside the lock) with the current one, again in the rare
        // case that a concurrent apply changed it meanwhile.
        let mut self_name = self.self_name()?;
        let (mut core, applied) = loop {
            let update = MapUpdate::parse(json, &self_name)?;
            let mut core = self.shared.lock();
            if core.closed {
                return Err(self.shared.closed_error());
            }
            let now_name = core.store.self_name();
            if update.node.is_some() || now_name == self_name {
                let applied = core.store.apply(update, SystemTime::now());
                break (core, applied);
            }
            self_name = now_name;
        };
        let self_change = if applied.full_path { core.store.self_node.clone() } else { applied.self_node.clone() };
        if !applied.netmap_changed && self_change.is_none() {
            return Ok(());
        }
        let referenced = core.store.profiles_referenced(&applied.peers);
        let seq = core.seq();
        let mut change = Change::new(seq, applied.peers, self_change, applied.profiles);
        change.referenced = referenced;
        core.push(change, self.shared.options.backlog);
        drop(core);
        self.shared.wake.notify_all();
        Ok(())
    }

    /// Forwards a host event (`ipn.Notify` fields such as `State`, `Prefs`,
    /// `ErrMessage`, `LoginFinished`, `BrowseToURL`, `Health`, `Engine`) and
    /// remembers the stateful ones for initial messages.
    pub fn publish(&self, json: &[u8]) -> Result<()> {
        publish_on(&self.shared, json)
    }

    fn self_name(&self) -> Result<String> {
        let core = self.shared.lock();
        if core.closed {
            return Err(self.shared.closed_error());
        }
        Ok(core.store.self_name())
    }

    /// A second reference that can publish but does not own the bus
    /// (dropping it leaves the bus open); the lifecycle runtime uses one.
    pub fn link(&self) -> BusLink {
        BusLink { shared: self.shared.clone() }
    }

    /// Starts a watch session; see the module doc for what it receives.
    pub fn watch(&self, mask: u64) -> Result<Watcher> {
        let mask = Mask::parse(mask)?;
        let ready = Arc::new(EventFd::new()?);
        let mut core = self.shared.lock();
        if core.closed {
            return Err(self.shared.closed_error());
        }
        let id = core.next_slot;
        core.next_slot += 1;
        let mut slot = Slot::new(mask, core.next_seq, ready.clone());
        if mask.wants_initial_message() {
            let first = self.initial_message(&mut core, &mut slot, id);
            slot.outbox.push_back(Outgoing::Bytes(first));
            ready.signal();
        }
        core.slots.insert(id, slot);
        if mask.has(WATCH_RATE_LIMIT) && !core.ticker_running {
            core.ticker_running = true;
            spawn_ticker(Arc::downgrade(&self.shared));
        }
        Ok(Watcher::new(self.shared.clone(), id, ready, mask))
    }

    /// The first message, as tailscaled's `WatchNotificationsAs` builds it
    /// (ipn/ipnlocal/local.go): only for masks with an initial bit; the
    /// whole current state in one message (the netmap and status with every
    /// peer), unless the watcher asked for `WATCH_CHUNKED_INITIAL`.
    fn initial_message(&self, core: &mut Core, slot: &mut Slot, id: u64) -> Arc<[u8]> {
        let mask = slot.mask;
        let chunked = mask.chunked_initial();
        let mut w = NotifyWriter::new();
        let remembered = |key: &str| core.remembered.get(key).map(|r| r.get());
        if mask.has(WATCH_INITIAL_STATE) {
            w.string("SessionID", &session_id(id));
            let state = remembered("State").unwrap_or("0");
            w.raw("State", state);
            if state_name(core.remembered.get("State").map(|b| &**b)).as_deref() == Some("NeedsLogin") {
                if let Some(url) = remembered("BrowseToURL").filter(|u| *u != "\"\"") {
                    w.raw("BrowseToURL", url);
                }
            }
        }
        if mask.has(WATCH_INITIAL_PREFS) {
            if let Some(prefs) = remembered("Prefs") {
                w.raw("Prefs", prefs);
            }
        }
        if mask.has(WATCH_INITIAL_NET_MAP) {
            if let Some(node) = &core.store.self_node {
                w.raw("SelfChange", node.json());
                slot.note_self_node(node);
            }
        }
        if mask.has(WATCH_INITIAL_STATUS) {
            let state = state_name(core.remembered.get("State").map(|b| &**b));
            let status = super::status::ipn_status(&core.store, state.as_deref(), !chunked, |key| core.remembered.get(key).map(|b| &**b));
            w.raw("InitialStatus", std::str::from_utf8(&status).expect("JSON is UTF-8"));
        }
        let mut event = Vec::new();
        for (bit, key) in [
            (WATCH_INITIAL_DRIVE_SHARES, "DriveShares"),
            (WATCH_INITIAL_HEALTH_STATE, "Health"),
            (WATCH_INITIAL_SUGGESTED_EXIT_NODE, "SuggestedExitNode"),
            (WATCH_INITIAL_CLIENT_VERSION, "ClientVersion"),
            (WATCH_SYS_POLICY_CHANGES, "Policy"),
        ] {
            if let Some(raw) = core.remembered.get(key).filter(|_| mask.has(bit)) {
                event.push((key.to_string(), raw.clone()));
            }
        }
        if mask.has(WATCH_PEER_WIRE_GUARD_STATE) && !core.peer_state.is_empty() {
            let raw = serde_json::value::to_raw_value(&core.peer_state).expect("a JSON map always encodes");
            event.push(("PeerState".to_string(), raw));
        }
        // Health with or without its actions folded in, per the mask.
        super::change::write_event(&mut w, &event, slot.class);
        if mask.has(WATCH_INITIAL_NET_MAP) {
            let mut ids: Vec<&i64> = core.store.peers.keys().collect();
            ids.sort_unstable();
            let mut uids: Vec<&i64> = core.store.profiles.keys().collect();
            uids.sort_unstable();
            let profiles: Vec<(i64, Arc<serde_json::Value>)> = uids.into_iter().map(|u| (*u, core.store.profiles[u].clone())).collect();
            let take = if chunked { self.shared.options.initial_chunk } else { usize::MAX };
            w.netmap(&core.store, ids.iter().take(take).map(|id| &*core.store.peers[*id]), &profiles);
            if chunked {
                for id in ids.into_iter().skip(take) {
                    slot.pending.peers.push(*id, PeerDelta::Upsert { node: core.store.peers[id].clone(), added: true });
                }
            }
        } else if chunked {
            for (id, node) in &core.store.peers {
                slot.pending.peers.push(*id, PeerDelta::Upsert { node: node.clone(), added: true });
            }
            let batch = slot.pending.peers.take(self.shared.options.initial_chunk);
            let profiles = slot.profiles_for(&core.store, &batch, &[]);
            w.profiles(&profiles);
            w.peers(batch.iter().map(|(id, d)| (*id, d)), super::mask::PeerMode::Full);
        }
        if chunked {
            slot.initial_open = !slot.pending.peers.is_empty();
            if !slot.initial_open {
                w.boolean("InitialComplete", true);
            }
        }
        w.finish_always()
    }

    /// One peer's node, O(1). Closed after `close`.
    pub fn peer(&self, id: i64) -> Result<Vec<u8>> {
        let core = self.shared.lock();
        if core.closed {
            return Err(self.shared.closed_error());
        }
        let node =
            core.store.peers.get(&id).cloned().ok_or_else(|| Error::new(ErrorKind::NotFound, format!("no peer with NodeID {id}")))?;
        drop(core);
        Ok(node.json().as_bytes().to_vec())
    }

    /// The whole netmap: `SelfNode`, `Peers` (by NodeID), `UserProfiles`,
    /// `DNS`, `PacketFilterRules`, `DERPMap`, `Domain`. Closed after `close`.
    pub fn netmap(&self) -> Result<Vec<u8>> {
        let core = self.shared.lock();
        if core.closed {
            return Err(self.shared.closed_error());
        }
        Ok(notify::netmap_json(&core.store))
    }

    /// `ipnstate.Status` JSON, as tailscaled's `/localapi/v0/status`
    /// answers (see `status.rs`): every peer in `Peer` when `with_peers`
    /// (`?peers=false` leaves them out). O(peers). Closed after `close`.
    pub fn status(&self, with_peers: bool) -> Result<Vec<u8>> {
        let core = self.shared.lock();
        if core.closed {
            return Err(self.shared.closed_error());
        }
        let state = state_name(core.remembered.get("State").map(|b| &**b));
        Ok(super::status::ipn_status(&core.store, state.as_deref(), with_peers, |key| core.remembered.get(key).map(|b| &**b)))
    }

    /// The bus's own counters: `Version`, `BackendState`, `Self`,
    /// `PeerCount`, `UserProfileCount`, `Health`, `Watchers`,
    /// `NetMapVersion`. O(1) apart from `Watchers`. Closed after `close`.
    pub fn stats(&self) -> Result<Vec<u8>> {
        let core = self.shared.lock();
        if core.closed {
            return Err(self.shared.closed_error());
        }
        Ok(status_json(&core))
    }

    /// Closes the bus and every watcher; blocked `next` calls return Closed.
    /// Idempotent.
    pub fn close(&self) {
        self.shared.shut();
    }
}

impl Drop for Bus {
    fn drop(&mut self) {
        self.close();
    }
}

/// Publishes through a bus it does not own; see `Bus::link`.
#[derive(Clone)]
pub struct BusLink {
    shared: Arc<Shared>,
}

impl BusLink {
    /// `Bus::publish` on the linked bus (Closed once it is closed).
    pub fn publish(&self, json: &[u8]) -> Result<()> {
        publish_on(&self.shared, json)
    }
}

fn publish_on(shared: &Shared, json: &[u8]) -> Result<()> {
    let event = parse::parse_event(json)?;
    let mut core = shared.lock();
    if core.closed {
        return Err(shared.closed_error());
    }
    if event.is_empty() {
        return Ok(());
    }
    for (key, raw) in &event {
        if REMEMBERED.contains(&key.as_str()) {
            core.remembered.insert(key.clone(), raw.clone());
        }
        if key == "LoginFinished" {
            core.remembered.remove("BrowseToURL"); // the login URL is spent
        }
        if key == "PeerState" {
            if let Ok(serde_json::Value::Object(states)) = serde_json::from_str::<serde_json::Value>(raw.get()) {
                for (peer, state) in states {
                    if state.get("PeerWireGuardState").and_then(|s| s.as_str()) == Some("none") {
                        core.peer_state.remove(&peer);
                    } else {
                        core.peer_state.insert(peer, state);
                    }
                }
            }
        }
    }
    let seq = core.seq();
    core.push(Change::from_event(seq, event), shared.options.backlog);
    drop(core);
    shared.wake.notify_all();
    Ok(())
}

fn status_json(core: &Core) -> Vec<u8> {
    let mut w = NotifyWriter::new();
    if let Some(name) = state_name(core.remembered.get("State").map(|b| &**b)) {
        w.string("BackendState", &name);
    }
    if let Some(node) = &core.store.self_node {
        w.raw("Self", node.json());
    }
    w.raw("PeerCount", &core.store.peers.len().to_string());
    w.raw("UserProfileCount", &core.store.profiles.len().to_string());
    if let Some(health) = core.remembered.get("Health") {
        w.raw("Health", health.get());
    }
    w.raw("Watchers", &core.slots.values().filter(|s| !s.closed).count().to_string());
    w.raw("NetMapVersion", &core.store.version.to_string());
    w.finish_always().to_vec()
}

/// Wakes rate-limited watchers whose coalesced update became due, so their
/// readiness fd turns readable without anyone calling `next`. One thread per
/// bus, started by the first rate-limited watch, gone when the bus is.
fn spawn_ticker(shared: Weak<Shared>) {
    let spawned = std::thread::Builder::new().name("meshring-bus-tick".into()).spawn(move || loop {
        let Some(shared) = shared.upgrade() else { return };
        let mut done = false;
        // A panic in a round (a bug) closes the bus with the reason.
        let ok = crate::sync::fault::guard("notify bus ticker thread", &shared.fault, || shared.shut(), || done = tick_round(&shared));
        if done || !ok {
            return;
        }
        // `shared` drops here: no strong reference is held between rounds.
    });
    if let Err(e) = spawned {
        log::warn!("notify bus: no rate-limit ticker thread ({e}); rate-limited fds wake on the next change");
    }
}

/// One ticker round: signals the due watchers, then sleeps until the next
/// is due (or a second). True once the bus is closed.
fn tick_round(shared: &Shared) -> bool {
    {
        #[cfg(test)]
        if shared.panic_next_tick.swap(false, std::sync::atomic::Ordering::SeqCst) {
            panic!("ticker test panic");
        }
        let mut core = shared.lock();
        if core.closed {
            return true;
        }
        let now = Instant::now();
        let mut next_due = now + Duration::from_secs(1);
        for slot in core.slots.values_mut() {
            match slot.due {
                Some(due) if due <= now => {
                    slot.due = None;
                    slot.ready.signal();
                }
                Some(due) => next_due = next_due.min(due),
                None => {}
            }
        }
        let wait = next_due.saturating_duration_since(now);
        core.ticker_until = Some(next_due);
        // Woken early by `Shared::due_at` (a watcher's update is due before
        // `next_due`) and by close.
        let mut core = shared.tick.wait_timeout(core, wait).unwrap_or_else(|p| p.into_inner()).0;
        core.ticker_until = None;
    }
    false
}
