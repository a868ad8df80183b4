package brokk

/*
#include "shims.h"
*/
import "C"

import (
	"runtime"
	"time"
	"unsafe"
)

// Stats are the broker's totals at one moment (brokk_stats). Counters only grow; gauges go up
// and down. After Join returns nil every counter is exact, and
// Dispatched = Processed + Failed + Requeued + Lapsed.
type Stats struct {
	Published             uint64        // messages published (counter)
	Unrouted              uint64        // published with nobody to deliver to (counter)
	Dispatched            uint64        // deliveries handed to a handler, redeliveries included (counter)
	Processed             uint64        // deliveries acked (counter)
	Failed                uint64        // deliveries given up, handler panics included (counter)
	Requeued              uint64        // deliveries nacked with requeue (counter)
	Dropped               uint64        // deliveries discarded unprocessed (counter)
	Queued                uint64        // deliveries waiting for a worker (gauge)
	InFlight              uint64        // deliveries in a handler or awaiting a manual ack (gauge)
	Retained              uint64        // messages kept by topics with no consumer group (gauge)
	RetainedDropped       uint64        // retained messages discarded (counter)
	Delayed               uint64        // deliveries waiting out a requeue delay (gauge)
	Expired               uint64        // ack deadlines that passed (counter)
	DeadLettered          uint64        // deliveries published to a dead-letter topic (counter)
	FullDropped           uint64        // deliveries not made: queue full, BackpressureDrop (counter)
	Groups                uint64        // consumer groups, ungrouped subscriptions' own included (gauge)
	Topics                uint64        // topics known (gauge)
	Subscriptions         uint64        // live subscriptions (gauge)
	Listeners             uint64        // live listeners (gauge)
	Workers               uint64        // worker threads (gauge)
	WorkersActive         uint64        // workers running a handler now (gauge)
	ListenerEventsDropped uint64        // events lost to a full listener queue (counter)
	Uptime                time.Duration // since Open, millisecond precision (gauge)
	// Lapsed counts hand-outs that ended with no verdict taking effect: dropped while in a
	// handler or awaiting an ack (group removed, forced close), or, on a shared store, given
	// back to it to come back by itself (counter).
	Lapsed uint64
}

// Stats returns the broker's totals (brokk_broker_stats). Callable from handlers and
// listeners.
func (b *Broker) Stats() (Stats, error) {
	p, err := b.acquire("stats")
	if err != nil {
		return Stats{}, err
	}
	defer b.release()
	var s C.brokk_stats
	err = check("stats", C.gbrokk_broker_stats(p, &s))
	runtime.KeepAlive(b)
	if err != nil {
		return Stats{}, err
	}
	return Stats{
		Published:             uint64(s.published),
		Unrouted:              uint64(s.unrouted),
		Dispatched:            uint64(s.dispatched),
		Processed:             uint64(s.processed),
		Failed:                uint64(s.failed),
		Requeued:              uint64(s.requeued),
		Dropped:               uint64(s.dropped),
		Queued:                uint64(s.queued),
		InFlight:              uint64(s.in_flight),
		Retained:              uint64(s.retained),
		RetainedDropped:       uint64(s.retained_dropped),
		Delayed:               uint64(s.delayed),
		Expired:               uint64(s.expired),
		DeadLettered:          uint64(s.dead_lettered),
		FullDropped:           uint64(s.full_dropped),
		Groups:                uint64(s.groups),
		Topics:                uint64(s.topics),
		Subscriptions:         uint64(s.subscriptions),
		Listeners:             uint64(s.listeners),
		Workers:               uint64(s.workers),
		WorkersActive:         uint64(s.workers_active),
		ListenerEventsDropped: uint64(s.listener_events_dropped),
		Uptime:                time.Duration(s.uptime_ms) * time.Millisecond,
		Lapsed:                uint64(s.lapsed),
	}, nil
}

// StatsJSON returns a JSON snapshot of the statistics, per topic and broker-wide
// (brokk_broker_stats_json; schema in docs/c-api.md, "Statistics").
func (b *Broker) StatsJSON() ([]byte, error) {
	return b.statsText("stats json", func(p *C.brokk_broker, s **C.char, n *C.size_t) C.gbrokk_result {
		return C.gbrokk_broker_stats_json(p, s, n)
	})
}

// StatsPrometheus returns the statistics in the Prometheus text exposition format 0.0.4, ready to
// write to a /metrics response with Content-Type "text/plain; version=0.0.4"
// (brokk_broker_stats_prometheus; metric names in docs/c-api.md, "Prometheus").
func (b *Broker) StatsPrometheus() ([]byte, error) {
	return b.statsText("stats prometheus", func(p *C.brokk_broker, s **C.char, n *C.size_t) C.gbrokk_result {
		return C.gbrokk_broker_stats_prometheus(p, s, n)
	})
}

// StoreViewJSON returns every topic the store holds, with its retained messages and each
// consumer group's ready, delayed and in-flight deliveries, read without changing anything: on
// SQLite and Redis every process's topics and groups, on memory this broker's
// (brokk_broker_store_view_json; schema in docs/c-api.md, "Store view").
func (b *Broker) StoreViewJSON() ([]byte, error) {
	return b.statsText("store view json", func(p *C.brokk_broker, s **C.char, n *C.size_t) C.gbrokk_result {
		return C.gbrokk_broker_store_view_json(p, s, n)
	})
}

// StoreViewPrometheus returns the store view as Prometheus gauges (brokk_store_*, named apart
// from the statistics' so that both can be served together; brokk_broker_store_view_prometheus).
func (b *Broker) StoreViewPrometheus() ([]byte, error) {
	return b.statsText("store view prometheus", func(p *C.brokk_broker, s **C.char, n *C.size_t) C.gbrokk_result {
		return C.gbrokk_broker_store_view_prometheus(p, s, n)
	})
}

// statsText runs a C call that hands back a text brokk allocated, and copies it out.
func (b *Broker) statsText(what string, call func(*C.brokk_broker, **C.char, *C.size_t) C.gbrokk_result) ([]byte, error) {
	p, err := b.acquire(what)
	if err != nil {
		return nil, err
	}
	defer b.release()
	var s *C.char
	var n C.size_t
	err = check(what, call(p, &s, &n))
	runtime.KeepAlive(b)
	if err != nil {
		return nil, err
	}
	defer C.brokk_string_free(s) // brokk's allocation: brokk frees it
	out := make([]byte, int(n))
	copy(out, unsafe.Slice((*byte)(unsafe.Pointer(s)), n))
	return out, nil
}
