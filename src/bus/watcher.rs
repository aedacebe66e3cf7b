//! `Watcher`: one watch session, read with `next` or through a readiness fd.

use super::hub::Shared;
use super::mask::Mask;
use super::slot::{Outgoing, Step, View};
use crate::error::{Error, ErrorKind, Result};
use crate::sync::Wait;
use crate::sys::EventFd;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::time::Instant;

pub struct Watcher {
    shared: Arc<Shared>,
    id: u64,
    ready: Arc<EventFd>,
    mask: Mask,
}

const CLOSED: &str = "watcher is closed";
const NOTHING: &str = "no notify pending";
const TIMED_OUT: &str = "no notify before the timeout";

impl Watcher {
    pub(crate) fn new(shared: Arc<Shared>, id: u64, ready: Arc<EventFd>, mask: Mask) -> Watcher {
        Watcher { shared, id, ready, mask }
    }

    /// The effective mask (`WATCH_PEER_PATCHES` adds `WATCH_PEER_CHANGES`).
    pub fn mask(&self) -> u64 {
        self.mask.0
    }

    /// The next Notify JSON message. `Wait::Never`: WouldBlock when none is
    /// ready; `Until`: Timeout; Closed once the watcher or the bus is closed.
    pub fn next(&self, wait: Wait) -> Result<Arc<[u8]>> {
        let deadline = wait.deadline();
        let options = &self.shared.options;
        let mut core = self.shared.lock();
        loop {
            if core.closed {
                return Err(self.shared.closed_error());
            }
            let now = Instant::now();
            let core_ref = &mut *core;
            let Some(slot) = core_ref.slots.get_mut(&self.id).filter(|s| !s.closed) else {
                return Err(Error::closed(CLOSED));
            };
            let mut view = View {
                store: &core_ref.store,
                log: &core_ref.log,
                next_seq: core_ref.next_seq,
                chunk: options.initial_chunk,
                rate_limit: options.rate_limit,
            };
            let step = slot.step(&mut view, now);
            let next_seq = core_ref.next_seq;
            let slot = core_ref.slots.get_mut(&self.id).expect("slot still present");
            match step {
                Step::Message(message) => {
                    if slot.drained(next_seq) {
                        self.ready.clear();
                    }
                    let class = slot.class;
                    // Entries every watcher has read can go now.
                    core_ref.trim(options.backlog);
                    drop(core);
                    return Ok(match message {
                        Outgoing::Bytes(bytes) => bytes,
                        Outgoing::Shared(change) => change.encoded(class).expect("touches() promised a message"),
                    });
                }
                Step::Idle(due) => {
                    self.ready.clear();
                    if let Some(due) = due {
                        self.shared.due_at(core_ref, due);
                    }
                    let until = match (deadline, due) {
                        (Some(d), Some(r)) => Some(d.min(r)),
                        (d, r) => d.or(r),
                    };
                    if wait.is_never() {
                        return Err(Error::new(ErrorKind::WouldBlock, NOTHING));
                    }
                    core = match until {
                        None => self.shared.wake.wait(core).unwrap_or_else(|p| p.into_inner()),
                        Some(until) => {
                            let now = Instant::now();
                            if now >= until {
                                if deadline.is_some_and(|d| now >= d) {
                                    return Err(Error::new(ErrorKind::Timeout, TIMED_OUT));
                                }
                                continue; // rate-limited data became due
                            }
                            self.shared.wake.wait_timeout(core, until - now).unwrap_or_else(|p| p.into_inner()).0
                        }
                    };
                }
            }
        }
    }

    /// Readable while a message is (probably) waiting: after it turns
    /// readable, call `next(Wait::Never)` until WouldBlock, which clears it.
    pub fn ready_fd(&self) -> RawFd {
        self.ready.as_raw_fd()
    }

    /// Ends the session: pending messages are dropped, a blocked `next`
    /// returns Closed. Idempotent.
    pub fn close(&self) {
        let mut core = self.shared.lock();
        let next_seq = core.next_seq;
        if let Some(slot) = core.slots.get_mut(&self.id) {
            slot.closed = true;
            slot.outbox.clear();
            slot.pending = Default::default();
            slot.cursor = next_seq;
        }
        core.trim(self.shared.options.backlog);
        drop(core);
        self.ready.signal();
        self.shared.wake.notify_all();
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let mut core = self.shared.lock();
        core.slots.remove(&self.id);
        core.trim(self.shared.options.backlog);
    }
}
