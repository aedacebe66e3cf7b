package tailscale

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	meshring "github.com/meshring/meshring/go"
	"tailscale.com/client/local"
	"tailscale.com/ipn"
	"tailscale.com/tailcfg"
	"tailscale.com/types/key"
)

// nodeKey is a valid key.NodePublic text for peer n.
func nodeKey(n int) key.NodePublic {
	var k key.NodePublic
	if err := k.UnmarshalText([]byte(fmt.Sprintf("nodekey:%064x", n))); err != nil {
		panic(err)
	}
	return k
}

func peer(id int, name string) *tailcfg.Node {
	return &tailcfg.Node{
		ID:        tailcfg.NodeID(id),
		StableID:  tailcfg.StableNodeID(fmt.Sprintf("n%d", id)),
		Name:      name + ".example.ts.net.",
		User:      tailcfg.UserID(100 + id%2),
		Key:       nodeKey(id),
		Addresses: []netip.Prefix{netip.MustParsePrefix(fmt.Sprintf("100.64.0.%d/32", id))},
		Hostinfo:  (&tailcfg.Hostinfo{Hostname: name, OS: "linux"}).View(),
		Online:    new(true),
	}
}

// serve starts a bus and its LocalAPI on a socket in a temp dir, and a
// local.Client that talks to it the way the tailscale CLI does.
func serve(t *testing.T) (*meshring.Bus, *Server, *local.Client) {
	t.Helper()
	bus, err := meshring.NewBus(nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bus.Close() })
	path := filepath.Join(t.TempDir(), "run", "tailscaled.sock")
	srv, err := Serve(bus, path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return bus, srv, &local.Client{Socket: path, UseSocketOnly: true}
}

func baseNetmap(t *testing.T, bus *meshring.Bus) {
	t.Helper()
	self := peer(1, "self")
	resp := &tailcfg.MapResponse{
		Node:  self,
		Peers: []*tailcfg.Node{peer(2, "two"), peer(3, "three")},
		UserProfiles: []tailcfg.UserProfile{
			{ID: 100, LoginName: "alice@example.com", DisplayName: "Alice"},
			{ID: 101, LoginName: "bob@example.com", DisplayName: "Bob"},
		},
		Domain: "example.ts.net",
	}
	if err := ApplyMapResponse(bus, resp); err != nil {
		t.Fatal(err)
	}
	if err := bus.Publish([]byte(`{"State": 6}`)); err != nil {
		t.Fatal(err)
	}
}

func TestSocketIsServedLikeTailscaleds(t *testing.T) {
	bus, srv, _ := serve(t)
	fi, err := os.Stat(srv.Path())
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o666 || fi.Mode()&os.ModeSocket == 0 {
		t.Errorf("socket mode %v, want a socket with 0666", fi.Mode())
	}
	// A live socket is not taken over; a stale one is replaced.
	if _, err := Serve(bus, srv.Path()); err == nil || !strings.Contains(err.Error(), "address already in use") {
		t.Errorf("second Serve on a live socket: %v", err)
	}
	stale := filepath.Join(t.TempDir(), "stale.sock")
	ln, err := net.Listen("unix", stale)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	srv2, err := Serve(bus, stale)
	if err != nil {
		t.Fatalf("Serve over a stale socket: %v", err)
	}
	srv2.Close()
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("Close left the socket file: %v", err)
	}
}

func TestStatusThroughLocalClient(t *testing.T) {
	bus, _, lc := serve(t)
	baseNetmap(t, bus)
	ctx := context.Background()
	st, err := lc.Status(ctx)
	if err != nil {
		t.Fatalf("Status: %v", err)
	}
	if st.BackendState != "Running" || st.Self == nil || st.Self.ID != "n1" || st.Self.NodeID != 1 {
		t.Fatalf("Status = %+v", st)
	}
	if len(st.Peer) != 2 {
		t.Fatalf("Status.Peer has %d peers, want 2", len(st.Peer))
	}
	p := st.Peer[nodeKey(2)]
	if p == nil || p.HostName != "two" || p.DNSName != "two.example.ts.net." || !p.Online || len(p.TailscaleIPs) != 1 {
		t.Errorf("peer 2 = %+v", p)
	}
	if st.User[100].LoginName != "alice@example.com" || st.CurrentTailnet == nil || st.CurrentTailnet.Name != "example.ts.net" {
		t.Errorf("User %+v, CurrentTailnet %+v", st.User, st.CurrentTailnet)
	}
	lean, err := lc.StatusWithoutPeers(ctx)
	if err != nil {
		t.Fatalf("StatusWithoutPeers: %v", err)
	}
	if len(lean.Peer) != 0 || len(lean.User) != 1 {
		t.Errorf("without peers: %d peers, %d users", len(lean.Peer), len(lean.User))
	}
	n, err := lc.PeerByID(ctx, 3)
	if err != nil || n.Name != "three.example.ts.net." || n.ComputedName != "three" {
		t.Errorf("PeerByID(3) = %+v, %v", n, err)
	}
	if _, err := lc.PeerByID(ctx, 99); err == nil || !strings.Contains(err.Error(), "no peer with that NodeID") {
		t.Errorf("PeerByID(99): %v", err)
	}
}

// view is what a client rebuilds from its ipn.Notify stream.
type view struct {
	peers map[tailcfg.NodeID]*tailcfg.Node
}

func (v *view) apply(t *testing.T, n *ipn.Notify) {
	t.Helper()
	if n.NetMap != nil {
		v.peers = map[tailcfg.NodeID]*tailcfg.Node{}
		for _, p := range n.NetMap.Peers {
			v.peers[p.ID()] = p.AsStruct()
		}
	}
	for _, p := range n.PeersChanged {
		v.peers[p.ID] = p
	}
	for _, pc := range n.PeerChangedPatch {
		p, ok := v.peers[pc.NodeID]
		if !ok {
			t.Errorf("patch for unknown peer %d", pc.NodeID)
			continue
		}
		if pc.Online != nil {
			p.Online = new(*pc.Online)
		}
		if pc.LastSeen != nil {
			p.LastSeen = new(*pc.LastSeen)
		}
		if pc.DERPRegion != 0 {
			p.HomeDERP = pc.DERPRegion
		}
		if pc.Endpoints != nil {
			p.Endpoints = pc.Endpoints
		}
	}
	for _, id := range n.PeersRemoved {
		delete(v.peers, id)
	}
}

func (v *view) ids() string {
	var s []string
	for id := 1; id < 100; id++ {
		if _, ok := v.peers[tailcfg.NodeID(id)]; ok {
			s = append(s, fmt.Sprint(id))
		}
	}
	return strings.Join(s, ",")
}

func TestWatchIPNBusThroughLocalClient(t *testing.T) {
	bus, _, lc := serve(t)
	baseNetmap(t, bus)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	masks := []ipn.NotifyWatchOpt{
		ipn.NotifyInitialNetMap | ipn.NotifyPeerChanges,
		ipn.NotifyInitialNetMap | ipn.NotifyPeerPatches | ipn.NotifyInitialState,
		ipn.NotifyInitialState | ipn.NotifyPeerChanges,
	}
	const steps = 40
	var wg sync.WaitGroup
	results := make([]string, len(masks))
	for i, mask := range masks {
		w, err := lc.WatchIPNBus(ctx, mask)
		if err != nil {
			t.Fatalf("WatchIPNBus(%v): %v", mask, err)
		}
		defer w.Close()
		wg.Add(1)
		go func() {
			defer wg.Done()
			v := &view{peers: map[tailcfg.NodeID]*tailcfg.Node{}}
			if mask&ipn.NotifyInitialNetMap == 0 {
				// Without an initial netmap the client starts from the
				// peers it can see in the status.
				v.peers[2], v.peers[3] = peer(2, "two"), peer(3, "three")
			}
			for {
				n, err := w.Next()
				if err != nil {
					t.Errorf("%v: Next: %v", mask, err)
					return
				}
				if mask&ipn.NotifyInitialState != 0 && n.SessionID != "" && (n.State == nil || *n.State != ipn.Running) {
					t.Errorf("%v: first message %+v", mask, n)
				}
				v.apply(t, &n)
				if n.ErrMessage != nil && *n.ErrMessage == "done" {
					results[i] = v.ids()
					return
				}
			}
		}()
	}
	// Updates flow while the clients read.
	for i := 0; i < steps; i++ {
		id := 10 + i
		resp := &tailcfg.MapResponse{PeersChanged: []*tailcfg.Node{peer(id, fmt.Sprintf("p%d", id))}}
		if i%3 == 0 {
			resp.PeersRemoved = []tailcfg.NodeID{tailcfg.NodeID(id - 3)}
		}
		if i%4 == 0 {
			resp.PeersChangedPatch = []*tailcfg.PeerChange{{NodeID: 2, Online: new(i%8 == 0), DERPRegion: 1 + i%5}}
		}
		if err := ApplyMapResponse(bus, resp); err != nil {
			t.Fatal(err)
		}
	}
	if err := bus.Publish([]byte(`{"ErrMessage": "done"}`)); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	nm, err := bus.NetMap()
	if err != nil {
		t.Fatal(err)
	}
	var store struct{ Peers []struct{ ID int } }
	json.Unmarshal(nm, &store)
	var want []string
	for _, p := range store.Peers {
		want = append(want, fmt.Sprint(p.ID))
	}
	for i, got := range results {
		if got != strings.Join(want, ",") {
			t.Errorf("%v rebuilt peers %s, bus has %s", masks[i], got, strings.Join(want, ","))
		}
	}
}

func TestRefusedMasksAsTailscaledRefusesThem(t *testing.T) {
	_, _, lc := serve(t)
	ctx := context.Background()
	for _, mask := range []ipn.NotifyWatchOpt{
		ipn.NotifyRateLimit | ipn.NotifyPeerChanges,
		ipn.NotifyInProcessNoDisconnect,
	} {
		if w, err := lc.WatchIPNBus(ctx, mask); err == nil || !strings.Contains(err.Error(), "400") {
			if w != nil {
				w.Close()
			}
			t.Errorf("WatchIPNBus(%v): %v, want 400 Bad Request", mask, err)
		}
	}
}

func TestRawHTTPRulesOfTheLocalAPI(t *testing.T) {
	bus, srv, _ := serve(t)
	baseNetmap(t, bus)
	client := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", srv.Path())
	}}}
	get := func(url string, hdr map[string]string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", url, nil)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		res, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var b strings.Builder
		buf := make([]byte, 4096)
		for {
			n, err := res.Body.Read(buf)
			b.Write(buf[:n])
			if err != nil {
				break
			}
		}
		return res, b.String()
	}
	res, body := get("http://local-tailscaled.sock/localapi/v0/watch-ipn-bus?mask=x", nil)
	if res.StatusCode != 400 || body != "bad mask\n" {
		t.Errorf("mask=x: %d %q", res.StatusCode, body)
	}
	res, body = get("http://local-tailscaled.sock/localapi/v0/watch-ipn-bus?mask=4352", nil) // RateLimit|PeerChanges
	if res.StatusCode != 400 || !strings.HasPrefix(body, "NotifyRateLimit is incompatible with new-style IPN bus subscription bits ipn.NotifyPeerChanges") {
		t.Errorf("mask=4352: %d %q", res.StatusCode, body)
	}
	if res.Header.Get("Tailscale-Cap") != fmt.Sprint(tailcfg.CurrentCapabilityVersion) || res.Header.Get("Tailscale-Version") == "" {
		t.Errorf("headers %v", res.Header)
	}
	for _, hdr := range []map[string]string{{"Referer": "http://evil.example/"}, {"Origin": "http://evil.example"}} {
		if res, _ := get("http://local-tailscaled.sock/localapi/v0/status", hdr); res.StatusCode != 403 {
			t.Errorf("%v: %d, want 403", hdr, res.StatusCode)
		}
	}
	if res, _ := get("http://evil.example/localapi/v0/status", nil); res.StatusCode != 403 {
		t.Errorf("foreign Host: %d, want 403", res.StatusCode)
	}
	res, body = get("http://local-tailscaled.sock/localapi/v0/status?peers=false", nil)
	if res.StatusCode != 200 || !strings.Contains(body, "\n\t\"BackendState\": \"Running\"") {
		t.Errorf("status: %d %q", res.StatusCode, body[:min(len(body), 200)])
	}
	if res, _ := get("http://local-tailscaled.sock/localapi/v0/nope", nil); res.StatusCode != 404 {
		t.Errorf("unknown endpoint: %d", res.StatusCode)
	}
	if res, body := get("http://local-tailscaled.sock/localapi/v0/peer-by-id?id=-1", nil); res.StatusCode != 400 || body != "invalid 'id' parameter\n" {
		t.Errorf("peer-by-id bad id: %d %q", res.StatusCode, body)
	}
}

// The Handler refuses everything on a connection that is no unix socket
// (tailscaled grants read access to unix-socket peers only).
func TestHandlerOffTheSocketRefusesEverything(t *testing.T) {
	bus, err := meshring.NewBus(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer bus.Close()
	ts := httptest.NewServer(&Handler{Bus: bus})
	defer ts.Close()
	for _, path := range []string{"/localapi/v0/status", "/localapi/v0/watch-ipn-bus?mask=0", "/localapi/v0/peer-by-id?id=1"} {
		req, _ := http.NewRequest("GET", ts.URL+path, nil)
		req.Host = "local-tailscaled.sock"
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != 403 {
			t.Errorf("%s over TCP: %d, want 403", path, res.StatusCode)
		}
	}
}

func TestDecodeNotifyIsStrict(t *testing.T) {
	if _, err := DecodeNotify([]byte(`{"Version":"1","InitialComplete":true}`)); err == nil {
		t.Error("a field ipn.Notify lacks was accepted")
	}
	n, err := DecodeNotify([]byte(`{"Version":"1","PeersRemoved":[3]}`))
	if err != nil || len(n.PeersRemoved) != 1 {
		t.Errorf("DecodeNotify: %+v, %v", n, err)
	}
}
