// Command xds compares meshring's go-control-plane adapter (go/xds) with
// go-control-plane's own NewSnapshotCache: N nodes, each with a SOTW
// endpoints watch open at the current version; one round = SetSnapshot for
// every node with new endpoints, until every watch has its response (the
// collector also builds each DiscoveryResponse, as the xDS server would).
// It prints the median latency, responses/s and Go bytes allocated per
// round (the Rust library's own allocations are not in Go's counters).
//
//	cd bench/xds && go run . [-nodes 1000,10000] [-rounds 5] [-endpoints 8]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/log"
	rsrc "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/envoyproxy/go-control-plane/pkg/server/stream/v3"

	"google.golang.org/protobuf/proto"

	"github.com/meshring/meshring/go/xds"
)

const clusterName = "cluster0"

type quiet struct{}

func (quiet) Debugf(string, ...any) {}
func (quiet) Infof(string, ...any)  {}
func (quiet) Warnf(string, ...any)  {}
func (quiet) Errorf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
}

var _ log.Logger = quiet{}

func endpoints(round, n int) *endpoint.ClusterLoadAssignment {
	cla := &endpoint.ClusterLoadAssignment{ClusterName: clusterName}
	loc := &endpoint.LocalityLbEndpoints{Locality: &core.Locality{Zone: "z"}}
	for i := 0; i < n; i++ {
		loc.LbEndpoints = append(loc.LbEndpoints, &endpoint.LbEndpoint{
			HostIdentifier: &endpoint.LbEndpoint_Endpoint{Endpoint: &endpoint.Endpoint{
				Address: &core.Address{Address: &core.Address_SocketAddress{SocketAddress: &core.SocketAddress{
					Address:       fmt.Sprintf("10.%d.%d.%d", round%250, i/250, i%250),
					PortSpecifier: &core.SocketAddress_PortValue{PortValue: uint32(8000 + round)},
				}}},
			}},
		})
	}
	cla.Endpoints = []*endpoint.LocalityLbEndpoints{loc}
	return cla
}

func snapshot(round, nEndpoints int) *cache.Snapshot {
	s, err := cache.NewSnapshot(fmt.Sprintf("v%d", round), map[rsrc.Type][]types.Resource{
		rsrc.EndpointType: {endpoints(round, nEndpoints)},
	})
	if err != nil {
		panic(err)
	}
	return s
}

type result struct {
	latency  time.Duration
	perSec   float64
	bytesPer uint64
}

// sotwRun is one implementation's side of the SOTW workload: n nodes,
// each with a SOTW endpoints watch open at the current version.
type sotwRun struct {
	name      string
	c         cache.SnapshotCache
	ids       []string
	reqs      []*cache.Request
	subs      []stream.Subscription
	responses chan cache.Response
	lat       []time.Duration
	bytes     []uint64
}

func newSotwRun(name string, c cache.SnapshotCache, nodes, nEndpoints int) *sotwRun {
	r := &sotwRun{name: name, c: c, ids: make([]string, nodes), reqs: make([]*cache.Request, nodes),
		subs: make([]stream.Subscription, nodes), responses: make(chan cache.Response, nodes)}
	for i := range r.ids {
		r.ids[i] = "node-" + strconv.Itoa(i)
		r.reqs[i] = &discovery.DiscoveryRequest{Node: &core.Node{Id: r.ids[i]}, TypeUrl: rsrc.EndpointType, ResourceNames: []string{clusterName}}
		r.subs[i] = stream.NewSotwSubscription(r.reqs[i].ResourceNames, true)
	}
	// Round 0 sets the first snapshots and takes the first answers.
	first := snapshot(0, nEndpoints)
	for _, id := range r.ids {
		if err := c.SetSnapshot(context.Background(), id, first); err != nil {
			panic(err)
		}
	}
	r.open()
	r.collect()
	return r
}

func (r *sotwRun) open() {
	for i := range r.ids {
		if _, err := r.c.CreateWatch(r.reqs[i], r.subs[i], r.responses); err != nil {
			panic(err)
		}
	}
}

// collect takes every node's answer as a stream would: builds the
// DiscoveryResponse and keeps the returned state for the next watch.
func (r *sotwRun) collect() {
	for i := 0; i < len(r.ids); i++ {
		resp := <-r.responses
		if _, err := resp.GetDiscoveryResponse(); err != nil {
			panic(err)
		}
		node := resp.GetRequest().GetNode().GetId()
		idx, _ := strconv.Atoi(strings.TrimPrefix(node, "node-"))
		r.subs[idx].SetReturnedResources(resp.GetReturnedResources())
		r.reqs[idx] = &discovery.DiscoveryRequest{Node: r.reqs[idx].Node, TypeUrl: rsrc.EndpointType,
			ResourceNames: r.reqs[idx].ResourceNames, VersionInfo: resp.GetResponseVersion()}
	}
}

// round: every watch parked, then SetSnapshot for every node (snapshot
// values built before the clock starts) until every watch answered.
func (r *sotwRun) round(round, nEndpoints int, shared bool) {
	ctx := context.Background()
	r.open() // parked: every node is up to date
	snaps := make([]*cache.Snapshot, len(r.ids))
	one := snapshot(round, nEndpoints)
	for i := range snaps {
		if shared {
			snaps[i] = one
		} else {
			snaps[i] = snapshot(round, nEndpoints)
		}
	}
	runtime.GC()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	start := time.Now()
	done := make(chan struct{})
	go func() { r.collect(); close(done) }()
	for i, id := range r.ids {
		if err := r.c.SetSnapshot(ctx, id, snaps[i]); err != nil {
			panic(err)
		}
	}
	<-done
	r.lat = append(r.lat, time.Since(start))
	runtime.ReadMemStats(&m1)
	r.bytes = append(r.bytes, m1.TotalAlloc-m0.TotalAlloc)
}

func (r *sotwRun) result() result {
	if len(r.lat) == 0 {
		return result{}
	}
	lat, bytes := slices.Clone(r.lat), slices.Clone(r.bytes)
	slices.Sort(lat)
	slices.Sort(bytes)
	med := lat[len(lat)/2]
	fmt.Fprintf(os.Stderr, "%s nodes=%d latencies=%v\n", r.name, len(r.ids), lat)
	return result{latency: med, perSec: float64(len(r.ids)) / med.Seconds(), bytesPer: bytes[len(bytes)/2]}
}

// runBoth measures both caches on the same workload with their rounds
// interleaved (alternating which goes first), so a busy moment of the
// machine falls on both alike.
func runBoth(nodes, rounds, nEndpoints int, shared bool, only string) (gcp, mr result) {
	var runs []*sotwRun
	var ours *xds.Cache
	if only != "meshring" {
		runs = append(runs, newSotwRun("go-control-plane", cache.NewSnapshotCache(false, cache.IDHash{}, quiet{}), nodes, nEndpoints))
	}
	if only != "gcp" {
		c := xds.NewSnapshotCache(false, cache.IDHash{}, quiet{})
		ours = c.(*xds.Cache)
		runs = append(runs, newSotwRun("meshring", c, nodes, nEndpoints))
	}
	for round := 1; round <= rounds; round++ {
		for i := range runs {
			runs[(i+round)%len(runs)].round(round, nEndpoints, shared)
		}
	}
	for _, r := range runs {
		if r.name == "meshring" {
			mr = r.result()
		} else {
			gcp = r.result()
		}
	}
	if ours != nil {
		ours.Close()
	}
	return gcp, mr
}

// bigEndpoints is a ClusterLoadAssignment of about 400 bytes.
func bigEndpoints(name string, round int) *endpoint.ClusterLoadAssignment {
	cla := &endpoint.ClusterLoadAssignment{ClusterName: name}
	loc := &endpoint.LocalityLbEndpoints{Locality: &core.Locality{Region: "region-1", Zone: "zone-" + name}}
	for i := 0; i < 16; i++ {
		loc.LbEndpoints = append(loc.LbEndpoints, &endpoint.LbEndpoint{
			HostIdentifier: &endpoint.LbEndpoint_Endpoint{Endpoint: &endpoint.Endpoint{
				Address: &core.Address{Address: &core.Address_SocketAddress{SocketAddress: &core.SocketAddress{
					Address:       fmt.Sprintf("10.%d.%d.%d", round%250, i, len(name)),
					PortSpecifier: &core.SocketAddress_PortValue{PortValue: uint32(8000 + i)},
				}}},
			}},
		})
	}
	cla.Endpoints = []*endpoint.LocalityLbEndpoints{loc}
	return cla
}

// runDelta measures one delta stream as go-control-plane's delta server
// drives a cache: a wildcard delta watch on a type of n resources; each
// update is a new snapshot (cache.NewSnapshot) in which one resource is a
// new value and the rest are the previous snapshot's values; timed from
// SetSnapshot until the response is built and the watch re-opened with the
// stream's next version map (as the server re-opens it).
func runDelta(name string, c cache.SnapshotCache, n, updates int) (time.Duration, int) {
	ctx := context.Background()
	res := make([]types.Resource, n)
	for i := range res {
		res[i] = bigEndpoints(fmt.Sprintf("cla-%05d", i), 0)
	}
	size := proto.Size(res[0].(proto.Message))
	node := &core.Node{Id: "delta-node"}
	set := func(v int) {
		s, err := cache.NewSnapshot(fmt.Sprintf("v%d", v), map[rsrc.Type][]types.Resource{rsrc.EndpointType: slices.Clone(res)})
		if err != nil {
			panic(err)
		}
		if err := c.SetSnapshot(ctx, node.Id, s); err != nil {
			panic(err)
		}
	}
	set(0)
	ch := make(chan cache.DeltaResponse, 1)
	sub := stream.NewDeltaSubscription(nil, nil, nil, true)
	req := &discovery.DeltaDiscoveryRequest{Node: node, TypeUrl: rsrc.EndpointType}
	if _, err := c.CreateDeltaWatch(req, sub, ch); err != nil {
		panic(err)
	}
	first := <-ch
	sub.SetReturnedResources(first.GetNextVersionMap())
	req = &discovery.DeltaDiscoveryRequest{Node: node, TypeUrl: rsrc.EndpointType, ResponseNonce: "1"}
	if _, err := c.CreateDeltaWatch(req, sub, ch); err != nil {
		panic(err)
	}
	var lat []time.Duration
	for u := 1; u <= updates; u++ {
		res[u%n] = bigEndpoints(fmt.Sprintf("cla-%05d", u%n), u)
		runtime.GC()
		start := time.Now()
		set(u)
		r := <-ch
		dr, err := r.GetDeltaDiscoveryResponse()
		if err != nil {
			panic(err)
		}
		if len(dr.GetResources()) != 1 {
			panic(fmt.Sprintf("%s: %d resources in a delta of one change", name, len(dr.GetResources())))
		}
		sub.SetReturnedResources(r.GetNextVersionMap())
		if _, err := c.CreateDeltaWatch(req, sub, ch); err != nil {
			panic(err)
		}
		lat = append(lat, time.Since(start))
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	return lat[len(lat)/2], size
}

func main() {
	nodesFlag := flag.String("nodes", "1000,10000", "comma-separated node counts")
	rounds := flag.Int("rounds", 5, "update rounds per measurement (median reported)")
	nEndpoints := flag.Int("endpoints", 8, "endpoints in each node's ClusterLoadAssignment")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile here")
	e2eCounts := flag.String("e2e", "1000,5000", "stream counts of the end-to-end gRPC table (empty: skip it)")
	e2ePushes := flag.Int("e2e-pushes", 5, "config pushes per end-to-end measurement (median reported)")
	e2eClientAddr := flag.String("e2e-client", "", "internal: run as the end-to-end client process against this address")
	e2eStreams := flag.Int("e2e-streams", 0, "internal: streams of the end-to-end client process")
	deltaN := flag.Int("delta-resources", 10000, "resources of the delta stream's type (0: skip the delta table)")
	deltaUpdates := flag.Int("delta-updates", 9, "delta updates (median reported)")
	only := flag.String("only", "", "run only this cache (meshring or gcp), for profiling")
	memprofile := flag.String("memprofile", "", "write an allocation profile here")
	mode := flag.String("mode", "", "run only own (a snapshot per node) or fleet (one for all), for profiling")
	flag.Parse()
	if *e2eClientAddr != "" {
		e2eClient(*e2eClientAddr, *e2eStreams)
		return
	}
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			panic(err)
		}
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	if *memprofile != "" {
		runtime.MemProfileRate = 4096
		defer func() {
			f, err := os.Create(*memprofile)
			if err != nil {
				panic(err)
			}
			pprof.Lookup("allocs").WriteTo(f, 0)
			f.Close()
		}()
	}

	fmt.Printf("cgo crossing: %v per call. Calls per operation: SetSnapshot 1, CreateWatch 1 (opens and takes an immediate answer), answers 2 per batch of up to 256 (take + release).\n\n", cgoCallCost())
	if *e2eCounts != "" && (*mode == "" || *mode == "e2e") {
		var counts []int
		for _, f := range strings.Split(*e2eCounts, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n <= 0 {
				fmt.Fprintf(os.Stderr, "bad stream count %q\n", f)
				os.Exit(2)
			}
			counts = append(counts, n)
		}
		defer e2eTable(counts, *e2ePushes, *nEndpoints, *only)
	}
	if *deltaN > 0 && (*mode == "" || *mode == "delta") {
		defer func() {
			var g, m time.Duration
			var size int
			if *only != "meshring" {
				g, size = runDelta("go-control-plane", cache.NewSnapshotCache(false, cache.IDHash{}, quiet{}), *deltaN, *deltaUpdates)
			}
			if *only != "gcp" {
				ours := xds.NewSnapshotCache(false, cache.IDHash{}, quiet{})
				m, size = runDelta("meshring", ours, *deltaN, *deltaUpdates)
				ours.(*xds.Cache).Close()
			}
			fmt.Printf("\nDelta: one wildcard delta stream, a type of %d resources (%d B each); each update a new snapshot\n", *deltaN, size)
			fmt.Printf("in which one resource is a new value; SetSnapshot until the response is built and the watch re-opened\n")
			fmt.Printf("with the next version map (as go-control-plane's delta server does). Median of %d updates.\n", *deltaUpdates)
			fmt.Printf("%-16s %14s\n", "cache", "per update")
			fmt.Printf("%-16s %14v\n", "go-control-plane", g.Round(time.Microsecond))
			fmt.Printf("%-16s %14v\n", "meshring/xds", m.Round(time.Microsecond))
			fmt.Printf("%-16s %13.2fx faster\n", "ratio (gcp/ours)", float64(g)/float64(m))
		}()
	}
	for _, shared := range []bool{false, true} {
		if *mode == "delta" || *mode == "e2e" {
			break
		}
		if (*mode == "own" && shared) || (*mode == "fleet" && !shared) {
			continue
		}
		if shared {
			fmt.Printf("\nSame, but one snapshot value per round set for every node (a fleet-wide configuration).\n")
		} else {
			fmt.Printf("SOTW: one endpoints watch per node; each round SetSnapshot(new endpoints) for every node until every watch answered. Median of %d rounds (the two caches' rounds interleaved), %d endpoints per CLA; every node gets its own snapshot value.\n", *rounds, *nEndpoints)
		}
		fmt.Printf("%-7s %-16s %12s %14s %16s\n", "nodes", "cache", "latency", "responses/s", "Go bytes/round")
		for _, f := range strings.Split(*nodesFlag, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n <= 0 {
				fmt.Fprintf(os.Stderr, "bad node count %q\n", f)
				os.Exit(2)
			}
			gcp, mr := runBoth(n, *rounds, *nEndpoints, shared, *only)
			fmt.Printf("%-7d %-16s %12v %14.0f %16d\n", n, "go-control-plane", gcp.latency.Round(time.Microsecond), gcp.perSec, gcp.bytesPer)
			fmt.Printf("%-7d %-16s %12v %14.0f %16d\n", n, "meshring/xds", mr.latency.Round(time.Microsecond), mr.perSec, mr.bytesPer)
			fmt.Printf("%-7d %-16s %11.2fx %13.2fx %15.2fx\n", n, "ratio (ours/gcp)",
				float64(mr.latency)/float64(gcp.latency), mr.perSec/gcp.perSec, float64(mr.bytesPer)/float64(gcp.bytesPer))
		}
	}
}
