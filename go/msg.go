package meshring

/*
#include "shim_msg.h"
*/
import "C"

import (
	"fmt"
	"net/netip"
	"runtime"
	"unsafe"
)

// Msg is one datagram of ReadMsgs / WriteMsgs: the C mr_msg.
//
// ReadMsgs fills N (bytes received into Buf), Addr (the source),
// SegmentSize (with Config.GRO, the size of each segment of a coalesced
// datagram, else 0) and, with Config.PktInfo, Local and Ifindex: the
// address the datagram was sent to and the interface it arrived on.
//
// WriteMsgs sends the bytes of Bufs (up to 64) gathered in order when Bufs
// is not nil (no copy: each buffer is handed to the kernel as it is), else Buf, to
// Addr. SegmentSize > 0 asks GSO (Config.GSO) to cut the payload into
// datagrams of that size, the last one possibly shorter; gathering several
// packet buffers with a SegmentSize sends them as one GSO batch. A valid
// Local sends from that address (and, if Ifindex is not 0, through that
// interface), as a reply to a datagram received with Local should.
type Msg struct {
	Buf         []byte
	Bufs        [][]byte
	N           int
	Addr        netip.AddrPort
	Local       netip.Addr
	Ifindex     int
	SegmentSize int
}

// msgCall is the per-call state of ReadMsgs / WriteMsgs in C memory. The
// buffers themselves reach the library as direct call arguments (see
// mrgo_udp_recvmsg_direct), so C memory never holds a Go pointer after a
// call and no runtime.Pinner is needed.
type msgCall struct {
	c *C.mrgo_msg_call
	// ptrs holds a read's buffers (Go memory, so the array is not
	// allocated per call); cleared when the call state goes back.
	ptrs directPtrs
}

func (c *UDPConn) getMsgCall() *msgCall {
	select {
	case cl := <-c.msgCalls:
		return cl
	default:
		// calloc: zeroed. C.calloc never returns nil: cgo aborts on
		// allocation failure.
		return &msgCall{c: (*C.mrgo_msg_call)(C.calloc(1, C.sizeof_mrgo_msg_call))}
	}
}

func (c *UDPConn) putMsgCall(cl *msgCall) {
	cl.ptrs = directPtrs{}
	select {
	case c.msgCalls <- cl:
	default:
		C.free(unsafe.Pointer(cl.c))
	}
}

// ReadMsgs receives up to min(len(msgs), 64) datagrams in one library
// call: datagram i is in msgs[i].Buf[:msgs[i].N]. It blocks until at least
// one arrives (subject to the read deadline) and returns how many it
// filled. Each Buf must be non-empty; a datagram longer than its Buf is
// kept for the next call, and fails the call with ErrBufferTooSmall when it
// is the first.
func (c *UDPConn) ReadMsgs(msgs []Msg) (int, error) {
	n := min(len(msgs), directBatch)
	if n == 0 {
		return 0, newError(StatusInvalidArgument, "read", "empty batch")
	}
	for i := 0; i < n; i++ {
		if len(msgs[i].Buf) == 0 {
			return 0, newError(StatusInvalidArgument, "read", fmt.Sprintf("msgs[%d].Buf is empty", i))
		}
	}
	h, err := c.acquire("read")
	if err != nil {
		return 0, err
	}
	defer c.mu.RUnlock()
	defer runtime.KeepAlive(c)
	cl := c.getMsgCall()
	defer c.putMsgCall(cl)
	p := &cl.ptrs
	for i := 0; i < n; i++ {
		p[i] = cBytes(msgs[i].Buf)
		m := &cl.c.msgs[i]
		*m = C.mr_msg{}
		m.cap = C.size_t(len(msgs[i].Buf))
		m.len = unfilled
	}
	if c.np != nil {
		return c.readPolled(h, cl, msgs, n)
	}
	for {
		ms, ok := c.rdl.timeoutMS()
		if !ok {
			return 0, errDeadline("read")
		}
		switch st := udpRecvDirect(h, cl.c, n, ms, p); st {
		case StatusOK:
			if k := cl.collect(msgs, n); k > 0 {
				return k, nil
			}
			// MR_OK without a filled slot (see call.filled): wait on.
		case StatusTimeout, StatusWouldBlock:
			// A polling slice ended: re-read the deadline.
		default:
			return 0, errFromC(st, "read", &cl.c.err)
		}
	}
}

// collect copies what a read filled into msgs and returns how many.
func (cl *msgCall) collect(msgs []Msg, n int) int {
	k := 0
	for k < min(int(cl.c.count), n) && cl.c.msgs[k].len != unfilled {
		k++
	}
	for i := 0; i < k; i++ {
		m := &cl.c.msgs[i]
		out := &msgs[i]
		out.N = int(m.len)
		out.Addr = addrFromC(&m.addr)
		out.SegmentSize = int(m.segment_size)
		out.Ifindex = int(m.ifindex)
		out.Local = addrFromC(&m.local).Addr()
	}
	return k
}

// readPolled waits in Go's netpoller until a direct read fills a slot (its
// own function, so only this path allocates the closure).
func (c *UDPConn) readPolled(h *C.mr_udp, cl *msgCall, msgs []Msg, n int) (int, error) {
	got := 0
	res, werr := c.np.read(func() error {
		switch st := udpRecvDirect(h, cl.c, n, 0, &cl.ptrs); st {
		case StatusOK:
			if got = cl.collect(msgs, n); got == 0 {
				return errWouldBlock // see call.filled
			}
			return nil
		case StatusTimeout, StatusWouldBlock:
			return errWouldBlock
		default:
			return errFromC(st, "read", &cl.c.err)
		}
	})
	if werr != nil {
		return 0, pollError("read", werr)
	}
	return got, res
}

// WriteMsgs sends msgs in order and returns how many were sent: all of
// them, or a prefix and the error that stopped it. Each library call takes
// up to 64 buffers (a message's Bufs are never split: at most 64 each,
// which is also UDP GSO's limit of segments). It blocks while the socket
// buffer is full (subject to the write deadline). An error from a GSO send
// carrying Errno EIO means the outgoing device cannot checksum-offload:
// send without SegmentSize.
func (c *UDPConn) WriteMsgs(msgs []Msg) (int, error) {
	if len(msgs) == 0 {
		return 0, nil
	}
	h, err := c.acquire("write")
	if err != nil {
		return 0, err
	}
	defer c.mu.RUnlock()
	defer runtime.KeepAlive(c)
	cl := c.getMsgCall()
	defer c.putMsgCall(cl)
	done := 0
	for done < len(msgs) {
		// Fill a chunk: at most BatchSize messages and directBatch buffers.
		var p directPtrs
		n, iov := 0, 0
		for done+n < len(msgs) && n < BatchSize {
			src := &msgs[done+n]
			parts := len(src.Bufs)
			if src.Bufs == nil {
				parts = 1
			}
			if parts > directBatch {
				return done, newError(StatusInvalidArgument, "write", fmt.Sprintf("msgs[%d] gathers %d buffers, more than %d", done+n, parts, directBatch))
			}
			if iov+parts > directBatch {
				break
			}
			m := &cl.c.msgs[n]
			*m = C.mr_msg{}
			if err := addrToC(src.Addr, &m.addr); err != nil {
				return done, err
			}
			if src.Local.IsValid() {
				if err := addrToC(netip.AddrPortFrom(src.Local, 0), &m.local); err != nil {
					return done, err
				}
				m.local.scope_id = 0
			}
			if src.Ifindex < 0 || src.Ifindex > 1<<32-1 {
				return done, newError(StatusInvalidArgument, "write", fmt.Sprintf("msgs[%d].Ifindex %d is out of range", done+n, src.Ifindex))
			}
			m.ifindex = C.uint32_t(src.Ifindex)
			if src.SegmentSize < 0 || src.SegmentSize > 65535 {
				return done, newError(StatusInvalidArgument, "write", fmt.Sprintf("msgs[%d].SegmentSize %d is out of range", done+n, src.SegmentSize))
			}
			m.segment_size = C.uint16_t(src.SegmentSize)
			m.iov = &cl.c.iov[iov]
			m.iovcnt = C.size_t(parts)
			add := func(b []byte) {
				v := &cl.c.iov[iov]
				v.len = C.size_t(len(b))
				p[iov] = cBytes(b)
				iov++
			}
			if src.Bufs == nil {
				add(src.Buf)
			} else {
				for _, b := range src.Bufs {
					add(b)
				}
			}
			n++
		}
		off := 0
		for off < n {
			ms, ok := c.wdl.timeoutMS()
			if !ok {
				return done + off, errDeadline("write")
			}
			st := udpSendDirect(h, cl.c, off, n-off, iov, ms, &p)
			off += int(cl.c.count)
			switch st {
			case StatusOK:
			case StatusTimeout, StatusWouldBlock:
				// A polling slice ended with the socket buffer full: retry the rest.
			default:
				return done + off, errFromC(st, "write", &cl.c.err)
			}
		}
		done += n
	}
	return done, nil
}

// SetMark sets SO_MARK on the socket: the firewall mark of every datagram
// sent from now on (0 clears it), what wireguard-go's fwmark sets. It needs
// CAP_NET_ADMIN.
func (c *UDPConn) SetMark(mark uint32) error {
	h, err := c.acquire("set mark")
	if err != nil {
		return err
	}
	defer c.mu.RUnlock()
	defer runtime.KeepAlive(c)
	var cerr C.mrgo_err
	if st := Status(C.mrgo_udp_set_mark(h, C.uint32_t(mark), &cerr)); st != StatusOK {
		return errFromC(st, "set mark", &cerr)
	}
	return nil
}

// SockOpt reads an integer socket option of the socket (level and name as
// for getsockopt(2), e.g. syscall.SOL_SOCKET, syscall.SO_RCVBUF), for
// checks and diagnostics.
func (c *UDPConn) SockOpt(level, name int) (int, error) {
	h, err := c.acquire("sockopt")
	if err != nil {
		return 0, err
	}
	defer c.mu.RUnlock()
	defer runtime.KeepAlive(c)
	var v C.int
	var cerr C.mrgo_err
	if st := Status(C.mrgo_udp_sockopt(h, C.int(level), C.int(name), &v, &cerr)); st != StatusOK {
		return 0, errFromC(st, "sockopt", &cerr)
	}
	return int(v), nil
}
