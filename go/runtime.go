package meshring

/*
#include "shim_runtime.h"
*/
import "C"

import (
	"encoding/json"
	"runtime"
	"runtime/cgo"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

// ProtoState is a protocol's own state (BIRD's proto_state).
type ProtoState uint32

// The protocol states; values are the C MR_PROTO_* constants.
const (
	ProtoDown  ProtoState = C.MR_PROTO_DOWN
	ProtoStart ProtoState = C.MR_PROTO_START
	ProtoUp    ProtoState = C.MR_PROTO_UP
	ProtoStop  ProtoState = C.MR_PROTO_STOP
)

// CommitMode selects how Runtime.Commit treats protocols that stay.
type CommitMode uint32

const (
	// CommitSoft reconfigures changed protocols in place where they agree,
	// restarts the others and leaves unchanged ones alone.
	CommitSoft CommitMode = C.MR_COMMIT_SOFT
	// CommitHard restarts every protocol that stays.
	CommitHard CommitMode = C.MR_COMMIT_HARD
)

// Route is one best-route change exported to a protocol.
type Route struct {
	Table      string
	Prefix     string
	Proto      string // the protocol that imported it
	Preference uint32
	Attrs      json.RawMessage
	// Withdrawn: the protocol no longer has a route to Prefix; the other
	// fields describe the route that went.
	Withdrawn bool
}

// ProtocolKind is a host-defined protocol kind (RegisterKind). Its methods
// run on the runtime's loop thread, one at a time for the whole runtime,
// never concurrently; they may call back into the Runtime (Import,
// NotifyState, ShowRoute, ...) but must not Close it.
type ProtocolKind interface {
	// Start brings proto up with its config member (JSON, "null" when
	// absent): return ProtoUp when running, ProtoStart to report ProtoUp
	// later with NotifyState, ProtoDown on failure.
	Start(rt *Runtime, proto string, config json.RawMessage) ProtoState
	// Shutdown takes proto down: ProtoDown when done, ProtoStop to report
	// ProtoDown later. The runtime flushes its routes either way.
	Shutdown(rt *Runtime, proto string) ProtoState
	// Reconfigure reports whether proto switched to newConfig in place;
	// false restarts it with newConfig.
	Reconfigure(rt *Runtime, proto string, oldConfig, newConfig json.RawMessage) bool
	// Export delivers a best-route change in proto's table: during the feed
	// every route once, then the changes (never proto's own routes).
	// Changes to one prefix that pile up before delivery are coalesced to
	// the latest state; proto always ends with the current table.
	Export(rt *Runtime, proto string, r Route)
}

// RuntimeOptions tunes a Runtime; zero fields mean the library defaults.
type RuntimeOptions struct {
	FeedChunk    int // routes per feed or flush step (2048)
	EventBacklog int // state events kept for NextEvent (4096)
}

// Runtime is a lifecycle runtime: BIRD-style protocol instances (built-in
// kinds "static" and "netmap", and Go kinds from RegisterKind) over route
// tables, configured by Commit. It is safe for concurrent use.
//
// Close releases it. A Runtime with registered kinds stays reachable from
// them until Close, so call Close; one without kinds that becomes
// unreachable is released by a finalizer.
type Runtime struct {
	mu     sync.RWMutex // read-held while h is in use, write-held to free it
	h      *C.mr_runtime
	closed atomic.Bool
}

type kindEntry struct {
	rt   *Runtime
	kind ProtocolKind
}

func errRuntimeClosed(op string) error { return newError(StatusClosed, op, "runtime is closed") }

// NewRuntime creates a runtime with its loop thread; opts may be nil.
func NewRuntime(opts *RuntimeOptions) (*Runtime, error) {
	var copts *C.char
	if opts != nil && (opts.FeedChunk != 0 || opts.EventBacklog != 0) {
		m := map[string]int{}
		if opts.FeedChunk != 0 {
			m["feed_chunk"] = opts.FeedChunk
		}
		if opts.EventBacklog != 0 {
			m["event_backlog"] = opts.EventBacklog
		}
		b, _ := json.Marshal(m)
		copts = C.CString(string(b))
		defer C.free(unsafe.Pointer(copts))
	}
	var h *C.mr_runtime
	var cerr C.mrgo_err
	if st := Status(C.mrgo_runtime_new(copts, &h, &cerr)); st != StatusOK {
		return nil, errFromC(st, "new runtime", &cerr)
	}
	r := &Runtime{h: h}
	runtime.SetFinalizer(r, (*Runtime).finalize)
	return r, nil
}

// call runs f with the handle and turns a failure into an *Error.
func (r *Runtime) call(op string, f func(h *C.mr_runtime, e *C.mrgo_err) C.mr_status) error {
	if r.closed.Load() {
		return errRuntimeClosed(op)
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	defer runtime.KeepAlive(r)
	if r.h == nil {
		return errRuntimeClosed(op)
	}
	var cerr C.mrgo_err
	if st := Status(f(r.h, &cerr)); st != StatusOK {
		return errFromC(st, op, &cerr)
	}
	return nil
}

func (r *Runtime) read(op string, f func(h *C.mr_runtime, out *C.mr_bytes, e *C.mrgo_err) C.mr_status) ([]byte, error) {
	var out C.mr_bytes
	err := r.call(op, func(h *C.mr_runtime, e *C.mrgo_err) C.mr_status { return f(h, &out, e) })
	if err != nil {
		return nil, err
	}
	return takeBytes(&out), nil
}

// cString returns a C copy of s (nil for "" when empty means NULL) and its
// release function.
func cString(s string, emptyIsNull bool) (*C.char, func()) {
	if s == "" && emptyIsNull {
		return nil, func() {}
	}
	p := C.CString(s)
	return p, func() { C.free(unsafe.Pointer(p)) }
}

// RegisterKind makes kind available to configs under name.
func (r *Runtime) RegisterKind(name string, kind ProtocolKind) error {
	cname, free := cString(name, false)
	defer free()
	handle := cgo.NewHandle(&kindEntry{rt: r, kind: kind})
	err := r.call("register kind", func(h *C.mr_runtime, e *C.mrgo_err) C.mr_status {
		return C.mrgo_runtime_register_kind(h, cname, C.uintptr_t(handle), e)
	})
	if err != nil {
		handle.Delete() // not registered: the runtime will never free it
	}
	return err
}

// Commit installs a configuration (see mr_runtime_commit for the JSON).
// A config that fails validation changes nothing (ErrParse,
// ErrInvalidArgument).
func (r *Runtime) Commit(configJSON string, mode CommitMode) error {
	cfg, free := cString(configJSON, false)
	defer free()
	return r.call("commit", func(h *C.mr_runtime, e *C.mrgo_err) C.mr_status {
		return C.mrgo_runtime_commit(h, cfg, C.uint32_t(mode), e)
	})
}

func (r *Runtime) command(op string, what C.int, pattern string) (int, error) {
	pat, free := cString(pattern, false)
	defer free()
	var n C.size_t
	err := r.call(op, func(h *C.mr_runtime, e *C.mrgo_err) C.mr_status {
		return C.mrgo_runtime_command(h, what, pat, &n, e)
	})
	return int(n), err
}

// Enable enables the protocols matching pattern ('*', '?' globs) and
// returns how many matched (ErrNotFound for none).
func (r *Runtime) Enable(pattern string) (int, error) { return r.command("enable", 0, pattern) }

// Disable shuts the matching protocols down; they stay down until enabled.
func (r *Runtime) Disable(pattern string) (int, error) { return r.command("disable", 1, pattern) }

// Restart takes the matching enabled protocols down and up again.
func (r *Runtime) Restart(pattern string) (int, error) { return r.command("restart", 2, pattern) }

// ShowProtocols returns the JSON array of protocol instances.
func (r *Runtime) ShowProtocols() ([]byte, error) {
	return r.read("show protocols", func(h *C.mr_runtime, out *C.mr_bytes, e *C.mrgo_err) C.mr_status {
		return C.mrgo_runtime_show_protocols(h, out, e)
	})
}

// ShowRoute returns {"routes":[...]}; prefix ("" = all) keeps prefixes
// equal to or inside it, proto ("" = all; a glob) keeps matching owners.
func (r *Runtime) ShowRoute(prefix, proto string) ([]byte, error) {
	p, free1 := cString(prefix, true)
	defer free1()
	o, free2 := cString(proto, true)
	defer free2()
	return r.read("show route", func(h *C.mr_runtime, out *C.mr_bytes, e *C.mrgo_err) C.mr_status {
		return C.mrgo_runtime_show_route(h, p, o, out, e)
	})
}

// NotifyState reports proto's state (ErrState for an illegal transition,
// ErrNotFound for an unknown protocol); info "" keeps the current text.
func (r *Runtime) NotifyState(proto string, state ProtoState, info string) error {
	p, free1 := cString(proto, false)
	defer free1()
	i, free2 := cString(info, true)
	defer free2()
	return r.call("notify state", func(h *C.mr_runtime, e *C.mrgo_err) C.mr_status {
		return C.mrgo_proto_notify_state(h, p, C.uint32_t(state), i, e)
	})
}

// Import adds or replaces proto's route to prefix; preference 0 means the
// protocol's; attrs nil means {}.
func (r *Runtime) Import(proto, prefix string, preference uint32, attrs json.RawMessage) error {
	p, free1 := cString(proto, false)
	defer free1()
	x, free2 := cString(prefix, false)
	defer free2()
	a, free3 := cString(string(attrs), true)
	defer free3()
	return r.call("import", func(h *C.mr_runtime, e *C.mrgo_err) C.mr_status {
		return C.mrgo_proto_import(h, p, x, C.uint32_t(preference), a, e)
	})
}

// Withdraw removes proto's route to prefix (ErrNotFound if it has none).
func (r *Runtime) Withdraw(proto, prefix string) error {
	p, free1 := cString(proto, false)
	defer free1()
	x, free2 := cString(prefix, false)
	defer free2()
	return r.call("withdraw", func(h *C.mr_runtime, e *C.mrgo_err) C.mr_status {
		return C.mrgo_proto_withdraw(h, p, x, e)
	})
}

func timeoutMs(d time.Duration) C.int32_t {
	switch {
	case d < 0:
		return -1
	case d == 0:
		return 0
	case d > time.Duration(1<<31-1)*time.Millisecond:
		return 1<<31 - 1
	default:
		return C.int32_t((d + time.Millisecond - 1) / time.Millisecond)
	}
}

// NextEvent returns the next state event ({"Protocol":{...}}); timeout < 0
// waits forever, 0 never (ErrWouldBlock), > 0 at most that long (ErrTimeout).
func (r *Runtime) NextEvent(timeout time.Duration) ([]byte, error) {
	return r.read("next event", func(h *C.mr_runtime, out *C.mr_bytes, e *C.mrgo_err) C.mr_status {
		return C.mrgo_runtime_next_event(h, timeoutMs(timeout), out, e)
	})
}

// WaitIdle waits until no callback, feed or flush is pending.
func (r *Runtime) WaitIdle(timeout time.Duration) error {
	return r.call("wait idle", func(h *C.mr_runtime, e *C.mrgo_err) C.mr_status {
		return C.mrgo_runtime_wait_idle(h, timeoutMs(timeout), e)
	})
}

// AttachBus feeds netmap protocols from b and publishes state events on it.
func (r *Runtime) AttachBus(b *Bus) error {
	bh, err := b.acquire("attach bus")
	if err != nil {
		return err
	}
	defer b.mu.RUnlock()
	defer runtime.KeepAlive(b)
	return r.call("attach bus", func(h *C.mr_runtime, e *C.mrgo_err) C.mr_status {
		return C.mrgo_runtime_attach_bus(h, bh, e)
	})
}

// Close stops the runtime: no kind method runs after it returns, and
// later calls fail with ErrClosed. Closing again returns an ErrClosed error.
func (r *Runtime) Close() error {
	if !r.closed.CompareAndSwap(false, true) {
		return errRuntimeClosed("close")
	}
	r.mu.RLock()
	if r.h != nil {
		C.mr_runtime_close(r.h)
	}
	r.mu.RUnlock()
	r.mu.Lock()
	r.free()
	r.mu.Unlock()
	runtime.SetFinalizer(r, nil)
	return nil
}

func (r *Runtime) finalize() {
	r.closed.Store(true)
	r.mu.Lock()
	r.free()
	r.mu.Unlock()
}

func (r *Runtime) free() {
	if r.h != nil {
		C.mr_runtime_free(r.h)
		r.h = nil
	}
}
