//! Peer deltas and how they coalesce. The same composition rule serves two
//! purposes: folding several operations of one `apply` on the same peer into
//! one delta, and folding the backlog of a lagging watcher into its pending
//! map, so both stay O(changed peers) and converge to the store's state.

use super::node::Node;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::Arc;

/// What happened to one peer, relative to what the receiver already knows.
#[derive(Debug, Clone)]
pub(crate) enum PeerDelta {
    /// The full node, new or replaced. `added` = the receiver did not know
    /// the peer before, so a later removal cancels out entirely.
    Upsert { node: Arc<Node>, added: bool },
    /// The peer is gone.
    Remove,
    /// Narrow fields (PeerChange names, without `NodeID`) plus the full node
    /// after the patch, for receivers that want full nodes.
    Patch { patch: Arc<Map<String, Value>>, node: Arc<Node> },
}

impl PeerDelta {
    /// Did the receiver know this peer before the delta (window) started?
    fn known_before(&self) -> bool {
        !matches!(self, PeerDelta::Upsert { added: true, .. })
    }

    /// The node to send to a full-node receiver, if any.
    pub fn node(&self) -> Option<&Arc<Node>> {
        match self {
            PeerDelta::Upsert { node, .. } | PeerDelta::Patch { node, .. } => Some(node),
            PeerDelta::Remove => None,
        }
    }
}

/// `old` followed by `new` as one delta; `None` = nothing to tell
/// (added and removed again within the window).
pub(crate) fn compose(old: Option<PeerDelta>, new: PeerDelta) -> Option<PeerDelta> {
    let Some(old) = old else { return Some(new) };
    match new {
        PeerDelta::Upsert { node, .. } => Some(PeerDelta::Upsert { node, added: !old.known_before() }),
        PeerDelta::Remove => old.known_before().then_some(PeerDelta::Remove),
        PeerDelta::Patch { patch, node } => match old {
            PeerDelta::Upsert { added, .. } => Some(PeerDelta::Upsert { node, added }),
            // A patch never follows a removal (the store drops patches for
            // unknown peers), but a full node is right whatever happened.
            PeerDelta::Remove => Some(PeerDelta::Upsert { node, added: false }),
            PeerDelta::Patch { patch: earlier, .. } => {
                let mut merged = (*earlier).clone();
                merged.extend(patch.iter().map(|(k, v)| (k.clone(), v.clone())));
                Some(PeerDelta::Patch { patch: Arc::new(merged), node })
            }
        },
    }
}

/// A coalescing map NodeID -> delta.
#[derive(Debug, Default, Clone)]
pub(crate) struct PeerDeltas {
    pub map: HashMap<i64, PeerDelta>,
}

impl PeerDeltas {
    pub fn push(&mut self, id: i64, delta: PeerDelta) {
        let old = self.map.remove(&id);
        if let Some(merged) = compose(old, delta) {
            self.map.insert(id, merged);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Removes and returns up to `n` deltas, ordered by NodeID so messages
    /// are deterministic.
    pub fn take(&mut self, n: usize) -> Vec<(i64, PeerDelta)> {
        let mut ids: Vec<i64> =
            if n >= self.map.len() { self.map.keys().copied().collect() } else { self.map.keys().take(n).copied().collect() };
        ids.sort_unstable();
        ids.into_iter().filter_map(|id| self.map.remove(&id).map(|d| (id, d))).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(v: i64) -> Arc<Node> {
        Arc::new(Node::from_value(&json!({ "ID": 1, "V": v })))
    }

    fn patch(field: &str, v: Value) -> PeerDelta {
        let mut m = Map::new();
        m.insert(field.into(), v);
        PeerDelta::Patch { patch: Arc::new(m), node: node(9) }
    }

    #[test]
    fn add_then_remove_cancels() {
        let mut d = PeerDeltas::default();
        d.push(1, PeerDelta::Upsert { node: node(1), added: true });
        d.push(1, PeerDelta::Remove);
        assert!(d.is_empty());
    }

    #[test]
    fn replace_then_remove_is_remove() {
        let mut d = PeerDeltas::default();
        d.push(1, PeerDelta::Upsert { node: node(1), added: false });
        d.push(1, PeerDelta::Remove);
        assert!(matches!(d.map[&1], PeerDelta::Remove));
    }

    #[test]
    fn remove_then_add_is_replace_and_latest_node_wins() {
        let mut d = PeerDeltas::default();
        d.push(1, PeerDelta::Remove);
        d.push(1, PeerDelta::Upsert { node: node(2), added: true });
        d.push(1, PeerDelta::Upsert { node: node(3), added: false });
        match &d.map[&1] {
            PeerDelta::Upsert { node, added } => {
                assert!(!added);
                assert_eq!(node.get("V"), Some(json!(3)));
            }
            other => panic!("{other:?}"),
        }
        d.push(1, PeerDelta::Remove);
        assert!(matches!(d.map[&1], PeerDelta::Remove));
    }

    #[test]
    fn patches_merge_and_fold_into_upserts() {
        let mut d = PeerDeltas::default();
        d.push(1, patch("Online", json!(true)));
        d.push(1, patch("LastSeen", json!("x")));
        d.push(1, patch("Online", json!(false)));
        match &d.map[&1] {
            PeerDelta::Patch { patch, .. } => {
                assert_eq!(patch["Online"], false);
                assert_eq!(patch["LastSeen"], "x");
            }
            other => panic!("{other:?}"),
        }
        d.push(2, PeerDelta::Upsert { node: node(1), added: true });
        d.push(2, patch("Online", json!(true)));
        assert!(matches!(d.map[&2], PeerDelta::Upsert { added: true, .. }));
        assert_eq!(d.map[&2].node().unwrap().get("V"), Some(json!(9)));
        // Patch then remove: the receiver knew the peer, so it must hear the removal.
        d.push(1, PeerDelta::Remove);
        assert!(matches!(d.map[&1], PeerDelta::Remove));
    }

    #[test]
    fn take_is_bounded_and_sorted() {
        let mut d = PeerDeltas::default();
        for id in (0..10).rev() {
            d.push(id, PeerDelta::Remove);
        }
        let all = d.take(100);
        assert_eq!(all.iter().map(|(id, _)| *id).collect::<Vec<_>>(), (0..10).collect::<Vec<_>>());
        for id in 0..10 {
            d.push(id, PeerDelta::Remove);
        }
        assert_eq!(d.take(3).len(), 3);
        assert_eq!(d.len(), 7);
    }
}
