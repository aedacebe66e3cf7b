//! The primary: writes land on the local volume and are streamed to the
//! secondary over an authenticated link (see `auth`). A connection manager
//! thread connects (and reconnects) to the secondary, or takes the
//! connections the host hands over, runs the handshake, resyncs the
//! secondary from the dirty map and keeps the link alive. Replication
//! trouble never fails a write: it is stored for `get_error` and the blocks
//! stay dirty.
//!
//! Sync and durable modes write each frame to the socket on the caller's
//! thread, then apply it locally (the order on the volume is the order on
//! the wire: both under the send lock), and the caller then reads the
//! acknowledgements itself: whichever waiting thread finds nobody reading
//! becomes the reader until its own acknowledgement is in, so a lone writer
//! is woken by the socket, not by another thread. Durable mode also makes
//! the local write durable while the secondary works (group commit: one
//! thread runs fdatasync for every write done before it started; writers
//! arriving meanwhile wait for the next one).
//!
//! Async mode appends frames to a send queue under the send lock and a
//! sender thread writes whatever has accumulated in one `write`; a reader
//! thread takes acknowledgements. Everything else (resync blocks, barriers,
//! keepalives) goes through the same queue in async mode, so a
//! checkpoint's barrier cannot overtake queued writes. The queue is bounded
//! by `SEND_QUEUE_BYTES`: a write finding it full waits (back-pressure)
//! until the sender thread has taken it; a stuck connection ends after the
//! peer timeout (the socket's send timeout), its queue is dropped, the
//! blocks stay dirty for the resync and the waiting writer continues.

use super::auth::{self, Psk};
use super::dirty::DirtyMap;
use super::stage::{lock, wait_for, AckMode, Stage, Status};
use super::volume::Volume;
use super::wire::{self, Direction, Msg, MAX_WRITE_DATA};
use super::{ReplConfig, ReplStats};
use crate::error::{Error, ErrorKind, Result};
use crate::sys::{self, PollResult};
use std::collections::{HashMap, VecDeque};
use std::io::{BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Async mode: queued frame bytes at which `write` waits for the sender
/// thread. Up to twice this can be held: the queue plus the batch being
/// written.
/// cbindgen:ignore
pub const SEND_QUEUE_BYTES: usize = 4 << 20;

/// The write side: held while a write is framed, sent and applied locally,
/// so the order on the wire is the order on the volume.
struct Sender {
    link: Option<Arc<TcpStream>>,
    /// The session's primary -> secondary direction (with `link`).
    seal: Option<Direction>,
    next_seq: u64,
    next_barrier: u64,
    frame: Vec<u8>,
    /// Async mode: frames for the sender thread, all for `queue_generation`.
    queue: Vec<u8>,
    queue_generation: u64,
    /// The sender thread waits on `queued` (notify only then: a condvar
    /// notify is a futex syscall even with nobody waiting).
    sender_idle: bool,
    /// Writers waiting on `room`.
    room_waiters: usize,
}

#[derive(Default)]
struct Counters {
    writes_sent: u64,
    resync_blocks: u64,
    reconnects: u64,
    checkpoints: u64,
}

struct State {
    dirty: DirtyMap,
    /// Writes sent on the current link and not yet acknowledged.
    inflight: VecDeque<(u64, u64, u64)>,
    /// For blocks in flight: the newest write's sequence number.
    newest: HashMap<u64, u64>,
    acked: u64,
    barrier_acked: u64,
    connected: bool,
    /// The current link's resync has sent every block dirty at link-up.
    resynced: bool,
    /// Bumped whenever a link comes up or goes down.
    generation: u64,
    counters: Counters,
    /// A thread is reading the link (sync/durable: a waiting caller; async:
    /// the reader thread).
    reader_busy: bool,
    /// Threads waiting on `changed` (notify only when there are some).
    waiters: usize,
    /// Threads waiting in `progress` for another thread's reading, each on
    /// its own condvar with the acknowledged sequence number that may
    /// satisfy it (0: woken by any frame): an acknowledgement wakes only
    /// the writers it covers, the freed reader role only one thread.
    readers_waiting: Vec<(u64, Arc<Condvar>)>,
    /// Frames received on the current link, and when the last came in.
    rx_frames: u64,
    last_rx: Instant,
}

/// The read side of the current link, used by one thread at a time
/// (`State::reader_busy`).
struct Rx {
    reader: BufReader<TcpStream>,
    open: Direction,
    generation: u64,
}

/// fdatasync calls of one side that may run at once (durable mode). One:
/// classic group commit, where the writers that arrive while a call runs
/// share the next one. (More would let a writer that no running call
/// covers start its own at once; the kernel merges concurrent flushes, but
/// on the 2-vCPU test VM that traded sharing for no measurable gain.)
/// cbindgen:ignore
pub const MAX_CONCURRENT_FLUSHES: usize = 1;

/// Group commit of the local volume (durable mode).
#[derive(Default)]
struct FlushState {
    /// Every local write up to this count is on stable storage.
    flushed: u64,
    /// The targets of the fdatasync calls running now.
    running: Vec<u64>,
    flushes: u64,
}

pub(super) struct Shared {
    vol: Arc<Volume>,
    /// None: the host hands over connections (`add_connection`).
    peer: Option<SocketAddr>,
    psk: Psk,
    cfg: ReplConfig,
    pub(super) status: Status,
    send: Mutex<Sender>,
    /// With `send`: the async queue has frames (sender thread waits).
    queued: Condvar,
    /// With `send`: the async queue was taken (writers wait for room).
    room: Condvar,
    state: Mutex<State>,
    /// With `state`: acknowledgements, link up/down, stop, the reader role freed.
    changed: Condvar,
    /// With `state`: link up/down, host connections and stop only. The
    /// manager's keepalive loop waits here, so an acknowledgement does not
    /// wake it.
    link_changed: Condvar,
    rx: Mutex<Option<Rx>>,
    /// Host-supplied connections not yet taken by the manager.
    pending: Mutex<VecDeque<TcpStream>>,
    stop: AtomicBool,
    /// `State::acked`, readable without the lock: a sync writer whose
    /// acknowledgement is already in skips the lock.
    acked_hint: AtomicU64,
    /// Local writes done (durable mode's group commit counts against it).
    local_writes: AtomicU64,
    flush: Mutex<FlushState>,
    flushed: Condvar,
    /// This handle still holds the volume's write path; cleared exactly once
    /// (see `detach`), so a later replication's hold is never released by us.
    attached: AtomicBool,
    /// Tests: the acknowledgement reader panics on the next ack.
    #[cfg(test)]
    pub(super) panic_on_ack: AtomicBool,
}

pub struct Primary {
    pub(super) shared: Arc<Shared>,
    manager: Mutex<Option<JoinHandle<()>>>,
    /// Async mode's sender thread.
    sender: Mutex<Option<JoinHandle<()>>>,
}

impl Primary {
    pub fn start(vol: Arc<Volume>, peer: Option<SocketAddr>, cfg: ReplConfig) -> Result<Self> {
        let psk = cfg.psk.clone().ok_or_else(|| Error::invalid("a replication needs a pre-shared key (cfg.key)"))?;
        vol.attach()?;
        let state = State {
            dirty: DirtyMap::new(vol.block_count()),
            inflight: VecDeque::new(),
            newest: HashMap::new(),
            acked: 0,
            barrier_acked: 0,
            connected: false,
            resynced: false,
            generation: 0,
            counters: Counters::default(),
            reader_busy: false,
            waiters: 0,
            readers_waiting: Vec::new(),
            rx_frames: 0,
            last_rx: Instant::now(),
        };
        let shared = Arc::new(Shared {
            vol,
            peer,
            psk,
            cfg,
            status: Status::new(),
            send: Mutex::new(Sender {
                link: None,
                seal: None,
                next_seq: 1,
                next_barrier: 1,
                frame: Vec::new(),
                queue: Vec::new(),
                queue_generation: 0,
                sender_idle: false,
                room_waiters: 0,
            }),
            queued: Condvar::new(),
            room: Condvar::new(),
            state: Mutex::new(state),
            changed: Condvar::new(),
            link_changed: Condvar::new(),
            rx: Mutex::new(None),
            pending: Mutex::new(VecDeque::new()),
            stop: AtomicBool::new(false),
            acked_hint: AtomicU64::new(0),
            local_writes: AtomicU64::new(0),
            flush: Mutex::new(FlushState::default()),
            flushed: Condvar::new(),
            attached: AtomicBool::new(true),
            #[cfg(test)]
            panic_on_ack: AtomicBool::new(false),
        });
        shared.status.set_stage(Stage::Running);
        let sender = match shared.cfg.ack {
            AckMode::Sync | AckMode::Durable => None,
            AckMode::Async => {
                let worker = shared.clone();
                let spawned = std::thread::Builder::new().name("mr-repl-send".into()).spawn(move || worker.guarded("sender", |w| w.send_loop()));
                Some(spawned.map_err(|e| {
                    shared.detach();
                    Error::from_io("spawn replication thread", &e)
                })?)
            }
        };
        let worker = shared.clone();
        let spawned = std::thread::Builder::new().name("mr-repl-primary".into()).spawn(move || worker.guarded("connection manager", |w| w.manage()));
        let primary = Primary { shared, manager: Mutex::new(None), sender: Mutex::new(sender) };
        match spawned {
            Ok(manager) => {
                *lock(&primary.manager) = Some(manager);
                Ok(primary)
            }
            Err(e) => {
                // Dropping `primary` stops the sender thread and detaches.
                Err(Error::from_io("spawn replication thread", &e))
            }
        }
    }

    pub(super) fn status(&self) -> &Status {
        &self.shared.status
    }

    pub fn read(&self, block: u64, buf: &mut [u8]) -> Result<()> {
        self.shared.status.check_open()?;
        self.shared.vol.read(block, buf)
    }

    /// A host-supplied connection to the secondary (a primary started
    /// without an address): the manager runs the handshake on it when no
    /// link is up.
    pub fn add_connection(&self, stream: TcpStream) -> std::result::Result<(), (Error, TcpStream)> {
        let s = &self.shared;
        if let Err(e) = s.status.check_open() {
            return Err((e, stream));
        }
        if s.peer.is_some() {
            return Err((Error::new(ErrorKind::State, "this primary connects to its secondary itself (it was started with an address)"), stream));
        }
        lock(&s.pending).push_back(stream);
        let _st = lock(&s.state);
        s.link_changed.notify_all();
        Ok(())
    }

    /// Applies locally and replicates (while RUNNING). Only a local failure
    /// fails the call, and in sync or durable mode a close that overtakes
    /// the write before its acknowledgement came in: Closed (it was applied
    /// locally; the secondary may or may not have it).
    pub fn write(&self, block: u64, data: &[u8]) -> Result<()> {
        self.write_batch(&[(block, data)])
    }

    /// Several writes kept in flight together: framed into one send,
    /// applied locally as one batch (io_uring keeps them in flight where it
    /// is the faster path), acknowledged once. Extents must not overlap.
    pub fn write_batch(&self, extents: &[(u64, &[u8])]) -> Result<()> {
        let s = &self.shared;
        s.status.check_open()?;
        match extents {
            [(block, data)] => drop(s.vol.check_range(*block, data.len())?),
            _ => check_extents(&s.vol, extents)?,
        }
        if extents.is_empty() {
            return Ok(());
        }
        let mut tx = lock(&s.send);
        if s.cfg.ack == AckMode::Async {
            tx = s.wait_for_room(tx);
        }
        if s.status.stage() != Stage::Running {
            return write_local(&s.vol, extents);
        }
        let sent = s.replicate(&mut tx, extents);
        if let Err(e) = write_local(&s.vol, extents) {
            drop(tx);
            s.forget_inflight(extents);
            return Err(e);
        }
        let ticket = s.local_writes.fetch_add(1, Ordering::AcqRel) + 1;
        drop(tx);
        match s.cfg.ack {
            AckMode::Async => return Ok(()),
            AckMode::Durable => s.group_flush(ticket)?,
            AckMode::Sync => {}
        }
        let acked = match sent {
            Some((seq, generation)) => s.wait_acked(seq, generation),
            None => false,
        };
        if acked {
            return Ok(());
        }
        match s.status.check_open() {
            Err(e) if e.kind == ErrorKind::Closed => {
                return Err(Error::closed("closed before the secondary acknowledged the write (it was applied locally)"))
            }
            Err(e) => return Err(e),
            Ok(()) => {}
        }
        if sent.is_none() {
            // A sync caller learns from get_error that this write is not on the secondary.
            let first = extents[0].0;
            s.status.record(Error::new(
                ErrorKind::Io,
                format!("write to block {first} not replicated: the secondary {} is not connected; kept for resync", s.peer_name()),
            ));
        }
        Ok(())
    }

    pub fn checkpoint(&self, timeout: crate::sync::Wait) -> Result<()> {
        let s = &self.shared;
        if !s.status.begin("checkpoint", false)? {
            return Ok(());
        }
        if timeout.is_never() {
            return Err(Error::new(ErrorKind::WouldBlock, "a checkpoint waits for the secondary: pass a timeout"));
        }
        s.vol.flush()?;
        s.checkpoint(timeout.deadline())
    }

    /// Stops replicating; the volume continues alone (stage DONE).
    pub fn stop(&self) -> Result<()> {
        let s = &self.shared;
        if !s.status.begin("stop", false)? {
            return Ok(());
        }
        self.shutdown();
        s.status.set_stage(Stage::Done);
        s.status.clear_error();
        Ok(())
    }

    /// Waits until the secondary is connected and has every block.
    pub fn wait_synced(&self, deadline: Option<Instant>) -> Result<()> {
        let s = &self.shared;
        s.status.check_open()?;
        if s.status.stage() != Stage::Running {
            return Err(s.status.wrong_stage("wait_synced"));
        }
        let synced = |st: &State| st.connected && st.dirty.count() == 0;
        loop {
            let st = lock(&s.state);
            if synced(&st) || s.stopping() {
                break;
            }
            let generation = st.generation;
            let connected = st.connected;
            drop(st);
            if connected && s.cfg.ack != AckMode::Async {
                // Acknowledgements come in only if someone reads them.
                let st = s.progress(generation, deadline, synced);
                if synced(&st) || deadline.is_some_and(|d| Instant::now() >= d) {
                    break;
                }
                continue;
            }
            let st = s.wait_until(deadline, |st| synced(st) || st.generation != generation);
            if synced(&st) || deadline.is_some_and(|d| Instant::now() >= d) {
                break;
            }
        }
        let st = lock(&s.state);
        if synced(&st) {
            return Ok(());
        }
        drop(st);
        s.status.check_open()?;
        Err(Error::new(ErrorKind::Timeout, "the secondary is not connected and in sync yet"))
    }

    pub fn stats(&self) -> ReplStats {
        let s = &self.shared;
        let flushes = lock(&s.flush).flushes;
        let st = lock(&s.state);
        ReplStats {
            connected: st.connected,
            dirty_blocks: st.dirty.count(),
            inflight_writes: st.inflight.len() as u64,
            writes_sent: st.counters.writes_sent,
            resync_blocks: st.counters.resync_blocks,
            reconnects: st.counters.reconnects,
            checkpoints: st.counters.checkpoints,
            flushes,
            ..ReplStats::default()
        }
    }

    /// Ends the manager and reader threads and frees the volume's write path.
    fn shutdown(&self) {
        let s = &self.shared;
        s.halt();
        if let Some(handle) = lock(&self.manager).take() {
            let _ = handle.join();
        }
        if let Some(handle) = lock(&self.sender).take() {
            let _ = handle.join();
        }
        lock(&s.pending).clear();
        s.detach();
    }

    pub fn close(&self) {
        if self.shared.status.close() {
            self.shutdown();
            self.shared.changed.notify_all();
            self.shared.link_changed.notify_all();
            self.shared.flushed.notify_all();
        }
    }
}

impl Drop for Primary {
    fn drop(&mut self) {
        self.close();
    }
}

/// Extents inside the volume, whole blocks, not overlapping.
pub(super) fn check_extents(vol: &Volume, extents: &[(u64, &[u8])]) -> Result<()> {
    let mut ranges = Vec::with_capacity(extents.len());
    for (block, data) in extents {
        let n = vol.check_range(*block, data.len())?;
        ranges.push((*block, *block + n));
    }
    if ranges.len() > 1 {
        ranges.sort_unstable();
        if let Some(w) = ranges.windows(2).find(|w| w[1].0 < w[0].1) {
            return Err(Error::invalid(format!("the batch's writes overlap at block {}", w[1].0)));
        }
    }
    Ok(())
}

fn write_local(vol: &Volume, extents: &[(u64, &[u8])]) -> Result<()> {
    match extents {
        [(block, data)] => vol.write_raw(*block, data),
        _ => vol.write_batch_raw(extents),
    }
}

/// Unwinding only: frees the reader role (see `Shared::progress`).
struct ReaderRole<'a>(&'a Shared);

impl Drop for ReaderRole<'_> {
    fn drop(&mut self) {
        let mut st = lock(&self.0.state);
        st.reader_busy = false;
        Shared::wake_all_readers(&st);
        self.0.changed.notify_all();
    }
}

impl Shared {
    /// Frees the volume's write path if this handle still holds it. Stop and
    /// close both end here; only the first call detaches, so closing a
    /// stopped handle cannot free a hold taken since by another replication.
    fn detach(&self) {
        if self.attached.swap(false, Ordering::AcqRel) {
            self.vol.detach();
        }
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    fn peer_name(&self) -> String {
        match self.peer {
            Some(p) => p.to_string(),
            None => "(host connection)".into(),
        }
    }

    /// Runs a replication thread's body; a panic there (a bug) halts the
    /// replication as a stop would, minus the joins (close does those), and
    /// every later call returns Panic with the reason. The local volume
    /// keeps what was written; the blocks not acknowledged stay unreplicated.
    fn guarded(self: Arc<Self>, thread: &str, body: impl FnOnce(Arc<Self>)) {
        let me = self.clone();
        crate::sync::fault::guard(&format!("replication {thread} thread"), &self.status.fault, || me.halt(), || body(self.clone()));
    }

    fn halt(&self) {
        self.stop.store(true, Ordering::Release);
        Self::wake_all_readers(&lock(&self.state));
        if let Some(link) = lock(&self.send).link.take() {
            let _ = link.shutdown(Shutdown::Both);
        }
        for conn in lock(&self.pending).iter() {
            let _ = conn.shutdown(Shutdown::Both);
        }
        self.changed.notify_all();
        self.link_changed.notify_all();
        self.queued.notify_all();
        self.room.notify_all();
        self.flushed.notify_all();
    }

    fn notify_changed(&self, st: &State) {
        if st.waiters > 0 {
            self.changed.notify_all();
        }
    }

    /// Waits on `changed` at most until `deadline` (1 s slices without one).
    fn wait_changed<'a>(&'a self, mut st: MutexGuard<'a, State>, deadline: Option<Instant>) -> MutexGuard<'a, State> {
        let left = match deadline {
            None => Duration::from_secs(1),
            Some(d) => d.saturating_duration_since(Instant::now()),
        };
        if left.is_zero() {
            return st;
        }
        st.waiters += 1;
        st = self.changed.wait_timeout(st, left).unwrap_or_else(|p| p.into_inner()).0;
        st.waiters -= 1;
        st
    }

    /// Waits on the state until `done` holds, the deadline passes or the
    /// handle stops; returns the state as last seen.
    fn wait_until(&self, deadline: Option<Instant>, done: impl Fn(&State) -> bool) -> MutexGuard<'_, State> {
        let mut st = lock(&self.state);
        while !(done(&st) || self.stopping()) {
            if deadline.is_some_and(|d| Instant::now() >= d) {
                break;
            }
            st = self.wait_changed(st, deadline);
        }
        st
    }

    /// Sync and durable modes: waits until `done` holds, the link of
    /// `generation` ends, the deadline passes or the handle stops, reading
    /// the link itself whenever no other thread is.
    fn progress(&self, generation: u64, deadline: Option<Instant>, done: impl Fn(&State) -> bool) -> MutexGuard<'_, State> {
        self.progress_with(generation, deadline, false, 0, done)
    }

    /// `progress`; `blocking`: the caller waits as long as the peer timeout
    /// anyway (a sync writer), so the reader reads straight from the socket
    /// (its receive timeout is the peer timeout) instead of polling first.
    /// `wake_at`: while another thread reads, wake this one only once
    /// `acked` reaches it (0: on every frame).
    fn progress_with(
        &self,
        generation: u64,
        deadline: Option<Instant>,
        blocking: bool,
        wake_at: u64,
        done: impl Fn(&State) -> bool,
    ) -> MutexGuard<'_, State> {
        let mut st = lock(&self.state);
        let mut me: Option<Arc<Condvar>> = None;
        loop {
            if done(&st) || st.generation != generation || !st.connected || self.stopping() {
                break;
            }
            let left = match deadline {
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => left,
                    _ => break,
                },
                None => Duration::from_secs(1),
            };
            if st.reader_busy {
                let cv = me.get_or_insert_with(|| Arc::new(Condvar::new())).clone();
                st.readers_waiting.push((wake_at, cv.clone()));
                st = cv.wait_timeout(st, left).unwrap_or_else(|p| p.into_inner()).0;
                st.readers_waiting.retain(|(_, w)| !Arc::ptr_eq(w, &cv));
                continue;
            }
            st.reader_busy = true;
            drop(st);
            // Gives the reader role back even if reading panics (a bug, on
            // the caller's thread): other waiters must not wait for it.
            let role = ReaderRole(self);
            let read = self.read_one(generation, deadline, blocking);
            std::mem::forget(role);
            st = lock(&self.state);
            st.reader_busy = false;
            if let Err(e) = read {
                drop(st);
                self.link_down(generation, e);
                st = lock(&self.state);
            }
        }
        // Leaving with the reader role free: hand it to one waiting thread.
        if !st.reader_busy {
            Self::wake_one_reader(&st);
        }
        st
    }

    fn wake_one_reader(st: &State) {
        if let Some((_, cv)) = st.readers_waiting.iter().min_by_key(|(at, _)| *at) {
            cv.notify_one();
        }
    }

    /// Wakes the threads waiting in `progress` that `acked` may satisfy.
    fn wake_acked(st: &State) {
        for (at, cv) in &st.readers_waiting {
            if *at <= st.acked {
                cv.notify_one();
            }
        }
    }

    fn wake_all_readers(st: &State) {
        for (_, cv) in &st.readers_waiting {
            cv.notify_one();
        }
    }

    /// Reads and handles one frame of the link of `generation` (the caller
    /// holds the reader role). Waits at most until `deadline` for it to
    /// start, and declares the link dead after the peer timeout of silence.
    fn read_one(&self, generation: u64, deadline: Option<Instant>, blocking: bool) -> Result<()> {
        let mut rx = lock(&self.rx);
        let Some(rx) = rx.as_mut().filter(|rx| rx.generation == generation) else {
            return Ok(());
        };
        if rx.reader.buffer().is_empty() && !blocking {
            let last_rx = lock(&self.state).last_rx;
            let silent_until = last_rx + self.cfg.peer_timeout;
            let until = deadline.map_or(silent_until, |d| d.min(silent_until));
            match sys::wait_readable_or_woken(rx.reader.get_ref().as_raw_fd(), -1, Some(until)) {
                Ok(PollResult::TimedOut) => {
                    if Instant::now() >= silent_until {
                        return Err(Error::new(ErrorKind::Timeout, format!("secondary {}: silent for the peer timeout", self.peer_name())));
                    }
                    return Ok(());
                }
                Ok(_) => {}
                Err(e) => return Err(e),
            }
        }
        let msg = wire::read_msg(&mut rx.reader, &mut rx.open)
            .map_err(|e| Error { message: format!("secondary {}: {}", self.peer_name(), e.message).into(), ..e })?;
        self.handle(msg)
    }

    /// Handles one frame from the secondary.
    fn handle(&self, msg: Msg) -> Result<()> {
        match msg {
            Msg::Ack { seq } => {
                #[cfg(test)]
                if self.panic_on_ack.load(Ordering::Acquire) {
                    panic!("test panic on acknowledgement {seq}");
                }
                self.acked(seq);
                Ok(())
            }
            Msg::BarrierAck { id } => {
                let mut st = lock(&self.state);
                st.barrier_acked = st.barrier_acked.max(id);
                st.rx_frames += 1;
                st.last_rx = Instant::now();
                Self::wake_acked(&st);
                self.notify_changed(&st);
                Ok(())
            }
            Msg::Error { text } => Err(Error::new(ErrorKind::Io, format!("secondary reported: {text}"))),
            other => {
                Err(Error::new(ErrorKind::Parse, format!("corrupt replication stream: unexpected {} from the secondary", other.name())))
            }
        }
    }

    /// Marks the extents' blocks dirty and, with a link up, frames them onto
    /// it. Returns the last sequence number and the link generation if sent.
    fn replicate(&self, tx: &mut Sender, extents: &[(u64, &[u8])]) -> Option<(u64, u64)> {
        let bs = self.vol.block_size() as usize;
        let durable = self.cfg.ack == AckMode::Durable;
        let mut st = lock(&self.state);
        for (block, data) in extents {
            for b in *block..*block + (data.len() / bs) as u64 {
                st.dirty.set(b);
            }
        }
        if tx.link.is_none() || !st.connected {
            return None;
        }
        let generation = st.generation;
        let Sender { seal, frame, next_seq, .. } = tx;
        let seal = seal.as_mut()?;
        frame.clear();
        let mut seq = 0;
        for (block, data) in extents {
            for (i, chunk) in data.chunks(MAX_WRITE_DATA).enumerate() {
                seq = *next_seq;
                *next_seq += 1;
                let first = block + (i * MAX_WRITE_DATA / bs) as u64;
                let count = (chunk.len() / bs) as u64;
                st.inflight.push_back((seq, first, count));
                for b in first..first + count {
                    st.newest.insert(b, seq);
                }
                st.counters.writes_sent += 1;
                wire::encode_write(seal, seq, first, durable, chunk, frame);
            }
        }
        drop(st);
        match self.send_frame(tx) {
            Ok(()) => Some((seq, generation)),
            Err(e) => {
                self.link_down(generation, e);
                None
            }
        }
    }

    /// A local write failed after its frames went out: its blocks stay
    /// dirty whatever the acknowledgement says, so the resync sends the
    /// primary's content.
    fn forget_inflight(&self, extents: &[(u64, &[u8])]) {
        let bs = self.vol.block_size() as u64;
        let mut st = lock(&self.state);
        for (block, data) in extents {
            for b in *block..*block + data.len() as u64 / bs {
                st.newest.remove(&b);
            }
        }
    }

    /// Seals `msg` into `tx.frame` (cleared first); false without a session.
    fn seal_msg(tx: &mut Sender, msg: &Msg) -> bool {
        let Sender { seal, frame, .. } = tx;
        frame.clear();
        match seal.as_mut() {
            Some(seal) => {
                wire::encode(msg, seal, frame);
                true
            }
            None => false,
        }
    }

    /// Sync and durable modes: writes `tx.frame` to the link. Async mode:
    /// moves it to the send queue for the sender thread (errors then
    /// surface from there).
    fn send_frame(&self, tx: &mut Sender) -> Result<()> {
        let Sender { link, frame, queue, sender_idle, .. } = tx;
        let Some(stream) = link.as_ref() else {
            return Err(Error::new(ErrorKind::Io, "no connection to the secondary"));
        };
        match self.cfg.ack {
            AckMode::Sync | AckMode::Durable => (&**stream).write_all(frame).map_err(|e| Error::from_io("replication send", &e)),
            AckMode::Async => {
                if queue.is_empty() {
                    std::mem::swap(queue, frame);
                } else {
                    queue.append(frame);
                }
                if *sender_idle {
                    self.queued.notify_one();
                }
                Ok(())
            }
        }
    }

    /// Async mode: waits while the send queue is full (back-pressure), until
    /// the sender thread takes it or the replication stops.
    fn wait_for_room<'a>(&self, mut tx: MutexGuard<'a, Sender>) -> MutexGuard<'a, Sender> {
        while tx.queue.len() >= SEND_QUEUE_BYTES && !self.stopping() {
            tx.room_waiters += 1;
            tx = self.room.wait(tx).unwrap_or_else(|p| p.into_inner());
            tx.room_waiters -= 1;
        }
        tx
    }

    /// Async mode's sender thread: takes everything queued and writes it in
    /// one go, until the replication stops. A failed write ends the link
    /// (its frames stay dirty for the resync); frames queued for a link that
    /// is already gone are dropped.
    fn send_loop(self: Arc<Self>) {
        let mut batch = Vec::new();
        loop {
            let mut tx = lock(&self.send);
            while tx.queue.is_empty() && !self.stopping() {
                tx.sender_idle = true;
                tx = self.queued.wait(tx).unwrap_or_else(|p| p.into_inner());
                tx.sender_idle = false;
            }
            if self.stopping() {
                tx.queue.clear();
                drop(tx);
                self.room.notify_all();
                return;
            }
            std::mem::swap(&mut batch, &mut tx.queue);
            let generation = tx.queue_generation;
            let link = tx.link.clone();
            let current = lock(&self.state).generation == generation;
            let waiters = tx.room_waiters > 0;
            drop(tx);
            if waiters {
                self.room.notify_all();
            }
            if let (Some(stream), true) = (link, current) {
                if let Err(e) = (&*stream).write_all(&batch) {
                    self.link_down(generation, Error::from_io("replication send", &e));
                }
            }
            batch.clear();
        }
    }

    /// Durable mode: returns once local write number `ticket` is on stable
    /// storage. An fdatasync covers every write done before it started; a
    /// writer that a running one covers waits for it, any other starts its
    /// own (at most `MAX_CONCURRENT_FLUSHES` at once, else it waits too), so
    /// concurrent writers share them (group commit).
    fn group_flush(&self, ticket: u64) -> Result<()> {
        let mut f = lock(&self.flush);
        loop {
            if f.flushed >= ticket {
                return Ok(());
            }
            if self.status.is_closed() {
                return Err(Error::closed("closed before the write was made durable (it was applied locally)"));
            }
            let covered = f.running.iter().any(|&t| t >= ticket);
            if !covered && f.running.len() < MAX_CONCURRENT_FLUSHES {
                let target = self.local_writes.load(Ordering::Acquire);
                f.running.push(target);
                drop(f);
                let result = self.vol.flush();
                f = lock(&self.flush);
                if let Some(i) = f.running.iter().position(|&t| t == target) {
                    f.running.swap_remove(i);
                }
                f.flushes += 1;
                if result.is_ok() {
                    // Every write counted before the call started is durable
                    // (a call still running with a smaller target is covered too).
                    f.flushed = f.flushed.max(target);
                }
                self.flushed.notify_all();
                result?;
                continue;
            }
            f = self.flushed.wait(f).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Forgets the link of `generation` (if still current): in-flight writes
    /// stay dirty for the next resync.
    fn link_down(&self, generation: u64, error: Error) {
        let mut st = lock(&self.state);
        if st.generation != generation || !st.connected {
            return;
        }
        st.connected = false;
        st.generation += 1;
        st.inflight.clear();
        st.newest.clear();
        Self::wake_all_readers(&st);
        drop(st);
        if !self.stopping() {
            self.status.record(error);
        }
        self.changed.notify_all();
        self.link_changed.notify_all();
    }

    /// Whether write `seq` was acknowledged; if not (and the handle is not
    /// stopping), why is recorded for get_error.
    fn wait_acked(&self, seq: u64, generation: u64) -> bool {
        // No spinning: a writer waiting for its acknowledgement sleeps in
        // the socket read or on the condvar; one that already came in skips
        // the lock.
        if self.acked_hint.load(Ordering::Acquire) >= seq {
            return true;
        }
        let deadline = Instant::now() + self.cfg.peer_timeout;
        let st = self.progress_with(generation, Some(deadline), true, seq, |st| st.acked >= seq);
        if st.acked >= seq {
            return true;
        }
        if self.stopping() {
            return false;
        }
        let lost = st.generation != generation || !st.connected;
        drop(st);
        self.status.record(if lost {
            Error::new(ErrorKind::Io, format!("connection lost before the secondary acknowledged write {seq}; kept for resync"))
        } else {
            Error::new(ErrorKind::Timeout, format!("the secondary did not acknowledge write {seq} within the peer timeout"))
        });
        false
    }

    fn checkpoint(&self, deadline: Option<Instant>) -> Result<()> {
        loop {
            // The barrier must follow the resync, or the secondary would
            // checkpoint without the blocks it missed.
            let st = self.wait_until(deadline, |st| st.connected && st.resynced);
            let generation = st.generation;
            let connected = st.connected && st.resynced;
            drop(st);
            self.status.check_open()?;
            if !connected {
                return Err(Error::new(ErrorKind::Timeout, "the secondary was not connected and resynced before the timeout"));
            }
            let mut tx = lock(&self.send);
            let id = tx.next_barrier;
            tx.next_barrier += 1;
            if !Self::seal_msg(&mut tx, &Msg::Barrier { id }) {
                drop(tx);
                self.link_down(generation, Error::new(ErrorKind::Io, "no connection to the secondary"));
                continue;
            }
            if let Err(e) = self.send_frame(&mut tx) {
                drop(tx);
                self.link_down(generation, e);
                continue;
            }
            drop(tx);
            let done = |st: &State| st.barrier_acked >= id;
            let mut st = match self.cfg.ack {
                AckMode::Async => self.wait_until(deadline, |st| done(st) || st.generation != generation),
                AckMode::Sync | AckMode::Durable => self.progress(generation, deadline, done),
            };
            if st.barrier_acked >= id {
                st.counters.checkpoints += 1;
                return Ok(());
            }
            if st.generation == generation && st.connected {
                drop(st);
                self.status.check_open()?;
                return Err(Error::new(ErrorKind::Timeout, "the secondary did not acknowledge the checkpoint in time"));
            }
            drop(st);
            self.status.check_open()?;
            // The link changed under the barrier: resend it on the new one.
        }
    }

    /// Connection manager: connect (or take a host connection), handshake,
    /// resync, keep alive; repeat.
    fn manage(self: Arc<Self>) {
        let mut backoff = Duration::from_millis(20);
        while !self.stopping() {
            let Some(attempt) = self.next_connection() else { break };
            match attempt.and_then(|stream| self.handshake(stream)) {
                Ok((stream, session)) => {
                    // Only a link that proved itself resets the backoff: one
                    // that dies right after the handshake must not make us
                    // reconnect in a tight loop.
                    let up = Instant::now();
                    if self.run_link(stream, session) || up.elapsed() >= self.cfg.peer_timeout {
                        backoff = Duration::from_millis(20);
                    }
                }
                Err(e) => {
                    if !self.stopping() {
                        self.status.record(e)
                    }
                }
            }
            if self.peer.is_some() {
                let st = lock(&self.state);
                let _unused = self.link_changed.wait_timeout_while(st, backoff, |_| !self.stopping());
                backoff = (backoff * 2).min(Duration::from_millis(500));
            }
        }
    }

    /// The next connection to try: a TCP connect to the secondary, or the
    /// next host-supplied one (waiting for it). None when stopping.
    fn next_connection(&self) -> Option<Result<TcpStream>> {
        let Some(peer) = self.peer else {
            let mut st = lock(&self.state);
            loop {
                if self.stopping() {
                    return None;
                }
                if let Some(stream) = lock(&self.pending).pop_front() {
                    return Some(Ok(stream));
                }
                st = self.link_changed.wait(st).unwrap_or_else(|p| p.into_inner());
            }
        };
        Some(
            TcpStream::connect_timeout(&peer, self.cfg.connect_timeout)
                .map_err(|e| Error::from_io(&format!("connect to secondary {peer}"), &e)),
        )
    }

    fn handshake(&self, stream: TcpStream) -> Result<(TcpStream, auth::Session)> {
        let setup = |e: std::io::Error| Error::from_io("replication socket setup", &e);
        // A host connection may be non-blocking, or a unix stream socket (no TCP_NODELAY there).
        stream.set_nonblocking(false).map_err(setup)?;
        let _ = stream.set_nodelay(true);
        stream.set_read_timeout(Some(self.cfg.peer_timeout)).map_err(setup)?;
        stream.set_write_timeout(Some(self.cfg.peer_timeout)).map_err(setup)?;
        let mut bounded = auth::Deadlined::new(&stream, self.cfg.peer_timeout);
        let session = auth::primary_handshake(&mut bounded, &self.psk, self.vol.block_size(), self.vol.block_count())
            .map_err(|e| Error { message: format!("secondary {}: {}", self.peer_name(), e.message).into(), ..e })?;
        stream.set_read_timeout(Some(self.cfg.peer_timeout)).map_err(setup)?;
        Ok((stream, session))
    }

    /// Serves one connected link until it goes down; true if it got as far
    /// as sending the whole resync.
    fn run_link(self: &Arc<Self>, stream: TcpStream, session: auth::Session) -> bool {
        let read_half = match stream.try_clone() {
            Ok(r) => r,
            Err(e) => {
                self.status.record(Error::from_io("replication link: duplicating the socket", &e));
                return false;
            }
        };
        let generation = {
            let mut tx = lock(&self.send);
            let mut st = lock(&self.state);
            st.connected = true;
            st.resynced = false;
            st.generation += 1;
            st.counters.reconnects += 1;
            st.rx_frames = 0;
            st.last_rx = Instant::now();
            tx.link = Some(Arc::new(stream));
            tx.seal = Some(session.p2s);
            // Frames of an earlier link are covered by this link's resync.
            tx.queue.clear();
            tx.queue_generation = st.generation;
            *lock(&self.rx) = Some(Rx { reader: BufReader::with_capacity(64 << 10, read_half), open: session.s2p, generation: st.generation });
            st.generation
        };
        self.changed.notify_all();
        let reader = match self.cfg.ack {
            AckMode::Sync | AckMode::Durable => None,
            AckMode::Async => {
                let me = self.clone();
                let spawned = std::thread::Builder::new()
                    .name("mr-repl-acks".into())
                    .spawn(move || me.guarded("acknowledgement reader", |w| w.read_acks(generation)));
                match spawned {
                    Ok(h) => Some(h),
                    Err(e) => {
                        self.end_link(generation, Error::from_io("replication link: spawning the acknowledgement reader", &e));
                        return false;
                    }
                }
            }
        };
        let mut resynced = false;
        if self.resync(generation) {
            let mut st = lock(&self.state);
            if st.generation == generation {
                st.resynced = true;
                resynced = true;
            }
            drop(st);
            self.changed.notify_all();
        }
        let ping_every = self.cfg.peer_timeout / 4;
        loop {
            let deadline = Some(Instant::now() + ping_every);
            let st = wait_for(&self.link_changed, lock(&self.state), deadline, |st| st.generation != generation || self.stopping());
            if st.generation != generation || self.stopping() {
                break;
            }
            let (heard, last_rx) = (st.rx_frames, st.last_rx);
            drop(st);
            if last_rx.elapsed() < ping_every {
                continue; // traffic shows the link is alive
            }
            let mut tx = lock(&self.send);
            if !Self::seal_msg(&mut tx, &Msg::Ping) {
                break;
            }
            if let Err(e) = self.send_frame(&mut tx) {
                drop(tx);
                self.link_down(generation, e);
                break;
            }
            drop(tx);
            if self.cfg.ack != AckMode::Async {
                // Nobody else may be reading: take the answer ourselves.
                drop(self.progress(generation, Some(Instant::now() + self.cfg.peer_timeout), |st| st.rx_frames > heard));
            }
        }
        self.end_link(generation, Error::new(ErrorKind::Io, "replication link closed"));
        if let Some(reader) = reader {
            let _ = reader.join();
        }
        *lock(&self.rx) = None;
        resynced
    }

    /// Closes the current link and marks it down (recording `error` unless
    /// the link was already down or we are stopping).
    fn end_link(&self, generation: u64, error: Error) {
        let mut tx = lock(&self.send);
        if let Some(link) = tx.link.take() {
            let _ = link.shutdown(Shutdown::Both);
        }
        tx.seal = None;
        tx.queue.clear();
        drop(tx);
        self.room.notify_all();
        self.link_down(generation, error);
    }

    /// Sends every block dirty when the link came up (unless a newer write
    /// already carries it), read from the volume under the send lock.
    /// True when every block went out on this link.
    fn resync(&self, generation: u64) -> bool {
        let blocks = lock(&self.state).dirty.blocks();
        let durable = self.cfg.ack == AckMode::Durable;
        let mut buf = vec![0u8; self.vol.block_size() as usize];
        let mut last = None;
        for block in blocks {
            let mut tx = lock(&self.send);
            if self.cfg.ack == AckMode::Async {
                tx = self.wait_for_room(tx);
            }
            let mut st = lock(&self.state);
            if st.generation != generation || self.stopping() {
                return false;
            }
            if !st.dirty.contains(block) || st.newest.contains_key(&block) {
                continue;
            }
            if let Err(e) = self.vol.read(block, &mut buf) {
                drop(st);
                drop(tx);
                self.status.record(e);
                return false;
            }
            let seq = tx.next_seq;
            tx.next_seq += 1;
            st.inflight.push_back((seq, block, 1));
            st.newest.insert(block, seq);
            st.counters.resync_blocks += 1;
            drop(st);
            let Sender { seal, frame, .. } = &mut *tx;
            let Some(seal) = seal.as_mut() else { return false };
            frame.clear();
            wire::encode_write(seal, seq, block, durable, &buf, frame);
            if let Err(e) = self.send_frame(&mut tx) {
                drop(tx);
                self.link_down(generation, e);
                return false;
            }
            last = Some(seq);
            // Sync and durable modes: someone must read the acknowledgements
            // or the secondary's replies would fill the socket; keep at most
            // a window of resync writes unacknowledged.
            drop(tx);
            if self.cfg.ack != AckMode::Async && seq % 64 == 0 {
                let st = self.progress(generation, Some(Instant::now() + self.cfg.peer_timeout), |st| st.acked + 256 >= seq);
                if st.generation != generation || !st.connected {
                    return false;
                }
            }
        }
        if let (Some(seq), true) = (last, self.cfg.ack != AckMode::Async) {
            let st = self.progress(generation, Some(Instant::now() + self.cfg.peer_timeout), |st| st.acked >= seq);
            return st.generation == generation && st.connected;
        }
        true
    }

    /// Async mode's reader thread: acknowledgements until the link fails.
    fn read_acks(&self, generation: u64) {
        {
            let mut st = lock(&self.state);
            if st.generation != generation {
                return;
            }
            st.reader_busy = true;
        }
        let error = loop {
            if self.stopping() {
                break Error::new(ErrorKind::Io, "replication link closed");
            }
            if lock(&self.state).generation != generation {
                break Error::new(ErrorKind::Io, "replication link closed");
            }
            if let Err(e) = self.read_one(generation, None, false) {
                break e;
            }
        };
        let mut st = lock(&self.state);
        st.reader_busy = false;
        drop(st);
        if let Some(rx) = lock(&self.rx).as_ref().filter(|rx| rx.generation == generation) {
            let _ = rx.reader.get_ref().shutdown(Shutdown::Both);
        }
        self.link_down(generation, error);
    }

    fn acked(&self, seq: u64) {
        let mut st = lock(&self.state);
        st.rx_frames += 1;
        st.last_rx = Instant::now();
        st.acked = st.acked.max(seq);
        self.acked_hint.store(st.acked, Ordering::Release);
        while let Some(&(s, first, count)) = st.inflight.front() {
            if s > seq {
                break;
            }
            st.inflight.pop_front();
            for b in first..first + count {
                if st.newest.get(&b) == Some(&s) {
                    st.newest.remove(&b);
                    st.dirty.clear(b);
                }
            }
        }
        Self::wake_acked(&st);
        self.notify_changed(&st);
    }
}
