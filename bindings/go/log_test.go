package brokk

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// record is what recordingHandler keeps of a slog record.
type record struct {
	level   slog.Level
	target  string
	message string
}

// recordingHandler is a slog.Handler that keeps every record at or above min.
type recordingHandler struct {
	mu      sync.Mutex
	min     slog.Level
	records []record
}

func (h *recordingHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.min }

func (h *recordingHandler) Handle(_ context.Context, r slog.Record) error {
	rec := record{level: r.Level, message: r.Message}
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "target" {
			rec.target = a.Value.String()
		}
		return true
	})
	h.mu.Lock()
	h.records = append(h.records, rec)
	h.mu.Unlock()
	return nil
}

func (h *recordingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *recordingHandler) WithGroup(string) slog.Handler      { return h }

// of is the records of target at level whose message contains text.
func (h *recordingHandler) of(target string, level slog.Level, text string) []record {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []record
	for _, r := range h.records {
		if r.target == target && r.level == level && strings.Contains(r.message, text) {
			out = append(out, r)
		}
	}
	return out
}

func (h *recordingHandler) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.records)
}

// A broker's Options.Logger hears its close report: Warn when the close left work behind.
func TestOptionsLoggerHearsACloseThatLeftWorkBehind(t *testing.T) {
	forEachBackend(t, func(t *testing.T) {
		rec := &recordingHandler{min: LevelTrace}
		b, err := Open(backendOf(t), &Options{WorkerThreads: 1, Logger: slog.New(rec)})
		if err != nil {
			t.Fatal(err)
		}
		release := make(chan struct{})
		started := make(chan struct{}, 1)
		must(b.Subscribe("stuck", func(m *Message) Verdict {
			select {
			case started <- struct{}{}:
			default:
			}
			<-release
			return Ack
		}, nil))(t)
		for range 3 {
			must(b.Publish("stuck", []byte(`1`), nil))(t)
		}
		receive(t, started, "the handler")
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		rep, err := b.Close(ctx)
		cancel()
		close(release)
		if err == nil || rep.Remaining == 0 {
			t.Fatalf("close: %v, %+v; want a timeout with work remaining", err, rep)
		}
		if got := rec.of("brokk::close", slog.LevelWarn, "unfinished"); len(got) != 1 {
			t.Fatalf("close warnings: %+v; all: %+v", got, rec.records)
		}
	})
}

// SetLogger takes the records of brokers without a logger of their own; nil silences them,
// and each logger's handle is released once replaced.
func TestSetLoggerTakesTheRecordsOfBrokersWithoutTheirOwn(t *testing.T) {
	t.Cleanup(func() { _ = SetLogger(nil) })
	rec := &recordingHandler{min: slog.LevelInfo}
	released := watchReleases(t)
	if err := SetLogger(slog.New(rec)); err != nil {
		t.Fatal(err)
	}
	own := &recordingHandler{min: slog.LevelInfo}
	a := must(Open("", nil))(t)
	b := must(Open("", &Options{Logger: slog.New(own)}))(t)
	must(a.Close(waitCtx(t)))(t)
	must(b.Close(waitCtx(t)))(t)
	if got := rec.of("brokk::close", slog.LevelInfo, "nothing left behind"); len(got) != 1 {
		t.Fatalf("process-wide: %+v", rec.records)
	}
	if got := own.of("brokk::close", slog.LevelInfo, "nothing left behind"); len(got) != 1 {
		t.Fatalf("own: %+v", own.records)
	}

	// A level the handler does not take is filtered in Go.
	quiet := &recordingHandler{min: slog.LevelWarn}
	if err := SetLogger(slog.New(quiet)); err != nil {
		t.Fatal(err)
	}
	must(must(Open("", nil))(t).Close(waitCtx(t)))(t)
	if quiet.count() != 0 {
		t.Fatalf("an Info record reached a Warn handler: %+v", quiet.records)
	}

	if err := SetLogger(nil); err != nil {
		t.Fatal(err)
	}
	heard := rec.count()
	must(must(Open("", nil))(t).Close(waitCtx(t)))(t)
	if rec.count() != heard {
		t.Fatalf("silenced, yet heard %+v", rec.records[heard:])
	}
	// Released: the first logger (replaced), the quiet one (removed), b's own (freed with b).
	eventually(t, "the loggers' handles released", func() bool { total, _ := released.snapshot(); return total >= 3 })
	if _, twice := released.snapshot(); len(twice) != 0 {
		t.Fatalf("handles released more than once: %v", twice)
	}
}

// A logger that panics is recovered: the broker goes on.
func TestAPanickingLogHandlerNeverReachesBrokk(t *testing.T) {
	b, err := Open("", &Options{Logger: slog.New(panickingHandler{})})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Close(waitCtx(t)); err != nil {
		t.Fatal(err)
	}
}

type panickingHandler struct{}

func (panickingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (panickingHandler) Handle(context.Context, slog.Record) error {
	panic("a broken log handler")
}
func (h panickingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h panickingHandler) WithGroup(string) slog.Handler      { return h }
