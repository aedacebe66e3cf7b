//! UDP sockets on io_uring (with a recvmmsg/sendmmsg fallback).

mod batch;
mod config;
mod socket;
mod stats;

pub use config::{Backend, BackendChoice, UdpConfig};
pub use socket::{UdpSocket, MAX_GATHER};
pub use stats::UdpStats;

pub use crate::sys::{LocalInfo, Payload};
use std::net::SocketAddr;

/// A caller-owned receive slot (the C `mr_datagram` / `mr_msg`).
pub trait RecvSlot {
    fn buffer(&mut self) -> &mut [u8];
    fn fill(&mut self, len: usize, addr: Option<SocketAddr>, segment_size: u16);
    /// The datagram's local address, called after `fill` on a socket with
    /// packet information enabled (`None`: the kernel gave none).
    fn set_local(&mut self, _local: Option<LocalInfo>) {}
}

/// A caller-owned datagram to send.
pub trait SendSlot {
    fn payload(&self) -> Payload<'_>;
    /// `None` if the caller's address is malformed.
    fn addr(&self) -> Option<SocketAddr>;
    fn segment_size(&self) -> u16;
    /// The source address to send from (`None`: the kernel picks).
    fn local(&self) -> Option<LocalInfo> {
        None
    }

    fn outgoing(&self) -> crate::sys::Outgoing<'_> {
        crate::sys::Outgoing {
            payload: self.payload(),
            addr: self.addr().unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0))),
            segment_size: self.segment_size(),
            local: self.local(),
        }
    }
}

/// A plain Rust receive slot.
pub struct Datagram {
    pub buf: Vec<u8>,
    pub len: usize,
    pub addr: Option<SocketAddr>,
    pub segment_size: u16,
    pub local: Option<LocalInfo>,
}

impl Datagram {
    pub fn with_capacity(cap: usize) -> Self {
        Datagram { buf: vec![0; cap], len: 0, addr: None, segment_size: 0, local: None }
    }

    pub fn data(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl RecvSlot for Datagram {
    fn buffer(&mut self) -> &mut [u8] {
        &mut self.buf
    }
    fn fill(&mut self, len: usize, addr: Option<SocketAddr>, segment_size: u16) {
        self.len = len;
        self.addr = addr;
        self.segment_size = segment_size;
    }
    fn set_local(&mut self, local: Option<LocalInfo>) {
        self.local = local;
    }
}

impl SendSlot for crate::sys::Outgoing<'_> {
    fn payload(&self) -> Payload<'_> {
        self.payload
    }
    fn local(&self) -> Option<LocalInfo> {
        self.local
    }
    fn addr(&self) -> Option<SocketAddr> {
        Some(self.addr)
    }
    fn segment_size(&self) -> u16 {
        self.segment_size
    }
}
