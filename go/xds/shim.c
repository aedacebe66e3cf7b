#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shim.h"

static mr_status capture(mr_status st, mrxds_err *err) {
	if (st != MR_OK && err != NULL) {
		mr_last_error(err->msg, sizeof err->msg);
	}
	return st;
}

mr_status mrxds_cache_new(uint32_t flags, int64_t heartbeat_ms, mr_cache **out, mrxds_err *err) {
	mr_cache_config cfg;
	mr_status st = mr_cache_config_init(&cfg);
	if (st != MR_OK) {
		return capture(st, err);
	}
	cfg.flags = flags;
	cfg.heartbeat_interval_ms = heartbeat_ms;
	return capture(mr_cache_new(&cfg, out), err);
}

mr_status mrxds_set_packed(mr_cache *c, const char *node, const char *version, const uint8_t *buf, size_t len, mr_cache_ready *ev, size_t cap, size_t *n, mrxds_err *err) {
	mr_snapshot *s = NULL;
	mr_status st = mr_snapshot_new(version, &s);
	if (st == MR_OK) {
		st = mr_snapshot_add_packed(s, buf, len);
	}
	*n = 0;
	if (st == MR_OK) {
		st = mr_cache_set_snapshot_take(c, node, s, ev, cap, n);
	}
	st = capture(st, err);
	mr_snapshot_free(s);
	return st;
}

mr_status mrxds_set_edit(mr_cache *c, const char *node, const uint8_t *buf, size_t len, mr_cache_ready *ev, size_t cap, size_t *n, mrxds_err *err) {
	mr_snapshot *s = NULL;
	mr_status st = mr_cache_get_snapshot(c, node, &s);
	*n = 0;
	if (st == MR_NOT_FOUND) {
		return st; /* no snapshot to edit: the caller sends it whole */
	}
	if (st == MR_OK) {
		st = mr_snapshot_edit_packed(s, buf, len);
	}
	if (st == MR_OK) {
		st = mr_cache_set_snapshot_take(c, node, s, ev, cap, n);
	}
	st = capture(st, err);
	mr_snapshot_free(s);
	return st;
}

mr_status mrxds_snapshot_packed(const char *version, const uint8_t *buf, size_t len, mr_snapshot **out, mrxds_err *err) {
	mr_status st = mr_snapshot_new(version, out);
	if (st == MR_OK) {
		st = mr_snapshot_add_packed(*out, buf, len);
		if (st != MR_OK) {
			mr_snapshot_free(*out);
			*out = NULL;
		}
	}
	return capture(st, err);
}

mr_status mrxds_set_snapshot(mr_cache *c, const char *node, const mr_snapshot *s, mr_cache_ready *ev, size_t cap, size_t *n, mrxds_err *err) {
	return capture(mr_cache_set_snapshot_take(c, node, s, ev, cap, n), err);
}

mr_status mrxds_clear_snapshot(mr_cache *c, const char *node, mrxds_err *err) {
	return capture(mr_cache_clear_snapshot(c, node), err);
}

mr_status mrxds_status(mr_cache *c, const char *node, mr_bytes *out, mrxds_err *err) {
	return capture(mr_cache_status(c, node, out), err);
}

mr_status mrxds_status_keys(mr_cache *c, mr_bytes *out, mrxds_err *err) {
	return capture(mr_cache_status_keys(c, out), err);
}

static uint32_t rd_u32(const uint8_t *p) {
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* The next NUL-terminated string of the packed request, or NULL past the end. */
static const char *next_str(const uint8_t *buf, size_t len, size_t *off) {
	const char *s;
	const void *nul;
	if (*off >= len) {
		return NULL;
	}
	s = (const char *)buf + *off;
	nul = memchr(s, 0, len - *off);
	if (nul == NULL) {
		return NULL;
	}
	*off = (size_t)((const char *)nul - (const char *)buf) + 1;
	return s;
}

/* Fills *r from the packed request of request.go: u32 flags, u32 n_names,
 * u32 n_known, then NUL-terminated strings: node, type URL, version, the
 * names, the known names, the known versions. The string array goes to
 * *arrays (free it); the strings point into buf, valid for this C call. */
static mr_status unpack_request(const uint8_t *buf, size_t len, mr_watch_request *r, const char ***arrays, mrxds_err *err) {
	size_t off = 12, i, n_names, n_known, n;
	const char **a;
	*arrays = NULL;
	if (len < 12 || mr_watch_request_init(r) != MR_OK) {
		snprintf(err->msg, sizeof err->msg, "meshring/xds: packed request too short");
		return MR_INVALID_ARGUMENT;
	}
	r->flags = rd_u32(buf);
	n_names = rd_u32(buf + 4);
	n_known = rd_u32(buf + 8);
	n = n_names + 2 * n_known;
	if (n > len) {
		snprintf(err->msg, sizeof err->msg, "meshring/xds: malformed packed request");
		return MR_INVALID_ARGUMENT;
	}
	a = malloc((n + 1) * sizeof *a);
	if (a == NULL) {
		snprintf(err->msg, sizeof err->msg, "meshring/xds: out of memory");
		return MR_NO_MEMORY;
	}
	r->node = next_str(buf, len, &off);
	r->type_url = next_str(buf, len, &off);
	r->version_info = next_str(buf, len, &off);
	for (i = 0; i < n; i++) {
		a[i] = next_str(buf, len, &off);
		if (a[i] == NULL) {
			break;
		}
	}
	if (r->version_info == NULL || i != n) {
		free(a);
		snprintf(err->msg, sizeof err->msg, "meshring/xds: malformed packed request");
		return MR_INVALID_ARGUMENT;
	}
	r->names = a;
	r->n_names = n_names;
	r->known_names = a + n_names;
	r->known_versions = a + n_names + n_known;
	r->n_known = n_known;
	*arrays = a;
	return MR_OK;
}

mr_status mrxds_open(mr_cache *c, const uint8_t *buf, size_t len, int delta, const mr_cache_watch_h *after, uint64_t token, mr_cache_watch_h **out, mr_bytes *answer, mrxds_err *err) {
	mr_watch_request r;
	const char **arrays;
	mr_status st = unpack_request(buf, len, &r, &arrays, err);
	*out = NULL;
	answer->ptr = NULL;
	answer->len = 0;
	if (st != MR_OK) {
		return st;
	}
	r.flags |= MR_WATCH_QUEUED;
	r.token = token;
	if (after != NULL) {
		st = mr_cache_delta_watch_after(c, after, &r, out);
	} else {
		st = delta ? mr_cache_delta_watch(c, &r, out) : mr_cache_watch(c, &r, out);
	}
	free(arrays);
	if (st != MR_OK) {
		return capture(st, err);
	}
	if (mr_cache_watch_pending(*out)) {
		return MR_OK; /* parked: the ready queue reports it */
	}
	st = mr_cache_watch_next(*out, 0, answer);
	if (st == MR_CLOSED && mr_cache_watch_dropped(*out)) {
		/* ADS rule: dropped unanswered, as go-control-plane drops it.
		 * MR_OK with neither handle nor answer. */
		mr_cache_watch_free(*out);
		*out = NULL;
		return MR_OK;
	}
	st = capture(st, err);
	if (st != MR_OK || !delta) {
		mr_cache_watch_free(*out);
		*out = NULL;
	}
	/* A delta watch answered at once keeps its handle (with the answer):
	 * the stream's next watch continues from it. */
	return st;
}

mr_status mrxds_fetch(mr_cache *c, const uint8_t *buf, size_t len, mr_bytes *out, mrxds_err *err) {
	mr_watch_request r;
	const char **arrays;
	mr_status st = unpack_request(buf, len, &r, &arrays, err);
	out->ptr = NULL;
	out->len = 0;
	if (st != MR_OK) {
		return st;
	}
	st = mr_cache_fetch(c, &r, out);
	free(arrays);
	if (st == MR_UP_TO_DATE || st == MR_NOT_FOUND) {
		return st;
	}
	return capture(st, err);
}

mr_status mrxds_take_ready(mr_cache *c, int32_t timeout_ms, mr_cache_ready *ev, size_t cap, size_t *n, mrxds_err *err) {
	mr_status st = mr_cache_take_ready(c, timeout_ms, ev, cap, n);
	if (st == MR_WOULD_BLOCK || st == MR_TIMEOUT || st == MR_CLOSED) {
		return st;
	}
	return capture(st, err);
}

void mrxds_release(mr_cache_ready *ev, size_t n, mr_cache_watch_h **hs, size_t nh) {
	size_t i;
	for (i = 0; i < n; i++) {
		mr_bytes_free(&ev[i].response);
	}
	for (i = 0; i < nh; i++) {
		mr_cache_watch_free(hs[i]);
	}
}
