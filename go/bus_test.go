package meshring

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"strings"
	"testing"
	"time"
)

// newBus opens a bus closed at the end of the test.
func newBus(t *testing.T, opts *BusOptions) *Bus {
	t.Helper()
	b, err := NewBus(opts)
	if err != nil {
		t.Fatalf("NewBus(%+v): %v", opts, err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func mustApply(t *testing.T, b *Bus, mapResponse string) {
	t.Helper()
	if err := b.Apply([]byte(mapResponse)); err != nil {
		t.Fatalf("Apply(%s): %v", mapResponse, err)
	}
}

func mustPublish(t *testing.T, b *Bus, event string) {
	t.Helper()
	if err := b.Publish([]byte(event)); err != nil {
		t.Fatalf("Publish(%s): %v", event, err)
	}
}

// mustWatch starts a watcher closed at the end of the test.
func mustWatch(t *testing.T, b *Bus, mask NotifyWatchOpt) *Watcher {
	t.Helper()
	w, err := b.Watch(mask)
	if err != nil {
		t.Fatalf("Watch(%v): %v", mask, err)
	}
	t.Cleanup(func() { w.Close() })
	return w
}

// wantStatus checks that err is an *Error with the given status and op.
func wantStatus(t *testing.T, err error, sentinel error, op string) {
	t.Helper()
	if !errors.Is(err, sentinel) {
		t.Fatalf("err = %v, want one matching %v", err, sentinel)
	}
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("err = %T %v, want an *Error", err, err)
	}
	if op != "" && e.Op != op {
		t.Errorf("err.Op = %q, want %q (%v)", e.Op, op, err)
	}
}

// A MapResponse with a self node, three peers and two user profiles.
const baseMapResponse = `{
	"Node": {"ID": 1, "StableID": "nSelf", "Name": "self.example.ts.net.", "User": 7, "Addresses": ["100.64.0.1/32"]},
	"Peers": [
		{"ID": 2, "StableID": "n2", "Name": "two.example.ts.net.", "User": 7, "Online": true, "Endpoints": ["192.0.2.2:41641"], "Future": {"x": 1}},
		{"ID": 3, "StableID": "n3", "Name": "three.example.ts.net.", "User": 8, "HomeDERP": 1},
		{"ID": 4, "StableID": "n4", "Name": "four.example.ts.net.", "User": 8}
	],
	"UserProfiles": [
		{"ID": 7, "LoginName": "alice@example.com", "DisplayName": "Alice"},
		{"ID": 8, "LoginName": "bob@example.com", "DisplayName": "Bob"}
	],
	"DNSConfig": {"Resolvers": [{"Addr": "100.100.100.100"}]},
	"Domain": "example.ts.net"
}`

func TestBusApplyPeerNetMapStatus(t *testing.T) {
	b := newBus(t, nil)
	mustApply(t, b, baseMapResponse)

	p, err := b.Peer(2)
	if err != nil {
		t.Fatalf("Peer(2): %v", err)
	}
	var node Node
	if err := json.Unmarshal(p, &node); err != nil {
		t.Fatalf("Peer(2) does not decode as a tailcfg.Node: %v\n%s", err, p)
	}
	if node.ID != 2 || node.StableID != "n2" || node.User != 7 || node.Online == nil || !*node.Online {
		t.Errorf("Peer(2) = %+v", node)
	}
	if got := jsonObject(t, p)["Future"]; got == nil {
		t.Errorf("Peer(2) lost the unknown field Future: %s", p)
	}

	_, err = b.Peer(99)
	wantStatus(t, err, ErrNotFound, "peer")
	_, err = b.Peer(1) // the self node is no peer
	wantStatus(t, err, ErrNotFound, "peer")

	nm, err := b.NetMap()
	if err != nil {
		t.Fatalf("NetMap: %v", err)
	}
	var netmap NetworkMap
	if err := json.Unmarshal(nm, &netmap); err != nil {
		t.Fatalf("NetMap does not decode: %v\n%s", err, nm)
	}
	if netmap.SelfNode == nil || netmap.SelfNode.ID != 1 || netmap.Domain != "example.ts.net" || len(netmap.DNS) == 0 {
		t.Errorf("NetMap = %s", nm)
	}
	if len(netmap.Peers) != 3 || netmap.Peers[0].ID != 2 || netmap.Peers[2].ID != 4 {
		t.Errorf("NetMap.Peers = %s", nm)
	}
	if len(netmap.UserProfiles) != 2 || netmap.UserProfiles[8].LoginName != "bob@example.com" {
		t.Errorf("NetMap.UserProfiles = %+v", netmap.UserProfiles)
	}

	st, err := b.Stats()
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	var status struct {
		Self             *Node
		PeerCount        int
		UserProfileCount int
		Watchers         int
	}
	if err := json.Unmarshal(st, &status); err != nil {
		t.Fatalf("Status does not decode: %v\n%s", err, st)
	}
	if status.Self == nil || status.Self.ID != 1 || status.PeerCount != 3 || status.UserProfileCount != 2 || status.Watchers != 0 {
		t.Errorf("Status = %s", st)
	}
	mustWatch(t, b, NotifyPeerChanges)
	st, _ = b.Stats()
	if err := json.Unmarshal(st, &status); err != nil || status.Watchers != 1 {
		t.Errorf("Status with one watcher = %s (%v)", st, err)
	}
}

func TestBusMalformedInput(t *testing.T) {
	b := newBus(t, nil)
	mustApply(t, b, baseMapResponse)
	before, _ := b.NetMap()
	for _, in := range []string{
		``,
		`{`,
		`[1]`,
		`{"Peers": {}}`,
		`{"Peers": [{"ID": "two"}]}`,
		`{"PeersChanged": [{"ID": 5, "User": "u"}]}`,
		`{"PeersRemoved": ["x"]}`,
		`{"PeersChangedPatch": [{"NodeID": 2, "Online": 3}]}`,
		`{"UserProfiles": [{"LoginName": "x"}]}`,
		// A valid part first: the whole update must still be refused.
		`{"PeersChanged": [{"ID": 9}], "Domain": 5}`,
	} {
		wantStatus(t, b.Apply([]byte(in)), ErrParse, "apply")
	}
	if after, _ := b.NetMap(); string(after) != string(before) {
		t.Errorf("a refused Apply changed the netmap:\n%s\n%s", before, after)
	}
	wantStatus(t, b.Publish([]byte(`nope`)), ErrParse, "publish")
	wantStatus(t, b.Publish([]byte(`{"PeersChanged": []}`)), ErrInvalidArgument, "publish")
	wantStatus(t, b.Publish([]byte(`{"NetMap": {}}`)), ErrInvalidArgument, "publish")
	err := b.Apply([]byte(`{"Peers": {}}`))
	var e *Error
	if errors.As(err, &e) && !strings.Contains(e.Msg, "Peers") {
		t.Errorf("the library's message should name the field: %q", e.Msg)
	}
}

func TestBusOptions(t *testing.T) {
	for _, opts := range []*BusOptions{
		{InitialChunk: -1},
		{Backlog: -1},
		{RateLimit: -time.Second},
	} {
		_, err := NewBus(opts)
		wantStatus(t, err, ErrInvalidArgument, "new bus")
	}
	for _, opts := range []*BusOptions{nil, {}, {RateLimit: time.Microsecond, InitialChunk: 1, Backlog: 1}} {
		b, err := NewBus(opts)
		if err != nil {
			t.Fatalf("NewBus(%+v): %v", opts, err)
		}
		b.Close()
	}

	// InitialChunk reaches the library: 3 peers in chunks of 1 make
	// three messages after the first.
	b := newBus(t, &BusOptions{InitialChunk: 1})
	mustApply(t, b, baseMapResponse)
	w := mustWatch(t, b, NotifyInitialStatus|NotifyPeerChanges|NotifyChunkedInitial)
	msgs := readUntil(t, w, func(n *Notify) bool { return n.InitialComplete })
	if len(msgs) != 3 {
		t.Errorf("initial view in %d messages, want 3 (one peer each)", len(msgs))
	}
	for _, n := range msgs {
		if len(n.PeersChanged) != 1 {
			t.Errorf("chunk with %d peers, want 1: %s", len(n.PeersChanged), n.raw)
		}
	}
}

func TestBusRateLimit(t *testing.T) {
	const limit = 100 * time.Millisecond
	b := newBus(t, &BusOptions{RateLimit: limit})
	w := mustWatch(t, b, NotifyRateLimit|NotifyWatchEngineUpdates)
	mustPublish(t, b, `{"Engine": {"RBytes": 1}}`)
	if n := nextNotify(t, w); len(n.Engine) == 0 {
		t.Fatalf("first update: %s", n.raw)
	}
	start := time.Now()
	mustPublish(t, b, `{"Engine": {"RBytes": 2}}`)
	mustPublish(t, b, `{"Engine": {"RBytes": 3}}`)
	// Let the watcher find nothing due first, so it waits on the fd.
	time.Sleep(10 * time.Millisecond)
	n := nextNotify(t, w)
	elapsed := time.Since(start)
	if string(n.Engine) != `{"RBytes":3}` {
		t.Errorf("rate-limited Engine messages not coalesced to the latest: %s", n.raw)
	}
	if elapsed < limit-20*time.Millisecond || elapsed > limit+500*time.Millisecond {
		t.Errorf("coalesced update after %v, want about %v", elapsed, limit)
	}
}

func TestBusClose(t *testing.T) {
	b, err := NewBus(nil)
	if err != nil {
		t.Fatal(err)
	}
	mustApply(t, b, baseMapResponse)
	blocked := mustWatch(t, b, NotifyPeerChanges)
	chw := mustWatch(t, b, NotifyInitialStatus|NotifyPeerChanges)
	ch := chw.C()
	if _, ok := <-ch; !ok {
		t.Fatal("C closed before the initial message")
	}
	done := make(chan error, 1)
	go func() {
		_, err := blocked.Next(context.Background())
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)

	start := time.Now()
	if err := b.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case err := <-done:
		wantStatus(t, err, ErrClosed, "next")
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("err = %v, want one matching net.ErrClosed", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("bus Close did not unblock Next")
	}
	waitClosed(t, ch)
	wantStatus(t, chw.Err(), ErrClosed, "")
	if d := time.Since(start); d > time.Second {
		t.Errorf("watchers noticed the close after %v", d)
	}

	wantStatus(t, b.Apply([]byte(`{}`)), ErrClosed, "apply")
	wantStatus(t, b.Publish([]byte(`{"State": 1}`)), ErrClosed, "publish")
	_, err = b.Watch(NotifyPeerChanges)
	wantStatus(t, err, ErrClosed, "watch")
	_, err = b.Peer(2)
	wantStatus(t, err, ErrClosed, "peer")
	_, err = b.NetMap()
	wantStatus(t, err, ErrClosed, "netmap")
	_, err = b.Status()
	wantStatus(t, err, ErrClosed, "status")
	wantStatus(t, b.Close(), ErrClosed, "close")

	// The watchers outlive the bus; closing them is still fine, once.
	if err := blocked.Close(); err != nil {
		t.Errorf("watcher Close after bus Close: %v", err)
	}
	wantStatus(t, blocked.Close(), ErrClosed, "close")
}

// waitClosed waits for ch to be closed, discarding messages.
func waitClosed(t *testing.T, ch <-chan []byte) {
	t.Helper()
	timeout := time.After(2 * time.Second)
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-timeout:
			t.Fatal("channel not closed")
		}
	}
}
