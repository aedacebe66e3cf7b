//! The bus-side state of one watcher and the decision of what it reads next.
//!
//! A watcher that keeps up walks the shared log with its cursor and gets the
//! per-class bytes of each entry (`Change::encoded`). Everything else — a
//! chunked initial view, a backlog folded because the log had to drop
//! entries — sits in its `Pending` map and is encoded for this watcher
//! alone, in chunks of at most `initial_chunk` peers. A rate-limited
//! watcher holds back `Engine`-only entries (the latest wins) until
//! `rate_limit` after the last message it got.

use super::change::{write_event, Change, Pending};
use super::delta::PeerDelta;
use super::mask::{Class, Mask, PeerMode, WATCH_RATE_LIMIT};
use super::node::Node;
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
    /// (ID, StableID, User) of the last self node sent: a different one
    /// starts the profile bookkeeping afresh, as tailscaled's
    /// `selfChangeResetsImplicitState` does.
    self_ident: Option<Value>,
    /// The chunked initial peer view is still being sent.
    pub initial_open: bool,
    /// Rate limited: the latest `Engine`-only entry held back, and when
    /// this watcher last got a message.
    held: Option<Arc<Change>>,
    last_sent: Option<Instant>,
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
            self_ident: None,
            initial_open: false,
            held: None,
            last_sent: None,
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
        change.touches(self.class) || (self.initial_open && !change.peers.is_empty())
    }

    /// Folds a log entry into the pending backlog (the log is dropping it).
    pub fn fold(&mut self, change: &Change) {
        self.pending.fold(change, self.tracks_peers());
        self.cursor = change.seq + 1;
    }

    /// Nothing at all waiting (the readiness fd may be cleared).
    pub fn drained(&self, next_seq: u64) -> bool {
        self.outbox.is_empty() && !self.initial_open && self.pending.is_empty() && self.held.is_none() && self.cursor >= next_seq
    }

    /// A self node about to be sent: when it is another identity than the
    /// last one, the profiles sent so far no longer count.
    pub fn note_self_node(&mut self, node: &Node) {
        let m = node.to_map();
        let ident = Value::Array(["ID", "StableID", "User"].iter().map(|k| m.get(*k).cloned().unwrap_or(Value::Null)).collect());
        if self.self_ident.as_ref() != Some(&ident) {
            self.seen_profiles.clear();
            self.self_ident = Some(ident);
        }
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
            self.note_self_node(&node);
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
                self.last_sent = Some(now);
                return Step::Message(message);
            }
            if self.initial_open || !self.pending.is_empty() {
                self.emit_pending(view.store, view.chunk);
                continue;
            }
            if self.cursor < view.next_seq {
                let change = entry(view.log, self.cursor).clone();
                self.cursor += 1;
                if let Some(node) = &change.self_node {
                    self.note_self_node(node);
                }
                if self.class.peers != PeerMode::None {
                    let profiles =
                        self.profiles_to_send(change.referenced.iter().map(|(u, p)| (*u, p)), change.profiles.iter().map(|(u, p)| (*u, p)));
                    if !profiles.is_empty() {
                        // Its own message, ahead of the shared one (as
                        // tailscaled sends them): the shared bytes stay
                        // identical for the whole class.
                        let mut w = NotifyWriter::new();
                        w.profiles(&profiles);
                        self.outbox.push_back(Outgoing::Bytes(w.finish_always()));
                    }
                }
                if change.touches(self.class) {
                    if self.rate_limited() && change.engine_only(self.class) {
                        self.held = Some(change); // the latest Engine wins
                        continue;
                    }
                    // Anything notable goes at once, the held Engine first.
                    if let Some(held) = self.held.take() {
                        self.outbox.push_back(Outgoing::Shared(held));
                    }
                    self.outbox.push_back(Outgoing::Shared(change));
                }
                continue;
            }
            if self.held.is_some() {
                let due = self.last_sent.map(|t| t + view.rate_limit).filter(|due| *due > now);
                if let Some(due) = due {
                    self.due = Some(due);
                    return Step::Idle(Some(due));
                }
                self.due = None;
                let held = self.held.take().expect("checked");
                self.outbox.push_back(Outgoing::Shared(held));
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
