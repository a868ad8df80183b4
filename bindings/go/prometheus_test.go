package brokk

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

// StatsPrometheus: the text format's HELP and TYPE lines, one sample per topic, broker-wide gauges,
// and ErrClosed once closed. (The Python suite reads the same text with the reference parser.)
func TestStatsPrometheus(t *testing.T) {
	b := open(t, &Options{WorkerThreads: 2})
	must(b.Subscribe("orders", func(*Message) Verdict { return Ack }, nil))(t)
	for i := 0; i < 3; i++ {
		must(b.Publish("orders", []byte(`{}`), nil))(t)
	}
	join(t, b)
	text := string(must(b.StatsPrometheus())(t))
	for _, want := range []string{
		"# TYPE brokk_messages_published_total counter\n",
		"\nbrokk_messages_published_total{topic=\"orders\"} 3\n",
		"\nbrokk_deliveries_processed_total{topic=\"orders\"} 3\n",
		"# TYPE brokk_deliveries_queued gauge\n",
		"\nbrokk_topics 1\n",
		"\nbrokk_workers 2\n",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("no %q in\n%s", want, text)
		}
	}
	if !strings.HasSuffix(text, "\n") {
		t.Errorf("the text does not end with a newline")
	}
	must(b.Close(context.Background()))(t)
	if _, err := b.StatsPrometheus(); !errors.Is(err, ErrClosed) {
		t.Errorf("after close: %v", err)
	}
}

// StoreViewJSON and StoreViewPrometheus: retained messages and each group by state, on every
// backend, read without making a group; ErrClosed once closed.
func TestStoreView(t *testing.T) {
	forEachBackend(t, func(t *testing.T) {
		b := open(t, nil)
		must(b.Publish("parked", []byte(`1`), nil))(t)                           // no group yet: retained
		looked, cancel := context.WithDeadline(context.Background(), time.Now()) // only looks
		defer cancel()
		if d := must(b.Fetch(looked, "jobs", &FetchOptions{Group: "workers"}))(t); d != nil {
			t.Fatalf("fetched %v from an empty topic", d)
		}
		must(b.Publish("jobs", []byte(`1`), nil))(t)
		var view struct {
			Topics map[string]struct {
				Retained uint64
				Groups   map[string]struct{ Ready, Delayed, InFlight uint64 }
			}
		}
		if err := json.Unmarshal(must(b.StoreViewJSON())(t), &view); err != nil {
			t.Fatal(err)
		}
		if got := view.Topics["parked"].Retained; got != 1 {
			t.Errorf("parked retains %d", got)
		}
		if got := view.Topics["jobs"].Groups["workers"].Ready; got != 1 {
			t.Errorf("workers has %d ready: %+v", got, view)
		}
		text := string(must(b.StoreViewPrometheus())(t))
		if want := "\nbrokk_store_deliveries_ready{topic=\"jobs\",group=\"workers\"} 1\n"; !strings.Contains(text, want) {
			t.Errorf("no %q in\n%s", want, text)
		}
		if n := must(b.Count("parked"))(t); n != 1 {
			t.Errorf("the view changed parked: count %d", n)
		}
		must(b.Purge("jobs"))(t) // else close waits for the queued delivery
		must(b.Close(context.Background()))(t)
		if _, err := b.StoreViewJSON(); !errors.Is(err, ErrClosed) {
			t.Errorf("after close: %v", err)
		}
	})
}
