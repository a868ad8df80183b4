"""Publish, subscribe, fetch: payloads round-trip exactly; fan-out, groups, priorities,
batches, count/purge, listeners and statistics behave as docs/semantics.md and docs/c-api.md say."""

from __future__ import annotations

import json
import queue
import threading

import pytest
from conftest import T, wait_for

import brokk

PAYLOADS = [
    {"item": "anvil", "qty": 2, "nested": {"list": [1, 2.5, None, True, False], "empty": {}}},
    [1, "two", {"three": 3}],
    'plain text with ünïcödé, emoji 🦀 and "quotes" \\ backslash\n',
    123456789012345678901234567890,
    -0.125,
    True,
    None,
    {},
    [],
]


@pytest.mark.both_backends
@pytest.mark.parametrize("payload", PAYLOADS, ids=lambda p: type(p).__name__)
def test_round_trip_is_exact(broker, payload):
    got = queue.Queue()
    broker.subscribe("round.trip", got.put)
    metadata = {"channel": "web", "tags": ["a", "b"], "ünï": 1}
    msg_id = broker.publish("round.trip", payload, id="order-1", metadata=metadata, priority=-7)
    assert msg_id == "order-1"
    msg = got.get(timeout=T(10))
    assert msg.payload == payload
    assert msg.raw_payload == json.dumps(payload, ensure_ascii=False).encode()
    assert msg.metadata == metadata
    assert msg.topic == "round.trip"
    assert msg.parent_id == "order-1"
    assert msg.id == str(msg.delivery_id) and msg.delivery_id > 0
    assert msg.priority == -7 and msg.attempt == 1 and msg.group is None
    assert msg.subscription_id > 0 and msg.timestamp_ms > 0
    assert msg.timestamp.year >= 2024


def test_raw_json_is_delivered_byte_for_byte(broker):
    got = queue.Queue()
    broker.subscribe("raw", got.put)
    raw = b'{ "b" : 1,\n  "a":[1 , 2] }'
    broker.publish("raw", raw=raw, metadata='{"k":  "v"}')
    broker.publish("raw", raw='"str as raw"')
    first, second = got.get(timeout=T(10)), got.get(timeout=T(10))
    assert first.raw_payload == raw and first.payload == {"b": 1, "a": [1, 2]}
    assert first.raw_metadata == b'{"k":  "v"}' and first.metadata == {"k": "v"}
    assert second.payload == "str as raw" and second.raw_metadata == b"{}" and second.metadata == {}


def test_generated_ids_are_unique(broker):
    ids = {broker.publish("ids", i) for i in range(50)}
    assert len(ids) == 50
    assert all(len(i) == 33 and i[16] == "-" for i in ids), ids


@pytest.mark.both_backends
def test_fan_out_gives_each_subscription_its_own_copy(broker):
    a, b = queue.Queue(), queue.Queue()
    broker.subscribe("fan", a.put)
    broker.subscribe("fan", b.put)
    published = broker.publish("fan", {"n": 1})
    ma, mb = a.get(timeout=T(10)), b.get(timeout=T(10))
    assert ma.parent_id == mb.parent_id == published
    assert ma.delivery_id != mb.delivery_id and ma.subscription_id != mb.subscription_id
    assert ma.payload == mb.payload == {"n": 1}


@pytest.mark.both_backends
def test_group_members_compete_and_each_group_gets_a_copy(broker):
    lock = threading.Lock()
    seen: dict[str, list[int]] = {"g1": [], "g2": [], "solo": []}

    def member(name):
        def handle(msg):
            with lock:
                seen[name].append(msg.payload)
            assert msg.group == (None if name == "solo" else "workers")

        return handle

    broker.subscribe("work", member("g1"), group="workers")
    broker.subscribe("work", member("g2"), group="workers")
    broker.subscribe("work", member("solo"))
    for i in range(40):
        broker.publish("work", i)
    broker.join(T(10))
    assert sorted(seen["g1"] + seen["g2"]) == list(range(40))  # each went to exactly one member
    assert sorted(seen["solo"]) == list(range(40))  # the ungrouped subscription got them all
    stats = broker.stats()
    assert stats.processed == 80 and stats.groups == 2


@pytest.mark.both_backends
def test_fetch_takes_highest_priority_first_fifo_within(broker):
    # Published before any consumer: the topic retains them for the first named group.
    jobs = [("low-1", 0), ("high-1", 9), ("mid-1", 5), ("high-2", 9), ("neg", -3), ("low-2", 0), ("mid-2", 5)]
    broker.publish_batch("jobs", [brokk.BatchMessage(name, priority=p) for name, p in jobs])
    assert broker.count("jobs") == len(jobs)
    order = []
    while (msg := broker.fetch("jobs", group="workers", timeout=0)) is not None:
        order.append(msg.payload)
        assert msg.group == "workers"
        broker.ack(msg.delivery_id)
    assert order == ["high-1", "high-2", "mid-1", "mid-2", "low-1", "low-2", "neg"]
    assert broker.fetch("jobs", group="workers", timeout=0.01) is None


@pytest.mark.both_backends
def test_fetch_without_group_uses_default_group_and_waits(broker):
    def later():
        broker.publish("pull", {"late": True})

    timer = threading.Timer(0.05, later)
    timer.start()
    msg = broker.fetch("pull", timeout=T(10))
    timer.join()
    assert msg is not None and msg.payload == {"late": True} and msg.group == "default"
    broker.ack(msg.delivery_id)
    broker.join(T(5))


@pytest.mark.both_backends
def test_publish_batch_is_all_or_nothing(broker):
    ids = broker.publish_batch(
        "batch",
        [
            1,
            brokk.BatchMessage({"x": 1}, id="mine", metadata={"m": 1}, priority=3),
            brokk.BatchMessage(raw="[]"),
        ],
    )
    assert len(ids) == 3 and ids[1] == "mine"
    assert broker.count("batch") == 3
    with pytest.raises(brokk.InvalidJSONError) as err:
        broker.publish_batch("batch", [1, brokk.BatchMessage(raw="{broken"), 3])
    assert "1" in err.value.message  # names the index of the bad message
    assert broker.count("batch") == 3  # nothing of the failed batch was published
    assert broker.publish_batch("batch", []) == []


@pytest.mark.both_backends
def test_count_and_purge(broker):
    for i in range(3):
        broker.publish("a", i)
    for i in range(2):
        broker.publish("b", i)
    assert broker.count() == 5
    assert broker.count("a") == 3 and broker.count(["a", "b"]) == 5 and broker.count(["nope"]) == 0
    assert broker.purge("a") == 3
    assert broker.count() == 2
    assert broker.purge() == 2 and broker.count() == 0


@pytest.mark.both_backends
def test_count_and_purge_one_group(broker):
    assert broker.fetch("g", group="a") is None and broker.fetch("g", group="b") is None
    for i in range(3):
        broker.publish("g", i)
    held = broker.fetch("g", group="a")
    assert broker.count_group("g", "a") == 2 and broker.count_group("g", "b") == 3
    assert broker.count_group("g", "nope") == 0 and broker.purge_group("g", "nope") == 0
    assert broker.purge_group("g", "a") == 2
    assert broker.count_group("g", "a") == 0 and broker.count_group("g", "b") == 3
    broker.ack(held.delivery_id)
    assert broker.purge_group("g", "b") == 3 and broker.count("g") == 0
    with pytest.raises(brokk.InvalidGroupError):
        broker.count_group("g", "a b")
    with pytest.raises(brokk.InvalidTopicError):
        broker.purge_group("a b", "a")


def test_listener_sees_every_event(broker, recorder):
    listener_id = broker.add_listener(recorder)
    sub = broker.subscribe("events", lambda msg: None)
    published = broker.publish("events", {"e": 1})
    broker.join(T(10))
    broker.unsubscribe(sub)
    broker.join(T(10))
    assert [e[1] for e in recorder.of("topic_created")] == ["events"]
    assert recorder.of("subscribe") == [("subscribe", "events", sub)]
    assert recorder.of("unsubscribe") == [("unsubscribe", "events", sub)]
    (pub,) = recorder.of("publish")
    assert pub[1].id == published and pub[1].delivery_id == 0 and pub[1].parent_id == ""
    assert pub[1].payload == {"e": 1}
    (dispatched,) = recorder.of("dispatched")
    (processed,) = recorder.of("processed")
    assert dispatched[1].delivery_id == processed[1].delivery_id != 0
    assert broker.stats().listeners == 1
    broker.remove_listener(recorder)
    assert broker.stats().listeners == 0
    with pytest.raises(brokk.UnknownListenerError):
        broker.remove_listener(listener_id)


def test_listener_can_be_removed_by_id_and_only_defined_methods_are_called(broker):
    class OnlyPublish:
        def __init__(self):
            self.seen = []

        def on_publish(self, msg):
            self.seen.append(msg.payload)

    only = OnlyPublish()
    listener_id = broker.add_listener(only)
    broker.subscribe("t", lambda m: None)
    broker.publish("t", 1)
    broker.join(T(10))
    assert only.seen == [1]
    broker.remove_listener(listener_id)
    broker.publish("t", 2)
    broker.join(T(10))
    assert only.seen == [1]


def test_stats_and_stats_json_agree_after_join(broker):
    broker.subscribe("s", lambda m: None)
    broker.subscribe("s", lambda m: brokk.Verdict.NACK)
    for i in range(5):
        broker.publish("s", i)
    broker.join(T(10))
    stats = broker.stats()
    assert isinstance(stats, brokk.Stats)
    assert (stats.published, stats.dispatched, stats.processed, stats.failed) == (5, 10, 5, 5)
    assert stats.dispatched == stats.processed + stats.failed + stats.requeued
    assert stats.subscriptions == 2 and stats.topics == 1 and stats.workers == 2 and stats.in_flight == 0
    js = broker.stats_json()
    assert js["totals"]["published"] == 5 and js["totals"]["processed"] == 5
    assert js["topics"]["s"]["failed"] == 5 and js["broker"]["workers"] == 2


@pytest.mark.both_backends
def test_unsubscribe_stops_delivery(broker):
    got = []
    sub = broker.subscribe("u", got.append)
    broker.publish("u", 1)
    broker.join(T(10))
    broker.unsubscribe(sub)
    broker.publish("u", 2)
    broker.join(T(10))
    assert [m.payload for m in got] == [1]
    with pytest.raises(brokk.UnknownSubscriptionError):
        broker.unsubscribe(sub)


def test_concurrency_runs_handlers_in_parallel(broker):
    inside = threading.Semaphore(0)
    release = threading.Event()

    def handler(msg):
        inside.release()
        release.wait(T(10))

    broker.subscribe("par", handler, concurrency=2)
    broker.publish("par", 1)
    broker.publish("par", 2)
    # Both invocations are inside the handler at once (two workers, concurrency 2).
    assert inside.acquire(timeout=T(10)) and inside.acquire(timeout=T(10))
    release.set()
    broker.join(T(10))


def test_many_threads_publish_concurrently(broker):
    counts = []
    lock = threading.Lock()

    def handler(msg):
        with lock:
            counts.append(msg.payload)

    broker.subscribe("mt", handler)

    def publisher(n):
        for i in range(100):
            broker.publish("mt", [n, i])

    threads = [threading.Thread(target=publisher, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    broker.join(T(20))
    assert len(counts) == 400
    wait_for(lambda: broker.stats().processed == 400)
