//! Watch mask bits (Tailscale's `ipn.NotifyWatchOpt`, same values: they
//! cross process boundaries, so they are never renumbered) and the encoding
//! class a mask falls into.
//!
//! The `WATCH_*` names are the Rust API; C sees the same values as
//! `MR_NOTIFY_*` (src/ffi/bus.rs). Each constant is marked
//! `cbindgen:ignore` so the header exports no unprefixed names.

use crate::error::{Error, Result};

/// Engine status (`Notify.Engine`) is forwarded when published.
/// cbindgen:ignore
pub const WATCH_ENGINE_UPDATES: u64 = 1 << 0;
/// First message carries the current `State`, `BrowseToURL` and a `SessionID`.
/// cbindgen:ignore
pub const WATCH_INITIAL_STATE: u64 = 1 << 1;
/// First message carries the current `Prefs`.
/// cbindgen:ignore
pub const WATCH_INITIAL_PREFS: u64 = 1 << 2;
/// First message carries the current `NetMap` (peers chunked, see the module doc).
/// cbindgen:ignore
pub const WATCH_INITIAL_NET_MAP: u64 = 1 << 3;
/// Accepted and ignored, as upstream: private keys are never sent anyway.
/// cbindgen:ignore
pub const WATCH_NO_PRIVATE_KEYS: u64 = 1 << 4;
/// First message carries the current `DriveShares`, if published.
/// cbindgen:ignore
pub const WATCH_INITIAL_DRIVE_SHARES: u64 = 1 << 5;
/// First message carries the current `OutgoingFiles`, if published.
/// cbindgen:ignore
pub const WATCH_INITIAL_OUTGOING_FILES: u64 = 1 << 6;
/// First message carries the current `Health`.
/// cbindgen:ignore
pub const WATCH_INITIAL_HEALTH_STATE: u64 = 1 << 7;
/// Netmap-type updates reach this watcher at most once per
/// `BusOptions::rate_limit`, coalesced.
/// cbindgen:ignore
pub const WATCH_RATE_LIMIT: u64 = 1 << 8;
/// Accepted; `Health` is forwarded as published, so it changes nothing here.
/// cbindgen:ignore
pub const WATCH_HEALTH_ACTIONS: u64 = 1 << 9;
/// First message carries the current `SuggestedExitNode`, if published.
/// cbindgen:ignore
pub const WATCH_INITIAL_SUGGESTED_EXIT_NODE: u64 = 1 << 10;
/// First message carries the current `ClientVersion`, if published.
/// cbindgen:ignore
pub const WATCH_INITIAL_CLIENT_VERSION: u64 = 1 << 11;
/// Peer deltas: `PeersChanged` (full nodes, patches promoted) and `PeersRemoved`.
/// cbindgen:ignore
pub const WATCH_PEER_CHANGES: u64 = 1 << 12;
/// Suppresses the runtime `NetMap` that `WATCH_INITIAL_NET_MAP` watchers get.
/// cbindgen:ignore
pub const WATCH_NO_NET_MAP: u64 = 1 << 13;
/// First message carries `InitialStatus`; the current peers follow as
/// `PeersChanged` chunks (the stitchable alternative to the initial NetMap).
/// cbindgen:ignore
pub const WATCH_INITIAL_STATUS: u64 = 1 << 14;
/// Narrow `PeerChangedPatch` entries; implies `WATCH_PEER_CHANGES`.
/// cbindgen:ignore
pub const WATCH_PEER_PATCHES: u64 = 1 << 15;

/// Every bit defined above; others are rejected so typos show up.
/// cbindgen:ignore
pub const WATCH_ALL: u64 = (1 << 16) - 1;

/// How peer deltas are written for a watcher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PeerMode {
    /// No peer traffic at all.
    None,
    /// Full nodes only: patches are promoted to the current node.
    Full,
    /// Narrow patches where a patch says it all.
    Patches,
}

/// The subset of a mask that changes how a shared log entry is encoded.
/// Watchers of one class share the same bytes for every entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Class {
    pub peers: PeerMode,
    pub engine: bool,
}

/// Number of distinct classes (3 peer modes x engine or not).
pub(crate) const CLASS_COUNT: usize = 6;

impl Class {
    pub fn index(self) -> usize {
        let peers = match self.peers {
            PeerMode::None => 0,
            PeerMode::Full => 1,
            PeerMode::Patches => 2,
        };
        peers * 2 + self.engine as usize
    }
}

/// A checked watch mask with the derived facts the bus needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Mask(pub u64);

impl Mask {
    pub fn parse(bits: u64) -> Result<Mask> {
        if bits & !WATCH_ALL != 0 {
            return Err(Error::invalid(format!("unknown watch bits {:#x}", bits & !WATCH_ALL)));
        }
        let mut bits = bits;
        if bits & WATCH_PEER_PATCHES != 0 {
            bits |= WATCH_PEER_CHANGES;
        }
        if bits & WATCH_PEER_CHANGES != 0 && bits & WATCH_INITIAL_NET_MAP != 0 {
            return Err(Error::invalid(
                "WATCH_INITIAL_NET_MAP cannot be combined with WATCH_PEER_CHANGES/WATCH_PEER_PATCHES; use WATCH_INITIAL_STATUS",
            ));
        }
        Ok(Mask(bits))
    }

    pub fn has(self, bit: u64) -> bool {
        self.0 & bit != 0
    }

    pub fn class(self) -> Class {
        let peers = if self.has(WATCH_PEER_PATCHES) {
            PeerMode::Patches
        } else if self.has(WATCH_PEER_CHANGES) {
            PeerMode::Full
        } else {
            PeerMode::None
        };
        Class { peers, engine: self.has(WATCH_ENGINE_UPDATES) }
    }

    /// Legacy GUI watchers: asked for the initial NetMap and did not opt out
    /// of the runtime one. They get a whole NetMap after netmap changes.
    pub fn runtime_netmap(self) -> bool {
        self.has(WATCH_INITIAL_NET_MAP) && !self.has(WATCH_NO_NET_MAP)
    }

    /// The watcher receives an initial peer view (and an `InitialComplete` marker).
    pub fn initial_peers(self) -> bool {
        self.has(WATCH_INITIAL_NET_MAP) || self.has(WATCH_INITIAL_STATUS)
    }

    pub fn wants_initial_message(self) -> bool {
        const INITIAL: u64 = WATCH_INITIAL_STATE
            | WATCH_INITIAL_PREFS
            | WATCH_INITIAL_NET_MAP
            | WATCH_INITIAL_DRIVE_SHARES
            | WATCH_INITIAL_OUTGOING_FILES
            | WATCH_INITIAL_HEALTH_STATE
            | WATCH_INITIAL_SUGGESTED_EXIT_NODE
            | WATCH_INITIAL_CLIENT_VERSION
            | WATCH_INITIAL_STATUS;
        self.0 & INITIAL != 0
    }
}
