//! Input validation: a `tailcfg.MapResponse`-shaped update or a host event
//! is checked completely here, before the store changes at all, so a bad
//! input leaves everything as it was.

use super::node::Node;
use super::patch::PeerChange;
use super::tailcfg;
use crate::error::{Error, ErrorKind, Result};
use serde_json::value::RawValue;
use serde_json::Value;
use std::collections::HashMap;

/// A validated MapResponse. `null` fields count as absent; unknown fields
/// are ignored (the control protocol grows). Nodes are already upgraded
/// and named as tailscaled does (`tailcfg::upgrade_node`,
/// `init_display_names`).
#[derive(Debug, Default)]
pub(crate) struct MapUpdate {
    /// `KeepAlive: true`: tailscaled applies nothing of such a response.
    pub keep_alive: bool,
    /// A field tailscaled handles on its full-netmap path (it then sends
    /// `SelfChange`): Node, DERPMap, DNSConfig, a non-empty Domain, Peers
    /// (even `[]`), and the other non-patch fields (`mapResponseContains
    /// NonPatchFields`, types/netmap/nodemut.go).
    pub full_path: bool,
    pub node: Option<Node>,
    /// A non-empty `Peers`: the complete peer list (`[]` is not one).
    pub peers: Option<Vec<(i64, Node)>>,
    pub peers_changed: Vec<(i64, Node)>,
    pub peers_removed: Vec<i64>,
    pub patches: Vec<PeerChange>,
    pub online_change: Vec<(i64, bool)>,
    pub peer_seen_change: Vec<(i64, bool)>,
    pub user_profiles: Vec<(i64, Value)>,
    pub dns_config: Option<Box<RawValue>>,
    pub packet_filter: Option<Box<RawValue>>,
    /// `PacketFilters`: named chunks of rules (an array, or null to drop the
    /// chunk; `"*": null` drops every chunk first).
    pub packet_filters: Option<Vec<(String, Option<Value>)>>,
    pub derp_map: Option<Box<RawValue>>,
    pub domain: Option<String>,
}

fn parse_error(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::Parse, message.into())
}

/// Splits a JSON object into its top-level fields, each kept as raw text.
fn top_level<'a>(json: &'a [u8], what: &str) -> Result<HashMap<String, &'a RawValue>> {
    crate::json::check_depth(json, what)?;
    let fields: HashMap<String, &RawValue> =
        serde_json::from_slice(json).map_err(|e| parse_error(format!("{what}: not a JSON object: {e}")))?;
    Ok(fields.into_iter().filter(|(_, raw)| raw.get() != "null").collect())
}

fn value_of(raw: &RawValue, field: &str) -> Result<Value> {
    serde_json::from_str(raw.get()).map_err(|e| parse_error(format!("MapResponse.{field}: {e}")))
}

fn array_of(raw: &RawValue, field: &str) -> Result<Vec<Value>> {
    match value_of(raw, field)? {
        Value::Array(items) => Ok(items),
        other => Err(parse_error(format!("MapResponse.{field} must be an array, got {}", kind_of(&other)))),
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A `tailcfg.Node`: an object with an integer `ID` (and an integer `User`
/// when present, since watchers resolve it to a profile).
pub(crate) fn check_node(value: Value, where_: &str) -> Result<(i64, Value)> {
    let Value::Object(map) = &value else {
        return Err(parse_error(format!("{where_}: a Node must be an object, got {}", kind_of(&value))));
    };
    let id = map.get("ID").and_then(Value::as_i64).ok_or_else(|| parse_error(format!("{where_}: Node needs an integer ID")))?;
    if let Some(user) = map.get("User") {
        if !user.is_null() && !user.is_i64() {
            return Err(parse_error(format!("{where_}: Node.User must be an integer UserID")));
        }
    }
    Ok((id, value))
}

/// A node array, each element parsed, checked, upgraded, named and stored
/// as text one at a time: the parsed form of the whole list never exists
/// at once.
fn nodes(raw: &RawValue, field: &str, suffix: &str) -> Result<Vec<(i64, Node)>> {
    let items: Vec<&RawValue> = serde_json::from_str(raw.get())
        .map_err(|e| parse_error(format!("MapResponse.{field} must be an array: {e}")))?;
    let mut scratch = Vec::new();
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let where_ = || format!("MapResponse.{field}[{i}]");
        let value: Value = serde_json::from_str(item.get()).map_err(|e| parse_error(format!("{}: {e}", where_())))?;
        let (id, mut value) = check_node(value, &where_())?;
        if let Value::Object(map) = &mut value {
            tailcfg::upgrade_node(map);
            tailcfg::init_display_names(map, suffix);
        }
        out.push((id, Node::from_owned(value, &mut scratch)));
    }
    Ok(out)
}

/// `map[NodeID]bool`: JSON object keyed by decimal ids.
fn id_bool_map(raw: &RawValue, field: &str) -> Result<Vec<(i64, bool)>> {
    let Value::Object(map) = value_of(raw, field)? else {
        return Err(parse_error(format!("MapResponse.{field} must be an object of NodeID -> bool")));
    };
    map.into_iter()
        .map(|(key, v)| {
            let id = key.parse::<i64>().map_err(|_| parse_error(format!("MapResponse.{field}: key {key:?} is not a NodeID")))?;
            let b = v.as_bool().ok_or_else(|| parse_error(format!("MapResponse.{field}[{key}] must be a boolean")))?;
            Ok((id, b))
        })
        .collect()
}

impl MapUpdate {
    /// `self_name`: the stored self node's `Name`, for the MagicDNS suffix
    /// the display names are computed with when the update has no `Node`.
    pub fn parse(json: &[u8], self_name: &str) -> Result<MapUpdate> {
        let fields = top_level(json, "MapResponse")?;
        let mut update = MapUpdate::default();
        if let Some(raw) = fields.get("KeepAlive") {
            if value_of(raw, "KeepAlive")?.as_bool().ok_or_else(|| parse_error("MapResponse.KeepAlive must be a boolean"))? {
                update.keep_alive = true;
                return Ok(update);
            }
        }
        let mut suffix = tailcfg::magic_dns_suffix(self_name);
        if let Some(raw) = fields.get("Node") {
            let (_, mut node) = check_node(value_of(raw, "Node")?, "MapResponse.Node")?;
            if let Value::Object(map) = &mut node {
                tailcfg::upgrade_node(map);
                tailcfg::capabilities_to_cap_map(map);
                suffix = tailcfg::magic_dns_suffix(map.get("Name").and_then(Value::as_str).unwrap_or(""));
                tailcfg::init_display_names(map, &suffix);
            }
            update.node = Some(Node::from_value(&node));
        }
        if let Some(raw) = fields.get("Peers") {
            let peers = nodes(raw, "Peers", &suffix)?;
            update.peers = (!peers.is_empty()).then_some(peers);
        }
        if let Some(raw) = fields.get("PeersChanged") {
            update.peers_changed = nodes(raw, "PeersChanged", &suffix)?;
        }
        if let Some(raw) = fields.get("PeersRemoved") {
            update.peers_removed = array_of(raw, "PeersRemoved")?
                .iter()
                .map(|v| v.as_i64().ok_or_else(|| parse_error(format!("MapResponse.PeersRemoved: {v} is not a NodeID"))))
                .collect::<Result<_>>()?;
        }
        if let Some(raw) = fields.get("PeersChangedPatch") {
            update.patches = array_of(raw, "PeersChangedPatch")?
                .into_iter()
                .enumerate()
                .map(|(i, v)| PeerChange::parse(v, &format!("MapResponse.PeersChangedPatch[{i}]")))
                .collect::<Result<_>>()?;
        }
        if let Some(raw) = fields.get("OnlineChange") {
            update.online_change = id_bool_map(raw, "OnlineChange")?;
        }
        if let Some(raw) = fields.get("PeerSeenChange") {
            update.peer_seen_change = id_bool_map(raw, "PeerSeenChange")?;
        }
        if let Some(raw) = fields.get("UserProfiles") {
            update.user_profiles = array_of(raw, "UserProfiles")?
                .into_iter()
                .enumerate()
                .map(|(i, v)| {
                    let id = v.get("ID").and_then(Value::as_i64);
                    match (id, v.is_object()) {
                        (Some(id), true) => Ok((id, v)),
                        _ => Err(parse_error(format!("MapResponse.UserProfiles[{i}] must be an object with an integer ID"))),
                    }
                })
                .collect::<Result<_>>()?;
        }
        let opaque = |name: &str| fields.get(name).map(|raw| (*raw).to_owned());
        update.dns_config = opaque("DNSConfig");
        update.packet_filter = opaque("PacketFilter").filter(|raw| raw.get() != "null");
        if let Some(raw) = fields.get("PacketFilters") {
            match value_of(raw, "PacketFilters")? {
                Value::Null => {}
                Value::Object(m) => {
                    let mut chunks = Vec::with_capacity(m.len());
                    for (name, v) in m {
                        match v {
                            Value::Null => chunks.push((name, None)),
                            Value::Array(_) => chunks.push((name, Some(v))),
                            _ => return Err(parse_error(format!("MapResponse.PacketFilters[{name:?}] must be an array or null"))),
                        }
                    }
                    update.packet_filters = Some(chunks);
                }
                _ => return Err(parse_error("MapResponse.PacketFilters must be an object")),
            }
        }
        update.derp_map = opaque("DERPMap");
        if let Some(raw) = &update.derp_map {
            if !raw.get().trim_start().starts_with('{') {
                return Err(parse_error("MapResponse.DERPMap must be an object"));
            }
        }
        if let Some(raw) = fields.get("Domain") {
            match value_of(raw, "Domain")? {
                Value::String(s) if s.is_empty() => {}
                Value::String(s) => update.domain = Some(s),
                _ => return Err(parse_error("MapResponse.Domain must be a string")),
            }
        }
        // Present and non-null (strings: non-empty) sends tailscaled down its
        // full-netmap path.
        const OBJECTS: &[&str] =
            &["Node", "DERPMap", "DNSConfig", "Health", "DisplayMessages", "SSHPolicy", "TKAInfo", "Debug", "ControlDialPlan", "ClientVersion", "Peers"];
        const STRINGS: &[&str] = &["Domain", "CollectServices", "DomainDataPlaneAuditLogID", "DefaultAutoUpdate"];
        update.full_path = OBJECTS.iter().any(|f| fields.contains_key(*f))
            || STRINGS.iter().any(|f| fields.get(*f).is_some_and(|raw| raw.get() != "\"\""));
        Ok(update)
    }
}

/// Notify fields only the bus itself writes; a host cannot publish them.
const BUS_OWNED: &[&str] = &[
    "Version",
    "SessionID",
    "SelfChange",
    "InitialStatus",
    "NetMap",
    "PeerChangedPatch",
    "PeersChanged",
    "PeersRemoved",
    "UserProfiles",
    "InitialComplete",
];

/// A validated host event: `ipn.Notify` fields, in input order, raw.
pub(crate) type HostEvent = Vec<(String, Box<RawValue>)>;

pub(crate) fn parse_event(json: &[u8]) -> Result<HostEvent> {
    crate::json::check_depth(json, "Notify event")?;
    let fields: Vec<(String, Box<RawValue>)> = {
        let map: serde_json::Map<String, Value> =
            serde_json::from_slice(json).map_err(|e| parse_error(format!("Notify event: not a JSON object: {e}")))?;
        // Re-serialise per field: a Map parse validated the JSON already.
        map.into_iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| {
                let raw = serde_json::value::to_raw_value(&v).map_err(|e| parse_error(format!("Notify event field {k}: {e}")))?;
                Ok((k, raw))
            })
            .collect::<Result<_>>()?
    };
    if let Some((name, _)) = fields.iter().find(|(k, _)| BUS_OWNED.contains(&k.as_str())) {
        return Err(Error::invalid(format!("Notify field {name} is produced by the bus; send netmap changes through apply")));
    }
    Ok(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_response_parses() {
        let u = MapUpdate::parse(
            br#"{"Node":{"ID":1},"Peers":[{"ID":2,"User":7}],"PeersChanged":null,"PeersRemoved":[3],
                "PeersChangedPatch":[{"NodeID":2,"Online":true}],"OnlineChange":{"2":false},
                "PeerSeenChange":{"2":true},"UserProfiles":[{"ID":7,"LoginName":"a@b"}],
                "DNSConfig":{"Resolvers":[]},"DERPMap":{"Regions":{}},"PacketFilter":[],"Domain":"x.ts.net","Unknown":1}"#,
            "",
        )
        .unwrap();
        assert_eq!(u.node.unwrap().to_value()["ID"], 1);
        assert_eq!(u.peers.unwrap()[0].0, 2);
        assert!(u.peers_changed.is_empty());
        assert_eq!(u.peers_removed, vec![3]);
        assert_eq!(u.patches[0].id, 2);
        assert_eq!(u.online_change, vec![(2, false)]);
        assert_eq!(u.peer_seen_change, vec![(2, true)]);
        assert_eq!(u.user_profiles[0].0, 7);
        assert_eq!(u.dns_config.unwrap().get(), r#"{"Resolvers":[]}"#);
        assert_eq!(u.domain.as_deref(), Some("x.ts.net"));
        assert!(u.full_path && !u.keep_alive);
    }

    #[test]
    fn keep_alive_empty_peers_and_the_full_path() {
        let u = MapUpdate::parse(br#"{"KeepAlive":true,"Peers":[{"ID":2}],"Node":{"ID":1}}"#, "").unwrap();
        assert!(u.keep_alive && u.peers.is_none() && u.node.is_none());
        let u = MapUpdate::parse(br#"{"Peers":[]}"#, "").unwrap();
        assert!(u.peers.is_none() && u.full_path, "Peers:[] is no peer list, but the full path");
        let u = MapUpdate::parse(br#"{"PeersChanged":[{"ID":2}],"Domain":""}"#, "").unwrap();
        assert!(!u.full_path && u.domain.is_none());
        let u = MapUpdate::parse(br#"{"Health":[]}"#, "").unwrap();
        assert!(u.full_path);
        // Nodes arrive upgraded and named (suffix from the stored self name).
        let u = MapUpdate::parse(br#"{"PeersChanged":[{"ID":2,"Name":"p.t.ts.net.","DERP":"127.3.3.40:4","Addresses":["100.64.0.2/32"]}]}"#, "me.t.ts.net.")
            .unwrap();
        let n = u.peers_changed[0].1.to_value();
        assert_eq!((n["HomeDERP"].as_i64(), n.get("DERP"), n["ComputedName"].as_str()), (Some(4), None, Some("p")));
        assert_eq!(n["AllowedIPs"], serde_json::json!(["100.64.0.2/32"]));
    }

    #[test]
    fn errors_name_the_field() {
        for (json, needle) in [
            (&b"not json"[..], "not a JSON object"),
            (br#"[1]"#, "not a JSON object"),
            (br#"{"Peers":{}}"#, "Peers must be an array"),
            (br#"{"Peers":[{"ID":"x"}]}"#, "Peers[0]"),
            (br#"{"PeersChanged":[5]}"#, "PeersChanged[0]"),
            (br#"{"PeersChanged":[{"ID":1,"User":"u"}]}"#, "User"),
            (br#"{"PeersRemoved":["a"]}"#, "PeersRemoved"),
            (br#"{"PeersChangedPatch":[{"NodeID":1,"Online":3}]}"#, "PeersChangedPatch[0]"),
            (br#"{"OnlineChange":{"abc":true}}"#, "OnlineChange"),
            (br#"{"PeerSeenChange":{"1":1}}"#, "PeerSeenChange"),
            (br#"{"UserProfiles":[{"LoginName":"x"}]}"#, "UserProfiles[0]"),
            (br#"{"Domain":5}"#, "Domain"),
        ] {
            let err = MapUpdate::parse(json, "").unwrap_err();
            assert_eq!(err.kind, ErrorKind::Parse);
            assert!(err.message.contains(needle), "{} lacks {needle}", err.message);
        }
    }

    #[test]
    fn events_keep_fields_and_refuse_bus_fields() {
        let e = parse_event(br#"{"State":6,"BrowseToURL":"https://x","ErrMessage":null}"#).unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!(parse_event(br#"{"PeersChanged":[]}"#).unwrap_err().kind, ErrorKind::InvalidArgument);
        assert_eq!(parse_event(b"{").unwrap_err().kind, ErrorKind::Parse);
    }
}
