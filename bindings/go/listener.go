package brokk

/*
#include "shims.h"
*/
import "C"

import "runtime"

// ListenerID identifies a listener.
type ListenerID uint64

// Listener observes broker events (brokk_listener). Set the callbacks you want; nil ones are
// not installed at all, so brokk skips those events without calling into Go.
//
// A struct of functions rather than an interface: it is brokk_listener field for field, a
// listener wanting one event sets one field (no no-op methods or base type to embed), and
// which events cross into Go is known when it is added.
//
// All callbacks run on the broker's single listener thread, one event at a time, in the
// order the events happened. They may call the Broker's methods, except Join and a non-forced
// Close. A Message passed to them is valid only during the call. A callback that panics is
// recovered and logged at slog.LevelError through Options.Logger (slog.Default() if nil); the
// listener keeps running. Events reach the listener thread through a bounded queue
// (Options.ListenerQueueCapacity): a slow listener delays other listeners, never deliveries,
// and on overflow events are dropped and counted.
type Listener struct {
	OnPublish      func(m *Message)                               // a message was published (DeliveryID 0)
	OnDispatched   func(m *Message)                               // a delivery was handed to a handler
	OnProcessed    func(m *Message)                               // a delivery was acked
	OnFailed       func(m *Message, reason string, requeued bool) // nacked, requeued, or its handler failed
	OnSubscribe    func(topic string, id SubscriptionID)          // a subscription was created
	OnUnsubscribe  func(topic string, id SubscriptionID)          // a subscription was removed
	OnTopicCreated func(topic string)                             // a topic was named for the first time
	// OnRelease runs exactly once, after the last callback, when the listener is removed or
	// the broker closed: brokk's free_user_data. It may run on a brokk thread (it does after
	// ForceClose) or on the goroutine calling RemoveListener or Close.
	OnRelease func()
}

// AddListener adds a copy of l (brokk_broker_add_listener); it sees every event after this
// returns.
func (b *Broker) AddListener(l Listener) (ListenerID, error) {
	var events C.uint32_t
	set := func(present bool, bit C.uint32_t) {
		if present {
			events |= bit
		}
	}
	set(l.OnPublish != nil, C.GBROKK_ON_PUBLISH)
	set(l.OnDispatched != nil, C.GBROKK_ON_DISPATCHED)
	set(l.OnProcessed != nil, C.GBROKK_ON_PROCESSED)
	set(l.OnFailed != nil, C.GBROKK_ON_FAILED)
	set(l.OnSubscribe != nil, C.GBROKK_ON_SUBSCRIBE)
	set(l.OnUnsubscribe != nil, C.GBROKK_ON_UNSUBSCRIBE)
	set(l.OnTopicCreated != nil, C.GBROKK_ON_TOPIC_CREATED)
	p, err := b.acquire("add listener")
	if err != nil {
		return 0, err
	}
	defer b.release()
	h := newHandle(&registration{listener: &l, logger: b.logger})
	var id C.uint64_t
	err = check("add listener", C.gbrokk_broker_add_listener(p, C.uintptr_t(h), events, &id))
	runtime.KeepAlive(b)
	if err != nil {
		dropHandle(h) // a failed registration takes nothing; OnRelease never runs
		return 0, err
	}
	return ListenerID(id), nil
}

// RemoveListener removes a listener (brokk_broker_remove_listener): a callback of it that is
// running finishes and no further one starts; then its OnRelease runs.
func (b *Broker) RemoveListener(id ListenerID) error {
	p, err := b.acquire("remove listener")
	if err != nil {
		return err
	}
	defer b.release()
	err = check("remove listener", C.gbrokk_broker_remove_listener(p, C.uint64_t(id)))
	runtime.KeepAlive(b)
	return err
}
