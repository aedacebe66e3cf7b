//! A block volume over a file: fixed-size blocks read and written by block
//! number, through io_uring where it works and pread/pwrite otherwise;
//! `flush` is fdatasync.

use crate::error::{Error, ErrorKind, Result};
use crate::udp::{Backend, BackendChoice};
use crate::uring::FileIo;
use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::Path;
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
}

impl Default for VolumeConfig {
    fn default() -> Self {
        VolumeConfig { block_size: DEFAULT_BLOCK_SIZE, block_count: 0, create: false, backend: BackendChoice::Auto }
    }
}

pub struct Volume {
    /// io_uring engine; `None` for the pread/pwrite backend.
    uring: Option<Mutex<FileIo>>,
    file: File,
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
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(cfg.create)
            .open(path)
            .map_err(|e| Error::from_io(&format!("open {}", path.display()), &e))?;
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
        let uring = match cfg.backend.resolved()? {
            BackendChoice::Batch => None,
            BackendChoice::Uring => Some(FileIo::new(file.as_raw_fd())?),
            BackendChoice::Auto => match FileIo::new(file.as_raw_fd()) {
                Ok(io) => Some(io),
                Err(e) => {
                    log::info!("volume {}: io_uring unavailable ({e}); using pread/pwrite", path.display());
                    None
                }
            },
        };
        Ok(Volume {
            uring: uring.map(Mutex::new),
            file,
            block_size: bs,
            block_count,
            closed: AtomicBool::new(false),
            attached: AtomicBool::new(false),
            #[cfg(test)]
            fail_writes: AtomicBool::new(false),
        })
    }

    pub fn block_size(&self) -> u32 {
        self.block_size
    }

    pub fn block_count(&self) -> u64 {
        self.block_count
    }

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

    fn engine(&self) -> Option<std::sync::MutexGuard<'_, FileIo>> {
        self.uring.as_ref().map(|m| m.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Reads whole blocks starting at `block` into `buf`.
    pub fn read(&self, block: u64, buf: &mut [u8]) -> Result<()> {
        self.check_open()?;
        self.check_range(block, buf.len())?;
        let offset = block * self.block_size as u64;
        match self.engine() {
            Some(mut io) => io.read_exact_at(buf, offset),
            None => self.file.read_exact_at(buf, offset).map_err(|e| Error::from_io("pread", &e)),
        }
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
        match self.engine() {
            Some(mut io) => io.write_all_at(data, offset),
            None => self.file.write_all_at(data, offset).map_err(|e| Error::from_io("pwrite", &e)),
        }
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
        let cfg = VolumeConfig { block_size: 512, block_count: blocks, create: true, backend };
        (Volume::open(&path, &cfg).unwrap(), path)
    }

    fn backends() -> Vec<BackendChoice> {
        let mut v = vec![BackendChoice::Batch];
        if crate::uring::probe().unusable.is_none() {
            v.push(BackendChoice::Uring);
        }
        v
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
