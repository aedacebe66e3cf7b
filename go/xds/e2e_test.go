package xds_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"sync/atomic"
	"testing"
	"time"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	rsrc "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	_ "google.golang.org/grpc/xds" // registers the xds:/// resolver and balancers

	"github.com/meshring/meshring/go/xds"
)

// backend is a plain gRPC server on loopback serving the health service,
// counting the calls it answers.
type backend struct {
	port  uint32
	calls atomic.Int64
	srv   *grpc.Server
}

func startBackend(t *testing.T) *backend {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &backend{port: uint32(lis.Addr().(*net.TCPAddr).Port)}
	b.srv = grpc.NewServer(grpc.UnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		b.calls.Add(1)
		return h(ctx, req)
	}))
	healthpb.RegisterHealthServer(b.srv, health.NewServer())
	go b.srv.Serve(lis)
	t.Cleanup(b.srv.Stop)
	return b
}

// e2eSnapshot is the resource chain a gRPC xDS client follows for target:
// LDS (ApiListener + HttpConnectionManager over RDS, router filter) -> RDS
// -> CDS (EDS over ADS) -> EDS pointing at port on loopback.
func e2eSnapshot(t *testing.T, version, target string, port uint32) *cache.Snapshot {
	const route, cluster = "e2e-route", "e2e-cluster"
	snap, err := cache.NewSnapshot(version, map[rsrc.Type][]types.Resource{
		rsrc.ListenerType: {makeAPIListener(t, target, route)},
		rsrc.RouteType:    {makeRoute(route, target, cluster)},
		rsrc.ClusterType:  {makeCluster(cluster)},
		rsrc.EndpointType: {makeEndpoint(cluster, "127.0.0.1", port)},
	})
	if err != nil {
		t.Fatal(err)
	}
	return snap
}

// TestEndToEndGRPCXDSClient serves go-control-plane's xDS server from our
// cache to grpc-go's xDS client, then moves the endpoint to a second backend
// and sees the RPCs follow. grpc-go reads GRPC_XDS_BOOTSTRAP_CONFIG once, at
// process start, so the client runs in a child process (this test binary
// again, running TestEndToEndClientProcess) with the bootstrap in its
// environment; it makes RPCs until its stdin closes. The backends count the
// calls they answer.
func TestEndToEndGRPCXDSClient(t *testing.T) {
	const nodeID, target = "e2e-node", "test-target"
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	c := xds.NewSnapshotCache(true, cache.IDHash{}, testLogger(t))
	defer c.(*xds.Cache).Close()
	xdsServer := server.NewServer(ctx, c, nil)
	gs := grpc.NewServer()
	discovery.RegisterAggregatedDiscoveryServiceServer(gs, xdsServer)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go gs.Serve(lis)
	defer gs.Stop()

	b1, b2 := startBackend(t), startBackend(t)
	if err := c.SetSnapshot(ctx, nodeID, e2eSnapshot(t, "1", target, b1.port)); err != nil {
		t.Fatal(err)
	}
	bootstrap := fmt.Sprintf(`{"xds_servers": [{"server_uri": "passthrough:///%s", "channel_creds": [{"type": "insecure"}], "server_features": []}], "node": {"id": %q}}`,
		lis.Addr(), nodeID)

	child := exec.Command(os.Args[0], "-test.run=^TestEndToEndClientProcess$", "-test.count=1")
	child.Env = append(os.Environ(), "GRPC_XDS_BOOTSTRAP_CONFIG="+bootstrap, "MESHRING_E2E_TARGET=xds:///"+target)
	var out bytes.Buffer
	child.Stdout, child.Stderr = &out, &out
	stdin, err := child.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- child.Wait() }()
	defer func() {
		stdin.Close()
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("client process: %v\n%s", err, out.String())
			}
		case <-time.After(10 * time.Second):
			child.Process.Kill()
			t.Errorf("client process did not exit\n%s", out.String())
		}
	}()
	waitCalls := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for !cond() {
			select {
			case err := <-exited:
				exited <- err
				t.Fatalf("%s: client process exited: %v\n%s", what, err, out.String())
			case <-time.After(5 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 15s (backend1 %d calls, backend2 %d)\n%s", what, b1.calls.Load(), b2.calls.Load(), out.String())
			}
		}
	}
	waitCalls("RPCs reach backend1", func() bool { return b1.calls.Load() >= 5 })
	if n := b2.calls.Load(); n != 0 {
		t.Fatalf("backend2 got %d calls before it was in the snapshot", n)
	}

	// Move the endpoint: the RPCs go to the second backend, and only there.
	if err := c.SetSnapshot(ctx, nodeID, e2eSnapshot(t, "2", target, b2.port)); err != nil {
		t.Fatal(err)
	}
	waitCalls("RPCs reach backend2", func() bool { return b2.calls.Load() > 0 })
	time.Sleep(50 * time.Millisecond) // RPCs in flight to backend1 finish
	before, after := b1.calls.Load(), b2.calls.Load()
	waitCalls("RPCs keep reaching backend2", func() bool { return b2.calls.Load() >= after+5 })
	if n := b1.calls.Load() - before; n != 0 {
		t.Fatalf("backend1 still got %d calls after the switch", n)
	}
	t.Logf("backend1 answered %d calls, backend2 %d", b1.calls.Load(), b2.calls.Load())
}

// TestEndToEndClientProcess is the client half of TestEndToEndGRPCXDSClient
// (skipped unless that test starts it): health checks through
// MESHRING_E2E_TARGET every few milliseconds until stdin closes.
func TestEndToEndClientProcess(t *testing.T) {
	target := os.Getenv("MESHRING_E2E_TARGET")
	if target == "" {
		t.Skip("client half of TestEndToEndGRPCXDSClient")
	}
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	stop := make(chan struct{})
	go func() {
		io.Copy(io.Discard, os.Stdin)
		close(stop)
	}()
	client := healthpb.NewHealthClient(conn)
	deadline := time.Now().Add(40 * time.Second)
	for n := 0; ; n++ {
		select {
		case <-stop:
			return
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("not stopped within 40s")
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := client.Check(ctx, &healthpb.HealthCheckRequest{}, grpc.WaitForReady(true))
		cancel()
		if err != nil {
			t.Fatalf("RPC %d through %s: %v", n, target, err)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
