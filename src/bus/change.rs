//! One entry of the bus log (what one `apply` or `publish` changed) and
//! the per-watcher `Pending` backlog that entries fold into when a watcher
//! lags or is rate limited.

use super::delta::{PeerDelta, PeerDeltas};
use super::mask::{Class, PeerMode, CLASS_COUNT};
use super::node::Node;
use super::notify::NotifyWriter;
use super::parse::HostEvent;
use serde_json::value::RawValue;
use serde_json::Value;
use std::collections::HashSet;
use std::sync::{Arc, OnceLock};

/// An immutable log entry, shared by every watcher that reads it.
pub(crate) struct Change {
    pub seq: u64,
    /// Coalesced per peer, sorted by NodeID.
    pub peers: Vec<(i64, PeerDelta)>,
    pub self_node: Option<Arc<Node>>,
    /// Profiles this update added or changed.
    pub profiles: Vec<(i64, Arc<Value>)>,
    /// Profiles the upserted nodes refer to, as they were at this update.
    pub referenced: Vec<(i64, Arc<Value>)>,
    /// Host event fields (`publish`), raw.
    pub event: HostEvent,
    /// The Notify bytes per class, encoded on first read and then shared.
    encoded: [OnceLock<Option<Arc<[u8]>>>; CLASS_COUNT],
}


impl Change {
    pub fn new(seq: u64, mut peers: PeerDeltas, self_node: Option<Arc<Node>>, profiles: Vec<(i64, Arc<Value>)>) -> Change {
        let mut sorted: Vec<(i64, PeerDelta)> = peers.map.drain().collect();
        sorted.sort_unstable_by_key(|(id, _)| *id);
        Change {
            seq,
            peers: sorted,
            self_node,
            profiles,
            referenced: Vec::new(),
            event: Vec::new(),
            encoded: Default::default(),
        }
    }

    pub fn from_event(seq: u64, event: HostEvent) -> Change {
        let mut change = Change::new(seq, PeerDeltas::default(), None, Vec::new());
        change.event = event;
        change
    }

    /// Log budget this entry uses (see `BusOptions::backlog`).
    pub fn cost(&self) -> usize {
        1 + self.peers.len() + self.profiles.len() + self.referenced.len()
    }

    /// Whether a watcher of `class` gets a message from this entry. O(1)
    /// apart from the (tiny) event field list.
    pub fn touches(&self, class: Class) -> bool {
        self.self_node.is_some()
            || (!self.peers.is_empty() && class.peers != PeerMode::None)
            || self.event.iter().any(|(k, _)| class.wants_field(k))
    }

    /// For a rate-limited watcher: the message is `Engine` alone, which
    /// tailscaled's rate limiter holds back (every other field is "notable"
    /// and goes at once).
    pub fn engine_only(&self, class: Class) -> bool {
        self.self_node.is_none()
            && (self.peers.is_empty() || class.peers == PeerMode::None)
            && self.event.iter().filter(|(k, _)| class.wants_field(k)).all(|(k, _)| k == "Engine")
    }

    /// The message for `class`; encoded once per class, shared after that.
    pub fn encoded(&self, class: Class) -> Option<Arc<[u8]>> {
        self.encoded[class.index()].get_or_init(|| self.encode(class)).clone()
    }

    fn encode(&self, class: Class) -> Option<Arc<[u8]>> {
        let mut w = NotifyWriter::new();
        write_event(&mut w, &self.event, class);
        if let Some(node) = &self.self_node {
            w.raw("SelfChange", node.json());
        }
        w.peers(self.peers.iter().map(|(id, d)| (*id, d)), class.peers);
        w.finish()
    }
}

pub(crate) fn write_event(w: &mut NotifyWriter, event: &[(String, Box<RawValue>)], class: Class) {
    for (key, raw) in event {
        if !class.wants_field(key) {
            continue;
        }
        match (key.as_str(), class.health_actions) {
            ("Health", false) => w.raw(key, &health_with_actions_in_text(raw.get())),
            _ => w.raw(key, raw.get()),
        }
    }
}

/// `appendHealthActions` (ipn/ipnlocal/local.go): for a watcher without
/// `WATCH_HEALTH_ACTIONS`, each warning's primary action is appended to its
/// text ("<Text> <Label>: <URL>") and the action removed.
pub(crate) fn health_with_actions_in_text(raw: &str) -> String {
    let Ok(Value::Object(mut health)) = serde_json::from_str::<Value>(raw) else { return raw.to_string() };
    let Some(Value::Object(warnings)) = health.get_mut("Warnings") else { return raw.to_string() };
    for w in warnings.values_mut().filter_map(Value::as_object_mut) {
        let Some(Value::Object(action)) = w.remove("PrimaryAction") else { continue };
        let text = w.get("Text").and_then(Value::as_str).unwrap_or("");
        let label = action.get("Label").and_then(Value::as_str).unwrap_or("");
        let url = action.get("URL").and_then(Value::as_str).unwrap_or("");
        let text = format!("{text} {label}: {url}");
        w.insert("Text".into(), Value::String(text));
    }
    Value::Object(health).to_string()
}

/// A watcher's coalesced backlog: bounded by the store's size, never by the
/// number of updates it missed.
#[derive(Default)]
pub(crate) struct Pending {
    pub peers: PeerDeltas,
    pub self_node: Option<Arc<Node>>,
    /// Latest value per event field.
    pub event: HostEvent,
    /// Profiles changed while folding; re-sent if the watcher had an older one.
    pub profiles_changed: HashSet<i64>,
}

impl Pending {
    pub fn fold(&mut self, change: &Change, track_peers: bool) {
        if track_peers {
            for (id, delta) in &change.peers {
                self.peers.push(*id, delta.clone());
            }
            self.profiles_changed.extend(change.profiles.iter().map(|(id, _)| *id));
        }
        if let Some(node) = &change.self_node {
            self.self_node = Some(node.clone());
        }
        for (key, raw) in &change.event {
            match self.event.iter_mut().find(|(k, _)| k == key) {
                Some(slot) => slot.1 = raw.clone(),
                None => self.event.push((key.clone(), raw.clone())),
            }
        }
    }

    pub fn has_netmap_part(&self) -> bool {
        !self.peers.is_empty() || self.self_node.is_some() || !self.profiles_changed.is_empty()
    }

    pub fn is_empty(&self) -> bool {
        !self.has_netmap_part() && self.event.is_empty()
    }
}
