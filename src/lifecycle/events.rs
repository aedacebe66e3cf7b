//! State-change events: `{"Protocol": {...}}` JSON (a Notify-style object
//! with one meshring field), queued for `next_event` with a readiness fd and
//! optionally published on an attached bus. The same object describes an
//! instance in `show protocols`.

use super::core::Instance;
use super::state::display_name;
use crate::sys::EventFd;
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

pub(crate) struct Events {
    queue: VecDeque<Arc<[u8]>>,
    cap: usize,
    /// Events dropped because nobody read them (oldest first).
    pub dropped: u64,
    pub ready: Arc<EventFd>,
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// The JSON description of an instance (`show protocols` element).
pub(crate) fn describe(name: &str, inst: &Instance) -> Value {
    json!({
        "name": name,
        "kind": &*inst.cfg.kind,
        "table": &*inst.cfg.table,
        "state": display_name(inst.ps, inst.cs),
        "proto_state": inst.ps.name(),
        "core_state": inst.cs.name(),
        "since_ms": unix_ms(inst.since),
        "info": inst.info,
        "disabled": inst.disabled,
        "preference": inst.cfg.preference,
        "routes": inst.routes.len(),
    })
}

impl Events {
    pub fn new(cap: usize, ready: Arc<EventFd>) -> Events {
        Events { queue: VecDeque::new(), cap: cap.max(1), dropped: 0, ready }
    }

    fn push(&mut self, value: Value) -> Arc<[u8]> {
        self.push_object(json!({ "Protocol": value }))
    }

    /// `{"Runtime":{"state":"panicked","reason":...}}`: the runtime shut
    /// down after a panic on one of its threads.
    pub fn push_runtime_panic(&mut self, reason: &str) -> Arc<[u8]> {
        self.push_object(json!({ "Runtime": { "state": "panicked", "reason": reason } }))
    }

    fn push_object(&mut self, object: Value) -> Arc<[u8]> {
        let bytes: Arc<[u8]> = object.to_string().into_bytes().into();
        if self.queue.len() == self.cap {
            self.queue.pop_front();
            self.dropped += 1;
        }
        // The fd stays readable while events are queued (`pop` clears it
        // once empty): only the first event needs the write syscall.
        if self.queue.is_empty() {
            self.ready.signal();
        }
        self.queue.push_back(bytes.clone());
        bytes
    }

    pub fn push_state(&mut self, name: &str, inst: &Instance) -> Arc<[u8]> {
        self.push(describe(name, inst))
    }

    pub fn push_removed(&mut self, name: &str) -> Arc<[u8]> {
        self.push(json!({ "name": name, "state": "removed" }))
    }

    pub fn pending(&self) -> bool {
        !self.queue.is_empty()
    }

    pub fn pop(&mut self) -> Option<Arc<[u8]>> {
        let item = self.queue.pop_front();
        if self.queue.is_empty() {
            self.ready.clear();
        }
        item
    }
}
