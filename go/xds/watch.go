package xds

/*
#include "shim.h"
*/
import "C"

import (
	"errors"
	"sync"

	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"

	meshring "github.com/meshring/meshring/go"
)

// CreateWatch opens a SOTW watch for req with the stream's subscription
// state. The answer (at once if the client is behind, else when a snapshot
// changes the type) is sent on out as a *cache.PassthroughResponse whose
// ReturnedResources is the state to feed back into the next watch. cancel
// closes the watch; after it returns nothing more is sent for it.
func (c *Cache) CreateWatch(req *cache.Request, sub cache.Subscription, out chan cache.Response) (func(), error) {
	nodeID := c.hash.ID(req.GetNode())
	c.noteNode(nodeID, req.GetNode())
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
	return startWatch(c, spec, false, out, func(w *wireResponse) (cache.Response, error) {
		return sotwResponse(req, w)
	})
}

// CreateDeltaWatch opens a delta watch for req: sub's subscribed names (or
// wildcard) and returned resource versions. The answer is sent on out as a
// *cache.DeltaPassthroughResponse whose NextVersionMap is the stream's next
// state. A first wildcard request (no response nonce yet) is answered even
// when empty. cancel closes the watch.
func (c *Cache) CreateDeltaWatch(req *cache.DeltaRequest, sub cache.Subscription, out chan cache.DeltaResponse) (func(), error) {
	nodeID := c.hash.ID(req.GetNode())
	c.noteNode(nodeID, req.GetNode())
	spec := &watchSpec{node: nodeID, typeURL: req.GetTypeUrl()}
	names, star := sortedNames(sub.SubscribedResources())
	spec.names = names
	if star || sub.IsWildcard() {
		spec.flags |= C.MR_WATCH_WILDCARD
	}
	if req.GetResponseNonce() == "" {
		spec.flags |= C.MR_WATCH_FIRST
	}
	spec.setKnown(sub.ReturnedResources())
	return startWatch(c, spec, true, out, func(w *wireResponse) (cache.DeltaResponse, error) {
		return deltaResponse(req, w), nil
	})
}

// watch is one open watch: parked in the library (h) until the cache's
// dispatcher reports its answer, then handed to out.
type watch[R any] struct {
	c     *Cache
	spec  *watchSpec
	delta bool
	out   chan R
	build func(*wireResponse) (R, error)

	// mu guards everything below; the dispatcher and cancel both take it.
	mu    sync.Mutex
	state watchState
	token uint64
	h     *C.mr_cache_watch_h // while parked
	// A sender goroutine exists only when out was full: stop ends it,
	// exited is closed when it is gone.
	stop, exited chan struct{}
}

type watchState uint8

const (
	parked    watchState = iota // in the library, registered with the dispatcher
	finished                    // answered or ended; a sender may still run
	cancelled                   // cancel ran
)

// open opens a queued library watch for spec under token and takes an
// answer already there (then h is nil and answer holds it).
func (c *Cache) open(spec *watchSpec, delta bool, token uint64) (h *C.mr_cache_watch_h, answer *wireResponse, err error) {
	packed := spec.pack()
	var d C.int
	if delta {
		d = 1
	}
	var ans C.mr_bytes
	var cerr C.mrxds_err
	c.mu.RLock()
	if c.h == nil {
		c.mu.RUnlock()
		return nil, nil, errCacheClosed("watch")
	}
	st := C.mrxds_open(c.h, bytesPtr(packed), C.size_t(len(packed)), d, C.uint64_t(token), &h, &ans, &cerr)
	if st == C.MR_OK && h != nil {
		c.dispatch.start(c) // under c.mu: Close cannot free the cache before it runs
	}
	c.mu.RUnlock()
	if st != C.MR_OK {
		return nil, nil, errFromC(st, "watch", &cerr)
	}
	if h != nil {
		return h, nil, nil
	}
	if ans.ptr == nil {
		return nil, nil, nil // dropped under the ADS rule: never answered
	}
	wr, err := decodeResponse(takeBytes(&ans))
	return nil, wr, err
}

func startWatch[R any](c *Cache, spec *watchSpec, delta bool, out chan R, build func(*wireResponse) (R, error)) (func(), error) {
	w := &watch[R]{c: c, spec: spec, delta: delta, out: out, build: build}
	w.mu.Lock()
	defer w.mu.Unlock()
	// Registered first, so an answer reported right after the open finds
	// the watch (the dispatcher then waits for w.mu).
	if err := w.openLocked(); err != nil {
		return nil, err
	}
	return w.cancel, nil
}

// openLocked opens the library watch; an answer already there is handed
// to out now (as go-control-plane does, so it is on the channel when
// CreateWatch returns if the channel has room).
func (w *watch[R]) openLocked() error {
	w.token = w.c.dispatch.register(w)
	h, answer, err := w.c.open(w.spec, w.delta, w.token)
	if err != nil || h == nil {
		w.c.dispatch.unregister(w.token)
	}
	if err != nil {
		w.state = finished
		return err
	}
	if h != nil {
		w.h, w.state = h, parked
		return nil
	}
	if answer == nil {
		// Dropped under the ADS rule, as go-control-plane does: no answer
		// will ever come, and the watch holds nothing.
		w.state = finished
		return nil
	}
	return w.handLocked(answer)
}

// handLocked builds the response and puts it on out, or leaves that to a
// sender goroutine when out is full.
func (w *watch[R]) handLocked(wr *wireResponse) error {
	w.state = finished
	r, err := w.build(wr)
	if err != nil {
		return err
	}
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
	return nil
}

// answer is called by the dispatcher with the watch's response (nil: it
// ended unanswered, its node cleared or the cache closed). It returns the
// library handle to release, if any.
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
	if wr.heartbeat && w.c.hbStopped.Load() {
		// Heartbeats were stopped (their context is done) but the library
		// still sends them: drop this one and wait again, with a new watch
		// opened off the dispatcher (opening may wait for Close, which
		// waits for the dispatcher).
		go w.reopen()
		return h
	}
	if err := w.handLocked(wr); err != nil {
		w.c.log.Errorf("meshring/xds: watch %s for %q: %v", w.spec.typeURL, w.spec.node, err)
	}
	return h
}

func (w *watch[R]) reopen() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.state != finished {
		return // cancelled meanwhile
	}
	if err := w.openLocked(); err != nil && !isClosed(err) {
		w.c.log.Errorf("meshring/xds: watch %s for %q: %v", w.spec.typeURL, w.spec.node, err)
	}
}

// cancel closes the watch; once it returns nothing more is sent for it.
// It may be called more than once.
func (w *watch[R]) cancel() {
	w.mu.Lock()
	var h *C.mr_cache_watch_h
	if w.state == parked {
		w.c.dispatch.unregister(w.token)
		h, w.h = w.h, nil
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
}

func isClosed(err error) bool { return errors.Is(err, meshring.ErrClosed) }
