package meshring

/*
#include "shim.h"
*/
import "C"

import (
	"fmt"
)

// Backend is the I/O mechanism behind a UDPConn (the C mr_backend).
type Backend int

// Backends. BackendAuto is only meaningful in a Config: io_uring where it
// works, else batch (the MESHRING_BACKEND environment variable can force one).
const (
	BackendAuto  Backend = C.MR_BACKEND_AUTO
	BackendURing Backend = C.MR_BACKEND_URING
	BackendBatch Backend = C.MR_BACKEND_BATCH
)

// String returns "auto", "uring" or "batch".
func (b Backend) String() string {
	switch b {
	case BackendAuto:
		return "auto"
	case BackendURing:
		return "uring"
	case BackendBatch:
		return "batch"
	}
	return fmt.Sprintf("Backend(%d)", int(b))
}

// Config holds the options of ListenUDPConfig. The zero value means the
// library defaults for every field.
type Config struct {
	// Backend selects io_uring, the recvmmsg/sendmmsg fallback, or auto.
	Backend Backend
	// GSO enables UDP generic segmentation offload on send.
	GSO bool
	// GRO receives coalesced datagrams; buffers must then hold 65535 bytes.
	GRO bool
	// V6Only makes an IPv6 socket refuse IPv4 peers.
	V6Only bool
	// ReusePort sets SO_REUSEPORT.
	ReusePort bool
	// PktInfo sets IP_PKTINFO / IPV6_RECVPKTINFO: ReadMsgs then reports
	// the local address each datagram was sent to (Msg.Local, Ifindex).
	PktInfo bool
	// NetPoll makes ReadMsgs wait in Go's netpoller (on the socket's
	// readiness fd) instead of in a blocking library call, so a waiting
	// reader holds no thread: what a program with many goroutines, such as
	// wireguard-go, wants. Deadlines then take effect at once.
	NetPoll bool
	// RecvBuffers is the number of io_uring receive buffers the kernel can
	// fill ahead of the reader; 0 means the default (1024).
	RecvBuffers int
	// MaxDatagram is the largest datagram received whole (up to 65535);
	// larger ones are dropped. 0 means 2048, or 65535 with GRO.
	MaxDatagram int
	// Batch is the number of datagrams per submit / sendmmsg; 0 means the
	// default (128).
	Batch int
	// ReadBuffer and WriteBuffer set SO_RCVBUF and SO_SNDBUF in bytes; 0
	// leaves the system default.
	ReadBuffer  int
	WriteBuffer int
}

// toC fills a C config: library defaults first, then the non-zero fields.
func (cfg *Config) toC(out *C.mr_udp_config) error {
	if st := Status(C.mr_udp_config_init(out)); st != StatusOK {
		return newError(st, "listen", "mr_udp_config_init failed")
	}
	checks := []struct {
		name string
		v    int
	}{
		{"RecvBuffers", cfg.RecvBuffers},
		{"MaxDatagram", cfg.MaxDatagram},
		{"Batch", cfg.Batch},
		{"ReadBuffer", cfg.ReadBuffer},
		{"WriteBuffer", cfg.WriteBuffer},
	}
	for _, c := range checks {
		if c.v < 0 || c.v > 1<<31-1 {
			return newError(StatusInvalidArgument, "listen", fmt.Sprintf("Config.%s %d is out of range", c.name, c.v))
		}
	}
	if cfg.Backend < BackendAuto || cfg.Backend > BackendBatch {
		return newError(StatusInvalidArgument, "listen", fmt.Sprintf("Config.Backend %d is not a Backend", int(cfg.Backend)))
	}
	out.backend = C.uint32_t(cfg.Backend)
	var flags C.uint32_t
	if cfg.GSO {
		flags |= C.MR_UDP_GSO
	}
	if cfg.GRO {
		flags |= C.MR_UDP_GRO
	}
	if cfg.V6Only {
		flags |= C.MR_UDP_V6ONLY
	}
	if cfg.ReusePort {
		flags |= C.MR_UDP_REUSEPORT
	}
	if cfg.PktInfo {
		flags |= C.MR_UDP_PKTINFO
	}
	out.flags = flags
	if cfg.RecvBuffers != 0 {
		out.recv_buffers = C.uint32_t(cfg.RecvBuffers)
	}
	if cfg.MaxDatagram != 0 {
		out.max_datagram = C.uint32_t(cfg.MaxDatagram)
	}
	if cfg.Batch != 0 {
		out.batch = C.uint32_t(cfg.Batch)
	}
	out.so_rcvbuf = C.int32_t(cfg.ReadBuffer)
	out.so_sndbuf = C.int32_t(cfg.WriteBuffer)
	return nil
}
