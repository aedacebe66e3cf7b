//! Seeded random test: random MapResponse sequences while watchers of
//! different classes read at random speeds; every watcher's reconstructed
//! peer map must equal the store's in the end, and every profile a node
//! names must have reached the watcher no later than the node.

use super::*;
use crate::error::ErrorKind;
use crate::sync::Wait;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

/// xorshift64*: tiny, deterministic, good enough to shuffle test inputs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

const IDS: u64 = 40;

fn random_node(rng: &mut Rng) -> Value {
    let mut node = json!({"ID": rng.below(IDS) as i64, "User": rng.below(6) as i64, "V": rng.below(5)});
    if rng.chance(30) {
        node["Online"] = json!(rng.chance(50));
    }
    node
}

fn random_update(rng: &mut Rng) -> Value {
    let mut m = Map::new();
    if rng.chance(8) {
        let peers: Vec<Value> = (0..rng.below(IDS)).map(|_| random_node(rng)).collect();
        m.insert("Peers".into(), json!(peers));
    }
    if rng.chance(50) {
        let n: Vec<Value> = (0..1 + rng.below(3)).map(|_| random_node(rng)).collect();
        m.insert("PeersChanged".into(), json!(n));
    }
    if rng.chance(30) {
        let ids: Vec<u64> = (0..1 + rng.below(2)).map(|_| rng.below(IDS)).collect();
        m.insert("PeersRemoved".into(), json!(ids));
    }
    if rng.chance(50) {
        let patches: Vec<Value> = (0..1 + rng.below(3))
            .map(|_| {
                let mut p = json!({"NodeID": rng.below(IDS)});
                match rng.below(4) {
                    0 => p["Online"] = json!(rng.chance(50)),
                    1 => p["DERPRegion"] = json!(rng.below(4)),
                    2 => p["Endpoints"] = json!([format!("10.0.0.{}:41641", rng.below(3))]),
                    _ => p["KeyExpiry"] = json!(format!("2030-01-0{}T00:00:00Z", 1 + rng.below(3))),
                }
                p
            })
            .collect();
        m.insert("PeersChangedPatch".into(), json!(patches));
    }
    if rng.chance(20) {
        let mut online = Map::new();
        online.insert(rng.below(IDS).to_string(), json!(rng.chance(50)));
        m.insert("OnlineChange".into(), Value::Object(online));
    }
    if rng.chance(15) {
        let mut seen = Map::new();
        seen.insert(rng.below(IDS).to_string(), json!(rng.chance(50)));
        m.insert("PeerSeenChange".into(), Value::Object(seen));
    }
    if rng.chance(15) {
        let uid = rng.below(6);
        m.insert("UserProfiles".into(), json!([{"ID": uid, "LoginName": format!("u{uid}-{}", rng.below(3))}]));
    }
    if rng.chance(5) {
        m.insert("Node".into(), json!({"ID": 1000, "V": rng.below(3)}));
    }
    Value::Object(m)
}

/// What one watcher has reconstructed from its messages.
struct Reader {
    watcher: Watcher,
    /// Messages per read round (0 = this round it sleeps).
    speed: u64,
    peers: BTreeMap<i64, Value>,
    profiles: HashSet<i64>,
    checks_profiles: bool,
    /// Has the whole initial view (at once, or after `InitialComplete`).
    complete: bool,
    chunked: bool,
}

impl Reader {
    fn new(bus: &Bus, mask: u64, speed: u64) -> Reader {
        let checks_profiles = mask & (WATCH_PEER_CHANGES | WATCH_PEER_PATCHES) != 0;
        Reader {
            watcher: bus.watch(mask).unwrap(),
            speed,
            peers: BTreeMap::new(),
            profiles: HashSet::new(),
            checks_profiles,
            complete: false,
            chunked: mask & WATCH_CHUNKED_INITIAL != 0,
        }
    }

    fn take(&mut self, bytes: &[u8]) {
        let m: Value = serde_json::from_slice(bytes).unwrap();
        let add_profiles = |profiles: &mut HashSet<i64>, v: Option<&Value>| {
            for key in v.and_then(Value::as_object).into_iter().flat_map(|o| o.keys()) {
                profiles.insert(key.parse().unwrap());
            }
        };
        add_profiles(&mut self.profiles, m.get("UserProfiles"));
        let mut nodes: Vec<Value> = Vec::new();
        if let Some(nm) = m.get("NetMap") {
            assert!(!self.complete, "a NetMap after the initial message");
            add_profiles(&mut self.profiles, nm.get("UserProfiles"));
            nodes.extend(nm["Peers"].as_array().unwrap().iter().cloned());
            self.complete |= !self.chunked;
        }
        nodes.extend(m.get("PeersChanged").and_then(Value::as_array).into_iter().flatten().cloned());
        for node in nodes {
            if self.checks_profiles {
                if let Some(uid) = node.get("User").and_then(Value::as_i64) {
                    assert!(self.profiles.contains(&uid), "node {node} arrived before profile {uid}");
                }
            }
            self.peers.insert(node["ID"].as_i64().unwrap(), node);
        }
        for p in m.get("PeerChangedPatch").and_then(Value::as_array).into_iter().flatten() {
            let id = p["NodeID"].as_i64().unwrap();
            let node = self.peers.get_mut(&id).unwrap_or_else(|| panic!("patch for unknown peer {id}")).as_object_mut().unwrap();
            for (k, v) in p.as_object().unwrap() {
                match k.as_str() {
                    "NodeID" => {}
                    "DERPRegion" => {
                        node.insert("HomeDERP".into(), v.clone());
                    }
                    _ => {
                        node.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        for id in m.get("PeersRemoved").and_then(Value::as_array).into_iter().flatten() {
            self.peers.remove(&id.as_i64().unwrap());
        }
        if m.get("InitialComplete") == Some(&json!(true)) {
            self.complete = true;
        }
    }

    fn read(&mut self, n: u64) {
        for _ in 0..n {
            match self.watcher.next(Wait::Never) {
                Ok(bytes) => self.take(&bytes),
                Err(e) if e.kind == ErrorKind::WouldBlock => return,
                Err(e) => panic!("{e}"),
            }
        }
    }

    /// Reads until nothing more arrives (rate-limited data included).
    fn finish(&mut self) {
        loop {
            match self.watcher.next(Wait::from_ms(20)) {
                Ok(bytes) => self.take(&bytes),
                Err(e) if e.kind == ErrorKind::Timeout => return,
                Err(e) => panic!("{e}"),
            }
        }
    }
}

fn run(seed: u64, steps: usize) {
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let options = BusOptions { rate_limit: Duration::from_millis(3), initial_chunk: 7, backlog: 40, ..Default::default() };
    let bus = Bus::new(options).unwrap();
    // Every user a node can name has a profile, so the profile rule always applies.
    let profiles: Vec<Value> = (0..6).map(|uid| json!({"ID": uid, "LoginName": format!("u{uid}")})).collect();
    bus.apply(json!({"UserProfiles": profiles}).to_string().as_bytes()).unwrap();
    for _ in 0..5 {
        bus.apply(random_update(&mut rng).to_string().as_bytes()).unwrap();
    }
    let masks = [
        WATCH_PEER_CHANGES | WATCH_INITIAL_NET_MAP,
        WATCH_PEER_PATCHES | WATCH_INITIAL_NET_MAP,
        WATCH_PEER_PATCHES | WATCH_INITIAL_NET_MAP | WATCH_ENGINE_UPDATES | WATCH_HEALTH_ACTIONS,
        WATCH_PEER_CHANGES | WATCH_INITIAL_STATUS | WATCH_CHUNKED_INITIAL,
        WATCH_PEER_PATCHES | WATCH_INITIAL_NET_MAP | WATCH_CHUNKED_INITIAL,
    ];
    let mut readers: Vec<Reader> = masks.iter().map(|&m| Reader::new(&bus, m, rng.below(4))).collect();
    for step in 0..steps {
        bus.apply(random_update(&mut rng).to_string().as_bytes()).unwrap();
        if rng.chance(10) {
            bus.publish(json!({"Engine": {"RBytes": step}}).to_string().as_bytes()).unwrap();
        }
        if step == steps / 2 {
            let mask = masks[rng.below(masks.len() as u64) as usize];
            readers.push(Reader::new(&bus, mask, 1 + rng.below(3)));
        }
        for r in readers.iter_mut() {
            let n = if r.speed == 0 { rng.below(2) * rng.below(20) } else { rng.below(r.speed + 1) };
            r.read(n);
        }
    }
    let netmap: Value = serde_json::from_slice(&bus.netmap().unwrap()).unwrap();
    let store: BTreeMap<i64, Value> = netmap["Peers"].as_array().unwrap().iter().map(|n| (n["ID"].as_i64().unwrap(), n.clone())).collect();
    for (i, r) in readers.iter_mut().enumerate() {
        r.finish();
        assert!(r.complete, "seed {seed} reader {i}: no InitialComplete");
        assert_eq!(r.peers, store, "seed {seed} reader {i} (mask {:#x})", r.watcher.mask());
    }
}

#[test]
fn watchers_converge_to_the_store() {
    for seed in 1..=12 {
        run(seed, 300);
    }
}
