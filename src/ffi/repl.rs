//! `mr_repl`: one side (primary or secondary) of a volume replication.

use super::addr::mr_addr;
use super::error::mr_status;
use super::ffi::{check_options, free_handle, into_handle, try_in, try_out, try_ref, try_slice, try_slice_mut, try_str, Castable};
use super::volume::{batch_extents, mr_block_write, mr_volume};
use crate::error::{Error, Result};
use crate::replication::{AckMode, Mode, Psk, ReplConfig, Replication, Stage};
use crate::sync::Wait;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::raw::{c_char, c_int};
use std::time::Duration;

/// A replication handle. Thread-safe: writes, reads, checkpoints and
/// `mr_repl_get_error` may come from different threads.
pub struct mr_repl {
    _opaque: [u8; 0],
}

impl Castable for mr_repl {
    type Rust = Replication;
    const NAME: &'static str = "mr_repl";
}

/// `mr_repl_config.mode`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum mr_repl_mode {
    /// Applies writes locally and sends them to the secondary at the address given to mr_repl_start.
    MR_REPL_PRIMARY = 0,
    /// Listens at the address given to mr_repl_start and applies the primary's writes.
    MR_REPL_SECONDARY = 1,
}

/// `mr_repl_config.ack`: when a primary's `mr_repl_write` returns.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum mr_repl_ack {
    /// After the local write (DRBD protocol A); frames are sent by a sender
    /// thread from a bounded queue (a full queue makes writes wait).
    MR_REPL_ASYNC = 0,
    /// After the secondary acknowledged applying the write (DRBD protocol C
    /// without flushes: the write is in both sides' page caches).
    MR_REPL_SYNC = 1,
    /// After the write is on stable storage on both sides (DRBD protocol C
    /// with flushes): the primary runs fdatasync while the secondary applies
    /// the write, runs its own fdatasync and only then acknowledges.
    /// Concurrent writers share each fdatasync on both sides (group commit).
    MR_REPL_DURABLE = 2,
}

/// Replication stages (QEMU's block replication stages).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum mr_repl_stage {
    /// Not started.
    MR_REPL_STAGE_NONE = 0,
    /// Replicating.
    MR_REPL_STAGE_RUNNING = 1,
    /// The secondary is committing its active layer (inside mr_repl_failover).
    MR_REPL_STAGE_FAILOVER = 2,
    /// The commit failed; the reason is in mr_repl_get_error; mr_repl_failover may be retried.
    MR_REPL_STAGE_FAILOVER_FAILED = 3,
    /// Stopped or failed over: the volume stands alone and mr_repl_read/write go straight to it.
    MR_REPL_STAGE_DONE = 4,
}

impl From<Stage> for mr_repl_stage {
    fn from(s: Stage) -> Self {
        match s {
            Stage::None => mr_repl_stage::MR_REPL_STAGE_NONE,
            Stage::Running => mr_repl_stage::MR_REPL_STAGE_RUNNING,
            Stage::Failover => mr_repl_stage::MR_REPL_STAGE_FAILOVER,
            Stage::FailoverFailed => mr_repl_stage::MR_REPL_STAGE_FAILOVER_FAILED,
            Stage::Done => mr_repl_stage::MR_REPL_STAGE_DONE,
        }
    }
}

/// Options for `mr_repl_start`. Fill with `mr_repl_config_init` first.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct mr_repl_config {
    /// sizeof(mr_repl_config), set by mr_repl_config_init.
    pub struct_size: u32,
    /// An `mr_repl_mode` (MR_REPL_PRIMARY).
    pub mode: u32,
    /// An `mr_repl_ack` (MR_REPL_SYNC); used by the primary.
    pub ack: u32,
    /// Primary: how long one connection attempt may take (1000 ms); failed
    /// attempts are retried in the background with backoff up to 500 ms.
    pub connect_timeout_ms: i32,
    /// Silence after which a connection is declared dead and reconnected
    /// (5000 ms); keepalives go every quarter of it, and a sync write waits
    /// at most this long for its acknowledgement. Give both sides the same
    /// value: the secondary drops a primary silent for its own timeout.
    pub peer_timeout_ms: i32,
    /// The pre-shared key: `key_len` (16 to 64) random bytes that both
    /// sides are given; required. Borrowed for the duration of
    /// mr_repl_start (copied). Both sides prove they hold it over fresh
    /// nonces, and every frame carries a MAC under a per-session key.
    pub key: *const u8,
    pub key_len: usize,
}

/// Counters and link state of a replication, filled by `mr_repl_stats`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct mr_repl_counters {
    /// 1 while a peer is connected (primary: handshake done; secondary: a primary attached).
    pub connected: u32,
    /// An `mr_repl_stage`.
    pub stage: u32,
    /// Primary: blocks the secondary may not have yet (resent on reconnect).
    pub dirty_blocks: u64,
    /// Primary: writes sent and not yet acknowledged.
    pub inflight_writes: u64,
    /// Primary: write messages sent.
    pub writes_sent: u64,
    /// Secondary: primary writes applied.
    pub writes_applied: u64,
    /// Primary: blocks sent by resyncs after (re)connecting.
    pub resync_blocks: u64,
    /// Connections established.
    pub connections: u64,
    /// Checkpoints completed.
    pub checkpoints: u64,
    /// Secondary: blocks in the active layer (its own writes).
    pub active_blocks: u64,
    /// Secondary: blocks in the hidden layer (old contents kept for the view).
    pub hidden_blocks: u64,
    /// fdatasync calls made for MR_REPL_DURABLE writes (primary: local group
    /// commits; secondary: before acknowledgements). Fewer than the writes
    /// when concurrent writers shared them.
    pub flushes: u64,
    /// Secondary: connections refused (failed authentication, a second
    /// primary while one is connected, malformed handshakes).
    pub refused: u64,
}

/// Fills `*cfg` with the defaults: primary, MR_REPL_SYNC, 1000 ms connect
/// timeout, 5000 ms peer timeout, no key (set `key` and `key_len`).
#[no_mangle]
pub extern "C" fn mr_repl_config_init(cfg: *mut mr_repl_config) -> mr_status {
    ffi_status!("mr_repl_config_init", {
        *try_out(cfg, "cfg")? = mr_repl_config {
            struct_size: std::mem::size_of::<mr_repl_config>() as u32,
            mode: mr_repl_mode::MR_REPL_PRIMARY as u32,
            ack: mr_repl_ack::MR_REPL_SYNC as u32,
            connect_timeout_ms: 1000,
            peer_timeout_ms: 5000,
            key: std::ptr::null(),
            key_len: 0,
        };
        Ok(())
    })
}

fn positive_ms(value: i32, name: &str) -> Result<Duration> {
    if value <= 0 {
        return Err(Error::invalid(format!("cfg.{name} is {value}; it must be > 0")));
    }
    Ok(Duration::from_millis(value as u64))
}

fn to_config(cfg: *const mr_repl_config) -> Result<ReplConfig> {
    let c = try_in(cfg, "cfg")?;
    check_options("mr_repl_config", c.struct_size, std::mem::size_of::<mr_repl_config>(), 0, 0)?;
    let mode = match c.mode {
        0 => Mode::Primary,
        1 => Mode::Secondary,
        other => return Err(Error::invalid(format!("cfg.mode {other} is not an mr_repl_mode"))),
    };
    let ack = match c.ack {
        0 => AckMode::Async,
        1 => AckMode::Sync,
        2 => AckMode::Durable,
        other => return Err(Error::invalid(format!("cfg.ack {other} is not an mr_repl_ack"))),
    };
    if c.key.is_null() || c.key_len == 0 {
        return Err(Error::invalid("cfg.key is required: 16 to 64 random bytes shared by both sides"));
    }
    let psk = Psk::new(try_slice(c.key, c.key_len, "cfg.key")?)?;
    Ok(ReplConfig {
        mode,
        ack,
        connect_timeout: positive_ms(c.connect_timeout_ms, "connect_timeout_ms")?,
        peer_timeout: positive_ms(c.peer_timeout_ms, "peer_timeout_ms")?,
        psk: Some(psk),
    })
}

/// Starts replicating volume `v` (stage RUNNING). `cfg` is required (the
/// mode and the key). Primary: `addr` ("127.0.0.1:7000", "[::1]:7000") is
/// the secondary; the call returns at once and connects in the background,
/// retrying while the secondary is absent; writes meanwhile are applied
/// locally and marked dirty, and a connecting secondary is resynced with
/// exactly those blocks (`mr_repl_wait_synced` waits for that). Secondary:
/// `addr` is where to listen (port 0 picks one: see `mr_repl_local_addr`);
/// the volume is the base and must have the primary's block size and
/// count; its active and hidden layers are kept in files beside the
/// volume's (`<path>.active`, `<path>.hidden`, created empty, removed by
/// mr_repl_free). `addr` NULL: no connecting or listening of its own; the
/// host hands over connected sockets with `mr_repl_add_connection`.
///
/// Every connection is authenticated with `cfg.key` (see mr_repl_config);
/// a peer that fails is refused and the reason stored for
/// `mr_repl_get_error` (MR_AUTH). A secondary serves one primary at a
/// time: while one is connected, another is refused (MR_STATE in
/// `mr_repl_get_error`) until the first one's connection closes or stays
/// silent for the peer timeout.
///
/// The replication keeps its own reference to the volume: the caller may
/// `mr_volume_free` it at any time. While the replication runs,
/// `mr_volume_write` on it returns MR_STATE. On success `*out` owns a new
/// handle released with `mr_repl_free`; on failure `*out` is NULL.
/// MR_STATE if the volume already has a running replication, MR_PARSE for a
/// malformed address, MR_IO if the secondary cannot listen there.
#[no_mangle]
pub extern "C" fn mr_repl_start(v: *mut mr_volume, addr: *const c_char, cfg: *const mr_repl_config, out: *mut *mut mr_repl) -> mr_status {
    ffi_status!("mr_repl_start", {
        let out = try_out(out, "out")?;
        *out = std::ptr::null_mut();
        let vol = try_ref(v)?.clone();
        let addr = if addr.is_null() { None } else { Some(crate::addr::parse(try_str(addr, "addr")?)?) };
        let cfg = to_config(cfg)?;
        *out = into_handle::<mr_repl>(Replication::start(vol, addr, cfg)?);
        Ok(())
    })
}

/// Reads `len` bytes of whole blocks from `block` into `buf` (rules as
/// `mr_volume_read`). Primary: the local volume. Secondary while running:
/// the speculative view, i.e. its own writes (active layer), else the
/// content as of the last checkpoint (hidden layer), else the base. After
/// DONE: the volume.
#[no_mangle]
pub extern "C" fn mr_repl_read(r: *mut mr_repl, block: u64, buf: *mut u8, len: usize) -> mr_status {
    ffi_status!("mr_repl_read", {
        let r = try_ref(r)?;
        r.read(block, try_slice_mut(buf, len, "buf")?)
    })
}

/// Writes `len` bytes of whole blocks from `block`; the library does not
/// keep `buf`. Primary while running: applied locally, then sent; returns
/// after the local write (MR_REPL_ASYNC: the frame is queued for a sender
/// thread that writes queued frames in batches; when 4 MiB are queued the
/// call waits for the sender thread (back-pressure), at most about the
/// peer timeout, after which a stuck connection is dropped and the blocks
/// are kept for resync) or once the secondary acknowledged it
/// (MR_REPL_SYNC). Only a local failure fails the call: a replication
/// failure (no secondary, lost connection, no acknowledgement within the
/// peer timeout) is stored for `mr_repl_get_error` and the blocks are
/// resent when the secondary is back, so with MR_REPL_SYNC, MR_OK followed
/// by MR_OK from `mr_repl_get_error` means the secondary has the write
/// (with MR_REPL_ASYNC, `mr_repl_wait_synced` or a checkpoint tells; a
/// checkpoint's barrier is queued behind every earlier write). MR_CLOSED if
/// `mr_repl_close` ends the wait for the acknowledgement (the write was
/// applied locally). Secondary while
/// running: into the active layer (discarded by a checkpoint, committed by
/// a failover). After DONE: straight to the volume.
#[no_mangle]
pub extern "C" fn mr_repl_write(r: *mut mr_repl, block: u64, buf: *const u8, len: usize) -> mr_status {
    ffi_status!("mr_repl_write", {
        let r = try_ref(r)?;
        r.write(block, try_slice(buf, len, "buf")?)
    })
}

/// Writes `n` extents as one batch (see `mr_block_write`; buffers borrowed
/// for the call; extents inside the volume and not overlapping, else
/// MR_INVALID_ARGUMENT and nothing written). Primary while running: every
/// extent is framed into one send, applied locally as one batch (io_uring
/// keeps them in flight together where that measured faster) and, with
/// MR_REPL_SYNC or MR_REPL_DURABLE, the call waits once, for the last
/// acknowledgement (one fdatasync per side in durable mode); otherwise as
/// `mr_repl_write`. Secondary while running: each extent into the active
/// layer. After DONE: one batch to the volume. `n` = 0 is a no-op.
#[no_mangle]
pub extern "C" fn mr_repl_write_batch(r: *mut mr_repl, writes: *const mr_block_write, n: usize) -> mr_status {
    ffi_status!("mr_repl_write_batch", {
        let r = try_ref(r)?;
        r.write_batch(&batch_extents(writes, n)?)
    })
}

/// Hands a connected stream socket (TCP or a unix socketpair, e.g. one the
/// host carries inside its own tunnel) to a replication started with a NULL
/// address. On MR_OK the library owns `fd` and closes it; on failure the
/// caller still owns it. Primary: the handshake runs on it when no link is
/// up (queued otherwise); when that link ends, hand over another.
/// Secondary: handshake and takeover rule as for an accepted connection.
/// MR_INVALID_ARGUMENT if `fd` is not a stream socket, MR_STATE on a
/// primary that connects by itself or a secondary that is not running.
#[no_mangle]
pub extern "C" fn mr_repl_add_connection(r: *mut mr_repl, fd: c_int) -> mr_status {
    ffi_status!("mr_repl_add_connection", {
        let r = try_ref(r)?;
        if fd < 0 {
            return Err(Error::invalid(format!("fd {fd} is not a file descriptor")));
        }
        let kind = crate::sys::getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_TYPE, "getsockopt(SO_TYPE)")
            .map_err(|e| Error::invalid(format!("fd {fd} is not a socket: {}", e.message)))?;
        if kind != libc::SOCK_STREAM {
            return Err(Error::invalid(format!("fd {fd} is not a stream socket")));
        }
        // SAFETY: the caller hands over ownership of `fd`, an open stream
        // socket (checked above); from here only the OwnedFd closes it.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        let stream = std::net::TcpStream::from(owned);
        r.add_connection(stream).map_err(|(e, stream)| {
            // Refused: the caller keeps its fd.
            let _ = std::os::fd::IntoRawFd::into_raw_fd(stream);
            e
        })
    })
}

/// A checkpoint. Primary: flushes the local volume, then sends a barrier
/// after every earlier write and waits until the secondary applied them,
/// flushed its base and emptied its active and hidden layers (its view now
/// equals the primary's). Waits for a connection first if needed.
/// `timeout_ms` < 0 forever, > 0 at most that long (MR_TIMEOUT); 0 gives
/// MR_WOULD_BLOCK (a checkpoint always waits for the secondary).
/// Secondary: empties its layers at once (a local checkpoint). After DONE:
/// a no-op (MR_OK). MR_STATE in FAILOVER_FAILED.
#[no_mangle]
pub extern "C" fn mr_repl_checkpoint(r: *mut mr_repl, timeout_ms: i32) -> mr_status {
    ffi_status!("mr_repl_checkpoint", { try_ref(r)?.checkpoint(Wait::from_ms(timeout_ms)) })
}

/// Failover. Secondary (RUNNING or FAILOVER_FAILED): stops taking primary
/// writes, commits the active layer into the base (the base keeps every
/// write the primary sent; the hidden layer is dropped), flushes, and the
/// volume stands alone (DONE). If the commit fails: MR_IO (or the volume's
/// status) with the reason, stage FAILOVER_FAILED, the layers intact, the
/// reason also stored for `mr_repl_get_error`, and the call may be retried.
/// Primary: stops replicating and continues alone (DONE). After DONE: a
/// no-op (MR_OK). Blocks until done.
#[no_mangle]
pub extern "C" fn mr_repl_failover(r: *mut mr_repl) -> mr_status {
    ffi_status!("mr_repl_failover", { try_ref(r)?.failover() })
}

/// Stops replicating without failover (DONE). Secondary: its layers are
/// discarded; the base holds what the primary sent. After DONE: a no-op.
/// MR_STATE in FAILOVER_FAILED (retry mr_repl_failover instead).
#[no_mangle]
pub extern "C" fn mr_repl_stop(r: *mut mr_repl) -> mr_status {
    ffi_status!("mr_repl_stop", { try_ref(r)?.stop() })
}

/// The current stage into `*out`. MR_CLOSED after close.
#[no_mangle]
pub extern "C" fn mr_repl_get_stage(r: *const mr_repl, out: *mut mr_repl_stage) -> mr_status {
    ffi_status!("mr_repl_get_stage", {
        let out = try_out(out, "out")?;
        *out = try_ref(r)?.stage()?.into();
        Ok(())
    })
}

/// The stored replication error, which this call clears: its status
/// (MR_IO, MR_TIMEOUT, MR_PARSE for a corrupt stream from the peer,
/// MR_INVALID_ARGUMENT for a peer with another volume geometry, ...) with
/// the reason in `mr_last_error`. Without one: MR_OK while RUNNING, else
/// MR_STATE ("replication is not running").
#[no_mangle]
pub extern "C" fn mr_repl_get_error(r: *mut mr_repl) -> mr_status {
    ffi_status!("mr_repl_get_error", { try_ref(r)?.take_error() })
}

/// Primary: waits until the secondary is connected and holds every block
/// written so far (nothing dirty or unacknowledged). Secondary: waits until
/// a primary is connected. `timeout_ms` < 0 waits forever, 0 checks
/// without waiting (MR_WOULD_BLOCK if not yet), > 0 waits at most that long
/// (MR_TIMEOUT). MR_STATE unless RUNNING.
#[no_mangle]
pub extern "C" fn mr_repl_wait_synced(r: *mut mr_repl, timeout_ms: i32) -> mr_status {
    ffi_status!("mr_repl_wait_synced", { try_ref(r)?.wait_synced(Wait::from_ms(timeout_ms)) })
}

/// Copies the counters and link state into `*out`.
#[no_mangle]
pub extern "C" fn mr_repl_stats(r: *const mr_repl, out: *mut mr_repl_counters) -> mr_status {
    ffi_status!("mr_repl_stats", {
        let out = try_out(out, "out")?;
        let r = try_ref(r)?;
        let s = r.stats()?;
        *out = mr_repl_counters {
            connected: s.connected as u32,
            stage: mr_repl_stage::from(r.stage()?) as u32,
            dirty_blocks: s.dirty_blocks,
            inflight_writes: s.inflight_writes,
            writes_sent: s.writes_sent,
            writes_applied: s.writes_applied,
            resync_blocks: s.resync_blocks,
            connections: s.reconnects,
            checkpoints: s.checkpoints,
            active_blocks: s.active_blocks,
            hidden_blocks: s.hidden_blocks,
            flushes: s.flushes,
            refused: s.refused,
        };
        Ok(())
    })
}

/// The address a secondary listens on. MR_INVALID_ARGUMENT on a primary.
#[no_mangle]
pub extern "C" fn mr_repl_local_addr(r: *const mr_repl, out: *mut mr_addr) -> mr_status {
    ffi_status!("mr_repl_local_addr", {
        let out = try_out(out, "out")?;
        let addr = try_ref(r)?.local_addr().ok_or_else(|| Error::invalid("a primary has no listening address"))?;
        *out = addr.into();
        Ok(())
    })
}

/// Closes the handle: the connection and threads end (waiting calls
/// return), the volume is released for plain use, the stage is left as it
/// was, and every later call returns MR_CLOSED. Idempotent; any thread.
/// Blocks until the replication threads have exited (at most about the
/// connect timeout).
#[no_mangle]
pub extern "C" fn mr_repl_close(r: *mut mr_repl) -> mr_status {
    ffi_status!("mr_repl_close", {
        try_ref(r)?.close();
        Ok(())
    })
}

/// Closes (if needed) and releases the handle and its volume reference.
/// NULL is a no-op. No other thread may use `r` afterwards.
#[no_mangle]
pub extern "C" fn mr_repl_free(r: *mut mr_repl) {
    ffi_value!("mr_repl_free", {
        drop(free_handle(r));
    })
}
