package xds

/*
#include "shim.h"
*/
import "C"

import (
	"sync"

	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
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

// watch is one open library watch and the goroutine that answers it.
type watch[R any] struct {
	c     *Cache
	spec  *watchSpec
	delta bool
	out   chan R
	build func(*wireResponse) (R, error)

	// mu guards h (freed by the goroutine, closed by cancel) and its swap
	// in reopen.
	mu sync.Mutex
	h  *C.mr_cache_watch_h
	fd int32
	// armed: fd is registered with the cache's poller under id.
	armed bool
	id    uint64
	ready chan struct{}

	once   sync.Once
	done   chan struct{} // closed by cancel
	exited chan struct{} // closed when the goroutine is gone
}

// open opens a library watch for spec.
func (c *Cache) open(spec *watchSpec, delta bool) (*C.mr_cache_watch_h, int32, error) {
	creq := spec.build()
	defer creq.free()
	var d C.int
	if delta {
		d = 1
	}
	var h *C.mr_cache_watch_h
	var fd C.int
	var cerr C.mrxds_err
	c.mu.RLock()
	if c.h == nil {
		c.mu.RUnlock()
		return nil, -1, errCacheClosed("watch")
	}
	st := C.mrxds_watch(c.h, creq.req, d, &h, &fd, &cerr)
	c.mu.RUnlock()
	if st != C.MR_OK {
		return nil, -1, errFromC(st, "watch", &cerr)
	}
	return h, int32(fd), nil
}

func startWatch[R any](c *Cache, spec *watchSpec, delta bool, out chan R, build func(*wireResponse) (R, error)) (func(), error) {
	h, fd, err := c.open(spec, delta)
	if err != nil {
		return nil, err
	}
	w := &watch[R]{c: c, spec: spec, delta: delta, out: out, build: build, h: h, fd: fd,
		ready: make(chan struct{}, 1), done: make(chan struct{}), exited: make(chan struct{})}
	// Answered at once (the client is behind): send it now when the channel
	// has room, as go-control-plane does, so it is there when CreateWatch
	// returns; a full channel leaves the send to the goroutine.
	wr, st, err := w.take()
	var pending *R
	switch st {
	case C.MR_WOULD_BLOCK:
	case C.MR_OK:
		r, err := build(wr)
		if err != nil {
			C.mr_cache_watch_free(h)
			return nil, err
		}
		select {
		case out <- r:
			C.mr_cache_watch_free(h)
			return func() {}, nil
		default:
			pending = &r
		}
	default:
		C.mr_cache_watch_free(h)
		return nil, err
	}
	go w.run(pending)
	return w.cancel, nil
}

// take makes one non-blocking mr_cache_watch_next call; only the watch's
// goroutine (or startWatch before it) calls it.
func (w *watch[R]) take() (*wireResponse, C.mr_status, error) {
	var out C.mr_bytes
	var cerr C.mrxds_err
	st := C.mrxds_watch_take(w.h, &out, &cerr)
	switch st {
	case C.MR_OK:
		wr, err := decodeResponse(takeBytes(&out))
		if err != nil {
			return nil, C.MR_PARSE, err
		}
		return wr, st, nil
	case C.MR_WOULD_BLOCK, C.MR_TIMEOUT:
		return nil, C.MR_WOULD_BLOCK, nil
	default:
		return nil, st, errFromC(st, "watch", &cerr)
	}
}

// cancel closes the watch and waits for its goroutine to end, so that
// nothing is sent for it afterwards. It may be called more than once.
func (w *watch[R]) cancel() {
	w.once.Do(func() {
		close(w.done)
		w.mu.Lock()
		if w.h != nil {
			C.mr_cache_watch_close(w.h) // makes the fd readable: the goroutine wakes
		}
		w.mu.Unlock()
	})
	<-w.exited
}

func (w *watch[R]) cancelled() bool {
	select {
	case <-w.done:
		return true
	default:
		return false
	}
}

func (w *watch[R]) run(pending *R) {
	defer w.cleanup()
	for pending == nil {
		wr, st, err := w.wait()
		if err != nil || st != C.MR_OK {
			// Closed: cancelled, node cleared, cache closed.
			if st != C.MR_CLOSED && !w.cancelled() {
				w.c.log.Errorf("meshring/xds: watch %s for %q: %v", w.spec.typeURL, w.spec.node, err)
			}
			return
		}
		if wr.heartbeat && w.c.hbStopped.Load() {
			// Heartbeats were stopped (their context is done) but the
			// library still sends them: drop this one and wait again.
			if !w.reopen() {
				return
			}
			continue
		}
		r, err := w.build(wr)
		if err != nil {
			w.c.log.Errorf("meshring/xds: watch %s for %q: %v", w.spec.typeURL, w.spec.node, err)
			return
		}
		pending = &r
	}
	select {
	case w.out <- *pending:
	case <-w.done:
	}
}

// wait blocks until the watch has an answer or is closed: the cache's
// poller reports the library's readiness eventfd.
func (w *watch[R]) wait() (*wireResponse, C.mr_status, error) {
	for {
		wr, st, err := w.take()
		if st != C.MR_WOULD_BLOCK {
			return wr, st, err
		}
		w.disarm()
		id, err := w.c.poller.arm(w.fd, w.ready)
		if err != nil {
			return nil, C.MR_IO, err
		}
		w.armed, w.id = true, id
		<-w.ready
	}
}

func (w *watch[R]) disarm() {
	if w.armed {
		w.c.poller.disarm(w.fd, w.id)
		w.armed = false
	}
}

// reopen replaces the library watch with a new one for the same request;
// false if the watch was cancelled meanwhile or the cache is closed.
func (w *watch[R]) reopen() bool {
	h, fd, err := w.c.open(w.spec, w.delta)
	if err != nil {
		return false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.cancelled() {
		C.mr_cache_watch_free(h)
		return false
	}
	w.disarm()
	C.mr_cache_watch_free(w.h)
	w.h, w.fd = h, fd
	return true
}

func (w *watch[R]) cleanup() {
	w.mu.Lock()
	w.disarm()
	if w.h != nil {
		C.mr_cache_watch_free(w.h)
		w.h = nil
	}
	w.mu.Unlock()
	close(w.exited)
}
