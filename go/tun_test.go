package meshring

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"
)

// Every TUN test runs in a fresh network namespace of its own, so that it
// needs no cleanup of routes or devices and cannot touch the host's
// network: only addresses inside 198.18.7.0/24 (benchmarking space) are
// used, inside that namespace.
//
// enterNetns locks the calling goroutine to its OS thread and moves that
// thread into a new network namespace (unshare(CLONE_NEWNET) affects only
// the calling thread). Everything that must happen in the namespace runs
// on this goroutine: creating the device (the kernel creates it in the
// creating thread's namespace), configuring it with ip(8) (exec forks from
// the calling thread, so the child starts in that thread's namespace;
// enterNetns checks it), opening sockets, and MTU/SetMTU (the library looks
// the device up by name in the calling thread's namespace). Read, Write and
// Close work from any goroutine: they use the device's file descriptor.
//
// The thread is never unlocked: an unlocked thread would go back to the
// scheduler's pool while still in the test's namespace, and unrelated
// goroutines (other tests, the runtime) scheduled onto it later would then
// see the wrong network. When a goroutine exits while locked, the runtime
// terminates its thread instead, so the namespace dies with the test's
// goroutine (a goroutine that happens to run on the process's main thread
// leaves that thread parked for good instead: it is never reused either). Subtests run on goroutines of their own, so each calls
// enterNetns itself. t.Cleanup functions run on the test's goroutine
// before it exits, still inside the namespace.
func enterNetns(t *testing.T) {
	t.Helper()
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		t.Skipf("no TUN support: %v", err)
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skipf("ip(8) is needed to configure the device: %v", err)
	}
	runtime.LockOSThread() // never unlocked: see above
	before, err := os.Readlink("/proc/thread-self/ns/net")
	if err != nil {
		t.Fatalf("readlink /proc/thread-self/ns/net: %v", err)
	}
	if err := syscall.Unshare(syscall.CLONE_NEWNET); err != nil {
		if errors.Is(err, syscall.EPERM) {
			t.Skipf("cannot create a network namespace (needs root / CAP_SYS_ADMIN): %v", err)
		}
		t.Fatalf("unshare(CLONE_NEWNET): %v", err)
	}
	mine, err := os.Readlink("/proc/thread-self/ns/net")
	if err != nil {
		t.Fatalf("readlink /proc/thread-self/ns/net: %v", err)
	}
	if mine == before {
		t.Fatalf("thread still in namespace %s after unshare", mine)
	}
	out, err := exec.Command("readlink", "/proc/self/ns/net").Output()
	if err != nil {
		t.Fatalf("readlink in a child: %v", err)
	}
	if child := strings.TrimSpace(string(out)); child != mine {
		t.Fatalf("a child started from the locked thread is in %s, not the thread's %s", child, mine)
	}
}

// ipCmd runs ip(8) with args in the calling thread's namespace.
func ipCmd(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

var (
	tunLocal = netip.MustParseAddr("198.18.7.1") // the device's address
	tunPeer  = netip.MustParseAddr("198.18.7.2") // "the other side": us, writing into the device
)

// newTestTUN enters a fresh namespace, creates a device there with cfg,
// gives it 198.18.7.1/24 and brings it up. It is closed at cleanup.
func newTestTUN(t *testing.T, cfg TUNConfig) *TUN {
	t.Helper()
	enterNetns(t)
	tun, err := CreateTUNConfig("mrt%d", cfg)
	if err != nil {
		if cfg.Backend == BackendURing && errors.Is(err, ErrUnsupported) {
			t.Skipf("io_uring unavailable: %v", err)
		}
		t.Fatalf("CreateTUNConfig(%+v): %v", cfg, err)
	}
	t.Cleanup(func() { tun.Close() })
	if cfg.Backend != BackendAuto && tun.Backend() != cfg.Backend {
		t.Fatalf("Backend() = %v, want %v", tun.Backend(), cfg.Backend)
	}
	name, err := tun.Name()
	if err != nil || !strings.HasPrefix(name, "mrt") {
		t.Fatalf("Name() = %q, %v; want mrt<N>", name, err)
	}
	ipCmd(t, "addr", "add", tunLocal.String()+"/24", "dev", name)
	ipCmd(t, "link", "set", name, "txqueuelen", "4096")
	ipCmd(t, "link", "set", name, "up")
	return tun
}

type tunCase struct {
	name string
	cfg  TUNConfig
}

var tunCases = []tunCase{
	{"batch", TUNConfig{Backend: BackendBatch}},
	{"uring", TUNConfig{Backend: BackendURing}},
	{"batch-offload", TUNConfig{Backend: BackendBatch, Offload: true}},
	{"uring-offload", TUNConfig{Backend: BackendURing, Offload: true}},
	{"batch-packetinfo", TUNConfig{Backend: BackendBatch, PacketInfo: true}},
	{"uring-packetinfo", TUNConfig{Backend: BackendURing, PacketInfo: true}},
}

// inetChecksum is the Internet checksum (RFC 1071) of b.
func inetChecksum(b []byte) uint16 {
	var sum uint32
	for len(b) >= 2 {
		sum += uint32(b[0])<<8 | uint32(b[1])
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

// echoRequest builds an IPv4 ICMP echo request from tunPeer to tunLocal.
func echoRequest(id, seq uint16, payload []byte) []byte {
	p := make([]byte, 20+8+len(payload))
	p[0] = 0x45
	binary.BigEndian.PutUint16(p[2:], uint16(len(p)))
	binary.BigEndian.PutUint16(p[4:], seq) // IP ID
	p[8] = 64                              // TTL
	p[9] = 1                               // ICMP
	src, dst := tunPeer.As4(), tunLocal.As4()
	copy(p[12:16], src[:])
	copy(p[16:20], dst[:])
	binary.BigEndian.PutUint16(p[10:], inetChecksum(p[:20]))
	icmp := p[20:]
	icmp[0] = 8 // echo request
	binary.BigEndian.PutUint16(icmp[4:], id)
	binary.BigEndian.PutUint16(icmp[6:], seq)
	copy(icmp[8:], payload)
	binary.BigEndian.PutUint16(icmp[2:], inetChecksum(icmp))
	return p
}

type echo struct {
	id, seq uint16
	payload []byte
}

// parseEchoReply checks that pkt is an IPv4 ICMP echo reply from tunLocal
// to tunPeer with valid checksums.
func parseEchoReply(pkt []byte) (echo, error) {
	if len(pkt) < 28 || pkt[0]>>4 != 4 {
		return echo{}, fmt.Errorf("not an IPv4 packet: % x", pkt[:min(len(pkt), 20)])
	}
	ihl := int(pkt[0]&0xf) * 4
	if pkt[9] != 1 {
		return echo{}, fmt.Errorf("protocol %d, not ICMP", pkt[9])
	}
	if int(binary.BigEndian.Uint16(pkt[2:])) != len(pkt) {
		return echo{}, fmt.Errorf("IP total length %d, packet %d bytes", binary.BigEndian.Uint16(pkt[2:]), len(pkt))
	}
	if inetChecksum(pkt[:ihl]) != 0 {
		return echo{}, errors.New("bad IPv4 header checksum")
	}
	if src, dst := netip.AddrFrom4([4]byte(pkt[12:16])), netip.AddrFrom4([4]byte(pkt[16:20])); src != tunLocal || dst != tunPeer {
		return echo{}, fmt.Errorf("%v -> %v, want %v -> %v", src, dst, tunLocal, tunPeer)
	}
	icmp := pkt[ihl:]
	if icmp[0] != 0 || icmp[1] != 0 {
		return echo{}, fmt.Errorf("ICMP type %d code %d, want an echo reply (0, 0)", icmp[0], icmp[1])
	}
	if inetChecksum(icmp) != 0 {
		return echo{}, errors.New("bad ICMP checksum")
	}
	return echo{binary.BigEndian.Uint16(icmp[4:]), binary.BigEndian.Uint16(icmp[6:]), icmp[8:]}, nil
}

// isEchoReply reports whether pkt looks like an ICMP echo reply to us (the
// kernel also sends other traffic through the device, e.g. IPv6 MLD).
func isEchoReply(pkt []byte) bool {
	return len(pkt) >= 28 && pkt[0] == 0x45 && pkt[9] == 1 && pkt[20] == 0 &&
		netip.AddrFrom4([4]byte(pkt[16:20])) == tunPeer
}

const tunOffset = 16 // wireguard-go's MessageTransportHeaderSize

func makeBufs(n, size int) [][]byte {
	bufs := make([][]byte, n)
	for i := range bufs {
		bufs[i] = make([]byte, tunOffset+size)
	}
	return bufs
}

// readEchoReplies reads until want has been satisfied (it returns false
// once it has seen enough), failing the test after a timeout (by closing
// the device, which unblocks Read).
func readEchoReplies(t *testing.T, tun *TUN, bufSize int, done func(echo) bool) {
	t.Helper()
	timer := time.AfterFunc(10*time.Second, func() { tun.Close() })
	defer timer.Stop()
	bufs := makeBufs(8, bufSize)
	sizes := make([]int, len(bufs))
	for {
		n, err := tun.Read(bufs, sizes, tunOffset)
		if err != nil {
			t.Fatalf("Read: %v (timed out waiting for echo replies?)", err)
		}
		if n < 1 || n > len(bufs) {
			t.Fatalf("Read returned %d of %d", n, len(bufs))
		}
		for i := 0; i < n; i++ {
			if sizes[i] < 1 || sizes[i] > len(bufs[i])-tunOffset {
				t.Fatalf("sizes[%d] = %d, buffer holds %d", i, sizes[i], len(bufs[i])-tunOffset)
			}
			pkt := bufs[i][tunOffset : tunOffset+sizes[i]]
			if !isEchoReply(pkt) {
				continue
			}
			e, err := parseEchoReply(pkt)
			if err != nil {
				t.Fatalf("reply: %v", err)
			}
			if done(e) {
				return
			}
		}
	}
}

func TestTUNPing(t *testing.T) {
	for _, tc := range tunCases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			cfg.MTU = 1400
			tun := newTestTUN(t, cfg)
			if tun.BatchSize() != 128 {
				t.Errorf("BatchSize() = %d, want 128", tun.BatchSize())
			}
			if f := tun.File(); f != nil {
				t.Errorf("File() = %v, want nil", f)
			}
			if mtu, err := tun.MTU(); err != nil || mtu != 1400 {
				t.Fatalf("MTU() = %d, %v; want 1400", mtu, err)
			}
			select {
			case e := <-tun.Events():
				if e != EventUp {
					t.Fatalf("first event %d, want EventUp", e)
				}
			default:
				t.Fatal("no EventUp after creation")
			}
			if err := tun.SetMTU(1380); err != nil {
				t.Fatalf("SetMTU: %v", err)
			}
			if e := <-tun.Events(); e != EventMTUUpdate {
				t.Fatalf("event after SetMTU %d, want EventMTUUpdate", e)
			}
			if mtu, err := tun.MTU(); err != nil || mtu != 1380 {
				t.Fatalf("MTU() = %d, %v after SetMTU(1380)", mtu, err)
			}
			if err := tun.SetMTU(20); !errors.Is(err, ErrInvalidArgument) {
				t.Errorf("SetMTU(20) = %v, want ErrInvalidArgument", err)
			}

			payload := []byte("meshring TUN ping over a fresh netns")
			req := echoRequest(0x4d52, 1, payload)
			buf := make([]byte, tunOffset+len(req))
			copy(buf[tunOffset:], req)
			copy(buf, "header space....") // must not be written
			if n, err := tun.Write([][]byte{buf}, tunOffset); n != 1 || err != nil {
				t.Fatalf("Write = %d, %v", n, err)
			}
			readEchoReplies(t, tun, 1380, func(e echo) bool {
				if e.id != 0x4d52 || e.seq != 1 || !bytes.Equal(e.payload, payload) {
					t.Fatalf("reply id %#x seq %d payload %q", e.id, e.seq, e.payload)
				}
				return true
			})

			// Small slots: below the MTU is an error, not a truncation.
			small := makeBufs(1, 100)
			if _, err := tun.Read(small, make([]int, 1), tunOffset); !errors.Is(err, ErrBufferTooSmall) {
				t.Errorf("Read into 100-byte slots = %v, want ErrBufferTooSmall", err)
			}
			// Argument checks.
			if _, err := tun.Read(nil, nil, 0); !errors.Is(err, ErrInvalidArgument) {
				t.Errorf("Read(nil) = %v", err)
			}
			if _, err := tun.Read(makeBufs(1, 0), make([]int, 1), tunOffset); !errors.Is(err, ErrInvalidArgument) {
				t.Errorf("Read with no room after offset = %v", err)
			}
			if n, err := tun.Write([][]byte{buf, make([]byte, tunOffset)}, tunOffset); n != 0 || !errors.Is(err, ErrInvalidArgument) {
				t.Errorf("Write with an empty packet = %d, %v", n, err)
			}
			junk := make([]byte, tunOffset+40) // version nibble 0
			if n, err := tun.Write([][]byte{buf, junk, buf}, tunOffset); n != 1 || !errors.Is(err, ErrInvalidArgument) {
				t.Errorf("Write with a non-IP second packet = %d, %v; want 1, ErrInvalidArgument", n, err)
			}

			// Close: the events channel closes, everything fails with
			// errors matching ErrClosed, os.ErrClosed and net.ErrClosed.
			if err := tun.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			for e := range tun.Events() {
				if e != EventMTUUpdate {
					t.Errorf("unexpected event %d", e)
				}
			}
			isClosed := func(what string, err error) {
				t.Helper()
				if !errors.Is(err, ErrClosed) || !errors.Is(err, os.ErrClosed) || !errors.Is(err, net.ErrClosed) {
					t.Errorf("%s after Close = %v, want ErrClosed", what, err)
				}
			}
			_, err := tun.Read(makeBufs(1, 1500), make([]int, 1), tunOffset)
			isClosed("Read", err)
			_, err = tun.Write([][]byte{buf}, tunOffset)
			isClosed("Write", err)
			_, err = tun.MTU()
			isClosed("MTU", err)
			isClosed("SetMTU", tun.SetMTU(1500))
			isClosed("Close", tun.Close())
			if name, err := tun.Name(); err != nil || !strings.HasPrefix(name, "mrt") {
				t.Errorf("Name() after Close = %q, %v", name, err)
			}
		})
	}
}

func TestTUNCloseUnblocksRead(t *testing.T) {
	for _, tc := range tunCases[:4] {
		t.Run(tc.name, func(t *testing.T) {
			tun := newTestTUN(t, tc.cfg)
			// Two readers: one waits in the device, one for its turn.
			type result struct {
				n   int
				err error
			}
			res := make(chan result, 2)
			for r := 0; r < 2; r++ {
				go func() {
					bufs := makeBufs(4, 1500)
					sizes := make([]int, len(bufs))
					for {
						n, err := tun.Read(bufs, sizes, tunOffset)
						if err != nil {
							res <- result{n, err}
							return
						}
						// Stray kernel traffic (MLD, ...): read on.
					}
				}()
			}
			select {
			case r := <-res:
				t.Fatalf("Read returned before Close: %d, %v", r.n, r.err)
			case <-time.After(200 * time.Millisecond):
			}
			start := time.Now()
			if err := tun.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			for r := 0; r < 2; r++ {
				select {
				case r := <-res:
					if !errors.Is(r.err, os.ErrClosed) || !errors.Is(r.err, ErrClosed) {
						t.Errorf("blocked Read = %d, %v; want ErrClosed / os.ErrClosed", r.n, r.err)
					}
				case <-time.After(2 * time.Second):
					t.Fatal("Close did not unblock Read within 2s")
				}
			}
			if d := time.Since(start); d > 500*time.Millisecond {
				t.Errorf("Close + unblock took %v", d)
			}
			if _, ok := <-tun.Events(); !ok {
				t.Fatal("Events closed without EventUp")
			}
			if e, ok := <-tun.Events(); ok {
				t.Fatalf("Events delivered %d after Close, want closed", e)
			}
		})
	}
}

// TestTUNConcurrent pings through the device from several writer
// goroutines at once while two readers collect the replies (run with
// -race).
func TestTUNConcurrent(t *testing.T) {
	const (
		writers   = 4
		batches   = 40
		perBatch  = 10
		inFlight  = 256 // below the device queue: replies are not dropped
		total     = writers * batches * perBatch
		replySize = 1500
	)
	for _, tc := range tunCases[:4] {
		t.Run(tc.name, func(t *testing.T) {
			tun := newTestTUN(t, tc.cfg)
			tokens := make(chan struct{}, inFlight)
			payloadOf := func(seq uint16) []byte { return []byte(fmt.Sprintf("concurrent ping %05d", seq)) }

			var wg sync.WaitGroup
			errs := make(chan error, writers+2)
			for w := 0; w < writers; w++ {
				wg.Add(1)
				go func(w int) {
					defer wg.Done()
					for b := 0; b < batches; b++ {
						bufs := make([][]byte, perBatch)
						for i := range bufs {
							tokens <- struct{}{}
							seq := uint16((w*batches+b)*perBatch + i)
							req := echoRequest(0x7711, seq, payloadOf(seq))
							bufs[i] = append(make([]byte, tunOffset), req...)
						}
						if n, err := tun.Write(bufs, tunOffset); n != len(bufs) || err != nil {
							errs <- fmt.Errorf("writer %d: Write = %d, %v", w, n, err)
							return
						}
						if _, err := tun.Name(); err != nil {
							errs <- err
							return
						}
					}
				}(w)
			}

			var mu sync.Mutex
			seen := make(map[uint16]bool)
			all := make(chan struct{})
			var readers sync.WaitGroup
			for r := 0; r < 2; r++ {
				readers.Add(1)
				go func(r int) {
					defer readers.Done()
					bufs := makeBufs(16, replySize)
					sizes := make([]int, len(bufs))
					for {
						n, err := tun.Read(bufs, sizes, tunOffset)
						if err != nil {
							if !errors.Is(err, os.ErrClosed) {
								errs <- fmt.Errorf("reader %d: %v", r, err)
							}
							return
						}
						for i := 0; i < n; i++ {
							pkt := bufs[i][tunOffset : tunOffset+sizes[i]]
							if !isEchoReply(pkt) {
								continue
							}
							e, err := parseEchoReply(pkt)
							if err == nil && (e.id != 0x7711 || !bytes.Equal(e.payload, payloadOf(e.seq))) {
								err = fmt.Errorf("reply id %#x seq %d payload %q", e.id, e.seq, e.payload)
							}
							if err != nil {
								errs <- fmt.Errorf("reader %d: %v", r, err)
								return
							}
							<-tokens
							mu.Lock()
							if seen[e.seq] {
								mu.Unlock()
								errs <- fmt.Errorf("reply %d twice", e.seq)
								return
							}
							seen[e.seq] = true
							if len(seen) == total {
								close(all)
							}
							mu.Unlock()
						}
					}
				}(r)
			}

			select {
			case <-all:
			case err := <-errs:
				t.Fatal(err)
			case <-time.After(20 * time.Second):
				mu.Lock()
				got := len(seen)
				mu.Unlock()
				t.Fatalf("got %d of %d replies", got, total)
			}
			wg.Wait()
			if err := tun.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			readers.Wait()
			select {
			case err := <-errs:
				t.Fatal(err)
			default:
			}
		})
	}
}

// TestTUNFromFile creates the device the way a privileged helper would
// (open /dev/net/tun, TUNSETIFF) and wraps it with TUNFromFile.
func TestTUNFromFile(t *testing.T) {
	for _, offload := range []bool{false, true} {
		t.Run(fmt.Sprintf("offload=%v", offload), func(t *testing.T) {
			enterNetns(t)
			f, err := os.OpenFile("/dev/net/tun", os.O_RDWR, 0)
			if err != nil {
				t.Skipf("open /dev/net/tun: %v", err)
			}
			defer f.Close()
			const (
				iffTUN     = 0x0001
				iffNoPI    = 0x1000
				iffVnetHdr = 0x4000
			)
			var req [40]byte // struct ifreq: name[16], flags short
			copy(req[:], "mrf0")
			flags := uint16(iffTUN | iffNoPI)
			if offload {
				flags |= iffVnetHdr
			}
			binary.NativeEndian.PutUint16(req[16:], flags)
			rc, err := f.SyscallConn()
			if err != nil {
				t.Fatal(err)
			}
			var ioErr syscall.Errno
			rc.Control(func(fd uintptr) {
				_, _, ioErr = syscall.Syscall(syscall.SYS_IOCTL, fd, syscall.TUNSETIFF, uintptr(unsafe.Pointer(&req[0])))
			})
			if ioErr != 0 {
				t.Fatalf("TUNSETIFF: %v", ioErr)
			}
			tun, err := TUNFromFile(f, TUNConfig{MTU: 1420})
			if err != nil {
				t.Fatalf("TUNFromFile: %v", err)
			}
			defer tun.Close()
			f.Close() // the TUN has its own descriptor
			if name, _ := tun.Name(); name != "mrf0" {
				t.Fatalf("Name() = %q, want mrf0", name)
			}
			if mtu, err := tun.MTU(); err != nil || mtu != 1420 {
				t.Fatalf("MTU() = %d, %v; want 1420", mtu, err)
			}
			ipCmd(t, "addr", "add", tunLocal.String()+"/24", "dev", "mrf0")
			ipCmd(t, "link", "set", "mrf0", "up")
			req2 := echoRequest(9, 3, []byte("from file"))
			if n, err := tun.Write([][]byte{append(make([]byte, tunOffset), req2...)}, tunOffset); n != 1 || err != nil {
				t.Fatalf("Write = %d, %v", n, err)
			}
			readEchoReplies(t, tun, 1420, func(e echo) bool {
				if e.id != 9 || e.seq != 3 || string(e.payload) != "from file" {
					t.Fatalf("reply %+v", e)
				}
				return true
			})
			if _, err := TUNFromFile(nil, TUNConfig{}); !errors.Is(err, ErrInvalidArgument) {
				t.Errorf("TUNFromFile(nil) = %v", err)
			}
			null, err := os.Open(os.DevNull)
			if err != nil {
				t.Fatal(err)
			}
			defer null.Close()
			if _, err := TUNFromFile(null, TUNConfig{}); err == nil {
				t.Error("TUNFromFile(/dev/null) succeeded")
			}
		})
	}
}

// TestTUNOffloadUDPSplit sends one UDP GSO super-datagram from a socket in
// the namespace through the offloading device: the kernel may hand it over
// whole (USO), and Read must return ordinary MTU-sized IPv4/UDP packets
// with valid checksums, in order.
func TestTUNOffloadUDPSplit(t *testing.T) {
	for _, tc := range []tunCase{tunCases[2], tunCases[3], tunCases[0]} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			cfg.MTU = 1400
			tun := newTestTUN(t, cfg)
			// The socket is opened on this (namespaced) thread.
			conn, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(tunPeer, 4789)))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			const seg, segs = 1000, 20
			rc, err := conn.SyscallConn()
			if err != nil {
				t.Fatal(err)
			}
			var soErr error
			rc.Control(func(fd uintptr) {
				soErr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_UDP, 103 /* UDP_SEGMENT */, seg)
			})
			if soErr != nil {
				t.Skipf("UDP_SEGMENT: %v", soErr)
			}
			data := make([]byte, seg*segs)
			for i := range data {
				data[i] = byte(i / seg)
			}
			if _, err := conn.Write(data); err != nil {
				t.Fatalf("GSO write: %v", err)
			}
			got := 0
			timer := time.AfterFunc(10*time.Second, func() { tun.Close() })
			defer timer.Stop()
			bufs := makeBufs(8, 1400)
			sizes := make([]int, len(bufs))
			for got < segs {
				n, err := tun.Read(bufs, sizes, tunOffset)
				if err != nil {
					t.Fatalf("Read after %d segments: %v", got, err)
				}
				for i := 0; i < n; i++ {
					p := bufs[i][tunOffset : tunOffset+sizes[i]]
					if len(p) < 28 || p[0] != 0x45 || p[9] != 17 {
						continue
					}
					if sizes[i] > 1400 {
						t.Fatalf("packet of %d bytes over the MTU", sizes[i])
					}
					if inetChecksum(p[:20]) != 0 || int(binary.BigEndian.Uint16(p[2:])) != len(p) {
						t.Fatalf("segment %d: bad IPv4 header % x", got, p[:20])
					}
					udp := p[20:]
					if int(binary.BigEndian.Uint16(udp[4:])) != len(udp) {
						t.Fatalf("segment %d: UDP length %d, have %d", got, binary.BigEndian.Uint16(udp[4:]), len(udp))
					}
					pseudo := append(append([]byte{}, p[12:20]...), 0, 17, byte(len(udp)>>8), byte(len(udp)))
					if inetChecksum(append(pseudo, udp...)) != 0 {
						t.Fatalf("segment %d: bad UDP checksum", got)
					}
					body := udp[8:]
					if len(body) != seg || body[0] != byte(got) || body[seg-1] != byte(got) {
						t.Fatalf("segment %d: %d bytes starting %d", got, len(body), body[0])
					}
					got++
				}
			}
		})
	}
}

// TestTUNOversizePacket raises the MTU behind the library's back and
// sends a reply larger than the read slots: Read must never report a size
// beyond its buffer.
func TestTUNOversizePacket(t *testing.T) {
	for _, tc := range tunCases[:2] {
		t.Run(tc.name, func(t *testing.T) {
			tun := newTestTUN(t, tc.cfg)
			name, _ := tun.Name()
			ipCmd(t, "link", "set", name, "mtu", "4000")
			big := echoRequest(1, 1, bytes.Repeat([]byte{0xab}, 3000))
			small := echoRequest(1, 2, []byte("small"))
			if n, err := tun.Write([][]byte{append(make([]byte, tunOffset), big...), append(make([]byte, tunOffset), small...)}, tunOffset); n != 2 || err != nil {
				t.Fatalf("Write = %d, %v", n, err)
			}
			// Slots of 1500 bytes: still at least the MTU the library
			// knows (it has not re-read it). The 3028-byte reply must not
			// come back truncated: it is dropped (or, were the library to
			// notice, reported as ErrBufferTooSmall).
			timer := time.AfterFunc(10*time.Second, func() { tun.Close() })
			defer timer.Stop()
			bufs := makeBufs(4, 1500)
			sizes := make([]int, len(bufs))
			for gotSmall := false; !gotSmall; {
				n, err := tun.Read(bufs, sizes, tunOffset)
				if errors.Is(err, ErrBufferTooSmall) {
					bufs = makeBufs(4, 4000)
					continue
				}
				if err != nil {
					t.Fatalf("Read: %v", err)
				}
				for i := 0; i < n; i++ {
					pkt := bufs[i][tunOffset : tunOffset+sizes[i]]
					if !isEchoReply(pkt) {
						continue
					}
					e, err := parseEchoReply(pkt)
					if err != nil {
						t.Fatalf("reply of %d bytes: %v", sizes[i], err)
					}
					gotSmall = gotSmall || e.seq == 2
				}
			}
			t.Logf("oversize packets dropped by the binding: %d", tun.oversize.Load())
		})
	}
}

// TestTUNFinalizer drops a TUN without Close: the finalizer releases the
// device (deleting it) and closes the Events channel.
func TestTUNFinalizer(t *testing.T) {
	enterNetns(t)
	tun, err := CreateTUN("mrt%d", 0)
	if err != nil {
		t.Fatalf("CreateTUN: %v", err)
	}
	name, _ := tun.Name()
	events := tun.Events()
	if e := <-events; e != EventUp {
		t.Fatalf("first event %d", e)
	}
	tun = nil
	deadline := time.Now().Add(5 * time.Second)
	for {
		runtime.GC()
		select {
		case _, ok := <-events:
			if ok {
				t.Fatal("unexpected event")
			}
		case <-time.After(20 * time.Millisecond):
			if time.Now().After(deadline) {
				t.Fatal("the finalizer did not run within 5s")
			}
			continue
		}
		break
	}
	if out, err := exec.Command("ip", "link", "show", name).CombinedOutput(); err == nil {
		t.Fatalf("%s still exists after the finalizer:\n%s", name, out)
	}
}
