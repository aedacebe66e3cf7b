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
	versions []string
	h        *C.mr_snapshot
	// older handles of this snapshot, freed with the entry (a concurrent
	// SetSnapshot may still be using one).
	retired []*C.mr_snapshot
}

var built builtSnapshots

// handle returns the library snapshot for s, building it if needed. It
// stays valid while s is reachable: the caller keeps s alive (KeepAlive)
// until its cgo call returns.
func (b *builtSnapshots) handle(s *cache.Snapshot) (*C.mr_snapshot, error) {
	urls := snapshotTypeURLs(s)
	versions := make([]string, len(urls))
	for i, u := range urls {
		versions[i] = s.GetVersion(u)
	}
	key := weak.Make(s)
	b.mu.Lock()
	e := b.m[key]
	if e != nil && slices.Equal(e.versions, versions) {
		h := e.h
		b.mu.Unlock()
		return h, nil
	}
	b.mu.Unlock()

	bp := packPool.Get().(*[]byte)
	defer packPool.Put(bp)
	buf, version, err := packSnapshot((*bp)[:0], s)
	*bp = buf[:0]
	if err != nil {
		return nil, err
	}
	cversion := cstr(version)
	var h *C.mr_snapshot
	var cerr C.mrxds_err
	if st := C.mrxds_snapshot_packed(cptr(cversion), bytesPtr(buf), C.size_t(len(buf)), &h, &cerr); st != C.MR_OK {
		return nil, errFromC(st, "set snapshot", &cerr)
	}

	b.mu.Lock()
	defer b.mu.Unlock()
	if b.m == nil {
		b.m = make(map[weak.Pointer[cache.Snapshot]]*builtSnapshot)
	}
	if e = b.m[key]; e == nil {
		b.m[key] = &builtSnapshot{versions: versions, h: h}
		runtime.AddCleanup(s, b.forget, key)
	} else {
		e.retired = append(e.retired, e.h)
		e.versions, e.h = versions, h
	}
	return h, nil
}

// forget runs once the snapshot is unreachable: the library keeps its own
// references for the nodes that use it.
func (b *builtSnapshots) forget(key weak.Pointer[cache.Snapshot]) {
	b.mu.Lock()
	e := b.m[key]
	delete(b.m, key)
	b.mu.Unlock()
	if e != nil {
		for _, h := range append(e.retired, e.h) {
			C.mr_snapshot_free(h)
		}
	}
}
