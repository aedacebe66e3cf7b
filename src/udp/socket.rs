//! The UDP handle: a socket plus one receive engine and one send engine,
//! each behind its own `Baton`, so a sender and a receiver never share a lock.

use super::batch::{BatchRx, BatchTx, PollReadiness};
use super::config::{Backend, BackendChoice, UdpConfig};
use super::stats::{Counters, UdpStats};
use super::{Payload, RecvSlot, SendSlot};

/// Most buffers one gathered datagram may have (the kernel's UIO_MAXIOV).
/// cbindgen:ignore
pub const MAX_GATHER: usize = 1024;
use crate::error::{Error, ErrorKind, Result};
use crate::sync::{Baton, BatonError, Wait};
use crate::sys::{self, EventFd};
use crate::uring::{self, Flow, MsgReceiver, MsgSender, PollWaiter, ReceiverConfig};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, IntoRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};

enum Rx {
    /// io_uring multishot RECVMSG on a provided-buffer ring (copies out).
    UringMultishot(MsgReceiver),
    /// io_uring readiness, `recvmmsg` into the caller's buffers.
    UringPoll(PollWaiter, BatchRx),
    Batch(BatchRx),
    Closed,
}

enum Tx {
    Uring(MsgSender),
    Batch(BatchTx),
    Closed,
}

pub struct UdpSocket {
    // Engines first: they drop (cancel + drain) before the fds they use.
    rx: Baton<Rx>,
    tx: Baton<Tx>,
    /// io_uring only: readable while completions are pending (`ready_fd`).
    ready: Option<EventFd>,
    /// Signalled once by `close`; every engine waits on it too.
    wake: EventFd,
    sock: OwnedFd,
    ready_watched: AtomicBool,
    local: SocketAddr,
    v6_socket: bool,
    backend: Backend,
    gso: bool,
    closed: AtomicBool,
    counters: Counters,
}

impl UdpSocket {
    pub fn bind(addr: &SocketAddr, cfg: &UdpConfig) -> Result<Self> {
        cfg.validate()?;
        let sock = sys::bind_udp(addr, cfg.v6only, cfg.reuse_port)?;
        Self::open(sock, cfg).map_err(|(e, _closed_on_drop)| e)
    }

    /// Adopts `fd` (a UDP socket). On success the handle owns it; on error
    /// the caller still does.
    pub fn from_fd(fd: RawFd, cfg: &UdpConfig) -> Result<Self> {
        cfg.validate()?;
        if fd < 0 {
            return Err(Error::invalid(format!("fd {fd} is negative")));
        }
        sys::check_udp_fd(fd)?;
        sys::set_blocking(fd)?;
        Self::open(sys::adopt_fd(fd), cfg).map_err(|(e, sock)| {
            let _still_the_callers = sock.into_raw_fd();
            e
        })
    }

    fn open(sock: OwnedFd, cfg: &UdpConfig) -> std::result::Result<Self, (Error, OwnedFd)> {
        match Self::configure(&sock, cfg) {
            Ok(parts) => Ok(parts.assemble(sock)),
            Err(e) => Err((e, sock)),
        }
    }

    fn configure(sock: &OwnedFd, cfg: &UdpConfig) -> Result<Parts> {
        let fd = sock.as_raw_fd();
        let local = sys::local_addr(fd)?;
        let v6_socket = local.is_ipv6();
        if cfg.gso {
            sys::setsockopt_int(fd, libc::SOL_UDP, libc::UDP_SEGMENT, 0, "setsockopt(UDP_SEGMENT)")
                .map_err(|e| e.with_kind(ErrorKind::Unsupported))?;
        }
        if cfg.gro {
            sys::setsockopt_int(fd, libc::SOL_UDP, libc::UDP_GRO, 1, "setsockopt(UDP_GRO)")
                .map_err(|e| e.with_kind(ErrorKind::Unsupported))?;
        }
        if cfg.pktinfo {
            // An IPv6 socket reports IPv4 datagrams (dual stack) as v4-mapped IPV6_PKTINFO.
            let (level, name, what) = if v6_socket {
                (libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO, "setsockopt(IPV6_RECVPKTINFO)")
            } else {
                (libc::IPPROTO_IP, libc::IP_PKTINFO, "setsockopt(IP_PKTINFO)")
            };
            sys::setsockopt_int(fd, level, name, 1, what)?;
        }
        // The *FORCE variants pass net.core.[rw]mem_max when privileged (a
        // tunnel needs megabytes); otherwise the kernel caps the plain ones.
        if cfg.so_rcvbuf > 0 {
            sys::setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, cfg.so_rcvbuf, "setsockopt(SO_RCVBUFFORCE)")
                .or_else(|_| sys::setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, cfg.so_rcvbuf, "setsockopt(SO_RCVBUF)"))?;
        }
        if cfg.so_sndbuf > 0 {
            sys::setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, cfg.so_sndbuf, "setsockopt(SO_SNDBUFFORCE)")
                .or_else(|_| sys::setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_SNDBUF, cfg.so_sndbuf, "setsockopt(SO_SNDBUF)"))?;
        }
        let wake = EventFd::new()?;
        let choice = cfg.resolved_choice()?;
        let uring_parts = match choice {
            BackendChoice::Batch => None,
            BackendChoice::Uring => Some(uring_engines(fd, &wake, v6_socket, cfg)?),
            BackendChoice::Auto => match uring_engines(fd, &wake, v6_socket, cfg) {
                Ok(parts) => Some(parts),
                Err(e) => {
                    log_fallback_once(&e);
                    None
                }
            },
        };
        let parts = match uring_parts {
            Some((rx, tx, ready)) => Parts { rx, tx: Tx::Uring(tx), ready: Some(ready), wake, local, v6_socket, backend: Backend::Uring, gso: cfg.gso },
            None => Parts {
                rx: Rx::Batch(BatchRx::new(cfg.batch, cfg.max_datagram(), cfg.gro, cfg.pktinfo)),
                tx: Tx::Batch(BatchTx::new(cfg.batch)),
                ready: None,
                wake,
                local,
                v6_socket,
                backend: Backend::Batch,
                gso: cfg.gso,
            },
        };
        Ok(parts)
    }

    pub fn local_addr(&self) -> Result<SocketAddr> {
        if self.is_closed() {
            return Err(Error::closed("socket is closed"));
        }
        Ok(self.local)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    pub fn stats(&self) -> UdpStats {
        self.counters.snapshot()
    }

    /// A fd that polls readable while datagrams are pending: the io_uring
    /// completion eventfd, or the socket itself on the batch backend.
    pub fn ready_fd(&self) -> RawFd {
        match &self.ready {
            Some(ready) => {
                self.ready_watched.store(true, Ordering::Relaxed);
                ready.as_raw_fd()
            }
            None => self.sock.as_raw_fd(),
        }
    }

    fn take<'a, T>(&self, baton: &'a Baton<T>, wait: Wait) -> Result<crate::sync::Held<'a, T>> {
        if self.is_closed() {
            return Err(Error::closed("socket is closed"));
        }
        baton.take(wait.deadline(), false).map_err(|e| match (e, wait) {
            (BatonError::Shut, _) => Error::closed("socket is closed"),
            (BatonError::Timeout, Wait::Never) => Error::new(ErrorKind::WouldBlock, "another thread is using the socket"),
            (BatonError::Timeout, _) => Error::new(ErrorKind::Timeout, "timed out waiting for another thread using the socket"),
        })
    }

    /// Receives up to `slots.len()` datagrams. Returns how many were filled
    /// (at least one), or an error if none was.
    pub fn recv<S: RecvSlot>(&self, slots: &mut [S], wait: Wait) -> Result<usize> {
        if slots.is_empty() {
            return Err(Error::invalid("no receive slots (n == 0)"));
        }
        let mut rx = self.take(&self.rx, wait)?;
        let fd = self.sock.as_raw_fd();
        let mut poll = PollReadiness { wake: self.wake.as_raw_fd() };
        let in_place = match &mut *rx {
            Rx::UringPoll(_, b) | Rx::Batch(b) => b.can_receive_direct(slots),
            _ => false,
        };
        let result = match (&mut *rx, in_place) {
            (Rx::UringPoll(waiter, b), true) => b.receive_direct(fd, slots, wait, waiter).map(|r| (r.datagrams, r.bytes)),
            (Rx::Batch(b), true) => b.receive_direct(fd, slots, wait, &mut poll).map(|r| (r.datagrams, r.bytes)),
            (engine, _) => Self::recv_copying(engine, fd, &mut poll, slots, wait),
        };
        self.after_recv(&mut rx);
        drop(rx);
        let (n, bytes) = result?;
        Counters::add(&self.counters.rx_calls, 1);
        Counters::add(&self.counters.rx_datagrams, n as u64);
        Counters::add(&self.counters.rx_bytes, bytes as u64);
        Ok(n)
    }

    /// The path where the engine holds the data and we copy it into the
    /// caller's slots: io_uring multishot, or batch with small buffers.
    fn recv_copying<S: RecvSlot>(rx: &mut Rx, fd: RawFd, poll: &mut PollReadiness, slots: &mut [S], wait: Wait) -> Result<(usize, usize)> {
        let mut filled = 0;
        let mut too_small = None;
        let mut bytes = 0usize;
        let room = slots.len();
        let mut consume = |incoming: &uring::Incoming| {
            let slot = &mut slots[filled];
            let buf = slot.buffer();
            let len = incoming.payload.len();
            if len > buf.len() {
                too_small = Some((len, buf.len(), filled));
                return Flow::Keep;
            }
            buf[..len].copy_from_slice(incoming.payload);
            slot.fill(len, incoming.addr, incoming.segment_size);
            slot.set_local(incoming.local);
            bytes += len;
            filled += 1;
            if filled == room { Flow::Full } else { Flow::More }
        };
        match rx {
            Rx::UringMultishot(r) => r.receive(wait, &mut consume),
            Rx::UringPoll(waiter, b) => b.receive(fd, room, wait, waiter, &mut consume),
            Rx::Batch(b) => b.receive(fd, room, wait, poll, &mut consume),
            Rx::Closed => Err(Error::closed("socket is closed")),
        }?;
        // Count what the consumer actually filled, whatever the engine reported.
        if filled == 0 {
            let (need, have, index) = too_small.unwrap_or((0, 0, 0));
            return Err(Error::new(
                ErrorKind::BufferTooSmall,
                format!("datagram of {need} bytes does not fit buffer {index} of {have} bytes; it is kept for the next call"),
            ));
        }
        Ok((filled, bytes))
    }

    /// Publishes engine counters and settles the readiness eventfd.
    fn after_recv(&self, rx: &mut Rx) {
        let watched = self.ready.as_ref().filter(|_| self.ready_watched.load(Ordering::Relaxed));
        match rx {
            Rx::UringMultishot(r) => {
                Counters::store(&self.counters.rx_oversize, r.counters.oversize);
                Counters::store(&self.counters.rx_rearms, r.counters.rearms);
                if let Some(ready) = watched {
                    // Clear first, then re-check: a completion racing in re-signals itself.
                    ready.clear();
                    if r.has_pending() {
                        ready.signal();
                    }
                }
            }
            Rx::UringPoll(waiter, b) => {
                Counters::store(&self.counters.rx_oversize, b.oversize);
                if let Some(ready) = watched {
                    // A fresh poll fires at once if data is still queued.
                    ready.clear();
                    if b.has_pending() {
                        ready.signal();
                    } else if let Err(e) = waiter.arm_and_submit() {
                        log::warn!("meshring: re-arming the readiness poll failed: {e}");
                    }
                }
            }
            Rx::Batch(b) => Counters::store(&self.counters.rx_oversize, b.oversize),
            Rx::Closed => {}
        }
    }

    /// Sends `msgs` in order. Returns how many were sent (always a prefix)
    /// and, if not all, the error that stopped it.
    pub fn send<S: SendSlot>(&self, msgs: &[S], wait: Wait) -> (usize, Option<Error>) {
        if msgs.is_empty() {
            return (0, Some(Error::invalid("no datagrams to send (n == 0)")));
        }
        for (i, m) in msgs.iter().enumerate() {
            if let Err(e) = self.check_outgoing(i, m) {
                return (0, Some(e));
            }
        }
        let mut tx = match self.take(&self.tx, wait) {
            Ok(tx) => tx,
            Err(e) => return (0, Some(e)),
        };
        let fd = self.sock.as_raw_fd();
        let (sent, bytes, error) = match &mut *tx {
            Tx::Uring(s) => {
                let o = s.send(&mut msgs.iter().map(SendSlot::outgoing), wait);
                (o.sent, o.bytes, o.error)
            }
            Tx::Batch(b) => b.send(fd, self.wake.as_raw_fd(), self.v6_socket, msgs, wait),
            Tx::Closed => (0, 0, Some(Error::closed("socket is closed"))),
        };
        drop(tx);
        Counters::add(&self.counters.tx_calls, 1);
        Counters::add(&self.counters.tx_datagrams, sent as u64);
        Counters::add(&self.counters.tx_bytes, bytes as u64);
        if error.as_ref().is_some_and(|e| e.kind == ErrorKind::Io) {
            Counters::add(&self.counters.tx_errors, 1);
        }
        (sent, error)
    }

    fn check_outgoing<S: SendSlot>(&self, i: usize, m: &S) -> Result<()> {
        let Some(addr) = m.addr() else {
            return Err(Error::invalid(format!("datagram {i}: destination address is malformed (family must be 4 or 6)")));
        };
        if addr.is_ipv6() && !self.v6_socket {
            return Err(Error::invalid(format!("datagram {i}: IPv6 destination {addr} on an IPv4 socket")));
        }
        if m.segment_size() > 0 && !self.gso {
            return Err(Error::invalid(format!("datagram {i}: segment_size set but GSO is not enabled in the config")));
        }
        let payload = m.payload();
        if payload.len() > 65535 {
            return Err(Error::invalid(format!("datagram {i}: {} bytes exceeds 65535", payload.len())));
        }
        if let Payload::Gather(parts) = payload {
            if parts.is_empty() || parts.len() > MAX_GATHER {
                return Err(Error::invalid(format!("datagram {i}: {} gather buffers (1..={MAX_GATHER})", parts.len())));
            }
        }
        if let Some(local) = m.local() {
            if local.ip.is_ipv6() && !self.v6_socket {
                return Err(Error::invalid(format!("datagram {i}: IPv6 source {} on an IPv4 socket", local.ip)));
            }
            if local.ip.is_unspecified() && local.ifindex == 0 {
                return Err(Error::invalid(format!("datagram {i}: source address {} with no interface says nothing", local.ip)));
            }
        }
        Ok(())
    }

    /// Sets SO_MARK (the firewall mark of every datagram sent from now on;
    /// 0 clears it). Needs CAP_NET_ADMIN.
    pub fn set_mark(&self, mark: u32) -> Result<()> {
        if self.is_closed() {
            return Err(Error::closed("socket is closed"));
        }
        sys::setsockopt_int(self.sock.as_raw_fd(), libc::SOL_SOCKET, libc::SO_MARK, mark as i32, "setsockopt(SO_MARK)")
    }

    /// Reads an integer socket option (for checks and diagnostics).
    pub fn sockopt(&self, level: i32, name: i32) -> Result<i32> {
        if self.is_closed() {
            return Err(Error::closed("socket is closed"));
        }
        sys::getsockopt_int(self.sock.as_raw_fd(), level, name, "getsockopt")
    }

    /// Idempotent and callable from any thread: wakes blocked calls (they
    /// return Closed), cancels every in-flight operation and reaps its
    /// completion, then releases the engines' buffers.
    pub fn close(&self) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        self.wake.signal();
        sys::shutdown(&self.sock);
        self.rx.shut();
        self.tx.shut();
        if let Ok(mut rx) = self.rx.take(None, true) {
            *rx = Rx::Closed;
        }
        if let Ok(mut tx) = self.tx.take(None, true) {
            *tx = Tx::Closed;
        }
    }
}

impl Drop for UdpSocket {
    fn drop(&mut self) {
        self.close();
    }
}

struct Parts {
    rx: Rx,
    tx: Tx,
    ready: Option<EventFd>,
    wake: EventFd,
    local: SocketAddr,
    v6_socket: bool,
    backend: Backend,
    gso: bool,
}

impl Parts {
    fn assemble(self, sock: OwnedFd) -> UdpSocket {
        UdpSocket {
            rx: Baton::new(self.rx),
            tx: Baton::new(self.tx),
            ready: self.ready,
            wake: self.wake,
            sock,
            ready_watched: AtomicBool::new(false),
            local: self.local,
            v6_socket: self.v6_socket,
            backend: self.backend,
            gso: self.gso,
            closed: AtomicBool::new(false),
            counters: Counters::default(),
        }
    }
}

fn uring_engines(fd: RawFd, wake: &EventFd, v6_socket: bool, cfg: &UdpConfig) -> Result<(Rx, MsgSender, EventFd)> {
    let features = uring::probe();
    if let Some(why) = &features.unusable {
        return Err(Error::new(ErrorKind::Unsupported, format!("io_uring unavailable: {why}")));
    }
    let ready = EventFd::new()?;
    let unsupported = |e: Error| e.with_kind(ErrorKind::Unsupported);
    let rx = if cfg.multishot_recv || cfg.force_single_shot {
        let rx_cfg = ReceiverConfig {
            // GRO buffers are 64 KiB each: 64 of them already hold ~2,900 datagrams.
            buffers: if cfg.gro { cfg.recv_buffers.min(64) } else { cfg.recv_buffers },
            max_payload: cfg.max_datagram(),
            gro: cfg.gro,
            pktinfo: cfg.pktinfo,
            multishot: features.multishot_recvmsg && !cfg.force_single_shot,
        };
        Rx::UringMultishot(MsgReceiver::new(fd, wake.as_raw_fd(), Some(ready.as_raw_fd()), &rx_cfg).map_err(unsupported)?)
    } else {
        let waiter = PollWaiter::new(fd, wake.as_raw_fd(), Some(ready.as_raw_fd())).map_err(unsupported)?;
        Rx::UringPoll(waiter, BatchRx::new(cfg.batch, cfg.max_datagram(), cfg.gro, cfg.pktinfo))
    };
    let tx = MsgSender::new(fd, wake.as_raw_fd(), v6_socket, cfg.batch).map_err(unsupported)?;
    Ok((rx, tx, ready))
}

fn log_fallback_once(e: &Error) {
    static LOGGED: AtomicBool = AtomicBool::new(false);
    if !LOGGED.swap(true, Ordering::Relaxed) {
        log::warn!("meshring: {e}; using the recvmmsg/sendmmsg backend");
    }
}
