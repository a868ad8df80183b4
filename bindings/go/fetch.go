package brokk

/*
#include "shims.h"
*/
import "C"

import (
	"context"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

// FetchOptions configure Fetch (brokk_fetch_options); zero fields mean the defaults, a nil
// *FetchOptions all of them: group "default", no deadline, no attempt limit, no dead letters.
type FetchOptions struct {
	// Group is the consumer group to take from; "" means the group named "default", which
	// every fetch without a group shares.
	Group string
	// AckDeadline is how long the fetched delivery may stay unsettled before it is taken back
	// and redelivered to the group; 0 means no deadline. Rounded up to whole milliseconds.
	AckDeadline time.Duration
	// MaxAttempts is how many attempts it gets before it is given up; 0: no limit.
	MaxAttempts uint32
	// DeadLetterTopic is where it is published if given up or nacked; "": dropped.
	DeadLetterTopic string
}

// Fetch takes the next delivery of a consumer group on topic (brokk_broker_fetch): highest
// priority first, FIFO within a priority. It waits until ctx's deadline for one (no deadline:
// without limit; a deadline already passed: it only looks) and returns nil, nil if none came.
// Cancelling ctx interrupts the wait (through a brokk_cancel token, with which the fetch is
// brokk_broker_fetch_batch_until of one): Fetch then returns ctx.Err(), having taken nothing,
// as it does at once for a ctx cancelled before the call. The delivery awaits Ack or Nack like
// a manual-ack handler's; the caller owns it and must Close it (Delivery.Ack and Delivery.Nack
// do).
func (b *Broker) Fetch(ctx context.Context, topic string, opts *FetchOptions) (*Delivery, error) {
	var pin runtime.Pinner
	defer pin.Unpin()
	copts, err := fetchOptions("fetch", opts, &pin)
	if err != nil {
		return nil, err
	}
	ctopic, ctopicLen := cText(topic)
	var d *C.brokk_delivery
	var view C.gbrokk_view // read in the fetch's own cgo call
	err = wait(ctx, func(ms C.uint64_t, cancel *C.brokk_cancel) error {
		p, err := b.acquire("fetch")
		if err != nil {
			return err
		}
		defer b.release()
		r := C.gbrokk_broker_fetch(p, ctopic, ctopicLen, copts, ms, cancel)
		runtime.KeepAlive(b)
		d, view = r.delivery, r.view
		return check("fetch", r.result)
	})
	runtime.KeepAlive(topic)
	if err != nil {
		if d != nil { // cannot happen: outputs are written only on success
			C.brokk_delivery_free(d)
		}
		return nil, err
	}
	if d == nil {
		return nil, nil
	}
	delivery := &Delivery{broker: b}
	copy(delivery.view[:], viewAsWords(&view))
	delivery.own(d)
	return delivery, nil
}

// FetchBatch takes up to max deliveries of a consumer group on topic in one call
// (brokk_broker_fetch_batch_until): it waits for the first as Fetch does (until ctx's
// deadline; ctx.Err() if ctx is cancelled, nothing taken), then takes what is queued at that
// moment, highest priority first, FIFO within a priority. It returns nil, nil if none came in
// time. Each delivery is the caller's, as one from Fetch is: it awaits Ack or Nack (AckBatch
// acks many in one call) and must be closed.
//
// max must be at least 1: brokk refuses 0 with ErrInvalidArgument, and the binding a negative
// max. The call sets aside room for max deliveries; a max above MaxFetchBatch counts as
// MaxFetchBatch, so that "everything queued" (math.MaxInt) takes at most that many per call.
func (b *Broker) FetchBatch(ctx context.Context, topic string, max int, opts *FetchOptions) ([]*Delivery, error) {
	if max < 0 {
		return nil, errorf("fetch batch", StatusInvalidArgument, "max is negative (%d)", max)
	}
	max = min(max, MaxFetchBatch)
	var pin runtime.Pinner
	defer pin.Unpin()
	copts, err := fetchOptions("fetch batch", opts, &pin)
	if err != nil {
		return nil, err
	}
	ctopic, ctopicLen := cText(topic)
	// brokk writes up to max C pointers here; one spare slot keeps the pointer non-NULL when
	// max is 0, so that brokk sees the max it is given and answers it. The buffer is only
	// scratch (the deliveries are copied out), so it is reused across calls.
	scratch := deliveryScratch(max + 1)
	defer fetchScratch.Put(scratch)
	out := *scratch
	var n C.size_t
	err = wait(ctx, func(ms C.uint64_t, cancel *C.brokk_cancel) error {
		p, err := b.acquire("fetch batch")
		if err != nil {
			return err
		}
		defer b.release()
		err = check("fetch batch", C.gbrokk_broker_fetch_batch_until(p, ctopic, ctopicLen, copts, C.size_t(max), ms, cancel, &out[0], &n))
		runtime.KeepAlive(b)
		return err
	})
	runtime.KeepAlive(topic)
	if err != nil || n == 0 {
		return nil, err // brokk writes no delivery on failure
	}
	// Every view in one cgo call, into memory that the deliveries share; one cleanup for the
	// whole batch frees those that are dropped unclosed.
	batch := newFetchedBatch(out[:n])
	C.gbrokk_deliveries_read(&out[0], n, unsafe.Pointer(&batch.views[0]))
	deliveries := make([]*Delivery, n)
	for i := range deliveries {
		d := &Delivery{ptr: out[i], broker: b, batch: batch, index: i}
		d.msg.v = viewRef(&batch.views[i])
		deliveries[i] = d
	}
	return deliveries, nil
}

// fetchedBatch is what the deliveries of one FetchBatch share: their views, and the C
// deliveries that are not closed yet, which one cleanup frees once none of the Deliveries is
// reachable (a cleanup per delivery, with its Stop in Close, cost as much as the batched fetch).
type fetchedBatch struct {
	// views are in memory that Go allocated as pointer-free ([]uint64): they hold only C
	// pointers, so the collector has nothing to scan, and cgo, given it as an unsafe.Pointer,
	// nothing to check when brokk fills them.
	views []C.gbrokk_view
	open  *openDeliveries
}

// openDeliveries is the batch cleanup's argument: it must not refer to the fetchedBatch.
type openDeliveries struct {
	mu   sync.Mutex
	ptrs []*C.brokk_delivery // nil once closed
}

// viewWords is the size of a gbrokk_view in 8-byte words: views that Go keeps live in memory
// typed as words, which the collector does not scan for pointers (they hold only C pointers,
// whose lookups would cost the collector more than the fetch).
const viewWords = (unsafe.Sizeof(C.gbrokk_view{}) + 7) / 8

// A gbrokk_view is a whole number of words (this fails to compile otherwise).
var _ = [1]struct{}{}[unsafe.Sizeof(C.gbrokk_view{})%8]

// viewAsWords is v's memory as words.
func viewAsWords(v *C.gbrokk_view) []uint64 {
	return unsafe.Slice((*uint64)(unsafe.Pointer(v)), unsafe.Sizeof(*v)/8)
}

func newFetchedBatch(ptrs []*C.brokk_delivery) *fetchedBatch {
	n := len(ptrs)
	mem := make([]uint64, uintptr(n)*viewWords) // 8-byte aligned, like gbrokk_view
	b := &fetchedBatch{
		views: unsafe.Slice((*C.gbrokk_view)(unsafe.Pointer(&mem[0])), n),
		open:  &openDeliveries{ptrs: append([]*C.brokk_delivery(nil), ptrs...)},
	}
	runtime.AddCleanup(b, freeOpenDeliveries, b.open)
	return b
}

// forget takes delivery i out of the cleanup's hands: it is being closed.
func (o *openDeliveries) forget(i int) {
	o.mu.Lock()
	o.ptrs[i] = nil
	o.mu.Unlock()
}

func freeOpenDeliveries(o *openDeliveries) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for i, p := range o.ptrs {
		if p != nil {
			C.brokk_delivery_free(p)
			o.ptrs[i] = nil
			cleanupFrees.Add(1)
		}
	}
}

// fetchScratch holds *[]*C.brokk_delivery buffers for FetchBatch.
var fetchScratch sync.Pool

// deliveryScratch is a buffer of n delivery pointers, from fetchScratch if one is big enough.
func deliveryScratch(n int) *[]*C.brokk_delivery {
	if p, ok := fetchScratch.Get().(*[]*C.brokk_delivery); ok && cap(*p) >= n {
		*p = (*p)[:n]
		return p
	}
	s := make([]*C.brokk_delivery, n)
	return &s
}

// fetchOptions converts opts (nil: NULL), pinning the Go memory its strings point to.
func fetchOptions(op string, opts *FetchOptions, pin *runtime.Pinner) (*C.brokk_fetch_options, error) {
	if opts == nil {
		return nil, nil
	}
	deadline, err := durationMs(op, "AckDeadline", opts.AckDeadline)
	if err != nil {
		return nil, err
	}
	copts := &C.brokk_fetch_options{ack_deadline_ms: deadline, max_attempts: C.uint32_t(opts.MaxAttempts)}
	copts.group, copts.group_len = cOptText(opts.Group, pin)
	copts.dead_letter_topic, copts.dead_letter_topic_len = cOptText(opts.DeadLetterTopic, pin)
	return copts, nil
}

// MaxFetchBatch is the most deliveries one FetchBatch call takes (a larger max counts as this).
const MaxFetchBatch = 1 << 16

// cleanupFrees counts the deliveries that cleanups freed because they were dropped unclosed
// (for tests).
var cleanupFrees atomic.Int64

func freeDelivery(d *C.brokk_delivery) {
	C.brokk_delivery_free(d)
	cleanupFrees.Add(1)
}

// Delivery is a fetched delivery (brokk_delivery), owned by the caller until Close, Ack or
// Nack. Freeing does not settle it: a delivery closed unsettled stays in flight until acked or
// nacked by its DeliveryID (or its ack deadline passes, or the broker closes). A Delivery is
// for one goroutine at a time.
type Delivery struct {
	msg    Message // the view, valid until the delivery is freed
	ptr    *C.brokk_delivery
	broker *Broker
	// A Delivery from Fetch has its own view (a gbrokk_view, see viewWords) and cleanup; one
	// from FetchBatch shares them with its batch, where it is open.ptrs[index].
	view    [viewWords]uint64
	cleanup runtime.Cleanup
	batch   *fetchedBatch
	index   int
}

// own takes the C delivery p, whose view is d.view, with a cleanup as a safety net. (The
// collector does not follow msg.v, but msg is inside d: whoever holds the Message holds d.)
func (d *Delivery) own(p *C.brokk_delivery) {
	d.ptr = p
	d.msg.v = viewRef((*C.gbrokk_view)(unsafe.Pointer(&d.view)))
	d.cleanup = runtime.AddCleanup(d, freeDelivery, p)
}

// Message is the delivery's message view, valid until the Delivery is closed.
func (d *Delivery) Message() *Message { return &d.msg }

// Close releases the delivery handle (brokk_delivery_free) without settling it. Idempotent.
func (d *Delivery) Close() {
	if d.ptr == nil {
		return
	}
	if d.batch != nil {
		d.batch.open.forget(d.index)
	} else {
		d.cleanup.Stop()
	}
	d.msg.v = noView
	C.brokk_delivery_free(d.ptr)
	d.ptr = nil
}

// Ack acks the delivery (Broker.Ack with its DeliveryID), then closes it, whatever the
// outcome.
func (d *Delivery) Ack() error {
	defer d.Close()
	return d.broker.Ack(d.msg.DeliveryID())
}

// Nack nacks the delivery (Broker.Nack with its DeliveryID), then closes it, whatever the
// outcome.
func (d *Delivery) Nack(requeue bool, delay time.Duration, reason string) error {
	defer d.Close()
	return d.broker.Nack(d.msg.DeliveryID(), requeue, delay, reason)
}

// Count counts the messages waiting on the given topics (brokk_broker_count): retained ones
// plus deliveries queued in consumer groups, one per group; in-flight deliveries are not
// counted, unknown topics count 0. No topics count 0; CountAll counts every topic.
func (b *Broker) Count(topics ...string) (uint64, error) {
	if topics == nil {
		topics = []string{} // a list, even if empty: never "all"
	}
	return b.countOrPurge("count", topics, false)
}

// CountAll is Count over every topic.
func (b *Broker) CountAll() (uint64, error) {
	return b.countOrPurge("count", nil, false)
}

// Purge discards what Count counts on the given topics (brokk_broker_purge) and returns how
// many it discarded. No topics purge nothing; PurgeAll purges every topic.
func (b *Broker) Purge(topics ...string) (uint64, error) {
	if topics == nil {
		topics = []string{} // a list, even if empty: never "all"
	}
	return b.countOrPurge("purge", topics, true)
}

// PurgeAll is Purge over every topic.
func (b *Broker) PurgeAll() (uint64, error) {
	return b.countOrPurge("purge", nil, true)
}

// countOrPurge: topics == nil means every topic (NULL), otherwise that list.
func (b *Broker) countOrPurge(op string, topics []string, purge bool) (uint64, error) {
	var pin runtime.Pinner
	defer pin.Unpin()
	var list *C.brokk_str // NULL: every topic
	var views []C.brokk_str
	if topics != nil {
		// One spare element so that an empty list is still a non-NULL pointer.
		views = make([]C.brokk_str, len(topics)+1)
		for i, t := range topics {
			views[i].ptr, views[i].len = cText(t)
			pin.Pin(views[i].ptr)
		}
		list = &views[0]
	}
	p, err := b.acquire(op)
	if err != nil {
		return 0, err
	}
	defer b.release()
	var n C.uint64_t
	if purge {
		err = check(op, C.gbrokk_broker_purge(p, list, C.size_t(len(topics)), &n))
	} else {
		err = check(op, C.gbrokk_broker_count(p, list, C.size_t(len(topics)), &n))
	}
	runtime.KeepAlive(b)
	runtime.KeepAlive(topics)
	if err != nil {
		return 0, err
	}
	return uint64(n), nil
}

// CountGroup counts the ready deliveries of consumer group group on topic
// (brokk_broker_count_group): what a Fetch of that group could take now, its share of
// Count(topic). Deliveries in flight and requeues still waiting out their delay are left out.
// A group or topic that does not exist counts 0 and is not created. group must be named ("" is
// ErrInvalidGroup).
func (b *Broker) CountGroup(topic, group string) (uint64, error) {
	return b.countOrPurgeGroup("count group", topic, group, false)
}

// PurgeGroup discards what CountGroup counts, atomically (brokk_broker_purge_group), and
// returns how many it discarded. Deliveries in flight (they settle as usual), delayed
// requeues, the topic's other groups and retained messages, and the group itself stay. A group
// that does not exist purges 0 and is not created.
func (b *Broker) PurgeGroup(topic, group string) (uint64, error) {
	return b.countOrPurgeGroup("purge group", topic, group, true)
}

func (b *Broker) countOrPurgeGroup(op, topic, group string, purge bool) (uint64, error) {
	ctopic, ctopicLen := cText(topic)
	cgroup, cgroupLen := cText(group)
	p, err := b.acquire(op)
	if err != nil {
		return 0, err
	}
	defer b.release()
	var n C.uint64_t
	if purge {
		err = check(op, C.gbrokk_broker_purge_group(p, ctopic, ctopicLen, cgroup, cgroupLen, &n))
	} else {
		err = check(op, C.gbrokk_broker_count_group(p, ctopic, ctopicLen, cgroup, cgroupLen, &n))
	}
	runtime.KeepAlive(b)
	runtime.KeepAlive(topic)
	runtime.KeepAlive(group)
	if err != nil {
		return 0, err
	}
	return uint64(n), nil
}
