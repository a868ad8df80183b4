package brokk

/*
#include "shims.h"
*/
import "C"

import (
	"context"
	"runtime"
)

// TakeOptions configure Take; a nil *TakeOptions means the defaults (group "default").
type TakeOptions struct {
	// Group is the consumer group to take from; "" means the group named "default", which
	// every fetch and take without a group shares.
	Group string
}

// Take takes the next delivery of a consumer group on topic and acks it in the same step
// (brokk_broker_take_until): highest priority first, FIFO within a priority. It returns a copy
// of the payload (JSON, never empty) and true, or nil and false if nothing came in time. It
// waits as Fetch does: until ctx's deadline (no deadline: without limit; a deadline already
// passed: it only looks); cancelling ctx interrupts the wait, and Take then returns ctx.Err(),
// having taken nothing.
//
// At most once: once Take has returned a payload, the message is gone from the group, whatever
// the caller then does with it; nothing awaits an ack (listeners hear it dispatched, then
// processed). A payload is never lost to the context: one taken in the same call in which ctx
// is cancelled is returned. On SQLite and Redis the take and the ack are one store operation.
// For a delivery that is acked only once processed, use Fetch.
//
// Any payload takes one call: brokk hands it over in a buffer of its own, which Take copies
// into the returned slice and frees.
func (b *Broker) Take(ctx context.Context, topic string, opts *TakeOptions) (payload []byte, ok bool, err error) {
	var group string
	if opts != nil {
		group = opts.Group
	}
	ctopic, ctopicLen := cText(topic)
	cgroup, cgroupLen := cOptText(group, nil) // "": NULL, the group "default"
	err = wait(ctx, func(ms C.uint64_t, cancel *C.brokk_cancel) error {
		p, err := b.acquire("take")
		if err != nil {
			return err
		}
		defer b.release()
		r := C.gbrokk_broker_take_until(p, ctopic, ctopicLen, cgroup, cgroupLen, ms, cancel)
		runtime.KeepAlive(b)
		if r.payload != nil {
			payload = goBytes(C.brokk_str{ptr: r.payload, len: r.len})
			C.brokk_string_free(r.payload)
		}
		return check("take", r.result)
	})
	runtime.KeepAlive(topic)
	runtime.KeepAlive(group)
	if err != nil || payload == nil {
		return nil, false, err // brokk hands over a payload only on success
	}
	return payload, true, nil
}
