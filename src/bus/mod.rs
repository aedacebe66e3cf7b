//! The notify bus: a network-map store fed with `tailcfg.MapResponse`
//! updates, and watchers that receive `ipn.Notify` JSON messages selected
//! by Tailscale's `NotifyWatchOpt` bits (`WATCH_*`, same values), with the
//! semantics of tailscaled v1.102.5 on Linux: a GUI or daemon written
//! against tailscaled's IPN bus sees the same state here.
//!
//! # What the store does with an update (tailscaled's control client)
//!
//! `apply` follows `control/controlclient/map.go`: a `KeepAlive` response
//! is ignored; nodes are upgraded (legacy `DERP` string to `HomeDERP`,
//! missing `AllowedIPs` from `Addresses`) and named (`ComputedName`,
//! `ComputedNameWithHost`); a non-empty `Peers` replaces the peer set and
//! every delta field of its response is ignored; otherwise `PeersRemoved`,
//! then `PeersChanged` (a known peer's full node that differs only in
//! patchable fields becomes a patch, an equal one is dropped), then
//! `PeerSeenChange`, `OnlineChange`, `PeersChangedPatch`. PeerChange zero
//! values change nothing; `DERPMap` is merged into the previous one. A
//! disco key that arrives for an offline peer with a LastSeen no newer than
//! the stored one is refused (the whole patch; in a full list the stored key
//! and LastSeen stay), as `removeUnwantedDiscoUpdates*` refuses it.
//! `PacketFilter` and the named `PacketFilters` chunks are kept as
//! tailscaled keeps them and served concatenated in name order. See
//! `Store::apply`.
//!
//! # What a watcher receives (tailscaled's `WatchNotificationsAs`)
//!
//! * **One first message**, if the mask has an initial bit
//!   (`WATCH_INITIAL_BITS`): `SessionID` and `State` (InitialState,
//!   `BrowseToURL` only while NeedsLogin), `Prefs`, `NetMap` with every peer
//!   plus the self node as `SelfChange` (InitialNetMap), `InitialStatus`, an
//!   `ipnstate.Status` with every peer (InitialStatus; see `status.rs`),
//!   `Health` (with another initial bit), `DriveShares`,
//!   `SuggestedExitNode`, `ClientVersion`, `Policy`, `PeerState`.
//! * **Peer deltas** (`WATCH_PEER_CHANGES`): `PeersChanged` (full nodes),
//!   `PeersRemoved`; with `WATCH_PEER_PATCHES` also narrow
//!   `PeerChangedPatch` entries (Online, LastSeen, DERPRegion, Endpoints),
//!   otherwise every patch is promoted to the full current node. The
//!   `UserProfiles` a delivered node names (`User`, `Sharer`) come in an
//!   earlier message, once per session (afresh when the self identity
//!   changes).
//! * `SelfChange` on every update tailscaled handles as a full netmap
//!   (Node, DERPMap, DNSConfig, Domain, Peers, ...), changed or not.
//! * Host events as published, to every watcher (`Engine` too); `Policy`
//!   and `PeerState` only to watchers with their bits; without
//!   `WATCH_HEALTH_ACTIONS` a `Health` warning's action is folded into its
//!   text.
//! * `WATCH_RATE_LIMIT`: `Engine`-only messages at most once per
//!   `rate_limit` (the latest); tailscaled refuses it with peer bits, and
//!   so does the bus.
//!
//! # Where the bus differs from tailscaled, on purpose
//!
//! * A lagging watcher is never disconnected (tailscaled closes it after
//!   128 queued messages): its backlog is coalesced (below) and it
//!   converges to the store.
//! * A full `Peers` update sends only what changed, `PeersRemoved`
//!   included (tailscaled sends every peer and no removals, leaving
//!   removed peers in its watchers' views).
//! * Patches of DERPRegion or Endpoints alone, a cleared `LastSeen`
//!   (`PeerSeenChange: false`) and patches for fields tailscaled forwards
//!   only on its next full netmap reach watchers at once (as the whole
//!   node where a patch cannot say it), so a watcher's view always equals
//!   the store; tailscaled's lags until its next full netmap.
//! * One NodeID never appears in both `PeersChanged` and `PeersRemoved` of
//!   one message (tailscaled's consumers apply them in an order that drops
//!   a re-added peer).
//! * Empty messages are not sent; no runtime `NetMap` (as on Linux).
//! * Nodes keep fields the bus does not know (Go's decoder drops them).
//! * Work tailscaled's LocalBackend does on its own clock is not done:
//!   peers past their `KeyExpiry` are not flagged `Expired` (the nodes are
//!   as control sent them).
//! * `WATCH_CHUNKED_INITIAL`, a meshring extension tailscaled ignores,
//!   delivers the initial peers in chunks ending with
//!   `"InitialComplete": true`, for hosts that bound message sizes.
//!
//! # Cost: O(delta), encoded once per class
//!
//! `apply` parses and validates the whole input before touching the store,
//! then mutates only the peers it names (nodes are shared `Arc<Node>`s,
//! their JSON text, between store and log, never copied wholesale) and appends one immutable
//! `Change` to a log: the per-peer deltas of this update, coalesced. No
//! netmap is rebuilt and no peer is scanned (a full `Peers` list is
//! compared against the store, which is O(its own size)).
//!
//! Watchers are grouped in classes: the mask bits that change how an entry
//! is written (peer mode none / full / patches, HealthActions, Policy,
//! PeerState: 24 classes, encoded only for those in use).
//! A watcher that keeps up reads the log with a cursor and gets the entry's
//! bytes for its class, produced once (`OnceLock` per class in the entry,
//! outside the bus lock) and shared as `Arc<[u8]>` by every watcher of the
//! class. The only per-watcher extra is a small `UserProfiles` message when
//! the entry names a profile this session has not seen.
//!
//! The log has a budget (`backlog`, counted in entries + peer deltas). When
//! it overflows, the oldest entry is dropped and folded into the pending map
//! of each watcher that had not read it: NodeID -> coalesced delta (latest
//! node wins, patches merge, add+remove cancels, replace+remove is a remove),
//! plus latest self node and latest value per event field. So a slow watcher
//! never blocks `apply`, costs at most O(peers) memory, and after catching
//! up its view equals the store. Its catch-up messages are encoded for it
//! alone, in chunks; the initial view uses the same path.
//!
//! A rate-limited watcher holds its latest `Engine`-only entry back, and a
//! small ticker thread signals its readiness fd when the window ends.

mod change;
mod clock;
mod delta;
mod hub;
mod mask;
mod node;
mod notify;
mod parse;
mod patch;
mod slot;
mod status;
mod store;
mod tailcfg;
mod watcher;

pub use hub::{Bus, BusLink, BusOptions};
pub use mask::*;
pub use watcher::Watcher;

#[cfg(test)]
mod prop_tests;
#[cfg(test)]
mod tests;
