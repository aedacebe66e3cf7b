package meshring

/*
#include "shim_runtime.h"
*/
import "C"

import (
	"encoding/json"
	"runtime/cgo"
	"unsafe"
)

// The Go side of the vtable in shim_runtime.c. Each runs on the runtime's
// loop thread; userdata is the cgo.Handle of a *kindEntry.

func entryOf(ud unsafe.Pointer) *kindEntry {
	return cgo.Handle(uintptr(ud)).Value().(*kindEntry)
}

func rawJSON(p *C.char) json.RawMessage {
	return json.RawMessage(C.GoString(p))
}

//export mrgoProtoStart
func mrgoProtoStart(ud unsafe.Pointer, _ *C.mr_runtime, proto *C.char, config *C.char) C.uint32_t {
	k := entryOf(ud)
	return C.uint32_t(k.kind.Start(k.rt, C.GoString(proto), rawJSON(config)))
}

//export mrgoProtoShutdown
func mrgoProtoShutdown(ud unsafe.Pointer, _ *C.mr_runtime, proto *C.char) C.uint32_t {
	k := entryOf(ud)
	return C.uint32_t(k.kind.Shutdown(k.rt, C.GoString(proto)))
}

//export mrgoProtoReconfigure
func mrgoProtoReconfigure(ud unsafe.Pointer, _ *C.mr_runtime, proto *C.char, oldConfig *C.char, newConfig *C.char) C.int {
	k := entryOf(ud)
	if k.kind.Reconfigure(k.rt, C.GoString(proto), rawJSON(oldConfig), rawJSON(newConfig)) {
		return 1
	}
	return 0
}

//export mrgoProtoExport
func mrgoProtoExport(ud unsafe.Pointer, _ *C.mr_runtime, proto *C.char, r *C.mr_route) {
	k := entryOf(ud)
	k.kind.Export(k.rt, C.GoString(proto), Route{
		Table:      C.GoString(r.table),
		Prefix:     C.GoString(r.prefix),
		Proto:      C.GoString(r.proto),
		Preference: uint32(r.preference),
		Attrs:      rawJSON(r.attrs_json),
		Withdrawn:  bool(r.withdrawn),
	})
}

//export mrgoProtoFree
func mrgoProtoFree(ud unsafe.Pointer) {
	cgo.Handle(uintptr(ud)).Delete()
}
