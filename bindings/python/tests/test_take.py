"""Broker.take_raw and Broker.take (brokk_broker_take): the next delivery's payload, acked as it
is taken."""

from __future__ import annotations

import json
import threading
import time

import pytest
from conftest import T

import brokk


@pytest.mark.both_backends
def test_take_returns_payloads_highest_priority_first_and_none_when_empty(broker):
    assert broker.take_raw("jobs") is None, "empty: None at once"
    for payload, priority in [("a", 0), ("b", 5), ("c", 0), ("d", -1), ("e", 5)]:
        broker.publish("jobs", payload, priority=priority)
    got = [broker.take("jobs") for _ in range(5)]
    assert got == ["b", "e", "a", "c", "d"]
    assert broker.take("jobs", default="nothing") == "nothing"
    broker.publish("jobs", {"k": [1, None]})
    assert json.loads(broker.take_raw("jobs")) == {"k": [1, None]}


@pytest.mark.both_backends
def test_taken_messages_await_no_ack_and_count_as_processed(broker):
    events = []

    class Listener:
        def on_dispatched(self, message):
            events.append("dispatched")

        def on_processed(self, message):
            events.append("processed")

    broker.add_listener(Listener())
    assert broker.take_raw("jobs") is None  # the default group, before publishing
    assert broker.fetch("jobs", group="other", timeout=0) is None  # a second group: its own copies
    for i in range(3):
        broker.publish("jobs", i)
    assert [broker.take("jobs") for _ in range(3)] == [0, 1, 2]
    assert broker.count(["jobs"]) == 3, "the other group's copies are still there"
    assert [broker.take("jobs", group="other") for _ in range(3)] == [0, 1, 2]
    broker.join(timeout=T(10))
    stats = broker.stats()
    assert (stats.dispatched, stats.processed, stats.in_flight, stats.queued) == (6, 6, 0, 0)
    assert events == ["dispatched", "processed"] * 6


@pytest.mark.both_backends
def test_payloads_larger_than_the_first_buffer_come_whole(broker):
    sizes = [5000, 3, 100_000, 4095, 4096, 4097, 1_000_000, 10]
    for n in sizes:
        broker.publish("big", "x" * n)
    for n in sizes:
        assert broker.take("big") == "x" * n


@pytest.mark.both_backends
@pytest.mark.parametrize("timeout", [0, T(10)], ids=["no-wait", "wait"])
def test_a_payload_of_several_mib_comes_whole(backend_url, timeout):
    """Past the first buffer and past _TAKE_BUFFER_KEEP: one brokk_broker_take_until hands back
    the payload whatever its size (no retry with a bigger buffer)."""
    b = brokk.Broker(backend_url, max_payload_bytes=8 << 20)
    try:
        b.take_raw("big")  # the group, before publishing
        payload = "".join(chr(0x20 + i % 90) for i in range(3 << 20))  # 3 MiB of varied text
        raw = json.dumps(payload).encode()
        b.publish("big", raw=raw)
        b.publish("big", "small")
        assert b.take_raw("big", timeout=timeout) == raw
        assert b.take("big", timeout=timeout) == "small"
        assert b.take_raw("big", timeout=timeout and 0.05) is None
        # A waiting take gets it too, published while it waits.
        threading.Timer(0.05, lambda: b.publish("big", raw=raw)).start()
        assert b.take_raw("big", timeout=T(10)) == raw
    finally:
        b.close(T(10))


def test_a_payload_too_large_for_the_buffer_grows_it_for_next_time(broker):
    """BUFFER_TOO_SMALL from the kept request: the message comes through take_until at once, and
    the thread's buffer grows to fit it (up to _TAKE_BUFFER_KEEP), so the next one that size
    takes one call."""
    from brokk import _broker

    broker.take_raw("grow")
    size_before = _broker._tls.take_requests["grow"][3]
    broker.publish("grow", "x" * 10_000)
    broker.publish("grow", "y" * 200_000)
    assert broker.take("grow") == "x" * 10_000
    grown = _broker._tls.take_requests["grow"][3]
    assert size_before < 10_000 < grown
    assert broker.take("grow") == "y" * 200_000
    assert _broker._tls.take_requests["grow"][3] == grown, "past _TAKE_BUFFER_KEEP: not kept"


def test_take_waits_up_to_its_timeout(broker):
    t0 = time.monotonic()
    assert broker.take_raw("jobs", timeout=0.05) is None
    assert time.monotonic() - t0 >= 0.05
    threading.Timer(0.05, lambda: broker.publish("jobs", "late")).start()
    assert broker.take("jobs", timeout=T(10)) == "late"


@pytest.mark.both_backends
def test_concurrent_takers_get_each_message_once(broker):
    broker.take_raw("jobs")  # the group, before publishing
    broker.publish_batch("jobs", list(range(500)))
    got: list[list[int]] = [[] for _ in range(4)]

    def taker(k: int) -> None:
        while (value := broker.take("jobs", default=None)) is not None:
            got[k].append(value)

    threads = [threading.Thread(target=taker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(v for mine in got for v in mine) == list(range(500))


def test_take_bad_input_and_after_close(broker):
    for topic, group, error in [
        ("", None, brokk.InvalidTopicError),
        ("bad topic", None, brokk.InvalidTopicError),
        ("jobs", "", brokk.InvalidGroupError),
        ("jobs", "bad group", brokk.InvalidGroupError),
        ("\udcff", None, brokk.InvalidUTF8Error),
    ]:
        with pytest.raises(error):
            broker.take_raw(topic, group=group)
    with pytest.raises(brokk.InvalidArgumentError):
        broker.take_raw("jobs", timeout=-1)
    broker.close()
    with pytest.raises(brokk.ClosedError):
        broker.take_raw("jobs")


def test_a_take_blocked_without_limit_returns_closed_when_the_broker_closes():
    b = brokk.Broker("memory://")
    outcome: list = []

    def taker() -> None:
        try:
            outcome.append(b.take_raw("jobs", timeout=None))
        except brokk.ClosedError as exc:
            outcome.append(exc)

    t = threading.Thread(target=taker)
    t.start()
    time.sleep(0.1)
    b.close(timeout=T(10))
    t.join(T(10))
    assert not t.is_alive() and isinstance(outcome[0], brokk.ClosedError)


@pytest.mark.parametrize("words", [True, False], ids=["words", "attributes"])
def test_requests_kept_per_thread_publish_and_take_past_the_cache_size(broker, monkeypatch, words):
    """Publish and take go through request structs kept per thread and topic
    (brokk_broker_publish_with, brokk_broker_take_with), read through 64-bit words where every
    field is 8 bytes and through ctypes attributes elsewhere: both work, past the per-thread
    cache's size too; a publish with an id or metadata takes the plain call."""
    from brokk import _broker

    monkeypatch.setattr(_broker, "_WORDS", words and _broker._WORDS)
    monkeypatch.setattr(_broker._tls, "take_requests", {}, raising=False)  # made in this mode
    topics = [f"t{i}" for i in range(_broker._MAX_REQUESTS + 20)]
    for topic in topics:
        broker.take_raw(topic)  # the group, before publishing
        broker.publish(topic, topic, priority=1)
        broker.publish(topic, topic + "-high", priority=2)
        broker.publish(topic, topic + "-low")
    for topic in topics:
        assert [broker.take(topic) for _ in range(3)] == [topic + "-high", topic, topic + "-low"]
        assert broker.take(topic) is None
    with pytest.raises(brokk.InvalidTopicError):
        broker.publish("bad topic", 1)
    with pytest.raises(brokk.InvalidTopicError):
        broker.take_raw("bad topic")
    ids = {broker.publish("ids", i) for i in range(10)}
    assert len(ids) == 10
    assert broker.publish("ids", 1, id="mine", metadata={"k": 1}) == "mine"
    broker.publish("ids", "x" * 9000)  # grows the request's buffer
    # The first group takes over what the topic retained, in order.
    assert [broker.take("ids") for _ in range(12)] == [*range(10), 1, "x" * 9000]
    assert broker.take_raw("ids") is None
