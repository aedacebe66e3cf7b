package xds

/*
#include <stdlib.h>
#include "shim.h"
*/
import "C"

import (
	"sync"
	"unsafe"
)

// wireCap is how many shared answers stay decoded: a SetSnapshot for a
// fleet answers its watches with a few distinct responses.
const wireCap = 64

// sharedWires decodes each SOTW answer the library shares among watches
// once. The library hands every watch that asked the same of the same
// state the same bytes (one mr_bytes reference each); the table keeps one
// reference per decoded answer, so its address cannot be reused for other
// bytes while the entry lives, and releases it when the entry is evicted
// (oldest first) or the cache closes.
type sharedWires struct {
	mu     sync.Mutex
	byPtr  map[*C.uint8_t]*wireResponse
	held   []C.mr_bytes // ring of the references kept
	next   int          // oldest entry once the ring is full
	closed bool
}

// decode returns b's response decoded (shared: read-only). When the table
// keeps b, *b is zeroed, so the caller's release leaves it alone.
func (s *sharedWires) decode(b *C.mr_bytes) (*wireResponse, error) {
	if b.ptr == nil || b.len < 8 {
		return nil, errMalformed
	}
	sotw := *(*byte)(unsafe.Add(unsafe.Pointer(b.ptr), 4)) == 1 // delta answers are per stream
	if sotw {
		s.mu.Lock()
		w, ok := s.byPtr[b.ptr]
		s.mu.Unlock()
		if ok {
			return w, nil
		}
	}
	w, err := decodeResponse(C.GoBytes(unsafe.Pointer(b.ptr), C.int(b.len)))
	if err != nil || !sotw {
		return w, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if found, ok := s.byPtr[b.ptr]; ok {
		return found, nil // decoded meanwhile by another goroutine
	}
	if s.closed {
		return w, nil
	}
	if s.byPtr == nil {
		s.byPtr = make(map[*C.uint8_t]*wireResponse, wireCap)
	}
	if len(s.held) < wireCap {
		s.held = append(s.held, *b)
	} else {
		old := &s.held[s.next]
		delete(s.byPtr, old.ptr)
		C.mr_bytes_free(old)
		s.held[s.next] = *b
		s.next = (s.next + 1) % wireCap
	}
	s.byPtr[b.ptr] = w
	*b = C.mr_bytes{}
	return w, nil
}

// close releases every reference kept.
func (s *sharedWires) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.held {
		C.mr_bytes_free(&s.held[i])
	}
	s.held, s.byPtr, s.next, s.closed = nil, nil, 0, true
}

// eventArrays are C arrays for the answers a SetSnapshot takes back: in C
// memory, so passing them costs no cgo pointer check, and reused.
var eventArrays struct {
	mu   sync.Mutex
	free []*[setBatch]C.mr_cache_ready
}

func getEvents() *[setBatch]C.mr_cache_ready {
	eventArrays.mu.Lock()
	defer eventArrays.mu.Unlock()
	if n := len(eventArrays.free); n > 0 {
		evs := eventArrays.free[n-1]
		eventArrays.free = eventArrays.free[:n-1]
		return evs
	}
	return (*[setBatch]C.mr_cache_ready)(C.calloc(setBatch, C.size_t(unsafe.Sizeof(C.mr_cache_ready{}))))
}

// putEvents keeps up to 64 arrays (one per SetSnapshot running at once).
func putEvents(evs *[setBatch]C.mr_cache_ready) {
	eventArrays.mu.Lock()
	defer eventArrays.mu.Unlock()
	if len(eventArrays.free) < 64 {
		eventArrays.free = append(eventArrays.free, evs)
		return
	}
	C.free(unsafe.Pointer(evs))
}
