//! COLO-style replication of a block volume: a primary streams its writes
//! to a secondary, which keeps a speculative view (active and hidden layers
//! over the base), checkpoints on the primary's barriers and can fail over.
//! Modes, stages, layering and error reporting follow QEMU's block
//! replication filter; see `stage`, `layers`, `primary`, `secondary`.
//!
//! # What a host gets
//!
//! * **Writes that mean what the mode says.** `Async`: the call returns
//!   after the local write; the frame is queued for a sender thread.
//!   `Sync`: after the secondary applied it (in its page cache). `Durable`:
//!   after it is on stable storage on both sides (fdatasync on each, the
//!   secondary's before its acknowledgement). A batch (`write_batch`) is
//!   sent, applied and acknowledged as one.
//! * **Reads of the right view.** The primary reads its volume; a running
//!   secondary reads active, then hidden, then the base; after failover the
//!   base, which holds every write the primary sent plus the secondary's own.
//! * **Checkpoints** (the secondary's view becomes the primary's),
//!   **failover** (the secondary commits its active layer and stands alone)
//!   and **resync**: a secondary that connects late or comes back gets
//!   exactly the blocks it may lack (a dirty bitmap), never the whole volume.
//! * **An authenticated link only** (see `auth`): a pre-shared key, a
//!   challenge-response handshake over both sides' fresh nonces, a MAC on
//!   every frame under a per-session, per-direction key with the frame's
//!   position under it. A peer without the key, with another key, replaying
//!   a handshake or a frame, or changing a bit is refused (MR_AUTH), the
//!   reason stored for `get_error`; a changed frame on the live link drops
//!   it and the primary reconnects and resyncs. One primary at a time: a
//!   second one, key or not, is refused (MR_STATE) until the first one's
//!   connection closes or stays silent for the peer timeout (the takeover
//!   rule, see `secondary`). Connections can be TCP (the primary connects,
//!   the secondary listens) or sockets the host hands over
//!   (`add_connection`, e.g. inside its own tunnel).
//!
//! # What it costs
//!
//! * Per write: the local write, an HMAC-SHA256 of the frame on each side
//!   (~2.6 us per 4 KiB with the CPU's SHA extensions), the secondary's
//!   write, and for the first overwrite of a block since the last
//!   checkpoint a copy of its old content into the hidden layer (a read and
//!   a write). Sync and durable writers read their own acknowledgements
//!   (no thread hand-off on the primary for a lone writer); async writers
//!   pay a copy into the send queue.
//! * Durable: one fdatasync at a time per side, shared by every write done
//!   before it started (group commit); the primary's overlaps the network
//!   round trip, the secondary's runs on a flusher thread while the apply
//!   loop goes on.
//! * Memory is bounded by the volume's size, not by what is written: the
//!   primary keeps one bit per block (dirty map) plus the writes in
//!   flight; the secondary keeps its active and hidden layers in sparse
//!   files beside the volume (`<path>.active`, `<path>.hidden`) and one bit
//!   per block per layer in memory (32 KiB per GiB of 4 KiB blocks for each
//!   layer, however many blocks are dirty). Async mode holds at most twice
//!   `SEND_QUEUE_BYTES` of frames. A checkpoint truncates the layer files.
//!
//! # Under pressure, and when things fail
//!
//! * A slow link or secondary: async writers wait once the 4 MiB send
//!   queue is full (back-pressure); sync and durable writers wait for their
//!   acknowledgement at most the peer timeout.
//! * Replication trouble never fails a write: the local write stands, the
//!   blocks stay dirty for the next resync and the reason is stored for
//!   `get_error` (so with Sync or Durable, Ok from `write` and then from
//!   `get_error` means the secondary has it). A close that overtakes a
//!   waiting sync write makes it return Closed.
//! * A dead peer is noticed after the peer timeout of silence (keepalives
//!   go every quarter of it); the primary reconnects with backoff (20 ms
//!   doubling to 500 ms). A killed secondary restarts from its volume file
//!   (every acknowledged-durable write is in it; its layers start empty)
//!   and is resynced.
//! * Handshakes are bounded: at most `secondary::MAX_HANDSHAKES` at once,
//!   each within the peer timeout; frame headers are checked (and lengths
//!   bounded) before anything is allocated, tags before anything is applied.
//! * A panic on a replication thread halts the handle: every later call
//!   returns Panic with the reason; close still frees.

mod auth;
mod chooser;
mod dirty;
mod layers;
mod primary;
mod secondary;
mod stage;
mod volume;
mod wire;

pub use auth::{Psk, MAX_KEY_LEN, MIN_KEY_LEN};
pub use dirty::DirtyMap;
pub use layers::{BlockMap, Layers};
pub use primary::Primary;
pub use secondary::Secondary;
pub use stage::{AckMode, Mode, Stage, Status};
pub use volume::{Volume, VolumeConfig, DEFAULT_BLOCK_SIZE};
pub use wire::{encode, read_handshake_msg, read_msg, Direction, Msg};
pub use auth::FrameKey;

use crate::error::Result;
use crate::sync::Wait;
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct ReplConfig {
    pub mode: Mode,
    pub ack: AckMode,
    /// One TCP connect attempt to the secondary (primary).
    pub connect_timeout: Duration,
    /// Silence after which a connection is declared dead; keepalives go
    /// every quarter of it, and a sync write waits at most this long.
    pub peer_timeout: Duration,
    /// The pre-shared key both sides hold; required.
    pub psk: Option<Psk>,
}

impl Default for ReplConfig {
    fn default() -> Self {
        ReplConfig {
            mode: Mode::Primary,
            ack: AckMode::Sync,
            connect_timeout: Duration::from_secs(1),
            peer_timeout: Duration::from_secs(5),
            psk: None,
        }
    }
}

/// Counters and link state of one replication.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplStats {
    pub connected: bool,
    /// Primary: blocks the secondary may not have yet.
    pub dirty_blocks: u64,
    pub inflight_writes: u64,
    pub writes_sent: u64,
    /// Secondary: primary writes applied.
    pub writes_applied: u64,
    /// Primary: blocks sent by resyncs.
    pub resync_blocks: u64,
    /// Connections established.
    pub reconnects: u64,
    pub checkpoints: u64,
    pub active_blocks: u64,
    pub hidden_blocks: u64,
    /// fdatasync calls made for durable writes (primary: local group
    /// commits; secondary: before acknowledgements).
    pub flushes: u64,
    /// Secondary: connections refused (authentication failures, a second
    /// primary, malformed handshakes).
    pub refused: u64,
}

/// One side of a replication, over a shared volume.
pub enum Replication {
    Primary(Primary),
    Secondary(Secondary),
}

impl Replication {
    /// Primary: `addr` is the secondary to connect to (retried in the
    /// background). Secondary: `addr` is where to listen. None: the host
    /// hands over connected sockets with `add_connection` instead.
    pub fn start(vol: Arc<Volume>, addr: Option<SocketAddr>, cfg: ReplConfig) -> Result<Self> {
        Ok(match cfg.mode {
            Mode::Primary => Replication::Primary(Primary::start(vol, addr, cfg)?),
            Mode::Secondary => Replication::Secondary(Secondary::start(vol, addr, cfg)?),
        })
    }

    fn status(&self) -> &Status {
        match self {
            Replication::Primary(p) => p.status(),
            Replication::Secondary(s) => s.status(),
        }
    }

    pub fn mode(&self) -> Mode {
        match self {
            Replication::Primary(_) => Mode::Primary,
            Replication::Secondary(_) => Mode::Secondary,
        }
    }

    pub fn stage(&self) -> Result<Stage> {
        self.status().check_open()?;
        Ok(self.status().stage())
    }

    pub fn read(&self, block: u64, buf: &mut [u8]) -> Result<()> {
        match self {
            Replication::Primary(p) => p.read(block, buf),
            Replication::Secondary(s) => s.read(block, buf),
        }
    }

    pub fn write(&self, block: u64, data: &[u8]) -> Result<()> {
        match self {
            Replication::Primary(p) => p.write(block, data),
            Replication::Secondary(s) => s.write(block, data),
        }
    }

    /// Several writes at once (extents must not overlap). Primary: sent
    /// together, applied locally as one batch, acknowledged together.
    pub fn write_batch(&self, extents: &[(u64, &[u8])]) -> Result<()> {
        match self {
            Replication::Primary(p) => p.write_batch(extents),
            Replication::Secondary(s) => s.write_batch(extents),
        }
    }

    /// A connected stream socket the host established (e.g. inside its own
    /// tunnel) for a replication started without an address. The handshake
    /// and every rule of a TCP connection apply to it.
    /// On failure the stream is handed back, untouched.
    pub fn add_connection(&self, stream: TcpStream) -> std::result::Result<(), (crate::error::Error, TcpStream)> {
        match self {
            Replication::Primary(p) => p.add_connection(stream),
            Replication::Secondary(s) => s.add_connection(stream),
        }
    }

    pub fn checkpoint(&self, wait: Wait) -> Result<()> {
        match self {
            Replication::Primary(p) => p.checkpoint(wait),
            Replication::Secondary(s) => s.checkpoint(),
        }
    }

    /// Secondary: take over. Primary: stop replicating and continue alone.
    pub fn failover(&self) -> Result<()> {
        match self {
            Replication::Primary(p) => p.stop(),
            Replication::Secondary(s) => s.failover(),
        }
    }

    pub fn stop(&self) -> Result<()> {
        match self {
            Replication::Primary(p) => p.stop(),
            Replication::Secondary(s) => s.stop(),
        }
    }

    /// The stored replication error (then cleared); State when not running.
    pub fn take_error(&self) -> Result<()> {
        self.status().take_error()
    }

    /// Primary: connected and no dirty block left. Secondary: a primary is connected.
    pub fn wait_synced(&self, wait: Wait) -> Result<()> {
        let result = match self {
            Replication::Primary(p) => p.wait_synced(wait.deadline()),
            Replication::Secondary(s) => s.wait_synced(wait.deadline()),
        };
        match result {
            Err(e) if wait.is_never() && e.kind == crate::error::ErrorKind::Timeout => {
                Err(crate::error::Error::new(crate::error::ErrorKind::WouldBlock, e.message))
            }
            other => other,
        }
    }

    pub fn stats(&self) -> Result<ReplStats> {
        self.status().check_open()?;
        Ok(match self {
            Replication::Primary(p) => p.stats(),
            Replication::Secondary(s) => s.stats(),
        })
    }

    /// The secondary's listening address; None on a primary or a
    /// secondary without a listener.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        match self {
            Replication::Primary(_) => None,
            Replication::Secondary(s) => s.local_addr(),
        }
    }

    pub fn close(&self) {
        match self {
            Replication::Primary(p) => p.close(),
            Replication::Secondary(s) => s.close(),
        }
    }
}

#[cfg(test)]
mod tests;
