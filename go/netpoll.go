package meshring

import (
	"errors"
	"os"
	"syscall"
	"time"
)

// netPoller lets a goroutine wait for a handle's readiness fd (mr_udp_fd,
// mr_tun_fd) in Go's netpoller instead of in a blocking library call: the
// goroutine parks and its thread and P go on running other goroutines, as
// with package net's sockets. It wraps a duplicate of the readiness fd
// (set non-blocking, so that the netpoller takes it).
//
// Every wait runs the non-blocking library call inside RawConn.Read's
// callback: the netpoller's readiness is reset before the callback runs,
// so a datagram or packet that arrives after the call found nothing still
// wakes the wait.
type netPoller struct {
	f  *os.File
	rc syscall.RawConn
}

func newNetPoller(readyFD int) (*netPoller, error) {
	if readyFD < 0 {
		return nil, errors.New("no readiness fd")
	}
	r, _, e := syscall.Syscall(syscall.SYS_FCNTL, uintptr(readyFD), syscall.F_DUPFD_CLOEXEC, 0)
	if e != 0 {
		return nil, os.NewSyscallError("fcntl(F_DUPFD_CLOEXEC)", e)
	}
	dup := int(r)
	if err := syscall.SetNonblock(dup, true); err != nil {
		syscall.Close(dup)
		return nil, os.NewSyscallError("fcntl(O_NONBLOCK)", err)
	}
	f := os.NewFile(uintptr(dup), "meshring-ready")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	return &netPoller{f: f, rc: rc}, nil
}

// errWouldBlock is what a try function returns to ask for a wait.
var errWouldBlock = errors.New("would block")

// read calls try until it returns something other than errWouldBlock,
// waiting for readiness in between, and returns try's last result. If the
// wait itself ends first, it returns waitErr instead: the deadline passed
// (os.ErrDeadlineExceeded) or the poller was closed.
func (p *netPoller) read(try func() error) (result, waitErr error) {
	waitErr = p.rc.Read(func(uintptr) bool {
		result = try()
		return result != errWouldBlock
	})
	if waitErr != nil {
		return nil, waitErr
	}
	return result, nil
}

// pollError turns a netpoller wait error into the binding's: a deadline
// (ErrTimeout, os.ErrDeadlineExceeded) or a closed handle (ErrClosed).
func pollError(op string, err error) error {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return errDeadline(op)
	}
	return errClosed(op)
}

func (p *netPoller) setReadDeadline(t time.Time) { p.f.SetReadDeadline(t) }

// close wakes every waiting read (they return os.ErrClosed).
func (p *netPoller) close() { p.f.Close() }
