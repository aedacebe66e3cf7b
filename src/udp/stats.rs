//! Per-handle counters, updated without locks.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct UdpStats {
    pub rx_datagrams: u64,
    pub rx_bytes: u64,
    pub rx_calls: u64,
    pub rx_oversize: u64,
    pub rx_rearms: u64,
    pub tx_datagrams: u64,
    pub tx_bytes: u64,
    pub tx_calls: u64,
    pub tx_errors: u64,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub rx_datagrams: AtomicU64,
    pub rx_bytes: AtomicU64,
    pub rx_calls: AtomicU64,
    pub rx_oversize: AtomicU64,
    pub rx_rearms: AtomicU64,
    // Keep the sender's counters off the receiver's cache line.
    _pad: [u64; 3],
    pub tx_datagrams: AtomicU64,
    pub tx_bytes: AtomicU64,
    pub tx_calls: AtomicU64,
    pub tx_errors: AtomicU64,
}

impl Counters {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }

    pub fn store(counter: &AtomicU64, n: u64) {
        counter.store(n, Relaxed);
    }

    pub fn snapshot(&self) -> UdpStats {
        UdpStats {
            rx_datagrams: self.rx_datagrams.load(Relaxed),
            rx_bytes: self.rx_bytes.load(Relaxed),
            rx_calls: self.rx_calls.load(Relaxed),
            rx_oversize: self.rx_oversize.load(Relaxed),
            rx_rearms: self.rx_rearms.load(Relaxed),
            tx_datagrams: self.tx_datagrams.load(Relaxed),
            tx_bytes: self.tx_bytes.load(Relaxed),
            tx_calls: self.tx_calls.load(Relaxed),
            tx_errors: self.tx_errors.load(Relaxed),
        }
    }
}
