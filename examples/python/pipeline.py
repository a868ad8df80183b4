#!/usr/bin/env python3
"""pipeline.py: brokk's order pipeline demo in Python, the same story as examples/c/pipeline.c.

    main --publish--> "orders" --+--> transform (parse, price, upper-case) --publish--> "invoices"
                                  +--> audit (fan-out: its own copy of every order)
    "invoices" --> sink (manual ack) --> committer thread --broker.ack-->
    "jobs" (priorities, routed before any worker exists) --fetch--> two competing workers

Run it from the repository root, after `make lib`:

    PYTHONPATH=bindings/python python3 examples/python/pipeline.py

(or, with the package installed by `pip install ./bindings/python`, without PYTHONPATH).
`make test-python` runs it and checks its output.

Handlers run on brokk's worker threads, the listener on brokk's listener thread and the committer
on a thread of ours, so the live log interleaves; what the stages learn goes into `Pipeline` and
is printed, sorted, after broker.join().
"""

from __future__ import annotations

import dataclasses
import json
import queue
import sys
import threading
import time

import brokk

ORDERS = [("anvil", 2), ("rope", 10), ("lantern", 3), ("dynamite", 12), ("magnet", 1), ("rocket", 1)]
FLAKY_ORDER = 3  # fails on its first attempt, as if a service had timed out
PRICES = {"anvil": 2990, "rope": 425, "lantern": 1250, "dynamite": 775, "magnet": 1999, "rocket": 14900}
JOBS = [
    ("resize-thumbnails", 1),
    ("send-invoice-emails", 5),
    ("rebuild-search-index", 0),
    ("charge-cards", 9),
    ("nightly-report", -1),
    ("refund-order-3", 9),
    ("warm-cache", 0),
    ("fraud-check", 5),
]


_print_lock = threading.Lock()


def log(line: str = "", *, file=None) -> None:
    """print() writes the text and the newline separately, so lines from several threads could
    run together; this writes each line whole, as C's printf does."""
    with _print_lock:
        (file or sys.stdout).write(line + "\n")
        (file or sys.stdout).flush()


@dataclasses.dataclass
class OrderRecord:
    attempts: int = 0  # the attempt on which transform succeeded; 0 = never
    transform_delivery: int = 0
    audit_delivery: int = 0
    parent_id: str = ""  # the published id both deliveries copy
    audited: bool = False
    committed: bool = False
    invoice: str = ""


class Pipeline:
    """The three stages and the committer. Handlers get copies (brokk.Message), never views, so
    they may keep what they like; the lock is there because stages run on different threads."""

    def __init__(self, broker: brokk.Broker):
        self.broker = broker
        self.lock = threading.Lock()
        self.orders = {n: OrderRecord() for n in range(1, len(ORDERS) + 1)}
        self.commits: queue.Queue[brokk.Message | None] = queue.Queue()
        self.commit_failures = 0

    # stage 1: transform "orders" into "invoices" (a worker thread)
    def transform(self, msg: brokk.Message) -> None:
        order = msg.payload
        number, qty, item = order.get("order"), order.get("qty", 0), order.get("item")
        if number not in self.orders or qty < 1 or item not in PRICES:
            raise ValueError("malformed order")  # a raising handler: NACK with this text
        if number == FLAKY_ORDER and msg.attempt == 1:
            # REQUEUE: back of the queue, attempt 2; listeners see the reason.
            raise brokk.Requeue(reason="inventory service timed out (simulated)")
        total = qty * PRICES[item]
        invoice = {
            "order": number,
            "item": item.upper(),
            "qty": qty,
            "total": f"{total // 100}.{total % 100:02d}",
        }
        # Re-entrant publish: allowed from a handler (only join and a non-forced close are not).
        self.broker.publish(
            "invoices",
            invoice,
            id=f"invoice-{number}",
            metadata={"source_id": msg.parent_id, "source_delivery": msg.delivery_id},
        )
        with self.lock:
            record = self.orders[number]
            record.attempts = msg.attempt
            record.transform_delivery = msg.delivery_id
            record.parent_id = msg.parent_id
        # Returning None acks (an auto-ack subscription: the verdict settles it).

    # fan-out: audit gets its own delivery of every order (a worker thread)
    def audit(self, msg: brokk.Message) -> None:
        number = msg.payload.get("order")
        if number not in self.orders:
            raise ValueError("unknown order")
        with self.lock:
            self.orders[number].audited = True
            self.orders[number].audit_delivery = msg.delivery_id

    # stage 2: sink on "invoices", manual ack (a worker thread)
    def sink(self, msg: brokk.Message) -> brokk.Verdict:
        self.commits.put(msg)  # the message is a copy: safe to hand to another thread
        # LATER: the delivery stays in flight until the committer acks it (join waits for that).
        # brokk registers it before calling us, so an ack that beats our return is fine too.
        return brokk.Verdict.LATER

    # the committer: our own thread, not brokk's; it commits (prints) and acks by delivery id
    def committer(self) -> None:
        while (msg := self.commits.get()) is not None:
            invoice, metadata = json.dumps(msg.payload), json.dumps(msg.metadata)
            log(f"committer: committed {msg.parent_id} {invoice} (metadata {metadata})")
            with self.lock:
                record = self.orders.get(msg.payload.get("order"))
                if record is not None:
                    record.committed = True
                    record.invoice = json.dumps(msg.payload)
            try:
                self.broker.ack(msg.delivery_id)
            except brokk.BrokkError as e:
                log(f"broker.ack failed: {e}", file=sys.stderr)
                self.commit_failures += 1


class Counts:
    """What the listener counted; main keeps this, not the listener itself, so that the listener
    is released with the broker (see Listener's finaliser)."""

    def __init__(self):
        self.events = self.published = self.dispatched = self.processed = self.failed = 0


class Listener:
    """Runs on brokk's single listener thread, one event at a time, in order: no lock needed.
    Keep it quick: a slow listener delays the other listeners (never deliveries)."""

    def __init__(self, counts: Counts):
        self.counts = counts
        # brokk's free_user_data deletes the binding's reference once the listener's last
        # callback has run; this finaliser then reports it, as the C demo's listener_release.
        self._release = _Release(counts)

    def on_topic_created(self, topic: str) -> None:
        self.counts.events += 1
        log(f'listener: topic "{topic}" created')

    def on_subscribe(self, topic: str, subscription_id: int) -> None:
        self.counts.events += 1
        log(f'listener: subscription {subscription_id} on "{topic}"')

    def on_publish(self, msg: brokk.Message) -> None:
        self.counts.events += 1
        self.counts.published += 1

    def on_dispatched(self, msg: brokk.Message) -> None:
        self.counts.events += 1
        self.counts.dispatched += 1

    def on_processed(self, msg: brokk.Message) -> None:
        self.counts.events += 1
        self.counts.processed += 1

    def on_failed(self, msg: brokk.Message, reason: str, requeued: bool) -> None:
        self.counts.events += 1
        self.counts.failed += 1
        log(
            f"listener: FAILED {msg.parent_id} (delivery {msg.delivery_id}, attempt {msg.attempt}): "
            f"{reason}, requeued={str(requeued).lower()}"
        )


class _Release:
    def __init__(self, counts: Counts):
        self.counts = counts

    def __del__(self):
        log(f"listener released after {self.counts.events} events")


def run_work_queue(broker: brokk.Broker) -> bool:
    """Routes jobs before any worker exists (the topic retains them for the first group), then
    lets two workers drain the queue. Returns whether every job was done in priority order."""
    broker.publish_batch("jobs", [brokk.BatchMessage(job, priority=p) for job, p in JOBS])  # all or none
    log(f"jobs: {broker.count('jobs')} waiting, retained until the first worker's fetch")

    lock = threading.Lock()
    done = failures = 0
    taken: dict[int, list[int]] = {1: [], 2: []}  # priorities, in the order each worker fetched

    def worker(number: int) -> None:
        nonlocal done, failures
        while True:
            with lock:
                if done == len(JOBS) or failures:
                    return
            try:
                # Both workers are members of the group "workers": each job goes to exactly one,
                # highest priority first. An ack deadline: were this worker to die holding a
                # job, the job would go back to the group after 30 s instead of waiting forever.
                msg = broker.fetch("jobs", group="workers", ack_deadline=30, timeout=0.1)
                if msg is None:
                    continue  # nothing within 100 ms: look whether the other took the rest
                log(f"worker {number}: {json.dumps(msg.payload)} (priority {msg.priority})")
                taken[number].append(msg.priority)
                time.sleep(0.003)  # the "work"
                broker.ack(msg.delivery_id)
                with lock:
                    done += 1
            except brokk.BrokkError as e:
                log(f"worker {number}: {e}", file=sys.stderr)
                with lock:
                    failures += 1
                return

    threads = [threading.Thread(target=worker, args=(n,)) for n in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Each worker fetched one job at a time from one queue, so each saw priorities falling.
    ordered = all(p == sorted(p, reverse=True) for p in taken.values())
    log(
        f"jobs: {done} of {len(JOBS)} done by 2 competing workers ({len(taken[1])} + {len(taken[2])}); "
        f"each took its jobs highest priority first: {'yes' if ordered else 'NO'}"
    )
    return done == len(JOBS) and not failures and ordered and len(taken[1]) + len(taken[2]) == len(JOBS)


def main() -> int:
    log(f"brokk {brokk.version()}: order pipeline demo")
    broker = brokk.Broker(workers=4)  # options left out mean defaults
    pipeline = Pipeline(broker)
    counts = Counts()
    broker.add_listener(Listener(counts))  # brokk's registry keeps it; we keep only the counts

    committer = threading.Thread(target=pipeline.committer, name="committer")
    committer.start()
    # concurrency 1 (the default): each stage handles its deliveries one at a time, in order.
    broker.subscribe("orders", pipeline.transform)
    broker.subscribe("orders", pipeline.audit)
    broker.subscribe("invoices", pipeline.sink, manual_ack=True)
    broker.join(timeout=10)  # join also waits for listener events: the setup lines print first

    log("\n-- live log: main, the listener and the committer interleave --")
    for number, (item, qty) in enumerate(ORDERS, start=1):
        order = {"order": number, "item": item, "qty": qty}
        log(f"main: publishing order-{number} {json.dumps(order)}")
        # Our own ids keep the story readable; without id= brokk generates one (and returns it).
        broker.publish("orders", order, id=f"order-{number}", metadata={"channel": "web"})

    # Wait for the whole pipeline: every delivery settled (the committer's acks included) and
    # every listener event delivered. Bounded, so a stuck stage cannot hang the demo.
    try:
        broker.join(timeout=10)
    except brokk.TimeoutError as e:
        log(f"join: {e.remaining} deliveries still outstanding", file=sys.stderr)
        broker.close(force=True)
        return 1
    pipeline.commits.put(None)
    committer.join()
    log("main: committer joined")

    log("\n-- results, sorted by order --")
    for number, r in pipeline.orders.items():
        log(
            f"order-{number}: transform attempts={r.attempts} audited={'yes' if r.audited else 'no'} "
            f"committed={'yes' if r.committed else 'no'} {r.invoice}"
        )
    invoiced = sum(r.committed for r in pipeline.orders.values())
    log(f"invoiced {invoiced} of {len(ORDERS)} orders")
    first = pipeline.orders[1]
    log(
        f"fan-out: {first.parent_id} went to transform as delivery {first.transform_delivery} and to audit "
        f"as delivery {first.audit_delivery}, both with parent id {first.parent_id}"
    )
    log(
        f"listener saw {counts.events} events: published={counts.published} dispatched={counts.dispatched} "
        f"processed={counts.processed} failed={counts.failed}"
    )
    s = broker.stats()
    log(
        f"stats: published={s.published} unrouted={s.unrouted} dispatched={s.dispatched} "
        f"processed={s.processed} failed={s.failed} requeued={s.requeued} dropped={s.dropped} "
        f"in_flight={s.in_flight}"
    )
    log(
        f"stats: topics={s.topics} subscriptions={s.subscriptions} listeners={s.listeners} "
        f"workers={s.workers} listener_events_dropped={s.listener_events_dropped}"
    )
    log(f"stats JSON: {json.dumps(broker.stats_json(), separators=(',', ':'))}")

    log("\n-- a prioritised work queue --")
    jobs_ok = run_work_queue(broker)

    # close stops new work, drains (nothing is left) and releases the handle: the listener's
    # last reference goes with it.
    try:
        report = broker.close(timeout=5)
        status = brokk.Status.OK
    except brokk.TimeoutError as e:
        report, status = e.report, e.status
    log(
        f"close: {status.description} ({report.remaining} deliveries left, "
        f"{report.retained_discarded} retained messages discarded)"
    )

    ok = invoiced == len(ORDERS) and pipeline.commit_failures == 0 and jobs_ok and status == brokk.Status.OK
    log(f"pipeline {'done' if ok else 'FAILED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
