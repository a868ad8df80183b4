package brokk

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// seen is what a handler copied out of a Message.
type seen struct {
	topic, id, parent, group string
	payload, metadata        []byte
	delivery                 DeliveryID
	sub                      SubscriptionID
	priority                 int32
	attempt                  uint32
	timestamp                time.Time
}

func copyOut(m *Message) seen {
	return seen{
		topic: m.Topic(), id: m.ID(), parent: m.ParentID(), group: m.Group(),
		payload: m.Payload(), metadata: m.Metadata(), delivery: m.DeliveryID(),
		sub: m.SubscriptionID(), priority: m.Priority(), attempt: m.Attempt(), timestamp: m.Timestamp(),
	}
}

func TestRoundTripKeepsPayloadAndMetadataExact(t *testing.T) {
	forEachBackend(t, func(t *testing.T) {
		b := open(t, nil)
		got := make(chan seen, 2)
		sub := must(b.Subscribe("orders", func(m *Message) Verdict { got <- copyOut(m); return Ack }, nil))(t)

		// Odd spacing, escapes and non-ASCII: delivered byte for byte, never re-encoded.
		payload := []byte("{ \"item\" :\"anvil\",\n\t\"qty\": 2, \"note\": \"na\u00efve \\u2603 \\\"q\\\"\" , \"n\": 1.50e3 }")
		metadata := []byte(`{"channel":  "web", "tags": ["a", "b"]}`)
		before := time.Now()
		id := must(b.Publish("orders", payload, &PublishOptions{ID: "order-1", Metadata: metadata, Priority: 7}))(t)
		if id != "order-1" {
			t.Fatalf("publish returned id %q, want order-1", id)
		}
		s := receive(t, got, "the delivery")
		if !bytes.Equal(s.payload, payload) {
			t.Errorf("payload %q, want %q", s.payload, payload)
		}
		if !bytes.Equal(s.metadata, metadata) {
			t.Errorf("metadata %q, want %q", s.metadata, metadata)
		}
		if s.topic != "orders" || s.parent != "order-1" || s.group != "" || s.priority != 7 || s.attempt != 1 || s.sub != sub {
			t.Errorf("got %+v", s)
		}
		if s.delivery == 0 || s.id != strconv.FormatUint(uint64(s.delivery), 10) {
			t.Errorf("delivery id %d, id text %q", s.delivery, s.id)
		}
		if s.timestamp.Before(before.Add(-time.Minute)) || s.timestamp.After(time.Now().Add(time.Minute)) {
			t.Errorf("timestamp %v is not around now", s.timestamp)
		}

		// Defaults: a generated id, metadata {}, priority 0.
		gen := must(b.Publish("orders", []byte(`[]`), nil))(t)
		s = receive(t, got, "the second delivery")
		if gen == "" || s.parent != gen || string(s.metadata) != "{}" || s.priority != 0 || string(s.payload) != "[]" {
			t.Errorf("generated id %q, got %+v", gen, s)
		}
	})
}

func TestFanOutAndGroups(t *testing.T) {
	forEachBackend(t, func(t *testing.T) {
		b := open(t, &Options{WorkerThreads: 4})
		const n = 50
		var mu sync.Mutex
		perSub := map[SubscriptionID]int{}
		groupCopies := map[string]int{} // parent id -> deliveries to group "g"
		record := func(m *Message) Verdict {
			mu.Lock()
			defer mu.Unlock()
			perSub[m.SubscriptionID()]++
			if m.Group() == "g" {
				groupCopies[m.ParentID()]++
			}
			return Ack
		}
		a := must(b.Subscribe("news", record, nil))(t)
		c := must(b.Subscribe("news", record, nil))(t)
		g1 := must(b.Subscribe("news", record, &SubscribeOptions{Group: "g", Concurrency: 2}))(t)
		g2 := must(b.Subscribe("news", record, &SubscribeOptions{Group: "g", Concurrency: 2}))(t)
		for i := 0; i < n; i++ {
			must(b.Publish("news", []byte(strconv.Itoa(i)), nil))(t)
		}
		join(t, b)
		mu.Lock()
		defer mu.Unlock()
		if perSub[a] != n || perSub[c] != n {
			t.Errorf("ungrouped subscriptions got %d and %d deliveries, want %d each", perSub[a], perSub[c], n)
		}
		if perSub[g1]+perSub[g2] != n {
			t.Errorf("group members got %d + %d deliveries, want %d in all", perSub[g1], perSub[g2], n)
		}
		if len(groupCopies) != n {
			t.Errorf("group saw %d distinct messages, want %d", len(groupCopies), n)
		}
		for id, k := range groupCopies {
			if k != 1 {
				t.Errorf("message %s went to the group %d times", id, k)
			}
		}
		st := must(b.Stats())(t)
		if st.Published != n || st.Processed != 3*n || st.Dispatched != 3*n || st.Groups != 3 || st.Subscriptions != 4 {
			t.Errorf("stats %+v", st)
		}
	})
}

func TestPrioritiesViaFetch(t *testing.T) {
	forEachBackend(t, func(t *testing.T) {
		b := open(t, nil)
		jobs := []struct {
			id       string
			priority int32
		}{{"resize", 1}, {"email", 5}, {"reindex", 0}, {"charge", 9}, {"report", -1}, {"refund", 9}, {"warm", 0}, {"fraud", 5}}
		batch := make([]BatchMessage, len(jobs))
		for i, j := range jobs {
			batch[i] = BatchMessage{Payload: []byte(strconv.Quote(j.id)), PublishOptions: PublishOptions{ID: j.id, Priority: j.priority}}
		}
		ids := must(b.PublishBatch("jobs", batch))(t)
		for i, j := range jobs {
			if ids[i] != j.id {
				t.Fatalf("batch id %d is %q, want %q", i, ids[i], j.id)
			}
		}
		if n := must(b.Count("jobs"))(t); n != uint64(len(jobs)) {
			t.Fatalf("count %d, want %d retained", n, len(jobs))
		}
		// Highest priority first, FIFO within one priority.
		want := []string{"charge", "refund", "email", "fraud", "resize", "reindex", "warm", "report"}
		for i, w := range want {
			d := must(b.Fetch(waitCtx(t), "jobs", &FetchOptions{Group: "workers"}))(t)
			if d == nil {
				t.Fatalf("fetch %d: nothing", i)
			}
			m := d.Message()
			if m.ParentID() != w || m.Group() != "workers" || m.Attempt() != 1 || string(m.Payload()) != strconv.Quote(w) {
				t.Errorf("fetch %d: %q (group %q, attempt %d), want %q", i, m.ParentID(), m.Group(), m.Attempt(), w)
			}
			if err := d.Ack(); err != nil {
				t.Fatal(err)
			}
			// Acked means closed: the view is gone and reads as zero values.
			if m.Topic() != "" || m.DeliveryID() != 0 || len(m.Payload()) != 0 || !m.Timestamp().IsZero() || m.Attempt() != 0 {
				t.Errorf("view still readable after Ack: topic %q, delivery %d", m.Topic(), m.DeliveryID())
			}
		}
		if d := must(b.Fetch(expired(), "jobs", &FetchOptions{Group: "workers"}))(t); d != nil {
			t.Errorf("fetch on an empty queue returned %q", d.Message().ParentID())
		}
	})
}

func TestManualAckFromAnotherGoroutine(t *testing.T) {
	forEachBackend(t, func(t *testing.T) {
		b := open(t, nil)
		const n = 20
		pending := make(chan DeliveryID, n)
		must(b.Subscribe("invoices", func(m *Message) Verdict {
			pending <- m.DeliveryID()
			return Later
		}, &SubscribeOptions{ManualAck: true}))(t)
		var acked []DeliveryID
		done := make(chan error, 1)
		go func() { // the committer: not a brokk thread
			for i := 0; i < n; i++ {
				id := <-pending
				if err := b.Ack(id); err != nil {
					done <- err
					return
				}
				acked = append(acked, id)
			}
			done <- nil
		}()
		for i := 0; i < n; i++ {
			must(b.Publish("invoices", []byte(`{}`), nil))(t)
		}
		if err := receive(t, done, "the committer"); err != nil {
			t.Fatal(err)
		}
		join(t, b)
		st := must(b.Stats())(t)
		if st.Processed != n || st.InFlight != 0 {
			t.Errorf("processed %d in flight %d, want %d and 0", st.Processed, st.InFlight, n)
		}
		if err := b.Ack(acked[0]); !errors.Is(err, ErrAlreadySettled) {
			t.Errorf("second ack: %v, want ErrAlreadySettled", err)
		}
		if err := b.Nack(acked[1], true, 0, "late"); !errors.Is(err, ErrAlreadySettled) {
			t.Errorf("nack after ack: %v, want ErrAlreadySettled", err)
		}
	})
}

type failure struct {
	parent, reason string
	attempt        uint32
	requeued       bool
}

// failures collects OnFailed events.
func failures(t *testing.T, b *Broker) <-chan failure {
	ch := make(chan failure, 100)
	must(b.AddListener(Listener{OnFailed: func(m *Message, reason string, requeued bool) {
		ch <- failure{m.ParentID(), reason, m.Attempt(), requeued}
	}}))(t)
	return ch
}

func TestNackWithRequeueAndDelay(t *testing.T) {
	forEachBackend(t, func(t *testing.T) {
		b := open(t, nil)
		failed := failures(t, b)
		type attempt struct {
			id      DeliveryID
			attempt uint32
		}
		got := make(chan attempt, 10)
		must(b.Subscribe("retry", func(m *Message) Verdict {
			got <- attempt{m.DeliveryID(), m.Attempt()}
			if m.Attempt() == 1 {
				return Later // nacked below, from the test goroutine
			}
			return Ack
		}, &SubscribeOptions{ManualAck: true}))(t)
		must(b.Publish("retry", []byte(`1`), &PublishOptions{ID: "m1"}))(t)
		first := receive(t, got, "attempt 1")
		if err := b.Nack(first.id, true, 20*time.Millisecond, "try again"); err != nil {
			t.Fatal(err)
		}
		second := receive(t, got, "attempt 2")
		if second.id != first.id || second.attempt != 2 {
			t.Errorf("redelivery %+v after %+v: want the same delivery id, attempt 2", second, first)
		}
		f := receive(t, failed, "the failed event")
		if f != (failure{"m1", "try again", 1, true}) {
			t.Errorf("failed event %+v", f)
		}

		// The same from inside a handler: reason and delay set on the message, verdict Requeue.
		must(b.Subscribe("backoff", func(m *Message) Verdict {
			got <- attempt{m.DeliveryID(), m.Attempt()}
			if m.Attempt() == 1 {
				if err := m.SetFailureReason("busy"); err != nil {
					t.Error(err)
				}
				if err := m.SetRequeueDelay(10 * time.Millisecond); err != nil {
					t.Error(err)
				}
				return Requeue
			}
			return Ack
		}, nil))(t)
		must(b.Publish("backoff", []byte(`2`), &PublishOptions{ID: "m2"}))(t)
		first = receive(t, got, "attempt 1")
		second = receive(t, got, "attempt 2")
		if second.id != first.id || second.attempt != 2 {
			t.Errorf("redelivery %+v after %+v", second, first)
		}
		if f := receive(t, failed, "the failed event"); f != (failure{"m2", "busy", 1, true}) {
			t.Errorf("failed event %+v", f)
		}
		join(t, b)
		if st := must(b.Stats())(t); st.Requeued != 2 || st.Processed != 2 || st.Failed != 0 {
			t.Errorf("stats %+v", st)
		}
	})
}

func TestAckDeadlineRedelivers(t *testing.T) {
	forEachBackend(t, func(t *testing.T) {
		b := open(t, nil)
		attempts := make(chan uint32, 10)
		must(b.Subscribe("slow", func(m *Message) Verdict {
			attempts <- m.Attempt()
			if m.Attempt() == 1 {
				return Later // never acked: the deadline takes it back
			}
			return Ack
		}, &SubscribeOptions{ManualAck: true, AckDeadline: 30 * time.Millisecond}))(t)
		must(b.Publish("slow", []byte(`{}`), nil))(t)
		if a := receive(t, attempts, "attempt 1"); a != 1 {
			t.Fatalf("first attempt %d", a)
		}
		if a := receive(t, attempts, "the redelivery"); a != 2 {
			t.Fatalf("redelivery attempt %d", a)
		}
		join(t, b)
		if st := must(b.Stats())(t); st.Expired != 1 || st.Processed != 1 {
			t.Errorf("stats %+v", st)
		}

		// A fetched delivery left unsettled past its deadline goes back to the group.
		must(b.Publish("pull", []byte(`{}`), &PublishOptions{ID: "p1"}))(t)
		opts := &FetchOptions{AckDeadline: 30 * time.Millisecond}
		d1 := must(b.Fetch(waitCtx(t), "pull", opts))(t)
		if d1 == nil {
			t.Fatal("no delivery")
		}
		d1.Close() // releases the handle only: still in flight
		// The refetch has no deadline of its own: on a loaded machine 30 ms could pass before
		// its ack, which would then be refused, rightly, as a late one.
		d2 := must(b.Fetch(waitCtx(t), "pull", nil))(t)
		if d2 == nil || d2.Message().ParentID() != "p1" || d2.Message().Attempt() != 2 {
			t.Fatalf("refetch: %v", d2)
		}
		if err := d2.Ack(); err != nil {
			t.Fatal(err)
		}
	})
}

func TestDeadLetters(t *testing.T) {
	b := open(t, nil)
	dead := make(chan seen, 10)
	must(b.Subscribe("work.dlq", func(m *Message) Verdict { dead <- copyOut(m); return Ack }, nil))(t)
	must(b.Subscribe("work", func(m *Message) Verdict {
		_ = m.SetFailureReason("boom")
		return Requeue
	}, &SubscribeOptions{MaxAttempts: 2, DeadLetterTopic: "work.dlq"}))(t)
	id := must(b.Publish("work", []byte(`{"job": 1}`), &PublishOptions{Metadata: []byte(`{"k": "v"}`), Priority: 3}))(t)
	d := receive(t, dead, "the dead letter")
	var meta struct {
		K          string `json:"k"`
		DeadLetter struct {
			Topic     string `json:"topic"`
			MessageID string `json:"message_id"`
			Attempts  int    `json:"attempts"`
			Reason    string `json:"reason"`
		} `json:"dead_letter"`
	}
	if err := json.Unmarshal(d.metadata, &meta); err != nil {
		t.Fatalf("dead-letter metadata %q: %v", d.metadata, err)
	}
	if string(d.payload) != `{"job": 1}` || d.priority != 3 || meta.K != "v" || meta.DeadLetter.Topic != "work" ||
		meta.DeadLetter.MessageID != id || meta.DeadLetter.Attempts != 2 {
		t.Errorf("dead letter %+v, metadata %s", d, d.metadata)
	}

	// A fetched delivery nacked without requeue goes to its dead-letter topic at once.
	must(b.Publish("pull", []byte(`"x"`), &PublishOptions{ID: "x"}))(t)
	f := must(b.Fetch(waitCtx(t), "pull", &FetchOptions{DeadLetterTopic: "work.dlq"}))(t)
	if err := f.Nack(false, 0, "unusable"); err != nil {
		t.Fatal(err)
	}
	if d := receive(t, dead, "the second dead letter"); string(d.payload) != `"x"` {
		t.Errorf("second dead letter %+v", d)
	}
	join(t, b)
	if st := must(b.Stats())(t); st.DeadLettered != 2 || st.Failed != 2 {
		t.Errorf("stats %+v", st)
	}
}

func TestBackpressureAndRetentionGiveErrFull(t *testing.T) {
	b := open(t, &Options{QueueCapacity: 1, Backpressure: BackpressureFail})
	// A fetch names the "default" group; nobody takes from it, so its queue fills.
	if d := must(b.Fetch(expired(), "bp", nil))(t); d != nil {
		t.Fatal("unexpected delivery")
	}
	must(b.Publish("bp", []byte(`1`), nil))(t)
	_, err := b.Publish("bp", []byte(`2`), nil)
	if !errors.Is(err, ErrFull) || ClassOf(err) != ClassTransient {
		t.Errorf("publish into a full group: %v (class %v), want ErrFull (transient)", err, ClassOf(err))
	}
	if rep, err := b.ForceClose(); err != nil || rep.Dropped != 1 {
		t.Errorf("force close: %+v, %v; want 1 dropped", rep, err)
	}

	// Block: waits up to PublishTimeout for room, then ErrFull.
	blk := open(t, &Options{QueueCapacity: 1, PublishTimeout: scaled(20 * time.Millisecond)})
	if d := must(blk.Fetch(expired(), "bp", nil))(t); d != nil {
		t.Fatal("unexpected delivery")
	}
	must(blk.Publish("bp", []byte(`1`), nil))(t)
	if _, err := blk.Publish("bp", []byte(`2`), nil); !errors.Is(err, ErrFull) {
		t.Errorf("blocked publish into a full group: %v, want ErrFull", err)
	}
	if _, err := blk.Purge("bp"); err != nil {
		t.Fatal(err)
	}

	// Drop: published, but the full group misses it.
	drp := open(t, &Options{QueueCapacity: 1, Backpressure: BackpressureDrop})
	if d := must(drp.Fetch(expired(), "bp", nil))(t); d != nil {
		t.Fatal("unexpected delivery")
	}
	must(drp.Publish("bp", []byte(`1`), nil))(t)
	must(drp.Publish("bp", []byte(`2`), nil))(t)
	if st := must(drp.Stats())(t); st.Published != 2 || st.FullDropped != 1 || st.Queued != 1 {
		t.Errorf("drop stats %+v", st)
	}
	if _, err := drp.Purge("bp"); err != nil {
		t.Fatal(err)
	}

	r := open(t, &Options{RetentionLimit: 1})
	must(r.Publish("kept", []byte(`1`), nil))(t)
	if _, err := r.Publish("kept", []byte(`2`), nil); !errors.Is(err, ErrFull) {
		t.Errorf("publish past the retention limit: %v, want ErrFull", err)
	}

	drop := open(t, &Options{RetentionLimit: 1, RetentionPolicy: RetentionDropOldest})
	must(drop.Publish("kept", []byte(`1`), nil))(t)
	must(drop.Publish("kept", []byte(`2`), nil))(t)
	if st := must(drop.Stats())(t); st.Retained != 1 || st.RetainedDropped != 1 {
		t.Errorf("drop-oldest stats %+v", st)
	}
}

func TestCountAndPurge(t *testing.T) {
	forEachBackend(t, func(t *testing.T) {
		b := open(t, nil)
		for i := 0; i < 3; i++ {
			must(b.Publish("a", []byte(`1`), nil))(t)
		}
		for i := 0; i < 2; i++ {
			must(b.Publish("b", []byte(`1`), nil))(t)
		}
		check := func(what string, got uint64, err error, want uint64) {
			t.Helper()
			if err != nil || got != want {
				t.Errorf("%s = %d, %v; want %d", what, got, err, want)
			}
		}
		n, err := b.Count("a")
		check(`Count("a")`, n, err, 3)
		n, err = b.Count("a", "b", "unknown")
		check(`Count("a", "b", "unknown")`, n, err, 5)
		n, err = b.Count()
		check("Count()", n, err, 0)
		n, err = b.CountAll()
		check("CountAll()", n, err, 5)
		n, err = b.Purge()
		check("Purge()", n, err, 0)
		n, err = b.Purge("a")
		check(`Purge("a")`, n, err, 3)
		n, err = b.PurgeAll()
		check("PurgeAll()", n, err, 2)
		n, err = b.CountAll()
		check("CountAll() after purging", n, err, 0)
	})
}

func TestCountAndPurgeGroup(t *testing.T) {
	forEachBackend(t, func(t *testing.T) {
		b := open(t, nil)
		ctx := expired() // fetches only look
		for _, g := range []string{"a", "b"} {
			if d, err := b.Fetch(ctx, "g", &FetchOptions{Group: g}); d != nil || err != nil {
				t.Fatalf("fetch to make group %s: %v, %v", g, d, err)
			}
		}
		for i := 0; i < 3; i++ {
			must(b.Publish("g", []byte(`1`), nil))(t)
		}
		held, err := b.Fetch(ctx, "g", &FetchOptions{Group: "a"})
		if err != nil || held == nil {
			t.Fatalf("fetch: %v, %v", held, err)
		}
		check := func(what string, got uint64, err error, want uint64) {
			t.Helper()
			if err != nil || got != want {
				t.Errorf("%s = %d, %v; want %d", what, got, err, want)
			}
		}
		n, err := b.CountGroup("g", "a")
		check(`CountGroup("g", "a")`, n, err, 2)
		n, err = b.CountGroup("g", "nope")
		check(`CountGroup("g", "nope")`, n, err, 0)
		n, err = b.PurgeGroup("g", "a")
		check(`PurgeGroup("g", "a")`, n, err, 2)
		n, err = b.CountGroup("g", "b")
		check(`CountGroup("g", "b") after purging a`, n, err, 3)
		if err := held.Ack(); err != nil {
			t.Errorf("ack of the delivery held through the purge: %v", err)
		}
		n, err = b.PurgeGroup("g", "b")
		check(`PurgeGroup("g", "b")`, n, err, 3)
		if _, err := b.CountGroup("g", ""); !errors.Is(err, ErrInvalidGroup) {
			t.Errorf(`CountGroup("g", ""): %v; want ErrInvalidGroup`, err)
		}
		if _, err := b.PurgeGroup("a b", "a"); !errors.Is(err, ErrInvalidTopic) {
			t.Errorf(`PurgeGroup("a b", "a"): %v; want ErrInvalidTopic`, err)
		}
	})
}

func TestFetchHonoursItsContext(t *testing.T) {
	b := open(t, nil)
	// Cancelled while waiting: ctx.Err().
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(scaled(30*time.Millisecond), cancel)
	if d, err := b.Fetch(ctx, "idle", nil); d != nil || !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled fetch: %v, %v; want context.Canceled", d, err)
	}
	// Deadline passed: nothing came, no error.
	short, cancel2 := context.WithTimeout(context.Background(), scaled(30*time.Millisecond))
	defer cancel2()
	if d, err := b.Fetch(short, "idle", nil); d != nil || err != nil {
		t.Errorf("fetch past its deadline: %v, %v; want nil, nil", d, err)
	}
	// No deadline: waits for the message another goroutine publishes.
	go func() {
		time.Sleep(scaled(20 * time.Millisecond))
		_, _ = b.Publish("idle", []byte(`"late"`), nil)
	}()
	d := must(b.Fetch(context.Background(), "idle", nil))(t)
	if d == nil || string(d.Message().Payload()) != `"late"` {
		t.Fatalf("blocking fetch got %v", d)
	}
	if err := d.Ack(); err != nil {
		t.Fatal(err)
	}
	d.Close() // idempotent after Ack
}

func TestJoinTimesOutAndHonoursCancel(t *testing.T) {
	b := open(t, nil)
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	must(b.Subscribe("block", func(m *Message) Verdict {
		started <- struct{}{}
		<-release
		return Ack
	}, nil))(t)
	must(b.Publish("block", []byte(`1`), nil))(t)
	receive(t, started, "the handler")
	short, cancel := context.WithTimeout(context.Background(), scaled(30*time.Millisecond))
	defer cancel()
	left, err := b.Join(short)
	var e *Error
	if !errors.Is(err, ErrTimeout) || left != 1 || !errors.As(err, &e) || e.Message == "" {
		t.Errorf("join: %d left, %v; want 1 left and ErrTimeout with a message", left, err)
	}
	if left, err := b.Join(expired()); !errors.Is(err, ErrTimeout) || left != 1 {
		t.Errorf("join with an expired context: %d, %v", left, err)
	}
	ctx, cancel2 := context.WithCancel(context.Background())
	time.AfterFunc(scaled(30*time.Millisecond), cancel2)
	if _, err := b.Join(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled join: %v, want context.Canceled", err)
	}
	close(release)
	join(t, b)
}

// Cancelling the context of a Fetch, FetchBatch, Take or Join that waits without a deadline
// wakes it (brokk_cancel) with context.Canceled, and the cancelled call takes nothing: what is
// published afterwards is there for the next call.
func TestCancelWakesABlockedWaitThatTakesNothing(t *testing.T) {
	forEachBackend(t, func(t *testing.T) {
		b := open(t, nil)
		for _, tk := range takers {
			topic := "idle." + tk.name
			if got, err := tk.take(expired(), b, topic); got || err != nil { // names the group
				t.Fatalf("%s on an empty topic: %v, %v", tk.name, got, err)
			}
			err := cancelWhileBlocked(t, tk.name, func(ctx context.Context) error {
				got, err := tk.take(ctx, b, topic)
				if got {
					t.Errorf("cancelled %s took something", tk.name)
				}
				return err
			})
			if !errors.Is(err, context.Canceled) {
				t.Errorf("cancelled %s: %v, want context.Canceled", tk.name, err)
			}
			must(b.Publish(topic, []byte(`"after"`), nil))(t)
			if got, err := tk.take(waitCtx(t), b, topic); !got || err != nil {
				t.Errorf("%s after the cancelled one: %v, %v; want the message published after", tk.name, got, err)
			}
			wantCount(t, b, 0, topic)
		}
		blockJoin(t, b, "busy")
		err := cancelWhileBlocked(t, "join", func(ctx context.Context) error {
			_, err := b.Join(ctx)
			return err
		})
		if !errors.Is(err, context.Canceled) {
			t.Errorf("cancelled join: %v, want context.Canceled", err)
		}
	})
}

// A context cancelled before the call: context.Canceled at once, and nothing is taken even
// though a message waits.
func TestCancelledContextTakesNothing(t *testing.T) {
	forEachBackend(t, func(t *testing.T) {
		b := open(t, nil)
		for _, tk := range takers {
			topic := "ready." + tk.name
			if got, err := tk.take(expired(), b, topic); got || err != nil { // names the group
				t.Fatalf("%s on an empty topic: %v, %v", tk.name, got, err)
			}
			must(b.Publish(topic, []byte(`"waiting"`), nil))(t)
			done := make(chan error, 1)
			go func() {
				got, err := tk.take(cancelled(), b, topic)
				if got {
					t.Errorf("%s with a cancelled context took the waiting message", tk.name)
				}
				done <- err
			}()
			if err := receiveWithin(t, done, scaled(5*time.Second), tk.name); !errors.Is(err, context.Canceled) {
				t.Errorf("%s with a cancelled context: %v, want context.Canceled", tk.name, err)
			}
			wantCount(t, b, 1, topic)
			if got, err := tk.take(waitCtx(t), b, topic); !got || err != nil {
				t.Errorf("%s of the waiting message: %v, %v", tk.name, got, err)
			}
		}
		blockJoin(t, b, "busy")
		if _, err := b.Join(cancelled()); !errors.Is(err, context.Canceled) {
			t.Errorf("join with a cancelled context: %v, want context.Canceled", err)
		}
	})
}

// A deadline that passes while the call waits is a timeout, not a cancellation: Fetch,
// FetchBatch and Take return nothing and no error, Join ErrTimeout and what is outstanding.
func TestDeadlineEndsAWaitAsATimeout(t *testing.T) {
	forEachBackend(t, func(t *testing.T) {
		b := open(t, nil)
		short := func() context.Context {
			ctx, cancel := context.WithTimeout(context.Background(), scaled(50*time.Millisecond))
			t.Cleanup(cancel)
			return ctx
		}
		for _, tk := range takers {
			if got, err := tk.take(short(), b, "idle"); got || err != nil {
				t.Errorf("%s past its deadline: %v, %v; want nothing and no error", tk.name, got, err)
			}
		}
		blockJoin(t, b, "busy")
		if left, err := b.Join(short()); !errors.Is(err, ErrTimeout) || left != 1 {
			t.Errorf("join past its deadline: %d left, %v; want 1 and ErrTimeout", left, err)
		}
	})
}

func TestConcurrentPublishers(t *testing.T) {
	b := open(t, &Options{WorkerThreads: 4})
	const goroutines, each = 32, 200
	var got, grouped atomic.Int64
	must(b.Subscribe("load", func(m *Message) Verdict { got.Add(1); return Ack }, &SubscribeOptions{Concurrency: 8}))(t)
	must(b.Subscribe("load", func(m *Message) Verdict { grouped.Add(1); return Ack }, &SubscribeOptions{Group: "g", Concurrency: 4}))(t)
	must(b.Subscribe("load", func(m *Message) Verdict { grouped.Add(1); return Ack }, &SubscribeOptions{Group: "g", Concurrency: 4}))(t)
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < each; i++ {
				var err error
				if i%50 == 0 { // batches and readers mixed in
					_, err = b.PublishBatch("load", []BatchMessage{{Payload: []byte(`[1]`)}, {Payload: []byte(`[2]`)}})
					if err == nil {
						_, err = b.Stats()
					}
				} else {
					_, err = b.Publish("load", []byte(`{"g": `+strconv.Itoa(g)+`}`), nil)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	join(t, b)
	want := int64(goroutines * (each + each/50))
	if got.Load() != want || grouped.Load() != want {
		t.Errorf("deliveries %d and %d, want %d each", got.Load(), grouped.Load(), want)
	}
	if st := must(b.Stats())(t); st.Published != uint64(want) || st.Processed != uint64(2*want) {
		t.Errorf("stats %+v", st)
	}
}

// A delivery id names a delivery of the broker that issued it. Two brokers of one process both
// count their deliveries, so B holds a delivery with the same number as A's: acking A's id on
// B must say ErrUnknownDelivery and settle nothing, neither B's delivery nor A's.
func TestAckOfAnotherBrokersDeliveryIDFails(t *testing.T) {
	a, b := open(t, nil), open(t, nil)
	must(a.Publish("jobs", []byte(`"a"`), nil))(t)
	must(b.Publish("jobs", []byte(`"b"`), nil))(t)
	da := must(a.Fetch(waitCtx(t), "jobs", nil))(t)
	db := must(b.Fetch(waitCtx(t), "jobs", nil))(t)
	if da == nil || db == nil {
		t.Fatal("nothing fetched")
	}
	defer da.Close()
	defer db.Close()

	expectErr(t, "ack of A's delivery id on B", b.Ack(da.Message().DeliveryID()), ErrUnknownDelivery)
	expectErr(t, "nack of A's delivery id on B", b.Nack(da.Message().DeliveryID(), true, 0, ""), ErrUnknownDelivery)
	if n, err := b.AckBatch([]DeliveryID{da.Message().DeliveryID()}); n != 0 {
		t.Errorf("ack batch of A's delivery id on B acked %d", n)
	} else {
		expectErr(t, "ack batch of A's delivery id on B", err, ErrUnknownDelivery)
	}
	if st := must(b.Stats())(t); st.Processed != 0 || st.Failed != 0 || st.InFlight != 1 {
		t.Errorf("B after the foreign acks: %+v; want its own delivery still in flight", st)
	}
	// Each delivery is still there to be acked by its own broker.
	if err := a.Ack(da.Message().DeliveryID()); err != nil {
		t.Errorf("ack of A's delivery on A: %v", err)
	}
	if err := b.Ack(db.Message().DeliveryID()); err != nil {
		t.Errorf("ack of B's delivery on B: %v", err)
	}
	for name, br := range map[string]*Broker{"A": a, "B": b} {
		if st := must(br.Stats())(t); st.Processed != 1 || st.InFlight != 0 {
			t.Errorf("%s at the end: %+v; want 1 processed, none in flight", name, st)
		}
	}
}
