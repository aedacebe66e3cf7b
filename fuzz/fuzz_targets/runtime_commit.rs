//! `mr_runtime_commit`, differential. The input is a sequence of
//! configurations separated by NUL bytes, each prefixed by a byte whose low
//! bit picks a soft or hard commit. Runtime A commits them in order (so most
//! commits take the incremental planner's paths); runtime B commits only
//! the last configuration A accepted, from scratch. Both must end with the
//! same protocols (name, kind, table, state, preference, routes, disabled)
//! and the same routes. A refused commit must leave A unchanged.

#![no_main]

use libfuzzer_sys::fuzz_target;
use meshring::lifecycle::{Options, Runtime};
use meshring::sync::Wait;
use serde_json::Value;

fn runtime() -> Runtime {
    Runtime::new(Options { feed_chunk: 4, event_backlog: 16 }).expect("runtime")
}

/// `show protocols` without what legitimately differs (times, info text).
fn protocols(rt: &Runtime) -> Vec<Value> {
    let v: Value = serde_json::from_slice(&rt.show_protocols().expect("show protocols")).expect("JSON");
    let mut list = v.as_array().expect("array").clone();
    for p in &mut list {
        let o = p.as_object_mut().expect("object");
        o.remove("since_ms");
        o.remove("info");
    }
    list
}

/// `show route`, sorted by (table, prefix, protocol). Among routes of equal
/// preference the earlier import wins, and import order legitimately
/// differs between the two histories, so `best` is kept only where one
/// route has the top preference alone.
fn routes(rt: &Runtime) -> Vec<Value> {
    let v: Value = serde_json::from_slice(&rt.show_route(None, None).expect("show route")).expect("JSON");
    let mut list = v["routes"].as_array().expect("routes").clone();
    let key = |r: &Value| (r["table"].to_string(), r["prefix"].to_string());
    let mut top: std::collections::HashMap<(String, String), (u64, usize)> = Default::default();
    for r in &list {
        let pref = r["preference"].as_u64().unwrap_or(0);
        let e = top.entry(key(r)).or_insert((pref, 0));
        if pref > e.0 {
            *e = (pref, 1);
        } else if pref == e.0 {
            e.1 += 1;
        }
    }
    for r in &mut list {
        if top[&key(r)].1 > 1 {
            r.as_object_mut().expect("object").remove("best");
        }
    }
    list.sort_by_key(|r| (key(r), r["proto"].to_string()));
    list
}

fuzz_target!(|data: &[u8]| {
    let a = runtime();
    let mut last_ok: Option<&str> = None;
    for doc in data.split(|b| *b == 0).take(16) {
        let Some((mode, text)) = doc.split_first() else { continue };
        let Ok(text) = std::str::from_utf8(text) else { continue };
        // Settled first: a removal's flush may still be running after the
        // commit that caused it returned.
        a.wait_idle(Wait::Forever).expect("idle");
        let before = (protocols(&a), routes(&a));
        match a.commit(text, mode & 1 == 1) {
            Ok(()) => last_ok = Some(text),
            Err(_) => {
                a.wait_idle(Wait::Forever).expect("idle");
                assert!((protocols(&a), routes(&a)) == before, "a refused commit changed the runtime");
            }
        }
    }
    let Some(config) = last_ok else { return };
    let b = runtime();
    b.commit(config, false).expect("a config runtime A accepted is accepted from scratch");
    a.wait_idle(Wait::Forever).expect("idle");
    b.wait_idle(Wait::Forever).expect("idle");
    assert_eq!(protocols(&a), protocols(&b), "incremental and from-scratch commits disagree on the protocols");
    assert_eq!(routes(&a), routes(&b), "incremental and from-scratch commits disagree on the routes");
});
