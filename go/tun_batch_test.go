package meshring

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"
)

// udpTo builds a UDP/IPv4 packet tunPeer:sport -> tunLocal:dport with
// valid checksums, payload byte j = seed+j.
func udpTo(sport, dport uint16, payload int, seed byte) []byte {
	p := make([]byte, 28+payload)
	p[0], p[6], p[8], p[9] = 0x45, 0x40, 64, 17
	binary.BigEndian.PutUint16(p[2:], uint16(len(p)))
	copy(p[12:16], tunPeer.AsSlice())
	copy(p[16:20], tunLocal.AsSlice())
	binary.BigEndian.PutUint16(p[10:], inetChecksum(p[:20]))
	binary.BigEndian.PutUint16(p[20:], sport)
	binary.BigEndian.PutUint16(p[22:], dport)
	binary.BigEndian.PutUint16(p[24:], uint16(8+payload))
	for j := 0; j < payload; j++ {
		p[28+j] = seed + byte(j)
	}
	pseudo := append(append([]byte{}, p[12:20]...), 0, 17, byte((8+payload)>>8), byte(8+payload))
	c := inetChecksum(append(pseudo, p[20:]...))
	if c == 0 {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(p[26:], c)
	return p
}

// WriteBatch on an offloading device: datagrams of two interleaved flows
// (coalesced by flow) and one non-IP packet in the middle: both sockets get
// all their datagrams intact and in order, the bad packet is refused alone.
func TestTUNWriteBatch(t *testing.T) {
	tun := newTestTUN(t, TUNConfig{Offload: true, MTU: 1500})
	bits, err := tun.GRO()
	if err != nil || bits&GROTCP == 0 {
		t.Fatalf("GRO() = %d, %v; want TCP coalescing with Offload", bits, err)
	}
	var socks [2]*net.UDPConn
	for i := range socks {
		c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(tunLocal, 0)))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		socks[i] = c
	}
	const perFlow, size = 20, 1000
	var bufs [][]byte
	for k := 0; k < perFlow; k++ {
		for f, c := range socks {
			pkt := udpTo(uint16(5000+f), uint16(c.LocalAddr().(*net.UDPAddr).Port), size, byte(k*7))
			bufs = append(bufs, append(make([]byte, tunOffset), pkt...))
		}
		if k == perFlow/2 {
			bufs = append(bufs, make([]byte, tunOffset+40)) // not IP
		}
	}
	n, err := tun.WriteBatch(bufs, tunOffset)
	if n != len(bufs)-1 || !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("WriteBatch = %d, %v; want %d and an invalid-argument error", n, err, len(bufs)-1)
	}
	buf := make([]byte, 2048)
	for f, c := range socks {
		for k := 0; k < perFlow; k++ {
			m, err := c.Read(buf)
			if err != nil {
				t.Fatalf("flow %d datagram %d: %v", f, k, err)
			}
			if m != size || buf[0] != byte(k*7) || buf[size-1] != byte(k*7+size-1) {
				t.Fatalf("flow %d datagram %d: %d bytes starting %d", f, k, m, buf[0])
			}
		}
	}
	if err := tun.DisableGRO(GROUDP); err != nil {
		t.Fatal(err)
	}
	if bits, _ := tun.GRO(); bits&GROUDP != 0 {
		t.Fatalf("GRO() = %d after DisableGRO(GROUDP)", bits)
	}
	tun.Close()
	if _, err := tun.WriteBatch(bufs[:1], tunOffset); !errors.Is(err, ErrClosed) {
		t.Fatalf("WriteBatch after Close = %v", err)
	}
}
