//! A block volume over a file: fixed-size blocks read and written by block
//! number, through the io_uring engine where it is faster and
//! pread/pwrite otherwise; `flush` is fdatasync.
//!
//! Backends: `Batch` is pread/pwrite/fdatasync only; `Uring` sends every
//! operation through io_uring (MR_UNSUPPORTED without it); `Auto` (the
//! default) keeps both and, per kind of operation (single reads, single
//! writes, multi-block batches), measures the two and uses the faster (see
//! `chooser`). On an ext4 page cache the measurement picks pwrite for single
//! writes: a buffered ext4 write cannot complete with IOCB_NOWAIT, so
//! io_uring punts each one to an io-wq worker thread (an `iou-wrk` thread
//! and a cross-thread wake-up per write: ~48 us against ~1.5 us for pwrite
//! for 4 KiB). `flush` (fdatasync) always goes through the ring when there
//! is one: it blocks in the kernel either way.
//!
//! `direct` opens the file with O_DIRECT: no page cache, every write goes
//! to the device. Buffers are bounced through a 4 KiB-aligned copy where
//! the caller's are not aligned, and io_uring writes are submitted without
//! IOSQE_ASYNC (a direct overwrite can be issued without blocking), so a
//! batch keeps up to `uring::QUEUE_DEPTH` writes in flight on the device.

use crate::error::{Error, ErrorKind, Result};
use crate::udp::{Backend, BackendChoice};
use super::chooser::{Chooser, IoPath};
use crate::uring::{FileIo, WriteAt};
use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// cbindgen:ignore
pub const DEFAULT_BLOCK_SIZE: u32 = 4096;
/// cbindgen:ignore
pub const MIN_BLOCK_SIZE: u32 = 512;
/// cbindgen:ignore
pub const MAX_BLOCK_SIZE: u32 = 1 << 20;

#[derive(Debug, Clone)]
pub struct VolumeConfig {
    /// A power of two in MIN_BLOCK_SIZE..=MAX_BLOCK_SIZE.
    pub block_size: u32,
    /// Blocks in the volume; the file is extended to hold them. 0 = take
    /// the size of an existing file.
    pub block_count: u64,
    /// Create the file if it does not exist.
    pub create: bool,
    pub backend: BackendChoice,
    /// O_DIRECT: bypass the page cache.
    pub direct: bool,
}

impl Default for VolumeConfig {
    fn default() -> Self {
        VolumeConfig { block_size: DEFAULT_BLOCK_SIZE, block_count: 0, create: false, backend: BackendChoice::Auto, direct: false }
    }
}

/// Buffer alignment for O_DIRECT.
const DIRECT_ALIGN: usize = 4096;

/// A zeroed buffer of `len` bytes at a `DIRECT_ALIGN`-aligned address.
struct Aligned {
    raw: Vec<u8>,
    at: usize,
    len: usize,
}

impl Aligned {
    fn new(len: usize) -> Self {
        let raw = vec![0u8; len + DIRECT_ALIGN];
        let at = raw.as_ptr().align_offset(DIRECT_ALIGN);
        Aligned { raw, at, len }
    }

    fn get(&self) -> &[u8] {
        &self.raw[self.at..self.at + self.len]
    }

    fn get_mut(&mut self) -> &mut [u8] {
        &mut self.raw[self.at..self.at + self.len]
    }
}

fn is_aligned(buf: &[u8]) -> bool {
    (buf.as_ptr() as usize).is_multiple_of(DIRECT_ALIGN)
}

struct AutoPaths {
    read: Chooser,
    write: Chooser,
    batch: Chooser,
}

pub struct Volume {
    /// io_uring engine; `None` for the pread/pwrite backend.
    uring: Option<Mutex<FileIo>>,
    /// `Auto` with io_uring: which path each kind of operation takes.
    /// `None`: every operation takes `uring` if present.
    auto: Option<AutoPaths>,
    file: File,
    path: PathBuf,
    direct: bool,
    block_size: u32,
    block_count: u64,
    closed: AtomicBool,
    /// Set while a replication owns the write path (see `attach`).
    attached: AtomicBool,
    #[cfg(test)]
    pub(crate) fail_writes: AtomicBool,
}

impl Volume {
    pub fn open(path: &Path, cfg: &VolumeConfig) -> Result<Self> {
        let bs = cfg.block_size;
        if !bs.is_power_of_two() || !(MIN_BLOCK_SIZE..=MAX_BLOCK_SIZE).contains(&bs) {
            return Err(Error::invalid(format!(
                "block_size {bs} must be a power of two from {MIN_BLOCK_SIZE} to {MAX_BLOCK_SIZE}"
            )));
        }
        let mut options = OpenOptions::new();
        options.read(true).write(true).create(cfg.create);
        if cfg.direct {
            use std::os::unix::fs::OpenOptionsExt;
            options.custom_flags(libc::O_DIRECT);
        }
        let file = options.open(path).map_err(|e| {
            let mut err = Error::from_io(&format!("open {}", path.display()), &e);
            if cfg.direct && e.raw_os_error() == Some(libc::EINVAL) {
                err.message = format!("{} (the file system does not support O_DIRECT)", err.message).into();
                err.kind = ErrorKind::Unsupported;
            }
            err
        })?;
        let len = file.metadata().map_err(|e| Error::from_io("fstat", &e))?.len();
        let block_count = match cfg.block_count {
            0 if len == 0 || len % bs as u64 != 0 => {
                return Err(Error::invalid(format!(
                    "block_count is 0 and the file's size {len} is not a non-zero multiple of block_size {bs}"
                )))
            }
            0 => len / bs as u64,
            n => n,
        };
        let need = block_count
            .checked_mul(bs as u64)
            .filter(|n| *n <= i64::MAX as u64)
            .ok_or_else(|| Error::invalid(format!("{block_count} blocks of {bs} bytes overflow a file size")))?;
        if len < need {
            file.set_len(need).map_err(|e| Error::from_io("ftruncate (extend the volume file)", &e))?;
        }
        let new_io = || {
            FileIo::new(file.as_raw_fd()).map(|mut io| {
                // A direct overwrite can be issued without blocking: no io-wq punt.
                io.set_async_writes(!cfg.direct);
                io
            })
        };
        let (uring, auto) = match cfg.backend.resolved()? {
            BackendChoice::Batch => (None, None),
            BackendChoice::Uring => (Some(new_io()?), None),
            BackendChoice::Auto => match new_io() {
                Ok(io) => {
                    (Some(io), Some(AutoPaths { read: Chooser::new(), write: Chooser::new(), batch: Chooser::new() }))
                }
                Err(e) => {
                    log::info!("volume {}: io_uring unavailable ({e}); using pread/pwrite", path.display());
                    (None, None)
                }
            },
        };
        Ok(Volume {
            uring: uring.map(Mutex::new),
            auto,
            file,
            path: path.to_path_buf(),
            direct: cfg.direct,
            block_size: bs,
            block_count,
            closed: AtomicBool::new(false),
            attached: AtomicBool::new(false),
            #[cfg(test)]
            fail_writes: AtomicBool::new(false),
        })
    }

    /// The volume file's path (overlays are kept beside it).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opened with O_DIRECT.
    pub fn is_direct(&self) -> bool {
        self.direct
    }

    pub fn block_size(&self) -> u32 {
        self.block_size
    }

    pub fn block_count(&self) -> u64 {
        self.block_count
    }

    /// `Uring` when the volume has an io_uring engine (with `Auto`, used for
    /// the kinds of operation where it measured faster), else `Batch`.
    pub fn backend(&self) -> Backend {
        if self.uring.is_some() {
            Backend::Uring
        } else {
            Backend::Batch
        }
    }

    /// Checks that `len` bytes from `block` are whole blocks inside the
    /// volume; returns the block count.
    pub fn check_range(&self, block: u64, len: usize) -> Result<u64> {
        let bs = self.block_size as usize;
        if len == 0 || !len.is_multiple_of(bs) {
            return Err(Error::invalid(format!("length {len} is not a non-zero multiple of the block size {bs}")));
        }
        let n = (len / bs) as u64;
        if block.checked_add(n).is_none_or(|end| end > self.block_count) {
            return Err(Error::invalid(format!(
                "blocks {block}..{} are outside the volume's {} blocks",
                block.saturating_add(n),
                self.block_count
            )));
        }
        Ok(n)
    }

    fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::closed("volume is closed"));
        }
        Ok(())
    }

    /// The locked engine when `path` is io_uring (and the volume has one);
    /// None for the plain path, which takes no lock.
    fn engine_for(&self, path: IoPath) -> Option<std::sync::MutexGuard<'_, FileIo>> {
        match path {
            IoPath::Uring => self.engine(),
            IoPath::Plain => None,
        }
    }

    fn engine(&self) -> Option<std::sync::MutexGuard<'_, FileIo>> {
        self.uring.as_ref().map(|m| m.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Reads whole blocks starting at `block` into `buf`.
    pub fn read(&self, block: u64, buf: &mut [u8]) -> Result<()> {
        self.check_open()?;
        self.check_range(block, buf.len())?;
        let offset = block * self.block_size as u64;
        if self.direct && !is_aligned(buf) {
            let mut bounce = Aligned::new(buf.len());
            self.read_at(bounce.get_mut(), offset)?;
            buf.copy_from_slice(bounce.get());
            return Ok(());
        }
        self.read_at(buf, offset)
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        self.timed(|a| &a.read, |path| match self.engine_for(path) {
            Some(mut io) => io.read_exact_at(buf, offset),
            None => self.file.read_exact_at(buf, offset).map_err(|e| Error::from_io("pread", &e)),
        })
    }

    /// Runs `op` on the path to take: the chooser's pick for `Auto` (timing
    /// trial operations), else io_uring when the volume has it.
    fn timed<T>(&self, kind: impl Fn(&AutoPaths) -> &Chooser, op: impl FnOnce(IoPath) -> Result<T>) -> Result<T> {
        let Some(auto) = &self.auto else {
            return op(if self.uring.is_some() { IoPath::Uring } else { IoPath::Plain });
        };
        let chooser = kind(auto);
        let (path, timed) = chooser.pick();
        if !timed {
            return op(path);
        }
        let start = std::time::Instant::now();
        let result = op(path);
        if result.is_ok() {
            chooser.record(path, start.elapsed().as_nanos() as u64);
        }
        result
    }

    /// Writes whole blocks from `block`. Fails with State while a replication
    /// is attached: replicated volumes are written through the replication.
    pub fn write(&self, block: u64, data: &[u8]) -> Result<()> {
        if self.attached.load(Ordering::Acquire) {
            return Err(Error::new(
                ErrorKind::State,
                "the volume is attached to a replication: write through mr_repl_write",
            ));
        }
        self.write_raw(block, data)
    }

    /// The write path the attached replication uses.
    pub(crate) fn write_raw(&self, block: u64, data: &[u8]) -> Result<()> {
        self.check_open()?;
        self.check_range(block, data.len())?;
        #[cfg(test)]
        if self.fail_writes.load(Ordering::Acquire) {
            return Err(Error::os("injected write failure", libc::EIO));
        }
        let offset = block * self.block_size as u64;
        if self.direct && !is_aligned(data) {
            let mut bounce = Aligned::new(data.len());
            bounce.get_mut().copy_from_slice(data);
            return self.write_at(bounce.get(), offset);
        }
        self.write_at(data, offset)
    }

    fn write_at(&self, data: &[u8], offset: u64) -> Result<()> {
        self.timed(|a| &a.write, |path| match self.engine_for(path) {
            Some(mut io) => io.write_all_at(data, offset),
            None => self.file.write_all_at(data, offset).map_err(|e| Error::from_io("pwrite", &e)),
        })
    }

    /// Writes many whole-block extents (not overlapping) as one batch: on
    /// io_uring up to `QUEUE_DEPTH` writes in flight from one submit, else
    /// one pwrite each. State while a replication is attached.
    pub fn write_batch(&self, extents: &[(u64, &[u8])]) -> Result<()> {
        if self.attached.load(Ordering::Acquire) {
            return Err(Error::new(
                ErrorKind::State,
                "the volume is attached to a replication: write through mr_repl_write_batch",
            ));
        }
        super::primary::check_extents(self, extents)?;
        self.write_batch_raw(extents)
    }

    /// Writes many whole-block extents, in no particular order (the blocks
    /// must not overlap): on io_uring up to `QUEUE_DEPTH` writes in flight
    /// from one submit, else one pwrite each. The replication's path; not
    /// subject to `attach`.
    pub(crate) fn write_batch_raw(&self, extents: &[(u64, &[u8])]) -> Result<()> {
        self.check_open()?;
        for (block, data) in extents {
            self.check_range(*block, data.len())?;
        }
        #[cfg(test)]
        if self.fail_writes.load(Ordering::Acquire) {
            return Err(Error::os("injected write failure", libc::EIO));
        }
        if extents.is_empty() {
            return Ok(());
        }
        if self.direct && extents.iter().any(|(_, d)| !is_aligned(d)) {
            // One aligned copy of the whole batch.
            let total: usize = extents.iter().map(|(_, d)| d.len()).sum();
            let mut bounce = Aligned::new(total);
            let mut at = 0;
            let mut spans = Vec::with_capacity(extents.len());
            for (block, data) in extents {
                bounce.get_mut()[at..at + data.len()].copy_from_slice(data);
                spans.push((*block, at, data.len()));
                at += data.len();
            }
            let buf = bounce.get();
            let aligned: Vec<(u64, &[u8])> = spans.iter().map(|&(b, at, len)| (b, &buf[at..at + len])).collect();
            return self.write_batch_raw(&aligned);
        }
        let bs = self.block_size as u64;
        self.timed(|a| &a.batch, |path| match self.engine_for(path) {
            Some(mut io) => {
                let items: Vec<WriteAt<'_>> =
                    extents.iter().map(|(block, data)| WriteAt { offset: block * bs, data }).collect();
                io.write_batch(&items)
            }
            None => extents.iter().try_for_each(|(block, data)| {
                self.file.write_all_at(data, block * bs).map_err(|e| Error::from_io("pwrite", &e))
            }),
        })
    }

    /// fdatasync: everything written so far is on stable storage.
    pub fn flush(&self) -> Result<()> {
        self.check_open()?;
        match self.engine() {
            Some(mut io) => io.fdatasync(),
            None => self.file.sync_data().map_err(|e| Error::from_io("fdatasync", &e)),
        }
    }

    /// Makes every later call fail with Closed. Idempotent.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Claims the write path for one replication; State if another has it.
    pub(crate) fn attach(&self) -> Result<()> {
        self.check_open()?;
        if self.attached.swap(true, Ordering::AcqRel) {
            return Err(Error::new(ErrorKind::State, "the volume already has a replication attached"));
        }
        Ok(())
    }

    pub(crate) fn detach(&self) {
        self.attached.store(false, Ordering::Release);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn temp_path(tag: &str) -> std::path::PathBuf {
        use std::sync::atomic::AtomicU32;
        static N: AtomicU32 = AtomicU32::new(0);
        std::env::temp_dir().join(format!("mr-vol-{tag}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed)))
    }

    pub(crate) fn temp_volume(tag: &str, blocks: u64, backend: BackendChoice) -> (Volume, std::path::PathBuf) {
        let path = temp_path(tag);
        let cfg = VolumeConfig { block_size: 512, block_count: blocks, create: true, backend, ..Default::default() };
        (Volume::open(&path, &cfg).unwrap(), path)
    }

    #[test]
    fn direct_volume_bounces_unaligned_buffers_each_backend() {
        for backend in backends() {
            let path = temp_path("direct");
            let cfg = VolumeConfig { block_size: 4096, block_count: 64, create: true, backend, direct: true };
            let v = match Volume::open(&path, &cfg) {
                Ok(v) => v,
                Err(e) if e.kind == ErrorKind::Unsupported => {
                    eprintln!("SKIP O_DIRECT volume: {e}");
                    let _ = std::fs::remove_file(&path);
                    return;
                }
                Err(e) => panic!("{e}"),
            };
            assert!(v.is_direct());
            // Unaligned on purpose: one byte into a larger buffer.
            let mut src = vec![0u8; 3 * 4096 + 1];
            for (i, b) in src.iter_mut().enumerate() {
                *b = (i % 253) as u8;
            }
            let data = &src[1..];
            v.write(5, data).unwrap();
            let bufs: Vec<Vec<u8>> = (0..40u8).map(|i| vec![i + 1; 4096]).collect();
            let extents: Vec<(u64, &[u8])> = bufs.iter().enumerate().map(|(i, b)| (10 + i as u64, &b[..])).collect();
            v.write_batch(&extents).unwrap();
            v.flush().unwrap();
            let mut back = vec![0u8; 3 * 4096 + 3];
            v.read(5, &mut back[3..]).unwrap();
            assert_eq!(&back[3..], data, "{backend:?}");
            for (block, want) in &extents {
                let mut one = vec![0u8; 4096];
                v.read(*block, &mut one).unwrap();
                assert_eq!(&one[..], *want, "{backend:?} block {block}");
            }
            // Overlapping batch writes are refused before anything is written.
            let overlap = [(1u64, &bufs[0][..]), (1u64, &bufs[1][..])];
            assert_eq!(v.write_batch(&overlap).unwrap_err().kind, ErrorKind::InvalidArgument);
            std::fs::remove_file(path).unwrap();
        }
    }

    fn backends() -> Vec<BackendChoice> {
        let mut v = vec![BackendChoice::Batch, BackendChoice::Auto];
        match &crate::uring::probe().unusable {
            None => v.push(BackendChoice::Uring),
            Some(why) => eprintln!("SKIP the io_uring volume backend: {why}"),
        }
        v
    }

    #[test]
    fn batch_writes_and_auto_trials_each_backend() {
        for backend in backends() {
            let (v, path) = temp_volume("batch", 200, backend);
            // Enough single writes and reads to finish the AUTO trials, with
            // exact content checks on both paths.
            for round in 0..3 * crate::replication::chooser::TRIAL as u64 {
                let b = (round * 7) % 200;
                let data = vec![round as u8 + 1; 512];
                v.write(b, &data).unwrap();
                let mut back = vec![0u8; 512];
                v.read(b, &mut back).unwrap();
                assert_eq!(back, data, "{backend:?} block {b}");
            }
            if let Some(auto) = &v.auto {
                assert!(auto.read.chosen().is_some() && auto.write.chosen().is_some(), "{backend:?}");
            }
            // Batches (more than the queue depth, scattered, not overlapping), several rounds
            // so AUTO tries both paths.
            for round in 0..2 * crate::replication::chooser::TRIAL + 1 {
                let bufs: Vec<Vec<u8>> =
                    (0..90usize).map(|i| vec![(i + round) as u8; if i % 3 == 0 { 1024 } else { 512 }]).collect();
                let extents: Vec<(u64, &[u8])> =
                    bufs.iter().enumerate().map(|(i, b)| ((i as u64 * 53) % 97 * 2, &b[..])).collect();
                v.write_batch_raw(&extents).unwrap();
                for (block, data) in &extents {
                    let mut back = vec![0u8; data.len()];
                    v.read(*block, &mut back).unwrap();
                    assert_eq!(&back, data, "{backend:?} round {round} block {block}");
                }
            }
            assert_eq!(v.write_batch_raw(&[(199, &[0u8; 1024][..])]).unwrap_err().kind, ErrorKind::InvalidArgument);
            std::fs::remove_file(path).unwrap();
        }
    }

    #[test]
    fn read_write_flush_each_backend() {
        for backend in backends() {
            let (v, path) = temp_volume("rw", 8, backend);
            assert_eq!(std::fs::metadata(&path).unwrap().len(), 8 * 512);
            let data: Vec<u8> = (0..1024).map(|i| (i % 251) as u8).collect();
            v.write(3, &data).unwrap();
            v.flush().unwrap();
            let mut back = vec![0u8; 1536];
            v.read(2, &mut back).unwrap();
            assert!(back[..512].iter().all(|&b| b == 0));
            assert_eq!(&back[512..], &data[..]);
            std::fs::remove_file(path).unwrap();
        }
    }

    #[test]
    fn rejects_bad_ranges_and_sizes() {
        let (v, path) = temp_volume("bad", 4, BackendChoice::Batch);
        let mut buf = vec![0u8; 512];
        assert_eq!(v.read(4, &mut buf).unwrap_err().kind, ErrorKind::InvalidArgument);
        assert_eq!(v.read(u64::MAX, &mut buf).unwrap_err().kind, ErrorKind::InvalidArgument);
        assert_eq!(v.write(0, &buf[..100]).unwrap_err().kind, ErrorKind::InvalidArgument);
        assert_eq!(v.write(0, &[]).unwrap_err().kind, ErrorKind::InvalidArgument);
        let bad = VolumeConfig { block_size: 1000, block_count: 1, create: true, ..Default::default() };
        assert_eq!(Volume::open(&path, &bad).err().unwrap().kind, ErrorKind::InvalidArgument);
        // Reopen with block_count 0 takes the file's size.
        let again = Volume::open(&path, &VolumeConfig { block_size: 512, ..Default::default() }).unwrap();
        assert_eq!(again.block_count(), 4);
        v.attach().unwrap();
        assert_eq!(v.write(0, &buf).unwrap_err().kind, ErrorKind::State);
        assert_eq!(v.attach().unwrap_err().kind, ErrorKind::State);
        v.detach();
        v.close();
        assert_eq!(v.read(0, &mut buf).unwrap_err().kind, ErrorKind::Closed);
        std::fs::remove_file(path).unwrap();
    }
}

#[cfg(test)]
mod timing {
    use super::*;

    /// Not a test: prints single-write and 64-block batch costs per path on
    /// this machine. `cargo test --release -- --ignored --nocapture volume_paths`
    #[test]
    #[ignore]
    fn volume_paths() {
        let blocks = 16384u64;
        for (backend, async_writes) in [(BackendChoice::Batch, false), (BackendChoice::Uring, false), (BackendChoice::Uring, true)] {
            let path = tests::temp_path("timing");
            let cfg = VolumeConfig { block_size: 4096, block_count: blocks, create: true, backend, direct: false };
            let v = Volume::open(&path, &cfg).unwrap();
            if let Some(io) = v.engine().as_mut() {
                io.set_async_writes(async_writes);
            }
            let buf = vec![7u8; 4096];
            for b in 0..blocks {
                v.write(b, &buf).unwrap();
            }
            let mut seed = 0x1234567u64;
            let mut rnd = || {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed % blocks
            };
            let t = std::time::Instant::now();
            for _ in 0..20000 {
                v.write(rnd(), &buf).unwrap();
            }
            let single = t.elapsed().as_nanos() as f64 / 20000.0;
            let t = std::time::Instant::now();
            let rounds = 300;
            for _ in 0..rounds {
                let mut picked: Vec<u64> = (0..64).map(|_| rnd()).collect();
                picked.sort_unstable();
                picked.dedup();
                let extents: Vec<(u64, &[u8])> = picked.iter().map(|&b| (b, &buf[..])).collect();
                v.write_batch_raw(&extents).unwrap();
            }
            let batch = t.elapsed().as_nanos() as f64 / (rounds * 64) as f64;
            let t = std::time::Instant::now();
            for _ in 0..200 {
                v.flush().unwrap();
            }
            let flush = t.elapsed().as_nanos() as f64 / 200.0;
            println!("{backend:?} (IOSQE_ASYNC {async_writes}): single write {single:.0} ns, batch-of-64 {batch:.0} ns/block, fdatasync (clean) {flush:.0} ns");
            std::fs::remove_file(path).unwrap();
        }
    }
}
