//! UDP sockets on io_uring (with a recvmmsg/sendmmsg fallback).

mod batch;
mod config;
mod socket;
mod stats;

pub use config::{Backend, BackendChoice, UdpConfig};
pub use socket::UdpSocket;
pub use stats::UdpStats;

use std::net::SocketAddr;

/// A caller-owned receive slot (the C `mr_datagram`).
pub trait RecvSlot {
    fn buffer(&mut self) -> &mut [u8];
    fn fill(&mut self, len: usize, addr: Option<SocketAddr>, segment_size: u16);
}

/// A caller-owned datagram to send.
pub trait SendSlot {
    fn payload(&self) -> &[u8];
    /// `None` if the caller's address is malformed.
    fn addr(&self) -> Option<SocketAddr>;
    fn segment_size(&self) -> u16;

    fn outgoing(&self) -> crate::sys::Outgoing<'_> {
        crate::sys::Outgoing {
            payload: self.payload(),
            addr: self.addr().unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0))),
            segment_size: self.segment_size(),
        }
    }
}

/// A plain Rust receive slot.
pub struct Datagram {
    pub buf: Vec<u8>,
    pub len: usize,
    pub addr: Option<SocketAddr>,
    pub segment_size: u16,
}

impl Datagram {
    pub fn with_capacity(cap: usize) -> Self {
        Datagram { buf: vec![0; cap], len: 0, addr: None, segment_size: 0 }
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
}

impl SendSlot for crate::sys::Outgoing<'_> {
    fn payload(&self) -> &[u8] {
        self.payload
    }
    fn addr(&self) -> Option<SocketAddr> {
        Some(self.addr)
    }
    fn segment_size(&self) -> u16 {
        self.segment_size
    }
}
