package brokk

// The Go half of the trampolines in shims.c. brokk calls the C trampolines on its own threads;
// they call these with user_data turned back into the integer cgo.Handle it is. No panic may
// unwind into C, so each one recovers.

/*
#include "shims.h"
*/
import "C"

import (
	"fmt"
	"os"
	"runtime/cgo"
	"strings"
	"unsafe"
)

//export gbrokkHandle
func gbrokkHandle(handle C.uintptr_t, msg *C.brokk_message) (verdict C.brokk_verdict) {
	m := &Message{ptr: msg}
	defer func() {
		m.ptr = nil // the view dies when we return
		if r := recover(); r != nil {
			// A panicking handler fails its delivery; listeners see why in OnFailed.
			reason := strings.ToValidUTF8(fmt.Sprintf("panic: %v", r), "\uFFFD")
			p, n := cText(reason)
			_ = check("set failure reason", C.gbrokk_message_set_failure_reason(msg, p, n))
			verdict = C.BROKK_VERDICT_NACK
		}
	}()
	handler := cgo.Handle(handle).Value().(Handler)
	return C.brokk_verdict(handler(m))
}

// gbrokkRelease is every registration's free_user_data: brokk calls it exactly once, after
// the last invocation.
//
//export gbrokkRelease
func gbrokkRelease(handle C.uintptr_t) {
	h := cgo.Handle(handle)
	v := h.Value()
	h.Delete()
	liveHandles.Add(-1)
	if hook := releaseHook.Load(); hook != nil {
		(*hook)(h)
	}
	if l, ok := v.(*Listener); ok && l.OnRelease != nil {
		defer recoverListener("OnRelease")
		l.OnRelease()
	}
}

func listener(handle C.uintptr_t) *Listener {
	return cgo.Handle(handle).Value().(*Listener)
}

func recoverListener(event string) {
	if r := recover(); r != nil {
		fmt.Fprintf(os.Stderr, "brokk: listener %s panicked: %v\n", event, r)
	}
}

//export gbrokkOnMessage
func gbrokkOnMessage(handle C.uintptr_t, event C.uint32_t, msg *C.brokk_message) {
	m := &Message{ptr: msg}
	defer func() { m.ptr = nil }()
	l := listener(handle)
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
func gbrokkOnFailed(handle C.uintptr_t, msg *C.brokk_message, reason *C.char, reasonLen C.size_t, requeued C.bool) {
	m := &Message{ptr: msg}
	defer func() { m.ptr = nil }()
	defer recoverListener("OnFailed")
	r := string(unsafe.Slice((*byte)(unsafe.Pointer(reason)), reasonLen))
	listener(handle).OnFailed(m, r, bool(requeued))
}

//export gbrokkOnSubscription
func gbrokkOnSubscription(handle C.uintptr_t, event C.uint32_t, topic *C.char, topicLen C.size_t, id C.uint64_t) {
	t := string(unsafe.Slice((*byte)(unsafe.Pointer(topic)), topicLen))
	l := listener(handle)
	if event == C.GBROKK_ON_SUBSCRIBE {
		defer recoverListener("OnSubscribe")
		l.OnSubscribe(t, SubscriptionID(id))
	} else {
		defer recoverListener("OnUnsubscribe")
		l.OnUnsubscribe(t, SubscriptionID(id))
	}
}

//export gbrokkOnTopicCreated
func gbrokkOnTopicCreated(handle C.uintptr_t, topic *C.char, topicLen C.size_t) {
	defer recoverListener("OnTopicCreated")
	t := string(unsafe.Slice((*byte)(unsafe.Pointer(topic)), topicLen))
	listener(handle).OnTopicCreated(t)
}
