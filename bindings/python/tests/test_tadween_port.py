"""Tadween's own broker tests (tadween-core 0.1.0b3, tests/broker/test_memory.py, Apache-2.0),
ported to run against both brokk.compat.tadween and tadween-core itself. Changes from the
original: the implementation comes from the `tw` fixture; waits are scaled; the one timing
assertion (force close "well under 1 s") is dropped, as brokk's tests make none."""

from __future__ import annotations

import queue
import threading
import time

import pytest
from conftest import T


@pytest.fixture
def broker(tw):
    b = tw.InMemoryBroker()
    yield b
    b.close(T(3))


def test_no_interactions(broker):
    broker  # noqa: B018


def test_no_publish(broker):
    broker.subscribe("test.init", lambda x: print("received"))


def test_topic_with_no_handler(tw, broker):
    for _ in range(3):
        broker.publish(tw.Message(topic="test.init"))
    broker.close(T(1))


def test_message_id_generation(tw, broker):
    messages = []

    def handler(msg):
        messages.append(msg)

    broker.subscribe("test.topic", handler)
    for i in range(3):
        broker.publish(tw.Message(topic="test.topic", payload={"data": i}))
    broker.join(timeout=T(5.0))
    assert len(messages) == 3
    assert all(msg.id is not None for msg in messages)
    assert len({msg.id for msg in messages}) == 3


def test_one_to_one(tw, broker):
    received = queue.Queue()

    def handler(msg):
        if msg.payload:
            received.put(msg)

    broker.subscribe("test.topic", handler)
    broker.publish(tw.Message(topic="test.topic", payload={"data": "hello"}))
    msg = received.get(timeout=T(1.0))
    assert msg.payload["data"] == "hello"


def test_one_to_many(tw, broker):
    received = queue.Queue()

    def make_handler(handler_id):
        def handler(_):
            received.put(handler_id)

        return handler

    for i in range(10):
        broker.subscribe("test.topic", make_handler(i))
    broker.publish(tw.Message(topic="test.topic", payload={"data": "hello"}))
    handler_ids = set()
    for _ in range(10):
        try:
            handler_ids.add(received.get(timeout=T(1.0)))
        except queue.Empty:
            break
    assert len(handler_ids) == 10


def test_subscription_chain(tw, broker):
    received = queue.Queue()

    def make_handler(next_topic):
        def handler(_):
            broker.publish(tw.Message(topic=next_topic))

        return handler

    for i in range(5):
        broker.subscribe(f"test.{i}", make_handler(f"test.{i + 1}"))
    broker.subscribe("test.5", lambda m: received.put(m))
    broker.publish(tw.Message(topic="test.0"))
    msg = received.get(timeout=T(2.0))
    assert msg.topic == "test.5"


def test_subscription_chain_with_sideeffect(tw, broker):
    received = queue.Queue()

    def make_handler(next_topic):
        def handler(_):
            broker.publish(tw.Message(topic=next_topic))

        return handler

    def make_second_handler(next_topic):
        def handler(_):
            received.put(next_topic)

        return handler

    for i in range(5):
        topic, next_topic = f"test.{i}", f"test.{i + 1}"
        broker.subscribe(topic, make_handler(next_topic))
        broker.subscribe(topic, make_second_handler(next_topic))
    broker.subscribe(next_topic, lambda x: None)
    broker.publish(tw.Message(topic="test.0"))
    rec = []
    while True:
        try:
            rec.append(received.get(timeout=T(1.0)))
        except queue.Empty:
            break
    assert len(rec) == 5


def test_no_subscribers_no_hang(tw):
    broker = tw.InMemoryBroker()
    broker.publish(tw.Message(topic="no_one", payload={"data": 1}))
    broker.close(timeout=T(2.0))
    assert not broker._running


def test_multiple_messages_no_subscribers(tw):
    broker = tw.InMemoryBroker()
    for i in range(10):
        broker.publish(tw.Message(topic="no_one", payload={"data": i}))
    broker.close(timeout=T(2.0))
    assert not broker._running


def test_force_close_quits_immediately(tw):
    broker = tw.InMemoryBroker()
    broker.publish(tw.Message(topic="unresponsive", payload={"d": 1}))
    broker.close(timeout=T(10.0), force=True)
    assert not broker._running


def test_close_raises_timeout_error(tw):
    broker = tw.InMemoryBroker()
    broker.subscribe("unresponsive", lambda m: None, auto_ack=False)
    broker.publish(tw.Message(topic="unresponsive", payload={"d": 1}))
    with pytest.raises(TimeoutError):
        broker.close(timeout=0.2)
    broker.close()


def test_robust_error_handling_in_dispatch(tw):
    broker = tw.InMemoryBroker()

    class BadListener:
        def on_message_dispatched(self, **kwargs):
            raise RuntimeError("Disaster!")

        def __getattr__(self, name):
            return lambda **kwargs: None

    broker.add_listener(BadListener())
    received = []
    broker.subscribe("test.topic", lambda m: received.append(m))
    broker.publish(tw.Message(topic="test.topic", payload={"data": "hello"}))
    assert broker.join(timeout=T(1.0))
    assert len(received) == 1
    broker.close(timeout=T(1.0))


def test_double_acks_resilience(tw, broker):
    slow_handler_done = threading.Event()
    msg_ids = []

    def double_ack_handler(msg):
        for _ in range(5):
            broker.ack(msg.id)
        msg_ids.append(msg.id)

    def slow_handler(msg):
        time.sleep(0.05)
        msg_ids.append(msg.id)
        slow_handler_done.set()

    broker.subscribe("fanout.topic", double_ack_handler, auto_ack=False)
    broker.subscribe("fanout.topic", slow_handler, auto_ack=True)
    broker.publish(tw.Message(topic="fanout.topic"))
    slow_handler_done.wait(timeout=T(1.0))
    broker.join(timeout=T(1.0))
    assert msg_ids[0] != msg_ids[1]
