package meshring

/*
#include <stdlib.h>
#include "shim_repl.h"
*/
import "C"

import (
	"runtime"
	"sync"
	"sync/atomic"
	"unsafe"
)

// VolumeConfig opens a Volume; the zero value (or nil) means the library
// defaults: 4096-byte blocks, the size of the existing file, AUTO backend.
type VolumeConfig struct {
	// BlockSize is a power of two from 512 to 1 MiB; 0 means 4096.
	BlockSize uint32
	// BlockCount is the number of blocks; a shorter file is extended
	// (sparse). 0 takes the size of the existing file.
	BlockCount uint64
	// Create creates the file if it does not exist.
	Create bool
	// Direct opens the file with O_DIRECT (no page cache). Unaligned
	// buffers are copied through an aligned one; WriteBatch keeps up to 32
	// writes in flight on io_uring.
	Direct bool
	// Backend: BackendAuto (default: per kind of operation, the faster of
	// io_uring and pread/pwrite as measured), BackendURing, BackendBatch.
	Backend Backend
}

// BlockWrite is one extent of a batch: whole blocks of Data from Block on.
type BlockWrite struct {
	Block uint64
	Data  []byte
}

// Volume is a file of fixed-size blocks (the C mr_volume). It is safe for
// concurrent use. Close releases it; a Volume that becomes unreachable
// without Close is released by a finalizer. A Replication started on it
// holds its own reference, so the Volume may be closed first.
type Volume struct {
	// mu is read-held by every call while it uses h and write-held by
	// Close (and the finalizer) to free it.
	mu     sync.RWMutex
	h      *C.mr_volume
	closed atomic.Bool
	bs     uint32
	count  uint64
}

// OpenVolume opens (or with Create, creates) the volume file at path.
func OpenVolume(path string, cfg *VolumeConfig) (*Volume, error) {
	var c C.mr_volume_config
	C.mr_volume_config_init(&c)
	if cfg != nil {
		if cfg.BlockSize != 0 {
			c.block_size = C.uint32_t(cfg.BlockSize)
		}
		c.block_count = C.uint64_t(cfg.BlockCount)
		if cfg.Create {
			c.flags |= C.MR_VOLUME_CREATE
		}
		if cfg.Direct {
			c.flags |= C.MR_VOLUME_DIRECT
		}
		c.backend = C.uint32_t(cfg.Backend)
	}
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	var h *C.mr_volume
	var cerr C.mrgo_err
	if st := Status(C.mrgo_volume_open(cpath, &c, &h, &cerr)); st != StatusOK {
		return nil, errFromC(st, "open volume", &cerr)
	}
	v := &Volume{h: h, bs: uint32(C.mr_volume_block_size(h)), count: uint64(C.mr_volume_block_count(h))}
	runtime.SetFinalizer(v, (*Volume).finalize)
	return v, nil
}

// BlockSize is the volume's bytes per block.
func (v *Volume) BlockSize() uint32 { return v.bs }

// BlockCount is the number of blocks in the volume.
func (v *Volume) BlockCount() uint64 { return v.count }

func errVolumeClosed(op string) error { return newError(StatusClosed, op, "volume is closed") }

// acquire returns the handle with v.mu read-held, or an ErrClosed error.
func (v *Volume) acquire(op string) (*C.mr_volume, error) {
	if v.closed.Load() {
		return nil, errVolumeClosed(op)
	}
	v.mu.RLock()
	if v.h == nil {
		v.mu.RUnlock()
		return nil, errVolumeClosed(op)
	}
	return v.h, nil
}

// Read fills buf (a whole number of blocks) from block on.
func (v *Volume) Read(block uint64, buf []byte) error {
	h, err := v.acquire("read")
	if err != nil {
		return err
	}
	defer v.mu.RUnlock()
	defer runtime.KeepAlive(v)
	var cerr C.mrgo_err
	if st := Status(C.mrgo_volume_read(h, C.uint64_t(block), cBytes(buf), C.size_t(len(buf)), &cerr)); st != StatusOK {
		return errFromC(st, "read", &cerr)
	}
	return nil
}

// Write writes data (a whole number of blocks) from block on. It fails
// with ErrState while a Replication runs on the volume.
func (v *Volume) Write(block uint64, data []byte) error {
	h, err := v.acquire("write")
	if err != nil {
		return err
	}
	defer v.mu.RUnlock()
	defer runtime.KeepAlive(v)
	var cerr C.mrgo_err
	if st := Status(C.mrgo_volume_write(h, C.uint64_t(block), cBytes(data), C.size_t(len(data)), &cerr)); st != StatusOK {
		return errFromC(st, "write", &cerr)
	}
	return nil
}

// WriteBatch writes every extent as one batch (io_uring keeps up to 32 in
// flight where that measured faster). Extents must be inside the volume
// and must not overlap (ErrInvalidArgument, nothing written).
func (v *Volume) WriteBatch(writes []BlockWrite) error {
	h, err := v.acquire("write batch")
	if err != nil {
		return err
	}
	defer v.mu.RUnlock()
	defer runtime.KeepAlive(v)
	return withBatch(writes, "write batch", func(w *C.mr_block_write, n C.size_t, e *C.mrgo_err) C.mr_status {
		return C.mrgo_volume_write_batch(h, w, n, e)
	})
}

// withBatch lays writes out as a C array of mr_block_write pointing at the
// callers' slices (pinned for the call) and runs f on it.
func withBatch(writes []BlockWrite, op string, f func(*C.mr_block_write, C.size_t, *C.mrgo_err) C.mr_status) error {
	if len(writes) == 0 {
		return nil
	}
	size := C.size_t(len(writes)) * C.size_t(unsafe.Sizeof(C.mr_block_write{}))
	// C.malloc never returns nil: cgo aborts on allocation failure.
	arr := (*C.mr_block_write)(C.malloc(size))
	defer C.free(unsafe.Pointer(arr))
	items := unsafe.Slice(arr, len(writes))
	var pin runtime.Pinner
	defer pin.Unpin()
	for i, w := range writes {
		items[i].block = C.uint64_t(w.Block)
		items[i].len = C.size_t(len(w.Data))
		items[i].buf = nil
		if len(w.Data) > 0 {
			pin.Pin(&w.Data[0])
			items[i].buf = (*C.uint8_t)(unsafe.Pointer(&w.Data[0]))
		}
	}
	var cerr C.mrgo_err
	if st := Status(f(arr, C.size_t(len(writes)), &cerr)); st != StatusOK {
		return errFromC(st, op, &cerr)
	}
	return nil
}

// Flush makes every write that returned before it durable (fdatasync).
func (v *Volume) Flush() error {
	h, err := v.acquire("flush")
	if err != nil {
		return err
	}
	defer v.mu.RUnlock()
	defer runtime.KeepAlive(v)
	var cerr C.mrgo_err
	if st := Status(C.mrgo_volume_flush(h, &cerr)); st != StatusOK {
		return errFromC(st, "flush", &cerr)
	}
	return nil
}

// Close releases the caller's reference (a Replication on the volume keeps
// its own). Later calls fail with ErrClosed. Idempotent.
func (v *Volume) Close() error {
	if v.closed.Swap(true) {
		return nil
	}
	runtime.SetFinalizer(v, nil)
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.h != nil {
		C.mr_volume_free(v.h)
		v.h = nil
	}
	return nil
}

func (v *Volume) finalize() { _ = v.Close() }
