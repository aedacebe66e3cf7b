/*
 * Small C helpers for the Go binding. Each one makes a meshring call and,
 * on failure, reads mr_last_error / mr_last_os_error in the same C call, so
 * the thread-local error is read on the thread that produced it (a goroutine
 * can move between OS threads between two separate cgo calls).
 */
#ifndef MESHRING_GO_SHIM_H
#define MESHRING_GO_SHIM_H

#include <stdlib.h>
#include "meshring.h"

/* Datagrams per mrgo_call: the Go BatchSize. */
#define MRGO_BATCH 128
/* Bytes kept of an error message (NUL included). */
#define MRGO_ERRCAP 256

/* A failure's message and errno, filled by the helpers on failure. */
typedef struct mrgo_err {
	int os_err;
	char msg[MRGO_ERRCAP];
} mrgo_err;

/*
 * Everything one receive or send call needs, allocated in C memory by the
 * Go side so that no Go memory passed to C holds Go pointers.
 */
typedef struct mrgo_call {
	size_t count;
	mrgo_err err;
	mr_datagram msgs[MRGO_BATCH];
} mrgo_call;

mr_status mrgo_udp_bind(const char *addr, const mr_udp_config *cfg, mr_udp **out, mrgo_err *err);
mr_status mrgo_udp_local_addr(const mr_udp *u, mr_addr *out, mrgo_err *err);
mr_status mrgo_udp_stats(const mr_udp *u, mr_udp_counters *out, mrgo_err *err);
mr_status mrgo_udp_recv(mr_udp *u, mrgo_call *c, size_t n, int32_t timeout_ms);
mr_status mrgo_udp_send(mr_udp *u, mrgo_call *c, size_t off, size_t n, int32_t timeout_ms);

/* Notify bus. Results in mr_bytes are released by the Go side with mr_bytes_free. */
mr_status mrgo_bus_new(const char *opts_json, mr_bus **out, mrgo_err *err);
mr_status mrgo_bus_apply(mr_bus *b, const uint8_t *json, size_t len, mrgo_err *err);
mr_status mrgo_bus_publish(mr_bus *b, const uint8_t *json, size_t len, mrgo_err *err);
mr_status mrgo_bus_watch(mr_bus *b, uint64_t mask, mr_watcher **out, int *fd, mrgo_err *err);
mr_status mrgo_bus_peer(mr_bus *b, int64_t id, mr_bytes *out, mrgo_err *err);
mr_status mrgo_bus_netmap(mr_bus *b, mr_bytes *out, mrgo_err *err);
mr_status mrgo_bus_status(mr_bus *b, uint32_t flags, mr_bytes *out, mrgo_err *err);
mr_status mrgo_bus_stats(mr_bus *b, mr_bytes *out, mrgo_err *err);
mr_status mrgo_watcher_next(mr_watcher *w, int32_t timeout_ms, mr_bytes *out, mrgo_err *err);

#endif
