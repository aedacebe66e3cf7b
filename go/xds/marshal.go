package xds

import (
	"unsafe"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
)

// marshalled is what one snapshot's resources were marshalled to, with the
// resource values themselves (strong references: a value's address cannot
// be reused by another while it is remembered). The next snapshot set for
// the same node takes the bytes of every resource that is the very same
// value instead of marshalling it again, so a snapshot that changes one of
// 10k resources marshals one (the library then reuses the unchanged
// resources' versions too, without hashing). As with go-control-plane,
// whose snapshots marshal each resource once, a value must not be modified
// after it was given to a snapshot.
type marshalled struct {
	buf []byte // the packed snapshot; every entry aliases it
	// entries in packing order; indexed by (type, name) once there are
	// more than a few (most node snapshots hold a handful of resources).
	entries []memoRes
	index   map[memoKey]int
	size    int // bytes of buf, for the next buffer's capacity
}

type memoKey struct{ typeURL, name string }

type memoRes struct {
	key        memoKey
	res        types.Resource
	start, end int // its bytes in buf
}

// memoIndexFrom is the entry count from which lookups use a map.
const memoIndexFrom = 16

func newMarshalled(prev *marshalled) *marshalled {
	m := &marshalled{}
	if prev != nil {
		m.entries = make([]memoRes, 0, len(prev.entries))
	}
	return m
}

// bufFor returns an empty buffer with room for a snapshot like this one.
// Not pooled: the result is kept by the marshalled state built into it.
func (m *marshalled) bufFor() []byte {
	if m == nil {
		return make([]byte, 0, 4096)
	}
	return make([]byte, 0, m.size+m.size/8+64)
}

// lookup returns the bytes res was marshalled to, if it is the same value.
func (m *marshalled) lookup(typeURL, name string, res types.Resource) ([]byte, bool) {
	if m == nil {
		return nil, false
	}
	k := memoKey{typeURL, name}
	i := -1
	if m.index != nil {
		if j, ok := m.index[k]; ok {
			i = j
		}
	} else {
		for j := range m.entries {
			if m.entries[j].key == k {
				i = j
				break
			}
		}
	}
	if i < 0 || !sameValue(m.entries[i].res, res) {
		return nil, false
	}
	e := &m.entries[i]
	return m.buf[e.start:e.end:e.end], true
}

func (m *marshalled) add(typeURL, name string, res types.Resource, start, end int) {
	m.entries = append(m.entries, memoRes{key: memoKey{typeURL, name}, res: res, start: start, end: end})
}

func (m *marshalled) seal(buf []byte) {
	m.buf = buf
	m.size = len(buf)
	if len(m.entries) >= memoIndexFrom {
		m.index = make(map[memoKey]int, len(m.entries))
		for i := range m.entries {
			m.index[m.entries[i].key] = i
		}
	}
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
