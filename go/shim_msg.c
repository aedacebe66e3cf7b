#include <stdio.h>

#include "shim_msg.h"

static mr_status msg_capture(mr_status st, mrgo_err *err) {
	if (st != MR_OK && err != NULL) {
		err->os_err = (st == MR_IO) ? mr_last_os_error() : 0;
		mr_last_error(err->msg, sizeof err->msg);
	}
	return st;
}

mr_status mrgo_udp_recvmsg(mr_udp *u, mrgo_msg_call *c, size_t n, int32_t timeout_ms) {
	mr_status st;
	if (n > MRGO_BATCH) {
		n = MRGO_BATCH;
	}
	c->count = 0;
	st = mr_udp_recvmsg(u, c->msgs, n, timeout_ms, &c->count);
	/* Timeouts are the Go side's polling slices: skip the message copy. */
	if (st == MR_TIMEOUT || st == MR_WOULD_BLOCK) {
		return st;
	}
	return msg_capture(st, &c->err);
}

mr_status mrgo_udp_sendmsg(mr_udp *u, mrgo_msg_call *c, size_t off, size_t n, int32_t timeout_ms) {
	mr_status st;
	c->count = 0;
	if (off > MRGO_BATCH || n > MRGO_BATCH - off) {
		c->err.os_err = 0;
		snprintf(c->err.msg, sizeof c->err.msg, "mrgo_udp_sendmsg: datagrams %zu..%zu exceed the batch of %d", off, off + n, MRGO_BATCH);
		return MR_INVALID_ARGUMENT;
	}
	st = mr_udp_sendmsg(u, c->msgs + off, n, timeout_ms, &c->count);
	if (st == MR_TIMEOUT || st == MR_WOULD_BLOCK) {
		return st;
	}
	return msg_capture(st, &c->err);
}

mr_status mrgo_udp_set_mark(mr_udp *u, uint32_t mark, mrgo_err *err) {
	return msg_capture(mr_udp_set_mark(u, mark), err);
}

mr_status mrgo_udp_sockopt(const mr_udp *u, int level, int name, int *value, mrgo_err *err) {
	return msg_capture(mr_udp_sockopt(u, level, name, value), err);
}

mr_status mrgo_tun_write_batch(mr_tun *t, mrgo_tun_call *c, size_t n) {
	if (n > MRGO_BATCH) {
		n = MRGO_BATCH;
	}
	c->count = 0;
	return msg_capture(mr_tun_write_batch(t, c->pkts, n, &c->count), &c->err);
}

mr_status mrgo_tun_gro(const mr_tun *t, uint32_t *bits, mrgo_err *err) {
	return msg_capture(mr_tun_gro(t, bits), err);
}

mr_status mrgo_tun_disable_gro(mr_tun *t, uint32_t bits, mrgo_err *err) {
	return msg_capture(mr_tun_disable_gro(t, bits), err);
}
