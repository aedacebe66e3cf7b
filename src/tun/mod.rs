//! TUN devices: batched packet read/write with io_uring readiness (or
//! `poll(2)`), prompt close, optional packet-information header.

mod device;
pub mod gro;
pub mod offload;

pub use device::{Tun, TunConfig};

/// A caller-owned buffer to read one packet into (the C `mr_packet`).
pub trait PacketSlot {
    fn buffer(&mut self) -> &mut [u8];
    /// `proto` is the packet's EtherType (0x0800 IPv4, 0x86DD IPv6).
    fn fill(&mut self, len: usize, proto: u16);
}

/// A caller-owned packet to write.
pub trait OutPacket {
    fn packet(&self) -> &[u8];
}

/// EtherType of an IP packet from its version nibble (0 if neither).
pub fn ip_proto(packet: &[u8]) -> u16 {
    match packet.first().map(|b| b >> 4) {
        Some(4) => 0x0800,
        Some(6) => 0x86DD,
        _ => 0,
    }
}

/// A plain Rust packet buffer.
pub struct Packet {
    pub buf: Vec<u8>,
    pub len: usize,
    pub proto: u16,
}

impl Packet {
    pub fn with_capacity(cap: usize) -> Self {
        Packet { buf: vec![0; cap], len: 0, proto: 0 }
    }

    pub fn data(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl PacketSlot for Packet {
    fn buffer(&mut self) -> &mut [u8] {
        &mut self.buf
    }
    fn fill(&mut self, len: usize, proto: u16) {
        self.len = len;
        self.proto = proto;
    }
}

impl OutPacket for Packet {
    fn packet(&self) -> &[u8] {
        self.data()
    }
}

impl OutPacket for &[u8] {
    fn packet(&self) -> &[u8] {
        self
    }
}
