package meshring

import (
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
)

// Status is a meshring status code (the C mr_status). A Status is itself an
// error: the Err* sentinels are Status values, so errors.Is(err, ErrClosed)
// matches any *Error carrying StatusClosed.
type Status int

// The status codes of the C ABI; values are fixed.
const (
	StatusOK              Status = 0
	StatusInvalidArgument Status = 1
	StatusClosed          Status = 2
	StatusTimeout         Status = 3
	StatusWouldBlock      Status = 4
	StatusIO              Status = 5
	StatusUnsupported     Status = 6
	StatusNotFound        Status = 7
	StatusParse           Status = 8
	StatusBufferTooSmall  Status = 9
	StatusState           Status = 10
	StatusUpToDate        Status = 11
	StatusPanic           Status = 12
	StatusNoMemory        Status = 13
	StatusAuth            Status = 14
)

// Sentinel errors, one per failure status; match them with errors.Is.
// ErrClosed also matches net.ErrClosed and os.ErrClosed (what callers of
// a wireguard-go tun.Device test for), and ErrTimeout also matches
// os.ErrDeadlineExceeded.
var (
	ErrInvalidArgument error = StatusInvalidArgument
	ErrClosed          error = StatusClosed
	ErrTimeout         error = StatusTimeout
	ErrWouldBlock      error = StatusWouldBlock
	ErrIO              error = StatusIO
	ErrUnsupported     error = StatusUnsupported
	ErrNotFound        error = StatusNotFound
	ErrParse           error = StatusParse
	ErrBufferTooSmall  error = StatusBufferTooSmall
	ErrState           error = StatusState
	ErrUpToDate        error = StatusUpToDate
	ErrPanic           error = StatusPanic
	ErrNoMemory        error = StatusNoMemory
	ErrAuth            error = StatusAuth
)

var statusNames = [...]string{
	StatusOK:              "ok",
	StatusInvalidArgument: "invalid argument",
	StatusClosed:          "use of closed connection",
	StatusTimeout:         "i/o timeout",
	StatusWouldBlock:      "operation would block",
	StatusIO:              "i/o error",
	StatusUnsupported:     "unsupported",
	StatusNotFound:        "not found",
	StatusParse:           "parse error",
	StatusBufferTooSmall:  "buffer too small",
	StatusState:           "invalid state",
	StatusUpToDate:        "up to date",
	StatusPanic:           "internal error (panic in meshring)",
	StatusNoMemory:        "out of memory",
	StatusAuth:            "authentication failed",
}

// String returns a short description of s.
func (s Status) String() string {
	if s >= 0 && int(s) < len(statusNames) {
		return statusNames[s]
	}
	return fmt.Sprintf("unknown status %d", int(s))
}

// Error implements error.
func (s Status) Error() string { return "meshring: " + s.String() }

// Is reports whether s matches target: StatusClosed matches net.ErrClosed
// and os.ErrClosed, and StatusTimeout matches os.ErrDeadlineExceeded.
func (s Status) Is(target error) bool {
	switch s {
	case StatusClosed:
		return target == net.ErrClosed || target == os.ErrClosed
	case StatusTimeout:
		return target == os.ErrDeadlineExceeded
	}
	return false
}

// Timeout reports whether s is StatusTimeout (net.Error).
func (s Status) Timeout() bool { return s == StatusTimeout }

// Temporary reports whether retrying may succeed (net.Error; deprecated
// there, kept for the interface).
func (s Status) Temporary() bool { return s == StatusTimeout || s == StatusWouldBlock }

// Error is a failed meshring call: the status, the operation the binding was
// performing, and the library's message (from mr_last_error) or the
// binding's own.
type Error struct {
	Status Status
	// Op names the operation: "listen", "read", "write", "close", ...
	Op string
	// Msg is the detailed message; empty if there is none.
	Msg string
	// Errno is the OS error behind a StatusIO failure (mr_last_os_error),
	// or 0.
	Errno syscall.Errno
}

// Error implements error.
func (e *Error) Error() string {
	msg := e.Msg
	if msg == "" {
		msg = e.Status.String()
	}
	if e.Op == "" {
		return "meshring: " + msg
	}
	return "meshring: " + e.Op + ": " + msg
}

// Unwrap returns the Status, so errors.Is(err, ErrX) works, and the Errno
// if there is one.
func (e *Error) Unwrap() []error {
	if e.Errno != 0 {
		return []error{e.Status, e.Errno}
	}
	return []error{e.Status}
}

// Timeout reports whether the call timed out (net.Error).
func (e *Error) Timeout() bool { return e.Status.Timeout() }

// Temporary reports whether retrying may succeed (net.Error).
func (e *Error) Temporary() bool { return e.Status.Temporary() }

var _ net.Error = (*Error)(nil)

func newError(st Status, op, msg string) *Error {
	return &Error{Status: st, Op: op, Msg: msg}
}

func errClosed(op string) error {
	return newError(StatusClosed, op, "use of closed connection")
}

func errDeadline(op string) error {
	return newError(StatusTimeout, op, "i/o timeout")
}

// statusOf returns the Status inside err, or StatusOK if err is not from
// this package.
func statusOf(err error) Status {
	var s Status
	if errors.As(err, &s) {
		return s
	}
	return StatusOK
}
