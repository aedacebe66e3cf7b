/*
 * C helpers for UDPConn.ReadMsgs / WriteMsgs (msg.go), in the style of
 * shim.h: each makes one meshring call and, on failure, reads
 * mr_last_error / mr_last_os_error in the same C call.
 */
#ifndef MESHRING_GO_SHIM_MSG_H
#define MESHRING_GO_SHIM_MSG_H

#include "shim.h"
#include "shim_tun.h"

/* Gather buffers per call: every packet buffer of a full batch appears once
   in a wireguard-go GSO send, and a few more cover odd callers. */
#define MRGO_IOV 1024

/*
 * Everything one mr_udp_recvmsg / mr_udp_sendmsg call needs, in C memory:
 * the mr_msg array and the gather list point at pinned Go buffers, so they
 * cannot live in Go memory themselves.
 */
typedef struct mrgo_msg_call {
	size_t count;
	mrgo_err err;
	mr_msg msgs[MRGO_BATCH];
	mr_iovec iov[MRGO_IOV];
} mrgo_msg_call;

mr_status mrgo_udp_recvmsg(mr_udp *u, mrgo_msg_call *c, size_t n, int32_t timeout_ms);
mr_status mrgo_udp_sendmsg(mr_udp *u, mrgo_msg_call *c, size_t off, size_t n, int32_t timeout_ms);
mr_status mrgo_udp_set_mark(mr_udp *u, uint32_t mark, mrgo_err *err);
mr_status mrgo_udp_sockopt(const mr_udp *u, int level, int name, int *value, mrgo_err *err);

/* TUN: mr_tun_write_batch on an mrgo_tun_call, GRO bits. */
mr_status mrgo_tun_write_batch(mr_tun *t, mrgo_tun_call *c, size_t n);
mr_status mrgo_tun_gro(const mr_tun *t, uint32_t *bits, mrgo_err *err);
mr_status mrgo_tun_disable_gro(mr_tun *t, uint32_t bits, mrgo_err *err);

#endif
