"""Broker.peek (brokk_broker_peek): the next deliveries of a group, shown without being taken."""

from __future__ import annotations

import dataclasses

import pytest

import brokk


def _counters(broker: brokk.Broker) -> dict:
    stats = dataclasses.asdict(broker.stats())
    stats.pop("uptime_ms", None)
    return stats


@pytest.mark.both_backends
def test_peek_shows_what_fetch_would_get_in_order_and_takes_nothing(broker):
    assert broker.peek("jobs") == [], "no topic: nothing, and nothing made"
    assert broker.fetch("jobs") is None  # makes the default group
    broker.publish("jobs", {"n": 1}, metadata={"m": "x"}, priority=0, id="one")
    broker.publish("jobs", [2, None], priority=5, id="two")
    broker.publish("jobs", "three", priority=0, id="three")
    before = _counters(broker)
    shown = broker.peek("jobs", max=10)
    assert [p.id for p in shown] == ["two", "one", "three"]
    first = shown[0]
    assert isinstance(first, brokk.Peeked)
    assert (first.topic, first.payload, first.priority, first.attempt) == ("jobs", [2, None], 5, 1)
    assert first.metadata == {} and first.raw_payload == b"[2, null]"
    assert shown[1].metadata == {"m": "x"} and shown[1].payload == {"n": 1}
    assert 0 <= first.age < 3600 and first.timestamp.year >= 2024
    assert [p.id for p in broker.peek("jobs", "default", max=2)] == ["two", "one"]
    assert _counters(broker) == before, "peek changed no counter"

    # A fetch after it gets the first one, at attempt 1; requeued, it goes to the back.
    m = broker.fetch("jobs")
    assert (m.parent_id, m.attempt) == ("two", 1)
    assert [p.id for p in broker.peek("jobs")] == ["one", "three"], "in flight: not shown"
    broker.nack(m.delivery_id, requeue=True, delay=3600)
    assert [p.id for p in broker.peek("jobs")] == ["one", "three"], "delayed: not shown"
    m = broker.fetch("jobs")
    broker.nack(m.delivery_id, requeue=True)
    assert [(p.id, p.attempt) for p in broker.peek("jobs")] == [("three", 1), ("one", 2)]


@pytest.mark.both_backends
def test_peek_of_a_missing_group_creates_nothing_and_shows_what_it_would_take_over(broker):
    assert broker.peek("orders", group="ghost") == []
    message_id = broker.publish("orders", 1)
    assert broker.stats().retained == 1, "no group was made: the message is retained"
    # The topic has no group: its first group would take over what it retains.
    assert [(p.id, p.attempt) for p in broker.peek("orders", group="ghost")] == [(message_id, 1)]
    assert broker.stats().retained == 1, "still no group"


def test_peek_refuses_bad_input(broker):
    with pytest.raises(brokk.InvalidArgumentError):
        broker.peek("jobs", max=0)
    with pytest.raises(brokk.InvalidArgumentError, match="10000"):
        broker.peek("jobs", max=10_001)
    assert broker.peek("jobs", max=10_000) == []
    with pytest.raises(brokk.InvalidTopicError):
        broker.peek("bad topic")
    with pytest.raises(brokk.InvalidGroupError):
        broker.peek("jobs", group="bad group")
    with pytest.raises((TypeError, ValueError)):
        broker.peek("jobs", max=-1)
    broker.close(force=True)
    with pytest.raises(brokk.ClosedError):
        broker.peek("jobs")
