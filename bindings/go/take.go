package brokk

/*
#include "shims.h"
*/
import "C"

import (
	"context"
	"math"
	"runtime"
	"sync"
	"time"
	"unsafe"
)

// TakeOptions configure Take; a nil *TakeOptions means the defaults (group "default").
type TakeOptions struct {
	// Group is the consumer group to take from; "" means the group named "default", which
	// every fetch and take without a group shares.
	Group string
}

// takeBufferSize is the payload buffer Take tries first: payloads up to this size come in
// one cgo call, larger ones in two (the first learns the size and takes nothing).
const takeBufferSize = 4 << 10

// takeBuffers holds *[]byte buffers of takeBufferSize bytes for Take: they are only scratch
// (the payload is copied out of them), so they are reused across calls.
var takeBuffers = sync.Pool{New: func() any {
	b := make([]byte, takeBufferSize)
	return &b
}}

// Take takes the next delivery of a consumer group on topic and acks it in the same step
// (brokk_broker_take): highest priority first, FIFO within a priority. It returns a copy of
// the payload (JSON, never empty) and true, or nil and false if nothing came in time. It waits
// as Fetch does: until ctx's deadline (no deadline: without limit; a deadline already passed:
// it only looks), in slices of at most 100 ms if ctx can be cancelled, returning ctx.Err() once
// it is cancelled.
//
// At most once: once Take has returned a payload, the message is gone from the group, whatever
// the caller then does with it; nothing awaits an ack (listeners hear it dispatched, then
// processed). A payload is never lost to the context: one taken in the same call in which ctx
// is cancelled is returned. On SQLite and Redis the take and the ack are one store operation.
// For a delivery that is acked only once processed, use Fetch.
//
// Payloads up to 4 KiB take one cgo call. A larger one takes two: the first, into a 4 KiB
// buffer, fails with brokk's BUFFER_TOO_SMALL and the size, taking nothing; Take then calls
// again with a buffer of that size, which becomes the returned slice.
func (b *Broker) Take(ctx context.Context, topic string, opts *TakeOptions) (payload []byte, ok bool, err error) {
	var group string
	if opts != nil {
		group = opts.Group
	}
	ctopic, ctopicLen := cText(topic)
	cgroup, cgroupLen := cOptText(group, nil) // "": NULL, the group "default"
	scratch := takeBuffers.Get().(*[]byte)
	defer takeBuffers.Put(scratch)
	buf := *scratch
	var n int
	err = waitInSlices(ctx, func(ms C.uint64_t) (bool, error) {
		p, err := b.acquire("take")
		if err != nil {
			return true, err
		}
		defer b.release()
		start := time.Now()
		for {
			r := C.gbrokk_broker_take(p, ctopic, ctopicLen, cgroup, cgroupLen, ms,
				(*C.char)(unsafe.Pointer(&buf[0])), C.size_t(len(buf)))
			runtime.KeepAlive(b)
			err := check("take", r.result)
			if isStatus(err, StatusBufferTooSmall) && uint64(r.len) > uint64(len(buf)) {
				// Nothing was taken: call again with room for it, in what is left of this
				// slice (another consumer may take it first; then this waits for the next).
				buf = make([]byte, int(r.len))
				ms = msLeft(ms, start)
				continue
			}
			n = int(r.len)
			return err != nil || n > 0, err
		}
	})
	runtime.KeepAlive(topic)
	runtime.KeepAlive(group)
	if err != nil || n == 0 {
		return nil, false, err
	}
	if &buf[0] != &(*scratch)[0] {
		return buf[:n:n], true, nil // a buffer of this call's own
	}
	return append([]byte(nil), buf[:n]...), true, nil
}

// msLeft is what remains of a wait of ms milliseconds that began at start (ms itself if it is
// BROKK_WAIT_FOREVER), rounded up, 0 once it has passed.
func msLeft(ms C.uint64_t, start time.Time) C.uint64_t {
	if ms == C.BROKK_WAIT_FOREVER || ms > C.uint64_t(math.MaxInt64/time.Millisecond) {
		return ms // without limit, or centuries: no need to count
	}
	left := time.Duration(ms)*time.Millisecond - time.Since(start)
	if left <= 0 {
		return 0
	}
	return C.uint64_t((left + time.Millisecond - 1) / time.Millisecond)
}
