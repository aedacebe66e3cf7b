//! Hand-written `ipn.Notify` encoding. Fields are written straight from the
//! shared nodes' JSON text into one buffer: no intermediate Notify value
//! is built, and empty fields are simply not written (Go's omitzero).

use super::delta::PeerDelta;
use super::mask::PeerMode;
use super::node::Node;
use super::store::Store;
use serde_json::Value;
use std::sync::Arc;

/// The `Version` every message carries (the bus's "backend version").
pub(crate) const VERSION: &str = env!("CARGO_PKG_VERSION");

pub(crate) struct NotifyWriter {
    buf: Vec<u8>,
    has_content: bool,
}

fn write_str(buf: &mut Vec<u8>, s: &str) {
    serde_json::to_writer(&mut *buf, s).expect("writing a string to a Vec cannot fail");
}

fn write_value(buf: &mut Vec<u8>, v: &Value) {
    serde_json::to_writer(&mut *buf, v).expect("writing JSON to a Vec cannot fail");
}

impl NotifyWriter {
    pub fn new() -> Self {
        let mut buf = Vec::with_capacity(128);
        buf.extend_from_slice(b"{\"Version\":");
        write_str(&mut buf, VERSION);
        NotifyWriter { buf, has_content: false }
    }

    fn key(&mut self, key: &str) {
        self.has_content = true;
        self.buf.push(b',');
        write_str(&mut self.buf, key);
        self.buf.push(b':');
    }

    pub fn raw(&mut self, key: &str, raw_json: &str) {
        self.key(key);
        self.buf.extend_from_slice(raw_json.as_bytes());
    }

    pub fn string(&mut self, key: &str, s: &str) {
        self.key(key);
        write_str(&mut self.buf, s);
    }

    pub fn boolean(&mut self, key: &str, b: bool) {
        self.key(key);
        self.buf.extend_from_slice(if b { b"true" } else { b"false" });
    }

    /// `PeerChangedPatch`, `PeersChanged`, `PeersRemoved` for `deltas` as a
    /// watcher of `mode` sees them. `PeerMode::None` writes nothing.
    pub fn peers<'a>(&mut self, deltas: impl Iterator<Item = (i64, &'a PeerDelta)> + Clone, mode: PeerMode) {
        if mode == PeerMode::None {
            return;
        }
        let patches = mode == PeerMode::Patches;
        self.array("PeerChangedPatch", deltas.clone(), |buf, (id, d)| match d {
            PeerDelta::Patch { patch, .. } if patches => {
                buf.extend_from_slice(b"{\"NodeID\":");
                buf.extend_from_slice(id.to_string().as_bytes());
                for (field, value) in patch.iter() {
                    buf.push(b',');
                    write_str(buf, field);
                    buf.push(b':');
                    write_value(buf, value);
                }
                buf.push(b'}');
                true
            }
            _ => false,
        });
        self.array("PeersChanged", deltas.clone(), |buf, (_, d)| match d {
            PeerDelta::Upsert { node, .. } => {
                buf.extend_from_slice(node.json().as_bytes());
                true
            }
            PeerDelta::Patch { node, .. } if !patches => {
                buf.extend_from_slice(node.json().as_bytes());
                true
            }
            _ => false,
        });
        self.array("PeersRemoved", deltas, |buf, (id, d)| match d {
            PeerDelta::Remove => {
                buf.extend_from_slice(id.to_string().as_bytes());
                true
            }
            _ => false,
        });
    }

    /// Writes `key: [...]` with the items `item` accepts; nothing if none.
    fn array<T>(&mut self, key: &str, items: impl Iterator<Item = T>, mut item: impl FnMut(&mut Vec<u8>, T) -> bool) {
        let mark = self.buf.len();
        let had_content = self.has_content;
        self.key(key);
        self.buf.push(b'[');
        let start = self.buf.len();
        let mut any = false;
        for it in items {
            let before = self.buf.len();
            if any {
                self.buf.push(b',');
            }
            if item(&mut self.buf, it) {
                any = true;
            } else {
                self.buf.truncate(before);
            }
        }
        if any {
            self.buf.push(b']');
        } else {
            debug_assert_eq!(self.buf.len(), start);
            self.buf.truncate(mark);
            self.has_content = had_content;
        }
    }

    /// `UserProfiles` as `ipn.Notify` has it: an object keyed by UserID.
    pub fn profiles(&mut self, profiles: &[(i64, Arc<Value>)]) {
        if profiles.is_empty() {
            return;
        }
        self.key("UserProfiles");
        write_profiles(&mut self.buf, profiles.iter().map(|(id, p)| (*id, &**p)));
    }

    /// `NetMap` (netmap.NetworkMap field names) with the given peers.
    pub fn netmap<'a>(&mut self, store: &Store, peers: impl Iterator<Item = &'a Node>, profiles: &[(i64, Arc<Value>)]) {
        self.key("NetMap");
        write_netmap(&mut self.buf, store, peers, profiles.iter().map(|(id, p)| (*id, &**p)));
    }

    /// None when nothing but `Version` was written.
    pub fn finish(mut self) -> Option<Arc<[u8]>> {
        self.has_content.then(|| {
            self.buf.push(b'}');
            Arc::from(self.buf)
        })
    }

    pub fn finish_always(mut self) -> Arc<[u8]> {
        self.buf.push(b'}');
        Arc::from(self.buf)
    }
}

fn write_profiles<'a>(buf: &mut Vec<u8>, profiles: impl Iterator<Item = (i64, &'a Value)>) {
    buf.push(b'{');
    for (i, (id, profile)) in profiles.enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        write_str(buf, &id.to_string());
        buf.push(b':');
        write_value(buf, profile);
    }
    buf.push(b'}');
}

/// A netmap object: `SelfNode`, `Peers`, `UserProfiles`, `DNS`,
/// `PacketFilterRules` (the raw `MapResponse.PacketFilter`), `DERPMap`, `Domain`.
pub(crate) fn write_netmap<'a, 'b>(
    buf: &mut Vec<u8>,
    store: &Store,
    peers: impl Iterator<Item = &'a Node>,
    profiles: impl Iterator<Item = (i64, &'b Value)>,
) {
    buf.extend_from_slice(b"{\"SelfNode\":");
    match &store.self_node {
        Some(node) => buf.extend_from_slice(node.json().as_bytes()),
        None => buf.extend_from_slice(b"null"),
    }
    buf.extend_from_slice(b",\"Peers\":[");
    for (i, peer) in peers.enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        buf.extend_from_slice(peer.json().as_bytes());
    }
    buf.extend_from_slice(b"],\"UserProfiles\":");
    write_profiles(buf, profiles);
    for (key, raw) in [("DNS", &store.dns_config), ("PacketFilterRules", &store.packet_filter), ("DERPMap", &store.derp_map)] {
        if let Some(raw) = raw {
            buf.push(b',');
            write_str(buf, key);
            buf.push(b':');
            buf.extend_from_slice(raw.get().as_bytes());
        }
    }
    if let Some(domain) = &store.domain {
        buf.extend_from_slice(b",\"Domain\":");
        write_str(buf, domain);
    }
    buf.push(b'}');
}

/// The whole current netmap (peers sorted by NodeID, all profiles). O(peers).
pub(crate) fn netmap_json(store: &Store) -> Vec<u8> {
    let mut ids: Vec<&i64> = store.peers.keys().collect();
    ids.sort_unstable();
    let mut uids: Vec<&i64> = store.profiles.keys().collect();
    uids.sort_unstable();
    let mut buf = Vec::with_capacity(256 * (ids.len() + 1));
    write_netmap(&mut buf, store, ids.into_iter().map(|id| &*store.peers[id]), uids.into_iter().map(|uid| (*uid, &*store.profiles[uid])));
    buf
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Map};

    fn parse(bytes: &[u8]) -> Value {
        serde_json::from_slice(bytes).unwrap()
    }

    #[test]
    fn empty_message_is_none() {
        assert!(NotifyWriter::new().finish().is_none());
        let mut w = NotifyWriter::new();
        w.peers([(1, &PeerDelta::Remove)].into_iter(), PeerMode::None);
        assert!(w.finish().is_none());
    }

    #[test]
    fn peers_by_mode() {
        let node = Arc::new(Node::from_value(&json!({"ID": 2, "Online": true})));
        let mut patch = Map::new();
        patch.insert("Online".into(), json!(true));
        let deltas = [
            (1, PeerDelta::Upsert { node: Arc::new(Node::from_value(&json!({"ID": 1}))), added: true }),
            (2, PeerDelta::Patch { patch: Arc::new(patch), node }),
            (3, PeerDelta::Remove),
        ];
        let it = deltas.iter().map(|(id, d)| (*id, d));
        let mut w = NotifyWriter::new();
        w.peers(it.clone(), PeerMode::Patches);
        assert_eq!(
            parse(&w.finish().unwrap()),
            json!({"Version": VERSION, "PeerChangedPatch": [{"NodeID": 2, "Online": true}], "PeersChanged": [{"ID": 1}], "PeersRemoved": [3]})
        );
        let mut w = NotifyWriter::new();
        w.peers(it, PeerMode::Full);
        assert_eq!(
            parse(&w.finish().unwrap()),
            json!({"Version": VERSION, "PeersChanged": [{"ID": 1}, {"ID": 2, "Online": true}], "PeersRemoved": [3]})
        );
    }

    #[test]
    fn profiles_are_keyed_by_user_id() {
        let mut w = NotifyWriter::new();
        w.profiles(&[(7, Arc::new(json!({"ID": 7, "LoginName": "a"})))]);
        w.string("BrowseToURL", "u\"x");
        assert_eq!(
            parse(&w.finish().unwrap()),
            json!({"Version": VERSION, "UserProfiles": {"7": {"ID": 7, "LoginName": "a"}}, "BrowseToURL": "u\"x"})
        );
    }
}
