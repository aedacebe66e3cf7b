package xds_test

import (
	"sort"
	"testing"
	"time"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/log"
	"github.com/envoyproxy/go-control-plane/pkg/server/stream/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/meshring/meshring/go/xds"
)

const (
	waitLong  = 2 * time.Second
	waitShort = 200 * time.Millisecond
)

var discoveryResourceType = "type.googleapis.com/" + string(proto.MessageName(&discovery.Resource{}))

func newCache(t *testing.T, ads bool) cache.SnapshotCache {
	t.Helper()
	c := xds.NewSnapshotCache(ads, group{}, testLogger(t))
	t.Cleanup(func() { c.(*xds.Cache).Close() })
	return c
}

// testLogger logs to t until the test ends (goroutines may log later).
func testLogger(t *testing.T) log.Logger {
	done := make(chan struct{})
	t.Cleanup(func() { close(done) })
	logf := func(format string, args ...any) {
		select {
		case <-done:
		default:
			t.Logf(format, args...)
		}
	}
	return log.LoggerFuncs{WarnFunc: logf, ErrorFunc: logf}
}

func subFromRequest(req *cache.Request) stream.Subscription {
	return stream.NewSotwSubscription(req.GetResourceNames(), true)
}

// ackSotw applies a response to the stream state as go-control-plane's
// server does: the returned resources go back into the subscription and
// the request acknowledges the version.
func ackSotw(resp cache.Response, sub *stream.Subscription, req *cache.Request) {
	sub.SetReturnedResources(resp.GetReturnedResources())
	req.VersionInfo = resp.GetResponseVersion()
}

func recv[R any](t *testing.T, ch <-chan R, what string) R {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(waitLong):
		t.Fatalf("%s: no response within %v", what, waitLong)
	}
	var zero R
	return zero
}

// noneWaiting fails if any of the types' channels already holds a response.
func noneWaiting[R any](t *testing.T, chans map[string]chan R, typs []string, what string) {
	t.Helper()
	for _, typ := range typs {
		select {
		case r := <-chans[typ]:
			t.Fatalf("%s: %s: %v", typ, what, r)
		default:
		}
	}
}

// withNewEndpoint is the fixture snapshot at version1 with the endpoints
// replaced (port 9090) at version2.
func withNewEndpoint(t *testing.T) *cache.Snapshot {
	snap := makeSnapshot(t, version1)
	snap.Resources[types.Endpoint] = cache.NewResources(version2, []types.Resource{makeEndpoint(clusterName, "127.0.0.1", 9090)})
	return snap
}

// openDeltaWildcards opens one wildcard delta watch per test type.
func openDeltaWildcards(t *testing.T, c cache.SnapshotCache) (map[string]chan cache.DeltaResponse, map[string]*stream.Subscription) {
	t.Helper()
	chans := map[string]chan cache.DeltaResponse{}
	subs := map[string]*stream.Subscription{}
	for _, typ := range testTypes {
		chans[typ] = make(chan cache.DeltaResponse, 1)
		sub := stream.NewDeltaSubscription(nil, nil, nil, true)
		subs[typ] = &sub
		if _, err := c.CreateDeltaWatch(deltaReq(typ, ""), sub, chans[typ]); err != nil {
			t.Fatal(err)
		}
	}
	return chans, subs
}

func noRecv[R any](t *testing.T, ch <-chan R, what string) {
	t.Helper()
	select {
	case r := <-ch:
		t.Fatalf("%s: unexpected response %v", what, r)
	case <-time.After(waitShort):
	}
}

// sotwGot is a decoded SOTW response.
type sotwGot struct {
	version string
	typeURL string
	res     map[string]proto.Message // nil value: TTL heartbeat without the resource
	ttl     map[string]time.Duration
}

func decodeSotw(t *testing.T, resp cache.Response) sotwGot {
	t.Helper()
	raw, ok := resp.(*xds.Response)
	if !ok {
		t.Fatalf("response is %T, want *xds.Response", resp)
	}
	got := decodeAnySotw(t, resp)
	checkRaw(t, raw.GetRawResources(), got.res)
	return got
}

// decodeAnySotw decodes any cache's SOTW response (go-control-plane's too).
func decodeAnySotw(t *testing.T, resp cache.Response) sotwGot {
	t.Helper()
	dr, err := resp.GetDiscoveryResponse()
	if err != nil {
		t.Fatal(err)
	}
	if dr.GetVersionInfo() != resp.GetResponseVersion() {
		t.Fatalf("GetResponseVersion %q != VersionInfo %q", resp.GetResponseVersion(), dr.GetVersionInfo())
	}
	got := sotwGot{version: dr.GetVersionInfo(), typeURL: dr.GetTypeUrl(), res: map[string]proto.Message{}, ttl: map[string]time.Duration{}}
	for _, a := range dr.GetResources() {
		if a.GetTypeUrl() == discoveryResourceType {
			var w discovery.Resource
			if err := anypb.UnmarshalTo(a, &w, proto.UnmarshalOptions{}); err != nil {
				t.Fatal(err)
			}
			got.ttl[w.GetName()] = w.GetTtl().AsDuration()
			if w.GetResource() == nil {
				got.res[w.GetName()] = nil
				continue
			}
			a = w.GetResource()
		}
		if a.GetTypeUrl() != dr.GetTypeUrl() {
			t.Fatalf("resource type %q in a %q response", a.GetTypeUrl(), dr.GetTypeUrl())
		}
		m, err := a.UnmarshalNew()
		if err != nil {
			t.Fatal(err)
		}
		got.res[cache.GetResourceName(m)] = m
	}
	return got
}

// checkRaw asserts that a response's raw resources (what go-control-plane's
// RawResponse hands to callbacks) are the resources it sends.
func checkRaw(t *testing.T, raw []types.ResourceWithTTL, sent map[string]proto.Message) {
	t.Helper()
	if len(raw) != len(sent) {
		t.Fatalf("%d raw resources for %d sent", len(raw), len(sent))
	}
	for _, r := range raw {
		if r.Resource == nil {
			t.Fatal("raw resource without its object")
		}
		name := cache.GetResourceName(r.Resource)
		m, ok := sent[name]
		if !ok {
			t.Fatalf("raw resource %q not sent", name)
		}
		if m != nil && !proto.Equal(m, r.Resource) {
			t.Fatalf("raw resource %q differs from the one sent", name)
		}
	}
}

func wantOf(snap cache.ResourceSnapshot, typeURL string, names []string) map[string]proto.Message {
	want := map[string]proto.Message{}
	for name, r := range snap.GetResources(typeURL) {
		if len(names) > 0 && !contains(names, name) {
			continue
		}
		want[name] = r
	}
	return want
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func sameResources(t *testing.T, what string, got map[string]proto.Message, want map[string]proto.Message) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: got resources %v, want %v", what, keys(got), keys(want))
	}
	for name, w := range want {
		g, ok := got[name]
		if !ok || !proto.Equal(g, w) {
			t.Fatalf("%s: resource %q: got %v, want %v", what, name, g, w)
		}
	}
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// deltaGot is a decoded delta response.
type deltaGot struct {
	systemVersion string
	res           map[string]proto.Message
	versions      map[string]string
	removed       []string
	next          map[string]string
}

func decodeDelta(t *testing.T, resp cache.DeltaResponse) deltaGot {
	t.Helper()
	raw, ok := resp.(*xds.DeltaResponse)
	if !ok {
		t.Fatalf("response is %T, want *xds.DeltaResponse", resp)
	}
	dr, err := resp.GetDeltaDiscoveryResponse()
	if err != nil {
		t.Fatal(err)
	}
	got := deltaGot{systemVersion: dr.GetSystemVersionInfo(), res: map[string]proto.Message{}, versions: map[string]string{},
		removed: dr.GetRemovedResources(), next: resp.GetNextVersionMap()}
	for _, r := range dr.GetResources() {
		m, err := r.GetResource().UnmarshalNew()
		if err != nil {
			t.Fatal(err)
		}
		if r.GetResource().GetTypeUrl() != dr.GetTypeUrl() {
			t.Fatalf("resource type %q in a %q response", r.GetResource().GetTypeUrl(), dr.GetTypeUrl())
		}
		if r.GetName() != cache.GetResourceName(m) {
			t.Fatalf("resource named %q holds %q", r.GetName(), cache.GetResourceName(m))
		}
		if r.GetVersion() == "" || r.GetVersion() != got.next[r.GetName()] {
			t.Fatalf("resource %q version %q, next version map has %q", r.GetName(), r.GetVersion(), got.next[r.GetName()])
		}
		got.res[r.GetName()] = m
		got.versions[r.GetName()] = r.GetVersion()
	}
	checkRaw(t, raw.GetRawResources(), got.res)
	return got
}
