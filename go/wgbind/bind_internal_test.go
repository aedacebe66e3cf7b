package wgbind

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/tailscale/wireguard-go/conn"
)

// What StdNetBind sets on its sockets (controlfns_linux.go): 7 MiB buffers
// (forced as root), IP_PKTINFO / IPV6_RECVPKTINFO, IPV6_V6ONLY, UDP_GRO;
// SetMark reaches both sockets.
func TestSocketOptionsAndMark(t *testing.T) {
	b := NewBind().(*Bind)
	if _, _, err := b.Open(0); err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if b.v4 == nil || b.v6 == nil {
		t.Skip("needs IPv4 and IPv6")
	}
	checks := []struct {
		c           interface{ SockOpt(int, int) (int, error) }
		level, name int
		what        string
		ok          func(int) bool
	}{
		{b.v4, syscall.IPPROTO_IP, syscall.IP_PKTINFO, "IP_PKTINFO", func(v int) bool { return v == 1 }},
		{b.v6, syscall.IPPROTO_IPV6, syscall.IPV6_RECVPKTINFO, "IPV6_RECVPKTINFO", func(v int) bool { return v == 1 }},
		{b.v6, syscall.IPPROTO_IPV6, syscall.IPV6_V6ONLY, "IPV6_V6ONLY", func(v int) bool { return v == 1 }},
		{b.v4, syscall.IPPROTO_UDP, 104 /* UDP_GRO */, "UDP_GRO", func(v int) bool { return v == 1 }},
	}
	if os.Geteuid() == 0 {
		checks = append(checks, struct {
			c           interface{ SockOpt(int, int) (int, error) }
			level, name int
			what        string
			ok          func(int) bool
		}{b.v6, syscall.SOL_SOCKET, syscall.SO_RCVBUF, "SO_RCVBUF >= 2 x 7 MiB", func(v int) bool { return v >= 2*socketBufferSize }})
	}
	for _, c := range checks {
		v, err := c.c.SockOpt(c.level, c.name)
		if err != nil || !c.ok(v) {
			t.Errorf("%s = %d, %v", c.what, v, err)
		}
	}
	if os.Geteuid() != 0 {
		t.Skip("SO_MARK and forced buffers need root")
	}
	if err := b.SetMark(0x5157); err != nil {
		t.Fatal(err)
	}
	for _, c := range []interface{ SockOpt(int, int) (int, error) }{b.v4, b.v6} {
		if v, err := c.SockOpt(syscall.SOL_SOCKET, syscall.SO_MARK); err != nil || v != 0x5157 {
			t.Errorf("SO_MARK = %#x, %v", v, err)
		}
	}
}

// Received endpoints carry the local address the datagram was sent to,
// and a reply to such an endpoint leaves from that address.
func TestEndpointsCarrySource(t *testing.T) {
	b := NewBind()
	fns, port, err := b.Open(0)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	peer, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	dst := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.2"), port)
	if _, err := peer.WriteToUDPAddrPort([]byte("hello"), dst); err != nil {
		t.Fatal(err)
	}
	bufs := [][]byte{make([]byte, 65535), make([]byte, 65535)}
	sizes := make([]int, 2)
	eps := make([]conn.Endpoint, 2)
	n, err := fns[0](bufs, sizes, eps)
	if err != nil || n < 1 || string(bufs[0][:sizes[0]]) != "hello" {
		t.Fatalf("receive = %d, %v", n, err)
	}
	ep := eps[0].(*Endpoint)
	if ep.SrcIP() != dst.Addr() || ep.SrcIfidx() != 1 || ep.SrcToString() != "127.0.0.2" {
		t.Fatalf("SrcIP %v SrcIfidx %d SrcToString %q; want 127.0.0.2 on lo", ep.SrcIP(), ep.SrcIfidx(), ep.SrcToString())
	}
	if ep.DstToString() != peer.LocalAddr().String() {
		t.Fatalf("DstToString %q, want %q", ep.DstToString(), peer.LocalAddr())
	}
	if err := b.Send([][]byte{append(make([]byte, 8), "reply"...)}, ep, 8); err != nil {
		t.Fatal(err)
	}
	peer.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 64)
	m, from, err := peer.ReadFromUDPAddrPort(buf)
	if err != nil || string(buf[:m]) != "reply" || from != dst {
		t.Fatalf("reply %q from %v, %v; want from %v", buf[:m], from, err, dst)
	}
	ep.ClearSrc()
	if ep.SrcIP().IsValid() || ep.SrcToString() != "invalid IP" {
		t.Fatalf("after ClearSrc: %v", ep.SrcIP())
	}
}

// A GSO send through a device without checksum offload fails with EIO in
// the kernel: Send turns GSO off for this Open, sends the packets one by
// one and reports conn.ErrUDPGSODisabled, as StdNetBind does; later sends
// are plain. Runs in a network namespace of its own (a veth pair whose
// sending end, 198.18.9.1/24, has TX checksumming off). Linux 6.11 and
// later checksum such a GSO send in software instead of failing it
// ("udp: Allow GSO transmit from devices with no checksum offload"), so
// there the EIO cannot be provoked and the test says so and skips.
func TestGSODisabledOnEIO(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: network namespace, dummy device")
	}
	for _, tool := range []string{"ip", "ethtool"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed", tool)
		}
	}
	done := make(chan struct{})
	var noEIO bool
	go func() {
		// A goroutine of its own: its thread moves to a new namespace and
		// dies with it (never unlocked).
		defer close(done)
		runtime.LockOSThread()
		if err := syscall.Unshare(syscall.CLONE_NEWNET); err != nil {
			t.Errorf("unshare: %v", err)
			return
		}
		for _, args := range [][]string{
			{"ip", "link", "add", "d0", "type", "veth", "peer", "name", "d1"},
			{"ethtool", "-K", "d0", "tx", "off"},
			{"ip", "addr", "add", "198.18.9.1/24", "dev", "d0"},
			{"ip", "link", "set", "d1", "up"},
			{"ip", "link", "set", "d0", "up"},
		} {
			if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
				t.Errorf("%v: %v\n%s", args, err, out)
				return
			}
		}
		b := NewBind().(*Bind)
		if _, _, err := b.Open(0); err != nil {
			t.Errorf("Open: %v", err)
			return
		}
		defer b.Close()
		if !b.tx4 {
			t.Errorf("no UDP GSO on this kernel: nothing to fall back from")
			return
		}
		ep, _ := b.ParseEndpoint("198.18.9.2:51820")
		bufs := make([][]byte, 8)
		for i := range bufs {
			bufs[i] = make([]byte, 8+1200)
		}
		err := b.Send(bufs, ep, 8)
		if err == nil && b.tx4 {
			noEIO = true // the kernel checksummed the GSO send itself
			return
		}
		var gsoOff conn.ErrUDPGSODisabled
		if !errors.As(err, &gsoOff) || gsoOff.RetryErr != nil {
			t.Errorf("Send over a device without checksum offload = %v, want ErrUDPGSODisabled with a nil RetryErr", err)
		}
		if b.tx4 {
			t.Errorf("GSO still on after EIO")
		}
		if err := b.Send(bufs, ep, 8); err != nil {
			t.Errorf("plain Send after the fallback = %v", err)
		}
	}()
	<-done
	if noEIO {
		t.Skip("this kernel sends UDP GSO through a device without checksum offload (Linux >= 6.11 checksums in software): no EIO to fall back from")
	}
}
