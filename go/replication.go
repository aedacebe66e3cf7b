package meshring

/*
#include <stdlib.h>
#include "shim_repl.h"
*/
import "C"

import (
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

// ReplMode is the side of a replication (the C mr_repl_mode).
type ReplMode int

const (
	// ReplPrimary applies writes locally and sends them to the secondary.
	ReplPrimary ReplMode = C.MR_REPL_PRIMARY
	// ReplSecondary listens (or takes host connections) and applies the
	// primary's writes under its speculative view.
	ReplSecondary ReplMode = C.MR_REPL_SECONDARY
)

// ReplAck says when a primary's Write returns (the C mr_repl_ack).
type ReplAck int

const (
	// ReplAsync returns after the local write (DRBD protocol A).
	ReplAsync ReplAck = C.MR_REPL_ASYNC
	// ReplSync returns once the secondary applied the write (protocol C,
	// no flushes).
	ReplSync ReplAck = C.MR_REPL_SYNC
	// ReplDurable returns once the write is on stable storage on both
	// sides (protocol C with flushes; concurrent writers share fdatasyncs).
	ReplDurable ReplAck = C.MR_REPL_DURABLE
)

// ReplStage is a replication stage (QEMU's block replication stages).
type ReplStage int

const (
	StageNone           ReplStage = C.MR_REPL_STAGE_NONE
	StageRunning        ReplStage = C.MR_REPL_STAGE_RUNNING
	StageFailover       ReplStage = C.MR_REPL_STAGE_FAILOVER
	StageFailoverFailed ReplStage = C.MR_REPL_STAGE_FAILOVER_FAILED
	StageDone           ReplStage = C.MR_REPL_STAGE_DONE
)

func (s ReplStage) String() string {
	switch s {
	case StageNone:
		return "NONE"
	case StageRunning:
		return "RUNNING"
	case StageFailover:
		return "FAILOVER"
	case StageFailoverFailed:
		return "FAILOVER_FAILED"
	case StageDone:
		return "DONE"
	}
	return fmt.Sprintf("ReplStage(%d)", int(s))
}

// ReplConfig starts a Replication.
type ReplConfig struct {
	Mode ReplMode
	Ack  ReplAck
	// Key is the pre-shared key, 16 to 64 random bytes both sides hold;
	// required. Both sides prove it over fresh nonces and every frame
	// carries a MAC under a per-session key.
	Key []byte
	// ConnectTimeout bounds one connection attempt (primary); 0 = 1 s.
	ConnectTimeout time.Duration
	// PeerTimeout is the silence after which a link is declared dead; a
	// sync write waits at most this long; 0 = 5 s. Give both sides the
	// same value.
	PeerTimeout time.Duration
}

// ReplStats are a replication's counters (the C mr_repl_counters).
type ReplStats struct {
	Connected      bool
	Stage          ReplStage
	DirtyBlocks    uint64
	InflightWrites uint64
	WritesSent     uint64
	WritesApplied  uint64
	ResyncBlocks   uint64
	Connections    uint64
	Checkpoints    uint64
	ActiveBlocks   uint64
	HiddenBlocks   uint64
	Flushes        uint64
	Refused        uint64
}

// Replication is one side of a volume replication (the C mr_repl). It is
// safe for concurrent use: writes, reads, checkpoints and Err may come
// from different goroutines. Close stops it and releases it (calls waiting
// in the library return ErrClosed at once); one that becomes unreachable
// without Close is released by a finalizer.
type Replication struct {
	// mu is read-held by every call while it uses h, write-held to free
	// it. Close first closes the handle (unblocking waiting calls), then
	// takes mu.
	mu     sync.RWMutex
	h      *C.mr_repl
	closed atomic.Bool
}

func durationMS(d time.Duration, def int32) C.int32_t {
	if d <= 0 {
		return C.int32_t(def)
	}
	ms := (d + time.Millisecond - 1) / time.Millisecond
	if ms > 1<<31-1 {
		ms = 1<<31 - 1
	}
	return C.int32_t(ms)
}

// timeoutMS maps a Go timeout to the library's timeout_ms: < 0 waits
// forever, 0 does not wait.
func timeoutMS(d time.Duration) C.int32_t {
	if d < 0 {
		return -1
	}
	if d == 0 {
		return 0
	}
	return durationMS(d, 0)
}

// StartReplication makes v one side of a replication. Primary: addr is
// the secondary ("127.0.0.1:7400"), connected in the background. Secondary:
// addr is where to listen (port 0 picks one; see LocalAddr). addr "": no
// network of its own; hand over connections with AddConn.
func StartReplication(v *Volume, addr string, cfg ReplConfig) (*Replication, error) {
	vh, err := v.acquire("start replication")
	if err != nil {
		return nil, err
	}
	defer v.mu.RUnlock()
	defer runtime.KeepAlive(v)
	var c C.mr_repl_config
	C.mr_repl_config_init(&c)
	c.mode = C.uint32_t(cfg.Mode)
	c.ack = C.uint32_t(cfg.Ack)
	c.connect_timeout_ms = durationMS(cfg.ConnectTimeout, 1000)
	c.peer_timeout_ms = durationMS(cfg.PeerTimeout, 5000)
	var caddr *C.char
	if addr != "" {
		caddr = C.CString(addr)
		defer C.free(unsafe.Pointer(caddr))
	}
	var h *C.mr_repl
	var cerr C.mrgo_err
	st := Status(C.mrgo_repl_start(vh, caddr, &c, cBytes(cfg.Key), C.size_t(len(cfg.Key)), &h, &cerr))
	runtime.KeepAlive(cfg.Key)
	if st != StatusOK {
		return nil, errFromC(st, "start replication", &cerr)
	}
	r := &Replication{h: h}
	runtime.SetFinalizer(r, (*Replication).finalize)
	return r, nil
}

func errReplClosed(op string) error { return newError(StatusClosed, op, "replication is closed") }

func (r *Replication) acquire(op string) (*C.mr_repl, error) {
	if r.closed.Load() {
		return nil, errReplClosed(op)
	}
	r.mu.RLock()
	if r.h == nil {
		r.mu.RUnlock()
		return nil, errReplClosed(op)
	}
	return r.h, nil
}

// call runs f on the handle with the read lock held and converts its status.
func (r *Replication) call(op string, f func(*C.mr_repl, *C.mrgo_err) C.mr_status) error {
	h, err := r.acquire(op)
	if err != nil {
		return err
	}
	defer r.mu.RUnlock()
	defer runtime.KeepAlive(r)
	var cerr C.mrgo_err
	if st := Status(f(h, &cerr)); st != StatusOK {
		return errFromC(st, op, &cerr)
	}
	return nil
}

// Read fills buf (whole blocks) from block: the primary's volume; on a
// running secondary its speculative view (active, hidden, base).
func (r *Replication) Read(block uint64, buf []byte) error {
	return r.call("read", func(h *C.mr_repl, e *C.mrgo_err) C.mr_status {
		return C.mrgo_repl_read(h, C.uint64_t(block), cBytes(buf), C.size_t(len(buf)), e)
	})
}

// Write writes data (whole blocks) from block. Primary: applied locally
// and replicated per the ack mode; only a local failure fails it, and a
// replication problem is reported by Err (so with ReplSync or ReplDurable,
// nil from Write and then from Err means the secondary has it).
// Secondary: into its active layer.
func (r *Replication) Write(block uint64, data []byte) error {
	return r.call("write", func(h *C.mr_repl, e *C.mrgo_err) C.mr_status {
		return C.mrgo_repl_write(h, C.uint64_t(block), cBytes(data), C.size_t(len(data)), e)
	})
}

// WriteBatch writes every extent in one call: sent together, applied
// locally as one batch, acknowledged together. Extents must not overlap.
func (r *Replication) WriteBatch(writes []BlockWrite) error {
	h, err := r.acquire("write batch")
	if err != nil {
		return err
	}
	defer r.mu.RUnlock()
	defer runtime.KeepAlive(r)
	return withBatch(writes, "write batch", func(w *C.mr_block_write, n C.size_t, e *C.mrgo_err) C.mr_status {
		return C.mrgo_repl_write_batch(h, w, n, e)
	})
}

// Checkpoint (primary) waits until the secondary's view equals the
// primary's, at most timeout (> 0; < 0 waits forever). On a secondary: a
// local checkpoint.
func (r *Replication) Checkpoint(timeout time.Duration) error {
	return r.call("checkpoint", func(h *C.mr_repl, e *C.mrgo_err) C.mr_status {
		return C.mrgo_repl_checkpoint(h, timeoutMS(timeout), e)
	})
}

// Failover: a secondary takes over (its active layer is committed, the
// volume stands alone); a primary stops replicating and continues alone.
func (r *Replication) Failover() error {
	return r.call("failover", func(h *C.mr_repl, e *C.mrgo_err) C.mr_status { return C.mrgo_repl_failover(h, e) })
}

// Stop stops replicating without failover (stage DONE).
func (r *Replication) Stop() error {
	return r.call("stop", func(h *C.mr_repl, e *C.mrgo_err) C.mr_status { return C.mrgo_repl_stop(h, e) })
}

// Err returns (and clears) the stored replication error: a refused peer
// (ErrAuth for a failed authentication, ErrState for a second primary), a
// lost link, a write not replicated. nil while running without one;
// ErrState once not running.
func (r *Replication) Err() error {
	return r.call("get error", func(h *C.mr_repl, e *C.mrgo_err) C.mr_status { return C.mrgo_repl_get_error(h, e) })
}

// Stage returns the current stage.
func (r *Replication) Stage() (ReplStage, error) {
	var st C.mr_repl_stage
	err := r.call("stage", func(h *C.mr_repl, e *C.mrgo_err) C.mr_status { return C.mrgo_repl_get_stage(h, &st, e) })
	return ReplStage(st), err
}

// WaitSynced waits until (primary) the secondary is connected and holds
// every block written so far, or (secondary) a primary is connected.
// timeout < 0 waits forever, 0 checks (ErrWouldBlock if not yet).
func (r *Replication) WaitSynced(timeout time.Duration) error {
	return r.call("wait synced", func(h *C.mr_repl, e *C.mrgo_err) C.mr_status {
		return C.mrgo_repl_wait_synced(h, timeoutMS(timeout), e)
	})
}

// Stats returns the counters.
func (r *Replication) Stats() (ReplStats, error) {
	var c C.mr_repl_counters
	err := r.call("stats", func(h *C.mr_repl, e *C.mrgo_err) C.mr_status { return C.mrgo_repl_stats(h, &c, e) })
	return ReplStats{
		Connected:      c.connected != 0,
		Stage:          ReplStage(c.stage),
		DirtyBlocks:    uint64(c.dirty_blocks),
		InflightWrites: uint64(c.inflight_writes),
		WritesSent:     uint64(c.writes_sent),
		WritesApplied:  uint64(c.writes_applied),
		ResyncBlocks:   uint64(c.resync_blocks),
		Connections:    uint64(c.connections),
		Checkpoints:    uint64(c.checkpoints),
		ActiveBlocks:   uint64(c.active_blocks),
		HiddenBlocks:   uint64(c.hidden_blocks),
		Flushes:        uint64(c.flushes),
		Refused:        uint64(c.refused),
	}, err
}

// LocalAddr is the address a secondary listens on.
func (r *Replication) LocalAddr() (netip.AddrPort, error) {
	var a C.mr_addr
	err := r.call("local addr", func(h *C.mr_repl, e *C.mrgo_err) C.mr_status { return C.mrgo_repl_local_addr(h, &a, e) })
	if err != nil {
		return netip.AddrPort{}, err
	}
	return addrFromC(&a), nil
}

// AddConn hands a connected stream connection (a *net.TCPConn or
// *net.UnixConn, e.g. one inside the host's own tunnel) to a replication
// started with addr "". The library gets its own duplicate of the socket;
// conn is closed on success and left to the caller on failure.
func (r *Replication) AddConn(conn syscall.Conn) error {
	raw, err := conn.SyscallConn()
	if err != nil {
		return newError(StatusInvalidArgument, "add connection", err.Error())
	}
	var fd int
	var dupErr error
	if err := raw.Control(func(s uintptr) { fd, dupErr = syscall.Dup(int(s)) }); err != nil {
		return newError(StatusInvalidArgument, "add connection", err.Error())
	}
	if dupErr != nil {
		return newError(StatusIO, "add connection", dupErr.Error())
	}
	syscall.CloseOnExec(fd)
	// The library makes the socket blocking once it takes it over; the
	// duplicate shares the file description with conn, which is therefore
	// closed right after.
	err = r.call("add connection", func(h *C.mr_repl, e *C.mrgo_err) C.mr_status {
		return C.mrgo_repl_add_connection(h, C.int(fd), e)
	})
	if err != nil {
		syscall.Close(fd)
		return err
	}
	if c, ok := conn.(interface{ Close() error }); ok {
		_ = c.Close()
	}
	return nil
}

// Close stops the replication and releases it: calls waiting in the
// library (a sync write waiting for its acknowledgement, a checkpoint)
// return ErrClosed at once, later calls too. Idempotent.
func (r *Replication) Close() error {
	if r.closed.Swap(true) {
		return nil
	}
	runtime.SetFinalizer(r, nil)
	// Close first, under the read lock, so that calls in progress return;
	// then free once they are out.
	r.mu.RLock()
	if r.h != nil {
		C.mr_repl_close(r.h)
	}
	r.mu.RUnlock()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.h != nil {
		C.mr_repl_free(r.h)
		r.h = nil
	}
	return nil
}

func (r *Replication) finalize() { _ = r.Close() }

// Compile-time checks that the connection types AddConn documents fit.
var (
	_ syscall.Conn = (*net.TCPConn)(nil)
	_ syscall.Conn = (*net.UnixConn)(nil)
)
