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

// wait makes one blocking call, given ctx's whole timeout (ctxTimeoutMs) and a cancellation
// token that ctx's cancellation triggers (a cgo call cannot be interrupted otherwise), or NULL
// if ctx cannot be cancelled. A call that brokk cancelled did nothing: wait returns ctx.Err().
// A ctx cancelled before the call gets ctx.Err() without one (a token triggered from the
// AfterFunc's goroutine could come too late to stop it).
//
// Only cancellation triggers the token: when ctx's deadline passes, brokk's own timeout (the
// same deadline) ends the call with the result each method documents for "nothing in time",
// rather than a race between the two.
func wait(ctx context.Context, call func(timeoutMs C.uint64_t, cancel *C.brokk_cancel) error) error {
	if ctx.Done() == nil {
		return call(ctxTimeoutMs(ctx), nil)
	}
	switch err := ctx.Err(); err {
	case nil:
	case context.DeadlineExceeded:
		return call(0, nil) // it only looks: there is no wait to interrupt
	default:
		return err
	}
	token := C.gbrokk_cancel_new()
	if token == nil { // cannot happen: brokk_cancel_new fails only for a NULL output
		return errorf("cancel", StatusPanic, "brokk_cancel_new failed")
	}
	fired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(fired)
		if ctx.Err() != context.DeadlineExceeded {
			C.brokk_cancel_trigger(token)
		}
	})
	err := call(ctxTimeoutMs(ctx), token)
	if !stop() {
		<-fired // the trigger may still be using the token
	}
	C.brokk_cancel_free(token)
	if isStatus(err, StatusCancelled) {
		return ctx.Err()
	}
	return err
}
