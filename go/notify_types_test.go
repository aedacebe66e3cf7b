package meshring

import (
	"bytes"
	"context"
	"encoding/json"
	"reflect"
	"sort"
	"testing"
	"time"
)

// The types below mirror, field for field and with the same JSON shapes,
// the parts of Tailscale's ipn.Notify, tailcfg.Node, tailcfg.PeerChange,
// tailcfg.UserProfile and netmap.NetworkMap that the tests read. They are
// our own (not imported): decoding the bus's messages into them with the
// default decoder is the type-compatibility check.

// UserID is tailcfg.UserID.
type UserID int64

// NodeID is tailcfg.NodeID.
type NodeID int64

// UserProfile mirrors tailcfg.UserProfile.
type UserProfile struct {
	ID            UserID
	LoginName     string
	DisplayName   string
	ProfilePicURL string `json:",omitempty"`
}

// Node mirrors the tailcfg.Node fields the tests use.
type Node struct {
	ID         NodeID
	StableID   string
	Name       string
	User       UserID
	Key        string
	KeyExpiry  string
	DiscoKey   string
	Addresses  []string
	AllowedIPs []string
	Endpoints  []string
	HomeDERP   int
	Online     *bool
	LastSeen   *string
	Cap        int
	CapMap     json.RawMessage
}

// PeerChange mirrors tailcfg.PeerChange.
type PeerChange struct {
	NodeID       NodeID
	DERPRegion   int
	Cap          int
	CapMap       json.RawMessage
	Endpoints    []string
	Key          *string
	KeySignature *string
	DiscoKey     *string
	Online       *bool
	LastSeen     *string
	KeyExpiry    *string
}

// NetworkMap mirrors the netmap.NetworkMap fields the bus writes.
type NetworkMap struct {
	SelfNode          *Node
	Peers             []*Node
	UserProfiles      map[UserID]UserProfile
	DNS               json.RawMessage
	PacketFilterRules json.RawMessage
	DERPMap           json.RawMessage
	Domain            string
}

// Notify mirrors ipn.Notify (every field), plus the meshring extension
// InitialComplete.
type Notify struct {
	Version           string
	SessionID         string
	ErrMessage        *string
	LoginFinished     json.RawMessage
	State             *int
	Prefs             json.RawMessage
	SelfChange        *Node
	InitialStatus     json.RawMessage
	NetMap            json.RawMessage
	PeerChangedPatch  []*PeerChange
	PeersChanged      []*Node
	PeersRemoved      []NodeID
	UserProfiles      map[UserID]UserProfile
	Engine            json.RawMessage
	BrowseToURL       *string
	FilesWaiting      json.RawMessage
	IncomingFiles     json.RawMessage
	OutgoingFiles     json.RawMessage
	LocalTCPPort      *uint16
	ClientVersion     json.RawMessage
	DriveShares       json.RawMessage
	Health            json.RawMessage
	SuggestedExitNode *string

	// InitialComplete is meshring's marker on the message that completes
	// an initial peer view.
	InitialComplete bool

	raw []byte // the message as received
}

// ipnNotifyFields are the JSON names of ipn.Notify's fields, written out
// from Tailscale's source (ipn/backend.go) independently of the Notify type
// above.
var ipnNotifyFields = []string{
	"Version", "SessionID", "ErrMessage", "LoginFinished", "State", "Prefs",
	"SelfChange", "InitialStatus", "NetMap", "PeerChangedPatch",
	"PeersChanged", "PeersRemoved", "UserProfiles", "Engine", "BrowseToURL",
	"FilesWaiting", "IncomingFiles", "OutgoingFiles", "LocalTCPPort",
	"ClientVersion", "DriveShares", "Health", "SuggestedExitNode",
}

// meshringExtensions are the documented top-level keys meshring adds.
var meshringExtensions = []string{"InitialComplete"}

func knownNotifyField(key string) bool {
	for _, k := range ipnNotifyFields {
		if k == key {
			return true
		}
	}
	for _, k := range meshringExtensions {
		if k == key {
			return true
		}
	}
	return false
}

// decodeNotify decodes one message into Notify (unknown fields allowed, as
// Go clients of ipn.Notify decode) and then checks field compatibility:
// every top-level key must be an ipn.Notify field name or a documented
// meshring extension, and Version must be set.
func decodeNotify(t *testing.T, msg []byte) *Notify {
	t.Helper()
	var n Notify
	if err := json.NewDecoder(bytes.NewReader(msg)).Decode(&n); err != nil {
		t.Fatalf("message does not decode as ipn.Notify: %v\n%s", err, msg)
	}
	var keys map[string]json.RawMessage
	if err := json.Unmarshal(msg, &keys); err != nil {
		t.Fatalf("message is not a JSON object: %v\n%s", err, msg)
	}
	for k := range keys {
		if !knownNotifyField(k) {
			t.Errorf("message has top-level key %q, which is no ipn.Notify field: %s", k, msg)
		}
	}
	if n.Version == "" {
		t.Errorf("message lacks Version: %s", msg)
	}
	n.raw = msg
	return &n
}

// rawPeers returns a message's PeersChanged entries as generic JSON
// objects (every field, known to Node or not).
func rawPeers(t *testing.T, n *Notify) []map[string]any {
	t.Helper()
	var v struct{ PeersChanged []map[string]any }
	if err := json.Unmarshal(n.raw, &v); err != nil {
		t.Fatalf("PeersChanged: %v", err)
	}
	return v.PeersChanged
}

// rawPatches returns a message's PeerChangedPatch entries as generic JSON.
func rawPatches(t *testing.T, n *Notify) []map[string]any {
	t.Helper()
	var v struct{ PeerChangedPatch []map[string]any }
	if err := json.Unmarshal(n.raw, &v); err != nil {
		t.Fatalf("PeerChangedPatch: %v", err)
	}
	return v.PeerChangedPatch
}

func jsonObject(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("not a JSON object: %v\n%s", err, b)
	}
	return m
}

func nodeID(t *testing.T, node map[string]any) NodeID {
	t.Helper()
	id, ok := node["ID"].(float64)
	if !ok {
		t.Fatalf("node without a numeric ID: %v", node)
	}
	return NodeID(id)
}

// peerView is a watcher's reconstruction of the peer set from its messages.
type peerView struct {
	peers    map[NodeID]map[string]any
	profiles map[UserID]UserProfile
}

func newPeerView() *peerView {
	return &peerView{peers: map[NodeID]map[string]any{}, profiles: map[UserID]UserProfile{}}
}

// apply folds one message into the view, checking that every UserID an
// upserted node names has its profile by now.
func (v *peerView) apply(t *testing.T, n *Notify) {
	t.Helper()
	for id, p := range n.UserProfiles {
		if p.ID != id {
			t.Errorf("UserProfiles[%d] has ID %d", id, p.ID)
		}
		v.profiles[id] = p
	}
	for i, node := range rawPeers(t, n) {
		id := nodeID(t, node)
		v.peers[id] = node
		if u := n.PeersChanged[i].User; u != 0 {
			if _, ok := v.profiles[u]; !ok {
				t.Errorf("peer %d names user %d before its profile arrived: %s", id, u, n.raw)
			}
		}
	}
	for _, patch := range rawPatches(t, n) {
		id := NodeID(patch["NodeID"].(float64))
		node, ok := v.peers[id]
		if !ok {
			t.Errorf("patch for unknown peer %d: %s", id, n.raw)
			continue
		}
		for field, value := range patch {
			switch field {
			case "NodeID":
			case "DERPRegion": // tailcfg.PeerChange.DERPRegion sets Node.HomeDERP
				node["HomeDERP"] = value
			default:
				node[field] = value
			}
		}
	}
	for _, id := range n.PeersRemoved {
		if _, ok := v.peers[id]; !ok {
			t.Errorf("removal of unknown peer %d: %s", id, n.raw)
		}
		delete(v.peers, id)
	}
}

// check compares the view with the bus: the same IDs as NetMap's Peers,
// and for each the same node as Bus.Peer.
func (v *peerView) check(t *testing.T, b *Bus, who string) {
	t.Helper()
	nm, err := b.NetMap()
	if err != nil {
		t.Fatalf("NetMap: %v", err)
	}
	var netmap NetworkMap
	if err := json.Unmarshal(nm, &netmap); err != nil {
		t.Fatalf("NetMap does not decode as a netmap.NetworkMap: %v", err)
	}
	var want, got []NodeID
	for _, p := range netmap.Peers {
		want = append(want, p.ID)
	}
	for id := range v.peers {
		got = append(got, id)
	}
	sort.Slice(got, func(i, j int) bool { return got[i] < got[j] })
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s: reconstructed peer IDs %v, bus has %v", who, got, want)
	}
	for id, node := range v.peers {
		stored, err := b.Peer(int64(id))
		if err != nil {
			t.Fatalf("%s: Peer(%d): %v", who, id, err)
		}
		if s := jsonObject(t, stored); !reflect.DeepEqual(node, s) {
			t.Errorf("%s: peer %d reconstructed as\n  %v\nbus has\n  %v", who, id, node, s)
		}
	}
}

// nextNotify reads and decodes the next message, failing after 5s.
func nextNotify(t *testing.T, w *Watcher) *Notify {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	msg, err := w.Next(ctx)
	if err != nil {
		t.Fatalf("Next: %v", err)
	}
	return decodeNotify(t, msg)
}

// readUntil reads messages until one satisfies stop, and returns them all.
func readUntil(t *testing.T, w *Watcher, stop func(*Notify) bool) []*Notify {
	t.Helper()
	var got []*Notify
	for {
		n := nextNotify(t, w)
		got = append(got, n)
		if stop(n) {
			return got
		}
		if len(got) > 1000 {
			t.Fatalf("no stop message in 1000 messages")
		}
	}
}

func TestNotifyMirrorHasEveryIPNField(t *testing.T) {
	typ := reflect.TypeOf(Notify{})
	have := map[string]bool{}
	for i := 0; i < typ.NumField(); i++ {
		if f := typ.Field(i); f.IsExported() {
			have[f.Name] = true
		}
	}
	for _, name := range append(append([]string{}, ipnNotifyFields...), meshringExtensions...) {
		if !have[name] {
			t.Errorf("Notify mirror lacks ipn.Notify field %s", name)
		}
		delete(have, name)
	}
	for name := range have {
		t.Errorf("Notify mirror has field %s, which ipn.Notify does not", name)
	}
}
