//! `mr_bus`: the notify bus (network-map store + watchers) and the
//! `MR_NOTIFY_*` watch bits.

use super::bytes::mr_bytes;
use super::error::mr_status;
use super::ffi::{free_handle, into_handle, try_out, try_ref, try_slice, try_str, Castable};
use super::watcher::mr_watcher;
use crate::bus::Bus;
use std::os::raw::c_char;

/// A notify bus handle. Thread-safe: any thread may apply, publish, watch
/// and read.
pub struct mr_bus {
    _opaque: [u8; 0],
}

impl Castable for mr_bus {
    type Rust = Bus;
    const NAME: &'static str = "mr_bus";
}

/*
 * Watch bits are tailscaled's `ipn.NotifyWatchOpt` values, with its
 * meaning (tailscale.com v1.102.5, Linux); every mask tailscaled accepts is
 * accepted, unknown bits included (ignored).
 */
/// Watch bit: accepted (a host may poll its engine for such watchers);
/// `Engine` messages reach every watcher, as tailscaled's do.
pub const MR_NOTIFY_ENGINE_UPDATES: u64 = 1 << 0;
/// Watch bit: first message carries a `SessionID` (16 hex digits), the
/// `State` (0 when none was published) and, while NeedsLogin, `BrowseToURL`.
pub const MR_NOTIFY_INITIAL_STATE: u64 = 1 << 1;
/// Watch bit: first message carries `Prefs` if published.
pub const MR_NOTIFY_INITIAL_PREFS: u64 = 1 << 2;
/// Watch bit: first message carries the whole `NetMap` (every peer) and
/// the self node as `SelfChange`.
pub const MR_NOTIFY_INITIAL_NET_MAP: u64 = 1 << 3;
/// Watch bit: accepted, no effect (private keys are never sent).
pub const MR_NOTIFY_NO_PRIVATE_KEYS: u64 = 1 << 4;
/// Watch bit: first message carries `DriveShares` if published.
pub const MR_NOTIFY_INITIAL_DRIVE_SHARES: u64 = 1 << 5;
/// Watch bit: accepted, no effect (as in tailscaled).
pub const MR_NOTIFY_INITIAL_OUTGOING_FILES: u64 = 1 << 6;
/// Watch bit: first message carries `Health`, if another initial bit asks
/// for a first message.
pub const MR_NOTIFY_INITIAL_HEALTH_STATE: u64 = 1 << 7;
/// Watch bit: `Engine`-only messages at most once per `rate_limit_ms`
/// (the latest); everything else at once. MR_INVALID_ARGUMENT with
/// MR_NOTIFY_PEER_CHANGES, _NO_NET_MAP, _INITIAL_STATUS or _PEER_PATCHES.
pub const MR_NOTIFY_RATE_LIMIT: u64 = 1 << 8;
/// Watch bit: `Health` as published; without it each warning's primary
/// action is folded into its `Text` ("<Text> <Label>: <URL>").
pub const MR_NOTIFY_HEALTH_ACTIONS: u64 = 1 << 9;
/// Watch bit: first message carries `SuggestedExitNode` if published.
pub const MR_NOTIFY_INITIAL_SUGGESTED_EXIT_NODE: u64 = 1 << 10;
/// Watch bit: first message carries `ClientVersion` if published.
pub const MR_NOTIFY_INITIAL_CLIENT_VERSION: u64 = 1 << 11;
/// Watch bit: peer deltas as `PeersChanged` (full nodes) / `PeersRemoved`,
/// with the `UserProfiles` they need.
pub const MR_NOTIFY_PEER_CHANGES: u64 = 1 << 12;
/// Watch bit: accepted (on Linux no runtime `NetMap` is sent anyway).
pub const MR_NOTIFY_NO_NET_MAP: u64 = 1 << 13;
/// Watch bit: first message carries `InitialStatus`, an `ipnstate.Status`
/// with every peer in its `Peer` map.
pub const MR_NOTIFY_INITIAL_STATUS: u64 = 1 << 14;
/// Watch bit: narrow `PeerChangedPatch` entries (Online, LastSeen,
/// DERPRegion, Endpoints); implies MR_NOTIFY_PEER_CHANGES.
pub const MR_NOTIFY_PEER_PATCHES: u64 = 1 << 15;
/// Watch bit: accepted (the bus never blocks its producer nor drops a
/// watcher; tailscaled's LocalAPI refuses this bit from clients).
pub const MR_NOTIFY_IN_PROCESS_NO_DISCONNECT: u64 = 1 << 16;
/// Watch bit: first message carries the published `Policy`; later `Policy`
/// messages reach only watchers with this bit.
pub const MR_NOTIFY_SYS_POLICY_CHANGES: u64 = 1 << 17;
/// Watch bit: first message carries `PeerState` (the published WireGuard
/// states); later `PeerState` deltas reach only watchers with this bit.
pub const MR_NOTIFY_PEER_WIRE_GUARD_STATE: u64 = 1 << 18;
/// Watch bit, a meshring extension (tailscaled ignores it): the initial
/// peers come in messages of at most `initial_chunk` peers (`InitialStatus`
/// without `Peer`, `NetMap` with the first chunk, then `PeersChanged`), the
/// last marked `"InitialComplete": true`.
pub const MR_NOTIFY_CHUNKED_INITIAL: u64 = 0x8000_0000_0000_0000;

/// Creates a bus. `opts_json` may be NULL for defaults, or a JSON object
/// with any of `rate_limit_ms` (3000), `initial_chunk` (1000 peers per
/// message), `backlog` (10000), `max_apply_bytes` (67108864: the largest
/// `mr_bus_apply` input). On success `*out` owns a new handle the
/// caller releases with `mr_bus_free`; on failure `*out` is NULL
/// (MR_PARSE / MR_INVALID_ARGUMENT for bad options).
#[no_mangle]
pub extern "C" fn mr_bus_new(opts_json: *const c_char, out: *mut *mut mr_bus) -> mr_status {
    ffi_status!("mr_bus_new", {
        let out = try_out(out, "out")?;
        *out = std::ptr::null_mut();
        let opts = if opts_json.is_null() { None } else { Some(try_str(opts_json, "opts_json")?) };
        let bus = Bus::new(Bus::options_from_json(opts)?)?;
        *out = into_handle::<mr_bus>(bus);
        Ok(())
    })
}

/// Applies a `tailcfg.MapResponse`-shaped update (`json[0..len)`, borrowed
/// for the call only). MR_PARSE (store unchanged) for malformed input,
/// MR_INVALID_ARGUMENT for input longer than the bus's `max_apply_bytes`
/// option (64 MiB by default), MR_CLOSED after `mr_bus_close`. The store
/// keeps each node as its JSON text plus about 100 bytes.
#[no_mangle]
pub extern "C" fn mr_bus_apply(bus: *mut mr_bus, json: *const u8, len: usize) -> mr_status {
    ffi_status!("mr_bus_apply", { try_ref(bus)?.apply(try_slice(json, len, "json")?) })
}

/// Publishes a host event with `ipn.Notify` field names (`State`, `Prefs`,
/// `ErrMessage`, `LoginFinished`, `BrowseToURL`, `Health`, `Engine`, ...);
/// `json` is borrowed for the call only. MR_INVALID_ARGUMENT for fields the
/// bus produces itself (`PeersChanged`, `NetMap`, ...), MR_PARSE, MR_CLOSED.
#[no_mangle]
pub extern "C" fn mr_bus_publish(bus: *mut mr_bus, json: *const u8, len: usize) -> mr_status {
    ffi_status!("mr_bus_publish", { try_ref(bus)?.publish(try_slice(json, len, "json")?) })
}

/// Starts a watch session with `MR_NOTIFY_*` bits. On success `*out` owns a
/// new watcher the caller releases with `mr_watcher_free` (it may outlive
/// the bus: it then reports MR_CLOSED). MR_INVALID_ARGUMENT only where
/// tailscaled refuses the mask (MR_NOTIFY_RATE_LIMIT with a new-style peer
/// bit), with tailscaled's message.
#[no_mangle]
pub extern "C" fn mr_bus_watch(bus: *mut mr_bus, mask: u64, out: *mut *mut mr_watcher) -> mr_status {
    ffi_status!("mr_bus_watch", {
        let out = try_out(out, "out")?;
        *out = std::ptr::null_mut();
        let watcher = try_ref(bus)?.watch(mask)?;
        *out = into_handle::<mr_watcher>(watcher);
        Ok(())
    })
}

/// The stored `tailcfg.Node` JSON of peer `node_id` (O(1)). On success
/// `*out` holds bytes the caller releases with `mr_bytes_free`; MR_NOT_FOUND
/// if there is no such peer, MR_CLOSED after `mr_bus_close` (then `*out`
/// is {NULL, 0}).
#[no_mangle]
pub extern "C" fn mr_bus_peer(bus: *mut mr_bus, node_id: i64, out: *mut mr_bytes) -> mr_status {
    ffi_status!("mr_bus_peer", {
        let out = try_out(out, "out")?;
        *out = mr_bytes::from_vec(Vec::new());
        *out = mr_bytes::from_vec(try_ref(bus)?.peer(node_id)?);
        Ok(())
    })
}

/// The whole network map as JSON (`SelfNode`, `Peers`, `UserProfiles`,
/// `DNS`, `PacketFilterRules`, `DERPMap`, `Domain`). `*out` holds bytes the
/// caller releases with `mr_bytes_free`; MR_CLOSED after `mr_bus_close`.
#[no_mangle]
pub extern "C" fn mr_bus_netmap(bus: *mut mr_bus, out: *mut mr_bytes) -> mr_status {
    ffi_status!("mr_bus_netmap", {
        let out = try_out(out, "out")?;
        *out = mr_bytes::from_vec(Vec::new());
        *out = mr_bytes::from_vec(try_ref(bus)?.netmap()?);
        Ok(())
    })
}

/// `mr_bus_status_opts` flag: leave `Peer` out (tailscaled's
/// `/localapi/v0/status?peers=false`); `User` then holds only the self
/// user's profile.
pub const MR_BUS_STATUS_NO_PEERS: u32 = 1;

/// The node's status as tailscaled's `/localapi/v0/status` gives it: an
/// `ipnstate.Status` (`Self`, every peer in `Peer` keyed by node key,
/// `User` profiles, `BackendState`, `Health`, `CurrentTailnet`, ...), with
/// every field of the Go type. O(peers). `*out` holds bytes the caller
/// releases with `mr_bytes_free`; MR_CLOSED after `mr_bus_close`.
#[no_mangle]
pub extern "C" fn mr_bus_status(bus: *mut mr_bus, out: *mut mr_bytes) -> mr_status {
    mr_bus_status_opts(bus, 0, out)
}

/// `mr_bus_status` with `MR_BUS_STATUS_*` flags (MR_INVALID_ARGUMENT for
/// unknown ones).
#[no_mangle]
pub extern "C" fn mr_bus_status_opts(bus: *mut mr_bus, flags: u32, out: *mut mr_bytes) -> mr_status {
    ffi_status!("mr_bus_status_opts", {
        let out = try_out(out, "out")?;
        *out = mr_bytes::from_vec(Vec::new());
        if flags & !MR_BUS_STATUS_NO_PEERS != 0 {
            return Err(crate::error::Error::invalid(format!("unknown status flags {flags:#x}")));
        }
        *out = mr_bytes::from_vec(try_ref(bus)?.status(flags & MR_BUS_STATUS_NO_PEERS == 0)?);
        Ok(())
    })
}

/// The bus's own counters as JSON (`BackendState`, `Self`, `PeerCount`,
/// `UserProfileCount`, `Health`, `Watchers`, `NetMapVersion`): cheap, for
/// monitoring. `*out` holds bytes the caller releases with
/// `mr_bytes_free`; MR_CLOSED after `mr_bus_close`.
#[no_mangle]
pub extern "C" fn mr_bus_stats(bus: *mut mr_bus, out: *mut mr_bytes) -> mr_status {
    ffi_status!("mr_bus_stats", {
        let out = try_out(out, "out")?;
        *out = mr_bytes::from_vec(Vec::new());
        *out = mr_bytes::from_vec(try_ref(bus)?.stats()?);
        Ok(())
    })
}

/// Closes the bus and all its watchers: blocked `mr_watcher_next` calls
/// return MR_CLOSED, later apply/publish/watch/peer/netmap/status return
/// MR_CLOSED. Idempotent;
/// any thread. The handle stays allocated until `mr_bus_free`.
#[no_mangle]
pub extern "C" fn mr_bus_close(bus: *mut mr_bus) -> mr_status {
    ffi_status!("mr_bus_close", {
        try_ref(bus)?.close();
        Ok(())
    })
}

/// Closes (if needed) and releases the bus. NULL is a no-op. No other thread
/// may be using `bus` or call with it afterwards; watchers stay valid until
/// their own `mr_watcher_free`.
#[no_mangle]
pub extern "C" fn mr_bus_free(bus: *mut mr_bus) {
    ffi_value!("mr_bus_free", {
        drop(free_handle(bus));
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_bits_match_the_bus() {
        use crate::bus::*;
        let pairs = [
            (MR_NOTIFY_ENGINE_UPDATES, WATCH_ENGINE_UPDATES),
            (MR_NOTIFY_INITIAL_STATE, WATCH_INITIAL_STATE),
            (MR_NOTIFY_INITIAL_PREFS, WATCH_INITIAL_PREFS),
            (MR_NOTIFY_INITIAL_NET_MAP, WATCH_INITIAL_NET_MAP),
            (MR_NOTIFY_NO_PRIVATE_KEYS, WATCH_NO_PRIVATE_KEYS),
            (MR_NOTIFY_INITIAL_DRIVE_SHARES, WATCH_INITIAL_DRIVE_SHARES),
            (MR_NOTIFY_INITIAL_OUTGOING_FILES, WATCH_INITIAL_OUTGOING_FILES),
            (MR_NOTIFY_INITIAL_HEALTH_STATE, WATCH_INITIAL_HEALTH_STATE),
            (MR_NOTIFY_RATE_LIMIT, WATCH_RATE_LIMIT),
            (MR_NOTIFY_HEALTH_ACTIONS, WATCH_HEALTH_ACTIONS),
            (MR_NOTIFY_INITIAL_SUGGESTED_EXIT_NODE, WATCH_INITIAL_SUGGESTED_EXIT_NODE),
            (MR_NOTIFY_INITIAL_CLIENT_VERSION, WATCH_INITIAL_CLIENT_VERSION),
            (MR_NOTIFY_PEER_CHANGES, WATCH_PEER_CHANGES),
            (MR_NOTIFY_NO_NET_MAP, WATCH_NO_NET_MAP),
            (MR_NOTIFY_INITIAL_STATUS, WATCH_INITIAL_STATUS),
            (MR_NOTIFY_PEER_PATCHES, WATCH_PEER_PATCHES),
            (MR_NOTIFY_IN_PROCESS_NO_DISCONNECT, WATCH_IN_PROCESS_NO_DISCONNECT),
            (MR_NOTIFY_SYS_POLICY_CHANGES, WATCH_SYS_POLICY_CHANGES),
            (MR_NOTIFY_PEER_WIRE_GUARD_STATE, WATCH_PEER_WIRE_GUARD_STATE),
            (MR_NOTIFY_CHUNKED_INITIAL, WATCH_CHUNKED_INITIAL),
        ];
        for (c, rust) in pairs {
            assert_eq!(c, rust);
        }
    }

    #[test]
    fn round_trip_through_the_c_boundary() {
        let mut bus = std::ptr::null_mut();
        assert_eq!(mr_bus_new(std::ptr::null(), &mut bus), mr_status::MR_OK);
        let update = br#"{"PeersChanged":[{"ID":5}]}"#;
        assert_eq!(mr_bus_apply(bus, update.as_ptr(), update.len()), mr_status::MR_OK);
        assert_eq!(mr_bus_apply(bus, b"{".as_ptr(), 1), mr_status::MR_PARSE);
        assert_eq!(mr_bus_apply(bus, std::ptr::null(), 3), mr_status::MR_INVALID_ARGUMENT);
        let mut w = std::ptr::null_mut();
        assert_eq!(mr_bus_watch(bus, MR_NOTIFY_RATE_LIMIT | MR_NOTIFY_PEER_CHANGES, &mut w), mr_status::MR_INVALID_ARGUMENT);
        assert!(w.is_null());
        assert_eq!(mr_bus_watch(bus, MR_NOTIFY_INITIAL_STATUS | MR_NOTIFY_PEER_CHANGES, &mut w), mr_status::MR_OK);
        assert!(super::super::watcher::mr_watcher_fd(w) >= 0);
        let mut msg = mr_bytes::from_vec(Vec::new());
        assert_eq!(super::super::watcher::mr_watcher_next(w, 0, &mut msg), mr_status::MR_OK);
        assert!(msg.len > 0);
        super::super::bytes::mr_bytes_free(&mut msg);
        assert_eq!(super::super::watcher::mr_watcher_next(w, 0, &mut msg), mr_status::MR_WOULD_BLOCK);
        assert!(msg.ptr.is_null());
        let mut peer = mr_bytes::from_vec(Vec::new());
        assert_eq!(mr_bus_peer(bus, 5, &mut peer), mr_status::MR_OK);
        super::super::bytes::mr_bytes_free(&mut peer);
        assert_eq!(mr_bus_peer(bus, 6, &mut peer), mr_status::MR_NOT_FOUND);
        let mut nm = mr_bytes::from_vec(Vec::new());
        assert_eq!(mr_bus_netmap(bus, &mut nm), mr_status::MR_OK);
        super::super::bytes::mr_bytes_free(&mut nm);
        assert_eq!(mr_bus_stats(bus, &mut nm), mr_status::MR_OK);
        super::super::bytes::mr_bytes_free(&mut nm);
        assert_eq!(mr_bus_close(bus), mr_status::MR_OK);
        assert_eq!(super::super::watcher::mr_watcher_next(w, -1, &mut msg), mr_status::MR_CLOSED);
        // Reads on a closed bus are MR_CLOSED too (the contract: every later call).
        assert_eq!(mr_bus_peer(bus, 5, &mut peer), mr_status::MR_CLOSED);
        assert!(peer.ptr.is_null() && peer.len == 0);
        assert_eq!(mr_bus_netmap(bus, &mut nm), mr_status::MR_CLOSED);
        assert_eq!(mr_bus_stats(bus, &mut nm), mr_status::MR_CLOSED);
        assert!(nm.ptr.is_null() && nm.len == 0);
        mr_bus_free(bus);
        assert_eq!(super::super::watcher::mr_watcher_close(w), mr_status::MR_OK);
        super::super::watcher::mr_watcher_free(w);
        assert_eq!(mr_bus_close(std::ptr::null_mut()), mr_status::MR_INVALID_ARGUMENT);
        mr_bus_free(std::ptr::null_mut());
    }
}
