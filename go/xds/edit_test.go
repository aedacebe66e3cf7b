package xds_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	rsrc "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
)

// A node's snapshots are sent to the library as edits of the previous one
// (only new values cross). Random histories of kept, replaced, added and
// removed values, types that come and go, per-type versions and TTLs must
// serve exactly what go-control-plane's own cache serves for the same
// snapshots.
func TestEditedSnapshotsServeWhatGoControlPlaneServes(t *testing.T) {
	ours := newCache(t, false)
	theirs := cache.NewSnapshotCache(false, cache.IDHash{}, nil)
	typesUsed := []rsrc.Type{rsrc.EndpointType, rsrc.RouteType, rsrc.RuntimeType}
	for seed := uint64(1); seed <= 20; seed++ {
		r := rand.New(rand.NewPCG(seed, 7))
		node := fmt.Sprintf("edit-%d", seed)
		cur := map[rsrc.Type]map[string]types.ResourceWithTTL{}
		for step := 0; step < 40; step++ {
			for _, typ := range typesUsed {
				if r.IntN(10) == 0 {
					delete(cur, typ) // the type goes
					continue
				}
				if cur[typ] == nil {
					cur[typ] = map[string]types.ResourceWithTTL{}
				}
				for k := 0; k < 1+r.IntN(3); k++ {
					name := fmt.Sprintf("r%d", r.IntN(25))
					switch r.IntN(4) {
					case 0:
						delete(cur[typ], name)
					case 1: // the same value again with another TTL
						if old, ok := cur[typ][name]; ok {
							if old.TTL == nil {
								d := time.Duration(1+r.IntN(5)) * time.Second
								old.TTL = &d
							} else {
								old.TTL = nil
							}
							cur[typ][name] = old
						}
					default:
						var res types.Resource
						switch typ {
						case rsrc.EndpointType:
							res = makeEndpoint(name, "10.0.0.1", uint32(step))
						case rsrc.RouteType:
							res = makeRoute(name, fmt.Sprintf("d%d", step), "c")
						default:
							res = makeRuntime(name)
						}
						cur[typ][name] = types.ResourceWithTTL{Resource: res}
					}
				}
			}
			snapRes := map[rsrc.Type][]types.ResourceWithTTL{}
			for typ, m := range cur {
				for _, v := range m {
					snapRes[typ] = append(snapRes[typ], v)
				}
			}
			snap, err := cache.NewSnapshotWithTTLs(fmt.Sprintf("v%d", step), snapRes)
			if err != nil {
				t.Fatal(err)
			}
			if r.IntN(3) == 0 { // a type with its own version
				_ = snap.Resources[cache.GetResponseType(rsrc.RouteType)]
				snap.Resources[cache.GetResponseType(rsrc.RouteType)].Version = fmt.Sprintf("route-%d", step)
			}
			if r.IntN(15) == 0 {
				ours.ClearSnapshot(node) // then it is sent whole again
			}
			if err := ours.SetSnapshot(context.Background(), node, snap); err != nil {
				t.Fatal(err)
			}
			if err := theirs.SetSnapshot(context.Background(), node, snap); err != nil {
				t.Fatal(err)
			}
			for _, typ := range typesUsed {
				req := &discovery.DiscoveryRequest{Node: &core.Node{Id: node}, TypeUrl: typ}
				want, werr := theirs.Fetch(context.Background(), req)
				got, gerr := ours.Fetch(context.Background(), req)
				if (werr == nil) != (gerr == nil) {
					t.Fatalf("seed %d step %d %s: fetch error %v, go-control-plane %v", seed, step, typ, gerr, werr)
				}
				if werr != nil {
					continue
				}
				g, w := decodeSotw(t, got), decodeAnySotw(t, want)
				if g.version != w.version || len(g.res) != len(w.res) {
					t.Fatalf("seed %d step %d %s: version %q with %v, go-control-plane %q with %v", seed, step, typ, g.version, keys(g.res), w.version, keys(w.res))
				}
				for name, m := range w.res {
					if !proto.Equal(g.res[name], m) || g.ttl[name] != w.ttl[name] {
						t.Fatalf("seed %d step %d %s: resource %q differs (ttl %v vs %v)", seed, step, typ, name, g.ttl[name], w.ttl[name])
					}
				}
			}
		}
	}
}
