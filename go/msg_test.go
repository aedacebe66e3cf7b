package meshring

import (
	"bytes"
	"errors"
	"net/netip"
	"os"
	"syscall"
	"testing"
	"time"
)

// WriteMsgs gathers 64 separate packet buffers (each behind 8 bytes of
// headroom that must not be sent, as wireguard-go's offset) into one GSO
// send; a wildcard receiver with PktInfo gets the bytes in order with the
// local address they were sent to, and its reply from that address
// arrives from it.
func TestMsgsGatherGSOAndPktInfo(t *testing.T) {
	const seg, nseg, headroom = 1000, 64, 8
	for _, bc := range backendCases {
		for _, fam := range []struct{ network, bindA, bindB, dst string }{
			{"udp4", "127.0.0.1:0", "0.0.0.0:0", "127.0.0.2"},
			{"udp6", "[::1]:0", "[::]:0", "::1"},
		} {
			t.Run(bc.name+"/"+fam.network, func(t *testing.T) {
				a := listen(t, fam.network, fam.bindA, Config{Backend: bc.backend, GSO: true, GRO: true, PktInfo: true})
				b := listen(t, fam.network, fam.bindB, Config{Backend: bc.backend, GRO: true, PktInfo: true})
				a.SetDeadline(deadlineSoon())
				b.SetDeadline(deadlineSoon())
				dst := netip.AddrPortFrom(netip.MustParseAddr(fam.dst), b.LocalAddrPort().Port())
				var want []byte
				bufs := make([][]byte, nseg)
				for i := range bufs {
					full := make([]byte, headroom+seg)
					for j := range full {
						full[j] = byte(i*3 + j)
					}
					bufs[i] = full[headroom:]
					want = append(want, bufs[i]...)
				}
				n, err := a.WriteMsgs([]Msg{{Bufs: bufs, Addr: dst, SegmentSize: seg}})
				if n != 1 || err != nil {
					t.Fatalf("WriteMsgs = %d, %v", n, err)
				}
				var got []byte
				var local netip.Addr
				ifindex := -1
				msgs := make([]Msg, 4)
				for i := range msgs {
					msgs[i].Buf = make([]byte, 65535)
				}
				coalesced := 0
				for len(got) < len(want) {
					k, err := b.ReadMsgs(msgs)
					if err != nil {
						t.Fatalf("ReadMsgs after %d bytes: %v", len(got), err)
					}
					for _, m := range msgs[:k] {
						if m.Addr != a.LocalAddrPort() {
							t.Errorf("source %v, want %v", m.Addr, a.LocalAddrPort())
						}
						if m.SegmentSize > 0 && m.N > m.SegmentSize {
							coalesced++
						}
						local, ifindex = m.Local, m.Ifindex
						got = append(got, m.Buf[:m.N]...)
					}
				}
				if !bytes.Equal(got, want) {
					t.Fatalf("gathered bytes differ (%d vs %d bytes)", len(got), len(want))
				}
				if coalesced == 0 {
					t.Errorf("the GSO send did not arrive coalesced")
				}
				if local != dst.Addr() || ifindex != 1 {
					t.Errorf("Local, Ifindex = %v, %d; want %v, 1 (lo)", local, ifindex, dst.Addr())
				}
				// Reply from the address the peer used.
				if _, err := b.WriteMsgs([]Msg{{Buf: []byte("reply"), Addr: a.LocalAddrPort(), Local: local, Ifindex: ifindex}}); err != nil {
					t.Fatalf("reply: %v", err)
				}
				k, err := a.ReadMsgs(msgs[:1])
				if err != nil || k != 1 || string(msgs[0].Buf[:msgs[0].N]) != "reply" {
					t.Fatalf("reading the reply: %d, %v", k, err)
				}
				if msgs[0].Addr != dst {
					t.Errorf("reply came from %v, want %v", msgs[0].Addr, dst)
				}
			})
		}
	}
}

// SetMark sets SO_MARK (as root), SockOpt reads it back; wireguard-go's
// 7 MiB buffers are forced past rmem_max as root.
func TestSetMarkAndSockOpt(t *testing.T) {
	c := listen(t, "udp4", "127.0.0.1:0", Config{ReadBuffer: 7 << 20, WriteBuffer: 7 << 20})
	if os.Geteuid() != 0 {
		err := c.SetMark(1)
		if !errors.Is(err, syscall.EPERM) {
			t.Fatalf("SetMark without root = %v, want EPERM", err)
		}
		t.Skip("SO_MARK and forced buffers need root")
	}
	if err := c.SetMark(0x5157); err != nil {
		t.Fatal(err)
	}
	if v, err := c.SockOpt(syscall.SOL_SOCKET, syscall.SO_MARK); err != nil || v != 0x5157 {
		t.Fatalf("SO_MARK = %#x, %v", v, err)
	}
	if v, err := c.SockOpt(syscall.SOL_SOCKET, syscall.SO_RCVBUF); err != nil || v < 2*7<<20 {
		t.Fatalf("SO_RCVBUF = %d, %v; want >= 14 MiB", v, err)
	}
	c.Close()
	if err := c.SetMark(1); !errors.Is(err, ErrClosed) {
		t.Fatalf("SetMark after Close = %v", err)
	}
}

// With Config.NetPoll, ReadMsgs waits in Go's netpoller: a datagram wakes
// it, a read deadline ends the wait with a timeout, Close with ErrClosed.
func TestMsgsNetPoll(t *testing.T) {
	for _, bc := range backendCases {
		t.Run(bc.name, func(t *testing.T) {
			c := listen(t, "udp4", "127.0.0.1:0", Config{Backend: bc.backend, NetPoll: true})
			p := peer(t, "udp4", "127.0.0.1:0")
			msgs := []Msg{{Buf: make([]byte, 2048)}}
			go func() {
				time.Sleep(50 * time.Millisecond)
				p.WriteToUDPAddrPort([]byte("wake"), c.LocalAddrPort())
			}()
			c.SetReadDeadline(deadlineSoon())
			if n, err := c.ReadMsgs(msgs); n != 1 || err != nil || string(msgs[0].Buf[:msgs[0].N]) != "wake" {
				t.Fatalf("ReadMsgs = %d, %v", n, err)
			}
			c.SetReadDeadline(time.Now().Add(30 * time.Millisecond))
			if _, err := c.ReadMsgs(msgs); !errors.Is(err, ErrTimeout) || !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("ReadMsgs past the deadline = %v", err)
			}
			c.SetReadDeadline(time.Time{})
			done := make(chan error, 1)
			go func() {
				_, err := c.ReadMsgs(msgs)
				done <- err
			}()
			time.Sleep(50 * time.Millisecond)
			c.Close()
			select {
			case err := <-done:
				if !errors.Is(err, ErrClosed) {
					t.Fatalf("ReadMsgs across Close = %v", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("Close did not wake a ReadMsgs waiting in the netpoller")
			}
		})
	}
}
