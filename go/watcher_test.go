package meshring

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"
)

func TestWatcherNextContext(t *testing.T) {
	b := newBus(t, nil)
	w := mustWatch(t, b, NotifyInitialState|NotifyPeerChanges)

	// A done context wins even over a pending message.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := w.Next(ctx); err != context.Canceled {
		t.Fatalf("Next(cancelled ctx) = %v, want context.Canceled", err)
	}
	if n := nextNotify(t, w); n.SessionID == "" {
		t.Fatalf("first message after a cancelled Next: %s", n.raw)
	}

	// Nothing pending: the deadline ends the wait.
	const d = 50 * time.Millisecond
	start := time.Now()
	ctx, cancel = context.WithTimeout(context.Background(), d)
	dl, _ := ctx.Deadline()
	_, err := w.Next(ctx)
	cancel()
	if now := time.Now(); err != context.DeadlineExceeded || now.Before(dl) || now.Sub(start) > d+time.Second {
		t.Fatalf("Next(%v timeout) = %v after %v, want context.DeadlineExceeded after about %v", d, err, now.Sub(start), d)
	}

	// Cancellation wakes a blocked Next.
	ctx, cancel = context.WithCancel(context.Background())
	time.AfterFunc(30*time.Millisecond, cancel)
	start = time.Now()
	if _, err := w.Next(ctx); err != context.Canceled || time.Since(start) > time.Second {
		t.Fatalf("Next = %v after %v, want context.Canceled promptly", err, time.Since(start))
	}

	// The stale wake-ups left behind do not disturb later reads, and a
	// blocked Next wakes for a message.
	go func() {
		time.Sleep(30 * time.Millisecond)
		b.Apply([]byte(`{"PeersChanged": [{"ID": 42}]}`))
	}()
	if n := nextNotify(t, w); len(n.PeersChanged) != 1 || n.PeersChanged[0].ID != 42 {
		t.Fatalf("Next after cancellations: %s", n.raw)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := w.Next(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Next with nothing pending = %v", err)
	}
}

func TestWatcherCloseUnblocksNext(t *testing.T) {
	b := newBus(t, nil)
	w, err := b.Watch(NotifyPeerChanges)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 2)
	for i := 0; i < 2; i++ { // one in poll, one waiting for its turn
		go func() {
			_, err := w.Next(context.Background())
			done <- err
		}()
	}
	time.Sleep(30 * time.Millisecond)
	start := time.Now()
	if err := w.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for i := 0; i < 2; i++ {
		select {
		case err := <-done:
			wantStatus(t, err, ErrClosed, "next")
			if !errors.Is(err, net.ErrClosed) {
				t.Errorf("err = %v, want one matching net.ErrClosed", err)
			}
		case <-time.After(2 * time.Second):
			t.Fatal("Close did not unblock Next")
		}
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Next returned %v after Close", d)
	}
	_, err = w.Next(context.Background())
	wantStatus(t, err, ErrClosed, "next")
	wantStatus(t, w.Close(), ErrClosed, "close")
	// The bus does not mind a closed watcher.
	mustApply(t, b, `{"PeersChanged": [{"ID": 1}]}`)
}

func TestWatcherChannel(t *testing.T) {
	b := newBus(t, nil)
	mustApply(t, b, baseMapResponse)
	w, err := b.Watch(NotifyInitialState | NotifyInitialStatus | NotifyPeerChanges | NotifyChunkedInitial)
	if err != nil {
		t.Fatal(err)
	}
	ch := w.C()
	if w.C() != ch {
		t.Fatal("C returned a different channel the second time")
	}
	recv := func() *Notify {
		t.Helper()
		select {
		case msg, ok := <-ch:
			if !ok {
				t.Fatalf("channel closed early: %v", w.Err())
			}
			return decodeNotify(t, msg)
		case <-time.After(5 * time.Second):
			t.Fatal("no message on C")
			return nil
		}
	}
	v := newPeerView()
	for n := recv(); ; n = recv() {
		v.apply(t, n)
		if n.InitialComplete {
			break
		}
	}
	for i, step := range deltaSteps {
		mustApply(t, b, step)
		mustPublish(t, b, fmt.Sprintf(`{"ErrMessage": "step %d"}`, i))
		for n := recv(); n.ErrMessage == nil; n = recv() {
			v.apply(t, n)
		}
	}
	v.check(t, b, "C")
	if w.Err() != nil {
		t.Errorf("Err() = %v while open", w.Err())
	}

	mustApply(t, b, `{"PeersChanged": [{"ID": 77}]}`) // left unread
	if err := w.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	waitClosed(t, ch)
	wantStatus(t, w.Err(), ErrClosed, "")
	if got := w.C(); got != ch {
		t.Error("C after Close returned another channel")
	}
}

// C on a closed watcher gives a closed channel.
func TestWatcherChannelAfterClose(t *testing.T) {
	b := newBus(t, nil)
	w, err := b.Watch(NotifyPeerChanges)
	if err != nil {
		t.Fatal(err)
	}
	w.Close()
	waitClosed(t, w.C())
	wantStatus(t, w.Err(), ErrClosed, "")
}

// An abandoned Watcher (never closed) is closed by its finalizer, which
// also ends its C goroutine and channel.
func TestWatcherFinalizer(t *testing.T) {
	b := newBus(t, nil)
	ch := func() <-chan []byte {
		w, err := b.Watch(NotifyPeerChanges)
		if err != nil {
			t.Fatal(err)
		}
		return w.C()
	}()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		runtime.GC()
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatal("abandoned watcher's channel still open after 5s of GC")
}

// Concurrent use under the race detector: appliers, a channel reader, a
// Next reader, lookups, and closes racing with all of them.
func TestBusConcurrent(t *testing.T) {
	b, err := NewBus(&BusOptions{Backlog: 16, InitialChunk: 8})
	if err != nil {
		t.Fatal(err)
	}
	mustApply(t, b, baseMapResponse)
	cw := mustWatch(t, b, NotifyInitialStatus|NotifyPeerChanges)
	nw := mustWatch(t, b, NotifyInitialStatus|NotifyPeerPatches)
	pw := mustWatch(t, b, NotifyInitialNetMap) // legacy: whole NetMaps

	var wg sync.WaitGroup
	for g := 0; g < 3; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 40; i++ {
				id := 100 + g*100 + i%10
				upd := fmt.Sprintf(`{"PeersChanged": [{"ID": %d, "N": %d}], "PeersChangedPatch": [{"NodeID": %d, "Online": %v}]}`, id, i, id-1, i%2 == 0)
				if i%7 == 0 {
					upd = fmt.Sprintf(`{"PeersRemoved": [%d]}`, id-3)
				}
				if err := b.Apply([]byte(upd)); err != nil {
					t.Errorf("Apply: %v", err)
					return
				}
				b.Peer(int64(id))
			}
		}(g)
	}
	readers := sync.WaitGroup{}
	readers.Add(3)
	go func() {
		defer readers.Done()
		for range cw.C() {
		}
	}()
	for _, w := range []*Watcher{nw, pw} {
		go func(w *Watcher) {
			defer readers.Done()
			for {
				if _, err := w.Next(context.Background()); err != nil {
					if !errors.Is(err, ErrClosed) {
						t.Errorf("Next: %v", err)
					}
					return
				}
			}
		}(w)
	}
	wg.Wait()

	// Closing the bus while readers are active ends every reader.
	var closers sync.WaitGroup
	closers.Add(2)
	go func() { defer closers.Done(); b.Close() }()
	go func() { defer closers.Done(); nw.Close() }()
	closers.Wait()
	finished := make(chan struct{})
	go func() { readers.Wait(); close(finished) }()
	select {
	case <-finished:
	case <-time.After(5 * time.Second):
		t.Fatal("readers did not end after Close")
	}
}
