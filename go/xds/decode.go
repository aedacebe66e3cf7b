package xds

import (
	"encoding/binary"
	"errors"
	"sync"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/protobuf/proto"
)

const (
	flagHeartbeat = 1
	flagStateKept = 2 // a continued delta answer: no next state encoded
)

// wireResource is one resource of a decoded response. value aliases the
// response buffer.
type wireResource struct {
	name    string
	version string
	ttlMs   int64 // -1: no TTL
	value   []byte
}

// wireResponse is a decoded mr_cache_watch_next / mr_cache_fetch response.
// A SOTW one may be shared by the responses of many watches (see
// sharedWires): read-only, its resources wrapped as Any once.
type wireResponse struct {
	heartbeat bool
	stateKept bool
	version   string
	typeURL   string
	resources []wireResource
	removed   []string
	nextState map[string]string

	anysOnce sync.Once
	anys     []*anypb.Any
	anysErr  error
}

// sotwAnys wraps the resources as a SOTW DiscoveryResponse carries them:
// TTL'd ones inside a discovery.Resource with the TTL (without the
// resource itself in a heartbeat), as go-control-plane's RawResponse does.
// Built once; the slice and its messages are shared by every response of
// this answer (gRPC only reads them).
func (w *wireResponse) sotwAnys() ([]*anypb.Any, error) {
	w.anysOnce.Do(func() {
		anys := make([]*anypb.Any, len(w.resources))
		for i := range w.resources {
			res := &w.resources[i]
			a := &anypb.Any{TypeUrl: w.typeURL, Value: res.value}
			if res.ttlMs >= 0 {
				wrapped := &discovery.Resource{Name: res.name, Ttl: durationpb.New(time.Duration(res.ttlMs) * time.Millisecond)}
				if !w.heartbeat {
					wrapped.Resource = a
				}
				b, err := cache.MarshalResource(wrapped)
				if err != nil {
					w.anysErr = err
					return
				}
				a = &anypb.Any{TypeUrl: resourceTypeURL, Value: b}
			}
			anys[i] = a
		}
		w.anys = anys
	})
	return w.anys, w.anysErr
}

var errMalformed = errors.New("meshring/xds: malformed response from the library")

type reader struct {
	b   []byte
	bad bool
}

func (r *reader) take(n int) []byte {
	if r.bad || n < 0 || len(r.b) < n {
		r.bad = true
		return nil
	}
	out := r.b[:n:n]
	r.b = r.b[n:]
	return out
}

func (r *reader) u32() int {
	b := r.take(4)
	if b == nil {
		return 0
	}
	return int(binary.LittleEndian.Uint32(b))
}

func (r *reader) blob() []byte { return r.take(r.u32()) }
func (r *reader) str() string  { return string(r.blob()) }

// count reads a count and checks it against the bytes left (each entry
// takes at least min bytes), so a corrupt count cannot allocate much.
func (r *reader) count(min int) int {
	n := r.u32()
	if n*min > len(r.b) {
		r.bad = true
		return 0
	}
	return n
}

// decodeResponse parses the library's encoding (see mr_cache_watch_next in
// meshring.h). Resource values alias buf.
func decodeResponse(buf []byte) (*wireResponse, error) {
	r := reader{b: buf}
	head := r.take(8)
	if head == nil || string(head[:4]) != "MRX1" {
		return nil, errMalformed
	}
	w := &wireResponse{heartbeat: head[5]&flagHeartbeat != 0, stateKept: head[5]&flagStateKept != 0}
	w.version = r.str()
	w.typeURL = r.str()
	if n := r.count(20); n > 0 {
		w.resources = make([]wireResource, n)
		for i := range w.resources {
			res := &w.resources[i]
			res.name = r.str()
			res.version = r.str()
			if b := r.take(8); b != nil {
				res.ttlMs = int64(binary.LittleEndian.Uint64(b))
			}
			res.value = r.blob()
		}
	}
	if n := r.count(4); n > 0 {
		w.removed = make([]string, n)
		for i := range w.removed {
			w.removed[i] = r.str()
		}
	}
	n := r.count(8)
	w.nextState = make(map[string]string, n)
	for i := 0; i < n; i++ {
		k := r.str()
		w.nextState[k] = r.str()
	}
	if r.bad || len(r.b) != 0 {
		return nil, errMalformed
	}
	return w, nil
}

var resourceTypeURL = "type.googleapis.com/" + string(proto.MessageName(&discovery.Resource{}))
