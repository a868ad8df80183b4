package brokk

import (
	"context"
	"errors"
	"strings"
	"testing"
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
