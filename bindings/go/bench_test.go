package brokk

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
)

// Benchmarks of the binding's per-message overhead: `go test -run NONE -bench . -benchmem`.
// Compare with bench/c (the C ABI alone); bench/go runs the full 1->1 scenario.

func benchPayload(buf []byte, n int) []byte {
	buf = append(buf[:0], `{"i": `...)
	buf = strconv.AppendInt(buf, int64(n), 10)
	return append(buf, `, "s": "abcdefghijklmnopqrstuvwxyz012345"}`...)
}

// BenchmarkPublish is Publish alone: the topic has no group and retains nothing.
func BenchmarkPublish(b *testing.B) {
	br, err := Open("memory://", &Options{RetentionPolicy: RetentionOff})
	if err != nil {
		b.Fatal(err)
	}
	defer br.ForceClose()
	buf := make([]byte, 0, 96)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if _, err := br.Publish("bench", benchPayload(buf, i), nil); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkOneToOne is publish -> auto-ack handler that copies the payload, as bench/go.
func BenchmarkOneToOne(b *testing.B) {
	br, err := Open("memory://", nil)
	if err != nil {
		b.Fatal(err)
	}
	defer br.ForceClose()
	var got atomic.Int64
	if _, err := br.Subscribe("bench", func(m *Message) Verdict {
		got.Add(int64(len(m.Payload())))
		return Ack
	}, nil); err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 0, 96)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if _, err := br.Publish("bench", benchPayload(buf, i), nil); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := br.Join(waitCtx(b)); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkPull is the pull scenario of bench/c: fetch + ack per delivery, from a backlog.
func BenchmarkPull(b *testing.B) {
	br, p := pullBroker(b)
	defer br.ForceClose()
	now := expired() // fetch only what is queued
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		p.refill(b, 1)
		d, err := br.Fetch(now, "pull", nil)
		if err != nil || d == nil {
			b.Fatalf("fetch: %v, %v", d, err)
		}
		if err := d.Ack(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPullCancellable is BenchmarkPull with a context that can be cancelled (and never
// is): what the brokk_cancel token and its context.AfterFunc add to each Fetch.
func BenchmarkPullCancellable(b *testing.B) {
	br, p := pullBroker(b)
	defer br.ForceClose()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		p.refill(b, 1)
		d, err := br.Fetch(ctx, "pull", nil)
		if err != nil || d == nil {
			b.Fatalf("fetch: %v, %v", d, err)
		}
		if err := d.Ack(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPullBatch is the same backlog taken with FetchBatch(100) + AckBatch; per delivery.
func BenchmarkPullBatch(b *testing.B) {
	br, p := pullBroker(b)
	defer br.ForceClose()
	ids := make([]DeliveryID, 0, 100)
	now := expired()
	b.ReportAllocs()
	b.ResetTimer()
	for n := 0; n < b.N; {
		want := p.refill(b, min(100, b.N-n))
		ds, err := br.FetchBatch(now, "pull", want, nil)
		if err != nil || len(ds) != want {
			b.Fatalf("fetch batch: %d of %d, %v", len(ds), want, err)
		}
		ids = ids[:0]
		for _, d := range ds {
			ids = append(ids, d.Message().DeliveryID())
			d.Close()
		}
		if _, err := br.AckBatch(ids); err != nil {
			b.Fatal(err)
		}
		n += len(ds)
	}
}

// backlog republishes the same 10 000 messages, outside the timer, when they run out.
type backlog struct {
	br       *Broker
	payloads []BatchMessage
	left     int
}

func pullBroker(b *testing.B) (*Broker, *backlog) {
	br, err := Open("memory://", nil)
	if err != nil {
		b.Fatal(err)
	}
	p := &backlog{br: br, payloads: make([]BatchMessage, 10000)}
	for i := range p.payloads {
		p.payloads[i].Payload = benchPayload(nil, i)
	}
	if _, err := br.Fetch(expired(), "pull", nil); err != nil { // names the default group
		b.Fatal(err)
	}
	return br, p
}

// refill makes sure the backlog holds some messages and returns how many of want it holds.
func (p *backlog) refill(b *testing.B, want int) int {
	if p.left == 0 {
		b.StopTimer()
		if _, err := p.br.PublishBatch("pull", p.payloads); err != nil {
			b.Fatal(err)
		}
		p.left = len(p.payloads)
		b.StartTimer()
	}
	want = min(want, p.left)
	p.left -= want
	return want
}
