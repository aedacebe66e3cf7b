//! `tailcfg.PeerChange`: validation and application to a stored node, as
//! tailscaled's session store applies it (`updatePeersStateFromResponse`,
//! control/controlclient/map.go, tailscale.com v1.102.5).
//!
//! A PeerChange has exactly these fields; others are dropped, as Go's
//! decoder drops them. A zero value means "no change": `DERPRegion: 0`,
//! `Cap: 0`, and any field that is null or absent. `Endpoints: []` and
//! `CapMap: {}` do set an empty value. `DERPRegion` sets the node's
//! `HomeDERP`; every other field sets the node field of the same name.

use crate::error::{Error, ErrorKind, Result};
use serde_json::{Map, Value};

/// PeerChange fields, with the node field each sets.
const FIELDS: &[(&str, &str)] = &[
    ("DERPRegion", "HomeDERP"),
    ("Cap", "Cap"),
    ("CapMap", "CapMap"),
    ("Endpoints", "Endpoints"),
    ("Key", "Key"),
    ("KeySignature", "KeySignature"),
    ("DiscoKey", "DiscoKey"),
    ("Online", "Online"),
    ("LastSeen", "LastSeen"),
    ("KeyExpiry", "KeyExpiry"),
];

/// The fields tailscaled forwards to its bus as `PeerChangedPatch`
/// (`NodeMutationsFromPatch`, types/netmap/nodemut.go). A change to any
/// other field makes it send the whole node instead.
pub(crate) const NARROW: &[&str] = &["DERPRegion", "Endpoints", "Online", "LastSeen"];

/// A validated PeerChange: the node and the fields that say something.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PeerChange {
    pub id: i64,
    pub fields: Vec<(String, Value)>,
}

fn parse_error(message: String) -> Error {
    Error::new(ErrorKind::Parse, message)
}

fn type_ok(field: &str, value: &Value) -> bool {
    match field {
        "Online" => value.is_boolean(),
        "LastSeen" | "KeyExpiry" | "Key" | "DiscoKey" | "KeySignature" => value.is_string(),
        "DERPRegion" | "Cap" => value.is_i64(),
        "Endpoints" => value.as_array().is_some_and(|a| a.iter().all(Value::is_string)),
        "CapMap" => value.is_object(),
        _ => true,
    }
}

/// Whether a PeerChange field's value means "no change".
fn says_nothing(field: &str, value: &Value) -> bool {
    value.is_null() || (matches!(field, "DERPRegion" | "Cap") && value.as_i64() == Some(0))
}

impl PeerChange {
    /// The value of a field that says something.
    pub fn get(&self, field: &str) -> Option<&Value> {
        self.fields.iter().find(|(f, _)| f == field).map(|(_, v)| v)
    }

    /// `where_` names the position in the input for error messages.
    pub fn parse(value: Value, where_: &str) -> Result<PeerChange> {
        let Value::Object(map) = value else {
            return Err(parse_error(format!("{where_}: a PeerChange must be an object")));
        };
        let id = map
            .get("NodeID")
            .and_then(Value::as_i64)
            .ok_or_else(|| parse_error(format!("{where_}: PeerChange needs an integer NodeID")))?;
        PeerChange::from_fields(id, map, where_)
    }

    /// From PeerChange fields (e.g. a diff of two nodes), checked the same way.
    pub fn from_fields(id: i64, map: Map<String, Value>, where_: &str) -> Result<PeerChange> {
        let mut fields = Vec::with_capacity(map.len());
        for (field, value) in map {
            if !FIELDS.iter().any(|(f, _)| *f == field) || says_nothing(&field, &value) {
                continue;
            }
            if !type_ok(&field, &value) {
                return Err(parse_error(format!("{where_}: PeerChange field {field} has the wrong type: {value}")));
            }
            fields.push((field, value));
        }
        Ok(PeerChange { id, fields })
    }

    /// Sets the fields on `node` (an object) and returns those that really
    /// changed, under their PeerChange names.
    pub fn apply_to(&self, node: &mut Map<String, Value>) -> Map<String, Value> {
        let mut changed = Map::new();
        for (field, value) in &self.fields {
            let node_field = FIELDS.iter().find(|(f, _)| f == field).map(|(_, n)| *n).unwrap_or(field);
            if node.get(node_field) == Some(value) {
                continue;
            }
            node.insert(node_field.to_string(), value.clone());
            changed.insert(field.clone(), value.clone());
        }
        changed
    }
}

/// Whether every field of a patch is one tailscaled forwards as a patch.
pub(crate) fn is_narrow(patch: &Map<String, Value>) -> bool {
    patch.keys().all(|k| NARROW.contains(&k.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn parse_checks_types_and_drops_nulls_zeros_and_unknown_fields() {
        let pc = PeerChange::parse(json!({"NodeID": 5, "Online": true, "LastSeen": null, "DERPRegion": 0, "Cap": 0, "Future": 1}), "x").unwrap();
        assert_eq!(pc.id, 5);
        assert_eq!(pc.fields, vec![("Online".to_string(), json!(true))]);
        for bad in [
            json!({"Online": true}),
            json!({"NodeID": "5"}),
            json!({"NodeID": 5, "Online": "yes"}),
            json!({"NodeID": 5, "DERPRegion": 1.5}),
            json!({"NodeID": 5, "Endpoints": [1]}),
            json!({"NodeID": 5, "CapMap": []}),
            json!([1]),
        ] {
            let err = PeerChange::parse(bad.clone(), "PeersChangedPatch[0]").unwrap_err();
            assert_eq!(err.kind, ErrorKind::Parse, "{bad}");
            assert!(err.message.contains("PeersChangedPatch[0]"), "{}", err.message);
        }
    }

    #[test]
    fn derp_region_sets_home_derp_and_empty_lists_clear() {
        let mut node = obj(json!({"ID": 1, "HomeDERP": 1, "Endpoints": ["a:1"]}));
        let pc = PeerChange::parse(json!({"NodeID": 1, "DERPRegion": 7, "Endpoints": []}), "x").unwrap();
        let changed = pc.apply_to(&mut node);
        assert_eq!(Value::Object(node), json!({"ID": 1, "HomeDERP": 7, "Endpoints": []}));
        assert_eq!(Value::Object(changed), json!({"DERPRegion": 7, "Endpoints": []}));
    }

    #[test]
    fn only_real_changes_are_reported() {
        let mut node = obj(json!({"ID": 1, "Online": true, "Endpoints": ["a:1"]}));
        let pc = PeerChange::parse(json!({"NodeID": 1, "Online": true, "Endpoints": ["b:2"], "Cap": 100, "KeyExpiry": "2030-01-01T00:00:00Z"}), "x").unwrap();
        let changed = pc.apply_to(&mut node);
        assert_eq!(Value::Object(changed.clone()), json!({"Endpoints": ["b:2"], "Cap": 100, "KeyExpiry": "2030-01-01T00:00:00Z"}));
        assert!(!is_narrow(&changed));
        assert!(is_narrow(&obj(json!({"Online": false, "DERPRegion": 2}))));
        assert!(pc.apply_to(&mut node).is_empty());
    }
}
