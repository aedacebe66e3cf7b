package meshring

import (
	"bytes"
	"errors"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"
)

const replBS = 4096

var replKey = []byte("go binding replication key, 32 B")

func block(b byte, blocks int) []byte { return bytes.Repeat([]byte{b}, replBS*blocks) }

func openTestVolume(t *testing.T, name string, blocks uint64) *Volume {
	t.Helper()
	v, err := OpenVolume(filepath.Join(t.TempDir(), name), &VolumeConfig{BlockCount: blocks, Create: true})
	if err != nil {
		t.Fatalf("OpenVolume: %v", err)
	}
	t.Cleanup(func() { v.Close() })
	return v
}

func startRepl(t *testing.T, v *Volume, addr string, mode ReplMode, ack ReplAck, key []byte) *Replication {
	t.Helper()
	r, err := StartReplication(v, addr, ReplConfig{Mode: mode, Ack: ack, Key: key, ConnectTimeout: 500 * time.Millisecond, PeerTimeout: 3 * time.Second})
	if err != nil {
		t.Fatalf("StartReplication(%v): %v", mode, err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// pairOf starts a secondary on loopback and a primary connected to it.
func pairOf(t *testing.T, ack ReplAck) (p, s *Replication, sv *Volume) {
	t.Helper()
	pv := openTestVolume(t, "p.vol", 32)
	sv = openTestVolume(t, "s.vol", 32)
	s = startRepl(t, sv, "127.0.0.1:0", ReplSecondary, ReplSync, replKey)
	addr, err := s.LocalAddr()
	if err != nil {
		t.Fatalf("LocalAddr: %v", err)
	}
	p = startRepl(t, pv, addr.String(), ReplPrimary, ack, replKey)
	if err := p.WaitSynced(5 * time.Second); err != nil {
		t.Fatalf("WaitSynced: %v", err)
	}
	return p, s, sv
}

// waitErr polls Err until it matches want.
func waitErr(t *testing.T, r *Replication, want error) error {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if err := r.Err(); errors.Is(err, want) {
			return err
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("Err never matched %v", want)
	return nil
}

func TestVolumeReadWriteBatchClose(t *testing.T) {
	v := openTestVolume(t, "v.vol", 16)
	if v.BlockSize() != replBS || v.BlockCount() != 16 {
		t.Fatalf("geometry %d x %d", v.BlockCount(), v.BlockSize())
	}
	if err := v.Write(2, block(7, 2)); err != nil {
		t.Fatal(err)
	}
	if err := v.WriteBatch([]BlockWrite{{Block: 5, Data: block(8, 1)}, {Block: 9, Data: block(9, 3)}}); err != nil {
		t.Fatal(err)
	}
	if err := v.Flush(); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 12*replBS)
	if err := v.Read(0, got); err != nil {
		t.Fatal(err)
	}
	want := append(append(append(append(append(block(0, 2), block(7, 2)...), block(0, 1)...), block(8, 1)...), block(0, 3)...), block(9, 3)...)
	if !bytes.Equal(got, want) {
		t.Fatal("read back differs")
	}
	err := v.WriteBatch([]BlockWrite{{Block: 1, Data: block(1, 2)}, {Block: 2, Data: block(2, 1)}})
	if !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("overlapping batch: %v", err)
	}
	if err := v.Write(0, make([]byte, 100)); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("partial block: %v", err)
	}
	v.Close()
	v.Close()
	if err := v.Read(0, got[:replBS]); !errors.Is(err, ErrClosed) {
		t.Fatalf("after Close: %v", err)
	}
}

func TestDirectVolume(t *testing.T) {
	v, err := OpenVolume(filepath.Join(t.TempDir(), "d.vol"), &VolumeConfig{BlockCount: 64, Create: true, Direct: true})
	if errors.Is(err, ErrUnsupported) {
		t.Skipf("O_DIRECT unsupported here: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	writes := make([]BlockWrite, 32)
	for i := range writes {
		writes[i] = BlockWrite{Block: uint64(i * 2), Data: block(byte(i+1), 1)}
	}
	if err := v.WriteBatch(writes); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, replBS)
	for _, w := range writes {
		if err := v.Read(w.Block, got); err != nil || !bytes.Equal(got, w.Data) {
			t.Fatalf("block %d: %v", w.Block, err)
		}
	}
}

func TestReplicationSyncPairCheckpointFailover(t *testing.T) {
	p, s, sv := pairOf(t, ReplSync)
	if err := p.Write(1, block(3, 2)); err != nil {
		t.Fatal(err)
	}
	if err := p.Err(); err != nil {
		t.Fatalf("Err after a sync write: %v", err)
	}
	// Sync: the secondary's base has it when Write returns.
	got := make([]byte, 2*replBS)
	if err := sv.Read(1, got); err != nil || !bytes.Equal(got, block(3, 2)) {
		t.Fatalf("secondary base: %v", err)
	}
	if err := p.WriteBatch([]BlockWrite{{Block: 10, Data: block(4, 1)}, {Block: 20, Data: block(5, 1)}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Write(3, block(9, 1)); err != nil { // the secondary's own write: active layer
		t.Fatal(err)
	}
	if err := p.Checkpoint(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	st, err := p.Stats()
	if err != nil || !st.Connected || st.WritesSent != 3 || st.DirtyBlocks != 0 || st.Stage != StageRunning {
		t.Fatalf("primary stats %+v, %v", st, err)
	}
	if err := s.Write(4, block(6, 1)); err != nil {
		t.Fatal(err)
	}
	if err := s.Failover(); err != nil {
		t.Fatal(err)
	}
	if stage, _ := s.Stage(); stage != StageDone {
		t.Fatalf("stage %v", stage)
	}
	one := make([]byte, replBS)
	for b, want := range map[uint64]byte{1: 3, 10: 4, 20: 5, 4: 6} {
		if err := s.Read(b, one); err != nil || !bytes.Equal(one, block(want, 1)) {
			t.Fatalf("after failover block %d: %v", b, err)
		}
	}
	if err := s.Err(); !errors.Is(err, ErrState) {
		t.Fatalf("Err after DONE: %v", err)
	}
}

func TestReplicationRefusesPeersWithoutTheKey(t *testing.T) {
	p, s, sv := pairOf(t, ReplSync)
	addr, _ := s.LocalAddr()
	wrong := startRepl(t, openTestVolume(t, "w.vol", 32), addr.String(), ReplPrimary, ReplSync, []byte("some other key of thirty-two b!!"))
	if err := waitErr(t, s, ErrAuth); err == nil {
		t.Fatal("no error")
	}
	waitErr(t, wrong, ErrAuth)
	hijack := startRepl(t, openTestVolume(t, "h.vol", 32), addr.String(), ReplPrimary, ReplSync, replKey)
	waitErr(t, s, ErrState)
	waitErr(t, hijack, ErrState)
	// The real primary keeps replicating.
	if err := p.Write(7, block(1, 1)); err != nil {
		t.Fatal(err)
	}
	if err := p.Err(); err != nil {
		t.Fatalf("real primary: %v", err)
	}
	got := make([]byte, replBS)
	if err := sv.Read(7, got); err != nil || !bytes.Equal(got, block(1, 1)) {
		t.Fatalf("secondary: %v", err)
	}
	if st, _ := s.Stats(); st.Refused < 2 || st.Connections != 1 {
		t.Fatalf("secondary stats %+v", st)
	}
	if _, err := StartReplication(openTestVolume(t, "k.vol", 32), "127.0.0.1:1", ReplConfig{Key: []byte("short")}); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("short key: %v", err)
	}
}

func TestReplicationDurableConcurrentWriters(t *testing.T) {
	p, s, sv := pairOf(t, ReplDurable)
	const writers, each = 8, 15
	var wg sync.WaitGroup
	errs := make(chan error, writers*each)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			buf := make([]byte, replBS)
			got := make([]byte, replBS)
			for i := 0; i < each; i++ {
				for j := range buf {
					buf[j] = byte(w*each + i)
				}
				if err := p.Write(uint64(w), buf); err != nil {
					errs <- err
					return
				}
				if err := sv.Read(uint64(w), got); err != nil || !bytes.Equal(got, buf) {
					errs <- errors.New("a durable write was not on the secondary when it returned")
					return
				}
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	ps, _ := p.Stats()
	ss, _ := s.Stats()
	if ps.Flushes == 0 || ps.Flushes >= writers*each || ss.Flushes == 0 || ss.Flushes >= writers*each {
		t.Fatalf("fdatasyncs: primary %d, secondary %d for %d writes", ps.Flushes, ss.Flushes, writers*each)
	}
}

// socketPair returns two connected *net.UnixConn.
func socketPair(t *testing.T) (*net.UnixConn, *net.UnixConn) {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	conn := func(fd int) *net.UnixConn {
		f := os.NewFile(uintptr(fd), "socketpair")
		defer f.Close()
		c, err := net.FileConn(f)
		if err != nil {
			t.Fatal(err)
		}
		return c.(*net.UnixConn)
	}
	return conn(fds[0]), conn(fds[1])
}

func TestReplicationOverHostConnections(t *testing.T) {
	pv := openTestVolume(t, "p.vol", 32)
	sv := openTestVolume(t, "s.vol", 32)
	s := startRepl(t, sv, "", ReplSecondary, ReplSync, replKey)
	p := startRepl(t, pv, "", ReplPrimary, ReplSync, replKey)
	if _, err := s.LocalAddr(); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("LocalAddr without a listener: %v", err)
	}
	a, b := socketPair(t)
	if err := p.AddConn(a); err != nil {
		t.Fatal(err)
	}
	if err := s.AddConn(b); err != nil {
		t.Fatal(err)
	}
	if err := p.WaitSynced(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	if err := p.Write(2, block(2, 1)); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, replBS)
	if err := sv.Read(2, got); err != nil || !bytes.Equal(got, block(2, 1)) {
		t.Fatalf("secondary: %v", err)
	}
}

func TestReplicationCloseWhileWriting(t *testing.T) {
	p, _, _ := pairOf(t, ReplSync)
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			buf := block(byte(w), 1)
			for i := 0; ; i++ {
				err := p.Write(uint64(w), buf)
				if errors.Is(err, ErrClosed) {
					return
				}
				if err != nil {
					t.Errorf("write: %v", err)
					return
				}
			}
		}(w)
	}
	time.Sleep(50 * time.Millisecond)
	p.Close()
	wg.Wait()
	if _, err := p.Stats(); !errors.Is(err, ErrClosed) {
		t.Fatalf("after Close: %v", err)
	}
}

func TestReplicationFinalizerReleasesTheVolume(t *testing.T) {
	v := openTestVolume(t, "f.vol", 32)
	func() {
		_, err := StartReplication(v, "127.0.0.1:1", ReplConfig{Mode: ReplPrimary, Key: replKey})
		if err != nil {
			t.Fatal(err)
		}
	}()
	// Unreachable now: once its finalizer ran, the volume takes a new one.
	deadline := time.Now().Add(10 * time.Second)
	for {
		runtime.GC()
		r, err := StartReplication(v, "127.0.0.1:1", ReplConfig{Mode: ReplPrimary, Key: replKey})
		if err == nil {
			r.Close()
			return
		}
		if !errors.Is(err, ErrState) || time.Now().After(deadline) {
			t.Fatalf("the finalizer never released the volume: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
