// Command pipeline is brokk's order pipeline demo (examples/c/pipeline.c) in Go.
//
//	main --publish--> "orders" --+--> transform (parse, price, upper-case) --publish--> "invoices"
//	                             +--> audit (fan-out: its own copy of every order)
//	"invoices" --> sink (manual ack) --> committer goroutine --Broker.Ack-->
//	"jobs" (priorities, routed before any worker exists) --Fetch--> two competing workers
//
// Handlers run on brokk's worker threads, the listener on brokk's listener thread, and the
// committer and the workers on goroutines of ours, so the live log interleaves; what the
// stages learn goes into a pipeline struct and is printed, sorted, after Join.
//
// Run it from the repository root with `make demo-go`, or: make lib && cd examples/go && go run ./pipeline
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	brokk "github.com/brokk/brokk/bindings/go"
)

const (
	orderCount = 6
	flakyOrder = 3 // fails on its first attempt, as if a service had timed out
)

// fail records why a delivery fails (listeners see it in OnFailed) and returns the verdict.
func fail(m *brokk.Message, v brokk.Verdict, why string) brokk.Verdict {
	if err := m.SetFailureReason(why); err != nil {
		fmt.Fprintln(os.Stderr, err)
	}
	return v
}

// ---- what the stages record, read by main after Join --------------------------------------

type orderRecord struct {
	attempts                         uint32 // the attempt on which transform succeeded; 0 = never
	transformDelivery, auditDelivery brokk.DeliveryID
	parentID                         string // the published id both deliveries copy
	audited, committed               bool
	invoice                          string
}

// commitJob is what the sink hands the committer: copies, never the Message itself.
type commitJob struct {
	delivery                     brokk.DeliveryID
	invoiceID, invoice, metadata string
}

type pipeline struct {
	broker *brokk.Broker
	mu     sync.Mutex // stages run on different worker threads
	orders [orderCount + 1]orderRecord
	commit chan commitJob // sink -> committer
}

type order struct {
	Order int    `json:"order"`
	Item  string `json:"item"`
	Qty   int    `json:"qty"`
}

type invoice struct {
	Order int         `json:"order"`
	Item  string      `json:"item"`
	Qty   int         `json:"qty"`
	Total json.Number `json:"total"`
}

var prices = map[string]int{"anvil": 2990, "rope": 425, "lantern": 1250, "dynamite": 775, "magnet": 1999, "rocket": 14900}

// ---- stage 1: transform "orders" into "invoices" (a worker thread) -------------------------

func (p *pipeline) transform(m *brokk.Message) brokk.Verdict {
	var o order
	if err := json.Unmarshal(m.Payload(), &o); err != nil || o.Order < 1 || o.Order > orderCount || o.Qty < 1 {
		return fail(m, brokk.Nack, "malformed order")
	}
	cents, ok := prices[o.Item]
	if !ok {
		return fail(m, brokk.Nack, "unknown item")
	}
	attempt := m.Attempt()
	if o.Order == flakyOrder && attempt == 1 { // Requeue: back of the queue, attempt 2
		return fail(m, brokk.Requeue, "inventory service timed out (simulated)")
	}
	total := o.Qty * cents
	inv, _ := json.Marshal(invoice{o.Order, strings.ToUpper(o.Item), o.Qty,
		json.Number(fmt.Sprintf("%d.%02d", total/100, total%100))})
	parent := m.ParentID()
	meta, _ := json.Marshal(map[string]any{"source_id": parent, "source_delivery": m.DeliveryID()})

	// Re-entrant publish: allowed from a handler (only Join and a non-forced Close are not).
	_, err := p.broker.Publish("invoices", inv, &brokk.PublishOptions{ID: fmt.Sprintf("invoice-%d", o.Order), Metadata: meta})
	if err != nil {
		return fail(m, brokk.Nack, err.Error())
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	r := &p.orders[o.Order]
	r.attempts, r.transformDelivery, r.parentID = attempt, m.DeliveryID(), parent
	return brokk.Ack // auto-ack subscription: the verdict settles it
}

// ---- fan-out: audit gets its own delivery of every order (a worker thread) -----------------

func (p *pipeline) audit(m *brokk.Message) brokk.Verdict {
	var o order
	if err := json.Unmarshal(m.Payload(), &o); err != nil || o.Order < 1 || o.Order > orderCount {
		return fail(m, brokk.Nack, "unknown order")
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.orders[o.Order].audited = true
	p.orders[o.Order].auditDelivery = m.DeliveryID()
	return brokk.Ack
}

// ---- stage 2: sink on "invoices", manual ack (a worker thread) ------------------------------

func (p *pipeline) sink(m *brokk.Message) brokk.Verdict {
	// The Message dies when we return: hand the committer copies, and the delivery id it acks.
	p.commit <- commitJob{m.DeliveryID(), m.ParentID(), string(m.Payload()), string(m.Metadata())}
	// Later: the delivery stays in flight until the committer acks it (Join waits for that).
	// brokk registers it before calling us, so an ack that beats our return is fine too.
	return brokk.Later
}

// committer is a goroutine of ours, not brokk's: it commits (prints) and acks by delivery id.
func (p *pipeline) committer(failures *int) {
	for job := range p.commit {
		fmt.Printf("committer: committed %s %s (metadata %s)\n", job.invoiceID, job.invoice, job.metadata)
		var inv invoice
		if err := json.Unmarshal([]byte(job.invoice), &inv); err == nil && inv.Order >= 1 && inv.Order <= orderCount {
			p.mu.Lock()
			p.orders[inv.Order].committed = true
			p.orders[inv.Order].invoice = job.invoice
			p.mu.Unlock()
		}
		if err := p.broker.Ack(job.delivery); err != nil {
			fmt.Fprintln(os.Stderr, err)
			*failures++ // read by main after the committer has finished
		}
	}
}

// ---- the listener (brokk's single listener thread, one event at a time) --------------------

type listenerCounts struct {
	mu                                               sync.Mutex
	events, published, dispatched, processed, failed int
}

// tally counts one event; every callback starts here.
func (c *listenerCounts) tally(kind *int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.events++
	if kind != nil {
		*kind++
	}
}

func (c *listenerCounts) listener() brokk.Listener {
	// Keep callbacks short: a slow listener delays the other listeners (never deliveries).
	return brokk.Listener{
		OnTopicCreated: func(topic string) {
			c.tally(nil)
			fmt.Printf("listener: topic %q created\n", topic)
		},
		OnSubscribe: func(topic string, id brokk.SubscriptionID) {
			c.tally(nil)
			fmt.Printf("listener: subscription %d on %q\n", id, topic)
		},
		OnFailed: func(m *brokk.Message, reason string, requeued bool) {
			c.tally(&c.failed)
			fmt.Printf("listener: FAILED %s (delivery %d, attempt %d): %s, requeued=%t\n",
				m.ParentID(), m.DeliveryID(), m.Attempt(), reason, requeued)
		},
		OnPublish:    func(*brokk.Message) { c.tally(&c.published) },
		OnDispatched: func(*brokk.Message) { c.tally(&c.dispatched) },
		OnProcessed:  func(*brokk.Message) { c.tally(&c.processed) },
		// brokk's free_user_data: exactly once, after the listener's last callback.
		OnRelease: func() {
			c.mu.Lock()
			defer c.mu.Unlock()
			fmt.Printf("listener released after %d events\n", c.events)
		},
	}
}

// ---- a prioritised work queue: two goroutines of ours compete (pull) -----------------------

type job struct {
	name     string
	priority int32
}

var jobs = []job{
	{"resize-thumbnails", 1}, {"send-invoice-emails", 5}, {"rebuild-search-index", 0}, {"charge-cards", 9},
	{"nightly-report", -1}, {"refund-order-3", 9}, {"warm-cache", 0}, {"fraud-check", 5},
}

type jobQueue struct {
	broker         *brokk.Broker
	mu             sync.Mutex
	done, failures int
}

func (q *jobQueue) finished() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.done == len(jobs) || q.failures > 0
}

func (q *jobQueue) count(err error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		q.failures++
	} else {
		q.done++
	}
}

// worker fetches from the group "workers": both workers are members, so each job goes to
// exactly one of them, highest priority first. It returns the priorities it saw, in order.
func (q *jobQueue) worker(number int) []int32 {
	var taken []int32
	// An ack deadline: were this worker to die holding a job, the job would go back to the
	// group after 30 s instead of waiting for ever.
	opts := &brokk.FetchOptions{Group: "workers", AckDeadline: 30 * time.Second}
	for !q.finished() {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		d, err := q.broker.Fetch(ctx, "jobs", opts)
		cancel()
		if err != nil {
			q.count(err)
			return taken
		}
		if d == nil {
			continue // nothing within 100 ms: look whether the other worker took the rest
		}
		m := d.Message()
		fmt.Printf("worker %d: %s (priority %d)\n", number, m.Payload(), m.Priority())
		taken = append(taken, m.Priority())
		time.Sleep(3 * time.Millisecond) // the "work"
		q.count(d.Ack())                 // acks, then releases the delivery
	}
	return taken
}

// runWorkQueue routes jobs before any worker exists (the topic retains them for the first
// group), then lets two workers drain the queue. It reports whether every job was done in
// priority order.
func runWorkQueue(b *brokk.Broker) (bool, error) {
	batch := make([]brokk.BatchMessage, len(jobs))
	for i, j := range jobs {
		payload, _ := json.Marshal(j.name)
		batch[i] = brokk.BatchMessage{Payload: payload, PublishOptions: brokk.PublishOptions{Priority: j.priority}}
	}
	if _, err := b.PublishBatch("jobs", batch); err != nil { // one call: all jobs or none
		return false, err
	}
	waiting, err := b.Count("jobs")
	if err != nil {
		return false, err
	}
	fmt.Printf("jobs: %d waiting, retained until the first worker's fetch\n", waiting)

	q := &jobQueue{broker: b}
	var taken [2][]int32
	var wg sync.WaitGroup
	for i := range taken {
		wg.Add(1)
		go func() { defer wg.Done(); taken[i] = q.worker(i + 1) }()
	}
	wg.Wait()

	// Each worker fetched one job at a time from one queue, so each saw priorities falling.
	ordered := true
	for _, ps := range taken {
		for k := 1; k < len(ps); k++ {
			ordered = ordered && ps[k] <= ps[k-1]
		}
	}
	yes := map[bool]string{true: "yes", false: "NO"}
	fmt.Printf("jobs: %d of %d done by 2 competing workers (%d + %d); each took its jobs highest priority first: %s\n",
		q.done, len(jobs), len(taken[0]), len(taken[1]), yes[ordered])
	return q.done == len(jobs) && q.failures == 0 && ordered && len(taken[0])+len(taken[1]) == len(jobs), nil
}

// ---- main -----------------------------------------------------------------------------------

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		fmt.Println("pipeline FAILED")
		os.Exit(1)
	}
	fmt.Println("pipeline done")
}

func run() error {
	fmt.Printf("brokk %s: order pipeline demo\n", brokk.Version())
	b, err := brokk.Open("memory://", &brokk.Options{WorkerThreads: 4}) // zero fields mean defaults
	if err != nil {
		return err
	}
	// The safety net: Close below is the real one, and closing twice is fine.
	defer b.Close(context.Background())

	counts := &listenerCounts{}
	if _, err := b.AddListener(counts.listener()); err != nil {
		return err
	}
	p := &pipeline{broker: b, commit: make(chan commitJob, orderCount)}
	commitFailures := 0
	committerDone := make(chan struct{})
	go func() { p.committer(&commitFailures); close(committerDone) }()

	// Concurrency 1 (the default): each stage handles its deliveries one at a time, in order.
	// The handlers are method values on p, which holds the Broker: they keep it reachable, so
	// its finaliser could never free it. Close below is what releases it.
	stages := []struct {
		topic   string
		handler brokk.Handler
		opts    *brokk.SubscribeOptions
	}{
		{"orders", p.transform, nil},
		{"orders", p.audit, nil},
		{"invoices", p.sink, &brokk.SubscribeOptions{ManualAck: true}},
	}
	for _, s := range stages {
		if _, err := b.Subscribe(s.topic, s.handler, s.opts); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Join also waits for listener events, so the setup lines above print before we go on.
	if _, err := b.Join(ctx); err != nil {
		return err
	}

	fmt.Println("\n-- live log: main, the listener and the committer interleave --")
	items := []struct {
		item string
		qty  int
	}{{"anvil", 2}, {"rope", 10}, {"lantern", 3}, {"dynamite", 12}, {"magnet", 1}, {"rocket", 1}}
	for i, it := range items {
		payload, _ := json.Marshal(order{i + 1, it.item, it.qty})
		// Our own ids keep the story readable; without one, brokk generates it.
		id := fmt.Sprintf("order-%d", i+1)
		fmt.Printf("main: publishing %s %s\n", id, payload)
		opts := &brokk.PublishOptions{ID: id, Metadata: []byte(`{"channel": "web"}`)}
		if _, err := b.Publish("orders", payload, opts); err != nil {
			return err
		}
	}

	// Wait for the whole pipeline: every delivery settled (the committer's acks included) and
	// every listener event delivered. Bounded, so a stuck stage cannot hang the demo.
	if left, err := b.Join(ctx); err != nil {
		if errors.Is(err, brokk.ErrTimeout) {
			fmt.Fprintf(os.Stderr, "join: %d deliveries still outstanding\n", left)
		}
		return err
	}
	close(p.commit) // the sink will not send again: everything is settled
	<-committerDone
	fmt.Println("main: committer joined")

	fmt.Println("\n-- results, sorted by order --")
	invoiced := 0
	p.mu.Lock()
	for n := 1; n <= orderCount; n++ {
		r := p.orders[n]
		if r.committed {
			invoiced++
		}
		fmt.Printf("order-%d: transform attempts=%d audited=%s committed=%s %s\n", n, r.attempts,
			yesNo(r.audited), yesNo(r.committed), r.invoice)
	}
	o1 := p.orders[1]
	p.mu.Unlock()
	fmt.Printf("invoiced %d of %d orders\n", invoiced, orderCount)
	fmt.Printf("fan-out: %s went to transform as delivery %d and to audit as delivery %d, both with parent id %s\n",
		o1.parentID, o1.transformDelivery, o1.auditDelivery, o1.parentID)
	counts.mu.Lock()
	fmt.Printf("listener saw %d events: published=%d dispatched=%d processed=%d failed=%d\n",
		counts.events, counts.published, counts.dispatched, counts.processed, counts.failed)
	counts.mu.Unlock()

	st, err := b.Stats()
	if err != nil {
		return err
	}
	fmt.Printf("stats: published=%d unrouted=%d dispatched=%d processed=%d failed=%d requeued=%d dropped=%d in_flight=%d\n",
		st.Published, st.Unrouted, st.Dispatched, st.Processed, st.Failed, st.Requeued, st.Dropped, st.InFlight)
	fmt.Printf("stats: topics=%d subscriptions=%d listeners=%d workers=%d listener_events_dropped=%d\n",
		st.Topics, st.Subscriptions, st.Listeners, st.Workers, st.ListenerEventsDropped)
	js, err := b.StatsJSON()
	if err != nil {
		return err
	}
	fmt.Printf("stats JSON: %s\n", js)

	fmt.Println("\n-- a prioritised work queue --")
	jobsOK, err := runWorkQueue(b)
	if err != nil {
		return err
	}

	// Close stops new work, drains (nothing is left) and frees the broker, which releases the
	// listener (its OnRelease prints) before Close returns.
	closeCtx, cancelClose := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancelClose()
	report, err := b.Close(closeCtx)
	status := "ok"
	if err != nil {
		status = err.Error()
	}
	fmt.Printf("close: %s (%d deliveries left, %d retained messages discarded)\n", status, report.Remaining,
		report.RetainedDiscarded)
	if err != nil {
		return err
	}
	if invoiced != orderCount || commitFailures != 0 || !jobsOK {
		return errors.New("the pipeline did not finish every order and job")
	}
	return nil
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
