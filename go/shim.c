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

mr_status mrgo_bus_new(const char *opts_json, mr_bus **out, mrgo_err *err) {
	return capture(mr_bus_new(opts_json, out), err);
}

mr_status mrgo_bus_apply(mr_bus *b, const uint8_t *json, size_t len, mrgo_err *err) {
	return capture(mr_bus_apply(b, json, len), err);
}

mr_status mrgo_bus_publish(mr_bus *b, const uint8_t *json, size_t len, mrgo_err *err) {
	return capture(mr_bus_publish(b, json, len), err);
}

mr_status mrgo_bus_watch(mr_bus *b, uint64_t mask, mr_watcher **out, int *fd, mrgo_err *err) {
	mr_status st = capture(mr_bus_watch(b, mask, out), err);
	if (st != MR_OK) {
		return st;
	}
	*fd = mr_watcher_fd(*out);
	if (*fd < 0) {
		capture(MR_PANIC, err);
		mr_watcher_free(*out);
		*out = NULL;
		return MR_PANIC;
	}
	return MR_OK;
}

mr_status mrgo_bus_peer(mr_bus *b, int64_t id, mr_bytes *out, mrgo_err *err) {
	return capture(mr_bus_peer(b, id, out), err);
}

mr_status mrgo_bus_netmap(mr_bus *b, mr_bytes *out, mrgo_err *err) {
	return capture(mr_bus_netmap(b, out), err);
}

mr_status mrgo_bus_status(mr_bus *b, uint32_t flags, mr_bytes *out, mrgo_err *err) {
	return capture(mr_bus_status_opts(b, flags, out), err);
}

mr_status mrgo_bus_stats(mr_bus *b, mr_bytes *out, mrgo_err *err) {
	return capture(mr_bus_stats(b, out), err);
}

mr_status mrgo_watcher_next(mr_watcher *w, int32_t timeout_ms, mr_bytes *out, mrgo_err *err) {
	mr_status st = mr_watcher_next(w, timeout_ms, out);
	/* "Nothing yet" is the Go side's cue to wait on the fd: skip the message copy. */
	if (st == MR_WOULD_BLOCK || st == MR_TIMEOUT) {
		return st;
	}
	return capture(st, err);
}
