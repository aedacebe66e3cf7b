package xds

/*
#include "shim.h"
*/
import "C"

import (
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"unsafe"
)

// heldWatch is an answered delta watch's library handle, kept because the
// library holds the stream's version map in its answer: the stream's next
// watch continues from it (mr_cache_delta_watch_after) instead of sending
// the whole map back. Freed once the continuation was opened, when the
// registry drops it, or when nothing refers to it any more.
type heldWatch struct {
	mu    sync.Mutex
	h     *C.mr_cache_watch_h
	owned atomic.Bool // the continuation registry frees it
}

func (hw *heldWatch) free() {
	if hw == nil {
		return
	}
	hw.mu.Lock()
	defer hw.mu.Unlock()
	if hw.h != nil {
		C.mr_cache_watch_free(hw.h)
		hw.h = nil
	}
}

// releaseUnowned is the cleanup of a response that held hw: frees it
// unless the registry took it over.
func (hw *heldWatch) releaseUnowned() {
	if !hw.owned.Load() {
		hw.free()
	}
}

// continuation is what a delta stream's next watch needs to continue in
// the library: the held answer, what it answered, and the version map it
// handed the stream (kept, so its address names it alone).
type continuation struct {
	hw       *heldWatch
	node     string
	typeURL  string
	wildcard bool
	names    []string
	m        map[string]string
	n        int
}

// contCap bounds the registry: an entry of a stream that went away is
// dropped (its handle freed) after this many newer ones.
const contCap = 1024

// continuations finds a stream's held answer from the version map the
// server hands back (go-control-plane's delta server stores the map of our
// response in the stream's subscription and passes it to the next
// CreateDeltaWatch).
type continuations struct {
	mu    sync.Mutex
	m     map[unsafe.Pointer]*continuation
	order []unsafe.Pointer
	next  int
}

func mapKey(m map[string]string) unsafe.Pointer {
	if m == nil {
		return nil
	}
	return reflect.ValueOf(m).UnsafePointer()
}

func (cs *continuations) add(c *continuation) {
	k := mapKey(c.m)
	if k == nil {
		c.hw.free()
		return
	}
	c.hw.owned.Store(true)
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.m == nil {
		cs.m = make(map[unsafe.Pointer]*continuation)
	}
	if old, ok := cs.m[k]; ok {
		old.hw.free()
	} else if len(cs.order) < contCap {
		cs.order = append(cs.order, k)
	} else {
		if old, ok := cs.m[cs.order[cs.next]]; ok {
			old.hw.free()
			delete(cs.m, cs.order[cs.next])
		}
		cs.order[cs.next] = k
		cs.next = (cs.next + 1) % contCap
	}
	cs.m[k] = c
}

// take removes and returns the continuation of the stream whose version
// map is m, if the map is still as handed out (same size; go-control-plane
// changes it only for requests that subscribe or unsubscribe, which the
// caller checks) and the watch asks the same.
func (cs *continuations) take(m map[string]string, spec *watchSpec) *continuation {
	k := mapKey(m)
	if k == nil {
		return nil
	}
	cs.mu.Lock()
	c, ok := cs.m[k]
	if ok {
		delete(cs.m, k) // its slot in order is reused when it comes round
	}
	cs.mu.Unlock()
	if !ok {
		return nil
	}
	if len(m) != c.n || c.node != spec.node || c.typeURL != spec.typeURL ||
		c.wildcard != (spec.flags&C.MR_WATCH_WILDCARD != 0) || !slices.Equal(c.names, spec.names) {
		c.hw.free()
		return nil
	}
	return c
}

func (cs *continuations) close() {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	for _, c := range cs.m {
		c.hw.free()
	}
	cs.m, cs.order, cs.next = nil, nil, 0
}
