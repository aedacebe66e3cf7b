// Package wgbind runs wireguard-go on meshring: NewBind is a conn.Bind
// and CreateTUN a tun.Device, drop-in replacements for conn.NewStdNetBind
// and tun.CreateTUN of github.com/tailscale/wireguard-go (the fork
// tailscale.com requires; the interfaces are upstream wireguard-go's).
//
//	dev := device.NewDevice(tunDev, wgbind.NewBind(), logger)
//
// What a program gets: the same observable behaviour as StdNetBind (an
// IPv4 and an IPv6 socket on one port, port 0 picks one, re-Open on the
// returned port, Close unblocking receivers with net.ErrClosed, SetMark,
// ParseEndpoint, BatchSize 128, *net.OpError receive errors whose
// Temporary() follows the errno, conn.ErrUDPGSODisabled after an EIO), on
// meshring's io_uring sockets (recvmmsg/sendmmsg where io_uring is
// unavailable).
//
// What it costs: a Send is one library call per up to 128 packets; runs of
// equal-sized packets leave as UDP GSO datagrams gathered straight from
// wireguard-go's buffers (no copy; StdNetBind gathers too). A receive is
// one library call; with UDP GRO, up to two coalesced datagrams are read
// and each segment is copied once into wireguard-go's buffers, the copy
// StdNetBind makes. Each received packet allocates one small Endpoint, as
// StdNetBind's do.
//
// Under pressure: a slow receiver leaves datagrams in the socket's 7 MiB
// receive buffer (forced past net.core.rmem_max as root, like StdNetBind),
// after which the kernel drops them; a sender blocks while the socket's
// send buffer is full.
//
// Deliberate differences from StdNetBind: Send with an endpoint of
// another Bind returns conn.ErrWrongEndpointType instead of panicking;
// after an EIO only the packets not yet sent are sent again; every segment
// of a GRO datagram carries the local address it arrived on (StdNetBind
// drops it); IPv6 link-local endpoints carry the zone as the interface
// index, not its name.
package wgbind
