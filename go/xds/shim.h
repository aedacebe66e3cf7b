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
/* SetSnapshot in one call: a snapshot with default version `version` and
 * the content of a packed buffer (see mr_snapshot_add_packed), set for
 * node (answers of queued watches come back in ev), then released. */
mr_status mrxds_set_packed(mr_cache *c, const char *node, const char *version, const uint8_t *buf, size_t len, mr_cache_ready *ev, size_t cap, size_t *n, mrxds_err *err);
/* SetSnapshot as an edit of the node's current snapshot (packed edit
 * encoding, see mr_snapshot_edit_packed): MR_NOT_FOUND, with nothing done,
 * when the node has none. */
mr_status mrxds_set_edit(mr_cache *c, const char *node, const uint8_t *buf, size_t len, mr_cache_ready *ev, size_t cap, size_t *n, mrxds_err *err);
/* A snapshot handle (default version `version`) from a packed buffer. */
mr_status mrxds_snapshot_packed(const char *version, const uint8_t *buf, size_t len, mr_snapshot **out, mrxds_err *err);
/* mr_cache_set_snapshot_take: answers of queued watches come back in ev. */
mr_status mrxds_set_snapshot(mr_cache *c, const char *node, const mr_snapshot *s, mr_cache_ready *ev, size_t cap, size_t *n, mrxds_err *err);
mr_status mrxds_clear_snapshot(mr_cache *c, const char *node, mrxds_err *err);
mr_status mrxds_status(mr_cache *c, const char *node, mr_bytes *out, mrxds_err *err);
mr_status mrxds_status_keys(mr_cache *c, mr_bytes *out, mrxds_err *err);
/* Opens a queued watch (token) from a packed request (request.go) and takes
 * an answer already there: MR_OK with *out set and no answer = parked,
 * reported later by mr_cache_take_ready; an answer = answered now (a SOTW
 * handle is already released, a delta one is kept in *out for the
 * stream's next watch); neither = dropped under the ADS rule. delta != 0:
 * a delta watch; after != NULL: a delta watch continuing that one
 * (mr_cache_delta_watch_after). */
mr_status mrxds_open(mr_cache *c, const uint8_t *req, size_t len, int delta, const mr_cache_watch_h *after, uint64_t token, mr_cache_watch_h **out, mr_bytes *answer, mrxds_err *err);
mr_status mrxds_fetch(mr_cache *c, const uint8_t *req, size_t len, mr_bytes *out, mrxds_err *err);
mr_status mrxds_take_ready(mr_cache *c, int32_t timeout_ms, mr_cache_ready *ev, size_t cap, size_t *n, mrxds_err *err);
/* Releases the responses of ev[0..n) and the watch handles hs[0..nh). */
void mrxds_release(mr_cache_ready *ev, size_t n, mr_cache_watch_h **hs, size_t nh);

#endif
