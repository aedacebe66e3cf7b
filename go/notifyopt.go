package meshring

/*
#include "shim.h"
*/
import "C"

import (
	"fmt"
	"strings"
)

// NotifyWatchOpt is a bit mask selecting what a Watcher receives. The bits
// have the names, values and meaning of Tailscale's ipn.NotifyWatchOpt in
// tailscale.com v1.102.5 (they are the C MR_NOTIFY_* values and never
// change). Every mask tailscaled accepts is accepted, unknown bits included.
type NotifyWatchOpt uint64

// The watch bits. "First message" is the one message a session starts
// with, sent at once when any bit of NotifyInitialBits is set.
const (
	// NotifyWatchEngineUpdates is accepted; Engine messages reach every
	// watcher, as tailscaled's do.
	NotifyWatchEngineUpdates NotifyWatchOpt = C.MR_NOTIFY_ENGINE_UPDATES
	// NotifyInitialState: the first message carries a SessionID, the State
	// (0 when none was published) and, while NeedsLogin, BrowseToURL.
	NotifyInitialState NotifyWatchOpt = C.MR_NOTIFY_INITIAL_STATE
	// NotifyInitialPrefs: the first message carries Prefs, if published.
	NotifyInitialPrefs NotifyWatchOpt = C.MR_NOTIFY_INITIAL_PREFS
	// NotifyInitialNetMap: the first message carries the whole NetMap
	// (every peer) and the self node as SelfChange.
	NotifyInitialNetMap NotifyWatchOpt = C.MR_NOTIFY_INITIAL_NET_MAP
	// NotifyNoPrivateKeys is accepted and has no effect (private keys are
	// never sent).
	NotifyNoPrivateKeys NotifyWatchOpt = C.MR_NOTIFY_NO_PRIVATE_KEYS
	// NotifyInitialDriveShares: the first message carries DriveShares, if
	// published.
	NotifyInitialDriveShares NotifyWatchOpt = C.MR_NOTIFY_INITIAL_DRIVE_SHARES
	// NotifyInitialOutgoingFiles is accepted and, as in tailscaled, does
	// nothing.
	NotifyInitialOutgoingFiles NotifyWatchOpt = C.MR_NOTIFY_INITIAL_OUTGOING_FILES
	// NotifyInitialHealthState: the first message carries Health, when
	// another initial bit asks for a first message.
	NotifyInitialHealthState NotifyWatchOpt = C.MR_NOTIFY_INITIAL_HEALTH_STATE
	// NotifyRateLimit: Engine-only messages at most once per
	// BusOptions.RateLimit (the latest); everything else at once. Refused
	// with NotifyRateLimitIncompatibleBits.
	NotifyRateLimit NotifyWatchOpt = C.MR_NOTIFY_RATE_LIMIT
	// NotifyHealthActions: Health as published; without it each warning's
	// primary action is folded into its Text.
	NotifyHealthActions NotifyWatchOpt = C.MR_NOTIFY_HEALTH_ACTIONS
	// NotifyInitialSuggestedExitNode: the first message carries
	// SuggestedExitNode, if published.
	NotifyInitialSuggestedExitNode NotifyWatchOpt = C.MR_NOTIFY_INITIAL_SUGGESTED_EXIT_NODE
	// NotifyInitialClientVersion: the first message carries ClientVersion,
	// if published.
	NotifyInitialClientVersion NotifyWatchOpt = C.MR_NOTIFY_INITIAL_CLIENT_VERSION
	// NotifyPeerChanges: peer deltas as PeersChanged (full nodes, patches
	// promoted) and PeersRemoved, with the UserProfiles they reference.
	NotifyPeerChanges NotifyWatchOpt = C.MR_NOTIFY_PEER_CHANGES
	// NotifyNoNetMap is accepted (on Linux no runtime NetMap is sent).
	NotifyNoNetMap NotifyWatchOpt = C.MR_NOTIFY_NO_NET_MAP
	// NotifyInitialStatus: the first message carries InitialStatus, an
	// ipnstate.Status with every peer in its Peer map.
	NotifyInitialStatus NotifyWatchOpt = C.MR_NOTIFY_INITIAL_STATUS
	// NotifyPeerPatches: narrow PeerChangedPatch entries (Online, LastSeen,
	// DERPRegion, Endpoints); implies NotifyPeerChanges.
	NotifyPeerPatches NotifyWatchOpt = C.MR_NOTIFY_PEER_PATCHES
	// NotifyInProcessNoDisconnect is accepted (the bus never blocks its
	// producer nor drops a watcher); a LocalAPI front end refuses it.
	NotifyInProcessNoDisconnect NotifyWatchOpt = C.MR_NOTIFY_IN_PROCESS_NO_DISCONNECT
	// NotifySysPolicyChanges: the first message carries the published
	// Policy; later Policy messages reach only watchers with this bit.
	NotifySysPolicyChanges NotifyWatchOpt = C.MR_NOTIFY_SYS_POLICY_CHANGES
	// NotifyPeerWireGuardState: the first message carries PeerState; later
	// PeerState deltas reach only watchers with this bit.
	NotifyPeerWireGuardState NotifyWatchOpt = C.MR_NOTIFY_PEER_WIRE_GUARD_STATE
	// NotifyChunkedInitial is a meshring extension (tailscaled ignores the
	// bit): the initial peers arrive in messages of at most
	// BusOptions.InitialChunk peers (InitialStatus without Peer, NetMap
	// with the first chunk, then PeersChanged), the last one marked
	// "InitialComplete": true.
	NotifyChunkedInitial NotifyWatchOpt = C.MR_NOTIFY_CHUNKED_INITIAL
)

// NotifyRateLimitIncompatibleBits are the bits tailscaled refuses together
// with NotifyRateLimit.
const NotifyRateLimitIncompatibleBits = NotifyPeerChanges | NotifyNoNetMap | NotifyInitialStatus | NotifyPeerPatches

// NotifyInitialBits are the bits that give a watcher a first message.
const NotifyInitialBits = NotifyInitialState | NotifyInitialPrefs | NotifyInitialNetMap | NotifyInitialStatus |
	NotifyInitialDriveShares | NotifyInitialSuggestedExitNode | NotifyInitialClientVersion |
	NotifySysPolicyChanges | NotifyPeerWireGuardState

var notifyOptNames = [...]string{
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
}

// String formats the mask as ipn.NotifyWatchOpt does:
// "ipn.NotifyPeerChanges" for one bit, "(ipn.A | ipn.B)" for several,
// unknown bits as "ipn.NotifyWatchOpt(0x...)".
func (o NotifyWatchOpt) String() string {
	if o == 0 {
		return "ipn.NotifyWatchOpt(0x0)"
	}
	var parts []string
	for i, name := range notifyOptNames {
		if o&(1<<i) != 0 {
			parts = append(parts, "ipn."+name)
			o &^= 1 << i
		}
	}
	if o != 0 {
		parts = append(parts, fmt.Sprintf("ipn.NotifyWatchOpt(%#x)", uint64(o)))
	}
	if len(parts) == 1 {
		return parts[0]
	}
	return "(" + strings.Join(parts, " | ") + ")"
}
