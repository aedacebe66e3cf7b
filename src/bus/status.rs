//! `Notify.InitialStatus`: the bus's state in the shape of Tailscale's
//! `ipnstate.Status`, so a Go host decodes it into that type unchanged.
//!
//! Only `ipnstate.Status` field names appear at the top level (`Version`,
//! `BackendState`, `AuthURL`, `TailscaleIPs`, `Self`, `Health`,
//! `MagicDNSSuffix`, `CurrentTailnet`, `User`, `ClientVersion`), each with
//! the JSON shape of its Go type: `Self` is a `PeerStatus` (`ID` is a
//! `StableNodeID` string, addresses are `netip.Addr` text), `Health` a
//! `[]string`, `User` a map UserID -> profile. `Peer` (keyed by node public
//! key) is left out: the current peers follow the first message as
//! `PeersChanged` chunks. The bus's own counters (`PeerCount`, `Watchers`,
//! ...) stay in `Bus::status`, which is not `ipnstate.Status`.

use super::store::Store;
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};
use std::net::IpAddr;

/// A node's `Addresses` (prefixes such as "100.64.0.1/32") as `netip.Addr`
/// text; entries that are no IP address are skipped.
fn tailscale_ips(node: &Value) -> Vec<Value> {
    let Some(addrs) = node.get("Addresses").and_then(Value::as_array) else { return Vec::new() };
    addrs
        .iter()
        .filter_map(Value::as_str)
        .filter_map(|a| a.split('/').next())
        .filter(|a| a.parse::<IpAddr>().is_ok())
        .map(|a| Value::String(a.to_string()))
        .collect()
}

fn str_field<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// "nodekey:" + 64 hex digits: what `key.NodePublic` accepts.
fn node_public_key(node: &Value) -> Option<&str> {
    let key = str_field(node, "Key")?;
    let hex = key.strip_prefix("nodekey:")?;
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then_some(key)
}

/// The MagicDNS suffix: the self node's FQDN without its first label
/// ("self.example.ts.net." -> "example.ts.net"), else the MapResponse Domain.
fn magic_dns_suffix<'a>(self_node: Option<&'a Value>, domain: Option<&'a str>) -> Option<&'a str> {
    let from_name = self_node
        .and_then(|n| str_field(n, "Name"))
        .map(|name| name.trim_end_matches('.'))
        .and_then(|name| name.split_once('.').map(|(_, rest)| rest))
        .filter(|s| !s.is_empty());
    from_name.or(domain.filter(|d| !d.is_empty()))
}

/// The self node as an `ipnstate.PeerStatus`.
fn peer_status(node: &Value, running: bool) -> Value {
    let id = match str_field(node, "StableID") {
        Some(stable) => stable.to_string(),
        None => node.get("ID").and_then(Value::as_i64).map(|id| id.to_string()).unwrap_or_default(),
    };
    let dns_name = str_field(node, "Name").unwrap_or("");
    let hostinfo = node.get("Hostinfo");
    let host_name = hostinfo
        .and_then(|h| str_field(h, "Hostname"))
        .unwrap_or_else(|| dns_name.trim_end_matches('.').split('.').next().unwrap_or(""));
    let mut s = Map::new();
    s.insert("ID".into(), json!(id));
    if let Some(key) = node_public_key(node) {
        s.insert("PublicKey".into(), json!(key));
    }
    s.insert("HostName".into(), json!(host_name));
    s.insert("DNSName".into(), json!(dns_name));
    s.insert("OS".into(), json!(hostinfo.and_then(|h| str_field(h, "OS")).unwrap_or("")));
    s.insert("UserID".into(), json!(node.get("User").and_then(Value::as_i64).unwrap_or(0)));
    s.insert("TailscaleIPs".into(), Value::Array(tailscale_ips(node)));
    if let Some(endpoints) = node.get("Endpoints").and_then(Value::as_array) {
        let addrs: Vec<Value> = endpoints.iter().filter(|e| e.is_string()).cloned().collect();
        s.insert("Addrs".into(), Value::Array(addrs));
    }
    s.insert("Online".into(), json!(node.get("Online").and_then(Value::as_bool).unwrap_or(running)));
    s.insert("InNetworkMap".into(), json!(true));
    Value::Object(s)
}

/// Published `Health` (a `health.State`: `{"Warnings": {code: {Title,
/// Text, ...}}}`, or already a list) as `ipnstate.Status.Health`: one
/// string per warning (its Text, else Title, else code), sorted by code.
fn health_strings(raw: Option<&RawValue>) -> Vec<Value> {
    let Some(value) = raw.and_then(|r| serde_json::from_str::<Value>(r.get()).ok()) else { return Vec::new() };
    let text = |code: &str, w: &Value| -> String {
        str_field(w, "Text").or_else(|| str_field(w, "Title")).or_else(|| w.as_str()).unwrap_or(code).to_string()
    };
    match &value {
        Value::Array(items) => items.iter().filter_map(|i| i.as_str().map(String::from).or_else(|| str_field(i, "Text").map(String::from))).map(Value::String).collect(),
        Value::String(s) if !s.is_empty() => vec![Value::String(s.clone())],
        Value::Object(o) => match o.get("Warnings") {
            Some(Value::Object(warnings)) => {
                let mut codes: Vec<&String> = warnings.keys().collect();
                codes.sort();
                codes.into_iter().map(|c| Value::String(text(c, &warnings[c]))).collect()
            }
            Some(Value::Array(warnings)) => warnings.iter().map(|w| Value::String(text("warning", w))).collect(),
            _ => Vec::new(),
        },
        _ => Vec::new(),
    }
}

/// `ipnstate.Status` JSON. `backend_state` is the ipn.State name
/// ("NoState" when none was published); `remembered` looks up published
/// host events by field name.
pub(crate) fn ipn_status<'a>(store: &Store, backend_state: Option<&str>, remembered: impl Fn(&str) -> Option<&'a RawValue>) -> Vec<u8> {
    let backend_state = backend_state.unwrap_or("NoState");
    let running = backend_state == "Running";
    let self_node = store.self_node.as_deref().map(|n| n.to_value());
    let self_node = self_node.as_ref();
    let mut s = Map::new();
    s.insert("Version".into(), json!(env!("CARGO_PKG_VERSION")));
    s.insert("BackendState".into(), json!(backend_state));
    if let Some(url) = remembered("BrowseToURL").and_then(|r| serde_json::from_str::<String>(r.get()).ok()) {
        s.insert("AuthURL".into(), json!(url));
    }
    s.insert("TailscaleIPs".into(), Value::Array(self_node.map(tailscale_ips).unwrap_or_default()));
    if let Some(node) = self_node {
        s.insert("Self".into(), peer_status(node, running));
    }
    s.insert("Health".into(), Value::Array(health_strings(remembered("Health"))));
    let suffix = magic_dns_suffix(self_node, store.domain.as_deref());
    s.insert("MagicDNSSuffix".into(), json!(suffix.unwrap_or("")));
    if let Some(domain) = store.domain.as_deref().filter(|d| !d.is_empty()) {
        let proxied = store
            .dns_config
            .as_ref()
            .and_then(|d| serde_json::from_str::<Value>(d.get()).ok())
            .and_then(|d| d.get("Proxied").and_then(Value::as_bool))
            .unwrap_or(false);
        s.insert(
            "CurrentTailnet".into(),
            json!({"Name": domain, "MagicDNSSuffix": suffix.unwrap_or(""), "MagicDNSEnabled": proxied}),
        );
    }
    let mut users: Vec<(&i64, &std::sync::Arc<Value>)> = store.profiles.iter().collect();
    users.sort_by_key(|(id, _)| **id);
    let user: Map<String, Value> = users.into_iter().map(|(id, p)| (id.to_string(), (**p).clone())).collect();
    s.insert("User".into(), Value::Object(user));
    if let Some(cv) = remembered("ClientVersion").filter(|r| r.get().trim_start().starts_with('{')) {
        s.insert("ClientVersion".into(), serde_json::from_str(cv.get()).unwrap_or(Value::Null));
    }
    serde_json::to_vec(&Value::Object(s)).expect("a Value always encodes")
}
