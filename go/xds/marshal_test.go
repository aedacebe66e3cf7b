package xds

import (
	"testing"
)

type notComparable struct{ s []int }

func TestSameValue(t *testing.T) {
	a, b := &notComparable{}, &notComparable{}
	if !sameValue(a, a) || sameValue(a, b) {
		t.Fatal("pointers: same object only")
	}
	// Non-pointer values with a slice inside cannot be compared with ==;
	// sameValue must not panic, and is true only for the same box.
	var x, y any = notComparable{s: []int{1}}, notComparable{s: []int{1}}
	if !sameValue(x, x) || sameValue(x, y) {
		t.Fatal("boxed values: same box only")
	}
	if sameValue(int64(1), int32(1)) {
		t.Fatal("different types are different values")
	}
}
