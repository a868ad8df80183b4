package brokk

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

var sentinels = []error{
	ErrNullArgument, ErrInvalidUTF8, ErrInvalidJSON, ErrInvalidTopic, ErrInvalidID, ErrPayloadTooLarge,
	ErrInvalidArgument, ErrInvalidURL, ErrBufferTooSmall, ErrWouldDeadlock, ErrUnsupportedBackend,
	ErrInvalidGroup, ErrUnknownSubscription, ErrUnknownDelivery, ErrAlreadySettled, ErrUnknownListener,
	ErrTimeout, ErrFull, ErrClosed, ErrPanic,
	ErrIncompatibleStore, ErrCannotOpenStore, ErrUnavailable, ErrStorageFailed, ErrOutcomeUnknown,
	ErrForked, ErrCancelled,
}

// expectErr checks that err matches want and no other sentinel, is an *Error with brokk's
// message, and has want's class.
func expectErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Errorf("%s: got %v, want %v", what, err, want)
		return
	}
	for _, s := range sentinels {
		if s != want && errors.Is(err, s) {
			t.Errorf("%s: %v also matches %v", what, err, s)
		}
	}
	var e *Error
	if !errors.As(err, &e) || e.Message == "" || e.Op == "" {
		t.Errorf("%s: %#v is not an *Error with an op and a message", what, err)
		return
	}
	if ClassOf(err) != want.(Status).Class() || e.Class() != want.(Status).Class() {
		t.Errorf("%s: class %v, want %v", what, ClassOf(err), want.(Status).Class())
	}
}

func TestBadInputGivesTheRightSentinel(t *testing.T) {
	b := open(t, &Options{MaxPayloadBytes: 64})
	openErr := func(url string, opts *Options) error {
		b, err := Open(url, opts)
		if err == nil {
			b.Close(context.Background())
		}
		return err
	}
	pub := func(topic string, payload []byte, opts *PublishOptions) error {
		_, err := b.Publish(topic, payload, opts)
		return err
	}
	sub := func(topic string, h Handler, opts *SubscribeOptions) error {
		_, err := b.Subscribe(topic, h, opts)
		return err
	}
	ack := func(*Message) Verdict { return Ack }
	fetch := func(opts *FetchOptions) error {
		_, err := b.Fetch(expired(), "t", opts)
		return err
	}
	count := func(topics ...string) error {
		_, err := b.Count(topics...)
		return err
	}
	cases := []struct {
		what string
		err  error
		want error
	}{
		{"open: not a URL", openErr("nonsense", nil), ErrInvalidURL},
		{"open: memory with a path", openErr("memory://x", nil), ErrInvalidURL},
		{"open: rediss+cluster (no cluster over TLS in this build)", openErr("rediss+cluster://localhost", nil), ErrUnsupportedBackend},
		{"open: sqlite, missing folder", openErr("sqlite:///nonexistent-brokk-dir/x.db", nil), ErrCannotOpenStore},
		{"open: url not UTF-8", openErr("memory\xff://", nil), ErrInvalidUTF8},
		{"open: url with a NUL", openErr("memory://\x00junk", nil), ErrInvalidURL},
		{"open: too many workers", openErr("", &Options{WorkerThreads: 5000}), ErrInvalidArgument},
		{"open: unknown retention policy", openErr("", &Options{RetentionPolicy: 9}), ErrInvalidArgument},
		{"open: unknown backpressure", openErr("", &Options{Backpressure: 9}), ErrInvalidArgument},
		{"open: negative publish timeout", openErr("", &Options{PublishTimeout: -time.Second}), ErrInvalidArgument},
		{"publish: empty topic", pub("", []byte(`1`), nil), ErrInvalidTopic},
		{"publish: topic with a space", pub("bad topic", []byte(`1`), nil), ErrInvalidTopic},
		{"publish: topic too long", pub(strings.Repeat("t", TopicMaxLen+1), []byte(`1`), nil), ErrInvalidTopic},
		{"publish: topic not UTF-8", pub("t\xff", []byte(`1`), nil), ErrInvalidUTF8},
		{"publish: nil payload", pub("t", nil, nil), ErrNullArgument},
		{"publish: empty payload", pub("t", []byte{}, nil), ErrInvalidJSON},
		{"publish: payload not JSON", pub("t", []byte(`{`), nil), ErrInvalidJSON},
		{"publish: metadata not an object", pub("t", []byte(`1`), &PublishOptions{Metadata: []byte(`[1]`)}), ErrInvalidJSON},
		{"publish: empty metadata", pub("t", []byte(`1`), &PublishOptions{Metadata: []byte{}}), ErrInvalidJSON},
		{"publish: id not printable", pub("t", []byte(`1`), &PublishOptions{ID: "a\x01b"}), ErrInvalidID},
		{"publish: id too long", pub("t", []byte(`1`), &PublishOptions{ID: strings.Repeat("i", IDMaxLen+1)}), ErrInvalidID},
		{"publish: payload too large", pub("t", []byte(`"`+strings.Repeat("x", 64)+`"`), nil), ErrPayloadTooLarge},
		{"subscribe: nil handler", sub("t", nil, nil), ErrNullArgument},
		{"subscribe: bad topic", sub("a/b", ack, nil), ErrInvalidTopic},
		{"subscribe: concurrency too high", sub("t", ack, &SubscribeOptions{Concurrency: MaxConcurrency + 1}), ErrInvalidArgument},
		{"subscribe: bad group", sub("t", ack, &SubscribeOptions{Group: "bad group"}), ErrInvalidGroup},
		{"subscribe: bad dead-letter topic", sub("t", ack, &SubscribeOptions{DeadLetterTopic: "bad dlq"}), ErrInvalidTopic},
		{"subscribe: negative ack deadline", sub("t", ack, &SubscribeOptions{AckDeadline: -1}), ErrInvalidArgument},
		{"fetch: bad group", fetch(&FetchOptions{Group: "no/slash"}), ErrInvalidGroup},
		{"fetch: bad dead-letter topic", fetch(&FetchOptions{DeadLetterTopic: "a b"}), ErrInvalidTopic},
		{"fetch: negative ack deadline", fetch(&FetchOptions{AckDeadline: -time.Second}), ErrInvalidArgument},
		{"unsubscribe: unknown", b.Unsubscribe(987654), ErrUnknownSubscription},
		{"ack: unknown delivery", b.Ack(987654), ErrUnknownDelivery},
		{"nack: unknown delivery", b.Nack(987654, true, 0, "x"), ErrUnknownDelivery},
		{"nack: reason not UTF-8", b.Nack(987654, false, 0, "\xff"), ErrInvalidUTF8},
		{"nack: negative delay", b.Nack(987654, true, -time.Second, ""), ErrInvalidArgument},
		{"remove listener: unknown", b.RemoveListener(987654), ErrUnknownListener},
		{"count: bad topic", count("ok", "not ok"), ErrInvalidTopic},
		{"count: topic not UTF-8", count("\xfe"), ErrInvalidUTF8},
	}
	for _, c := range cases {
		expectErr(t, c.what, c.err, c.want)
	}

	// Purge validates like count.
	_, err := b.Purge("a b")
	expectErr(t, "purge: bad topic", err, ErrInvalidTopic)

	// A bad batch publishes nothing and names the bad message.
	_, err = b.PublishBatch("batch", []BatchMessage{{Payload: []byte(`1`)}, {Payload: []byte(`nope`)}})
	expectErr(t, "batch with a bad message", err, ErrInvalidJSON)
	if !strings.Contains(err.Error(), "message 1") {
		t.Errorf("batch error %q does not name message 1", err)
	}
	if n := must(b.Count("batch"))(t); n != 0 {
		t.Errorf("a failed batch left %d messages", n)
	}
	_, err = b.PublishBatch("bad topic", nil)
	expectErr(t, "empty batch on a bad topic", err, ErrInvalidTopic)
	if ids := must(b.PublishBatch("batch", nil))(t); len(ids) != 0 {
		t.Errorf("empty batch returned %v", ids)
	}

	// Inside a handler: a failure reason that is not UTF-8.
	res := make(chan error, 1)
	must(b.Subscribe("reasons", func(m *Message) Verdict {
		res <- m.SetFailureReason("\xff")
		return Ack
	}, nil))(t)
	must(b.Publish("reasons", []byte(`1`), nil))(t)
	expectErr(t, "set failure reason: not UTF-8", receive(t, res, "the handler"), ErrInvalidUTF8)

	// Statuses this API cannot produce (or not with the memory backend) still map to their
	// sentinels, with brokk's class and description.
	for _, s := range []Status{StatusBufferTooSmall, StatusPanic, StatusIncompatibleStore, StatusCannotOpenStore,
		StatusUnavailable, StatusStorageFailed, StatusOutcomeUnknown, StatusForked, StatusCancelled} {
		expectErr(t, s.String(), &Error{Op: "test", Status: s, Message: "synthetic"}, s)
		if s.String() == "unknown status" {
			t.Errorf("status %d has no description", uint32(s))
		}
	}
	classes := map[error]Class{
		ErrIncompatibleStore: ClassCaller, ErrCannotOpenStore: ClassCaller,
		ErrUnavailable: ClassTransient, ErrStorageFailed: ClassTransient, ErrOutcomeUnknown: ClassTransient,
		ErrCancelled: ClassTransient, ErrForked: ClassTerminal,
	}
	for sentinel, want := range classes {
		if got := ClassOf(&Error{Op: "test", Status: sentinel.(Status)}); got != want {
			t.Errorf("%v: class %v, want %v", sentinel, got, want)
		}
	}
	numbers := map[Status]uint32{StatusIncompatibleStore: 13, StatusCannotOpenStore: 14, StatusUnavailable: 202, StatusStorageFailed: 203,
		StatusOutcomeUnknown: 204, StatusCancelled: 205, StatusForked: 301}
	for s, n := range numbers {
		if uint32(s) != n {
			t.Errorf("%v is %d, want %d (brokk.h)", s, uint32(s), n)
		}
	}
	if ClassOf(nil) != ClassOK || ClassOf(errors.New("other")) != ClassBug || ClassOf(fmt.Errorf("wrapped: %w", ErrClosed)) != ClassTerminal {
		t.Error("ClassOf")
	}
	if Status(12345).Class() != ClassBug || Status(12345).String() != "unknown status" {
		t.Errorf("unknown status: %v %v", Status(12345).Class(), Status(12345))
	}
}

// brokk_last_error() is per thread and a goroutine may change threads between two cgo calls,
// so the binding reads it inside the failing call. Many goroutines failing at once must each
// get the message of their own call.
func TestErrorMessageBelongsToItsOwnCall(t *testing.T) {
	b := open(t, nil)
	var wg sync.WaitGroup
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 100; i++ {
				topic := fmt.Sprintf("bad topic %d-%d", g, i)
				_, err := b.Publish(topic, []byte(`1`), nil)
				if !errors.Is(err, ErrInvalidTopic) || !strings.Contains(err.Error(), topic) {
					t.Errorf("publish to %q: %v", topic, err)
					return
				}
				if _, err := b.Publish("good", []byte(`1`), nil); err != nil { // succeeds in between
					t.Error(err)
					return
				}
			}
		}(g)
	}
	wg.Wait()
}
