package meshring

import (
	"math"
	"sync/atomic"
	"time"
)

// pollSlice bounds every blocking library call.
//
// mr_udp_recv and mr_udp_send take a timeout that is fixed when the call
// starts, but a net.PacketConn deadline may be set, moved or cleared while a
// call is already blocked. Rather than waking the library call another way,
// the binding never blocks in C longer than pollSlice: it passes
// min(time left until the deadline, pollSlice) as timeout_ms and, when the
// library reports MR_TIMEOUT, re-reads the deadline and calls again. A new
// deadline thus takes effect within pollSlice; an idle blocked reader costs
// one wake-up per slice (not busy waiting). Close does not depend on this
// loop: mr_udp_close wakes blocked calls immediately.
const pollSlice = 50 * time.Millisecond

// monoBase anchors deadlines to the monotonic clock.
var monoBase = time.Now()

// noDeadline is the stored value meaning "no deadline".
const noDeadline = math.MaxInt64

// deadline is a deadline readable and settable from any goroutine. It
// stores the deadline as nanoseconds since monoBase (monotonic when the
// time.Time carries a monotonic reading, as time.Now().Add(d) does).
type deadline struct {
	ns atomic.Int64
}

func (d *deadline) init() { d.ns.Store(noDeadline) }

// set stores t; the zero time clears the deadline.
func (d *deadline) set(t time.Time) {
	if t.IsZero() {
		d.ns.Store(noDeadline)
		return
	}
	v := int64(t.Sub(monoBase))
	if v == noDeadline {
		v-- // a deadline ~292 years away: still a deadline
	}
	d.ns.Store(v)
}

// timeoutMS returns the timeout_ms for the next library call: the time left
// rounded up to whole milliseconds (so the call never returns before the
// deadline), capped at pollSlice. ok is false if the deadline has passed.
func (d *deadline) timeoutMS() (ms int32, ok bool) {
	v := d.ns.Load()
	if v == noDeadline {
		return int32(pollSlice / time.Millisecond), true
	}
	left := time.Duration(v) - time.Since(monoBase)
	if left <= 0 {
		return 0, false
	}
	if left > pollSlice {
		left = pollSlice
	}
	return int32((left + time.Millisecond - 1) / time.Millisecond), true
}
