package xds

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"testing"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	rsrc "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/envoyproxy/go-control-plane/pkg/server/stream/v3"
)

// Two delta streams on one node see the same random history: one as
// go-control-plane's delta server drives a cache (it hands back the map of
// our last answer, so the stream continues in the library), the other
// handing back a copy each time (the whole map crosses, the reference
// path). Every answer and every next version map must be the same, and the
// first stream must have continued.
func TestContinuedDeltaStreamsAnswerAsStreamsThatSendTheirMap(t *testing.T) {
	c := NewSnapshotCache(false, cache.IDHash{}, nil).(*Cache)
	defer c.Close()
	before := continued.Load()
	r := rand.New(rand.NewPCG(3, 9))
	node := &core.Node{Id: "n"}
	res := map[string]types.Resource{}
	set := func(v int) {
		var list []types.Resource
		for _, x := range res {
			list = append(list, x)
		}
		s, err := cache.NewSnapshot(fmt.Sprintf("v%d", v), map[rsrc.Type][]types.Resource{rsrc.EndpointType: list})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.SetSnapshot(context.Background(), "n", s); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 30; i++ {
		res[fmt.Sprintf("c%d", i)] = &endpoint.ClusterLoadAssignment{ClusterName: fmt.Sprintf("c%d", i)}
	}
	set(0)
	type streamState struct {
		sub   stream.Subscription
		ch    chan cache.DeltaResponse
		nonce string
	}
	open := func(s *streamState) {
		req := &discovery.DeltaDiscoveryRequest{Node: node, TypeUrl: rsrc.EndpointType, ResponseNonce: s.nonce}
		if _, err := c.CreateDeltaWatch(req, s.sub, s.ch); err != nil {
			t.Fatal(err)
		}
	}
	a := &streamState{sub: stream.NewDeltaSubscription(nil, nil, nil, true), ch: make(chan cache.DeltaResponse, 1)}
	b := &streamState{sub: stream.NewDeltaSubscription(nil, nil, nil, true), ch: make(chan cache.DeltaResponse, 1)}
	open(a)
	open(b)
	take := func(s *streamState, copyMap bool) cache.DeltaResponse {
		select {
		case resp := <-s.ch:
			m := resp.GetNextVersionMap()
			if copyMap {
				m = maps.Clone(m)
			}
			s.sub.SetReturnedResources(m)
			s.nonce = "x"
			return resp
		case <-time.After(5 * time.Second):
			t.Fatal("no answer")
			return nil
		}
	}
	names := func(resp cache.DeltaResponse) (got []string, removed []string) {
		dr, err := resp.GetDeltaDiscoveryResponse()
		if err != nil {
			t.Fatal(err)
		}
		for _, x := range dr.GetResources() {
			got = append(got, x.GetName()+"@"+x.GetVersion())
		}
		return got, dr.GetRemovedResources()
	}
	ra, rb := take(a, false), take(b, true)
	for step := 1; step <= 80; step++ {
		open(a)
		open(b)
		for k := 0; k < 1+r.IntN(3); k++ {
			name := fmt.Sprintf("c%d", r.IntN(40))
			if _, ok := res[name]; ok && r.IntN(3) == 0 {
				delete(res, name)
			} else {
				res[name] = &endpoint.ClusterLoadAssignment{ClusterName: name, Endpoints: []*endpoint.LocalityLbEndpoints{{Priority: uint32(step)}}}
			}
		}
		set(step)
		ra, rb = take(a, false), take(b, true)
		ga, rma := names(ra)
		gb, rmb := names(rb)
		if fmt.Sprint(ga, rma) != fmt.Sprint(gb, rmb) {
			t.Fatalf("step %d: continued %v %v, sent %v %v", step, ga, rma, gb, rmb)
		}
		if !maps.Equal(ra.GetNextVersionMap(), rb.GetNextVersionMap()) {
			t.Fatalf("step %d: next version maps differ", step)
		}
	}
	if n := continued.Load() - before; n < 70 {
		t.Fatalf("only %d of 80 watches continued in the library", n)
	}
}
