"""Handlers and listeners: exceptions never cross into C, re-entrant calls work, close and join
from a callback behave as the header says, and free_user_data runs exactly once."""

from __future__ import annotations

import gc
import logging
import queue
import threading
import weakref

import pytest
from conftest import T, wait_for

import brokk
from brokk import _callbacks


class Boom(Exception):
    pass


def test_raising_handler_nacks_with_the_exception_text(broker, recorder):
    broker.add_listener(recorder)

    def handler(msg):
        raise Boom(f"cannot handle {msg.payload}")

    broker.subscribe("fail", handler)
    broker.publish("fail", 7)
    broker.join(T(10))
    (failed,) = recorder.of("failed")
    assert failed[2] == "Boom: cannot handle 7" and failed[3] is False
    assert isinstance(broker.last_handler_error, Boom)
    stats = broker.stats()
    assert stats.failed == 1 and stats.processed == 0


def _brokk_errors(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "brokk" and r.levelno >= logging.ERROR]


def test_a_failing_handler_is_logged_with_topic_delivery_id_and_traceback(broker, caplog):
    deliveries = []

    def lookup(msg):
        deliveries.append(msg.delivery_id)
        return {}[msg.payload["key"]]  # KeyError

    broker.subscribe("orders", lookup)
    with caplog.at_level(logging.ERROR, logger="brokk"):
        broker.publish("orders", {"key": "missing"})
        broker.join(T(10))
    (record,) = _brokk_errors(caplog)
    text = record.getMessage()
    assert "orders" in text and str(deliveries[0]) in text and "lookup" in text, text
    assert record.exc_info is not None and record.exc_info[0] is KeyError
    assert "'missing'" in caplog.text and "Traceback" in caplog.text and "in lookup" in caplog.text
    # As before: the delivery failed, and the exception is kept.
    assert isinstance(broker.last_handler_error, KeyError)
    assert broker.stats().failed == 1


def test_a_requeue_is_no_error_and_is_not_logged(broker, caplog):
    attempts = []

    def handler(msg):
        attempts.append(msg.attempt)
        if msg.attempt == 1:
            raise brokk.Requeue()

    broker.subscribe("again", handler)
    with caplog.at_level(logging.ERROR, logger="brokk"):
        broker.publish("again", 1)
        broker.join(T(10))
    assert attempts == [1, 2] and _brokk_errors(caplog) == []


def test_a_failing_listener_is_logged_with_the_event_and_traceback(broker, caplog):
    class Broken:
        def on_processed(self, msg):
            raise Boom("listener bug")

    deliveries = []
    broker.add_listener(Broken())
    broker.subscribe("watched", lambda m: deliveries.append(m.delivery_id))
    with caplog.at_level(logging.ERROR, logger="brokk"):
        broker.publish("watched", 1)
        broker.join(T(10))
    (record,) = _brokk_errors(caplog)
    text = record.getMessage()
    assert "on_processed" in text and "watched" in text and str(deliveries[0]) in text, text
    assert record.exc_info is not None and record.exc_info[0] is Boom
    assert isinstance(broker.last_listener_error, Boom)


@pytest.mark.parametrize("exc", [KeyboardInterrupt("ctrl-c in a worker"), SystemExit(3), GeneratorExit()])
def test_base_exceptions_in_handlers_are_nacks_too(broker, recorder, exc):
    broker.add_listener(recorder)

    def handler(msg):
        raise exc

    broker.subscribe("base", handler)
    broker.publish("base", 1)
    broker.join(T(10))
    (failed,) = recorder.of("failed")
    assert failed[2].startswith(type(exc).__name__)
    assert broker.last_handler_error is exc


@pytest.mark.parametrize("value", ["ok", True, 17, 2.0, [brokk.Verdict.ACK]])
def test_unsupported_return_values_are_nacks(broker, recorder, value):
    broker.add_listener(recorder)
    broker.subscribe("ret", lambda msg: value)
    broker.publish("ret", 1)
    broker.join(T(10))
    (failed,) = recorder.of("failed")
    assert "TypeError" in failed[2] and "handler returned" in failed[2]


def test_verdicts_as_plain_ints_are_accepted(broker):
    seen = []

    def handler(msg):
        seen.append(msg.attempt)
        return 2 if msg.attempt == 1 else 0  # REQUEUE, then ACK

    broker.subscribe("ints", handler)
    broker.publish("ints", 1)
    broker.join(T(10))
    assert seen == [1, 2]


def test_reentrant_calls_from_a_handler(broker):
    results = queue.Queue()
    downstream = queue.Queue()

    def stage(msg):
        # publish, subscribe, unsubscribe (itself), stats, count, ack: all from a worker thread.
        broker.publish("downstream", {"from": msg.payload})
        extra = broker.subscribe("extra", lambda m: None)
        broker.unsubscribe(extra)
        stats = broker.stats()
        broker.count()
        broker.unsubscribe(msg.subscription_id)
        results.put(stats.dispatched)

    def sink(msg):
        broker.ack(msg.delivery_id)
        downstream.put(msg.payload)
        return brokk.Verdict.LATER

    broker.subscribe("upstream", stage)
    broker.subscribe("downstream", sink, manual_ack=True)
    broker.publish("upstream", 1)
    assert results.get(timeout=T(10)) >= 1
    assert downstream.get(timeout=T(10)) == {"from": 1}
    broker.join(T(10))
    assert broker.last_handler_error is None
    assert broker.stats().subscriptions == 1  # the stage unsubscribed itself


def test_join_and_graceful_close_from_a_handler_raise_would_deadlock(broker, recorder):
    broker.add_listener(recorder)
    errors = queue.Queue()

    def handler(msg):
        for call in (lambda: broker.join(T(1)), lambda: broker.close(T(1))):
            try:
                call()
            except brokk.WouldDeadlockError as e:
                errors.put(e)
        broker.close()  # raises out of the handler: a nack with the text

    broker.subscribe("inside", handler)
    broker.publish("inside", 1)
    broker.join(T(10))
    assert errors.qsize() == 2
    assert isinstance(broker.last_handler_error, brokk.WouldDeadlockError)
    (failed,) = recorder.of("failed")
    assert "WouldDeadlockError" in failed[2]
    assert not broker.closed  # nothing changed: the broker still works
    broker.publish("other", 1)


def test_forced_close_from_a_handler(recorder):
    before = _callbacks.registry_size()
    b = brokk.Broker(workers=2)
    b.add_listener(recorder)
    reports = queue.Queue()

    def handler(msg):
        reports.put(b.close(force=True))

    b.subscribe("inside", handler)
    b.subscribe("other", lambda m: None)
    b.publish("inside", 1)
    report = reports.get(timeout=T(10))
    assert isinstance(report, brokk.CloseReport)
    with pytest.raises(brokk.ClosedError):
        b.publish("inside", 2)
    assert b.close() == report  # idempotent, from the main thread too
    # The release finished on a thread of its own once the handler returned; every
    # registration's free_user_data ran.
    wait_for(lambda: _callbacks.registry_size() == before, what="registry emptied")


def test_listener_errors_are_kept_and_do_not_stop_others(broker, recorder):
    class Broken:
        def on_publish(self, msg):
            raise Boom("listener bug")

    broker.add_listener(Broken())
    broker.add_listener(recorder)
    broker.subscribe("l", lambda m: None)
    broker.publish("l", 1)
    broker.join(T(10))
    assert isinstance(broker.last_listener_error, Boom)
    assert len(recorder.of("publish")) == 1 and len(recorder.of("processed")) == 1


def test_listener_may_call_back_into_the_broker(broker):
    seen = queue.Queue()

    class Reentrant:
        def on_processed(self, msg):
            seen.put(broker.stats().processed)
            try:
                broker.join(T(1))
            except brokk.WouldDeadlockError as e:
                seen.put(e)
            if msg.topic == "first":
                broker.publish("second", 2)

    broker.add_listener(Reentrant())
    broker.subscribe("first", lambda m: None)
    broker.subscribe("second", lambda m: None)
    broker.publish("first", 1)
    assert seen.get(timeout=T(10)) >= 1
    assert isinstance(seen.get(timeout=T(10)), brokk.WouldDeadlockError)
    broker.join(T(10))
    assert broker.stats().processed == 2


def test_free_user_data_runs_exactly_once_per_registration():
    before = _callbacks.registry_size()
    finalised = []

    class Handler:
        def __init__(self, n):
            self.n = n
            weakref.finalize(self, finalised.append, n)

        def __call__(self, msg):
            return None

    class Listener:
        def __init__(self, n):
            weakref.finalize(self, finalised.append, n)

        def on_publish(self, msg):
            pass

    b = brokk.Broker(workers=2)
    subs = [b.subscribe("t", Handler(i)) for i in range(6)]
    listener_ids = [b.add_listener(Listener(100 + i)) for i in range(3)]
    with pytest.raises(brokk.InvalidTopicError):
        b.subscribe("bad topic", Handler(50))  # failed: takes nothing, frees nothing
    with pytest.raises(brokk.InvalidArgumentError):
        b.subscribe("t", Handler(51), concurrency=5000)
    gc.collect()
    assert sorted(finalised) == [50, 51]
    assert _callbacks.registry_size() == before + 9

    for i in range(3):
        b.unsubscribe(subs[i])  # free_user_data on this thread (or a worker) now
    b.remove_listener(listener_ids[0])
    b.publish("t", 1)
    b.join(T(10))
    wait_for(lambda: _callbacks.registry_size() == before + 5, what="unsubscribed entries freed")
    gc.collect()
    assert sorted(finalised) == [0, 1, 2, 50, 51, 100]

    b.close(T(5))  # the rest at free, on this thread
    assert _callbacks.registry_size() == before
    gc.collect()
    assert sorted(finalised) == [0, 1, 2, 3, 4, 5, 50, 51, 100, 101, 102]  # each exactly once


def test_handler_errors_in_concurrent_handlers_do_not_disturb_others(broker):
    done = []
    lock = threading.Lock()

    def handler(msg):
        if msg.payload % 2:
            raise Boom(str(msg.payload))
        with lock:
            done.append(msg.payload)

    broker.subscribe("mixed", handler, concurrency=4)
    for i in range(50):
        broker.publish("mixed", i)
    broker.join(T(10))
    stats = broker.stats()
    assert sorted(done) == list(range(0, 50, 2)) and stats.failed == 25 and stats.processed == 25
