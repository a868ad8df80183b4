package brokk

/*
#include "shims.h"
*/
import "C"

import (
	"runtime"
	"time"
)

// Verdict is a handler's answer for one delivery (brokk_verdict).
type Verdict uint32

const (
	// Ack: processed; the delivery is settled.
	Ack Verdict = C.BROKK_VERDICT_ACK
	// Nack: failed; the delivery is given up (counted failed, dead-lettered if configured).
	Nack Verdict = C.BROKK_VERDICT_NACK
	// Requeue: failed for now; delivered again with attempt + 1 (after SetRequeueDelay's
	// delay), unless MaxAttempts is reached.
	Requeue Verdict = C.BROKK_VERDICT_REQUEUE
	// Later: on a ManualAck subscription, the delivery awaits Broker.Ack or Broker.Nack; on an
	// auto-ack one it means Ack.
	Later Verdict = C.BROKK_VERDICT_LATER
)

// Handler handles one delivery on a brokk worker thread and returns its verdict. m is valid
// only until the handler returns. With Concurrency 1 (the default) a subscription's handler
// runs once at a time, in delivery order; above 1, concurrently. A panic is recovered into
// Nack with the panic text as failure reason (which listeners see in OnFailed), and logged at
// slog.LevelError through Options.Logger (slog.Default() if nil) with the topic, delivery id,
// subscription id, attempt, panic value and stack.
type Handler func(m *Message) Verdict

// SubscriptionID identifies a subscription.
type SubscriptionID uint64

// SubscribeOptions configure Subscribe (brokk_subscription_options); zero fields mean the
// defaults, a nil *SubscribeOptions all of them: auto-ack, concurrency 1, no group.
type SubscribeOptions struct {
	// ManualAck: Later leaves a delivery awaiting Broker.Ack / Broker.Nack.
	ManualAck bool
	// Concurrency is how many invocations may run at once, 1..MaxConcurrency; 0 means 1.
	Concurrency uint32
	// Group is a consumer group to join: its members (subscriptions and fetchers) compete for
	// its messages. "" means none: the subscription gets its own copy of every message.
	Group string
	// AckDeadline is how long a delivery may stay unsettled after it is handed to the
	// handler before it is taken back and redelivered; 0 means no deadline. Rounded up to
	// whole milliseconds.
	AckDeadline time.Duration
	// MaxAttempts is how many attempts a delivery gets before it is given up; 0: no limit.
	MaxAttempts uint32
	// DeadLetterTopic is where given-up and nacked deliveries are published (with a
	// "dead_letter" object added to their metadata); "" means they are dropped.
	DeadLetterTopic string
}

// Subscribe subscribes handler to topic (brokk_broker_subscribe): every message published on
// it afterwards is delivered to the handler, as its own copy or, with a Group, shared among
// the group's members. The handler is released (its handle deleted) after its last
// invocation, once unsubscribed or the broker closed.
func (b *Broker) Subscribe(topic string, handler Handler, opts *SubscribeOptions) (SubscriptionID, error) {
	if handler == nil {
		return 0, errorf("subscribe", StatusNullArgument, "handler is nil")
	}
	var pin runtime.Pinner
	defer pin.Unpin()
	var copts *C.brokk_subscription_options
	if opts != nil {
		deadline, err := durationMs("subscribe", "AckDeadline", opts.AckDeadline)
		if err != nil {
			return 0, err
		}
		copts = &C.brokk_subscription_options{
			manual_ack:      C.bool(opts.ManualAck),
			concurrency:     C.uint32_t(opts.Concurrency),
			ack_deadline_ms: deadline,
			max_attempts:    C.uint32_t(opts.MaxAttempts),
		}
		copts.group, copts.group_len = cOptText(opts.Group, &pin)
		copts.dead_letter_topic, copts.dead_letter_topic_len = cOptText(opts.DeadLetterTopic, &pin)
	}
	ctopic, ctopicLen := cText(topic)
	p, err := b.acquire("subscribe")
	if err != nil {
		return 0, err
	}
	defer b.release()
	h := newHandle(&registration{handler: handler, logger: b.logger})
	var id C.uint64_t
	err = check("subscribe", C.gbrokk_broker_subscribe(p, ctopic, ctopicLen, C.uintptr_t(h), copts, &id))
	runtime.KeepAlive(b)
	if err != nil {
		dropHandle(h) // a failed registration takes nothing; free_user_data never runs
		return 0, err
	}
	return SubscriptionID(id), nil
}
