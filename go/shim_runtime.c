#include "shim_runtime.h"
#include "_cgo_export.h"

static mr_status capture(mr_status st, mrgo_err *err) {
	if (st != MR_OK && err != NULL) {
		err->os_err = 0;
		mr_last_error(err->msg, sizeof err->msg);
	}
	return st;
}

/* The vtable shared by every Go kind: userdata is the kind's cgo.Handle. */
static uint32_t vt_start(void *ud, mr_runtime *rt, const char *proto, const char *config_json) {
	return mrgoProtoStart(ud, rt, (char *)proto, (char *)config_json);
}

static uint32_t vt_shutdown(void *ud, mr_runtime *rt, const char *proto) {
	return mrgoProtoShutdown(ud, rt, (char *)proto);
}

static bool vt_reconfigure(void *ud, mr_runtime *rt, const char *proto, const char *old_json, const char *new_json) {
	return mrgoProtoReconfigure(ud, rt, (char *)proto, (char *)old_json, (char *)new_json) != 0;
}

static void vt_export(void *ud, mr_runtime *rt, const char *proto, const mr_route *route) {
	mrgoProtoExport(ud, rt, (char *)proto, (mr_route *)route);
}

static void vt_free(void *ud) {
	mrgoProtoFree(ud);
}

static const mr_proto_vtable go_vtable = {vt_start, vt_shutdown, vt_reconfigure, vt_export, vt_free};

mr_status mrgo_runtime_new(const char *opts_json, mr_runtime **out, mrgo_err *err) {
	return capture(mr_runtime_new(opts_json, out), err);
}

mr_status mrgo_runtime_register_kind(mr_runtime *rt, const char *kind, uintptr_t handle, mrgo_err *err) {
	return capture(mr_runtime_register_kind(rt, kind, &go_vtable, (void *)handle), err);
}

mr_status mrgo_runtime_commit(mr_runtime *rt, const char *config_json, uint32_t mode, mrgo_err *err) {
	return capture(mr_runtime_commit(rt, config_json, mode), err);
}

mr_status mrgo_runtime_command(mr_runtime *rt, int what, const char *pattern, size_t *matched, mrgo_err *err) {
	switch (what) {
	case 0:
		return capture(mr_runtime_enable(rt, pattern, matched), err);
	case 1:
		return capture(mr_runtime_disable(rt, pattern, matched), err);
	default:
		return capture(mr_runtime_restart(rt, pattern, matched), err);
	}
}

mr_status mrgo_runtime_show_protocols(mr_runtime *rt, mr_bytes *out, mrgo_err *err) {
	return capture(mr_runtime_show_protocols(rt, out), err);
}

mr_status mrgo_runtime_show_route(mr_runtime *rt, const char *prefix, const char *proto, mr_bytes *out, mrgo_err *err) {
	return capture(mr_runtime_show_route(rt, prefix, proto, out), err);
}

mr_status mrgo_runtime_next_event(mr_runtime *rt, int32_t timeout_ms, mr_bytes *out, mrgo_err *err) {
	mr_status st = mr_runtime_next_event(rt, timeout_ms, out);
	if (st == MR_TIMEOUT || st == MR_WOULD_BLOCK) {
		return st;
	}
	return capture(st, err);
}

mr_status mrgo_runtime_wait_idle(mr_runtime *rt, int32_t timeout_ms, mrgo_err *err) {
	return capture(mr_runtime_wait_idle(rt, timeout_ms), err);
}

mr_status mrgo_runtime_attach_bus(mr_runtime *rt, mr_bus *bus, mrgo_err *err) {
	return capture(mr_runtime_attach_bus(rt, bus), err);
}

mr_status mrgo_proto_notify_state(mr_runtime *rt, const char *proto, uint32_t state, const char *info, mrgo_err *err) {
	return capture(mr_proto_notify_state(rt, proto, state, info), err);
}

mr_status mrgo_proto_import(mr_runtime *rt, const char *proto, const char *prefix, uint32_t preference, const char *attrs, mrgo_err *err) {
	return capture(mr_proto_import(rt, proto, prefix, preference, attrs), err);
}

mr_status mrgo_proto_withdraw(mr_runtime *rt, const char *proto, const char *prefix, mrgo_err *err) {
	return capture(mr_proto_withdraw(rt, proto, prefix), err);
}
