//! Datagram receive on io_uring: one multishot RECVMSG armed on a
//! provided-buffer ring; each completion names a buffer holding the header,
//! source address, control data and payload. Kernels without multishot get
//! a set of single-shot RECVMSGs re-posted as they complete, same buffers.

use super::buf_ring::BufRing;
use super::ring::{Ring, Waited};
use crate::error::{Error, ErrorKind, Result};
use crate::sys::{sockaddr_from_bytes, LocalInfo, RawSockAddr, CONTROL_SPACE};
use io_uring::{cqueue, opcode, types};
use std::net::SocketAddr;
use std::os::fd::RawFd;
use crate::sync::Wait;

const BUF_GROUP: u16 = 0;
/// `struct io_uring_recvmsg_out`: four u32 (name, control, payload lengths, flags).
const RECV_HEADER: usize = 16;

/// One received datagram, borrowed from a ring buffer.
pub struct Incoming<'a> {
    pub payload: &'a [u8],
    pub addr: Option<SocketAddr>,
    pub segment_size: u16,
    pub local: Option<LocalInfo>,
}

/// The consumer's answer to one `Incoming`.
#[derive(Debug, PartialEq, Eq)]
pub enum Flow {
    /// Taken; offer more.
    More,
    /// Taken; no room for more.
    Full,
    /// Not taken (it does not fit): keep it for the next call and stop.
    Keep,
}

#[derive(Debug, Clone)]
pub struct ReceiverConfig {
    pub buffers: u16,
    pub max_payload: usize,
    pub gro: bool,
    /// Packet information (IP_PKTINFO / IPV6_RECVPKTINFO) is enabled.
    pub pktinfo: bool,
    pub multishot: bool,
}

#[derive(Default, Debug, Clone, Copy)]
pub struct RecvCounters {
    pub oversize: u64,
    pub rearms: u64,
}

/// A completion whose datagram the consumer could not take yet.
struct Stashed {
    bid: u16,
    len: usize,
}

/// Per single-shot request: its own msghdr/iovec/name/control.
struct SingleShot {
    hdr: libc::msghdr,
    iov: libc::iovec,
    name: RawSockAddr,
    control: [u8; CONTROL_SPACE],
}

pub struct MsgReceiver {
    // Field order is drop order: the ring goes before the memory it used.
    ring: Ring,
    bufs: BufRing,
    template: Box<libc::msghdr>,
    singles: Box<[SingleShot]>,
    free_slots: Vec<usize>,
    fd: RawFd,
    multishot: bool,
    armed: usize,
    control_len: usize,
    stash: Option<Stashed>,
    pending_error: Option<i32>,
    pub counters: RecvCounters,
}

// SAFETY: the raw pointers (msghdr templates) point into memory this value
// owns; the receiver is used by one thread at a time (it sits in a Baton).
unsafe impl Send for MsgReceiver {}

impl MsgReceiver {
    pub fn new(fd: RawFd, wake_fd: RawFd, ready_fd: Option<RawFd>, cfg: &ReceiverConfig) -> Result<Self> {
        let control_len = if cfg.gro || cfg.pktinfo { CONTROL_SPACE } else { 0 };
        let name_len = RawSockAddr::CAPACITY as usize;
        let buf_size = RECV_HEADER + name_len + control_len + cfg.max_payload;
        let count = cfg.buffers.next_power_of_two().clamp(2, 32768);
        let ring = Ring::new(64, count as u32 * 2, wake_fd)?;
        let bufs = BufRing::new(count, buf_size)?;
        // SAFETY: msghdr is a plain C struct; zero is a valid "no name, no control" value.
        let mut template: Box<libc::msghdr> = Box::new(unsafe { std::mem::zeroed() });
        template.msg_namelen = RawSockAddr::CAPACITY;
        template.msg_controllen = control_len as _;
        let singles = if cfg.multishot {
            Vec::new().into_boxed_slice()
        } else {
            (0..count.min(64))
                .map(|_| SingleShot {
                    // SAFETY: as above.
                    hdr: unsafe { std::mem::zeroed() },
                    iov: libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 },
                    name: RawSockAddr::zeroed(),
                    control: [0; CONTROL_SPACE],
                })
                .collect()
        };
        if cfg.multishot {
            bufs.register(&ring.submitter(), BUF_GROUP)?;
        }
        if let Some(ready) = ready_fd {
            ring.register_eventfd(ready)?;
        }
        let mut receiver = MsgReceiver {
            ring,
            bufs,
            template,
            free_slots: (0..singles.len()).rev().collect(),
            singles,
            fd,
            multishot: cfg.multishot,
            armed: 0,
            control_len,
            stash: None,
            pending_error: None,
            counters: RecvCounters::default(),
        };
        // Arm now, not on the first receive: a host that waits on the
        // readiness fd before ever calling receive must still be woken.
        receiver.arm()?;
        receiver.ring.submit()?;
        Ok(receiver)
    }

    fn arm(&mut self) -> Result<()> {
        if self.multishot {
            if self.armed == 0 {
                let entry = opcode::RecvMsgMulti::new(types::Fd(self.fd), &*self.template, BUF_GROUP).build().user_data(0);
                // SAFETY: `template` is boxed and lives until the ring is drained in `shutdown`.
                unsafe { self.ring.push(&entry)? };
                self.armed = 1;
                self.counters.rearms += 1;
            }
            return Ok(());
        }
        while let Some(slot) = self.free_slots.pop() {
            self.post_single(slot)?;
            self.armed += 1;
        }
        Ok(())
    }

    /// Single-shot mode: slot `i` always receives into ring buffer `i` (the
    /// buffer ring is then plain memory; its tail is unused).
    fn post_single(&mut self, i: usize) -> Result<()> {
        let base = self.bufs.buffer(i as u16, self.bufs.buf_size()).as_ptr() as *mut u8;
        let s = &mut self.singles[i];
        s.iov = libc::iovec { iov_base: base.cast(), iov_len: self.bufs.buf_size() };
        s.hdr.msg_name = (&mut s.name as *mut RawSockAddr).cast();
        s.hdr.msg_namelen = RawSockAddr::CAPACITY;
        s.hdr.msg_iov = &mut s.iov;
        s.hdr.msg_iovlen = 1;
        s.hdr.msg_control = if self.control_len > 0 { s.control.as_mut_ptr().cast() } else { std::ptr::null_mut() };
        s.hdr.msg_controllen = self.control_len as _;
        s.hdr.msg_flags = 0;
        let entry = opcode::RecvMsg::new(types::Fd(self.fd), &mut s.hdr).build().user_data(i as u64);
        // SAFETY: slot `i` and buffer `i` are owned by self and outlive the ring's drain.
        unsafe { self.ring.push(&entry) }
    }

    /// Offers datagrams to `consume` until it is full, nothing is ready, or
    /// the deadline passes. Returns how many it took.
    pub fn receive(&mut self, wait: Wait, mut consume: impl FnMut(&Incoming) -> Flow) -> Result<usize> {
        let mut taken = 0;
        loop {
            if self.ring.closing() {
                return Err(Error::closed("socket is closed"));
            }
            if let Some(errno) = self.pending_error.take() {
                if taken > 0 {
                    self.pending_error = Some(errno);
                    return Ok(taken);
                }
                return Err(Error::os("recvmsg", errno));
            }
            match self.offer(&mut consume, &mut taken) {
                Flow::More => {}
                Flow::Full | Flow::Keep => return Ok(taken),
            }
            if taken > 0 {
                return Ok(taken);
            }
            if self.ring.closing() {
                return Err(Error::closed("socket is closed"));
            }
            self.arm()?;
            if wait.is_never() {
                self.ring.submit()?;
                if !self.ring.has_completions() {
                    return Err(Error::new(ErrorKind::WouldBlock, "no datagram ready"));
                }
                continue;
            }
            if self.ring.wait(1, wait.deadline())? == Waited::TimedOut && !self.ring.has_completions() {
                return Err(Error::new(ErrorKind::Timeout, "no datagram before the timeout"));
            }
        }
    }

    /// Offers the stash, then completions, until the consumer stops or the CQ is empty.
    fn offer(&mut self, consume: &mut impl FnMut(&Incoming) -> Flow, taken: &mut usize) -> Flow {
        let mut flow = Flow::More;
        if let Some(stashed) = self.stash.take() {
            flow = self.offer_one(stashed.bid, stashed.len, consume, taken);
        }
        while flow == Flow::More {
            let Some(cqe) = self.ring.next_completion() else { break };
            if let Some((bid, len)) = self.completed_buffer(&cqe) {
                flow = self.offer_one(bid, len, consume, taken);
            }
        }
        self.bufs.publish();
        flow
    }

    /// Offers one filled buffer; recycles it unless the consumer keeps it waiting.
    fn offer_one(&mut self, bid: u16, len: usize, consume: &mut impl FnMut(&Incoming) -> Flow, taken: &mut usize) -> Flow {
        match self.deliver(bid, len, consume) {
            Some(Flow::Keep) => {
                self.stash = Some(Stashed { bid, len });
                Flow::Keep
            }
            Some(flow) => {
                *taken += 1;
                self.give_back(bid);
                flow
            }
            None => {
                self.give_back(bid);
                Flow::More
            }
        }
    }

    /// Interprets one receive completion: the buffer it filled, or `None`
    /// after handling an error / end of multishot.
    fn completed_buffer(&mut self, cqe: &cqueue::Entry) -> Option<(u16, usize)> {
        let res = cqe.result();
        if self.multishot {
            if !cqueue::more(cqe.flags()) {
                self.armed = 0;
            }
            let bid = cqueue::buffer_select(cqe.flags());
            if res < 0 {
                if let Some(bid) = bid {
                    self.give_back(bid);
                }
                match -res {
                    // Out of buffers or the CQ overflowed: the multishot ended; re-arm on the next wait.
                    libc::ENOBUFS | libc::ECANCELED => {}
                    errno => self.pending_error = Some(errno),
                }
                return None;
            }
            return bid.map(|bid| (bid, res as usize));
        }
        let slot = cqe.user_data() as usize;
        self.armed -= 1;
        if res < 0 {
            if res != -libc::ECANCELED {
                self.pending_error = Some(-res);
            }
            self.free_slots.push(slot);
            return None;
        }
        Some((slot as u16, res as usize))
    }

    fn deliver(&mut self, bid: u16, len: usize, consume: &mut impl FnMut(&Incoming) -> Flow) -> Option<Flow> {
        if !self.multishot {
            let s = &self.singles[bid as usize];
            if s.hdr.msg_flags & libc::MSG_TRUNC != 0 {
                self.counters.oversize += 1;
                return None;
            }
            let addr = s.name.decode(s.hdr.msg_namelen).map(crate::addr::unmap);
            let control = crate::sys::parse_control(&s.control[..(s.hdr.msg_controllen as usize).min(self.control_len)]);
            let payload = self.bufs.buffer(bid, len);
            return Some(consume(&Incoming { payload, addr, segment_size: control.segment_size, local: control.local }));
        }
        let data = self.bufs.buffer(bid, len);
        let Ok(out) = types::RecvMsgOut::parse(data, &self.template) else {
            self.counters.oversize += 1;
            return None;
        };
        if out.is_payload_truncated() {
            self.counters.oversize += 1;
            return None;
        }
        let addr = sockaddr_from_bytes(out.name_data()).map(crate::addr::unmap);
        let control = if self.control_len > 0 { crate::sys::parse_control(out.control_data()) } else { crate::sys::Control::default() };
        Some(consume(&Incoming { payload: out.payload_data(), addr, segment_size: control.segment_size, local: control.local }))
    }

    fn give_back(&mut self, bid: u16) {
        if self.multishot {
            self.bufs.recycle(bid);
        } else {
            self.free_slots.push(bid as usize);
        }
    }

    /// True if a datagram is waiting (stashed or completed but not taken).
    pub fn has_pending(&mut self) -> bool {
        self.stash.is_some() || self.ring.has_completions()
    }

    /// Cancels the armed receive(s) and reaps every completion, so no buffer
    /// can be written after this returns.
    pub fn shutdown(&mut self) {
        self.ring.cancel_all(|_| {});
        self.armed = 0;
    }
}

impl Drop for MsgReceiver {
    fn drop(&mut self) {
        self.shutdown();
    }
}
