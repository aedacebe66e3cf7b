//! The notify bus's inputs: `apply` (MapResponse JSON) and `publish`
//! (Notify events). The input is a sequence of documents separated by NUL
//! bytes; a document's first byte picks the call (even: apply, odd:
//! publish), the rest is the JSON. Checked after every call: a refused
//! input left the netmap and status as they were, and every message any
//! watcher receives is JSON that serde_json reads (so also no deeper than
//! its 128-level limit).

#![no_main]

use libfuzzer_sys::fuzz_target;
use meshring::bus::*;
use meshring::sync::Wait;

fn json(bytes: &[u8], what: &str) -> serde_json::Value {
    serde_json::from_slice(bytes).unwrap_or_else(|e| panic!("{what} is not JSON a strict decoder reads: {e}"))
}

fuzz_target!(|data: &[u8]| {
    let bus = Bus::new(BusOptions { initial_chunk: 3, backlog: 16, ..Default::default() }).expect("bus");
    let masks = [
        WATCH_INITIAL_STATUS | WATCH_PEER_CHANGES,
        WATCH_INITIAL_NET_MAP | WATCH_PEER_CHANGES | WATCH_PEER_PATCHES,
        WATCH_INITIAL_NET_MAP | WATCH_CHUNKED_INITIAL | WATCH_PEER_CHANGES,
        WATCH_ENGINE_UPDATES | WATCH_INITIAL_STATE | WATCH_INITIAL_PREFS | WATCH_SYS_POLICY_CHANGES | WATCH_PEER_WIRE_GUARD_STATE,
    ];
    let watchers: Vec<Watcher> = masks.iter().filter_map(|m| bus.watch(*m).ok()).collect();
    for doc in data.split(|b| *b == 0).take(64) {
        let Some((op, input)) = doc.split_first() else { continue };
        let before = (bus.netmap().expect("netmap"), bus.status(true).expect("status"));
        let result = if op & 1 == 0 { bus.apply(input) } else { bus.publish(input) };
        let after = (bus.netmap().expect("netmap"), bus.status(true).expect("status"));
        if result.is_err() {
            assert!(before.0 == after.0, "a refused input changed the netmap");
        }
        json(&after.0, "the netmap");
        json(&after.1, "the status");
        for w in &watchers {
            while let Ok(message) = w.next(Wait::Never) {
                json(&message, "a watcher's message");
            }
        }
    }
});
