package brokk

// The Go half of the trampolines in shims.c. brokk calls the C trampolines on its own threads;
// they call these with user_data turned back into the integer handle it is (handles.go) and,
// for a message, a view that the trampoline filled on its C stack with every field of the
// message (brokk_message_read), so that the Message accessors make no cgo call. No panic may
// unwind into C, so each one recovers, and reports what it recovered through the broker's
// logger (Options.Logger, or slog.Default()).

/*
#include "shims.h"
*/
import "C"

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"strings"
	"unsafe"
)

//export gbrokkHandle
func gbrokkHandle(h C.uintptr_t, view *C.gbrokk_view) (verdict C.brokk_verdict) {
	reg := handle(h).value()
	m := &Message{v: viewRef(view)}
	defer func() {
		m.v = noView // the view dies when we return
		if r := recover(); r != nil {
			// A panicking handler fails its delivery; listeners see why in OnFailed, and the
			// broker's logger gets the panic with its stack (taken here, before the stack
			// unwinds, so that it shows where the handler panicked).
			stack := debug.Stack()
			reason := strings.ToValidUTF8(fmt.Sprintf("panic: %v", r), "\uFFFD")
			p, n := cText(reason)
			_ = check("set failure reason", C.gbrokk_message_set_failure_reason(view.message, p, n))
			verdict = C.BROKK_VERDICT_NACK
			logHandlerPanic(reg.logger, &view.fields, r, stack)
		}
	}()
	return C.brokk_verdict(reg.handler(m))
}

// logHandlerPanic reports a handler's panic at slog.LevelError: the delivery's topic, ids and
// attempt, the panic value and the stack. It never panics itself: a logger that does is
// reported on standard error instead, as nothing may unwind into brokk.
func logHandlerPanic(logger *slog.Logger, f *C.brokk_message_fields, r any, stack []byte) {
	defer recoverLogger("handler panic", r)
	if logger == nil {
		logger = slog.Default()
	}
	logger.LogAttrs(context.Background(), slog.LevelError, "brokk: handler panicked; delivery nacked",
		slog.String("topic", goString(f.topic)),
		slog.Uint64("delivery_id", uint64(f.delivery_id)),
		slog.Uint64("subscription_id", uint64(f.subscription_id)),
		slog.Uint64("attempt", uint64(f.attempt)),
		slog.Any("panic", r),
		slog.String("stack", string(stack)))
}

// recoverLogger, deferred around a call to a logger, recovers a panic of the logger itself
// and prints both that and what was being reported on standard error.
func recoverLogger(what string, reported any) {
	if r := recover(); r != nil {
		fmt.Fprintf(os.Stderr, "brokk: the logger panicked (%v) while reporting a %s: %v\n", r, what, reported)
	}
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
		defer recoverListener(r, "OnRelease")
		l.OnRelease()
	}
}

func listener(h C.uintptr_t) (*registration, *Listener) {
	r := handle(h).value()
	return r, r.listener
}

// recoverListener, deferred around a listener callback, recovers its panic and logs it at
// slog.LevelError through the broker's logger.
func recoverListener(reg *registration, event string) {
	if r := recover(); r != nil {
		defer recoverLogger("listener panic", r)
		logger := reg.logger
		if logger == nil {
			logger = slog.Default()
		}
		logger.LogAttrs(context.Background(), slog.LevelError, "brokk: listener callback panicked",
			slog.String("event", event), slog.Any("panic", r))
	}
}

//export gbrokkOnMessage
func gbrokkOnMessage(h C.uintptr_t, event C.uint32_t, view *C.gbrokk_view) {
	m := &Message{v: viewRef(view)}
	defer func() { m.v = noView }()
	reg, l := listener(h)
	switch event {
	case C.GBROKK_ON_PUBLISH:
		defer recoverListener(reg, "OnPublish")
		l.OnPublish(m)
	case C.GBROKK_ON_DISPATCHED:
		defer recoverListener(reg, "OnDispatched")
		l.OnDispatched(m)
	case C.GBROKK_ON_PROCESSED:
		defer recoverListener(reg, "OnProcessed")
		l.OnProcessed(m)
	}
}

//export gbrokkOnFailed
func gbrokkOnFailed(h C.uintptr_t, view *C.gbrokk_view, reason *C.char, reasonLen C.size_t, requeued C.bool) {
	m := &Message{v: viewRef(view)}
	defer func() { m.v = noView }()
	reg, l := listener(h)
	defer recoverListener(reg, "OnFailed")
	r := string(unsafe.Slice((*byte)(unsafe.Pointer(reason)), reasonLen))
	l.OnFailed(m, r, bool(requeued))
}

//export gbrokkOnSubscription
func gbrokkOnSubscription(h C.uintptr_t, event C.uint32_t, topic *C.char, topicLen C.size_t, id C.uint64_t) {
	t := string(unsafe.Slice((*byte)(unsafe.Pointer(topic)), topicLen))
	reg, l := listener(h)
	if event == C.GBROKK_ON_SUBSCRIBE {
		defer recoverListener(reg, "OnSubscribe")
		l.OnSubscribe(t, SubscriptionID(id))
	} else {
		defer recoverListener(reg, "OnUnsubscribe")
		l.OnUnsubscribe(t, SubscriptionID(id))
	}
}

//export gbrokkOnTopicCreated
func gbrokkOnTopicCreated(h C.uintptr_t, topic *C.char, topicLen C.size_t) {
	reg, l := listener(h)
	defer recoverListener(reg, "OnTopicCreated")
	t := string(unsafe.Slice((*byte)(unsafe.Pointer(topic)), topicLen))
	l.OnTopicCreated(t)
}
