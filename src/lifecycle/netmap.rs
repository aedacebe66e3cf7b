//! The built-in `netmap` kind: every peer's `AllowedIPs` on the attached
//! bus becomes a route to that peer, with attributes
//! `{"peer": NodeID, "stable_id": StableID, "name": Name}`. The runtime
//! keeps the peers it has heard of (from a `WATCH_INITIAL_STATUS |
//! WATCH_PEER_CHANGES` watcher) and updates every running netmap instance
//! on each delta, at O(size of the delta).

use super::config::{ProtoConfig, NETMAP_KIND};
use super::core::{Core, Peer};
use super::kind::{Export, Kind};
use super::prefix::Prefix;
use super::runtime::Api;
use super::state::ProtoState;
use serde_json::{json, Value};
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
    pub(crate) fn set_peer(&mut self, id: i64, peer: Option<Peer>) {
        let old = match peer {
            Some(p) => self.peers.insert(id, p),
            None => self.peers.remove(&id),
        };
        let new = self.peers.get(&id).map(|p| (p.prefixes.clone(), p.attrs.clone()));
        for name in self.netmap_instances() {
            if let Some(old) = &old {
                for prefix in &old.prefixes {
                    if !new.as_ref().is_some_and(|(n, _)| n.contains(prefix)) {
                        let _ = self.withdraw(&name, prefix, false);
                    }
                }
            }
            if let Some((prefixes, attrs)) = &new {
                for prefix in prefixes {
                    let _ = self.import(&name, *prefix, None, attrs.clone());
                }
            }
        }
    }

    /// Imports every known peer's routes for instance `name`.
    pub(crate) fn netmap_load(&mut self, name: &str) -> crate::error::Result<()> {
        let routes: Vec<(Prefix, Arc<str>)> =
            self.peers.values().flat_map(|p| p.prefixes.iter().map(|x| (*x, p.attrs.clone()))).collect();
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
