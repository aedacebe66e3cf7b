#include "shim_tun.h"

static mr_status tun_capture(mr_status st, mrgo_err *err) {
	if (st != MR_OK && err != NULL) {
		err->os_err = (st == MR_IO) ? mr_last_os_error() : 0;
		mr_last_error(err->msg, sizeof err->msg);
	}
	return st;
}

mr_status mrgo_tun_create(const char *name, const mr_tun_config *cfg, mr_tun **out, mrgo_err *err) {
	return tun_capture(mr_tun_create(name, cfg, out), err);
}

mr_status mrgo_tun_from_fd(int fd, const mr_tun_config *cfg, mr_tun **out, mrgo_err *err) {
	return tun_capture(mr_tun_from_fd(fd, cfg, out), err);
}

mr_status mrgo_tun_name(const mr_tun *t, char *buf, size_t cap, mrgo_err *err) {
	size_t len = 0;
	return tun_capture(mr_tun_name(t, buf, cap, &len), err);
}

mr_status mrgo_tun_mtu(const mr_tun *t, uint32_t *mtu, mrgo_err *err) {
	return tun_capture(mr_tun_mtu(t, mtu), err);
}

mr_status mrgo_tun_set_mtu(mr_tun *t, uint32_t mtu, mrgo_err *err) {
	return tun_capture(mr_tun_set_mtu(t, mtu), err);
}

mr_status mrgo_tun_write(mr_tun *t, mrgo_tun_call *c, size_t n) {
	if (n > MRGO_BATCH) {
		n = MRGO_BATCH;
	}
	c->count = 0;
	/* TUN writes never wait; the header asks for -1. */
	return tun_capture(mr_tun_write(t, c->pkts, n, -1, &c->count), &c->err);
}
