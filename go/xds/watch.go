package xds

/*
#include "shim.h"
*/
import "C"

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"

	meshring "github.com/meshring/meshring/go"
)

// CreateWatch opens a SOTW watch for req with the stream's subscription
// state. The answer (at once if the client is behind, else when a snapshot
// changes the type) is sent on out as a *Response whose ReturnedResources
// is the state to feed back into the next watch. cancel closes the watch;
// after it returns nothing more is sent on out for it. In ADS mode a watch
// that names only some of its type's resources is never answered (as
// go-control-plane drops it).
func (c *Cache) CreateWatch(req *cache.Request, sub cache.Subscription, out chan cache.Response) (func(), error) {
	nodeID := c.hash.ID(req.GetNode())
	c.noteNode(nodeID, req.GetNode())
	c.noteType(nodeID, req.GetTypeUrl())
	spec := &watchSpec{node: nodeID, typeURL: req.GetTypeUrl(), version: req.GetVersionInfo()}
	names, star := sortedNames(sub.SubscribedResources())
	spec.names = names
	if star || sub.IsWildcard() {
		spec.flags |= C.MR_WATCH_WILDCARD
	} else {
		// A stream that left wildcard and names nothing subscribes to nothing.
		spec.flags |= C.MR_WATCH_EXPLICIT
	}
	spec.setKnown(sub.ReturnedResources())
	return startWatch(c, spec, false, out, func(ctx context.Context, w *wireResponse, snap cache.ResourceSnapshot, _ *heldWatch) cache.Response {
		return newResponse(ctx, req, w, snap)
	})
}

// CreateDeltaWatch opens a delta watch for req: sub's subscribed names (or
// wildcard) and returned resource versions. The answer is sent on out as a
// *DeltaResponse whose NextVersionMap is the stream's next state. A first
// wildcard request (no response nonce yet) is answered even when empty.
// cancel closes the watch.
func (c *Cache) CreateDeltaWatch(req *cache.DeltaRequest, sub cache.Subscription, out chan cache.DeltaResponse) (func(), error) {
	nodeID := c.hash.ID(req.GetNode())
	c.noteNode(nodeID, req.GetNode())
	c.noteType(nodeID, req.GetTypeUrl())
	spec := &watchSpec{node: nodeID, typeURL: req.GetTypeUrl()}
	names, star := sortedNames(sub.SubscribedResources())
	spec.names = names
	if star || sub.IsWildcard() {
		spec.flags |= C.MR_WATCH_WILDCARD
	}
	if req.GetResponseNonce() == "" {
		spec.flags |= C.MR_WATCH_FIRST
	}
	known := sub.ReturnedResources()
	// A stream handing back the version map of our last answer, with no
	// subscription change in this request (go-control-plane's server edits
	// the map only for those), continues in the library: nothing is sent.
	if req.GetResponseNonce() != "" && len(req.GetResourceNamesSubscribe()) == 0 && len(req.GetResourceNamesUnsubscribe()) == 0 {
		if cont := c.conts.take(known, spec); cont != nil {
			spec.after, spec.base = cont.hw, known
		}
	}
	if spec.after == nil {
		spec.setKnown(known)
	}
	return startWatch(c, spec, true, out, func(ctx context.Context, w *wireResponse, snap cache.ResourceSnapshot, hw *heldWatch) cache.DeltaResponse {
		return newDeltaResponse(ctx, req, w, snap, c, spec, hw)
	})
}

// watch is one open watch: parked in the library (h) until its answer
// comes back, from the SetSnapshot that produced it or through the cache's
// dispatcher, then handed to out.
type watch[R any] struct {
	c     *Cache
	spec  *watchSpec
	delta bool
	out   chan R
	// build makes the response; hw is a delta watch's held handle (the
	// response keeps it for the stream's next watch), else nil.
	build func(context.Context, *wireResponse, cache.ResourceSnapshot, *heldWatch) R

	// mu guards everything below; deliverers and cancel take it.
	mu    sync.Mutex
	state watchState
	token uint64
	h     *C.mr_cache_watch_h // while parked
	// While a send waits on a full channel: stop (closed by cancel) ends
	// it, exited is closed once it has ended.
	stop, exited chan struct{}
}

type watchState uint8

const (
	parked     watchState = iota // in the library, registered with the dispatcher
	delivering                   // a send waits for room on out
	stalled                      // its SetSnapshot's context ended first: the next SetSnapshot answers it
	finished                     // answered, or ended unanswered
	cancelled                    // cancel ran
)

// continued counts delta watches opened as continuations (for tests).
var continued atomic.Int64

// openAt opens a queued library watch for spec under token and takes an
// answer already there (then answer holds it, and h is set only for a
// delta watch, whose handle is kept for the stream's next watch; neither:
// the watch was dropped under the ADS rule). A continuation whose held
// answer is gone is opened with the stream's map instead.
func (c *Cache) openAt(spec *watchSpec, delta bool, token uint64) (h *C.mr_cache_watch_h, answer *wireResponse, err error) {
	var d C.int
	if delta {
		d = 1
	}
	if spec.after != nil {
		spec.after.mu.Lock()
		after := spec.after.h
		if after != nil {
			h, answer, err = c.openWith(spec, d, after, token)
		}
		spec.after.mu.Unlock()
		if after != nil && (err == nil || isClosed(err)) {
			if err == nil {
				continued.Add(1)
			}
			return h, answer, err
		}
		// Held answer gone or refused: send the stream's map after all.
		spec.after.free()
		spec.after = nil
		spec.setKnown(spec.base)
		spec.base = nil
	}
	return c.openWith(spec, d, nil, token)
}

func (c *Cache) openWith(spec *watchSpec, delta C.int, after *C.mr_cache_watch_h, token uint64) (h *C.mr_cache_watch_h, answer *wireResponse, err error) {
	packed := spec.pack()
	var ans C.mr_bytes
	var cerr C.mrxds_err
	c.mu.RLock()
	if c.h == nil {
		c.mu.RUnlock()
		return nil, nil, errCacheClosed("watch")
	}
	st := C.mrxds_open(c.h, bytesPtr(packed), C.size_t(len(packed)), delta, after, C.uint64_t(token), &h, &ans, &cerr)
	if st == C.MR_OK && h != nil && ans.ptr == nil {
		c.dispatch.start(c) // under c.mu: Close cannot free the cache before it runs
	}
	c.mu.RUnlock()
	if st != C.MR_OK {
		return nil, nil, errFromC(st, "watch", &cerr)
	}
	if ans.ptr == nil {
		return h, nil, nil // parked (h), or dropped under the ADS rule (neither)
	}
	wr, err := c.wires.decode(&ans)
	C.mr_bytes_free(&ans) // unless the table kept it
	if err != nil && h != nil {
		C.mr_cache_watch_free(h)
		h = nil
	}
	return h, wr, err
}

func startWatch[R any](c *Cache, spec *watchSpec, delta bool, out chan R, build func(context.Context, *wireResponse, cache.ResourceSnapshot, *heldWatch) R) (func(), error) {
	w := &watch[R]{c: c, spec: spec, delta: delta, out: out, build: build}
	if spec.after != nil {
		// The previous answer stays held while this watch may reopen.
		runtime.AddCleanup(w, (*heldWatch).free, spec.after)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	answer, h, err := w.openLocked()
	if err != nil {
		return nil, err
	}
	if answer != nil {
		// Answered at once, as go-control-plane does (with
		// context.Background): on out when CreateWatch returns if out has
		// room, else handed over as soon as it has.
		w.handLocked(context.Background(), answer, w.hold(h))
	}
	return w.cancel, nil
}

// hold wraps an answered watch's handle for its response: a delta answer
// keeps it for the stream's next watch; a SOTW one has none.
func (w *watch[R]) hold(h *C.mr_cache_watch_h) *heldWatch {
	if h == nil {
		return nil
	}
	if !w.delta {
		C.mr_cache_watch_free(h)
		return nil
	}
	return &heldWatch{h: h}
}

// openLocked opens the library watch (registered first, so an answer
// reported right after the open finds it). An answer already there is
// returned (with a delta watch's handle), the watch then finished.
func (w *watch[R]) openLocked() (*wireResponse, *C.mr_cache_watch_h, error) {
	w.token = w.c.dispatch.register(w)
	h, answer, err := w.c.openAt(w.spec, w.delta, w.token)
	if err != nil || h == nil || answer != nil {
		w.c.dispatch.unregister(w.token)
	}
	switch {
	case err != nil:
		w.state = finished
		return nil, nil, err
	case answer != nil:
		w.state = finished
		return answer, h, nil
	case h != nil:
		w.h, w.state = h, parked
		return nil, nil, nil
	default:
		w.state = finished // dropped under the ADS rule
		return nil, nil, nil
	}
}

// handLocked builds the response and puts it on out, or, when out is
// full, leaves that to a goroutine that stops on cancel.
func (w *watch[R]) handLocked(ctx context.Context, wr *wireResponse, hw *heldWatch) {
	w.state = finished
	r := w.build(ctx, wr, w.c.snapshotOf(w.spec.node), hw)
	select {
	case w.out <- r:
	default:
		w.stop, w.exited = make(chan struct{}), make(chan struct{})
		go func(stop, exited chan struct{}) {
			defer close(exited)
			select {
			case w.out <- r:
			case <-stop:
			}
		}(w.stop, w.exited)
	}
}

// answer is called by the dispatcher with the watch's response (nil: it
// ended unanswered, its node cleared, the cache closed, or dropped under
// the ADS rule). It returns the library handle to release, if any.
func (w *watch[R]) answer(wr *wireResponse) *C.mr_cache_watch_h {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.state != parked {
		return nil // cancelled: cancel released the handle
	}
	h := w.h
	w.h = nil
	w.state = finished
	if wr == nil {
		return h
	}
	ctx := context.Background()
	if wr.heartbeat {
		if w.c.hbStopped.Load() {
			// Heartbeats were stopped (their context is done) but the
			// library still sends them: drop this one and wait again, with
			// a new watch opened off the dispatcher (opening may wait for
			// Close, which waits for the dispatcher).
			go w.reopen()
			return h
		}
		ctx = w.c.hbCtx
	}
	if w.delta {
		w.handLocked(ctx, wr, &heldWatch{h: h}) // kept for the stream's next watch
		return nil
	}
	w.handLocked(ctx, wr, nil)
	return h
}

// reopen opens the watch again after a dropped heartbeat.
func (w *watch[R]) reopen() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.state != finished {
		return // cancelled meanwhile
	}
	answer, h, err := w.openLocked()
	if err != nil && !isClosed(err) {
		w.c.log.Errorf("meshring/xds: watch %s for %q: %v", w.spec.typeURL, w.spec.node, err)
	}
	if answer != nil {
		w.handLocked(context.Background(), answer, w.hold(h))
	}
}

// takeForSet claims a parked watch whose answer a SetSnapshot got back
// from its own library call; false if it was cancelled meanwhile. The
// returned handle is released by the caller.
func (w *watch[R]) takeForSet() (*C.mr_cache_watch_h, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.state != parked {
		return nil, false
	}
	h := w.h
	w.h = nil
	w.state = finished
	return h, true
}

// deliver sends the answer of SetSnapshot(ctx) as go-control-plane does:
// blocking until out takes it, the watch is cancelled, or ctx ends. In
// the last case the watch is stalled (kept open for the node's next
// SetSnapshot) and false is returned.
func (w *watch[R]) deliver(ctx context.Context, wr *wireResponse, snap cache.ResourceSnapshot, h *C.mr_cache_watch_h) bool {
	r := w.build(ctx, wr, snap, w.hold(h))
	w.mu.Lock()
	if w.state == cancelled {
		w.mu.Unlock()
		return true
	}
	select {
	case w.out <- r: // under w.mu: a cancel that returned first is honoured
		w.mu.Unlock()
		return true
	default:
	}
	w.state = delivering
	stop, exited := make(chan struct{}), make(chan struct{})
	w.stop, w.exited = stop, exited
	w.mu.Unlock()
	// Without w.mu: cancel must be able to stop this send (the stock
	// servers cancel a watch and then drain its channel).
	defer close(exited)
	select {
	case w.out <- r:
		w.mu.Lock()
		if w.state == delivering {
			w.state = finished
		}
		w.mu.Unlock()
		return true
	case <-stop:
		return true
	case <-ctx.Done():
		return !w.stall()
	}
}

// stall marks the watch stalled (see deliver); false if cancel came first.
func (w *watch[R]) stall() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.state == cancelled {
		return false
	}
	w.state = stalled
	w.c.addStalled(w.spec.node, w)
	return true
}

// resume re-opens a stalled watch against the node's new snapshot: its
// answer (if the snapshot answers it now) is returned for the caller to
// deliver; otherwise it parks again.
func (w *watch[R]) resume() (*wireResponse, *C.mr_cache_watch_h) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.state != stalled {
		return nil, nil
	}
	answer, h, err := w.openLocked()
	if err != nil {
		if !isClosed(err) {
			w.c.log.Errorf("meshring/xds: watch %s for %q: %v", w.spec.typeURL, w.spec.node, err)
		}
		return nil, nil
	}
	return answer, h
}

func (w *watch[R]) typeURL() string { return w.spec.typeURL }
func (w *watch[R]) isDelta() bool   { return w.delta }

// cancel closes the watch; once it returns nothing more is sent for it.
// It may be called more than once.
func (w *watch[R]) cancel() {
	w.mu.Lock()
	var h *C.mr_cache_watch_h
	switch w.state {
	case parked:
		w.c.dispatch.unregister(w.token)
		h, w.h = w.h, nil
	case stalled:
		w.c.removeStalled(w.spec.node, w)
	}
	if w.state != cancelled && w.stop != nil {
		close(w.stop)
	}
	w.state = cancelled
	exited := w.exited
	w.mu.Unlock()
	if h != nil {
		C.mr_cache_watch_free(h) // cancels it in the library
	}
	if exited != nil {
		<-exited
	}
	w.spec.after.free() // nothing reopens from it any more
}

func isClosed(err error) bool { return errors.Is(err, meshring.ErrClosed) }
