//! Runtime behaviour end to end, through the same `Api` the C boundary uses.

use super::*;
use crate::error::ErrorKind;
use crate::sync::Wait;
use serde_json::Value;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A host kind that records every call and answers as told.
#[derive(Default)]
struct Recorder {
    log: Mutex<Vec<String>>,
    exports: AtomicUsize,
    withdrawals: AtomicUsize,
    /// What `start` answers: None = Up.
    start_answer: Mutex<Option<ProtoState>>,
    reconfigure_answer: AtomicBool,
    /// Called from `export` with the count so far (before increment).
    on_export: Mutex<Option<Box<dyn Fn(&Api, &str, usize) + Send>>>,
    /// Routes `start` imports: (prefix count) as 10.x.y.z/32.
    start_imports: AtomicUsize,
}

impl Recorder {
    fn new() -> Arc<Recorder> {
        Arc::new(Recorder::default())
    }
    fn calls(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
    fn count(&self, prefix: &str) -> usize {
        self.calls().iter().filter(|c| c.starts_with(prefix)).count()
    }
}

fn host_prefix(i: usize) -> String {
    format!("10.{}.{}.{}/32", (i >> 16) & 255, (i >> 8) & 255, i & 255)
}

impl Kind for Recorder {
    fn start(&self, api: &Api, proto: &str, config: &ProtoConfig) -> ProtoState {
        self.log.lock().unwrap().push(format!("start {proto} {}", config.config));
        for i in 0..self.start_imports.load(SeqCst) {
            api.import(proto, &host_prefix(i), None, None).unwrap();
        }
        self.start_answer.lock().unwrap().unwrap_or(ProtoState::Up)
    }
    fn shutdown(&self, _api: &Api, proto: &str) -> ProtoState {
        self.log.lock().unwrap().push(format!("shutdown {proto}"));
        ProtoState::Down
    }
    fn reconfigure(&self, _api: &Api, proto: &str, _old: &ProtoConfig, new: &ProtoConfig) -> bool {
        self.log.lock().unwrap().push(format!("reconfigure {proto} {}", new.config));
        self.reconfigure_answer.load(SeqCst)
    }
    fn export(&self, api: &Api, proto: &str, route: &Export<'_>) {
        let n = self.exports.fetch_add(1, SeqCst);
        if route.withdrawn {
            self.withdrawals.fetch_add(1, SeqCst);
        }
        if let Some(f) = self.on_export.lock().unwrap().as_ref() {
            f(api, proto, n);
        }
    }
}

fn runtime(chunk: usize) -> Runtime {
    Runtime::new(Options { feed_chunk: chunk, event_backlog: 100_000 }).unwrap()
}

fn state(rt: &Runtime, name: &str) -> String {
    rt.show_protocol(name).unwrap()["state"].as_str().unwrap().to_string()
}

fn idle(rt: &Runtime) {
    rt.wait_idle(Wait::from_ms(20_000)).unwrap();
}

fn routes(rt: &Runtime, prefix: Option<&str>, proto: Option<&str>) -> Vec<Value> {
    let v: Value = serde_json::from_slice(&rt.show_route(prefix, proto).unwrap()).unwrap();
    v["routes"].as_array().unwrap().clone()
}

const STATIC_AND_HOST: &str = r#"{"protocols":[
    {"name":"s1","kind":"static","routes":[{"prefix":"10.0.0.0/8"},{"prefix":"10.1.0.0/16"},{"prefix":"fd00::/8","attrs":{"a":1}}]},
    {"name":"h1","kind":"rec","config":{"k":1}}]}"#;

#[test]
fn static_routes_are_fed_to_a_host_protocol_and_flushed_on_disable() {
    let rt = runtime(2);
    let rec = Recorder::new();
    rt.register_kind("rec", rec.clone()).unwrap();
    rt.commit(STATIC_AND_HOST, false).unwrap();
    idle(&rt);
    assert_eq!(state(&rt, "s1"), "up");
    assert_eq!(state(&rt, "h1"), "up");
    assert_eq!(rec.exports.load(SeqCst), 3, "fed the static table");
    assert!(rec.calls().contains(&r#"start h1 {"k":1}"#.to_string()));
    assert!(rt.api().stats().feed_steps >= 2, "chunks of 2");
    // h1 imports a better route; show route lists both candidates, best first.
    rt.import("h1", "10.0.0.0/8", Some(300), Some(r#"{"via":"x"}"#)).unwrap();
    let r = routes(&rt, Some("10.0.0.0/8"), None);
    assert_eq!(r.len(), 3, "two candidates for /8, one /16 inside it: {r:?}");
    assert_eq!((r[0]["proto"].as_str(), r[0]["best"].as_bool(), &r[0]["attrs"]["via"]), (Some("h1"), Some(true), &Value::from("x")));
    assert_eq!(routes(&rt, None, Some("h?")).len(), 1);
    assert_eq!(routes(&rt, Some("fd00::/8"), None).len(), 1);
    assert_eq!(routes(&rt, Some("fd00::/16"), None).len(), 0, "only equal or more specific");
    // Flush on stop: s1's routes go, h1 hears the withdrawals (not of its own /8).
    assert_eq!(rt.disable("s*").unwrap(), 1);
    idle(&rt);
    assert_eq!(state(&rt, "s1"), "down");
    // /8 was withdrawn from h1's view when its own route won; /16 and fd00::/8 by the flush.
    assert_eq!(rec.withdrawals.load(SeqCst), 3);
    assert_eq!(routes(&rt, None, Some("s1")).len(), 0);
    assert_eq!(routes(&rt, None, None).len(), 1);
    // Disabled stays down across commits: the same config, a changed one
    // (soft), and a hard commit that restarts every protocol it keeps.
    rt.commit(STATIC_AND_HOST, false).unwrap();
    idle(&rt);
    assert_eq!(state(&rt, "s1"), "down");
    let changed = STATIC_AND_HOST.replace(r#"{"k":1}"#, r#"{"k":2}"#);
    rt.commit(&changed, false).unwrap();
    idle(&rt);
    assert_eq!(state(&rt, "s1"), "down", "after a changed soft commit");
    rt.commit(&changed, true).unwrap();
    idle(&rt);
    assert_eq!(state(&rt, "s1"), "down", "after a hard commit");
    assert_eq!(rt.enable("s1").unwrap(), 1);
    idle(&rt);
    assert_eq!(state(&rt, "s1"), "up");
    assert_eq!(routes(&rt, None, Some("s1")).len(), 3);
}

#[test]
fn big_feed_runs_in_chunks_and_other_work_interleaves() {
    const N: usize = 20_000;
    let rt = runtime(256);
    let src = Recorder::new();
    src.start_imports.store(N, SeqCst);
    let sink = Recorder::new();
    let tiny = Recorder::new();
    rt.register_kind("src", src.clone()).unwrap();
    rt.register_kind("sink", sink.clone()).unwrap();
    rt.register_kind("tiny", tiny.clone()).unwrap();
    rt.commit(r#"{"protocols":[{"name":"src","kind":"src"},{"name":"tiny","kind":"tiny","disabled":true}]}"#, false).unwrap();
    idle(&rt);
    assert_eq!(routes(&rt, None, Some("src")).len(), N);
    // While the sink is being fed, its first export asks for tiny to be
    // enabled (on the loop thread, so the call only queues the start);
    // tiny's start must run long before the feed ends.
    *sink.on_export.lock().unwrap() = Some(Box::new(|api, _proto, n| {
        if n == 0 {
            api.enable("tiny").unwrap();
        }
    }));
    let seen_at_start = Arc::new(AtomicUsize::new(usize::MAX));
    /// Records how far the sink's feed was when tiny started.
    struct Probe(Arc<Recorder>, Arc<AtomicUsize>, Arc<Recorder>);
    impl Kind for Probe {
        fn start(&self, api: &Api, proto: &str, c: &ProtoConfig) -> ProtoState {
            self.1.store(self.2.exports.load(SeqCst), SeqCst);
            self.0.start(api, proto, c)
        }
        fn shutdown(&self, api: &Api, proto: &str) -> ProtoState {
            self.0.shutdown(api, proto)
        }
        fn reconfigure(&self, api: &Api, proto: &str, o: &ProtoConfig, n: &ProtoConfig) -> bool {
            self.0.reconfigure(api, proto, o, n)
        }
        fn export(&self, api: &Api, proto: &str, r: &Export<'_>) {
            self.0.export(api, proto, r)
        }
    }
    rt.register_kind("probe", Arc::new(Probe(tiny.clone(), seen_at_start.clone(), sink.clone()))).unwrap();
    rt.commit(
        r#"{"protocols":[{"name":"src","kind":"src"},{"name":"tiny","kind":"probe","disabled":true},{"name":"sink","kind":"sink"}]}"#,
        false,
    )
    .unwrap();
    idle(&rt);
    assert_eq!(sink.exports.load(SeqCst), N, "the whole table, once");
    assert_eq!(state(&rt, "sink"), "up");
    assert_eq!(state(&rt, "tiny"), "up");
    let at = seen_at_start.load(SeqCst);
    assert!(at < N, "tiny started after {at} of {N} exports: the feed did not yield");
    assert!(rt.api().stats().feed_steps as usize >= N / 256);
}

#[test]
fn going_down_while_feeding_aborts_the_feed() {
    const N: usize = 5_000;
    let rt = runtime(100);
    let src = Recorder::new();
    src.start_imports.store(N, SeqCst);
    let sink = Recorder::new();
    *sink.on_export.lock().unwrap() = Some(Box::new(|api, _proto, n| {
        if n == 0 {
            api.disable("sink").unwrap();
        }
    }));
    rt.register_kind("src", src.clone()).unwrap();
    rt.register_kind("sink", sink.clone()).unwrap();
    rt.commit(r#"{"protocols":[{"name":"src","kind":"src"}]}"#, false).unwrap();
    idle(&rt);
    rt.commit(r#"{"protocols":[{"name":"src","kind":"src"},{"name":"sink","kind":"sink"}]}"#, false).unwrap();
    idle(&rt);
    assert_eq!(state(&rt, "sink"), "down");
    assert!(sink.exports.load(SeqCst) <= 100, "at most the chunk in flight: {}", sink.exports.load(SeqCst));
    assert_eq!(sink.count("shutdown sink"), 1);
}

#[test]
fn commit_reconfigures_in_place_or_restarts() {
    let rt = runtime(64);
    let rec = Recorder::new();
    rt.register_kind("rec", rec.clone()).unwrap();
    rt.commit(r#"{"protocols":[{"name":"a","kind":"rec","config":1},{"name":"b","kind":"rec","config":1}]}"#, false).unwrap();
    idle(&rt);
    assert_eq!(rec.count("start"), 2);
    // Same config again: nothing is called at all.
    rt.commit(r#"{"protocols":[{"name":"a","kind":"rec","config":1},{"name":"b","kind":"rec","config":1}]}"#, false).unwrap();
    idle(&rt);
    assert_eq!(rec.calls().len(), 2);
    // Own config changes, protocol agrees: reconfigured in place.
    rec.reconfigure_answer.store(true, SeqCst);
    rt.commit(r#"{"protocols":[{"name":"a","kind":"rec","config":2},{"name":"b","kind":"rec","config":1}]}"#, false).unwrap();
    idle(&rt);
    assert_eq!(rec.calls()[2..], ["reconfigure a 2".to_string()]);
    assert_eq!(state(&rt, "a"), "up");
    // Protocol refuses: restarted with the new config.
    rec.reconfigure_answer.store(false, SeqCst);
    rt.commit(r#"{"protocols":[{"name":"a","kind":"rec","config":3},{"name":"b","kind":"rec","config":1}]}"#, false).unwrap();
    idle(&rt);
    assert_eq!(rec.calls()[3..], ["reconfigure a 3", "shutdown a", "start a 3"].map(String::from));
    // Core property (preference) changes: restart without asking.
    rt.commit(r#"{"protocols":[{"name":"a","kind":"rec","config":3,"preference":5},{"name":"b","kind":"rec","config":1}]}"#, false).unwrap();
    idle(&rt);
    assert_eq!(rec.calls()[6..], ["shutdown a", "start a 3"].map(String::from));
    // Hard mode restarts every protocol that stays; removal shuts down.
    rt.commit(r#"{"protocols":[{"name":"a","kind":"rec","config":3,"preference":5}]}"#, true).unwrap();
    idle(&rt);
    let tail = rec.calls()[8..].to_vec();
    assert!(tail.contains(&"shutdown b".to_string()) && tail.contains(&"shutdown a".to_string()) && tail.contains(&"start a 3".to_string()), "{tail:?}");
    assert_eq!(rt.show_protocol("b").unwrap_err().kind, ErrorKind::NotFound);
    assert_eq!(rt.notify_state("b", ProtoState::Down, None).unwrap_err().kind, ErrorKind::NotFound);
    assert_eq!(rt.import("b", "10.0.0.0/8", None, None).unwrap_err().kind, ErrorKind::NotFound);
}

#[test]
fn failed_commit_changes_nothing() {
    let rt = runtime(64);
    rt.register_kind("rec", Recorder::new()).unwrap();
    rt.commit(r#"{"protocols":[{"name":"a","kind":"rec"}]}"#, false).unwrap();
    idle(&rt);
    let before = rt.show_protocols().unwrap();
    for (bad, kind) in [
        ("{", ErrorKind::Parse),
        (r#"{"protocols":[{"name":"b","kind":"nope"}]}"#, ErrorKind::InvalidArgument),
        (r#"{"protocols":[{"name":"b","kind":"rec"},{"name":"b","kind":"rec"}]}"#, ErrorKind::InvalidArgument),
        (r#"{"protocols":[{"name":"s","kind":"static","routes":[{"prefix":"300.0.0.0/8"}]}]}"#, ErrorKind::InvalidArgument),
    ] {
        assert_eq!(rt.commit(bad, false).unwrap_err().kind, kind, "{bad}");
    }
    idle(&rt);
    assert_eq!(rt.show_protocols().unwrap(), before);
}

#[test]
fn host_reports_progress_and_illegal_reports_are_rejected() {
    let rt = runtime(64);
    let rec = Recorder::new();
    *rec.start_answer.lock().unwrap() = Some(ProtoState::Start);
    rt.register_kind("rec", rec.clone()).unwrap();
    rt.commit(r#"{"protocols":[{"name":"a","kind":"rec"}]}"#, false).unwrap();
    idle(&rt);
    assert_eq!(state(&rt, "a"), "start");
    assert_eq!(rt.notify_state("a", ProtoState::Stop, None).map_err(|e| e.kind), Ok(()), "start -> stop is legal (a failure)");
    idle(&rt);
    assert_eq!(state(&rt, "a"), "stop", "flushed, waiting for the protocol to say down");
    rt.notify_state("a", ProtoState::Down, Some("lost it")).unwrap();
    idle(&rt);
    // It fell down, was restarted, answered start again.
    assert_eq!(state(&rt, "a"), "start");
    rt.import("a", "192.0.2.0/24", None, None).unwrap();
    rt.notify_state("a", ProtoState::Up, Some("connected")).unwrap();
    idle(&rt);
    let shown = rt.show_protocol("a").unwrap();
    assert_eq!((shown["state"].as_str(), shown["info"].as_str(), shown["routes"].as_u64()), (Some("up"), Some("connected"), Some(1)));
    assert_eq!(rt.notify_state("a", ProtoState::Up, None).map_err(|e| e.kind), Ok(()), "the same state again is a no-op");
    let e = rt.notify_state("a", ProtoState::Start, None).unwrap_err();
    assert_eq!(e.kind, ErrorKind::State);
    assert!(e.message.contains("up/happy -> start"), "{}", e.message);
    assert_eq!(rt.import("a", "192.0.2.1/24", None, None).unwrap_err().kind, ErrorKind::InvalidArgument);
    assert_eq!(rt.import("a", "192.0.2.0/24", None, Some("[1]")).unwrap_err().kind, ErrorKind::InvalidArgument);
    assert_eq!(rt.import("a", "192.0.2.0/24", None, Some("{")).unwrap_err().kind, ErrorKind::Parse);
    assert_eq!(rt.withdraw("a", "198.51.100.0/24").unwrap_err().kind, ErrorKind::NotFound);
    rt.withdraw("a", "192.0.2.0/24").unwrap();
    // Events were recorded for every change.
    let mut names = Vec::new();
    while let Ok(e) = rt.next_event(Wait::Never) {
        let v: Value = serde_json::from_slice(&e).unwrap();
        names.push(v["Protocol"]["state"].as_str().unwrap().to_string());
    }
    assert!(names.starts_with(&["down", "start", "flush", "stop", "down", "start", "feed", "up"].map(String::from)), "{names:?}");
    assert_eq!(rt.next_event(Wait::Never).unwrap_err().kind, ErrorKind::WouldBlock);
    let t = Instant::now();
    assert_eq!(rt.next_event(Wait::from_ms(30)).unwrap_err().kind, ErrorKind::Timeout);
    assert!(t.elapsed() >= Duration::from_millis(25));
}

#[test]
fn restart_limit_disables_a_flapping_protocol() {
    let rt = runtime(64);
    let rec = Recorder::new();
    *rec.start_answer.lock().unwrap() = Some(ProtoState::Down);
    rt.register_kind("rec", rec.clone()).unwrap();
    rt.commit(r#"{"restart_limit":{"count":3,"seconds":60},"protocols":[{"name":"flap","kind":"rec"}]}"#, false).unwrap();
    idle(&rt);
    assert_eq!(rec.count("start"), 4, "the first start plus three restarts");
    let shown = rt.show_protocol("flap").unwrap();
    assert_eq!(shown["state"], "down");
    assert_eq!(shown["disabled"], true);
    assert!(shown["info"].as_str().unwrap().contains("restart limit"), "{shown}");
    *rec.start_answer.lock().unwrap() = Some(ProtoState::Up);
    rt.enable("flap").unwrap();
    idle(&rt);
    assert_eq!(state(&rt, "flap"), "up");
}

/// Answers `stop` to shutdown and reports `down` itself, from another thread.
struct SlowStop(Arc<Recorder>);

impl Kind for SlowStop {
    fn start(&self, api: &Api, proto: &str, c: &ProtoConfig) -> ProtoState {
        self.0.start(api, proto, c)
    }
    fn shutdown(&self, api: &Api, proto: &str) -> ProtoState {
        self.0.shutdown(api, proto);
        ProtoState::Stop
    }
    fn reconfigure(&self, api: &Api, proto: &str, o: &ProtoConfig, n: &ProtoConfig) -> bool {
        self.0.reconfigure(api, proto, o, n)
    }
    fn export(&self, api: &Api, proto: &str, r: &Export<'_>) {
        self.0.export(api, proto, r)
    }
}

#[test]
fn requested_stops_are_not_failures() {
    let rt = runtime(64);
    let rec = Recorder::new();
    rt.register_kind("slow", Arc::new(SlowStop(rec.clone()))).unwrap();
    rt.commit(r#"{"restart_limit":{"count":1,"seconds":60},"protocols":[{"name":"a","kind":"slow"}]}"#, false).unwrap();
    idle(&rt);
    for round in 0..3 {
        rt.restart("a").unwrap();
        idle(&rt);
        assert_eq!(state(&rt, "a"), "stop", "round {round}");
        std::thread::scope(|s| {
            s.spawn(|| rt.notify_state("a", ProtoState::Down, None).unwrap());
        });
        idle(&rt);
        assert_eq!(state(&rt, "a"), "up", "round {round}: restarted, not disabled");
    }
    assert_eq!(rec.count("start"), 4);
}

#[test]
fn pattern_commands_count_matches() {
    let rt = runtime(64);
    let rec = Recorder::new();
    rt.register_kind("rec", rec.clone()).unwrap();
    rt.commit(r#"{"protocols":[{"name":"bgp1","kind":"rec"},{"name":"bgp2","kind":"rec"},{"name":"ospf","kind":"rec"}]}"#, false).unwrap();
    idle(&rt);
    assert_eq!(rt.disable("bgp*").unwrap(), 2);
    assert_eq!(rt.disable("bgp?").unwrap(), 2, "already disabled still match");
    assert_eq!(rt.enable("*").unwrap(), 3);
    assert_eq!(rt.restart("ospf").unwrap(), 1);
    idle(&rt);
    assert_eq!(rt.restart("nothing*").unwrap_err().kind, ErrorKind::NotFound);
    assert_eq!(rec.count("shutdown ospf"), 1);
    assert_eq!(rec.count("start ospf"), 2);
    for n in ["bgp1", "bgp2", "ospf"] {
        assert_eq!(state(&rt, n), "up");
    }
}

#[test]
fn netmap_turns_peers_into_routes() {
    let bus = crate::bus::Bus::new(Default::default()).unwrap();
    bus.apply(br#"{"Peers":[{"ID":1,"StableID":"n1","Name":"a.ts.net","AllowedIPs":["100.64.0.1/32","10.1.0.0/16"]},{"ID":2,"AllowedIPs":["100.64.0.2/32"]}]}"#)
        .unwrap();
    let rt = runtime(64);
    let rec = Recorder::new();
    rt.register_kind("rec", rec.clone()).unwrap();
    rt.attach_bus(&bus).unwrap();
    assert_eq!(rt.attach_bus(&bus).unwrap_err().kind, ErrorKind::State);
    let watcher = bus.watch(crate::bus::WATCH_ENGINE_UPDATES).unwrap();
    rt.commit(r#"{"protocols":[{"name":"nm","kind":"netmap"},{"name":"h","kind":"rec"}]}"#, false).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while routes(&rt, None, Some("nm")).len() < 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    idle(&rt);
    let r = routes(&rt, Some("10.1.0.0/16"), None);
    assert_eq!(r[0]["attrs"]["peer"], 1);
    assert_eq!(r[0]["attrs"]["name"], "a.ts.net");
    assert_eq!(rec.exports.load(SeqCst), 3);
    bus.apply(br#"{"PeersChanged":[{"ID":1,"AllowedIPs":["100.64.0.1/32"]}],"PeersRemoved":[2]}"#).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while routes(&rt, None, Some("nm")).len() != 1 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    idle(&rt);
    assert_eq!(routes(&rt, None, Some("nm")).len(), 1);
    assert_eq!(rec.withdrawals.load(SeqCst), 2);
    // State events reach the bus as Notify-style messages.
    let msg = watcher.next(Wait::from_ms(5000)).unwrap();
    assert!(std::str::from_utf8(&msg).unwrap().contains("\"Protocol\""));
    rt.close();
    assert_eq!(rt.commit("{}", false).unwrap_err().kind, ErrorKind::Closed);
    assert_eq!(rt.next_event(Wait::Forever).unwrap_err().kind, ErrorKind::Closed);
    bus.apply(br#"{"PeersRemoved":[1]}"#).unwrap();
}

/// Waits until `check` holds for the routes of `nm` (then for the loop to idle).
fn wait_netmap(rt: &Runtime, what: &str, check: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        idle(rt);
        let r = routes(rt, None, Some("nm"));
        if check(&r) {
            return r;
        }
        assert!(Instant::now() < deadline, "{what}: routes {r:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn netmap_keeps_a_shared_prefix_while_any_peer_lists_it() {
    let peer_of = |r: &[Value], prefix: &str| -> Option<i64> {
        r.iter().find(|x| x["prefix"] == prefix).and_then(|x| x["attrs"]["peer"].as_i64())
    };
    for round in 0..8 {
        let bus = crate::bus::Bus::new(Default::default()).unwrap();
        // Peer 3 is listed first so map order alone would not pick peer 1.
        bus.apply(br#"{"Peers":[{"ID":3,"AllowedIPs":["10.0.0.0/8","100.64.0.3/32"]},{"ID":1,"AllowedIPs":["10.0.0.0/8"]},{"ID":2,"AllowedIPs":["10.0.0.0/8"]}]}"#)
            .unwrap();
        let rt = runtime(64);
        rt.attach_bus(&bus).unwrap();
        rt.commit(r#"{"protocols":[{"name":"nm","kind":"netmap"}]}"#, false).unwrap();
        let r = wait_netmap(&rt, "initial load", |r| r.len() == 2);
        assert_eq!(peer_of(&r, "10.0.0.0/8"), Some(1), "round {round}: the lowest id wins on load");
        // Removing the winner keeps the route, now with the next lowest id.
        bus.apply(br#"{"PeersRemoved":[1]}"#).unwrap();
        let r = wait_netmap(&rt, "peer 1 removed", |r| peer_of(r, "10.0.0.0/8") != Some(1));
        assert_eq!(peer_of(&r, "10.0.0.0/8"), Some(2), "round {round}: {r:?}");
        // Narrowing peer 2's list hands it to peer 3.
        bus.apply(br#"{"PeersChanged":[{"ID":2,"AllowedIPs":["100.64.0.2/32"]}]}"#).unwrap();
        let r = wait_netmap(&rt, "peer 2 narrowed", |r| r.len() == 3);
        assert_eq!(peer_of(&r, "10.0.0.0/8"), Some(3), "round {round}: {r:?}");
        // A higher id listing it changes nothing; a lower one takes over.
        bus.apply(br#"{"PeersChanged":[{"ID":4,"AllowedIPs":["10.0.0.0/8"]}]}"#).unwrap();
        bus.apply(br#"{"PeersChanged":[{"ID":0,"AllowedIPs":["10.0.0.0/8"]}]}"#).unwrap();
        let r = wait_netmap(&rt, "peer 0 added", |r| peer_of(r, "10.0.0.0/8") == Some(0));
        assert_eq!(r.len(), 3);
        // Only once nobody lists it is it withdrawn.
        bus.apply(br#"{"PeersRemoved":[0,3]}"#).unwrap();
        let r = wait_netmap(&rt, "peers 0 and 3 removed", |r| peer_of(r, "10.0.0.0/8") != Some(0));
        assert_eq!(peer_of(&r, "10.0.0.0/8"), Some(4), "round {round}: {r:?}");
        bus.apply(br#"{"PeersRemoved":[4]}"#).unwrap();
        let r = wait_netmap(&rt, "peer 4 removed", |r| peer_of(r, "10.0.0.0/8").is_none());
        assert_eq!(r.len(), 1, "round {round}: only 100.64.0.2/32 is left: {r:?}");
        rt.close();
    }
}

#[test]
fn close_releases_kinds_on_the_loop_thread() {
    struct Dropped(Arc<AtomicBool>);
    impl Drop for Dropped {
        fn drop(&mut self) {
            self.0.store(std::thread::current().name() == Some("meshring-rt"), SeqCst);
        }
    }
    struct K(#[allow(dead_code)] Dropped);
    impl Kind for K {
        fn start(&self, _: &Api, _: &str, _: &ProtoConfig) -> ProtoState {
            ProtoState::Up
        }
        fn shutdown(&self, _: &Api, _: &str) -> ProtoState {
            ProtoState::Down
        }
        fn reconfigure(&self, _: &Api, _: &str, _: &ProtoConfig, _: &ProtoConfig) -> bool {
            true
        }
        fn export(&self, _: &Api, _: &str, _: &Export<'_>) {}
    }
    let flag = Arc::new(AtomicBool::new(false));
    let rt = runtime(64);
    rt.register_kind("k", Arc::new(K(Dropped(flag.clone())))).unwrap();
    assert_eq!(rt.register_kind("k", Arc::new(K(Dropped(Arc::new(AtomicBool::new(false)))))).unwrap_err().kind, ErrorKind::InvalidArgument);
    assert_eq!(rt.register_kind("static", Arc::new(K(Dropped(Arc::new(AtomicBool::new(false)))))).unwrap_err().kind, ErrorKind::InvalidArgument);
    rt.commit(r#"{"protocols":[{"name":"p","kind":"k"}]}"#, false).unwrap();
    rt.close();
    assert!(flag.load(SeqCst));
    rt.close();
}

/// Keeps the table it is exported, as a host would; `export` can be held
/// (the loop then waits inside it) to let changes pile up behind it.
#[derive(Default)]
struct Mirror {
    held: Mutex<bool>,
    release: std::sync::Condvar,
    entered: AtomicBool,
    exports: AtomicUsize,
    table: Mutex<std::collections::BTreeMap<String, (String, u32, Value)>>,
}

impl Kind for Mirror {
    fn start(&self, _: &Api, _: &str, _: &ProtoConfig) -> ProtoState {
        ProtoState::Up
    }
    fn shutdown(&self, _: &Api, _: &str) -> ProtoState {
        ProtoState::Down
    }
    fn reconfigure(&self, _: &Api, _: &str, _: &ProtoConfig, _: &ProtoConfig) -> bool {
        true
    }
    fn export(&self, _: &Api, _: &str, r: &Export<'_>) {
        self.entered.store(true, SeqCst);
        let mut held = self.held.lock().unwrap();
        while *held {
            held = self.release.wait(held).unwrap();
        }
        drop(held);
        self.exports.fetch_add(1, SeqCst);
        let mut table = self.table.lock().unwrap();
        if r.withdrawn {
            let gone = table.remove(&r.prefix.to_string());
            assert_eq!(gone.map(|g| g.0), Some(r.owner.to_string()), "withdrawal of {} names the route the listener had", r.prefix);
        } else {
            table.insert(r.prefix.to_string(), (r.owner.to_string(), r.preference, serde_json::from_str(r.attrs).unwrap()));
        }
    }
}

#[test]
fn exports_coalesce_per_prefix_and_the_listener_ends_with_the_final_table() {
    const PREFIXES: usize = 16;
    const CHANGES: usize = 100_000;
    let rt = runtime(64);
    let mirror = Arc::new(Mirror::default());
    rt.register_kind("rec", Recorder::new()).unwrap();
    rt.register_kind("mirror", mirror.clone()).unwrap();
    rt.commit(r#"{"protocols":[{"name":"a","kind":"rec"},{"name":"b","kind":"rec"},{"name":"m","kind":"mirror"}]}"#, false).unwrap();
    idle(&rt);
    // Hold the mirror inside its first export, so everything after it waits.
    *mirror.held.lock().unwrap() = true;
    rt.import("a", "192.0.2.0/24", None, None).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !mirror.entered.load(SeqCst) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(mirror.entered.load(SeqCst));
    rt.api().reset_stats();
    // Churn: two owners import, re-import with new attributes and withdraw
    // routes to a few prefixes, the best route flipping between them.
    let mut has = [[false; PREFIXES]; 2];
    let mut x = 0x2545_f491_u64;
    for i in 0..CHANGES {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let (who, k) = ((x >> 8) as usize % 2, (x >> 16) as usize % PREFIXES);
        let (name, prefix) = (["a", "b"][who], host_prefix(k));
        if x.is_multiple_of(4) && has[who][k] {
            rt.withdraw(name, &prefix).unwrap();
            has[who][k] = false;
        } else {
            let attrs = format!(r#"{{"i":{i}}}"#);
            rt.import(name, &prefix, Some(100 + (x >> 32) as u32 % 3), Some(&attrs)).unwrap();
            has[who][k] = true;
        }
    }
    let stats = rt.api().stats();
    // Listeners: m hears both, a hears b's and b hears a's routes.
    assert!(stats.max_pending_exports <= 3 * PREFIXES, "{stats:?}");
    assert!(stats.pending_exports >= 1, "{stats:?}");
    *mirror.held.lock().unwrap() = false;
    mirror.release.notify_all();
    idle(&rt);
    assert!(mirror.exports.load(SeqCst) < 1 + 3 * PREFIXES, "{} exports", mirror.exports.load(SeqCst));
    let best: std::collections::BTreeMap<String, (String, u32, Value)> = routes(&rt, None, None)
        .into_iter()
        .filter(|r| r["best"] == true)
        .map(|r| {
            let key = r["prefix"].as_str().unwrap().to_string();
            (key, (r["proto"].as_str().unwrap().to_string(), r["preference"].as_u64().unwrap() as u32, r["attrs"].clone()))
        })
        .collect();
    assert_eq!(*mirror.table.lock().unwrap(), best, "the listener holds exactly the final best routes");
    assert_eq!(rt.api().stats().pending_exports, 0);
}

#[test]
fn commit_touches_only_changed_protocols_of_many() {
    let rt = runtime(64);
    let rec = Recorder::new();
    rec.reconfigure_answer.store(true, SeqCst);
    rt.register_kind("rec", rec.clone()).unwrap();
    let config = |edit: &dyn Fn(&mut Vec<String>)| {
        let mut v: Vec<String> = (0..200).map(|i| format!(r#"{{"name":"p{i}","kind":"rec","config":0}}"#)).collect();
        edit(&mut v);
        format!(r#"{{"protocols":[{}]}}"#, v.join(","))
    };
    rt.commit(&config(&|_| {}), false).unwrap();
    idle(&rt);
    assert_eq!(rec.count("start"), 200);
    rt.commit(&config(&|v| v[50] = r#"{"name":"p50","kind":"rec","config":1}"#.into()), false).unwrap();
    idle(&rt);
    assert_eq!(rec.calls()[200..], ["reconfigure p50 1".to_string()]);
    // Back to the first text: p50 is reconfigured again, nothing else.
    rt.commit(&config(&|_| {}), false).unwrap();
    idle(&rt);
    assert_eq!(rec.calls()[201..], ["reconfigure p50 0".to_string()]);
    // A changed protocol taking a kept one's name: nothing changes.
    let before = rt.show_protocols().unwrap();
    let e = rt.commit(&config(&|v| v[7] = r#"{"name":"p8","kind":"rec","config":2}"#.into()), false).unwrap_err();
    assert!(e.message.contains("\"p8\" appears twice"), "{}", e.message);
    idle(&rt);
    assert_eq!(rt.show_protocols().unwrap(), before);
    assert_eq!(rec.calls().len(), 202);
    // Removed, inserted and moved protocols: only the first two are touched.
    rt.commit(
        &config(&|v| {
            v.remove(10);
            v.insert(0, r#"{"name":"fresh","kind":"rec"}"#.into());
            v.swap(100, 150);
        }),
        false,
    )
    .unwrap();
    idle(&rt);
    let mut tail = rec.calls()[202..].to_vec();
    tail.sort();
    assert_eq!(tail, ["shutdown p10", "start fresh null"].map(String::from));
    assert_eq!(rt.show_protocol("p10").unwrap_err().kind, ErrorKind::NotFound);
    // Hard still restarts everything, even with the same text.
    let same = config(&|v| {
        v.remove(10);
        v.insert(0, r#"{"name":"fresh","kind":"rec"}"#.into());
        v.swap(100, 150);
    });
    rt.commit(&same, true).unwrap();
    idle(&rt);
    assert_eq!(rec.count("start"), 201 + 200);
}

#[test]
fn commands_waiting_when_the_runtime_closes_return_closed() {
    /// Start blocks until released, so whatever is queued behind it waits.
    #[derive(Default)]
    struct Gate {
        open: Mutex<bool>,
        cv: std::sync::Condvar,
        entered: AtomicBool,
    }
    impl Kind for Gate {
        fn start(&self, _: &Api, _: &str, _: &ProtoConfig) -> ProtoState {
            self.entered.store(true, SeqCst);
            let mut open = self.open.lock().unwrap();
            while !*open {
                open = self.cv.wait(open).unwrap();
            }
            ProtoState::Up
        }
        fn shutdown(&self, _: &Api, _: &str) -> ProtoState {
            ProtoState::Down
        }
        fn reconfigure(&self, _: &Api, _: &str, _: &ProtoConfig, _: &ProtoConfig) -> bool {
            true
        }
        fn export(&self, _: &Api, _: &str, _: &Export<'_>) {}
    }
    let rt = runtime(64);
    let gate = Arc::new(Gate::default());
    rt.register_kind("gate", gate.clone()).unwrap();
    std::thread::scope(|s| {
        // Two starts queued: the second is never run once the first sees close.
        let commit = s.spawn(|| rt.commit(r#"{"protocols":[{"name":"a","kind":"gate"},{"name":"b","kind":"gate"}]}"#, false));
        while !gate.entered.load(SeqCst) {
            std::thread::sleep(Duration::from_millis(1));
        }
        let closer = s.spawn(|| rt.close());
        // close() marks the runtime closed at once, then waits for the hook.
        while rt.show_protocols().is_ok() {
            std::thread::sleep(Duration::from_millis(1));
        }
        *gate.open.lock().unwrap() = true;
        gate.cv.notify_all();
        closer.join().unwrap();
        assert_eq!(commit.join().unwrap().unwrap_err().kind, ErrorKind::Closed, "b never started");
    });
}

#[test]
fn a_commit_that_replaces_the_tables_keeps_the_new_protocols_table() {
    let rt = runtime(64);
    rt.commit(r#"{"tables":["b"],"protocols":[{"name":"h","kind":"static","disabled":true}]}"#, false).unwrap();
    idle(&rt);
    // h is removed (it is down, so at once) while x, in the new table c, is
    // made: c must not be dropped as unused in between.
    rt.commit(r#"{"tables":["c"],"protocols":[{"name":"x","kind":"static","routes":[{"prefix":"198.18.0.0/24"}]}]}"#, false)
        .unwrap();
    idle(&rt);
    assert_eq!(state(&rt, "x"), "up");
    assert_eq!(rt.show_protocol("h").unwrap_err().kind, ErrorKind::NotFound);
    let r = routes(&rt, None, None);
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!((r[0]["table"].as_str(), r[0]["proto"].as_str()), (Some("c"), Some("x")));
    // And back, hard, into a table of the same name as before.
    rt.commit(r#"{"tables":["b"],"protocols":[{"name":"x","kind":"static","routes":[{"prefix":"198.18.1.0/24"}]}]}"#, true)
        .unwrap();
    idle(&rt);
    let r = routes(&rt, None, None);
    assert_eq!((r.len(), r[0]["table"].as_str()), (1, Some("b")), "{r:?}");
}

/// A kind whose hooks panic (a stand-in for a bug on the loop thread).
struct Bomb;
impl Kind for Bomb {
    fn start(&self, _: &Api, proto: &str, _: &ProtoConfig) -> ProtoState {
        panic!("bomb {proto} went off");
    }
    fn shutdown(&self, _: &Api, _: &str) -> ProtoState {
        ProtoState::Down
    }
    fn reconfigure(&self, _: &Api, _: &str, _: &ProtoConfig, _: &ProtoConfig) -> bool {
        true
    }
    fn export(&self, _: &Api, _: &str, _: &Export<'_>) {}
}

#[test]
fn a_panic_on_the_loop_thread_is_reported_with_its_reason_and_an_event() {
    let rt = runtime(64);
    rt.register_kind("bomb", Arc::new(Bomb)).unwrap();
    let e = rt.commit(r#"{"protocols":[{"name":"s","kind":"static"},{"name":"b","kind":"bomb"},{"name":"t","kind":"static"}]}"#, false)
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Panic, "{e}");
    assert!(e.message.contains("bomb b went off"), "{e}");
    // Every later call says the same, not Closed.
    for e in [rt.show_protocols().unwrap_err(), rt.commit("{}", false).unwrap_err(), rt.enable("*").unwrap_err()] {
        assert_eq!(e.kind, ErrorKind::Panic, "{e}");
        assert!(e.message.contains("lifecycle runtime loop panicked: bomb b went off"), "{e}");
    }
    assert_eq!(rt.wait_idle(Wait::from_ms(1000)).unwrap_err().kind, ErrorKind::Panic);
    // The event fd is readable; the events up to the panic are delivered,
    // the last one saying what happened; then Panic.
    let mut pfd = libc::pollfd { fd: rt.event_fd(), events: libc::POLLIN, revents: 0 };
    // SAFETY: one valid pollfd.
    assert_eq!(unsafe { libc::poll(&mut pfd, 1, 0) }, 1);
    let mut last = None;
    let end = loop {
        match rt.next_event(Wait::Never) {
            Ok(ev) => last = Some(ev),
            Err(e) => break e,
        }
    };
    assert_eq!(end.kind, ErrorKind::Panic);
    let last: Value = serde_json::from_slice(&last.expect("events")).unwrap();
    assert_eq!(last["Runtime"]["state"], "panicked", "{last}");
    assert!(last["Runtime"]["reason"].as_str().unwrap().contains("bomb b went off"), "{last}");
    rt.close();
    assert_eq!(rt.show_protocols().unwrap_err().kind, ErrorKind::Panic, "close keeps the reason");
}

#[test]
fn a_restart_commit_returns_after_the_new_start_ran() {
    const N: usize = 20_000;
    let rt = runtime(256);
    let rec = Recorder::new();
    rec.start_imports.store(N, SeqCst);
    rt.register_kind("rec", rec.clone()).unwrap();
    rt.commit(r#"{"protocols":[{"name":"a","kind":"rec","config":1}]}"#, false).unwrap();
    assert_eq!(rec.count("start a"), 1, "the first start ran before commit returned");
    // Hard: shutdown, a flush of N routes, then the start of the new one.
    rt.commit(r#"{"protocols":[{"name":"a","kind":"rec","config":1}]}"#, true).unwrap();
    assert_eq!(rec.calls(), ["start a 1", "shutdown a", "start a 1"].map(String::from), "commit returned too early");
    // Soft, refused reconfiguration: the same.
    rt.commit(r#"{"protocols":[{"name":"a","kind":"rec","config":2}]}"#, false).unwrap();
    assert_eq!(rec.calls()[3..], ["reconfigure a 2", "shutdown a", "start a 2"].map(String::from), "commit returned too early");
    // restart: shutdown, flush, start.
    assert_eq!(rt.restart("a").unwrap(), 1);
    assert_eq!(rec.calls()[6..], ["shutdown a", "start a 2"].map(String::from), "restart returned too early");
    idle(&rt);
    assert_eq!(routes(&rt, None, Some("a")).len(), N);
}

/// Closes its runtime from inside `start` (as a C host may with
/// `mr_runtime_close`).
struct Closer(Mutex<std::sync::Weak<Runtime>>);
impl Kind for Closer {
    fn start(&self, _: &Api, _: &str, _: &ProtoConfig) -> ProtoState {
        if let Some(rt) = self.0.lock().unwrap().upgrade() {
            rt.close();
        }
        ProtoState::Up
    }
    fn shutdown(&self, _: &Api, _: &str) -> ProtoState {
        ProtoState::Down
    }
    fn reconfigure(&self, _: &Api, _: &str, _: &ProtoConfig, _: &ProtoConfig) -> bool {
        true
    }
    fn export(&self, _: &Api, _: &str, _: &Export<'_>) {}
}

#[test]
fn a_commit_whose_start_hook_closes_the_runtime_returns_closed() {
    for _ in 0..200 {
        let rt = Arc::new(runtime(64));
        let rec = Recorder::new();
        let closer = Arc::new(Closer(Mutex::new(Arc::downgrade(&rt))));
        rt.register_kind("closer", closer).unwrap();
        rt.register_kind("rec", rec.clone()).unwrap();
        let r = rt.commit(r#"{"protocols":[{"name":"a","kind":"closer"},{"name":"b","kind":"rec"}]}"#, false);
        assert_eq!(r.unwrap_err().kind, ErrorKind::Closed, "b never started: {:?}", rec.calls());
        assert_eq!(rec.count("start"), 0);
    }
}

#[test]
fn a_big_flush_lets_other_calls_in_between_its_steps() {
    const N: usize = 200_000;
    let rt = runtime(2048);
    let rec = Recorder::new();
    rec.start_imports.store(N, SeqCst);
    rt.register_kind("rec", rec.clone()).unwrap();
    rt.commit(r#"{"protocols":[{"name":"big","kind":"rec"}]}"#, false).unwrap();
    idle(&rt);
    // Nobody listens, so the flush delivers nothing and (before the steps
    // handed the lock over) held it from the first route to the last: a
    // reader saw N routes or none, never a flush in progress.
    let partial = std::thread::scope(|s| {
        let reader = s.spawn(|| {
            let mut partial = 0;
            loop {
                let p = rt.show_protocol("big").unwrap();
                let n = p["routes"].as_u64().unwrap() as usize;
                if n > 0 && n < N {
                    partial += 1;
                }
                if p["state"] == "down" {
                    return partial;
                }
            }
        });
        assert_eq!(rt.disable("big").unwrap(), 1);
        reader.join().unwrap()
    });
    assert!(partial > 0, "no call got in while {N} routes were flushed");
    assert_eq!(routes(&rt, None, None).len(), 0);
}
