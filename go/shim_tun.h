/*
 * C helpers for the Go binding's TUN device (tun.go), in the style of
 * shim.h: each makes one meshring call and, on failure, reads
 * mr_last_error / mr_last_os_error in the same C call.
 */
#ifndef MESHRING_GO_SHIM_TUN_H
#define MESHRING_GO_SHIM_TUN_H

#include "shim.h"

/*
 * Everything one mr_tun_read or mr_tun_write call needs, allocated in C
 * memory by the Go side: the mr_packet array points at pinned Go buffers,
 * so it cannot itself live in Go memory.
 */
typedef struct mrgo_tun_call {
	size_t count;
	mrgo_err err;
	mr_packet pkts[MRGO_BATCH];
} mrgo_tun_call;

mr_status mrgo_tun_create(const char *name, const mr_tun_config *cfg, mr_tun **out, mrgo_err *err);
mr_status mrgo_tun_from_fd(int fd, const mr_tun_config *cfg, mr_tun **out, mrgo_err *err);
mr_status mrgo_tun_name(const mr_tun *t, char *buf, size_t cap, mrgo_err *err);
mr_status mrgo_tun_mtu(const mr_tun *t, uint32_t *mtu, mrgo_err *err);
mr_status mrgo_tun_set_mtu(mr_tun *t, uint32_t mtu, mrgo_err *err);
mr_status mrgo_tun_write(mr_tun *t, mrgo_tun_call *c, size_t n);

#endif
