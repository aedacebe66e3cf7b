package meshring

/*
#include "shim.h"
*/
import "C"

import (
	"encoding/json"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

// Bus is a notify bus: a network-map store fed with tailcfg.MapResponse
// JSON (Apply) and host events (Publish), watched by any number of
// Watchers that receive ipn.Notify-shaped JSON messages.
//
// A Bus is safe for concurrent use. Close releases it (and closes its
// watchers); a Bus that becomes unreachable without Close is released by a
// finalizer. A Watcher keeps its Bus reachable.
type Bus struct {
	// mu is read-held by every call for as long as it uses h, and
	// write-held by Close (and the finalizer) to free h.
	mu     sync.RWMutex
	h      *C.mr_bus // nil once freed
	closed atomic.Bool
}

// BusOptions tunes a Bus; the zero value (or a nil *BusOptions) means the
// library defaults for every field. It mirrors the JSON options of
// mr_bus_new.
type BusOptions struct {
	// RateLimit is how often, at most, watchers with NotifyRateLimit get
	// netmap-type updates (coalesced). 0 means the default, 3s. It is sent
	// in whole milliseconds, rounded up.
	RateLimit time.Duration
	// InitialChunk is the most peers one message of an initial view (or
	// of a coalesced backlog) carries. 0 means the default, 1000.
	InitialChunk int
	// Backlog is the change-log budget (entries plus peer deltas) kept for
	// watchers that lag; beyond it a lagging watcher's backlog is folded
	// into its own coalesced state. 0 means the default, 10000.
	Backlog int
}

// optionsJSON encodes the non-zero options as mr_bus_new's opts_json, or
// returns "" for all defaults.
func (o *BusOptions) optionsJSON() (string, error) {
	if o == nil {
		return "", nil
	}
	m := map[string]int64{}
	switch {
	case o.RateLimit < 0:
		return "", newError(StatusInvalidArgument, "new bus", fmt.Sprintf("BusOptions.RateLimit %v is negative", o.RateLimit))
	case o.RateLimit > 0:
		m["rate_limit_ms"] = int64((o.RateLimit + time.Millisecond - 1) / time.Millisecond)
	}
	for _, f := range []struct {
		name, key string
		v         int
	}{
		{"InitialChunk", "initial_chunk", o.InitialChunk},
		{"Backlog", "backlog", o.Backlog},
	} {
		if f.v < 0 {
			return "", newError(StatusInvalidArgument, "new bus", fmt.Sprintf("BusOptions.%s %d is negative", f.name, f.v))
		}
		if f.v > 0 {
			m[f.key] = int64(f.v)
		}
	}
	if len(m) == 0 {
		return "", nil
	}
	b, err := json.Marshal(m)
	if err != nil {
		return "", newError(StatusInvalidArgument, "new bus", err.Error())
	}
	return string(b), nil
}

// NewBus creates a notify bus. opts may be nil for the defaults.
func NewBus(opts *BusOptions) (*Bus, error) {
	text, err := opts.optionsJSON()
	if err != nil {
		return nil, err
	}
	var copts *C.char
	if text != "" {
		copts = C.CString(text)
		defer C.free(unsafe.Pointer(copts))
	}
	var h *C.mr_bus
	var cerr C.mrgo_err
	if st := Status(C.mrgo_bus_new(copts, &h, &cerr)); st != StatusOK {
		return nil, errFromC(st, "new bus", &cerr)
	}
	b := &Bus{h: h}
	runtime.SetFinalizer(b, (*Bus).finalize)
	return b, nil
}

func errBusClosed(op string) error { return newError(StatusClosed, op, "bus is closed") }

// acquire returns the handle with b.mu read-held, or an ErrClosed error.
// The caller must call b.mu.RUnlock when done with the handle.
func (b *Bus) acquire(op string) (*C.mr_bus, error) {
	if b.closed.Load() {
		return nil, errBusClosed(op)
	}
	b.mu.RLock()
	if b.h == nil {
		b.mu.RUnlock()
		return nil, errBusClosed(op)
	}
	return b.h, nil
}

// cBytes returns a pointer to p's first byte for C, which borrows it for
// one call (p holds no Go pointers, so it may be passed directly).
func cBytes(p []byte) *C.uint8_t {
	if len(p) == 0 {
		return nil
	}
	return (*C.uint8_t)(unsafe.Pointer(&p[0]))
}

// Apply applies a tailcfg.MapResponse-shaped update (Node, Peers,
// PeersChanged, PeersRemoved, PeersChangedPatch, OnlineChange,
// PeerSeenChange, UserProfiles, DNSConfig, PacketFilter, DERPMap, Domain;
// unknown fields are ignored). Malformed input fails with an error matching
// ErrParse and leaves the store unchanged. The bus does not keep
// mapResponseJSON.
func (b *Bus) Apply(mapResponseJSON []byte) error {
	return b.send("apply", mapResponseJSON, func(h *C.mr_bus, p *C.uint8_t, n C.size_t, e *C.mrgo_err) C.mr_status {
		return C.mrgo_bus_apply(h, p, n, e)
	})
}

// Publish forwards a host event with ipn.Notify field names (State, Prefs,
// ErrMessage, LoginFinished, BrowseToURL, Health, Engine, ...) to the
// watchers and remembers the stateful fields for their initial messages.
// Fields the bus produces itself (PeersChanged, NetMap, UserProfiles, ...)
// fail with an error matching ErrInvalidArgument; malformed JSON with
// ErrParse. The bus does not keep eventJSON.
func (b *Bus) Publish(eventJSON []byte) error {
	return b.send("publish", eventJSON, func(h *C.mr_bus, p *C.uint8_t, n C.size_t, e *C.mrgo_err) C.mr_status {
		return C.mrgo_bus_publish(h, p, n, e)
	})
}

func (b *Bus) send(op string, data []byte, f func(*C.mr_bus, *C.uint8_t, C.size_t, *C.mrgo_err) C.mr_status) error {
	h, err := b.acquire(op)
	if err != nil {
		return err
	}
	defer b.mu.RUnlock()
	defer runtime.KeepAlive(b)
	var cerr C.mrgo_err
	if st := Status(f(h, cBytes(data), C.size_t(len(data)), &cerr)); st != StatusOK {
		return errFromC(st, op, &cerr)
	}
	return nil
}

// Peer returns the stored tailcfg.Node JSON of the peer with NodeID id, or
// an error matching ErrNotFound.
func (b *Bus) Peer(id int64) ([]byte, error) {
	return b.read("peer", func(h *C.mr_bus, out *C.mr_bytes, e *C.mrgo_err) C.mr_status {
		return C.mrgo_bus_peer(h, C.int64_t(id), out, e)
	})
}

// NetMap returns the whole network map as JSON: SelfNode, Peers (sorted by
// NodeID), UserProfiles (keyed by UserID), and DNS, PacketFilterRules,
// DERPMap and Domain when known. It costs O(peers).
func (b *Bus) NetMap() ([]byte, error) {
	return b.read("netmap", func(h *C.mr_bus, out *C.mr_bytes, e *C.mrgo_err) C.mr_status {
		return C.mrgo_bus_netmap(h, out, e)
	})
}

// Status returns the node's status as tailscaled's /localapi/v0/status
// gives it: ipnstate.Status JSON (Self, every peer in Peer keyed by node
// key, User profiles, BackendState, Health, CurrentTailnet, ...). O(peers).
func (b *Bus) Status() ([]byte, error) {
	return b.read("status", func(h *C.mr_bus, out *C.mr_bytes, e *C.mrgo_err) C.mr_status {
		return C.mrgo_bus_status(h, 0, out, e)
	})
}

// StatusWithoutPeers is Status without Peer, and with only the self user's
// profile (tailscaled's /localapi/v0/status?peers=false).
func (b *Bus) StatusWithoutPeers() ([]byte, error) {
	return b.read("status", func(h *C.mr_bus, out *C.mr_bytes, e *C.mrgo_err) C.mr_status {
		return C.mrgo_bus_status(h, C.MR_BUS_STATUS_NO_PEERS, out, e)
	})
}

// Stats returns the bus's own counters as JSON: BackendState, Self,
// PeerCount, UserProfileCount, Health, Watchers, NetMapVersion. Cheap.
func (b *Bus) Stats() ([]byte, error) {
	return b.read("stats", func(h *C.mr_bus, out *C.mr_bytes, e *C.mrgo_err) C.mr_status {
		return C.mrgo_bus_stats(h, out, e)
	})
}

func (b *Bus) read(op string, f func(*C.mr_bus, *C.mr_bytes, *C.mrgo_err) C.mr_status) ([]byte, error) {
	h, err := b.acquire(op)
	if err != nil {
		return nil, err
	}
	defer b.mu.RUnlock()
	defer runtime.KeepAlive(b)
	var out C.mr_bytes
	var cerr C.mrgo_err
	if st := Status(f(h, &out, &cerr)); st != StatusOK {
		return nil, errFromC(st, op, &cerr)
	}
	return takeBytes(&out), nil
}

// takeBytes copies library-owned bytes into Go memory and releases them.
func takeBytes(b *C.mr_bytes) []byte {
	out := make([]byte, int(b.len))
	if b.len > 0 {
		copy(out, unsafe.Slice((*byte)(unsafe.Pointer(b.ptr)), int(b.len)))
	}
	C.mr_bytes_free(b)
	return out
}

// Watch starts a watch session with the given NotifyWatchOpt bits; see
// Watcher for what it receives. Every mask tailscaled accepts is accepted;
// NotifyRateLimit with NotifyRateLimitIncompatibleBits fails, with
// tailscaled's message, with an error matching ErrInvalidArgument.
func (b *Bus) Watch(mask NotifyWatchOpt) (*Watcher, error) {
	h, err := b.acquire("watch")
	if err != nil {
		return nil, err
	}
	defer b.mu.RUnlock()
	defer runtime.KeepAlive(b)
	var wh *C.mr_watcher
	var fd C.int
	var cerr C.mrgo_err
	if st := Status(C.mrgo_bus_watch(h, C.uint64_t(mask), &wh, &fd, &cerr)); st != StatusOK {
		return nil, errFromC(st, "watch", &cerr)
	}
	return newWatcher(b, wh, int32(fd), mask), nil
}

// Close closes the bus and all its watchers: their blocked Next calls
// return promptly with an error matching ErrClosed and their C channels
// are closed. Later calls on the bus fail with ErrClosed. Close waits for
// calls in flight on other goroutines to leave the library, then frees the
// bus; watchers still need their own Close. Closing again returns an
// ErrClosed error.
func (b *Bus) Close() error {
	if !b.closed.CompareAndSwap(false, true) {
		return errBusClosed("close")
	}
	st := StatusOK
	b.mu.RLock()
	if b.h != nil {
		st = Status(C.mr_bus_close(b.h))
	}
	b.mu.RUnlock()
	b.mu.Lock()
	b.free()
	b.mu.Unlock()
	runtime.SetFinalizer(b, nil)
	runtime.KeepAlive(b)
	if st != StatusOK {
		return newError(st, "close", "")
	}
	return nil
}

func (b *Bus) finalize() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.free()
}

// free releases the handle. b.mu must be write-held (or b unreachable).
func (b *Bus) free() {
	if b.h != nil {
		C.mr_bus_free(b.h)
		b.h = nil
	}
}
