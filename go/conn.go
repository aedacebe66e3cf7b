package meshring

/*
#include "shim.h"
*/
import "C"

import (
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

// UDPConn is a UDP socket served by meshring. It implements net.PacketConn
// and is safe for concurrent use: any number of goroutines may read and
// write at once (the library serializes receivers with each other and
// senders with each other, but a sender never waits for a receiver).
//
// Close releases the socket; a UDPConn that becomes unreachable without
// Close is released by a finalizer.
type UDPConn struct {
	// mu is read-held by every operation for as long as it uses h, and
	// write-held by Close (and the finalizer) to free h: the handle is freed
	// only when no call is in flight.
	mu sync.RWMutex
	h  *C.mr_udp // nil once freed

	closed  atomic.Bool
	backend Backend
	local   *net.UDPAddr

	rdl, wdl deadline
	np       *netPoller // Config.NetPoll: waits for reads in Go's netpoller

	calls    chan *call    // idle call states, all C memory freed with h
	msgCalls chan *msgCall // idle ReadMsgs/WriteMsgs states, freed with h
	final    Stats         // the counters at Close, for Stats afterwards
}

var _ net.PacketConn = (*UDPConn)(nil)

// ListenUDP opens a UDP socket bound to addr, with the default Config.
//
// network is "udp", "udp4" or "udp6". addr is an IP literal and port:
// "127.0.0.1:0", "[::1]:0", "[fe80::1%eth0]:0". An empty host (":0") means
// the wildcard: "0.0.0.0" for "udp4", a dual-stack "[::]" for "udp", and an
// IPv6-only "[::]" for "udp6" (as package net does). Host names are not
// resolved: text the library cannot parse fails with an error matching
// ErrParse.
func ListenUDP(network, addr string) (*UDPConn, error) {
	return ListenUDPConfig(network, addr, Config{})
}

// ListenUDPConfig is ListenUDP with options.
func ListenUDPConfig(network, addr string, cfg Config) (*UDPConn, error) {
	text, v6only, err := bindAddress(network, addr)
	if err != nil {
		return nil, err
	}
	if v6only {
		cfg.V6Only = true
	}
	var ccfg C.mr_udp_config
	if err := cfg.toC(&ccfg); err != nil {
		return nil, err
	}
	ctext := C.CString(text)
	defer C.free(unsafe.Pointer(ctext))

	var h *C.mr_udp
	var cerr C.mrgo_err
	if st := Status(C.mrgo_udp_bind(ctext, &ccfg, &h, &cerr)); st != StatusOK {
		return nil, errFromC(st, "listen", &cerr)
	}
	var local C.mr_addr
	if st := Status(C.mrgo_udp_local_addr(h, &local, &cerr)); st != StatusOK {
		C.mr_udp_free(h)
		return nil, errFromC(st, "listen", &cerr)
	}
	c := &UDPConn{
		h:        h,
		backend:  Backend(C.mr_udp_backend(h)),
		local:    net.UDPAddrFromAddrPort(addrFromC(&local)),
		calls:    make(chan *call, maxIdleCalls),
		msgCalls: make(chan *msgCall, maxIdleCalls),
	}
	c.rdl.init()
	c.wdl.init()
	if cfg.NetPoll {
		np, err := newNetPoller(int(C.mr_udp_fd(h)))
		if err != nil {
			C.mr_udp_free(h)
			return nil, newError(StatusIO, "listen", "readiness fd for the netpoller: "+err.Error())
		}
		c.np = np
	}
	runtime.SetFinalizer(c, (*UDPConn).finalize)
	return c, nil
}

// bindAddress turns a net-style network and address into the text
// mr_udp_bind parses, and whether the socket must be IPv6-only.
func bindAddress(network, addr string) (text string, v6only bool, err error) {
	switch network {
	case "udp", "udp4", "udp6":
	default:
		return "", false, newError(StatusInvalidArgument, "listen", "unknown network "+network+`: want "udp", "udp4" or "udp6"`)
	}
	host, port, splitErr := net.SplitHostPort(addr)
	if splitErr != nil {
		// Let the library reject it with its own MR_PARSE message.
		return addr, false, nil
	}
	if host == "" {
		switch network {
		case "udp4":
			return "0.0.0.0:" + port, false, nil
		case "udp6":
			return "[::]:" + port, true, nil
		default:
			return "[::]:" + port, false, nil
		}
	}
	ip, parseErr := netip.ParseAddr(host)
	if parseErr != nil {
		return addr, false, nil // not an IP literal: the library reports MR_PARSE
	}
	switch {
	case network == "udp4" && !ip.Unmap().Is4():
		return "", false, newError(StatusInvalidArgument, "listen", "udp4 needs an IPv4 address, not "+host)
	case network == "udp4":
		return net.JoinHostPort(ip.Unmap().String(), port), false, nil
	case network == "udp6" && ip.Is4():
		return "", false, newError(StatusInvalidArgument, "listen", "udp6 needs an IPv6 address, not "+host)
	}
	return addr, false, nil
}

// acquire returns the handle with c.mu read-held, or an ErrClosed error.
// The caller must call c.mu.RUnlock when done with the handle.
func (c *UDPConn) acquire(op string) (*C.mr_udp, error) {
	if c.closed.Load() {
		return nil, errClosed(op)
	}
	c.mu.RLock()
	if c.h == nil {
		c.mu.RUnlock()
		return nil, errClosed(op)
	}
	return c.h, nil
}

// getCall takes an idle call state or makes one. c.mu must be read-held.
func (c *UDPConn) getCall() *call {
	select {
	case cl := <-c.calls:
		return cl
	default:
		return newCall()
	}
}

// putCall unpins cl's buffers and recycles it. c.mu must be read-held.
func (c *UDPConn) putCall(cl *call, used int) {
	cl.reset(used)
	select {
	case c.calls <- cl:
	default:
		cl.destroy()
	}
}

// Close closes the socket. Reads and writes blocked in other goroutines
// return promptly with an error matching net.ErrClosed (and ErrClosed);
// Close then waits for them to leave the library and frees the handle.
// Closing again returns an ErrClosed error.
func (c *UDPConn) Close() error {
	if !c.closed.CompareAndSwap(false, true) {
		return errClosed("close")
	}
	st := StatusOK
	c.mu.RLock()
	if c.h != nil {
		st = Status(C.mr_udp_close(c.h))
	}
	c.mu.RUnlock()
	if c.np != nil {
		c.np.close() // wakes reads waiting in the netpoller
	}
	c.mu.Lock()
	c.free()
	c.mu.Unlock()
	runtime.SetFinalizer(c, nil)
	runtime.KeepAlive(c)
	if st != StatusOK {
		return newError(st, "close", "")
	}
	return nil
}

// finalize frees a UDPConn that was never closed.
func (c *UDPConn) finalize() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.free()
}

// free records the final counters and releases the handle and the idle call
// states. c.mu must be write-held (or c unreachable).
func (c *UDPConn) free() {
	if c.h == nil {
		return
	}
	var s C.mr_udp_counters
	if C.mr_udp_stats(c.h, &s) == C.MR_OK {
		c.final = statsFromC(&s)
	}
	C.mr_udp_free(c.h)
	c.h = nil
	if c.np != nil {
		c.np.close()
	}
	for {
		select {
		case cl := <-c.calls:
			cl.destroy()
		case cl := <-c.msgCalls:
			C.free(unsafe.Pointer(cl.c))
		default:
			return
		}
	}
}

// LocalAddr returns the bound address, a *net.UDPAddr.
func (c *UDPConn) LocalAddr() net.Addr { return c.local }

// LocalAddrPort returns the bound address.
func (c *UDPConn) LocalAddrPort() netip.AddrPort { return c.local.AddrPort() }

// Backend reports whether the socket runs on io_uring or on the
// recvmmsg/sendmmsg fallback.
func (c *UDPConn) Backend() Backend { return c.backend }

// SetDeadline sets the read and write deadlines; see SetReadDeadline.
func (c *UDPConn) SetDeadline(t time.Time) error {
	if c.closed.Load() {
		return errClosed("set deadline")
	}
	c.rdl.set(t)
	c.wdl.set(t)
	if c.np != nil {
		c.np.setReadDeadline(t)
	}
	return nil
}

// SetReadDeadline sets the deadline for reads, including reads already
// blocked (they notice within pollSlice). After it passes, reads fail with
// an error matching os.ErrDeadlineExceeded (Timeout() is true) until the
// deadline is moved. The zero time clears it.
func (c *UDPConn) SetReadDeadline(t time.Time) error {
	if c.closed.Load() {
		return errClosed("set deadline")
	}
	c.rdl.set(t)
	if c.np != nil {
		c.np.setReadDeadline(t)
	}
	return nil
}

// SetWriteDeadline sets the deadline for writes, like SetReadDeadline.
func (c *UDPConn) SetWriteDeadline(t time.Time) error {
	if c.closed.Load() {
		return errClosed("set deadline")
	}
	c.wdl.set(t)
	return nil
}

// ReadFrom reads one datagram into p and returns its length and source (a
// *net.UDPAddr). As with net.UDPConn, a datagram longer than p is
// truncated to len(p) and the rest is discarded.
func (c *UDPConn) ReadFrom(p []byte) (int, net.Addr, error) {
	n, ap, err := c.ReadFromUDPAddrPort(p)
	if err != nil {
		return 0, nil, err
	}
	return n, net.UDPAddrFromAddrPort(ap), nil
}

// ReadFromUDPAddrPort is ReadFrom returning a netip.AddrPort. IPv4 peers of
// a dual-stack socket appear as IPv4 addresses.
func (c *UDPConn) ReadFromUDPAddrPort(p []byte) (int, netip.AddrPort, error) {
	h, err := c.acquire("read")
	if err != nil {
		return 0, netip.AddrPort{}, err
	}
	defer c.mu.RUnlock()
	cl := c.getCall()
	defer c.putCall(cl, 1)
	if len(p) > 0 {
		cl.setRecv(0, p)
		_, err := c.recv(h, cl, 1)
		if err == nil {
			m := &cl.c.msgs[0]
			return int(m.len), addrFromC(&m.addr), nil
		}
		if statusOf(err) != StatusBufferTooSmall {
			return 0, netip.AddrPort{}, err
		}
	}
	n, ap, _, err := c.readTruncated(h, cl, p)
	return n, ap, err
}

// readTruncated receives the next datagram whole into a scratch buffer and
// copies what fits into p, emulating net.UDPConn's truncation where the
// library would keep a too-large datagram (MR_BUFFER_TOO_SMALL).
func (c *UDPConn) readTruncated(h *C.mr_udp, cl *call, p []byte) (int, netip.AddrPort, int, error) {
	scratch := make([]byte, 1<<16)
	cl.setRecv(0, scratch)
	if _, err := c.recv(h, cl, 1); err != nil {
		return 0, netip.AddrPort{}, 0, err
	}
	m := &cl.c.msgs[0]
	n := copy(p, scratch[:m.len])
	return n, addrFromC(&m.addr), int(m.segment_size), nil
}

// recv calls mr_udp_recv on cl's first n slots in pollSlice steps until a
// datagram arrives, the read deadline passes, or an error occurs.
func (c *UDPConn) recv(h *C.mr_udp, cl *call, n int) (int, error) {
	defer runtime.KeepAlive(c)
	for {
		ms, ok := c.rdl.timeoutMS()
		if !ok {
			return 0, errDeadline("read")
		}
		switch st := Status(C.mrgo_udp_recv(h, cl.c, C.size_t(n), C.int32_t(ms))); st {
		case StatusOK:
			if k := cl.filled(int(cl.c.count), n); k > 0 {
				return k, nil
			}
			// MR_OK without a filled slot (see call.filled): wait on.
		case StatusTimeout, StatusWouldBlock:
			// A polling slice ended: re-read the deadline.
		default:
			return 0, cl.err(st, "read")
		}
	}
}

// send calls mr_udp_send on cl's first n slots in pollSlice steps until all
// are sent, the write deadline passes, or an error occurs. It returns how
// many were sent (a prefix).
func (c *UDPConn) send(h *C.mr_udp, cl *call, n int) (int, error) {
	defer runtime.KeepAlive(c)
	off := 0
	for off < n {
		ms, ok := c.wdl.timeoutMS()
		if !ok {
			return off, errDeadline("write")
		}
		st := Status(C.mrgo_udp_send(h, cl.c, C.size_t(off), C.size_t(n-off), C.int32_t(ms)))
		off += int(cl.c.count)
		switch st {
		case StatusOK:
		case StatusTimeout, StatusWouldBlock:
			// A polling slice ended with the socket buffer full: retry the rest.
		default:
			return off, cl.err(st, "write")
		}
	}
	return off, nil
}

// WriteTo sends p as one datagram to addr, which must be a *net.UDPAddr.
func (c *UDPConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	ap, err := udpAddrPort(addr)
	if err != nil {
		return 0, err
	}
	return c.WriteToUDPAddrPort(p, ap)
}

// WriteToUDPAddrPort sends p as one datagram to addr.
func (c *UDPConn) WriteToUDPAddrPort(p []byte, addr netip.AddrPort) (int, error) {
	var ca C.mr_addr
	if err := addrToC(addr, &ca); err != nil {
		return 0, err
	}
	h, err := c.acquire("write")
	if err != nil {
		return 0, err
	}
	defer c.mu.RUnlock()
	cl := c.getCall()
	defer c.putCall(cl, 1)
	cl.setSend(0, p, &ca)
	if _, err := c.send(h, cl, 1); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Stats are the counters of a UDPConn since it was opened.
type Stats struct {
	RxDatagrams uint64
	RxBytes     uint64
	RxCalls     uint64 // receive calls that returned datagrams
	RxOversize  uint64 // datagrams dropped for exceeding Config.MaxDatagram
	RxRearms    uint64 // io_uring multishot receive (re)arms
	TxDatagrams uint64
	TxBytes     uint64
	TxCalls     uint64
	TxErrors    uint64
}

func statsFromC(s *C.mr_udp_counters) Stats {
	return Stats{
		RxDatagrams: uint64(s.rx_datagrams),
		RxBytes:     uint64(s.rx_bytes),
		RxCalls:     uint64(s.rx_calls),
		RxOversize:  uint64(s.rx_oversize),
		RxRearms:    uint64(s.rx_rearms),
		TxDatagrams: uint64(s.tx_datagrams),
		TxBytes:     uint64(s.tx_bytes),
		TxCalls:     uint64(s.tx_calls),
		TxErrors:    uint64(s.tx_errors),
	}
}

// Stats returns the socket's counters; after Close, their final values.
func (c *UDPConn) Stats() Stats {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.h == nil {
		return c.final
	}
	var s C.mr_udp_counters
	var cerr C.mrgo_err
	if C.mrgo_udp_stats(c.h, &s, &cerr) != C.MR_OK {
		return c.final
	}
	runtime.KeepAlive(c)
	return statsFromC(&s)
}
