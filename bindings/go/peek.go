package brokk

/*
#include "shims.h"
*/
import "C"

import (
	"runtime"
	"time"
)

// MaxPeek is the most deliveries one Peek shows (BROKK_MAX_PEEK).
const MaxPeek = C.BROKK_MAX_PEEK

// Peeked is a delivery that a fetch of its group would get, as Peek shows it: copied out of
// brokk, so it stays valid. It has no delivery id (nothing was handed out), and Attempt is the
// attempt a fetch of it now would be.
type Peeked struct {
	Topic string
	// ID is the message id (the id Publish returned).
	ID string
	// Payload is the JSON payload, byte for byte as published.
	Payload []byte
	// Metadata is the JSON-object metadata as published, or "{}".
	Metadata  []byte
	Priority  int32
	Attempt   uint32
	Timestamp time.Time
}

// Peek shows the next max deliveries (1 to MaxPeek) that a fetch of group ("": the group
// "default") on topic would get, in the order it would get them, without taking them
// (brokk_broker_peek): nothing is claimed, no attempt counted, no statistic or listener event.
// Deliveries in flight and requeues still waiting out their delay are left out. Nothing is
// created: a group that does not exist yet shows what the topic retains for its first named
// group (empty once it has one). max out of range is ErrInvalidArgument. It does not wait, so it takes no context.
func (b *Broker) Peek(topic string, group string, max int) ([]Peeked, error) {
	if max < 0 {
		return nil, errorf("peek", StatusInvalidArgument, "max is negative (%d)", max)
	}
	ctopic, ctopicLen := cText(topic)
	var cgroup *C.char // NULL: the group "default"
	var cgroupLen C.size_t
	if group != "" {
		cgroup, cgroupLen = cText(group)
	}
	p, err := b.acquire("peek")
	if err != nil {
		return nil, err
	}
	var result *C.brokk_peek_result
	err = check("peek", C.gbrokk_broker_peek(p, ctopic, ctopicLen, cgroup, cgroupLen, C.size_t(max), &result))
	b.release()
	runtime.KeepAlive(b)
	runtime.KeepAlive(topic)
	runtime.KeepAlive(group)
	if err != nil {
		return nil, err
	}
	defer C.brokk_peek_result_free(result)
	n := int(C.brokk_peek_result_count(result))
	out := make([]Peeked, 0, n)
	if n == 0 {
		return out, nil
	}
	// Memory Go allocated, holding only C pointers: brokk fills it in one call.
	fields := make([]C.brokk_peeked_fields, n)
	if err := check("peek", C.gbrokk_peek_result_read_all(result, &fields[0], C.size_t(n))); err != nil {
		return nil, err
	}
	for i := range fields {
		f := &fields[i]
		out = append(out, Peeked{
			Topic:     goString(f.topic),
			ID:        goString(f.id),
			Payload:   goBytes(f.payload),
			Metadata:  goBytes(f.metadata),
			Priority:  int32(f.priority),
			Attempt:   uint32(f.attempt),
			Timestamp: time.UnixMilli(int64(f.timestamp_ms)),
		})
	}
	return out, nil
}
