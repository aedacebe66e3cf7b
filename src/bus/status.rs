//! `ipnstate.Status`: the node's state as tailscaled's LocalAPI
//! `/localapi/v0/status` and `Notify.InitialStatus` give it
//! (`LocalBackend.updateStatusLocked`, ipn/ipnlocal/local.go, tailscale.com
//! v1.102.5), with every field of its Go type so a strict decoder reads it.
//!
//! What only tailscaled's engine knows (traffic counters, handshakes, the
//! current endpoint, magicsock and engine membership, peer API URLs) has
//! its zero value, as in a tailscaled whose engine reported nothing yet.
//! The self node's `Online` follows the published backend state
//! ("Running"); tailscaled reads it from its control connection.

use super::node::Node;
use super::store::Store;
use super::tailcfg;
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};
use std::net::IpAddr;

/// Go's zero `time.Time`.
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// tailscaled's marker ahead of the self node's capability names
/// (`tailcfg.NodeCapability` list kept for old clients).
const DEPRECATED_CAPS: &str = "HTTPS://TAILSCALE.COM/s/DEPRECATED-NODE-CAPS#see-https://github.com/tailscale/tailscale/issues/11508";

fn str_field<'a>(v: &'a Map<String, Value>, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// The single-IP entries of a prefix list ("100.64.0.1/32" -> 100.64.0.1).
fn single_ips(list: Option<&Value>) -> Vec<IpAddr> {
    let Some(list) = list.and_then(Value::as_array) else { return Vec::new() };
    list.iter()
        .filter_map(Value::as_str)
        .filter_map(|p| {
            let (ip, bits) = p.split_once('/').unwrap_or((p, ""));
            let ip: IpAddr = ip.parse().ok()?;
            let full = if ip.is_ipv4() { "32" } else { "128" };
            (bits.is_empty() || bits == full).then_some(ip)
        })
        .collect()
}

/// `tsaddr.IsTailscaleIP`: 100.64.0.0/10 without 100.115.92.0/23, or
/// fd7a:115c:a1e0::/48.
fn is_tailscale_ip(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            let cgnat = o[0] == 100 && (o[1] & 0xc0) == 64;
            let chromeos = o[0] == 100 && o[1] == 115 && (o[2] & 0xfe) == 92;
            cgnat && !chromeos
        }
        IpAddr::V6(v6) => v6.segments()[..3] == [0xfd7a, 0x115c, 0xa1e0],
    }
}

fn ips_value(ips: Vec<IpAddr>) -> Value {
    if ips.is_empty() {
        Value::Null
    } else {
        Value::Array(ips.into_iter().map(|ip| Value::String(ip.to_string())).collect())
    }
}

/// A non-empty list, else None (Go's `omitempty` on a slice pointer).
fn non_empty(v: Option<&Value>) -> Option<Value> {
    v.filter(|v| v.as_array().is_some_and(|a| !a.is_empty())).cloned()
}

/// `KeyExpiry` to the second (`peerStatusFromNode` rounds; control
/// planes send whole seconds, where both agree).
fn key_expiry(node: &Map<String, Value>) -> Option<Value> {
    let text = node.get("KeyExpiry").and_then(Value::as_str).filter(|t| !t.is_empty() && *t != ZERO_TIME)?;
    let rounded = match text.split_once('.') {
        // RFC 3339 with fractional seconds: whole seconds, the zone kept.
        Some((head, rest)) => {
            let zone = rest.trim_start_matches(|c: char| c.is_ascii_digit());
            format!("{head}{zone}")
        }
        None => text.to_string(),
    };
    Some(Value::String(rounded))
}

/// The fields every `ipnstate.PeerStatus` has, at their zero values.
fn base_status() -> Map<String, Value> {
    let mut s = Map::new();
    for (k, v) in [
        ("ID", json!("")),
        ("NodeID", json!(0)),
        ("PublicKey", json!(format!("nodekey:{}", "0".repeat(64)))),
        ("HostName", json!("")),
        ("DNSName", json!("")),
        ("OS", json!("")),
        ("UserID", json!(0)),
        ("TailscaleIPs", Value::Null),
        ("Addrs", Value::Null),
        ("CurAddr", json!("")),
        ("Relay", json!("")),
        ("PeerRelay", json!("")),
        ("RxBytes", json!(0)),
        ("TxBytes", json!(0)),
        ("Created", json!(ZERO_TIME)),
        ("LastWrite", json!(ZERO_TIME)),
        ("LastSeen", json!(ZERO_TIME)),
        ("LastHandshake", json!(ZERO_TIME)),
        ("Online", json!(false)),
        ("ExitNode", json!(false)),
        ("ExitNodeOption", json!(false)),
        ("Active", json!(false)),
        ("PeerAPIURL", Value::Null),
        ("TaildropTarget", json!(0)),
        ("NoFileSharingReason", json!("")),
        ("InNetworkMap", json!(false)),
        ("InMagicSock", json!(false)),
        ("InEngine", json!(false)),
    ] {
        s.insert(k.into(), v);
    }
    s
}

/// `peerStatusFromNode`: what self and peers take from their node alike.
fn from_node(s: &mut Map<String, Value>, n: &Map<String, Value>) {
    s.insert("ID".into(), json!(str_field(n, "StableID")));
    s.insert("NodeID".into(), n.get("ID").cloned().unwrap_or(json!(0)));
    s.insert("PublicKey".into(), json!(tailcfg::node_key_text(n)));
    if let Some(created) = n.get("Created").filter(|c| c.is_string()) {
        s.insert("Created".into(), created.clone());
    }
    let allowed: Vec<&str> = n.get("AllowedIPs").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect();
    s.insert("ExitNodeOption".into(), json!(allowed.contains(&"0.0.0.0/0") && allowed.contains(&"::/0")));
    for key in ["Tags", "PrimaryRoutes", "AllowedIPs"] {
        if let Some(v) = non_empty(n.get(key)) {
            s.insert(key.into(), v);
        }
    }
    if n.get("Expired").and_then(Value::as_bool) == Some(true) {
        s.insert("Expired".into(), json!(true));
    }
    if let Some(expiry) = key_expiry(n) {
        s.insert("KeyExpiry".into(), expiry);
    }
}

fn hostinfo(n: &Map<String, Value>) -> Map<String, Value> {
    n.get("Hostinfo").and_then(Value::as_object).cloned().unwrap_or_default()
}

/// A peer's `PeerStatus` (`populatePeerStatusLocked` + `peerStatusFromNode`).
fn peer_status(n: &Map<String, Value>) -> Map<String, Value> {
    let h = hostinfo(n);
    let mut s = base_status();
    s.insert("InNetworkMap".into(), json!(true));
    s.insert("UserID".into(), n.get("User").cloned().unwrap_or(json!(0)));
    if let Some(sharer) = n.get("Sharer").filter(|v| v.as_i64().is_some_and(|id| id != 0)) {
        s.insert("AltSharerUserID".into(), sharer.clone());
    }
    let ips: Vec<IpAddr> = single_ips(n.get("Addresses")).into_iter().filter(is_tailscale_ip).collect();
    s.insert("TailscaleIPs".into(), ips_value(ips));
    s.insert("HostName".into(), json!(str_field(&h, "Hostname")));
    s.insert("DNSName".into(), json!(str_field(n, "Name")));
    s.insert("OS".into(), json!(str_field(&h, "OS")));
    if let Some(seen) = n.get("LastSeen").filter(|v| v.is_string()) {
        s.insert("LastSeen".into(), seen.clone());
    }
    s.insert("Online".into(), json!(n.get("Online").and_then(Value::as_bool).unwrap_or(false)));
    if h.get("ShareeNode").and_then(Value::as_bool) == Some(true) {
        s.insert("ShareeNode".into(), json!(true));
    }
    if let Some(keys) = non_empty(h.get("SSH_HostKeys")) {
        s.insert("sshHostKeys".into(), keys);
    }
    if let Some(loc) = h.get("Location").filter(|l| l.is_object()) {
        s.insert("Location".into(), loc.clone());
    }
    if let Some(caps) = non_empty(n.get("Capabilities")) {
        s.insert("Capabilities".into(), caps);
    }
    if let Some(cap_map) = n.get("CapMap").filter(|m| m.as_object().is_some_and(|m| !m.is_empty())) {
        s.insert("CapMap".into(), cap_map.clone());
    }
    from_node(&mut s, n);
    s
}

/// The self node's `PeerStatus` (`MutateSelfStatus`).
fn self_status(node: Option<&Map<String, Value>>, online: bool) -> Map<String, Value> {
    let mut s = base_status();
    s.insert("OS".into(), json!("linux"));
    s.insert("Online".into(), json!(online));
    let Some(n) = node else {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        s.insert("HostName".into(), json!(host.trim()));
        return s;
    };
    let h = hostinfo(n);
    s.insert("InNetworkMap".into(), json!(true));
    s.insert("HostName".into(), json!(str_field(&h, "Hostname")));
    s.insert("DNSName".into(), json!(str_field(n, "Name")));
    s.insert("UserID".into(), n.get("User").cloned().unwrap_or(json!(0)));
    from_node(&mut s, n);
    if let Some(cap_map) = n.get("CapMap").and_then(Value::as_object).filter(|m| !m.is_empty()) {
        let mut names: Vec<&String> = cap_map.keys().collect();
        names.sort();
        let caps: Vec<Value> = std::iter::once(json!(DEPRECATED_CAPS)).chain(names.into_iter().map(|c| json!(c))).collect();
        s.insert("Capabilities".into(), Value::Array(caps));
        s.insert("CapMap".into(), Value::Object(cap_map.clone()));
    }
    s.insert("TailscaleIPs".into(), ips_value(single_ips(n.get("Addresses"))));
    s
}

/// `ipnstate.(*StatusBuilder).AddPeer` on a node key already present:
/// fields the first status left at their zero value are filled in.
fn merge_into(existing: &mut Map<String, Value>, new: Map<String, Value>) {
    for (k, v) in new {
        match existing.get(&k) {
            Some(old) if !tailcfg::is_zero(old) && old.as_str() != Some(ZERO_TIME) => {}
            _ => {
                existing.insert(k, v);
            }
        }
    }
}

/// Published `Health` (a `health.State`: `{"Warnings": {code: {Title,
/// Text, ...}}}`, or already a list) as `ipnstate.Status.Health`: one
/// string per warning (its Text, else Title, else code), sorted by code.
fn health_strings(raw: Option<&RawValue>) -> Vec<Value> {
    let Some(value) = raw.and_then(|r| serde_json::from_str::<Value>(r.get()).ok()) else { return Vec::new() };
    let field = |w: &Value, k: &str| w.get(k).and_then(Value::as_str).filter(|s| !s.is_empty()).map(String::from);
    let text = |code: &str, w: &Value| -> String { field(w, "Text").or_else(|| field(w, "Title")).or_else(|| w.as_str().map(String::from)).unwrap_or(code.into()) };
    match &value {
        Value::Array(items) => items.iter().filter_map(|i| i.as_str().map(String::from).or_else(|| field(i, "Text"))).map(Value::String).collect(),
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
/// ("NoState" when none was published); `with_peers` fills `Peer` (keyed by
/// node key) and all profiles in `User` (without: only the self user's);
/// `remembered` looks up published host events by field name.
pub(crate) fn ipn_status<'a>(
    store: &Store,
    backend_state: Option<&str>,
    with_peers: bool,
    remembered: impl Fn(&str) -> Option<&'a RawValue>,
) -> Vec<u8> {
    let backend_state = backend_state.unwrap_or("NoState");
    let self_map = store.self_node.as_deref().map(Node::to_map);
    let self_map = self_map.as_ref();
    let dns: Option<Value> = store.dns_config.as_ref().and_then(|d| serde_json::from_str(d.get()).ok());
    let suffix = self_map.map(|n| tailcfg::magic_dns_suffix(str_field(n, "Name"))).unwrap_or_default();
    let mut s = Map::new();
    s.insert("Version".into(), json!(env!("CARGO_PKG_VERSION")));
    s.insert("TUN".into(), json!(true));
    s.insert("BackendState".into(), json!(backend_state));
    if self_map.is_some_and(|n| !str_field(n, "Key").is_empty()) {
        s.insert("HaveNodeKey".into(), json!(true));
    }
    let auth_url = remembered("BrowseToURL").and_then(|r| serde_json::from_str::<String>(r.get()).ok()).unwrap_or_default();
    s.insert("AuthURL".into(), json!(auth_url));
    s.insert("TailscaleIPs".into(), ips_value(self_map.map(|n| single_ips(n.get("Addresses"))).unwrap_or_default()));
    s.insert("Self".into(), Value::Object(self_status(self_map, backend_state == "Running")));
    s.insert("Health".into(), Value::Array(health_strings(remembered("Health"))));
    s.insert("MagicDNSSuffix".into(), json!(suffix));
    let tailnet = self_map.map(|_| {
        let proxied = dns.as_ref().and_then(|d| d.get("Proxied")).and_then(Value::as_bool).unwrap_or(false);
        json!({"Name": store.domain.as_deref().unwrap_or(""), "MagicDNSSuffix": suffix, "MagicDNSEnabled": proxied})
    });
    s.insert("CurrentTailnet".into(), tailnet.unwrap_or(Value::Null));
    for (key, field) in [("CertDomains", "CertDomains"), ("ExtraRecords", "ExtraRecords")] {
        let v = dns.as_ref().and_then(|d| non_empty(d.get(field))).unwrap_or(Value::Null);
        s.insert(key.into(), v);
    }
    let mut peers = Map::new();
    if with_peers {
        let mut ids: Vec<&i64> = store.peers.keys().collect();
        ids.sort_unstable();
        for id in ids {
            let n = store.peers[id].to_map();
            let key = tailcfg::node_key_text(&n);
            let status = peer_status(&n);
            match peers.get_mut(&key) {
                Some(Value::Object(existing)) => merge_into(existing, status),
                _ => {
                    peers.insert(key, Value::Object(status));
                }
            }
        }
    }
    s.insert("Peer".into(), if peers.is_empty() { Value::Null } else { Value::Object(peers) });
    let mut users = Map::new();
    let self_user = self_map.and_then(|n| n.get("User")).and_then(Value::as_i64);
    let mut ids: Vec<&i64> = store.profiles.keys().filter(|id| with_peers || Some(**id) == self_user).collect();
    ids.sort_unstable();
    for id in ids {
        users.insert(id.to_string(), (*store.profiles[id]).clone());
    }
    s.insert("User".into(), Value::Object(users));
    let client_version = remembered("ClientVersion").filter(|r| r.get().trim_start().starts_with('{'));
    s.insert("ClientVersion".into(), client_version.and_then(|cv| serde_json::from_str(cv.get()).ok()).unwrap_or(Value::Null));
    serde_json::to_vec(&Value::Object(s)).expect("a Value always encodes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tailscale_ranges() {
        for (ip, yes) in [("100.64.0.1", true), ("100.127.255.1", true), ("100.115.92.5", false), ("100.128.0.1", false), ("fd7a:115c:a1e0::1", true), ("fd7a::1", false)] {
            assert_eq!(is_tailscale_ip(&ip.parse().unwrap()), yes, "{ip}");
        }
        assert_eq!(single_ips(Some(&json!(["100.64.0.1/32", "10.0.0.0/8", "fd7a:115c:a1e0::1/128"]))).len(), 2);
        assert_eq!(key_expiry(json!({"KeyExpiry": "2030-01-02T03:04:05.2Z"}).as_object().unwrap()), Some(json!("2030-01-02T03:04:05Z")));
    }
}
