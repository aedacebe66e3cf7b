package wgbind

import (
	"errors"
	"net"
	"os"
	"sync"
	"syscall"
	"unsafe"

	meshring "github.com/meshring/meshring/go"
	"github.com/tailscale/wireguard-go/tun"
	"golang.org/x/sys/unix"
)

// TUN is a tun.Device (and tun.GRODevice) on a meshring TUN device.
// Create it with CreateTUN.
type TUN struct {
	t      *meshring.TUN
	events chan tun.Event
	link   *linkWatch
	once   sync.Once
}

var (
	_ tun.Device    = (*TUN)(nil)
	_ tun.GRODevice = (*TUN)(nil)
)

// CreateTUN creates a TUN device named name with the given MTU, like
// wireguard-go's tun.CreateTUN: with TSO/USO offloads where the kernel has
// them (super-packets read from the kernel are split into wireguard-go's
// buffers; packets written are coalesced per TCP/UDP flow across the whole
// batch), and Events that follow the link's real state (EventUp when it is
// running, EventDown when not, EventMTUUpdate on every link change). The
// device, and the link state it follows, live in the network namespace of
// the calling process.
func CreateTUN(name string, mtu int) (tun.Device, error) {
	// The batch backend: with NetPoll a Read waits in Go's netpoller on the
	// device itself; io_uring readiness would only add re-arming calls.
	return CreateTUNConfig(name, meshring.TUNConfig{Backend: meshring.BackendBatch, MTU: mtu, Offload: true, NetPoll: true})
}

// CreateTUNConfig is CreateTUN with meshring's options (Offload: false
// gives a device without IFF_VNET_HDR, one packet per read and write;
// NetPoll: true, as CreateTUN sets it, lets a waiting Read hold no thread).
func CreateTUNConfig(name string, cfg meshring.TUNConfig) (tun.Device, error) {
	if cfg.MTU <= 0 {
		return nil, errors.New("wgbind: CreateTUN needs an MTU > 0")
	}
	t, err := meshring.CreateTUNConfig(name, cfg)
	if err != nil {
		return nil, err
	}
	d := &TUN{t: t, events: make(chan tun.Event, 5)}
	real, _ := t.Name()
	d.link, err = watchLink(real, d.events)
	if err != nil {
		t.Close()
		return nil, err
	}
	return d, nil
}

// File returns nil: meshring owns the device's descriptor (wireguard-go
// only uses File to hand the device to a child process).
func (d *TUN) File() *os.File { return nil }

// Read reads up to len(bufs) packets into bufs[i][offset:]; offloaded
// super-packets come back split into MTU-sized packets with their
// checksums finished. Segments that do not fit this call wait for the
// next, so tun.ErrTooManySegments (where NativeTun drops the rest) is never
// returned.
func (d *TUN) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	n, err := d.t.Read(bufs, sizes, offset)
	if err != nil && errors.Is(err, meshring.ErrClosed) {
		return n, os.ErrClosed
	}
	return n, err
}

// Write writes bufs[i][offset:] as IP packets, coalescing TCP and UDP
// flows across the batch with offloads. A packet the kernel refuses does
// not stop the others; the first failure is returned (matching its errno
// with errors.Is, e.g. unix.EINVAL for a coalesced packet the kernel
// rejects, which Tailscale probes for). The count is of packets written.
func (d *TUN) Write(bufs [][]byte, offset int) (int, error) {
	n, err := d.t.WriteBatch(bufs, offset)
	if err != nil && errors.Is(err, meshring.ErrClosed) {
		return n, os.ErrClosed
	}
	return n, err
}

// MTU reads the device's MTU from the kernel.
func (d *TUN) MTU() (int, error) { return d.t.MTU() }

// Name is the device's name.
func (d *TUN) Name() (string, error) { return d.t.Name() }

// Events delivers EventUp / EventDown / EventMTUUpdate from the link's
// state; it is closed by Close.
func (d *TUN) Events() <-chan tun.Event { return d.events }

// BatchSize is 128, wireguard-go's IdealBatchSize.
func (d *TUN) BatchSize() int { return d.t.BatchSize() }

// DisableUDPGRO stops coalescing UDP packets on Write for good.
func (d *TUN) DisableUDPGRO() { d.t.DisableGRO(meshring.GROUDP) }

// DisableTCPGRO stops coalescing TCP packets on Write for good.
func (d *TUN) DisableTCPGRO() { d.t.DisableGRO(meshring.GROTCP) }

// Close closes the device (a blocked Read returns os.ErrClosed) and the
// Events channel, after the link watcher has stopped.
func (d *TUN) Close() error {
	var err error
	d.once.Do(func() {
		d.link.stop()
		close(d.events)
		err = d.t.Close()
	})
	return err
}

// linkWatch follows RTM_NEWLINK messages of one interface on a netlink
// socket and turns them into tun.Events, as wireguard-go's NativeTun does.
type linkWatch struct {
	fd, wake int
	quit     chan struct{} // closed by stop
	done     chan struct{} // closed when run returns
}

func watchLink(name string, events chan tun.Event) (*linkWatch, error) {
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return nil, err
	}
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, os.NewSyscallError("socket", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: unix.RTMGRP_LINK}); err != nil {
		unix.Close(fd)
		return nil, os.NewSyscallError("bind", err)
	}
	wake, err := unix.Eventfd(0, unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(fd)
		return nil, os.NewSyscallError("eventfd", err)
	}
	w := &linkWatch{fd: fd, wake: wake, quit: make(chan struct{}), done: make(chan struct{})}
	// The state now, as NativeTun's first link probe reports it; then changes.
	var first tun.Event = tun.EventDown
	if ifi.Flags&net.FlagRunning != 0 {
		first = tun.EventUp
	}
	go w.run(int32(ifi.Index), first, events)
	return w, nil
}

func (w *linkWatch) run(index int32, first tun.Event, events chan tun.Event) {
	defer close(w.done)
	send := func(e tun.Event) bool {
		select {
		case events <- e:
			return true
		case <-w.quit:
			return false
		}
	}
	if !send(first) {
		return
	}
	buf := make([]byte, 1<<16)
	fds := []unix.PollFd{{Fd: int32(w.fd), Events: unix.POLLIN}, {Fd: int32(w.wake), Events: unix.POLLIN}}
	for {
		fds[0].Revents, fds[1].Revents = 0, 0
		if _, err := unix.Poll(fds, -1); err != nil {
			if err == unix.EINTR {
				continue
			}
			return
		}
		if fds[1].Revents != 0 {
			return
		}
		n, _, err := unix.Recvfrom(w.fd, buf, unix.MSG_DONTWAIT)
		if err != nil {
			if err == unix.EAGAIN || err == unix.EINTR || err == unix.ENOBUFS {
				continue // ENOBUFS: messages were lost; the next one tells the state
			}
			return
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			continue
		}
		for _, m := range msgs {
			if m.Header.Type != unix.RTM_NEWLINK || len(m.Data) < unix.SizeofIfInfomsg {
				continue
			}
			info := (*unix.IfInfomsg)(unsafe.Pointer(&m.Data[0]))
			if info.Index != index {
				continue
			}
			var e tun.Event = tun.EventDown
			if info.Flags&unix.IFF_RUNNING != 0 {
				e = tun.EventUp
			}
			if !send(e) || !send(tun.EventMTUUpdate) {
				return
			}
		}
	}
}

// stop wakes the watcher and waits for it to exit, then releases its fds.
func (w *linkWatch) stop() {
	close(w.quit)
	var one [8]byte
	one[0] = 1
	unix.Write(w.wake, one[:])
	<-w.done
	unix.Close(w.fd)
	unix.Close(w.wake)
}
