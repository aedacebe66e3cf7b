package xds

/*
#include "shim.h"
*/
import "C"

import (
	"runtime"
	"slices"
	"sync"
	"weak"

	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
)

// builtSnapshots remembers the library snapshot built from each
// *cache.Snapshot while that value is alive, so setting one snapshot for
// many nodes (a fleet-wide configuration) marshals and copies its
// resources once and every node shares the library's copy. An entry is
// reused only while the snapshot's versions are unchanged (what
// go-control-plane's SOTW answers depend on); a snapshot edited and set
// again with new versions is built again.
type builtSnapshots struct {
	mu sync.Mutex
	m  map[weak.Pointer[cache.Snapshot]]*builtSnapshot
}

type builtSnapshot struct {
	// mu is read-held while a SetSnapshot uses h, write-held to replace
	// it, so a replaced handle is freed at once (no readers can hold it).
	mu         sync.RWMutex
	versions   []string
	extras     int // registered extra types it was packed with
	h          *C.mr_snapshot
	marshalled *marshalled
}

var built builtSnapshots

// recentCap is how many recently set *cache.Snapshot values are
// remembered to tell a fleet-wide snapshot (set for many nodes) from a
// node's own.
const recentCap = 64

// recent remembers the last snapshot values set (strong references, at
// most recentCap): a value set for a second node is worth building once
// in the library and sharing; a value set for one node only is packed
// straight into that node's SetSnapshot (one cgo call, no handle, no
// weak-pointer bookkeeping).
var recent struct {
	mu   sync.Mutex
	ring [recentCap]*cache.Snapshot
	next int
}

// sharedValue reports whether s was set recently (for another node):
// then it is built once and shared.
func sharedValue(s *cache.Snapshot) bool {
	recent.mu.Lock()
	defer recent.mu.Unlock()
	for _, r := range recent.ring {
		if r == s {
			return true
		}
	}
	recent.ring[recent.next] = s
	recent.next = (recent.next + 1) % recentCap
	return false
}

// acquire returns the library snapshot for s, building it if needed, and
// the function that ends its use (call it once the cgo call returned).
// prev is what the setting node's last snapshot was marshalled to (its
// unchanged resource values are not marshalled again).
func (b *builtSnapshots) acquire(s *cache.Snapshot, prev *marshalled) (*C.mr_snapshot, int, *marshalled, func(), error) {
	urls, nExtras := snapshotTypeURLs(s)
	versions := make([]string, len(urls))
	for i, u := range urls {
		versions[i] = s.GetVersion(u)
	}
	e := b.entry(s)
	e.mu.RLock()
	if e.h != nil && slices.Equal(e.versions, versions) {
		return e.h, e.extras, e.marshalled, e.mu.RUnlock, nil
	}
	e.mu.RUnlock()

	buf, version, packedExtras, m, err := packSnapshot(prev.bufFor(), s, prev)
	if err != nil {
		return nil, 0, nil, nil, err
	}
	nExtras = packedExtras
	cversion := cstr(version)
	var h *C.mr_snapshot
	var cerr C.mrxds_err
	if st := C.mrxds_snapshot_packed(cptr(cversion), bytesPtr(buf), C.size_t(len(buf)), &h, &cerr); st != C.MR_OK {
		return nil, 0, nil, nil, errFromC(st, "set snapshot", &cerr)
	}
	e.mu.Lock()
	old := e.h
	e.versions, e.h, e.extras, e.marshalled = versions, h, nExtras, m
	e.mu.Unlock()
	if old != nil {
		C.mr_snapshot_free(old) // no reader: they hold e.mu
	}
	e.mu.RLock()
	return e.h, e.extras, e.marshalled, e.mu.RUnlock, nil
}

// entry finds or makes the entry of s; a new one is forgotten once s is
// unreachable.
func (b *builtSnapshots) entry(s *cache.Snapshot) *builtSnapshot {
	key := weak.Make(s)
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.m == nil {
		b.m = make(map[weak.Pointer[cache.Snapshot]]*builtSnapshot)
	}
	e := b.m[key]
	if e == nil {
		e = &builtSnapshot{}
		b.m[key] = e
		runtime.AddCleanup(s, b.forget, key)
	}
	return e
}

// forget runs once the snapshot is unreachable: the library keeps its own
// references for the nodes that use it. It waits for a SetSnapshot still
// using the handle (s may be unreachable before that call returns).
func (b *builtSnapshots) forget(key weak.Pointer[cache.Snapshot]) {
	b.mu.Lock()
	e := b.m[key]
	delete(b.m, key)
	b.mu.Unlock()
	if e == nil {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.h != nil {
		C.mr_snapshot_free(e.h)
		e.h = nil
	}
}
