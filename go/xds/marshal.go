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
	buf   []byte // the packed snapshot; every entry aliases it
	types map[string]map[string]memoRes
	size  int // bytes of buf, for the next buffer's capacity
}

type memoRes struct {
	res        types.Resource
	start, end int // its bytes in buf
}

func newMarshalled(prev *marshalled) *marshalled {
	m := &marshalled{types: make(map[string]map[string]memoRes, 1)}
	if prev != nil {
		m.types = make(map[string]map[string]memoRes, len(prev.types))
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
	e, ok := m.types[typeURL][name]
	if !ok || !sameValue(e.res, res) {
		return nil, false
	}
	return m.buf[e.start:e.end:e.end], true
}

func (m *marshalled) add(typeURL, name string, res types.Resource, start, end int) {
	t := m.types[typeURL]
	if t == nil {
		t = make(map[string]memoRes)
		m.types[typeURL] = t
	}
	t[name] = memoRes{res: res, start: start, end: end}
}

func (m *marshalled) seal(buf []byte) {
	m.buf = buf
	m.size = len(buf)
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
