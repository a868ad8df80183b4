package brokk

/*
#include "shims.h"
*/
import "C"

import (
	"context"
	"runtime"
	"time"
)

// FetchOptions configure Fetch (brokk_fetch_options); zero fields mean the defaults, a nil
// *FetchOptions all of them: group "default", no deadline, no attempt limit, no dead letters.
type FetchOptions struct {
	// Group is the consumer group to take from; "" means the group named "default", which
	// every fetch without a group shares.
	Group string
	// AckDeadline is how long the fetched delivery may stay unsettled before it is taken back
	// and redelivered to the group; 0 means no deadline. Rounded up to whole milliseconds.
	AckDeadline time.Duration
	// MaxAttempts is how many attempts it gets before it is given up; 0: no limit.
	MaxAttempts uint32
	// DeadLetterTopic is where it is published if given up or nacked; "": dropped.
	DeadLetterTopic string
}

// Fetch takes the next delivery of a consumer group on topic (brokk_broker_fetch): highest
// priority first, FIFO within a priority. It waits until ctx's deadline for one (no deadline:
// without limit; a deadline already passed: it only looks) and returns nil, nil if none came.
// If ctx can be cancelled, it waits in slices of at most 100 ms and returns ctx.Err() once it
// is cancelled. The delivery awaits Ack or Nack like a manual-ack handler's; the caller owns
// it and must Close it (Delivery.Ack and Delivery.Nack do).
func (b *Broker) Fetch(ctx context.Context, topic string, opts *FetchOptions) (*Delivery, error) {
	var pin runtime.Pinner
	defer pin.Unpin()
	var copts *C.brokk_fetch_options
	if opts != nil {
		deadline, err := durationMs("fetch", "AckDeadline", opts.AckDeadline)
		if err != nil {
			return nil, err
		}
		copts = &C.brokk_fetch_options{ack_deadline_ms: deadline, max_attempts: C.uint32_t(opts.MaxAttempts)}
		copts.group, copts.group_len = cOptText(opts.Group, &pin)
		copts.dead_letter_topic, copts.dead_letter_topic_len = cOptText(opts.DeadLetterTopic, &pin)
	}
	ctopic, ctopicLen := cText(topic)
	var d *C.brokk_delivery
	err := waitInSlices(ctx, func(ms C.uint64_t) (bool, error) {
		p, err := b.acquire("fetch")
		if err != nil {
			return true, err
		}
		defer b.release()
		err = check("fetch", C.gbrokk_broker_fetch(p, ctopic, ctopicLen, copts, ms, &d))
		runtime.KeepAlive(b)
		return err != nil || d != nil, err
	})
	runtime.KeepAlive(topic)
	if err != nil {
		if d != nil { // cannot happen: outputs are written only on success
			C.brokk_delivery_free(d)
		}
		return nil, err
	}
	if d == nil {
		return nil, nil
	}
	delivery := &Delivery{ptr: d, broker: b}
	delivery.msg.ptr = C.brokk_delivery_message(d)
	delivery.cleanup = runtime.AddCleanup(delivery, freeDelivery, d)
	return delivery, nil
}

func freeDelivery(d *C.brokk_delivery) { C.brokk_delivery_free(d) }

// Delivery is a fetched delivery (brokk_delivery), owned by the caller until Close, Ack or
// Nack. Freeing does not settle it: a delivery closed unsettled stays in flight until acked or
// nacked by its DeliveryID (or its ack deadline passes, or the broker closes). A Delivery is
// for one goroutine at a time.
type Delivery struct {
	msg     Message // the view, valid until the delivery is freed
	ptr     *C.brokk_delivery
	broker  *Broker
	cleanup runtime.Cleanup
}

// Message is the delivery's message view, valid until the Delivery is closed.
func (d *Delivery) Message() *Message { return &d.msg }

// Close releases the delivery handle (brokk_delivery_free) without settling it. Idempotent.
func (d *Delivery) Close() {
	if d.ptr == nil {
		return
	}
	d.cleanup.Stop()
	d.msg.ptr = nil
	C.brokk_delivery_free(d.ptr)
	d.ptr = nil
}

// Ack acks the delivery (Broker.Ack with its DeliveryID), then closes it, whatever the
// outcome.
func (d *Delivery) Ack() error {
	defer d.Close()
	return d.broker.Ack(d.msg.DeliveryID())
}

// Nack nacks the delivery (Broker.Nack with its DeliveryID), then closes it, whatever the
// outcome.
func (d *Delivery) Nack(requeue bool, delay time.Duration, reason string) error {
	defer d.Close()
	return d.broker.Nack(d.msg.DeliveryID(), requeue, delay, reason)
}

// Count counts the messages waiting on the given topics (brokk_broker_count): retained ones
// plus deliveries queued in consumer groups, one per group; in-flight deliveries are not
// counted, unknown topics count 0. No topics count 0; CountAll counts every topic.
func (b *Broker) Count(topics ...string) (uint64, error) {
	if topics == nil {
		topics = []string{} // a list, even if empty: never "all"
	}
	return b.countOrPurge("count", topics, false)
}

// CountAll is Count over every topic.
func (b *Broker) CountAll() (uint64, error) {
	return b.countOrPurge("count", nil, false)
}

// Purge discards what Count counts on the given topics (brokk_broker_purge) and returns how
// many it discarded. No topics purge nothing; PurgeAll purges every topic.
func (b *Broker) Purge(topics ...string) (uint64, error) {
	if topics == nil {
		topics = []string{} // a list, even if empty: never "all"
	}
	return b.countOrPurge("purge", topics, true)
}

// PurgeAll is Purge over every topic.
func (b *Broker) PurgeAll() (uint64, error) {
	return b.countOrPurge("purge", nil, true)
}

// countOrPurge: topics == nil means every topic (NULL), otherwise that list.
func (b *Broker) countOrPurge(op string, topics []string, purge bool) (uint64, error) {
	var pin runtime.Pinner
	defer pin.Unpin()
	var list *C.brokk_str // NULL: every topic
	var views []C.brokk_str
	if topics != nil {
		// One spare element so that an empty list is still a non-NULL pointer.
		views = make([]C.brokk_str, len(topics)+1)
		for i, t := range topics {
			views[i].ptr, views[i].len = cText(t)
			pin.Pin(views[i].ptr)
		}
		list = &views[0]
	}
	p, err := b.acquire(op)
	if err != nil {
		return 0, err
	}
	defer b.release()
	var n C.uint64_t
	if purge {
		err = check(op, C.gbrokk_broker_purge(p, list, C.size_t(len(topics)), &n))
	} else {
		err = check(op, C.gbrokk_broker_count(p, list, C.size_t(len(topics)), &n))
	}
	runtime.KeepAlive(b)
	runtime.KeepAlive(topics)
	if err != nil {
		return 0, err
	}
	return uint64(n), nil
}
