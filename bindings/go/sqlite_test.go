package brokk

import (
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// What only a SQLite store does: outlive its broker, be shared by two brokers, hand held
// deliveries back on close; and the statuses of a file that is not a store. The tests that
// call forEachBackend run on SQLite too.

// forceClose closes b with force, failing the test on an error.
func forceClose(t *testing.T, b *Broker) {
	t.Helper()
	if rep, err := b.ForceClose(); err != nil {
		t.Fatalf("force close: %v (%+v)", err, rep)
	}
}

func wantCount(t *testing.T, b *Broker, want uint64, topics ...string) {
	t.Helper()
	var n uint64
	var err error
	if len(topics) == 0 {
		n, err = b.CountAll()
	} else {
		n, err = b.Count(topics...)
	}
	if err != nil || n != want {
		t.Fatalf("count %v = %d, %v; want %d", topics, n, err, want)
	}
}

func TestSQLiteQueuedMessagesSurviveANewBroker(t *testing.T) {
	url := sqliteURL(t.TempDir(), "store.db")
	first, err := Open(url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if d, err := first.Fetch(expired(), "durable", &FetchOptions{Group: "g"}); d != nil || err != nil {
		t.Fatalf("fetch on an empty group: %v, %v", d, err)
	}
	for i := 0; i < 3; i++ {
		must(first.Publish("durable", []byte(strconv.Itoa(i)), &PublishOptions{ID: "m-" + strconv.Itoa(i), Priority: int32(i % 2)}))(t)
	}
	must(first.Publish("retained", []byte(`"kept"`), nil))(t)
	wantCount(t, first, 4)
	forceClose(t, first) // nothing durable is dropped

	second := openURL(t, url, nil)
	wantCount(t, second, 4)
	got := must(second.FetchBatch(waitCtx(t), "durable", 10, &FetchOptions{Group: "g"}))(t)
	var order []string
	ids := make([]DeliveryID, len(got))
	for i, d := range got {
		m := d.Message()
		order = append(order, m.ParentID()+"/"+string(m.Payload()))
		if m.Attempt() != 1 || m.Group() != "g" {
			t.Errorf("%s: attempt %d group %q", m.ParentID(), m.Attempt(), m.Group())
		}
		ids[i] = m.DeliveryID()
	}
	if want := "m-1/1 m-0/0 m-2/2"; strings.Join(order, " ") != want {
		t.Errorf("order after reopening = %v, want %s", order, want)
	}
	if n, err := second.AckBatch(ids); n != 3 || err != nil {
		t.Fatalf("ack batch: %d, %v", n, err)
	}
	kept := must(second.Fetch(waitCtx(t), "retained", &FetchOptions{Group: "late"}))(t)
	if kept == nil || string(kept.Message().Payload()) != `"kept"` {
		t.Fatalf("retained message after reopening: %v", kept)
	}
	if err := kept.Ack(); err != nil {
		t.Fatal(err)
	}
	join(t, second)
	wantCount(t, second, 0)
}

func TestSQLiteCloseHandsBackHeldDeliveriesWithTheNextAttempt(t *testing.T) {
	url := sqliteURL(t.TempDir(), "store.db")
	first, err := Open(url, nil)
	if err != nil {
		t.Fatal(err)
	}
	must(first.Publish("held", []byte(`1`), nil))(t)
	d := must(first.Fetch(waitCtx(t), "held", &FetchOptions{Group: "g"}))(t)
	if d == nil || d.Message().Attempt() != 1 {
		t.Fatalf("first fetch: %v", d)
	}
	wantCount(t, first, 0, "held") // in flight: not counted
	rep, err := first.Close(expired())
	if !errors.Is(err, StatusTimeout) || rep.Remaining != 1 {
		t.Fatalf("close with an unacked delivery: %+v, %v; want TIMEOUT with 1 remaining", rep, err)
	}
	second := openURL(t, url, nil)
	wantCount(t, second, 1, "held")
	again := must(second.Fetch(waitCtx(t), "held", &FetchOptions{Group: "g"}))(t)
	if again == nil || again.Message().Attempt() != 2 || string(again.Message().Payload()) != "1" {
		t.Fatalf("redelivery after close: %v", again)
	}
	if err := again.Ack(); err != nil {
		t.Fatal(err)
	}
}

func TestSQLiteTwoBrokersOnOneFileCompeteAndFanOut(t *testing.T) {
	url := sqliteURL(t.TempDir(), "shared.db")
	a, b := openURL(t, url, nil), openURL(t, url, nil)
	workers := &FetchOptions{Group: "workers"}
	for _, br := range []*Broker{a, b} {
		must(br.Fetch(expired(), "shared", workers))(t)
	}
	must(b.Fetch(expired(), "shared", &FetchOptions{Group: "audit"}))(t)
	batch := make([]BatchMessage, 20)
	for i := range batch {
		batch[i] = BatchMessage{Payload: []byte(strconv.Itoa(i))}
	}
	ids := must(a.PublishBatch("shared", batch))(t)
	wantCount(t, b, 40, "shared") // the whole file: both groups
	var taken []int
	for _, br := range []*Broker{a, b, a, b} {
		ds := must(br.FetchBatch(waitCtx(t), "shared", 5, workers))(t)
		acks := make([]DeliveryID, len(ds))
		for i, d := range ds {
			n, _ := strconv.Atoi(string(d.Message().Payload()))
			taken = append(taken, n)
			acks[i] = d.Message().DeliveryID()
		}
		if n, err := br.AckBatch(acks); err != nil || n != len(acks) {
			t.Fatalf("ack batch: %d, %v", n, err)
		}
	}
	sort.Ints(taken)
	for i, n := range taken {
		if i != n || len(taken) != 20 {
			t.Fatalf("the group's members took %v; want each of 0..19 once", taken)
		}
	}
	audit := must(b.FetchBatch(waitCtx(t), "shared", 100, &FetchOptions{Group: "audit"}))(t)
	if len(audit) != len(ids) {
		t.Fatalf("audit got %d of %d", len(audit), len(ids))
	}
	for i, d := range audit {
		if d.Message().ParentID() != ids[i] {
			t.Errorf("audit[%d] is %s, want %s", i, d.Message().ParentID(), ids[i])
		}
		if err := d.Ack(); err != nil {
			t.Fatal(err)
		}
	}
	wantCount(t, a, 0)
}

func TestSQLitePurgeCoversTheWholeFile(t *testing.T) {
	url := sqliteURL(t.TempDir(), "purge.db")
	a, b := openURL(t, url, nil), openURL(t, url, nil)
	must(a.Fetch(expired(), "p", &FetchOptions{Group: "g"}))(t)
	for i := 0; i < 4; i++ {
		must(a.Publish("p", []byte(`1`), nil))(t)
	}
	must(b.Publish("q", []byte(`"retained"`), nil))(t)
	if n, err := b.Purge("p"); n != 4 || err != nil {
		t.Fatalf(`b.Purge("p") = %d, %v; want 4`, n, err)
	}
	wantCount(t, a, 1)
	if n, err := a.PurgeAll(); n != 1 || err != nil {
		t.Fatalf("a.PurgeAll() = %d, %v; want 1", n, err)
	}
	wantCount(t, b, 0)
}

func TestSQLiteSubscriberInOneBrokerGetsWhatAnotherPublishes(t *testing.T) {
	url := sqliteURL(t.TempDir(), "push.db")
	consumer, producer := openURL(t, url, nil), openURL(t, url, nil)
	got := make(chan string, 1)
	must(consumer.Subscribe("push", func(m *Message) Verdict {
		got <- string(m.Payload())
		return Ack
	}, &SubscribeOptions{Group: "g"}))(t)
	must(producer.Publish("push", []byte(`"hello"`), nil))(t)
	if p := receive(t, got, "the other broker's message"); p != `"hello"` {
		t.Fatalf("payload %s", p)
	}
	join(t, consumer)
}

func TestSQLiteBadFilesGiveTheirStatus(t *testing.T) {
	dir := t.TempDir()
	junk := filepath.Join(dir, "junk.db")
	data := make([]byte, 8192)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(junk, data, 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		url  string
		want Status
	}{
		{"directory", "sqlite://" + dir, StatusCannotOpenStore},
		{"missing folder", sqliteURL(dir, "no/such/folder/x.db"), StatusCannotOpenStore},
		{"random bytes", "sqlite://" + junk, StatusIncompatibleStore},
		{"bad option", sqliteURL(dir, "x.db") + "?synchronous=sometimes", StatusInvalidURL},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b, err := Open(c.url, nil)
			if b != nil || !errors.Is(err, c.want) {
				t.Fatalf("Open(%q) = %v, %v; want %v", c.url, b, err, c.want)
			}
			var e *Error
			if !errors.As(err, &e) || e.Op == "" || e.Class() != ClassCaller {
				t.Errorf("error %#v: want an *Error of class caller", err)
			}
		})
	}
	if after, _ := os.ReadFile(junk); string(after) != string(data) {
		t.Error("the refused file was changed")
	}
	if _, err := os.Stat(filepath.Join(dir, "no")); !os.IsNotExist(err) {
		t.Error("a missing folder was created")
	}
}
