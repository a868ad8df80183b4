package brokk

/*
#include "shims.h"
*/
import "C"

import (
	"context"
	"runtime"
	"time"
	"unsafe"
)

// Go strings and byte slices are passed to brokk as (pointer, length) into Go memory: brokk
// copies what it keeps and holds no pointer after the call (brokk.h, "Strings"). Go memory
// inside a C struct that Go passes is pinned (runtime.Pinner) for the call, as cgo requires.

// cText is a required string: never NULL, so that "" reaches brokk as empty text (an
// invalid topic, say) rather than a NULL argument.
func cText(s string) (*C.char, C.size_t) {
	if len(s) == 0 {
		return &C.gbrokk_empty[0], 0
	}
	return (*C.char)(unsafe.Pointer(unsafe.StringData(s))), C.size_t(len(s))
}

// cOptText is an optional string: "" is NULL (absent).
func cOptText(s string, pin *runtime.Pinner) (*C.char, C.size_t) {
	if len(s) == 0 {
		return nil, 0
	}
	p := unsafe.StringData(s)
	if pin != nil {
		pin.Pin(p)
	}
	return (*C.char)(unsafe.Pointer(p)), C.size_t(len(s))
}

// cBytes is a byte slice: nil is NULL, empty but not nil is a non-NULL empty buffer.
func cBytes(b []byte, pin *runtime.Pinner) (*C.char, C.size_t) {
	switch {
	case b == nil:
		return nil, 0
	case len(b) == 0:
		return &C.gbrokk_empty[0], 0
	}
	p := &b[0]
	if pin != nil {
		pin.Pin(p)
	}
	return (*C.char)(unsafe.Pointer(p)), C.size_t(len(b))
}

// goString copies a brokk_str view into a Go string.
func goString(s C.brokk_str) string {
	if s.len == 0 {
		return ""
	}
	return string(unsafe.Slice((*byte)(unsafe.Pointer(s.ptr)), s.len))
}

// goBytes copies a brokk_str view into a new byte slice (any length; C.GoBytes stops at 2 GiB).
func goBytes(s C.brokk_str) []byte {
	out := make([]byte, int(s.len))
	copy(out, unsafe.Slice((*byte)(unsafe.Pointer(s.ptr)), s.len))
	return out
}

// durationMs converts a duration option to whole milliseconds, rounding up so that a positive
// duration never becomes 0 (which brokk reads as "none"). Negative durations are refused.
func durationMs(op, what string, d time.Duration) (C.uint64_t, error) {
	if d < 0 {
		return 0, errorf(op, StatusInvalidArgument, "%s is negative (%v)", what, d)
	}
	return C.uint64_t((d + time.Millisecond - 1) / time.Millisecond), nil
}

// ctxTimeoutMs is the time left until ctx's deadline in milliseconds (rounded up; 0 if it has
// passed), or BROKK_WAIT_FOREVER if ctx has none.
func ctxTimeoutMs(ctx context.Context) C.uint64_t {
	deadline, ok := ctx.Deadline()
	if !ok {
		return C.BROKK_WAIT_FOREVER
	}
	left := time.Until(deadline)
	if left <= 0 {
		return 0
	}
	return C.uint64_t((left + time.Millisecond - 1) / time.Millisecond)
}

// waitSlice is the longest single wait while ctx can be cancelled: a cgo call cannot be
// interrupted, so cancellation is noticed between slices (as the Python binding slices its
// waits so that Ctrl-C works).
const waitSlice = 100 * time.Millisecond

// waitInSlices calls wait with a timeout in milliseconds until it reports done, ctx is
// cancelled, or ctx's deadline has passed (then the last call had the time that was left).
// A context that cannot be cancelled gets one call with its whole timeout.
func waitInSlices(ctx context.Context, wait func(timeoutMs C.uint64_t) (done bool, err error)) error {
	if ctx.Done() == nil {
		_, err := wait(ctxTimeoutMs(ctx))
		return err
	}
	for {
		if err := ctx.Err(); err != nil && err != context.DeadlineExceeded {
			return err
		}
		ms := ctxTimeoutMs(ctx)
		last := ms <= C.uint64_t(waitSlice/time.Millisecond)
		if !last {
			ms = C.uint64_t(waitSlice / time.Millisecond)
		}
		done, err := wait(ms)
		if done || last {
			return err
		}
	}
}
