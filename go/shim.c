#include <stdio.h>

#include "shim.h"

static mr_status capture(mr_status st, mrgo_err *err) {
	if (st != MR_OK && err != NULL) {
		err->os_err = (st == MR_IO) ? mr_last_os_error() : 0;
		mr_last_error(err->msg, sizeof err->msg);
	}
	return st;
}

mr_status mrgo_udp_bind(const char *addr, const mr_udp_config *cfg, mr_udp **out, mrgo_err *err) {
	return capture(mr_udp_bind(addr, cfg, out), err);
}

mr_status mrgo_udp_local_addr(const mr_udp *u, mr_addr *out, mrgo_err *err) {
	return capture(mr_udp_local_addr(u, out), err);
}

mr_status mrgo_udp_stats(const mr_udp *u, mr_udp_counters *out, mrgo_err *err) {
	return capture(mr_udp_stats(u, out), err);
}

mr_status mrgo_udp_recv(mr_udp *u, mrgo_call *c, size_t n, int32_t timeout_ms) {
	mr_status st;
	if (n > MRGO_BATCH) {
		n = MRGO_BATCH;
	}
	c->count = 0;
	st = mr_udp_recv(u, c->msgs, n, timeout_ms, &c->count);
	/* Timeouts are the Go side's polling slices: skip the message copy. */
	if (st == MR_TIMEOUT || st == MR_WOULD_BLOCK) {
		return st;
	}
	return capture(st, &c->err);
}

mr_status mrgo_udp_send(mr_udp *u, mrgo_call *c, size_t off, size_t n, int32_t timeout_ms) {
	mr_status st;
	c->count = 0;
	if (off > MRGO_BATCH || n > MRGO_BATCH - off) {
		c->err.os_err = 0;
		snprintf(c->err.msg, sizeof c->err.msg, "mrgo_udp_send: datagrams %zu..%zu exceed the batch of %d", off, off + n, MRGO_BATCH);
		return MR_INVALID_ARGUMENT;
	}
	st = mr_udp_send(u, c->msgs + off, n, timeout_ms, &c->count);
	if (st == MR_TIMEOUT || st == MR_WOULD_BLOCK) {
		return st;
	}
	return capture(st, &c->err);
}
