package meshring

/*
#include "shim.h"
*/
import "C"

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Watcher is one watch session on a Bus (Bus.Watch). It receives
// ipn.Notify-shaped JSON messages, in order, selected by its
// NotifyWatchOpt bits:
//
//   - With an initial bit (NotifyInitialBits), one first message right
//     away (SessionID, State, Prefs, Health, InitialStatus with every peer,
//     NetMap with every peer and SelfChange, ... as requested). With
//     NotifyChunkedInitial (a meshring extension) the peers come in
//     bounded PeersChanged chunks instead, the last one marked
//     "InitialComplete": true.
//   - With NotifyPeerChanges, peer deltas: PeersChanged (upsert by ID),
//     PeersRemoved, and with NotifyPeerPatches narrow PeerChangedPatch
//     entries; every UserProfiles entry a node refers to arrives in the
//     same or an earlier message.
//   - SelfChange (on every full netmap, as tailscaled sends it), and
//     published host events (Policy and PeerState only with their bits).
//
// Read messages with Next, or with the channel of C, not both: each message
// goes to one reader. A Watcher that reads slowly never slows the bus: the
// library coalesces what it has not read yet.
//
// Close ends the session. A Watcher that becomes unreachable without Close
// is closed by a finalizer, which also closes its C channel; keep the
// Watcher reachable for as long as you read from the channel.
type Watcher struct {
	w   *watcher
	bus *Bus // keeps the bus (and so the session) alive while w is used
}

// watcher is the state shared with the goroutine behind C. That goroutine
// refers to it, not to the Watcher, so an abandoned Watcher can still be
// finalized.
type watcher struct {
	// mu is read-held while h or fd is in use (including while blocked in
	// poll on fd), and write-held to free them.
	mu sync.RWMutex
	h  *C.mr_watcher // nil once freed
	fd int32         // the readiness fd, owned by h
	// rateLimited watchers wait on fd at most pollSlice at a time; see
	// next.
	rateLimited bool

	closed atomic.Bool
	done   chan struct{} // closed by close

	// turn admits one reader of the library at a time (Next or the C
	// goroutine): mr_watcher_next wants one caller at a time, and the wake
	// pipe one waiter.
	turn chan struct{}
	// wake is the self-pipe that context cancellation writes to; made on
	// the first cancellable Next, closed by free.
	wake atomic.Pointer[wakePipe]

	chOnce sync.Once
	ch     chan []byte
	chErr  atomic.Pointer[error]
}

func newWatcher(b *Bus, h *C.mr_watcher, fd int32, mask NotifyWatchOpt) *Watcher {
	w := &Watcher{
		w: &watcher{
			h:           h,
			fd:          fd,
			rateLimited: mask&NotifyRateLimit != 0,
			done:        make(chan struct{}),
			turn:        make(chan struct{}, 1),
		},
		bus: b,
	}
	runtime.SetFinalizer(w, func(w *Watcher) { w.w.close() })
	return w
}

func errWatcherClosed(op string) error { return newError(StatusClosed, op, "watcher is closed") }

// Next returns the next message, blocking until one is ready, ctx is done
// (then it returns ctx.Err(); an already done ctx always does), or the
// watcher or its bus is closed (then an error matching ErrClosed). Only one
// Next runs at a time; concurrent calls wait their turn.
//
// Next waits on the library's readiness fd with ppoll(2), together with a
// self-pipe that ctx's cancellation writes to (made on the first Next with
// a cancellable ctx), so a blocked Next wakes promptly on a message, on
// Close and on cancellation, and costs nothing while it waits: no polling
// interval and no busy waiting (except for NotifyRateLimit watchers, which
// wake every 50ms to work around a library bug; see next).
func (w *Watcher) Next(ctx context.Context) ([]byte, error) {
	defer runtime.KeepAlive(w)
	return w.w.next(ctx)
}

func (w *watcher) next(ctx context.Context) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if w.closed.Load() {
		return nil, errWatcherClosed("next")
	}
	select {
	case w.turn <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-w.done:
		return nil, errWatcherClosed("next")
	}
	defer func() { <-w.turn }()
	w.mu.RLock()
	defer w.mu.RUnlock()
	if w.h == nil {
		return nil, errWatcherClosed("next")
	}
	var pipe *wakePipe
	wakeFd := int32(-1)
	if ctx.Done() != nil {
		if pipe = w.wake.Load(); pipe == nil {
			p, err := newWakePipe()
			if err != nil {
				return nil, osError("next", "wake pipe", err)
			}
			pipe = &p
			w.wake.Store(pipe)
		}
		wakeFd = pipe.r
		stop := context.AfterFunc(ctx, w.wakeUp)
		defer stop()
	}
	for {
		msg, st, err := w.take()
		if st != StatusWouldBlock {
			return msg, err
		}
		// The pipe was drained before this check, so a cancellation after
		// it leaves the pipe readable and poll returns at once.
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		// Workaround: in meshring 0.1.0 the readiness fd of a
		// NotifyRateLimit watcher turns readable up to 1s after its
		// coalesced update is due (the bus's ticker thread is not woken
		// when mr_watcher_next records the due time, and sleeps up to 1s).
		// Such watchers therefore wait at most pollSlice before asking the
		// library again.
		timeout := time.Duration(-1)
		if w.rateLimited {
			timeout = pollSlice
		}
		woken, err := waitReadable(w.fd, wakeFd, timeout)
		if err != nil {
			return nil, osError("next", "poll", err)
		}
		if woken {
			pipe.drain()
		}
	}
}

// take makes one non-blocking mr_watcher_next call; w.mu must be
// read-held and the turn taken. StatusWouldBlock means no message yet.
func (w *watcher) take() ([]byte, Status, error) {
	var out C.mr_bytes
	var cerr C.mrgo_err
	switch st := Status(C.mrgo_watcher_next(w.h, 0, &out, &cerr)); st {
	case StatusOK:
		return takeBytes(&out), st, nil
	case StatusWouldBlock, StatusTimeout:
		return nil, StatusWouldBlock, nil
	default:
		return nil, st, errFromC(st, "next", &cerr)
	}
}

// wakeUp wakes a Next blocked in poll (context.AfterFunc). It may run after
// that Next returned and even after the watcher was freed: the read lock
// and the nil checks keep it from writing to a closed or reused fd. A
// stale wake-up only costs the next Next one extra loop.
func (w *watcher) wakeUp() {
	w.mu.RLock()
	defer w.mu.RUnlock()
	if p := w.wake.Load(); p != nil && w.h != nil {
		p.signal()
	}
}

func osError(op, what string, err error) error {
	e := &Error{Status: StatusIO, Op: op, Msg: what + ": " + err.Error()}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		e.Errno = errno
	}
	return e
}

// C returns a channel that delivers the watcher's messages, fed by a
// goroutine that waits on the library's readiness fd. The channel is
// unbuffered, so messages the reader has not taken yet stay in the library
// (which coalesces them for a slow reader). It is closed once the watcher
// or its bus is closed; Err then says why. Every call returns the same
// channel. Do not also call Next: the two would split the messages.
func (w *Watcher) C() <-chan []byte {
	defer runtime.KeepAlive(w)
	in := w.w
	in.chOnce.Do(func() {
		in.ch = make(chan []byte)
		go in.pump()
	})
	return in.ch
}

// Err returns the error that closed the channel returned by C (one
// matching ErrClosed after Close or the bus's Close), or nil while it is
// open or if C was never called.
func (w *Watcher) Err() error {
	if p := w.w.chErr.Load(); p != nil {
		return *p
	}
	return nil
}

func (w *watcher) pump() {
	for {
		msg, err := w.next(context.Background())
		if err == nil {
			select {
			case w.ch <- msg:
				continue
			case <-w.done:
				err = errWatcherClosed("next")
			}
		}
		w.chErr.Store(&err)
		close(w.ch)
		return
	}
}

// Close ends the session: a blocked Next returns promptly with an error
// matching ErrClosed, the C channel is closed, and pending messages are
// dropped. Close waits for calls in flight to leave the library, then frees
// the watcher. Closing again returns an ErrClosed error.
func (w *Watcher) Close() error {
	err := w.w.close()
	runtime.SetFinalizer(w, nil)
	runtime.KeepAlive(w)
	return err
}

func (w *watcher) close() error {
	if !w.closed.CompareAndSwap(false, true) {
		return errWatcherClosed("close")
	}
	close(w.done)
	st := StatusOK
	w.mu.RLock()
	if w.h != nil {
		// Wakes a reader blocked in poll: the fd stays readable after close.
		st = Status(C.mr_watcher_close(w.h))
	}
	w.mu.RUnlock()
	w.mu.Lock()
	if w.h != nil {
		C.mr_watcher_free(w.h)
		w.h = nil
	}
	if p := w.wake.Swap(nil); p != nil {
		p.close()
	}
	w.mu.Unlock()
	if st != StatusOK {
		return newError(st, "close", "")
	}
	return nil
}
