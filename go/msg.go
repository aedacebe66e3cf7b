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
// WriteMsgs sends the bytes of Bufs gathered in order when Bufs is not nil
// (no copy: each buffer is handed to the kernel as it is), else Buf, to
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

// msgCall is the per-call state of ReadMsgs / WriteMsgs, as call is for
// ReadBatch / WriteBatch. usedMsgs / usedIov count the entries that may
// hold Go pointers: they are cleared before the call state is reused, so
// C memory never keeps a pointer to a Go buffer that may since have been
// freed (a later store over it would hand the garbage collector's write
// barrier a dangling pointer).
type msgCall struct {
	c        *C.mrgo_msg_call
	pin      runtime.Pinner
	usedMsgs int
	usedIov  int
}

func (c *UDPConn) getMsgCall() *msgCall {
	select {
	case cl := <-c.msgCalls:
		return cl
	default:
		// calloc: zeroed, so no stale pointer is ever overwritten (see msgCall).
		// C.calloc never returns nil: cgo aborts on allocation failure.
		return &msgCall{c: (*C.mrgo_msg_call)(C.calloc(1, C.sizeof_mrgo_msg_call))}
	}
}

func (c *UDPConn) putMsgCall(cl *msgCall) {
	// The caller still holds every buffer: clear the pointers, then unpin.
	for i := 0; i < cl.usedMsgs; i++ {
		cl.c.msgs[i].buf = nil
		cl.c.msgs[i].iov = nil
	}
	for i := 0; i < cl.usedIov; i++ {
		cl.c.iov[i].base = nil
	}
	cl.usedMsgs, cl.usedIov = 0, 0
	cl.pin.Unpin()
	select {
	case c.msgCalls <- cl:
	default:
		C.free(unsafe.Pointer(cl.c))
	}
}

func (cl *msgCall) ptr(b []byte) *C.uint8_t {
	if len(b) == 0 {
		return nil
	}
	p := &b[0]
	cl.pin.Pin(p)
	return (*C.uint8_t)(unsafe.Pointer(p))
}

// ReadMsgs receives up to min(len(msgs), BatchSize) datagrams in one
// library call: datagram i is in msgs[i].Buf[:msgs[i].N]. It blocks until
// at least one arrives (subject to the read deadline) and returns how many
// it filled. Each Buf must be non-empty; a datagram longer than its Buf is
// kept for the next call, and fails the call with ErrBufferTooSmall when it
// is the first.
func (c *UDPConn) ReadMsgs(msgs []Msg) (int, error) {
	n := min(len(msgs), BatchSize)
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
	cl.usedMsgs = n
	for i := 0; i < n; i++ {
		m := &cl.c.msgs[i]
		*m = C.mr_msg{}
		m.buf = cl.ptr(msgs[i].Buf)
		m.cap = C.size_t(len(msgs[i].Buf))
		m.len = unfilled
	}
	collect := func() int {
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
	if c.np != nil {
		got := 0
		res, werr := c.np.read(func() error {
			switch st := Status(C.mrgo_udp_recvmsg(h, cl.c, C.size_t(n), 0)); st {
			case StatusOK:
				if got = collect(); got == 0 {
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
	for {
		ms, ok := c.rdl.timeoutMS()
		if !ok {
			return 0, errDeadline("read")
		}
		switch st := Status(C.mrgo_udp_recvmsg(h, cl.c, C.size_t(n), C.int32_t(ms))); st {
		case StatusOK:
			if k := collect(); k > 0 {
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

// WriteMsgs sends msgs in order, handing the library up to BatchSize
// datagrams (and up to 1024 gathered buffers) per call, and returns how many
// were sent: all of them, or a prefix and the error that stopped it. It
// blocks while the socket buffer is full (subject to the write deadline).
// An error from a GSO send carrying Errno EIO means the outgoing device
// cannot checksum-offload: send without SegmentSize.
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
		// Fill a chunk: at most BatchSize messages and MRGO_IOV gather buffers.
		n, iov := 0, 0
		for done+n < len(msgs) && n < BatchSize {
			src := &msgs[done+n]
			if len(src.Bufs) > C.MRGO_IOV {
				return done, newError(StatusInvalidArgument, "write", fmt.Sprintf("msgs[%d] gathers %d buffers, more than %d", done+n, len(src.Bufs), C.MRGO_IOV))
			}
			if iov+len(src.Bufs) > C.MRGO_IOV {
				break
			}
			m := &cl.c.msgs[n]
			cl.usedMsgs = max(cl.usedMsgs, n+1)
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
			if src.Bufs != nil {
				m.iov = &cl.c.iov[iov]
				m.iovcnt = C.size_t(len(src.Bufs))
				for _, b := range src.Bufs {
					v := &cl.c.iov[iov]
					v.base = cl.ptr(b)
					v.len = C.size_t(len(b))
					iov++
				}
				cl.usedIov = max(cl.usedIov, iov)
			} else {
				m.buf = cl.ptr(src.Buf)
				m.len = C.size_t(len(src.Buf))
				m.cap = m.len
			}
			n++
		}
		off := 0
		for off < n {
			ms, ok := c.wdl.timeoutMS()
			if !ok {
				cl.pin.Unpin()
				return done + off, errDeadline("write")
			}
			st := Status(C.mrgo_udp_sendmsg(h, cl.c, C.size_t(off), C.size_t(n-off), C.int32_t(ms)))
			off += int(cl.c.count)
			switch st {
			case StatusOK:
			case StatusTimeout, StatusWouldBlock:
				// A polling slice ended with the socket buffer full: retry the rest.
			default:
				cl.pin.Unpin()
				return done + off, errFromC(st, "write", &cl.c.err)
			}
		}
		cl.pin.Unpin()
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
