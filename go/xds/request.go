package xds

/*
#include "shim.h"
*/
import "C"

import (
	"encoding/binary"
	"sort"
	"strings"
	"unsafe"
)

// watchSpec is what one mr_watch_request carries, kept in Go memory so a
// watch can be opened again with the same request (see watch.reopen).
type watchSpec struct {
	flags   uint32
	node    string
	typeURL string
	version string
	names   []string
	// known state, parallel slices
	knownNames    []string
	knownVersions []string
	// A delta watch continuing its stream in the library: the previous
	// answer's held watch, and the version map the stream handed back.
	after *heldWatch
	base  map[string]string
}

// specKnown fills the known state from a subscription's returned resources,
// sorted so requests are reproducible.
func (s *watchSpec) setKnown(known map[string]string) {
	if len(known) == 0 {
		return
	}
	s.knownNames = make([]string, 0, len(known))
	for name := range known {
		s.knownNames = append(s.knownNames, name)
	}
	sort.Strings(s.knownNames)
	s.knownVersions = make([]string, len(s.knownNames))
	for i, name := range s.knownNames {
		s.knownVersions[i] = known[name]
	}
}

// sortedNames returns the keys of set without the explicit wildcard "*",
// sorted, and whether "*" was among them.
func sortedNames(set map[string]struct{}) ([]string, bool) {
	out := make([]string, 0, len(set))
	star := false
	for name := range set {
		if name == "*" {
			star = true
			continue
		}
		out = append(out, name)
	}
	sort.Strings(out)
	return out, star
}

// pack encodes the request for the shim (shim.c unpack_request): u32
// flags, u32 name count, u32 known count, then NUL-terminated node, type
// URL, version, names, known names, known versions. One Go buffer, so
// opening a watch is a single cgo call with no C allocation on the Go side.
func (s *watchSpec) pack() []byte {
	n := 12 + len(s.node) + len(s.typeURL) + len(s.version) + 3
	for _, v := range s.names {
		n += len(v) + 1
	}
	for i := range s.knownNames {
		n += len(s.knownNames[i]) + len(s.knownVersions[i]) + 2
	}
	b := make([]byte, 12, n)
	binary.LittleEndian.PutUint32(b[0:], s.flags)
	binary.LittleEndian.PutUint32(b[4:], uint32(len(s.names)))
	binary.LittleEndian.PutUint32(b[8:], uint32(len(s.knownNames)))
	put := func(v string) {
		// NUL bytes cannot cross the C ABI; names with them are cut there.
		if i := strings.IndexByte(v, 0); i >= 0 {
			v = v[:i]
		}
		b = append(b, v...)
		b = append(b, 0)
	}
	put(s.node)
	put(s.typeURL)
	put(s.version)
	for _, v := range s.names {
		put(v)
	}
	for _, v := range s.knownNames {
		put(v)
	}
	for _, v := range s.knownVersions {
		put(v)
	}
	return b
}

func bytesPtr(b []byte) *C.uint8_t {
	if len(b) == 0 {
		return nil
	}
	return (*C.uint8_t)(unsafe.Pointer(&b[0]))
}
