package xds

import (
	"encoding/binary"
	"fmt"
	"iter"
	"slices"
	"unsafe"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
)

// marshalled is what one snapshot's resources were marshalled to, with the
// resource values themselves (strong references: a value's address cannot
// be reused by another while it is remembered). The next snapshot set for
// the same node takes the bytes of every resource that is the very same
// value instead of marshalling it again, and is sent to the library as an
// edit of the node's current snapshot (only what changed crosses), so a
// snapshot that changes one of 10k resources marshals and copies one, and
// the library keeps the unchanged resources' versions without hashing. As
// with go-control-plane, whose snapshots marshal each resource once, a
// value must not be modified after it was given to a snapshot.
//
// A marshalled state is immutable once built: a snapshot set for many
// nodes shares one.
type marshalled struct {
	// entries in packing order; indexed by (type, name) once there are
	// more than a few (most node snapshots hold a handful of resources).
	entries []memoRes
	index   map[memoKey]int
	size    int // bytes of all entries, for the next buffer's capacity
	// Types packed with their own version (an edit must reset them).
	overrides []string
}

type memoKey struct{ typeURL, name string }

type memoRes struct {
	key   memoKey
	res   types.Resource
	ttl   int64  // as packed: -1 none
	bytes []byte // aliases the buffer it was packed into
}

// memoIndexFrom is the entry count from which lookups use a map.
const memoIndexFrom = 16

// builder collects a new marshalled state while a buffer is packed: new
// entries are recorded by offset (the buffer may move while it grows) and
// turned into slices by seal.
type builder struct {
	m       *marshalled
	pending []int // indexes of entries whose bytes are offsets into the buffer
	offs    [][2]int
}

func newBuilder(capacity int) *builder {
	return &builder{m: &marshalled{entries: make([]memoRes, 0, capacity)}}
}

func (b *builder) keep(e memoRes) {
	b.m.entries = append(b.m.entries, e)
	b.m.size += len(e.bytes)
}

func (b *builder) packed(typeURL, name string, res types.Resource, ttl int64, start, end int) {
	b.pending = append(b.pending, len(b.m.entries))
	b.offs = append(b.offs, [2]int{start, end})
	b.m.entries = append(b.m.entries, memoRes{key: memoKey{typeURL, name}, res: res, ttl: ttl})
	b.m.size += end - start
}

func (b *builder) seal(buf []byte) *marshalled {
	for i, at := range b.pending {
		o := b.offs[i]
		b.m.entries[at].bytes = buf[o[0]:o[1]:o[1]]
	}
	if len(b.m.entries) >= memoIndexFrom {
		b.m.index = make(map[memoKey]int, len(b.m.entries))
		for i := range b.m.entries {
			b.m.index[b.m.entries[i].key] = i
		}
	}
	return b.m
}

// bufFor returns an empty buffer with room for a snapshot like this one.
// Not pooled: the result is kept by the marshalled state built into it.
func (m *marshalled) bufFor() []byte {
	if m == nil {
		return make([]byte, 0, 4096)
	}
	return make([]byte, 0, m.size+m.size/8+256)
}

func (m *marshalled) hasType(typeURL string) bool {
	for i := range m.entries {
		if m.entries[i].key.typeURL == typeURL {
			return true
		}
	}
	return false
}

func (m *marshalled) find(typeURL, name string) (*memoRes, bool) {
	if m == nil {
		return nil, false
	}
	k := memoKey{typeURL, name}
	if m.index != nil {
		if i, ok := m.index[k]; ok {
			return &m.entries[i], true
		}
		return nil, false
	}
	for i := range m.entries {
		if m.entries[i].key == k {
			return &m.entries[i], true
		}
	}
	return nil, false
}

// lookup returns res's entry if it is the same value as remembered.
func (m *marshalled) lookup(typeURL, name string, res types.Resource) (*memoRes, bool) {
	e, ok := m.find(typeURL, name)
	if !ok || !sameValue(e.res, res) {
		return nil, false
	}
	return e, true
}

// sameValue reports whether a and b are the same value: the same dynamic
// type and the same data word (for a pointer, the same object; a boxed
// non-pointer value is immutable, so the same box is the same value).
// Unlike a == b it never panics on a non-comparable dynamic type.
func sameValue(a, b any) bool {
	wa := (*[2]unsafe.Pointer)(unsafe.Pointer(&a))
	wb := (*[2]unsafe.Pointer)(unsafe.Pointer(&b))
	return wa[0] == wb[0] && wa[1] == wb[1]
}

// packEdit encodes snap as an edit of the snapshot prev describes (the
// packed edit encoding, see mr_snapshot_edit_packed): every type's
// version, the names it lost, the resources that are new values. ok is
// false when most resources changed (a whole snapshot is then as cheap).
func packEdit(snap cache.ResourceSnapshot, prev *marshalled) (buf []byte, def string, nExtras int, next *marshalled, ok bool, err error) {
	urls, nExtras := snapshotTypeURLs(snap)
	extra := extraFlags(urls)
	versions := make([]string, len(urls))
	for i, u := range urls {
		versions[i] = snap.GetVersion(u)
	}
	def = mostCommon(versions)
	bld := newBuilder(len(prev.entries) + 4)
	b := make([]byte, 0, 256)
	b = append(b, "MRE1"...)
	b = appendStr(b, def)
	typesAt := len(b)
	b = appendU32(b, 0)
	nTypes, changed, total := 0, 0, 0
	for i, typeURL := range urls {
		resources := snap.GetResourcesAndTTL(typeURL)
		own := versions[i] != def || extra[i]
		if own {
			bld.m.overrides = append(bld.m.overrides, typeURL)
		}
		if len(resources) == 0 && !own && !slices.Contains(prev.overrides, typeURL) && !prev.hasType(typeURL) {
			continue // nothing there before or now, at the default version
		}
		nTypes++
		b = appendStr(b, typeURL)
		if versions[i] == def && !extra[i] {
			b = append(b, 0)
		} else {
			b = append(b, 1)
			b = appendStr(b, versions[i])
		}
		// Names prev had for this type that are gone.
		removedAt := len(b)
		b = appendU32(b, 0)
		nRemoved := 0
		for j := range prev.entries {
			e := &prev.entries[j]
			if e.key.typeURL != typeURL {
				continue
			}
			if r, ok := resources[e.key.name]; !ok || r.Resource == nil {
				b = appendStr(b, e.key.name)
				nRemoved++
			}
		}
		binary.LittleEndian.PutUint32(b[removedAt:], uint32(nRemoved))
		changed += nRemoved
		countAt := len(b)
		b = appendU32(b, 0)
		count := 0
		for name, res := range present(resources) {
			total++
			old, same := prev.lookup(typeURL, name, res.Resource)
			if same && old.ttl == ttlMs(res) {
				bld.keep(*old)
				continue
			}
			b = appendStr(b, name)
			b = binary.LittleEndian.AppendUint64(b, uint64(ttlMs(res)))
			lenAt := len(b)
			b = appendU32(b, 0)
			if same {
				b = append(b, old.bytes...) // only the TTL changed
			} else if b, err = deterministic.MarshalAppend(b, res.Resource); err != nil {
				return nil, "", 0, nil, false, fmt.Errorf("meshring/xds: marshal %s %q: %w", typeURL, name, err)
			}
			binary.LittleEndian.PutUint32(b[lenAt:], uint32(len(b)-lenAt-4))
			bld.packed(typeURL, name, res.Resource, ttlMs(res), lenAt+4, len(b))
			count++
		}
		binary.LittleEndian.PutUint32(b[countAt:], uint32(count))
		changed += count
	}
	// Types prev had that snap no longer lists: every resource goes.
	var gone map[string][]string
	for j := range prev.entries {
		if t := prev.entries[j].key.typeURL; !slices.Contains(urls, t) {
			if gone == nil {
				gone = make(map[string][]string)
			}
			gone[t] = append(gone[t], prev.entries[j].key.name)
		}
	}
	for typeURL, names := range gone {
		nTypes++
		b = appendStr(b, typeURL)
		b = append(b, 0)
		b = appendU32(b, len(names))
		for _, n := range names {
			b = appendStr(b, n)
		}
		b = appendU32(b, 0)
		changed += len(names)
	}
	binary.LittleEndian.PutUint32(b[typesAt:], uint32(nTypes))
	if changed > total/2+8 {
		return nil, "", 0, nil, false, nil
	}
	return b, def, nExtras, bld.seal(b), true, nil
}

// present yields the resources of a type that are there (a nil Resource
// is not), each under its map key or, for an empty key, its own name.
func present(resources map[string]types.ResourceWithTTL) iter.Seq2[string, types.ResourceWithTTL] {
	return func(yield func(string, types.ResourceWithTTL) bool) {
		for name, res := range resources {
			if res.Resource == nil {
				continue
			}
			if name == "" {
				name = cache.GetResourceName(res.Resource)
			}
			if !yield(name, res) {
				return
			}
		}
	}
}

func ttlMs(res types.ResourceWithTTL) int64 {
	if res.TTL == nil {
		return -1
	}
	ttl := res.TTL.Milliseconds()
	if ttl <= 0 {
		ttl = 1 // a TTL below 1ms still marks the resource TTL'd
	}
	return ttl
}

// extraFlags tells which of urls are registered extra types (served with
// their version even without resources).
func extraFlags(urls []string) []bool {
	extra := make([]bool, len(urls))
	extraTypes.mu.RLock()
	for i, u := range urls {
		extra[i] = extraTypes.set[u]
	}
	extraTypes.mu.RUnlock()
	return extra
}
