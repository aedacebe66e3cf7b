#include "shim_repl.h"

static mr_status capture(mr_status st, mrgo_err *err) {
	if (st != MR_OK && err != NULL) {
		err->os_err = mr_last_os_error();
		mr_last_error(err->msg, sizeof err->msg);
	}
	return st;
}

mr_status mrgo_volume_open(const char *path, const mr_volume_config *cfg, mr_volume **out, mrgo_err *err) {
	return capture(mr_volume_open(path, cfg, out), err);
}

mr_status mrgo_volume_read(mr_volume *v, uint64_t block, uint8_t *buf, size_t len, mrgo_err *err) {
	return capture(mr_volume_read(v, block, buf, len), err);
}

mr_status mrgo_volume_write(mr_volume *v, uint64_t block, const uint8_t *buf, size_t len, mrgo_err *err) {
	return capture(mr_volume_write(v, block, buf, len), err);
}

mr_status mrgo_volume_write_batch(mr_volume *v, const mr_block_write *w, size_t n, mrgo_err *err) {
	return capture(mr_volume_write_batch(v, w, n), err);
}

mr_status mrgo_volume_flush(mr_volume *v, mrgo_err *err) {
	return capture(mr_volume_flush(v), err);
}

mr_status mrgo_repl_start(mr_volume *v, const char *addr, const mr_repl_config *cfg, const uint8_t *key, size_t key_len,
                          mr_repl **out, mrgo_err *err) {
	mr_repl_config c = *cfg;
	c.key = key;
	c.key_len = key_len;
	return capture(mr_repl_start(v, addr, &c, out), err);
}

mr_status mrgo_repl_read(mr_repl *r, uint64_t block, uint8_t *buf, size_t len, mrgo_err *err) {
	return capture(mr_repl_read(r, block, buf, len), err);
}

mr_status mrgo_repl_write(mr_repl *r, uint64_t block, const uint8_t *buf, size_t len, mrgo_err *err) {
	return capture(mr_repl_write(r, block, buf, len), err);
}

mr_status mrgo_repl_write_batch(mr_repl *r, const mr_block_write *w, size_t n, mrgo_err *err) {
	return capture(mr_repl_write_batch(r, w, n), err);
}

mr_status mrgo_repl_checkpoint(mr_repl *r, int32_t timeout_ms, mrgo_err *err) {
	return capture(mr_repl_checkpoint(r, timeout_ms), err);
}

mr_status mrgo_repl_failover(mr_repl *r, mrgo_err *err) {
	return capture(mr_repl_failover(r), err);
}

mr_status mrgo_repl_stop(mr_repl *r, mrgo_err *err) {
	return capture(mr_repl_stop(r), err);
}

mr_status mrgo_repl_get_error(mr_repl *r, mrgo_err *err) {
	return capture(mr_repl_get_error(r), err);
}

mr_status mrgo_repl_get_stage(mr_repl *r, mr_repl_stage *out, mrgo_err *err) {
	return capture(mr_repl_get_stage(r, out), err);
}

mr_status mrgo_repl_wait_synced(mr_repl *r, int32_t timeout_ms, mrgo_err *err) {
	return capture(mr_repl_wait_synced(r, timeout_ms), err);
}

mr_status mrgo_repl_stats(mr_repl *r, mr_repl_counters *out, mrgo_err *err) {
	return capture(mr_repl_stats(r, out), err);
}

mr_status mrgo_repl_local_addr(mr_repl *r, mr_addr *out, mrgo_err *err) {
	return capture(mr_repl_local_addr(r, out), err);
}

mr_status mrgo_repl_add_connection(mr_repl *r, int fd, mrgo_err *err) {
	return capture(mr_repl_add_connection(r, fd), err);
}
