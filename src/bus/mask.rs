//! Watch mask bits (Tailscale's `ipn.NotifyWatchOpt`, same values: they
//! cross process boundaries, so they are never renumbered) and the encoding
//! class a mask falls into.
//!
//! The `WATCH_*` names are the Rust API; C sees the same values as
//! `MR_NOTIFY_*` (src/ffi/bus.rs). Each constant is marked
//! `cbindgen:ignore` so the header exports no unprefixed names.

use crate::error::{Error, Result};

/// Accepted (tailscaled then polls its engine); `Engine` messages reach
/// every watcher, as tailscaled's do.
/// cbindgen:ignore
pub const WATCH_ENGINE_UPDATES: u64 = 1 << 0;
/// First message carries a `SessionID`, the current `State` (0 when none
/// was published) and, while the state is NeedsLogin, `BrowseToURL`.
/// cbindgen:ignore
pub const WATCH_INITIAL_STATE: u64 = 1 << 1;
/// First message carries the current `Prefs`.
/// cbindgen:ignore
pub const WATCH_INITIAL_PREFS: u64 = 1 << 2;
/// First message carries the whole current `NetMap` (every peer) and the
/// self node as `SelfChange`.
/// cbindgen:ignore
pub const WATCH_INITIAL_NET_MAP: u64 = 1 << 3;
/// Accepted and ignored, as upstream: private keys are never sent anyway.
/// cbindgen:ignore
pub const WATCH_NO_PRIVATE_KEYS: u64 = 1 << 4;
/// First message carries the current `DriveShares`, if published.
/// cbindgen:ignore
pub const WATCH_INITIAL_DRIVE_SHARES: u64 = 1 << 5;
/// Accepted; does nothing, as in tailscaled v1.102.5.
/// cbindgen:ignore
pub const WATCH_INITIAL_OUTGOING_FILES: u64 = 1 << 6;
/// The first message carries the current `Health`, when another initial
/// bit asks for a first message (tailscaled's rule).
/// cbindgen:ignore
pub const WATCH_INITIAL_HEALTH_STATE: u64 = 1 << 7;
/// `Engine`-only messages reach this watcher at most once per
/// `BusOptions::rate_limit` (the latest one); everything else goes at once.
/// Not valid with `WATCH_RATE_LIMIT_INCOMPATIBLE` bits.
/// cbindgen:ignore
pub const WATCH_RATE_LIMIT: u64 = 1 << 8;
/// `Health` as published; without this bit each warning's primary action
/// is folded into its text ("<Text> <Label>: <URL>").
/// cbindgen:ignore
pub const WATCH_HEALTH_ACTIONS: u64 = 1 << 9;
/// First message carries the current `SuggestedExitNode`, if published.
/// cbindgen:ignore
pub const WATCH_INITIAL_SUGGESTED_EXIT_NODE: u64 = 1 << 10;
/// First message carries the current `ClientVersion`, if published.
/// cbindgen:ignore
pub const WATCH_INITIAL_CLIENT_VERSION: u64 = 1 << 11;
/// Peer deltas: `PeersChanged` (full nodes, patches promoted),
/// `PeersRemoved` and the `UserProfiles` they need.
/// cbindgen:ignore
pub const WATCH_PEER_CHANGES: u64 = 1 << 12;
/// Accepted; on Linux tailscaled sends no runtime `NetMap` anyway.
/// cbindgen:ignore
pub const WATCH_NO_NET_MAP: u64 = 1 << 13;
/// First message carries `InitialStatus`: an `ipnstate.Status` with every
/// peer in its `Peer` map.
/// cbindgen:ignore
pub const WATCH_INITIAL_STATUS: u64 = 1 << 14;
/// Narrow `PeerChangedPatch` entries; implies `WATCH_PEER_CHANGES`.
/// cbindgen:ignore
pub const WATCH_PEER_PATCHES: u64 = 1 << 15;
/// In tailscaled, in-process watchers only (a full queue blocks the
/// producer). Accepted; the bus never blocks a producer nor drops a
/// watcher anyway. An HTTP front end refuses it, as tailscaled's LocalAPI.
/// cbindgen:ignore
pub const WATCH_IN_PROCESS_NO_DISCONNECT: u64 = 1 << 16;
/// First message carries the published `Policy`; later `Policy` messages
/// reach only watchers with this bit.
/// cbindgen:ignore
pub const WATCH_SYS_POLICY_CHANGES: u64 = 1 << 17;
/// First message carries `PeerState` (every peer's WireGuard state the host
/// published, "none" left out); later `PeerState` deltas reach only
/// watchers with this bit.
/// cbindgen:ignore
pub const WATCH_PEER_WIRE_GUARD_STATE: u64 = 1 << 18;
/// A meshring extension (tailscaled ignores the bit): the initial peers
/// come in messages of at most `BusOptions::initial_chunk` peers
/// (`InitialStatus` without its `Peer` map, `NetMap` with the first chunk,
/// then `PeersChanged` chunks), the last one marked `"InitialComplete":
/// true`. For hosts that must bound message size on huge tailnets.
/// cbindgen:ignore
pub const WATCH_CHUNKED_INITIAL: u64 = 1 << 63;

/// Bits tailscaled refuses together with `WATCH_RATE_LIMIT`
/// (`ipn.NotifyRateLimitIncompatibleBits`).
/// cbindgen:ignore
pub const WATCH_RATE_LIMIT_INCOMPATIBLE: u64 = WATCH_PEER_CHANGES | WATCH_NO_NET_MAP | WATCH_INITIAL_STATUS | WATCH_PEER_PATCHES;

/// Bits that give a watcher a first message (tailscaled's `initialBits`).
/// cbindgen:ignore
pub const WATCH_INITIAL_BITS: u64 = WATCH_INITIAL_STATE
    | WATCH_INITIAL_PREFS
    | WATCH_INITIAL_NET_MAP
    | WATCH_INITIAL_STATUS
    | WATCH_INITIAL_DRIVE_SHARES
    | WATCH_INITIAL_SUGGESTED_EXIT_NODE
    | WATCH_INITIAL_CLIENT_VERSION
    | WATCH_SYS_POLICY_CHANGES
    | WATCH_PEER_WIRE_GUARD_STATE;

/// `ipn.NotifyWatchOpt` names by bit, for messages.
const NAMES: [&str; 19] = [
    "NotifyWatchEngineUpdates",
    "NotifyInitialState",
    "NotifyInitialPrefs",
    "NotifyInitialNetMap",
    "NotifyNoPrivateKeys",
    "NotifyInitialDriveShares",
    "NotifyInitialOutgoingFiles",
    "NotifyInitialHealthState",
    "NotifyRateLimit",
    "NotifyHealthActions",
    "NotifyInitialSuggestedExitNode",
    "NotifyInitialClientVersion",
    "NotifyPeerChanges",
    "NotifyNoNetMap",
    "NotifyInitialStatus",
    "NotifyPeerPatches",
    "NotifyInProcessNoDisconnect",
    "NotifySysPolicyChanges",
    "NotifyPeerWireGuardState",
];

/// `ipn.NotifyWatchOpt.String`: "ipn.NotifyPeerChanges" for one bit,
/// "(ipn.A | ipn.B)" for several, unknown bits as "ipn.NotifyWatchOpt(0x...)".
pub fn bits_string(bits: u64) -> String {
    if bits == 0 {
        return "ipn.NotifyWatchOpt(0x0)".into();
    }
    let mut parts: Vec<String> = (0..NAMES.len()).filter(|i| bits & (1 << i) != 0).map(|i| format!("ipn.{}", NAMES[i])).collect();
    let unknown = bits & !((1u64 << NAMES.len()) - 1);
    if unknown != 0 {
        parts.push(format!("ipn.NotifyWatchOpt({unknown:#x})"));
    }
    if parts.len() == 1 {
        parts.pop().expect("one part")
    } else {
        format!("({})", parts.join(" | "))
    }
}

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
    /// `Health` as published (else actions folded into the texts).
    pub health_actions: bool,
    /// Receives `Policy` messages.
    pub policy: bool,
    /// Receives `PeerState` deltas.
    pub peer_state: bool,
}

/// Number of distinct classes (3 peer modes x 2 x 2 x 2).
pub(crate) const CLASS_COUNT: usize = 24;

impl Class {
    pub fn index(self) -> usize {
        let peers = match self.peers {
            PeerMode::None => 0,
            PeerMode::Full => 1,
            PeerMode::Patches => 2,
        };
        peers * 8 + (self.health_actions as usize) * 4 + (self.policy as usize) * 2 + self.peer_state as usize
    }

    /// Whether an event field reaches this class.
    pub fn wants_field(self, key: &str) -> bool {
        match key {
            "Policy" => self.policy,
            "PeerState" => self.peer_state,
            _ => true,
        }
    }
}

/// A checked watch mask with the derived facts the bus needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Mask(pub u64);

impl Mask {
    /// Every mask tailscaled accepts (`ipn.ValidateNotifyWatchOpt`): all
    /// bits, known or not, except `WATCH_RATE_LIMIT` with any of
    /// `WATCH_RATE_LIMIT_INCOMPATIBLE`, refused with tailscaled's words.
    pub fn parse(bits: u64) -> Result<Mask> {
        if bits & WATCH_RATE_LIMIT != 0 && bits & WATCH_RATE_LIMIT_INCOMPATIBLE != 0 {
            return Err(Error::invalid(format!(
                "NotifyRateLimit is incompatible with new-style IPN bus subscription bits {}",
                bits_string(bits & WATCH_RATE_LIMIT_INCOMPATIBLE)
            )));
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
        Class {
            peers,
            health_actions: self.has(WATCH_HEALTH_ACTIONS),
            policy: self.has(WATCH_SYS_POLICY_CHANGES),
            peer_state: self.has(WATCH_PEER_WIRE_GUARD_STATE),
        }
    }

    /// The watcher asked for the initial peers in chunks (meshring extension).
    pub fn chunked_initial(self) -> bool {
        self.has(WATCH_CHUNKED_INITIAL) && (self.has(WATCH_INITIAL_NET_MAP) || self.has(WATCH_INITIAL_STATUS))
    }

    pub fn wants_initial_message(self) -> bool {
        self.0 & WATCH_INITIAL_BITS != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_are_accepted_and_refused_as_tailscaled_does() {
        for ok in [
            WATCH_INITIAL_STATE | WATCH_INITIAL_NET_MAP | WATCH_PEER_CHANGES,
            WATCH_INITIAL_NET_MAP | WATCH_PEER_PATCHES,
            WATCH_SYS_POLICY_CHANGES | WATCH_PEER_WIRE_GUARD_STATE | (1 << 40),
            WATCH_RATE_LIMIT | WATCH_INITIAL_NET_MAP | WATCH_ENGINE_UPDATES,
        ] {
            assert!(Mask::parse(ok).is_ok(), "{}", bits_string(ok));
        }
        for bad in [WATCH_PEER_CHANGES, WATCH_INITIAL_STATUS, WATCH_NO_NET_MAP, WATCH_PEER_PATCHES] {
            assert!(Mask::parse(WATCH_RATE_LIMIT | bad).is_err());
        }
        let e = Mask::parse(WATCH_RATE_LIMIT | WATCH_PEER_CHANGES | WATCH_INITIAL_STATUS).unwrap_err();
        assert_eq!(
            e.message,
            "NotifyRateLimit is incompatible with new-style IPN bus subscription bits (ipn.NotifyPeerChanges | ipn.NotifyInitialStatus)"
        );
        assert_eq!(bits_string(WATCH_PEER_CHANGES), "ipn.NotifyPeerChanges");
        assert_eq!(bits_string(1 << 20 | 1), "(ipn.NotifyWatchEngineUpdates | ipn.NotifyWatchOpt(0x100000))");
    }
}
