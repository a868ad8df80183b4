package brokk

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// publishJobs publishes n messages "0".."n-1" on topic with ids job-0.. and priority 0.
func publishJobs(t *testing.T, b *Broker, topic string, n int) {
	t.Helper()
	batch := make([]BatchMessage, n)
	for i := range batch {
		batch[i] = BatchMessage{Payload: []byte(strconv.Itoa(i)), PublishOptions: PublishOptions{ID: fmt.Sprint("job-", i)}}
	}
	must(b.PublishBatch(topic, batch))(t)
}

func deliveryIDs(ds []*Delivery) []DeliveryID {
	ids := make([]DeliveryID, len(ds))
	for i, d := range ds {
		ids[i] = d.Message().DeliveryID()
	}
	return ids
}

func TestFetchBatchTakesUpToMaxInOrder(t *testing.T) {
	forEachBackend(t, func(t *testing.T) {
		b := open(t, nil)
		jobs := []struct {
			id       string
			priority int32
		}{{"resize", 1}, {"email", 5}, {"reindex", 0}, {"charge", 9}, {"report", -1}, {"refund", 9}, {"warm", 0}, {"fraud", 5}}
		batch := make([]BatchMessage, len(jobs))
		for i, j := range jobs {
			batch[i] = BatchMessage{Payload: []byte(strconv.Quote(j.id)), PublishOptions: PublishOptions{
				ID: j.id, Priority: j.priority, Metadata: []byte(`{"n": ` + strconv.Itoa(i) + `}`)}}
		}
		before := time.Now()
		must(b.PublishBatch("jobs", batch))(t)
		want := []string{"charge", "refund", "email", "fraud", "resize", "reindex", "warm", "report"}
		opts := &FetchOptions{Group: "workers"}

		first := must(b.FetchBatch(waitCtx(t), "jobs", 3, opts))(t)
		if len(first) != 3 {
			t.Fatalf("max 3 took %d", len(first))
		}
		// max above what is queued takes what is queued.
		rest := must(b.FetchBatch(waitCtx(t), "jobs", 100, opts))(t)
		if len(rest) != len(jobs)-3 {
			t.Fatalf("max 100 took %d, want the %d left", len(rest), len(jobs)-3)
		}
		all := append(first, rest...)
		seenIDs := map[DeliveryID]bool{}
		for i, d := range all {
			s := copyOut(d.Message())
			j := -1
			for k := range jobs {
				if jobs[k].id == want[i] {
					j = k
				}
			}
			if s.parent != want[i] || string(s.payload) != strconv.Quote(want[i]) || s.topic != "jobs" || s.group != "workers" ||
				s.attempt != 1 || s.priority != jobs[j].priority || s.sub != 0 || string(s.metadata) != `{"n": `+strconv.Itoa(j)+`}` {
				t.Errorf("delivery %d: %+v, want %q", i, s, want[i])
			}
			if s.delivery == 0 || seenIDs[s.delivery] || s.id != strconv.FormatUint(uint64(s.delivery), 10) {
				t.Errorf("delivery %d: id %d (text %q) is zero, repeated or mismatched", i, s.delivery, s.id)
			}
			seenIDs[s.delivery] = true
			if s.timestamp.Before(before.Add(-time.Minute)) || s.timestamp.After(time.Now().Add(time.Minute)) {
				t.Errorf("delivery %d: timestamp %v is not around now", i, s.timestamp)
			}
		}
		ids := deliveryIDs(all)
		// Closing one delivery invalidates its view only, not those of the batch it came with.
		first[0].Close()
		if m := first[0].Message(); m.Topic() != "" || m.DeliveryID() != 0 || len(m.Payload()) != 0 {
			t.Errorf("view of a closed delivery still readable: %q %d", m.Topic(), m.DeliveryID())
		}
		if got := first[1].Message().ParentID(); got != "refund" {
			t.Errorf("its neighbour in the batch reads %q, want refund", got)
		}
		// Every one awaits an ack; AckBatch settles them all, the closed one included (by id).
		if n := must(b.AckBatch(ids))(t); n != len(all) {
			t.Errorf("AckBatch acked %d of %d", n, len(all))
		}
		for _, d := range all {
			d.Close()
		}
		if st := must(b.Stats())(t); st.Processed != uint64(len(jobs)) || st.InFlight != 0 {
			t.Errorf("stats after AckBatch: %+v", st)
		}
		// Nothing left: nil, nil at once with a passed deadline.
		if ds, err := b.FetchBatch(expired(), "jobs", 10, opts); ds != nil || err != nil {
			t.Errorf("empty queue: %v, %v; want nil, nil", ds, err)
		}
	})
}

func TestFetchBatchBadInput(t *testing.T) {
	b := open(t, nil)
	fetch := func(topic string, max int, opts *FetchOptions) error {
		ds, err := b.FetchBatch(expired(), topic, max, opts)
		if ds != nil {
			t.Errorf("FetchBatch(%q, %d) failed with deliveries %v", topic, max, ds)
		}
		return err
	}
	expectErr(t, "max 0", fetch("t", 0, nil), ErrInvalidArgument)
	expectErr(t, "max -1", fetch("t", -1, nil), ErrInvalidArgument)
	expectErr(t, "max MinInt", fetch("t", math.MinInt, nil), ErrInvalidArgument)
	expectErr(t, "empty topic", fetch("", 1, nil), ErrInvalidTopic)
	expectErr(t, "bad topic", fetch("a b", 1, nil), ErrInvalidTopic)
	expectErr(t, "topic not UTF-8", fetch("t\xff", 1, nil), ErrInvalidUTF8)
	expectErr(t, "bad group", fetch("t", 1, &FetchOptions{Group: "no/slash"}), ErrInvalidGroup)
	expectErr(t, "bad dead-letter topic", fetch("t", 1, &FetchOptions{DeadLetterTopic: "a b"}), ErrInvalidTopic)
	expectErr(t, "negative ack deadline", fetch("t", 1, &FetchOptions{AckDeadline: -time.Second}), ErrInvalidArgument)
	var e *Error
	if err := fetch("t", 0, nil); !errors.As(err, &e) || e.Op != "fetch batch" {
		t.Errorf("max 0: %#v, want an *Error of op fetch batch", err)
	}

	// A max beyond MaxFetchBatch counts as MaxFetchBatch: "everything" works.
	publishJobs(t, b, "many", 5)
	ds := must(b.FetchBatch(waitCtx(t), "many", math.MaxInt, nil))(t)
	if len(ds) != 5 {
		t.Fatalf("max MaxInt took %d, want 5", len(ds))
	}
	if n, err := b.AckBatch(deliveryIDs(ds)); n != 5 || err != nil {
		t.Errorf("AckBatch: %d, %v", n, err)
	}
}

func TestFetchBatchHonoursItsContext(t *testing.T) {
	b := open(t, nil)
	// Cancelled before the call: ctx.Err() at once, nothing taken.
	publishJobs(t, b, "ready", 2)
	gone, cancel := context.WithCancel(context.Background())
	cancel()
	if ds, err := b.FetchBatch(gone, "ready", 10, nil); ds != nil || !errors.Is(err, context.Canceled) {
		t.Errorf("fetch with a cancelled context: %v, %v; want context.Canceled", ds, err)
	}
	if n := must(b.Count("ready"))(t); n != 2 {
		t.Errorf("a cancelled fetch took something: %d left of 2", n)
	}
	// Cancelled while waiting: ctx.Err().
	ctx, cancel2 := context.WithCancel(context.Background())
	time.AfterFunc(scaled(30*time.Millisecond), cancel2)
	if ds, err := b.FetchBatch(ctx, "idle", 10, nil); ds != nil || !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled fetch: %v, %v; want context.Canceled", ds, err)
	}
	// Deadline passed while waiting: nothing came, no error.
	short, cancel3 := context.WithTimeout(context.Background(), scaled(30*time.Millisecond))
	defer cancel3()
	if ds, err := b.FetchBatch(short, "idle", 10, nil); ds != nil || err != nil {
		t.Errorf("fetch past its deadline: %v, %v; want nil, nil", ds, err)
	}
	// No deadline: waits for the batch another goroutine publishes, then takes what is there.
	go func() {
		time.Sleep(scaled(20 * time.Millisecond))
		_, _ = b.PublishBatch("idle", []BatchMessage{{Payload: []byte(`"a"`)}, {Payload: []byte(`"b"`)}})
	}()
	ds := must(b.FetchBatch(context.Background(), "idle", 10, nil))(t)
	if len(ds) != 2 || string(ds[0].Message().Payload()) != `"a"` || string(ds[1].Message().Payload()) != `"b"` {
		t.Fatalf("blocking fetch got %d deliveries", len(ds))
	}
	if n, err := b.AckBatch(deliveryIDs(ds)); n != 2 || err != nil {
		t.Errorf("AckBatch: %d, %v", n, err)
	}
	ready := must(b.FetchBatch(waitCtx(t), "ready", 10, nil))(t)
	if n, err := b.AckBatch(deliveryIDs(ready)); n != 2 || err != nil {
		t.Errorf("AckBatch: %d, %v", n, err)
	}
}

func TestAckBatchNamesTheFailingIndex(t *testing.T) {
	forEachBackend(t, func(t *testing.T) {
		b := open(t, nil)
		publishJobs(t, b, "jobs", 4)
		ds := must(b.FetchBatch(waitCtx(t), "jobs", 4, nil))(t)
		if len(ds) != 4 {
			t.Fatalf("took %d of 4", len(ds))
		}
		ids := deliveryIDs(ds)
		for _, d := range ds {
			d.Close() // ids are all AckBatch needs
		}

		// An unknown id in the middle: the others are acked all the same.
		n, err := b.AckBatch([]DeliveryID{ids[0], 987654, ids[1]})
		expectErr(t, "unknown id in the middle", err, ErrUnknownDelivery)
		if n != 2 || err == nil || !strings.Contains(err.Error(), "ids[1]") || !strings.Contains(err.Error(), "987654") {
			t.Errorf("acked %d (want 2), error %v (want it to name ids[1] and 987654)", n, err)
		}
		// Already settled ids, then fresh ones: the first failure is reported, the rest acked.
		n, err = b.AckBatch([]DeliveryID{ids[2], ids[0], ids[1], ids[3]})
		expectErr(t, "settled ids", err, ErrAlreadySettled)
		if n != 2 || err == nil || !strings.Contains(err.Error(), "ids[1]") {
			t.Errorf("acked %d (want 2), error %v (want it to name ids[1], the first failure)", n, err)
		}
		// Nothing to ack: 0, nil.
		for _, empty := range [][]DeliveryID{nil, {}} {
			if n, err := b.AckBatch(empty); n != 0 || err != nil {
				t.Errorf("AckBatch(%v): %d, %v", empty, n, err)
			}
		}
		if st := must(b.Stats())(t); st.Processed != 4 || st.InFlight != 0 {
			t.Errorf("stats %+v; want 4 processed, none in flight", st)
		}
	})
}

func TestBatchCallsOnAClosedBroker(t *testing.T) {
	b := must(Open("", nil))(t)
	publishJobs(t, b, "jobs", 2)
	ds := must(b.FetchBatch(waitCtx(t), "jobs", 2, nil))(t)
	// A FetchBatch blocked without a deadline returns ErrClosed when the broker closes.
	blocked := make(chan error, 1)
	go func() {
		ds, err := b.FetchBatch(context.Background(), "idle", 5, nil)
		if ds != nil {
			err = fmt.Errorf("got %d deliveries", len(ds))
		}
		blocked <- err
	}()
	time.Sleep(scaled(20 * time.Millisecond)) // let it block (a close before it started is fine too)
	if _, err := b.ForceClose(); err != nil {
		t.Fatal(err)
	}
	expectErr(t, "blocked fetch batch", receive(t, blocked, "the blocked FetchBatch"), ErrClosed)
	_, err := b.FetchBatch(expired(), "jobs", 5, nil)
	expectErr(t, "fetch batch after close", err, ErrClosed)
	n, err := b.AckBatch(deliveryIDs(ds))
	expectErr(t, "ack batch after close", err, ErrClosed)
	if n != 0 {
		t.Errorf("AckBatch after close acked %d", n)
	}
	for _, d := range ds {
		d.Close() // still safe: the delivery handles outlive the broker
	}
}

// The deliveries of one FetchBatch share one array of views; a dropped delivery's cleanup
// frees its C delivery, never the views of the others. Under -tags brokk_gc every accessor
// collects first, so a view that only a Message referred to would be gone.
func TestViewsOfABatchOutliveItsDroppedDeliveries(t *testing.T) {
	b := open(t, nil)
	payload := `{"long enough to notice garbage": "` + strings.Repeat("p", 200) + `"}`
	for round := 0; round < 5; round++ {
		batch := make([]BatchMessage, 8)
		for i := range batch {
			batch[i] = BatchMessage{Payload: []byte(payload)}
		}
		must(b.PublishBatch("views", batch))(t)
		m := lastMessageOfABatch(t, b)
		for i := 0; i < 3; i++ {
			runtime.GC()
			if got := string(m.Payload()); got != payload {
				t.Fatalf("payload through the last delivery of a dropped batch: %q", got)
			}
		}
		runtime.KeepAlive(m)
	}
	if _, err := b.PurgeAll(); err != nil {
		t.Fatal(err)
	}
	if _, err := b.ForceClose(); err != nil { // the dropped deliveries are still in flight
		t.Fatal(err)
	}
}

// Deliveries dropped without Close are freed by the cleanups, each exactly once: a Fetch's by
// its own, a FetchBatch's by the batch's once none of the batch is reachable; closed ones are
// not freed again.
func TestDroppedDeliveriesAreFreedByTheCleanups(t *testing.T) {
	b := open(t, nil)
	before := settleCleanups()
	publishJobs(t, b, "drop", 9)
	dropDeliveries(t, b)
	eventually(t, "the cleanups", func() bool {
		runtime.GC()
		return cleanupFrees.Load() == before+6
	})
	time.Sleep(scaled(20 * time.Millisecond))
	runtime.GC()
	if got := cleanupFrees.Load() - before; got != 6 {
		t.Errorf("cleanups freed %d deliveries, want 6 (1 fetched, 5 of a batch of 8 with 3 closed)", got)
	}
	if _, err := b.ForceClose(); err != nil { // the dropped deliveries are still in flight
		t.Fatal(err)
	}
}

// settleCleanups waits until deliveries that earlier tests dropped are freed, and returns the
// count.
func settleCleanups() int64 {
	last := int64(-1)
	for stable := 0; stable < 3; {
		runtime.GC()
		time.Sleep(5 * time.Millisecond)
		if now := cleanupFrees.Load(); now == last {
			stable++
		} else {
			last, stable = now, 0
		}
	}
	return last
}

func dropDeliveries(t *testing.T, b *Broker) {
	d := must(b.Fetch(waitCtx(t), "drop", nil))(t)
	_ = d.Message().Payload()
	ds := must(b.FetchBatch(waitCtx(t), "drop", 8, nil))(t)
	if len(ds) != 8 {
		t.Fatalf("took %d of 8", len(ds))
	}
	for _, d := range ds[:3] {
		d.Close()
	}
}

func lastMessageOfABatch(t *testing.T, b *Broker) *Message {
	ds := must(b.FetchBatch(waitCtx(t), "views", 8, nil))(t)
	if len(ds) != 8 {
		t.Fatalf("took %d of 8", len(ds))
	}
	return ds[7].Message() // keeps ds[7] alive, and none of the others
}

// A Message kept past its callback, or made by the program, reads as zero values.
func TestMessageAfterItsCallbackReadsAsZero(t *testing.T) {
	b := open(t, nil)
	kept := make(chan *Message, 1)
	must(b.Subscribe("keep", func(m *Message) Verdict {
		if m.Topic() != "keep" || string(m.Payload()) != `"x"` {
			t.Errorf("inside the handler: %q %q", m.Topic(), m.Payload())
		}
		kept <- m // not allowed to read it afterwards; it must read as zero, not crash
		return Ack
	}, nil))(t)
	must(b.Publish("keep", []byte(`"x"`), &PublishOptions{Priority: 3}))(t)
	m := receive(t, kept, "the handler")
	join(t, b)
	for what, msg := range map[string]*Message{"kept past its handler": m, "zero Message": {}} {
		s := copyOut(msg)
		if s.topic != "" || s.id != "" || s.parent != "" || s.group != "" || len(s.payload) != 0 || len(s.metadata) != 0 ||
			s.delivery != 0 || s.sub != 0 || s.priority != 0 || s.attempt != 0 || !s.timestamp.IsZero() {
			t.Errorf("%s: %+v, want zero values", what, s)
		}
		expectErr(t, what+": set failure reason", msg.SetFailureReason("late"), ErrNullArgument)
		expectErr(t, what+": set requeue delay", msg.SetRequeueDelay(time.Second), ErrNullArgument)
	}
}

// Handles of the binding's table: a slot is reused, its handle never is; the table grows past
// one chunk; every registration is released once.
func TestHandlesAreUniqueAcrossReusedSlots(t *testing.T) {
	before := settleHandles(t)
	r := watchReleases(t)
	b := open(t, nil)
	seen := map[handle]bool{}
	var ids []SubscriptionID
	const n = 3*handleChunkSize + 7
	got := make(chan int, n)
	for i := 0; i < n; i++ {
		i := i
		ids = append(ids, must(b.Subscribe("many", func(*Message) Verdict { got <- i; return Ack }, nil))(t))
	}
	if live := liveHandles.Load(); live != before+n {
		t.Fatalf("%d live handles, want %d", live, before+n)
	}
	must(b.Publish("many", []byte(`1`), nil))(t)
	join(t, b)
	sum := 0
	for i := 0; i < n; i++ {
		sum += receive(t, got, "a handler")
	}
	if sum != n*(n-1)/2 {
		t.Errorf("handlers %d..%d did not each run once (sum %d)", 0, n-1, sum)
	}
	// Release them all, then register again: the slots are reused with new handles.
	for _, id := range ids {
		if err := b.Unsubscribe(id); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "the releases", func() bool { total, _ := r.snapshot(); return total == n })
	r.mu.Lock()
	for h := range r.count {
		seen[h] = true
	}
	r.mu.Unlock()
	for i := 0; i < n; i++ {
		h := newHandle(&registration{handler: func(*Message) Verdict { return Ack }})
		if seen[h] {
			t.Fatalf("handle %#x handed out twice", h)
		}
		seen[h] = true
		if h.value() == nil {
			t.Fatalf("handle %#x has no registration", h)
		}
		dropHandle(h)
	}
	if _, twice := r.snapshot(); len(twice) != 0 {
		t.Errorf("handles released more than once: %v", twice)
	}
	if live := liveHandles.Load(); live != before {
		t.Errorf("%d live handles, want %d", live, before)
	}
}
