//! What tailscaled does to a MapResponse's nodes before anything sees them,
//! on JSON objects with `tailcfg.Node` field names. Each function names the
//! function of tailscale.com v1.102.5 whose rules it follows.
//!
//! One difference is kept on purpose: tailscaled decodes nodes into Go
//! structs and so drops fields it does not know; the bus keeps them (a newer
//! control plane's addition then reaches watchers). For the patch rules
//! below an unknown field is treated like a field that cannot be patched.

use serde_json::{Map, Value};

/// `tailcfg.DerpMagicIP`: legacy `Node.DERP` strings name a region as
/// "127.3.3.40:<region>".
const DERP_MAGIC_IP: &str = "127.3.3.40";

/// `upgradeNode` (control/controlclient/map.go): the legacy `DERP` string
/// becomes `HomeDERP` (when that is unset) and is always removed; a node
/// without `AllowedIPs` gets a copy of its `Addresses`, and an
/// `UnsignedPeerAPIOnly` node gets no more than its own addresses.
pub(crate) fn upgrade_node(node: &mut Map<String, Value>) {
    if let Some(legacy) = node.remove("DERP") {
        let home_unset = node.get("HomeDERP").map(is_zero).unwrap_or(true);
        if let (Some(text), true) = (legacy.as_str(), home_unset) {
            if let Some(region) = text.strip_prefix(DERP_MAGIC_IP).and_then(|r| r.strip_prefix(':')).and_then(|p| p.parse::<i64>().ok()) {
                node.insert("HomeDERP".into(), Value::from(region));
            }
        }
    }
    let addresses = node.get("Addresses").filter(|a| !a.is_null()).cloned();
    if node.get("AllowedIPs").is_none_or(Value::is_null) {
        match &addresses {
            Some(a) => node.insert("AllowedIPs".into(), a.clone()),
            None => node.remove("AllowedIPs"),
        };
    }
    let unsigned = node.get("UnsignedPeerAPIOnly").and_then(Value::as_bool).unwrap_or(false);
    if unsigned && !same(node.get("AllowedIPs"), addresses.as_ref()) {
        match addresses {
            Some(a) => node.insert("AllowedIPs".into(), a),
            None => node.remove("AllowedIPs"),
        };
    }
}

/// The self node only (handleNonKeepAliveMapResponse): each legacy
/// `Capabilities` entry missing from `CapMap` is added to it with a null
/// value.
pub(crate) fn capabilities_to_cap_map(node: &mut Map<String, Value>) {
    let Some(caps) = node.get("Capabilities").and_then(Value::as_array).cloned() else { return };
    for cap in caps.iter().filter_map(Value::as_str) {
        let map = node.entry("CapMap").or_insert_with(|| Value::Object(Map::new()));
        if map.is_null() {
            *map = Value::Object(Map::new());
        }
        if let Some(map) = map.as_object_mut() {
            map.entry(cap.to_string()).or_insert(Value::Null);
        }
    }
}

/// `netmap.MagicDNSSuffixOfNodeName`: the self node's name without its
/// first label ("self.example.ts.net." -> "example.ts.net").
pub(crate) fn magic_dns_suffix(self_name: &str) -> String {
    let name = self_name.trim_matches('.');
    match name.split_once('.') {
        Some((_, rest)) => rest.to_string(),
        None => name.to_string(),
    }
}

/// `dnsname.HasSuffix`.
fn has_suffix(name: &str, suffix: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    let suffix = suffix.strip_suffix('.').unwrap_or(suffix);
    let suffix = suffix.strip_prefix('.').unwrap_or(suffix);
    let base = name.strip_suffix(suffix).unwrap_or(name);
    base.len() < name.len() && base.ends_with('.')
}

/// `dnsname.TrimSuffix`.
fn trim_suffix(name: &str, suffix: &str) -> String {
    let mut name = name;
    if has_suffix(name, suffix) {
        name = name.strip_suffix('.').unwrap_or(name);
        name = name.strip_suffix(suffix.trim_matches('.')).unwrap_or(name);
    }
    name.strip_suffix('.').unwrap_or(name).to_string()
}

/// `dnsname.SanitizeHostname`: common local suffixes trimmed, then a valid
/// RFC 1035 label (lower case, separators to '-', other bytes dropped).
fn sanitize_hostname(hostname: &str) -> String {
    let mut h = hostname;
    for suffix in [".local", ".localdomain", ".lan"] {
        h = h.strip_suffix(suffix).unwrap_or(h);
    }
    let b = h.as_bytes();
    let alnum = |c: u8| c.is_ascii_alphanumeric();
    let (mut start, mut end) = (0, b.len().min(63));
    while start < end && !alnum(b[start]) {
        start += 1;
    }
    while start < end && !alnum(b[end - 1]) {
        end -= 1;
    }
    let mut out = String::with_capacity(end - start);
    for (i, &c) in b.iter().enumerate().take(end).skip(start) {
        let boundary = i == start || i == end - 1;
        if !boundary && matches!(c, b' ' | b'.' | b'@' | b'_') {
            out.push('-');
        } else if alnum(c) || c == b'-' {
            out.push(c.to_ascii_lowercase() as char);
        }
    }
    out
}

/// `tailcfg.Node.InitDisplayNames`: `ComputedName` and
/// `ComputedNameWithHost` from the name (without the tailnet's MagicDNS
/// suffix), the Hostinfo hostname, or else the node key.
pub(crate) fn init_display_names(node: &mut Map<String, Value>, suffix: &str) {
    let name = trim_suffix(node.get("Name").and_then(Value::as_str).unwrap_or(""), suffix);
    let mut host = match node.get("Hostinfo") {
        Some(Value::Object(h)) => sanitize_hostname(h.get("Hostname").and_then(Value::as_str).unwrap_or("")),
        _ => String::new(),
    };
    if name.eq_ignore_ascii_case(&host) {
        host.clear();
    }
    let name = if !name.is_empty() {
        name
    } else if !host.is_empty() {
        std::mem::take(&mut host)
    } else {
        node_key_text(node)
    };
    let with_host = if host.is_empty() { name.clone() } else { format!("{name} ({host})") };
    node.insert("ComputedName".into(), Value::String(name));
    node.insert("ComputedNameWithHost".into(), Value::String(with_host));
}

/// The node key as `key.NodePublic` prints it ("nodekey:" + 64 zeros when
/// the node has none).
pub(crate) fn node_key_text(node: &Map<String, Value>) -> String {
    match node.get("Key").and_then(Value::as_str).filter(|k| !k.is_empty()) {
        Some(k) => k.to_string(),
        None => format!("nodekey:{}", "0".repeat(64)),
    }
}

/// A Go zero value: what a struct field with no value decodes to (null,
/// false, 0, "", an empty list or object).
pub(crate) fn is_zero(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
    }
}

/// Equal as Go struct fields: equal values, or both zero.
fn same(a: Option<&Value>, b: Option<&Value>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) if a == b => true,
        _ => a.is_none_or(is_zero) && b.is_none_or(is_zero),
    }
}

/// Fields tailscaled never compares when it turns a full node into a patch.
const IGNORED: &[&str] = &["ComputedName", "ComputedNameWithHost", "DataPlaneAuditLogID", "Capabilities"];

/// Node fields a PeerChange can carry, with the PeerChange name.
const PATCHABLE: &[(&str, &str)] = &[
    ("Key", "Key"),
    ("KeyExpiry", "KeyExpiry"),
    ("KeySignature", "KeySignature"),
    ("DiscoKey", "DiscoKey"),
    ("Endpoints", "Endpoints"),
    ("HomeDERP", "DERPRegion"),
    ("Cap", "Cap"),
    ("CapMap", "CapMap"),
];

/// Pointer fields in Go: absent (nil) differs from a present zero value.
const POINTERS: &[&str] = &["Hostinfo", "SelfNodeV4MasqAddrForThisPeer", "SelfNodeV6MasqAddrForThisPeer"];

/// What `peerChangeDiff` (control/controlclient/map.go) makes of a full
/// node for a known peer: None when it cannot be a patch (a field outside
/// the patchable set differs: the node replaces the stored one);
/// `Some(fields)` otherwise, the PeerChange fields (PeerChange names) that
/// differ — empty when nothing does, and the entry is then dropped.
/// `Online` and `LastSeen` count only when both nodes have them, so a full
/// node that omits them keeps the stored values.
pub(crate) fn peer_change_diff(was: &Map<String, Value>, new: &Map<String, Value>) -> Option<Map<String, Value>> {
    let mut patch = Map::new();
    for key in was.keys().chain(new.keys()) {
        let key = key.as_str();
        if IGNORED.contains(&key) || patch.contains_key(key) {
            continue;
        }
        let (a, b) = (was.get(key), new.get(key));
        if let Some((_, pc_name)) = PATCHABLE.iter().find(|(node_name, _)| *node_name == key) {
            if !same(a, b) {
                let value = match (key, b) {
                    (_, Some(v)) if !v.is_null() => v.clone(),
                    // A field the new node leaves out: tailscaled's patch
                    // points at its Go zero value, which clears it for a
                    // pointer field; a nil list changes nothing.
                    ("CapMap", _) => Value::Object(Map::new()),
                    ("Key", _) => Value::String(format!("nodekey:{}", "0".repeat(64))),
                    ("DiscoKey", _) => Value::String(format!("discokey:{}", "0".repeat(64))),
                    ("KeyExpiry", _) => Value::String("0001-01-01T00:00:00Z".into()),
                    _ => Value::Null,
                };
                patch.insert(pc_name.to_string(), value);
            }
            continue;
        }
        match key {
            "Online" | "LastSeen" => {
                if let (Some(a), Some(b)) = (a.filter(|v| !v.is_null()), b.filter(|v| !v.is_null())) {
                    if a != b {
                        patch.insert(key.to_string(), b.clone());
                    }
                }
            }
            _ if POINTERS.contains(&key) => {
                let (a, b) = (a.filter(|v| !v.is_null()), b.filter(|v| !v.is_null()));
                if a != b {
                    return None;
                }
            }
            _ => {
                if !same(a, b) {
                    return None;
                }
            }
        }
    }
    Some(patch)
}

/// `updateStateFromResponse`'s DERPMap rules (map.go): null regions are
/// dropped; without `Regions` (absent or null) the previous map's regions
/// and `omitDefaultRegions` are kept; without `HomeParams` the previous
/// ones are, and without `HomeParams.RegionScore` the previous scores.
pub(crate) fn merge_derp_map(previous: Option<&Value>, mut new: Map<String, Value>) -> Map<String, Value> {
    if let Some(Value::Object(regions)) = new.get_mut("Regions") {
        regions.retain(|_, r| !r.is_null());
    }
    let Some(Value::Object(prev)) = previous else { return new };
    if new.get("Regions").is_none_or(Value::is_null) {
        new.remove("Regions");
        new.remove("omitDefaultRegions");
        new.remove("OmitDefaultRegions");
        for key in ["Regions", "omitDefaultRegions"] {
            if let Some(v) = prev.get(key) {
                new.insert(key.into(), v.clone());
            }
        }
    }
    match new.get_mut("HomeParams") {
        None | Some(Value::Null) => {
            new.remove("HomeParams");
            if let Some(v) = prev.get("HomeParams") {
                new.insert("HomeParams".into(), v.clone());
            }
        }
        Some(Value::Object(home)) => {
            if home.get("RegionScore").is_none_or(Value::is_null) {
                home.remove("RegionScore");
                if let Some(score) = prev.get("HomeParams").and_then(|h| h.get("RegionScore")).filter(|s| !s.is_null()) {
                    home.insert("RegionScore".into(), score.clone());
                }
            }
        }
        Some(_) => {}
    }
    new
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn upgrade_moves_the_legacy_derp_string_and_fills_allowed_ips() {
        let mut n = obj(json!({"ID": 1, "DERP": "127.3.3.40:7", "Addresses": ["100.64.0.1/32"]}));
        upgrade_node(&mut n);
        assert_eq!(Value::Object(n), json!({"ID": 1, "HomeDERP": 7, "Addresses": ["100.64.0.1/32"], "AllowedIPs": ["100.64.0.1/32"]}));
        // HomeDERP set: kept; the string goes anyway, parsable or not.
        let mut n = obj(json!({"ID": 1, "DERP": "127.3.3.40:7", "HomeDERP": 3, "AllowedIPs": []}));
        upgrade_node(&mut n);
        assert_eq!(Value::Object(n), json!({"ID": 1, "HomeDERP": 3, "AllowedIPs": []}));
        let mut n = obj(json!({"ID": 1, "DERP": "10.0.0.1:7"}));
        upgrade_node(&mut n);
        assert_eq!(Value::Object(n), json!({"ID": 1}));
        let mut n = obj(json!({"ID": 1, "UnsignedPeerAPIOnly": true, "Addresses": ["a"], "AllowedIPs": ["a", "0.0.0.0/0"]}));
        upgrade_node(&mut n);
        assert_eq!(n["AllowedIPs"], json!(["a"]));
    }

    #[test]
    fn display_names_follow_init_display_names() {
        let suffix = magic_dns_suffix("self.example.ts.net.");
        assert_eq!(suffix, "example.ts.net");
        let mut n = obj(json!({"Name": "peer.example.ts.net.", "Hostinfo": {"Hostname": "My_Laptop.local"}}));
        init_display_names(&mut n, &suffix);
        assert_eq!((n["ComputedName"].as_str(), n["ComputedNameWithHost"].as_str()), (Some("peer"), Some("peer (my-laptop)")));
        let mut n = obj(json!({"Name": "peer.example.ts.net.", "Hostinfo": {"Hostname": "PEER"}}));
        init_display_names(&mut n, &suffix);
        assert_eq!(n["ComputedNameWithHost"], "peer", "same as the sanitized host, case-insensitively");
        let mut n = obj(json!({"Name": "peer.other.net.", "Hostinfo": {"Hostname": "PEER.other.net"}}));
        init_display_names(&mut n, &suffix);
        assert_eq!(n["ComputedName"], "peer.other.net", "another suffix stays; the trailing dot goes");
        assert_eq!(n["ComputedNameWithHost"], "peer.other.net (peer-other-net)");
        let mut n = obj(json!({"Hostinfo": {"Hostname": "box"}}));
        init_display_names(&mut n, &suffix);
        assert_eq!((n["ComputedName"].as_str(), n["ComputedNameWithHost"].as_str()), (Some("box"), Some("box")));
        let mut n = obj(json!({}));
        init_display_names(&mut n, &suffix);
        assert_eq!(n["ComputedName"], format!("nodekey:{}", "0".repeat(64)));
        assert_eq!(sanitize_hostname("--a b.c@d_e--"), "a-b-c-d-e");
    }

    #[test]
    fn diff_is_a_patch_only_for_patchable_fields() {
        let was = obj(json!({"ID": 2, "Name": "a", "Online": true, "HomeDERP": 1, "Key": "k1"}));
        assert_eq!(peer_change_diff(&was, &obj(json!({"ID": 2, "Name": "new"}))), None, "Name differs");
        assert_eq!(peer_change_diff(&was, &obj(json!({"ID": 2, "Name": "a", "HomeDERP": 1, "Key": "k1"}))), Some(Map::new()), "Online omitted: equal");
        let p = peer_change_diff(&was, &obj(json!({"ID": 2, "Name": "a", "Online": false, "HomeDERP": 9, "Key": "k2"}))).unwrap();
        assert_eq!(Value::Object(p), json!({"Online": false, "DERPRegion": 9, "Key": "k2"}));
        // Zero values equal absent ones; an unknown field that differs is no patch.
        assert_eq!(peer_change_diff(&was, &obj(json!({"ID": 2, "Name": "a", "HomeDERP": 1, "Key": "k1", "Tags": []}))), Some(Map::new()));
        assert_eq!(peer_change_diff(&was, &obj(json!({"ID": 2, "Name": "a", "HomeDERP": 1, "Key": "k1", "Future": 1}))), None);
        // Hostinfo is a pointer: absent and {} differ.
        assert_eq!(peer_change_diff(&was, &obj(json!({"ID": 2, "Name": "a", "HomeDERP": 1, "Key": "k1", "Hostinfo": {}}))), None);
        // A pointer field the new node leaves out is cleared (the patch
        // carries its zero value); a left-out list changes nothing.
        let expiring = obj(json!({"ID": 2, "KeyExpiry": "2030-01-02T00:00:00Z", "Endpoints": ["a:1"]}));
        let p = peer_change_diff(&expiring, &obj(json!({"ID": 2}))).unwrap();
        assert_eq!(Value::Object(p), json!({"KeyExpiry": "0001-01-01T00:00:00Z", "Endpoints": null}));
        let capped = obj(json!({"ID": 2, "CapMap": {"x": null}}));
        assert_eq!(Value::Object(peer_change_diff(&capped, &obj(json!({"ID": 2}))).unwrap()), json!({"CapMap": {}}));
    }

    #[test]
    fn derp_maps_merge_as_tailscaled_merges_them() {
        let prev = json!({"Regions": {"1": {"RegionID": 1}}, "omitDefaultRegions": true, "HomeParams": {"RegionScore": {"1": 0.5}}});
        let m = merge_derp_map(Some(&prev), obj(json!({"HomeParams": {}})));
        assert_eq!(Value::Object(m), prev, "no Regions: kept with omitDefaultRegions; no RegionScore: inherited");
        let m = merge_derp_map(Some(&prev), obj(json!({"Regions": {"2": {"RegionID": 2}, "1": null}})));
        assert_eq!(Value::Object(m), json!({"Regions": {"2": {"RegionID": 2}}, "HomeParams": {"RegionScore": {"1": 0.5}}}));
        let m = merge_derp_map(Some(&prev), obj(json!({"Regions": {}, "HomeParams": {"RegionScore": {"2": 1.0}}})));
        assert_eq!(Value::Object(m), json!({"Regions": {}, "HomeParams": {"RegionScore": {"2": 1.0}}}));
        assert_eq!(Value::Object(merge_derp_map(None, obj(json!({"HomeParams": {}})))), json!({"HomeParams": {}}));
    }

    #[test]
    fn capabilities_become_cap_map_entries() {
        let mut n = obj(json!({"Capabilities": ["a", "b"], "CapMap": {"a": [1]}}));
        capabilities_to_cap_map(&mut n);
        assert_eq!(n["CapMap"], json!({"a": [1], "b": null}));
    }
}
