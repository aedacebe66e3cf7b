#include <stdio.h>

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

mr_status mrxds_snapshot_new(mr_snapshot **out, mrxds_err *err) {
	return capture(mr_snapshot_new("", out), err);
}

mr_status mrxds_snapshot_add(mr_snapshot *s, const char *type_url, const char *name, const uint8_t *bytes, size_t len, int64_t ttl_ms, mrxds_err *err) {
	return capture(mr_snapshot_add_resource(s, type_url, name, bytes, len, ttl_ms), err);
}

mr_status mrxds_snapshot_set_version(mr_snapshot *s, const char *type_url, const char *version, mrxds_err *err) {
	return capture(mr_snapshot_set_version(s, type_url, version), err);
}

mr_status mrxds_set_snapshot(mr_cache *c, const char *node, const mr_snapshot *s, mrxds_err *err) {
	return capture(mr_cache_set_snapshot(c, node, s), err);
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

mr_status mrxds_watch(mr_cache *c, const mr_watch_request *req, int delta, mr_cache_watch_h **out, int *fd, mrxds_err *err) {
	mr_status st = delta ? mr_cache_delta_watch(c, req, out) : mr_cache_watch(c, req, out);
	if (st != MR_OK) {
		return capture(st, err);
	}
	*fd = mr_cache_watch_fd(*out);
	if (*fd < 0) {
		mr_cache_watch_free(*out);
		*out = NULL;
		snprintf(err->msg, sizeof err->msg, "mr_cache_watch_fd returned %d", *fd);
		return MR_PANIC;
	}
	return MR_OK;
}

mr_status mrxds_fetch(mr_cache *c, const mr_watch_request *req, mr_bytes *out, mrxds_err *err) {
	return capture(mr_cache_fetch(c, req, out), err);
}

mr_status mrxds_watch_take(mr_cache_watch_h *w, mr_bytes *out, mrxds_err *err) {
	mr_status st = mr_cache_watch_next(w, 0, out);
	if (st == MR_WOULD_BLOCK || st == MR_TIMEOUT) {
		return st;
	}
	return capture(st, err);
}
