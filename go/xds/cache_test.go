package xds_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
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
	"google.golang.org/protobuf/types/known/durationpb"

	meshring "github.com/meshring/meshring/go"
	"github.com/meshring/meshring/go/xds"
)

func TestSnapshotSetGetClear(t *testing.T) {
	c := newCache(t, true)
	if _, err := c.GetSnapshot(nodeKey); err == nil {
		t.Fatal("GetSnapshot before SetSnapshot: want an error")
	}
	snap := makeSnapshot(t, version1)
	if err := c.SetSnapshot(context.Background(), nodeKey, snap); err != nil {
		t.Fatal(err)
	}
	got, err := c.GetSnapshot(nodeKey)
	if err != nil {
		t.Fatal(err)
	}
	if got != cache.ResourceSnapshot(snap) {
		t.Fatalf("GetSnapshot returned %p, want the snapshot set (%p)", got, snap)
	}
	// A watch gives the node a status; ClearSnapshot removes both.
	req := &discovery.DiscoveryRequest{TypeUrl: rsrc.ClusterType, VersionInfo: version1}
	sub := subFromRequest(req)
	sub.SetReturnedResources(map[string]string{}) // behind: answered at once
	ch := make(chan cache.Response, 1)
	if _, err := c.CreateWatch(req, sub, ch); err != nil {
		t.Fatal(err)
	}
	recv(t, ch, "cluster watch")
	if keys := c.GetStatusKeys(); len(keys) != 1 || keys[0] != nodeKey {
		t.Fatalf("GetStatusKeys = %v, want [%s]", keys, nodeKey)
	}
	c.ClearSnapshot(nodeKey)
	if _, err := c.GetSnapshot(nodeKey); err == nil {
		t.Fatal("GetSnapshot after ClearSnapshot: want an error")
	}
	if info := c.GetStatusInfo(nodeKey); info != nil {
		t.Fatalf("GetStatusInfo after ClearSnapshot = %v, want nil", info)
	}
	if keys := c.GetStatusKeys(); len(keys) != 0 {
		t.Fatalf("GetStatusKeys after ClearSnapshot = %v, want none", keys)
	}
}

// A watch behind the snapshot's version is answered at once with the
// requested resources of its type; in ADS mode a request that does not name
// every resource of its type is held.
func TestSnapshotCacheWatchAnsweredAtOnce(t *testing.T) {
	c := newCache(t, true)
	snap := makeSnapshot(t, version1)
	if err := c.SetSnapshot(context.Background(), nodeKey, snap); err != nil {
		t.Fatal(err)
	}
	ch := make(chan cache.Response, 1)
	req := &discovery.DiscoveryRequest{TypeUrl: rsrc.EndpointType, ResourceNames: []string{"none"}}
	if _, err := c.CreateWatch(req, subFromRequest(req), ch); err != nil {
		t.Fatal(err)
	}
	noRecv(t, ch, "endpoints with mismatched names (ADS)")

	for _, typ := range testTypes {
		t.Run(typ, func(t *testing.T) {
			ch := make(chan cache.Response, 1)
			req := &discovery.DiscoveryRequest{TypeUrl: typ, ResourceNames: names[typ]}
			if _, err := c.CreateWatch(req, subFromRequest(req), ch); err != nil {
				t.Fatal(err)
			}
			resp := recv(t, ch, typ)
			got := decodeSotw(t, resp)
			if got.version != version1 || got.typeURL != typ {
				t.Fatalf("version %q type %q, want %q %q", got.version, got.typeURL, version1, typ)
			}
			if resp.GetRequest() != req {
				t.Fatal("GetRequest is not the watch's request")
			}
			sameResources(t, typ, got.res, wantOf(snap, typ, nil))
			if len(resp.GetReturnedResources()) != len(got.res) {
				t.Fatalf("returned resources %v for resources %v", resp.GetReturnedResources(), keys(got.res))
			}
		})
	}
}

// ADS superset rule: a watch naming a subset of the type's resources stays
// open; once it names all of them it is answered.
func TestADSSuperset(t *testing.T) {
	for _, ads := range []bool{true, false} {
		t.Run(fmt.Sprintf("ads=%v", ads), func(t *testing.T) {
			c := newCache(t, ads)
			snap, err := cache.NewSnapshot(version1, map[rsrc.Type][]types.Resource{
				rsrc.EndpointType: {makeEndpoint("a", "127.0.0.1", 1), makeEndpoint("b", "127.0.0.1", 2)},
			})
			if err != nil {
				t.Fatal(err)
			}
			if err := c.SetSnapshot(context.Background(), nodeKey, snap); err != nil {
				t.Fatal(err)
			}
			ch := make(chan cache.Response, 1)
			req := &discovery.DiscoveryRequest{TypeUrl: rsrc.EndpointType, ResourceNames: []string{"a"}}
			cancel, err := c.CreateWatch(req, subFromRequest(req), ch)
			if err != nil {
				t.Fatal(err)
			}
			if ads {
				noRecv(t, ch, "subset in ADS mode")
				cancel()
				req = &discovery.DiscoveryRequest{TypeUrl: rsrc.EndpointType, ResourceNames: []string{"a", "b"}}
				if _, err := c.CreateWatch(req, subFromRequest(req), ch); err != nil {
					t.Fatal(err)
				}
				got := decodeSotw(t, recv(t, ch, "superset in ADS mode"))
				sameResources(t, "superset", got.res, wantOf(snap, rsrc.EndpointType, nil))
			} else {
				got := decodeSotw(t, recv(t, ch, "subset without ADS"))
				sameResources(t, "subset", got.res, wantOf(snap, rsrc.EndpointType, []string{"a"}))
			}
		})
	}
}

// Watches opened before any snapshot are answered by SetSnapshot; watches
// at the current version stay open until their type changes.
func TestSnapshotCacheWatch(t *testing.T) {
	c := newCache(t, true)
	chans := map[string]chan cache.Response{}
	subs := map[string]*stream.Subscription{}
	reqs := map[string]*cache.Request{}
	for _, typ := range testTypes {
		reqs[typ] = &discovery.DiscoveryRequest{TypeUrl: typ, ResourceNames: names[typ]}
		sub := subFromRequest(reqs[typ])
		subs[typ] = &sub
		chans[typ] = make(chan cache.Response, 1)
		if _, err := c.CreateWatch(reqs[typ], sub, chans[typ]); err != nil {
			t.Fatal(err)
		}
	}
	if n := c.GetStatusInfo(nodeKey).GetNumWatches(); n != len(testTypes) {
		t.Fatalf("GetNumWatches = %d, want %d", n, len(testTypes))
	}
	snap := makeSnapshot(t, version1)
	if err := c.SetSnapshot(context.Background(), nodeKey, snap); err != nil {
		t.Fatal(err)
	}
	for _, typ := range testTypes {
		resp := recv(t, chans[typ], typ)
		got := decodeSotw(t, resp)
		if got.version != version1 {
			t.Fatalf("%s: version %q, want %q", typ, got.version, version1)
		}
		sameResources(t, typ, got.res, wantOf(snap, typ, nil))
		ackSotw(resp, subs[typ], reqs[typ])
	}

	// Up to date: the new watches stay open.
	for _, typ := range testTypes {
		chans[typ] = make(chan cache.Response, 1)
		if _, err := c.CreateWatch(reqs[typ], *subs[typ], chans[typ]); err != nil {
			t.Fatal(err)
		}
	}
	if n := c.GetStatusInfo(nodeKey).GetNumWatches(); n != len(testTypes) {
		t.Fatalf("GetNumWatches = %d, want %d", n, len(testTypes))
	}
	noneWaiting(t, chans, testTypes, "up-to-date watch answered")

	// Only the endpoints change: only their watch is answered.
	snap2 := withNewEndpoint(t)
	if err := c.SetSnapshot(context.Background(), nodeKey, snap2); err != nil {
		t.Fatal(err)
	}
	got := decodeSotw(t, recv(t, chans[rsrc.EndpointType], "endpoints after change"))
	if got.version != version2 {
		t.Fatalf("endpoints version %q, want %q", got.version, version2)
	}
	sameResources(t, "endpoints", got.res, wantOf(snap2, rsrc.EndpointType, nil))
	waitFor(t, "watches other than endpoints stay open", func() bool {
		return c.GetStatusInfo(nodeKey).GetNumWatches() == len(testTypes)-1
	})
	noneWaiting(t, chans, testTypes[1:], "unchanged type answered")
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLong)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, waitLong)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestConcurrentSetWatch(t *testing.T) {
	c := newCache(t, false)
	var wg sync.WaitGroup
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			id := fmt.Sprintf("node-%d", i%25) // every node gets a setter and a watcher
			if i < 25 {
				snap := &cache.Snapshot{}
				snap.Resources[types.Endpoint] = cache.NewResources(fmt.Sprintf("v%d", i), []types.Resource{makeEndpoint(clusterName, "127.0.0.1", uint32(i))})
				if err := c.SetSnapshot(context.Background(), id, snap); err != nil {
					t.Errorf("SetSnapshot %s: %v", id, err)
				}
				return
			}
			req := &discovery.DiscoveryRequest{Node: &core.Node{Id: id}, TypeUrl: rsrc.EndpointType}
			ch := make(chan cache.Response, 1)
			cancel, err := c.CreateWatch(req, subFromRequest(req), ch)
			if err != nil {
				t.Errorf("CreateWatch %s: %v", id, err)
				return
			}
			defer cancel()
			select {
			case resp := <-ch:
				if v := resp.GetResponseVersion(); v != fmt.Sprintf("v%d", i%25) {
					t.Errorf("%s: version %q", id, v)
				}
			case <-time.After(waitLong):
				t.Errorf("%s: no response", id)
			}
		}(i)
	}
	wg.Wait()
}

func TestSnapshotCacheWatchCancel(t *testing.T) {
	c := newCache(t, true)
	for _, typ := range testTypes {
		req := &discovery.DiscoveryRequest{TypeUrl: typ, ResourceNames: names[typ]}
		ch := make(chan cache.Response, 1)
		cancel, err := c.CreateWatch(req, subFromRequest(req), ch)
		if err != nil {
			t.Fatal(err)
		}
		cancel()
		cancel() // idempotent
	}
	if len(c.GetStatusKeys()) == 0 {
		t.Fatal("no status for the node after its watches")
	}
	if n := c.GetStatusInfo(nodeKey).GetNumWatches(); n != 0 {
		t.Fatalf("GetNumWatches after cancel = %d, want 0", n)
	}
	if info := c.GetStatusInfo("missing"); info != nil {
		t.Fatalf("GetStatusInfo(missing) = %#v, want nil", info)
	}
}

// SetSnapshot waits for a watch's channel to take its answer until its
// context ends, then returns context.Canceled and keeps the watch open: the
// next SetSnapshot answers it, with that call's context. A watch stuck on a
// channel nobody reads is released by cancel without sending.
func TestSnapshotCacheWatchTimeout(t *testing.T) {
	c := newCache(t, true)
	blocked := make(chan cache.Response) // unbuffered, nobody reading yet
	req := &discovery.DiscoveryRequest{TypeUrl: rsrc.EndpointType, ResourceNames: names[rsrc.EndpointType]}
	if _, err := c.CreateWatch(req, subFromRequest(req), blocked); err != nil {
		t.Fatal(err)
	}
	ctx, cancelCtx := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancelCtx()
	if err := c.SetSnapshot(ctx, nodeKey, makeSnapshot(t, version1)); !errors.Is(err, context.Canceled) {
		t.Fatalf("SetSnapshot on an unread channel = %v, want context.Canceled", err)
	}
	if n := c.GetStatusInfo(nodeKey).GetNumWatches(); n != 1 {
		t.Fatalf("watches after a timed-out answer = %d, want 1 (kept open)", n)
	}
	type ctxKey struct{}
	got := make(chan cache.Response, 1)
	go func() { got <- <-blocked }()
	if err := c.SetSnapshot(context.WithValue(context.Background(), ctxKey{}, "retry"), nodeKey, makeSnapshot(t, version1)); err != nil {
		t.Fatal(err)
	}
	resp := recv(t, got, "retried answer")
	if v := resp.GetContext().Value(ctxKey{}); v != "retry" {
		t.Fatalf("answer context value %v, want the retrying SetSnapshot's", v)
	}
	if d := decodeSotw(t, resp); d.version != version1 {
		t.Fatalf("version %q, want %q", d.version, version1)
	}

	// Stuck on a full channel, then cancelled: cancel returns, nothing is sent.
	req2 := &discovery.DiscoveryRequest{TypeUrl: rsrc.ClusterType}
	full := make(chan cache.Response)
	cancel, err := c.CreateWatch(req2, subFromRequest(req2), full)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	done := make(chan struct{})
	go func() { cancel(); close(done) }()
	select {
	case <-done:
	case <-time.After(waitLong):
		t.Fatal("cancel blocked on a watch with an unread answer")
	}
	noRecv(t, full, "cancelled watch")
}

func TestSnapshotCreateWatchWithResourcePreviouslyNotRequested(t *testing.T) {
	const cluster2 = "cluster2"
	c := newCache(t, false)
	snap, err := cache.NewSnapshot(version1, map[rsrc.Type][]types.Resource{
		rsrc.EndpointType: {makeEndpoint(clusterName, "127.0.0.1", 8080), makeEndpoint(cluster2, "127.0.0.1", 8081)},
		rsrc.ClusterType:  {makeCluster(clusterName), makeCluster(cluster2)},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.SetSnapshot(context.Background(), nodeKey, snap); err != nil {
		t.Fatal(err)
	}
	ch := make(chan cache.Response, 1)
	req := &discovery.DiscoveryRequest{TypeUrl: rsrc.EndpointType, ResourceNames: []string{clusterName}}
	sub := subFromRequest(req)
	if _, err := c.CreateWatch(req, sub, ch); err != nil {
		t.Fatal(err)
	}
	resp := recv(t, ch, "first name")
	got := decodeSotw(t, resp)
	sameResources(t, "first name", got.res, wantOf(snap, rsrc.EndpointType, []string{clusterName}))
	ackSotw(resp, &sub, req)

	// Same version, one more name: answered at once with the new name (the
	// endpoints type is not full-state, so the known one may be left out).
	req2 := &discovery.DiscoveryRequest{TypeUrl: rsrc.EndpointType, VersionInfo: version1, ResourceNames: []string{clusterName, cluster2}}
	sub.SetResourceSubscription(req2.ResourceNames)
	if _, err := c.CreateWatch(req2, sub, ch); err != nil {
		t.Fatal(err)
	}
	resp = recv(t, ch, "added name")
	got = decodeSotw(t, resp)
	if got.version != version1 {
		t.Fatalf("version %q, want %q", got.version, version1)
	}
	if _, ok := got.res[cluster2]; !ok {
		t.Fatalf("added name: got %v, want %s among them", keys(got.res), cluster2)
	}
	for name, m := range got.res {
		if !proto.Equal(m, wantOf(snap, rsrc.EndpointType, nil)[name]) {
			t.Fatalf("resource %q differs", name)
		}
	}
	ackSotw(resp, &sub, req2)
	if rr := sub.ReturnedResources(); len(rr) != 2 {
		t.Fatalf("returned resources after the second answer: %v, want both names", rr)
	}

	// Again with both returned: the watch stays open.
	cancel, err := c.CreateWatch(req2, sub, ch)
	if err != nil {
		t.Fatal(err)
	}
	noRecv(t, ch, "all names returned")
	if n := c.GetStatusInfo(nodeKey).GetNumWatches(); n != 1 {
		t.Fatalf("GetNumWatches = %d, want 1", n)
	}
	cancel()

	// Wildcard clusters (full-state): a cluster new to the stream at the
	// same version is answered with every cluster.
	creq := &discovery.DiscoveryRequest{TypeUrl: rsrc.ClusterType, VersionInfo: version1}
	csub := subFromRequest(creq)
	csub.SetReturnedResources(map[string]string{clusterName: "stale"})
	if _, err := c.CreateWatch(creq, csub, ch); err != nil {
		t.Fatal(err)
	}
	got = decodeSotw(t, recv(t, ch, "wildcard with an unreturned cluster"))
	sameResources(t, "clusters", got.res, wantOf(snap, rsrc.ClusterType, nil))
}

func TestSnapshotCacheFetch(t *testing.T) {
	c := newCache(t, true)
	snap := makeSnapshot(t, version1)
	if err := c.SetSnapshot(context.Background(), nodeKey, snap); err != nil {
		t.Fatal(err)
	}
	for _, typ := range testTypes {
		resp, err := c.Fetch(context.Background(), &discovery.DiscoveryRequest{TypeUrl: typ, ResourceNames: names[typ]})
		if err != nil {
			t.Fatalf("%s: %v", typ, err)
		}
		got := decodeSotw(t, resp)
		if got.version != version1 {
			t.Fatalf("%s: version %q, want %q", typ, got.version, version1)
		}
		sameResources(t, typ, got.res, wantOf(snap, typ, names[typ]))
	}
	resp, err := c.Fetch(context.Background(), &discovery.DiscoveryRequest{TypeUrl: rsrc.ClusterType, Node: &core.Node{Id: "oof"}})
	if err == nil || resp != nil {
		t.Fatalf("fetch for a node without snapshot = %v, %v; want nil and an error", resp, err)
	}
	resp, err = c.Fetch(context.Background(), &discovery.DiscoveryRequest{TypeUrl: rsrc.ClusterType, VersionInfo: version1})
	var skip *types.SkipFetchError
	if !errors.As(err, &skip) || resp != nil {
		t.Fatalf("fetch at the latest version = %v, %v; want nil and *types.SkipFetchError", resp, err)
	}
}

// durationSnapshot is a ResourceSnapshot of one resource of a type
// go-control-plane does not know, listing it through xds.TypeURLLister.
type durationSnapshot struct{}

var durationType = "type.googleapis.com/" + string(proto.MessageName(&durationpb.Duration{}))

func (durationSnapshot) TypeURLs() []string { return []string{durationType} }
func (durationSnapshot) GetVersion(typeURL string) string {
	if typeURL == durationType {
		return "version-one"
	}
	return ""
}
func (s durationSnapshot) GetResourcesAndTTL(typeURL string) map[string]types.ResourceWithTTL {
	if typeURL != durationType {
		return nil
	}
	return map[string]types.ResourceWithTTL{"one-second": {Resource: durationpb.New(time.Second)}}
}
func (s durationSnapshot) GetResources(typeURL string) map[string]types.Resource {
	out := map[string]types.Resource{}
	for k, v := range s.GetResourcesAndTTL(typeURL) {
		out[k] = v.Resource
	}
	return out
}
func (durationSnapshot) ConstructVersionMap() error                     { return nil }
func (durationSnapshot) GetVersionMap(typeURL string) map[string]string { return nil }

var _ xds.TypeURLLister = durationSnapshot{}

func TestCustomResourceSnapshotFetch(t *testing.T) {
	c := newCache(t, true)
	if err := c.SetSnapshot(context.Background(), nodeKey, durationSnapshot{}); err != nil {
		t.Fatal(err)
	}
	resp, err := c.Fetch(context.Background(), &discovery.DiscoveryRequest{TypeUrl: durationType, ResourceNames: []string{"one-second"}})
	if err != nil {
		t.Fatal(err)
	}
	dr, _ := resp.GetDiscoveryResponse()
	if dr.GetVersionInfo() != "version-one" || len(dr.GetResources()) != 1 {
		t.Fatalf("fetch = %v", dr)
	}
	var d durationpb.Duration
	if err := dr.GetResources()[0].UnmarshalTo(&d); err != nil || d.AsDuration() != time.Second {
		t.Fatalf("resource = %v (%v), want 1s", d.AsDuration(), err)
	}
}

func TestStatusInfo(t *testing.T) {
	c := newCache(t, false)
	node := &core.Node{Id: "envoy-1", Cluster: "edge"}
	before := time.Now().Add(-time.Second)
	req := &discovery.DiscoveryRequest{Node: node, TypeUrl: rsrc.ClusterType}
	cancel, err := c.CreateWatch(req, subFromRequest(req), make(chan cache.Response, 1))
	if err != nil {
		t.Fatal(err)
	}
	dreq := &discovery.DeltaDiscoveryRequest{Node: node, TypeUrl: rsrc.EndpointType}
	dcancel, err := c.CreateDeltaWatch(dreq, stream.NewDeltaSubscription(nil, nil, nil, true), make(chan cache.DeltaResponse, 1))
	if err != nil {
		t.Fatal(err)
	}
	info := c.GetStatusInfo("envoy-1")
	if info == nil {
		t.Fatal("no status for envoy-1")
	}
	if !proto.Equal(info.GetNode(), node) {
		t.Fatalf("GetNode = %v, want %v", info.GetNode(), node)
	}
	if info.GetNumWatches() != 1 || info.GetNumDeltaWatches() != 1 {
		t.Fatalf("watches %d delta %d, want 1 and 1", info.GetNumWatches(), info.GetNumDeltaWatches())
	}
	if info.GetLastWatchRequestTime().Before(before) || info.GetLastDeltaWatchRequestTime().Before(before) {
		t.Fatalf("request times %v %v, want after %v", info.GetLastWatchRequestTime(), info.GetLastDeltaWatchRequestTime(), before)
	}
	cancel()
	dcancel()
	info = c.GetStatusInfo("envoy-1")
	if info.GetNumWatches() != 0 || info.GetNumDeltaWatches() != 0 {
		t.Fatalf("after cancel: watches %d delta %d, want 0 and 0", info.GetNumWatches(), info.GetNumDeltaWatches())
	}
	req2 := &discovery.DiscoveryRequest{Node: &core.Node{Id: "envoy-0"}, TypeUrl: rsrc.ClusterType}
	cancel2, err := c.CreateWatch(req2, subFromRequest(req2), make(chan cache.Response, 1))
	if err != nil {
		t.Fatal(err)
	}
	defer cancel2()
	if keys := c.GetStatusKeys(); fmt.Sprint(keys) != "[envoy-0 envoy-1]" {
		t.Fatalf("GetStatusKeys = %v", keys)
	}
}

func TestHeartbeats(t *testing.T) {
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	c := xds.NewSnapshotCacheWithHeartbeating(ctx, false, group{}, testLogger(t), 30*time.Millisecond)
	defer c.(*xds.Cache).Close()
	ttl := 2 * time.Second
	snap, err := cache.NewSnapshotWithTTLs(version1, map[rsrc.Type][]types.ResourceWithTTL{
		rsrc.EndpointType: {{Resource: makeEndpoint(clusterName, "127.0.0.1", 8080), TTL: &ttl}},
		rsrc.ClusterType:  {{Resource: makeCluster(clusterName)}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.SetSnapshot(context.Background(), nodeKey, snap); err != nil {
		t.Fatal(err)
	}
	// First answers: the TTL'd endpoint comes wrapped with its TTL and body.
	subs := map[string]*stream.Subscription{}
	reqs := map[string]*cache.Request{}
	for _, typ := range []string{rsrc.EndpointType, rsrc.ClusterType} {
		reqs[typ] = &discovery.DiscoveryRequest{TypeUrl: typ, ResourceNames: names[typ]}
		sub := subFromRequest(reqs[typ])
		subs[typ] = &sub
		ch := make(chan cache.Response, 1)
		if _, err := c.CreateWatch(reqs[typ], sub, ch); err != nil {
			t.Fatal(err)
		}
		resp := recv(t, ch, typ)
		got := decodeSotw(t, resp)
		sameResources(t, typ, got.res, wantOf(snap, typ, nil))
		if typ == rsrc.EndpointType && got.ttl[clusterName] != ttl {
			t.Fatalf("endpoint TTL %v, want %v", got.ttl[clusterName], ttl)
		}
		ackSotw(resp, subs[typ], reqs[typ])
	}
	// Up to date: only the TTL'd type gets heartbeats (TTL, no body).
	heartbeats := map[string]int{}
	deadline := time.Now().Add(300 * time.Millisecond)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, typ := range []string{rsrc.EndpointType, rsrc.ClusterType} {
		wg.Add(1)
		go func(typ string) {
			defer wg.Done()
			for time.Now().Before(deadline) {
				ch := make(chan cache.Response, 1)
				cancel, err := c.CreateWatch(reqs[typ], *subs[typ], ch)
				if err != nil {
					t.Error(err)
					return
				}
				select {
				case resp := <-ch:
					got := decodeSotw(t, resp)
					if got.version != version1 || len(got.res) != 1 || got.res[clusterName] != nil || got.ttl[clusterName] != ttl {
						t.Errorf("%s: heartbeat %+v, want %s with TTL %v and no body", typ, got, clusterName, ttl)
					}
					mu.Lock()
					heartbeats[typ]++
					mu.Unlock()
				case <-time.After(time.Until(deadline)):
					cancel()
					return
				}
			}
		}(typ)
	}
	wg.Wait()
	if heartbeats[rsrc.EndpointType] < 2 || heartbeats[rsrc.ClusterType] != 0 {
		t.Fatalf("heartbeats %v, want >= 2 for endpoints only", heartbeats)
	}

	// The context ends the heartbeats; the watch stays open for real changes.
	stop()
	ch := make(chan cache.Response, 1)
	if _, err := c.CreateWatch(reqs[rsrc.EndpointType], *subs[rsrc.EndpointType], ch); err != nil {
		t.Fatal(err)
	}
	noRecv(t, ch, "heartbeat after the context ended")
	snap2, _ := cache.NewSnapshotWithTTLs(version2, map[rsrc.Type][]types.ResourceWithTTL{
		rsrc.EndpointType: {{Resource: makeEndpoint(clusterName, "127.0.0.1", 9090), TTL: &ttl}},
	})
	if err := c.SetSnapshot(context.Background(), nodeKey, snap2); err != nil {
		t.Fatal(err)
	}
	got := decodeSotw(t, recv(t, ch, "change after heartbeats stopped"))
	if got.version != version2 || got.res[clusterName] == nil {
		t.Fatalf("got %+v, want version %s with the endpoint", got, version2)
	}
}

// A heartbeating cache with a watch on a node without snapshot neither
// panics nor answers until a snapshot arrives.
func TestHeartbeatWatchWithoutSnapshot(t *testing.T) {
	c := xds.NewSnapshotCacheWithHeartbeating(context.Background(), false, cache.IDHash{}, testLogger(t), time.Millisecond)
	defer c.(*xds.Cache).Close()
	req := &cache.Request{Node: &core.Node{Id: "test"}, ResourceNames: []string{"rtds"}, TypeUrl: rsrc.RuntimeType}
	sub := stream.NewSotwSubscription([]string{"rtds"}, true)
	sub.SetReturnedResources(map[string]string{"cluster": "abcdef"})
	// Buffered: SetSnapshot blocks until a watch takes its answer, as
	// go-control-plane's does.
	ch := make(chan cache.Response, 1)
	if _, err := c.CreateWatch(req, sub, ch); err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond)
	snap, _ := cache.NewSnapshot("version-one", map[rsrc.Type][]types.Resource{rsrc.RuntimeType: {makeRuntime("rtds")}})
	if err := c.SetSnapshot(context.Background(), "test", snap); err != nil {
		t.Fatal(err)
	}
	if v := recv(t, ch, "runtime").GetResponseVersion(); v != "version-one" {
		t.Fatalf("version %q", v)
	}
}

func TestClosedCache(t *testing.T) {
	c := xds.NewSnapshotCache(false, nil, nil).(*xds.Cache)
	req := &discovery.DiscoveryRequest{TypeUrl: rsrc.ClusterType}
	ch := make(chan cache.Response, 1)
	if _, err := c.CreateWatch(req, subFromRequest(req), ch); err != nil {
		t.Fatal(err)
	}
	c.Close()
	c.Close()
	noRecv(t, ch, "watch of a closed cache")
	if err := c.SetSnapshot(context.Background(), "n", makeSnapshot(t, version1)); !errors.Is(err, meshring.ErrClosed) {
		t.Fatalf("SetSnapshot after Close = %v, want ErrClosed", err)
	}
	if _, err := c.CreateWatch(req, subFromRequest(req), ch); !errors.Is(err, meshring.ErrClosed) {
		t.Fatalf("CreateWatch after Close = %v, want ErrClosed", err)
	}
}

// A SOTW stream that named resources and then none has left wildcard: it
// subscribes to nothing and gets no resources, unlike a legacy empty request.
func TestSotwEmptyExplicitSubscriptionGetsNothing(t *testing.T) {
	c := newCache(t, false)
	snap := makeSnapshot(t, version1)
	if err := c.SetSnapshot(context.Background(), nodeKey, snap); err != nil {
		t.Fatal(err)
	}
	typ := rsrc.EndpointType
	req := &discovery.DiscoveryRequest{TypeUrl: typ, VersionInfo: version1}
	sub := stream.NewSotwSubscription([]string{"some-cluster"}, true)
	sub.SetResourceSubscription(nil)
	if sub.IsWildcard() {
		t.Fatal("test setup: subscription should have left wildcard")
	}
	out := make(chan cache.Response, 1)
	cancel, err := c.CreateWatch(req, sub, out)
	if err != nil {
		t.Fatal(err)
	}
	defer cancel()
	select {
	case resp := <-out:
		if got := decodeSotw(t, resp); len(got.res) != 0 {
			t.Fatalf("explicit empty subscription got %d resources", len(got.res))
		}
	case <-time.After(200 * time.Millisecond):
	}
	// The same request as a legacy wildcard stream gets every endpoint.
	legacy := stream.NewSotwSubscription(nil, true)
	out2 := make(chan cache.Response, 1)
	cancel2, err := c.CreateWatch(&discovery.DiscoveryRequest{TypeUrl: typ}, legacy, out2)
	if err != nil {
		t.Fatal(err)
	}
	defer cancel2()
	sameResources(t, typ, decodeSotw(t, recv(t, out2, typ)).res, wantOf(snap, typ, nil))
}

// One *cache.Snapshot set for many nodes is built in the library once and
// shared; editing it and setting it again with a new version serves the
// new content (the reuse is keyed on the snapshot's versions).
func TestSharedSnapshotValue(t *testing.T) {
	c := newCache(t, false)
	ctx := context.Background()
	snap := makeSnapshot(t, version1)
	for _, n := range []string{"n1", "n2", "n3"} {
		if err := c.SetSnapshot(ctx, n, snap); err != nil {
			t.Fatal(err)
		}
	}
	watch := func(node string) sotwGot {
		ch := make(chan cache.Response, 1)
		req := &discovery.DiscoveryRequest{Node: &core.Node{Id: node}, TypeUrl: rsrc.EndpointType, ResourceNames: []string{clusterName}}
		if _, err := c.CreateWatch(req, subFromRequest(req), ch); err != nil {
			t.Fatal(err)
		}
		return decodeSotw(t, recv(t, ch, node))
	}
	for _, n := range []string{"n1", "n3"} {
		got := watch(n)
		if got.version != version1 {
			t.Fatalf("%s: version %q", n, got.version)
		}
		sameResources(t, n, got.res, wantOf(snap, rsrc.EndpointType, nil))
	}
	// Edit the same value: new endpoints and a new version.
	edited := makeSnapshot(t, version2)
	snap.Resources = edited.Resources
	if err := c.SetSnapshot(ctx, "n2", snap); err != nil {
		t.Fatal(err)
	}
	got := watch("n2")
	if got.version != version2 {
		t.Fatalf("edited snapshot: version %q, want %q", got.version, version2)
	}
	sameResources(t, "edited", got.res, wantOf(edited, rsrc.EndpointType, nil))
}

func openFDs(t *testing.T) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("cannot count open fds: %v", err)
	}
	return len(ents)
}

// Parked watches cost no file descriptor and no goroutine: 20,000 of them
// (more than a typical fd limit) are opened, then all answered by one
// SetSnapshot per node, then the rest are cancelled.
func TestManyParkedWatchesNeedNoFDs(t *testing.T) {
	const n = 20000
	c := newCache(t, false)
	ctx := context.Background()
	fds, goroutines := openFDs(t), runtime.NumGoroutine()
	chans := make([]chan cache.Response, n)
	cancels := make([]func(), n)
	for i := range chans {
		req := &discovery.DiscoveryRequest{Node: &core.Node{Id: fmt.Sprintf("m%d", i%100)}, TypeUrl: rsrc.EndpointType, ResourceNames: []string{clusterName}}
		chans[i] = make(chan cache.Response, 1)
		var err error
		if cancels[i], err = c.CreateWatch(req, subFromRequest(req), chans[i]); err != nil {
			t.Fatal(err)
		}
	}
	if d := openFDs(t) - fds; d > 4 {
		t.Fatalf("%d parked watches opened %d file descriptors", n, d)
	}
	if d := runtime.NumGoroutine() - goroutines; d > 4 {
		t.Fatalf("%d parked watches started %d goroutines", n, d)
	}
	// Answer the watches of half the nodes; cancel the rest.
	for i := 0; i < 50; i++ {
		if err := c.SetSnapshot(ctx, fmt.Sprintf("m%d", i), makeSnapshot(t, version1)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range chans {
		if i%100 < 50 {
			if got := decodeSotw(t, recv(t, chans[i], "answer")); got.version != version1 {
				t.Fatalf("watch %d: version %q", i, got.version)
			}
		}
	}
	for _, cancel := range cancels {
		cancel()
	}
	time.Sleep(waitShort)
	for i := range chans {
		select {
		case r := <-chans[i]:
			t.Fatalf("watch %d: unexpected response %v", i, r)
		default:
		}
	}
	if s := c.GetStatusInfo("m99"); s == nil || s.GetNumWatches() != 0 {
		t.Fatalf("after cancel: status %v", s)
	}
}
