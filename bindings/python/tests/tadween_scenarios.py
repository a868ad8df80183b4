"""Programs written against Tadween's broker API, each returning what it observed in a form
that does not depend on ids, timing or thread interleaving. test_tadween_side_by_side.py runs
each on tadween-core and on brokk's facade and compares the results."""

from __future__ import annotations

import collections
import threading
import time

from conftest import T


class EventLog:
    """A Tadween listener (called with keyword arguments) counting events per kind and topic."""

    def __init__(self):
        self.lock = threading.Lock()
        self.counts = collections.Counter()
        self.errors = []

    def on_publish(self, message):
        with self.lock:
            self.counts["publish", message.topic] += 1

    def on_message_dispatched(self, message, topic):
        with self.lock:
            self.counts["dispatched", topic] += 1

    def on_message_processed(self, message, topic):
        with self.lock:
            self.counts["processed", topic] += 1

    def on_message_failed(self, message, topic, error):
        with self.lock:
            self.counts["failed", topic] += 1
            # A timeout's text carries the measured time: keep only its kind.
            text = "" if isinstance(error, TimeoutError) else str(error)
            self.errors.append((topic, type(error).__name__, text))

    def on_subscribe(self, topic, handler, subscription_id):
        with self.lock:
            self.counts["subscribe", topic] += 1
            assert subscription_id.startswith(topic + ":")

    def on_unsubscribe(self, topic, subscription_id):
        with self.lock:
            self.counts["unsubscribe", topic] += 1

    def on_topic_created(self, topic):
        with self.lock:
            self.counts["topic_created", topic] += 1

    def result(self):
        return {
            "events": sorted((k, t, n) for (k, t), n in self.counts.items()),
            "errors": sorted(self.errors),
        }


def stats_view(stats) -> dict:
    d = stats.to_dict()
    d.pop("uptime_seconds")
    for topic in d["topics"].values():
        topic["handler_names"] = sorted(topic["handler_names"])
    return d


def example_3_pipeline(tw) -> dict:
    """Tadween's examples/broker/ex3.py: chains, one-to-many topics, manual ack, nack with a
    requeued fork, a stats listener. A topic name with a comma included."""
    broker = tw.InMemoryBroker()
    stats = tw.StatsCollector()
    log = EventLog()
    broker.add_listener(stats)
    broker.add_listener(log)
    seen = collections.defaultdict(list)
    lock = threading.Lock()

    def note(name, msg):
        with lock:
            seen[name].append((msg.metadata.get("tag"), "parent_message_id" in msg.metadata))

    def A1(msg):
        note("A1", msg)

    def A2(msg):
        note("A2", msg)
        broker.publish(msg.fork(topic="topic.A2-B1,2"))
        broker.publish(msg.fork(topic="topic.A2-B3"))

    def B1(msg):
        note("B1", msg)
        tag = msg.metadata.get("tag", "N/A")
        if "retried" not in tag:
            broker.nack(msg.id, requeue_message=msg.fork(metadata={"tag": f"retried-{tag}"}))
        else:
            broker.ack(msg.id)

    def B2(msg):
        note("B2", msg)

    def B3(msg):
        note("B3", msg)
        broker.publish(msg.fork(topic="topic.B3-C1"))

    def C1(msg):
        note("C1", msg)
        tag = msg.metadata.get("tag", "N/A")
        if "retried" not in tag:
            broker.nack(msg.id, requeue_message=msg.fork(metadata={"tag": f"retried-{tag}"}))
        else:
            broker.ack(msg.id)

    broker.subscribe("topic.init", A1, auto_ack=True)
    broker.subscribe("topic.init", A2, auto_ack=True)
    broker.subscribe("topic.A2-B1,2", B1, auto_ack=False)
    broker.subscribe("topic.A2-B1,2", B2, auto_ack=True)
    broker.subscribe("topic.A2-B3", B3, auto_ack=True)
    broker.subscribe("topic.B3-C1", C1, auto_ack=False)
    for i in range(3):
        broker.publish(tw.Message(topic="topic.init", metadata={"tag": str(i)}))
    joined = broker.join(T(10))
    broker.close(T(5))
    return {
        "joined": joined,
        "seen": {k: sorted(v) for k, v in sorted(seen.items())},
        "stats": stats_view(stats.get_stats()),
        **log.result(),
    }


def failures_and_timeouts(tw) -> dict:
    """Raising handlers, a handler overrunning handler_timeout, manual acks from another thread,
    unsubscribe, double acks and unknown ids, join that times out, close that times out."""
    broker = tw.InMemoryBroker(max_workers=4)
    stats = tw.StatsCollector()
    log = EventLog()
    broker.add_listener(stats)
    broker.add_listener(log)
    to_ack = []
    lock = threading.Lock()

    def flaky(msg):
        if msg.payload["n"] % 2:
            raise ValueError(f"odd {msg.payload['n']}")

    def slow(msg):
        time.sleep(0.05)

    def manual(msg):
        with lock:
            to_ack.append(msg.id)

    broker.subscribe("work", flaky)
    broker.subscribe("work", slow, handler_timeout=0.01)
    sub = broker.subscribe("work", manual, auto_ack=False)
    for n in range(4):
        broker.publish(tw.Message(topic="work", payload={"n": n}))
    joined_early = broker.join(timeout=0.3)  # the manual copies are not acked yet
    with lock:
        ids = list(to_ack)
    acker = threading.Thread(target=lambda: [broker.ack(i) for i in ids])
    acker.start()
    acker.join()
    joined = broker.join(T(10))
    broker.ack(ids[0])  # double ack: a warning, not an error
    broker.ack("no-such-id")
    broker.nack("no-such-id")
    broker.unsubscribe(sub)
    broker.unsubscribe(sub)  # unknown: ignored
    broker.unsubscribe("never:subscribed")
    broker.publish(tw.Message(topic="work", payload={"n": 10}))
    joined_after = broker.join(T(10))
    broker.subscribe("stuck", lambda m: None, auto_ack=False)
    broker.publish(tw.Message(topic="stuck"))
    try:
        broker.close(timeout=0.2)
        close = "closed"
    except TimeoutError:
        close = "TimeoutError"
    broker.close()  # second close: a warning
    try:
        broker.publish(tw.Message(topic="work"))
        after = "published"
    except RuntimeError as e:
        after = f"RuntimeError: {e}"
    return {
        "joined_early": joined_early,
        "joined": joined,
        "joined_after": joined_after,
        "acked": len(ids),
        "close": close,
        "after_close": after,
        "running": broker._running,
        "stats": stats_view(stats.get_stats()),
        **log.result(),
    }


def fan_out_copies(tw) -> dict:
    """Each subscription gets its own copy: own id, parent_message_id = the published id, an
    independent payload; a topic nobody subscribes to swallows its messages."""
    broker = tw.InMemoryBroker()
    copies = []
    lock = threading.Lock()

    def handler(msg):
        with lock:
            copies.append(msg)
        msg.payload["mutated"] = True  # must not leak into the other copy

    broker.subscribe("fan", handler)
    broker.subscribe("fan", handler)
    original = tw.Message(topic="fan", payload={"k": [1, 2]}, metadata={"m": "x"})
    broker.publish(original)
    broker.publish(tw.Message(topic="nobody.listens", payload={"lost": True}))
    joined = broker.join(T(10))
    broker.close(T(5))
    return {
        "joined": joined,
        "copies": len(copies),
        "distinct_ids": len({c.id for c in copies}) == 2 and original.id not in {c.id for c in copies},
        "parents": [c.metadata["parent_message_id"] == original.id for c in copies],
        "metadata": sorted(sorted(k for k in c.metadata) for c in copies),
        "payloads": sorted(str(sorted(c.payload.items())) for c in copies),
        "original_payload": original.payload,
        "topics": sorted(c.topic for c in copies),
    }


SCENARIOS = [example_3_pipeline, failures_and_timeouts, fan_out_copies]
