"""Acks, nacks, requeues with delay, ack deadlines, dead letters, backpressure and retention."""

from __future__ import annotations

import queue
import threading

import pytest
from conftest import T, wait_for

import brokk


@pytest.mark.both_backends
def test_manual_ack_from_another_thread(broker, recorder):
    broker.add_listener(recorder)
    pending = queue.Queue()

    def sink(msg):
        pending.put(msg.delivery_id)
        return brokk.Verdict.LATER

    broker.subscribe("invoices", sink, manual_ack=True)
    for i in range(5):
        broker.publish("invoices", {"n": i})

    def committer():
        for _ in range(5):
            broker.ack(pending.get(timeout=T(10)))

    thread = threading.Thread(target=committer)
    thread.start()
    broker.join(T(10))  # returns only once the committer acked all five
    thread.join()
    stats = broker.stats()
    assert stats.processed == 5 and stats.in_flight == 0
    assert len(recorder.of("processed")) == 5


@pytest.mark.both_backends
def test_manual_ack_delivery_can_be_acked_inside_its_handler(broker):
    def handler(msg):
        broker.ack(msg.delivery_id)  # re-entrant ack, before the verdict
        with pytest.raises(brokk.AlreadySettledError):
            broker.ack(msg.delivery_id)
        return brokk.Verdict.LATER

    broker.subscribe("self.ack", handler, manual_ack=True)
    broker.publish("self.ack", 1)
    broker.join(T(10))
    assert broker.stats().processed == 1
    assert broker.last_handler_error is None


def test_auto_ack_delivery_is_already_settled(broker):
    ids = queue.Queue()
    broker.subscribe("auto", lambda m: ids.put(m.delivery_id))
    broker.publish("auto", 1)
    broker.join(T(10))
    with pytest.raises(brokk.AlreadySettledError):
        broker.ack(ids.get(timeout=T(10)))


@pytest.mark.both_backends
def test_nack_requeue_with_delay_redelivers_with_next_attempt(broker, recorder):
    broker.add_listener(recorder)
    broker.publish("retry", {"job": 1})
    first = broker.fetch("retry", timeout=T(10))
    assert first.attempt == 1
    broker.nack(first.delivery_id, requeue=True, delay=0.05, reason="try again")
    second = broker.fetch("retry", timeout=T(10))
    assert second.delivery_id == first.delivery_id and second.attempt == 2
    assert second.payload == {"job": 1}
    broker.ack(second.delivery_id)
    broker.join(T(10))
    failed = recorder.of("failed")
    assert [(f[2], f[3]) for f in failed] == [("try again", True)]
    assert broker.stats().requeued == 1


@pytest.mark.both_backends
def test_nack_without_requeue_gives_up(broker, recorder):
    broker.add_listener(recorder)
    broker.publish("give.up", 1)
    msg = broker.fetch("give.up", timeout=T(10))
    broker.nack(msg.delivery_id, reason="bad input")
    broker.join(T(10))
    assert [(f[2], f[3]) for f in recorder.of("failed")] == [("bad input", False)]
    assert broker.stats().failed == 1
    with pytest.raises(brokk.AlreadySettledError):
        broker.nack(msg.delivery_id)


@pytest.mark.parametrize("style", ["raise", "return"])
def test_handler_requeue_helper_with_delay(broker, recorder, style):
    broker.add_listener(recorder)
    attempts = []

    def handler(msg):
        attempts.append(msg.attempt)
        if msg.attempt < 3:
            if style == "raise":
                raise brokk.Requeue(delay=0.02, reason=f"not yet ({msg.attempt})")
            return brokk.requeue(0.02, f"not yet ({msg.attempt})")
        return None

    broker.subscribe("backoff", handler)
    broker.publish("backoff", 1)
    broker.join(T(10))
    assert attempts == [1, 2, 3]
    assert [(f[2], f[3]) for f in recorder.of("failed")] == [("not yet (1)", True), ("not yet (2)", True)]
    stats = broker.stats()
    assert stats.requeued == 2 and stats.processed == 1
    assert broker.last_handler_error is None  # a requeue is not an error


def test_verdict_requeue_returned_directly(broker):
    attempts = []

    def handler(msg):
        attempts.append(msg.attempt)
        return brokk.Verdict.REQUEUE if msg.attempt == 1 else brokk.Verdict.ACK

    broker.subscribe("rq", handler)
    broker.publish("rq", 1)
    broker.join(T(10))
    assert attempts == [1, 2]


@pytest.mark.both_backends
def test_ack_deadline_redelivers_a_fetched_delivery(broker, recorder):
    broker.add_listener(recorder)
    broker.publish("deadline", {"d": 1})
    first = broker.fetch("deadline", ack_deadline=0.05, timeout=T(10))
    # Not acked: past the deadline the delivery goes back to the group, attempt + 1.
    second = broker.fetch("deadline", ack_deadline=5, timeout=T(10))
    assert second is not None
    assert second.delivery_id == first.delivery_id and second.attempt == 2
    broker.ack(second.delivery_id)
    broker.join(T(10))
    assert broker.stats().expired == 1
    assert recorder.of("failed")[0][3] is True  # listeners heard the deadline as a requeue


def test_ack_deadline_redelivers_from_a_slow_subscription(broker):
    attempts = queue.Queue()
    release = threading.Event()

    def handler(msg):
        attempts.put(msg.attempt)
        if msg.attempt == 1:
            release.wait(T(10))  # overruns its deadline
        return None

    broker.subscribe("slow", handler, ack_deadline=0.05, concurrency=2)
    broker.publish("slow", 1)
    assert attempts.get(timeout=T(10)) == 1
    assert attempts.get(timeout=T(10)) == 2  # redelivered while the first call still runs
    release.set()
    broker.join(T(10))
    assert broker.stats().expired == 1


def test_dead_letter_after_max_attempts(broker):
    dead = queue.Queue()
    broker.subscribe("dlq", dead.put)

    def always_failing(msg):
        raise brokk.Requeue(reason="still broken")

    broker.subscribe("fragile", always_failing, max_attempts=2, dead_letter_topic="dlq")
    published = broker.publish("fragile", {"x": 1}, metadata={"origin": "test"})
    letter = dead.get(timeout=T(10))
    broker.join(T(10))
    assert letter.payload == {"x": 1}
    assert letter.metadata["origin"] == "test"
    info = letter.metadata["dead_letter"]
    assert info["topic"] == "fragile" and info["message_id"] == published and info["attempts"] == 2
    assert "still broken" in info["reason"]
    stats = broker.stats()
    assert stats.dead_lettered == 1 and stats.requeued == 1


@pytest.mark.both_backends
def test_dead_letter_of_a_nacked_fetch(broker):
    broker.publish("pulled", 1)
    msg = broker.fetch("pulled", timeout=T(10), dead_letter_topic="pulled.dead", group="g")
    broker.nack(msg.delivery_id, reason="rejected")
    letter = broker.fetch("pulled.dead", timeout=T(10))
    assert letter is not None and letter.metadata["dead_letter"]["reason"] == "rejected"
    broker.ack(letter.delivery_id)


def test_backpressure_fail_raises_full_error():
    with brokk.Broker(workers=2, queue_capacity=1, backpressure=brokk.Backpressure.FAIL) as b:
        assert b.fetch("bp", group="pull", timeout=0) is None  # the group exists, nobody takes
        b.publish("bp", 1)
        with pytest.raises(brokk.FullError) as err:
            b.publish("bp", 2)
        assert isinstance(err.value, brokk.TransientError) and err.value.status == brokk.Status.FULL
        assert b.count("bp") == 1
        b.purge()


def test_backpressure_drop_counts_full_dropped():
    with brokk.Broker(workers=2, queue_capacity=1, backpressure=brokk.Backpressure.DROP) as b:
        b.fetch("bp", group="pull", timeout=0)
        b.publish("bp", 1)
        b.publish("bp", 2)  # published, but the full group does not get it
        assert b.stats().full_dropped == 1 and b.count("bp") == 1
        b.purge()


def test_backpressure_block_times_out_with_full_error():
    with brokk.Broker(workers=2, queue_capacity=1, publish_timeout=0.05) as b:
        b.fetch("bp", group="pull", timeout=0)
        b.publish("bp", 1)
        with pytest.raises(brokk.FullError):
            b.publish("bp", 2)
        b.purge()


def test_retention_reject_raises_full_error_and_drop_oldest_keeps_newest():
    with brokk.Broker(workers=2, retention_limit=2) as b:
        b.publish("kept", 1)
        b.publish("kept", 2)
        with pytest.raises(brokk.FullError):
            b.publish("kept", 3)
        report = b.close(T(5))
        assert report.retained_discarded == 2
    with brokk.Broker(workers=2, retention_limit=2, retention_policy=brokk.RetentionPolicy.DROP_OLDEST) as b:
        for i in range(4):
            b.publish("kept", i)
        assert b.stats().retained_dropped == 2
        got = [b.fetch("kept") for _ in range(2)]
        assert [m.payload for m in got] == [2, 3]
        for m in got:
            b.ack(m.delivery_id)  # else leaving `with` would wait for them
    with brokk.Broker(workers=2, retention_policy=brokk.RetentionPolicy.OFF) as b:
        b.publish("gone", 1)
        assert b.stats().unrouted == 1 and b.count() == 0


@pytest.mark.both_backends
def test_unknown_delivery(broker):
    with pytest.raises(brokk.UnknownDeliveryError) as err:
        broker.ack(987654)
    assert isinstance(err.value, LookupError) and isinstance(err.value, brokk.CallerError)
    with pytest.raises(brokk.UnknownDeliveryError):
        broker.nack(987654, requeue=True)


@pytest.mark.both_backends
def test_redelivered_fetch_can_be_settled_once(broker):
    broker.publish("once", 1)
    msg = broker.fetch("once", timeout=T(10))
    broker.ack(msg.delivery_id)
    wait_for(lambda: broker.stats().processed == 1)
    with pytest.raises(brokk.AlreadySettledError):
        broker.ack(msg.delivery_id)


def _hold_two(broker: brokk.Broker) -> tuple[int, int]:
    """Leaves two deliveries awaiting an ack on `broker`: one a manual-ack handler returned
    LATER for, one fetched. Two fresh brokers doing this in the same order number them alike."""
    held: queue.Queue = queue.Queue()

    def later(msg):
        held.put(msg.delivery_id)
        return brokk.Verdict.LATER

    broker.subscribe("handled", later, manual_ack=True)
    broker.publish("handled", 1)
    handled = held.get(timeout=T(10))
    broker.publish("fetched", 2)
    fetched = broker.fetch("fetched", timeout=T(10)).delivery_id
    return handled, fetched


def test_a_delivery_id_of_another_broker_is_unknown_and_settles_nothing():
    """ack, nack and ack_many with a delivery id another broker issued raise UnknownDeliveryError
    and change nothing, on either broker: each still holds its own deliveries, which it acks."""
    with brokk.Broker(workers=2) as a, brokk.Broker(workers=2) as b:
        a_ids, b_ids = _hold_two(a), _hold_two(b)
        for broker, foreign in ((b, a_ids), (a, b_ids)):
            for delivery_id in foreign:
                with pytest.raises(brokk.UnknownDeliveryError):
                    broker.ack(delivery_id)
                with pytest.raises(brokk.UnknownDeliveryError):
                    broker.nack(delivery_id, requeue=True)
            with pytest.raises(brokk.UnknownDeliveryError) as err:
                broker.ack_many(list(foreign))
            assert err.value.acked == 0
        for broker, own in ((a, a_ids), (b, b_ids)):
            stats = broker.stats()
            assert stats.in_flight == 2 and stats.processed == 0 and stats.failed == 0
            for delivery_id in own:
                broker.ack(delivery_id)
            broker.join(T(10))
            assert broker.stats().processed == 2
