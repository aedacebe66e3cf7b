package xds

/*
#include "shim.h"
*/
import "C"

import (
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

// cRequest is an mr_watch_request and everything it points to in one C
// allocation (no Go pointers cross into C). Release it with free.
type cRequest struct {
	req *C.mr_watch_request
}

func (s *watchSpec) build() cRequest {
	ptrSize := unsafe.Sizeof(uintptr(0))
	nPtrs := len(s.names) + 2*len(s.knownNames)
	strBytes := len(s.node) + len(s.typeURL) + len(s.version) + 3
	for _, v := range s.names {
		strBytes += len(v) + 1
	}
	for i := range s.knownNames {
		strBytes += len(s.knownNames[i]) + len(s.knownVersions[i]) + 2
	}
	head := unsafe.Sizeof(C.mr_watch_request{})
	head = (head + ptrSize - 1) &^ (ptrSize - 1)
	total := head + uintptr(nPtrs)*ptrSize + uintptr(strBytes)
	base := C.malloc(C.size_t(total))
	if base == nil {
		panic("meshring/xds: out of memory")
	}
	req := (*C.mr_watch_request)(base)
	C.mr_watch_request_init(req)
	var ptrs []*C.char
	if nPtrs > 0 {
		ptrs = unsafe.Slice((**C.char)(unsafe.Add(base, head)), nPtrs)
	}
	strs := unsafe.Slice((*byte)(unsafe.Add(base, head+uintptr(nPtrs)*ptrSize)), strBytes)
	off := 0
	put := func(v string) *C.char {
		// NUL bytes cannot cross the C ABI; names with them are cut there.
		if i := strings.IndexByte(v, 0); i >= 0 {
			v = v[:i]
		}
		p := (*C.char)(unsafe.Pointer(&strs[off]))
		off += copy(strs[off:], v)
		strs[off] = 0
		off++
		return p
	}
	req.flags = C.uint32_t(s.flags)
	req.node = put(s.node)
	req.type_url = put(s.typeURL)
	req.version_info = put(s.version)
	if len(s.names) > 0 {
		names := ptrs[:len(s.names)]
		for i, v := range s.names {
			names[i] = put(v)
		}
		req.names = &names[0]
		req.n_names = C.size_t(len(names))
	}
	if n := len(s.knownNames); n > 0 {
		kn := ptrs[len(s.names) : len(s.names)+n]
		kv := ptrs[len(s.names)+n:]
		for i := range s.knownNames {
			kn[i] = put(s.knownNames[i])
			kv[i] = put(s.knownVersions[i])
		}
		req.known_names = &kn[0]
		req.known_versions = &kv[0]
		req.n_known = C.size_t(n)
	}
	return cRequest{req: req}
}

func (r cRequest) free() { C.free(unsafe.Pointer(r.req)) }
