package brokk

/*
#include "shims.h"
*/
import "C"

import (
	"runtime"
	"time"
	"unsafe"
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
// not. Afterwards the accessors return zero values. A Message is not for concurrent use: read
// it on the goroutine that received it.
//
// Every field was read when the Message was made, in the same cgo call that delivered or
// fetched it (brokk_message_read), so the accessors only copy out of brokk's memory: none of
// them makes a cgo call.
type Message struct {
	// v is the view (a *C.gbrokk_view): on the C stack of the trampoline that is calling a
	// Handler or Listener, or in Go memory that the Delivery owning the Message keeps alive
	// (the garbage collector does not follow v, see gbrokk_view_ref in shims.h); noView once
	// it is no longer valid (nil, in a Message the program made itself, counts as noView).
	v *C.gbrokk_view_ref
}

// viewRef turns a view into what a Message holds.
func viewRef(v *C.gbrokk_view) *C.gbrokk_view_ref { return (*C.gbrokk_view_ref)(unsafe.Pointer(v)) }

// noView is what an invalidated Message points to: a NULL message and empty fields, which the
// accessors turn into zero values (brokk's own accessors answer NULL the same way). It is C
// memory, so that no Message ever refers to Go memory that only it keeps alive.
var noView = viewRef(&C.gbrokk_no_view)

// gv is the view, noView's for a zero Message.
func (m *Message) gv() *C.gbrokk_view {
	if m.v == nil {
		return &C.gbrokk_no_view
	}
	return (*C.gbrokk_view)(unsafe.Pointer(m.v))
}

// fields hands out the view's fields; callers keep m alive until they are done with them (a
// Delivery's cleanup frees the memory the views point into).
func (m *Message) fields() *C.brokk_message_fields {
	f := &m.gv().fields
	maybeGC()
	return f
}

// view hands out the C message pointer; callers keep m alive until the C call returns.
func (m *Message) view() *C.brokk_message {
	p := m.gv().message
	maybeGC()
	return p
}

// Topic is the topic the message was published on.
func (m *Message) Topic() string {
	s := goString(m.fields().topic)
	runtime.KeepAlive(m)
	return s
}

// Payload is a copy of the JSON payload, byte for byte as published.
func (m *Message) Payload() []byte {
	b := goBytes(m.fields().payload)
	runtime.KeepAlive(m)
	return b
}

// Metadata is a copy of the metadata JSON object as published, or "{}".
func (m *Message) Metadata() []byte {
	b := goBytes(m.fields().metadata)
	runtime.KeepAlive(m)
	return b
}

// ID is this delivery's own id as decimal text; in OnPublish, the published message's id.
func (m *Message) ID() string {
	s := goString(m.fields().id)
	runtime.KeepAlive(m)
	return s
}

// ParentID is the id of the published message this delivery copies (what Publish returned);
// empty in OnPublish.
func (m *Message) ParentID() string {
	s := goString(m.fields().parent_id)
	runtime.KeepAlive(m)
	return s
}

// DeliveryID is the id that Ack and Nack take; 0 in OnPublish.
func (m *Message) DeliveryID() DeliveryID {
	return DeliveryID(m.gv().fields.delivery_id)
}

// SubscriptionID is the subscription this delivery belongs to; 0 in OnPublish and for fetched
// deliveries.
func (m *Message) SubscriptionID() SubscriptionID {
	return SubscriptionID(m.gv().fields.subscription_id)
}

// Priority is the message's priority (higher first).
func (m *Message) Priority() int32 {
	return int32(m.gv().fields.priority)
}

// Group is the consumer group this delivery was made for; empty for an ungrouped
// subscription's delivery and in OnPublish.
func (m *Message) Group() string {
	s := goString(m.fields().group)
	runtime.KeepAlive(m)
	return s
}

// Attempt is 1 on first delivery and one more for each redelivery; 0 in OnPublish.
func (m *Message) Attempt() uint32 {
	return uint32(m.gv().fields.attempt)
}

// Timestamp is when the message was published (millisecond precision); the zero Time once
// the view is gone.
func (m *Message) Timestamp() time.Time {
	ms := int64(m.gv().fields.timestamp_ms)
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
