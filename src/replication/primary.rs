//! The primary: writes land on the local volume and are streamed to the
//! secondary. A connection manager thread connects (and reconnects) to the
//! secondary and resyncs it from the dirty map; a reader thread per
//! connection takes acknowledgements. Replication trouble never fails a
//! write: it is stored for `get_error` and the blocks stay dirty.
//!
//! Sync mode writes each frame to the socket on the caller's thread (the
//! caller waits for the acknowledgement anyway). Async mode appends frames
//! to a send queue under the send lock and a sender thread writes whatever
//! has accumulated in one `write` — the caller pays a memcpy, not a
//! syscall. Everything else (resync blocks, barriers, keepalives) goes
//! through the same queue in async mode, so a checkpoint's barrier cannot
//! overtake queued writes. The queue is bounded by `SEND_QUEUE_BYTES`:
//! a write finding it full waits (back-pressure) until the sender thread
//! has taken it; a stuck connection ends after the peer timeout (the
//! socket's send timeout), its queue is dropped, the blocks stay dirty for
//! the resync and the waiting writer continues.

use super::dirty::DirtyMap;
use super::stage::{lock, wait_for, AckMode, Stage, Status};
use super::volume::Volume;
use super::wire::{self, Msg, MAX_WRITE_DATA};
use super::{ReplConfig, ReplStats};
use crate::error::{Error, ErrorKind, Result};
use std::collections::{HashMap, VecDeque};
use std::io::{BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// Async mode: queued frame bytes at which `write` waits for the sender
/// thread. Up to twice this can be held: the queue plus the batch being
/// written.
/// cbindgen:ignore
pub const SEND_QUEUE_BYTES: usize = 4 << 20;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The write side: held while a write is applied locally and framed, so
/// the order on the wire is the order on the volume.
struct Sender {
    link: Option<Arc<TcpStream>>,
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
}

pub(super) struct Shared {
    vol: Arc<Volume>,
    peer: SocketAddr,
    cfg: ReplConfig,
    pub(super) status: Status,
    send: Mutex<Sender>,
    /// With `send`: the async queue has frames (sender thread waits).
    queued: Condvar,
    /// With `send`: the async queue was taken (writers wait for room).
    room: Condvar,
    state: Mutex<State>,
    /// With `state`: acknowledgements, link up/down, stop.
    changed: Condvar,
    /// With `state`: link up/down and stop only. The manager's keepalive
    /// loop waits here, so an acknowledgement (notify on `changed`) does
    /// not wake it: one wake-up less per sync write.
    link_changed: Condvar,
    stop: AtomicBool,
    /// `State::acked`, readable without the lock: a sync writer whose
    /// acknowledgement is already in skips the lock (see `wait_acked`).
    acked_hint: AtomicU64,
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
    pub fn start(vol: Arc<Volume>, peer: SocketAddr, cfg: ReplConfig) -> Result<Self> {
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
        };
        let shared = Arc::new(Shared {
            vol,
            peer,
            cfg,
            status: Status::new(),
            send: Mutex::new(Sender {
                link: None,
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
            stop: AtomicBool::new(false),
            acked_hint: AtomicU64::new(0),
            attached: AtomicBool::new(true),
            #[cfg(test)]
            panic_on_ack: AtomicBool::new(false),
        });
        shared.status.set_stage(Stage::Running);
        let sender = match shared.cfg.ack {
            AckMode::Sync => None,
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

    /// Applies locally, then replicates (while RUNNING). Only a local
    /// failure fails the call, and in sync mode a close that overtakes the
    /// write before its acknowledgement came in: Closed (it was applied
    /// locally; the secondary may or may not have it).
    pub fn write(&self, block: u64, data: &[u8]) -> Result<()> {
        let s = &self.shared;
        s.status.check_open()?;
        s.vol.check_range(block, data.len())?;
        let mut tx = lock(&s.send);
        if s.cfg.ack == AckMode::Async {
            tx = s.wait_for_room(tx);
        }
        s.vol.write_raw(block, data)?;
        if s.status.stage() != Stage::Running {
            return Ok(());
        }
        let sent = s.replicate(&mut tx, block, data);
        drop(tx);
        if s.cfg.ack == AckMode::Async {
            return Ok(());
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
            s.status.record(Error::new(
                ErrorKind::Io,
                format!("write to block {block} not replicated: the secondary {} is not connected; kept for resync", s.peer),
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
        let st = s.wait_until(deadline, |st| st.connected && st.dirty.count() == 0);
        if st.connected && st.dirty.count() == 0 {
            return Ok(());
        }
        drop(st);
        s.status.check_open()?;
        Err(Error::new(ErrorKind::Timeout, "the secondary is not connected and in sync yet"))
    }

    pub fn stats(&self) -> ReplStats {
        let st = lock(&self.shared.state);
        ReplStats {
            connected: st.connected,
            dirty_blocks: st.dirty.count(),
            inflight_writes: st.inflight.len() as u64,
            writes_sent: st.counters.writes_sent,
            resync_blocks: st.counters.resync_blocks,
            reconnects: st.counters.reconnects,
            checkpoints: st.counters.checkpoints,
            ..ReplStats::default()
        }
    }

    /// Ends the manager and reader threads and frees the volume's write path.
    fn shutdown(&self) {
        let s = &self.shared;
        s.stop.store(true, Ordering::Release);
        if let Some(link) = lock(&s.send).link.take() {
            let _ = link.shutdown(Shutdown::Both);
        }
        s.changed.notify_all();
        s.link_changed.notify_all();
        s.queued.notify_all();
        s.room.notify_all();
        if let Some(handle) = lock(&self.manager).take() {
            let _ = handle.join();
        }
        if let Some(handle) = lock(&self.sender).take() {
            let _ = handle.join();
        }
        s.detach();
    }

    pub fn close(&self) {
        if self.shared.status.close() {
            self.shutdown();
            self.shared.changed.notify_all();
            self.shared.link_changed.notify_all();
        }
    }
}

impl Drop for Primary {
    fn drop(&mut self) {
        self.close();
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
        if let Some(link) = lock(&self.send).link.take() {
            let _ = link.shutdown(Shutdown::Both);
        }
        self.changed.notify_all();
        self.link_changed.notify_all();
        self.queued.notify_all();
        self.room.notify_all();
    }

    /// Waits on the state until `done` holds, the deadline passes or the
    /// handle stops; returns the state as last seen.
    fn wait_until(&self, deadline: Option<Instant>, done: impl Fn(&State) -> bool) -> MutexGuard<'_, State> {
        wait_for(&self.changed, lock(&self.state), deadline, |st| done(st) || self.stopping())
    }

    /// Marks the blocks dirty and, with a link up, frames them onto it.
    /// Returns the last sequence number and the link generation if sent.
    fn replicate(&self, tx: &mut Sender, block: u64, data: &[u8]) -> Option<(u64, u64)> {
        let bs = self.vol.block_size() as usize;
        let mut st = lock(&self.state);
        let n = (data.len() / bs) as u64;
        for b in block..block + n {
            st.dirty.set(b);
        }
        if tx.link.is_none() || !st.connected {
            return None;
        }
        let generation = st.generation;
        tx.frame.clear();
        let mut seq = 0;
        for (i, chunk) in data.chunks(MAX_WRITE_DATA).enumerate() {
            seq = tx.next_seq;
            tx.next_seq += 1;
            let first = block + (i * MAX_WRITE_DATA / bs) as u64;
            let count = (chunk.len() / bs) as u64;
            st.inflight.push_back((seq, first, count));
            for b in first..first + count {
                st.newest.insert(b, seq);
            }
            st.counters.writes_sent += 1;
            wire::encode_write(seq, first, chunk, &mut tx.frame);
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

    /// Sync mode: writes `tx.frame` to the link. Async mode: moves it to the
    /// send queue for the sender thread (errors then surface from there).
    fn send_frame(&self, tx: &mut Sender) -> Result<()> {
        let Sender { link, frame, queue, sender_idle, .. } = tx;
        let Some(stream) = link.as_ref() else {
            return Err(Error::new(ErrorKind::Io, "no connection to the secondary"));
        };
        match self.cfg.ack {
            AckMode::Sync => (&**stream).write_all(frame).map_err(|e| Error::from_io("replication send", &e)),
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
        // No spinning: a writer waiting for its acknowledgement sleeps (the
        // library never busy-waits); an acknowledgement that already came
        // in skips the lock.
        if self.acked_hint.load(Ordering::Acquire) >= seq {
            return true;
        }
        let deadline = Instant::now() + self.cfg.peer_timeout;
        let st = self.wait_until(Some(deadline), |st| st.acked >= seq || st.generation != generation);
        if st.acked >= seq {
            return true;
        }
        if self.stopping() {
            return false;
        }
        let lost = st.generation != generation;
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
            tx.frame.clear();
            wire::encode(&Msg::Barrier { id }, &mut tx.frame);
            if let Err(e) = self.send_frame(&mut tx) {
                drop(tx);
                self.link_down(generation, e);
                continue;
            }
            drop(tx);
            let mut st = self.wait_until(deadline, |st| st.barrier_acked >= id || st.generation != generation);
            if st.barrier_acked >= id {
                st.counters.checkpoints += 1;
                return Ok(());
            }
            if st.generation == generation {
                drop(st);
                self.status.check_open()?;
                return Err(Error::new(ErrorKind::Timeout, "the secondary did not acknowledge the checkpoint in time"));
            }
            // The link changed under the barrier: resend it on the new one.
        }
    }

    /// Connection manager: connect, handshake, resync, keep alive; repeat.
    fn manage(self: Arc<Self>) {
        let mut backoff = Duration::from_millis(20);
        while !self.stopping() {
            match self.connect() {
                Ok(stream) => {
                    // Only a link that proved itself resets the backoff: one
                    // that dies right after the handshake must not make us
                    // reconnect in a tight loop.
                    let up = Instant::now();
                    if self.run_link(stream) || up.elapsed() >= self.cfg.peer_timeout {
                        backoff = Duration::from_millis(20);
                    }
                }
                Err(e) => self.status.record(e),
            }
            let st = lock(&self.state);
            let _unused = self.link_changed.wait_timeout_while(st, backoff, |_| !self.stopping());
            backoff = (backoff * 2).min(Duration::from_millis(500));
        }
    }

    fn connect(&self) -> Result<TcpStream> {
        let peer = self.peer;
        let mut stream = TcpStream::connect_timeout(&peer, self.cfg.connect_timeout)
            .map_err(|e| Error::from_io(&format!("connect to secondary {peer}"), &e))?;
        let setup = |e: std::io::Error| Error::from_io("replication socket setup", &e);
        stream.set_nodelay(true).map_err(setup)?;
        stream.set_read_timeout(Some(self.cfg.peer_timeout)).map_err(setup)?;
        stream.set_write_timeout(Some(self.cfg.peer_timeout)).map_err(setup)?;
        let mut hello = Vec::new();
        wire::encode(&Msg::Hello { block_size: self.vol.block_size(), block_count: self.vol.block_count() }, &mut hello);
        stream.write_all(&hello).map_err(|e| Error::from_io("replication handshake send", &e))?;
        match wire::read_msg(&mut stream)? {
            Msg::Welcome => Ok(stream),
            Msg::Error { text } => Err(Error::new(ErrorKind::InvalidArgument, format!("secondary {peer} refused: {text}"))),
            other => Err(Error::new(ErrorKind::Parse, format!("corrupt replication stream: expected WELCOME, got {}", other.name()))),
        }
    }

    /// Serves one connected link until it goes down; true if it got as far
    /// as sending the whole resync.
    fn run_link(self: &Arc<Self>, stream: TcpStream) -> bool {
        let read_half = stream.try_clone();
        let generation = {
            let mut tx = lock(&self.send);
            let mut st = lock(&self.state);
            st.connected = true;
            st.resynced = false;
            st.generation += 1;
            st.counters.reconnects += 1;
            tx.link = Some(Arc::new(stream));
            // Frames of an earlier link are covered by this link's resync.
            tx.queue.clear();
            tx.queue_generation = st.generation;
            st.generation
        };
        self.changed.notify_all();
        let reader = read_half.map_err(|e| Error::from_io("replication link: duplicating the socket", &e)).and_then(|read_half| {
            let me = self.clone();
            std::thread::Builder::new()
                .name("mr-repl-acks".into())
                .spawn(move || me.guarded("acknowledgement reader", |w| w.read_acks(read_half, generation)))
                .map_err(|e| Error::from_io("replication link: spawning the acknowledgement reader", &e))
        });
        let reader = match reader {
            Ok(reader) => reader,
            Err(e) => {
                self.end_link(generation, e);
                return false;
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
            let st = wait_for(&self.link_changed, lock(&self.state), deadline, |st| {
                st.generation != generation || self.stopping()
            });
            if st.generation != generation || self.stopping() {
                break;
            }
            drop(st);
            let mut tx = lock(&self.send);
            tx.frame.clear();
            wire::encode(&Msg::Ping, &mut tx.frame);
            if let Err(e) = self.send_frame(&mut tx) {
                drop(tx);
                self.link_down(generation, e);
            }
        }
        self.end_link(generation, Error::new(ErrorKind::Io, "replication link closed"));
        let _ = reader.join();
        resynced
    }

    /// Closes the current link and marks it down (recording `error` unless
    /// the link was already down or we are stopping).
    fn end_link(&self, generation: u64, error: Error) {
        let mut tx = lock(&self.send);
        if let Some(link) = tx.link.take() {
            let _ = link.shutdown(Shutdown::Both);
        }
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
        let mut buf = vec![0u8; self.vol.block_size() as usize];
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
            tx.frame.clear();
            wire::encode_write(seq, block, &buf, &mut tx.frame);
            if let Err(e) = self.send_frame(&mut tx) {
                drop(tx);
                self.link_down(generation, e);
                return false;
            }
        }
        true
    }

    /// Reader thread: acknowledgements until the link fails.
    fn read_acks(&self, stream: TcpStream, generation: u64) {
        let mut reader = BufReader::new(&stream);
        let error = loop {
            match wire::read_msg(&mut reader) {
                Ok(Msg::Ack { seq }) => {
                    #[cfg(test)]
                    if self.panic_on_ack.load(Ordering::Acquire) {
                        panic!("test panic on acknowledgement {seq}");
                    }
                    self.acked(seq)
                }
                Ok(Msg::BarrierAck { id }) => {
                    let mut st = lock(&self.state);
                    st.barrier_acked = st.barrier_acked.max(id);
                    drop(st);
                    self.changed.notify_all();
                }
                Ok(Msg::Error { text }) => break Error::new(ErrorKind::Io, format!("secondary reported: {text}")),
                Ok(other) => break Error::new(ErrorKind::Parse, format!("corrupt replication stream: unexpected {} from the secondary", other.name())),
                Err(e) => break Error { message: format!("secondary {}: {}", self.peer, e.message).into(), ..e },
            }
        };
        let _ = stream.shutdown(Shutdown::Both);
        self.link_down(generation, error);
    }

    fn acked(&self, seq: u64) {
        let mut st = lock(&self.state);
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
        drop(st);
        self.changed.notify_all();
    }
}
