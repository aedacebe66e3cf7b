package xds_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	rsrc "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/envoyproxy/go-control-plane/pkg/server/stream/v3"
	"google.golang.org/protobuf/proto"
)

func deltaReq(typ, nonce string) *discovery.DeltaDiscoveryRequest {
	return &discovery.DeltaDiscoveryRequest{Node: &core.Node{Id: nodeKey}, TypeUrl: typ, ResponseNonce: nonce}
}

// Wildcard delta watches get every resource; explicit ones after that only
// changes of what they subscribe to.
func TestSnapshotCacheDeltaWatch(t *testing.T) {
	c := newCache(t, false)
	chans, subs := openDeltaWildcards(t, c)
	snap := makeSnapshot(t, version1)
	if err := c.SetSnapshot(context.Background(), nodeKey, snap); err != nil {
		t.Fatal(err)
	}
	for _, typ := range testTypes {
		resp := recv(t, chans[typ], typ)
		got := decodeDelta(t, resp)
		sameResources(t, typ, got.res, wantOf(snap, typ, nil))
		if got.systemVersion != version1 {
			t.Fatalf("%s: system version %q, want %q", typ, got.systemVersion, version1)
		}
		if len(got.removed) != 0 {
			t.Fatalf("%s: removed %v", typ, got.removed)
		}
		subs[typ].SetReturnedResources(resp.GetNextVersionMap())
	}

	// Explicit subscriptions from now on (wildcard dropped where names exist).
	for _, typ := range testTypes {
		chans[typ] = make(chan cache.DeltaResponse, 1)
		req := deltaReq(typ, "nonce")
		if len(names[typ]) > 0 {
			subs[typ].UpdateResourceSubscriptions(names[typ], []string{"*"})
			req.ResourceNamesSubscribe = names[typ]
			req.ResourceNamesUnsubscribe = []string{"*"}
		}
		if _, err := c.CreateDeltaWatch(req, *subs[typ], chans[typ]); err != nil {
			t.Fatal(err)
		}
	}
	if n := c.GetStatusInfo(nodeKey).GetNumDeltaWatches(); n != len(testTypes) {
		t.Fatalf("GetNumDeltaWatches = %d, want %d", n, len(testTypes))
	}
	noneWaiting(t, chans, testTypes, "up-to-date delta watch answered")

	// A changed endpoint: only its watch answers, with that resource alone.
	snap2 := withNewEndpoint(t)
	if err := c.SetSnapshot(context.Background(), nodeKey, snap2); err != nil {
		t.Fatal(err)
	}
	resp := recv(t, chans[rsrc.EndpointType], "changed endpoint")
	got := decodeDelta(t, resp)
	sameResources(t, "changed endpoint", got.res, wantOf(snap2, rsrc.EndpointType, nil))
	if old := subs[rsrc.EndpointType].ReturnedResources()[clusterName]; got.versions[clusterName] == old {
		t.Fatalf("resource version %q did not change", old)
	}
	waitFor(t, "other delta watches stay open", func() bool {
		return c.GetStatusInfo(nodeKey).GetNumDeltaWatches() == len(testTypes)-1
	})

	// A resource outside an explicit subscription does not wake it.
	rreq := deltaReq(rsrc.RouteType, "nonce2")
	rch := make(chan cache.DeltaResponse, 1)
	// (the route watch from above is still open; replace it)
	snap3 := makeSnapshot(t, version2)
	snap3.Resources[types.Route] = cache.NewResources(version2, []types.Resource{makeRoute(routeName, "*", clusterName), makeRoute("other", "*", clusterName)})
	if _, err := c.CreateDeltaWatch(rreq, *subs[rsrc.RouteType], rch); err != nil {
		t.Fatal(err)
	}
	if err := c.SetSnapshot(context.Background(), nodeKey, snap3); err != nil {
		t.Fatal(err)
	}
	noRecv(t, rch, "unsubscribed route added")
	// The wildcard cluster watch, by contrast, is woken by a new cluster.
	snap4 := makeSnapshot(t, version2)
	snap4.Resources[types.Cluster] = cache.NewResources("z", []types.Resource{makeCluster(clusterName), makeCluster("c2")})
	if err := c.SetSnapshot(context.Background(), nodeKey, snap4); err != nil {
		t.Fatal(err)
	}
	got = decodeDelta(t, recv(t, chans[rsrc.ClusterType], "wildcard: new cluster"))
	if keys(got.res)[0] != "c2" || len(got.res) != 1 {
		t.Fatalf("wildcard delta after a new cluster: %v, want [c2]", keys(got.res))
	}
}

// A first wildcard delta request is answered even when there is nothing,
// so that clients finish initialising; later ones wait.
func TestDeltaFirstWildcardAnsweredEmpty(t *testing.T) {
	c := newCache(t, false)
	snap, _ := cache.NewSnapshot(version1, map[rsrc.Type][]types.Resource{rsrc.ClusterType: {makeCluster(clusterName)}})
	if err := c.SetSnapshot(context.Background(), nodeKey, snap); err != nil {
		t.Fatal(err)
	}
	ch := make(chan cache.DeltaResponse, 1)
	if _, err := c.CreateDeltaWatch(deltaReq(rsrc.SecretType, ""), stream.NewDeltaSubscription(nil, nil, nil, true), ch); err != nil {
		t.Fatal(err)
	}
	got := decodeDelta(t, recv(t, ch, "first wildcard"))
	if len(got.res) != 0 || len(got.removed) != 0 {
		t.Fatalf("first wildcard on an empty type: %+v", got)
	}
	cancel, err := c.CreateDeltaWatch(deltaReq(rsrc.SecretType, "n"), stream.NewDeltaSubscription(nil, nil, nil, true), ch)
	if err != nil {
		t.Fatal(err)
	}
	noRecv(t, ch, "later wildcard on an empty type")
	cancel()
}

func TestDeltaRemoveResources(t *testing.T) {
	c := newCache(t, false)
	chans, subs := openDeltaWildcards(t, c)
	snap := makeSnapshot(t, version1)
	if err := c.SetSnapshot(context.Background(), nodeKey, snap); err != nil {
		t.Fatal(err)
	}
	for _, typ := range testTypes {
		resp := recv(t, chans[typ], typ)
		sameResources(t, typ, decodeDelta(t, resp).res, wantOf(snap, typ, nil))
		subs[typ].SetReturnedResources(resp.GetNextVersionMap())
	}
	for _, typ := range testTypes {
		chans[typ] = make(chan cache.DeltaResponse, 1)
		if _, err := c.CreateDeltaWatch(deltaReq(typ, "nonce"), *subs[typ], chans[typ]); err != nil {
			t.Fatal(err)
		}
	}
	// No endpoints any more: the stream is told to remove the one it has.
	snap2 := makeSnapshot(t, version1)
	snap2.Resources[types.Endpoint] = cache.NewResources(version2, []types.Resource{})
	if err := c.SetSnapshot(context.Background(), nodeKey, snap2); err != nil {
		t.Fatal(err)
	}
	resp := recv(t, chans[rsrc.EndpointType], "endpoint removal")
	got := decodeDelta(t, resp)
	if len(got.res) != 0 || fmt.Sprint(got.removed) != "["+clusterName+"]" {
		t.Fatalf("removal: resources %v removed %v, want none and [%s]", keys(got.res), got.removed, clusterName)
	}
	if len(got.next) != 0 {
		t.Fatalf("next version map after removal = %v, want empty", got.next)
	}
}

func TestConcurrentSetDeltaWatch(t *testing.T) {
	c := newCache(t, false)
	var wg sync.WaitGroup
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			id := fmt.Sprintf("node-%d", i%25)
			if i < 25 {
				snap := &cache.Snapshot{}
				snap.Resources[types.Endpoint] = cache.NewResources(fmt.Sprintf("v%d", i), []types.Resource{makeEndpoint(clusterName, "127.0.0.1", uint32(i))})
				if err := c.SetSnapshot(context.Background(), id, snap); err != nil {
					t.Errorf("SetSnapshot: %v", err)
				}
				return
			}
			req := &discovery.DeltaDiscoveryRequest{Node: &core.Node{Id: id}, TypeUrl: rsrc.EndpointType, ResourceNamesSubscribe: []string{clusterName}}
			ch := make(chan cache.DeltaResponse, 1)
			cancel, err := c.CreateDeltaWatch(req, stream.NewDeltaSubscription([]string{clusterName}, nil, nil, true), ch)
			if err != nil {
				t.Errorf("CreateDeltaWatch: %v", err)
				return
			}
			defer cancel()
			select {
			case resp := <-ch:
				if len(resp.GetNextVersionMap()) != 1 {
					t.Errorf("%s: next version map %v", id, resp.GetNextVersionMap())
				}
			case <-time.After(waitLong):
				t.Errorf("%s: no delta response", id)
			}
		}(i)
	}
	wg.Wait()
}

// A delta watch whose channel is not read within SetSnapshot's context
// stays open and is answered by the next SetSnapshot.
func TestSnapshotDeltaCacheWatchTimeout(t *testing.T) {
	c := newCache(t, true)
	blocked := make(chan cache.DeltaResponse)
	if _, err := c.CreateDeltaWatch(deltaReq(rsrc.EndpointType, ""), stream.NewDeltaSubscription(nil, nil, nil, true), blocked); err != nil {
		t.Fatal(err)
	}
	ctx, cancelCtx := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancelCtx()
	if err := c.SetSnapshot(ctx, nodeKey, makeSnapshot(t, version1)); !errors.Is(err, context.Canceled) {
		t.Fatalf("SetSnapshot on an unread channel = %v, want context.Canceled", err)
	}
	got := make(chan cache.DeltaResponse, 1)
	go func() { got <- <-blocked }()
	if err := c.SetSnapshot(context.Background(), nodeKey, makeSnapshot(t, version1)); err != nil {
		t.Fatal(err)
	}
	d := decodeDelta(t, recv(t, got, "late delta reader"))
	if len(d.res) != 1 {
		t.Fatalf("late delta reader got %v", keys(d.res))
	}
}

func TestSnapshotCacheDeltaWatchCancel(t *testing.T) {
	c := newCache(t, true)
	chans := map[string]chan cache.DeltaResponse{}
	for _, typ := range testTypes {
		chans[typ] = make(chan cache.DeltaResponse, 1)
		cancel, err := c.CreateDeltaWatch(deltaReq(typ, "nonce"), stream.NewDeltaSubscription(nil, nil, nil, true), chans[typ])
		if err != nil {
			t.Fatal(err)
		}
		cancel()
	}
	if n := c.GetStatusInfo(nodeKey).GetNumDeltaWatches(); n != 0 {
		t.Fatalf("GetNumDeltaWatches after cancel = %d, want 0", n)
	}
	// Cancelled watches are not answered by later snapshots.
	if err := c.SetSnapshot(context.Background(), nodeKey, makeSnapshot(t, version1)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(waitShort)
	noneWaiting(t, chans, testTypes, "cancelled delta watch answered")
}

// A node's next snapshot reuses the bytes of the resources that are the
// very same values and marshals the rest: a delta stream gets exactly the
// new value, SOTW every resource as it now is.
func TestUnchangedValuesKeepTheirBytes(t *testing.T) {
	c := newCache(t, false)
	a, b1, b2 := makeEndpoint("a", "10.0.0.1", 1), makeEndpoint("b", "10.0.0.2", 2), makeEndpoint("b", "10.0.0.3", 3)
	set := func(v string, res ...types.Resource) {
		t.Helper()
		s, err := cache.NewSnapshot(v, map[rsrc.Type][]types.Resource{rsrc.EndpointType: res})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.SetSnapshot(context.Background(), nodeKey, s); err != nil {
			t.Fatal(err)
		}
	}
	set("1", a, b1)
	ch := make(chan cache.DeltaResponse, 1)
	sub := stream.NewDeltaSubscription(nil, nil, nil, true)
	if _, err := c.CreateDeltaWatch(deltaReq(rsrc.EndpointType, ""), sub, ch); err != nil {
		t.Fatal(err)
	}
	first := decodeDelta(t, recv(t, ch, "first delta"))
	sub.SetReturnedResources(first.next)
	if _, err := c.CreateDeltaWatch(deltaReq(rsrc.EndpointType, "1"), sub, ch); err != nil {
		t.Fatal(err)
	}
	set("2", a, b2) // a: the same value; b: a new one
	got := decodeDelta(t, recv(t, ch, "delta of the change"))
	if len(got.res) != 1 || !proto.Equal(got.res["b"], b2) {
		t.Fatalf("delta %v, want just the new b", keys(got.res))
	}
	if got.next["a"] != first.next["a"] || got.next["b"] == first.next["b"] {
		t.Fatalf("versions: a %q -> %q (want kept), b %q -> %q (want new)", first.next["a"], got.next["a"], first.next["b"], got.next["b"])
	}
	r, err := c.Fetch(context.Background(), &discovery.DiscoveryRequest{Node: &core.Node{Id: nodeKey}, TypeUrl: rsrc.EndpointType})
	if err != nil {
		t.Fatal(err)
	}
	sotw := decodeSotw(t, r)
	if !proto.Equal(sotw.res["a"], a) || !proto.Equal(sotw.res["b"], b2) {
		t.Fatalf("fetch serves %v, want a as set and the new b", sotw.res)
	}
}
