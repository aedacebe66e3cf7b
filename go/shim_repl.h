/*
 * C helpers for the Go binding's volumes and replication (volume.go,
 * replication.go), in the style of shim.h: each makes one meshring call
 * and, on failure, reads mr_last_error / mr_last_os_error in the same C
 * call, on the thread that produced them.
 */
#ifndef MESHRING_GO_SHIM_REPL_H
#define MESHRING_GO_SHIM_REPL_H

#include <stdint.h>
#include "shim.h"

mr_status mrgo_volume_open(const char *path, const mr_volume_config *cfg, mr_volume **out, mrgo_err *err);
mr_status mrgo_volume_read(mr_volume *v, uint64_t block, uint8_t *buf, size_t len, mrgo_err *err);
mr_status mrgo_volume_write(mr_volume *v, uint64_t block, const uint8_t *buf, size_t len, mrgo_err *err);
mr_status mrgo_volume_write_batch(mr_volume *v, const mr_block_write *w, size_t n, mrgo_err *err);
mr_status mrgo_volume_flush(mr_volume *v, mrgo_err *err);

/* Starts with a copy of *cfg whose key is `key` (copied by mr_repl_start). */
mr_status mrgo_repl_start(mr_volume *v, const char *addr, const mr_repl_config *cfg, const uint8_t *key, size_t key_len,
                          mr_repl **out, mrgo_err *err);
mr_status mrgo_repl_read(mr_repl *r, uint64_t block, uint8_t *buf, size_t len, mrgo_err *err);
mr_status mrgo_repl_write(mr_repl *r, uint64_t block, const uint8_t *buf, size_t len, mrgo_err *err);
mr_status mrgo_repl_write_batch(mr_repl *r, const mr_block_write *w, size_t n, mrgo_err *err);
mr_status mrgo_repl_checkpoint(mr_repl *r, int32_t timeout_ms, mrgo_err *err);
mr_status mrgo_repl_failover(mr_repl *r, mrgo_err *err);
mr_status mrgo_repl_stop(mr_repl *r, mrgo_err *err);
mr_status mrgo_repl_get_error(mr_repl *r, mrgo_err *err);
mr_status mrgo_repl_get_stage(mr_repl *r, mr_repl_stage *out, mrgo_err *err);
mr_status mrgo_repl_wait_synced(mr_repl *r, int32_t timeout_ms, mrgo_err *err);
mr_status mrgo_repl_stats(mr_repl *r, mr_repl_counters *out, mrgo_err *err);
mr_status mrgo_repl_local_addr(mr_repl *r, mr_addr *out, mrgo_err *err);
mr_status mrgo_repl_add_connection(mr_repl *r, int fd, mrgo_err *err);

#endif
