package meshring

/*
#include "shim_runtime.h"
*/
import "C"

import (
	"encoding/json"
	"fmt"
	"log"
	"runtime/cgo"
	"unsafe"
)

// The Go side of the vtable in shim_runtime.c. Each runs on the runtime's
// loop thread; userdata is the cgo.Handle of a *kindEntry.
//
// A Go panic cannot unwind through the loop thread's C and Rust frames (it
// would abort the process), so each recovers a panic in the kind's method,
// logs it and answers as for a failure: Start and Shutdown leave the
// protocol down with the panic as its info, Reconfigure asks for a
// restart, and the export is dropped.

// hookPanic logs a recovered panic and returns its text.
func hookPanic(hook, proto string, p any) string {
	msg := fmt.Sprintf("panic in %s of %s: %v", hook, proto, p)
	log.Printf("meshring: %s", msg)
	return msg
}

func entryOf(ud unsafe.Pointer) *kindEntry {
	return cgo.Handle(uintptr(ud)).Value().(*kindEntry)
}

func rawJSON(p *C.char) json.RawMessage {
	return json.RawMessage(C.GoString(p))
}

//export mrgoProtoStart
func mrgoProtoStart(ud unsafe.Pointer, _ *C.mr_runtime, proto *C.char, config *C.char) (state C.uint32_t) {
	k := entryOf(ud)
	name := C.GoString(proto)
	defer func() {
		if p := recover(); p != nil {
			// The protocol is starting: a report of that same state only
			// records the info; returning down then fails the start.
			_ = k.rt.NotifyState(name, ProtoStart, hookPanic("Start", name, p))
			state = C.uint32_t(ProtoDown)
		}
	}()
	return C.uint32_t(k.kind.Start(k.rt, name, rawJSON(config)))
}

//export mrgoProtoShutdown
func mrgoProtoShutdown(ud unsafe.Pointer, _ *C.mr_runtime, proto *C.char) (state C.uint32_t) {
	k := entryOf(ud)
	name := C.GoString(proto)
	defer func() {
		if p := recover(); p != nil {
			// The protocol is stopping: as in mrgoProtoStart.
			_ = k.rt.NotifyState(name, ProtoStop, hookPanic("Shutdown", name, p))
			state = C.uint32_t(ProtoDown)
		}
	}()
	return C.uint32_t(k.kind.Shutdown(k.rt, name))
}

//export mrgoProtoReconfigure
func mrgoProtoReconfigure(ud unsafe.Pointer, _ *C.mr_runtime, proto *C.char, oldConfig *C.char, newConfig *C.char) (inPlace C.int) {
	k := entryOf(ud)
	name := C.GoString(proto)
	defer func() {
		if p := recover(); p != nil {
			hookPanic("Reconfigure", name, p)
			inPlace = 0 // cannot apply in place: restart with the new config
		}
	}()
	if k.kind.Reconfigure(k.rt, name, rawJSON(oldConfig), rawJSON(newConfig)) {
		return 1
	}
	return 0
}

//export mrgoProtoExport
func mrgoProtoExport(ud unsafe.Pointer, _ *C.mr_runtime, proto *C.char, r *C.mr_route) {
	k := entryOf(ud)
	name := C.GoString(proto)
	defer func() {
		if p := recover(); p != nil {
			hookPanic("Export", name, p) // the export is dropped
		}
	}()
	k.kind.Export(k.rt, name, Route{
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
