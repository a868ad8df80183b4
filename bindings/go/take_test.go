package brokk

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// mustTake is Take that fails the test on an error.
func mustTake(t *testing.T, b *Broker, ctx context.Context, topic string, opts *TakeOptions) ([]byte, bool) {
	t.Helper()
	p, ok, err := b.Take(ctx, topic, opts)
	if err != nil {
		t.Fatalf("take %s: %v", topic, err)
	}
	if ok != (p != nil) {
		t.Fatalf("take %s: payload %q with ok %v", topic, p, ok)
	}
	return p, ok
}

func TestTakeOnAnEmptyGroupReturnsAtOnce(t *testing.T) {
	b := open(t, nil)
	for _, opts := range []*TakeOptions{nil, {}, {Group: "g"}} {
		start := time.Now()
		if p, ok := mustTake(t, b, expired(), "empty", opts); ok || p != nil {
			t.Errorf("take %+v on an empty group: %q, %v", opts, p, ok)
		}
		if d := time.Since(start); d > scaled(time.Second) {
			t.Errorf("take %+v with a passed deadline took %v", opts, d)
		}
	}
	// A cancellable context whose deadline has passed only looks as well.
	ctx, cancel := context.WithTimeout(context.Background(), -time.Second)
	defer cancel()
	if p, ok := mustTake(t, b, ctx, "empty", nil); ok {
		t.Errorf("take past its deadline: %q", p)
	}
}

// Priorities, groups and at most once on every backend: the payloads come highest priority
// first, FIFO within a priority; each group gets its own copy; nothing awaits an ack after.
func TestTakeInPriorityOrderPerGroupAndSettled(t *testing.T) {
	forEachBackend(t, func(t *testing.T) {
		b := open(t, nil)
		// Both groups exist before the publish, so that each gets every message.
		for _, g := range []*TakeOptions{{Group: "workers"}, {Group: "audit"}} {
			mustTake(t, b, expired(), "jobs", g)
		}
		jobs := []struct {
			id       string
			priority int32
		}{{"resize", 1}, {"email", 5}, {"reindex", 0}, {"charge", 9}, {"report", -1}, {"refund", 9}, {"warm", 0}, {"fraud", 5}}
		batch := make([]BatchMessage, len(jobs))
		for i, j := range jobs {
			batch[i] = BatchMessage{Payload: []byte(strconv.Quote(j.id)), PublishOptions: PublishOptions{ID: j.id, Priority: j.priority}}
		}
		must(b.PublishBatch("jobs", batch))(t)
		want := []string{"charge", "refund", "email", "fraud", "resize", "reindex", "warm", "report"}
		for _, g := range []string{"workers", "audit"} {
			var got []string
			for range want {
				p, ok := mustTake(t, b, waitCtx(t), "jobs", &TakeOptions{Group: g})
				if !ok {
					t.Fatalf("group %s: nothing after %v", g, got)
				}
				s, err := strconv.Unquote(string(p))
				if err != nil {
					t.Fatalf("group %s: payload %q", g, p)
				}
				got = append(got, s)
			}
			if strings.Join(got, " ") != strings.Join(want, " ") {
				t.Errorf("group %s took %v, want %v", g, got, want)
			}
			if p, ok := mustTake(t, b, expired(), "jobs", &TakeOptions{Group: g}); ok {
				t.Errorf("group %s: a ninth payload %q", g, p)
			}
		}
		// Taken is acked: nothing is in flight, Join has nothing to wait for.
		ctx, cancel := context.WithTimeout(context.Background(), scaled(2*time.Second))
		defer cancel()
		if left, err := b.Join(ctx); err != nil || left != 0 {
			t.Fatalf("join after taking everything: %d left, %v", left, err)
		}
		st := must(b.Stats())(t)
		if n := uint64(2 * len(want)); st.Processed != n || st.Dispatched != n || st.InFlight != 0 || st.Queued != 0 || st.Failed != 0 {
			t.Errorf("stats %+v; want %d dispatched and processed, none in flight or queued", st, n)
		}
		wantCount(t, b, 0, "jobs")
	})
}

func TestTakeDefaultGroupIsFetchsDefaultGroup(t *testing.T) {
	b := open(t, nil)
	mustTake(t, b, expired(), "jobs", nil) // the group "default" now exists
	publishJobs(t, b, "jobs", 3)
	if p, ok := mustTake(t, b, waitCtx(t), "jobs", nil); !ok || string(p) != "0" {
		t.Fatalf("take from the default group: %q, %v", p, ok)
	}
	if p, ok := mustTake(t, b, waitCtx(t), "jobs", &TakeOptions{}); !ok || string(p) != "1" {
		t.Fatalf("take with an empty group: %q, %v", p, ok)
	}
	d := must(b.Fetch(waitCtx(t), "jobs", nil))(t)
	if d == nil {
		t.Fatal("fetch from the same default group: nothing")
	}
	if p, g := string(d.Message().Payload()), d.Message().Group(); p != "2" || g != "default" {
		t.Errorf("fetch from the same default group: payload %q, group %q; want 2 in default", p, g)
	}
	if err := d.Ack(); err != nil {
		t.Fatal(err)
	}
	join(t, b)
}

// Payloads of any size come through whole, in one call (brokk_broker_take_until): up to
// 3 MiB, past any buffer Take once guessed first (4 KiB) and the default 1 MiB limit.
func TestTakeLargePayloadsComeThroughWhole(t *testing.T) {
	forEachBackend(t, func(t *testing.T) {
		b := open(t, &Options{MaxPayloadBytes: 4 << 20})
		mustTake(t, b, expired(), "big", &TakeOptions{Group: "g"})
		str := func(n int) []byte { // a JSON string of n bytes in all
			p := make([]byte, n)
			p[0], p[n-1] = '"', '"'
			for i := 1; i < n-1; i++ {
				p[i] = 'a' + byte(i%26)
			}
			return p
		}
		sizes := []int{100_000, 3, 4<<10 - 1, 4 << 10, 4<<10 + 1, 700_000, 3 << 20, 10}
		for _, n := range sizes {
			must(b.Publish("big", str(n), nil))(t)
		}
		for _, n := range sizes {
			p, ok := mustTake(t, b, waitCtx(t), "big", &TakeOptions{Group: "g"})
			if !ok || !bytes.Equal(p, str(n)) {
				t.Fatalf("payload of %d bytes: got %d bytes (ok %v)", n, len(p), ok)
			}
		}
		join(t, b)
		if st := must(b.Stats())(t); st.Processed != uint64(len(sizes)) {
			t.Errorf("processed %d, want %d", st.Processed, len(sizes))
		}
	})
}

// A payload returned is the caller's: a later Take does not write into it.
func TestTakePayloadsAreCopies(t *testing.T) {
	b := open(t, nil)
	mustTake(t, b, expired(), "c", nil)
	must(b.Publish("c", []byte(`"first"`), nil))(t)
	must(b.Publish("c", []byte(`"second"`), nil))(t)
	first, _ := mustTake(t, b, waitCtx(t), "c", nil)
	second, _ := mustTake(t, b, waitCtx(t), "c", nil)
	if string(first) != `"first"` || string(second) != `"second"` {
		t.Fatalf("took %q then %q", first, second)
	}
}

// Competing takers get each message exactly once.
func TestConcurrentTakesGetEachMessageOnce(t *testing.T) {
	b := open(t, &Options{QueueCapacity: 1000})
	const n, takers = 400, 4
	mustTake(t, b, expired(), "race", nil)
	publishJobs(t, b, "race", n)
	var mu sync.Mutex
	var got []int
	var wg sync.WaitGroup
	for i := 0; i < takers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				p, ok, err := b.Take(expired(), "race", nil)
				if err != nil {
					t.Errorf("take: %v", err)
					return
				}
				if !ok {
					return
				}
				v, _ := strconv.Atoi(string(p))
				mu.Lock()
				got = append(got, v)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	sort.Ints(got)
	if len(got) != n {
		t.Fatalf("took %d of %d", len(got), n)
	}
	for i, v := range got {
		if v != i {
			t.Fatalf("took %v; want each of 0..%d once", got, n-1)
		}
	}
	join(t, b)
}

func TestTakeTellsListenersDispatchedThenProcessed(t *testing.T) {
	b := open(t, nil)
	var mu sync.Mutex
	var events []string
	record := func(what string) func(*Message) {
		return func(m *Message) {
			mu.Lock()
			events = append(events, what+" "+m.ParentID())
			mu.Unlock()
		}
	}
	must(b.AddListener(Listener{OnDispatched: record("dispatched"), OnProcessed: record("processed"), OnFailed: func(m *Message, reason string, _ bool) {
		record("failed")(m)
	}}))(t)
	mustTake(t, b, expired(), "heard", nil)
	must(b.Publish("heard", []byte(`1`), &PublishOptions{ID: "m1"}))(t)
	if _, ok := mustTake(t, b, waitCtx(t), "heard", nil); !ok {
		t.Fatal("nothing taken")
	}
	join(t, b) // every listener event delivered
	mu.Lock()
	defer mu.Unlock()
	if got := strings.Join(events, ", "); got != "dispatched m1, processed m1" {
		t.Errorf("listener heard %q", got)
	}
}

func TestTakeHonoursItsContext(t *testing.T) {
	b := open(t, nil)
	// Cancelled before the call: ctx.Err() at once, nothing taken.
	mustTake(t, b, expired(), "ready", nil)
	publishJobs(t, b, "ready", 2)
	gone, cancel := context.WithCancel(context.Background())
	cancel()
	if p, ok, err := b.Take(gone, "ready", nil); ok || p != nil || !errors.Is(err, context.Canceled) {
		t.Errorf("take with a cancelled context: %q, %v, %v; want context.Canceled", p, ok, err)
	}
	wantCount(t, b, 2, "ready")
	// Cancelled while waiting: ctx.Err().
	ctx, cancel2 := context.WithCancel(context.Background())
	time.AfterFunc(scaled(30*time.Millisecond), cancel2)
	if p, ok, err := b.Take(ctx, "idle", nil); ok || p != nil || !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled take: %q, %v, %v; want context.Canceled", p, ok, err)
	}
	// Deadline passed while waiting: nothing came, no error.
	short, cancel3 := context.WithTimeout(context.Background(), scaled(30*time.Millisecond))
	defer cancel3()
	if p, ok, err := b.Take(short, "idle", nil); ok || p != nil || err != nil {
		t.Errorf("take past its deadline: %q, %v, %v; want nil, false, nil", p, ok, err)
	}
	// No deadline, cancellable or not: waits for what another goroutine publishes, large or not.
	for i, ctx := range []context.Context{context.Background(), waitCtx(t)} {
		want := fmt.Sprintf(`"late %d %s"`, i, strings.Repeat("x", i*10_000))
		go func() {
			time.Sleep(scaled(20 * time.Millisecond))
			_, _ = b.Publish("idle", []byte(want), nil)
		}()
		if p, ok := mustTake(t, b, ctx, "idle", nil); !ok || string(p) != want {
			t.Fatalf("blocking take %d got %d bytes, %v", i, len(p), ok)
		}
	}
	// Cancellation without a deadline stops a take that waits without limit.
	ctx4, cancel4 := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, _, err := b.Take(ctx4, "idle", &TakeOptions{Group: "other"})
		done <- err
	}()
	time.Sleep(scaled(20 * time.Millisecond))
	cancel4()
	if err := receive(t, done, "the cancelled take"); !errors.Is(err, context.Canceled) {
		t.Errorf("take cancelled while waiting without limit: %v", err)
	}
	for i := 0; i < 2; i++ {
		mustTake(t, b, waitCtx(t), "ready", nil)
	}
	join(t, b)
}

func TestTakeBadInput(t *testing.T) {
	b := open(t, nil)
	take := func(topic string, opts *TakeOptions) error {
		p, ok, err := b.Take(expired(), topic, opts)
		if p != nil || ok {
			t.Errorf("take %q: a payload %q alongside %v", topic, p, err)
		}
		return err
	}
	cases := []struct {
		what string
		err  error
		want error
	}{
		{"empty topic", take("", nil), ErrInvalidTopic},
		{"topic with a space", take("bad topic", nil), ErrInvalidTopic},
		{"topic with a slash", take("a/b", &TakeOptions{Group: "g"}), ErrInvalidTopic},
		{"topic too long", take(strings.Repeat("t", TopicMaxLen+1), nil), ErrInvalidTopic},
		{"topic not UTF-8", take("t\xff", nil), ErrInvalidUTF8},
		{"bad group", take("t", &TakeOptions{Group: "no/slash"}), ErrInvalidGroup},
		{"group with a space", take("t", &TakeOptions{Group: "a b"}), ErrInvalidGroup},
	}
	for _, c := range cases {
		expectErr(t, "take: "+c.what, c.err, c.want)
		var e *Error
		if errors.As(c.err, &e) && (e.Op != "take" || e.Message == "") {
			t.Errorf("take: %s: error %#v; want op take and brokk's message", c.what, e)
		}
	}
}

func TestTakeOnAClosedBroker(t *testing.T) {
	b := must(Open("", nil))(t)
	mustTake(t, b, expired(), "jobs", nil)
	// A take blocked without a deadline returns ErrClosed when the broker closes.
	blocked := make(chan error, 1)
	var started atomic.Bool
	go func() {
		started.Store(true)
		p, _, err := b.Take(context.Background(), "idle", nil)
		if p != nil {
			err = fmt.Errorf("got %q", p)
		}
		blocked <- err
	}()
	eventually(t, "the take to start", started.Load)
	time.Sleep(scaled(20 * time.Millisecond)) // let it block (a close before it started is fine too)
	if _, err := b.Close(waitCtx(t)); err != nil {
		t.Fatal(err)
	}
	expectErr(t, "blocked take", receive(t, blocked, "the blocked Take"), ErrClosed)
	for _, ctx := range []context.Context{expired(), context.Background(), waitCtx(t)} {
		p, ok, err := b.Take(ctx, "jobs", nil)
		if p != nil || ok {
			t.Errorf("take after close: %q, %v", p, ok)
		}
		expectErr(t, "take after close", err, ErrClosed)
	}
}

// SQLite: a taken message is gone from the file, for the other broker on it and for a broker
// opened afterwards; one not taken survives.
func TestSQLiteTakeIsGoneFromTheFile(t *testing.T) {
	url := sqliteURL(t.TempDir(), "take.db")
	a, b := openURL(t, url, nil), openURL(t, url, nil)
	mustTake(t, a, expired(), "jobs", &TakeOptions{Group: "g"})
	publishJobs(t, b, "jobs", 3)
	if p, ok := mustTake(t, a, waitCtx(t), "jobs", &TakeOptions{Group: "g"}); !ok || string(p) != "0" {
		t.Fatalf("a took %q, %v", p, ok)
	}
	if p, ok := mustTake(t, b, waitCtx(t), "jobs", &TakeOptions{Group: "g"}); !ok || string(p) != "1" {
		t.Fatalf("b took %q, %v", p, ok)
	}
	wantCount(t, a, 1, "jobs")
	forceClose(t, a)
	forceClose(t, b)
	c := openURL(t, url, nil)
	wantCount(t, c, 1, "jobs")
	if p, ok := mustTake(t, c, waitCtx(t), "jobs", &TakeOptions{Group: "g"}); !ok || string(p) != "2" {
		t.Fatalf("after reopening: %q, %v", p, ok)
	}
	if p, ok := mustTake(t, c, expired(), "jobs", &TakeOptions{Group: "g"}); ok {
		t.Fatalf("a taken message came back: %q", p)
	}
	join(t, c)
}

// Redis: two brokers on one store compete for a group's messages through Take, each taken
// once, and nothing is left in the store.
func TestRedisTakeCompetesAcrossBrokers(t *testing.T) {
	url := redisURL(t)
	a, b := openURL(t, url, nil), openURL(t, url, nil)
	g := &TakeOptions{Group: "workers"}
	mustTake(t, a, expired(), "jobs", g)
	mustTake(t, b, expired(), "jobs", g)
	const n = 40
	publishJobs(t, a, "jobs", n)
	var got []int
	for len(got) < n {
		progressed := false
		for _, br := range []*Broker{a, b} {
			if len(got) == n {
				break
			}
			if p, ok := mustTake(t, br, waitCtx(t), "jobs", g); ok {
				v, _ := strconv.Atoi(string(p))
				got = append(got, v)
				progressed = true
			}
		}
		if !progressed {
			t.Fatalf("took %d of %d, then nothing", len(got), n)
		}
	}
	sort.Ints(got)
	for i, v := range got {
		if v != i || len(got) != n {
			t.Fatalf("took %v; want each of 0..%d once", got, n-1)
		}
	}
	for _, br := range []*Broker{a, b} {
		if p, ok := mustTake(t, br, expired(), "jobs", g); ok {
			t.Errorf("a payload after all were taken: %q", p)
		}
		join(t, br)
	}
	wantCount(t, a, 0, "jobs")
}
