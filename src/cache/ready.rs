//! The cache's ready queue: one place where a host learns which of its
//! (possibly hundreds of thousands of) queued watches finished, without a
//! file descriptor or a blocked thread per watch. A watch opened with a
//! queue token reports here exactly once: with its response, or closed
//! because its node was cleared or the cache closed (never for the host's
//! own cancel). The queue's fd is signalled only when it goes from empty
//! to non-empty, so a burst of answers from one `set_snapshot` costs one
//! wake-up however many watches it answers.

use super::response::Response;
use super::watch::Slot;
use crate::error::{Error, ErrorKind, Result};
use crate::sync::Wait;
use crate::sys::EventFd;
use std::collections::VecDeque;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::Instant;

/// What a queued watch reports.
#[derive(Debug)]
pub struct ReadyEvent {
    /// The token the host gave when opening the watch.
    pub token: u64,
    /// The response, or why the watch ended without one.
    pub outcome: std::result::Result<Arc<Response>, &'static str>,
}

/// Answers a `set_snapshot_collect` call takes for its caller.
pub(crate) struct Collected {
    pub events: Vec<ReadyEvent>,
    room: usize,
}

impl Collected {
    pub fn with_room(room: usize) -> Collected {
        Collected { events: Vec::new(), room }
    }

    pub fn has_room(&self) -> bool {
        self.events.len() < self.room
    }
}

#[derive(Default)]
struct Entries {
    queue: VecDeque<(u64, Arc<Slot>)>,
    closed: bool,
    /// Threads blocked in `take`: a push wakes the condvar only for them.
    waiting: usize,
}

#[derive(Default)]
pub(crate) struct ReadyQueue {
    entries: Mutex<Entries>,
    cond: Condvar,
    /// Made on first `fd()`; hosts that only pull never pay for it.
    fd: OnceLock<EventFd>,
}

const EMPTY: &str = "no queued watch is ready";
const TIMED_OUT: &str = "no queued watch became ready before the timeout";
const CLOSED: &str = "cache is closed";

impl ReadyQueue {
    fn lock(&self) -> MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn push(&self, token: u64, slot: Arc<Slot>) {
        let mut e = self.lock();
        let was_empty = e.queue.is_empty();
        e.queue.push_back((token, slot));
        if was_empty {
            if let Some(fd) = self.fd.get() {
                fd.signal();
            }
            if e.waiting > 0 {
                self.cond.notify_one();
            }
        }
    }

    /// After the cache closed: `take` drains what is queued, then Closed.
    pub fn close(&self) {
        let mut e = self.lock();
        e.closed = true;
        if let Some(fd) = self.fd.get() {
            fd.signal();
        }
        self.cond.notify_all();
    }

    /// Readable while events are queued or the cache is closed.
    pub fn fd(&self) -> Result<RawFd> {
        let e = self.lock();
        if let Some(fd) = self.fd.get() {
            return Ok(fd.as_raw_fd());
        }
        let fd = EventFd::new()?;
        if !e.queue.is_empty() || e.closed {
            fd.signal();
        }
        Ok(self.fd.get_or_init(|| fd).as_raw_fd())
    }

    /// Up to `max` events (at least one unless it fails): WouldBlock
    /// (`Wait::Never`, none queued), Timeout, Closed once the cache closed
    /// and every event was taken. Responses are taken out of their watches
    /// here, outside the queue lock; a watch the host took or cancelled
    /// meanwhile is skipped.
    pub fn take(&self, wait: Wait, max: usize) -> Result<Vec<ReadyEvent>> {
        let max = max.max(1);
        let deadline = wait.deadline();
        loop {
            let batch = {
                let mut e = self.lock();
                loop {
                    if !e.queue.is_empty() {
                        break;
                    }
                    if e.closed {
                        return Err(Error::closed(CLOSED));
                    }
                    if wait.is_never() {
                        return Err(Error::new(ErrorKind::WouldBlock, EMPTY));
                    }
                    let remaining = match deadline {
                        None => None,
                        Some(d) => match d.checked_duration_since(Instant::now()) {
                            Some(left) if !left.is_zero() => Some(left),
                            _ => return Err(Error::new(ErrorKind::Timeout, TIMED_OUT)),
                        },
                    };
                    e.waiting += 1;
                    e = match remaining {
                        None => self.cond.wait(e).unwrap_or_else(|p| p.into_inner()),
                        Some(left) => self.cond.wait_timeout(e, left).unwrap_or_else(|p| p.into_inner()).0,
                    };
                    e.waiting -= 1;
                }
                let n = e.queue.len().min(max);
                let batch: Vec<(u64, Arc<Slot>)> = e.queue.drain(..n).collect();
                if e.queue.is_empty() && !e.closed {
                    if let Some(fd) = self.fd.get() {
                        fd.clear();
                    }
                } else if e.waiting > 0 {
                    self.cond.notify_one(); // more than this batch: pass it on
                }
                batch
            };
            let events: Vec<ReadyEvent> =
                batch.into_iter().filter_map(|(token, slot)| slot.take_queued().map(|outcome| ReadyEvent { token, outcome })).collect();
            if !events.is_empty() {
                return Ok(events);
            }
            // Every entry was taken or cancelled by the host meanwhile: wait on.
        }
    }
}
