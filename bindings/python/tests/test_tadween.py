"""brokk.compat.tadween: Tadween's broker surface (tadween-core 0.1.0b3). Tests taking `tw` run
on the facade and, when it is installed, on tadween-core too, so they pin Tadween's behaviour
rather than our reading of it."""

from __future__ import annotations

import logging
import queue
import re
import threading

import pytest
from conftest import T, run_python, wait_for

import brokk
from brokk import _callbacks
from brokk.compat import tadween


def test_class_hierarchy_and_message_defaults(tw):
    assert issubclass(tw.InMemoryBroker, tw.BaseMessageBroker)
    assert issubclass(tw.StatsCollector, tw.BrokerListener)
    m = tw.Message(topic="t")
    assert m.payload == {} and m.metadata == {} and len(m.id) == 36
    f = m.fork(topic="u", metadata={"a": 1})
    assert (f.topic, f.metadata, f.payload) == ("u", {"a": 1}, {}) and f.id != m.id
    with pytest.raises(TypeError):
        tw.BrokerListener()  # abstract


def test_handler_gets_a_copy_with_parent_id(tw):
    broker = tw.InMemoryBroker()
    got = queue.Queue()
    broker.subscribe("orders", got.put)
    original = tw.Message(topic="orders", payload={"qty": 2}, metadata={"channel": "web"})
    broker.publish(original)
    copy = got.get(timeout=T(10))
    assert copy.topic == "orders" and copy.payload == {"qty": 2}
    assert copy.metadata == {"channel": "web", "parent_message_id": original.id}
    assert copy.id != original.id
    assert broker.join(T(10))
    broker.close(T(5))


def test_manual_ack_from_another_thread(tw):
    broker = tw.InMemoryBroker()
    ids = queue.Queue()
    broker.subscribe("manual", lambda m: ids.put(m.id), auto_ack=False)
    broker.publish(tw.Message(topic="manual"))
    message_id = ids.get(timeout=T(10))
    assert broker.join(0.05) is False
    threading.Thread(target=broker.ack, args=(message_id,)).start()
    assert broker.join(T(10)) is True
    broker.close(T(5))


def test_raising_handler_fails_but_settles(tw):
    broker = tw.InMemoryBroker()
    failures = []

    class Listener:
        def __getattr__(self, name):
            return lambda **kwargs: None

        def on_message_failed(self, message, topic, error):
            failures.append((topic, error))

    broker.add_listener(Listener())
    boom = ValueError("bad order")

    def handler(msg):
        raise boom

    broker.subscribe("orders", handler, auto_ack=False)  # settled even without an ack
    broker.publish(tw.Message(topic="orders"))
    assert broker.join(T(10))
    assert failures == [("orders", boom)]
    broker.close(T(5))


def test_a_failing_handler_is_logged_once_as_tadween_logs_it(tw, caplog):
    broker = tw.InMemoryBroker()

    def handler(msg):
        raise KeyError("missing")

    try:
        broker.subscribe("orders", handler)
        with caplog.at_level(logging.ERROR):
            broker.publish(tw.Message(topic="orders"))
            assert broker.join(T(10))
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) == 1 and "Broker handler error: 'missing'" in errors[0].getMessage()
    finally:
        broker.close(T(5))


def test_nack_requeue_message_is_a_new_publish(tw):
    broker = tw.InMemoryBroker()
    seen = queue.Queue()

    def handler(msg):
        seen.put(msg.metadata.get("try"))
        if msg.metadata.get("try") == 1:
            broker.nack(msg.id, requeue_message=msg.fork(metadata={"try": 2}))
        else:
            broker.ack(msg.id)

    broker.subscribe("retry", handler, auto_ack=False)
    broker.publish(tw.Message(topic="retry", metadata={"try": 1}))
    assert broker.join(T(10))
    assert [seen.get(timeout=T(1)), seen.get(timeout=T(1))] == [1, 2]
    broker.close(T(5))


def test_unsubscribe_and_topic_recreation(tw):
    broker = tw.InMemoryBroker()
    created = []

    class Listener:
        def __getattr__(self, name):
            return lambda **kwargs: None

        def on_topic_created(self, topic):
            created.append(topic)

    broker.add_listener(Listener())
    got = []
    sub = broker.subscribe("t", got.append)
    broker.unsubscribe(sub)  # last handler gone: Tadween forgets the topic
    broker.subscribe("t", got.append)  # ... and announces it again
    broker.unsubscribe("unknown:id")  # ignored
    assert created == ["t", "t"]
    broker.close(T(5))


def test_close_semantics(tw, caplog):
    broker = tw.InMemoryBroker()
    broker.subscribe("t", lambda m: None)
    broker.publish(tw.Message(topic="t"))
    broker.close(T(5))
    assert broker._running is False
    with caplog.at_level(logging.WARNING):
        broker.close()  # warns, does not raise
    assert "already closed" in caplog.text
    with pytest.raises(RuntimeError, match="Broker closed"):
        broker.publish(tw.Message(topic="t"))
    with pytest.raises(RuntimeError, match="Broker closed"):
        broker.subscribe("t", lambda m: None)


def test_unknown_and_double_acks_only_warn(tw, caplog):
    broker = tw.InMemoryBroker()
    with caplog.at_level(logging.WARNING):
        broker.ack("nope")
        broker.nack("nope")
        broker.ack("12345")
    assert caplog.text.count("Double Ack or Unknown Message ID") == 3
    broker.close(T(5))


# ---- the facade only ---------------------------------------------------------------------------


def test_brokk_topic_is_identity_for_valid_names_and_injective_otherwise():
    assert tadween.brokk_topic("topic.init") == "topic.init"
    assert tadween.brokk_topic("no_one") == "no_one"
    names = ["topic.A2-B1,2", "a b", "_tw.x", "_tw._2c", "", "ü", "a_2c", "a,"]
    mapped = [tadween.brokk_topic(n) for n in names]
    assert len(set(mapped)) == len(names)
    assert all(m.startswith("_tw.") for m in mapped[:6])
    assert tadween.brokk_topic("topic.A2-B1,2") == "_tw.topic.A2-B1_2c2"


def test_facade_uses_brokk_with_retention_off():
    broker = tadween.InMemoryBroker(max_workers=3)
    assert isinstance(broker.brokk, brokk.Broker)
    broker.publish(tadween.Message(topic="nobody"))
    stats = broker.brokk.stats()
    assert stats.workers == 3 and stats.unrouted == 1 and broker.brokk.count() == 0
    broker.close(T(5))
    assert broker.brokk.closed


class _Model:
    """Stands for a pydantic model: an object JSON does not carry."""

    def __init__(self, items):
        self.items = items

    def __eq__(self, other):
        return type(other) is _Model and other.items == self.items


def test_python_objects_each_subscriber_its_own_deep_copy(tw):
    """On memory, any Python object goes through, and every subscription gets its own deep copy
    (Tadween's Message.fork), of payload and metadata alike (the facade: with objects=True,
    or after install())."""
    broker = tw.InMemoryBroker(**({"objects": True} if tw.name == "brokk" else {}))
    got = [queue.Queue(), queue.Queue()]
    broker.subscribe("t", got[0].put)
    broker.subscribe("t", got[1].put)
    model = _Model([1, 2])
    payload = {"model": model, (1, 2): {3, 4}, "nan": float("nan")}
    broker.publish(tw.Message(topic="t", payload=payload, metadata={"tag": ("a", "b")}))
    copies = [q.get(timeout=T(10)) for q in got]
    for c in copies:
        assert c.payload["model"] == model and c.payload["model"] is not model
        assert c.payload[(1, 2)] == {3, 4} and c.metadata["tag"] == ("a", "b")
    assert copies[0].payload["model"] is not copies[1].payload["model"]
    assert broker.join(T(10))
    if tw.name == "brokk":
        assert broker._objects == {}  # every delivery took its copy: nothing kept
    broker.close(T(5))


def test_object_table_is_emptied_on_unsubscribe_close_and_when_nobody_listens():
    broker = tadween.InMemoryBroker(max_workers=1, objects=True)
    broker.publish(tadween.Message(topic="nobody", payload={"m": _Model(1)}))
    assert broker._objects == {}  # no subscription: nothing to keep
    release = threading.Event()
    started = threading.Event()

    def slow(message):
        started.set()
        release.wait(T(10))

    sub = broker.subscribe("t", slow)
    for i in range(5):
        broker.publish(tadween.Message(topic="t", payload={"m": _Model(i)}))
    started.wait(T(10))
    assert broker._objects  # queued deliveries still to take their copies
    broker.unsubscribe(sub)  # drops the queued ones: their shares go
    assert broker._objects == {}
    release.set()
    broker.subscribe("t", slow)
    release.clear()
    started.clear()
    for i in range(3):
        broker.publish(tadween.Message(topic="t", payload={"m": _Model(i)}))
    started.wait(T(10))
    release.set()
    broker.close(force=True)
    assert broker._objects == {}


def test_json_metadata_with_the_reserved_key_goes_by_reference():
    broker = tadween.InMemoryBroker(objects=True)
    got = queue.Queue()
    broker.subscribe("t", got.put)
    broker.publish(tadween.Message(topic="t", payload={"a": 1}, metadata={tadween._REF_KEY: 7}))
    c = got.get(timeout=T(10))
    assert c.payload == {"a": 1} and c.metadata[tadween._REF_KEY] == 7
    broker.close(T(5))


def test_without_objects_payloads_must_be_json():
    broker = tadween.InMemoryBroker()
    with pytest.raises(TypeError, match="JSON-serialisable"):
        broker.publish(tadween.Message(topic="t", payload={"obj": object()}))
    broker.close(T(5))


def test_install_turns_objects_on():
    """A Tadween program run unchanged (install()) passes objects, as on Tadween."""
    result = run_python(
        """
import copy, queue
from brokk.compat.tadween import install
install()
from tadween_core.broker import InMemoryBroker, Message

class Model:
    def __init__(self, v):
        self.v = v

broker = InMemoryBroker()
got = queue.Queue()
broker.subscribe("t", got.put)
model = Model((1, 2))
broker.publish(Message(topic="t", payload={"m": model}))
c = got.get(timeout=10)
assert c.payload["m"].v == (1, 2) and c.payload["m"] is not model
broker.close(10)
print("ok")
"""
    )
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stdout + result.stderr


def test_payloads_must_be_json_on_a_shared_backend(tmp_path):
    broker = tadween.InMemoryBroker(url=f"sqlite://{tmp_path / 'tw.db'}", objects=True)
    with pytest.raises(TypeError, match="JSON-serialisable.*crosses processes"):
        broker.publish(tadween.Message(topic="t", payload={"obj": object()}))
    got = queue.Queue()
    broker.subscribe("t", got.put)
    broker.publish(tadween.Message(topic="t", payload={"ok": [1]}))
    assert got.get(timeout=T(10)).payload == {"ok": [1]}
    broker.close(T(5))


def test_logs_go_to_tadweens_logger(tw, caplog):
    """A Tadween program's set_logger() configures the 'tadween' logger: the broker's lines
    must reach it."""
    broker = tw.InMemoryBroker()
    with caplog.at_level(logging.INFO, logger="tadween"):
        broker.ack("no-such-id")
        broker.close(T(5))
    names = {r.name for r in caplog.records}
    assert names == {"tadween.broker.memory"}, names
    text = caplog.text
    assert "Double Ack or Unknown Message ID: no-such-id" in text
    assert "Broker closing... waiting for pending tasks." in text and "Broker closed." in text


def test_a_forced_close_without_timeout_returns_while_a_handler_runs():
    """close(force=True) drops what is pending and returns at once, as Tadween's does, even with
    a handler that is still running; the handler then finishes on its own."""
    before = _callbacks.registry_size()
    broker = tadween.InMemoryBroker(max_workers=2)
    started, release, finished = threading.Event(), threading.Event(), []

    def handler(msg):
        started.set()
        release.wait(T(60))
        finished.append(msg.payload)

    broker.subscribe("t", handler)
    broker.publish(tadween.Message(topic="t", payload={"n": 1}))
    assert started.wait(T(10))
    closer = threading.Thread(target=lambda: broker.close(force=True))
    closer.start()
    closer.join(T(1))
    try:
        assert not closer.is_alive(), "close(force=True) waited for the running handler"
        assert finished == [] and broker.brokk.closed
        with pytest.raises(RuntimeError, match="Broker closed"):
            broker.publish(tadween.Message(topic="t"))
    finally:
        release.set()
        closer.join(T(30))
    wait_for(lambda: finished == [{"n": 1}], what="the handler to finish")
    wait_for(lambda: _callbacks.registry_size() == before, what="the handler's finaliser")


def test_join_and_close_inside_a_handler_raise_instead_of_hanging():
    broker = tadween.InMemoryBroker()
    errors = queue.Queue()

    def handler(msg):
        for call in (broker.join, broker.close):
            try:
                call(1)
            except brokk.WouldDeadlockError as e:
                errors.put(e)

    broker.subscribe("t", handler)
    broker.publish(tadween.Message(topic="t"))
    assert broker.join(T(10))
    assert errors.qsize() == 2
    broker.close(T(5))


def test_invalid_max_workers():
    with pytest.raises(ValueError):
        tadween.InMemoryBroker(max_workers=0)


TADWEEN_PROGRAM = r"""
# Tadween's examples/broker/ex2.py, unchanged but for the first two lines and the sleep.
from brokk.compat.tadween import install
install()
import time

from tadween_core.broker import InMemoryBroker, Message

broker = InMemoryBroker()


def A1(msg: Message):
    tag = msg.metadata.get("tag", "N/A")
    print(f"[A1] Got {tag}")


def A2(msg: Message):
    tag = msg.metadata.get("tag", "N/A")
    print(f"[A2] Got tag: `{tag}`. Publishing to [topic.A2-B1]")
    new_msg = Message(topic="topic.A2-B1", metadata=msg.metadata)
    broker.publish(new_msg)


def B1(msg: Message):
    tag = msg.metadata.get("tag", "N/A")
    print(f"[B1] Got the tag: `{tag}`. Acknowledging")
    time.sleep(0.01)
    broker.ack(msg.id)


broker.subscribe("topic.init", A1, auto_ack=True)
broker.subscribe("topic.init", A2, auto_ack=True)
broker.subscribe("topic.A2-B1", B1, auto_ack=False)

for i in range(5):
    msg = Message(topic="topic.init", metadata={"tag": str(i)})
    broker.publish(msg)

broker.close(3)
print("brokk" if type(broker).__module__ == "brokk.compat.tadween" else "tadween")
"""


def test_install_runs_a_tadween_program_unchanged():
    result = run_python(TADWEEN_PROGRAM)
    assert result.returncode == 0, result.stderr
    out = result.stdout  # print() from several threads: lines may run together
    assert out.rstrip().endswith("brokk")
    assert sorted(re.findall(r"\[B1\] Got the tag: `(\d)`\. Acknowledging", out)) == list("01234")
    assert sorted(re.findall(r"\[A1\] Got (\d)", out)) == list("01234")
