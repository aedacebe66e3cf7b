// Package meshring is the Go binding of meshring, a Rust library with a C
// ABI that provides io_uring UDP sockets (with a recvmmsg/sendmmsg fallback)
// for the node side of a mesh VPN.
//
// The binding links the static library built at ../target/release and the
// header at ../include. [UDPConn] implements [net.PacketConn] and adds batch
// methods in the shape of wireguard-go's conn.Bind. [TUN] is a TUN device
// in the shape of wireguard-go's tun.Device ([CreateTUN]). [Bus] is the notify
// bus: a network-map store fed with tailcfg.MapResponse JSON, watched by
// [Watcher]s that receive ipn.Notify-shaped JSON. [Runtime] is the lifecycle
// runtime: BIRD-style protocol instances over route tables, with protocol
// kinds written in Go ([ProtocolKind]). [Volume] is a file of fixed-size
// blocks and [Replication] one side of its authenticated primary/secondary
// replication (async, sync or durable acknowledgement, checkpoints,
// failover). Errors are [*Error]
// values that match the Err* sentinels (and net.ErrClosed, os.ErrClosed,
// os.ErrDeadlineExceeded) with [errors.Is].
package meshring

/*
#cgo CFLAGS: -I${SRCDIR}/../include
#cgo LDFLAGS: ${SRCDIR}/../target/release/libmeshring.a -lm -ldl -lpthread
#include "shim.h"
*/
import "C"

// BatchSize is the largest number of datagrams one ReadBatch or WriteBatch
// call hands to the library; larger batches are split (writes) or capped
// (reads).
const BatchSize = C.MRGO_BATCH

// HeaderVersion is the library version of the header this package was
// compiled against.
const HeaderVersion = C.MR_VERSION

// Version returns the version of the linked library, "major.minor.patch".
func Version() string {
	return C.GoString(C.mr_version())
}

// VersionNumber returns the linked library's version as
// major*1000000 + minor*1000 + patch.
func VersionNumber() uint32 {
	return uint32(C.mr_version_number())
}
