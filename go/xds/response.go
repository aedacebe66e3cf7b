package xds

/*
#include "shim.h"
*/
import "C"

import (
	"context"
	"maps"
	"runtime"
	"sync"
	"time"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"google.golang.org/protobuf/types/known/anypb"
)

// Response is a SOTW answer: go-control-plane's cache.Response, built from
// the library's bytes. Its DiscoveryResponse is made on first use (on the
// stream's goroutine, as go-control-plane's RawResponse does), from bytes
// already marshalled once per snapshot. GetContext is the context of the
// SetSnapshot that produced it (context.Background for an answer given
// when the watch opened, the heartbeat context for a heartbeat, Fetch's
// for a Fetch).
type Response struct {
	req  *cache.Request
	ctx  context.Context
	wire *wireResponse
	// snap produced it: GetRawResources hands back its own objects.
	snap cache.ResourceSnapshot

	once sync.Once
	dr   *discovery.DiscoveryResponse
	err  error

	retOnce  sync.Once
	returned map[string]string
}

var _ cache.Response = (*Response)(nil)

func newResponse(ctx context.Context, req *cache.Request, w *wireResponse, snap cache.ResourceSnapshot) *Response {
	if ctx == nil {
		ctx = context.Background()
	}
	return &Response{req: req, ctx: ctx, wire: w, snap: snap}
}

// GetDiscoveryResponse returns the response as go-control-plane's
// RawResponse does: made on first use, then the same message. Its
// resources are shared with the other responses of the same answer (see
// wireResponse.sotwAnys); the message itself is this response's own (the
// server sets its nonce).
func (r *Response) GetDiscoveryResponse() (*discovery.DiscoveryResponse, error) {
	r.once.Do(func() {
		anys, err := r.wire.sotwAnys()
		if err != nil {
			r.err = err
			return
		}
		r.dr = &discovery.DiscoveryResponse{VersionInfo: r.wire.version, TypeUrl: r.wire.typeURL, Resources: anys}
	})
	return r.dr, r.err
}

func (r *Response) GetRequest() *discovery.DiscoveryRequest { return r.req }
func (r *Response) GetVersion() (string, error)             { return r.wire.version, nil }
func (r *Response) GetResponseVersion() string              { return r.wire.version }
func (r *Response) GetContext() context.Context             { return r.ctx }

// GetReturnedResources is the state to feed back into the next watch: each
// name returned, at the type's version (as go-control-plane's). The map is
// this response's own (the stream's subscription edits it), made on first
// use.
func (r *Response) GetReturnedResources() map[string]string {
	r.retOnce.Do(func() { r.returned = maps.Clone(r.wire.nextState) })
	return r.returned
}

// IsHeartbeat reports whether the response is a TTL heartbeat.
func (r *Response) IsHeartbeat() bool { return r.wire.heartbeat }

// GetRawResources returns the resources of the answer as
// go-control-plane's RawResponse.GetRawResources does: the snapshot's own
// objects (with their TTLs), also for a heartbeat. Where the snapshot set
// since no longer has them at the answer's version, they are decoded from
// the bytes sent.
func (r *Response) GetRawResources() []types.ResourceWithTTL {
	return rawResources(r.snap, r.wire, true)
}

// DeltaResponse is a delta answer: go-control-plane's cache.DeltaResponse,
// built from the library's bytes on first use. Contexts as for Response.
type DeltaResponse struct {
	req  *cache.DeltaRequest
	ctx  context.Context
	wire *wireResponse
	snap cache.ResourceSnapshot

	once sync.Once
	dr   *discovery.DeltaDiscoveryResponse

	// The library's answer, held for the stream's next watch, with what
	// registering it needs (see continuations).
	c    *Cache
	spec *watchSpec
	hw   *heldWatch

	nextOnce sync.Once
	next     map[string]string
}

var _ cache.DeltaResponse = (*DeltaResponse)(nil)

func newDeltaResponse(ctx context.Context, req *cache.DeltaRequest, w *wireResponse, snap cache.ResourceSnapshot, c *Cache, spec *watchSpec, hw *heldWatch) *DeltaResponse {
	if ctx == nil {
		ctx = context.Background()
	}
	r := &DeltaResponse{req: req, ctx: ctx, wire: w, snap: snap, c: c, spec: spec, hw: hw}
	if hw != nil {
		runtime.AddCleanup(r, (*heldWatch).releaseUnowned, hw)
	}
	return r
}

// GetNextVersionMap is the stream's next version map, this response's own
// (the stream's subscription keeps and edits it). A continued answer
// carries only what changed: the map is the one its watch was opened with,
// updated. The map is then remembered with the library's answer, so the
// stream's next watch, handed this map back, continues in the library.
func (r *DeltaResponse) GetNextVersionMap() map[string]string {
	r.nextOnce.Do(func() {
		w := r.wire
		if !w.stateKept {
			r.next = w.nextState
		} else {
			r.next = maps.Clone(r.spec.base)
			if r.next == nil {
				r.next = make(map[string]string, len(w.resources))
			}
			for _, name := range w.removed {
				delete(r.next, name)
			}
			for i := range w.resources {
				r.next[w.resources[i].name] = w.resources[i].version
			}
		}
		if r.hw != nil && r.c != nil {
			r.c.conts.add(&continuation{hw: r.hw, node: r.spec.node, typeURL: r.spec.typeURL,
				wildcard: r.spec.flags&C.MR_WATCH_WILDCARD != 0, names: r.spec.names, m: r.next, n: len(r.next)})
		}
	})
	return r.next
}

// GetDeltaDiscoveryResponse: each changed resource with its version, the
// removed names. Delta responses carry no TTLs, as go-control-plane's.
func (r *DeltaResponse) GetDeltaDiscoveryResponse() (*discovery.DeltaDiscoveryResponse, error) {
	r.once.Do(func() {
		w := r.wire
		out := make([]*discovery.Resource, len(w.resources))
		for i := range w.resources {
			res := &w.resources[i]
			out[i] = &discovery.Resource{Name: res.name, Version: res.version, Resource: &anypb.Any{TypeUrl: w.typeURL, Value: res.value}}
		}
		r.dr = &discovery.DeltaDiscoveryResponse{Resources: out, RemovedResources: w.removed, TypeUrl: w.typeURL, SystemVersionInfo: w.version}
	})
	return r.dr, nil
}

func (r *DeltaResponse) GetDeltaRequest() *discovery.DeltaDiscoveryRequest { return r.req }
func (r *DeltaResponse) GetSystemVersion() (string, error)                 { return r.wire.version, nil }
func (r *DeltaResponse) GetResponseVersion() string                        { return r.wire.version }
func (r *DeltaResponse) GetReturnedResources() map[string]string           { return r.GetNextVersionMap() }
func (r *DeltaResponse) GetContext() context.Context                       { return r.ctx }

// GetRawResources returns the changed resources as
// go-control-plane's RawDeltaResponse.GetRawResources does.
func (r *DeltaResponse) GetRawResources() []types.ResourceWithTTL {
	return rawResources(r.snap, r.wire, false)
}

// rawResources finds the answer's resources in the snapshot that produced
// it, or decodes them from the bytes.
func rawResources(snap cache.ResourceSnapshot, w *wireResponse, withTTL bool) []types.ResourceWithTTL {
	var own map[string]types.ResourceWithTTL
	if snap != nil && snap.GetVersion(w.typeURL) == w.version {
		own = snap.GetResourcesAndTTL(w.typeURL)
	}
	out := make([]types.ResourceWithTTL, 0, len(w.resources))
	for i := range w.resources {
		res := &w.resources[i]
		if o, ok := own[res.name]; ok && o.Resource != nil {
			if !withTTL {
				o.TTL = nil
			}
			out = append(out, o)
			continue
		}
		var rt types.ResourceWithTTL
		if m, err := (&anypb.Any{TypeUrl: w.typeURL, Value: res.value}).UnmarshalNew(); err == nil {
			rt.Resource = m
		}
		if withTTL && res.ttlMs >= 0 {
			d := time.Duration(res.ttlMs) * time.Millisecond
			rt.TTL = &d
		}
		out = append(out, rt)
	}
	return out
}
