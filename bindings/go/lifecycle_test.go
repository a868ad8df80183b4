package brokk

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestUseAfterCloseReturnsErrClosed(t *testing.T) {
	before := settleHandles(t)
	b := must(Open("", nil))(t)
	sub := must(b.Subscribe("t", func(*Message) Verdict { return Ack }, nil))(t)
	lid := must(b.AddListener(Listener{OnPublish: func(*Message) {}}))(t)
	must(b.Publish("pull", []byte(`1`), nil))(t)
	d := must(b.Fetch(waitCtx(t), "pull", nil))(t)
	// Close waits for the fetched delivery until its deadline, then closes all the same.
	short, cancel := context.WithTimeout(context.Background(), scaled(20*time.Millisecond))
	defer cancel()
	rep, err := b.Close(short)
	if !errors.Is(err, ErrTimeout) || rep.Remaining != 1 {
		t.Errorf("close with a delivery unsettled: %+v, %v; want 1 remaining and ErrTimeout", rep, err)
	}

	errs := map[string]error{
		"delivery ack": d.Ack(),
		"subscribe":    second(b.Subscribe("t", func(*Message) Verdict { return Ack }, nil)),
		"publish":      second(b.Publish("t", []byte(`1`), nil)),
		"batch":        second(b.PublishBatch("t", []BatchMessage{{Payload: []byte(`1`)}})),
		"unsubscribe":  b.Unsubscribe(sub),
		"ack":          b.Ack(1),
		"nack":         b.Nack(1, false, 0, ""),
		"fetch":        second(b.Fetch(expired(), "t", nil)),
		"fetch batch":  second(b.FetchBatch(expired(), "t", 4, nil)),
		"ack batch":    second(b.AckBatch([]DeliveryID{1, 2})),
		"count":        second(b.Count("t")),
		"count all":    second(b.CountAll()),
		"purge":        second(b.Purge("t")),
		"purge all":    second(b.PurgeAll()),
		"add listener": second(b.AddListener(Listener{})),
		"remove":       b.RemoveListener(lid),
		"stats":        second(b.Stats()),
		"stats json":   second(b.StatsJSON()),
		"join":         second(b.Join(context.Background())),
	}
	for what, err := range errs {
		expectErr(t, what, err, ErrClosed)
	}
	// Close is idempotent.
	for i := 0; i < 2; i++ {
		if rep, err := b.Close(context.Background()); err != nil || rep != (CloseReport{}) {
			t.Errorf("second close: %+v, %v", rep, err)
		}
		if _, err := b.ForceClose(); err != nil {
			t.Errorf("force close after close: %v", err)
		}
	}
	// Nothing registered after close leaked a handle; everything registered before is gone.
	eventually(t, "handles released", func() bool { return liveHandles.Load() == before })
}

func second[T any](_ T, err error) error { return err }

func TestCloseFromInsideAHandler(t *testing.T) {
	before := settleHandles(t)
	b := must(Open("", nil))(t)
	type outcome struct{ close, join, force, again error }
	res := make(chan outcome, 1)
	must(b.Subscribe("t", func(m *Message) Verdict {
		var o outcome
		_, o.close = b.Close(context.Background())
		_, o.join = b.Join(context.Background())
		_, o.force = b.ForceClose()
		_, o.again = b.Publish("t", []byte(`2`), nil)
		res <- o
		return Ack
	}, nil))(t)
	// A listener may not close without force either.
	lres := make(chan error, 1)
	must(b.AddListener(Listener{OnTopicCreated: func(topic string) {
		if topic == "probe" {
			_, err := b.Close(context.Background())
			lres <- err
		}
	}}))(t)
	must(b.Publish("probe", []byte(`0`), nil))(t)
	expectErr(t, "close from a listener", receive(t, lres, "the listener"), ErrWouldDeadlock)

	must(b.Publish("t", []byte(`1`), nil))(t)
	o := receive(t, res, "the handler")
	expectErr(t, "close from a handler", o.close, ErrWouldDeadlock)
	expectErr(t, "join from a handler", o.join, ErrWouldDeadlock)
	if o.force != nil {
		t.Errorf("forced close from a handler: %v", o.force)
	}
	expectErr(t, "publish after the forced close", o.again, ErrClosed)
	// brokk finishes the teardown on its own thread once the handler returned.
	eventually(t, "handles released", func() bool { return liveHandles.Load() == before })
	if _, err := b.Close(context.Background()); err != nil {
		t.Errorf("close after a forced close: %v", err)
	}
	_, err := b.Publish("t", []byte(`3`), nil)
	expectErr(t, "publish after close", err, ErrClosed)
}

func TestPanickingHandlerIsNackedWithThePanicText(t *testing.T) {
	b := open(t, &Options{Logger: quiet}) // the logged report has a test of its own
	failed := failures(t, b)
	must(b.Subscribe("risky", func(m *Message) Verdict {
		switch string(m.Payload()) {
		case `1`:
			panic("kaboom 42")
		case `2`:
			panic(fmt.Errorf("wrapped: %w", errors.New("disk on fire")))
		default:
			panic("not UTF-8: \xff")
		}
	}, nil))(t)
	for i, want := range []string{"kaboom 42", "wrapped: disk on fire", "not UTF-8: \uFFFD"} {
		must(b.Publish("risky", []byte(fmt.Sprint(i+1)), nil))(t)
		f := receive(t, failed, "the failed event")
		if f.requeued || !strings.Contains(f.reason, want) {
			t.Errorf("failed event %+v: want the reason to contain %q, not requeued", f, want)
		}
	}
	join(t, b)
	if st := must(b.Stats())(t); st.Failed != 3 || st.Processed != 0 {
		t.Errorf("stats %+v", st)
	}
	// The broker carries on.
	got := make(chan string, 1)
	must(b.Subscribe("after", func(m *Message) Verdict { got <- string(m.Payload()); return Ack }, nil))(t)
	must(b.Publish("after", []byte(`"fine"`), nil))(t)
	if p := receive(t, got, "a delivery after the panics"); p != `"fine"` {
		t.Errorf("got %s", p)
	}
}

func TestPanickingListenerIsContained(t *testing.T) {
	b := open(t, &Options{Logger: quiet})
	processed := make(chan struct{}, 1)
	must(b.AddListener(Listener{
		OnPublish:   func(*Message) { panic("listener bug (expected in this test)") },
		OnProcessed: func(*Message) { processed <- struct{}{} },
	}))(t)
	must(b.Subscribe("t", func(*Message) Verdict { return Ack }, nil))(t)
	must(b.Publish("t", []byte(`1`), nil))(t)
	receive(t, processed, "the processed event after a panicking OnPublish")
}

func TestReentrantCallsFromHandlersAndListeners(t *testing.T) {
	b := open(t, &Options{WorkerThreads: 2})
	const n = 10
	var outCount atomic.Int64
	var inner atomic.Uint64 // the subscription a handler makes
	subscribed := make(chan struct{})
	must(b.Subscribe("in", func(m *Message) Verdict {
		if m.ParentID() == "0" {
			// Subscribe from a handler (concurrency 1: the others wait their turn).
			id, err := b.Subscribe("out", func(*Message) Verdict { outCount.Add(1); return Ack }, nil)
			if err != nil {
				t.Error(err)
			}
			inner.Store(uint64(id))
			close(subscribed)
		}
		if _, err := b.Publish("out", m.Payload(), &PublishOptions{Metadata: []byte(`{"from": "in"}`)}); err != nil {
			t.Error(err)
		}
		if _, err := b.Stats(); err != nil {
			t.Error(err)
		}
		// Ack its own delivery before returning Later: it is registered before the call.
		if err := b.Ack(m.DeliveryID()); err != nil {
			t.Error(err)
		}
		if err := b.Ack(m.DeliveryID()); !errors.Is(err, ErrAlreadySettled) {
			t.Errorf("second ack from the handler: %v", err)
		}
		return Later
	}, &SubscribeOptions{ManualAck: true}))(t)
	// A listener that calls back into the broker: stats on every event, and the unsubscribe
	// of the handler-made subscription once it has processed all n.
	unsubbed := make(chan error, 1)
	outProcessed := 0 // the listener thread's own
	must(b.AddListener(Listener{OnProcessed: func(m *Message) {
		if _, err := b.Stats(); err != nil {
			t.Error(err)
		}
		if m.Topic() == "out" {
			if outProcessed++; outProcessed == n {
				unsubbed <- b.Unsubscribe(SubscriptionID(inner.Load()))
			}
		}
	}}))(t)
	for i := 0; i < n; i++ {
		must(b.Publish("in", []byte(fmt.Sprint(i)), &PublishOptions{ID: fmt.Sprint(i)}))(t)
	}
	receive(t, subscribed, "the subscribe from the handler")
	if err := receive(t, unsubbed, "the unsubscribe from the listener"); err != nil {
		t.Error(err)
	}
	join(t, b)
	if st := must(b.Stats())(t); st.Processed != 2*n || st.Published != 2*n || st.Subscriptions != 1 || outCount.Load() != n {
		t.Errorf("stats %+v, out handler ran %d times", st, outCount.Load())
	}
	// Unsubscribe from a handler of that very subscription.
	done := make(chan error, 1)
	ids := make(chan SubscriptionID, 1)
	self := must(b.Subscribe("self", func(*Message) Verdict {
		done <- b.Unsubscribe(<-ids)
		return Ack
	}, nil))(t)
	ids <- self
	must(b.Publish("self", []byte(`1`), nil))(t)
	if err := receive(t, done, "the self-unsubscribe"); err != nil {
		t.Error(err)
	}
}

func TestFreeUserDataRunsExactlyOnce(t *testing.T) {
	before := settleHandles(t)
	r := watchReleases(t)
	b := must(Open("", nil))(t)
	var released atomic.Int64
	handler := func(*Message) Verdict { return Ack }
	s1 := must(b.Subscribe("a", handler, nil))(t)
	must(b.Subscribe("a", handler, &SubscribeOptions{Group: "g"}))(t)
	must(b.Subscribe("b", handler, nil))(t)
	l1 := must(b.AddListener(Listener{OnPublish: func(*Message) {}, OnRelease: func() { released.Add(1) }}))(t)
	must(b.AddListener(Listener{OnRelease: func() { released.Add(1) }}))(t)
	if live := liveHandles.Load(); live != before+5 {
		t.Fatalf("%d live handles, want %d", live, before+5)
	}
	// Failed registrations take nothing: brokk never calls free_user_data, Go deletes.
	if _, err := b.Subscribe("bad topic", handler, nil); err == nil {
		t.Fatal("bad subscribe succeeded")
	}
	if live := liveHandles.Load(); live != before+5 {
		t.Fatalf("a failed subscribe leaked a handle: %d live, want %d", live, before+5)
	}
	must(b.Publish("a", []byte(`1`), nil))(t)
	join(t, b)

	if err := b.Unsubscribe(s1); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the unsubscribed handler's release", func() bool { n, _ := r.snapshot(); return n == 1 })
	if err := b.RemoveListener(l1); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the removed listener's release", func() bool { n, _ := r.snapshot(); return n == 2 })
	if released.Load() != 1 {
		t.Errorf("OnRelease ran %d times after one removal", released.Load())
	}
	// Close releases the rest before it returns.
	if _, err := b.Close(waitCtx(t)); err != nil {
		t.Fatal(err)
	}
	total, twice := r.snapshot()
	if total != 5 || len(twice) != 0 || released.Load() != 2 || liveHandles.Load() != before {
		t.Errorf("after close: %d releases (handles released more than once: %v), OnRelease %d times, %d live handles (want 5, none, 2, %d)",
			total, twice, released.Load(), liveHandles.Load(), before)
	}
}

// openAndDrop makes brokers with registrations and work in flight, and drops them unclosed.
func openAndDrop(t *testing.T, n int, released *atomic.Int64) {
	for i := 0; i < n; i++ {
		b := must(Open("", &Options{WorkerThreads: 2}))(t)
		must(b.Subscribe("t", func(*Message) Verdict { return Ack }, nil))(t)
		must(b.Subscribe("t", func(*Message) Verdict { return Later }, &SubscribeOptions{ManualAck: true}))(t)
		must(b.AddListener(Listener{OnPublish: func(*Message) {}, OnRelease: func() { released.Add(1) }}))(t)
		must(b.Publish("t", []byte(`1`), nil))(t)
		must(b.Publish("pull", []byte(`1`), nil))(t)
		d := must(b.Fetch(waitCtx(t), "pull", nil))(t)
		_ = d // dropped unclosed too: its own cleanup frees it
	}
}

func TestDroppedBrokersAreFreedByTheFinalizer(t *testing.T) {
	before := settleHandles(t)
	r := watchReleases(t)
	var released atomic.Int64
	const n = 5
	openAndDrop(t, n, &released) // (under -tags brokk_gc, collections start freeing them at once)
	eventually(t, "dropped brokers to be freed", func() bool {
		runtime.GC()
		return liveHandles.Load() == before
	})
	total, twice := r.snapshot()
	if total != 3*n || len(twice) != 0 || released.Load() != n {
		t.Errorf("%d releases (twice: %v), OnRelease %d times; want %d, none, %d", total, twice, released.Load(), 3*n, n)
	}
}

func TestCloseRacingPublishers(t *testing.T) {
	for round := 0; round < 6; round++ {
		b := must(Open("", &Options{WorkerThreads: 2}))(t)
		must(b.Subscribe("t", func(*Message) Verdict { return Ack }, &SubscribeOptions{Concurrency: 4}))(t)
		var wg sync.WaitGroup
		var published atomic.Int64
		for g := 0; g < 8; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					var err error
					if published.Add(1)%5 == 0 {
						_, err = b.Stats()
					} else {
						_, err = b.Publish("t", []byte(`1`), nil)
					}
					if err != nil {
						if !errors.Is(err, ErrClosed) {
							t.Errorf("publish while closing: %v", err)
						}
						return
					}
				}
			}()
		}
		// A fetch blocked without limit: the close wakes it with ErrClosed.
		fetched := make(chan error, 1)
		go func() {
			_, err := b.Fetch(context.Background(), "idle", nil)
			fetched <- err
		}()
		for published.Load() < 200 {
			runtime.Gosched()
		}
		if round%2 == 0 {
			if _, err := b.Close(waitCtx(t)); err != nil {
				t.Errorf("close: %v", err)
			}
		} else if _, err := b.ForceClose(); err != nil {
			t.Errorf("force close: %v", err)
		}
		wg.Wait()
		expectErr(t, "blocked fetch during close", receive(t, fetched, "the blocked fetch"), ErrClosed)
	}
}

func TestCloseDoesNotWaitPastItsDeadlineForAStuckHandler(t *testing.T) {
	before := settleHandles(t)
	b := must(Open("", nil))(t)
	release := make(chan struct{})
	started := make(chan struct{})
	must(b.Subscribe("stuck", func(*Message) Verdict {
		close(started)
		<-release
		return Ack
	}, nil))(t)
	must(b.Publish("stuck", []byte(`1`), nil))(t)
	<-started
	short, cancel := context.WithTimeout(context.Background(), scaled(20*time.Millisecond))
	defer cancel()
	rep, err := b.Close(short) // returns although the handler still runs
	if !errors.Is(err, ErrTimeout) || rep.Remaining != 1 {
		t.Errorf("close: %+v, %v; want 1 remaining and ErrTimeout", rep, err)
	}
	_, err = b.Publish("stuck", []byte(`2`), nil)
	expectErr(t, "publish after a timed-out close", err, ErrClosed)
	close(release) // the handler returns; the broker is freed in the background
	eventually(t, "handles released", func() bool { return liveHandles.Load() == before })
}

func TestStatsAndStatsJSON(t *testing.T) {
	b := open(t, &Options{WorkerThreads: 3})
	must(b.AddListener(Listener{}))(t)
	must(b.Subscribe("orders", func(*Message) Verdict { return Ack }, nil))(t)
	for i := 0; i < 4; i++ {
		must(b.Publish("orders", []byte(`{}`), nil))(t)
	}
	must(b.Publish("parked", []byte(`{}`), nil))(t) // retained: no group yet
	join(t, b)
	st := must(b.Stats())(t)
	if st.Published != 5 || st.Processed != 4 || st.Retained != 1 || st.Topics != 2 || st.Listeners != 1 || st.Workers != 3 || st.Subscriptions != 1 {
		t.Errorf("stats %+v", st)
	}
	raw := must(b.StatsJSON())(t)
	var doc struct {
		Broker struct {
			Topics  uint64 `json:"topics"`
			Workers uint64 `json:"workers"`
		} `json:"broker"`
		Totals map[string]uint64            `json:"totals"`
		Topics map[string]map[string]uint64 `json:"topics"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("stats JSON %s: %v", raw, err)
	}
	if doc.Broker.Topics != 2 || doc.Broker.Workers != 3 || doc.Totals["published"] != 5 ||
		doc.Topics["orders"]["processed"] != 4 || doc.Topics["parked"]["retained"] != 1 {
		t.Errorf("stats JSON %s", raw)
	}
}

func TestListenerSeesEveryEvent(t *testing.T) {
	b := open(t, nil)
	var mu sync.Mutex
	var events []string
	add := func(format string, args ...any) {
		mu.Lock()
		events = append(events, fmt.Sprintf(format, args...))
		mu.Unlock()
	}
	released := make(chan struct{})
	lid := must(b.AddListener(Listener{
		OnPublish:      func(m *Message) { add("publish %s delivery=%d id=%s", m.Topic(), m.DeliveryID(), m.ID()) },
		OnDispatched:   func(m *Message) { add("dispatched %s attempt=%d", m.ParentID(), m.Attempt()) },
		OnProcessed:    func(m *Message) { add("processed %s", m.ParentID()) },
		OnFailed:       func(m *Message, r string, q bool) { add("failed %s %q requeued=%v", m.ParentID(), r, q) },
		OnSubscribe:    func(topic string, id SubscriptionID) { add("subscribe %s %v", topic, id != 0) },
		OnUnsubscribe:  func(topic string, id SubscriptionID) { add("unsubscribe %s %v", topic, id != 0) },
		OnTopicCreated: func(topic string) { add("topic %s", topic) },
		OnRelease:      func() { close(released) },
	}))(t)
	sub := must(b.Subscribe("t", func(m *Message) Verdict {
		if m.Attempt() == 1 {
			_ = m.SetFailureReason("again")
			return Requeue
		}
		return Ack
	}, nil))(t)
	must(b.Publish("t", []byte(`1`), &PublishOptions{ID: "m"}))(t)
	join(t, b)
	if err := b.Unsubscribe(sub); err != nil {
		t.Fatal(err)
	}
	join(t, b)
	if err := b.RemoveListener(lid); err != nil {
		t.Fatal(err)
	}
	receive(t, released, "OnRelease")
	want := []string{
		"topic t", "subscribe t true", "publish t delivery=0 id=m", "dispatched m attempt=1",
		`failed m "again" requeued=true`, "dispatched m attempt=2", "processed m", "unsubscribe t true",
	}
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(events, "\n") != strings.Join(want, "\n") {
		t.Errorf("events:\n%s\nwant:\n%s", strings.Join(events, "\n"), strings.Join(want, "\n"))
	}
	expectErr(t, "remove twice", b.RemoveListener(lid), ErrUnknownListener)
}

func TestVersion(t *testing.T) {
	want := fmt.Sprintf("%d.%d.%d", HeaderVersionMajor, HeaderVersionMinor, HeaderVersionPatch)
	if Version() != want || VersionNumber() != HeaderVersionNumber || ABIVersion() != HeaderABIVersion {
		t.Errorf("library %s (%d, ABI %d); header %s (%d, ABI %d)", Version(), VersionNumber(), ABIVersion(),
			want, HeaderVersionNumber, HeaderABIVersion)
	}
	if HeaderVersionNumber != HeaderVersionMajor*1000000+HeaderVersionMinor*1000+HeaderVersionPatch {
		t.Error("BROKK_VERSION_NUMBER does not pack the parts")
	}
}

// Reads a fetched delivery only through its Message, so the Delivery is unreachable while the
// accessor's C call runs. Only runtime.KeepAlive in the accessor keeps its cleanup from freeing
// the view under that call; -tags brokk_gc forces a collection right there to prove it.
func TestViewOfADroppedDeliveryStaysValidDuringTheCall(t *testing.T) {
	b := open(t, nil)
	payload := []byte(`{"long enough to notice garbage": "` + strings.Repeat("p", 200) + `"}`)
	for i := 0; i < 20; i++ {
		must(b.Publish("views", payload, &PublishOptions{ID: fmt.Sprint("v", i)}))(t)
		got := fetchPayload(t, b)
		if string(got) != string(payload) {
			t.Fatalf("payload read through a dropped delivery: %q", got)
		}
	}
	if _, err := b.PurgeAll(); err != nil {
		t.Fatal(err)
	}
	if _, err := b.ForceClose(); err != nil { // the dropped deliveries are still in flight
		t.Fatal(err)
	}
}

func fetchPayload(t *testing.T, b *Broker) []byte {
	d := must(b.Fetch(waitCtx(t), "views", nil))(t)
	return d.Message().Payload() // the last use of d
}

// ForceClose returns at once even while a handler is blocked: brokk closes with force without
// waiting, and the broker is released without waiting for the running handler. Its Go value is
// released (and the listener's OnRelease runs) on a brokk thread once the handler returns.
func TestForceCloseDoesNotWaitForABlockedHandler(t *testing.T) {
	before := settleHandles(t)
	r := watchReleases(t)
	b := must(Open("", nil))(t)
	unblock := make(chan struct{})
	started := make(chan struct{})
	returned := make(chan struct{})
	must(b.Subscribe("stuck", func(*Message) Verdict {
		close(started)
		<-unblock
		close(returned)
		return Ack
	}, nil))(t)
	var released atomic.Bool
	must(b.AddListener(Listener{OnPublish: func(*Message) {}, OnRelease: func() { released.Store(true) }}))(t)
	must(b.Publish("stuck", []byte(`1`), nil))(t)
	receive(t, started, "the handler to start")

	closed := make(chan error, 1)
	go func() {
		_, err := b.ForceClose()
		closed <- err
	}()
	select {
	case err := <-closed:
		if err != nil {
			t.Errorf("force close: %v", err)
		}
	case <-time.After(scaled(time.Second)):
		t.Error("ForceClose still waits for the blocked handler after 1 s")
		close(unblock)
		receive(t, closed, "ForceClose once the handler returned")
		return
	}
	_, err := b.Publish("stuck", []byte(`2`), nil)
	expectErr(t, "publish after a forced close", err, ErrClosed)
	if live := liveHandles.Load(); live < before+1 {
		t.Errorf("%d live handles while the handler runs; its own (at least) must stay until it returns", live)
	}
	close(unblock)
	receive(t, returned, "the handler to return")
	// Once the handler has returned, brokk finishes the teardown: both handles released, once.
	eventually(t, "handles released", func() bool { return liveHandles.Load() == before })
	total, twice := r.snapshot()
	if total != 2 || len(twice) != 0 || !released.Load() {
		t.Errorf("%d releases (twice: %v), OnRelease ran: %v; want 2, none, true", total, twice, released.Load())
	}
}

// quiet is a logger for tests whose panics are expected and whose reports are not checked.
var quiet = slog.New(slog.DiscardHandler)

// logRecords is a slog.Handler that keeps every record it is given, with its attributes.
type logRecords struct {
	mu      sync.Mutex
	records []loggedRecord
	added   chan struct{}
}

type loggedRecord struct {
	level slog.Level
	msg   string
	attrs map[string]slog.Value
}

func newLogRecords() *logRecords { return &logRecords{added: make(chan struct{}, 100)} }

func (l *logRecords) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecords) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *logRecords) WithGroup(string) slog.Handler            { return l }
func (l *logRecords) Handle(_ context.Context, r slog.Record) error {
	rec := loggedRecord{level: r.Level, msg: r.Message, attrs: map[string]slog.Value{}}
	r.Attrs(func(a slog.Attr) bool { rec.attrs[a.Key] = a.Value; return true })
	l.mu.Lock()
	l.records = append(l.records, rec)
	l.mu.Unlock()
	l.added <- struct{}{}
	return nil
}

func (l *logRecords) next(t *testing.T) loggedRecord {
	t.Helper()
	receive(t, l.added, "a log record")
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.records[len(l.records)-1]
}

// panicInHandler panics with v: its name must show in the logged stack.
func panicInHandler(v any) { panic(v) }

// A handler's panic is not only a nack that listeners may see: it is logged, at error level,
// through Options.Logger, with the delivery it happened on, the panic value and the stack.
func TestPanickingHandlerIsLoggedWithItsDeliveryAndStack(t *testing.T) {
	logs := newLogRecords()
	b := open(t, &Options{Logger: slog.New(logs)})
	ids := make(chan DeliveryID, 2)
	sub := must(b.Subscribe("risky", func(m *Message) Verdict {
		ids <- m.DeliveryID()
		if string(m.Payload()) == `1` {
			panicInHandler("kaboom 42")
		}
		panicInHandler(fmt.Errorf("wrapped: %w", errors.New("disk on fire")))
		return Ack
	}, nil))(t)
	for i, want := range []string{"kaboom 42", "wrapped: disk on fire"} {
		must(b.Publish("risky", []byte(fmt.Sprint(i+1)), nil))(t)
		id := receive(t, ids, "the handler")
		rec := logs.next(t)
		if rec.level != slog.LevelError || !strings.Contains(rec.msg, "handler panicked") {
			t.Errorf("record %d: level %v, message %q", i, rec.level, rec.msg)
		}
		if got := rec.attrs["topic"].String(); got != "risky" {
			t.Errorf("record %d: topic %q", i, got)
		}
		if got := rec.attrs["delivery_id"].Uint64(); got != uint64(id) {
			t.Errorf("record %d: delivery_id %d, want %d", i, got, id)
		}
		if got := rec.attrs["subscription_id"].Uint64(); got != uint64(sub) {
			t.Errorf("record %d: subscription_id %d, want %d", i, got, sub)
		}
		if got := rec.attrs["attempt"].Uint64(); got != 1 {
			t.Errorf("record %d: attempt %d", i, got)
		}
		if got := fmt.Sprint(rec.attrs["panic"].Any()); got != want {
			t.Errorf("record %d: panic %q, want %q", i, got, want)
		}
		if stack := rec.attrs["stack"].String(); !strings.Contains(stack, "panicInHandler") {
			t.Errorf("record %d: the stack does not show where the handler panicked:\n%s", i, stack)
		}
	}
	// The error itself, not only its text, reaches the logger.
	logs.mu.Lock()
	err, _ := logs.records[1].attrs["panic"].Any().(error)
	logs.mu.Unlock()
	if err == nil || errors.Unwrap(err) == nil || errors.Unwrap(err).Error() != "disk on fire" {
		t.Errorf("the logged panic value is %v, not the error the handler panicked with", err)
	}

	// A listener's panic goes to the same logger, with the event.
	must(b.AddListener(Listener{OnTopicCreated: func(string) { panic("listener bug") }}))(t)
	must(b.Publish("new-topic", []byte(`1`), nil))(t)
	rec := logs.next(t)
	if rec.level != slog.LevelError || rec.attrs["event"].String() != "OnTopicCreated" || fmt.Sprint(rec.attrs["panic"].Any()) != "listener bug" {
		t.Errorf("listener panic record: %+v", rec)
	}
}

// Without Options.Logger, the report goes to slog.Default() (as it is when the panic happens).
func TestPanickingHandlerIsLoggedToTheDefaultLogger(t *testing.T) {
	logs := newLogRecords()
	previous := slog.Default()
	slog.SetDefault(slog.New(logs))
	t.Cleanup(func() { slog.SetDefault(previous) })
	b := open(t, nil)
	must(b.Subscribe("risky", func(m *Message) Verdict { panic("to the default logger") }, nil))(t)
	must(b.Publish("risky", []byte(`1`), nil))(t)
	rec := logs.next(t)
	if rec.attrs["topic"].String() != "risky" || fmt.Sprint(rec.attrs["panic"].Any()) != "to the default logger" {
		t.Errorf("record %+v", rec)
	}
	join(t, b)
}
