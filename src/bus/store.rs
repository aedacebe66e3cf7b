//! The network map as the control plane last described it: self node,
//! peers by NodeID, user profiles by UserID, and opaque DNS / packet filter
//! / DERP map kept as the raw JSON they arrived as.
//!
//! Nodes are kept as their JSON text (`node::Node`), so fields this crate
//! does not know survive untouched, memory stays a small multiple of the
//! input, and a delta shares the node with the store instead of copying it.

use super::clock;
use super::delta::{PeerDelta, PeerDeltas};
use super::node::Node;
use super::parse::MapUpdate;
use super::patch::{self, PeerChange};
use super::tailcfg;
use serde_json::value::RawValue;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::SystemTime;

#[derive(Default)]
pub(crate) struct Store {
    pub self_node: Option<Arc<Node>>,
    /// The self node's `Name`: display names need its MagicDNS suffix.
    self_name: String,
    pub peers: HashMap<i64, Arc<Node>>,
    pub profiles: HashMap<i64, Arc<Value>>,
    pub dns_config: Option<Box<RawValue>>,
    /// The rules of every named chunk, in name order (what tailscaled
    /// serves as `PacketFilterRules`); None until a filter arrived.
    pub packet_filter: Option<Box<RawValue>>,
    /// tailscaled's `namedPacketFilters`: `PacketFilter` is the chunk
    /// "base", `PacketFilters` sets or drops chunks.
    named_packet_filters: BTreeMap<String, Value>,
    pub derp_map: Option<Box<RawValue>>,
    pub domain: Option<String>,
    /// Bumped by every apply that changed anything; keys the NetMap cache.
    pub version: u64,
}

/// What one apply changed, already coalesced per peer.
#[derive(Default)]
pub(crate) struct Applied {
    pub peers: PeerDeltas,
    pub self_node: Option<Arc<Node>>,
    pub profiles: Vec<(i64, Arc<Value>)>,
    pub netmap_changed: bool,
    /// tailscaled would handle this response on its full-netmap path: every
    /// watcher gets the current self node as `SelfChange`.
    pub full_path: bool,
}

/// Stores `new` in `slot` unless the text is the same; whether it changed.
fn set_raw(slot: &mut Option<Box<RawValue>>, new: Box<RawValue>) -> bool {
    if same_raw(slot, &new) {
        return false;
    }
    *slot = Some(new);
    true
}

fn same_raw(a: &Option<Box<RawValue>>, b: &RawValue) -> bool {
    a.as_ref().is_some_and(|a| a.get() == b.get())
}

impl Store {
    /// Applies a validated update the way tailscaled's control client does
    /// (`updatePeersStateFromResponse` and `updateStateFromResponse`,
    /// control/controlclient/map.go, tailscale.com v1.102.5):
    ///
    /// 1. a `KeepAlive` response changes nothing;
    /// 2. profiles are merged by ID (never removed), the self node replaced;
    /// 3. a non-empty `Peers` is the whole peer set and every other peer
    ///    field of the response is ignored;
    /// 4. otherwise, in this order: `PeersRemoved`; `PeersChanged` (a full
    ///    node for a known peer that differs only in patchable fields, as
    ///    compared before the removals, is turned into a patch applied in
    ///    step 8; an equal one is dropped); `PeerSeenChange` (true: LastSeen
    ///    = now; false: no LastSeen); `OnlineChange`; `PeersChangedPatch`,
    ///    then the patches made in step 4. Unknown NodeIDs are ignored.
    /// 5. `DERPMap` is merged into the previous one (`tailcfg::merge_derp_map`),
    ///    `DNSConfig` and `PacketFilter` replaced, `Domain` set if non-empty.
    ///
    /// Cannot fail: `MapUpdate::parse` checked everything, so the store
    /// never ends up half-updated. Cost: O(size of the update) (a full
    /// `Peers` list is itself O(peers)).
    pub fn apply(&mut self, update: MapUpdate, now: SystemTime) -> Applied {
        let mut applied = Applied::default();
        if update.keep_alive {
            return applied;
        }
        applied.full_path = update.full_path;
        let mut opaque_changed = false;

        // Profiles first, so a node in this same response finds its user.
        for (id, profile) in update.user_profiles {
            if self.profiles.get(&id).map(|p| **p != profile).unwrap_or(true) {
                let profile = Arc::new(profile);
                self.profiles.insert(id, profile.clone());
                applied.profiles.push((id, profile));
            }
        }
        if let Some(node) = update.node {
            if self.self_node.as_deref() != Some(&node) {
                self.self_name = node.to_map().remove("Name").and_then(|v| v.as_str().map(String::from)).unwrap_or_default();
                let node = Arc::new(node);
                self.self_node = Some(node.clone());
                applied.self_node = Some(node);
            }
        }
        if let Some(mut peers) = update.peers {
            self.keep_newer_disco_keys(&mut peers);
            let keep: HashSet<i64> = peers.iter().map(|(id, _)| *id).collect();
            let gone: Vec<i64> = self.peers.keys().filter(|id| !keep.contains(id)).copied().collect();
            for id in gone {
                self.remove(id, &mut applied.peers);
            }
            for (id, node) in peers {
                self.upsert(id, node, &mut applied.peers);
            }
        } else {
            // patchifyPeersChanged: against the peers as they were.
            let mut upserts = Vec::with_capacity(update.peers_changed.len());
            let mut patchified = Vec::new();
            for (id, node) in update.peers_changed {
                let diff = self.peers.get(&id).and_then(|was| tailcfg::peer_change_diff(&was.to_map(), &node.to_map()));
                match diff {
                    None => upserts.push((id, node)),
                    Some(fields) if fields.is_empty() => {}
                    Some(fields) => {
                        let change = PeerChange::from_fields(id, fields, "PeersChanged").expect("a diff of two checked nodes has valid fields");
                        patchified.push(change);
                    }
                }
            }
            // removeUnwantedDiscoUpdates, against the peers as they were.
            let mut patches = update.patches;
            patches.retain(|c| self.disco_update_wanted(c));
            patchified.retain(|c| self.disco_update_wanted(c));
            for id in update.peers_removed {
                self.remove(id, &mut applied.peers);
            }
            for (id, node) in upserts {
                self.upsert(id, node, &mut applied.peers);
            }
            for (id, seen) in update.peer_seen_change {
                if seen {
                    let now = Value::String(clock::rfc3339(now));
                    self.patch(&PeerChange { id, fields: vec![("LastSeen".into(), now)] }, &mut applied);
                } else {
                    // A PeerChange cannot clear a field: this travels as a full node.
                    self.clear_last_seen(id, &mut applied.peers);
                }
            }
            for (id, online) in update.online_change {
                self.patch(&PeerChange { id, fields: vec![("Online".into(), Value::Bool(online))] }, &mut applied);
            }
            for change in patches.iter().chain(&patchified) {
                self.patch(change, &mut applied);
            }
        }
        if let Some(new) = update.derp_map {
            let previous = self.derp_map.as_ref().and_then(|d| serde_json::from_str::<Value>(d.get()).ok());
            let new: serde_json::Map<String, Value> = serde_json::from_str(new.get()).expect("parse checked an object");
            let merged = tailcfg::merge_derp_map(previous.as_ref(), new);
            let merged = serde_json::value::to_raw_value(&merged).expect("a JSON map always encodes");
            if !same_raw(&self.derp_map, &merged) {
                self.derp_map = Some(merged);
                opaque_changed = true;
            }
        }
        // Packet filters as map.go keeps them: named chunks, concatenated in
        // name order whenever either field came.
        if update.packet_filter.is_some() || update.packet_filters.is_some() {
            if let Some(base) = update.packet_filter {
                let rules = serde_json::from_str(base.get()).unwrap_or(Value::Null);
                self.named_packet_filters.insert("base".into(), rules);
            }
            if let Some(chunks) = update.packet_filters {
                if chunks.iter().any(|(k, v)| k == "*" && v.is_none()) {
                    self.named_packet_filters.clear();
                }
                for (name, rules) in chunks {
                    match (name.as_str(), rules) {
                        ("*", _) => {}
                        (_, Some(rules)) => {
                            self.named_packet_filters.insert(name, rules);
                        }
                        (_, None) => {
                            self.named_packet_filters.remove(&name);
                        }
                    }
                }
            }
            let concat: Vec<&Value> = self.named_packet_filters.values().filter_map(Value::as_array).flatten().collect();
            let rules = serde_json::value::to_raw_value(&concat).expect("JSON values always encode");
            opaque_changed |= set_raw(&mut self.packet_filter, rules);
        }
        if let Some(new) = update.dns_config {
            opaque_changed |= set_raw(&mut self.dns_config, new);
        }
        if let Some(domain) = update.domain {
            if self.domain.as_deref() != Some(&domain) {
                self.domain = Some(domain);
                opaque_changed = true;
            }
        }
        applied.netmap_changed = opaque_changed || !applied.peers.is_empty() || applied.self_node.is_some() || !applied.profiles.is_empty();
        if applied.netmap_changed {
            self.version += 1;
        }
        applied
    }

    /// The self node's `Name` ("" without one).
    pub fn self_name(&self) -> String {
        self.self_name.clone()
    }

    fn upsert(&mut self, id: i64, node: Node, deltas: &mut PeerDeltas) {
        let existed = match self.peers.get(&id) {
            Some(old) if **old == node => return, // unchanged: no delta
            Some(_) => true,
            None => false,
        };
        let node = Arc::new(node);
        self.peers.insert(id, node.clone());
        deltas.push(id, PeerDelta::Upsert { node, added: !existed });
    }

    fn remove(&mut self, id: i64, deltas: &mut PeerDeltas) {
        if self.peers.remove(&id).is_some() {
            deltas.push(id, PeerDelta::Remove);
        }
    }

    /// Patches for peers we do not have are dropped, as tailscaled does.
    /// A patch that changes only the fields tailscaled forwards as patches
    /// travels as one; any other change sends the whole node (tailscaled
    /// goes down its full-netmap path then, so `SelfChange` follows too).
    fn patch(&mut self, change: &PeerChange, applied: &mut Applied) {
        let Some(stored) = self.peers.get_mut(&change.id) else { return };
        let mut node = stored.to_map();
        let changed = change.apply_to(&mut node);
        if changed.is_empty() {
            return;
        }
        *stored = Arc::new(Node::from_map(&node));
        if patch::is_narrow(&changed) {
            applied.peers.push(change.id, PeerDelta::Patch { patch: Arc::new(changed), node: stored.clone() });
        } else {
            applied.full_path = true;
            applied.peers.push(change.id, PeerDelta::Upsert { node: stored.clone(), added: false });
        }
    }

    /// tailscaled's `removeUnwantedDiscoUpdates` (map.go): a patch carrying
    /// a DiscoKey, Online and LastSeen for a known peer is dropped whole when
    /// it says the peer is offline and its LastSeen is not after the stored
    /// one (a stale disco key must not replace a newer one).
    fn disco_update_wanted(&self, change: &PeerChange) -> bool {
        let (Some(_), Some(online), Some(seen)) = (change.get("DiscoKey"), change.get("Online"), change.get("LastSeen")) else {
            return true;
        };
        let Some(existing) = self.peers.get(&change.id) else { return true };
        if online.as_bool() == Some(true) {
            return true;
        }
        let Some(existing_seen) = existing.get("LastSeen").and_then(|v| v.as_str().and_then(clock::parse_rfc3339)) else {
            return true;
        };
        seen.as_str().and_then(clock::parse_rfc3339).is_some_and(|t| t > existing_seen)
    }

    /// tailscaled's `removeUnwantedDiscoUpdatesFromFullNetmapUpdate`: in a
    /// full peer list, a known peer whose disco key changed while it is not
    /// online and whose LastSeen is not after the stored one keeps its
    /// stored disco key and LastSeen.
    fn keep_newer_disco_keys(&self, peers: &mut [(i64, Node)]) {
        for (id, node) in peers.iter_mut() {
            let Some(existing) = self.peers.get(id) else { continue };
            if **existing == *node {
                continue; // unchanged (most of a full list): nothing to parse
            }
            let mut map = node.to_map();
            let Some(disco) = map.get("DiscoKey").filter(|d| d.as_str().is_some_and(|s| !is_zero_key(s))).cloned() else { continue };
            let was = existing.to_map();
            if was.get("DiscoKey") == Some(&disco) || map.get("Online") == Some(&Value::Bool(true)) {
                continue;
            }
            let Some((existing_seen, at)) = was.get("LastSeen").and_then(|v| Some((v.clone(), clock::parse_rfc3339(v.as_str()?)?))) else {
                continue;
            };
            if map.get("LastSeen").and_then(|v| clock::parse_rfc3339(v.as_str()?)).is_some_and(|t| t > at) {
                continue;
            }
            match was.get("DiscoKey") {
                Some(d) => map.insert("DiscoKey".into(), d.clone()),
                None => map.remove("DiscoKey"),
            };
            map.insert("LastSeen".into(), existing_seen);
            *node = Node::from_map(&map);
        }
    }

    fn clear_last_seen(&mut self, id: i64, deltas: &mut PeerDeltas) {
        let Some(stored) = self.peers.get_mut(&id) else { return };
        let mut node = stored.to_map();
        if node.remove("LastSeen").is_none() {
            return;
        }
        *stored = Arc::new(Node::from_map(&node));
        deltas.push(id, PeerDelta::Upsert { node: stored.clone(), added: false });
    }

    /// Profiles the upserted or patched nodes of `deltas` refer to (current versions).
    pub fn profiles_referenced(&self, deltas: &PeerDeltas) -> Vec<(i64, Arc<Value>)> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for delta in deltas.map.values() {
            // Patches count too: watchers without PeerPatches get the
            // patched node whole, and its `User` must resolve for them.
            if let PeerDelta::Upsert { node, .. } | PeerDelta::Patch { node, .. } = delta {
                for uid in node.users() {
                    if seen.insert(uid) {
                        if let Some(profile) = self.profiles.get(&uid) {
                            out.push((uid, profile.clone()));
                        }
                    }
                }
            }
        }
        out
    }
}

/// Whether a key as tailcfg marshals it ("discokey:" + 64 hex digits) is
/// the zero key (Go's `IsZero`).
fn is_zero_key(s: &str) -> bool {
    s.split_once(':').is_some_and(|(_, hex)| hex.bytes().all(|c| c == b'0'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn apply(store: &mut Store, json: Value) -> Applied {
        let update = MapUpdate::parse(json.to_string().as_bytes(), &store.self_name()).unwrap();
        store.apply(update, SystemTime::UNIX_EPOCH)
    }

    fn kinds(applied: &Applied) -> Vec<(i64, &'static str)> {
        let mut v: Vec<_> = applied
            .peers
            .map
            .iter()
            .map(|(id, d)| {
                let k = match d {
                    PeerDelta::Upsert { added: true, .. } => "add",
                    PeerDelta::Upsert { added: false, .. } => "replace",
                    PeerDelta::Remove => "remove",
                    PeerDelta::Patch { .. } => "patch",
                };
                (*id, k)
            })
            .collect();
        v.sort();
        v
    }

    #[test]
    fn packet_filter_chunks_merge_as_tailscaled_merges_them() {
        let mut s = Store::default();
        let rules = |s: &Store| serde_json::from_str::<Value>(s.packet_filter.as_ref().unwrap().get()).unwrap();
        apply(&mut s, json!({"PacketFilter": [{"SrcIPs": ["*"]}]}));
        assert_eq!(rules(&s), json!([{"SrcIPs": ["*"]}]));
        // Chunks join "base", in name order.
        apply(&mut s, json!({"PacketFilters": {"b": [{"SrcIPs": ["b"]}], "a": [{"SrcIPs": ["a"]}]}}));
        assert_eq!(rules(&s), json!([{"SrcIPs": ["a"]}, {"SrcIPs": ["b"]}, {"SrcIPs": ["*"]}]));
        // null drops a chunk; [] keeps it, empty.
        apply(&mut s, json!({"PacketFilters": {"a": null, "b": []}}));
        assert_eq!(rules(&s), json!([{"SrcIPs": ["*"]}]));
        // "*": null drops every chunk before the others apply.
        apply(&mut s, json!({"PacketFilters": {"*": null, "c": [{"SrcIPs": ["c"]}]}}));
        assert_eq!(rules(&s), json!([{"SrcIPs": ["c"]}]));
        // A null PacketFilter changes nothing.
        let a = apply(&mut s, json!({"PacketFilter": null}));
        assert!(!a.netmap_changed);
        assert_eq!(rules(&s), json!([{"SrcIPs": ["c"]}]));
        assert!(MapUpdate::parse(br#"{"PacketFilters": {"a": 1}}"#, "").is_err());
        assert!(MapUpdate::parse(br#"{"PacketFilters": []}"#, "").is_err());
    }

    #[test]
    fn stale_disco_updates_are_refused_as_tailscaled_refuses_them() {
        let mut s = Store::default();
        let d = |n: u8| format!("discokey:{}", format!("{n:02x}").repeat(32));
        apply(&mut s, json!({"Peers": [{"ID": 2, "DiscoKey": d(1), "LastSeen": "2026-01-02T00:00:00Z"}]}));
        // Offline, LastSeen not newer: the whole patch is refused.
        let a = apply(&mut s, json!({"PeersChangedPatch": [{"NodeID": 2, "DiscoKey": d(2), "Online": false, "LastSeen": "2026-01-02T00:00:00Z", "DERPRegion": 3}]}));
        assert!(a.peers.is_empty());
        assert_eq!(s.peers[&2].get("DiscoKey"), Some(json!(d(1))));
        // Newer LastSeen (another zone, fractional): accepted.
        apply(&mut s, json!({"PeersChangedPatch": [{"NodeID": 2, "DiscoKey": d(2), "Online": false, "LastSeen": "2026-01-02T01:00:00.5+01:00"}]}));
        assert_eq!(s.peers[&2].get("DiscoKey"), Some(json!(d(2))));
        // Online: accepted whatever its LastSeen.
        apply(&mut s, json!({"PeersChangedPatch": [{"NodeID": 2, "DiscoKey": d(3), "Online": true, "LastSeen": "2025-01-01T00:00:00Z"}]}));
        assert_eq!(s.peers[&2].get("DiscoKey"), Some(json!(d(3))));
        // Without all three fields the rule does not apply.
        apply(&mut s, json!({"PeersChangedPatch": [{"NodeID": 2, "DiscoKey": d(4)}]}));
        assert_eq!(s.peers[&2].get("DiscoKey"), Some(json!(d(4))));
        // A full list with an offline peer's older key keeps the stored key
        // and LastSeen; a newer LastSeen takes the list's.
        apply(&mut s, json!({"Peers": [{"ID": 2, "DiscoKey": d(4), "Online": false, "LastSeen": "2026-03-01T00:00:00Z"}]}));
        apply(&mut s, json!({"Peers": [{"ID": 2, "DiscoKey": d(5), "Online": false, "LastSeen": "2026-02-01T00:00:00Z", "N": 1}]}));
        assert_eq!(s.peers[&2].get("DiscoKey"), Some(json!(d(4))));
        assert_eq!(s.peers[&2].get("LastSeen"), Some(json!("2026-03-01T00:00:00Z")));
        assert_eq!(s.peers[&2].get("N"), Some(json!(1)), "the rest of the node is the list's");
        apply(&mut s, json!({"Peers": [{"ID": 2, "DiscoKey": d(5), "Online": false, "LastSeen": "2026-04-01T00:00:00Z"}]}));
        assert_eq!(s.peers[&2].get("DiscoKey"), Some(json!(d(5))));
    }

    #[test]
    fn full_peers_replacement_yields_only_the_difference() {
        let mut s = Store::default();
        let a = apply(&mut s, json!({"Peers": [{"ID": 1, "N": 1}, {"ID": 2, "N": 1}, {"ID": 3}]}));
        assert_eq!(kinds(&a), vec![(1, "add"), (2, "add"), (3, "add")]);
        let a = apply(&mut s, json!({"Peers": [{"ID": 1, "N": 1}, {"ID": 2, "N": 2}, {"ID": 4}]}));
        assert_eq!(kinds(&a), vec![(2, "replace"), (3, "remove"), (4, "add")]);
        let a = apply(&mut s, json!({"Peers": [{"ID": 1, "N": 1}, {"ID": 2, "N": 2}, {"ID": 4}]}));
        assert!(a.peers.is_empty() && !a.netmap_changed);
        // Peers:[] is no peer list (tailscaled tests len(Peers) > 0).
        let a = apply(&mut s, json!({"Peers": []}));
        assert!(a.peers.is_empty() && a.full_path);
        assert_eq!(s.peers.len(), 3);
        // A non-empty Peers ignores every delta field of its response.
        let a = apply(&mut s, json!({"Peers": [{"ID": 1, "N": 1}], "PeersChanged": [{"ID": 9}], "PeersChangedPatch": [{"NodeID": 1, "DERPRegion": 9}]}));
        assert_eq!(kinds(&a), vec![(2, "remove"), (4, "remove")]);
        assert_eq!(s.peers.keys().copied().collect::<Vec<_>>(), vec![1]);
        assert!(s.peers[&1].to_value().get("HomeDERP").is_none());
    }

    /// The name fields `init_display_names` adds, left out for comparisons.
    fn plain(node: &Node) -> Value {
        let mut m = node.to_map();
        m.remove("ComputedName");
        m.remove("ComputedNameWithHost");
        Value::Object(m)
    }

    #[test]
    fn order_of_one_response_is_tailscaleds() {
        let base = json!({"Peers": [{"ID": 1}, {"ID": 2, "Online": true}]});
        // Removed and changed in one response: kept, replaced whole.
        let mut s = Store::default();
        apply(&mut s, base.clone());
        let a = apply(&mut s, json!({"PeersRemoved": [2], "PeersChanged": [{"ID": 2, "Name": "new"}]}));
        assert_eq!(kinds(&a), vec![(2, "replace")]);
        assert_eq!(plain(&s.peers[&2]), json!({"ID": 2, "Name": "new"}));
        // OnlineChange, then the patch: the patch wins.
        let mut s = Store::default();
        apply(&mut s, base.clone());
        apply(&mut s, json!({"OnlineChange": {"2": false}, "PeersChangedPatch": [{"NodeID": 2, "Online": true}]}));
        assert_eq!(s.peers[&2].to_value()["Online"], true);
        // PeerSeenChange, then the patch's LastSeen.
        let mut s = Store::default();
        apply(&mut s, base.clone());
        apply(&mut s, json!({"PeerSeenChange": {"2": true}, "PeersChangedPatch": [{"NodeID": 2, "LastSeen": "2026-01-02T03:04:05Z"}]}));
        assert_eq!(s.peers[&2].to_value()["LastSeen"], "2026-01-02T03:04:05Z");
        // A known peer's full node that differs in patchable fields only is a
        // patch (Online omitted: kept); an equal one is nothing at all.
        let a = apply(&mut s, json!({"PeersChanged": [{"ID": 2, "HomeDERP": 5, "LastSeen": "2026-01-02T03:04:05Z"}]}));
        assert_eq!(kinds(&a), vec![(2, "patch")]);
        assert_eq!(s.peers[&2].to_value()["Online"], true);
        let a = apply(&mut s, json!({"PeersChanged": [{"ID": 2, "HomeDERP": 5}]}));
        assert!(a.peers.is_empty());
        // A patch of a field tailscaled does not forward as a patch: the
        // whole node, and the full path.
        let a = apply(&mut s, json!({"PeersChangedPatch": [{"NodeID": 2, "Key": "nodekey:01"}]}));
        assert_eq!(kinds(&a), vec![(2, "replace")]);
        assert!(a.full_path);
        // KeepAlive: nothing.
        let a = apply(&mut s, json!({"KeepAlive": true, "PeersRemoved": [1, 2]}));
        assert!(a.peers.is_empty() && s.peers.len() == 2);
    }

    #[test]
    fn changed_removed_and_patches() {
        let mut s = Store::default();
        apply(&mut s, json!({"PeersChanged": [{"ID": 1, "Online": false, "Extra": {"keep": true}}, {"ID": 2}]}));
        let a = apply(
            &mut s,
            json!({"PeersRemoved": [2, 99], "PeersChangedPatch": [{"NodeID": 1, "Online": true, "DERPRegion": 3}, {"NodeID": 77, "Online": true}]}),
        );
        assert_eq!(kinds(&a), vec![(1, "patch"), (2, "remove")]);
        assert_eq!(plain(&s.peers[&1]), json!({"ID": 1, "Online": true, "HomeDERP": 3, "Extra": {"keep": true}}));
        match &a.peers.map[&1] {
            PeerDelta::Patch { patch, .. } => assert_eq!(Value::Object((**patch).clone()), json!({"Online": true, "DERPRegion": 3})),
            _ => unreachable!(),
        }
        // A patch that changes nothing is no delta.
        let a = apply(&mut s, json!({"OnlineChange": {"1": true}}));
        assert!(a.peers.is_empty());
    }

    #[test]
    fn add_then_patch_in_one_response_is_one_add() {
        let mut s = Store::default();
        let a = apply(&mut s, json!({"PeersChanged": [{"ID": 5}], "OnlineChange": {"5": true}}));
        assert_eq!(kinds(&a), vec![(5, "add")]);
        assert_eq!(a.peers.map[&5].node().unwrap().to_value()["Online"], true);
    }

    #[test]
    fn peer_seen_change_sets_or_clears_last_seen() {
        let mut s = Store::default();
        apply(&mut s, json!({"PeersChanged": [{"ID": 1}]}));
        let a = apply(&mut s, json!({"PeerSeenChange": {"1": true}}));
        assert_eq!(s.peers[&1].to_value()["LastSeen"], "1970-01-01T00:00:00Z");
        assert_eq!(kinds(&a), vec![(1, "patch")]);
        let a = apply(&mut s, json!({"PeerSeenChange": {"1": false}}));
        assert!(s.peers[&1].get("LastSeen").is_none());
        assert_eq!(kinds(&a), vec![(1, "replace")]);
        let a = apply(&mut s, json!({"PeerSeenChange": {"1": false}}));
        assert!(a.peers.is_empty());
    }

    #[test]
    fn self_profiles_and_opaque_fields() {
        let mut s = Store::default();
        let a =
            apply(&mut s, json!({"Node": {"ID": 9}, "UserProfiles": [{"ID": 7, "LoginName": "a"}], "DNSConfig": {"A": 1}, "Domain": "d"}));
        assert!(a.self_node.is_some() && a.profiles.len() == 1 && a.netmap_changed);
        assert_eq!(s.dns_config.as_ref().unwrap().get(), r#"{"A":1}"#);
        let v = s.version;
        let a = apply(&mut s, json!({"Node": {"ID": 9}, "UserProfiles": [{"ID": 7, "LoginName": "a"}], "DNSConfig": {"A": 1}}));
        assert!(a.self_node.is_none() && a.profiles.is_empty() && !a.netmap_changed);
        assert_eq!(s.version, v);
        apply(&mut s, json!({"DERPMap": {"Regions": {}}}));
        assert_eq!(s.version, v + 1);
        // A DERPMap with only HomeParams keeps the regions.
        apply(&mut s, json!({"DERPMap": {"Regions": {"1": {"RegionID": 1}}}}));
        apply(&mut s, json!({"DERPMap": {"HomeParams": {"RegionScore": {"1": 0.5}}}}));
        let d: Value = serde_json::from_str(s.derp_map.as_ref().unwrap().get()).unwrap();
        assert_eq!(d, json!({"Regions": {"1": {"RegionID": 1}}, "HomeParams": {"RegionScore": {"1": 0.5}}}));
    }

    #[test]
    fn referenced_profiles_come_from_upserts() {
        let mut s = Store::default();
        let a = apply(
            &mut s,
            json!({"UserProfiles": [{"ID": 7}, {"ID": 8}], "PeersChanged": [{"ID": 1, "User": 7}, {"ID": 2, "User": 7}, {"ID": 3, "User": 99}]}),
        );
        let refs = s.profiles_referenced(&a.peers);
        assert_eq!(refs.iter().map(|(id, _)| *id).collect::<Vec<_>>(), vec![7]);
    }
}
