//go:build brokk_gc

package brokk

import "runtime"

// maybeGC forces a collection, then yields so that the cleanup goroutine can run any cleanup
// the collection queued: if a wrapper is unreachable while its C pointer is in use (a missing
// runtime.KeepAlive), its finaliser frees the pointer before the C call that uses it.
func maybeGC() {
	runtime.GC()
	runtime.Gosched()
}
