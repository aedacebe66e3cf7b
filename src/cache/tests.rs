//! One test (or more) per behaviour go-control-plane's simple_test.go and
//! delta_test.go check, written against this API, plus the issue-6 rules.

use super::*;
use crate::error::ErrorKind;
use crate::sync::Wait;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

const V1: &str = "v1";
const V2: &str = "v2";
const TYPES: [&str; 4] = [CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE];

fn cache() -> Cache {
    Cache::new(CacheConfig::default()).unwrap()
}

fn ads_cache() -> Cache {
    Cache::new(CacheConfig { ads: true, ..Default::default() }).unwrap()
}

/// Cluster c0 -> endpoints c0, listener l0 -> route r0 (the fixture shape).
fn fixture(version: &str) -> Snapshot {
    let mut s = Snapshot::new(version);
    s.add(CLUSTER_TYPE, "c0", b"cluster c0".to_vec(), None).unwrap();
    s.add(ENDPOINT_TYPE, "c0", b"endpoints c0 :8080".to_vec(), None).unwrap();
    s.add(LISTENER_TYPE, "l0", b"listener l0".to_vec(), None).unwrap();
    s.add(ROUTE_TYPE, "r0", b"route r0".to_vec(), None).unwrap();
    s.add_reference(CLUSTER_TYPE, "c0", ENDPOINT_TYPE, "c0").unwrap();
    s.add_reference(LISTENER_TYPE, "l0", ROUTE_TYPE, "r0").unwrap();
    s
}

fn names_of(t: &str) -> Vec<String> {
    match t {
        ENDPOINT_TYPE => vec!["c0".into()],
        ROUTE_TYPE => vec!["r0".into()],
        _ => vec![],
    }
}

fn req(node: &str, t: &str, version: &str, names: &[&str]) -> WatchRequest {
    WatchRequest {
        node: node.into(),
        type_url: t.into(),
        version_info: version.into(),
        names: names.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

fn known(r: &Response) -> HashMap<String, String> {
    r.next_state.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn got(w: &CacheWatch) -> Option<Arc<Response>> {
    match w.next(Wait::Never) {
        Ok(r) => Some(r),
        Err(e) if e.kind == ErrorKind::WouldBlock => None,
        Err(e) => panic!("next: {e}"),
    }
}

fn num_watches(c: &Cache, node: &str) -> (usize, usize) {
    let s = c.status(node).unwrap();
    (s.num_watches, s.num_delta_watches)
}

// ---- snapshots -------------------------------------------------------------

#[test]
fn set_get_clear_snapshot() {
    let c = cache();
    assert_eq!(c.get_snapshot("n").unwrap_err().kind, ErrorKind::NotFound);
    let snap = Arc::new(fixture(V1));
    c.set_snapshot("n", snap.clone()).unwrap();
    let back = c.get_snapshot("n").unwrap();
    assert!(Arc::ptr_eq(&back, &snap));
    assert_eq!(back.version(CLUSTER_TYPE), V1);
    assert_eq!(back.version("type.googleapis.com/unknown"), V1, "every type has the snapshot version");
    c.clear_snapshot("n").unwrap();
    assert_eq!(c.get_snapshot("n").unwrap_err().kind, ErrorKind::NotFound);
    c.clear_snapshot("never-set").unwrap(); // no-op
}

#[test]
fn duplicate_names_and_empty_arguments_are_invalid() {
    let mut s = Snapshot::new(V1);
    s.add(CLUSTER_TYPE, "a", b"1".to_vec(), None).unwrap();
    assert_eq!(s.add(CLUSTER_TYPE, "a", b"2".to_vec(), None).unwrap_err().kind, ErrorKind::InvalidArgument);
    s.add(ENDPOINT_TYPE, "a", b"1".to_vec(), None).unwrap(); // other type: fine
    assert_eq!(s.add("", "b", b"".to_vec(), None).unwrap_err().kind, ErrorKind::InvalidArgument);
    assert_eq!(s.add(CLUSTER_TYPE, "", b"".to_vec(), None).unwrap_err().kind, ErrorKind::InvalidArgument);
}

#[test]
fn consistency_check_resolves_references() {
    let good = fixture(V1);
    good.consistent().unwrap();
    let mut bad = fixture(V1);
    bad.add_reference(CLUSTER_TYPE, "c0", ENDPOINT_TYPE, "missing").unwrap();
    let e = bad.consistent().unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidArgument);
    assert!(e.message.contains("missing"), "{e}");
    // Not checked unless configured (go-control-plane's SetSnapshot does not).
    cache().set_snapshot("n", Arc::new(bad.clone())).unwrap();
    let strict = Cache::new(CacheConfig { check_consistency: true, ..Default::default() }).unwrap();
    assert_eq!(strict.set_snapshot("n", Arc::new(bad)).unwrap_err().kind, ErrorKind::InvalidArgument);
    assert_eq!(strict.get_snapshot("n").unwrap_err().kind, ErrorKind::NotFound);
    strict.set_snapshot("n", Arc::new(good)).unwrap();
}

#[test]
fn remove_replaces_one_resource_and_keeps_the_rest_shared() {
    let c = cache();
    c.set_snapshot("n", Arc::new(fixture(V1))).unwrap();
    let old = c.get_snapshot("n").unwrap();
    let mut edited = (*old).clone();
    edited.remove(ENDPOINT_TYPE, "c0").unwrap();
    assert_eq!(edited.remove(ENDPOINT_TYPE, "c0").unwrap_err().kind, ErrorKind::NotFound);
    edited.add(ENDPOINT_TYPE, "c0", b"endpoints c0 :9090".to_vec(), None).unwrap();
    edited.set_version(ENDPOINT_TYPE, V2).unwrap();
    // The other types are the very same sets: nothing to compare or hash.
    assert!(Arc::ptr_eq(edited.type_set(CLUSTER_TYPE).unwrap(), old.type_set(CLUSTER_TYPE).unwrap()));
    assert_eq!(&edited.type_set(ENDPOINT_TYPE).unwrap().get("c0").unwrap().bytes()[..], b"endpoints c0 :9090");
    assert_eq!(&old.type_set(ENDPOINT_TYPE).unwrap().get("c0").unwrap().bytes()[..], b"endpoints c0 :8080");
}

#[test]
fn builder_is_copy_on_write_after_set() {
    let c = cache();
    let b = SnapshotBuilder::new(V1);
    b.edit(|s| s.add(CLUSTER_TYPE, "a", b"1".to_vec(), None)).unwrap();
    c.set_snapshot("n", b.snapshot()).unwrap();
    b.edit(|s| s.add(CLUSTER_TYPE, "b", b"2".to_vec(), None)).unwrap();
    assert_eq!(c.get_snapshot("n").unwrap().type_set(CLUSTER_TYPE).unwrap().len(), 1);
    assert_eq!(b.snapshot().type_set(CLUSTER_TYPE).unwrap().len(), 2);
}

// ---- SOTW watches ----------------------------------------------------------

#[test]
fn watch_parks_without_snapshot_then_answers_on_set() {
    // TestSnapshotCacheWatch + TestAvertPanicForWatchOnNonExistentSnapshot
    let c = cache();
    let watches: Vec<_> = TYPES
        .iter()
        .map(|t| c.watch(req("n", t, "", &names_of(t).iter().map(String::as_str).collect::<Vec<_>>())).unwrap())
        .collect();
    assert_eq!(num_watches(&c, "n"), (4, 0));
    assert!(watches.iter().all(|w| got(w).is_none()));
    let snap = Arc::new(fixture(V1));
    c.set_snapshot("n", snap.clone()).unwrap();
    assert_eq!(num_watches(&c, "n"), (0, 0));
    let mut state = HashMap::new();
    for (t, w) in TYPES.iter().zip(&watches) {
        let r = got(w).expect("answered");
        assert_eq!(r.version, V1);
        assert_eq!(r.type_url, *t);
        assert_eq!(r.resources.len(), 1);
        // shared, not copied
        let stored = snap.type_set(t).unwrap().get(r.resources[0].name()).unwrap();
        assert!(Arc::ptr_eq(stored.bytes(), r.resources[0].bytes()));
        state.insert(*t, known(&r));
        assert_eq!(w.next(Wait::Never).unwrap_err().kind, ErrorKind::Closed, "one response per watch");
    }
    // New watches at the current version park.
    let watches: Vec<_> = TYPES
        .iter()
        .map(|t| {
            let mut r = req("n", t, V1, &names_of(t).iter().map(String::as_str).collect::<Vec<_>>());
            r.known = state[t].clone();
            c.watch(r).unwrap()
        })
        .collect();
    assert_eq!(num_watches(&c, "n"), (4, 0));
    // A snapshot changing only the endpoints answers only the EDS watch.
    let mut s2 = fixture(V1);
    s2 = {
        let mut s = Snapshot::new(V1);
        for t in [CLUSTER_TYPE, LISTENER_TYPE, ROUTE_TYPE] {
            for r in s2.type_set(t).unwrap().resources().values() {
                s.add_resource(t, r.clone()).unwrap();
            }
        }
        s.add(ENDPOINT_TYPE, "c0", b"endpoints c0 :9090".to_vec(), None).unwrap();
        s.set_version(ENDPOINT_TYPE, V2).unwrap();
        s
    };
    c.set_snapshot("n", Arc::new(s2)).unwrap();
    assert_eq!(num_watches(&c, "n"), (3, 0));
    for (t, w) in TYPES.iter().zip(&watches) {
        if *t == ENDPOINT_TYPE {
            let r = got(w).unwrap();
            assert_eq!(r.version, V2);
            assert_eq!(&r.resources[0].bytes()[..], b"endpoints c0 :9090");
        } else {
            assert!(got(w).is_none() && w.is_waiting(), "{t}");
        }
    }
}

#[test]
fn watch_answers_at_once_when_version_differs() {
    let c = cache();
    c.set_snapshot("n", Arc::new(fixture(V1))).unwrap();
    let w = c.watch(req("n", ENDPOINT_TYPE, "old", &["c0"])).unwrap();
    assert_eq!(got(&w).unwrap().names(), vec!["c0"]);
    // Same version, nothing returned yet: still answered (names not returned).
    let w = c.watch(req("n", ENDPOINT_TYPE, V1, &["c0"])).unwrap();
    let r = got(&w).unwrap();
    // With the returned state fed back, it parks.
    let mut again = req("n", ENDPOINT_TYPE, V1, &["c0"]);
    again.known = known(&r);
    let w = c.watch(again).unwrap();
    assert!(got(&w).is_none());
    assert_eq!(num_watches(&c, "n"), (1, 0));
}

#[test]
fn watch_cancel_and_cancel_twice() {
    // TestSnapshotCacheWatchCancel
    let c = cache();
    let watches: Vec<_> = TYPES.iter().map(|t| c.watch(req("n", t, "", &[])).unwrap()).collect();
    assert_eq!(num_watches(&c, "n"), (4, 0));
    for w in &watches {
        w.close();
        w.close();
        assert_eq!(w.next(Wait::Forever).unwrap_err().kind, ErrorKind::Closed);
    }
    assert_eq!(num_watches(&c, "n"), (0, 0));
    c.set_snapshot("n", Arc::new(fixture(V1))).unwrap();
    assert!(watches.iter().all(|w| w.next(Wait::Never).unwrap_err().kind == ErrorKind::Closed));
    // Dropping a watch cancels it too.
    drop(c.watch(req("n", CLUSTER_TYPE, V1, &[])).unwrap());
    let w = c.delta_watch(WatchRequest { node: "n".into(), type_url: ROUTE_TYPE.into(), names: vec!["zz".into()], ..Default::default() }).unwrap();
    assert_eq!(num_watches(&c, "n"), (0, 1));
    drop(w);
    assert_eq!(num_watches(&c, "n"), (0, 0));
}

#[test]
fn watch_timeout_and_would_block() {
    // TestSnapshotCacheWatchTimeout
    let c = cache();
    let w = c.watch(req("n", CLUSTER_TYPE, "", &[])).unwrap();
    assert_eq!(w.next(Wait::Never).unwrap_err().kind, ErrorKind::WouldBlock);
    let t0 = std::time::Instant::now();
    assert_eq!(w.next(Wait::from_ms(30)).unwrap_err().kind, ErrorKind::Timeout);
    assert!(t0.elapsed() >= Duration::from_millis(25));
    assert_eq!(num_watches(&c, "n"), (1, 0));
    w.close();
    assert_eq!(num_watches(&c, "n"), (0, 0));
}

#[test]
fn blocked_next_wakes_on_response_and_on_close() {
    let c = Arc::new(cache());
    let w = Arc::new(c.watch(req("n", CLUSTER_TYPE, "", &[])).unwrap());
    let w2 = w.clone();
    let t = std::thread::spawn(move || w2.next(Wait::Forever).map(|r| r.version.clone()));
    std::thread::sleep(Duration::from_millis(20));
    c.set_snapshot("n", Arc::new(fixture(V1))).unwrap();
    assert_eq!(t.join().unwrap().unwrap(), V1);

    let w = Arc::new(c.watch(req("n", CLUSTER_TYPE, V1, &[])).unwrap());
    // wildcard, nothing returned yet: answered; feed it back to park
    let r = got(&w).unwrap();
    let mut q = req("n", CLUSTER_TYPE, V1, &[]);
    q.known = known(&r);
    let w = Arc::new(c.watch(q).unwrap());
    let w2 = w.clone();
    let t = std::thread::spawn(move || w2.next(Wait::Forever).unwrap_err().kind);
    std::thread::sleep(Duration::from_millis(20));
    w.close();
    assert_eq!(t.join().unwrap(), ErrorKind::Closed);
}

#[test]
fn readiness_fd_turns_readable_on_response() {
    let c = cache();
    let w = c.watch(req("n", CLUSTER_TYPE, "", &[])).unwrap();
    let readable = |w: &CacheWatch| crate::sys::is_readable(w.ready_fd().unwrap(), 0);
    assert!(!readable(&w));
    c.set_snapshot("n", Arc::new(fixture(V1))).unwrap();
    assert!(readable(&w));
    assert!(got(&w).is_some());
}

// ---- the ready queue ------------------------------------------------------

fn queued(node: &str, t: &str, version: &str, names: &[&str], token: u64) -> WatchRequest {
    WatchRequest { queue_token: Some(token), ..req(node, t, version, names) }
}

#[test]
fn queued_watches_report_once_through_the_queue() {
    let c = cache();
    let fd = c.ready_fd().unwrap();
    let watches: Vec<CacheWatch> = (0..3).map(|i| c.watch(queued(&format!("n{i}"), ENDPOINT_TYPE, "", &["c0"], 100 + i)).unwrap()).collect();
    assert_eq!(c.take_ready(Wait::Never, 8).unwrap_err().kind, ErrorKind::WouldBlock);
    assert_eq!(c.take_ready(Wait::from_ms(10), 8).unwrap_err().kind, ErrorKind::Timeout);
    assert!(!crate::sys::is_readable(fd, 0));
    c.set_snapshot("n0", Arc::new(fixture(V1))).unwrap();
    c.set_snapshot("n2", Arc::new(fixture(V1))).unwrap();
    assert!(crate::sys::is_readable(fd, 0));
    let events = c.take_ready(Wait::Never, 8).unwrap();
    let tokens: Vec<u64> = events.iter().map(|e| e.token).collect();
    assert_eq!(tokens, vec![100, 102]);
    for e in &events {
        let r = e.outcome.as_ref().unwrap();
        assert_eq!(r.version, V1);
        assert_eq!(r.resources.len(), 1);
    }
    // Taken by the queue: the handles have nothing more, the fd is clear.
    assert_eq!(watches[0].next(Wait::Never).unwrap_err().kind, ErrorKind::Closed);
    assert!(!crate::sys::is_readable(fd, 0));
    assert_eq!(c.take_ready(Wait::Never, 8).unwrap_err().kind, ErrorKind::WouldBlock);
    // max bounds a batch.
    let more: Vec<CacheWatch> = (0..5).map(|i| c.watch(queued("m", ENDPOINT_TYPE, "", &["c0"], i)).unwrap()).collect();
    c.set_snapshot("m", Arc::new(fixture(V1))).unwrap();
    assert_eq!(c.take_ready(Wait::Never, 2).unwrap().len(), 2);
    assert_eq!(c.take_ready(Wait::Never, 8).unwrap().len(), 3);
    drop(more);
}

#[test]
fn set_snapshot_collect_hands_answers_to_the_caller() {
    let c = cache();
    let w1 = c.watch(queued("n", ENDPOINT_TYPE, "", &["c0"], 1)).unwrap();
    let _w2 = c.watch(queued("n", ENDPOINT_TYPE, "", &["c0"], 2)).unwrap();
    let plain = c.watch(req("n", ENDPOINT_TYPE, "", &["c0"])).unwrap();
    let events = c.set_snapshot_collect("n", Arc::new(fixture(V1)), 1).unwrap();
    assert_eq!(events.len(), 1, "room for one");
    assert!(events[0].token == 1 || events[0].token == 2);
    assert_eq!(events[0].outcome.as_ref().unwrap().version, V1);
    // The other queued watch went to the queue; the plain one to its handle.
    let queued_events = c.take_ready(Wait::Never, 8).unwrap();
    assert_eq!(queued_events.len(), 1);
    assert_ne!(queued_events[0].token, events[0].token);
    assert!(got(&plain).is_some());
    if events[0].token == 1 {
        assert_eq!(w1.next(Wait::Never).unwrap_err().kind, ErrorKind::Closed, "taken by the caller");
    }
    assert_eq!(c.take_ready(Wait::Never, 8).unwrap_err().kind, ErrorKind::WouldBlock);
}

#[test]
fn answers_collected_by_set_snapshot_wake_a_blocked_next_and_the_fd() {
    let c = cache();
    let w = Arc::new(c.watch(queued("n", ENDPOINT_TYPE, "", &["c0"], 1)).unwrap());
    let fd = w.ready_fd().unwrap();
    let w2 = w.clone();
    let blocked = std::thread::spawn(move || w2.next(Wait::from_ms(10_000)).unwrap_err().kind);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !w.is_waiting() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    let events = c.set_snapshot_collect("n", Arc::new(fixture(V1)), 4).unwrap();
    assert_eq!(events.len(), 1);
    assert!(crate::sys::is_readable(fd, 0), "the watch's fd turns readable");
    assert_eq!(blocked.join().unwrap(), ErrorKind::Closed, "the blocked next returns at once");
}

#[test]
fn queued_watch_answered_at_open_is_taken_with_next_not_queued() {
    let c = cache();
    c.set_snapshot("n", Arc::new(fixture(V1))).unwrap();
    let w = c.watch(queued("n", ENDPOINT_TYPE, "", &["c0"], 7)).unwrap();
    assert!(got(&w).is_some());
    assert_eq!(c.take_ready(Wait::Never, 8).unwrap_err().kind, ErrorKind::WouldBlock);
}

#[test]
fn queue_reports_cleared_and_closed_but_not_cancelled() {
    let c = cache();
    let cancelled = c.watch(queued("a", ENDPOINT_TYPE, "", &["c0"], 1)).unwrap();
    let _cleared = c.watch(queued("b", ENDPOINT_TYPE, "", &["c0"], 2)).unwrap();
    let _closed = c.watch(queued("c", ENDPOINT_TYPE, "", &["c0"], 3)).unwrap();
    cancelled.close();
    c.clear_snapshot("b").unwrap();
    let e = c.take_ready(Wait::Never, 8).unwrap();
    assert_eq!(e.len(), 1);
    assert_eq!((e[0].token, e[0].outcome.as_ref().unwrap_err().contains("cleared")), (2, true));
    // A response cancelled after it was queued is skipped too.
    let late = c.watch(queued("d", ENDPOINT_TYPE, "", &["c0"], 4)).unwrap();
    c.set_snapshot("d", Arc::new(fixture(V1))).unwrap();
    late.close();
    assert_eq!(c.take_ready(Wait::Never, 8).unwrap_err().kind, ErrorKind::WouldBlock);
    let fd = c.ready_fd().unwrap();
    c.close();
    assert!(crate::sys::is_readable(fd, 0));
    let e = c.take_ready(Wait::Never, 8).unwrap();
    assert_eq!((e.len(), e[0].token, e[0].outcome.is_err()), (1, 3, true));
    assert_eq!(c.take_ready(Wait::Forever, 8).unwrap_err().kind, ErrorKind::Closed);
}

#[test]
fn blocked_take_ready_wakes_on_answer_and_on_close() {
    let c = Arc::new(cache());
    let _w = c.watch(queued("n", ENDPOINT_TYPE, "", &["c0"], 9)).unwrap();
    let c2 = c.clone();
    let t = std::thread::spawn(move || c2.take_ready(Wait::Forever, 4).map(|e| e[0].token));
    std::thread::sleep(Duration::from_millis(20));
    c.set_snapshot("n", Arc::new(fixture(V1))).unwrap();
    assert_eq!(t.join().unwrap().unwrap(), 9);
    let c2 = c.clone();
    let t = std::thread::spawn(move || c2.take_ready(Wait::Forever, 4).map(|e| e.len()).map_err(|e| e.kind));
    std::thread::sleep(Duration::from_millis(20));
    c.close();
    assert_eq!(t.join().unwrap(), Err(ErrorKind::Closed));
}

#[test]
fn concurrent_set_and_watch() {
    // TestConcurrentSetWatch / TestConcurrentSetDeltaWatch
    let c = Arc::new(cache());
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let c = c.clone();
            std::thread::spawn(move || {
                let node = format!("node{}", i % 3);
                for j in 0..50 {
                    if (i + j) % 2 == 0 {
                        let mut s = Snapshot::new(format!("v{j}"));
                        s.add(ENDPOINT_TYPE, "e", format!("{i}-{j}").into_bytes(), None).unwrap();
                        c.set_snapshot(&node, Arc::new(s)).unwrap();
                    } else {
                        let w = c.watch(req(&node, ENDPOINT_TYPE, "", &["e"])).unwrap();
                        let d = c
                            .delta_watch(WatchRequest { node: node.clone(), type_url: ENDPOINT_TYPE.into(), wildcard: true, first: true, ..Default::default() })
                            .unwrap();
                        if c.get_snapshot(&node).is_ok() {
                            // a snapshot exists: both answer without any further set
                            assert!(w.next(Wait::from_ms(5000)).is_ok());
                            assert!(d.next(Wait::from_ms(5000)).is_ok());
                        }
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    for k in c.status_keys().unwrap() {
        assert_eq!(num_watches(&c, &k), (0, 0), "all watches answered or dropped");
    }
}

#[test]
fn previously_not_requested_names_are_answered_at_once() {
    // TestSnapshotCreateWatchWithResourcePreviouslyNotRequested
    let c = cache();
    let mut s = Snapshot::new(V1);
    s.add(ENDPOINT_TYPE, "a", b"ea".to_vec(), None).unwrap();
    s.add(ENDPOINT_TYPE, "b", b"eb".to_vec(), None).unwrap();
    c.set_snapshot("n", Arc::new(s)).unwrap();
    let w = c.watch(req("n", ENDPOINT_TYPE, "", &["a"])).unwrap();
    let r = got(&w).unwrap();
    assert_eq!(r.names(), vec!["a"]);
    // The returned state names each resource at the type's version.
    assert_eq!(known(&r), HashMap::from([("a".to_string(), V1.to_string())]));
    // Same version, a new name: answered at once with every requested one.
    let mut q = req("n", ENDPOINT_TYPE, V1, &["a", "b"]);
    q.known = known(&r);
    let w = c.watch(q).unwrap();
    let r2 = got(&w).expect("b was never returned");
    assert_eq!(r2.version, V1);
    assert_eq!(r2.names(), vec!["a", "b"]);
    // Everything returned (names only; versions are not compared): parks.
    let mut q = req("n", ENDPOINT_TYPE, V1, &["a", "b"]);
    q.known = HashMap::from([("a".into(), "any".into()), ("b".into(), "thing".into())]);
    let w = c.watch(q).unwrap();
    assert!(got(&w).is_none());
    // A name the snapshot lacks does not trigger an answer.
    let mut q = req("n", ENDPOINT_TYPE, V1, &["a", "b", "c"]);
    q.known = known(&r2);
    assert!(got(&c.watch(q).unwrap()).is_none());
}

#[test]
fn answers_carry_every_covered_resource_and_same_version_sets_answer_nothing() {
    let c = cache();
    let mut s = Snapshot::new(V1);
    s.add(ENDPOINT_TYPE, "x", b"x".to_vec(), None).unwrap();
    c.set_snapshot("n", Arc::new(s.clone())).unwrap();
    let r = got(&c.watch(req("n", ENDPOINT_TYPE, "", &[])).unwrap()).unwrap();
    // A parked wildcard watch, then a snapshot at the same version with one
    // more resource: go-control-plane's SetSnapshot compares versions only.
    let mut q = req("n", ENDPOINT_TYPE, V1, &[]);
    q.known = known(&r);
    let parked = c.watch(q.clone()).unwrap();
    s.add(ENDPOINT_TYPE, "y", b"y".to_vec(), None).unwrap();
    c.set_snapshot("n", Arc::new(s.clone())).unwrap();
    assert!(got(&parked).is_none());
    // A new watch at that version sees the new name, and gets everything.
    let r2 = got(&c.watch(q).unwrap()).unwrap();
    assert_eq!(r2.names(), vec!["x", "y"]);
    // A new version answers the parked one, whole.
    let mut s2 = s.clone();
    s2.set_version(ENDPOINT_TYPE, V2).unwrap();
    c.set_snapshot("n", Arc::new(s2)).unwrap();
    let r3 = got(&parked).unwrap();
    assert_eq!((r3.version.as_str(), r3.names()), (V2, vec!["x", "y"]));
}

#[test]
fn ads_watches_naming_part_of_a_type_are_dropped() {
    let c = ads_cache();
    let mut s = Snapshot::new(V1);
    s.add(ENDPOINT_TYPE, "a", b"ea".to_vec(), None).unwrap();
    s.add(ENDPOINT_TYPE, "b", b"eb".to_vec(), None).unwrap();
    c.set_snapshot("n", Arc::new(s)).unwrap();
    // go-control-plane never answers it and keeps no watch for it.
    let partial = c.watch(req("n", ENDPOINT_TYPE, "", &["a"])).unwrap();
    let e = partial.next(Wait::Never).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Closed);
    assert!(e.message.contains("ADS"), "{e}");
    assert_eq!(num_watches(&c, "n"), (0, 0));
    let full = c.watch(req("n", ENDPOINT_TYPE, "", &["a", "b"])).unwrap();
    assert_eq!(got(&full).unwrap().names(), vec!["a", "b"]);
    let wildcard = c.watch(req("n", ENDPOINT_TYPE, "", &[])).unwrap();
    assert!(got(&wildcard).is_some(), "wildcard is never held");
    // Parked, then a snapshot with more resources than it names: dropped then.
    let mut q = req("n", ENDPOINT_TYPE, V1, &["a", "b"]);
    q.known = HashMap::from([("a".into(), V1.into()), ("b".into(), V1.into())]);
    let early = c.watch(q).unwrap();
    assert!(got(&early).is_none());
    let mut s = Snapshot::new(V2);
    s.add(ENDPOINT_TYPE, "a", b"ea".to_vec(), None).unwrap();
    s.add(ENDPOINT_TYPE, "b", b"eb".to_vec(), None).unwrap();
    s.add(ENDPOINT_TYPE, "c", b"ec".to_vec(), None).unwrap();
    c.set_snapshot("n", Arc::new(s)).unwrap();
    assert_eq!(early.next(Wait::Never).unwrap_err().kind, ErrorKind::Closed);
    // Without ADS the same request is answered at once.
    let c = cache();
    let mut s = Snapshot::new(V1);
    s.add(ENDPOINT_TYPE, "a", b"ea".to_vec(), None).unwrap();
    s.add(ENDPOINT_TYPE, "b", b"eb".to_vec(), None).unwrap();
    c.set_snapshot("n", Arc::new(s)).unwrap();
    assert_eq!(got(&c.watch(req("n", ENDPOINT_TYPE, "", &["a"])).unwrap()).unwrap().names(), vec!["a"]);
}

#[test]
fn set_snapshot_visits_only_changed_types() {
    let c = cache();
    c.set_snapshot("n", Arc::new(fixture(V1))).unwrap();
    let mut parked = Vec::new();
    for t in TYPES {
        let owned = names_of(t);
        let names: Vec<&str> = owned.iter().map(String::as_str).collect();
        let r = got(&c.watch(req("n", t, "", &names)).unwrap()).unwrap();
        let mut q = req("n", t, V1, &names);
        q.known = known(&r);
        parked.push(c.watch(q).unwrap());
    }
    assert_eq!(num_watches(&c, "n"), (4, 0));
    // Same snapshot content again (new objects): nothing answered.
    c.set_snapshot("n", Arc::new(fixture(V1))).unwrap();
    assert_eq!(num_watches(&c, "n"), (4, 0));
    assert!(parked.iter().all(|w| w.is_waiting()));
}

#[test]
fn clear_ends_open_watches_and_later_watches_park() {
    let c = cache();
    let w = c.watch(req("n", CLUSTER_TYPE, "", &[])).unwrap();
    let d = c.delta_watch(WatchRequest { node: "n".into(), type_url: CLUSTER_TYPE.into(), wildcard: true, ..Default::default() }).unwrap();
    c.clear_snapshot("n").unwrap();
    assert_eq!(w.next(Wait::Forever).unwrap_err().kind, ErrorKind::Closed);
    assert_eq!(d.next(Wait::Forever).unwrap_err().kind, ErrorKind::Closed);
    assert!(c.status_keys().unwrap().is_empty());
    assert_eq!(c.status("n").unwrap_err().kind, ErrorKind::NotFound);
    // A watch on the cleared node parks until a snapshot is set again.
    let w = c.watch(req("n", CLUSTER_TYPE, "", &[])).unwrap();
    assert!(got(&w).is_none());
    c.set_snapshot("n", Arc::new(fixture(V2))).unwrap();
    assert_eq!(got(&w).unwrap().version, V2);
    w.close(); // after the response: still fine
}

#[test]
fn closing_the_cache_ends_watches() {
    let c = cache();
    let w = c.watch(req("n", CLUSTER_TYPE, "", &[])).unwrap();
    c.close();
    c.close();
    assert_eq!(w.next(Wait::Forever).unwrap_err().kind, ErrorKind::Closed);
    assert_eq!(c.watch(req("n", CLUSTER_TYPE, "", &[])).unwrap_err().kind, ErrorKind::Closed);
    assert_eq!(c.set_snapshot("n", Arc::new(fixture(V1))).unwrap_err().kind, ErrorKind::Closed);
    let c = cache();
    let w = c.watch(req("n", CLUSTER_TYPE, "", &[])).unwrap();
    drop(c);
    assert_eq!(w.next(Wait::Forever).unwrap_err().kind, ErrorKind::Closed);
    w.close();
}

/// Every later call on a closed cache is Closed (the C ABI contract), the
/// reads and `clear_snapshot` included: they used to answer NotFound / Ok
/// from the emptied node map.
#[test]
fn reads_and_clear_on_a_closed_cache_are_closed() {
    let c = cache();
    c.set_snapshot("n", Arc::new(fixture(V1))).unwrap();
    let _w = c.watch(req("n", CLUSTER_TYPE, V1, &[])).unwrap();
    assert!(c.get_snapshot("n").is_ok() && c.status("n").is_ok());
    c.close();
    assert_eq!(c.get_snapshot("n").unwrap_err().kind, ErrorKind::Closed);
    assert_eq!(c.status("n").unwrap_err().kind, ErrorKind::Closed);
    assert_eq!(c.status_keys().unwrap_err().kind, ErrorKind::Closed);
    assert_eq!(c.clear_snapshot("n").unwrap_err().kind, ErrorKind::Closed);
    assert_eq!(c.fetch(req("n", CLUSTER_TYPE, "", &[])).unwrap_err().kind, ErrorKind::Closed);
    assert_eq!(c.delta_watch(req("n", CLUSTER_TYPE, "", &[])).unwrap_err().kind, ErrorKind::Closed);
}

// ---- status ----------------------------------------------------------------

#[test]
fn status_info_and_keys() {
    let c = cache();
    c.set_snapshot("quiet", Arc::new(fixture(V1))).unwrap();
    assert!(c.status_keys().unwrap().is_empty(), "status comes from watches, not snapshots");
    assert_eq!(c.status("quiet").unwrap_err().kind, ErrorKind::NotFound);
    let before = std::time::SystemTime::now();
    let _w = c.watch(req("a", CLUSTER_TYPE, "", &[])).unwrap();
    let _d = c.delta_watch(WatchRequest { node: "b".into(), type_url: CLUSTER_TYPE.into(), wildcard: true, ..Default::default() }).unwrap();
    assert_eq!(c.status_keys().unwrap(), vec!["a".to_string(), "b".to_string()]);
    let a = c.status("a").unwrap();
    assert_eq!((a.num_watches, a.num_delta_watches), (1, 0));
    assert!(a.last_watch_request.unwrap() >= before);
    assert!(a.last_delta_watch_request.is_none());
    let b = c.status("b").unwrap();
    assert_eq!((b.num_watches, b.num_delta_watches), (0, 1));
    assert!(b.last_delta_watch_request.is_some());
    let json: serde_json::Value = serde_json::from_slice(&b.to_json()).unwrap();
    assert_eq!(json["node"], "b");
    assert_eq!(json["num_delta_watches"], 1);
    assert!(json["last_watch_request_unix_ms"].is_null());
}

// ---- fetch -----------------------------------------------------------------

#[test]
fn fetch_up_to_date_not_found_and_single_resource() {
    // TestSnapshotCacheFetch / TestSnapshotSingleResourceFetch
    let c = cache();
    assert_eq!(c.fetch(req("n", CLUSTER_TYPE, "", &[])).unwrap_err().kind, ErrorKind::NotFound);
    let mut s = fixture(V1);
    s.add(ENDPOINT_TYPE, "c1", b"other".to_vec(), None).unwrap();
    c.set_snapshot("n", Arc::new(s)).unwrap();
    for t in TYPES {
        let r = c.fetch(req("n", t, "", &[])).unwrap();
        assert_eq!(r.version, V1);
        assert!(!r.resources.is_empty());
        assert_eq!(c.fetch(req("n", t, V1, &[])).unwrap_err().kind, ErrorKind::UpToDate);
    }
    let r = c.fetch(req("n", ENDPOINT_TYPE, "", &["c1"])).unwrap();
    assert_eq!(r.names(), vec!["c1"]);
    assert!(c.status_keys().unwrap().is_empty(), "fetch opens no status");
}

// ---- heartbeats ------------------------------------------------------------

#[test]
fn heartbeats_go_to_watches_covering_ttl_resources() {
    // TestSnapshotCacheWithTTL
    let c = Cache::new(CacheConfig { heartbeat_interval: Some(Duration::from_millis(20)), ..Default::default() }).unwrap();
    let mut s = Snapshot::new(V1);
    s.add(ENDPOINT_TYPE, "ttl", b"with ttl".to_vec(), Some(Duration::from_secs(2))).unwrap();
    s.add(ENDPOINT_TYPE, "plain", b"no ttl".to_vec(), None).unwrap();
    c.set_snapshot("n", Arc::new(s)).unwrap();
    // First responses are ordinary and carry the TTL.
    let r = got(&c.watch(req("n", ENDPOINT_TYPE, "", &["ttl", "plain"])).unwrap()).unwrap();
    assert!(!r.heartbeat);
    let d = decode(&r.encode()).unwrap();
    assert_eq!(d.resources.iter().map(|x| (x.0.as_str(), x.2)).collect::<Vec<_>>(), vec![("plain", -1), ("ttl", 2000)]);
    let open = |names: &[&str]| {
        let mut q = req("n", ENDPOINT_TYPE, V1, names);
        q.known = known(&r);
        c.watch(q).unwrap()
    };
    let with_ttl = open(&["ttl", "plain"]);
    let wildcard = {
        let mut q = req("n", ENDPOINT_TYPE, V1, &[]);
        q.known = known(&r);
        c.watch(q).unwrap()
    };
    let without = open(&["plain"]);
    for w in [&with_ttl, &wildcard] {
        let hb = w.next(Wait::from_ms(2000)).expect("heartbeat");
        assert!(hb.heartbeat);
        assert_eq!(hb.version, V1);
        assert_eq!(hb.names(), vec!["ttl"]);
    }
    // go-control-plane's heartbeat goes to every watch of a type with
    // TTL'd resources, with the covered ones: none here.
    let hb = without.next(Wait::from_ms(2000)).expect("heartbeat");
    assert!(hb.heartbeat && hb.names().is_empty());
    assert_eq!(num_watches(&c, "n"), (0, 0));
}

#[test]
fn no_heartbeat_thread_without_interval() {
    let c = cache();
    let mut s = Snapshot::new(V1);
    s.add(ENDPOINT_TYPE, "ttl", b"x".to_vec(), Some(Duration::from_millis(10))).unwrap();
    c.set_snapshot("n", Arc::new(s)).unwrap();
    let r = got(&c.watch(req("n", ENDPOINT_TYPE, "", &["ttl"])).unwrap()).unwrap();
    let mut q = req("n", ENDPOINT_TYPE, V1, &["ttl"]);
    q.known = known(&r);
    let w = c.watch(q).unwrap();
    assert_eq!(w.next(Wait::from_ms(60)).unwrap_err().kind, ErrorKind::Timeout);
    assert_eq!(Cache::new(CacheConfig { heartbeat_interval: Some(Duration::ZERO), ..Default::default() }).err().unwrap().kind, ErrorKind::InvalidArgument);
}

// ---- delta -----------------------------------------------------------------

fn dreq(node: &str, t: &str, wildcard: bool, names: &[&str], known: HashMap<String, String>, first: bool) -> WatchRequest {
    WatchRequest {
        node: node.into(),
        type_url: t.into(),
        names: names.iter().map(|s| s.to_string()).collect(),
        wildcard,
        known,
        first,
        ..Default::default()
    }
}

#[test]
fn delta_wildcard_watch() {
    // TestSnapshotCacheDeltaWatch
    let c = cache();
    // First wildcard request without a snapshot parks, answers on set.
    let w = c.delta_watch(dreq("n", ENDPOINT_TYPE, true, &[], HashMap::new(), true)).unwrap();
    assert_eq!(num_watches(&c, "n"), (0, 1));
    let mut s = Snapshot::new(V1);
    s.add(ENDPOINT_TYPE, "a", b"ea".to_vec(), None).unwrap();
    s.add(ENDPOINT_TYPE, "b", b"eb".to_vec(), None).unwrap();
    c.set_snapshot("n", Arc::new(s)).unwrap();
    let r = got(&w).unwrap();
    assert_eq!(r.kind, ResponseKind::Delta);
    assert_eq!(r.version, V1);
    assert_eq!(r.names(), vec!["a", "b"]);
    assert_eq!(r.next_state.len(), 2);
    assert!(r.removed.is_empty());
    // Up to date: parks.
    let w = c.delta_watch(dreq("n", ENDPOINT_TYPE, true, &[], known(&r), false)).unwrap();
    assert!(got(&w).is_none());
    // Changing one resource sends only it.
    let mut s = Snapshot::new(V2);
    s.add(ENDPOINT_TYPE, "a", b"ea".to_vec(), None).unwrap();
    s.add(ENDPOINT_TYPE, "b", b"eb changed".to_vec(), None).unwrap();
    c.set_snapshot("n", Arc::new(s)).unwrap();
    let r2 = got(&w).unwrap();
    assert_eq!(r2.names(), vec!["b"]);
    assert_eq!(r2.next_state["a"], r.next_state["a"]);
    assert_ne!(r2.next_state["b"], r.next_state["b"]);
    // A first wildcard request on an empty type is answered (empty).
    let e = c.delta_watch(dreq("n", ROUTE_TYPE, true, &[], HashMap::new(), true)).unwrap();
    let r = got(&e).unwrap();
    assert!(r.resources.is_empty() && r.removed.is_empty());
    let e = c.delta_watch(dreq("n", ROUTE_TYPE, true, &[], HashMap::new(), false)).unwrap();
    assert!(got(&e).is_none());
}

#[test]
fn delta_explicit_subscription_and_unsubscribe() {
    let c = cache();
    let mut s = Snapshot::new(V1);
    for n in ["a", "b", "c"] {
        s.add(ENDPOINT_TYPE, n, n.as_bytes().to_vec(), None).unwrap();
    }
    c.set_snapshot("n", Arc::new(s)).unwrap();
    let r = got(&c.delta_watch(dreq("n", ENDPOINT_TYPE, false, &["a", "b", "x"], HashMap::new(), true)).unwrap()).unwrap();
    assert_eq!(r.names(), vec!["a", "b"]);
    assert_eq!(r.next_state.keys().map(|k| &**k).collect::<Vec<&str>>(), vec!["a", "b"]);
    // Unsubscribe b: the stream drops it from names and known; a change to b is not sent.
    let mut k = known(&r);
    k.remove("b");
    let w = c.delta_watch(dreq("n", ENDPOINT_TYPE, false, &["a"], k, false)).unwrap();
    assert!(got(&w).is_none());
    let mut s = Snapshot::new(V2);
    s.add(ENDPOINT_TYPE, "a", b"a".to_vec(), None).unwrap();
    s.add(ENDPOINT_TYPE, "b", b"b2".to_vec(), None).unwrap();
    s.add(ENDPOINT_TYPE, "c", b"c2".to_vec(), None).unwrap();
    c.set_snapshot("n", Arc::new(s)).unwrap();
    assert!(got(&w).is_none(), "nothing the stream cares about changed");
    assert_eq!(num_watches(&c, "n"), (0, 1));
    // Subscribing to a resource that appears later.
    let w2 = c.delta_watch(dreq("n", ENDPOINT_TYPE, false, &["a", "late"], known(&r).into_iter().filter(|(k, _)| k == "a").collect(), false)).unwrap();
    assert!(got(&w2).is_none());
    let mut s = Snapshot::new("v3");
    s.add(ENDPOINT_TYPE, "a", b"a".to_vec(), None).unwrap();
    s.add(ENDPOINT_TYPE, "late", b"late".to_vec(), None).unwrap();
    c.set_snapshot("n", Arc::new(s)).unwrap();
    assert_eq!(got(&w2).unwrap().names(), vec!["late"]);
}

#[test]
fn delta_removals_are_reported() {
    // TestDeltaRemoveResources
    let c = cache();
    let mut s = Snapshot::new(V1);
    s.add(ENDPOINT_TYPE, "a", b"a".to_vec(), None).unwrap();
    s.add(ENDPOINT_TYPE, "b", b"b".to_vec(), None).unwrap();
    c.set_snapshot("n", Arc::new(s)).unwrap();
    let r = got(&c.delta_watch(dreq("n", ENDPOINT_TYPE, true, &[], HashMap::new(), true)).unwrap()).unwrap();
    let wild = c.delta_watch(dreq("n", ENDPOINT_TYPE, true, &[], known(&r), false)).unwrap();
    let explicit = c.delta_watch(dreq("n", ENDPOINT_TYPE, false, &["b"], known(&r), false)).unwrap();
    let mut s = Snapshot::new(V2);
    s.add(ENDPOINT_TYPE, "a", b"a".to_vec(), None).unwrap();
    c.set_snapshot("n", Arc::new(s)).unwrap();
    for w in [&wild, &explicit] {
        let r = got(w).unwrap();
        assert!(r.resources.is_empty());
        assert_eq!(r.removed, vec!["b".to_string()]);
        assert!(!r.next_state.contains_key("b"));
    }
    // A stream that reconnects knowing a vanished name is told at once.
    let mut k = HashMap::new();
    k.insert("gone".to_string(), "x".to_string());
    let r = got(&c.delta_watch(dreq("n", ENDPOINT_TYPE, true, &[], k, true)).unwrap()).unwrap();
    assert_eq!(r.removed, vec!["gone".to_string()]);
    assert_eq!(r.names(), vec!["a"]);
}

#[test]
fn delta_cancel_and_timeout() {
    // TestSnapshotCacheDeltaWatchCancel / TestSnapshotDeltaCacheWatchTimeout
    let c = cache();
    let w = c.delta_watch(dreq("n", ENDPOINT_TYPE, true, &[], HashMap::new(), false)).unwrap();
    assert_eq!(w.next(Wait::from_ms(20)).unwrap_err().kind, ErrorKind::Timeout);
    assert_eq!(num_watches(&c, "n"), (0, 1));
    w.close();
    w.close();
    assert_eq!(num_watches(&c, "n"), (0, 0));
    c.set_snapshot("n", Arc::new(fixture(V1))).unwrap();
    assert_eq!(w.next(Wait::Never).unwrap_err().kind, ErrorKind::Closed);
}

// ---- cost rules ------------------------------------------------------------

#[test]
fn versions_are_hashed_once_and_only_for_changed_bytes() {
    let c = cache();
    let mut s1 = Snapshot::new(V1);
    s1.add(ENDPOINT_TYPE, "same", b"unchanged".to_vec(), None).unwrap();
    s1.add(ENDPOINT_TYPE, "edit", b"before".to_vec(), None).unwrap();
    c.set_snapshot("n", Arc::new(s1)).unwrap();
    let r = got(&c.delta_watch(dreq("n", ENDPOINT_TYPE, true, &[], HashMap::new(), true)).unwrap()).unwrap();
    let mut s2 = Snapshot::new(V2);
    s2.add(ENDPOINT_TYPE, "same", b"unchanged".to_vec(), None).unwrap();
    s2.add(ENDPOINT_TYPE, "edit", b"after".to_vec(), None).unwrap();
    let s2 = Arc::new(s2);
    c.set_snapshot("n", s2.clone()).unwrap();
    let set = s2.type_set(ENDPOINT_TYPE).unwrap();
    assert!(set.get("same").unwrap().version_known(), "inherited from the previous snapshot, not hashed");
    assert!(!set.get("edit").unwrap().version_known(), "changed: hashed only when a watch needs it");
    assert_eq!(set.get("same").unwrap().version(), &r.next_state["same"]);
}

#[test]
fn one_snapshot_many_nodes_shares_bytes() {
    let c = cache();
    let s = Arc::new(fixture(V1));
    for n in 0..10 {
        c.set_snapshot(&format!("n{n}"), s.clone()).unwrap();
    }
    let a = got(&c.watch(req("n1", CLUSTER_TYPE, "", &[])).unwrap()).unwrap();
    let b = got(&c.watch(req("n7", CLUSTER_TYPE, "", &[])).unwrap()).unwrap();
    assert!(Arc::ptr_eq(a.resources[0].bytes(), b.resources[0].bytes()));
}

// ---- encoding --------------------------------------------------------------

#[test]
fn encoding_round_trips() {
    let c = cache();
    c.set_snapshot("n", Arc::new(fixture(V1))).unwrap();
    let r = got(&c.delta_watch(dreq("n", CLUSTER_TYPE, true, &[], [("old".to_string(), "1".to_string())].into(), true)).unwrap()).unwrap();
    let bytes = r.encode();
    assert_eq!(bytes.len(), r.encoded_len());
    let d = decode(&bytes).unwrap();
    assert_eq!(&bytes[..4], b"MRX1");
    assert_eq!(d.kind, 2);
    assert!(!d.heartbeat);
    assert_eq!(d.version, V1);
    assert_eq!(d.type_url, CLUSTER_TYPE);
    assert_eq!(d.resources, vec![("c0".into(), r.resources[0].version().to_string(), -1, b"cluster c0".to_vec())]);
    assert_eq!(d.removed, vec!["old".to_string()]);
    assert_eq!(d.next_state.len(), 1);
    assert!(decode(&bytes[..bytes.len() - 1]).is_none());
}

#[test]
fn explicit_empty_sotw_subscription_is_not_wildcard() {
    let c = cache();
    c.set_snapshot("n", Arc::new(fixture(V1))).unwrap();
    let explicit = c.watch(WatchRequest { explicit: true, ..req("n", ENDPOINT_TYPE, V1, &[]) }).unwrap();
    let legacy = c.watch(req("n", ENDPOINT_TYPE, V1, &[])).unwrap();
    assert!(got(&legacy).is_some(), "a legacy empty request is wildcard: answered with the endpoints");
    assert!(got(&explicit).is_none(), "an explicit empty subscription asks for nothing");
}

#[test]
fn an_untaken_queued_event_is_freed_with_the_cache() {
    let c = cache();
    let w = c.watch(queued("n", CLUSTER_TYPE, "", &[], 1)).unwrap();
    c.set_snapshot("n", Arc::new(fixture(V1))).unwrap();
    let slot = Arc::downgrade(&w.slot);
    drop(w);
    // The queue holds the answered watch until its event is taken; nobody
    // takes it, and the cache goes away.
    drop(c);
    assert!(slot.upgrade().is_none(), "the ready queue and the watch keep each other alive");
}

#[test]
fn concurrent_closes_report_every_queued_watch_once() {
    const WATCHES: u64 = 16;
    for round in 0..500 {
        let c = cache();
        let ws: Vec<CacheWatch> = (0..WATCHES).map(|i| c.watch(queued("n", CLUSTER_TYPE, "", &[], i)).unwrap()).collect();
        // A host thread blocked in take_ready hears Closed only after every
        // watch's closed event.
        let mut seen = std::thread::scope(|s| {
            let taker = s.spawn(|| {
                let mut seen = Vec::new();
                loop {
                    match c.take_ready(Wait::Forever, 64) {
                        Ok(events) => seen.extend(events.into_iter().map(|e| (e.token, e.outcome.unwrap_err()))),
                        Err(e) => {
                            assert_eq!(e.kind, ErrorKind::Closed, "round {round}: {e}");
                            return seen;
                        }
                    }
                }
            });
            let a = s.spawn(|| c.close());
            let b = s.spawn(|| c.close());
            a.join().unwrap();
            b.join().unwrap();
            taker.join().unwrap()
        });
        seen.sort();
        assert_eq!(seen.len() as u64, WATCHES, "round {round}: every watch reports closed once: {seen:?}");
        assert!(seen.iter().enumerate().all(|(i, (t, why))| *t == i as u64 && *why == watch::CACHE_CLOSED), "round {round}: {seen:?}");
        drop(ws);
    }
}

#[test]
fn a_heartbeat_thread_panic_is_reported_as_panic() {
    let c = Cache::new(CacheConfig { heartbeat_interval: Some(Duration::from_millis(5)), ..Default::default() }).unwrap();
    let w = c.watch(queued("n", CLUSTER_TYPE, "", &[], 9)).unwrap();
    c.shared.panic_next_heartbeat.store(true, std::sync::atomic::Ordering::SeqCst);
    // The queue wakes with the watch's end, then the cache's reason.
    let ev = c.take_ready(Wait::from_ms(10_000), 8).unwrap();
    assert_eq!((ev.len(), ev[0].token, ev[0].outcome.as_ref().unwrap_err()), (1, 9, &watch::PANICKED));
    let e = c.take_ready(Wait::from_ms(10_000), 8).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Panic, "{e}");
    assert!(e.message.contains("cache heartbeat thread panicked: heartbeat test panic"), "{e}");
    assert_eq!(c.get_snapshot("n").unwrap_err().kind, ErrorKind::Panic);
    assert_eq!(c.set_snapshot("n", Arc::new(fixture(V1))).unwrap_err().kind, ErrorKind::Panic);
    assert_eq!(w.next(Wait::Never).unwrap_err().kind, ErrorKind::Closed);
}

// ---- shared answers --------------------------------------------------------

/// Watches that ask the same of the same state share one response (and
/// one encoding); a different question, a heartbeat or a new state gets
/// its own.
#[test]
fn watches_asking_the_same_share_one_answer() {
    let c = cache();
    let snap = Arc::new(fixture(V1));
    for n in ["a", "b", "c"] {
        c.set_snapshot(n, snap.clone()).unwrap();
    }
    let wa = c.watch(req("a", ENDPOINT_TYPE, "", &["c0"])).unwrap();
    let wb = c.watch(req("b", ENDPOINT_TYPE, "", &["c0"])).unwrap();
    let wc = c.watch(req("c", ENDPOINT_TYPE, "", &[])).unwrap(); // wildcard
    let (ra, rb, rc) = (got(&wa).unwrap(), got(&wb).unwrap(), got(&wc).unwrap());
    assert!(Arc::ptr_eq(&ra, &rb), "same names, same state: one response");
    assert_eq!(ra.id(), rb.id());
    assert!(Arc::ptr_eq(ra.encoded(), rb.encoded()), "encoded once");
    assert_ne!(ra.id(), rc.id(), "wildcard is another question");
    assert_eq!(ra.names(), rc.names(), "with the same resources here");

    // Parked watches answered by a new snapshot set for each node share too.
    let w1 = c.watch(WatchRequest { known: known(&ra), ..req("a", ENDPOINT_TYPE, V1, &["c0"]) }).unwrap();
    let w2 = c.watch(WatchRequest { known: known(&rb), ..req("b", ENDPOINT_TYPE, V1, &["c0"]) }).unwrap();
    assert!(got(&w1).is_none() && got(&w2).is_none());
    let mut next = fixture(V2);
    next.remove(ENDPOINT_TYPE, "c0").unwrap();
    next.add(ENDPOINT_TYPE, "c0", b"endpoints c0 :9090".to_vec(), None).unwrap();
    let next = Arc::new(next);
    c.set_snapshot("a", next.clone()).unwrap();
    c.set_snapshot("b", next).unwrap();
    let (r1, r2) = (got(&w1).unwrap(), got(&w2).unwrap());
    assert!(Arc::ptr_eq(&r1, &r2));
    assert_ne!(r1.id(), ra.id());
    assert_eq!(r1.version, V2);
    assert_eq!(&r1.resources[0].bytes()[..], b"endpoints c0 :9090");

    // The same resources under another version are another answer.
    let mut v3 = (*c.get_snapshot("a").unwrap()).clone();
    v3.set_version(ENDPOINT_TYPE, "v3").unwrap();
    c.set_snapshot("c", Arc::new(v3)).unwrap();
    let w3 = c.watch(req("c", ENDPOINT_TYPE, V2, &["c0"])).unwrap();
    let r3 = got(&w3).unwrap();
    assert_eq!(r3.version, "v3");
    assert_ne!(r3.id(), r1.id());
}

/// A snapshot set for many nodes compares its types with the previous
/// one once: the second node reuses the first one's result.
#[test]
fn a_fleet_wide_snapshot_is_compared_once_per_previous_snapshot() {
    let c = cache();
    let old = Arc::new(fixture(V1));
    let mut new = (*old).clone();
    new.set_version(ROUTE_TYPE, V2).unwrap();
    let new = Arc::new(new);
    let d1 = new.diff_from(&old);
    let d2 = new.diff_from(&old);
    assert!(Arc::ptr_eq(&d1, &d2));
    assert!(d1.unchanged(CLUSTER_TYPE) && !d1.unchanged(ROUTE_TYPE));
    assert!(d1.unchanged("type.googleapis.com/not.in.either"), "same default version");
    let other = Arc::new(fixture(V2));
    let d3 = new.diff_from(&other);
    assert!(!Arc::ptr_eq(&d1, &d3));
    assert!(!d3.unchanged("type.googleapis.com/not.in.either"), "V1 -> V2 default version");
    // And the cache answers exactly the changed types.
    for n in ["a", "b"] {
        c.set_snapshot(n, old.clone()).unwrap();
    }
    // Opened at the version, names returned: parked.
    let known_c0: HashMap<String, String> = [("c0".to_string(), V1.to_string())].into();
    let known_r0: HashMap<String, String> = [("r0".to_string(), V1.to_string())].into();
    let we = c.watch(WatchRequest { known: known_c0, ..req("a", ENDPOINT_TYPE, V1, &["c0"]) }).unwrap();
    let wr = c.watch(WatchRequest { known: known_r0, ..req("b", ROUTE_TYPE, V1, &["r0"]) }).unwrap();
    c.set_snapshot("a", new.clone()).unwrap();
    c.set_snapshot("b", new).unwrap();
    assert!(got(&we).is_none(), "endpoints unchanged");
    assert_eq!(got(&wr).unwrap().version, V2);
}

// ---- delta streams that continue in the library ---------------------------

/// A small deterministic generator (no dependency) for the random streams.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn answer_of(r: &Response) -> (Vec<(String, Vec<u8>)>, Vec<String>) {
    (r.resources.iter().map(|x| (x.name().to_string(), x.bytes().to_vec())).collect(), r.removed.clone())
}

/// Two streams on the same node and type see the same random history of
/// copy-on-write edits: one passes its versions back with every watch
/// (the full walk), the other opens each watch after the previous one (the
/// state kept in the library, edits only). Every answer, and the state
/// after it, must be the same; the continued answers carry no next state
/// in their encoding.
#[test]
fn a_continued_delta_stream_answers_as_one_that_passes_its_state() {
    let fast_before = eval::EDIT_PATH_USED.load(std::sync::atomic::Ordering::Relaxed);
    for seed in 1..=40u64 {
        let mut g = Lcg(seed);
        let c = cache();
        let wildcard = seed % 3 != 0;
        let names: Vec<String> = (0..12).map(|i| format!("r{i:02}")).collect();
        let sub: Vec<&str> = if wildcard { vec![] } else { names.iter().step_by(2).map(String::as_str).collect() };
        let mut s = Snapshot::new("v0");
        for n in &names[..6] {
            s.add(ENDPOINT_TYPE, n, format!("{n}:0").into_bytes(), None).unwrap();
        }
        c.set_snapshot("n", Arc::new(s)).unwrap();
        let passed = c.delta_watch(dreq("n", ENDPOINT_TYPE, wildcard, &sub, HashMap::new(), true)).unwrap();
        let kept = c.delta_watch(dreq("n", ENDPOINT_TYPE, wildcard, &sub, HashMap::new(), true)).unwrap();
        let (mut rp, mut rk) = (got(&passed).unwrap(), got(&kept).unwrap());
        assert_eq!(answer_of(&rp), answer_of(&rk));
        let mut kept_prev = kept;
        let mut pending: Option<(CacheWatch, CacheWatch)> = None;
        let mut version = 0;
        for step in 0..60 {
            let (wp, wk) = match pending.take() {
                Some(p) => p,
                None => {
                    let wp = c.delta_watch(dreq("n", ENDPOINT_TYPE, wildcard, &sub, known(&rp), false)).unwrap();
                    let wk = c.delta_watch_after(&kept_prev, dreq("n", ENDPOINT_TYPE, wildcard, &sub, HashMap::new(), false)).unwrap();
                    (wp, wk)
                }
            };
            // 1-3 snapshots before the streams look again (a parked watch
            // sees several generations of edits).
            for _ in 0..=g.below(3) {
                let mut next = (*c.get_snapshot("n").unwrap()).clone();
                for _ in 0..=g.below(3) {
                    let n = &names[g.below(names.len() as u64) as usize];
                    let present = next.type_set(ENDPOINT_TYPE).is_some_and(|t| t.get(n).is_some());
                    match (present, g.below(4)) {
                        (true, 0) => next.remove(ENDPOINT_TYPE, n).unwrap(),
                        (true, 1) => {
                            // Replaced by equal bytes: no change to send.
                            let old = next.type_set(ENDPOINT_TYPE).unwrap().get(n).unwrap().bytes().clone();
                            next.remove(ENDPOINT_TYPE, n).unwrap();
                            next.add(ENDPOINT_TYPE, n, old.to_vec(), None).unwrap();
                        }
                        (true, _) => {
                            next.remove(ENDPOINT_TYPE, n).unwrap();
                            next.add(ENDPOINT_TYPE, n, format!("{n}:{step}:{}", g.next()).into_bytes(), None).unwrap();
                        }
                        (false, _) => next.add(ENDPOINT_TYPE, n, format!("{n}:{step}").into_bytes(), None).unwrap(),
                    }
                }
                version += 1;
                next.set_version(ENDPOINT_TYPE, &format!("v{version}")).unwrap();
                c.set_snapshot("n", Arc::new(next)).unwrap();
            }
            match (got(&wp), got(&wk)) {
                (None, None) => pending = Some((wp, wk)), // both parked: they look again
                (Some(a), Some(b)) => {
                    rp = a;
                    rk = b;
                    assert_eq!(answer_of(&rp), answer_of(&rk), "seed {seed} step {step}");
                    assert_eq!(known(&rp), known(&rk), "seed {seed} step {step}: the kept state");
                    assert!(rk.state_kept() && !rp.state_kept());
                    assert!(decode(rk.encoded()).unwrap().next_state.is_empty());
                    kept_prev = wk;
                }
                (a, b) => panic!("seed {seed} step {step}: passed {:?} vs kept {:?}", a.map(|r| answer_of(&r)), b.map(|r| answer_of(&r))),
            }
        }
    }
    // Other tests may run the fast path too; this one must have, often.
    let fast = eval::EDIT_PATH_USED.load(std::sync::atomic::Ordering::Relaxed) - fast_before;
    assert!(fast > 1000, "the edits-only path ran {fast} times");
}

#[test]
fn a_delta_watch_continues_only_a_taken_delta_answer_of_its_stream() {
    let c = cache();
    c.set_snapshot("n", Arc::new(fixture(V1))).unwrap();
    let sotw = c.watch(req("n", ENDPOINT_TYPE, "", &["c0"])).unwrap();
    let e = c.delta_watch_after(&sotw, dreq("n", ENDPOINT_TYPE, true, &[], HashMap::new(), false)).unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidArgument, "{e}");
    let d = c.delta_watch(dreq("n", ENDPOINT_TYPE, true, &[], HashMap::new(), true)).unwrap();
    let other_type = c.delta_watch_after(&d, dreq("n", CLUSTER_TYPE, true, &[], HashMap::new(), false)).unwrap_err();
    assert_eq!(other_type.kind, ErrorKind::InvalidArgument);
    // Not taken yet: nothing to continue from.
    let e = c.delta_watch_after(&d, dreq("n", ENDPOINT_TYPE, true, &[], HashMap::new(), false)).unwrap_err();
    assert!(e.message.contains("taken"), "{e}");
    let r = got(&d).unwrap();
    let with_known = c.delta_watch_after(&d, dreq("n", ENDPOINT_TYPE, true, &[], known(&r), false)).unwrap_err();
    assert_eq!(with_known.kind, ErrorKind::InvalidArgument);
    let next = c.delta_watch_after(&d, dreq("n", ENDPOINT_TYPE, true, &[], HashMap::new(), false)).unwrap();
    assert!(got(&next).is_none(), "nothing changed: parked");
}
