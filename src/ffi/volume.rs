//! `mr_volume`: a block volume over a file.

use super::error::{mr_status, value_or};
use super::ffi::{check_options, free_handle, into_handle, try_in, try_out, try_ref, try_slice, try_slice_mut, try_str, Castable};
use super::udp::{backend_choice, mr_backend};
use crate::error::{Error, Result};
use crate::replication::{Volume, VolumeConfig};
use std::os::raw::c_char;
use std::sync::Arc;

/// A block volume handle. Thread-safe. A replication started on it holds
/// its own reference, so `mr_volume_free` may come before or after
/// `mr_repl_free`.
pub struct mr_volume {
    _opaque: [u8; 0],
}

impl Castable for mr_volume {
    type Rust = Arc<Volume>;
    const NAME: &'static str = "mr_volume";
}

/// `mr_volume_config.flags`: create the file if it does not exist.
pub const MR_VOLUME_CREATE: u32 = 1;
/// `mr_volume_config.flags`: open the file with O_DIRECT (no page cache;
/// every write goes to the device). Unaligned caller buffers are copied
/// through an aligned one; batches (`mr_volume_write_batch`,
/// `mr_repl_write_batch`) keep up to 32 writes in flight on io_uring.
/// MR_UNSUPPORTED if the file system refuses O_DIRECT.
pub const MR_VOLUME_DIRECT: u32 = 2;
const KNOWN_FLAGS: u32 = MR_VOLUME_CREATE | MR_VOLUME_DIRECT;

/// One write of a batch (`mr_volume_write_batch`, `mr_repl_write_batch`):
/// `len` bytes of whole blocks from `buf` (borrowed for the call) to the
/// blocks starting at `block`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct mr_block_write {
    pub block: u64,
    pub buf: *const u8,
    pub len: usize,
}

/// The extents of a caller's batch, borrowed for the call.
pub(crate) fn batch_extents<'a>(writes: *const mr_block_write, n: usize) -> Result<Vec<(u64, &'a [u8])>> {
    let writes = try_slice(writes, n, "writes")?;
    writes
        .iter()
        .enumerate()
        .map(|(i, w)| {
            if w.buf.is_null() && w.len > 0 {
                return Err(Error::invalid(format!("writes[{i}].buf is NULL with n = {}", w.len)));
            }
            Ok((w.block, try_slice(w.buf, w.len, "writes[].buf")?))
        })
        .collect()
}

/// Options for `mr_volume_open`. Fill with `mr_volume_config_init` first.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct mr_volume_config {
    /// sizeof(mr_volume_config), set by mr_volume_config_init.
    pub struct_size: u32,
    /// Bytes per block: a power of two from 512 to 1048576 (4096).
    pub block_size: u32,
    /// Blocks in the volume; a shorter file is extended (sparse) to hold
    /// them. 0 = the size of the existing file, which must be a non-zero
    /// multiple of block_size.
    pub block_count: u64,
    /// MR_VOLUME_* bits.
    pub flags: u32,
    /// An `mr_backend`: MR_BACKEND_AUTO (the default, or `MESHRING_BACKEND`):
    /// with io_uring available, single reads, single writes and internal
    /// multi-block batches each measure io_uring against pread/pwrite over
    /// their first operations and use the faster (a buffered ext4 write is
    /// punted to an io-wq thread, so pwrite wins there by far), without it
    /// pread/pwrite; MR_BACKEND_URING: every operation on io_uring
    /// (MR_UNSUPPORTED without it); MR_BACKEND_BATCH: pread/pwrite only.
    pub backend: u32,
}

/// Fills `*cfg` with the defaults (4096-byte blocks, size of the existing
/// file, no flags, MR_BACKEND_AUTO).
#[no_mangle]
pub extern "C" fn mr_volume_config_init(cfg: *mut mr_volume_config) -> mr_status {
    ffi_status!("mr_volume_config_init", {
        *try_out(cfg, "cfg")? = mr_volume_config {
            struct_size: std::mem::size_of::<mr_volume_config>() as u32,
            block_size: crate::replication::DEFAULT_BLOCK_SIZE,
            block_count: 0,
            flags: 0,
            backend: mr_backend::MR_BACKEND_AUTO as u32,
        };
        Ok(())
    })
}

fn to_config(cfg: *const mr_volume_config) -> Result<VolumeConfig> {
    if cfg.is_null() {
        return Ok(VolumeConfig::default());
    }
    let c = try_in(cfg, "cfg")?;
    check_options("mr_volume_config", c.struct_size, std::mem::size_of::<mr_volume_config>(), c.flags, KNOWN_FLAGS)?;
    Ok(VolumeConfig {
        block_size: c.block_size,
        block_count: c.block_count,
        create: c.flags & MR_VOLUME_CREATE != 0,
        backend: backend_choice(c.backend)?,
        direct: c.flags & MR_VOLUME_DIRECT != 0,
    })
}

/// Opens the volume file at `path` (`cfg` NULL = defaults: the file must
/// exist). On success `*out` owns a new handle the caller releases with
/// `mr_volume_free`; on failure `*out` is NULL. MR_INVALID_ARGUMENT for a bad
/// block size or count, MR_IO (see mr_last_os_error) if the file cannot be
/// opened or extended, MR_UNSUPPORTED for MR_BACKEND_URING without io_uring.
#[no_mangle]
pub extern "C" fn mr_volume_open(path: *const c_char, cfg: *const mr_volume_config, out: *mut *mut mr_volume) -> mr_status {
    ffi_status!("mr_volume_open", {
        let out = try_out(out, "out")?;
        *out = std::ptr::null_mut();
        let path = try_str(path, "path")?;
        let cfg = to_config(cfg)?;
        *out = into_handle::<mr_volume>(Arc::new(Volume::open(std::path::Path::new(path), &cfg)?));
        Ok(())
    })
}

/// Reads `len` bytes of consecutive blocks starting at `block` into `buf`
/// (caller-owned, `len` writable bytes). `len` must be a non-zero multiple
/// of the block size and the blocks inside the volume, else
/// MR_INVALID_ARGUMENT. Blocks until the read is done.
#[no_mangle]
pub extern "C" fn mr_volume_read(v: *mut mr_volume, block: u64, buf: *mut u8, len: usize) -> mr_status {
    ffi_status!("mr_volume_read", {
        let v = try_ref(v)?;
        v.read(block, try_slice_mut(buf, len, "buf")?)
    })
}

/// Writes `len` bytes of consecutive blocks from `block` (same rules as
/// `mr_volume_read`). The library does not keep `buf`. MR_STATE while a
/// replication runs on the volume: write through `mr_repl_write` then.
#[no_mangle]
pub extern "C" fn mr_volume_write(v: *mut mr_volume, block: u64, buf: *const u8, len: usize) -> mr_status {
    ffi_status!("mr_volume_write", {
        let v = try_ref(v)?;
        v.write(block, try_slice(buf, len, "buf")?)
    })
}

/// Writes `n` extents (`writes[i].len` bytes of whole blocks each, the
/// buffers borrowed for the call) as one batch: with io_uring up to 32
/// writes in flight from one submit (MR_BACKEND_AUTO measures this against
/// a pwrite loop and keeps the faster), else one pwrite each. The extents
/// must be inside the volume and must not overlap (MR_INVALID_ARGUMENT,
/// nothing written). `n` = 0 is a no-op. On an I/O error some extents may
/// have been written. MR_STATE while a replication runs on the volume
/// (use `mr_repl_write_batch`).
#[no_mangle]
pub extern "C" fn mr_volume_write_batch(v: *mut mr_volume, writes: *const mr_block_write, n: usize) -> mr_status {
    ffi_status!("mr_volume_write_batch", {
        let v = try_ref(v)?;
        v.write_batch(&batch_extents(writes, n)?)
    })
}

/// fdatasync: every write that returned before this call is on stable storage.
#[no_mangle]
pub extern "C" fn mr_volume_flush(v: *mut mr_volume) -> mr_status {
    ffi_status!("mr_volume_flush", { try_ref(v)?.flush() })
}

/// Bytes per block; 0 if `v` is NULL.
#[no_mangle]
pub extern "C" fn mr_volume_block_size(v: *const mr_volume) -> u32 {
    super::panic::boundary("mr_volume_block_size", || {
        value_or("mr_volume_block_size", try_ref(v).map(|v| v.block_size()), 0)
    })
}

/// Blocks in the volume; 0 if `v` is NULL.
#[no_mangle]
pub extern "C" fn mr_volume_block_count(v: *const mr_volume) -> u64 {
    super::panic::boundary("mr_volume_block_count", || {
        value_or("mr_volume_block_count", try_ref(v).map(|v| v.block_count()), 0)
    })
}

/// MR_BACKEND_URING if the volume has an io_uring engine (with
/// MR_BACKEND_AUTO: used where it measured faster), else MR_BACKEND_BATCH
/// (pread/pwrite); MR_BACKEND_AUTO if `v` is NULL.
#[no_mangle]
pub extern "C" fn mr_volume_backend(v: *const mr_volume) -> mr_backend {
    super::panic::boundary("mr_volume_backend", || {
        value_or("mr_volume_backend", try_ref(v).map(|v| mr_backend::from(v.backend())), mr_backend::MR_BACKEND_AUTO)
    })
}

/// Closes the volume: every later call on it, and on a replication using
/// it, returns MR_CLOSED (the file itself is closed once the last user
/// lets go). Idempotent; any thread.
#[no_mangle]
pub extern "C" fn mr_volume_close(v: *mut mr_volume) -> mr_status {
    ffi_status!("mr_volume_close", {
        try_ref(v)?.close();
        Ok(())
    })
}

/// Releases the caller's reference (a replication on the volume keeps
/// working until `mr_repl_free`). Does not close the volume for a running
/// replication. NULL is a no-op. No other thread may use `v` afterwards.
#[no_mangle]
pub extern "C" fn mr_volume_free(v: *mut mr_volume) {
    ffi_value!("mr_volume_free", {
        drop(free_handle(v));
    })
}
