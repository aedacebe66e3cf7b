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
// have the names and values of Tailscale's ipn.NotifyWatchOpt (they are the
// C MR_NOTIFY_* values and never change).
type NotifyWatchOpt uint64

// The watch bits. "First message" means the message a session starts with,
// sent at once when any NotifyInitial* bit is set.
const (
	// NotifyWatchEngineUpdates forwards published Engine status events.
	NotifyWatchEngineUpdates NotifyWatchOpt = C.MR_NOTIFY_ENGINE_UPDATES
	// NotifyInitialState: the first message carries SessionID, State and
	// BrowseToURL.
	NotifyInitialState NotifyWatchOpt = C.MR_NOTIFY_INITIAL_STATE
	// NotifyInitialPrefs: the first message carries Prefs.
	NotifyInitialPrefs NotifyWatchOpt = C.MR_NOTIFY_INITIAL_PREFS
	// NotifyInitialNetMap: the first message carries NetMap; further peers
	// follow in PeersChanged chunks until a message with
	// "InitialComplete": true. Watchers with it (and without NotifyNoNetMap)
	// also get a whole NetMap after netmap changes.
	NotifyInitialNetMap NotifyWatchOpt = C.MR_NOTIFY_INITIAL_NET_MAP
	// NotifyNoPrivateKeys is accepted and has no effect (private keys are
	// never sent).
	NotifyNoPrivateKeys NotifyWatchOpt = C.MR_NOTIFY_NO_PRIVATE_KEYS
	// NotifyInitialDriveShares: the first message carries DriveShares, if
	// published.
	NotifyInitialDriveShares NotifyWatchOpt = C.MR_NOTIFY_INITIAL_DRIVE_SHARES
	// NotifyInitialOutgoingFiles: the first message carries OutgoingFiles,
	// if published.
	NotifyInitialOutgoingFiles NotifyWatchOpt = C.MR_NOTIFY_INITIAL_OUTGOING_FILES
	// NotifyInitialHealthState: the first message carries Health.
	NotifyInitialHealthState NotifyWatchOpt = C.MR_NOTIFY_INITIAL_HEALTH_STATE
	// NotifyRateLimit: netmap-type updates arrive at most once per
	// BusOptions.RateLimit, coalesced.
	NotifyRateLimit NotifyWatchOpt = C.MR_NOTIFY_RATE_LIMIT
	// NotifyHealthActions is accepted; Health is forwarded as published.
	NotifyHealthActions NotifyWatchOpt = C.MR_NOTIFY_HEALTH_ACTIONS
	// NotifyInitialSuggestedExitNode: the first message carries
	// SuggestedExitNode, if published.
	NotifyInitialSuggestedExitNode NotifyWatchOpt = C.MR_NOTIFY_INITIAL_SUGGESTED_EXIT_NODE
	// NotifyInitialClientVersion: the first message carries ClientVersion,
	// if published.
	NotifyInitialClientVersion NotifyWatchOpt = C.MR_NOTIFY_INITIAL_CLIENT_VERSION
	// NotifyPeerChanges: peer deltas as PeersChanged (full nodes, patches
	// promoted) and PeersRemoved, with the UserProfiles they reference.
	// Not combinable with NotifyInitialNetMap; pair it with
	// NotifyInitialStatus.
	NotifyPeerChanges NotifyWatchOpt = C.MR_NOTIFY_PEER_CHANGES
	// NotifyNoNetMap suppresses the runtime NetMap of NotifyInitialNetMap
	// watchers.
	NotifyNoNetMap NotifyWatchOpt = C.MR_NOTIFY_NO_NET_MAP
	// NotifyInitialStatus: the first message carries InitialStatus; the
	// current peers follow as PeersChanged chunks until a message with
	// "InitialComplete": true.
	NotifyInitialStatus NotifyWatchOpt = C.MR_NOTIFY_INITIAL_STATUS
	// NotifyPeerPatches: narrow PeerChangedPatch entries; implies
	// NotifyPeerChanges.
	NotifyPeerPatches NotifyWatchOpt = C.MR_NOTIFY_PEER_PATCHES
)

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
}

// String returns the names of the set bits joined by "|" ("0" for none);
// unknown bits appear in hex.
func (o NotifyWatchOpt) String() string {
	if o == 0 {
		return "0"
	}
	var parts []string
	for i, name := range notifyOptNames {
		if o&(1<<i) != 0 {
			parts = append(parts, name)
			o &^= 1 << i
		}
	}
	if o != 0 {
		parts = append(parts, fmt.Sprintf("%#x", uint64(o)))
	}
	return strings.Join(parts, "|")
}
