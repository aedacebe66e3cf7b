package meshring

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

func TestVersion(t *testing.T) {
	if v := Version(); v != HeaderVersion {
		t.Fatalf("Version() = %q, header says %q", v, HeaderVersion)
	}
	var major, minor, patch uint32
	if _, err := fmt.Sscanf(Version(), "%d.%d.%d", &major, &minor, &patch); err != nil {
		t.Fatalf("Version() %q: %v", Version(), err)
	}
	if got, want := VersionNumber(), major*1000000+minor*1000+patch; got != want {
		t.Fatalf("VersionNumber() = %d, want %d", got, want)
	}
}

// TestEcho exchanges datagrams in both directions with a stdlib peer, over
// IPv4 and IPv6, on both backends.
func TestEcho(t *testing.T) {
	families := []struct {
		name, network, bind, peer string
		v6                        bool
	}{
		{"v4", "udp4", "127.0.0.1:0", "127.0.0.1:0", false},
		{"v6", "udp6", "[::1]:0", "[::1]:0", true},
	}
	for _, bc := range backendCases {
		for _, fam := range families {
			t.Run(bc.name+"/"+fam.name, func(t *testing.T) {
				c := listen(t, fam.network, fam.bind, Config{Backend: bc.backend})
				p := peer(t, fam.network, fam.peer)
				local := c.LocalAddrPort()
				if local.Port() == 0 || local.Addr().Is6() != fam.v6 {
					t.Fatalf("LocalAddrPort() = %v", local)
				}
				if la, ok := c.LocalAddr().(*net.UDPAddr); !ok || la.Port != int(local.Port()) {
					t.Fatalf("LocalAddr() = %#v", c.LocalAddr())
				}
				c.SetDeadline(deadlineSoon())
				p.SetDeadline(deadlineSoon())
				buf := make([]byte, 2048)
				pbuf := make([]byte, 2048)
				for i := 0; i < 10; i++ {
					msg := []byte(fmt.Sprintf("ping %d %s", i, strings.Repeat("x", i*100)))
					if _, err := p.WriteToUDPAddrPort(msg, local); err != nil {
						t.Fatal(err)
					}
					n, from, err := c.ReadFrom(buf)
					if err != nil {
						t.Fatalf("ReadFrom: %v", err)
					}
					if !bytes.Equal(buf[:n], msg) {
						t.Fatalf("got %q, want %q", buf[:n], msg)
					}
					fromAP := from.(*net.UDPAddr).AddrPort()
					if fromAP != p.LocalAddr().(*net.UDPAddr).AddrPort() {
						t.Fatalf("source %v, want %v", fromAP, p.LocalAddr())
					}
					reply := append([]byte("pong "), msg...)
					if n, err := c.WriteTo(reply, from); err != nil || n != len(reply) {
						t.Fatalf("WriteTo = %d, %v", n, err)
					}
					pn, pfrom, err := p.ReadFromUDPAddrPort(pbuf)
					if err != nil {
						t.Fatalf("peer read: %v", err)
					}
					if !bytes.Equal(pbuf[:pn], reply) || pfrom.Port() != local.Port() {
						t.Fatalf("peer got %q from %v", pbuf[:pn], pfrom)
					}
				}
				s := c.Stats()
				if s.RxDatagrams != 10 || s.TxDatagrams != 10 {
					t.Fatalf("Stats() = %+v, want 10 received and 10 sent", s)
				}
			})
		}
	}
}

// TestDualStack checks that ":0" on "udp" is dual-stack and that IPv4 peers
// appear with IPv4 addresses.
func TestDualStack(t *testing.T) {
	c := listen(t, "udp", ":0", Config{Backend: BackendBatch})
	if !c.LocalAddrPort().Addr().Is6() || !c.LocalAddrPort().Addr().IsUnspecified() {
		t.Fatalf("LocalAddrPort() = %v, want [::]:port", c.LocalAddrPort())
	}
	p := peer(t, "udp4", "127.0.0.1:0")
	c.SetDeadline(deadlineSoon())
	p.SetDeadline(deadlineSoon())
	if _, err := p.WriteToUDPAddrPort([]byte("hi"), loopbackOf(c.LocalAddrPort(), false)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	n, from, err := c.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatal(err)
	}
	if !from.Addr().Is4() || from != p.LocalAddr().(*net.UDPAddr).AddrPort() {
		t.Fatalf("source %v, want the IPv4 peer %v", from, p.LocalAddr())
	}
	if _, err := c.WriteToUDPAddrPort(buf[:n], from); err != nil {
		t.Fatalf("reply to an IPv4 peer on a dual-stack socket: %v", err)
	}
	if n, _, err := p.ReadFromUDPAddrPort(buf); err != nil || string(buf[:n]) != "hi" {
		t.Fatalf("peer read %q, %v", buf[:n], err)
	}

	// "udp6" with an empty host is IPv6-only, as in package net.
	c6 := listen(t, "udp6", ":0", Config{Backend: BackendBatch})
	if _, err := c6.WriteToUDPAddrPort([]byte("x"), p.LocalAddr().(*net.UDPAddr).AddrPort()); err == nil {
		t.Fatal("an IPv6-only socket sent to an IPv4 peer")
	}
}

func TestTruncation(t *testing.T) {
	for _, bc := range backendCases {
		t.Run(bc.name, func(t *testing.T) {
			c := listen(t, "udp4", "127.0.0.1:0", Config{Backend: bc.backend})
			p := peer(t, "udp4", "127.0.0.1:0")
			c.SetDeadline(deadlineSoon())
			long := bytes.Repeat([]byte("0123456789"), 10)
			for _, m := range [][]byte{long, []byte("short")} {
				if _, err := p.WriteToUDPAddrPort(m, c.LocalAddrPort()); err != nil {
					t.Fatal(err)
				}
			}
			small := make([]byte, 10)
			n, _, err := c.ReadFrom(small)
			if err != nil || n != 10 || !bytes.Equal(small, long[:10]) {
				t.Fatalf("ReadFrom(10-byte buffer) = %d %q, %v; want the first 10 bytes", n, small[:n], err)
			}
			// The truncated datagram must not stay stuck in front of the next one.
			buf := make([]byte, 64)
			n, _, err = c.ReadFrom(buf)
			if err != nil || string(buf[:n]) != "short" {
				t.Fatalf("next ReadFrom = %q, %v; want \"short\"", buf[:n], err)
			}
		})
	}
}

func TestDeadlines(t *testing.T) {
	for _, bc := range backendCases {
		t.Run(bc.name, func(t *testing.T) {
			c := listen(t, "udp4", "127.0.0.1:0", Config{Backend: bc.backend})
			buf := make([]byte, 64)

			checkTimeout := func(err error) {
				t.Helper()
				if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.Is(err, ErrTimeout) {
					t.Fatalf("err = %v, want a deadline error", err)
				}
				var ne net.Error
				if !errors.As(err, &ne) || !ne.Timeout() {
					t.Fatalf("err = %v is not a net.Error with Timeout()", err)
				}
			}

			// A deadline in the past fails at once.
			c.SetReadDeadline(time.Now().Add(-time.Second))
			start := time.Now()
			_, _, err := c.ReadFrom(buf)
			checkTimeout(err)
			if d := time.Since(start); d > 20*time.Millisecond {
				t.Fatalf("past deadline took %v", d)
			}

			// A 50ms deadline waits about 50ms.
			c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
			start = time.Now()
			_, _, err = c.ReadFrom(buf)
			d := time.Since(start)
			checkTimeout(err)
			if d < 45*time.Millisecond || d > time.Second {
				t.Fatalf("50ms deadline returned after %v", d)
			}

			// ReadBatch honours it too.
			c.SetReadDeadline(time.Now().Add(-time.Second))
			_, err = c.ReadBatch([][]byte{buf}, make([]int, 1), make([]netip.AddrPort, 1))
			checkTimeout(err)

			// The zero time clears the deadline: a later datagram is read.
			c.SetDeadline(time.Time{})
			p := peer(t, "udp4", "127.0.0.1:0")
			go func() {
				time.Sleep(80 * time.Millisecond)
				p.WriteToUDPAddrPort([]byte("late"), c.LocalAddrPort())
			}()
			done := make(chan error, 1)
			go func() {
				n, _, err := c.ReadFrom(buf)
				if err == nil && string(buf[:n]) != "late" {
					err = fmt.Errorf("read %q", buf[:n])
				}
				done <- err
			}()
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("read after clearing the deadline: %v", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("read after clearing the deadline never returned")
			}

			// A deadline set while a read is blocked takes effect.
			go func() {
				_, _, err := c.ReadFrom(buf)
				done <- err
			}()
			time.Sleep(30 * time.Millisecond)
			c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
			select {
			case err := <-done:
				checkTimeout(err)
			case <-time.After(2 * time.Second):
				t.Fatal("a deadline set during a blocked read did not end it")
			}

			// Write deadlines.
			c.SetWriteDeadline(time.Now().Add(-time.Second))
			_, err = c.WriteToUDPAddrPort([]byte("x"), p.LocalAddr().(*net.UDPAddr).AddrPort())
			checkTimeout(err)
			err = c.WriteBatch([][]byte{[]byte("x")}, p.LocalAddr().(*net.UDPAddr).AddrPort())
			checkTimeout(err)
			c.SetWriteDeadline(time.Time{})
			if _, err := c.WriteToUDPAddrPort([]byte("x"), p.LocalAddr().(*net.UDPAddr).AddrPort()); err != nil {
				t.Fatalf("write after clearing the deadline: %v", err)
			}
		})
	}
}

func TestCloseUnblocksRead(t *testing.T) {
	for _, bc := range backendCases {
		t.Run(bc.name, func(t *testing.T) {
			c := listen(t, "udp4", "127.0.0.1:0", Config{Backend: bc.backend})
			p := peer(t, "udp4", "127.0.0.1:0")
			p.WriteToUDPAddrPort([]byte("one"), c.LocalAddrPort())
			buf := make([]byte, 64)
			c.SetReadDeadline(deadlineSoon())
			if _, _, err := c.ReadFrom(buf); err != nil {
				t.Fatal(err)
			}
			c.SetReadDeadline(time.Time{})

			type result struct {
				err error
				at  time.Time
			}
			done := make(chan result, 2)
			go func() {
				_, _, err := c.ReadFrom(buf)
				done <- result{err, time.Now()}
			}()
			go func() {
				_, err := c.ReadBatch([][]byte{make([]byte, 64)}, make([]int, 1), make([]netip.AddrPort, 1))
				done <- result{err, time.Now()}
			}()
			time.Sleep(100 * time.Millisecond)
			closedAt := time.Now()
			if err := c.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			for i := 0; i < 2; i++ {
				select {
				case r := <-done:
					if !errors.Is(r.err, net.ErrClosed) || !errors.Is(r.err, ErrClosed) {
						t.Fatalf("blocked read returned %v, want net.ErrClosed", r.err)
					}
					if d := r.at.Sub(closedAt); d > 100*time.Millisecond {
						t.Fatalf("blocked read returned %v after Close", d)
					}
				case <-time.After(time.Second):
					t.Fatal("Close did not unblock a blocked read")
				}
			}
			if _, _, err := c.ReadFrom(buf); !errors.Is(err, net.ErrClosed) {
				t.Fatalf("ReadFrom after Close = %v", err)
			}
			if _, err := c.WriteTo(buf, p.LocalAddr()); !errors.Is(err, net.ErrClosed) {
				t.Fatalf("WriteTo after Close = %v", err)
			}
			if err := c.Close(); !errors.Is(err, ErrClosed) {
				t.Fatalf("second Close = %v, want ErrClosed", err)
			}
			if err := c.SetDeadline(time.Now()); !errors.Is(err, net.ErrClosed) {
				t.Fatalf("SetDeadline after Close = %v", err)
			}
			if s := c.Stats(); s.RxDatagrams != 1 {
				t.Fatalf("Stats after Close = %+v, want the final counters (1 received)", s)
			}
		})
	}
}

// TestFinalizer checks that a conn dropped without Close is freed: its port
// becomes bindable again.
func TestFinalizer(t *testing.T) {
	port := func() uint16 {
		c, err := ListenUDPConfig("udp4", "127.0.0.1:0", Config{Backend: BackendBatch})
		if err != nil {
			t.Fatal(err)
		}
		return c.LocalAddrPort().Port() // c is dropped without Close
	}()
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	deadline := time.Now().Add(5 * time.Second)
	for {
		runtime.GC()
		c, err := ListenUDPConfig("udp4", addr, Config{Backend: BackendBatch})
		if err == nil {
			c.Close()
			return
		}
		if !errors.Is(err, ErrIO) {
			t.Fatalf("rebinding %s: %v", addr, err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("port %d still bound 5s after its conn became unreachable: %v", port, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestBadInput(t *testing.T) {
	for _, tc := range []struct {
		network, addr string
		want          error
	}{
		{"udp", "garbage", ErrParse},
		{"udp", "localhost:0", ErrParse},
		{"udp", "127.0.0.1:99999", ErrParse},
		{"udp4", "", ErrParse},
		{"tcp", "127.0.0.1:0", ErrInvalidArgument},
		{"udp4", "[::1]:0", ErrInvalidArgument},
		{"udp6", "127.0.0.1:0", ErrInvalidArgument},
	} {
		c, err := ListenUDP(tc.network, tc.addr)
		if c != nil || !errors.Is(err, tc.want) {
			t.Errorf("ListenUDP(%q, %q) = %v, %v; want %v", tc.network, tc.addr, c, err, tc.want)
		}
	}
	_, err := ListenUDP("udp", "garbage")
	var me *Error
	if !errors.As(err, &me) || me.Op != "listen" || !strings.Contains(me.Msg, "garbage") {
		t.Errorf("parse error %#v lacks the library's message", err)
	}

	if _, err := ListenUDPConfig("udp4", "127.0.0.1:0", Config{Batch: 5000}); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("Batch 5000: %v, want ErrInvalidArgument", err)
	}
	if _, err := ListenUDPConfig("udp4", "127.0.0.1:0", Config{Backend: 7}); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("Backend 7: %v, want ErrInvalidArgument", err)
	}

	c := listen(t, "udp4", "127.0.0.1:0", Config{Backend: BackendBatch})
	if _, err := c.WriteTo([]byte("x"), &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9}); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("WriteTo(*net.TCPAddr) = %v, want ErrInvalidArgument", err)
	}
	if _, err := c.WriteTo([]byte("x"), nil); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("WriteTo(nil) = %v, want ErrInvalidArgument", err)
	}
	if _, err := c.WriteTo([]byte("x"), &net.UDPAddr{Port: 9}); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("WriteTo(no IP) = %v, want ErrInvalidArgument", err)
	}
	// Rejected by the library itself: the message must come from mr_last_error.
	_, err = c.WriteToUDPAddrPort([]byte("x"), netip.MustParseAddrPort("[::1]:9"))
	if !errors.Is(err, ErrInvalidArgument) || !errors.As(err, &me) || !strings.Contains(me.Msg, "IPv4 socket") {
		t.Errorf("IPv6 destination on an IPv4 socket = %v, want the library's ErrInvalidArgument", err)
	}
	if err := c.WriteBatchTo([][]byte{{1}}, nil); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("WriteBatchTo with mismatched lengths = %v", err)
	}
	if err := c.WriteBatch([][]byte{make([]byte, 70000)}, netip.MustParseAddrPort("127.0.0.1:9")); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("70000-byte datagram = %v, want ErrInvalidArgument", err)
	}
	if _, err := c.ReadBatch(nil, nil, nil); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("empty ReadBatch = %v, want ErrInvalidArgument", err)
	}
	if _, err := c.ReadBatch([][]byte{{}}, make([]int, 1), make([]netip.AddrPort, 1)); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("ReadBatch with an empty buffer = %v, want ErrInvalidArgument", err)
	}
}

func TestErrors(t *testing.T) {
	closed := &Error{Status: StatusClosed, Op: "read"}
	if !errors.Is(closed, net.ErrClosed) || !errors.Is(closed, ErrClosed) || errors.Is(closed, ErrTimeout) {
		t.Error("closed error matching")
	}
	if !errors.Is(ErrClosed, net.ErrClosed) {
		t.Error("ErrClosed does not match net.ErrClosed")
	}
	timeout := &Error{Status: StatusTimeout, Op: "read"}
	if !errors.Is(timeout, os.ErrDeadlineExceeded) || !timeout.Timeout() || errors.Is(timeout, net.ErrClosed) {
		t.Error("timeout error matching")
	}
	sentinels := []error{ErrInvalidArgument, ErrClosed, ErrTimeout, ErrWouldBlock, ErrIO, ErrUnsupported,
		ErrNotFound, ErrParse, ErrBufferTooSmall, ErrState, ErrUpToDate, ErrPanic, ErrNoMemory}
	for i, s := range sentinels {
		e := &Error{Status: Status(i + 1), Msg: "m"}
		for j, other := range sentinels {
			if errors.Is(e, other) != (i == j) {
				t.Errorf("errors.Is(%v, %v) = %v", e, other, i != j)
			}
		}
		if strings.Contains(s.Error(), "unknown") {
			t.Errorf("sentinel %d has no name: %v", i+1, s)
		}
	}
	if got := (&Error{Status: StatusIO, Op: "write", Msg: "boom"}).Error(); got != "meshring: write: boom" {
		t.Errorf("Error() = %q", got)
	}
}

// TestOversizeDropped checks that datagrams larger than Config.MaxDatagram
// are dropped, never delivered as empty or stale datagrams, and that a read
// never reports more datagrams than it had slots.
func TestOversizeDropped(t *testing.T) {
	for _, bc := range backendCases {
		t.Run(bc.name, func(t *testing.T) {
			c := listen(t, "udp4", "127.0.0.1:0", Config{Backend: bc.backend, MaxDatagram: 1000})
			p := peer(t, "udp4", "127.0.0.1:0")
			c.SetDeadline(deadlineSoon())
			send := func(b []byte) {
				t.Helper()
				if _, err := p.WriteToUDPAddrPort(b, c.LocalAddrPort()); err != nil {
					t.Fatal(err)
				}
			}
			send(make([]byte, 3000))
			send([]byte("after"))
			time.Sleep(20 * time.Millisecond) // let both arrive before one read
			bufs := [][]byte{make([]byte, 4000)}
			sizes := make([]int, 1)
			eps := make([]netip.AddrPort, 1)
			n, err := c.ReadBatch(bufs, sizes, eps)
			if err != nil || n != 1 || string(bufs[0][:sizes[0]]) != "after" {
				t.Fatalf("ReadBatch = %d, %v, %q; want 1 datagram \"after\"", n, err, bufs[0][:sizes[0]])
			}

			send(make([]byte, 3000))
			time.Sleep(20 * time.Millisecond)
			c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
			buf := make([]byte, 4000)
			if n, from, err := c.ReadFromUDPAddrPort(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("only an oversize datagram pending: ReadFrom = %d, %v, %v; want a timeout", n, from, err)
			}
			if s := c.Stats(); s.RxOversize != 2 {
				t.Fatalf("Stats().RxOversize = %d, want 2", s.RxOversize)
			}
		})
	}
}
