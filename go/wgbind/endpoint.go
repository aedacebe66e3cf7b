package wgbind

import (
	"net/netip"

	"github.com/tailscale/wireguard-go/conn"
)

// Endpoint is a peer's address plus, for an endpoint the Bind received a
// datagram on, the local address and interface the datagram arrived on
// (IP_PKTINFO / IPV6_PKTINFO): a reply sent to it leaves from the address
// the peer used, as with conn.StdNetEndpoint.
type Endpoint struct {
	netip.AddrPort
	src      netip.Addr // zero: no source, the kernel picks
	srcIfidx int32
}

var _ conn.Endpoint = (*Endpoint)(nil)

// ClearSrc forgets the local address, so replies leave from whatever
// address the kernel picks.
func (e *Endpoint) ClearSrc() { e.src, e.srcIfidx = netip.Addr{}, 0 }

// SrcIP is the local address the datagram was sent to (invalid if none).
func (e *Endpoint) SrcIP() netip.Addr { return e.src }

// SrcIfidx is the interface the datagram arrived on (0 if unknown), as
// conn.StdNetEndpoint.SrcIfidx.
func (e *Endpoint) SrcIfidx() int32 { return e.srcIfidx }

// SrcToString is SrcIP as text ("invalid IP" when there is none, as
// conn.StdNetEndpoint prints it).
func (e *Endpoint) SrcToString() string { return e.src.String() }

// DstIP is the peer's address.
func (e *Endpoint) DstIP() netip.Addr { return e.AddrPort.Addr() }

// DstToString is the peer's address and port ("1.2.3.4:51820", "[::1]:51820").
func (e *Endpoint) DstToString() string { return e.AddrPort.String() }

// DstToBytes is the peer's address and port in netip's binary form, the
// bytes wireguard-go's cookie MACs cover (what conn.StdNetEndpoint returns).
func (e *Endpoint) DstToBytes() []byte {
	b, _ := e.AddrPort.MarshalBinary()
	return b
}
