package brokk_test

import (
	"context"
	"fmt"
	"strings"
	"time"

	brokk "github.com/brokk/brokk/bindings/go"
)

// Publish and subscribe: the handler runs on a brokk worker thread; Join waits until every
// delivery is settled.
func Example() {
	b, err := brokk.Open("memory://", nil)
	if err != nil {
		panic(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	defer b.Close(ctx)

	_, err = b.Subscribe("orders", func(m *brokk.Message) brokk.Verdict {
		// m is valid only during this call; its accessors return copies.
		fmt.Printf("%s: %s (attempt %d)\n", m.ParentID(), m.Payload(), m.Attempt())
		return brokk.Ack
	}, nil)
	if err != nil {
		panic(err)
	}
	_, err = b.Publish("orders", []byte(`{"item": "anvil", "qty": 2}`), &brokk.PublishOptions{ID: "order-1"})
	if err != nil {
		panic(err)
	}
	if _, err := b.Join(ctx); err != nil {
		panic(err)
	}
	// Output: order-1: {"item": "anvil", "qty": 2} (attempt 1)
}

// Pull: jobs routed before any worker exists wait for the first fetch, highest priority first.
func ExampleBroker_Fetch() {
	b, err := brokk.Open("", nil)
	if err != nil {
		panic(err)
	}
	defer b.Close(context.Background())
	for i, p := range []int32{1, 9, 5} {
		payload := []byte(fmt.Sprintf(`"job %d"`, i))
		if _, err := b.Publish("jobs", payload, &brokk.PublishOptions{Priority: p}); err != nil {
			panic(err)
		}
	}
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		d, err := b.Fetch(ctx, "jobs", &brokk.FetchOptions{Group: "workers"})
		cancel()
		if err != nil {
			panic(err)
		}
		if d == nil {
			break // nothing within 100 ms
		}
		fmt.Printf("%s priority %d\n", d.Message().Payload(), d.Message().Priority())
		if err := d.Ack(); err != nil { // acks, then releases the delivery
			panic(err)
		}
	}
	// Output:
	// "job 1" priority 9
	// "job 2" priority 5
	// "job 0" priority 1
}

// Take: fetch and ack in one step, at most once; the payload is a copy, nothing is left to settle.
func ExampleBroker_Take() {
	b, err := brokk.Open("", nil)
	if err != nil {
		panic(err)
	}
	defer b.Close(context.Background())
	for i, p := range []int32{0, 7} {
		payload := []byte(fmt.Sprintf(`{"job": %d}`, i))
		if _, err := b.Publish("jobs", payload, &brokk.PublishOptions{Priority: p}); err != nil {
			panic(err)
		}
	}
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		payload, ok, err := b.Take(ctx, "jobs", &brokk.TakeOptions{Group: "workers"})
		cancel()
		if err != nil {
			panic(err)
		}
		if !ok {
			break // nothing within 100 ms
		}
		fmt.Printf("%s\n", payload)
	}
	// Output:
	// {"job": 1}
	// {"job": 0}
}

// Pull in batches: up to max deliveries per call, then one call to ack them all.
func ExampleBroker_FetchBatch() {
	b, err := brokk.Open("", nil)
	if err != nil {
		panic(err)
	}
	defer b.Close(context.Background())
	var batch []brokk.BatchMessage
	for i := 0; i < 5; i++ {
		batch = append(batch, brokk.BatchMessage{Payload: []byte(fmt.Sprintf(`{"job": %d}`, i))})
	}
	if _, err := b.PublishBatch("jobs", batch); err != nil {
		panic(err)
	}
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		ds, err := b.FetchBatch(ctx, "jobs", 3, nil)
		cancel()
		if err != nil {
			panic(err)
		}
		if ds == nil {
			break // nothing within 100 ms
		}
		ids := make([]brokk.DeliveryID, len(ds))
		payloads := make([]string, len(ds))
		for i, d := range ds {
			payloads[i] = string(d.Message().Payload())
			ids[i] = d.Message().DeliveryID()
			d.Close() // the id is all AckBatch needs
		}
		fmt.Println(strings.Join(payloads, " "))
		if n, err := b.AckBatch(ids); err != nil {
			panic(fmt.Sprintf("acked %d of %d: %v", n, len(ids), err))
		}
	}
	// Output:
	// {"job": 0} {"job": 1} {"job": 2}
	// {"job": 3} {"job": 4}
}
