/*
 * C helpers for the xds package. Each makes one meshring call and, on
 * failure, reads mr_last_error in the same C call, so the thread-local
 * message is read on the thread that produced it (a goroutine may move
 * between OS threads between two cgo calls).
 */
#ifndef MESHRING_XDS_SHIM_H
#define MESHRING_XDS_SHIM_H

#include <stdlib.h>
#include "meshring.h"

#define MRXDS_ERRCAP 256

typedef struct mrxds_err {
	char msg[MRXDS_ERRCAP];
} mrxds_err;

mr_status mrxds_cache_new(uint32_t flags, int64_t heartbeat_ms, mr_cache **out, mrxds_err *err);
mr_status mrxds_snapshot_new(mr_snapshot **out, mrxds_err *err);
mr_status mrxds_snapshot_add(mr_snapshot *s, const char *type_url, const char *name, const uint8_t *bytes, size_t len, int64_t ttl_ms, mrxds_err *err);
mr_status mrxds_snapshot_set_version(mr_snapshot *s, const char *type_url, const char *version, mrxds_err *err);
mr_status mrxds_set_snapshot(mr_cache *c, const char *node, const mr_snapshot *s, mrxds_err *err);
mr_status mrxds_clear_snapshot(mr_cache *c, const char *node, mrxds_err *err);
mr_status mrxds_status(mr_cache *c, const char *node, mr_bytes *out, mrxds_err *err);
mr_status mrxds_status_keys(mr_cache *c, mr_bytes *out, mrxds_err *err);
/* delta != 0: mr_cache_delta_watch. On success *fd is the watch's readiness fd. */
mr_status mrxds_watch(mr_cache *c, const mr_watch_request *req, int delta, mr_cache_watch_h **out, int *fd, mrxds_err *err);
mr_status mrxds_fetch(mr_cache *c, const mr_watch_request *req, mr_bytes *out, mrxds_err *err);
/* Non-blocking mr_cache_watch_next; MR_WOULD_BLOCK skips the message copy. */
mr_status mrxds_watch_take(mr_cache_watch_h *w, mr_bytes *out, mrxds_err *err);

#endif
