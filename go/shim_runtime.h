/*
 * C helpers for the Go binding's lifecycle runtime (runtime.go), in the
 * style of shim.h: each makes one meshring call and, on failure, reads
 * mr_last_error in the same C call. mrgo_runtime_register_kind registers a
 * kind whose vtable calls the Go exports in runtime_export.go.
 */
#ifndef MESHRING_GO_SHIM_RUNTIME_H
#define MESHRING_GO_SHIM_RUNTIME_H

#include <stdint.h>
#include "shim.h"

mr_status mrgo_runtime_new(const char *opts_json, mr_runtime **out, mrgo_err *err);
mr_status mrgo_runtime_register_kind(mr_runtime *rt, const char *kind, uintptr_t handle, mrgo_err *err);
mr_status mrgo_runtime_commit(mr_runtime *rt, const char *config_json, uint32_t mode, mrgo_err *err);
/* what: 0 enable, 1 disable, 2 restart */
mr_status mrgo_runtime_command(mr_runtime *rt, int what, const char *pattern, size_t *matched, mrgo_err *err);
mr_status mrgo_runtime_show_protocols(mr_runtime *rt, mr_bytes *out, mrgo_err *err);
mr_status mrgo_runtime_show_route(mr_runtime *rt, const char *prefix, const char *proto, mr_bytes *out, mrgo_err *err);
mr_status mrgo_runtime_next_event(mr_runtime *rt, int32_t timeout_ms, mr_bytes *out, mrgo_err *err);
mr_status mrgo_runtime_wait_idle(mr_runtime *rt, int32_t timeout_ms, mrgo_err *err);
mr_status mrgo_runtime_attach_bus(mr_runtime *rt, mr_bus *bus, mrgo_err *err);
mr_status mrgo_proto_notify_state(mr_runtime *rt, const char *proto, uint32_t state, const char *info, mrgo_err *err);
mr_status mrgo_proto_import(mr_runtime *rt, const char *proto, const char *prefix, uint32_t preference, const char *attrs, mrgo_err *err);
mr_status mrgo_proto_withdraw(mr_runtime *rt, const char *proto, const char *prefix, mrgo_err *err);

#endif
