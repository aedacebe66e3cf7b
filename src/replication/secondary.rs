//! The secondary: listens for the primary, applies its writes to the base
//! volume (copying the old contents the speculative view still needs into
//! the hidden layer), keeps its own writes in the active layer, empties both
//! at a checkpoint and commits the active layer at failover.

use super::layers::Layers;
use super::stage::{lock, wait_for, Stage, Status};
use super::volume::Volume;
use super::wire::{self, Msg};
use super::{ReplConfig, ReplStats};
use crate::error::{Error, ErrorKind, Result};
use crate::sys::{self, EventFd, PollResult};
use std::io::{BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

#[derive(Default)]
struct Link {
    /// The connection being served and its thread.
    current: Option<(TcpStream, JoinHandle<()>)>,
    /// A primary finished the handshake and is connected.
    connected: bool,
    connections: u64,
    writes_applied: u64,
    checkpoints: u64,
}

struct Shared {
    vol: Arc<Volume>,
    cfg: ReplConfig,
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
    local: SocketAddr,
}

impl Secondary {
    pub fn start(vol: Arc<Volume>, listen: SocketAddr, cfg: ReplConfig) -> Result<Self> {
        let listener = TcpListener::bind(listen).map_err(|e| Error::from_io(&format!("listen on {listen}"), &e))?;
        listener.set_nonblocking(true).map_err(|e| Error::from_io("listener setup", &e))?;
        let local = listener.local_addr().map_err(|e| Error::from_io("getsockname", &e))?;
        let wake = new_wake()?;
        // Attach after every fallible setup step: an error above must not
        // leave the volume attached with no handle to detach it.
        vol.attach()?;
        let shared = Arc::new(Shared {
            vol,
            cfg,
            status: Status::new(),
            layers: Mutex::new(Layers::default()),
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
        let worker = shared.clone();
        let acceptor = std::thread::Builder::new()
            .name("mr-repl-secondary".into())
            .spawn(move || {
                let me = worker.clone();
                crate::sync::fault::guard("replication acceptor thread", &me.status.fault, || me.halt(), || worker.accept_loop(listener));
            })
            .map_err(|e| {
                shared.detach();
                Error::from_io("spawn replication thread", &e)
            })?;
        Ok(Secondary { shared, acceptor: Mutex::new(Some(acceptor)), local })
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

    pub fn local_addr(&self) -> SocketAddr {
        self.local
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
        let s = &self.shared;
        s.status.check_open()?;
        let mut layers = lock(&s.layers);
        match s.status.stage() {
            Stage::Done => s.vol.write_raw(block, data),
            _ => layers.write_active(&s.vol, block, data),
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
        layers.make_empty();
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
        lock(&s.layers).make_empty();
        s.status.set_stage(Stage::Done);
        // As Primary::stop and a successful failover: a clean stop leaves no error.
        s.status.clear_error();
        s.detach();
        Ok(())
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
            ..ReplStats::default()
        }
    }

    /// Stops accepting and ends the current connection, joining both threads.
    fn shutdown_network(&self) {
        let s = &self.shared;
        s.stop.store(true, Ordering::Release);
        s.wake.signal();
        if let Some(handle) = lock(&self.acceptor).take() {
            let _ = handle.join();
        }
        s.end_current();
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

    fn end_current(&self) {
        let current = lock(&self.link).current.take();
        if let Some((stream, handle)) = current {
            let _ = stream.shutdown(Shutdown::Both);
            let _ = handle.join();
        }
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
            // A new primary connection replaces the old one (which may be
            // half-open after a network cut); the old one is drained first so
            // writes apply in order.
            self.end_current();
            if self.stop.load(Ordering::Acquire) {
                return;
            }
            let control = match stream.try_clone() {
                Ok(control) => control,
                Err(e) => {
                    self.status.record(Error::from_io("replication connection dropped: duplicating its socket", &e));
                    continue;
                }
            };
            let me = self.clone();
            let spawned = std::thread::Builder::new().name("mr-repl-apply".into()).spawn(move || {
                let halt = me.clone();
                crate::sync::fault::guard("replication apply thread", &me.status.fault, || halt.halt(), || me.serve(stream));
            });
            match spawned {
                Ok(handle) => lock(&self.link).current = Some((control, handle)),
                Err(e) => self.status.record(Error::from_io("replication connection dropped: spawning its thread", &e)),
            }
        }
    }

    /// After a thread panic (see `sync::fault`): the acceptor ends and the
    /// current connection is dropped (close joins and frees as usual).
    fn halt(&self) {
        self.stop.store(true, Ordering::Release);
        self.wake.signal();
        if let Some((control, _)) = lock(&self.link).current.as_ref() {
            let _ = control.shutdown(Shutdown::Both);
        }
        self.changed.notify_all();
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

    fn set_connected(&self, connected: bool) {
        let mut link = lock(&self.link);
        link.connected = connected;
        if connected {
            link.connections += 1;
        }
        drop(link);
        self.changed.notify_all();
    }

    fn serve(&self, stream: TcpStream) {
        let result = self.serve_inner(&stream);
        self.set_connected(false);
        if let Err(e) = result {
            if !self.stop.load(Ordering::Acquire) {
                if e.kind == ErrorKind::Parse || e.kind == ErrorKind::InvalidArgument {
                    let mut frame = Vec::new();
                    wire::encode(&Msg::Error { text: e.message.to_string() }, &mut frame);
                    let _ = (&stream).write_all(&frame);
                }
                let peer = stream.peer_addr().map(|a| a.to_string()).unwrap_or_else(|_| "?".into());
                self.status.record(Error { message: format!("primary {peer}: {}", e.message).into(), ..e });
            }
        }
        let _ = stream.shutdown(Shutdown::Both);
    }

    fn serve_inner(&self, stream: &TcpStream) -> Result<()> {
        let setup = |e: std::io::Error| Error::from_io("replication socket setup", &e);
        stream.set_nonblocking(false).map_err(setup)?;
        stream.set_nodelay(true).map_err(setup)?;
        stream.set_read_timeout(Some(self.cfg.peer_timeout)).map_err(setup)?;
        stream.set_write_timeout(Some(self.cfg.peer_timeout)).map_err(setup)?;
        let mut reader = BufReader::with_capacity(256 << 10, stream);
        let mut out = Vec::new();
        let send = |out: &mut Vec<u8>, msg: Msg| -> Result<()> {
            out.clear();
            wire::encode(&msg, out);
            let mut w = stream;
            w.write_all(out).map_err(|e| Error::from_io("replication send", &e))
        };
        match wire::read_msg(&mut reader)? {
            Msg::Hello { block_size, block_count } => {
                let (bs, count) = (self.vol.block_size(), self.vol.block_count());
                if (block_size, block_count) != (bs, count) {
                    return Err(Error::invalid(format!(
                        "volume geometry differs: primary has {block_count} blocks of {block_size} bytes, secondary {count} of {bs}"
                    )));
                }
            }
            other => return Err(Error::new(ErrorKind::Parse, format!("corrupt replication stream: expected HELLO, got {}", other.name()))),
        }
        send(&mut out, Msg::Welcome)?;
        self.set_connected(true);
        let mut applied = 0u64;
        let mut last_seq: Option<u64> = None;
        loop {
            let msg = wire::read_msg(&mut reader)?;
            if self.status.stage() != Stage::Running || self.stop.load(Ordering::Acquire) {
                return Ok(());
            }
            match msg {
                Msg::Write { seq, block, data } => {
                    if last_seq.is_some_and(|last| seq != last + 1) {
                        return Err(Error::new(
                            ErrorKind::Parse,
                            format!("corrupt replication stream: write {seq} after write {}", last_seq.unwrap_or(0)),
                        ));
                    }
                    last_seq = Some(seq);
                    self.vol.check_range(block, data.len()).map_err(|e| {
                        Error::new(ErrorKind::Parse, format!("corrupt replication stream: write {seq}: {}", e.message))
                    })?;
                    lock(&self.layers).apply_primary(&self.vol, block, &data)?;
                    applied = seq;
                    lock(&self.link).writes_applied += 1;
                    if reader.buffer().is_empty() {
                        send(&mut out, Msg::Ack { seq: applied })?;
                    }
                }
                Msg::Barrier { id } => {
                    {
                        let mut layers = lock(&self.layers);
                        self.vol.flush()?;
                        layers.make_empty();
                    }
                    lock(&self.link).checkpoints += 1;
                    // Both in one write: one wake-up of the primary's reader.
                    out.clear();
                    wire::encode(&Msg::Ack { seq: applied }, &mut out);
                    wire::encode(&Msg::BarrierAck { id }, &mut out);
                    let mut w = stream;
                    w.write_all(&out).map_err(|e| Error::from_io("replication send", &e))?;
                }
                Msg::Ping => send(&mut out, Msg::Ack { seq: applied })?,
                Msg::Error { text } => return Err(Error::new(ErrorKind::Io, format!("primary reported: {text}"))),
                other => {
                    return Err(Error::new(ErrorKind::Parse, format!("corrupt replication stream: unexpected {} from the primary", other.name())))
                }
            }
        }
    }
}
