package meshring

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// readN reads n datagrams with ReadBatch (several calls if needed) and
// returns their payloads.
func readN(t *testing.T, c *UDPConn, n int) ([][]byte, []netip.AddrPort) {
	t.Helper()
	bufs := make([][]byte, c.BatchSize())
	for i := range bufs {
		bufs[i] = make([]byte, 2048)
	}
	sizes := make([]int, len(bufs))
	eps := make([]netip.AddrPort, len(bufs))
	var got [][]byte
	var from []netip.AddrPort
	for len(got) < n {
		k, err := c.ReadBatch(bufs, sizes, eps)
		if err != nil {
			t.Fatalf("ReadBatch after %d of %d: %v", len(got), n, err)
		}
		if k < 1 || k > len(bufs) {
			t.Fatalf("ReadBatch returned %d", k)
		}
		for i := 0; i < k; i++ {
			got = append(got, append([]byte(nil), bufs[i][:sizes[i]]...))
			from = append(from, eps[i])
		}
	}
	return got, from
}

func payload(i int) []byte {
	return []byte(fmt.Sprintf("datagram %03d %s", i, string(make([]byte, i))))
}

func TestBatch(t *testing.T) {
	const n = 64
	for _, bc := range backendCases {
		t.Run(bc.name, func(t *testing.T) {
			if BatchSize != 128 || (&UDPConn{}).BatchSize() != 128 {
				t.Fatalf("BatchSize = %d", BatchSize)
			}
			a := listen(t, "udp4", "127.0.0.1:0", Config{Backend: bc.backend})
			b := listen(t, "udp4", "127.0.0.1:0", Config{Backend: bc.backend})
			a.SetDeadline(deadlineSoon())
			b.SetDeadline(deadlineSoon())
			bufs := make([][]byte, n)
			for i := range bufs {
				bufs[i] = payload(i)
			}

			// meshring -> meshring.
			if err := a.WriteBatch(bufs, b.LocalAddrPort()); err != nil {
				t.Fatalf("WriteBatch: %v", err)
			}
			got, from := readN(t, b, n)
			for i := range got {
				if string(got[i]) != string(bufs[i]) {
					t.Fatalf("datagram %d = %q, want %q", i, got[i], bufs[i])
				}
				if from[i] != a.LocalAddrPort() {
					t.Fatalf("datagram %d from %v, want %v", i, from[i], a.LocalAddrPort())
				}
			}
			if s := a.Stats(); s.TxDatagrams != n {
				t.Fatalf("sender Stats().TxDatagrams = %d, want %d", s.TxDatagrams, n)
			}

			// meshring -> stdlib, and stdlib -> meshring.
			p := peer(t, "udp4", "127.0.0.1:0")
			p.SetDeadline(deadlineSoon())
			pAddr := p.LocalAddr().(*net.UDPAddr).AddrPort()
			if err := a.WriteBatch(bufs, pAddr); err != nil {
				t.Fatal(err)
			}
			rb := make([]byte, 2048)
			for i := 0; i < n; i++ {
				k, src, err := p.ReadFromUDPAddrPort(rb)
				if err != nil {
					t.Fatalf("peer read %d: %v", i, err)
				}
				if string(rb[:k]) != string(bufs[i]) || src != a.LocalAddrPort() {
					t.Fatalf("peer read %q from %v", rb[:k], src)
				}
			}
			for i := 0; i < n; i++ {
				if _, err := p.WriteToUDPAddrPort(bufs[i], b.LocalAddrPort()); err != nil {
					t.Fatal(err)
				}
			}
			got, from = readN(t, b, n)
			for i := range got {
				if string(got[i]) != string(bufs[i]) || from[i] != pAddr {
					t.Fatalf("datagram %d = %q from %v", i, got[i], from[i])
				}
			}

			// More than BatchSize, to two destinations.
			many := make([][]byte, 300)
			dsts := make([]netip.AddrPort, len(many))
			for i := range many {
				many[i] = payload(i % 100)
				dsts[i] = b.LocalAddrPort()
				if i%2 == 1 {
					dsts[i] = pAddr
				}
			}
			var wg sync.WaitGroup
			wg.Add(1)
			peerGot := 0
			go func() {
				defer wg.Done()
				buf := make([]byte, 2048)
				for peerGot < len(many)/2 {
					if _, _, err := p.ReadFromUDPAddrPort(buf); err != nil {
						return
					}
					peerGot++
				}
			}()
			if err := a.WriteBatchTo(many, dsts); err != nil {
				t.Fatal(err)
			}
			got, _ = readN(t, b, len(many)/2)
			wg.Wait()
			for i, g := range got {
				if string(g) != string(many[2*i]) {
					t.Fatalf("WriteBatchTo datagram %d = %q, want %q", i, g, many[2*i])
				}
			}
			if peerGot != len(many)/2 {
				t.Fatalf("peer received %d of %d", peerGot, len(many)/2)
			}
		})
	}
}

// TestConcurrent runs several readers and writers on the same conns and
// checks that every datagram arrives exactly once.
func TestConcurrent(t *testing.T) {
	const writers, perWriter, window = 4, 500, 128
	for _, bc := range backendCases {
		t.Run(bc.name, func(t *testing.T) {
			a := listen(t, "udp4", "127.0.0.1:0", Config{Backend: bc.backend})
			b := listen(t, "udp4", "127.0.0.1:0", Config{Backend: bc.backend})
			deadline := time.Now().Add(20 * time.Second)
			a.SetDeadline(deadline)
			b.SetDeadline(deadline)
			dst := b.LocalAddrPort()

			// At most `window` datagrams in flight, so loopback never overflows
			// the receive buffer: a writer takes a token per datagram, a reader
			// returns one per datagram.
			tokens := make(chan struct{}, window)
			for i := 0; i < window; i++ {
				tokens <- struct{}{}
			}
			var seen [writers][perWriter]atomic.Int32
			var total atomic.Int64
			const want = writers * perWriter
			errs := make(chan error, 16)
			record := func(p []byte) {
				if len(p) != 8 {
					errs <- fmt.Errorf("datagram of %d bytes", len(p))
					return
				}
				w, s := binary.BigEndian.Uint32(p), binary.BigEndian.Uint32(p[4:])
				if w >= writers || s >= perWriter {
					errs <- fmt.Errorf("bad datagram %d/%d", w, s)
					return
				}
				seen[w][s].Add(1)
				tokens <- struct{}{}
				if total.Add(1) == want {
					b.SetReadDeadline(time.Now()) // release the other readers
				}
			}

			var readers sync.WaitGroup
			for r := 0; r < 4; r++ {
				readers.Add(1)
				go func(batch bool) {
					defer readers.Done()
					bufs := [][]byte{make([]byte, 64), make([]byte, 64), make([]byte, 64), make([]byte, 64)}
					sizes := make([]int, len(bufs))
					eps := make([]netip.AddrPort, len(bufs))
					for total.Load() < want {
						if batch {
							n, err := b.ReadBatch(bufs, sizes, eps)
							if err != nil {
								if total.Load() < want {
									errs <- fmt.Errorf("ReadBatch: %w", err)
								}
								return
							}
							for i := 0; i < n; i++ {
								record(bufs[i][:sizes[i]])
							}
						} else {
							n, _, err := b.ReadFrom(bufs[0])
							if err != nil {
								if total.Load() < want {
									errs <- fmt.Errorf("ReadFrom: %w", err)
								}
								return
							}
							record(bufs[0][:n])
						}
					}
				}(r%2 == 0)
			}

			var wg sync.WaitGroup
			for w := 0; w < writers; w++ {
				wg.Add(1)
				go func(w int) {
					defer wg.Done()
					for s := 0; s < perWriter; {
						k := 1
						if w%2 == 1 {
							k = min(8, perWriter-s)
						}
						msgs := make([][]byte, k)
						for i := range msgs {
							select {
							case <-tokens:
							case <-time.After(time.Until(deadline)):
								errs <- fmt.Errorf("writer %d starved at %d: datagrams lost", w, s)
								return
							}
							msgs[i] = binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(nil, uint32(w)), uint32(s+i))
						}
						var err error
						if k == 1 {
							_, err = a.WriteToUDPAddrPort(msgs[0], dst)
						} else {
							err = a.WriteBatch(msgs, dst)
						}
						if err != nil {
							errs <- fmt.Errorf("writer %d: %w", w, err)
							return
						}
						s += k
					}
				}(w)
			}
			wg.Wait()
			readers.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			if got := total.Load(); got != want {
				t.Fatalf("received %d of %d datagrams", got, want)
			}
			for w := range seen {
				for s := range seen[w] {
					if n := seen[w][s].Load(); n != 1 {
						t.Fatalf("datagram %d/%d received %d times", w, s, n)
					}
				}
			}
		})
	}
}
