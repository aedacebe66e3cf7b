//! `tailcfg.PeerChange`: validation and application to a stored node.
//!
//! PeerChange fields carry the same names as the `tailcfg.Node` fields they
//! set (Online, LastSeen, Endpoints, Key, KeySignature, DiscoKey, Cap,
//! CapMap, KeyExpiry), with one exception: `DERPRegion` sets the node's home
//! DERP region, which current tailcfg calls `HomeDERP` (an int; the reference
//! calls the concept "DERPHome"). Nodes still carrying the legacy `DERP`
//! string ("127.3.3.40:<region>") get that updated too, so both readers agree.
//! Fields we do not know are copied under their own name: a newer control
//! plane's addition then reaches watchers instead of being dropped silently.

use crate::error::{Error, ErrorKind, Result};
use serde_json::{Map, Value};

/// The magic IP that legacy `Node.DERP` strings use to name a region.
const LEGACY_DERP_IP: &str = "127.3.3.40";

/// A validated PeerChange: the node and the non-null fields to set.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PeerChange {
    pub id: i64,
    pub fields: Vec<(String, Value)>,
}

fn parse_error(message: String) -> Error {
    Error::new(ErrorKind::Parse, message)
}

fn check_type(field: &str, value: &Value) -> Result<()> {
    let ok = match field {
        "Online" => value.is_boolean(),
        "LastSeen" | "KeyExpiry" | "Key" | "DiscoKey" | "KeySignature" => value.is_string(),
        "DERPRegion" | "Cap" => value.is_i64(),
        "Endpoints" => value.as_array().is_some_and(|a| a.iter().all(Value::is_string)),
        "CapMap" => value.is_object(),
        _ => true,
    };
    if ok {
        Ok(())
    } else {
        Err(parse_error(format!("PeerChange field {field} has the wrong type: {value}")))
    }
}

impl PeerChange {
    /// `where_` names the position in the input for error messages.
    pub fn parse(value: Value, where_: &str) -> Result<PeerChange> {
        let Value::Object(map) = value else {
            return Err(parse_error(format!("{where_}: a PeerChange must be an object")));
        };
        let id = map
            .get("NodeID")
            .and_then(Value::as_i64)
            .ok_or_else(|| parse_error(format!("{where_}: PeerChange needs an integer NodeID")))?;
        let mut fields = Vec::with_capacity(map.len());
        for (field, value) in map {
            if field == "NodeID" || value.is_null() {
                continue; // null = "not set", as with Go's nil pointers
            }
            check_type(&field, &value).map_err(|e| parse_error(format!("{where_}: {e}")))?;
            fields.push((field, value));
        }
        Ok(PeerChange { id, fields })
    }

    /// Sets the fields on `node` (an object) and returns those that really
    /// changed, under their PeerChange names: the narrow patch to forward.
    pub fn apply_to(&self, node: &mut Map<String, Value>) -> Map<String, Value> {
        let mut changed = Map::new();
        for (field, value) in &self.fields {
            let node_field = if field == "DERPRegion" { "HomeDERP" } else { field.as_str() };
            if node.get(node_field) == Some(value) {
                continue;
            }
            node.insert(node_field.to_string(), value.clone());
            if field == "DERPRegion" && node.get("DERP").is_some_and(Value::is_string) {
                node.insert("DERP".into(), Value::String(format!("{LEGACY_DERP_IP}:{value}")));
            }
            changed.insert(field.clone(), value.clone());
        }
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn parse_checks_types_and_drops_nulls() {
        let pc = PeerChange::parse(json!({"NodeID": 5, "Online": true, "LastSeen": null}), "x").unwrap();
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
    fn derp_region_sets_home_derp_and_legacy_string() {
        let mut node = obj(json!({"ID": 1, "HomeDERP": 1, "DERP": "127.3.3.40:1"}));
        let pc = PeerChange::parse(json!({"NodeID": 1, "DERPRegion": 7}), "x").unwrap();
        let changed = pc.apply_to(&mut node);
        assert_eq!(node["HomeDERP"], 7);
        assert_eq!(node["DERP"], "127.3.3.40:7");
        assert_eq!(Value::Object(changed), json!({"DERPRegion": 7}));
    }

    #[test]
    fn only_real_changes_are_reported() {
        let mut node = obj(json!({"ID": 1, "Online": true, "Endpoints": ["a:1"]}));
        let pc = PeerChange::parse(
            json!({"NodeID": 1, "Online": true, "Endpoints": ["b:2"], "Cap": 100, "KeyExpiry": "2030-01-01T00:00:00Z", "Future": 1}),
            "x",
        )
        .unwrap();
        let changed = pc.apply_to(&mut node);
        assert_eq!(Value::Object(changed), json!({"Endpoints": ["b:2"], "Cap": 100, "KeyExpiry": "2030-01-01T00:00:00Z", "Future": 1}));
        assert_eq!(node["Cap"], 100);
        assert_eq!(node["Future"], 1);
        assert!(pc.apply_to(&mut node).is_empty());
    }
}
