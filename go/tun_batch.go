package meshring

/*
#include "shim_msg.h"
*/
import "C"

import "runtime"

// GRO bits of a TUN with Offload: which flows WriteBatch coalesces.
const (
	GROTCP = C.MR_TUN_GRO_TCP // TCP segments of one flow
	GROUDP = C.MR_TUN_GRO_UDP // UDP datagrams of one flow (kernels with USO, 6.2+)
)

// WriteBatch writes every bufs[i][offset:] as one IP packet; a packet the
// kernel refuses does not stop the others. With Offload, TCP and UDP
// packets of one flow anywhere in each run of 64 packets are coalesced by
// wireguard-go's rules and handed to the kernel as one super-packet
// straight from bufs (which are only read). It returns how many packets were written and, if
// not all, the first failure (an *Error; its Errno says why the kernel
// refused, e.g. EINVAL for a coalesced packet a buggy kernel rejects).
func (t *TUN) WriteBatch(bufs [][]byte, offset int) (int, error) {
	if len(bufs) == 0 {
		return 0, nil
	}
	if err := checkOffset("write", bufs, offset); err != nil {
		return 0, err
	}
	h, err := t.acquire("write")
	if err != nil {
		return 0, err
	}
	defer t.mu.RUnlock()
	defer runtime.KeepAlive(t)
	cl := t.getCall()
	defer t.putCall(cl, 0)
	done := 0
	var first error
	// Up to directBatch buffers per call as direct arguments (see
	// mrgo_tun_write_direct); flows coalesce within each call, and one
	// super-packet holds at most 64 KiB, fewer packets than that.
	for start := 0; start < len(bufs); start += directBatch {
		n := min(len(bufs)-start, directBatch)
		var p directPtrs
		for i := 0; i < n; i++ {
			b := bufs[start+i][offset:]
			p[i] = cBytes(b)
			pk := &cl.c.pkts[i]
			pk.cap = C.size_t(len(b))
			pk.len = C.size_t(len(b))
			pk.proto = 0
		}
		st := tunWriteDirect(h, cl.c, n, &p)
		done += min(int(cl.c.count), n)
		if st != StatusOK && first == nil {
			first = errFromC(st, "write", &cl.c.err)
			if st == StatusClosed {
				return done, first
			}
		}
	}
	return done, first
}

// GRO returns the GROTCP / GROUDP bits WriteBatch coalesces with now (0
// without Offload).
func (t *TUN) GRO() (uint32, error) {
	var bits C.uint32_t
	err := t.control("gro", func(h *C.mr_tun, cerr *C.mrgo_err) C.mr_status { return C.mrgo_tun_gro(h, &bits, cerr) })
	if err != nil {
		return 0, err
	}
	return uint32(bits), nil
}

// DisableGRO stops coalescing the given GROTCP / GROUDP bits for good
// (wireguard-go's DisableTCPGRO / DisableUDPGRO).
func (t *TUN) DisableGRO(bits uint32) error {
	return t.control("disable gro", func(h *C.mr_tun, cerr *C.mrgo_err) C.mr_status {
		return C.mrgo_tun_disable_gro(h, C.uint32_t(bits), cerr)
	})
}
