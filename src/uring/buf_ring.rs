//! A provided-buffer ring (IORING_REGISTER_PBUF_RING): the kernel picks a
//! free buffer per completion, so multishot receives need no buffer per SQE.

use crate::error::{Error, Result};
use io_uring::types::BufRingEntry;
use io_uring::Submitter;
use std::sync::atomic::{AtomicU16, Ordering};

/// Anonymous memory the kernel may read or write; freed on drop.
struct Mapping {
    ptr: *mut u8,
    len: usize,
}

impl Mapping {
    fn new(len: usize) -> Result<Self> {
        // SAFETY: anonymous private mapping with no address hint; checked below.
        let ptr = unsafe {
            libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0)
        };
        if ptr == libc::MAP_FAILED {
            return Err(Error::os("mmap buffer ring", crate::sys::errno()).with_kind(crate::error::ErrorKind::NoMemory));
        }
        Ok(Mapping { ptr: ptr.cast(), len })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the region mapped in `new`; owners guarantee the
        // kernel has no operation left that could touch it.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

pub struct BufRing {
    entries: Mapping,
    buffers: Mapping,
    count: u16,
    buf_size: usize,
    /// Our copy of the tail; published to the kernel by `publish`.
    tail: u16,
}

// SAFETY: the mappings are plain memory owned by this value; moving it to
// another thread moves that ownership. Kernel access is ordered by the tail.
unsafe impl Send for BufRing {}

impl BufRing {
    /// `count` must be a power of two no larger than 32768.
    pub fn new(count: u16, buf_size: usize) -> Result<Self> {
        if !count.is_power_of_two() || count > 32768 {
            return Err(Error::invalid(format!("buffer count {count} must be a power of two <= 32768")));
        }
        let entries = Mapping::new(count as usize * std::mem::size_of::<BufRingEntry>())?;
        let buffers = Mapping::new(count as usize * buf_size)?;
        let mut ring = BufRing { entries, buffers, count, buf_size, tail: 0 };
        for bid in 0..count {
            ring.recycle(bid);
        }
        ring.publish();
        Ok(ring)
    }

    pub fn register(&self, submitter: &Submitter<'_>, group: u16) -> Result<()> {
        // SAFETY: the entry array is page-aligned (mmap) and outlives the
        // registration: owners drop the io_uring before this ring.
        unsafe { submitter.register_buf_ring_with_flags(self.entries.ptr as u64, self.count, group, 0) }
            .map_err(|e| Error::from_io("register provided-buffer ring", &e))
    }

    pub fn buf_size(&self) -> usize {
        self.buf_size
    }

    /// The first `len` bytes of buffer `bid`, which a completion handed to us.
    pub fn buffer(&self, bid: u16, len: usize) -> &[u8] {
        assert!(bid < self.count && len <= self.buf_size, "buffer {bid}/{len} out of range");
        // SAFETY: in range (asserted); the kernel finished writing this buffer
        // before posting the completion that named it and won't reuse it until
        // `recycle` gives it back.
        unsafe { std::slice::from_raw_parts(self.buffers.ptr.add(bid as usize * self.buf_size), len) }
    }

    /// Returns buffer `bid` to the kernel (visible after `publish`).
    pub fn recycle(&mut self, bid: u16) {
        let slot = (self.tail & (self.count - 1)) as usize;
        // SAFETY: `slot` < count, inside the entry mapping; the kernel only reads
        // entries between its head and the published tail, which excludes this one.
        let entry = unsafe { &mut *(self.entries.ptr as *mut BufRingEntry).add(slot) };
        // SAFETY: `bid` < count, so the address lies inside the buffer mapping.
        entry.set_addr(unsafe { self.buffers.ptr.add(bid as usize * self.buf_size) } as u64);
        entry.set_len(self.buf_size as u32);
        entry.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    pub fn publish(&self) {
        // SAFETY: the tail field overlays entry 0's reserved field, 2-byte aligned,
        // inside the mapping; the kernel reads it concurrently, hence atomic.
        let tail = unsafe { AtomicU16::from_ptr(BufRingEntry::tail(self.entries.ptr as *const BufRingEntry) as *mut u16) };
        tail.store(self.tail, Ordering::Release);
    }
}
