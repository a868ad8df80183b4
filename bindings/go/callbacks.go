package brokk

// The Go half of the trampolines in shims.c. brokk calls the C trampolines on its own threads;
// they call these with user_data turned back into the integer handle it is (handles.go) and,
// for a message, a view that the trampoline filled on its C stack with every field of the
// message (brokk_message_read), so that the Message accessors make no cgo call. No panic may
// unwind into C, so each one recovers.

/*
#include "shims.h"
*/
import "C"

import (
	"fmt"
	"os"
	"strings"
	"unsafe"
)

//export gbrokkHandle
func gbrokkHandle(h C.uintptr_t, view *C.gbrokk_view) (verdict C.brokk_verdict) {
	m := &Message{v: viewRef(view)}
	defer func() {
		m.v = noView // the view dies when we return
		if r := recover(); r != nil {
			// A panicking handler fails its delivery; listeners see why in OnFailed.
			reason := strings.ToValidUTF8(fmt.Sprintf("panic: %v", r), "\uFFFD")
			p, n := cText(reason)
			_ = check("set failure reason", C.gbrokk_message_set_failure_reason(view.message, p, n))
			verdict = C.BROKK_VERDICT_NACK
		}
	}()
	return C.brokk_verdict(handle(h).value().handler(m))
}

// gbrokkRelease is every registration's free_user_data: brokk calls it exactly once, after
// the last invocation.
//
//export gbrokkRelease
func gbrokkRelease(h C.uintptr_t) {
	r := handle(h).delete()
	if hook := releaseHook.Load(); hook != nil {
		(*hook)(handle(h))
	}
	if l := r.listener; l != nil && l.OnRelease != nil {
		defer recoverListener("OnRelease")
		l.OnRelease()
	}
}

func listener(h C.uintptr_t) *Listener {
	return handle(h).value().listener
}

func recoverListener(event string) {
	if r := recover(); r != nil {
		fmt.Fprintf(os.Stderr, "brokk: listener %s panicked: %v\n", event, r)
	}
}

//export gbrokkOnMessage
func gbrokkOnMessage(h C.uintptr_t, event C.uint32_t, view *C.gbrokk_view) {
	m := &Message{v: viewRef(view)}
	defer func() { m.v = noView }()
	l := listener(h)
	switch event {
	case C.GBROKK_ON_PUBLISH:
		defer recoverListener("OnPublish")
		l.OnPublish(m)
	case C.GBROKK_ON_DISPATCHED:
		defer recoverListener("OnDispatched")
		l.OnDispatched(m)
	case C.GBROKK_ON_PROCESSED:
		defer recoverListener("OnProcessed")
		l.OnProcessed(m)
	}
}

//export gbrokkOnFailed
func gbrokkOnFailed(h C.uintptr_t, view *C.gbrokk_view, reason *C.char, reasonLen C.size_t, requeued C.bool) {
	m := &Message{v: viewRef(view)}
	defer func() { m.v = noView }()
	defer recoverListener("OnFailed")
	r := string(unsafe.Slice((*byte)(unsafe.Pointer(reason)), reasonLen))
	listener(h).OnFailed(m, r, bool(requeued))
}

//export gbrokkOnSubscription
func gbrokkOnSubscription(h C.uintptr_t, event C.uint32_t, topic *C.char, topicLen C.size_t, id C.uint64_t) {
	t := string(unsafe.Slice((*byte)(unsafe.Pointer(topic)), topicLen))
	l := listener(h)
	if event == C.GBROKK_ON_SUBSCRIBE {
		defer recoverListener("OnSubscribe")
		l.OnSubscribe(t, SubscriptionID(id))
	} else {
		defer recoverListener("OnUnsubscribe")
		l.OnUnsubscribe(t, SubscriptionID(id))
	}
}

//export gbrokkOnTopicCreated
func gbrokkOnTopicCreated(h C.uintptr_t, topic *C.char, topicLen C.size_t) {
	defer recoverListener("OnTopicCreated")
	t := string(unsafe.Slice((*byte)(unsafe.Pointer(topic)), topicLen))
	listener(h).OnTopicCreated(t)
}
