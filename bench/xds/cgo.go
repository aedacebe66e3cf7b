package main

/*
static int mrbench_nop(int x) { return x + 1; }
*/
import "C"

import "time"

// cgoCallCost is the time of one Go -> C -> Go crossing (a C function that
// does nothing), the fixed cost every library call from Go pays.
func cgoCallCost() time.Duration {
	const n = 2_000_000
	start := time.Now()
	x := C.int(0)
	for i := 0; i < n; i++ {
		x = C.mrbench_nop(x)
	}
	if int(x) != n {
		panic("cgo loop miscounted")
	}
	return time.Since(start) / n
}
