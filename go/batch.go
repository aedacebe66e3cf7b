package meshring

/*
#include "shim.h"
*/
import "C"

import (
	"fmt"
	"net/netip"
)

// BatchSize returns the most datagrams one ReadBatch call returns (and the
// chunk size of WriteBatch), like wireguard-go's conn.Bind.BatchSize.
func (c *UDPConn) BatchSize() int { return BatchSize }

// ReadBatch receives up to min(len(bufs), len(sizes), len(eps), BatchSize)
// datagrams in one library call, in the shape of a wireguard-go
// conn.ReceiveFunc: datagram i is in bufs[i][:sizes[i]] and came from
// eps[i]. It blocks until at least one datagram arrives (subject to the read
// deadline) and returns how many it filled. Each bufs[i] must be non-empty;
// its length is its capacity. A datagram longer than its buffer is
// truncated, as with ReadFrom (only ever the first; the library stops a
// batch before a datagram that does not fit).
func (c *UDPConn) ReadBatch(bufs [][]byte, sizes []int, eps []netip.AddrPort) (int, error) {
	return c.readBatch(bufs, sizes, nil, eps)
}

// ReadBatchSegments is ReadBatch that also reports, for a socket with
// Config.GRO, the segment size of each coalesced datagram in segs[i] (0 for
// a datagram that was not coalesced).
func (c *UDPConn) ReadBatchSegments(bufs [][]byte, sizes, segs []int, eps []netip.AddrPort) (int, error) {
	if segs == nil {
		segs = []int{}
	}
	return c.readBatch(bufs, sizes, segs, eps)
}

func (c *UDPConn) readBatch(bufs [][]byte, sizes, segs []int, eps []netip.AddrPort) (int, error) {
	n := min(len(bufs), len(sizes), len(eps), BatchSize)
	if segs != nil {
		n = min(n, len(segs))
	}
	if n == 0 {
		return 0, newError(StatusInvalidArgument, "read", "empty batch: bufs, sizes and eps need at least one element")
	}
	for i := 0; i < n; i++ {
		if len(bufs[i]) == 0 {
			return 0, newError(StatusInvalidArgument, "read", fmt.Sprintf("bufs[%d] is empty", i))
		}
	}
	h, err := c.acquire("read")
	if err != nil {
		return 0, err
	}
	defer c.mu.RUnlock()
	cl := c.getCall()
	defer c.putCall(cl, n)
	for i := 0; i < n; i++ {
		cl.setRecv(i, bufs[i])
	}
	got, err := c.recv(h, cl, n)
	if err != nil {
		if statusOf(err) != StatusBufferTooSmall {
			return 0, err
		}
		size, ap, seg, err := c.readTruncated(h, cl, bufs[0])
		if err != nil {
			return 0, err
		}
		sizes[0], eps[0] = size, ap
		if segs != nil {
			segs[0] = seg
		}
		return 1, nil
	}
	for i := 0; i < got; i++ {
		m := &cl.c.msgs[i]
		sizes[i] = int(m.len)
		eps[i] = addrFromC(&m.addr)
		if segs != nil {
			segs[i] = int(m.segment_size)
		}
	}
	return got, nil
}

// WriteBatch sends every bufs[i] as one datagram to dst, in order, handing
// the library up to BatchSize datagrams per call, in the shape of
// wireguard-go's conn.Bind.Send. It blocks while the socket buffer is full
// (subject to the write deadline). On error, a prefix of bufs was sent.
func (c *UDPConn) WriteBatch(bufs [][]byte, dst netip.AddrPort) error {
	var ca C.mr_addr
	if err := addrToC(dst, &ca); err != nil {
		return err
	}
	return c.writeBatch(bufs, func(int) *C.mr_addr { return &ca }, nil)
}

// WriteBatchSegments is WriteBatch with UDP generic segmentation offload:
// the kernel splits bufs[i] into datagrams of segs[i] bytes each (the last
// one may be shorter), so one large buffer leaves as many datagrams for
// the cost of one. segs[i] == 0 sends bufs[i] as a single datagram. bufs
// and segs must have the same length; each bufs[i] is at most 65535 bytes.
//
// The socket needs Config.GSO: otherwise a non-zero segment size fails with
// an error matching ErrInvalidArgument. A receiver with Config.GRO may get
// the segments coalesced again (see ReadBatchSegments).
func (c *UDPConn) WriteBatchSegments(bufs [][]byte, segs []int, dst netip.AddrPort) error {
	if len(bufs) != len(segs) {
		return newError(StatusInvalidArgument, "write", fmt.Sprintf("%d buffers but %d segment sizes", len(bufs), len(segs)))
	}
	for i, s := range segs {
		if s < 0 || s > 65535 {
			return newError(StatusInvalidArgument, "write", fmt.Sprintf("segs[%d] = %d is not a segment size (0..65535)", i, s))
		}
	}
	var ca C.mr_addr
	if err := addrToC(dst, &ca); err != nil {
		return err
	}
	return c.writeBatch(bufs, func(int) *C.mr_addr { return &ca }, func(i int) int { return segs[i] })
}

// WriteBatchTo sends bufs[i] to dsts[i] for every i, in order, like
// WriteBatch. bufs and dsts must have the same length.
func (c *UDPConn) WriteBatchTo(bufs [][]byte, dsts []netip.AddrPort) error {
	if len(bufs) != len(dsts) {
		return newError(StatusInvalidArgument, "write", fmt.Sprintf("%d buffers but %d destinations", len(bufs), len(dsts)))
	}
	addrs := make([]C.mr_addr, len(dsts))
	for i, d := range dsts {
		if err := addrToC(d, &addrs[i]); err != nil {
			return err
		}
	}
	return c.writeBatch(bufs, func(i int) *C.mr_addr { return &addrs[i] }, nil)
}

// writeBatch sends bufs[i] to dst(i), with GSO segment size seg(i) if seg
// is not nil.
func (c *UDPConn) writeBatch(bufs [][]byte, dst func(int) *C.mr_addr, seg func(int) int) error {
	if len(bufs) == 0 {
		return nil
	}
	h, err := c.acquire("write")
	if err != nil {
		return err
	}
	defer c.mu.RUnlock()
	cl := c.getCall()
	used := 0
	defer func() { c.putCall(cl, used) }()
	for start := 0; start < len(bufs); start += BatchSize {
		chunk := bufs[start:min(start+BatchSize, len(bufs))]
		for i, b := range chunk {
			cl.setSend(i, b, dst(start+i))
			if seg != nil {
				cl.c.msgs[i].segment_size = C.uint16_t(seg(start + i))
			}
		}
		used = max(used, len(chunk))
		_, err := c.send(h, cl, len(chunk))
		cl.pin.Unpin()
		if err != nil {
			return err
		}
	}
	return nil
}
