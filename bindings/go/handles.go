package brokk

import (
	"runtime/cgo"
	"sync/atomic"
)

// Each registered callback (a Handler, a Listener) travels to brokk as a runtime/cgo.Handle in
// user_data: never a Go pointer, which C may not keep. The handle is deleted exactly once:
// by brokk's free_user_data (gbrokkRelease) after the last invocation, or here when the
// registration failed (brokk then takes nothing). While brokk holds it, the handle is the only
// thing keeping the Go value alive; no other Go registry refers to it.

// liveHandles counts handles created and not yet deleted (for tests, and for leak hunting).
var liveHandles atomic.Int64

// releaseHook, if set, is called with every handle that free_user_data deletes; tests use it
// to see that each handle is released exactly once.
var releaseHook atomic.Pointer[func(cgo.Handle)]

func newHandle(v any) cgo.Handle {
	liveHandles.Add(1)
	return cgo.NewHandle(v)
}

// dropHandle deletes a handle brokk never took (a failed registration).
func dropHandle(h cgo.Handle) {
	h.Delete()
	liveHandles.Add(-1)
}
