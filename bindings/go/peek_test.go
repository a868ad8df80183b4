package brokk

import (
	"strings"
	"testing"
	"time"
)

// peekedIDs is the message ids of what Peek showed, each with its attempt.
func peekedIDs(t *testing.T, b *Broker, topic, group string, max int) []string {
	t.Helper()
	shown := must(b.Peek(topic, group, max))(t)
	out := make([]string, len(shown))
	for i, p := range shown {
		out[i] = p.ID + "/" + string(rune('0'+p.Attempt))
	}
	return out
}

// Peek shows what fetches would get, in their order, and takes nothing, on every backend.
func TestPeekShowsWhatFetchWouldGetAndTakesNothing(t *testing.T) {
	forEachBackend(t, func(t *testing.T) {
		b := open(t, nil)
		if got := must(b.Peek("jobs", "", 10))(t); len(got) != 0 {
			t.Fatalf("peek of a missing topic: %v", got)
		}
		if d := must(b.Fetch(expired(), "jobs", nil))(t); d != nil { // makes the default group
			t.Fatal("fetch of an empty group")
		}
		for _, m := range []struct {
			id       string
			priority int32
		}{{"one", 0}, {"two", 5}, {"three", 0}} {
			opts := &PublishOptions{ID: m.id, Priority: m.priority, Metadata: []byte(`{"k":1}`)}
			must(b.Publish("jobs", []byte(`"`+m.id+`"`), opts))(t)
		}
		before := must(b.Stats())(t)
		shown := must(b.Peek("jobs", "", 10))(t)
		if len(shown) != 3 {
			t.Fatalf("peek showed %d, want 3", len(shown))
		}
		first := shown[0]
		if first.ID != "two" || first.Topic != "jobs" || string(first.Payload) != `"two"` ||
			string(first.Metadata) != `{"k":1}` || first.Priority != 5 || first.Attempt != 1 {
			t.Errorf("first peeked: %+v", first)
		}
		if age := time.Since(first.Timestamp); age < -time.Minute || age > time.Hour {
			t.Errorf("timestamp %v", first.Timestamp)
		}
		want := "two/1 one/1 three/1"
		if got := strings.Join(peekedIDs(t, b, "jobs", "", 10), " "); got != want {
			t.Errorf("peek: %s, want %s", got, want)
		}
		if got := strings.Join(peekedIDs(t, b, "jobs", "default", 2), " "); got != "two/1 one/1" {
			t.Errorf("peek of 2 of the default group: %s", got)
		}
		after := must(b.Stats())(t)
		before.Uptime, after.Uptime = 0, 0
		if before != after {
			t.Errorf("peek changed the stats: %+v then %+v", before, after)
		}
		// A fetch after it gets the first one, at attempt 1; requeued, it is back at attempt 2
		// (first still: the highest priority).
		d := must(b.Fetch(expired(), "jobs", nil))(t)
		if d == nil || d.Message().ParentID() != "two" || d.Message().Attempt() != 1 {
			t.Fatalf("fetch after peek: %v", d)
		}
		if got := strings.Join(peekedIDs(t, b, "jobs", "", 10), " "); got != "one/1 three/1" {
			t.Errorf("peek with one in flight: %s", got)
		}
		if err := d.Nack(true, 0, ""); err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(peekedIDs(t, b, "jobs", "", 10), " "); got != "two/2 one/1 three/1" {
			t.Errorf("peek after a requeue: %s", got)
		}
		must(b.Purge("jobs"))(t)
	})
}

func TestPeekOfAMissingGroupCreatesNothing(t *testing.T) {
	b := open(t, nil)
	if got := must(b.Peek("orders", "ghost", 5))(t); len(got) != 0 {
		t.Fatalf("peek of a missing group: %v", got)
	}
	must(b.Publish("orders", []byte("1"), nil))(t)
	if s := must(b.Stats())(t); s.Retained != 1 {
		t.Errorf("retained %d: peek made a group", s.Retained)
	}
	must(b.PurgeAll())(t)
}

func TestPeekRefusesBadInput(t *testing.T) {
	b := open(t, nil)
	_, err := b.Peek("t", "", 0)
	expectErr(t, "max 0", err, ErrInvalidArgument)
	_, err = b.Peek("t", "", MaxPeek+1)
	expectErr(t, "max over MaxPeek", err, ErrInvalidArgument)
	_, err = b.Peek("t", "", -1)
	expectErr(t, "negative max", err, ErrInvalidArgument)
	_, err = b.Peek("bad topic", "", 1)
	expectErr(t, "bad topic", err, ErrInvalidTopic)
	_, err = b.Peek("", "", 1)
	expectErr(t, "empty topic", err, ErrInvalidTopic)
	_, err = b.Peek("t", "bad group", 1)
	expectErr(t, "bad group", err, ErrInvalidGroup)
	if got := must(b.Peek("t", "", MaxPeek))(t); len(got) != 0 {
		t.Errorf("peek of MaxPeek on an empty topic: %v", got)
	}
	must(b.ForceClose())(t)
	_, err = b.Peek("t", "", 1)
	expectErr(t, "closed", err, ErrClosed)
}
