// Package xds serves go-control-plane's snapshot cache from meshring's Rust
// cache (src/cache): [Cache] implements go-control-plane v0.14's
// cache.SnapshotCache, so
//
//	c := xds.NewSnapshotCache(true, cache.IDHash{}, logger)
//	srv := server.NewServer(ctx, c, callbacks)
//
// serves Envoy and gRPC xDS clients unchanged. Only the import changes when
// moving from go-control-plane's cache.NewSnapshotCache.
//
// # How it works
//
// SetSnapshot marshals every resource of the snapshot once (deterministic
// proto marshalling, as cache.MarshalResource) into one packed buffer and
// hands it to the library in one cgo call; the library keeps the bytes per
// node and answers watches with them. CreateWatch / CreateDeltaWatch open
// a library watch carrying the request and the subscription state
// (ReturnedResources, SubscribedResources, IsWildcard), also in one cgo
// call that takes an answer already there. Parked watches are reported
// through the library's ready queue: one dispatcher goroutine per cache
// takes answers in batches of up to 256 per cgo call and sends each on its
// channel as a *cache.PassthroughResponse (SOTW: the stored bytes as Any,
// TTL'd resources wrapped in a discovery.Resource) or
// *cache.DeltaPassthroughResponse. A parked watch holds no goroutine, no
// file descriptor and no OS thread. The cancel function closes the library
// watch; once it returns, nothing more is sent on the channel for that
// watch.
//
// # As go-control-plane's SnapshotCache
//
// The cache answers as go-control-plane v0.14's SnapshotCache does, and
// go-control-plane's own cache tests (pkg/cache/v3 simple_test.go and
// delta_test.go) and its server tests that run on a real cache pass
// against it (go/xds/upstream/run.sh, in make test):
//
//   - SetSnapshot answers the node's watches itself, in ADS order, each
//     send waiting until the channel takes it, the watch is cancelled or
//     ctx ends; then it returns context.Canceled and the unanswered
//     watches stay open for the node's next SetSnapshot. Responses carry
//     SetSnapshot's ctx (GetContext); an answer given when the watch opens
//     carries context.Background, a heartbeat the heartbeat context.
//   - Responses are *Response / *DeltaResponse, with GetRawResources as
//     go-control-plane's raw responses: the snapshot's own objects.
//   - Any ResourceSnapshot works through its interface alone: every type
//     URL a client asks for is read from it (TypeURLLister only saves the
//     first request of an unknown type a re-pack of the node's snapshot).
//
// # Differences from go-control-plane's SnapshotCache
//
//   - A send that cannot be made at once when a watch opens or from the
//     dispatcher (answers beyond the first 64 of one SetSnapshot) waits
//     on a goroutine instead of blocking the cache; go-control-plane
//     blocks its whole cache there.
//   - Delta versions are the library's content hash (32 hex digits), not
//     sha256; TTLs travel in milliseconds.
//   - GetSnapshot returns the ResourceSnapshot last given to SetSnapshot
//     for the node (as go-control-plane does); editing it afterwards does not
//     change what the cache serves.
//   - A node whose snapshot is cleared ends its open watches without an
//     answer, as go-control-plane drops them.
//   - Close releases the library cache; go-control-plane's cache has no
//     Close (an unclosed Cache lives as long as the program).
package xds

/*
#cgo CFLAGS: -I${SRCDIR}/../../include
#cgo LDFLAGS: ${SRCDIR}/../../target/release/libmeshring.a -lm -ldl -lpthread
#include "shim.h"
*/
import "C"

import (
	"cmp"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/maphash"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/log"
	"google.golang.org/protobuf/proto"

	meshring "github.com/meshring/meshring/go"
)

// TypeURLLister may be implemented by a cache.ResourceSnapshot with resource
// types go-control-plane does not know: SetSnapshot then reads those at
// once. Without it they are read once a client asks for them.
type TypeURLLister interface {
	TypeURLs() []string
}

// Cache is go-control-plane's cache.SnapshotCache over meshring's cache.
// Make it with NewSnapshotCache or NewSnapshotCacheWithHeartbeating. It is
// safe for concurrent use.
type Cache struct {
	// mu is read-held while h is used and write-held by Close.
	mu sync.RWMutex
	h  *C.mr_cache
	// dispatch takes the answers of open watches from the library's
	// ready queue and hands them to their channels.
	dispatch dispatcher
	// Answers shared by many watches, decoded once.
	wires sharedWires
	// Delta streams' held answers, found by the version map handed back.
	conts continuations

	ads  bool
	hash cache.NodeHash
	log  log.Logger
	// hbStopped: the heartbeat context is done; heartbeats the library
	// still produces are dropped (the watch is reopened unanswered).
	hbStopped atomic.Bool
	// hbCtx is the heartbeat context, carried by heartbeat responses.
	hbCtx context.Context

	// setLocks serialize SetSnapshot / ClearSnapshot per node (striped),
	// so the library and snaps agree on the last snapshot.
	setLocks [64]sync.Mutex
	seed     maphash.Seed

	metaMu sync.Mutex
	snaps  map[string]nodeSnapshot
	nodes  map[string]*core.Node
	// stalled: watches whose SetSnapshot context ended before they took
	// their answer; the node's next SetSnapshot answers them.
	stalled map[string][]answerer
}

// nodeSnapshot is a node's last snapshot and how many of the registered
// extra type URLs it was packed with.
type nodeSnapshot struct {
	snap   cache.ResourceSnapshot
	extras int
	// The bytes its resources were marshalled to: the node's next
	// snapshot marshals only the resources that are new values.
	marshalled *marshalled
}

var (
	_ cache.SnapshotCache = (*Cache)(nil)
	_ cache.Cache         = (*Cache)(nil)
)

// NewSnapshotCache makes a cache, as go-control-plane's
// cache.NewSnapshotCache: with ads, a SOTW watch that names resources is
// answered only once it names every resource of its type in the snapshot.
// hash turns a request's node into the node key (nil: cache.IDHash). The
// logger is optional.
func NewSnapshotCache(ads bool, hash cache.NodeHash, logger log.Logger) cache.SnapshotCache {
	return newCache(ads, hash, logger, 0)
}

// NewSnapshotCacheWithHeartbeating is NewSnapshotCache plus heartbeats:
// every interval, SOTW watches covering resources with a TTL are answered
// with those resources (as a heartbeat) until ctx is done.
func NewSnapshotCacheWithHeartbeating(ctx context.Context, ads bool, hash cache.NodeHash, logger log.Logger, interval time.Duration) cache.SnapshotCache {
	if interval > 0 && interval < time.Millisecond {
		interval = time.Millisecond
	}
	c := newCache(ads, hash, logger, interval)
	c.hbCtx = ctx
	if interval > 0 {
		context.AfterFunc(ctx, func() { c.hbStopped.Store(true) })
	}
	return c
}

func newCache(ads bool, hash cache.NodeHash, logger log.Logger, interval time.Duration) *Cache {
	if hash == nil {
		hash = cache.IDHash{}
	}
	if logger == nil {
		logger = log.NewDefaultLogger()
	}
	var flags C.uint32_t
	if ads {
		flags |= C.MR_CACHE_ADS
	}
	var h *C.mr_cache
	var cerr C.mrxds_err
	if st := C.mrxds_cache_new(flags, C.int64_t(interval.Milliseconds()), &h, &cerr); st != C.MR_OK {
		// Only a bad config or no memory; neither can come from the arguments.
		panic(errFromC(st, "new cache", &cerr))
	}
	return &Cache{
		h:       h,
		ads:     ads,
		hash:    hash,
		log:     logger,
		hbCtx:   context.Background(),
		seed:    maphash.MakeSeed(),
		snaps:   make(map[string]nodeSnapshot),
		nodes:   make(map[string]*core.Node),
		stalled: make(map[string][]answerer),
	}
}

func errFromC(st C.mr_status, op string, e *C.mrxds_err) error {
	return &meshring.Error{Status: meshring.Status(st), Op: op, Msg: C.GoString(&e.msg[0])}
}

func errCacheClosed(op string) error {
	return &meshring.Error{Status: meshring.StatusClosed, Op: op, Msg: "cache is closed"}
}

// Close closes the cache: open watches end unanswered (the dispatcher
// exits), later calls fail with an error matching meshring.ErrClosed, and the
// library cache is released. Closing again is a no-op.
func (c *Cache) Close() error {
	c.mu.RLock()
	if c.h != nil {
		C.mr_cache_close(c.h) // ends the dispatcher's mr_cache_take_ready
	}
	c.mu.RUnlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	// Under the write lock no watch can start the dispatcher any more.
	c.dispatch.wait()
	if c.h != nil {
		C.mr_cache_free(c.h)
		c.h = nil
	}
	c.wires.close()
	c.conts.close()
	return nil
}

func (c *Cache) nodeLock(node string) *sync.Mutex {
	return &c.setLocks[maphash.String(c.seed, node)%uint64(len(c.setLocks))]
}

// cstr returns s NUL-terminated in Go memory (valid while the result is
// alive), cut at an inner NUL as the C ABI would.
func cstr(s string) []byte {
	b := make([]byte, len(s)+1)
	copy(b, s)
	return b
}

func cptr(b []byte) *C.char { return (*C.char)(unsafe.Pointer(&b[0])) }

// knownTypeURLs lists the type URLs go-control-plane knows, once.
var knownTypeURLs = sync.OnceValue(func() []string {
	var urls []string
	for t := types.ResponseType(0); t < types.UnknownType; t++ {
		if u, err := cache.GetResponseTypeURL(t); err == nil && !slices.Contains(urls, u) {
			urls = append(urls, u)
		}
	}
	return urls
})

// extraTypes are the type URLs outside knownTypeURLs that clients asked
// for (any cache of this process): every snapshot packed since carries
// them, read through the ResourceSnapshot interface, as go-control-plane
// reads any type a request names. Append-only.
var extraTypes struct {
	mu   sync.RWMutex
	list []string
	set  map[string]bool
}

// registerType adds an unknown type URL; its index+1 is the count of
// extras a snapshot must have been packed with to know it.
func registerType(u string) int {
	extraTypes.mu.RLock()
	known := extraTypes.set[u]
	extraTypes.mu.RUnlock()
	if !known && !slices.Contains(knownTypeURLs(), u) {
		extraTypes.mu.Lock()
		if extraTypes.set == nil {
			extraTypes.set = make(map[string]bool)
		}
		if !extraTypes.set[u] {
			extraTypes.set[u] = true
			extraTypes.list = append(extraTypes.list, u)
		}
		extraTypes.mu.Unlock()
	}
	extraTypes.mu.RLock()
	defer extraTypes.mu.RUnlock()
	if i := slices.Index(extraTypes.list, u); i >= 0 {
		return i + 1
	}
	return 0
}

// snapshotTypeURLs: the types to pack for snap, and how many of them are
// registered extras (packed with their exact version, even "").
func snapshotTypeURLs(snap cache.ResourceSnapshot) ([]string, int) {
	urls := slices.Clip(knownTypeURLs())
	if l, ok := snap.(TypeURLLister); ok {
		for _, u := range l.TypeURLs() {
			if u != "" && !slices.Contains(urls, u) {
				urls = append(urls, u)
			}
		}
	}
	extraTypes.mu.RLock()
	extras := extraTypes.list[:len(extraTypes.list):len(extraTypes.list)]
	extraTypes.mu.RUnlock()
	for _, u := range extras {
		if !slices.Contains(urls, u) {
			urls = append(urls, u)
		}
	}
	return urls, len(extras)
}

var deterministic = proto.MarshalOptions{Deterministic: true}

func appendU32(b []byte, v int) []byte { return binary.LittleEndian.AppendUint32(b, uint32(v)) }

func appendStr(b []byte, s string) []byte { return append(appendU32(b, len(s)), s...) }

// packSnapshot encodes snap in the library's packed snapshot format (see
// mr_snapshot_add_packed): each type's resources, each marshalled once
// (deterministic, as cache.MarshalResource) straight into the buffer, and
// its version where it differs from the returned default version (the
// most common one, usually shared by every type), so types without
// resources at the default version cost the library nothing. A resource
// that is the very value prev marshalled is not marshalled again. The
// returned marshalled state aliases the returned buffer.
func packSnapshot(b []byte, snap cache.ResourceSnapshot, prev *marshalled) ([]byte, string, int, *marshalled, error) {
	urls, nExtras := snapshotTypeURLs(snap)
	extra := extraFlags(urls)
	versions := make([]string, len(urls))
	for i, u := range urls {
		versions[i] = snap.GetVersion(u)
	}
	def := mostCommon(versions)
	bld := newBuilder(4)
	if prev != nil {
		bld = newBuilder(len(prev.entries))
	}
	b = append(b, "MRS1"...)
	typesAt := len(b)
	b = appendU32(b, 0)
	nTypes := 0
	for i, typeURL := range urls {
		resources := snap.GetResourcesAndTTL(typeURL)
		if len(resources) == 0 && versions[i] == def && !extra[i] {
			continue
		}
		nTypes++
		b = appendStr(b, typeURL)
		if versions[i] == def && !extra[i] {
			b = append(b, 0)
		} else {
			b = append(b, 1)
			b = appendStr(b, versions[i])
			bld.m.overrides = append(bld.m.overrides, typeURL)
		}
		countAt := len(b)
		b = appendU32(b, 0)
		count := 0
		for name, res := range present(resources) {
			ttl := ttlMs(res)
			b = appendStr(b, name)
			b = binary.LittleEndian.AppendUint64(b, uint64(ttl))
			lenAt := len(b)
			b = appendU32(b, 0)
			if old, ok := prev.lookup(typeURL, name, res.Resource); ok {
				b = append(b, old.bytes...)
			} else {
				var err error
				if b, err = deterministic.MarshalAppend(b, res.Resource); err != nil {
					return b, "", 0, nil, fmt.Errorf("meshring/xds: marshal %s %q: %w", typeURL, name, err)
				}
			}
			binary.LittleEndian.PutUint32(b[lenAt:], uint32(len(b)-lenAt-4))
			bld.packed(typeURL, name, res.Resource, ttl, lenAt+4, len(b))
			count++
		}
		binary.LittleEndian.PutUint32(b[countAt:], uint32(count))
	}
	binary.LittleEndian.PutUint32(b[typesAt:], uint32(nTypes))
	return b, def, nExtras, bld.seal(b), nil
}

// mostCommon returns the most frequent string of vs ("" for none); ties
// go to the earliest.
func mostCommon(vs []string) string {
	best, bestN := "", 0
	for i, v := range vs {
		if v == best && bestN > 0 {
			continue
		}
		n := 0
		for _, w := range vs[i:] {
			if w == v {
				n++
			}
		}
		if n > bestN {
			best, bestN = v, n
		}
	}
	return best
}

// SetSnapshot sets node's snapshot and answers the node's open watches
// whose type's version changed, as go-control-plane does: each answer is
// sent here, in ADS order, waiting until its channel takes it, its watch is
// cancelled, or ctx ends; then SetSnapshot returns context.Canceled and
// the watches still unanswered stay open for the node's next SetSnapshot.
// Every resource is marshalled once here (a *cache.Snapshot set for many
// nodes, once in all); the whole snapshot crosses into the library in one
// cgo call.
func (c *Cache) SetSnapshot(ctx context.Context, node string, snap cache.ResourceSnapshot) error {
	if snap == nil {
		return fmt.Errorf("meshring/xds: nil snapshot for node %q", node)
	}
	if ctx == nil {
		ctx = context.Background()
	}
	evs := getEvents()
	defer putEvents(evs)
	l := c.nodeLock(node)
	l.Lock() // the library and c.snaps agree on the last snapshot
	n, err := c.setLocked(node, snap, evs)
	l.Unlock()
	if err != nil {
		return err
	}
	return c.deliverSet(ctx, node, snap, evs[:n])
}

// setLocked packs (or takes the built) snapshot and sets it in the library
// under the node's lock, returning how many answers came back in evs.
func (c *Cache) setLocked(node string, snap cache.ResourceSnapshot, evs *[setBatch]C.mr_cache_ready) (C.size_t, error) {
	var n C.size_t
	var set func(ch *C.mr_cache, cnode *C.char, cerr *C.mrxds_err) C.mr_status
	var extras int
	var m *marshalled
	c.metaMu.Lock()
	prev := c.snaps[node].marshalled
	c.metaMu.Unlock()
	if s, ok := snap.(*cache.Snapshot); ok && s != nil && sharedValue(s) {
		h, nExtras, sm, release, err := built.acquire(s, prev)
		if err != nil {
			return 0, err
		}
		defer release() // h stays valid (and s reachable) until the call returned
		extras, m = nExtras, sm
		set = func(ch *C.mr_cache, cnode *C.char, cerr *C.mrxds_err) C.mr_status {
			return C.mrxds_set_snapshot(ch, cnode, h, &evs[0], setBatch, &n, cerr)
		}
	} else {
		cnode := cstr(node)
		if prev != nil {
			// The library holds the snapshot prev describes: send what changed.
			buf, _, nExtras, next, ok, err := packEdit(snap, prev)
			if err != nil {
				return 0, err
			}
			if ok {
				var cerr C.mrxds_err
				st := c.withHandle(func(ch *C.mr_cache) C.mr_status {
					return C.mrxds_set_edit(ch, cptr(cnode), bytesPtr(buf), C.size_t(len(buf)), &evs[0], setBatch, &n, &cerr)
				})
				if st != C.MR_NOT_FOUND { // not found: send it whole, below
					return c.setDone(node, snap, nExtras, next, n, st, &cerr)
				}
			}
		}
		buf, version, nExtras, next, err := packSnapshot(prev.bufFor(), snap, prev)
		if err != nil {
			return 0, err
		}
		extras, m = nExtras, next
		cversion := cstr(version)
		set = func(ch *C.mr_cache, cnode *C.char, cerr *C.mrxds_err) C.mr_status {
			return C.mrxds_set_packed(ch, cnode, cptr(cversion), bytesPtr(buf), C.size_t(len(buf)), &evs[0], setBatch, &n, cerr)
		}
	}
	cnode := cstr(node)
	var cerr C.mrxds_err
	st := c.withHandle(func(ch *C.mr_cache) C.mr_status { return set(ch, cptr(cnode), &cerr) })
	return c.setDone(node, snap, extras, m, n, st, &cerr)
}

// setDone records a set snapshot (or turns the status into an error).
func (c *Cache) setDone(node string, snap cache.ResourceSnapshot, extras int, m *marshalled, n C.size_t, st C.mr_status, cerr *C.mrxds_err) (C.size_t, error) {
	switch {
	case st == C.MR_OK:
		c.metaMu.Lock()
		c.snaps[node] = nodeSnapshot{snap: snap, extras: extras, marshalled: m}
		c.metaMu.Unlock()
		return n, nil
	case st == C.MR_CLOSED && cerr.msg[0] == 0:
		return 0, errCacheClosed("set snapshot")
	default:
		return 0, errFromC(st, "set snapshot", cerr)
	}
}

// deliverSet hands out what a SetSnapshot answered: the node's stalled
// watches that its new snapshot answers, then the library's answers, in
// ADS order (go-control-plane's GetResponseType order), each as
// watch.deliver sends it. The first that ctx stops stalls with all after it.
func (c *Cache) deliverSet(ctx context.Context, node string, snap cache.ResourceSnapshot, evs []C.mr_cache_ready) error {
	type pending struct {
		w  answerer
		wr *wireResponse
		h  *C.mr_cache_watch_h // a delta watch's handle, kept with its answer
	}
	var todo []pending
	for _, w := range c.takeStalled(node) {
		if wr, h := w.resume(); wr != nil {
			todo = append(todo, pending{w, wr, h})
		}
	}
	if len(evs) > 0 {
		release := make([]*C.mr_cache_watch_h, 0, len(evs))
		for i := range evs {
			ev := &evs[i]
			w := c.dispatch.take(uint64(ev.token))
			if w == nil {
				continue // cancelled meanwhile
			}
			h, ok := w.takeForSet()
			answered := ok && ev.status == C.MR_OK
			var wr *wireResponse
			if answered {
				var err error
				if wr, err = c.wires.decode(&ev.response); err != nil {
					c.log.Errorf("meshring/xds: %v", err)
					answered = false
				}
			}
			if !answered || !w.isDelta() {
				if h != nil {
					release = append(release, h)
				}
				h = nil
			}
			if answered {
				todo = append(todo, pending{w, wr, h})
			}
		}
		var hs **C.mr_cache_watch_h
		if len(release) > 0 {
			hs = &release[0]
		}
		C.mrxds_release(&evs[0], C.size_t(len(evs)), hs, C.size_t(len(release)))
	}
	slices.SortStableFunc(todo, func(a, b pending) int {
		return cmp.Compare(cache.GetResponseType(a.w.typeURL()), cache.GetResponseType(b.w.typeURL()))
	})
	for i, p := range todo {
		if !p.w.deliver(ctx, p.wr, snap, p.h) {
			for _, rest := range todo[i+1:] {
				rest.w.stall()
				if rest.h != nil {
					C.mr_cache_watch_free(rest.h) // its reopen holds the answer again
				}
			}
			return context.Canceled
		}
	}
	return nil
}

// setBatch is how many answers SetSnapshot takes back from its own call
// (more go through the dispatcher): a node watches at most a few types.
const setBatch = 64

func (c *Cache) addStalled(node string, w answerer) {
	c.metaMu.Lock()
	c.stalled[node] = append(c.stalled[node], w)
	c.metaMu.Unlock()
}

func (c *Cache) removeStalled(node string, w answerer) {
	c.metaMu.Lock()
	defer c.metaMu.Unlock()
	list := c.stalled[node]
	if i := slices.Index(list, w); i >= 0 {
		c.stalled[node] = slices.Delete(list, i, i+1)
	}
	if len(c.stalled[node]) == 0 {
		delete(c.stalled, node)
	}
}

func (c *Cache) takeStalled(node string) []answerer {
	c.metaMu.Lock()
	defer c.metaMu.Unlock()
	list := c.stalled[node]
	delete(c.stalled, node)
	return list
}

// snapshotOf is node's last snapshot (nil: none).
func (c *Cache) snapshotOf(node string) cache.ResourceSnapshot {
	c.metaMu.Lock()
	defer c.metaMu.Unlock()
	return c.snaps[node].snap
}

// noteType registers a type URL a client asks for; when it is new to the
// node's current snapshot, that snapshot is packed and set again (once
// per node and type) so the library serves what the ResourceSnapshot says.
func (c *Cache) noteType(node, typeURL string) {
	need := registerType(typeURL)
	if need == 0 {
		return
	}
	c.metaMu.Lock()
	ns, ok := c.snaps[node]
	c.metaMu.Unlock()
	if !ok || ns.extras >= need {
		return
	}
	evs := getEvents()
	defer putEvents(evs)
	l := c.nodeLock(node)
	l.Lock()
	c.metaMu.Lock()
	cur := c.snaps[node]
	c.metaMu.Unlock()
	if cur.snap != ns.snap || cur.extras >= need {
		l.Unlock()
		return
	}
	n, err := c.setLocked(node, ns.snap, evs)
	l.Unlock()
	if err != nil {
		if !isClosed(err) {
			c.log.Errorf("meshring/xds: serving type %s for %q: %v", typeURL, node, err)
		}
		return
	}
	c.deliverSet(context.Background(), node, ns.snap, evs[:n])
}

// withHandle runs call with the library cache under the cache's read lock;
// MR_CLOSED (with no message) once it is closed.
func (c *Cache) withHandle(call func(*C.mr_cache) C.mr_status) C.mr_status {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.h == nil {
		return C.MR_CLOSED
	}
	return call(c.h)
}

// GetSnapshot returns the snapshot last set for node (the very value given
// to SetSnapshot), or an error if the node has none.
func (c *Cache) GetSnapshot(node string) (cache.ResourceSnapshot, error) {
	c.metaMu.Lock()
	ns, ok := c.snaps[node]
	c.metaMu.Unlock()
	if !ok {
		return nil, fmt.Errorf("no snapshot found for node %s", node)
	}
	return ns.snap, nil
}

// ClearSnapshot removes node's snapshot and status; its open watches end
// unanswered.
func (c *Cache) ClearSnapshot(node string) {
	cnode := cstr(node)
	l := c.nodeLock(node)
	l.Lock()
	defer l.Unlock()
	c.mu.RLock()
	if c.h != nil {
		var cerr C.mrxds_err
		if st := C.mrxds_clear_snapshot(c.h, cptr(cnode), &cerr); st != C.MR_OK {
			c.log.Warnf("meshring/xds: clear snapshot %q: %v", node, errFromC(st, "clear snapshot", &cerr))
		}
	}
	c.mu.RUnlock()
	c.metaMu.Lock()
	delete(c.snaps, node)
	delete(c.nodes, node)
	delete(c.stalled, node) // dropped, as go-control-plane drops the node's watches
	c.metaMu.Unlock()
}

// noteNode remembers the Envoy node behind a node key for GetStatusInfo.
func (c *Cache) noteNode(id string, node *core.Node) {
	c.metaMu.Lock()
	if node != nil || c.nodes[id] == nil {
		c.nodes[id] = node
	}
	c.metaMu.Unlock()
}

type statusJSON struct {
	Node             string `json:"node"`
	NumWatches       int    `json:"num_watches"`
	NumDeltaWatches  int    `json:"num_delta_watches"`
	LastWatchMs      *int64 `json:"last_watch_request_unix_ms"`
	LastDeltaWatchMs *int64 `json:"last_delta_watch_request_unix_ms"`
}

// StatusInfo is a point-in-time copy of a node's status; it implements
// cache.StatusInfo.
type StatusInfo struct {
	Node                      *core.Node
	NumWatches                int
	NumDeltaWatches           int
	LastWatchRequestTime      time.Time
	LastDeltaWatchRequestTime time.Time
}

var _ cache.StatusInfo = (*StatusInfo)(nil)

func (s *StatusInfo) GetNode() *core.Node                     { return s.Node }
func (s *StatusInfo) GetNumWatches() int                      { return s.NumWatches }
func (s *StatusInfo) GetNumDeltaWatches() int                 { return s.NumDeltaWatches }
func (s *StatusInfo) GetLastWatchRequestTime() time.Time      { return s.LastWatchRequestTime }
func (s *StatusInfo) GetLastDeltaWatchRequestTime() time.Time { return s.LastDeltaWatchRequestTime }

func (c *Cache) takeJSON(op string, call func(out *C.mr_bytes, e *C.mrxds_err) C.mr_status) ([]byte, C.mr_status, error) {
	var out C.mr_bytes
	var cerr C.mrxds_err
	c.mu.RLock()
	if c.h == nil {
		c.mu.RUnlock()
		return nil, C.MR_CLOSED, errCacheClosed(op)
	}
	st := call(&out, &cerr)
	c.mu.RUnlock()
	if st != C.MR_OK {
		return nil, st, errFromC(st, op, &cerr)
	}
	return takeBytes(&out), st, nil
}

func takeBytes(b *C.mr_bytes) []byte {
	defer C.mr_bytes_free(b)
	if b.len == 0 {
		return nil
	}
	return C.GoBytes(unsafe.Pointer(b.ptr), C.int(b.len))
}

// GetStatusInfo returns the status of a node that has opened watches, or
// nil (an untyped nil cache.StatusInfo) for any other node.
func (c *Cache) GetStatusInfo(node string) cache.StatusInfo {
	cnode := cstr(node)
	js, st, err := c.takeJSON("status", func(out *C.mr_bytes, e *C.mrxds_err) C.mr_status {
		return C.mrxds_status(c.h, cptr(cnode), out, e)
	})
	if err != nil {
		if st != C.MR_NOT_FOUND {
			c.log.Warnf("meshring/xds: status of %q: %v", node, err)
		}
		return nil
	}
	var s statusJSON
	if err := json.Unmarshal(js, &s); err != nil {
		c.log.Errorf("meshring/xds: status of %q: %v", node, err)
		return nil
	}
	info := &StatusInfo{NumWatches: s.NumWatches, NumDeltaWatches: s.NumDeltaWatches}
	if s.LastWatchMs != nil {
		info.LastWatchRequestTime = time.UnixMilli(*s.LastWatchMs)
	}
	if s.LastDeltaWatchMs != nil {
		info.LastDeltaWatchRequestTime = time.UnixMilli(*s.LastDeltaWatchMs)
	}
	c.metaMu.Lock()
	info.Node = c.nodes[node]
	for _, w := range c.stalled[node] { // open, as go-control-plane counts them
		if w.isDelta() {
			info.NumDeltaWatches++
		} else {
			info.NumWatches++
		}
	}
	c.metaMu.Unlock()
	return info
}

// GetStatusKeys returns the keys of the nodes with a status, sorted.
func (c *Cache) GetStatusKeys() []string {
	js, _, err := c.takeJSON("status keys", func(out *C.mr_bytes, e *C.mrxds_err) C.mr_status {
		return C.mrxds_status_keys(c.h, out, e)
	})
	keys := []string{}
	if err != nil {
		c.log.Warnf("meshring/xds: status keys: %v", err)
		return keys
	}
	if err := json.Unmarshal(js, &keys); err != nil {
		c.log.Errorf("meshring/xds: status keys: %v", err)
	}
	return keys
}

// Fetch answers a REST request: the covered resources of the request's type
// for its node, in a *Response carrying ctx. A request at the current
// version gets *types.SkipFetchError; a node without a snapshot an error.
func (c *Cache) Fetch(ctx context.Context, req *cache.Request) (cache.Response, error) {
	nodeID := c.hash.ID(req.GetNode())
	c.noteType(nodeID, req.GetTypeUrl())
	spec := &watchSpec{node: nodeID, typeURL: req.GetTypeUrl(), version: req.GetVersionInfo(), names: req.GetResourceNames()}
	packed := spec.pack()
	js, st, err := c.takeJSON("fetch", func(out *C.mr_bytes, e *C.mrxds_err) C.mr_status {
		return C.mrxds_fetch(c.h, bytesPtr(packed), C.size_t(len(packed)), out, e)
	})
	switch st {
	case C.MR_OK:
	case C.MR_UP_TO_DATE:
		return nil, &types.SkipFetchError{}
	case C.MR_NOT_FOUND:
		return nil, fmt.Errorf("missing snapshot for %q", nodeID)
	default:
		return nil, err
	}
	w, err := decodeResponse(js)
	if err != nil {
		return nil, err
	}
	return newResponse(ctx, req, w, c.snapshotOf(nodeID)), nil
}
