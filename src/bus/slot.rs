//! The bus-side state of one watcher and the decision of what it reads next.
//!
//! A watcher that keeps up walks the shared log with its cursor and gets the
//! per-class bytes of each entry (`Change::encoded`). Everything else — the
//! initial view, a backlog folded because the log had to drop entries, a
//! rate-limited window — sits in its `Pending` map and is encoded for this
//! watcher alone, in chunks of at most `initial_chunk` peers.

use super::change::{write_event, Change, Pending};
use super::delta::PeerDelta;
use super::mask::{Class, Mask, PeerMode, WATCH_RATE_LIMIT};
use super::notify::NotifyWriter;
use super::store::Store;
use crate::sys::EventFd;
use serde_json::Value;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A message ready for the watcher, in order.
pub(crate) enum Outgoing {
    Bytes(Arc<[u8]>),
    /// A log entry whose per-class bytes are produced outside the bus lock.
    Shared(Arc<Change>),
}

pub(crate) enum Step {
    Message(Outgoing),
    /// Nothing to read now; `Some` = rate-limited data becomes due then.
    Idle(Option<Instant>),
}

/// What the slot needs from the bus for one step.
pub(crate) struct View<'a> {
    pub store: &'a Store,
    pub log: &'a VecDeque<Arc<Change>>,
    pub next_seq: u64,
    pub chunk: usize,
    pub rate_limit: Duration,
    /// The whole-NetMap Notify, built on demand and cached per store version.
    pub netmap: &'a mut dyn FnMut() -> Arc<[u8]>,
}

pub(crate) struct Slot {
    pub mask: Mask,
    pub class: Class,
    /// Sequence number of the next log entry this watcher reads.
    pub cursor: u64,
    pub pending: Pending,
    pub outbox: VecDeque<Outgoing>,
    /// Profiles delivered on this session (pointer identity = version).
    pub seen_profiles: HashMap<i64, Arc<Value>>,
    /// The initial peer view is still being sent.
    pub initial_open: bool,
    pub netmap_dirty: bool,
    pub last_netmap_sent: Option<Instant>,
    /// Rate-limited data waits until then (the ticker signals the fd).
    pub due: Option<Instant>,
    pub ready: Arc<EventFd>,
    pub closed: bool,
}

impl Slot {
    pub fn new(mask: Mask, cursor: u64, ready: Arc<EventFd>) -> Slot {
        Slot {
            mask,
            class: mask.class(),
            cursor,
            pending: Pending::default(),
            outbox: VecDeque::new(),
            seen_profiles: HashMap::new(),
            initial_open: false,
            netmap_dirty: false,
            last_netmap_sent: None,
            due: None,
            ready,
            closed: false,
        }
    }

    /// Peer deltas matter to this watcher (peer bits, or its initial view is open).
    pub fn tracks_peers(&self) -> bool {
        self.class.peers != PeerMode::None || self.initial_open
    }

    fn rate_limited(&self) -> bool {
        self.mask.has(WATCH_RATE_LIMIT)
    }

    /// Does `change` give this watcher anything to read?
    pub fn wants(&self, change: &Change) -> bool {
        change.touches(self.class)
            || (change.netmap_changed && self.mask.runtime_netmap())
            || (self.initial_open && !change.peers.is_empty())
    }

    /// Folds a log entry into the pending backlog (the log is dropping it,
    /// or this watcher is rate limited).
    pub fn fold(&mut self, change: &Change) {
        self.pending.fold(change, self.tracks_peers());
        if change.netmap_changed && self.mask.runtime_netmap() {
            self.netmap_dirty = true;
        }
        self.cursor = change.seq + 1;
    }

    /// Nothing at all waiting (the readiness fd may be cleared).
    pub fn drained(&self, next_seq: u64) -> bool {
        self.outbox.is_empty() && !self.initial_open && self.pending.is_empty() && !self.netmap_dirty && self.cursor >= next_seq
    }

    /// Profiles the watcher must get with these nodes / after these
    /// profile changes: those it has not seen in their current version.
    /// Marks them seen.
    pub fn profiles_to_send<'a>(
        &mut self,
        nodes_users: impl Iterator<Item = (i64, &'a Arc<Value>)>,
        changed: impl Iterator<Item = (i64, &'a Arc<Value>)>,
    ) -> Vec<(i64, Arc<Value>)> {
        let mut out: Vec<(i64, Arc<Value>)> = Vec::new();
        let mut consider = |uid: i64, profile: &Arc<Value>, only_if_seen: bool, seen: &mut HashMap<i64, Arc<Value>>| {
            match seen.get(&uid) {
                Some(known) if Arc::ptr_eq(known, profile) => return,
                None if only_if_seen => return,
                _ => {}
            }
            seen.insert(uid, profile.clone());
            out.push((uid, profile.clone()));
        };
        for (uid, profile) in nodes_users {
            consider(uid, profile, false, &mut self.seen_profiles);
        }
        for (uid, profile) in changed {
            consider(uid, profile, true, &mut self.seen_profiles);
        }
        out.sort_unstable_by_key(|(uid, _)| *uid);
        out
    }

    /// One message from the pending backlog: events and self first, then
    /// up to `chunk` peers with the profiles they need.
    pub fn emit_pending(&mut self, store: &Store, chunk: usize) {
        let mut w = NotifyWriter::new();
        let event = std::mem::take(&mut self.pending.event);
        write_event(&mut w, &event, self.class);
        if let Some(node) = self.pending.self_node.take() {
            w.raw("SelfChange", node.json());
        }
        let batch = self.pending.peers.take(chunk.max(1));
        let changed: Vec<i64> = self.pending.profiles_changed.drain().collect();
        let profiles = self.profiles_for(store, &batch, &changed);
        w.profiles(&profiles);
        // Initial chunks reach NetMap-only watchers as full nodes too.
        let mode = if self.class.peers == PeerMode::Patches { PeerMode::Patches } else { PeerMode::Full };
        w.peers(batch.iter().map(|(id, d)| (*id, d)), mode);
        if self.initial_open && self.pending.peers.is_empty() {
            w.boolean("InitialComplete", true);
            self.initial_open = false;
        }
        if let Some(bytes) = w.finish() {
            self.outbox.push_back(Outgoing::Bytes(bytes));
        }
    }

    /// Profiles (current store versions) for the nodes in `batch` and the
    /// changed profiles this watcher holds an older version of.
    pub fn profiles_for(&mut self, store: &Store, batch: &[(i64, PeerDelta)], changed: &[i64]) -> Vec<(i64, Arc<Value>)> {
        let users: Vec<(i64, Arc<Value>)> = batch
            .iter()
            .flat_map(|(_, d)| d.node().map(|n| n.users()).into_iter().flatten())
            .filter_map(|uid| store.profiles.get(&uid).map(|p| (uid, p.clone())))
            .collect();
        let changed: Vec<(i64, Arc<Value>)> = changed.iter().filter_map(|uid| store.profiles.get(uid).map(|p| (*uid, p.clone()))).collect();
        self.profiles_to_send(users.iter().map(|(u, p)| (*u, p)), changed.iter().map(|(u, p)| (*u, p)))
    }

    /// Decides the next message. Runs under the bus lock; only the shared
    /// per-class encoding of a log entry happens after it is released.
    pub fn step(&mut self, view: &mut View<'_>, now: Instant) -> Step {
        loop {
            if let Some(message) = self.outbox.pop_front() {
                return Step::Message(message);
            }
            if self.initial_open {
                self.emit_pending(view.store, view.chunk);
                continue;
            }
            if self.rate_limited() {
                while self.cursor < view.next_seq {
                    let change = entry(view.log, self.cursor).clone();
                    self.fold(&change);
                }
                if !self.pending.event.is_empty() {
                    // State, Prefs, ... are not netmap-type: they go now.
                    let mut w = NotifyWriter::new();
                    write_event(&mut w, &std::mem::take(&mut self.pending.event), self.class);
                    if let Some(bytes) = w.finish() {
                        self.outbox.push_back(Outgoing::Bytes(bytes));
                    }
                    continue;
                }
                if self.pending.has_netmap_part() || self.netmap_dirty {
                    let due = self.last_netmap_sent.map(|t| t + view.rate_limit);
                    if let Some(due) = due.filter(|due| *due > now) {
                        self.due = Some(due);
                        return Step::Idle(Some(due));
                    }
                    self.due = None;
                    self.last_netmap_sent = Some(now);
                    while self.pending.has_netmap_part() {
                        self.emit_pending(view.store, view.chunk);
                    }
                    if std::mem::take(&mut self.netmap_dirty) {
                        self.outbox.push_back(Outgoing::Bytes((view.netmap)()));
                    }
                    continue;
                }
                return Step::Idle(None);
            }
            if !self.pending.is_empty() {
                self.emit_pending(view.store, view.chunk);
                continue;
            }
            if self.cursor < view.next_seq {
                let change = entry(view.log, self.cursor).clone();
                self.cursor += 1;
                if change.netmap_changed && self.mask.runtime_netmap() {
                    self.netmap_dirty = true;
                }
                if self.class.peers != PeerMode::None {
                    let profiles =
                        self.profiles_to_send(change.referenced.iter().map(|(u, p)| (*u, p)), change.profiles.iter().map(|(u, p)| (*u, p)));
                    if !profiles.is_empty() {
                        // Its own message, ahead of the shared one: the
                        // shared bytes stay identical for the whole class.
                        let mut w = NotifyWriter::new();
                        w.profiles(&profiles);
                        self.outbox.push_back(Outgoing::Bytes(w.finish_always()));
                    }
                }
                if change.touches(self.class) {
                    self.outbox.push_back(Outgoing::Shared(change));
                }
                continue;
            }
            if std::mem::take(&mut self.netmap_dirty) {
                self.outbox.push_back(Outgoing::Bytes((view.netmap)()));
                continue;
            }
            return Step::Idle(None);
        }
    }
}

/// The log entry with sequence number `seq` (it must still be in the log).
pub(crate) fn entry(log: &VecDeque<Arc<Change>>, seq: u64) -> &Arc<Change> {
    let first = log.front().expect("cursor behind next_seq implies a non-empty log").seq;
    &log[(seq - first) as usize]
}
