//! The notify bus (issue 5): a network-map store fed with
//! `tailcfg.MapResponse`-shaped updates, and watchers that receive
//! `ipn.Notify`-shaped JSON messages selected by Tailscale's
//! `NotifyWatchOpt` bits (`WATCH_*`, same values).
//!
//! # What a watcher receives
//!
//! * **First message** (only if an `Initial*` bit is set): `SessionID` +
//!   `State` + `BrowseToURL` (InitialState), `Prefs`, `Health`,
//!   `DriveShares`, `OutgoingFiles`, `SuggestedExitNode`, `ClientVersion`
//!   (their Initial bits, when the host published them), `InitialStatus`
//!   (an `ipnstate.Status`: `Self` as a `PeerStatus`, `Health` as a list of
//!   strings, `User` profiles; see `status.rs`), and the initial peer view:
//!   * `WATCH_INITIAL_NET_MAP`: `NetMap` (netmap.NetworkMap names) holding
//!     the first `initial_chunk` peers;
//!   * `WATCH_INITIAL_STATUS`: the first chunk as `PeersChanged`.
//!
//!   Further peers follow as `PeersChanged` chunks (upsert by NodeID) of at
//!   most `initial_chunk` peers. **The message that completes the initial
//!   view carries `"InitialComplete": true`** (a meshring extension; Go's
//!   decoder ignores it): from then on the watcher's peer map equals the
//!   store as of some moment, and later messages are deltas from there.
//! * **Peer deltas** (`WATCH_PEER_CHANGES`): `PeersChanged` (full nodes),
//!   `PeersRemoved` (NodeIDs); with `WATCH_PEER_PATCHES` also narrow
//!   `PeerChangedPatch` entries, otherwise every patch is promoted to the
//!   full current node. A patch that cannot be written as a PeerChange
//!   (`PeerSeenChange: false` clears `LastSeen`) always travels as a node.
//!   Every profile an upserted node's `User` names is delivered in an
//!   earlier (or the same) message, once per session unless it changes.
//!   Watchers without peer bits get no peer traffic.
//! * **Runtime NetMap** (legacy GUIs): watchers with
//!   `WATCH_INITIAL_NET_MAP` and without `WATCH_NO_NET_MAP` get a whole
//!   `NetMap` after netmap changes (once per catch-up, not per delta).
//! * `SelfChange` when the self node changes; host events as published
//!   (`Engine` only with `WATCH_ENGINE_UPDATES`).
//! * `WATCH_RATE_LIMIT`: netmap-type content is coalesced and delivered at
//!   most once per `rate_limit` (split in chunks if large); events go at once.
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
//! is written (peer mode none / full / patches, engine or not: 6 classes).
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
//! Rate-limited watchers always fold (their window is theirs), and a small
//! ticker thread signals their readiness fd when the window ends.

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
