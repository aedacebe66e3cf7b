/*
 * C helpers for UDPConn.ReadMsgs / WriteMsgs (msg.go), in the style of
 * shim.h: each makes one meshring call and, on failure, reads
 * mr_last_error / mr_last_os_error in the same C call.
 */
#ifndef MESHRING_GO_SHIM_MSG_H
#define MESHRING_GO_SHIM_MSG_H

#include "shim.h"
#include "shim_tun.h"

/* Buffers per direct call (see below), which also bounds the gather list:
   a send's datagrams together gather from at most this many buffers. */
#define MRGO_DIRECT 64

/*
 * Everything one mr_udp_recvmsg / mr_udp_sendmsg call needs, in C memory:
 * the mr_msg array and the gather list point at pinned Go buffers, so they
 * cannot live in Go memory themselves.
 */
typedef struct mrgo_msg_call {
	size_t count;
	mrgo_err err;
	mr_msg msgs[MRGO_BATCH];
	mr_iovec iov[MRGO_DIRECT];
} mrgo_msg_call;

mr_status mrgo_udp_set_mark(mr_udp *u, uint32_t mark, mrgo_err *err);
mr_status mrgo_udp_sockopt(const mr_udp *u, int level, int name, int *value, mrgo_err *err);

/* TUN: GRO bits. */
mr_status mrgo_tun_gro(const mr_tun *t, uint32_t *bits, mrgo_err *err);
mr_status mrgo_tun_disable_gro(mr_tun *t, uint32_t bits, mrgo_err *err);

/*
 * TUN read and write with the packet buffers passed as direct arguments
 * (up to MRGO_DIRECT of them, the rest NULL): cgo pins a pointer argument
 * for the call by itself, so no runtime.Pinner is needed (pinning, with
 * its per-object locking and bookkeeping, costs more than the call). The
 * caller sets c->pkts[i].cap (read) or .len (write); the helper points
 * c->pkts[i].buf at b<i> for the call and clears it before returning, so
 * no Go pointer stays in C memory.
 */
mr_status mrgo_tun_read_direct(mr_tun *t, mrgo_tun_call *c, size_t n, int32_t timeout_ms, uint8_t *b0, uint8_t *b1, uint8_t *b2, uint8_t *b3, uint8_t *b4, uint8_t *b5, uint8_t *b6, uint8_t *b7, uint8_t *b8, uint8_t *b9, uint8_t *b10, uint8_t *b11, uint8_t *b12, uint8_t *b13, uint8_t *b14, uint8_t *b15, uint8_t *b16, uint8_t *b17, uint8_t *b18, uint8_t *b19, uint8_t *b20, uint8_t *b21, uint8_t *b22, uint8_t *b23, uint8_t *b24, uint8_t *b25, uint8_t *b26, uint8_t *b27, uint8_t *b28, uint8_t *b29, uint8_t *b30, uint8_t *b31, uint8_t *b32, uint8_t *b33, uint8_t *b34, uint8_t *b35, uint8_t *b36, uint8_t *b37, uint8_t *b38, uint8_t *b39, uint8_t *b40, uint8_t *b41, uint8_t *b42, uint8_t *b43, uint8_t *b44, uint8_t *b45, uint8_t *b46, uint8_t *b47, uint8_t *b48, uint8_t *b49, uint8_t *b50, uint8_t *b51, uint8_t *b52, uint8_t *b53, uint8_t *b54, uint8_t *b55, uint8_t *b56, uint8_t *b57, uint8_t *b58, uint8_t *b59, uint8_t *b60, uint8_t *b61, uint8_t *b62, uint8_t *b63);
mr_status mrgo_tun_write_direct(mr_tun *t, mrgo_tun_call *c, size_t n, uint8_t *b0, uint8_t *b1, uint8_t *b2, uint8_t *b3, uint8_t *b4, uint8_t *b5, uint8_t *b6, uint8_t *b7, uint8_t *b8, uint8_t *b9, uint8_t *b10, uint8_t *b11, uint8_t *b12, uint8_t *b13, uint8_t *b14, uint8_t *b15, uint8_t *b16, uint8_t *b17, uint8_t *b18, uint8_t *b19, uint8_t *b20, uint8_t *b21, uint8_t *b22, uint8_t *b23, uint8_t *b24, uint8_t *b25, uint8_t *b26, uint8_t *b27, uint8_t *b28, uint8_t *b29, uint8_t *b30, uint8_t *b31, uint8_t *b32, uint8_t *b33, uint8_t *b34, uint8_t *b35, uint8_t *b36, uint8_t *b37, uint8_t *b38, uint8_t *b39, uint8_t *b40, uint8_t *b41, uint8_t *b42, uint8_t *b43, uint8_t *b44, uint8_t *b45, uint8_t *b46, uint8_t *b47, uint8_t *b48, uint8_t *b49, uint8_t *b50, uint8_t *b51, uint8_t *b52, uint8_t *b53, uint8_t *b54, uint8_t *b55, uint8_t *b56, uint8_t *b57, uint8_t *b58, uint8_t *b59, uint8_t *b60, uint8_t *b61, uint8_t *b62, uint8_t *b63);

/*
 * UDP receive and send with the buffers as direct arguments, as above:
 * recvmsg points c->msgs[i].buf at b<i> (i < n); sendmsg points
 * c->iov[j].base at b<j> (j < niov) for messages whose iov/iovcnt the
 * caller set to entries of c->iov. Cleared again before returning.
 */
mr_status mrgo_udp_recvmsg_direct(mr_udp *u, mrgo_msg_call *c, size_t n, int32_t timeout_ms, uint8_t *b0, uint8_t *b1, uint8_t *b2, uint8_t *b3, uint8_t *b4, uint8_t *b5, uint8_t *b6, uint8_t *b7, uint8_t *b8, uint8_t *b9, uint8_t *b10, uint8_t *b11, uint8_t *b12, uint8_t *b13, uint8_t *b14, uint8_t *b15, uint8_t *b16, uint8_t *b17, uint8_t *b18, uint8_t *b19, uint8_t *b20, uint8_t *b21, uint8_t *b22, uint8_t *b23, uint8_t *b24, uint8_t *b25, uint8_t *b26, uint8_t *b27, uint8_t *b28, uint8_t *b29, uint8_t *b30, uint8_t *b31, uint8_t *b32, uint8_t *b33, uint8_t *b34, uint8_t *b35, uint8_t *b36, uint8_t *b37, uint8_t *b38, uint8_t *b39, uint8_t *b40, uint8_t *b41, uint8_t *b42, uint8_t *b43, uint8_t *b44, uint8_t *b45, uint8_t *b46, uint8_t *b47, uint8_t *b48, uint8_t *b49, uint8_t *b50, uint8_t *b51, uint8_t *b52, uint8_t *b53, uint8_t *b54, uint8_t *b55, uint8_t *b56, uint8_t *b57, uint8_t *b58, uint8_t *b59, uint8_t *b60, uint8_t *b61, uint8_t *b62, uint8_t *b63);
mr_status mrgo_udp_sendmsg_direct(mr_udp *u, mrgo_msg_call *c, size_t off, size_t n, size_t niov, int32_t timeout_ms, uint8_t *b0, uint8_t *b1, uint8_t *b2, uint8_t *b3, uint8_t *b4, uint8_t *b5, uint8_t *b6, uint8_t *b7, uint8_t *b8, uint8_t *b9, uint8_t *b10, uint8_t *b11, uint8_t *b12, uint8_t *b13, uint8_t *b14, uint8_t *b15, uint8_t *b16, uint8_t *b17, uint8_t *b18, uint8_t *b19, uint8_t *b20, uint8_t *b21, uint8_t *b22, uint8_t *b23, uint8_t *b24, uint8_t *b25, uint8_t *b26, uint8_t *b27, uint8_t *b28, uint8_t *b29, uint8_t *b30, uint8_t *b31, uint8_t *b32, uint8_t *b33, uint8_t *b34, uint8_t *b35, uint8_t *b36, uint8_t *b37, uint8_t *b38, uint8_t *b39, uint8_t *b40, uint8_t *b41, uint8_t *b42, uint8_t *b43, uint8_t *b44, uint8_t *b45, uint8_t *b46, uint8_t *b47, uint8_t *b48, uint8_t *b49, uint8_t *b50, uint8_t *b51, uint8_t *b52, uint8_t *b53, uint8_t *b54, uint8_t *b55, uint8_t *b56, uint8_t *b57, uint8_t *b58, uint8_t *b59, uint8_t *b60, uint8_t *b61, uint8_t *b62, uint8_t *b63);

#endif
