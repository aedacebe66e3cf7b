//! `CacheWatch`: one SOTW or delta watch. It delivers at most one response,
//! read with `next` (blocking per `Wait`) or after its readiness fd turns
//! readable; `close` cancels it.

use super::ready::{Collected, ReadyEvent, ReadyQueue};
use super::response::Response;
use super::store::Shared;
use crate::error::{Error, ErrorKind, Result};
use crate::sync::Wait;
use crate::sys::EventFd;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, Weak};
use std::time::Instant;

/// SOTW or delta.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchKind {
    Sotw,
    Delta,
}

enum State {
    Waiting,
    Ready(Arc<Response>),
    /// The response was taken; kept (the stream's state, for a delta watch
    /// opened after this one) until the watch is freed.
    Taken(Option<Arc<Response>>),
    Closed(&'static str),
}

struct Inner {
    state: State,
    /// Set while the watch is being opened: an answer found then is taken
    /// by the opener with `next`, not reported through the ready queue.
    opening: bool,
    /// Threads blocked in `next`: only they need the condvar woken.
    waiters: usize,
}

/// The part of a watch the cache holds while it is parked. Lock order:
/// the cache lock may be held while taking a slot's lock, never the
/// reverse; the ready queue's lock is never held with a slot's.
pub(crate) struct Slot {
    inner: Mutex<Inner>,
    cond: Condvar,
    /// Made on the first `ready_fd` call: most watches never need one.
    ready: OnceLock<EventFd>,
    /// Where a queued watch reports, with the host's token. Weak: the
    /// queue holds the slots of its unread events, and those must go with
    /// the cache even if nobody ever takes them.
    queue: Option<(Weak<ReadyQueue>, u64)>,
}

pub(crate) const CANCELLED: &str = "watch is closed";
pub(crate) const CACHE_CLOSED: &str = "cache is closed";
pub(crate) const ADS_DROPPED: &str =
    "ADS: the watch names only some of its type's resources; dropped unanswered, as go-control-plane does (ask again with every name)";
pub(crate) const PANICKED: &str = "cache shut down after an internal panic; its calls give the reason";
pub(crate) const NODE_CLEARED: &str = "the node's snapshot was cleared (ClearSnapshot); open a new watch";
const TAKEN: &str = "watch already delivered its response; open a new watch";
const NOTHING: &str = "no response yet";
const TIMED_OUT: &str = "no response before the timeout";

impl Slot {
    pub fn new(queue: Option<(Weak<ReadyQueue>, u64)>) -> Slot {
        Slot { inner: Mutex::new(Inner { state: State::Waiting, opening: true, waiters: 0 }), cond: Condvar::new(), ready: OnceLock::new(), queue }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Ends the opening phase: later answers go to the ready queue.
    pub fn opened(&self) {
        self.lock().opening = false;
    }

    /// Wakes `next` and the fd (if made); reports to the queue if asked.
    fn finish(self: &Arc<Self>, s: MutexGuard<'_, Inner>, report: bool) {
        if let Some(fd) = self.ready.get() {
            fd.signal();
        }
        let report = report && !s.opening;
        let waiters = s.waiters > 0;
        drop(s);
        if waiters {
            self.cond.notify_all();
        }
        if report {
            if let Some((queue, token)) = &self.queue {
                if let Some(queue) = queue.upgrade() {
                    queue.push(*token, self.clone());
                }
            }
        }
    }

    /// Hands the response to the watch (ignored unless it is still waiting).
    pub fn deliver(self: &Arc<Self>, response: Arc<Response>) {
        let mut s = self.lock();
        if matches!(s.state, State::Waiting) {
            s.state = State::Ready(response);
            self.finish(s, true);
        }
    }

    /// `deliver`, except that a queued watch's answer goes to `collect`
    /// (already taken, as if by the ready queue) while it has room.
    pub fn deliver_into(self: &Arc<Self>, response: Arc<Response>, collect: &mut Collected) {
        let Some((_, token)) = &self.queue else { return self.deliver(response) };
        if !collect.has_room() {
            return self.deliver(response);
        }
        let mut s = self.lock();
        if s.opening {
            drop(s);
            return self.deliver(response);
        }
        if matches!(s.state, State::Waiting) {
            s.state = State::Taken(Some(response.clone()));
            // A thread blocked in `next` or polling the fd learns it is over.
            self.finish(s, false);
            collect.events.push(ReadyEvent { token: *token, outcome: Ok(response) });
        }
    }

    /// Ends the watch; an undelivered response is dropped. Reported to the
    /// queue unless the host cancelled it or it was reported already.
    pub fn close(self: &Arc<Self>, why: &'static str) {
        let mut s = self.lock();
        if !matches!(s.state, State::Closed(_)) {
            let was_waiting = matches!(s.state, State::Waiting);
            s.state = State::Closed(why);
            self.finish(s, was_waiting && why != CANCELLED);
        }
    }

    pub fn is_closed(&self) -> bool {
        matches!(self.lock().state, State::Closed(_))
    }

    /// For the ready queue: the response (now taken) or why the watch
    /// ended; None when the host took or cancelled it meanwhile.
    pub fn take_queued(&self) -> Option<std::result::Result<Arc<Response>, &'static str>> {
        let mut s = self.lock();
        match std::mem::replace(&mut s.state, State::Taken(None)) {
            State::Ready(r) => {
                s.state = State::Taken(Some(r.clone()));
                Some(Ok(r))
            }
            State::Closed(why) => {
                s.state = State::Closed(why);
                (why != CANCELLED).then_some(Err(why))
            }
            other => {
                s.state = other;
                None
            }
        }
    }

    fn ready_fd(&self) -> Result<RawFd> {
        let s = self.lock();
        if let Some(fd) = self.ready.get() {
            return Ok(fd.as_raw_fd());
        }
        let fd = EventFd::new()?;
        if !matches!(s.state, State::Waiting) {
            fd.signal();
        }
        Ok(self.ready.get_or_init(|| fd).as_raw_fd())
    }
}

/// A watch handle. Dropping it cancels the watch.
pub struct CacheWatch {
    pub(crate) slot: Arc<Slot>,
    pub(crate) shared: Weak<Shared>,
    pub(crate) node: Arc<str>,
    pub(crate) type_url: Arc<str>,
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
    /// The response is shared with the other watches that got the same
    /// answer (see `Response::id`).
    pub fn next(&self, wait: Wait) -> Result<Arc<Response>> {
        let deadline = wait.deadline();
        let mut s = self.slot.lock();
        loop {
            match std::mem::replace(&mut s.state, State::Taken(None)) {
                State::Ready(r) => {
                    s.state = State::Taken(Some(r.clone()));
                    return Ok(r);
                }
                State::Taken(r) => {
                    s.state = State::Taken(r);
                    return Err(Error::closed(TAKEN));
                }
                State::Closed(why) => {
                    s.state = State::Closed(why);
                    return Err(Error::closed(why));
                }
                State::Waiting => s.state = State::Waiting,
            }
            if wait.is_never() {
                return Err(Error::new(ErrorKind::WouldBlock, NOTHING));
            }
            let left = match deadline {
                None => None,
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => Some(left),
                    _ => return Err(Error::new(ErrorKind::Timeout, TIMED_OUT)),
                },
            };
            s.waiters += 1;
            s = match left {
                None => self.slot.cond.wait(s).unwrap_or_else(|p| p.into_inner()),
                Some(left) => self.slot.cond.wait_timeout(s, left).unwrap_or_else(|p| p.into_inner()).0,
            };
            s.waiters -= 1;
        }
    }

    /// Readable once `next` would not block (a response, or closed). The
    /// eventfd is made on the first call (Io if the process is out of fds).
    pub fn ready_fd(&self) -> Result<RawFd> {
        self.slot.ready_fd()
    }

    /// Whether the cache dropped the watch unanswered under the ADS rule
    /// (its names leave out resources of its type), as go-control-plane
    /// does: the client is expected to ask again.
    pub fn is_dropped(&self) -> bool {
        matches!(self.slot.lock().state, State::Closed(ADS_DROPPED))
    }

    /// The response this watch gave, once taken (None before, or if it
    /// ended without one).
    pub fn taken_response(&self) -> Option<Arc<Response>> {
        match &self.slot.lock().state {
            State::Taken(r) => r.clone(),
            _ => None,
        }
    }

    /// Whether the watch is still parked in the cache (no response yet,
    /// not closed).
    pub fn is_waiting(&self) -> bool {
        matches!(self.slot.lock().state, State::Waiting)
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
