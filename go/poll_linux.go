package meshring

import (
	"syscall"
	"time"
	"unsafe"
)

// pollfd is struct pollfd of poll(2).
type pollfd struct {
	fd      int32
	events  int16
	revents int16
}

const (
	pollIn   = 0x1
	pollNval = 0x20
)

// waitReadable blocks in ppoll(2) until fd, or wake if it is >= 0, is
// readable (or reports an error condition), or until timeout passes if it
// is >= 0. It reports whether wake was among the ready fds. The calling
// goroutine's thread blocks in the system call; the Go scheduler runs
// other goroutines meanwhile.
func waitReadable(fd, wake int32, timeout time.Duration) (wakeReady bool, err error) {
	fds := [2]pollfd{{fd: fd, events: pollIn}, {fd: wake, events: pollIn}}
	n := 1
	if wake >= 0 {
		n = 2
	}
	var ts *syscall.Timespec
	if timeout >= 0 {
		t := syscall.NsecToTimespec(int64(timeout))
		ts = &t
	}
	for {
		// ppoll rather than poll: poll(2) has no system call on arm64.
		// An EINTR restarts the full timeout; callers only use it as a
		// bound on latency, so that is harmless.
		_, _, e := syscall.Syscall6(syscall.SYS_PPOLL, uintptr(unsafe.Pointer(&fds[0])), uintptr(n), uintptr(unsafe.Pointer(ts)), 0, 0, 0)
		switch e {
		case 0:
		case syscall.EINTR:
			continue
		default:
			return false, e
		}
		for i := 0; i < n; i++ {
			if fds[i].revents&pollNval != 0 {
				return false, syscall.EBADF
			}
		}
		return n == 2 && fds[1].revents != 0, nil
	}
}

// wakePipe is a non-blocking self-pipe: writing to w makes r readable.
type wakePipe struct {
	r, w int32
}

func newWakePipe() (wakePipe, error) {
	var p [2]int
	if err := syscall.Pipe2(p[:], syscall.O_NONBLOCK|syscall.O_CLOEXEC); err != nil {
		return wakePipe{-1, -1}, err
	}
	return wakePipe{int32(p[0]), int32(p[1])}, nil
}

// signal makes the read end readable (a full pipe is readable already).
func (p wakePipe) signal() {
	var b [1]byte
	syscall.Write(int(p.w), b[:])
}

// drain empties the pipe, so that it polls readable again only after the
// next signal.
func (p wakePipe) drain() {
	var buf [64]byte
	for {
		n, err := syscall.Read(int(p.r), buf[:])
		if n <= 0 || err != nil {
			return
		}
	}
}

func (p wakePipe) close() {
	syscall.Close(int(p.r))
	syscall.Close(int(p.w))
}
