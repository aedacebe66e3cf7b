package wgbind

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"syscall"

	meshring "github.com/meshring/meshring/go"
	"github.com/tailscale/wireguard-go/conn"
)

// socketBufferSize is the SO_RCVBUF / SO_SNDBUF wireguard-go asks for.
const socketBufferSize = 7 << 20

// Limits of one UDP GSO send, as wireguard-go's StdNetBind applies them.
const (
	maxIPv4Payload   = 65535 - 20 - 8
	maxIPv6Payload   = 65535 - 8
	maxGSOSegments   = 64
	groReadSlots     = 2 // coalesced datagrams read per call, split into the batch
	maxListenRetries = 100
)

// Bind is a conn.Bind on meshring UDP sockets. Create it with NewBind.
type Bind struct {
	mu       sync.Mutex
	v4, v6   *meshring.UDPConn
	tx4, tx6 bool // GSO usable (cleared for this Open on EIO)
	sendPool sync.Pool
	recvPool sync.Pool
}

var _ conn.Bind = (*Bind)(nil)

// NewBind returns a conn.Bind that behaves as conn.NewStdNetBind's: one
// IPv4 and one IPv6 socket on the same port, UDP GSO on send and GRO on
// receive where the kernel has them, 7 MiB socket buffers, and endpoints
// that remember the local address a datagram arrived on.
func NewBind() conn.Bind {
	b := &Bind{}
	b.sendPool.New = func() any { return &sendState{} }
	b.recvPool.New = func() any { return &recvState{} }
	return b
}

type sendState struct {
	msgs []meshring.Msg
	bufs [][]byte
}

type recvState struct {
	msgs [conn.IdealBatchSize]meshring.Msg
}

// listen opens one socket of the pair with wireguard-go's options; GSO and
// GRO are best effort (a kernel without them gets a plain socket), as are
// the forced buffer sizes.
func listen(network string, port uint16) (c *meshring.UDPConn, tx, rx bool, err error) {
	// The batch backend: with NetPoll the reader waits in Go's netpoller on
	// the socket itself, and recvmmsg/sendmmsg need no io_uring re-arming.
	cfg := meshring.Config{
		Backend: meshring.BackendBatch,
		GSO:     true, GRO: true, PktInfo: true, NetPoll: true,
		MaxDatagram: 65535,
		ReadBuffer:  socketBufferSize, WriteBuffer: socketBufferSize,
	}
	addr := ":" + strconv.Itoa(int(port))
	c, err = meshring.ListenUDPConfig(network, addr, cfg)
	if errors.Is(err, meshring.ErrUnsupported) {
		cfg.GSO, cfg.GRO = false, false
		c, err = meshring.ListenUDPConfig(network, addr, cfg)
	}
	if err != nil {
		return nil, false, false, &net.OpError{Op: "listen", Net: network, Addr: &net.UDPAddr{Port: int(port)}, Err: syscallErr("bind", err)}
	}
	return c, cfg.GSO, cfg.GRO, nil
}

// Open opens the IPv4 and IPv6 sockets on port (0 picks a port both
// families get) and returns their receive functions, IPv4 first.
func (b *Bind) Open(uport uint16) ([]conn.ReceiveFunc, uint16, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.v4 != nil || b.v6 != nil {
		return nil, 0, conn.ErrBindAlreadyOpen
	}
	port := uport
	var v4, v6 *meshring.UDPConn
	var tx4, rx4, tx6, rx6 bool
	for tries := 0; ; tries++ {
		var err error
		v4, tx4, rx4, err = listen("udp4", port)
		if err != nil && !errors.Is(err, syscall.EAFNOSUPPORT) {
			return nil, 0, err
		}
		if v4 != nil {
			port = v4.LocalAddrPort().Port()
		} else {
			port = 0 // as StdNetBind: no IPv4, the IPv6 side picks
		}
		v6, tx6, rx6, err = listen("udp6", port)
		if uport == 0 && errors.Is(err, syscall.EADDRINUSE) && tries < maxListenRetries {
			if v4 != nil {
				v4.Close()
			}
			port = 0
			continue
		}
		if err != nil && !errors.Is(err, syscall.EAFNOSUPPORT) {
			if v4 != nil {
				v4.Close()
			}
			return nil, 0, err
		}
		break
	}
	var fns []conn.ReceiveFunc
	if v4 != nil {
		fns = append(fns, b.makeReceiveIPv4(v4, rx4))
		b.v4, b.tx4 = v4, tx4
	}
	if v6 != nil {
		port = v6.LocalAddrPort().Port()
		fns = append(fns, b.makeReceiveIPv6(v6, rx6))
		b.v6, b.tx6 = v6, tx6
	}
	if len(fns) == 0 {
		return nil, 0, syscall.EAFNOSUPPORT
	}
	return fns, port, nil
}

// The names end in IPv4 / IPv6 so conn.ReceiveFunc.PrettyName reports "v4" / "v6".
func (b *Bind) makeReceiveIPv4(c *meshring.UDPConn, gro bool) conn.ReceiveFunc {
	return func(bufs [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
		return b.receive(c, gro, bufs, sizes, eps)
	}
}

func (b *Bind) makeReceiveIPv6(c *meshring.UDPConn, gro bool) conn.ReceiveFunc {
	return func(bufs [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
		return b.receive(c, gro, bufs, sizes, eps)
	}
}

// receive reads one batch. Without GRO the datagrams land straight in
// bufs. With GRO, as StdNetBind does, up to two (coalesced) datagrams are
// read into the last two buffers and split into bufs from the first one
// on: each segment is copied once, the copy StdNetBind makes too.
func (b *Bind) receive(c *meshring.UDPConn, gro bool, bufs [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
	n := min(len(bufs), len(sizes), len(eps), conn.IdealBatchSize)
	if n == 0 {
		return 0, nil
	}
	st := b.recvPool.Get().(*recvState)
	defer b.recvPool.Put(st)
	readAt := 0
	if gro {
		readAt = max(0, n-groReadSlots)
	}
	msgs := st.msgs[:n-readAt]
	for i := range msgs {
		msgs[i] = meshring.Msg{Buf: bufs[readAt+i]}
	}
	got, err := c.ReadMsgs(msgs)
	if err != nil {
		return 0, readErr(c, err)
	}
	if !gro {
		for i, m := range msgs[:got] {
			sizes[i] = m.N
			eps[i] = &Endpoint{AddrPort: m.Addr, src: m.Local, srcIfidx: int32(m.Ifindex)}
		}
		return got, nil
	}
	out := 0
	for i, m := range msgs[:got] {
		src := readAt + i
		seg := m.SegmentSize
		if seg <= 0 || seg > m.N {
			seg = m.N
		}
		var ep *Endpoint
		for off := 0; off < m.N; off += seg {
			if out > src {
				return 0, errors.New("splitting coalesced packet resulted in overflow")
			}
			end := min(off+seg, m.N)
			copy(bufs[out], bufs[src][off:end])
			sizes[out] = end - off
			if ep == nil {
				// One endpoint for all segments of a datagram: they share
				// their source, and the Bind never touches it again.
				ep = &Endpoint{AddrPort: m.Addr, src: m.Local, srcIfidx: int32(m.Ifindex)}
			}
			eps[out] = ep
			out++
		}
	}
	return out, nil
}

// Close closes both sockets: receive functions blocked in other
// goroutines return an error matching net.ErrClosed. Closing a Bind that
// is not open returns nil.
func (b *Bind) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	var err error
	if b.v4 != nil {
		err = b.v4.Close()
		b.v4 = nil
	}
	if b.v6 != nil {
		if e := b.v6.Close(); err == nil {
			err = e
		}
		b.v6 = nil
	}
	b.tx4, b.tx6 = false, false
	return err
}

// SetMark sets SO_MARK on both sockets (nothing to do while closed).
func (b *Bind) SetMark(mark uint32) error {
	b.mu.Lock()
	v4, v6 := b.v4, b.v6
	b.mu.Unlock()
	for _, c := range []*meshring.UDPConn{v4, v6} {
		if c == nil {
			continue
		}
		if err := c.SetMark(mark); err != nil {
			return syscallErr("setsockopt", err)
		}
	}
	return nil
}

// BatchSize is conn.IdealBatchSize, as StdNetBind's on Linux.
func (b *Bind) BatchSize() int { return conn.IdealBatchSize }

// ParseEndpoint parses "ip:port" ("1.2.3.4:51820", "[::1]:51820",
// "[fe80::1%eth0]:51820"), as StdNetBind does.
func (b *Bind) ParseEndpoint(s string) (conn.Endpoint, error) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return nil, err
	}
	return &Endpoint{AddrPort: ap}, nil
}

// Send sends bufs[i][offset:] to ep, in order. With GSO, runs of equal-sized
// packets leave as one UDP GSO datagram gathered straight from their
// buffers (no copy), grouped by StdNetBind's rules. If the route's device
// cannot checksum-offload (EIO), GSO is turned off for this Open and the
// unsent packets are sent one by one; the result is then a
// conn.ErrUDPGSODisabled, as StdNetBind reports it.
func (b *Bind) Send(bufs [][]byte, endpoint conn.Endpoint, offset int) error {
	ep, ok := endpoint.(*Endpoint)
	if !ok {
		return conn.ErrWrongEndpointType
	}
	b.mu.Lock()
	c, tx := b.v4, b.tx4
	is6 := ep.DstIP().Is6()
	if is6 {
		c, tx = b.v6, b.tx6
	}
	b.mu.Unlock()
	if c == nil {
		return syscall.EAFNOSUPPORT
	}
	st := b.sendPool.Get().(*sendState)
	defer b.sendPool.Put(st)
	dst := ep.AddrPort
	if !is6 {
		dst = netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port())
	}
	st.msgs = st.msgs[:0]
	st.bufs = st.bufs[:0]
	for _, buf := range bufs {
		st.bufs = append(st.bufs, buf[offset:])
	}
	if tx {
		st.coalesce(dst, ep, is6)
	} else {
		st.plain(dst, ep, 0)
	}
	sent, err := c.WriteMsgs(st.msgs)
	if err == nil || !tx || !isEIO(err) {
		clear(st.msgs)
		clear(st.bufs)
		if err != nil {
			return writeErr(c, dst, err)
		}
		return nil
	}
	// EIO from a GSO send: no GSO on this socket any more; resend what is
	// left one datagram per packet (WireGuard's replay window tolerates a
	// repeat; none happens here since the prefix went whole).
	b.mu.Lock()
	if is6 && b.v6 == c {
		b.tx6 = false
	} else if !is6 && b.v4 == c {
		b.tx4 = false
	}
	b.mu.Unlock()
	first := 0
	for _, m := range st.msgs[:sent] {
		first += len(m.Bufs)
	}
	st.msgs = st.msgs[:0]
	st.plain(dst, ep, first)
	_, err = c.WriteMsgs(st.msgs)
	clear(st.msgs)
	clear(st.bufs)
	var retryErr error
	if err != nil {
		retryErr = writeErr(c, dst, err)
	}
	return conn.ErrUDPGSODisabled{RetryErr: retryErr}
}

// plain makes one message per packet from st.bufs[first:].
func (st *sendState) plain(dst netip.AddrPort, ep *Endpoint, first int) {
	for _, buf := range st.bufs[first:] {
		st.msgs = append(st.msgs, meshring.Msg{Buf: buf, Addr: dst, Local: ep.src, Ifindex: int(ep.srcIfidx)})
	}
}

// coalesce groups st.bufs as StdNetBind's coalesceMessages does: a run
// starts with a packet whose length is the segment size; following packets
// join while they are no longer than it, the run stays within the UDP
// payload limit and 64 segments; a shorter packet ends the run.
func (st *sendState) coalesce(dst netip.AddrPort, ep *Endpoint, is6 bool) {
	maxPayload := maxIPv4Payload
	if is6 {
		maxPayload = maxIPv6Payload
	}
	start, gso, total, ended := 0, 0, 0, false
	flush := func(end int) {
		m := meshring.Msg{Bufs: st.bufs[start:end:end], Addr: dst, Local: ep.src, Ifindex: int(ep.srcIfidx)}
		if end-start > 1 {
			m.SegmentSize = gso
		}
		st.msgs = append(st.msgs, m)
	}
	for i, buf := range st.bufs {
		if i > start && len(buf)+total <= maxPayload && len(buf) <= gso && i-start < maxGSOSegments && !ended {
			total += len(buf)
			if len(buf) < gso {
				ended = true
			}
			continue
		}
		if i > 0 {
			flush(i)
		}
		start, gso, total, ended = i, len(buf), len(buf), false
	}
	if len(st.bufs) > 0 {
		flush(len(st.bufs))
	}
}

func isEIO(err error) bool { return errors.Is(err, syscall.EIO) }

// syscallErr turns a meshring error carrying an errno into an
// *os.SyscallError (what package net's errors wrap), keeping net.ErrClosed.
func syscallErr(call string, err error) error {
	var me *meshring.Error
	if errors.As(err, &me) && me.Errno != 0 {
		return os.NewSyscallError(call, me.Errno)
	}
	if errors.Is(err, net.ErrClosed) {
		return net.ErrClosed
	}
	return err
}

// readErr shapes a receive error as StdNetBind's: a *net.OpError whose
// Temporary() follows the errno, matching net.ErrClosed after Close.
func readErr(c *meshring.UDPConn, err error) error {
	return &net.OpError{Op: "read", Net: "udp", Source: c.LocalAddr(), Err: syscallErr("recvmmsg", err)}
}

func writeErr(c *meshring.UDPConn, dst netip.AddrPort, err error) error {
	return &net.OpError{Op: "write", Net: "udp", Source: c.LocalAddr(), Addr: net.UDPAddrFromAddrPort(dst), Err: syscallErr("sendmmsg", err)}
}
