"""fetch_many and ack_many (brokk_broker_fetch_batch, brokk_broker_ack_batch): what they take,
in which order, and how each failure surfaces, bad input included."""

from __future__ import annotations

import pickle
import threading
import time

import pytest
from conftest import T

import brokk


def _published(broker, topic: str, n: int, **kw) -> None:
    assert broker.fetch_many(topic, 1) == []  # names the "default" group first
    broker.publish_batch(topic, [brokk.BatchMessage({"n": i}, **kw) for i in range(n)])


@pytest.mark.both_backends
def test_fetch_many_takes_up_to_max_in_publish_order(broker):
    _published(broker, "jobs", 10)
    first = broker.fetch_many("jobs", 4)
    assert [m.payload["n"] for m in first] == [0, 1, 2, 3]
    rest = broker.fetch_many("jobs", 100)
    assert [m.payload["n"] for m in rest] == [4, 5, 6, 7, 8, 9]
    assert broker.fetch_many("jobs", 100) == []
    for m in first + rest:
        assert m.topic == "jobs" and m.group == "default" and m.attempt == 1
        assert m.raw_metadata == b"{}" and m.metadata == {}
    assert len({m.delivery_id for m in first + rest}) == 10
    assert broker.ack_many([m.delivery_id for m in first + rest]) == 10
    broker.join(T(10))
    assert broker.stats().processed == 10


@pytest.mark.both_backends
def test_fetch_many_takes_highest_priority_first(broker):
    assert broker.fetch_many("prio", 1) == []
    broker.publish_batch("prio", [brokk.BatchMessage(name, priority=p) for name, p in
                                  [("low", 0), ("high", 5), ("mid", 1), ("high2", 5)]])
    got = broker.fetch_many("prio", 10)
    assert [(m.payload, m.priority) for m in got] == [("high", 5), ("high2", 5), ("mid", 1), ("low", 0)]
    broker.ack_many(m.delivery_id for m in got)  # any iterable


@pytest.mark.both_backends
def test_fetch_many_gives_the_same_messages_as_fetch(broker):
    assert broker.fetch("same") is None
    for i in range(2):
        broker.publish("same", {"i": i, "text": "ünï"}, id=f"id-{i}", metadata={"k": i}, priority=2)
    one = broker.fetch("same")
    (many,) = broker.fetch_many("same", 5)
    for m, i in ((one, 0), (many, 1)):
        assert (m.topic, m.payload, m.metadata, m.parent_id, m.priority, m.group) == (
            "same", {"i": i, "text": "ünï"}, {"k": i}, f"id-{i}", 2, "default")
        assert m.id == str(m.delivery_id) and m.subscription_id == 0 and m.timestamp_ms > 0
    broker.ack_many([one.delivery_id, many.delivery_id])


@pytest.mark.both_backends
def test_fetch_many_waits_for_the_first_delivery(broker):
    assert broker.fetch_many("later", 1) == []
    timer = threading.Timer(0.2, lambda: broker.publish("later", "now"))
    timer.start()
    started = time.monotonic()
    got = broker.fetch_many("later", 8, timeout=T(10))
    timer.join()
    assert [m.payload for m in got] == ["now"] and time.monotonic() - started < T(10)
    broker.ack_many([m.delivery_id for m in got])
    started = time.monotonic()
    assert broker.fetch_many("later", 8, timeout=0.15) == []
    assert time.monotonic() - started >= 0.14


def test_fetch_many_options_group_deadline_and_dead_letters(broker):
    options = {"group": "g", "ack_deadline": 0.1, "max_attempts": 2, "dead_letter_topic": "dead"}
    assert broker.fetch_many("work", 1, **options) == []
    broker.publish("work", 1)
    (m,) = broker.fetch_many("work", 5, **options)
    assert m.group == "g" and m.attempt == 1
    time.sleep(0.3)  # the deadline passes: redelivered with attempt 2
    (again,) = broker.fetch_many("work", 5, timeout=T(5), **options)
    assert again.attempt == 2 and again.delivery_id == m.delivery_id
    assert broker.fetch_many("dead", 1) == []
    broker.nack(again.delivery_id)  # given up: dead-lettered
    (dead,) = broker.fetch_many("dead", 5, timeout=T(5))
    assert dead.payload == 1 and dead.metadata["dead_letter"]["group"] == "g"
    broker.ack_many([dead.delivery_id])


@pytest.mark.both_backends
def test_ack_many_acks_the_rest_and_names_the_bad_index(broker):
    _published(broker, "ack", 4)
    msgs = broker.fetch_many("ack", 4)
    ids = [m.delivery_id for m in msgs]
    with pytest.raises(brokk.UnknownDeliveryError) as err:
        broker.ack_many([ids[0], ids[1], 999_999_999, ids[2], ids[3]])
    assert err.value.acked == 4
    assert "[2]" in str(err.value) and "999999999" in str(err.value)
    assert isinstance(err.value, brokk.CallerError) and err.value.status == brokk.Status.UNKNOWN_DELIVERY
    broker.join(T(10))  # all four were acked
    assert broker.stats().processed == 4
    # Acked already: the first failure is reported, the others counted.
    with pytest.raises(brokk.AlreadySettledError) as err:
        broker.ack_many(ids)
    assert err.value.acked == 0 and "[0]" in str(err.value)


def test_ack_many_reports_a_duplicate_at_its_index(broker):
    _published(broker, "dup", 2)
    a, b = broker.fetch_many("dup", 2)
    with pytest.raises(brokk.AlreadySettledError) as err:
        broker.ack_many([a.delivery_id, b.delivery_id, a.delivery_id])
    assert err.value.acked == 2 and "[2]" in str(err.value)


def test_ack_many_of_nothing(broker):
    assert broker.ack_many([]) == 0
    assert broker.ack_many(iter(())) == 0


@pytest.mark.parametrize("bad", [-1, 2**64, 1.0, "1", None, True])
def test_ack_many_rejects_bad_ids_before_acking_anything(broker, bad):
    _published(broker, "bad", 2)
    a, b = broker.fetch_many("bad", 2)
    expected = TypeError if not isinstance(bad, int) or isinstance(bad, bool) else brokk.InvalidArgumentError
    with pytest.raises(expected, match=r"delivery_ids\[1\]"):
        broker.ack_many([a.delivery_id, bad, b.delivery_id])
    assert broker.ack_many([a.delivery_id, b.delivery_id]) == 2  # nothing was acked before


def test_fetch_many_bad_input(broker):
    with pytest.raises(brokk.InvalidArgumentError, match="at least 1"):
        broker.fetch_many("t", 0)  # the library's answer
    with pytest.raises(brokk.InvalidArgumentError):
        broker.fetch_many("t", -1)
    for bad in (1.5, "3", None, True):
        with pytest.raises(TypeError):
            broker.fetch_many("t", bad)
    with pytest.raises(brokk.InvalidTopicError):
        broker.fetch_many("bad topic", 3)
    with pytest.raises(brokk.InvalidGroupError):
        broker.fetch_many("t", 3, group="bad group")
    with pytest.raises(brokk.InvalidArgumentError):
        broker.fetch_many("t", 3, ack_deadline=-1)
    with pytest.raises(TypeError):
        broker.fetch_many("t", 3, max_attempts=True)
    with pytest.raises(brokk.NullArgumentError):
        broker.fetch_many(None, 3)


def test_fetch_many_and_ack_many_on_a_closed_broker():
    b = brokk.Broker(workers=2)
    _published(b, "c", 3)
    msgs = b.fetch_many("c", 3)
    b.close(force=True)
    with pytest.raises(brokk.ClosedError):
        b.fetch_many("c", 3)
    with pytest.raises(brokk.ClosedError):
        b.ack_many([m.delivery_id for m in msgs])
    with pytest.raises(brokk.ClosedError):
        b.ack_many([])


def test_fetched_messages_decode_lazily_and_behave_like_built_ones(broker):
    import copy
    import dataclasses

    broker.fetch_many("lazy", 1)
    broker.publish("lazy", {"a": [1, 2]}, metadata={"m": "x"})
    (m,) = broker.fetch_many("lazy", 1)
    assert set(vars(m)) == {"delivery_id", "_view"}  # nothing read or copied yet
    built = brokk.Message(**{f.name: getattr(m, f.name) for f in dataclasses.fields(m)})
    assert built == m and repr(built) == repr(m)
    assert m.payload is m.payload  # decoded once, then kept
    for clone in (copy.copy(m), copy.deepcopy(m), pickle.loads(pickle.dumps(m))):
        assert clone == m and clone.payload == {"a": [1, 2]} and clone.metadata == {"m": "x"}
    assert dataclasses.replace(m, payload=3).payload == 3
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.payload = 4
    broker.ack_many([m.delivery_id])


def test_fetched_messages_free_their_delivery_once(broker, monkeypatch):
    """A fetched Message owns its brokk_delivery: freed once, when the Message is collected,
    whether its fields were read or not; and freeing does not settle it."""
    from brokk import _message

    freed = []
    real_free = _message._delivery_free
    monkeypatch.setattr(_message, "_delivery_free", lambda h: (freed.append(int(h)), real_free(h)))
    _published(broker, "own", 4)
    read, unread, *rest = broker.fetch_many("own", 4)
    assert read.payload == {"n": 0} and read.topic == "own" and read.attempt == 1
    assert freed == []
    ids = [m.delivery_id for m in (read, unread, *rest)]
    del unread, rest
    assert len(freed) == 3 and len(set(freed)) == 3  # collected unread
    copied = pickle.loads(pickle.dumps(read))
    del read
    assert len(freed) == 4 and len(set(freed)) == 4
    assert copied.payload == {"n": 0} and copied.group == "default"  # a full copy, no handle
    assert broker.ack_many(ids) == 4  # still awaiting their ack: freeing settles nothing


def test_a_fetched_message_can_be_read_after_its_broker_is_gone():
    b = brokk.Broker(workers=2)
    assert b.fetch("gone") is None
    b.publish("gone", {"still": "here"}, metadata={"m": 1})
    one = b.fetch("gone")
    b.publish("gone", [1, 2])
    (two,) = b.fetch_many("gone", 5)
    b.close(force=True)
    del b
    assert one.payload == {"still": "here"} and one.metadata == {"m": 1} and one.topic == "gone"
    assert two.payload == [1, 2] and two.group == "default"
