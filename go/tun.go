package meshring

/*
#include "shim_tun.h"
*/
import "C"

import (
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"
)

// Event is a TUN device event, as in wireguard-go's tun.Event.
type Event int

// Device events; the values are wireguard-go's.
const (
	EventUp        Event = 1 << iota // the device is up (sent once, at creation)
	EventDown                        // the device went down (never sent yet)
	EventMTUUpdate                   // the MTU changed through SetMTU
)

// eventBacklog is how many events Events holds for a slow reader; more are
// dropped (MTU() is always current).
const eventBacklog = 16

// TUNConfig holds the options of CreateTUNConfig and TUNFromFile. The zero
// value means the library defaults for every field.
type TUNConfig struct {
	// Backend selects how reads wait: io_uring, poll(2) ("batch"), or auto.
	Backend Backend
	// MTU to set after creation; 0 keeps the kernel's (1500).
	MTU int
	// PacketInfo keeps the kernel's 4-byte packet-information header on
	// the device (IFF_NO_PI off). Read and Write still see plain IP
	// packets. Cannot be combined with Offload.
	PacketInfo bool
	// MultiQueue creates a multi-queue device: creating another TUN with
	// the same name adds a queue.
	MultiQueue bool
	// Offload enables IFF_VNET_HDR with checksum, TSO and USO offloads: the
	// kernel hands over TCP/UDP super-packets of up to 64 KiB, which Read
	// splits back into MTU-sized packets with correct headers and
	// checksums, so callers still see ordinary packets.
	Offload bool
	// NetPoll makes Read wait in Go's netpoller (on the device's readiness
	// fd) instead of in a blocking library call, so a waiting reader holds
	// no thread: what a program with many goroutines, such as
	// wireguard-go, wants.
	NetPoll bool
}

func (cfg *TUNConfig) toC(op string, out *C.mr_tun_config) error {
	if st := Status(C.mr_tun_config_init(out)); st != StatusOK {
		return newError(st, op, "mr_tun_config_init failed")
	}
	if cfg.Backend < BackendAuto || cfg.Backend > BackendBatch {
		return newError(StatusInvalidArgument, op, fmt.Sprintf("TUNConfig.Backend %d is not a Backend", int(cfg.Backend)))
	}
	if cfg.MTU < 0 || cfg.MTU > math.MaxUint32 {
		return newError(StatusInvalidArgument, op, fmt.Sprintf("TUNConfig.MTU %d is out of range", cfg.MTU))
	}
	out.backend = C.uint32_t(cfg.Backend)
	var flags C.uint32_t
	if cfg.PacketInfo {
		flags |= C.MR_TUN_PACKET_INFO
	}
	if cfg.MultiQueue {
		flags |= C.MR_TUN_MULTI_QUEUE
	}
	if cfg.Offload {
		flags |= C.MR_TUN_OFFLOAD
	}
	out.flags = flags
	out.mtu = C.uint32_t(cfg.MTU)
	return nil
}

// TUN is a TUN device served by meshring, in the shape of wireguard-go's
// tun.Device (File, Read, Write, MTU, Name, Events, Close, BatchSize).
//
// It is safe for concurrent use: any number of goroutines may call Write
// at once and while another reads; concurrent Reads take turns in the
// library. Close releases the device (a non-persistent device is deleted);
// a TUN that becomes unreachable without Close is released by a finalizer.
//
// Network namespaces: MTU and SetMTU look the device up by name in the
// network namespace of the OS thread that runs the call. All threads of a
// Go program normally share one namespace; a program that creates a device
// in another namespace (on a thread locked with runtime.LockOSThread after
// unshare or setns) must call MTU and SetMTU from that thread. Read, Write
// and Close work from any thread.
type TUN struct {
	// mu is read-held by every operation for as long as it uses h, and
	// write-held by Close (and the finalizer) to free h: the handle is freed
	// only when no call is in flight.
	mu sync.RWMutex
	h  *C.mr_tun // nil once freed

	closed  atomic.Bool
	name    string
	backend Backend

	// evMu orders event sends with closing the channel.
	evMu     sync.Mutex
	evClosed bool
	events   chan Event

	calls chan *tunCall // idle call states, freed with h

	// oversize counts packets dropped because the library reported them
	// longer than their buffer (see Read).
	oversize atomic.Uint64

	np *netPoller // TUNConfig.NetPoll: Read waits in Go's netpoller
}

// CreateTUN creates a TUN device named name ("mr0", a pattern such as
// "mr%d", or "" to let the kernel choose) with the given MTU (0 keeps the
// kernel's default, 1500). It needs CAP_NET_ADMIN. The device is created in
// the network namespace of the calling OS thread. It is not configured:
// give it addresses and bring it up with the usual tools.
func CreateTUN(name string, mtu int) (*TUN, error) {
	return CreateTUNConfig(name, TUNConfig{MTU: mtu})
}

// CreateTUNConfig is CreateTUN with options.
func CreateTUNConfig(name string, cfg TUNConfig) (*TUN, error) {
	var ccfg C.mr_tun_config
	if err := cfg.toC("create tun", &ccfg); err != nil {
		return nil, err
	}
	cname := C.CString(name)
	defer C.free(unsafe.Pointer(cname))
	var h *C.mr_tun
	var cerr C.mrgo_err
	if st := Status(C.mrgo_tun_create(cname, &ccfg, &h, &cerr)); st != StatusOK {
		return nil, errFromC(st, "create tun", &cerr)
	}
	t, err := newTUN(h, "create tun")
	if err != nil || !cfg.NetPoll {
		return t, err
	}
	if t.np, err = newNetPoller(int(C.mr_tun_fd(h))); err != nil {
		t.Close()
		return nil, newError(StatusIO, "create tun", "readiness fd for the netpoller: "+err.Error())
	}
	return t, nil
}

// TUNFromFile wraps an open TUN device, such as one a privileged helper
// created and passed over a Unix socket. The TUN uses a duplicate of f's
// descriptor, so the caller keeps owning f and may close it; the device
// lives on while either is open. The library puts the descriptor in
// non-blocking mode, which f shares.
//
// The packet-information and offload settings are read from the device
// (an fd attached with IFF_VNET_HDR gets offloads enabled); cfg's
// PacketInfo, Offload and MultiQueue are ignored. cfg.Backend is used, and
// a non-zero cfg.MTU is set on the device.
func TUNFromFile(f *os.File, cfg TUNConfig) (*TUN, error) {
	const op = "tun from file"
	var ccfg C.mr_tun_config
	if err := cfg.toC(op, &ccfg); err != nil {
		return nil, err
	}
	if f == nil {
		return nil, newError(StatusInvalidArgument, op, "nil *os.File")
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return nil, osError(op, "SyscallConn", err)
	}
	dup := -1
	var dupErr error
	// Control, unlike f.Fd, leaves f's blocking mode alone.
	if err := rc.Control(func(fd uintptr) {
		r, _, e := syscall.Syscall(syscall.SYS_FCNTL, fd, syscall.F_DUPFD_CLOEXEC, 0)
		if e != 0 {
			dupErr = e
			return
		}
		dup = int(r)
	}); err != nil {
		return nil, osError(op, "SyscallConn.Control", err)
	}
	if dupErr != nil {
		return nil, osError(op, "dup", dupErr)
	}
	var h *C.mr_tun
	var cerr C.mrgo_err
	if st := Status(C.mrgo_tun_from_fd(C.int(dup), &ccfg, &h, &cerr)); st != StatusOK {
		syscall.Close(dup) // still ours on failure
		return nil, errFromC(st, op, &cerr)
	}
	if cfg.MTU != 0 {
		if st := Status(C.mrgo_tun_set_mtu(h, C.uint32_t(cfg.MTU), &cerr)); st != StatusOK {
			C.mr_tun_free(h)
			return nil, errFromC(st, op, &cerr)
		}
	}
	return newTUN(h, op)
}

// newTUN wraps a new handle, taking it over (it is freed on failure).
func newTUN(h *C.mr_tun, op string) (*TUN, error) {
	var buf [64]C.char
	var cerr C.mrgo_err
	if st := Status(C.mrgo_tun_name(h, &buf[0], C.size_t(len(buf)), &cerr)); st != StatusOK {
		C.mr_tun_free(h)
		return nil, errFromC(st, op, &cerr)
	}
	t := &TUN{
		h:       h,
		name:    C.GoString(&buf[0]),
		backend: Backend(C.mr_tun_backend(h)),
		events:  make(chan Event, eventBacklog),
		calls:   make(chan *tunCall, maxIdleCalls),
	}
	t.events <- EventUp
	runtime.SetFinalizer(t, (*TUN).finalize)
	return t, nil
}

func errTUNClosed(op string) error {
	return newError(StatusClosed, op, "use of closed TUN device")
}

// acquire returns the handle with t.mu read-held, or an ErrClosed error.
// The caller must call t.mu.RUnlock when done with the handle.
func (t *TUN) acquire(op string) (*C.mr_tun, error) {
	if t.closed.Load() {
		return nil, errTUNClosed(op)
	}
	t.mu.RLock()
	if t.h == nil {
		t.mu.RUnlock()
		return nil, errTUNClosed(op)
	}
	return t.h, nil
}

// File returns nil: the library owns the device's file descriptor and does
// not hand it out.
//
// A duplicate of the device fd would let callers read packets behind the
// library's back (and, with Offload, see raw virtio-net super-packets), and
// the fd the library does expose (mr_tun_fd) is a readiness fd, which with
// the io_uring backend is an eventfd, not the device. wireguard-go only
// uses File to pass the device to a child process; a program that needs
// that should open the device itself and wrap it with TUNFromFile, keeping
// its own *os.File.
func (t *TUN) File() *os.File { return nil }

// Name returns the device's name (the kernel's choice when it was created
// from a pattern or an empty name). It never fails, also after Close.
func (t *TUN) Name() (string, error) { return t.name, nil }

// Backend reports how reads wait: BackendURing or BackendBatch (poll).
func (t *TUN) Backend() Backend { return t.backend }

// BatchSize is the most packets one Read returns and the chunk size of
// Write: wireguard-go's IdealBatchSize, 128.
func (t *TUN) BatchSize() int { return BatchSize }

// Events returns the device's event channel: EventUp once, at creation,
// then EventMTUUpdate after each successful SetMTU. The channel is closed
// by Close.
func (t *TUN) Events() <-chan Event { return t.events }

func (t *TUN) sendEvent(e Event) {
	t.evMu.Lock()
	defer t.evMu.Unlock()
	if t.evClosed {
		return
	}
	select {
	case t.events <- e:
	default: // a reader that is this far behind gets the MTU from MTU()
	}
}

func (t *TUN) closeEvents() {
	t.evMu.Lock()
	defer t.evMu.Unlock()
	if !t.evClosed {
		t.evClosed = true
		close(t.events)
	}
}

// MTU returns the device's MTU, read from the kernel (see the note on
// network namespaces in the TUN documentation).
func (t *TUN) MTU() (int, error) {
	var mtu C.uint32_t
	err := t.control("mtu", func(h *C.mr_tun, cerr *C.mrgo_err) C.mr_status { return C.mrgo_tun_mtu(h, &mtu, cerr) })
	if err != nil {
		return 0, err
	}
	return int(mtu), nil
}

// control runs one control call (not a data path: its error slot is
// allocated) on the open device, with op naming it in the error.
func (t *TUN) control(op string, call func(h *C.mr_tun, cerr *C.mrgo_err) C.mr_status) error {
	h, err := t.acquire(op)
	if err != nil {
		return err
	}
	defer t.mu.RUnlock()
	defer runtime.KeepAlive(t)
	var cerr C.mrgo_err
	if st := Status(call(h, &cerr)); st != StatusOK {
		return errFromC(st, op, &cerr)
	}
	return nil
}

// SetMTU sets the device's MTU (68..65535) and sends EventMTUUpdate.
func (t *TUN) SetMTU(mtu int) error {
	if mtu < 0 || mtu > math.MaxUint32 {
		return newError(StatusInvalidArgument, "set mtu", fmt.Sprintf("MTU %d is out of range", mtu))
	}
	if err := t.control("set mtu", func(h *C.mr_tun, cerr *C.mrgo_err) C.mr_status {
		return C.mrgo_tun_set_mtu(h, C.uint32_t(mtu), cerr)
	}); err != nil {
		return err
	}
	t.sendEvent(EventMTUUpdate)
	return nil
}

// Read reads up to min(len(bufs), len(sizes), BatchSize) packets, one IP
// packet into each bufs[i][offset:], and sets sizes[i] to its length. It
// blocks until at least one packet is available and returns how many it
// read. Each bufs[i][offset:] must hold the device MTU (wireguard-go's
// 65535-byte buffers always do); otherwise Read fails with an error
// matching ErrBufferTooSmall. Close unblocks a waiting Read, which then
// fails with an error matching ErrClosed, os.ErrClosed and net.ErrClosed.
func (t *TUN) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	n := min(len(bufs), len(sizes), BatchSize)
	if n == 0 {
		return 0, newError(StatusInvalidArgument, "read", "empty batch: bufs and sizes need at least one element")
	}
	if err := checkOffset("read", bufs[:n], offset); err != nil {
		return 0, err
	}
	h, err := t.acquire("read")
	if err != nil {
		return 0, err
	}
	defer t.mu.RUnlock()
	defer runtime.KeepAlive(t)
	cl := t.getCall()
	defer t.putCall(cl, 0)
	// The buffers go to the library as direct call arguments, up to
	// directBatch per call (see mrgo_tun_read_direct): the first call
	// waits for packets, the following ones only take what is ready.
	total := 0
	for total < n {
		chunk := min(n-total, directBatch)
		p := &cl.ptrs
		*p = directPtrs{} // entries past chunk stay NULL
		for i := 0; i < chunk; i++ {
			b := bufs[total+i][offset:]
			p[i] = cBytes(b)
			pk := &cl.c.pkts[i]
			pk.cap = C.size_t(len(b))
			pk.len = 0
			pk.proto = 0
		}
		var st Status
		switch {
		case total > 0:
			st = tunReadDirect(h, cl.c, chunk, 0, p)
		case t.np != nil:
			var werr error
			if st, werr = t.readPolled(h, cl, chunk); werr != nil {
				return 0, pollError("read", werr)
			}
		default:
			// -1: wait as long as it takes; mr_tun_close wakes the call.
			st = tunReadDirect(h, cl.c, chunk, -1, p)
		}
		switch {
		case st == StatusOK:
		case total > 0:
			return total, nil // what is read so far; the error comes again next time
		case st == StatusTimeout || st == StatusWouldBlock:
			continue
		default:
			return 0, errFromC(st, "read", &cl.c.err)
		}
		got := min(int(cl.c.count), chunk)
		k := 0
		for i := 0; i < got; i++ {
			src := bufs[total+i]
			l := int(cl.c.pkts[i].len)
			if l > len(src)-offset || truncatedIP(src[offset:offset+l]) {
				// Workaround: meshring 0.1.0 checks slots against the MTU
				// it read at creation (or at the last MTU/SetMTU call). If
				// the MTU was raised behind its back, a longer packet is
				// cut to its slot and returned as if whole. Drop it, as
				// the kernel drops packets too large for a reader.
				t.oversize.Add(1)
				continue
			}
			if k != i {
				copy(bufs[total+k][offset:], src[offset:offset+l])
			}
			sizes[total+k] = l
			k++
		}
		total += k
		if got < chunk && total > 0 {
			break // the device had no more ready
		}
	}
	return total, nil
}

// Write writes every bufs[i][offset:] as one IP packet, in order, handing
// the library up to BatchSize packets per call, and returns how many it
// wrote. On error, a prefix of bufs was written. TUN writes never block.
func (t *TUN) Write(bufs [][]byte, offset int) (int, error) {
	if len(bufs) == 0 {
		return 0, nil
	}
	if err := checkOffset("write", bufs, offset); err != nil {
		return 0, err
	}
	h, err := t.acquire("write")
	if err != nil {
		return 0, err
	}
	defer t.mu.RUnlock()
	defer runtime.KeepAlive(t)
	cl := t.getCall()
	defer t.putCall(cl, 0)
	done := 0
	for done < len(bufs) {
		n := min(len(bufs)-done, BatchSize)
		for i := 0; i < n; i++ {
			cl.set(i, bufs[done+i][offset:], true)
		}
		st := Status(C.mrgo_tun_write(h, cl.c, C.size_t(n)))
		done += min(int(cl.c.count), n)
		cl.reset(n)
		if st != StatusOK {
			return done, errFromC(st, "write", &cl.c.err)
		}
	}
	return done, nil
}

// truncatedIP reports whether pkt is shorter than the length its IPv4 or
// IPv6 header gives (IPv6 jumbograms, with payload length 0, are not
// checked).
func truncatedIP(pkt []byte) bool {
	if len(pkt) == 0 {
		return false
	}
	switch pkt[0] >> 4 {
	case 4:
		return len(pkt) >= 20 && int(binary.BigEndian.Uint16(pkt[2:4])) > len(pkt)
	case 6:
		return len(pkt) >= 40 && 40+int(binary.BigEndian.Uint16(pkt[4:6])) > len(pkt)
	}
	return false
}

// checkOffset checks that every bufs[i][offset:] is a non-empty slice.
func checkOffset(op string, bufs [][]byte, offset int) error {
	if offset < 0 {
		return newError(StatusInvalidArgument, op, fmt.Sprintf("negative offset %d", offset))
	}
	for i, b := range bufs {
		if len(b) <= offset {
			return newError(StatusInvalidArgument, op, fmt.Sprintf("bufs[%d] has %d bytes, none after offset %d", i, len(b), offset))
		}
	}
	return nil
}

// Close closes the device: a Read blocked in another goroutine returns
// promptly with an error matching ErrClosed and os.ErrClosed, and the
// Events channel is closed. Close then waits for calls in flight to leave
// the library and releases the device. Closing again returns an ErrClosed
// error.
func (t *TUN) Close() error {
	if !t.closed.CompareAndSwap(false, true) {
		return errTUNClosed("close")
	}
	t.closeEvents()
	st := StatusOK
	t.mu.RLock()
	if t.h != nil {
		st = Status(C.mr_tun_close(t.h))
	}
	t.mu.RUnlock()
	if t.np != nil {
		t.np.close() // wakes a Read waiting in the netpoller
	}
	t.mu.Lock()
	t.free()
	t.mu.Unlock()
	runtime.SetFinalizer(t, nil)
	runtime.KeepAlive(t)
	if st != StatusOK {
		return newError(st, "close", "")
	}
	return nil
}

// finalize releases a TUN that was never closed.
func (t *TUN) finalize() {
	t.closeEvents()
	t.mu.Lock()
	defer t.mu.Unlock()
	t.free()
}

// free releases the handle and the idle call states. t.mu must be
// write-held (or t unreachable).
func (t *TUN) free() {
	if t.h == nil {
		return
	}
	C.mr_tun_free(t.h)
	t.h = nil
	if t.np != nil {
		t.np.close()
	}
	for {
		select {
		case cl := <-t.calls:
			cl.destroy()
		default:
			return
		}
	}
}

// tunCall is the per-call state of one Read or Write: an mrgo_tun_call in
// C memory (the mr_packet array, the out count and the error message) and
// the Pinner that pins the Go buffers its entries point to, as call is for
// UDPConn.
type tunCall struct {
	c   *C.mrgo_tun_call
	pin runtime.Pinner
	// ptrs holds one direct call's buffers (Go memory, so the array is not
	// allocated per call); cleared when the call state goes back.
	ptrs directPtrs
}

// readPolled waits in Go's netpoller until one direct read of chunk
// packets takes something (its own function, so only this path allocates
// the closure).
func (t *TUN) readPolled(h *C.mr_tun, cl *tunCall, chunk int) (Status, error) {
	var st Status
	_, err := t.np.read(func() error {
		st = tunReadDirect(h, cl.c, chunk, 0, &cl.ptrs)
		if st == StatusWouldBlock || st == StatusTimeout {
			return errWouldBlock
		}
		return nil
	})
	return st, err
}

// getCall takes an idle call state or makes one. t.mu must be read-held.
func (t *TUN) getCall() *tunCall {
	select {
	case cl := <-t.calls:
		return cl
	default:
		// calloc: zeroed, so a first store never overwrites a stale pointer.
		// C.calloc never returns nil: cgo aborts on allocation failure.
		return &tunCall{c: (*C.mrgo_tun_call)(C.calloc(1, C.sizeof_mrgo_tun_call))}
	}
}

// putCall unpins cl's buffers and recycles it. t.mu must be read-held.
func (t *TUN) putCall(cl *tunCall, used int) {
	cl.reset(used)
	cl.ptrs = directPtrs{}
	select {
	case t.calls <- cl:
	default:
		cl.destroy()
	}
}

// set points slot i at b (non-empty) and pins it: as a packet to write
// (len = len(b)) or as space to read into (cap = len(b)).
func (cl *tunCall) set(i int, b []byte, write bool) {
	p := &b[0]
	cl.pin.Pin(p)
	pk := &cl.c.pkts[i]
	pk.buf = (*C.uint8_t)(unsafe.Pointer(p))
	pk.cap = C.size_t(len(b))
	pk.len = 0
	if write {
		pk.len = C.size_t(len(b))
	}
	pk.proto = 0
}

// reset unpins every buffer and forgets the pointers to them.
func (cl *tunCall) reset(n int) {
	cl.pin.Unpin()
	for i := 0; i < n && i < BatchSize; i++ {
		cl.c.pkts[i].buf = nil
	}
}

func (cl *tunCall) destroy() {
	C.free(unsafe.Pointer(cl.c))
	cl.c = nil
}
