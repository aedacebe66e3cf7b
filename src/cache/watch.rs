//! `CacheWatch`: one SOTW or delta watch. It delivers at most one response,
//! read with `next` (blocking per `Wait`) or after its readiness fd turns
//! readable; `close` cancels it.

use super::response::Response;
use super::store::Shared;
use crate::error::{Error, ErrorKind, Result};
use crate::sync::Wait;
use crate::sys::EventFd;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::Instant;

/// SOTW or delta.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchKind {
    Sotw,
    Delta,
}

enum State {
    Waiting,
    Ready(Box<Response>),
    Taken,
    Closed(&'static str),
}

/// The part of a watch the cache holds while it is parked. Lock order:
/// the cache lock may be held while taking a slot's lock, never the reverse.
pub(crate) struct Slot {
    state: Mutex<State>,
    cond: Condvar,
    ready: EventFd,
}

pub(crate) const CANCELLED: &str = "watch is closed";
pub(crate) const CACHE_CLOSED: &str = "cache is closed";
pub(crate) const NODE_CLEARED: &str = "the node's snapshot was cleared (ClearSnapshot); open a new watch";
const TAKEN: &str = "watch already delivered its response; open a new watch";
const NOTHING: &str = "no response yet";
const TIMED_OUT: &str = "no response before the timeout";

impl Slot {
    pub fn new() -> Result<Slot> {
        Ok(Slot { state: Mutex::new(State::Waiting), cond: Condvar::new(), ready: EventFd::new()? })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Hands the response to the watch (ignored unless it is still waiting).
    pub fn deliver(&self, response: Response) {
        let mut s = self.lock();
        if matches!(*s, State::Waiting) {
            *s = State::Ready(Box::new(response));
            drop(s);
            self.ready.signal();
            self.cond.notify_all();
        }
    }

    /// Ends the watch; an undelivered response is dropped.
    pub fn close(&self, why: &'static str) {
        let mut s = self.lock();
        if !matches!(*s, State::Closed(_)) {
            *s = State::Closed(why);
            drop(s);
            self.ready.signal();
            self.cond.notify_all();
        }
    }

    pub fn is_closed(&self) -> bool {
        matches!(*self.lock(), State::Closed(_))
    }
}

/// A watch handle. Dropping it cancels the watch.
pub struct CacheWatch {
    pub(crate) slot: Arc<Slot>,
    pub(crate) shared: Weak<Shared>,
    pub(crate) node: String,
    pub(crate) type_url: String,
    pub(crate) id: u64,
    pub(crate) kind: WatchKind,
}

impl std::fmt::Debug for CacheWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheWatch").field("node", &self.node).field("type_url", &self.type_url).field("id", &self.id).finish()
    }
}

impl CacheWatch {
    pub fn kind(&self) -> WatchKind {
        self.kind
    }

    pub fn type_url(&self) -> &str {
        &self.type_url
    }

    /// The response. `Wait::Never`: WouldBlock while there is none; `Until`:
    /// Timeout. Closed after the watch was cancelled, its node cleared or its
    /// cache closed, and after the one response was taken.
    pub fn next(&self, wait: Wait) -> Result<Response> {
        let deadline = wait.deadline();
        let mut s = self.slot.lock();
        loop {
            match std::mem::replace(&mut *s, State::Taken) {
                State::Ready(r) => return Ok(*r),
                State::Taken => return Err(Error::closed(TAKEN)),
                State::Closed(why) => {
                    *s = State::Closed(why);
                    return Err(Error::closed(why));
                }
                State::Waiting => *s = State::Waiting,
            }
            if wait.is_never() {
                return Err(Error::new(ErrorKind::WouldBlock, NOTHING));
            }
            s = match deadline {
                None => self.slot.cond.wait(s).unwrap_or_else(|p| p.into_inner()),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return Err(Error::new(ErrorKind::Timeout, TIMED_OUT));
                    }
                    self.slot.cond.wait_timeout(s, d - now).unwrap_or_else(|p| p.into_inner()).0
                }
            };
        }
    }

    /// The response in the binary encoding of the C ABI.
    pub fn next_encoded(&self, wait: Wait) -> Result<Vec<u8>> {
        self.next(wait).map(|r| r.encode())
    }

    /// Readable once `next` would not block (a response, or closed).
    pub fn ready_fd(&self) -> RawFd {
        self.slot.ready.as_raw_fd()
    }

    /// Whether the watch is still parked in the cache (no response yet).
    pub fn is_waiting(&self) -> bool {
        matches!(*self.slot.lock(), State::Waiting)
    }

    /// Cancels the watch: it leaves the cache's index, a blocked `next`
    /// returns Closed. Idempotent, any thread.
    pub fn close(&self) {
        match self.shared.upgrade() {
            Some(shared) => shared.cancel(self),
            None => self.slot.close(CANCELLED),
        }
    }
}

impl Drop for CacheWatch {
    fn drop(&mut self) {
        self.close();
    }
}
