//! The built-in `netmap` kind: every peer's `AllowedIPs` on the attached
//! bus becomes a route to that peer, with attributes
//! `{"peer": NodeID, "stable_id": StableID, "name": Name}`. The runtime
//! keeps the peers it has heard of (from a `WATCH_INITIAL_STATUS |
//! WATCH_PEER_CHANGES | WATCH_CHUNKED_INITIAL` watcher) and updates every running netmap instance
//! on each delta, at O(size of the delta).

use super::config::{ProtoConfig, NETMAP_KIND};
use super::core::{Core, Peer};
use super::kind::{Export, Kind};
use super::prefix::Prefix;
use super::runtime::Api;
use super::state::ProtoState;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::sync::Arc;

pub struct NetmapKind;

impl Kind for NetmapKind {
    fn start(&self, api: &Api, proto: &str, _config: &ProtoConfig) -> ProtoState {
        match api.netmap_load(proto) {
            Ok(()) => ProtoState::Up,
            Err(_) => ProtoState::Down,
        }
    }

    fn shutdown(&self, _api: &Api, _proto: &str) -> ProtoState {
        ProtoState::Down
    }

    fn reconfigure(&self, _api: &Api, _proto: &str, _old: &ProtoConfig, _new: &ProtoConfig) -> bool {
        true
    }

    fn export(&self, _api: &Api, _proto: &str, _route: &Export<'_>) {}
}

fn peer_of(node: &Value) -> Option<(i64, Peer)> {
    let id = node.get("ID")?.as_i64()?;
    let prefixes = node
        .get("AllowedIPs")
        .and_then(Value::as_array)
        .map(|list| list.iter().filter_map(|p| p.as_str().and_then(|t| Prefix::parse(t).ok())).collect())
        .unwrap_or_default();
    let attrs = json!({"peer": id, "stable_id": node.get("StableID"), "name": node.get("Name")});
    Some((id, Peer { prefixes, attrs: attrs.to_string().into() }))
}

/// The peer upserts and removals in one Notify message (None = removed).
pub(crate) fn peer_changes(message: &[u8]) -> Option<Vec<(i64, Option<Peer>)>> {
    let value: Value = serde_json::from_slice(message).ok()?;
    let mut out = Vec::new();
    if let Some(list) = value.get("PeersChanged").and_then(Value::as_array) {
        out.extend(list.iter().filter_map(peer_of).map(|(id, p)| (id, Some(p))));
    }
    if let Some(list) = value.get("PeersRemoved").and_then(Value::as_array) {
        out.extend(list.iter().filter_map(Value::as_i64).map(|id| (id, None)));
    }
    (!out.is_empty()).then_some(out)
}

impl Core {
    fn netmap_instances(&self) -> Vec<Arc<str>> {
        self.protos.iter().filter(|(_, i)| &*i.cfg.kind == NETMAP_KIND && i.accepts_routes()).map(|(n, _)| n.clone()).collect()
    }

    /// Records a peer change and applies it to every running netmap instance.
    /// Several peers may list one prefix: the instance's route to it keeps
    /// the attrs of the lowest such peer id and is withdrawn only once no
    /// peer lists it any more.
    pub(crate) fn set_peer(&mut self, id: i64, peer: Option<Peer>) {
        let old = match peer {
            Some(p) => self.peers.insert(id, p),
            None => self.peers.remove(&id),
        };
        let old_set: BTreeSet<Prefix> = old.map(|p| p.prefixes.into_iter().collect()).unwrap_or_default();
        let new_set: BTreeSet<Prefix> = self.peers.get(&id).map(|p| p.prefixes.iter().copied().collect()).unwrap_or_default();
        // (prefix, the peer whose route it should carry now, or None: withdraw)
        let mut changes: Vec<(Prefix, Option<i64>)> = Vec::new();
        for prefix in old_set.union(&new_set) {
            let set = self.advertisers.entry(*prefix).or_default();
            let before = set.first().copied();
            if new_set.contains(prefix) {
                set.insert(id);
            } else {
                set.remove(&id);
            }
            let after = set.first().copied();
            if after.is_none() {
                self.advertisers.remove(prefix);
            }
            // Re-import when the winner changed, or is this peer (its attrs may have).
            if after != before || after == Some(id) {
                changes.push((*prefix, after));
            }
        }
        if changes.is_empty() {
            return;
        }
        for name in self.netmap_instances() {
            for (prefix, winner) in &changes {
                match winner {
                    None => {
                        let _ = self.withdraw(&name, prefix, false);
                    }
                    Some(w) => {
                        let attrs = self.peers[w].attrs.clone();
                        let _ = self.import(&name, *prefix, None, attrs);
                    }
                }
            }
        }
    }

    /// Imports every known peer's routes for instance `name`: per prefix,
    /// the attrs of the lowest peer id listing it.
    pub(crate) fn netmap_load(&mut self, name: &str) -> crate::error::Result<()> {
        let routes: Vec<(Prefix, Arc<str>)> = self
            .advertisers
            .iter()
            .filter_map(|(prefix, set)| Some((*prefix, self.peers.get(set.first()?)?.attrs.clone())))
            .collect();
        for (prefix, attrs) in routes {
            self.import(name, prefix, None, attrs)?;
        }
        Ok(())
    }
}

impl Api {
    /// Imports the current peers' routes for netmap instance `proto`.
    pub(crate) fn netmap_load(&self, proto: &str) -> crate::error::Result<()> {
        self.with_core(|core| core.netmap_load(proto))
    }
}
