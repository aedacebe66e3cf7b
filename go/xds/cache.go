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
// # Differences from go-control-plane's SnapshotCache
//
//   - Responses are sent by the cache's dispatcher goroutine rather than by
//     SetSnapshot itself, so SetSnapshot never blocks on a slow channel and
//     ignores its context; a watch whose channel is full gets a goroutine
//     that keeps its response until the channel drains or the watch is
//     cancelled. Answers reach their channels in the order the library
//     gives them (for one SetSnapshot: clusters, endpoints, listeners,
//     routes, ..., go-control-plane's ADS order).
//   - The responses are passthrough responses: GetContext returns nil
//     (PassthroughResponse's context is unexported in go-control-plane).
//   - Only the resource types go-control-plane knows (cache.GetResponseTypeURL)
//     are read from a ResourceSnapshot, plus those of a snapshot that
//     implements [TypeURLLister].
//   - A type the snapshot does not list (one go-control-plane does not know,
//     not named by [TypeURLLister]) has the snapshot's most common version;
//     go-control-plane gives it "".
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
// types go-control-plane does not know: SetSnapshot then also reads those.
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

	ads  bool
	hash cache.NodeHash
	log  log.Logger
	// hbStopped: the heartbeat context is done; heartbeats the library
	// still produces are dropped (the watch is reopened unanswered).
	hbStopped atomic.Bool

	// setLocks serialize SetSnapshot / ClearSnapshot per node (striped),
	// so the library and snaps agree on the last snapshot.
	setLocks [64]sync.Mutex
	seed     maphash.Seed

	metaMu sync.Mutex
	snaps  map[string]cache.ResourceSnapshot
	nodes  map[string]*core.Node
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
		h:     h,
		ads:   ads,
		hash:  hash,
		log:   logger,
		seed:  maphash.MakeSeed(),
		snaps: make(map[string]cache.ResourceSnapshot),
		nodes: make(map[string]*core.Node),
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

func snapshotTypeURLs(snap cache.ResourceSnapshot) []string {
	urls := knownTypeURLs()
	l, ok := snap.(TypeURLLister)
	if !ok {
		return urls
	}
	urls = slices.Clip(urls)
	for _, u := range l.TypeURLs() {
		if u != "" && !slices.Contains(urls, u) {
			urls = append(urls, u)
		}
	}
	return urls
}

// packPool recycles the buffers SetSnapshot packs snapshots into.
var packPool = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

var deterministic = proto.MarshalOptions{Deterministic: true}

func appendU32(b []byte, v int) []byte { return binary.LittleEndian.AppendUint32(b, uint32(v)) }

func appendStr(b []byte, s string) []byte { return append(appendU32(b, len(s)), s...) }

// packSnapshot encodes snap in the library's packed snapshot format (see
// mr_snapshot_add_packed): each type's resources, each marshalled once
// (deterministic, as cache.MarshalResource) straight into the buffer, and
// its version where it differs from the returned default version (the
// most common one, usually shared by every type), so types without
// resources at the default version cost the library nothing.
func packSnapshot(b []byte, snap cache.ResourceSnapshot) ([]byte, string, error) {
	urls := snapshotTypeURLs(snap)
	versions := make([]string, len(urls))
	for i, u := range urls {
		versions[i] = snap.GetVersion(u)
	}
	def := mostCommon(versions)
	b = append(b, "MRS1"...)
	typesAt := len(b)
	b = appendU32(b, 0)
	nTypes := 0
	for i, typeURL := range urls {
		resources := snap.GetResourcesAndTTL(typeURL)
		if len(resources) == 0 && versions[i] == def {
			continue
		}
		nTypes++
		b = appendStr(b, typeURL)
		if versions[i] == def {
			b = append(b, 0)
		} else {
			b = append(b, 1)
			b = appendStr(b, versions[i])
		}
		countAt := len(b)
		b = appendU32(b, 0)
		count := 0
		for name, res := range resources {
			if res.Resource == nil {
				continue
			}
			if name == "" {
				name = cache.GetResourceName(res.Resource)
			}
			ttl := int64(-1)
			if res.TTL != nil {
				ttl = res.TTL.Milliseconds()
				if ttl <= 0 {
					ttl = 1 // a TTL below 1ms still marks the resource TTL'd
				}
			}
			b = appendStr(b, name)
			b = binary.LittleEndian.AppendUint64(b, uint64(ttl))
			lenAt := len(b)
			b = appendU32(b, 0)
			var err error
			if b, err = deterministic.MarshalAppend(b, res.Resource); err != nil {
				return b, "", fmt.Errorf("meshring/xds: marshal %s %q: %w", typeURL, name, err)
			}
			binary.LittleEndian.PutUint32(b[lenAt:], uint32(len(b)-lenAt-4))
			count++
		}
		binary.LittleEndian.PutUint32(b[countAt:], uint32(count))
	}
	binary.LittleEndian.PutUint32(b[typesAt:], uint32(nTypes))
	return b, def, nil
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
// whose type changed. Every resource is marshalled once here; the library
// keeps the bytes. The whole snapshot crosses into the library in one cgo
// call. ctx is not used: answers go out asynchronously (see the package
// documentation).
func (c *Cache) SetSnapshot(_ context.Context, node string, snap cache.ResourceSnapshot) error {
	if snap == nil {
		return fmt.Errorf("meshring/xds: nil snapshot for node %q", node)
	}
	// Marshal before taking any lock: a *cache.Snapshot is built once and
	// shared by every node it is set for; other snapshots are packed here.
	// Answers of this node's watches come back from the call itself and
	// are handed out on this goroutine, as go-control-plane does.
	evs := eventsPool.Get().(*[setBatch]C.mr_cache_ready)
	defer eventsPool.Put(evs)
	var n C.size_t
	var set func(ch *C.mr_cache, cnode *C.char, cerr *C.mrxds_err) C.mr_status
	if s, ok := snap.(*cache.Snapshot); ok && s != nil {
		h, release, err := built.acquire(s)
		if err != nil {
			return err
		}
		defer release() // h stays valid (and s reachable) until the call returned
		set = func(ch *C.mr_cache, cnode *C.char, cerr *C.mrxds_err) C.mr_status {
			return C.mrxds_set_snapshot(ch, cnode, h, &evs[0], setBatch, &n, cerr)
		}
	} else {
		bp := packPool.Get().(*[]byte)
		defer packPool.Put(bp)
		buf, version, err := packSnapshot((*bp)[:0], snap)
		*bp = buf[:0]
		if err != nil {
			return err
		}
		cversion := cstr(version)
		set = func(ch *C.mr_cache, cnode *C.char, cerr *C.mrxds_err) C.mr_status {
			return C.mrxds_set_packed(ch, cnode, cptr(cversion), bytesPtr(buf), C.size_t(len(buf)), &evs[0], setBatch, &n, cerr)
		}
	}
	cnode := cstr(node)
	var cerr C.mrxds_err
	l := c.nodeLock(node)
	l.Lock() // the library and c.snaps agree on the last snapshot
	st := c.withHandle(func(ch *C.mr_cache) C.mr_status { return set(ch, cptr(cnode), &cerr) })
	if st == C.MR_OK {
		c.metaMu.Lock()
		c.snaps[node] = snap
		c.metaMu.Unlock()
	}
	l.Unlock()
	switch {
	case st == C.MR_OK:
		c.dispatch.hand(evs[:n], nil, c)
		return nil
	case st == C.MR_CLOSED && cerr.msg[0] == 0:
		return errCacheClosed("set snapshot")
	default:
		return errFromC(st, "set snapshot", &cerr)
	}
}

// setBatch is how many answers SetSnapshot takes back from its own call
// (more go through the dispatcher): one per type a node watches is typical.
const setBatch = 16

var eventsPool = sync.Pool{New: func() any { return new([setBatch]C.mr_cache_ready) }}

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
	snap, ok := c.snaps[node]
	c.metaMu.Unlock()
	if !ok {
		return nil, fmt.Errorf("no snapshot found for node %s", node)
	}
	return snap, nil
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
// for its node. A request at the current version gets
// *types.SkipFetchError; a node without a snapshot an error.
func (c *Cache) Fetch(_ context.Context, req *cache.Request) (cache.Response, error) {
	nodeID := c.hash.ID(req.GetNode())
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
	return sotwResponse(req, w)
}
