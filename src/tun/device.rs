//! The TUN handle. Reads drain the device with `readv` straight into the
//! caller's buffers and sleep on io_uring readiness (or `poll(2)`) when it
//! is empty, exactly like the UDP receive path; writes are `writev` per
//! packet (the kernel never makes a TUN write wait).

use super::offload::{Plan, VnetHdr, VNET_HDR_LEN};
use super::{ip_proto, OutPacket, PacketSlot};
use crate::error::{Error, ErrorKind, Result};
use crate::readiness::{PollReadiness, Readiness};
use crate::sync::{Baton, BatonError, Wait};
use crate::sys::{self, EventFd};
use crate::udp::{Backend, BackendChoice};
use crate::uring::{self, PollWaiter};
use std::os::fd::{AsRawFd, IntoRawFd, OwnedFd, RawFd};
use super::gro::{Gro, GRO_TCP, GRO_UDP};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

/// Size of the packet-information header (flags u16, proto u16).
const PI_LEN: usize = 4;

#[derive(Debug, Clone)]
pub struct TunConfig {
    pub backend: BackendChoice,
    /// Keep the 4-byte packet-information header (IFF_NO_PI off); the caller
    /// still sees plain IP packets and gets the protocol separately.
    pub packet_info: bool,
    /// Create a multi-queue device (IFF_MULTI_QUEUE): more handles created
    /// with the same name become further queues.
    pub multi_queue: bool,
    /// Set this MTU after creation (0 leaves the kernel's default).
    pub mtu: u32,
    /// IFF_VNET_HDR with checksum/TSO/USO offloads: the kernel hands over
    /// 64 KiB super-packets, which reads split back into MTU-sized packets.
    pub offload: bool,
}

impl Default for TunConfig {
    fn default() -> Self {
        TunConfig { backend: BackendChoice::Auto, packet_info: false, multi_queue: false, mtu: 0, offload: false }
    }
}

enum Rx {
    Uring(PollWaiter),
    Batch,
    Closed,
}

/// What only the reader touches: how it waits, and with offloads the last
/// super-packet read and how many of its segments were handed out.
struct Reader {
    wait: Rx,
    offload: Option<SuperPacket>,
}

struct SuperPacket {
    buf: Vec<u8>,
    len: usize,
    plan: Option<Plan>,
    next: usize,
    malformed: u64,
}

pub struct Tun {
    rx: Baton<Reader>,
    ready: Option<EventFd>,
    ready_watched: AtomicBool,
    wake: EventFd,
    fd: OwnedFd,
    /// Interface ioctls go through a socket of the device's namespace.
    ctl: OwnedFd,
    name: String,
    packet_info: bool,
    /// Writes carry a virtio-net header (and coalesce TCP runs).
    vnet_hdr: bool,
    /// Where a coalesced super-packet is built; writers take turns.
    coalesce_buf: std::sync::Mutex<Vec<u8>>,
    /// `write_batch`'s planning state; writers take turns.
    gro_plan: std::sync::Mutex<Gro>,
    /// GRO_TCP | GRO_UDP bits `write_batch` coalesces with (UDP only where
    /// the kernel took USO); `disable_gro` clears bits for good.
    gro: AtomicU32,
    mtu: AtomicU32,
    backend: Backend,
    closed: AtomicBool,
}

impl Tun {
    /// Creates a TUN device; `name` may be a pattern ("mr%d") or empty.
    pub fn create(name: &str, cfg: &TunConfig) -> Result<Self> {
        if cfg.offload && cfg.packet_info {
            return Err(Error::invalid("offloads and the packet-information header cannot be combined"));
        }
        let (fd, name, uso) = sys::open_tun(name, cfg.packet_info, cfg.multi_queue, cfg.offload)?;
        let tun = Self::open(fd, name, cfg.packet_info, cfg.offload, uso, cfg).map_err(|(e, _fd)| e)?;
        if cfg.mtu != 0 {
            tun.set_mtu(cfg.mtu)?;
        }
        Ok(tun)
    }

    /// Adopts an open TUN fd (Android VpnService, a passed-in fd). On
    /// success the handle owns it; on error the caller still does.
    pub fn from_fd(fd: RawFd, cfg: &TunConfig) -> Result<Self> {
        if fd < 0 {
            return Err(Error::invalid(format!("fd {fd} is negative")));
        }
        let (name, flags) = sys::tun_info(fd)?;
        if flags & libc::IFF_TUN == 0 {
            return Err(Error::invalid(format!("fd {fd} is a TAP device, not TUN")));
        }
        sys::set_nonblocking(fd)?;
        let packet_info = flags & libc::IFF_NO_PI == 0;
        let offload = flags & libc::IFF_VNET_HDR != 0;
        let uso = if offload { sys::enable_offloads(fd)? } else { false };
        Self::open(sys::adopt_fd(fd), name, packet_info, offload, uso, cfg).map_err(|(e, fd)| {
            let _still_the_callers = fd.into_raw_fd();
            e
        })
    }

    fn open(fd: OwnedFd, name: String, packet_info: bool, offload: bool, uso: bool, cfg: &TunConfig) -> std::result::Result<Self, (Error, OwnedFd)> {
        let parts = (|| {
            let ctl = sys::control_socket()?;
            let mtu = sys::interface_mtu(&ctl, &name)?;
            let wake = EventFd::new()?;
            let (rx, ready, backend) = match cfg.backend.resolved()? {
                BackendChoice::Batch => (Rx::Batch, None, Backend::Batch),
                choice => match uring_reader(fd.as_raw_fd(), &wake) {
                    Ok((waiter, ready)) => (Rx::Uring(waiter), Some(ready), Backend::Uring),
                    Err(e) if choice == BackendChoice::Auto => {
                        log::warn!("meshring: TUN {name}: {e}; using poll(2)");
                        (Rx::Batch, None, Backend::Batch)
                    }
                    Err(e) => return Err(e),
                },
            };
            Ok((mtu, ctl, wake, rx, ready, backend))
        })();
        match parts {
            Ok((mtu, ctl, wake, rx, ready, backend)) => Ok(Tun {
                ctl,
                rx: Baton::new(Reader {
                    wait: rx,
                    offload: offload.then(|| SuperPacket { buf: vec![0; VNET_HDR_LEN + 65535], len: 0, plan: None, next: 0, malformed: 0 }),
                }),
                ready,
                ready_watched: AtomicBool::new(false),
                wake,
                fd,
                name,
                packet_info,
                vnet_hdr: offload,
                coalesce_buf: std::sync::Mutex::new(if offload { vec![0; VNET_HDR_LEN + 65535] } else { Vec::new() }),
                gro_plan: std::sync::Mutex::new(Gro::default()),
                gro: AtomicU32::new(match (offload, uso) {
                    (false, _) => 0,
                    (true, false) => GRO_TCP,
                    (true, true) => GRO_TCP | GRO_UDP,
                }),
                mtu: AtomicU32::new(mtu),
                backend,
                closed: AtomicBool::new(false),
            }),
            Err(e) => Err((e, fd)),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    fn check_open(&self) -> Result<()> {
        if self.is_closed() {
            return Err(Error::closed("TUN device is closed"));
        }
        Ok(())
    }

    pub fn mtu(&self) -> Result<u32> {
        self.check_open()?;
        let mtu = sys::interface_mtu(&self.ctl, &self.name)?;
        self.mtu.store(mtu, Ordering::Relaxed);
        Ok(mtu)
    }

    pub fn set_mtu(&self, mtu: u32) -> Result<()> {
        self.check_open()?;
        if !(68..=65535).contains(&mtu) {
            return Err(Error::invalid(format!("MTU {mtu} is outside 68..=65535")));
        }
        sys::set_interface_mtu(&self.ctl, &self.name, mtu)?;
        self.mtu.store(mtu, Ordering::Relaxed);
        Ok(())
    }

    /// Readable while packets are waiting: the io_uring completion eventfd,
    /// or the device fd itself with the batch backend.
    pub fn ready_fd(&self) -> Result<RawFd> {
        self.check_open()?;
        Ok(match &self.ready {
            Some(ready) => {
                self.ready_watched.store(true, Ordering::Relaxed);
                ready.as_raw_fd()
            }
            None => self.fd.as_raw_fd(),
        })
    }

    /// Reads up to `slots.len()` packets (at least one) into the caller's
    /// buffers, each of which must hold the device MTU.
    pub fn read<S: PacketSlot>(&self, slots: &mut [S], wait: Wait) -> Result<usize> {
        if slots.is_empty() {
            return Err(Error::invalid("no packet slots (n == 0)"));
        }
        let mtu = self.mtu.load(Ordering::Relaxed) as usize;
        for (i, s) in slots.iter_mut().enumerate() {
            let cap = s.buffer().len();
            if cap < mtu {
                return Err(Error::new(ErrorKind::BufferTooSmall, format!("packet slot {i} holds {cap} bytes, less than the MTU {mtu}")));
            }
        }
        self.check_open()?;
        let mut rx = self.rx.take(wait.deadline(), false).map_err(|e| match (e, wait) {
            (BatonError::Shut, _) => Error::closed("TUN device is closed"),
            (BatonError::Timeout, Wait::Never) => Error::new(ErrorKind::WouldBlock, "another thread is reading"),
            (BatonError::Timeout, _) => Error::new(ErrorKind::Timeout, "timed out waiting for another reader"),
        })?;
        let fd = self.fd.as_raw_fd();
        let reader = &mut *rx;
        let result = match (&mut reader.wait, &mut reader.offload) {
            (Rx::Uring(waiter), None) => self.drain(fd, slots, wait, waiter),
            (Rx::Batch, None) => self.drain(fd, slots, wait, &mut PollReadiness { wake: self.wake.as_raw_fd() }),
            (Rx::Uring(waiter), Some(sp)) => self.drain_offloaded(fd, sp, slots, wait, waiter),
            (Rx::Batch, Some(sp)) => self.drain_offloaded(fd, sp, slots, wait, &mut PollReadiness { wake: self.wake.as_raw_fd() }),
            (Rx::Closed, _) => Err(Error::closed("TUN device is closed")),
        };
        let pending_segments = reader.offload.as_ref().is_some_and(|sp| sp.plan.is_some());
        if let (Rx::Uring(waiter), Some(ready)) = (&mut reader.wait, self.ready.as_ref()) {
            if self.ready_watched.load(Ordering::Relaxed) {
                // A fresh poll fires at once if packets are still queued.
                ready.clear();
                if pending_segments {
                    ready.signal();
                } else if let Err(e) = waiter.arm_and_submit() {
                    log::warn!("meshring: re-arming the TUN readiness poll failed: {e}");
                }
            }
        }
        result
    }

    fn drain<S: PacketSlot>(&self, fd: RawFd, slots: &mut [S], wait: Wait, ready: &mut impl Readiness) -> Result<usize> {
        let mut head = [0u8; PI_LEN];
        let head_len = if self.packet_info { PI_LEN } else { 0 };
        let mut filled = 0;
        loop {
            while filled < slots.len() {
                match sys::read_packet(fd, &mut head[..head_len], slots[filled].buffer()) {
                    Ok(n) if n < head_len => return Err(Error::new(ErrorKind::Io, "TUN read shorter than its packet-information header")),
                    Ok(n) => {
                        let len = n - head_len;
                        let buf = slots[filled].buffer();
                        if ip_length(buf).is_some_and(|whole| whole > len) {
                            // The MTU grew behind our back (ip link set mtu): the
                            // packet did not fit and is lost. Learn the new MTU so
                            // the next call asks for big enough buffers.
                            log::warn!("TUN {}: dropped a truncated {len}-byte read; re-reading the MTU", self.name);
                            if let Ok(mtu) = sys::interface_mtu(&self.ctl, &self.name) {
                                self.mtu.store(mtu, Ordering::Relaxed);
                            }
                            continue;
                        }
                        let proto = if self.packet_info { u16::from_be_bytes([head[2], head[3]]) } else { ip_proto(buf) };
                        slots[filled].fill(len, proto);
                        filled += 1;
                    }
                    Err(libc::EINTR) => {}
                    Err(libc::EAGAIN) => break,
                    Err(errno) if filled > 0 => {
                        log::debug!("TUN read stopped after {filled} packets: errno {errno}");
                        return Ok(filled);
                    }
                    Err(errno) => return Err(Error::os("TUN read", errno)),
                }
            }
            if filled > 0 {
                return Ok(filled);
            }
            if wait.is_never() {
                return Err(Error::new(ErrorKind::WouldBlock, "no packet ready"));
            }
            ready.wait_readable(fd, wait)?;
            self.check_open()?;
        }
    }

    /// Reads super-packets and hands out the MTU-sized packets they stand for;
    /// segments that do not fit this call wait for the next.
    fn drain_offloaded<S: PacketSlot>(&self, fd: RawFd, sp: &mut SuperPacket, slots: &mut [S], wait: Wait, ready: &mut impl Readiness) -> Result<usize> {
        let mut filled = 0;
        loop {
            if let Some(plan) = &sp.plan {
                let packet = &sp.buf[VNET_HDR_LEN..sp.len];
                while sp.next < plan.count && filled < slots.len() {
                    let need = plan.segment_len(packet, sp.next);
                    let out = slots[filled].buffer();
                    if out.len() < need {
                        if filled > 0 {
                            return Ok(filled);
                        }
                        return Err(Error::new(ErrorKind::BufferTooSmall, format!("segment of {need} bytes does not fit a slot of {}", out.len())));
                    }
                    let len = plan.write_segment(packet, sp.next, out);
                    let proto = ip_proto(out);
                    slots[filled].fill(len, proto);
                    filled += 1;
                    sp.next += 1;
                }
                if sp.next < plan.count {
                    return Ok(filled);
                }
                sp.plan = None;
            }
            if filled == slots.len() {
                return Ok(filled);
            }
            match sys::read_packet(fd, &mut [], &mut sp.buf) {
                Ok(n) => {
                    let parsed = VnetHdr::parse(&sp.buf[..n]).ok_or(crate::tun::offload::Malformed("short virtio-net header"));
                    match parsed.and_then(|hdr| Plan::new(hdr, &sp.buf[VNET_HDR_LEN..n])) {
                        Ok(plan) => {
                            sp.len = n;
                            sp.next = 0;
                            sp.plan = Some(plan);
                        }
                        Err(why) => {
                            sp.malformed += 1;
                            log::debug!("TUN {}: dropped a super-packet: {}", self.name, why.0);
                        }
                    }
                }
                Err(libc::EINTR) => {}
                Err(libc::EAGAIN) => {
                    if filled > 0 {
                        return Ok(filled);
                    }
                    if wait.is_never() {
                        return Err(Error::new(ErrorKind::WouldBlock, "no packet ready"));
                    }
                    ready.wait_readable(fd, wait)?;
                    self.check_open()?;
                }
                Err(_) if filled > 0 => return Ok(filled),
                Err(errno) => return Err(Error::os("TUN read", errno)),
            }
        }
    }

    /// Writes `packets` in order (IP packets; the protocol is taken from the
    /// version nibble). Returns how many were written and, if not all, why.
    pub fn write<P: OutPacket>(&self, packets: &[P]) -> (usize, Option<Error>) {
        if packets.is_empty() {
            return (0, Some(Error::invalid("no packets to write (n == 0)")));
        }
        if let Err(e) = self.check_open() {
            return (0, Some(e));
        }
        let fd = self.fd.as_raw_fd();
        let mut i = 0;
        while i < packets.len() {
            if self.vnet_hdr {
                match self.write_run(fd, &packets[i..]) {
                    Ok(0) => {}
                    Ok(n) => {
                        i += n;
                        continue;
                    }
                    Err(e) => return (i, Some(e)),
                }
            }
            let packet = packets[i].packet();
            let proto = ip_proto(packet);
            if proto == 0 {
                return (i, Some(Error::invalid(format!("packet {i} is not an IPv4/IPv6 packet"))));
            }
            let [hi, lo] = proto.to_be_bytes();
            let pi = [0, 0, hi, lo];
            // A zero virtio-net header: no offload, checksums already complete.
            let vnet = [0u8; VNET_HDR_LEN];
            let head: &[u8] = if self.vnet_hdr {
                &vnet
            } else if self.packet_info {
                &pi
            } else {
                &[]
            };
            if let Err(e) = write_all(fd, head, packet, i) {
                return (i, Some(e));
            }
            i += 1;
        }
        (packets.len(), None)
    }

    /// Offloading TUN: writes the run of TCP segments at the start of
    /// `packets` as one super-packet; Ok(0) if the first packet stands alone.
    fn write_run<P: OutPacket>(&self, fd: RawFd, packets: &[P]) -> Result<usize> {
        let mut views: [&[u8]; 64] = [&[]; 64];
        let n = packets.len().min(views.len());
        for (view, p) in views.iter_mut().zip(packets) {
            *view = p.packet();
        }
        let run = super::offload::coalesce::run_length(&views[..n]);
        if run < 2 {
            return Ok(0);
        }
        let mut buf = self.coalesce_buf.lock().unwrap_or_else(|p| p.into_inner());
        let len = super::offload::coalesce::build(&views[..run], &mut buf);
        write_all(fd, &[], &buf[..len], 0)?;
        Ok(run)
    }

    /// The GRO_TCP / GRO_UDP bits `write_batch` coalesces with now.
    pub fn gro(&self) -> u32 {
        self.gro.load(Ordering::Relaxed)
    }

    /// Stops coalescing the given GRO_TCP / GRO_UDP bits for good (as
    /// wireguard-go's DisableTCPGRO / DisableUDPGRO; for kernels whose
    /// coalesced packets misbehave).
    pub fn disable_gro(&self, bits: u32) {
        self.gro.fetch_and(!bits, Ordering::Relaxed);
    }

    /// Writes every packet of `packets`; one the kernel refuses does not
    /// stop the rest. With offloads, TCP and UDP packets of one flow
    /// anywhere in the batch leave as one super-packet (see `gro`), written
    /// with `writev` from the callers' buffers. Returns how many packets
    /// were written and the first failure, if any.
    pub fn write_batch<P: OutPacket>(&self, packets: &[P]) -> (usize, Option<Error>) {
        if packets.is_empty() {
            return (0, Some(Error::invalid("no packets to write (n == 0)")));
        }
        if let Err(e) = self.check_open() {
            return (0, Some(e));
        }
        let fd = self.fd.as_raw_fd();
        let mut first_error: Option<Error> = None;
        let mut written = 0;
        let views: Vec<&[u8]> = packets.iter().map(OutPacket::packet).collect();
        if !self.vnet_hdr {
            for (i, p) in views.iter().enumerate() {
                let proto = ip_proto(p);
                let result = if proto == 0 {
                    Err(Error::invalid(format!("packet {i} is not an IPv4/IPv6 packet")))
                } else if self.packet_info {
                    let [hi, lo] = proto.to_be_bytes();
                    write_all(fd, &[0, 0, hi, lo], p, i)
                } else {
                    write_all(fd, &[], p, i)
                };
                match result {
                    Ok(()) => written += 1,
                    Err(e) => {
                        first_error.get_or_insert(e);
                    }
                }
            }
            return (written, first_error);
        }
        if let Some(i) = views.iter().position(|p| ip_proto(p) == 0) {
            // Refuse only that one; the rest still go.
            first_error = Some(Error::invalid(format!("packet {i} is not an IPv4/IPv6 packet")));
        }
        let gro = self.gro.load(Ordering::Relaxed);
        let mut plan = self.gro_plan.lock().unwrap_or_else(|p| p.into_inner());
        plan.plan(&views, gro);
        let failures = plan.emit(&views, |parts, first, count| {
            if ip_proto(views[first]) == 0 {
                return Err(None);
            }
            loop {
                match sys::write_parts(fd, parts) {
                    Ok(_) => {
                        written += count;
                        return Ok(());
                    }
                    Err(libc::EINTR) => {}
                    Err(errno) => return Err(Some(Error::os(&format!("TUN write of packet {first} ({count} coalesced)"), errno))),
                }
            }
        });
        drop(plan);
        for (_, _, e) in failures {
            if let (None, Some(e)) = (&first_error, e) {
                first_error = Some(e);
            }
        }
        (written, first_error)
    }

    /// Idempotent, any thread: a blocked read returns Closed promptly.
    pub fn close(&self) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        self.wake.signal();
        self.rx.shut();
        if let Ok(mut rx) = self.rx.take(None, true) {
            rx.wait = Rx::Closed;
            rx.offload = None;
        }
    }
}

impl Drop for Tun {
    fn drop(&mut self) {
        self.close();
    }
}

/// The length an IP packet's header claims (IPv4 total length, IPv6 40 +
/// payload length), if the buffer starts with one.
fn ip_length(packet: &[u8]) -> Option<usize> {
    match packet.first()? >> 4 {
        4 => Some(u16::from_be_bytes([*packet.get(2)?, *packet.get(3)?]) as usize),
        6 => Some(40 + u16::from_be_bytes([*packet.get(4)?, *packet.get(5)?]) as usize),
        _ => None,
    }
}

fn write_all(fd: RawFd, head: &[u8], packet: &[u8], index: usize) -> Result<()> {
    loop {
        match sys::write_packet(fd, head, packet) {
            Ok(_) => return Ok(()),
            Err(libc::EINTR) => {}
            Err(errno) => return Err(Error::os(&format!("TUN write of packet {index}"), errno)),
        }
    }
}

fn uring_reader(fd: RawFd, wake: &EventFd) -> Result<(PollWaiter, EventFd)> {
    if let Some(why) = &uring::probe().unusable {
        return Err(Error::new(ErrorKind::Unsupported, format!("io_uring unavailable: {why}")));
    }
    let ready = EventFd::new()?;
    let waiter = PollWaiter::new(fd, wake.as_raw_fd(), Some(ready.as_raw_fd()))?;
    Ok((waiter, ready))
}
