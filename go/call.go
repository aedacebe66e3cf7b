package meshring

/*
#include "shim.h"
*/
import "C"

import (
	"runtime"
	"syscall"
	"unsafe"
)

// call is the per-call state of one receive or send: an mrgo_call in C
// memory (the mr_datagram array, the out count and the error message) and
// the Pinner that pins the Go buffers its mr_datagram entries point to.
//
// cgo forbids passing C a pointer to Go memory that itself holds Go
// pointers, so the mr_datagram array cannot live in Go memory. It lives in
// C memory instead, and every Go buffer it points to is pinned with a
// runtime.Pinner for the duration of the call (C memory may hold pointers to
// pinned Go memory). Calls are recycled through a small per-conn free list.
type call struct {
	c   *C.mrgo_call
	pin runtime.Pinner
}

// maxIdleCalls bounds the free list of a conn.
const maxIdleCalls = 8

func newCall() *call {
	// calloc: zeroed, so a first store never overwrites a stale pointer.
	// C.calloc never returns nil: cgo aborts on allocation failure.
	return &call{c: (*C.mrgo_call)(C.calloc(1, C.sizeof_mrgo_call))}
}

func (cl *call) destroy() {
	C.free(unsafe.Pointer(cl.c))
	cl.c = nil
}

// setRecv points slot i at b (len(b) > 0) and pins b.
func (cl *call) setRecv(i int, b []byte) {
	p := &b[0]
	cl.pin.Pin(p)
	m := &cl.c.msgs[i]
	m.buf = (*C.uint8_t)(unsafe.Pointer(p))
	m.cap = C.size_t(len(b))
	m.len = unfilled
	m.segment_size = 0
}

// unfilled marks a receive slot the library has not written: a filled slot
// has len <= cap.
const unfilled = ^C.size_t(0)

// filled returns how many leading slots of the first n the library actually
// filled, trusting at most count of them.
//
// Workaround: the io_uring backend of meshring 0.1.0 counts datagrams it
// drops as oversize (> Config.MaxDatagram) in mr_udp_recv's *received, so
// *received can exceed the slots it filled (and even n), and MR_OK can come
// with no slot filled. Slots are filled in order, so the leading slots with
// len != unfilled are the real datagrams.
func (cl *call) filled(count, n int) int {
	k := 0
	for k < min(count, n) && cl.c.msgs[k].len != unfilled {
		k++
	}
	return k
}

// setSend makes slot i send b to a, pinning b.
func (cl *call) setSend(i int, b []byte, a *C.mr_addr) {
	m := &cl.c.msgs[i]
	if len(b) == 0 {
		m.buf = nil
	} else {
		p := &b[0]
		cl.pin.Pin(p)
		m.buf = (*C.uint8_t)(unsafe.Pointer(p))
	}
	m.cap = C.size_t(len(b))
	m.len = C.size_t(len(b))
	m.addr = *a
	m.segment_size = 0
}

// reset unpins every buffer and forgets the pointers to them.
func (cl *call) reset(n int) {
	cl.pin.Unpin()
	for i := 0; i < n && i < BatchSize; i++ {
		cl.c.msgs[i].buf = nil
	}
}

// err builds the *Error of a failed library call from the message the C
// helper captured on the failing thread.
func (cl *call) err(st Status, op string) error {
	return errFromC(st, op, &cl.c.err)
}

func errFromC(st Status, op string, e *C.mrgo_err) error {
	return &Error{
		Status: st,
		Op:     op,
		Msg:    C.GoString(&e.msg[0]),
		Errno:  syscall.Errno(e.os_err),
	}
}
