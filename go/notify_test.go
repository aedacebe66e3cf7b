package meshring

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

func TestNotifyWatchOptValues(t *testing.T) {
	// Tailscale's ipn.NotifyWatchOpt values, in bit order.
	opts := []NotifyWatchOpt{
		NotifyWatchEngineUpdates, NotifyInitialState, NotifyInitialPrefs,
		NotifyInitialNetMap, NotifyNoPrivateKeys, NotifyInitialDriveShares,
		NotifyInitialOutgoingFiles, NotifyInitialHealthState, NotifyRateLimit,
		NotifyHealthActions, NotifyInitialSuggestedExitNode,
		NotifyInitialClientVersion, NotifyPeerChanges, NotifyNoNetMap,
		NotifyInitialStatus, NotifyPeerPatches, NotifyInProcessNoDisconnect,
		NotifySysPolicyChanges, NotifyPeerWireGuardState,
	}
	for i, o := range opts {
		if o != 1<<i {
			t.Errorf("%v = %#x, want %#x", o, uint64(o), uint64(1)<<i)
		}
	}
	if s := (NotifyInitialStatus | NotifyPeerChanges | 1<<40).String(); s != "(ipn.NotifyPeerChanges | ipn.NotifyInitialStatus | ipn.NotifyWatchOpt(0x10000000000))" {
		t.Errorf("String() = %q", s)
	}
}

// Masks are refused only where tailscaled refuses them
// (ipn.ValidateNotifyWatchOpt), with its message.
func TestWatchInvalidMasks(t *testing.T) {
	b := newBus(t, nil)
	for _, mask := range []NotifyWatchOpt{
		NotifyRateLimit | NotifyPeerChanges,
		NotifyRateLimit | NotifyInitialStatus | NotifyPeerPatches,
		NotifyRateLimit | NotifyNoNetMap,
	} {
		w, err := b.Watch(mask)
		if w != nil {
			t.Errorf("Watch(%v) returned a watcher", mask)
		}
		wantStatus(t, err, ErrInvalidArgument, "watch")
		if want := "NotifyRateLimit is incompatible with new-style IPN bus subscription bits " + (mask & NotifyRateLimitIncompatibleBits).String(); !strings.Contains(err.Error(), want) {
			t.Errorf("Watch(%v): %v, want tailscaled's message %q", mask, err, want)
		}
	}
	for _, mask := range []NotifyWatchOpt{NotifyInitialNetMap | NotifyPeerChanges, NotifyInitialNetMap | NotifyPeerPatches, 1 << 16, 1 << 40, NotifyRateLimit | NotifyInitialNetMap} {
		w, err := b.Watch(mask)
		if err != nil {
			t.Errorf("Watch(%v): %v", mask, err)
			continue
		}
		w.Close()
	}
}

// The initial messages: requested state, the initial peer view in chunks,
// the completion marker, and field compatibility of each.
func TestWatcherInitialState(t *testing.T) {
	b := newBus(t, &BusOptions{InitialChunk: 2})
	mustApply(t, b, baseMapResponse)
	mustPublish(t, b, `{"State": 2, "Prefs": {"WantRunning": true}, "Health": {"Warnings": {}}, "BrowseToURL": "https://login.example/a"}`)

	w := mustWatch(t, b, NotifyInitialState|NotifyInitialPrefs|NotifyInitialHealthState|NotifyInitialStatus|NotifyPeerChanges|NotifyChunkedInitial)
	msgs := readUntil(t, w, func(n *Notify) bool { return n.InitialComplete })
	first := msgs[0]
	if first.Version != Version() {
		t.Errorf("Version = %q, want the library's %q", first.Version, Version())
	}
	if len(first.SessionID) != 16 || first.State == nil || *first.State != 2 {
		t.Errorf("first message lacks a 16-digit SessionID or State 2 (NeedsLogin): %s", first.raw)
	}
	if first.BrowseToURL == nil || *first.BrowseToURL != "https://login.example/a" {
		t.Errorf("first message lacks BrowseToURL: %s", first.raw)
	}
	if len(first.Prefs) == 0 || len(first.Health) == 0 || len(first.InitialStatus) == 0 {
		t.Errorf("first message lacks Prefs, Health or InitialStatus: %s", first.raw)
	}
	if len(msgs) != 2 {
		t.Errorf("3 peers in chunks of 2 took %d messages, want 2", len(msgs))
	}
	for _, n := range msgs[1:] {
		if n.SessionID != "" {
			t.Errorf("SessionID repeated: %s", n.raw)
		}
	}
	v := newPeerView()
	for _, n := range msgs {
		v.apply(t, n)
	}
	v.check(t, b, "initial view")

	// A second session gets another SessionID.
	w2 := mustWatch(t, b, NotifyInitialState)
	if n := nextNotify(t, w2); n.SessionID == "" || n.SessionID == first.SessionID {
		t.Errorf("second session's SessionID %q (first %q)", n.SessionID, first.SessionID)
	}
}

// The legacy initial NetMap decodes as a netmap.NetworkMap.
func TestWatcherInitialNetMap(t *testing.T) {
	b := newBus(t, nil)
	mustApply(t, b, baseMapResponse)
	w := mustWatch(t, b, NotifyInitialNetMap|NotifyNoNetMap)
	n := nextNotify(t, w)
	if n.InitialComplete || n.SelfChange == nil || n.SelfChange.ID != 1 {
		t.Errorf("want the NetMap with SelfChange and no meshring marker: %s", n.raw)
	}
	var nm NetworkMap
	if err := json.Unmarshal(n.NetMap, &nm); err != nil {
		t.Fatalf("NetMap: %v\n%s", err, n.raw)
	}
	if nm.SelfNode == nil || nm.SelfNode.ID != 1 || len(nm.Peers) != 3 || nm.UserProfiles[7].LoginName != "alice@example.com" {
		t.Errorf("initial NetMap = %s", n.NetMap)
	}
}

// deltaSteps change the peers of baseMapResponse in every way a
// MapResponse can: adds with new profiles, replacements, removals,
// patches, OnlineChange, PeerSeenChange, and a full Peers list.
var deltaSteps = []string{
	`{"UserProfiles": [{"ID": 9, "LoginName": "carol@example.com"}],
	  "PeersChanged": [{"ID": 5, "StableID": "n5", "User": 9, "Name": "five."},
	                   {"ID": 3, "StableID": "n3", "User": 8, "Name": "three-renamed.", "HomeDERP": 1}]}`,
	`{"PeersRemoved": [4, 404]}`,
	`{"PeersChangedPatch": [{"NodeID": 2, "Online": false, "DERPRegion": 5, "Endpoints": ["198.51.100.2:41641"]},
	                        {"NodeID": 404, "Online": true}]}`,
	`{"OnlineChange": {"3": true, "5": false}}`,
	`{"PeerSeenChange": {"2": true}}`,
	`{"Peers": [{"ID": 2, "StableID": "n2", "User": 7, "Name": "two-new."},
	            {"ID": 3, "StableID": "n3", "User": 8, "Name": "three-renamed.", "HomeDERP": 1, "Online": true},
	            {"ID": 6, "StableID": "n6", "User": 10, "Name": "six."}],
	  "UserProfiles": [{"ID": 10, "LoginName": "dave@example.com"}]}`,
	`{"PeersChangedPatch": [{"NodeID": 6, "Online": true, "KeyExpiry": "2030-01-01T00:00:00Z"}],
	  "PeersChanged": [{"ID": 7, "User": 7}], "PeerSeenChange": {"2": true}}`,
	`{"PeerSeenChange": {"2": false}, "PeersChangedPatch": [{"NodeID": 3, "DERPRegion": 2, "Endpoints": ["203.0.113.3:41641"]}]}`,
}

// Watchers in both peer modes follow the same deltas and end with the
// bus's peer set, node for node.
func TestWatcherPeerDeltasReconstructTheStore(t *testing.T) {
	b := newBus(t, &BusOptions{InitialChunk: 2})
	mustApply(t, b, baseMapResponse)
	mustPublish(t, b, `{"State": 6}`)
	const initial = NotifyInitialState | NotifyInitialStatus | NotifyChunkedInitial
	full := mustWatch(t, b, initial|NotifyPeerChanges)
	patches := mustWatch(t, b, initial|NotifyPeerPatches)

	for _, step := range deltaSteps {
		mustApply(t, b, step)
	}
	// Events and deltas share one ordered log: once the marker arrives,
	// every delta before it has been delivered.
	mustPublish(t, b, `{"ErrMessage": "marker"}`)
	isMarker := func(n *Notify) bool { return n.ErrMessage != nil && *n.ErrMessage == "marker" }

	sawPatch := map[NodeID]bool{}
	for _, w := range []struct {
		name string
		w    *Watcher
	}{{"NotifyPeerChanges", full}, {"NotifyPeerPatches", patches}} {
		v := newPeerView()
		complete := false
		for _, n := range readUntil(t, w.w, isMarker) {
			v.apply(t, n)
			complete = complete || n.InitialComplete
			if len(n.PeerChangedPatch) > 0 && w.w == full {
				t.Errorf("a NotifyPeerChanges watcher got PeerChangedPatch (patches must be promoted to nodes): %s", n.raw)
			}
			for _, p := range n.PeerChangedPatch {
				sawPatch[p.NodeID] = true
			}
		}
		if !complete {
			t.Errorf("%s: no InitialComplete marker", w.name)
		}
		v.check(t, b, w.name)
	}
	// Peer 6's patch changed KeyExpiry, which tailscaled sends as the whole
	// node; the others' fields travel as patches.
	if !sawPatch[2] || !sawPatch[3] || sawPatch[6] {
		t.Errorf("NotifyPeerPatches watcher got patches for %v, want peers 2 and 3 only", sawPatch)
	}
	if _, err := b.Peer(4); err == nil {
		t.Errorf("removed peer 4 still found")
	}
}

// A NotifyPeerPatches watcher gets narrow PeerChangedPatch entries (with
// PeerChange names) where a NotifyPeerChanges watcher gets the full node.
func TestWatcherPeerPatches(t *testing.T) {
	b := newBus(t, nil)
	mustApply(t, b, baseMapResponse)
	pw := mustWatch(t, b, NotifyPeerPatches)
	fw := mustWatch(t, b, NotifyPeerChanges)
	mustApply(t, b, `{"PeersChangedPatch": [{"NodeID": 3, "Online": true, "DERPRegion": 4}]}`)

	// Each session first gets the profile of the patched node's user,
	// which it has not seen yet (ipn.Notify.UserProfiles' guarantee).
	hasPeers := func(n *Notify) bool { return len(n.PeerChangedPatch)+len(n.PeersChanged) > 0 }
	msgs := readUntil(t, pw, hasPeers)
	if len(msgs) != 2 || msgs[0].UserProfiles[8].LoginName != "bob@example.com" {
		t.Errorf("patch watcher did not get profile 8 first: %d messages, first %s", len(msgs), msgs[0].raw)
	}
	n := msgs[len(msgs)-1]
	if len(n.PeerChangedPatch) != 1 || len(n.PeersChanged) != 0 {
		t.Fatalf("patch watcher got %s", n.raw)
	}
	p := n.PeerChangedPatch[0]
	if p.NodeID != 3 || p.Online == nil || !*p.Online || p.DERPRegion != 4 {
		t.Errorf("PeerChangedPatch[0] = %+v (%s)", p, n.raw)
	}
	if keys := rawPatches(t, n)[0]; len(keys) != 3 {
		t.Errorf("patch carries more than what changed: %v", keys)
	}

	msgs = readUntil(t, fw, hasPeers)
	if len(msgs) != 2 || msgs[0].UserProfiles[8].LoginName != "bob@example.com" {
		t.Errorf("full-node watcher did not get profile 8 first: %d messages, first %s", len(msgs), msgs[0].raw)
	}
	n = msgs[len(msgs)-1]
	if len(n.PeerChangedPatch) != 0 || len(n.PeersChanged) != 1 {
		t.Fatalf("full-node watcher got %s", n.raw)
	}
	stored, _ := b.Peer(3)
	if got, want := fmt.Sprint(rawPeers(t, n)[0]), fmt.Sprint(jsonObject(t, stored)); got != want {
		t.Errorf("promoted node %s, bus has %s", got, want)
	}
	if node := n.PeersChanged[0]; node.HomeDERP != 4 || node.Online == nil || !*node.Online {
		t.Errorf("promoted node = %+v", node)
	}
}

// Host events reach every watcher, Engine included (as tailscaled's do);
// SelfChange everyone.
func TestWatcherEvents(t *testing.T) {
	b := newBus(t, nil)
	plain := mustWatch(t, b, NotifyPeerChanges)
	engine := mustWatch(t, b, NotifyWatchEngineUpdates)
	mustPublish(t, b, `{"Engine": {"RBytes": 1, "WBytes": 2, "NumLive": 0, "LiveDERPs": 1}}`)
	mustPublish(t, b, `{"State": 4, "LoginFinished": {}}`)
	mustApply(t, b, `{"Node": {"ID": 1, "Name": "self."}}`)

	n := nextNotify(t, engine)
	var es struct{ RBytes, WBytes int64 }
	if err := json.Unmarshal(n.Engine, &es); err != nil || es.WBytes != 2 {
		t.Errorf("Engine = %s (%v)", n.Engine, err)
	}
	if n := nextNotify(t, plain); len(n.Engine) == 0 {
		t.Errorf("Engine did not reach a watcher without NotifyWatchEngineUpdates: %s", n.raw)
	}
	for _, w := range []*Watcher{plain, engine} {
		n := nextNotify(t, w)
		if n.State == nil || *n.State != 4 || len(n.LoginFinished) == 0 || len(n.Engine) != 0 {
			t.Errorf("state event = %s", n.raw)
		}
		n = nextNotify(t, w)
		if n.SelfChange == nil || n.SelfChange.Name != "self." {
			t.Errorf("self change = %s", n.raw)
		}
	}
}

// InitialStatus is documented as ipnstate.Status. Tailscale's Go client
// decodes it into ipnstate.Status, whose Self is a *PeerStatus (ID is a
// StableNodeID string) and whose Health is a []string.
func TestInitialStatusDecodesAsIPNStateStatus(t *testing.T) {
	b := newBus(t, nil)
	mustApply(t, b, baseMapResponse)
	mustPublish(t, b, `{"State": 6, "Health": {"Warnings": {}}}`)
	w := mustWatch(t, b, NotifyInitialStatus)
	n := nextNotify(t, w)
	var status struct {
		Version      string
		BackendState string
		TailscaleIPs []netip.Addr
		Self         *struct {
			ID           string // tailcfg.StableNodeID
			HostName     string
			DNSName      string
			UserID       UserID
			TailscaleIPs []netip.Addr
			Online       bool
		}
		Health         []string
		MagicDNSSuffix string
		CurrentTailnet *struct {
			Name            string
			MagicDNSSuffix  string
			MagicDNSEnabled bool
		}
		User map[UserID]UserProfile
	}
	dec := json.NewDecoder(bytes.NewReader(n.InitialStatus))
	if err := dec.Decode(&status); err != nil {
		t.Fatalf("InitialStatus does not decode as ipnstate.Status: %v\n%s", err, n.InitialStatus)
	}
	if status.BackendState != "Running" || status.Self == nil {
		t.Fatalf("InitialStatus = %s", n.InitialStatus)
	}
	self := status.Self
	if self.ID != "nSelf" || self.HostName != "" || self.DNSName != "self.example.ts.net." || self.UserID != 7 || !self.Online {
		t.Errorf("Self = %+v", *self)
	}
	want := []netip.Addr{netip.MustParseAddr("100.64.0.1")}
	if !reflect.DeepEqual(self.TailscaleIPs, want) || !reflect.DeepEqual(status.TailscaleIPs, want) {
		t.Errorf("TailscaleIPs = %v / %v, want %v", status.TailscaleIPs, self.TailscaleIPs, want)
	}
	if status.Health == nil || len(status.Health) != 0 {
		t.Errorf("Health = %#v, want an empty list (no warnings)", status.Health)
	}
	if status.MagicDNSSuffix != "example.ts.net" || status.CurrentTailnet == nil || status.CurrentTailnet.Name != "example.ts.net" {
		t.Errorf("MagicDNSSuffix %q, CurrentTailnet %+v", status.MagicDNSSuffix, status.CurrentTailnet)
	}
	if status.User[7].LoginName != "alice@example.com" || status.User[8].LoginName != "bob@example.com" {
		t.Errorf("User = %+v", status.User)
	}
	// Only ipnstate.Status field names; meshring's counters stay in Bus.Status.
	statusFields := map[string]bool{
		"Version": true, "TUN": true, "BackendState": true, "HaveNodeKey": true, "AuthURL": true,
		"TailscaleIPs": true, "Self": true, "ExitNodeStatus": true, "Health": true, "MagicDNSSuffix": true,
		"CurrentTailnet": true, "CertDomains": true, "ExtraRecords": true, "Peer": true, "User": true, "ClientVersion": true,
	}
	for k := range jsonObject(t, n.InitialStatus) {
		if !statusFields[k] {
			t.Errorf("InitialStatus has key %q, which is no ipnstate.Status field: %s", k, n.InitialStatus)
		}
	}
}
