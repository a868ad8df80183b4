package brokk

/*
#include "shims.h"
*/
import "C"

import (
	"context"
	"log/slog"
	"runtime"
	"strings"
	"sync/atomic"
	"time"
	"unsafe"
)

// RetentionPolicy is what a topic with no consumer group does once it retains
// Options.RetentionLimit messages (BROKK_RETENTION_*).
type RetentionPolicy uint32

const (
	RetentionReject     RetentionPolicy = C.BROKK_RETENTION_REJECT      // publish fails with ErrFull (default)
	RetentionDropOldest RetentionPolicy = C.BROKK_RETENTION_DROP_OLDEST // the oldest retained message goes
	RetentionDropNewest RetentionPolicy = C.BROKK_RETENTION_DROP_NEWEST // the new message goes
	RetentionOff        RetentionPolicy = C.BROKK_RETENTION_OFF         // nothing is retained (unrouted)
)

// Backpressure is what publish does when a consumer group's queue holds Options.QueueCapacity
// deliveries (BROKK_BACKPRESSURE_*).
type Backpressure uint32

const (
	BackpressureBlock Backpressure = C.BROKK_BACKPRESSURE_BLOCK // wait up to PublishTimeout, then ErrFull (default)
	BackpressureFail  Backpressure = C.BROKK_BACKPRESSURE_FAIL  // fail at once with ErrFull
	BackpressureDrop  Backpressure = C.BROKK_BACKPRESSURE_DROP  // publish; the full group misses it
)

// Limits and defaults from brokk.h.
const (
	IDMaxLen              = C.BROKK_ID_MAX_LEN
	TopicMaxLen           = C.BROKK_TOPIC_MAX_LEN
	MaxConcurrency        = C.BROKK_MAX_CONCURRENCY
	DefaultMaxPayload     = C.BROKK_DEFAULT_MAX_PAYLOAD
	DefaultRetentionLimit = C.BROKK_DEFAULT_RETENTION_LIMIT
	DefaultQueueCapacity  = C.BROKK_DEFAULT_QUEUE_CAPACITY
)

// Options configure Open (brokk_broker_options). The zero value of every field means brokk's
// default; a nil *Options means all defaults.
type Options struct {
	WorkerThreads         uint32          // handler threads; 0: one per CPU, at least 2; at most 1024
	MaxPayloadBytes       uint64          // 0: DefaultMaxPayload (1 MiB)
	ListenerQueueCapacity uint32          // 0: 65536
	RetentionLimit        uint64          // 0: DefaultRetentionLimit
	RetentionPolicy       RetentionPolicy // what happens past RetentionLimit
	QueueCapacity         uint64          // per consumer group; 0: DefaultQueueCapacity
	Backpressure          Backpressure    // what publish does when a group's queue is full
	PublishTimeout        time.Duration   // longest wait under BackpressureBlock; 0: 5 s

	// Logger receives the binding's own reports (not a brokk_broker_options field): a handler
	// that panicked (logged at slog.LevelError with the topic, delivery and subscription ids,
	// attempt, panic value and stack; the delivery is nacked) and a listener callback that
	// panicked (at slog.LevelError with the event and panic value). nil: slog.Default() at the
	// time of each report. When set, it also receives this broker's log records (see
	// SetLogger), instead of the process-wide logger.
	Logger *slog.Logger
}

// CloseReport is what a close did (brokk_close_report).
type CloseReport struct {
	Remaining         uint64 // deliveries unfinished when time ran out (0 if drained, and when forced)
	Dropped           uint64 // deliveries a forced close dropped
	RetainedDiscarded uint64 // retained messages discarded
}

// Broker is a brokk_broker. It is safe for concurrent use; see the package documentation for
// its lifetime.
type Broker struct {
	ptr *C.brokk_broker // set once by Open; freed once (see state)
	// state counts the C calls in progress with ptr (the low bits) and holds two flags:
	// stateFreeing once a close decided to free the broker (from then on no call may start)
	// and stateFreed once brokk_broker_free or brokk_broker_release was started. The call that
	// brings the count to zero with stateFreeing set frees the broker, so a goroutine still
	// inside, say, Fetch never has its pointer freed under it, and Close never waits for other
	// calls (which may themselves wait for a handler that is making that Close).
	state   atomic.Int64
	cleanup runtime.Cleanup
	// logger reports handler and listener panics (Options.Logger); nil: slog.Default().
	logger *slog.Logger
}

const (
	stateFreeing int64 = 1 << 62
	stateFreed   int64 = 1 << 61
)

// Open creates a broker on the backend url names ("memory://", or "" for it) with opts (nil
// for defaults): brokk_broker_new. Worker threads and the listener thread start now.
func Open(url string, opts *Options) (*Broker, error) {
	if got := C.brokk_abi_version(); got != C.BROKK_ABI_VERSION {
		return nil, errorf("open", StatusInvalidArgument,
			"this binding was built against brokk ABI %d but the library is ABI %d", C.BROKK_ABI_VERSION, got)
	}
	var copts *C.brokk_broker_options
	var logger *slog.Logger
	if opts != nil {
		logger = opts.Logger
		copts = &C.brokk_broker_options{
			worker_threads:          C.uint32_t(opts.WorkerThreads),
			max_payload_bytes:       C.uint64_t(opts.MaxPayloadBytes),
			listener_queue_capacity: C.uint32_t(opts.ListenerQueueCapacity),
			retention_limit:         C.uint64_t(opts.RetentionLimit),
			retention_policy:        C.brokk_retention_policy(opts.RetentionPolicy),
			queue_capacity:          C.uint64_t(opts.QueueCapacity),
			backpressure:            C.brokk_backpressure(opts.Backpressure),
		}
		ms, err := durationMs("open", "PublishTimeout", opts.PublishTimeout)
		if err != nil {
			return nil, err
		}
		copts.publish_timeout_ms = ms
	}
	if strings.IndexByte(url, 0) >= 0 {
		// brokk takes a NUL-terminated URL: a NUL inside would silently cut it short.
		return nil, errorf("open", StatusInvalidURL, "url %q contains a NUL byte", url)
	}
	var curl *C.char // NULL means memory://
	if url != "" {
		curl = C.CString(url) // NUL-terminated, as brokk_broker_new wants
		defer C.free(unsafe.Pointer(curl))
	}
	var p *C.brokk_broker
	if err := check("open", C.gbrokk_broker_new(curl, copts, &p)); err != nil {
		return nil, err
	}
	b := &Broker{ptr: p, logger: logger}
	if logger != nil {
		if err := b.setBrokerLogger(p, logger); err != nil {
			C.brokk_broker_free(p)
			return nil, err
		}
	}
	// The safety net for a broker dropped without Close. Its argument is the C pointer, not
	// b, so b stays collectable.
	b.cleanup = runtime.AddCleanup(b, freeDropped, p)
	return b, nil
}

// freeDropped frees a broker that became unreachable, with brokk_broker_release: it does not
// wait for handler calls running at that moment (the teardown finishes on a brokk thread once
// they return). It runs on its own goroutine all the same, because the forced close it starts
// may touch the store, and the runtime's cleanup goroutine must not be held up.
func freeDropped(p *C.brokk_broker) {
	go C.brokk_broker_release(p)
}

// acquire hands out the C pointer for one call, or fails with ErrClosed once the broker is
// closed (freed or being freed). Every successful acquire is paired with a release.
func (b *Broker) acquire(op string) (*C.brokk_broker, error) {
	for {
		s := b.state.Load()
		if s&stateFreeing != 0 {
			return nil, errorf(op, StatusClosed, "Close was called on this broker")
		}
		if b.state.CompareAndSwap(s, s+1) {
			maybeGC()
			return b.ptr, nil
		}
	}
}

// release ends a call. If it was the last one of a closed broker, it releases the broker
// without waiting for running handlers (brokk_broker_release): this call (a Publish, say) has
// nothing to do with them, and a Close that timed out must not be held up by them either.
func (b *Broker) release() {
	if b.state.Add(-1) == stateFreeing {
		b.free(false)
	}
}

// free gives the broker back to brokk once no call is in progress; exactly one caller wins.
// With wait it is brokk_broker_free: it waits for the handler and listener calls running at
// that moment, then runs the remaining free_user_data on this thread (from inside a handler of
// this broker it returns at once and brokk finishes on its own thread). Without, it is
// brokk_broker_release: it returns at once, and brokk runs the remaining free_user_data on its
// own thread once the running callbacks have returned. Either way the handles stay in the
// handle table until their free_user_data deletes them, so a handler still running keeps its
// Go value.
func (b *Broker) free(wait bool) {
	if b.state.CompareAndSwap(stateFreeing, stateFreeing|stateFreed) {
		b.cleanup.Stop()
		if wait {
			C.brokk_broker_free(b.ptr)
		} else {
			C.brokk_broker_release(b.ptr)
		}
		runtime.KeepAlive(b)
	}
}

// Close closes the broker and frees it: brokk_broker_close, then brokk_broker_free.
// Publish and Subscribe fail at once; deliveries already published are still delivered,
// fetched and acked until ctx's deadline (no deadline: without limit; a deadline already
// passed: not at all); then whatever is left is dropped and the workers stop. Only the
// deadline counts: cancelling ctx does not interrupt the wait.
//
// When time ran out the broker is closed all the same and the error matches ErrTimeout; the
// report says how much was left. Handlers still running then finish on their own, and brokk
// completes the teardown on its own thread once they have returned (brokk_broker_release), so
// Close does not wait past the deadline. Called from a handler or listener of this broker,
// Close returns an error matching ErrWouldDeadlock and changes nothing (ForceClose is allowed
// there). Close is idempotent: on a closed broker it returns a zero report and nil.
//
// When Close returns nil, no handler or listener of the broker runs again and every
// callback's Go value has been released (Listener.OnRelease included), unless another
// goroutine was inside a call on the broker at that moment (the broker is then freed when that
// call returns), or Close was called from one of the broker's callbacks (brokk then finishes
// on its own thread once the callback returns).
func (b *Broker) Close(ctx context.Context) (CloseReport, error) {
	return b.close(ctxTimeoutMs(ctx), false)
}

// ForceClose closes the broker at once, dropping everything queued or awaiting an ack, and
// releases it (brokk_broker_close with force, then brokk_broker_release). It returns at once,
// even while a handler is blocked: handler and listener calls running at that moment finish on
// their own (the broker's methods fail with ErrClosed from then on), and brokk releases their
// Go values (Listener.OnRelease included) on its own thread once they have returned. Use Close
// when every callback must be finished and released by the time it returns. ForceClose is
// allowed inside the broker's own handlers and listeners. Idempotent like Close.
func (b *Broker) ForceClose() (CloseReport, error) {
	return b.close(0, true)
}

func (b *Broker) close(timeoutMs C.uint64_t, force bool) (CloseReport, error) {
	p, err := b.acquire("close")
	if err != nil {
		return CloseReport{}, nil // already closed: Close is idempotent
	}
	var rep C.brokk_close_report
	err = check("close", C.gbrokk_broker_close(p, timeoutMs, C.bool(force), &rep))
	runtime.KeepAlive(b)
	report := CloseReport{
		Remaining:         uint64(rep.remaining),
		Dropped:           uint64(rep.dropped),
		RetainedDiscarded: uint64(rep.retained_discarded),
	}
	switch {
	case err == nil:
		b.state.Or(stateFreeing)
		if b.state.Add(-1) == stateFreeing {
			// Drained: free here, so that Close returns after the release. Forced: release
			// without waiting for handlers still running.
			b.free(!force)
		}
		return report, nil
	case isStatus(err, StatusTimeout):
		// Closed, but something still runs: free it once that has returned, not here.
		b.state.Or(stateFreeing)
	case isStatus(err, StatusClosed):
		err = nil // another goroutine's close got there first and frees it
	}
	b.release()
	return report, err
}

func isStatus(err error, s Status) bool {
	e, ok := err.(*Error)
	return ok && e.Status == s
}

// Join waits until no delivery is queued, running or awaiting an ack and every listener event
// has been delivered: brokk_broker_join_until. It waits until ctx's deadline (none: without
// limit); when time runs out it returns an error matching ErrTimeout and the deliveries still
// outstanding. Cancelling ctx interrupts the wait (brokk_cancel): Join then returns 0 and
// ctx.Err(). From a handler or listener it returns ErrWouldDeadlock.
func (b *Broker) Join(ctx context.Context) (remaining uint64, err error) {
	err = wait(ctx, func(ms C.uint64_t, cancel *C.brokk_cancel) error {
		p, err := b.acquire("join")
		if err != nil {
			return err
		}
		defer b.release()
		var left C.uint64_t
		err = check("join", C.gbrokk_broker_join_until(p, ms, cancel, &left))
		runtime.KeepAlive(b)
		remaining = uint64(left)
		return err
	})
	return remaining, err
}

// Ack acks a delivery awaiting a manual ack (brokk_broker_ack): from any goroutine, including
// the handler that received it.
func (b *Broker) Ack(id DeliveryID) error {
	p, err := b.acquire("ack")
	if err != nil {
		return err
	}
	defer b.release()
	err = check("ack", C.gbrokk_broker_ack(p, C.uint64_t(id)))
	runtime.KeepAlive(b)
	return err
}

// AckBatch acks the deliveries in ids, in order, in one call (brokk_broker_ack_batch), as Ack
// would each: for a batch taken with FetchBatch. A failing id does not stop the others. It
// returns how many were acked and, if any failed, the error of the first failure, whose
// message names its index and id (ids[i] (id): ...). ErrClosed stops the batch where it
// occurred. An empty ids acks nothing and succeeds.
func (b *Broker) AckBatch(ids []DeliveryID) (int, error) {
	var cids *C.uint64_t // NULL for an empty batch, which brokk accepts
	if len(ids) > 0 {
		cids = (*C.uint64_t)(unsafe.Pointer(&ids[0]))
	}
	p, err := b.acquire("ack batch")
	if err != nil {
		return 0, err
	}
	defer b.release()
	var acked C.size_t
	err = check("ack batch", C.gbrokk_broker_ack_batch(p, cids, C.size_t(len(ids)), &acked))
	runtime.KeepAlive(b)
	runtime.KeepAlive(ids)
	return int(acked), err
}

// Nack nacks a delivery awaiting an ack (brokk_broker_nack). With requeue it is delivered
// again (attempt + 1) no earlier than delay from now, unless its attempt limit is reached;
// without, it is given up (dead-lettered if its subscription or fetch named a topic). reason
// ("" for none) reaches listeners' OnFailed.
func (b *Broker) Nack(id DeliveryID, requeue bool, delay time.Duration, reason string) error {
	ms, err := durationMs("nack", "delay", delay)
	if err != nil {
		return err
	}
	creason, creasonLen := cOptText(reason, nil) // "": NULL, no reason
	p, err := b.acquire("nack")
	if err != nil {
		return err
	}
	defer b.release()
	err = check("nack", C.gbrokk_broker_nack(p, C.uint64_t(id), C.bool(requeue), ms, creason, creasonLen))
	runtime.KeepAlive(b)
	return err
}

// Unsubscribe stops delivery to a subscription (brokk_broker_unsubscribe); its handler's Go
// value is released once its last running invocation returns.
func (b *Broker) Unsubscribe(id SubscriptionID) error {
	p, err := b.acquire("unsubscribe")
	if err != nil {
		return err
	}
	defer b.release()
	err = check("unsubscribe", C.gbrokk_broker_unsubscribe(p, C.uint64_t(id)))
	runtime.KeepAlive(b)
	return err
}

// Version is the library's version, "MAJOR.MINOR.PATCH" (brokk_version).
func Version() string { return C.GoString(C.brokk_version()) }

// VersionNumber is the library's MAJOR*1000000 + MINOR*1000 + PATCH (brokk_version_number);
// HeaderVersionNumber is the one this binding was compiled against.
func VersionNumber() uint32 { return uint32(C.brokk_version_number()) }

// ABIVersion is the library's binary interface version (brokk_abi_version); Open refuses a
// library whose ABI differs from HeaderABIVersion.
func ABIVersion() uint32 { return uint32(C.brokk_abi_version()) }

// The version of brokk.h this binding was compiled against.
const (
	HeaderVersionMajor  = C.BROKK_VERSION_MAJOR
	HeaderVersionMinor  = C.BROKK_VERSION_MINOR
	HeaderVersionPatch  = C.BROKK_VERSION_PATCH
	HeaderVersionNumber = C.BROKK_VERSION_NUMBER
	HeaderABIVersion    = C.BROKK_ABI_VERSION
)
