package meshring

import (
	"bytes"
	"errors"
	"net/netip"
	"testing"
)

// GSO send, GRO receive, over loopback: one 24000-byte buffer leaves as
// 20 datagrams of 1200 bytes and arrives (partly) coalesced again.
func TestGSOGRORoundTrip(t *testing.T) {
	const seg, nseg = 1200, 20
	for _, bc := range backendCases {
		t.Run(bc.name, func(t *testing.T) {
			a := listen(t, "udp4", "127.0.0.1:0", Config{Backend: bc.backend, GSO: true})
			b := listen(t, "udp4", "127.0.0.1:0", Config{Backend: bc.backend, GRO: true})
			a.SetDeadline(deadlineSoon())
			b.SetDeadline(deadlineSoon())

			big := make([]byte, seg*nseg)
			for i := range big {
				big[i] = byte(i * 7 / 3)
			}
			tail := bytes.Repeat([]byte("tail"), 125) // 500 bytes, no GSO
			err := a.WriteBatchSegments([][]byte{big, tail}, []int{seg, 0}, b.LocalAddrPort())
			if errors.Is(err, ErrUnsupported) {
				t.Skipf("UDP GSO unsupported here: %v", err)
			}
			if err != nil {
				t.Fatalf("WriteBatchSegments: %v", err)
			}
			if s := a.Stats(); s.TxBytes != uint64(len(big)+len(tail)) {
				t.Errorf("sender TxBytes = %d, want %d", s.TxBytes, len(big)+len(tail))
			}

			want := append(append([]byte{}, big...), tail...)
			bufs := make([][]byte, 4)
			for i := range bufs {
				bufs[i] = make([]byte, 65535)
			}
			sizes, segs := make([]int, len(bufs)), make([]int, len(bufs))
			eps := make([]netip.AddrPort, len(bufs))
			var got []byte
			coalesced := 0
			for len(got) < len(want) {
				n, err := b.ReadBatchSegments(bufs, sizes, segs, eps)
				if err != nil {
					t.Fatalf("ReadBatchSegments after %d of %d bytes: %v", len(got), len(want), err)
				}
				for i := 0; i < n; i++ {
					got = append(got, bufs[i][:sizes[i]]...)
					if eps[i] != a.LocalAddrPort() {
						t.Errorf("datagram from %v, want %v", eps[i], a.LocalAddrPort())
					}
					switch {
					case segs[i] == seg && sizes[i] > seg:
						coalesced++
					case segs[i] != 0 && segs[i] != seg:
						t.Errorf("segment size %d, want 0 or %d", segs[i], seg)
					}
				}
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("received %d bytes that differ from the %d sent", len(got), len(want))
			}
			if coalesced == 0 {
				t.Errorf("no datagram arrived GRO-coalesced with segment size %d", seg)
			}
			if s := b.Stats(); s.RxBytes != uint64(len(want)) {
				t.Errorf("receiver RxBytes = %d, want %d", s.RxBytes, len(want))
			}
		})
	}
}

func TestWriteBatchSegmentsBadInput(t *testing.T) {
	plain := listen(t, "udp4", "127.0.0.1:0", Config{Backend: BackendBatch})
	dst := netip.MustParseAddrPort("127.0.0.1:9")
	for _, tc := range []struct {
		name string
		bufs [][]byte
		segs []int
	}{
		{"lengths differ", [][]byte{{1}, {2}}, []int{0}},
		{"negative", [][]byte{{1}}, []int{-1}},
		{"too large", [][]byte{{1}}, []int{1 << 16}},
		{"GSO not enabled", [][]byte{make([]byte, 3000)}, []int{1000}},
	} {
		err := plain.WriteBatchSegments(tc.bufs, tc.segs, dst)
		if !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("%s: err = %v, want ErrInvalidArgument", tc.name, err)
		}
	}
	// Segment size 0 everywhere is a plain WriteBatch.
	if err := plain.WriteBatchSegments([][]byte{{1}}, []int{0}, dst); err != nil {
		t.Errorf("WriteBatchSegments without segments: %v", err)
	}
}
