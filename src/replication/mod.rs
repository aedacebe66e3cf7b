//! COLO-style replication of a block volume: a primary streams its writes
//! to a secondary, which keeps a speculative view (active and hidden layers
//! over the base), checkpoints on the primary's barriers and can fail over.
//! Modes, stages, layering and error reporting follow QEMU's block
//! replication filter; see `stage`, `layers`, `primary`, `secondary`.

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
