package meshring

import (
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"
)

// backendCase is one backend the tests run against.
type backendCase struct {
	name    string
	backend Backend
}

var backendCases = []backendCase{
	{"batch", BackendBatch},
	{"uring", BackendURing},
}

// listen opens a meshring socket for a test on the given backend, skipping
// the test (with the library's reason) only when io_uring is unavailable.
func listen(t *testing.T, network, addr string, cfg Config) *UDPConn {
	t.Helper()
	c, err := ListenUDPConfig(network, addr, cfg)
	if err != nil {
		if cfg.Backend == BackendURing && errors.Is(err, ErrUnsupported) {
			t.Logf("io_uring backend unavailable: %v", err)
			t.Skipf("skipping the uring variant: %v", err)
		}
		if isNoIPv6(err) {
			t.Skipf("IPv6 loopback unavailable: %v", err)
		}
		t.Fatalf("ListenUDPConfig(%q, %q, %+v): %v", network, addr, cfg, err)
	}
	t.Cleanup(func() { c.Close() })
	if cfg.Backend != BackendAuto && c.Backend() != cfg.Backend {
		t.Fatalf("Backend() = %v, want %v", c.Backend(), cfg.Backend)
	}
	return c
}

func isNoIPv6(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Status == StatusIO && (e.Errno == 97 /* EAFNOSUPPORT */ || e.Errno == 99 /* EADDRNOTAVAIL */)
}

// peer opens a stdlib UDP socket on loopback.
func peer(t *testing.T, network, addr string) *net.UDPConn {
	t.Helper()
	p, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.MustParseAddrPort(addr)))
	if err != nil {
		t.Skipf("stdlib %s socket on %s unavailable: %v", network, addr, err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// loopbackOf turns a bound wildcard address into the loopback address of
// the same port and family.
func loopbackOf(ap netip.AddrPort, v6 bool) netip.AddrPort {
	if v6 {
		return netip.AddrPortFrom(netip.IPv6Loopback(), ap.Port())
	}
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), ap.Port())
}

// deadlineSoon bounds blocking test steps.
func deadlineSoon() time.Time { return time.Now().Add(5 * time.Second) }
