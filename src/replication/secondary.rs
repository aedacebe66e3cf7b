//! The secondary: listens for the primary (or takes connections the host
//! hands over), authenticates it (see `auth`), applies its writes to the
//! base volume (copying the old contents the speculative view still needs
//! into the hidden layer), keeps its own writes in the active layer,
//! empties both at a checkpoint and commits the active layer at failover.
//!
//! Takeover rule: one primary at a time. While an authenticated primary is
//! connected, another one that completes the handshake is refused (told
//! why, and the refusal is stored for `get_error`). The connected primary
//! keeps its place until its connection ends: it closes it, it sends a
//! frame that does not verify, or it is silent for the peer timeout (a
//! live primary pings every quarter of it). A restarted primary therefore
//! takes over within one peer timeout of the old connection's last frame,
//! at once if the old process died (the kernel closes its socket).
//!
//! Each connection runs its handshake on its own thread; at most
//! `MAX_HANDSHAKES` at once (more are closed at once and counted as
//! refused), each bounded by the peer timeout.

use super::auth::{self, Psk};
use super::layers::Layers;
use super::stage::{lock, wait_for, Stage, Status};
use super::volume::Volume;
use super::wire::{self, Direction, Msg};
use super::{ReplConfig, ReplStats};
use crate::error::{Error, ErrorKind, Result};
use crate::sys::{self, EventFd, PollResult};
use std::collections::HashMap;
use std::io::{BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

/// Connections in their handshake at once, at most.
/// cbindgen:ignore
pub const MAX_HANDSHAKES: usize = 8;

#[derive(Default)]
struct Link {
    /// The authenticated primary's connection (a handle for shutdown).
    current: Option<TcpStream>,
    /// A primary finished the handshake and is connected.
    connected: bool,
    /// Connections in their handshake, by id (handles for shutdown).
    handshaking: HashMap<u64, TcpStream>,
    next_id: u64,
    /// Every connection thread (finished ones are joined as new ones start).
    threads: Vec<JoinHandle<()>>,
    connections: u64,
    writes_applied: u64,
    checkpoints: u64,
    refused: u64,
    flushes: u64,
}

struct Shared {
    vol: Arc<Volume>,
    cfg: ReplConfig,
    psk: Psk,
    status: Status,
    layers: Mutex<Layers>,
    link: Mutex<Link>,
    changed: Condvar,
    stop: AtomicBool,
    wake: EventFd,
    /// This handle still holds the volume's write path; cleared exactly once
    /// (see `detach`), so a later replication's hold is never released by us.
    attached: AtomicBool,
    /// Tests: accept fails with EMFILE while set; accept calls made.
    #[cfg(test)]
    accept_fault: AtomicBool,
    #[cfg(test)]
    accept_attempts: std::sync::atomic::AtomicU64,
}

/// How long the acceptor pauses after an accept error other than WouldBlock.
const ACCEPT_ERROR_PAUSE: std::time::Duration = std::time::Duration::from_millis(100);

pub struct Secondary {
    shared: Arc<Shared>,
    acceptor: Mutex<Option<JoinHandle<()>>>,
    local: Option<SocketAddr>,
}

impl Secondary {
    pub fn start(vol: Arc<Volume>, listen: Option<SocketAddr>, cfg: ReplConfig) -> Result<Self> {
        let psk = cfg.psk.clone().ok_or_else(|| Error::invalid("a replication needs a pre-shared key (cfg.key)"))?;
        let listener = match listen {
            Some(listen) => {
                let listener = TcpListener::bind(listen).map_err(|e| Error::from_io(&format!("listen on {listen}"), &e))?;
                listener.set_nonblocking(true).map_err(|e| Error::from_io("listener setup", &e))?;
                Some(listener)
            }
            None => None,
        };
        let local = match &listener {
            Some(l) => Some(l.local_addr().map_err(|e| Error::from_io("getsockname", &e))?),
            None => None,
        };
        let wake = new_wake()?;
        let layers = Layers::create(&vol)?;
        // Attach after every fallible setup step: an error above must not
        // leave the volume attached with no handle to detach it.
        vol.attach()?;
        let shared = Arc::new(Shared {
            vol,
            cfg,
            psk,
            status: Status::new(),
            layers: Mutex::new(layers),
            link: Mutex::new(Link::default()),
            changed: Condvar::new(),
            stop: AtomicBool::new(false),
            wake,
            attached: AtomicBool::new(true),
            #[cfg(test)]
            accept_fault: AtomicBool::new(false),
            #[cfg(test)]
            accept_attempts: Default::default(),
        });
        shared.status.set_stage(Stage::Running);
        let acceptor = match listener {
            None => None,
            Some(listener) => {
                let worker = shared.clone();
                let spawned = std::thread::Builder::new().name("mr-repl-secondary".into()).spawn(move || {
                    let me = worker.clone();
                    crate::sync::fault::guard("replication acceptor thread", &me.status.fault, || me.halt(), || worker.accept_loop(listener));
                });
                Some(spawned.map_err(|e| {
                    shared.detach();
                    Error::from_io("spawn replication thread", &e)
                })?)
            }
        };
        Ok(Secondary { shared, acceptor: Mutex::new(acceptor), local })
    }

    pub(super) fn status(&self) -> &Status {
        &self.shared.status
    }

    /// Tests: make accept fail (EMFILE) or work again; returns the accept calls so far.
    #[cfg(test)]
    pub(super) fn accept_fault(&self, fail: bool) -> u64 {
        self.shared.accept_fault.store(fail, Ordering::Release);
        self.shared.accept_attempts.load(Ordering::Relaxed)
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local
    }

    /// A connection the host accepted (or made) for this secondary: it gets
    /// the same handshake and takeover rule as an accepted one.
    pub fn add_connection(&self, stream: TcpStream) -> std::result::Result<(), (Error, TcpStream)> {
        let s = &self.shared;
        if let Err(e) = s.status.check_open() {
            return Err((e, stream));
        }
        if s.status.stage() != Stage::Running || s.stop.load(Ordering::Acquire) {
            return Err((s.status.wrong_stage("add_connection"), stream));
        }
        s.clone().spawn_connection(stream);
        Ok(())
    }

    /// The speculative view while replicating (active -> hidden -> base),
    /// the volume itself after DONE.
    pub fn read(&self, block: u64, buf: &mut [u8]) -> Result<()> {
        let s = &self.shared;
        s.status.check_open()?;
        let layers = lock(&s.layers);
        match s.status.stage() {
            Stage::Done => s.vol.read(block, buf),
            _ => layers.read(&s.vol, block, buf),
        }
    }

    pub fn write(&self, block: u64, data: &[u8]) -> Result<()> {
        self.write_batch(&[(block, data)])
    }

    pub fn write_batch(&self, extents: &[(u64, &[u8])]) -> Result<()> {
        let s = &self.shared;
        s.status.check_open()?;
        super::primary::check_extents(&s.vol, extents)?;
        let mut layers = lock(&s.layers);
        match s.status.stage() {
            Stage::Done => s.vol.write_batch_raw(extents),
            _ => extents.iter().try_for_each(|(block, data)| layers.write_active(&s.vol, *block, data)),
        }
    }

    /// Local checkpoint: the view becomes the base (what the primary sent).
    pub fn checkpoint(&self) -> Result<()> {
        let s = &self.shared;
        let mut layers = lock(&s.layers);
        if !s.status.begin("checkpoint", false)? {
            return Ok(());
        }
        s.vol.flush()?;
        layers.make_empty()?;
        lock(&s.link).checkpoints += 1;
        Ok(())
    }

    /// Stops replicating without failover: the layers are dropped, the base
    /// (the primary's data) stays.
    pub fn stop(&self) -> Result<()> {
        let s = &self.shared;
        if !s.status.begin("stop", false)? {
            return Ok(());
        }
        self.shutdown_network();
        let emptied = lock(&s.layers).make_empty();
        s.status.set_stage(Stage::Done);
        // As Primary::stop and a successful failover: a clean stop leaves no error.
        s.status.clear_error();
        s.detach();
        emptied
    }

    /// Takes over: no more primary writes, the active layer is committed into
    /// the base, and the volume stands alone (DONE). On failure the stage is
    /// FAILOVER_FAILED with the reason stored and the layers kept, so the
    /// call can be retried.
    pub fn failover(&self) -> Result<()> {
        let s = &self.shared;
        if !s.status.begin("failover", true)? {
            return Ok(());
        }
        self.shutdown_network();
        let mut layers = lock(&s.layers);
        s.status.set_stage(Stage::Failover);
        match layers.commit_active(&s.vol) {
            Ok(()) => {
                s.status.set_stage(Stage::Done);
                s.status.clear_error();
                s.detach();
                Ok(())
            }
            Err(e) => {
                s.status.set_stage(Stage::FailoverFailed);
                let e = Error { message: format!("failover: committing the active layer failed: {}", e.message).into(), ..e };
                s.status.record(e.clone());
                Err(e)
            }
        }
    }

    /// Waits until a primary is connected.
    pub fn wait_synced(&self, deadline: Option<Instant>) -> Result<()> {
        let s = &self.shared;
        s.status.check_open()?;
        if s.status.stage() != Stage::Running {
            return Err(s.status.wrong_stage("wait_synced"));
        }
        let link = wait_for(&s.changed, lock(&s.link), deadline, |l| l.connected || s.stop.load(Ordering::Acquire));
        let connected = link.connected;
        drop(link);
        s.status.check_open()?;
        if !connected {
            return Err(Error::new(ErrorKind::Timeout, "no primary connected before the timeout"));
        }
        Ok(())
    }

    pub fn stats(&self) -> ReplStats {
        let s = &self.shared;
        let (active, hidden) = {
            let l = lock(&s.layers);
            (l.active.len() as u64, l.hidden.len() as u64)
        };
        let link = lock(&s.link);
        ReplStats {
            connected: link.connected,
            reconnects: link.connections,
            writes_applied: link.writes_applied,
            checkpoints: link.checkpoints,
            active_blocks: active,
            hidden_blocks: hidden,
            refused: link.refused,
            flushes: link.flushes,
            ..ReplStats::default()
        }
    }

    /// Stops accepting and ends every connection, joining their threads.
    fn shutdown_network(&self) {
        let s = &self.shared;
        s.halt();
        if let Some(handle) = lock(&self.acceptor).take() {
            let _ = handle.join();
        }
        let threads = std::mem::take(&mut lock(&s.link).threads);
        for t in threads {
            let _ = t.join();
        }
        s.changed.notify_all();
    }

    pub fn close(&self) {
        if self.shared.status.close() {
            self.shutdown_network();
            self.shared.detach();
        }
    }
}

impl Drop for Secondary {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
thread_local! {
    /// Tests: the next `Secondary::start` on this thread fails to create its eventfd.
    pub(super) static FAIL_EVENTFD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn new_wake() -> Result<EventFd> {
    #[cfg(test)]
    if FAIL_EVENTFD.with(|f| f.replace(false)) {
        return Err(Error::os("eventfd", libc::EMFILE));
    }
    EventFd::new()
}

fn peer_of(stream: &TcpStream) -> String {
    stream.peer_addr().map(|a| a.to_string()).unwrap_or_else(|_| "(host connection)".into())
}

impl Shared {
    /// Frees the volume's write path if this handle still holds it. Stop,
    /// failover and close all end here; only the first call detaches, so
    /// closing a stopped handle cannot free a hold taken since by another
    /// replication.
    fn detach(&self) {
        if self.attached.swap(false, Ordering::AcqRel) {
            self.vol.detach();
        }
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    /// Stops the acceptor and shuts every connection (their threads end).
    fn halt(&self) {
        self.stop.store(true, Ordering::Release);
        self.wake.signal();
        let link = lock(&self.link);
        if let Some(current) = link.current.as_ref() {
            let _ = current.shutdown(Shutdown::Both);
        }
        for conn in link.handshaking.values() {
            let _ = conn.shutdown(Shutdown::Both);
        }
        drop(link);
        self.changed.notify_all();
    }

    fn accept_loop(self: Arc<Self>, listener: TcpListener) {
        loop {
            match sys::wait_readable_or_woken(listener.as_raw_fd(), self.wake.as_raw_fd(), None) {
                Ok(PollResult::Ready) => {}
                Ok(_) => return,
                Err(e) => {
                    self.status.record(e);
                    return;
                }
            }
            let stream = match self.accept(&listener) {
                Ok(stream) => stream,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(e) => {
                    self.status.record(Error::from_io("accept", &e));
                    // EMFILE, ENFILE, ENOBUFS...: the pending connection
                    // stays queued and the listener readable, so retrying
                    // at once would spin. Pause, but end at once if woken.
                    let pause = Instant::now() + ACCEPT_ERROR_PAUSE;
                    match sys::wait_readable_or_woken(-1, self.wake.as_raw_fd(), Some(pause)) {
                        Ok(PollResult::TimedOut) => continue,
                        Ok(_) => return,
                        Err(e) => {
                            self.status.record(e);
                            return;
                        }
                    }
                }
            };
            if self.stopping() {
                return;
            }
            self.clone().spawn_connection(stream);
        }
    }

    fn accept(&self, listener: &TcpListener) -> std::io::Result<TcpStream> {
        #[cfg(test)]
        {
            self.accept_attempts.fetch_add(1, Ordering::Relaxed);
            if self.accept_fault.load(Ordering::Acquire) {
                return Err(std::io::Error::from_raw_os_error(libc::EMFILE));
            }
        }
        listener.accept().map(|(stream, _)| stream)
    }

    /// Starts the handshake of a new connection on its own thread (at most
    /// `MAX_HANDSHAKES` at once).
    fn spawn_connection(self: Arc<Self>, stream: TcpStream) {
        let mut link = lock(&self.link);
        // Join the threads of connections that ended.
        let (done, running): (Vec<_>, Vec<_>) = std::mem::take(&mut link.threads).into_iter().partition(|t| t.is_finished());
        link.threads = running;
        for t in done {
            let _ = t.join();
        }
        let peer = peer_of(&stream);
        if link.handshaking.len() >= MAX_HANDSHAKES {
            link.refused += 1;
            drop(link);
            let _ = stream.shutdown(Shutdown::Both);
            self.status.record(Error::new(
                ErrorKind::State,
                format!("refused a connection from {peer}: {MAX_HANDSHAKES} handshakes are already under way"),
            ));
            return;
        }
        let control = match stream.try_clone() {
            Ok(control) => control,
            Err(e) => {
                drop(link);
                self.status.record(Error::from_io("replication connection dropped: duplicating its socket", &e));
                return;
            }
        };
        let id = link.next_id;
        link.next_id += 1;
        link.handshaking.insert(id, control);
        let me = self.clone();
        let spawned = std::thread::Builder::new().name("mr-repl-conn".into()).spawn(move || {
            let halt = me.clone();
            crate::sync::fault::guard("replication connection thread", &me.status.fault, || halt.halt(), || me.connection(id, stream, peer));
        });
        match spawned {
            Ok(handle) => link.threads.push(handle),
            Err(e) => {
                link.handshaking.remove(&id);
                drop(link);
                self.status.record(Error::from_io("replication connection dropped: spawning its thread", &e));
            }
        }
    }

    /// One connection: handshake, takeover rule, then serve it.
    fn connection(&self, id: u64, stream: TcpStream, peer: String) {
        let setup = |e: std::io::Error| Error::from_io("replication socket setup", &e);
        let prepared = stream
            .set_nonblocking(false)
            .and_then(|()| stream.set_read_timeout(Some(self.cfg.peer_timeout)))
            .and_then(|()| stream.set_write_timeout(Some(self.cfg.peer_timeout)))
            .map_err(setup);
        // A host connection may be a unix stream socket: no TCP_NODELAY there.
        let _ = stream.set_nodelay(true);
        // The whole handshake within the peer timeout, then reads go back to
        // the peer timeout each.
        let handshake = prepared.and_then(|()| {
            let mut bounded = auth::Deadlined::new(&stream, self.cfg.peer_timeout);
            let session = auth::secondary_handshake(&mut bounded, &self.psk, self.vol.block_size(), self.vol.block_count());
            stream.set_read_timeout(Some(self.cfg.peer_timeout)).map_err(setup)?;
            session
        });
        let mut link = lock(&self.link);
        link.handshaking.remove(&id);
        let mut session = match handshake {
            Ok(session) => session,
            Err(e) => {
                let stopping = self.stopping();
                if !stopping {
                    link.refused += 1;
                }
                drop(link);
                if !stopping {
                    self.status.record(Error { message: format!("refused primary {peer}: {}", e.message).into(), ..e });
                }
                let _ = stream.shutdown(Shutdown::Both);
                return;
            }
        };
        if self.stopping() || self.status.stage() != Stage::Running {
            return;
        }
        if link.connected {
            link.refused += 1;
            drop(link);
            let why = "another primary is connected; it keeps its place until its connection closes or is silent for the peer timeout";
            let _ = send(&stream, &mut session.s2p, Msg::Error { text: why.into() });
            let _ = stream.shutdown(Shutdown::Both);
            self.status.record(Error::new(ErrorKind::State, format!("refused a second primary {peer}: {why}")));
            return;
        }
        let control = match stream.try_clone() {
            Ok(c) => c,
            Err(e) => {
                drop(link);
                self.status.record(Error::from_io("replication connection dropped: duplicating its socket", &e));
                return;
            }
        };
        link.current = Some(control);
        link.connected = true;
        link.connections += 1;
        drop(link);
        self.changed.notify_all();
        let result = send(&stream, &mut session.s2p, Msg::Welcome).and_then(|()| self.serve(&stream, session));
        let mut link = lock(&self.link);
        link.connected = false;
        link.current = None;
        drop(link);
        self.changed.notify_all();
        if let Err(e) = result {
            if !self.stopping() {
                self.status.record(Error { message: format!("primary {peer}: {}", e.message).into(), ..e });
            }
        }
        let _ = stream.shutdown(Shutdown::Both);
    }

    /// Applies the authenticated primary's frames until the connection ends.
    ///
    /// Durable writes are acknowledged by a flusher thread (started by the
    /// first durable write of a connection; `MAX_CONCURRENT_FLUSHES` of
    /// them): the apply loop hands over the last durable write read so far
    /// and goes on reading and applying; the flusher runs fdatasync for
    /// everything handed over that no running fdatasync covers, then
    /// acknowledges it. One fdatasync covers every write applied before it
    /// started (group commit) and the link keeps moving during it.
    /// Acknowledgements never cover a durable write that is not flushed yet.
    fn serve(&self, stream: &TcpStream, session: auth::Session) -> Result<()> {
        let auth::Session { p2s: mut open, s2p: seal } = session;
        let out = Outbox { stream, seal: Mutex::new((seal, Vec::new())) };
        let flush = FlushQueue::default();
        std::thread::scope(|scope| {
            let mut flushers = Vec::new();
            let result = self.apply_loop(stream, &mut open, &out, &flush, || {
                if flushers.is_empty() {
                    for _ in 0..super::primary::MAX_CONCURRENT_FLUSHES {
                        flushers.push(scope.spawn(|| self.flush_loop(&out, &flush)));
                    }
                }
            });
            flush.stop();
            for f in flushers {
                let _ = f.join();
            }
            let result = result.and(flush.check());
            if let Err(e) = &result {
                if matches!(e.kind, ErrorKind::Parse | ErrorKind::Auth | ErrorKind::InvalidArgument) && !self.stopping() {
                    let _ = out.send(&[Msg::Error { text: e.message.to_string() }]);
                }
            }
            result
        })
    }

    fn apply_loop(
        &self,
        stream: &TcpStream,
        open: &mut Direction,
        out: &Outbox<'_>,
        flush: &FlushQueue,
        mut start_flusher: impl FnMut(),
    ) -> Result<()> {
        let mut reader = BufReader::with_capacity(256 << 10, stream);
        // Every write up to `applied` is applied; every one up to `ackable`
        // may be acknowledged (applied, and flushed if any durable write
        // is among them).
        let mut applied = 0u64;
        let mut last_seq: Option<u64> = None;
        // The newest durable write not yet handed to the flusher.
        let mut durable_pending: Option<u64> = None;
        loop {
            let msg = wire::read_msg(&mut reader, open)?;
            if self.status.stage() != Stage::Running || self.stopping() {
                return Ok(());
            }
            flush.check()?;
            match msg {
                Msg::Write { seq, block, durable, data } => {
                    if last_seq.is_some_and(|last| seq != last + 1) {
                        return Err(Error::new(
                            ErrorKind::Parse,
                            format!("corrupt replication stream: write {seq} after write {}", last_seq.unwrap_or(0)),
                        ));
                    }
                    last_seq = Some(seq);
                    self.vol
                        .check_range(block, data.len())
                        .map_err(|e| Error::new(ErrorKind::Parse, format!("corrupt replication stream: write {seq}: {}", e.message)))?;
                    lock(&self.layers).apply_primary(&self.vol, block, &data)?;
                    applied = seq;
                    lock(&self.link).writes_applied += 1;
                    if durable {
                        durable_pending = Some(seq);
                    }
                    if reader.buffer().is_empty() {
                        match durable_pending.take() {
                            Some(upto) => {
                                // Whatever else was applied up to here rides along.
                                start_flusher();
                                flush.hand(applied.max(upto));
                            }
                            None if !flush.busy_below(applied) => out.send(&[Msg::Ack { seq: applied }])?,
                            None => flush.hand(applied),
                        }
                    }
                }
                Msg::Barrier { id } => {
                    {
                        let mut layers = lock(&self.layers);
                        self.vol.flush()?;
                        layers.make_empty()?;
                    }
                    durable_pending = None;
                    flush.flushed_by_barrier(applied);
                    lock(&self.link).checkpoints += 1;
                    // Both in one write: one wake-up of the primary's reader.
                    out.send(&[Msg::Ack { seq: applied }, Msg::BarrierAck { id }])?;
                }
                Msg::Ping => {
                    // Only what may be acknowledged: never an unflushed durable write.
                    let ackable = if durable_pending.is_some() { flush.flushed() } else { flush.ackable(applied) };
                    out.send(&[Msg::Ack { seq: ackable }])?;
                }
                Msg::Error { text } => return Err(Error::new(ErrorKind::Io, format!("primary reported: {text}"))),
                other => {
                    return Err(Error::new(
                        ErrorKind::Parse,
                        format!("corrupt replication stream: unexpected {} from the primary", other.name()),
                    ))
                }
            }
        }
    }

    /// The flusher thread: fdatasync for everything handed over so far, then
    /// its acknowledgement; until the apply loop stops it.
    fn flush_loop(&self, out: &Outbox<'_>, flush: &FlushQueue) {
        while let Some(upto) = flush.next() {
            let result = self.vol.flush().and_then(|()| {
                lock(&self.link).flushes += 1;
                flush.done(upto);
                out.send(&[Msg::Ack { seq: upto }])
            });
            if let Err(e) = result {
                flush.fail(e);
                // The apply loop is reading: end the connection under it.
                let _ = out.stream.shutdown(Shutdown::Both);
                return;
            }
        }
    }
}

/// The secondary's sending side of a session: frames are sealed and
/// written under one lock, so their order on the wire is their order under
/// the MAC counter.
struct Outbox<'a> {
    stream: &'a TcpStream,
    seal: Mutex<(Direction, Vec<u8>)>,
}

impl Outbox<'_> {
    /// Seals and sends `msgs` in one write.
    fn send(&self, msgs: &[Msg]) -> Result<()> {
        let mut guard = lock(&self.seal);
        let (seal, buf) = &mut *guard;
        buf.clear();
        for m in msgs {
            wire::encode(m, seal, buf);
        }
        let mut w = self.stream;
        w.write_all(buf).map_err(|e| Error::from_io("replication send", &e))
    }
}

/// Hand-over between the apply loop and the flusher thread.
#[derive(Default)]
struct FlushQueue {
    state: Mutex<FlushState>,
    cv: Condvar,
}

#[derive(Default)]
struct FlushState {
    /// Writes up to this are to be flushed and acknowledged.
    wanted: u64,
    /// Writes up to this are flushed (and acknowledged).
    flushed: u64,
    /// The highest target of the fdatasync calls running now.
    running: u64,
    stop: bool,
    error: Option<Error>,
}

impl FlushQueue {
    fn hand(&self, upto: u64) {
        let mut st = lock(&self.state);
        if upto > st.wanted {
            st.wanted = upto;
            self.cv.notify_one();
        }
    }

    /// A non-durable write applied while durable ones are still being
    /// flushed waits for them (acknowledgements are cumulative).
    fn busy_below(&self, seq: u64) -> bool {
        let st = lock(&self.state);
        st.wanted > st.flushed && st.wanted < seq
    }

    fn ackable(&self, applied: u64) -> u64 {
        let st = lock(&self.state);
        if st.wanted > st.flushed {
            st.flushed
        } else {
            applied
        }
    }

    fn flushed(&self) -> u64 {
        lock(&self.state).flushed
    }

    /// A barrier flushed everything applied.
    fn flushed_by_barrier(&self, applied: u64) {
        let mut st = lock(&self.state);
        st.flushed = st.flushed.max(applied);
        st.wanted = st.wanted.max(applied);
    }

    /// The flusher's next target; None once stopped.
    fn next(&self) -> Option<u64> {
        let mut st = lock(&self.state);
        loop {
            if st.stop {
                return None;
            }
            // Only what no running call covers.
            if st.wanted > st.flushed.max(st.running) {
                let upto = st.wanted;
                st.running = upto;
                return Some(upto);
            }
            st = self.cv.wait(st).unwrap_or_else(|p| p.into_inner());
        }
    }

    fn done(&self, upto: u64) {
        let mut st = lock(&self.state);
        st.flushed = st.flushed.max(upto);
    }

    fn fail(&self, e: Error) {
        let mut st = lock(&self.state);
        st.error.get_or_insert(e);
    }

    fn check(&self) -> Result<()> {
        match &lock(&self.state).error {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    fn stop(&self) {
        lock(&self.state).stop = true;
        self.cv.notify_all();
    }
}

fn send(stream: &TcpStream, seal: &mut Direction, msg: Msg) -> Result<()> {
    auth::write_msg(&mut &*stream, &msg, seal, "replication send")
}
