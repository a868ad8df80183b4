package brokk

/*
#include "shims.h"
*/
import "C"

import (
	"runtime"
	"time"
)

// DeliveryID identifies one delivery (brokk_message_delivery_id): what Ack and Nack take. It
// is unique within a broker and kept across redeliveries.
type DeliveryID uint64

// Message is a read-only view of one delivery (brokk_message), or in a listener's OnPublish of
// the published message.
//
// A Message given to a Handler or Listener callback is valid only until that callback
// returns; one from Delivery.Message until the Delivery is closed, acked or nacked. Each
// accessor copies what it returns, so strings and byte slices may be kept; the Message may
// not. Afterwards the accessors return zero values (an invalidated view is NULL, which every
// brokk_message accessor accepts). A Message is not for concurrent use: read it on the
// goroutine that received it.
type Message struct {
	ptr *C.brokk_message
}

// view hands out the C pointer; callers keep m alive until the C call returns.
func (m *Message) view() *C.brokk_message {
	p := m.ptr
	maybeGC()
	return p
}

// Topic is the topic the message was published on.
func (m *Message) Topic() string {
	s := goString(C.brokk_message_topic(m.view()))
	runtime.KeepAlive(m)
	return s
}

// Payload is a copy of the JSON payload, byte for byte as published.
func (m *Message) Payload() []byte {
	b := goBytes(C.brokk_message_payload(m.view()))
	runtime.KeepAlive(m)
	return b
}

// Metadata is a copy of the metadata JSON object as published, or "{}".
func (m *Message) Metadata() []byte {
	b := goBytes(C.brokk_message_metadata(m.view()))
	runtime.KeepAlive(m)
	return b
}

// ID is this delivery's own id as decimal text; in OnPublish, the published message's id.
func (m *Message) ID() string {
	s := goString(C.brokk_message_id(m.view()))
	runtime.KeepAlive(m)
	return s
}

// ParentID is the id of the published message this delivery copies (what Publish returned);
// empty in OnPublish.
func (m *Message) ParentID() string {
	s := goString(C.brokk_message_parent_id(m.view()))
	runtime.KeepAlive(m)
	return s
}

// DeliveryID is the id that Ack and Nack take; 0 in OnPublish.
func (m *Message) DeliveryID() DeliveryID {
	id := DeliveryID(C.brokk_message_delivery_id(m.view()))
	runtime.KeepAlive(m)
	return id
}

// SubscriptionID is the subscription this delivery belongs to; 0 in OnPublish and for fetched
// deliveries.
func (m *Message) SubscriptionID() SubscriptionID {
	id := SubscriptionID(C.brokk_message_subscription_id(m.view()))
	runtime.KeepAlive(m)
	return id
}

// Priority is the message's priority (higher first).
func (m *Message) Priority() int32 {
	p := int32(C.brokk_message_priority(m.view()))
	runtime.KeepAlive(m)
	return p
}

// Group is the consumer group this delivery was made for; empty for an ungrouped
// subscription's delivery and in OnPublish.
func (m *Message) Group() string {
	s := goString(C.brokk_message_group(m.view()))
	runtime.KeepAlive(m)
	return s
}

// Attempt is 1 on first delivery and one more for each redelivery; 0 in OnPublish.
func (m *Message) Attempt() uint32 {
	a := uint32(C.brokk_message_attempt(m.view()))
	runtime.KeepAlive(m)
	return a
}

// Timestamp is when the message was published (millisecond precision); the zero Time once
// the view is gone.
func (m *Message) Timestamp() time.Time {
	ms := int64(C.brokk_message_timestamp_ms(m.view()))
	runtime.KeepAlive(m)
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms)
}

// SetFailureReason records why the handler is failing this delivery, for listeners'
// OnFailed, when it then returns Nack or Requeue (brokk_message_set_failure_reason). Call it
// only from the handler that received m.
func (m *Message) SetFailureReason(reason string) error {
	p, n := cText(reason)
	err := check("set failure reason", C.gbrokk_message_set_failure_reason(m.view(), p, n))
	runtime.KeepAlive(m)
	return err
}

// SetRequeueDelay delays the redelivery the handler is about to ask for by returning Requeue:
// no earlier than d from now (brokk_message_set_requeue_delay). Call it only from the handler
// that received m.
func (m *Message) SetRequeueDelay(d time.Duration) error {
	ms, err := durationMs("set requeue delay", "delay", d)
	if err != nil {
		return err
	}
	err = check("set requeue delay", C.gbrokk_message_set_requeue_delay(m.view(), ms))
	runtime.KeepAlive(m)
	return err
}
