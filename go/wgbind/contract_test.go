// The conn.Bind contract as wireguard-go's StdNetBind keeps it (its
// conn/conn.go doc comments, conn/bind_std.go behaviour, conn/bind_std_test.go
// TestStdNetBindReceiveFuncAfterClose, and how device/device.go BindUpdate
// drives a Bind). upstream/run.sh also runs this file inside a copy of
// wireguard-go next to wireguard-go's own device tests.
package wgbind_test

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/meshring/meshring/go/wgbind"
	"github.com/tailscale/wireguard-go/conn"
)

const offset = 8 // device.MessageEncapsulatingTransportSize, what Peer.SendBuffers passes

func newBind() conn.Bind { return wgbind.NewBind() }

func have6(t *testing.T) bool {
	c, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback})
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// Upstream TestStdNetBindReceiveFuncAfterClose, plus the documented contract:
// "All fns returned by Open must return net.ErrClosed after a call to Close."
func TestReceiveFuncAfterClose(t *testing.T) {
	b := newBind()
	fns, _, err := b.Open(0)
	if err != nil {
		t.Fatal(err)
	}
	b.Close()
	bufs := [][]byte{make([]byte, 1)}
	sizes := make([]int, 1)
	eps := make([]conn.Endpoint, 1)
	for _, fn := range fns {
		_, err := fn(bufs, sizes, eps)
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("%s after Close: err = %v, want net.ErrClosed", fn.PrettyName(), err)
		}
	}
}

// device.BindUpdate closes before every Open (also before the first one) and
// aborts on a Close error; device.Up/Down/listen_port reopen the same Bind.
func TestOpenCloseLifecycle(t *testing.T) {
	b := newBind()
	if err := b.Close(); err != nil {
		t.Fatalf("Close before Open = %v, want nil", err)
	}
	if err := b.SetMark(0); err != nil {
		t.Fatalf("SetMark before Open = %v, want nil", err)
	}
	_, port, err := b.Open(0)
	if err != nil {
		t.Fatal(err)
	}
	if port == 0 {
		t.Fatal("Open(0) reported port 0")
	}
	if _, _, err := b.Open(0); !errors.Is(err, conn.ErrBindAlreadyOpen) {
		t.Fatalf("second Open = %v, want conn.ErrBindAlreadyOpen", err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("Close = %v", err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("second Close = %v, want nil", err)
	}
	_, port2, err := b.Open(port) // BindUpdate reopens on netc.port
	if err != nil || port2 != port {
		t.Fatalf("reopen on %d: port %d err %v", port, port2, err)
	}
	b.Close()
}

func TestBatchSize(t *testing.T) {
	if got := newBind().BatchSize(); got != conn.IdealBatchSize {
		t.Fatalf("BatchSize = %d, want %d", got, conn.IdealBatchSize)
	}
}

func TestPortInUse(t *testing.T) {
	busy, err := net.ListenUDP("udp4", &net.UDPAddr{})
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	b := newBind()
	_, _, err = b.Open(uint16(busy.LocalAddr().(*net.UDPAddr).Port))
	if !errors.Is(err, syscall.EADDRINUSE) {
		b.Close()
		t.Fatalf("Open(busy port) = %v, want EADDRINUSE", err)
	}
}

// Close must unblock ReceiveFuncs that are waiting (device.closeBindLocked
// waits for the receive goroutines to exit).
func TestCloseUnblocksReceivers(t *testing.T) {
	b := newBind()
	fns, _, err := b.Open(0)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, len(fns))
	for _, fn := range fns {
		go func(fn conn.ReceiveFunc) {
			n := b.BatchSize()
			bufs := make([][]byte, n)
			for i := range bufs {
				bufs[i] = make([]byte, 65535)
			}
			_, err := fn(bufs, make([]int, n), make([]conn.Endpoint, n))
			done <- err
		}(fn)
	}
	time.Sleep(100 * time.Millisecond)
	b.Close()
	for range fns {
		select {
		case err := <-done:
			if !errors.Is(err, net.ErrClosed) {
				t.Errorf("blocked receive returned %v, want net.ErrClosed", err)
			}
		case <-time.After(3 * time.Second):
			t.Fatal("Close did not unblock a ReceiveFunc")
		}
	}
}

func TestParseEndpoint(t *testing.T) {
	b := newBind()
	for _, s := range []string{"1.2.3.4:51820", "[::1]:1", "[fe80::1%1]:7"} {
		ep, err := b.ParseEndpoint(s)
		if err != nil {
			t.Fatalf("ParseEndpoint(%q): %v", s, err)
		}
		ap := netip.MustParseAddrPort(s)
		want, _ := ap.MarshalBinary()
		if ep.DstToString() != ap.String() || ep.DstIP() != ap.Addr() || !bytes.Equal(ep.DstToBytes(), want) {
			t.Errorf("%q: DstToString %q DstIP %v DstToBytes %x", s, ep.DstToString(), ep.DstIP(), ep.DstToBytes())
		}
		// StdNetEndpoint: no source until one is received; SrcToString is
		// SrcIP().String(), i.e. "invalid IP" (and never carries a port).
		if ep.SrcIP().IsValid() || ep.SrcToString() != "invalid IP" {
			t.Errorf("%q: SrcIP %v SrcToString %q", s, ep.SrcIP(), ep.SrcToString())
		}
		ep.ClearSrc()
	}
	for _, s := range []string{"example.com:1", "1.2.3.4", ":51820", "1.2.3.4:65536"} {
		if _, err := b.ParseEndpoint(s); err == nil {
			t.Errorf("ParseEndpoint(%q) succeeded", s)
		}
	}
}

// StdNetBind.Send on a closed Bind (or to a family it has no socket for)
// returns syscall.EAFNOSUPPORT.
func TestSendAfterClose(t *testing.T) {
	b := newBind()
	if _, _, err := b.Open(0); err != nil {
		t.Fatal(err)
	}
	ep, _ := b.ParseEndpoint("127.0.0.1:9")
	b.Close()
	err := b.Send([][]byte{make([]byte, offset+4)}, ep, offset)
	if !errors.Is(err, syscall.EAFNOSUPPORT) {
		t.Fatalf("Send after Close = %v, want EAFNOSUPPORT", err)
	}
}

// A batch of 128 with the device's offset, equal sizes then a short one then
// more (exercises coalesceMessages/UDP GSO boundaries and GRO splitting on the
// receiver), must arrive whole and in order, from the sender's address.
func roundTrip(t *testing.T, dst string) {
	a, bb := newBind(), newBind()
	_, pa, err := a.Open(0)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	fns, pb, err := bb.Open(0)
	if err != nil {
		t.Fatal(err)
	}
	defer bb.Close()
	ep, err := a.ParseEndpoint(fmt.Sprintf(dst, pb))
	if err != nil {
		t.Fatal(err)
	}
	var want [][]byte
	bufs := make([][]byte, conn.IdealBatchSize)
	for i := range bufs {
		n := 1200
		if i == 100 {
			n = 500
		}
		bufs[i] = make([]byte, offset+n)
		for j := offset; j < len(bufs[i]); j++ {
			bufs[i][j] = byte(i + j)
		}
		copy(bufs[i][:offset], "XXXXXXXX") // must not be sent
		want = append(want, bufs[i][offset:])
	}
	if err := a.Send(bufs, ep, offset); err != nil {
		t.Fatal(err)
	}
	is6 := ep.DstIP().Is6()
	var got [][]byte
	deadline := time.Now().Add(5 * time.Second)
	rx := make(chan struct{})
	go func() {
		defer close(rx)
		n := bb.BatchSize()
		rbufs := make([][]byte, n)
		for i := range rbufs {
			rbufs[i] = make([]byte, 65535)
		}
		sizes := make([]int, n)
		eps := make([]conn.Endpoint, n)
		for len(got) < len(want) && time.Now().Before(deadline) {
			var fn conn.ReceiveFunc
			for _, f := range fns {
				if (f.PrettyName() == "v6") == is6 {
					fn = f
				}
			}
			if fn == nil {
				fn = fns[0]
			}
			k, err := fn(rbufs, sizes, eps)
			if err != nil {
				return
			}
			for i := 0; i < k; i++ {
				if sizes[i] == 0 {
					continue // "Some elements of sizes may be zero"
				}
				got = append(got, bytes.Clone(rbufs[i][:sizes[i]]))
				if s := eps[i].DstToString(); s != fmt.Sprintf(dst, pa) {
					t.Errorf("packet from %s, want %s", s, fmt.Sprintf(dst, pa))
				}
			}
		}
	}()
	select {
	case <-rx:
	case <-time.After(6 * time.Second):
		bb.Close()
		<-rx
	}
	if len(got) != len(want) {
		t.Fatalf("received %d of %d datagrams", len(got), len(want))
	}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("datagram %d differs (len %d vs %d)", i, len(got[i]), len(want[i]))
		}
	}
}

func TestRoundTripV4(t *testing.T) { roundTrip(t, "127.0.0.1:%d") }

func TestRoundTripV6(t *testing.T) {
	if !have6(t) {
		t.Skip("no IPv6 loopback")
	}
	roundTrip(t, "[::1]:%d")
}

// Open(0) binds IPv4 and IPv6 on one port (StdNetBind retries up to 100
// times when the IPv6 side of a random port is taken).
func TestBothFamiliesOnePort(t *testing.T) {
	if !have6(t) {
		t.Skip("no IPv6 loopback")
	}
	b := newBind()
	fns, port, err := b.Open(0)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if len(fns) != 2 {
		t.Fatalf("%d ReceiveFuncs, want 2 (v4, v6)", len(fns))
	}
	if fns[0].PrettyName() != "v4" || fns[1].PrettyName() != "v6" {
		t.Errorf("PrettyNames %q %q, want v4 v6", fns[0].PrettyName(), fns[1].PrettyName())
	}
	for _, network := range []string{"udp4", "udp6"} {
		if c, err := net.ListenUDP(network, &net.UDPAddr{Port: int(port)}); err == nil {
			c.Close()
			t.Errorf("%s port %d is free: the Bind does not hold it", network, port)
		}
	}
}
