package meshring

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// recorder is a Go protocol kind: it records what the runtime asks of it
// and answers Start as told.
type recorder struct {
	mu           sync.Mutex
	starts       []string
	shutdowns    int
	reconfigures int
	routes       map[string]Route
	withdrawals  int
	startAnswer  ProtoState
	agree        bool
	imports      int   // routes Start imports (10.0.x.0/24)
	exportErr    error // the first failed call back from Export
}

func newRecorder(answer ProtoState) *recorder {
	return &recorder{routes: map[string]Route{}, startAnswer: answer, agree: true}
}

func (k *recorder) Start(rt *Runtime, proto string, config json.RawMessage) ProtoState {
	k.mu.Lock()
	k.starts = append(k.starts, proto+" "+string(config))
	n, answer := k.imports, k.startAnswer
	k.mu.Unlock()
	for i := 0; i < n; i++ {
		if err := rt.Import(proto, fmt.Sprintf("10.0.%d.0/24", i), 0, json.RawMessage(`{"i":1}`)); err != nil {
			return ProtoDown
		}
	}
	return answer
}

func (k *recorder) Shutdown(rt *Runtime, proto string) ProtoState {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.shutdowns++
	return ProtoDown
}

func (k *recorder) Reconfigure(rt *Runtime, proto string, oldConfig, newConfig json.RawMessage) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.reconfigures++
	return k.agree
}

func (k *recorder) Export(rt *Runtime, proto string, r Route) {
	// A call back into the runtime from the loop thread must work.
	// Recorded, not panicked: a panic here would only be recovered and
	// logged on the loop thread (see checkExports).
	_, err := rt.ShowRoute(r.Prefix, "")
	k.mu.Lock()
	defer k.mu.Unlock()
	if err != nil && !errors.Is(err, ErrClosed) && k.exportErr == nil {
		k.exportErr = fmt.Errorf("ShowRoute from Export of %s: %w", proto, err)
	}
	if r.Withdrawn {
		k.withdrawals++
		delete(k.routes, r.Prefix)
		return
	}
	k.routes[r.Prefix] = r
}

// checkExports fails t if a call back from Export failed (call it after WaitIdle).
func (k *recorder) checkExports(t *testing.T) {
	t.Helper()
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.exportErr != nil {
		t.Error(k.exportErr)
	}
}

func (k *recorder) snapshot() (starts []string, shutdowns, reconfigures, routes, withdrawals int) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]string(nil), k.starts...), k.shutdowns, k.reconfigures, len(k.routes), k.withdrawals
}

type protoView struct {
	Name, Kind, State, Info string
	Disabled                bool
	Routes                  int
}

func showProtocols(t *testing.T, rt *Runtime) map[string]protoView {
	t.Helper()
	b, err := rt.ShowProtocols()
	if err != nil {
		t.Fatal(err)
	}
	var list []protoView
	if err := json.Unmarshal(b, &list); err != nil {
		t.Fatal(err)
	}
	m := map[string]protoView{}
	for _, p := range list {
		m[p.Name] = p
	}
	return m
}

func TestRuntimeDrivesAGoKind(t *testing.T) {
	rt, err := NewRuntime(&RuntimeOptions{FeedChunk: 8})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	src := newRecorder(ProtoUp)
	src.imports = 100
	sink := newRecorder(ProtoStart) // reports up later, from a goroutine
	if err := rt.RegisterKind("src", src); err != nil {
		t.Fatal(err)
	}
	if err := rt.RegisterKind("sink", sink); err != nil {
		t.Fatal(err)
	}
	if err := rt.RegisterKind("sink", sink); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("duplicate kind: %v", err)
	}
	cfg := `{"protocols":[{"name":"s","kind":"static","routes":[{"prefix":"192.0.2.0/24"}]},
		{"name":"src","kind":"src"},{"name":"out","kind":"sink","config":{"v":1}}]}`
	if err := rt.Commit(cfg, CommitSoft); err != nil {
		t.Fatal(err)
	}
	if err := rt.WaitIdle(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if got := showProtocols(t, rt)["out"].State; got != "start" {
		t.Fatalf("out is %q, want start", got)
	}
	done := make(chan error)
	go func() { done <- rt.NotifyState("out", ProtoUp, "ready") }()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := rt.WaitIdle(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	starts, _, _, routes, _ := sink.snapshot()
	if routes != 101 || len(starts) != 1 || starts[0] != `out {"v":1}` {
		t.Fatalf("sink: starts %v routes %d", starts, routes)
	}
	view := showProtocols(t, rt)["out"]
	if view.State != "up" || view.Info != "ready" {
		t.Fatalf("out: %+v", view)
	}
	if err := rt.NotifyState("out", ProtoStart, ""); !errors.Is(err, ErrState) {
		t.Fatalf("illegal transition: %v", err)
	}
	// Concurrent imports from goroutines reach the sink.
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 25; i++ {
				if err := rt.Import("src", fmt.Sprintf("10.%d.%d.0/24", 10+g, i), 0, nil); err != nil {
					t.Error(err)
				}
			}
		}(g)
	}
	wg.Wait()
	if err := rt.WaitIdle(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if _, _, _, routes, _ := sink.snapshot(); routes != 201 {
		t.Fatalf("sink has %d routes, want 201", routes)
	}
	// Reconfigure in place, then a refusal that restarts.
	if err := rt.Commit(`{"protocols":[{"name":"src","kind":"src"},{"name":"out","kind":"sink","config":{"v":2}}]}`, CommitSoft); err != nil {
		t.Fatal(err)
	}
	if err := rt.WaitIdle(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	_, shut, reconf, routes, _ := sink.snapshot()
	if shut != 0 || reconf != 1 || routes != 200 {
		t.Fatalf("after in-place reconfigure: shutdowns %d reconfigures %d routes %d", shut, reconf, routes)
	}
	sink.mu.Lock()
	sink.agree = false
	sink.startAnswer = ProtoUp
	sink.mu.Unlock()
	if err := rt.Commit(`{"protocols":[{"name":"src","kind":"src"},{"name":"out","kind":"sink","config":{"v":3}}]}`, CommitSoft); err != nil {
		t.Fatal(err)
	}
	if err := rt.WaitIdle(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if starts, shut, _, _, _ := sink.snapshot(); shut != 1 || len(starts) != 2 {
		t.Fatalf("refusal: shutdowns %d starts %v", shut, starts)
	}
	// Pattern commands and flush on disable.
	if n, err := rt.Disable("s*"); err != nil || n != 1 { // "src" (the static one went with the v2 commit)
		t.Fatalf("disable s*: %d %v", n, err)
	}
	if err := rt.WaitIdle(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if _, _, _, routes, _ := sink.snapshot(); routes != 0 {
		t.Fatalf("sink still has %d routes after the flush", routes)
	}
	src.checkExports(t)
	sink.checkExports(t)
	if _, err := rt.Enable("nothing"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("enable nothing: %v", err)
	}
	// Bad configs change nothing.
	before, _ := rt.ShowProtocols()
	if err := rt.Commit(`{"protocols":[{"name":"x","kind":"nope"}]}`, CommitSoft); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("unknown kind: %v", err)
	}
	if err := rt.Commit(`{`, CommitSoft); !errors.Is(err, ErrParse) {
		t.Fatalf("bad json: %v", err)
	}
	after, _ := rt.ShowProtocols()
	if string(before) != string(after) {
		t.Fatal("a failed commit changed the protocols")
	}
	ev, err := rt.NextEvent(time.Second)
	if err != nil || !json.Valid(ev) {
		t.Fatalf("event: %s %v", ev, err)
	}
	if err := rt.Close(); err != nil {
		t.Fatal(err)
	}
	if err := rt.Import("src", "10.0.0.0/8", 0, nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("after close: %v", err)
	}
	if _, err := rt.NextEvent(-1); !errors.Is(err, ErrClosed) {
		t.Fatalf("next event after close: %v", err)
	}
}

func TestRuntimeNetmapFromBus(t *testing.T) {
	bus, err := NewBus(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer bus.Close()
	rt, err := NewRuntime(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	sink := newRecorder(ProtoUp)
	if err := rt.RegisterKind("sink", sink); err != nil {
		t.Fatal(err)
	}
	if err := bus.Apply([]byte(`{"Peers":[{"ID":7,"StableID":"n7","Name":"p7","AllowedIPs":["100.64.0.7/32","10.7.0.0/16"]}]}`)); err != nil {
		t.Fatal(err)
	}
	if err := rt.AttachBus(bus); err != nil {
		t.Fatal(err)
	}
	if err := rt.Commit(`{"protocols":[{"name":"nm","kind":"netmap"},{"name":"out","kind":"sink"}]}`, CommitSoft); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		rt.WaitIdle(time.Second)
		if _, _, _, n, _ := sink.snapshot(); n == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("netmap routes never reached the sink")
		}
		time.Sleep(5 * time.Millisecond)
	}
	sink.mu.Lock()
	r := sink.routes["10.7.0.0/16"]
	sink.mu.Unlock()
	var attrs struct {
		Peer int64  `json:"peer"`
		Name string `json:"name"`
	}
	if err := json.Unmarshal(r.Attrs, &attrs); err != nil || attrs.Peer != 7 || attrs.Name != "p7" || r.Proto != "nm" {
		t.Fatalf("route %+v attrs %+v %v", r, attrs, err)
	}
	sink.checkExports(t)
}

// panicky panics in the hooks it is told to; it must cost only its own
// protocol, not the process.
type panicky struct {
	*recorder
	inStart, inShutdown, inReconfigure, inExport bool
}

func (k *panicky) Shutdown(rt *Runtime, proto string) ProtoState {
	if k.inShutdown {
		panic("shutdown blew up")
	}
	return k.recorder.Shutdown(rt, proto)
}

func (k *panicky) Start(rt *Runtime, proto string, config json.RawMessage) ProtoState {
	if k.inStart {
		panic("start blew up")
	}
	return k.recorder.Start(rt, proto, config)
}

func (k *panicky) Reconfigure(rt *Runtime, proto string, oldConfig, newConfig json.RawMessage) bool {
	if k.inReconfigure {
		panic("reconfigure blew up")
	}
	return k.recorder.Reconfigure(rt, proto, oldConfig, newConfig)
}

func (k *panicky) Export(rt *Runtime, proto string, r Route) {
	if k.inExport {
		panic("export blew up")
	}
	k.recorder.Export(rt, proto, r)
}

func TestRuntimeSurvivesAPanickingKind(t *testing.T) {
	rt, err := NewRuntime(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	bad := &panicky{recorder: newRecorder(ProtoUp), inStart: true}
	good := newRecorder(ProtoUp)
	good.imports = 3
	if err := rt.RegisterKind("bad", bad); err != nil {
		t.Fatal(err)
	}
	if err := rt.RegisterKind("good", good); err != nil {
		t.Fatal(err)
	}
	// b fails each start until the restart limit disables it.
	if err := rt.Commit(`{"protocols":[{"name":"b","kind":"bad"},{"name":"g","kind":"good"}]}`, CommitSoft); err != nil {
		t.Fatal(err)
	}
	if err := rt.WaitIdle(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	view := showProtocols(t, rt)
	if b := view["b"]; b.State != "down" || !strings.Contains(b.Info, "start blew up") {
		t.Fatalf("b after a panicking Start: %+v", b)
	}
	if g := view["g"]; g.State != "up" || g.Routes != 3 {
		t.Fatalf("g: %+v", g)
	}
	// A panicking Export drops the export; a panicking Reconfigure restarts.
	bad.mu.Lock()
	bad.inStart, bad.inExport, bad.inReconfigure = false, true, true
	bad.mu.Unlock()
	if err := rt.Commit(`{"protocols":[{"name":"b","kind":"bad","config":{"v":2}},{"name":"g","kind":"good"}]}`, CommitSoft); err != nil {
		t.Fatal(err)
	}
	if _, err := rt.Enable("b"); err != nil {
		t.Fatal(err)
	}
	if err := rt.WaitIdle(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if b := showProtocols(t, rt)["b"]; b.State != "up" {
		t.Fatalf("b after enable: %+v", b)
	}
	if err := rt.Commit(`{"protocols":[{"name":"b","kind":"bad","config":{"v":3}},{"name":"g","kind":"good"}]}`, CommitSoft); err != nil {
		t.Fatal(err)
	}
	if err := rt.WaitIdle(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if b := showProtocols(t, rt)["b"]; b.State != "up" {
		t.Fatalf("b after a panicking Reconfigure: %+v", b)
	}
	if starts, shut, _, routes, _ := bad.snapshot(); len(starts) < 2 || shut < 1 || routes != 0 {
		t.Fatalf("bad: starts %v shutdowns %d routes %d (exports should be dropped)", starts, shut, routes)
	}
	// A panicking Shutdown still takes it down.
	bad.mu.Lock()
	bad.inShutdown = true
	bad.mu.Unlock()
	if _, err := rt.Disable("b"); err != nil {
		t.Fatal(err)
	}
	if err := rt.WaitIdle(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if b := showProtocols(t, rt)["b"]; b.State != "down" || !strings.Contains(b.Info, "shutdown blew up") {
		t.Fatalf("b after a panicking Shutdown: %+v", b)
	}
	// The others keep working.
	if err := rt.Import("g", "192.0.2.0/24", 0, nil); err != nil {
		t.Fatal(err)
	}
	if err := rt.WaitIdle(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if g := showProtocols(t, rt)["g"]; g.State != "up" || g.Routes != 4 {
		t.Fatalf("g at the end: %+v", g)
	}
	good.checkExports(t)
}
