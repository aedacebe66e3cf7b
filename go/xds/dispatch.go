package xds

/*
#include <stdlib.h>
#include "shim.h"
*/
import "C"

import (
	"context"
	"sync"
	"unsafe"

	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
)

// readyBatch is how many answers one mr_cache_take_ready call may return.
const readyBatch = 256

// answerer is an open watch as the dispatcher sees it (watch[R] for the
// SOTW and delta response types).
type answerer interface {
	answer(*wireResponse) *C.mr_cache_watch_h
	// The SetSnapshot path (see Cache.deliverSet).
	takeForSet() (*C.mr_cache_watch_h, bool)
	deliver(context.Context, *wireResponse, cache.ResourceSnapshot, *C.mr_cache_watch_h) bool
	stall() bool
	resume() (*wireResponse, *C.mr_cache_watch_h)
	typeURL() string
	isDelta() bool
}

// dispatcher is the one goroutine per cache that takes answers from the
// library's ready queue (all watches are opened with MR_WATCH_QUEUED) and
// hands each to its watch: a burst of answers from one SetSnapshot costs
// one wake-up and a few cgo calls per 256 answers, and a parked watch
// costs no goroutine, no fd and no OS thread.
type dispatcher struct {
	once sync.Once
	done chan struct{} // closed when the loop has exited

	mu      sync.Mutex
	watches map[uint64]answerer
	next    uint64
}

func (d *dispatcher) register(w answerer) uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.watches == nil {
		d.watches = make(map[uint64]answerer)
	}
	d.next++
	d.watches[d.next] = w
	return d.next
}

func (d *dispatcher) unregister(token uint64) {
	d.mu.Lock()
	delete(d.watches, token)
	d.mu.Unlock()
}

func (d *dispatcher) take(token uint64) answerer {
	d.mu.Lock()
	defer d.mu.Unlock()
	w := d.watches[token]
	delete(d.watches, token)
	return w
}

// start runs the loop once; the caller holds c.mu (read) with c.h open.
func (d *dispatcher) start(c *Cache) {
	d.once.Do(func() {
		d.done = make(chan struct{})
		go d.loop(c.h, c)
	})
}

// wait returns once the loop has exited (at once if it never started);
// the caller has closed the cache, which ends the loop.
func (d *dispatcher) wait() {
	d.once.Do(func() {}) // no start after this
	if d.done != nil {
		<-d.done
	}
}

func (d *dispatcher) loop(h *C.mr_cache, c *Cache) {
	defer close(d.done)
	evs := (*[readyBatch]C.mr_cache_ready)(C.calloc(readyBatch, C.size_t(unsafe.Sizeof(C.mr_cache_ready{}))))
	defer C.free(unsafe.Pointer(evs))
	release := make([]*C.mr_cache_watch_h, 0, readyBatch)
	for {
		var n C.size_t
		var cerr C.mrxds_err
		// Blocks this goroutine's thread until answers are queued; Close
		// (mr_cache_close) ends it with MR_CLOSED once all are taken.
		st := C.mrxds_take_ready(h, -1, &evs[0], readyBatch, &n, &cerr)
		if st != C.MR_OK {
			if st != C.MR_CLOSED {
				c.log.Errorf("meshring/xds: taking answers: %v", errFromC(st, "take ready", &cerr))
			}
			return
		}
		release = d.hand(evs[:n], release[:0], c)
	}
}

// hand gives each event to its watch, then releases the events' responses
// and the handles of the watches that finished (one cgo call); release is
// scratch space, returned for reuse.
func (d *dispatcher) hand(evs []C.mr_cache_ready, release []*C.mr_cache_watch_h, c *Cache) []*C.mr_cache_watch_h {
	if len(evs) == 0 {
		return release
	}
	for i := range evs {
		ev := &evs[i]
		w := d.take(uint64(ev.token))
		if w == nil {
			continue // cancelled meanwhile
		}
		var wr *wireResponse
		if ev.status == C.MR_OK {
			var err error
			if wr, err = c.wires.decode(&ev.response); err != nil {
				c.log.Errorf("meshring/xds: %v", err)
			}
		}
		if h := w.answer(wr); h != nil {
			release = append(release, h)
		}
	}
	var hs **C.mr_cache_watch_h
	if len(release) > 0 {
		hs = &release[0]
	}
	C.mrxds_release(&evs[0], C.size_t(len(evs)), hs, C.size_t(len(release)))
	return release
}
