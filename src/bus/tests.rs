//! One test (or more) per rule of the bus (see the module doc).

use super::*;
use crate::error::ErrorKind;
use crate::sync::Wait;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn bus() -> Bus {
    Bus::new(BusOptions::default()).unwrap()
}

fn apply(bus: &Bus, v: Value) {
    bus.apply(v.to_string().as_bytes()).unwrap();
}

fn publish(bus: &Bus, v: Value) {
    bus.publish(v.to_string().as_bytes()).unwrap();
}

/// Drops the display-name fields the bus adds to every node (tested on
/// their own in `display_names_are_computed_for_every_node`), so the tests
/// below compare nodes with what they applied.
fn without_names(mut v: Value) -> Value {
    match &mut v {
        Value::Object(m) => {
            m.remove("ComputedName");
            m.remove("ComputedNameWithHost");
            for (_, x) in m.iter_mut() {
                *x = without_names(x.take());
            }
        }
        Value::Array(a) => {
            for x in a.iter_mut() {
                *x = without_names(x.take());
            }
        }
        _ => {}
    }
    v
}

fn next(w: &Watcher) -> Option<Value> {
    match w.next(Wait::Never) {
        Ok(bytes) => Some(without_names(serde_json::from_slice(&bytes).unwrap())),
        Err(e) if e.kind == ErrorKind::WouldBlock => None,
        Err(e) => panic!("next: {e}"),
    }
}

fn drain(w: &Watcher) -> Vec<Value> {
    std::iter::from_fn(|| next(w)).collect()
}

fn readable(w: &Watcher) -> bool {
    let fd = w.ready_fd();
    crate::sys::wait_readable_or_woken(fd, fd, Some(Instant::now())).unwrap() != crate::sys::PollResult::TimedOut
}

fn ids(v: &Value, field: &str) -> Vec<i64> {
    v.get(field)
        .and_then(Value::as_array)
        .map(|a| a.iter().map(|n| n.get("ID").unwrap_or(n).as_i64().unwrap()).collect())
        .unwrap_or_default()
}

#[test]
fn watch_bits_are_tailscales_values() {
    let bits = [
        WATCH_ENGINE_UPDATES,
        WATCH_INITIAL_STATE,
        WATCH_INITIAL_PREFS,
        WATCH_INITIAL_NET_MAP,
        WATCH_NO_PRIVATE_KEYS,
        WATCH_INITIAL_DRIVE_SHARES,
        WATCH_INITIAL_OUTGOING_FILES,
        WATCH_INITIAL_HEALTH_STATE,
        WATCH_RATE_LIMIT,
        WATCH_HEALTH_ACTIONS,
        WATCH_INITIAL_SUGGESTED_EXIT_NODE,
        WATCH_INITIAL_CLIENT_VERSION,
        WATCH_PEER_CHANGES,
        WATCH_NO_NET_MAP,
        WATCH_INITIAL_STATUS,
        WATCH_PEER_PATCHES,
        WATCH_IN_PROCESS_NO_DISCONNECT,
        WATCH_SYS_POLICY_CHANGES,
        WATCH_PEER_WIRE_GUARD_STATE,
    ];
    for (i, bit) in bits.iter().enumerate() {
        assert_eq!(*bit, 1u64 << i);
    }
}

#[test]
fn masks_are_refused_only_where_tailscaled_refuses_them() {
    let b = bus();
    for mask in [WATCH_INITIAL_NET_MAP | WATCH_PEER_CHANGES, WATCH_INITIAL_NET_MAP | WATCH_PEER_PATCHES, 1 << 40, WATCH_RATE_LIMIT | WATCH_INITIAL_NET_MAP] {
        assert!(b.watch(mask).is_ok(), "{mask:#x}");
    }
    for mask in [WATCH_RATE_LIMIT | WATCH_PEER_CHANGES, WATCH_RATE_LIMIT | WATCH_INITIAL_STATUS, WATCH_RATE_LIMIT | WATCH_NO_NET_MAP] {
        let e = b.watch(mask).err().unwrap();
        assert_eq!(e.kind, ErrorKind::InvalidArgument, "{mask:#x}");
        assert!(e.message.starts_with("NotifyRateLimit is incompatible with new-style IPN bus subscription bits"), "{e}");
    }
    // PeerPatches alone gets peer changes too.
    let w = b.watch(WATCH_PEER_PATCHES).unwrap();
    apply(&b, json!({"PeersChanged": [{"ID": 1}]}));
    assert_eq!(ids(&next(&w).unwrap(), "PeersChanged"), vec![1]);
}

#[test]
fn first_message_carries_requested_initial_state() {
    let b = bus();
    publish(
        &b,
        json!({"State": 6, "Prefs": {"WantRunning": true}, "Health": {"Warnings": {}}, "BrowseToURL": "https://login", "ErrMessage": "x"}),
    );
    let w = b.watch(WATCH_INITIAL_STATE | WATCH_INITIAL_PREFS | WATCH_INITIAL_HEALTH_STATE).unwrap();
    assert!(readable(&w));
    let first = next(&w).unwrap();
    assert_eq!(first["State"], 6);
    assert_eq!(first["Prefs"], json!({"WantRunning": true}));
    assert_eq!(first["Health"], json!({"Warnings": {}}));
    assert!(first.get("BrowseToURL").is_none(), "the URL only while the state is NeedsLogin");
    let sid = first["SessionID"].as_str().unwrap();
    assert!(sid.len() == 16 && sid.bytes().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()), "{sid}");
    assert!(first.get("ErrMessage").is_none(), "ErrMessage is an event, not state");
    assert!(first["Version"].is_string());
    let sid = sid.to_string();
    assert!(next(&w).is_none());
    assert!(!readable(&w));
    let other = next(&b.watch(WATCH_INITIAL_STATE).unwrap()).unwrap();
    assert_ne!(other["SessionID"].as_str().unwrap(), sid);
    assert!(other.get("Prefs").is_none());
    // Only the bits asked for; no SessionID without InitialState.
    let prefs_only = next(&b.watch(WATCH_INITIAL_PREFS).unwrap()).unwrap();
    assert!(prefs_only.get("SessionID").is_none() && prefs_only.get("State").is_none());
    // No initial bits, no first message; Health alone is no initial bit.
    assert!(next(&b.watch(WATCH_PEER_CHANGES).unwrap()).is_none());
    assert!(next(&b.watch(WATCH_INITIAL_HEALTH_STATE | WATCH_INITIAL_OUTGOING_FILES).unwrap()).is_none());
    // NeedsLogin: the URL comes along; LoginFinished spends it.
    publish(&b, json!({"State": 2}));
    assert_eq!(next(&b.watch(WATCH_INITIAL_STATE).unwrap()).unwrap()["BrowseToURL"], "https://login");
    publish(&b, json!({"LoginFinished": {}}));
    assert!(next(&b.watch(WATCH_INITIAL_STATE).unwrap()).unwrap().get("BrowseToURL").is_none());
    // No State published: 0 (NoState).
    assert_eq!(next(&bus().watch(WATCH_INITIAL_STATE).unwrap()).unwrap()["State"], 0);
}

#[test]
fn events_reach_every_watcher_policy_and_peer_state_only_theirs() {
    let b = bus();
    let plain = b.watch(0).unwrap();
    let engine = b.watch(WATCH_ENGINE_UPDATES).unwrap();
    let policy = b.watch(WATCH_SYS_POLICY_CHANGES | WATCH_PEER_WIRE_GUARD_STATE).unwrap();
    assert!(next(&policy).is_some(), "an initial message, even with nothing published");
    publish(&b, json!({"Engine": {"RBytes": 1}}));
    publish(&b, json!({"State": 2, "BrowseToURL": "u"}));
    publish(&b, json!({"Policy": {"Settings": {}}}));
    publish(&b, json!({"PeerState": {"n1": {"PeerWireGuardState": "established"}}}));
    for w in [&plain, &engine] {
        let got = drain(w);
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[0]["Engine"], json!({"RBytes": 1}));
        assert_eq!((&got[1]["State"], &got[1]["BrowseToURL"]), (&json!(2), &json!("u")));
    }
    assert_eq!(drain(&policy).len(), 4);
    // The initial message of such a watcher: the policy and the states.
    publish(&b, json!({"PeerState": {"n2": {"PeerWireGuardState": "handshake"}, "n1": {"PeerWireGuardState": "none"}}}));
    let first = next(&b.watch(WATCH_SYS_POLICY_CHANGES | WATCH_PEER_WIRE_GUARD_STATE).unwrap()).unwrap();
    assert_eq!(first["Policy"], json!({"Settings": {}}));
    assert_eq!(first["PeerState"], json!({"n2": {"PeerWireGuardState": "handshake"}}), "\"none\" removes a peer");
    let e = b.publish(br#"{"PeersChanged":[]}"#).unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidArgument);
    assert_eq!(b.publish(b"nope").unwrap_err().kind, ErrorKind::Parse);
    assert!(String::from_utf8(b.stats().unwrap()).unwrap().contains("\"BackendState\":\"NeedsLogin\""));
}

#[test]
fn malformed_update_changes_nothing() {
    let b = bus();
    apply(&b, json!({"Peers": [{"ID": 1, "Online": false}], "Node": {"ID": 100}}));
    let w = b.watch(WATCH_PEER_PATCHES).unwrap();
    let before = b.netmap().unwrap();
    for bad in [
        json!({"PeersChanged": [{"ID": 2}], "PeersChangedPatch": [{"NodeID": 1, "Online": "yes"}]}),
        json!({"Peers": [], "OnlineChange": {"x": true}}),
        json!({"Node": {"ID": 5}, "UserProfiles": [{"ID": "u"}]}),
        json!({"PeersRemoved": [1], "Peers": {"ID": 3}}),
    ] {
        let e = b.apply(bad.to_string().as_bytes()).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Parse, "{bad}");
        assert!(!e.message.is_empty());
    }
    assert_eq!(b.apply(b"{\"Peers\":[").unwrap_err().kind, ErrorKind::Parse);
    assert_eq!(b.netmap().unwrap(), before);
    assert!(next(&w).is_none());
}

#[test]
fn peer_deltas_by_watcher_class() {
    let b = bus();
    apply(&b, json!({"Peers": [{"ID": 1, "Online": false, "Name": "a"}, {"ID": 2}]}));
    let none = b.watch(0).unwrap();
    let full = b.watch(WATCH_PEER_CHANGES).unwrap();
    let patches = b.watch(WATCH_PEER_PATCHES).unwrap();

    apply(
        &b,
        json!({"PeersChangedPatch": [{"NodeID": 1, "Online": true, "DERPRegion": 4}], "PeersRemoved": [2], "PeersChanged": [{"ID": 3}]}),
    );
    assert!(next(&none).is_none(), "no peer bits, no peer traffic");
    let f = drain(&full);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0]["PeersChanged"], json!([{"ID": 1, "Online": true, "Name": "a", "HomeDERP": 4}, {"ID": 3}]));
    assert_eq!(f[0]["PeersRemoved"], json!([2]));
    assert!(f[0].get("PeerChangedPatch").is_none());
    let p = drain(&patches);
    assert_eq!(p.len(), 1);
    assert_eq!(p[0]["PeerChangedPatch"], json!([{"NodeID": 1, "Online": true, "DERPRegion": 4}]));
    assert_eq!(ids(&p[0], "PeersChanged"), vec![3]);
    assert_eq!(p[0]["PeersRemoved"], json!([2]));

    // OnlineChange / PeerSeenChange travel as patches; clearing LastSeen as a node.
    apply(&b, json!({"OnlineChange": {"1": false}, "PeerSeenChange": {"3": true}}));
    let p = next(&patches).unwrap();
    let patch_ids: Vec<i64> = p["PeerChangedPatch"].as_array().unwrap().iter().map(|x| x["NodeID"].as_i64().unwrap()).collect();
    assert_eq!(patch_ids, vec![1, 3]);
    assert!(p["PeerChangedPatch"][1]["LastSeen"].as_str().unwrap().ends_with('Z'));
    apply(&b, json!({"PeerSeenChange": {"3": false}}));
    let p = next(&patches).unwrap();
    assert_eq!(p["PeersChanged"], json!([{"ID": 3}]));
    assert_eq!(drain(&full).len(), 2);

    // Unchanged nodes (full replace with the same set) produce nothing.
    let nm: Value = serde_json::from_slice(&b.netmap().unwrap()).unwrap();
    apply(&b, json!({"Peers": nm["Peers"]}));
    assert!(next(&full).is_none() && next(&patches).is_none());
}

#[test]
fn self_change_reaches_every_watcher() {
    let b = bus();
    let w = b.watch(0).unwrap();
    apply(&b, json!({"Node": {"ID": 9, "Name": "me"}}));
    assert_eq!(next(&w).unwrap()["SelfChange"], json!({"ID": 9, "Name": "me"}));
    // Every response tailscaled handles as a full netmap repeats the self
    // node, changed or not (a DNS config, a Domain, Peers, even Peers:[]).
    for full in [json!({"Node": {"ID": 9, "Name": "me"}}), json!({"DNSConfig": {}}), json!({"Peers": []}), json!({"Domain": "d"})] {
        apply(&b, full.clone());
        assert_eq!(next(&w).unwrap()["SelfChange"], json!({"ID": 9, "Name": "me"}), "{full}");
    }
    // Deltas do not.
    apply(&b, json!({"PeersChanged": [{"ID": 2}], "OnlineChange": {"2": true}}));
    assert!(next(&w).is_none());
}

#[test]
fn one_encoding_per_class_shared_by_its_watchers() {
    let b = bus();
    let a1 = b.watch(WATCH_PEER_CHANGES).unwrap();
    let a2 = b.watch(WATCH_PEER_CHANGES | WATCH_INITIAL_PREFS).unwrap(); // initial bits do not split classes
    let p = b.watch(WATCH_PEER_PATCHES).unwrap();
    next(&a2);
    apply(&b, json!({"PeersChanged": [{"ID": 1}]}));
    let (m1, m2, m3) = (a1.next(Wait::Never).unwrap(), a2.next(Wait::Never).unwrap(), p.next(Wait::Never).unwrap());
    assert!(Arc::ptr_eq(&m1, &m2), "same class shares the bytes");
    assert!(!Arc::ptr_eq(&m1, &m3));
    assert_eq!(m1, m3, "a pure add reads the same in both modes");
}

#[test]
fn user_profiles_arrive_no_later_than_their_nodes_once_per_session() {
    let b = bus();
    let w = b.watch(WATCH_PEER_CHANGES).unwrap();
    apply(&b, json!({"UserProfiles": [{"ID": 7, "LoginName": "a"}, {"ID": 9, "LoginName": "s"}], "PeersChanged": [{"ID": 1, "User": 7, "Sharer": 9}]}));
    let got = drain(&w);
    let first_profiles = got.iter().position(|m| m.get("UserProfiles").is_some()).unwrap();
    let first_node = got.iter().position(|m| m.get("PeersChanged").is_some()).unwrap();
    assert!(first_profiles <= first_node);
    assert_eq!(got[first_profiles]["UserProfiles"]["7"]["LoginName"], "a");
    assert_eq!(got[first_profiles]["UserProfiles"]["9"]["LoginName"], "s", "the sharer's profile too");
    // Another node of the same user: no profile again.
    apply(&b, json!({"PeersChanged": [{"ID": 2, "User": 7}]}));
    let got = drain(&w);
    assert!(got.iter().all(|m| m.get("UserProfiles").is_none()));
    // The profile changes: the watcher that has it hears about it.
    apply(&b, json!({"UserProfiles": [{"ID": 7, "LoginName": "b"}]}));
    let got = drain(&w);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["UserProfiles"]["7"]["LoginName"], "b");
    // A profile nobody references yet is not pushed; watchers without peer bits never get profiles.
    let none = b.watch(0).unwrap();
    apply(&b, json!({"UserProfiles": [{"ID": 8}]}));
    assert!(next(&w).is_none() && next(&none).is_none());
    // A new session's initial status holds every profile.
    let fresh = b.watch(WATCH_PEER_CHANGES | WATCH_INITIAL_STATUS).unwrap();
    let first = next(&fresh).unwrap();
    assert_eq!(first["InitialStatus"]["User"]["7"]["LoginName"], "b");
    // A self node of another identity starts the profile bookkeeping
    // afresh: the next node of user 7 brings its profile again.
    apply(&b, json!({"Node": {"ID": 50, "User": 3}}));
    drain(&w);
    apply(&b, json!({"PeersChanged": [{"ID": 3, "User": 7}]}));
    let got = drain(&w);
    assert!(got.iter().any(|m| m["UserProfiles"]["7"]["LoginName"] == "b"), "{got:?}");
}

#[test]
fn the_initial_view_is_one_message_with_every_peer() {
    let b = Bus::new(BusOptions { initial_chunk: 10, ..Default::default() }).unwrap();
    let peers: Vec<Value> = (1..=25).map(|id| json!({"ID": id, "Key": format!("nodekey:{id:064x}")})).collect();
    apply(&b, json!({"Peers": peers, "Node": {"ID": 100}, "DNSConfig": {"Domains": ["x"]}}));
    let w = b.watch(WATCH_INITIAL_NET_MAP | WATCH_INITIAL_STATE | WATCH_PEER_CHANGES).unwrap();
    let msgs = drain(&w);
    assert_eq!(msgs.len(), 1);
    assert_eq!(ids(&msgs[0]["NetMap"], "Peers"), (1..=25).collect::<Vec<_>>());
    assert_eq!(msgs[0]["NetMap"]["SelfNode"]["ID"], 100);
    assert_eq!(msgs[0]["SelfChange"]["ID"], 100, "the self node rides along with the initial NetMap");
    assert_eq!(msgs[0]["NetMap"]["DNS"], json!({"Domains": ["x"]}));
    assert!(msgs[0].get("InitialComplete").is_none(), "no meshring extension unless asked for");
    let w = b.watch(WATCH_INITIAL_STATUS).unwrap();
    let msgs = drain(&w);
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0]["InitialStatus"]["Peer"].as_object().unwrap().len(), 25);
    assert!(msgs[0].get("SelfChange").is_none(), "not with InitialStatus");
}

#[test]
fn a_chunked_initial_view_ends_with_a_completion_marker() {
    let b = Bus::new(BusOptions { initial_chunk: 10, ..Default::default() }).unwrap();
    let peers: Vec<Value> = (1..=25).map(|id| json!({"ID": id})).collect();
    apply(&b, json!({"Peers": peers, "Node": {"ID": 100}, "DNSConfig": {"Domains": ["x"]}}));
    let legacy = b.watch(WATCH_INITIAL_NET_MAP | WATCH_INITIAL_STATE | WATCH_CHUNKED_INITIAL).unwrap();
    let msgs = drain(&legacy);
    assert_eq!(msgs.len(), 3);
    assert_eq!(msgs[0]["NetMap"]["Peers"].as_array().unwrap().len(), 10);
    assert_eq!(msgs[0]["NetMap"]["SelfNode"]["ID"], 100);
    assert!(msgs[0].get("SessionID").is_some() && msgs[0].get("InitialComplete").is_none());
    assert_eq!(ids(&msgs[1], "PeersChanged").len(), 10);
    assert_eq!(ids(&msgs[2], "PeersChanged").len(), 5);
    assert_eq!(msgs[2]["InitialComplete"], true);
    let mut all: Vec<i64> = ids(&msgs[0]["NetMap"], "Peers");
    all.extend(ids(&msgs[1], "PeersChanged"));
    all.extend(ids(&msgs[2], "PeersChanged"));
    all.sort();
    assert_eq!(all, (1..=25).collect::<Vec<_>>());

    let status = b.watch(WATCH_INITIAL_STATUS | WATCH_PEER_CHANGES | WATCH_CHUNKED_INITIAL).unwrap();
    let msgs = drain(&status);
    assert_eq!(msgs.len(), 3);
    assert!(msgs[0]["InitialStatus"]["Peer"].is_null(), "the peers come as PeersChanged chunks");
    assert_eq!(ids(&msgs[0], "PeersChanged").len(), 10);
    assert_eq!(msgs[2]["InitialComplete"], true);

    // Small netmap: one message, complete at once.
    let small = Bus::new(BusOptions::default()).unwrap();
    let w = small.watch(WATCH_INITIAL_NET_MAP | WATCH_CHUNKED_INITIAL).unwrap();
    let msgs = drain(&w);
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0]["InitialComplete"], true);
}

#[test]
fn changes_during_a_chunked_initial_view_are_not_lost() {
    let b = Bus::new(BusOptions { initial_chunk: 2, ..Default::default() }).unwrap();
    apply(&b, json!({"Peers": [{"ID": 1}, {"ID": 2}, {"ID": 3}, {"ID": 4}, {"ID": 5}]}));
    let w = b.watch(WATCH_INITIAL_STATUS | WATCH_PEER_CHANGES | WATCH_CHUNKED_INITIAL).unwrap();
    let first = next(&w).unwrap();
    assert!(first.get("InitialComplete").is_none());
    apply(&b, json!({"PeersRemoved": [1, 5], "PeersChanged": [{"ID": 6}]}));
    let mut view = BTreeMap::new();
    let rest = drain(&w);
    assert_eq!(rest.iter().filter(|m| m.get("InitialComplete").is_some()).count(), 1);
    for m in std::iter::once(first).chain(rest) {
        for n in m.get("PeersChanged").and_then(Value::as_array).into_iter().flatten() {
            view.insert(n["ID"].as_i64().unwrap(), n.clone());
        }
        for id in m.get("PeersRemoved").and_then(Value::as_array).into_iter().flatten() {
            view.remove(&id.as_i64().unwrap());
        }
    }
    assert_eq!(view.keys().copied().collect::<Vec<_>>(), vec![2, 3, 4, 6]);
}

#[test]
fn no_runtime_netmap_on_linux() {
    let b = bus();
    let legacy = b.watch(WATCH_INITIAL_NET_MAP).unwrap();
    drain(&legacy);
    apply(&b, json!({"PeersChanged": [{"ID": 1}]}));
    apply(&b, json!({"DERPMap": {"Regions": {"1": {}}}}));
    assert!(drain(&legacy).is_empty(), "no runtime NetMap, no peer deltas without peer bits");
}

#[test]
fn health_actions_are_folded_into_the_text_unless_asked_for() {
    let b = bus();
    let folded = b.watch(0).unwrap();
    let raw = b.watch(WATCH_HEALTH_ACTIONS).unwrap();
    let health = json!({"Warnings": {"w": {"Text": "Update", "PrimaryAction": {"Label": "Get it", "URL": "https://u"}}, "v": {"Text": "x"}}});
    publish(&b, json!({"Health": health.clone()}));
    assert_eq!(next(&folded).unwrap()["Health"], json!({"Warnings": {"w": {"Text": "Update Get it: https://u"}, "v": {"Text": "x"}}}));
    assert_eq!(next(&raw).unwrap()["Health"], health);
    // The first message too.
    let first = next(&b.watch(WATCH_INITIAL_STATE | WATCH_INITIAL_HEALTH_STATE).unwrap()).unwrap();
    assert_eq!(first["Health"]["Warnings"]["w"]["Text"], "Update Get it: https://u");
}

#[test]
fn rate_limit_holds_back_engine_only_messages() {
    let b = Bus::new(BusOptions { rate_limit: Duration::from_millis(300), ..Default::default() }).unwrap();
    let w = b.watch(WATCH_RATE_LIMIT | WATCH_ENGINE_UPDATES).unwrap();
    publish(&b, json!({"Engine": {"RBytes": 0}}));
    assert_eq!(next(&w).unwrap()["Engine"], json!({"RBytes": 0}), "the first goes at once");
    let start = Instant::now();
    for v in 1..=5 {
        publish(&b, json!({"Engine": {"RBytes": v}}));
    }
    assert!(next(&w).is_none(), "Engine waits for the interval");
    assert!(!readable(&w));
    // The ticker makes the fd readable when the window ends; the latest wins.
    let fd = w.ready_fd();
    let woke = crate::sys::wait_readable_or_woken(fd, fd, Some(Instant::now() + Duration::from_secs(2))).unwrap();
    assert_ne!(woke, crate::sys::PollResult::TimedOut);
    let m: Value = serde_json::from_slice(&w.next(Wait::from_ms(2000)).unwrap()).unwrap();
    assert!(start.elapsed() >= Duration::from_millis(250));
    assert_eq!(m["Engine"], json!({"RBytes": 5}));
    assert!(next(&w).is_none());
    // Anything notable goes at once, the held Engine first.
    publish(&b, json!({"Engine": {"RBytes": 6}}));
    publish(&b, json!({"State": 6}));
    let got = drain(&w);
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!((&got[0]["Engine"], &got[1]["State"]), (&json!({"RBytes": 6}), &json!(6)));
}

/// The Go binding's repro: once `next` has found the held message not yet
/// due, the readiness fd must turn readable when it becomes due (~the rate
/// limit), not when the ticker's 1 s sleep happens to end.
#[test]
fn rate_limited_fd_turns_readable_when_due_not_a_second_later() {
    let b = Bus::new(BusOptions { rate_limit: Duration::from_millis(100), ..Default::default() }).unwrap();
    let w = b.watch(WATCH_RATE_LIMIT | WATCH_ENGINE_UPDATES).unwrap();
    // Let the ticker start and go to sleep (its sleep is up to 1 s).
    std::thread::sleep(Duration::from_millis(20));
    publish(&b, json!({"Engine": {"V": 0}}));
    assert!(next(&w).is_some());
    let sent = Instant::now();
    publish(&b, json!({"Engine": {"V": 1}}));
    std::thread::sleep(Duration::from_millis(10));
    assert!(next(&w).is_none(), "within the rate-limit window");
    let fd = w.ready_fd();
    let woke = crate::sys::wait_readable_or_woken(fd, fd, Some(Instant::now() + Duration::from_secs(2))).unwrap();
    let waited = sent.elapsed();
    assert_ne!(woke, crate::sys::PollResult::TimedOut);
    assert!(waited >= Duration::from_millis(80), "not before the window ends: {waited:?}");
    assert!(waited < Duration::from_millis(500), "fd readable {waited:?} after the send, want ~100 ms");
    assert_eq!(next(&w).unwrap()["Engine"], json!({"V": 1}));
}

/// `InitialStatus` is Tailscale's `ipnstate.Status`: only its field names
/// at the top level, `Self` a PeerStatus (string StableNodeID, netip.Addr
/// text), `Health` a list of strings, `User` keyed by UserID; the bus's
/// counters are not in it (they stay in `Bus::status`).
#[test]
fn initial_status_is_ipnstate_status_shaped() {
    const STATUS_FIELDS: [&str; 16] = [
        "Version", "TUN", "BackendState", "HaveNodeKey", "AuthURL", "TailscaleIPs", "Self", "ExitNodeStatus", "Health",
        "MagicDNSSuffix", "CurrentTailnet", "CertDomains", "ExtraRecords", "Peer", "User", "ClientVersion",
    ];
    let b = bus();
    apply(
        &b,
        json!({
            "Node": {"ID": 1, "StableID": "nSelf", "Name": "self.example.ts.net.", "User": 7,
                     "Addresses": ["100.64.0.1/32", "fd7a:115c:a1e0::1/128"], "Hostinfo": {"Hostname": "laptop", "OS": "linux"}},
            "Peers": [{"ID": 2, "StableID": "n2", "Name": "two.example.ts.net.", "User": 8, "Key": format!("nodekey:{}", "ab".repeat(32)),
                       "Addresses": ["100.64.0.2/32", "10.9.0.1/32"], "AllowedIPs": ["100.64.0.2/32", "0.0.0.0/0", "::/0"], "Online": true,
                       "Hostinfo": {"Hostname": "two", "OS": "windows"}}],
            "UserProfiles": [{"ID": 7, "LoginName": "alice@example.com"}, {"ID": 8, "LoginName": "bob@example.com"}],
            "DNSConfig": {"Proxied": true},
            "Domain": "example.ts.net"
        }),
    );
    publish(&b, json!({"State": 6, "Health": {"Warnings": {"b-code": {"Title": "B"}, "a-code": {"Text": "A is broken"}}}}));
    let w = b.watch(WATCH_INITIAL_STATUS).unwrap();
    let first = next(&w).unwrap();
    let st = &first["InitialStatus"];
    for key in st.as_object().unwrap().keys() {
        assert!(STATUS_FIELDS.contains(&key.as_str()), "{key} is no ipnstate.Status field: {st}");
    }
    assert_eq!(st["BackendState"], "Running");
    assert_eq!(st["Self"]["ID"], "nSelf");
    assert_eq!(st["Self"]["HostName"], "laptop");
    assert_eq!(st["Self"]["DNSName"], "self.example.ts.net.");
    assert_eq!(st["Self"]["OS"], "linux");
    assert_eq!(st["Self"]["UserID"], 7);
    assert_eq!(st["Self"]["Online"], true);
    assert_eq!(st["Self"]["TailscaleIPs"], json!(["100.64.0.1", "fd7a:115c:a1e0::1"]));
    assert_eq!(st["TailscaleIPs"], json!(["100.64.0.1", "fd7a:115c:a1e0::1"]));
    assert_eq!(st["Health"], json!(["A is broken", "B"]));
    assert_eq!(st["MagicDNSSuffix"], "example.ts.net");
    assert_eq!(st["CurrentTailnet"], json!({"Name": "example.ts.net", "MagicDNSSuffix": "example.ts.net", "MagicDNSEnabled": true}));
    assert_eq!(st["User"]["7"]["LoginName"], "alice@example.com");
    assert_eq!(st["User"]["8"]["LoginName"], "bob@example.com");
    assert_eq!(st["Self"]["NodeID"], 1);
    let peer = &st["Peer"][format!("nodekey:{}", "ab".repeat(32))];
    assert_eq!((&peer["ID"], &peer["NodeID"], &peer["HostName"], &peer["OS"]), (&json!("n2"), &json!(2), &json!("two"), &json!("windows")));
    assert_eq!(peer["TailscaleIPs"], json!(["100.64.0.2"]), "peers: Tailscale addresses only");
    assert_eq!((&peer["ExitNodeOption"], &peer["Online"], &peer["InNetworkMap"]), (&json!(true), &json!(true), &json!(true)));
    assert_eq!(peer["LastHandshake"], "0001-01-01T00:00:00Z");
    // The same through status(), and without peers.
    let full: Value = serde_json::from_slice(&b.status(true).unwrap()).unwrap();
    assert_eq!(&full, st);
    let lean: Value = serde_json::from_slice(&b.status(false).unwrap()).unwrap();
    assert!(lean["Peer"].is_null());
    assert_eq!(lean["User"].as_object().unwrap().keys().collect::<Vec<_>>(), vec!["7"], "only the self user");

    // No StableID: ""; no Hostinfo: no HostName. Nothing published:
    // NoState and an empty Health list.
    let b = bus();
    apply(&b, json!({"Node": {"ID": 42, "Name": "box.tail.net."}}));
    let w = b.watch(WATCH_INITIAL_STATUS).unwrap();
    let st = next(&w).unwrap()["InitialStatus"].clone();
    assert_eq!((st["Self"]["ID"].clone(), st["Self"]["HostName"].clone()), (json!(""), json!("")));
    assert_eq!((st["BackendState"].clone(), st["Health"].clone()), (json!("NoState"), json!([])));
    assert_eq!(st["Self"]["Online"], false);
    assert_eq!(st["MagicDNSSuffix"], "tail.net");
    // An empty bus: a Self with the host's name, no tailnet, the right shapes.
    let b = bus();
    let w = b.watch(WATCH_INITIAL_STATUS).unwrap();
    let st = next(&w).unwrap()["InitialStatus"].clone();
    assert!(st["Self"]["InNetworkMap"] == json!(false) && st["Health"] == json!([]) && st["User"] == json!({}));
    assert!(st["CurrentTailnet"].is_null() && st["Peer"].is_null());
}

#[test]
fn slow_watcher_never_blocks_and_stays_bounded() {
    let b = Bus::new(BusOptions { backlog: 64, initial_chunk: 1000, ..Default::default() }).unwrap();
    let slow = b.watch(WATCH_PEER_PATCHES).unwrap();
    let fast = b.watch(WATCH_PEER_CHANGES).unwrap();
    for round in 0..2000i64 {
        let id = round % 20;
        apply(&b, json!({"PeersChanged": [{"ID": id, "R": round}], "OnlineChange": {(((id + 1) % 20).to_string()): round % 2 == 0}}));
        if round % 7 == 0 {
            apply(&b, json!({"PeersRemoved": [(id + 3) % 20]}));
        }
        drain(&fast);
    }
    {
        let core = b.shared.lock();
        assert!(core.log.len() <= 64, "log bounded: {}", core.log.len());
        let slot = core.slots.values().find(|s| s.mask.0 & WATCH_PEER_PATCHES != 0).unwrap();
        assert!(slot.pending.peers.len() <= 20, "pending bounded by peers");
    }
    let mut view: BTreeMap<i64, Value> = BTreeMap::new();
    for m in drain(&slow) {
        for n in m.get("PeersChanged").and_then(Value::as_array).into_iter().flatten() {
            view.insert(n["ID"].as_i64().unwrap(), n.clone());
        }
        for p in m.get("PeerChangedPatch").and_then(Value::as_array).into_iter().flatten() {
            let node = view.get_mut(&p["NodeID"].as_i64().unwrap()).expect("patch for a known peer").as_object_mut().unwrap();
            for (k, v) in p.as_object().unwrap() {
                if k != "NodeID" {
                    node.insert(k.clone(), v.clone());
                }
            }
        }
        for id in m.get("PeersRemoved").and_then(Value::as_array).into_iter().flatten() {
            view.remove(&id.as_i64().unwrap());
        }
    }
    let nm: Value = without_names(serde_json::from_slice(&b.netmap().unwrap()).unwrap());
    let store: BTreeMap<i64, Value> = nm["Peers"].as_array().unwrap().iter().map(|n| (n["ID"].as_i64().unwrap(), n.clone())).collect();
    assert_eq!(view, store);
}

#[test]
fn next_waits_times_out_and_wakes() {
    let b = Arc::new(bus());
    let w = b.watch(0).unwrap();
    assert_eq!(w.next(Wait::Never).unwrap_err().kind, ErrorKind::WouldBlock);
    let t = Instant::now();
    assert_eq!(w.next(Wait::from_ms(30)).unwrap_err().kind, ErrorKind::Timeout);
    assert!(t.elapsed() >= Duration::from_millis(30));
    let b2 = b.clone();
    let pusher = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        b2.publish(br#"{"State":4}"#).unwrap();
    });
    let m = w.next(Wait::Forever).unwrap();
    assert!(std::str::from_utf8(&m).unwrap().contains("\"State\":4"));
    pusher.join().unwrap();
}

#[test]
fn readiness_fd_follows_pending_messages() {
    let b = bus();
    let w = b.watch(WATCH_PEER_CHANGES).unwrap();
    assert!(!readable(&w));
    apply(&b, json!({"PeersChanged": [{"ID": 1}]}));
    assert!(readable(&w));
    next(&w).unwrap();
    assert!(!readable(&w), "cleared when drained");
    // Changes the watcher does not get leave it quiet.
    publish(&b, json!({"Policy": {}}));
    assert!(!readable(&w));
}

#[test]
fn close_is_idempotent_and_wakes_blocked_readers() {
    let b = Arc::new(bus());
    let w = Arc::new(b.watch(0).unwrap());
    let w2 = w.clone();
    let reader = std::thread::spawn(move || w2.next(Wait::Forever).unwrap_err().kind);
    std::thread::sleep(Duration::from_millis(20));
    w.close();
    w.close();
    assert_eq!(reader.join().unwrap(), ErrorKind::Closed);
    assert!(readable(&w));
    assert_eq!(w.next(Wait::Never).unwrap_err().kind, ErrorKind::Closed);

    let other = Arc::new(b.watch(WATCH_PEER_CHANGES).unwrap());
    let o2 = other.clone();
    let reader = std::thread::spawn(move || o2.next(Wait::Forever).unwrap_err().kind);
    std::thread::sleep(Duration::from_millis(20));
    b.close();
    b.close();
    assert_eq!(reader.join().unwrap(), ErrorKind::Closed);
    assert_eq!(b.apply(b"{}").unwrap_err().kind, ErrorKind::Closed);
    assert_eq!(b.publish(br#"{"State":1}"#).unwrap_err().kind, ErrorKind::Closed);
    assert_eq!(b.watch(0).err().unwrap().kind, ErrorKind::Closed);
}

#[test]
fn one_shot_reads() {
    let b = bus();
    apply(
        &b,
        json!({"Node": {"ID": 100, "User": 7}, "Peers": [{"ID": 2, "X": [1]}, {"ID": 1}], "UserProfiles": [{"ID": 7, "LoginName": "a"}],
               "DNSConfig": {"Resolvers": [{"Addr": "1.1.1.1"}]}, "PacketFilter": [{"SrcIPs": ["*"]}], "DERPMap": {"Regions": {}}, "Domain": "t.ts.net"}),
    );
    assert_eq!(without_names(serde_json::from_slice::<Value>(&b.peer(2).unwrap()).unwrap()), json!({"ID": 2, "X": [1]}));
    assert_eq!(b.peer(3).unwrap_err().kind, ErrorKind::NotFound);
    let nm: Value = serde_json::from_slice(&b.netmap().unwrap()).unwrap();
    assert_eq!(ids(&nm, "Peers"), vec![1, 2]);
    assert_eq!(nm["SelfNode"]["ID"], 100);
    assert_eq!(nm["UserProfiles"]["7"]["LoginName"], "a");
    assert_eq!(nm["DNS"]["Resolvers"][0]["Addr"], "1.1.1.1");
    assert_eq!(nm["PacketFilterRules"], json!([{"SrcIPs": ["*"]}]));
    assert_eq!(nm["DERPMap"], json!({"Regions": {}}));
    assert_eq!(nm["Domain"], "t.ts.net");
    let _w = b.watch(0).unwrap();
    let st: Value = serde_json::from_slice(&b.stats().unwrap()).unwrap();
    assert_eq!(st["PeerCount"], 2);
    assert_eq!(st["UserProfileCount"], 1);
    assert_eq!(st["Watchers"], 1);
    assert_eq!(st["Self"]["ID"], 100);
}

#[test]
fn options_from_json() {
    assert_eq!(Bus::options_from_json(None).unwrap(), BusOptions::default());
    let o = Bus::options_from_json(Some(r#"{"rate_limit_ms":500,"initial_chunk":7}"#)).unwrap();
    assert_eq!((o.rate_limit, o.initial_chunk), (Duration::from_millis(500), 7));
    assert_eq!(Bus::options_from_json(Some("{")).unwrap_err().kind, ErrorKind::Parse);
    assert_eq!(Bus::options_from_json(Some(r#"{"x":1}"#)).unwrap_err().kind, ErrorKind::InvalidArgument);
    assert!(Bus::new(BusOptions { initial_chunk: 0, ..Default::default() }).is_err());
}

#[test]
fn reads_on_a_closed_bus_report_closed() {
    // The C ABI contract: after close every later call returns Closed,
    // the one-shot reads included (they used to keep answering).
    let b = bus();
    apply(&b, json!({"Peers": [{"ID": 2}]}));
    assert!(b.peer(2).is_ok() && b.netmap().is_ok() && b.stats().is_ok());
    b.close();
    assert_eq!(b.peer(2).unwrap_err().kind, ErrorKind::Closed);
    assert_eq!(b.peer(3).unwrap_err().kind, ErrorKind::Closed);
    assert_eq!(b.netmap().unwrap_err().kind, ErrorKind::Closed);
    assert_eq!(b.stats().unwrap_err().kind, ErrorKind::Closed);
}

#[test]
fn header_exports_no_unprefixed_watch_macros() {
    // The mask constants are `WATCH_*` in Rust; cbindgen used to copy them
    // into the C header unprefixed (`WATCH_ALL`, ...) next to `MR_NOTIFY_*`.
    let header = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/include/meshring.h"));
    for line in header.lines() {
        if let Some(rest) = line.strip_prefix("#define ") {
            let name = rest.split_whitespace().next().unwrap_or("");
            assert!(!name.starts_with("WATCH_"), "unprefixed bus macro in meshring.h: {name}");
        }
    }
    assert!(header.contains("#define MR_NOTIFY_PEER_PATCHES (1 << 15)"));
}

#[test]
fn a_promoted_patch_brings_its_profile_along() {
    // A PeerChanges watcher (no initial view) first hears of peer 2 through a
    // patch, promoted to the full node: node 2 names User 7, so profile 7
    // must arrive no later than that node (it used to be left out, because
    // only upserts counted as referencing a profile).
    let b = bus();
    apply(&b, json!({"Peers": [{"ID": 2, "User": 7}], "UserProfiles": [{"ID": 7, "LoginName": "a@b"}]}));
    let w = b.watch(WATCH_PEER_CHANGES).unwrap();
    apply(&b, json!({"PeersChangedPatch": [{"NodeID": 2, "Online": true}]}));
    let msgs = drain(&w);
    let node_at = msgs.iter().position(|m| ids(m, "PeersChanged") == vec![2]).expect("promoted node delivered");
    let profile_at = msgs.iter().position(|m| m.pointer("/UserProfiles/7/LoginName") == Some(&json!("a@b")));
    assert!(profile_at.is_some_and(|p| p <= node_at), "profile 7 not delivered before its node: {msgs:?}");
    // Sent once per session: the next patch carries no profile again.
    apply(&b, json!({"PeersChangedPatch": [{"NodeID": 2, "Online": false}]}));
    let msgs = drain(&w);
    assert_eq!(msgs.len(), 1);
    assert!(msgs[0].get("UserProfiles").is_none());
}

#[test]
fn a_ticker_thread_panic_closes_the_bus_with_the_reason() {
    let b = Bus::new(BusOptions { rate_limit: Duration::from_millis(20), ..Default::default() }).unwrap();
    b.shared.panic_next_tick.store(true, std::sync::atomic::Ordering::SeqCst);
    // The first rate-limited watch starts the ticker.
    let w = b.watch(WATCH_RATE_LIMIT | WATCH_ENGINE_UPDATES).unwrap();
    let e = loop {
        match w.next(Wait::from_ms(10_000)) {
            Ok(_) => continue,
            Err(e) => break e,
        }
    };
    assert_eq!(e.kind, ErrorKind::Panic, "{e}");
    assert!(e.message.contains("notify bus ticker thread panicked: ticker test panic"), "{e}");
    assert_eq!(b.apply(br#"{"Peers":[]}"#).unwrap_err().kind, ErrorKind::Panic);
    assert_eq!(b.watch(WATCH_ENGINE_UPDATES).err().map(|e| e.kind), Some(ErrorKind::Panic));
}

#[test]
fn display_names_are_computed_for_every_node() {
    let b = bus();
    let w = b.watch(WATCH_PEER_CHANGES).unwrap();
    apply(&b, json!({"Node": {"ID": 1, "Name": "me.t.ts.net."}, "Peers": [{"ID": 2, "Name": "p.t.ts.net.", "Hostinfo": {"Hostname": "Box"}}]}));
    let p: Value = serde_json::from_slice(&b.peer(2).unwrap()).unwrap();
    assert_eq!((p["ComputedName"].as_str(), p["ComputedNameWithHost"].as_str()), (Some("p"), Some("p (box)")));
    let raw: Value = serde_json::from_slice(&w.next(Wait::Never).unwrap()).unwrap();
    assert_eq!(raw["PeersChanged"][0]["ComputedNameWithHost"], "p (box)");
    assert_eq!(raw["SelfChange"]["ComputedName"], "me");
}
