package main

// End to end through go-control-plane's own gRPC server: the same
// server.NewServer serves N ADS streams over loopback from a cache (go-control-plane's
// or meshring's); the streams are real grpc-go clients in a child process
// (so the server's CPU time is its own), each ACKing every response. One
// config push = SetSnapshot for every node; measured until the last stream
// has ACKed the new version (the server sees the ACK), with the server
// process's CPU seconds over the same window.

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	rsrc "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/meshring/meshring/go/xds"
)

// streamsPerConn: how many ADS streams share one HTTP/2 connection.
const streamsPerConn = 100

type e2eResult struct {
	push    time.Duration // median time until every stream ACKed
	cpu     time.Duration // server CPU over that push (median)
	streams int
}

// acks counts, per version, the streams that ACKed it.
type acks struct {
	mu     sync.Mutex
	target string
	seen   map[int64]bool
	done   chan struct{}
	want   int
	closed atomic.Int64
}

func (a *acks) expect(version string, n int) chan struct{} {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.target, a.seen, a.want, a.done = version, make(map[int64]bool, n), n, make(chan struct{})
	return a.done
}

func (a *acks) onRequest(id int64, req *discovery.DiscoveryRequest) error {
	if req.GetResponseNonce() == "" || req.GetErrorDetail() != nil {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if req.GetVersionInfo() != a.target || a.seen[id] {
		return nil
	}
	a.seen[id] = true
	if len(a.seen) == a.want {
		close(a.done)
	}
	return nil
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		panic(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// runE2E serves n streams from c and pushes `pushes` snapshots to every node.
func runE2E(name string, c cache.SnapshotCache, n, pushes, nEndpoints int) e2eResult {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a := &acks{}
	srv := server.NewServer(ctx, c, server.CallbackFuncs{StreamRequestFunc: a.onRequest})
	g := grpc.NewServer(grpc.MaxConcurrentStreams(1 << 20))
	discovery.RegisterAggregatedDiscoveryServiceServer(g, srv)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	go g.Serve(lis)
	defer g.Stop()

	nodes := make([]string, n)
	for i := range nodes {
		nodes[i] = "e2e-node-" + strconv.Itoa(i)
	}
	push := func(round int) {
		s, err := cache.NewSnapshot(fmt.Sprintf("v%d", round), map[rsrc.Type][]types.Resource{rsrc.EndpointType: {endpoints(round, nEndpoints)}})
		if err != nil {
			panic(err)
		}
		for _, id := range nodes {
			if err := c.SetSnapshot(ctx, id, s); err != nil {
				panic(err)
			}
		}
	}
	// Every stream gets v0 and ACKs it before the clock starts.
	ready := a.expect("v0", n)
	push(0)
	client := exec.Command(os.Args[0], "-e2e-client", lis.Addr().String(), "-e2e-streams", strconv.Itoa(n))
	client.Stderr = os.Stderr
	out, err := client.StdoutPipe()
	if err != nil {
		panic(err)
	}
	if err := client.Start(); err != nil {
		panic(err)
	}
	defer func() {
		client.Process.Kill()
		client.Wait()
	}()
	go func() { // the client reports only failures
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			fmt.Fprintf(os.Stderr, "%s client: %s\n", name, sc.Text())
		}
	}()
	select {
	case <-ready:
	case <-time.After(120 * time.Second):
		panic(fmt.Sprintf("%s: %d of %d streams ACKed v0 in 120 s", name, len(a.seen), n))
	}
	var lat, cpu []time.Duration
	for round := 1; round <= pushes; round++ {
		done := a.expect(fmt.Sprintf("v%d", round), n)
		c0, t0 := cpuTime(), time.Now()
		push(round)
		select {
		case <-done:
		case <-time.After(120 * time.Second):
			panic(fmt.Sprintf("%s: push %d: %d of %d streams ACKed in 120 s", name, round, len(a.seen), n))
		}
		lat = append(lat, time.Since(t0))
		cpu = append(cpu, cpuTime()-c0)
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	sort.Slice(cpu, func(i, j int) bool { return cpu[i] < cpu[j] })
	fmt.Fprintf(os.Stderr, "%s e2e streams=%d pushes=%v cpu=%v\n", name, n, lat, cpu)
	return e2eResult{push: lat[len(lat)/2], cpu: cpu[len(cpu)/2], streams: n}
}

// e2eClient is the child process: n ADS streams to addr, each asking for
// the endpoints of cluster0 as its own node and ACKing every response.
func e2eClient(addr string, n int) {
	var conns []*grpc.ClientConn
	for i := 0; i < (n+streamsPerConn-1)/streamsPerConn; i++ {
		cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
		conns = append(conns, cc)
	}
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			cl := discovery.NewAggregatedDiscoveryServiceClient(conns[i/streamsPerConn])
			st, err := cl.StreamAggregatedResources(context.Background())
			if err != nil {
				fmt.Println(err)
				os.Exit(1)
			}
			node := &core.Node{Id: "e2e-node-" + strconv.Itoa(i)}
			req := &discovery.DiscoveryRequest{Node: node, TypeUrl: rsrc.EndpointType, ResourceNames: []string{clusterName}}
			if err := st.Send(req); err != nil {
				fmt.Println(err)
				os.Exit(1)
			}
			for {
				resp, err := st.Recv()
				if err != nil {
					return // the server went away: the run is over
				}
				if len(resp.GetResources()) != 1 {
					fmt.Printf("stream %d: %d resources in version %s\n", i, len(resp.GetResources()), resp.GetVersionInfo())
				}
				ack := &discovery.DiscoveryRequest{TypeUrl: rsrc.EndpointType, ResourceNames: []string{clusterName},
					VersionInfo: resp.GetVersionInfo(), ResponseNonce: resp.GetNonce()}
				if err := st.Send(ack); err != nil {
					return
				}
			}
		}(i)
	}
	wg.Wait()
}

func e2eTable(counts []int, pushes, nEndpoints int, only string) {
	fmt.Printf("\nEnd to end: go-control-plane's own gRPC ADS server (server.NewServer) over loopback, N grpc-go streams\n")
	fmt.Printf("in a child process (%d per connection), each its own node ACKing every response; one push = SetSnapshot\n", streamsPerConn)
	fmt.Printf("(one snapshot for the fleet) for every node, timed until the server has every stream's ACK of the new version;\n")
	fmt.Printf("server CPU = the server process's user+system time over the push. Median of %d pushes.\n", pushes)
	fmt.Printf("%-7s %-16s %12s %12s\n", "streams", "cache", "push->all ACK", "server CPU")
	for _, n := range counts {
		var g, m e2eResult
		if only != "meshring" {
			g = runE2E("go-control-plane", cache.NewSnapshotCache(true, cache.IDHash{}, quiet{}), n, pushes, nEndpoints)
		}
		if only != "gcp" {
			ours := xds.NewSnapshotCache(true, cache.IDHash{}, quiet{})
			m = runE2E("meshring", ours, n, pushes, nEndpoints)
			ours.(*xds.Cache).Close()
		}
		fmt.Printf("%-7d %-16s %12v %12v\n", n, "go-control-plane", g.push.Round(time.Microsecond), g.cpu.Round(time.Microsecond))
		fmt.Printf("%-7d %-16s %12v %12v\n", n, "meshring/xds", m.push.Round(time.Microsecond), m.cpu.Round(time.Microsecond))
		fmt.Printf("%-7d %-16s %11.2fx %11.2fx\n", n, "ratio (gcp/ours)", float64(g.push)/float64(m.push), float64(g.cpu)/float64(m.cpu))
	}
}
