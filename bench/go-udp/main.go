// Command go-udp is the Go standard-library baseline of the meshring UDP
// benchmark: one goroutine sends -count datagrams of -payload bytes over a
// connected net.UDPConn to 127.0.0.1, another receives them with
// ReadFromUDP, and the program prints one RESULT line for bench/table.py:
//
//	RESULT impl=go-net payload=<bytes> sent=<n> received=<n> seconds=<float> rx_cpu_us=<float>
//
// seconds is the receiver's wall time from the first to the last datagram.
// rx_cpu_us is the CPU time (user+sys, microseconds) of the OS thread the
// receiving goroutine is locked to (getrusage RUSAGE_THREAD); it excludes
// the sender, but also the Go netpoller work done on other threads to wake
// the receiver. The process total (RUSAGE_SELF, sender included) goes to
// stderr.
//
// It uses only the standard library and loopback.
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"runtime"
	"syscall"
	"time"
	"unsafe"
)

// rusageThread is RUSAGE_THREAD from <sys/resource.h> (Linux), which the
// syscall package does not define.
const rusageThread = 1

func main() {
	payload := flag.Int("payload", 64, "datagram size in bytes")
	count := flag.Int("count", 500000, "datagrams to send")
	batch := flag.Int("batch", 1, "ignored: net.UDPConn sends one datagram per call (kept for a command line shared with the other benchmarks)")
	mode := flag.String("mode", "recv", `benchmark mode; only "recv" (alias "stream": one sender streams to one receiver) is implemented`)
	silence := flag.Duration("silence", time.Second, "receiver stops after this long without a datagram")
	flag.Parse()
	_ = batch
	if *mode != "recv" && *mode != "stream" {
		fail(fmt.Errorf("unknown -mode %q: only \"recv\" is implemented", *mode))
	}
	if *payload < 1 || *payload > 65507 || *count < 1 {
		fail(fmt.Errorf("need 1 <= -payload <= 65507 and -count >= 1"))
	}

	rx, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		fail(err)
	}
	defer rx.Close()
	if err := rx.SetReadBuffer(8 << 20); err != nil {
		fail(err)
	}
	tx, err := net.DialUDP("udp4", nil, rx.LocalAddr().(*net.UDPAddr))
	if err != nil {
		fail(err)
	}
	defer tx.Close()

	type result struct {
		received    int
		first, last time.Time
		cpu         time.Duration
		err         error
	}
	done := make(chan result, 1)
	ready := make(chan struct{})
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		var r result
		before, err := threadCPU()
		if err != nil {
			r.err = err
			close(ready)
			done <- r
			return
		}
		close(ready)
		buf := make([]byte, 65536)
		// The silence deadline is pushed forward at most every 50ms rather
		// than before every read, to keep timer updates out of the loop.
		armed := time.Now()
		rx.SetReadDeadline(armed.Add(*silence))
		for r.received < *count {
			if _, _, err := rx.ReadFromUDP(buf); err != nil {
				if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
					r.err = err
				}
				break
			}
			r.last = time.Now()
			if r.last.Sub(armed) > 50*time.Millisecond {
				armed = r.last
				rx.SetReadDeadline(armed.Add(*silence))
			}
			if r.received == 0 {
				r.first = r.last
			}
			r.received++
		}
		after, err := threadCPU()
		if err != nil && r.err == nil {
			r.err = err
		}
		r.cpu = after - before
		done <- r
	}()

	<-ready
	sent := 0
	msg := make([]byte, *payload)
	for i := 0; i < *count; i++ {
		if _, err := tx.Write(msg); err != nil {
			// Loopback can refuse a datagram transiently (ENOBUFS); it is
			// then not counted as sent.
			continue
		}
		sent++
	}
	r := <-done
	if r.err != nil {
		fail(r.err)
	}

	var self syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &self); err == nil {
		fmt.Fprintf(os.Stderr, "go-udp: process cpu (sender included) %.0f us\n", float64(rusageTotal(&self).Microseconds()))
	}
	seconds := r.last.Sub(r.first).Seconds()
	fmt.Printf("RESULT impl=go-net payload=%d sent=%d received=%d seconds=%.6f rx_cpu_us=%.0f\n",
		*payload, sent, r.received, seconds, float64(r.cpu.Nanoseconds())/1e3)
}

// threadCPU returns the user+system CPU time of the calling OS thread.
func threadCPU() (time.Duration, error) {
	var ru syscall.Rusage
	if _, _, errno := syscall.Syscall(syscall.SYS_GETRUSAGE, rusageThread, uintptr(unsafe.Pointer(&ru)), 0); errno != 0 {
		return 0, fmt.Errorf("getrusage(RUSAGE_THREAD): %w", errno)
	}
	return rusageTotal(&ru), nil
}

func rusageTotal(ru *syscall.Rusage) time.Duration {
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "go-udp:", err)
	os.Exit(1)
}
