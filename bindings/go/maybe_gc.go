//go:build !brokk_gc

package brokk

// maybeGC does nothing in normal builds. Built with -tags brokk_gc (maybe_gc_actual.go) it
// forces a collection each time a wrapper hands out its C pointer, as wasmtime-go's
// maybe_gc_actual.go does, so that a missing runtime.KeepAlive shows up as a use after free.
func maybeGC() {}
