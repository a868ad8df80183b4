"""Tadween's broker surface on brokk, so that a program written for Tadween runs unchanged.

Mirrors ``tadween_core.broker`` of tadween-core 0.1.0b3 (PyPI; modules ``broker/base.py``,
``broker/memory.py``, ``broker/listeners.py``): the same class names, methods, arguments,
defaults, events and errors. ``from brokk.compat.tadween import InMemoryBroker, Message`` in
place of ``from tadween_core.broker import ...``; or call ``install()`` first and leave the
imports as they are.

How Tadween's behaviour maps onto brokk:

* ``InMemoryBroker(max_workers)`` is a ``brokk.Broker`` with that many workers and retention
  OFF: Tadween drops a message published on a topic nobody subscribes to, and so does brokk
  with retention off. Payload size and queue length are unbounded in Tadween; they are set to
  the largest brokk accepts.
* ``subscribe(topic, handler, auto_ack, handler_timeout)`` is a brokk subscription (manual ack
  when ``auto_ack`` is False) whose concurrency is ``max_workers``: Tadween runs one handler on
  as many pool threads as it likes. Each subscription gets its own copy of every message, with
  a new id and ``metadata["parent_message_id"]`` set to the published id (brokk's fan-out).
* A copy's id is its brokk delivery id, as decimal text; ``ack(id)`` and ``nack(id, ...)`` take
  it. ``nack(id, requeue_message)`` publishes ``requeue_message`` (a new message) and settles the
  copy, as Tadween does. A second ack, or an unknown id, logs a warning as in Tadween.
* ``join(timeout)`` returns whether everything was settled in time. ``close(timeout)`` is
  Tadween's: it joins first, while handlers may still publish downstream, then closes the brokk
  broker; if the join timed out it drops what is left and raises ``TimeoutError`` (closed all
  the same). ``close(force=True)`` drops everything and never raises; a second close logs a
  warning and returns.
* Listeners are called as Tadween calls them: synchronously, with keyword arguments, errors
  logged and swallowed. on_publish and on_message_dispatched (Tadween dispatches each published
  message once, to all its handlers; brokk does that inside publish) fire in ``publish``;
  on_message_processed / on_message_failed from the handler's thread when it returns or raises
  (or overruns ``handler_timeout``), before the copy is settled, so ``join`` waits for them.

* Payloads and metadata are any Python objects, as in Tadween (workflows pass pydantic models
  between stages), and each subscription's copy has its own ``copy.deepcopy`` of them: on
  memory://, in a program that called ``install()`` (a Tadween program run unchanged) or with
  ``InMemoryBroker(objects=True)``; otherwise the facade keeps brokk's JSON contract (below). What JSON
  carries unchanged (dicts with str keys, lists, str, int, finite float, bool, None) travels
  through brokk as JSON, and each copy is decoded afresh. Anything else stays in this process:
  brokk carries a small JSON reference, and the facade keeps the objects in a table until every
  subscription the message was routed to has taken its copy (or lost it: an unsubscribe drops
  the subscription's share, a close empties the table), so nothing is kept longer.
* Logs go to the loggers Tadween uses: ``tadween.broker.memory`` (or the ``logger`` passed), with
  Tadween's messages ("Broker closing... waiting for pending tasks.", "Broker closed.", "Double
  Ack or Unknown Message ID: ...", handler timeouts and errors), so a program's
  ``set_logger()`` (the ``tadween`` logger) sees them.

Differences that cannot be hidden:

* ``InMemoryBroker(url=...)`` (a brokk extension) puts the broker on a backend processes share
  (``sqlite://``, ``redis://``). There payload and metadata cross processes as bytes, so they
  must be JSON that arrives unchanged (so too on memory:// without objects, above); anything else (a key that is not a str, a tuple, a set,
  an object, a cycle) raises ``brokk.NotJSONError`` (a ``TypeError``) in ``publish``, and nothing
  is published.
* Topics are brokk topics: names of ``[A-Za-z0-9_.-]`` go through as they are; any other name
  (Tadween's own example uses ``"topic.A2-B1,2"``) is escaped reversibly into a brokk name
  under the prefix ``_tw.`` (see ``brokk_topic``). Message ids must be brokk ids (printable
  ASCII, at most 128 bytes): Tadween's uuid4 ids are.
* Copy ids are decimal numbers, not uuid4 strings.
"""

from __future__ import annotations

import copy
import logging
import os
import sys
import threading
import time
import types
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Literal, TypeAlias

import brokk
from brokk._json import dumps as _dumps

__all__ = [
    "Message",
    "InMemoryBroker",
    "BaseMessageBroker",
    "BrokerListener",
    "StatsCollector",
    "TopicStats",
    "BrokerStats",
    "BrokerEvents",
    "brokk_topic",
    "install",
]

# ---- base.py -------------------------------------------------------------------------------------


@dataclass(slots=True)
class Message:
    topic: Annotated[str, "Topic to subscribe to"]
    payload: dict | None = None
    metadata: dict | None = None
    id: str | None = None

    def __post_init__(self):
        self.id = self.id if self.id else str(uuid.uuid4())

        if self.payload is None:
            self.payload = {}
        if self.metadata is None:
            self.metadata = {}

    def fork(
        self,
        topic: str | None = None,
        payload: dict | None = None,
        metadata: dict | None = None,
    ) -> Message:
        """
        Create a deep copy of the message with a new UUID.
        """
        return Message(
            topic=topic if topic is not None else self.topic,
            payload=payload if payload is not None else copy.deepcopy(self.payload),
            metadata=metadata if metadata is not None else copy.deepcopy(self.metadata),
            id=str(uuid.uuid4()),
        )


@dataclass(slots=True)
class TopicStats:
    """Statistics for a specific topic"""

    topic_name: str
    handler_count: int
    subscription_count: int
    queue_size: int
    messages_published: int = 0
    messages_processed: int = 0  # Counts successful handler executions
    messages_failed: int = 0  # Counts failed handler executions
    handler_names: list[str] = field(default_factory=list)
    is_active: bool = True  # True when topic has active subscribers

    def to_dict(self) -> dict:
        """Convert topic stats to a dictionary"""
        return {
            "topic_name": self.topic_name,
            "handler_count": self.handler_count,
            "subscription_count": self.subscription_count,
            "queue_size": self.queue_size,
            "messages_published": self.messages_published,
            "messages_processed": self.messages_processed,
            "messages_failed": self.messages_failed,
            "handler_names": self.handler_names,
            "is_active": self.is_active,
        }


@dataclass(slots=True)
class BrokerStats:
    """Statistics about the broker's current state"""

    total_topics: int
    total_subscriptions: int
    total_handlers: int
    topics: dict[str, TopicStats] = field(default_factory=dict)
    uptime_seconds: float = 0.0

    def to_dict(self) -> dict:
        """Convert stats to a dictionary for easy serialization"""
        return {
            "total_topics": self.total_topics,
            "total_subscriptions": self.total_subscriptions,
            "total_handlers": self.total_handlers,
            "uptime_seconds": round(self.uptime_seconds, 3),
            "topics": {topic: stats.to_dict() for topic, stats in self.topics.items()},
        }


BrokerEvents: TypeAlias = Literal[
    "on_publish",
    "on_message_dispatched",
    "on_message_processed",
    "on_message_failed",
    "on_subscribe",
    "on_unsubscribe",
    "on_topic_created",
]


class BaseMessageBroker(ABC):
    """Abstract message broker interface"""

    @abstractmethod
    def publish(self, message: Message) -> None:
        """Publish a message to a topic"""

    @abstractmethod
    def subscribe(
        self,
        topic: str,
        handler: Callable[[Message], None],
        auto_ack: bool = True,
    ) -> str:
        """Subscribe to a topic. Returns subscription ID."""

    @abstractmethod
    def unsubscribe(self, subscription_id: str) -> None:
        """Unsubscribe from a topic"""

    @abstractmethod
    def ack(self, message_id: str) -> None:
        """Acknowledge message processing"""

    @abstractmethod
    def nack(self, message_id: str, requeue_message: Message | None = None) -> None:
        """Negative acknowledgment"""

    @abstractmethod
    def close(self, timeout: float | None = None) -> None:
        """Close broker connection"""

    @abstractmethod
    def add_listener(self, listener: BrokerListener) -> None:
        """Add listener to broker"""

    @abstractmethod
    def remove_listener(self, listener: BrokerListener) -> None:
        """Remove listener to broker"""


class BrokerListener(ABC):
    """
    Observer interface for broker lifecycle events.
    Implement this to track stats, logging, monitoring, etc.
    """

    @abstractmethod
    def on_publish(self, message: Message) -> None:
        """Called when a message is published"""

    @abstractmethod
    def on_message_dispatched(self, message: Message, topic: str) -> None:
        """Called when a message is retrieved from queue for processing"""

    @abstractmethod
    def on_message_processed(self, message: Message, topic: str) -> None:
        """Called when a message is successfully processed by all handlers"""

    @abstractmethod
    def on_message_failed(self, message: Message, topic: str, error: Exception) -> None:
        """Called when at least one handler failed"""

    @abstractmethod
    def on_subscribe(self, topic: str, handler: Callable, subscription_id: str) -> None:
        """Called when a new subscription is added"""

    @abstractmethod
    def on_unsubscribe(self, topic: str, subscription_id: str) -> None:
        """Called when a subscription is removed"""

    @abstractmethod
    def on_topic_created(self, topic: str) -> None:
        """Called when a new topic is created"""


# ---- topic names ---------------------------------------------------------------------------------

_ESCAPED_PREFIX = "_tw."
_PLAIN = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.-")


def brokk_topic(topic: str) -> str:
    """The brokk topic a Tadween topic is published on. A name brokk accepts, and that does not
    start with ``_tw.``, is itself; any other is ``_tw.`` followed by its UTF-8 bytes, each
    outside ``[A-Za-z0-9.-]`` written ``_xx`` (hex). One-to-one, so distinct Tadween topics never
    share a brokk topic. A name that ends up longer than 255 bytes is refused by brokk."""
    if not isinstance(topic, str):
        raise TypeError(f"topic must be a str, not {type(topic).__name__}")
    raw = topic.encode("utf-8", "surrogatepass")
    if (
        0 < len(raw) <= brokk.TOPIC_MAX_LEN
        and all(b in _PLAIN or b == 0x5F for b in raw)
        and not topic.startswith(_ESCAPED_PREFIX)
    ):
        return topic
    return _ESCAPED_PREFIX + "".join(chr(b) if b in _PLAIN else f"_{b:02x}" for b in raw)


def _json(what: str, message: Message, value: object, url: object = None) -> bytes:
    """The JSON text brokk publishes, as brokk.Broker.publish encodes a payload (one encoder
    for every publish path: brokk._json)."""
    try:
        return _dumps(value, what).encode("utf-8", "surrogatepass")
    except brokk.NotJSONError as e:
        raise brokk.NotJSONError(
            e.status,
            f"brokk.compat.tadween: the {what} of message {message.id} on {message.topic!r} must be "
            f"JSON-serialisable, and arrive unchanged: on {url} it crosses processes as JSON "
            f"(on memory:// any Python object goes through): {e.message}",
        ) from e


# The metadata key of a message whose payload and metadata stay in this process (memory://):
# its value is the facade's table key. A JSON metadata that has this key itself takes the same
# path, so that a user's metadata is never read as a reference.
_REF_KEY = "_brokk_tadween_object"
_LOGGER = "tadween.broker.memory"  # Tadween's InMemoryBroker logs here; set_logger() sees it
# Whether a memory:// InMemoryBroker carries any Python object (objects=None): install() turns
# it on, for a Tadween program run unchanged; code that imports the facade as brokk's API keeps
# brokk's JSON contract unless it passes objects=True.
_objects_default = False


# ---- memory.py -----------------------------------------------------------------------------------

_UNBOUNDED_QUEUE = 2**63  # Tadween's queues are unbounded; brokk's bound, set out of reach
_LARGEST_PAYLOAD = 2**32 - 1  # brokk's most; Tadween has no limit


class _Subscription:
    """The brokk handler of one Tadween subscription: builds Tadween's forked copy, runs the
    handler, tells the listeners, and answers brokk with a verdict."""

    # It logs a failing handler itself, as Tadween does (brokk would log it a second time).
    _brokk_logs_its_errors = True

    def __init__(
        self,
        broker: InMemoryBroker,
        topic: str,
        handler: Callable[[Message], None],
        auto_ack: bool,
        handler_timeout: float | None,
    ):
        self.broker = broker
        self.topic = topic
        self.handler = handler
        self.auto_ack = auto_ack
        self.handler_timeout = handler_timeout

    def __call__(self, delivery: brokk.Message) -> brokk.Verdict:
        metadata = delivery.metadata if isinstance(delivery.metadata, dict) else {}
        payload = delivery.payload
        if _REF_KEY in metadata:
            taken = self.broker._take_objects(metadata[_REF_KEY], self)
            if taken is None:
                # Its share was dropped (this subscription was being removed): as if queued
                # deliveries of an unsubscribed handler, nothing runs.
                return brokk.Verdict.ACK
            payload, metadata = taken
            if not isinstance(metadata, dict):
                metadata = {}
        metadata["parent_message_id"] = delivery.parent_id
        message = Message(topic=self.topic, payload=payload, metadata=metadata, id=delivery.id)
        broker, handler, topic = self.broker, self.handler, self.topic
        start = time.monotonic()
        try:
            handler(message)
            exc = None
        except Exception as e:  # Tadween catches Exception, not BaseException
            exc = e
        elapsed = time.monotonic() - start
        timed_out = self.handler_timeout is not None and elapsed > self.handler_timeout
        if timed_out:
            broker.logger.warning(
                f"Handler {getattr(handler, '__qualname__', repr(handler))} "
                f"exceeded timeout of {self.handler_timeout:.1f}s (actual: {elapsed:.1f}s) "
                f"on message(id:{message.id}) (topic={topic}). Acking defensively.",
            )
            broker._notify_listeners(
                "on_message_failed",
                message=message,
                topic=topic,
                error=TimeoutError(
                    f"Handler timed out after {elapsed:.1f}s (limit: {self.handler_timeout}s)"
                ),
            )
        elif exc is not None:
            broker.logger.error(f"Broker handler error: {exc}", exc_info=exc)
            broker._notify_listeners("on_message_failed", message=message, topic=topic, error=exc)
        else:
            broker._notify_listeners("on_message_processed", message=message, topic=topic)
        if exc is not None:
            raise exc  # brokk: NACK, with the exception's text as the reason
        if self.auto_ack or timed_out:
            return brokk.Verdict.ACK
        return brokk.Verdict.LATER  # awaits ack(message.id) / nack(message.id)


class InMemoryBroker(BaseMessageBroker):
    """
    Tadween's in-memory broker, on brokk. Handlers run on brokk's worker threads
    (``max_workers`` of them); each subscription gets its own copy of each message.
    """

    def __init__(
        self,
        max_workers: int | None = 4,
        logger: logging.Logger | None = None,
        *,
        url: str = "memory://",
        objects: bool | None = None,
    ):
        if max_workers is None:  # ThreadPoolExecutor's default, as Tadween's pool uses
            max_workers = min(32, (os.cpu_count() or 1) + 4)
        if max_workers <= 0:
            raise ValueError("max_workers must be greater than 0")
        self.logger = logger or logging.getLogger(_LOGGER)
        self._max_workers = max_workers
        # memory://: payloads that are not JSON stay here (see the module docstring).
        if objects is None:
            objects = _objects_default
        self._objects_allowed = bool(objects) and (url is None or url.split("://", 1)[0].lower() == "memory")
        self._url = url
        # ref -> [payload, metadata, the _Subscriptions still to take their copy]
        self._objects: dict[int, list] = {}
        self._next_ref = 0
        # Held across a publish by reference and across subscribe/unsubscribe, so that the
        # subscriptions brokk routes a message to are the ones its table entry waits for.
        self._route_lock = threading.RLock()
        self._topic_subs: dict[str, set] = {}
        self.brokk = brokk.Broker(
            url,
            workers=max_workers,
            retention_policy=brokk.RetentionPolicy.OFF,
            max_payload_bytes=_LARGEST_PAYLOAD,
            queue_capacity=_UNBOUNDED_QUEUE,
        )
        self._lock = threading.Lock()
        self._running = True
        # subscription_id -> (topic, handler, auto_ack, handler_timeout, brokk subscription id,
        # its _Subscription)
        self._subscriptions: dict[str, tuple[str, Callable, bool, float | None, int, _Subscription]] = {}
        self._handler_counts: dict[str, int] = {}
        self._known_topics: set[str] = set()
        self._listeners: list[BrokerListener] = []

    def publish(self, message: Message) -> None:
        with self._lock:
            if not self._running:
                raise RuntimeError("Broker closed")
        meta = message.metadata if message.metadata is not None else {}
        try:
            if self._objects_allowed:
                by_reference = isinstance(meta, dict) and _REF_KEY in meta  # see _REF_KEY
                if not by_reference:
                    try:
                        payload = _dumps(message.payload, "payload").encode("utf-8", "surrogatepass")
                        metadata = _dumps(meta, "metadata").encode("utf-8", "surrogatepass")
                    except brokk.NotJSONError:
                        by_reference = True
                if by_reference:
                    self._publish_objects(message, meta)
                else:
                    self.brokk.publish(brokk_topic(message.topic), raw=payload, metadata=metadata, id=message.id)
            else:
                payload = _json("payload", message, message.payload, self._url)
                metadata = _json("metadata", message, meta, self._url)
                self.brokk.publish(brokk_topic(message.topic), raw=payload, metadata=metadata, id=message.id)
        except brokk.ClosedError:
            raise RuntimeError("Broker closed") from None
        with self._lock:
            topic_created = message.topic not in self._known_topics
            self._known_topics.add(message.topic)
        if topic_created:
            self._notify_listeners("on_topic_created", topic=message.topic)
        self._notify_listeners("on_publish", message=message)
        # brokk routes a message to every subscription inside publish: that is Tadween's dispatch.
        self._notify_listeners("on_message_dispatched", message=message, topic=message.topic)

    def _publish_objects(self, message: Message, metadata: object) -> None:
        """Publishes `message` by reference: brokk carries the table key, the objects stay here
        until each subscription it is routed to has taken its deep copy."""
        with self._route_lock:
            subs = self._topic_subs.get(message.topic)
            ref = None
            if subs:
                with self._lock:
                    self._next_ref += 1
                    ref = self._next_ref
                    self._objects[ref] = [message.payload, metadata, set(subs)]
            try:
                self.brokk.publish(
                    brokk_topic(message.topic), None, metadata={_REF_KEY: ref or 0}, id=message.id
                )
            except BaseException:
                if ref is not None:
                    with self._lock:
                        self._objects.pop(ref, None)
                raise

    def _take_objects(self, ref: object, sub: _Subscription) -> tuple[object, object] | None:
        """`sub`'s own deep copy of the payload and metadata under `ref` (None if its share was
        dropped); the entry goes once every subscription has taken its copy."""
        with self._lock:
            entry = self._objects.get(ref) if isinstance(ref, int) else None
            if entry is None or sub not in entry[2]:
                return None
            entry[2].discard(sub)
            if not entry[2]:
                del self._objects[ref]
            payload, metadata = entry[0], entry[1]
        # Tadween forks every copy with copy.deepcopy (Message.fork); outside the lock.
        return copy.deepcopy(payload), copy.deepcopy(metadata)

    def _drop_objects(self, sub: _Subscription | None) -> None:
        """Drops `sub`'s share of every entry (None: every entry)."""
        with self._lock:
            if sub is None:
                self._objects.clear()
                return
            for ref in [r for r, entry in self._objects.items() if sub in entry[2]]:
                entry = self._objects[ref]
                entry[2].discard(sub)
                if not entry[2]:
                    del self._objects[ref]

    def subscribe(
        self,
        topic: str,
        handler: Callable[[Message], None],
        auto_ack: bool = True,
        handler_timeout: float | None = None,
    ) -> str:
        subscription_id = f"{topic}:{uuid.uuid4().hex}"
        with self._lock:
            if not self._running:
                raise RuntimeError("Broker closed")
        sub = _Subscription(self, topic, handler, auto_ack, handler_timeout)
        with self._route_lock:
            try:
                brokk_id = self.brokk.subscribe(
                    brokk_topic(topic),
                    sub,
                    manual_ack=not auto_ack,
                    concurrency=min(self._max_workers, brokk.MAX_CONCURRENCY),
                )
            except brokk.ClosedError:
                raise RuntimeError("Broker closed") from None
            self._topic_subs.setdefault(topic, set()).add(sub)
        with self._lock:
            self._subscriptions[subscription_id] = (topic, handler, auto_ack, handler_timeout, brokk_id, sub)
            self._handler_counts[topic] = self._handler_counts.get(topic, 0) + 1
            topic_created = topic not in self._known_topics
            self._known_topics.add(topic)
        if topic_created:
            self._notify_listeners("on_topic_created", topic=topic)
        self._notify_listeners("on_subscribe", topic=topic, handler=handler, subscription_id=subscription_id)
        return subscription_id

    def unsubscribe(self, subscription_id: str) -> None:
        with self._lock:
            if subscription_id not in self._subscriptions:
                return
            topic, _handler, _auto_ack, _timeout, brokk_id, sub = self._subscriptions.pop(subscription_id)
            self._handler_counts[topic] -= 1
            if not self._handler_counts[topic]:
                del self._handler_counts[topic]
                self._known_topics.discard(topic)
        with self._route_lock:
            subs = self._topic_subs.get(topic)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._topic_subs[topic]
            try:
                self.brokk.unsubscribe(brokk_id)
            except brokk.ClosedError:
                pass  # closed: nothing is delivered any more anyway
            self._drop_objects(sub)  # its queued deliveries are dropped with it
        self._notify_listeners("on_unsubscribe", topic=topic, subscription_id=subscription_id)

    def join(self, timeout: float | None = None) -> bool:
        """Block until all pending acks are resolved (quiescence)."""
        try:
            self.brokk.join(timeout)
        except brokk.TimeoutError:
            return False
        except brokk.ClosedError:
            return True  # a closed broker has nothing pending
        return True

    def close(self, timeout: float | None = None, force: bool = False) -> None:
        """
        Shut down the broker.

        timeout: seconds to wait for every message to be settled (None: no limit).
        force: drop everything pending at once; never raises.

        Raises TimeoutError on a graceful close that did not settle everything in time; the
        broker is closed all the same.
        """
        with self._lock:
            if not self._running:
                self.logger.warning("Broker already closed. Quit")
                return
        if force:
            self.logger.warning("Force-closing broker. Pending / un-acked messages will be dropped.")
            try:
                self.brokk.close(force=True)
            except brokk.BrokkError as e:
                self.logger.error(f"Force close: {e}")
            self._running = False
            self._drop_objects(None)
            self.logger.info("Broker force-closed.")
            return
        self.logger.info("Broker closing... waiting for pending tasks.")
        # Tadween waits for quiescence first, with publishing still open (handlers may publish
        # downstream while the broker drains), and only then stops. brokk's close refuses new
        # publishes at once, so: join, then close.
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self.join(timeout):  # raises WouldDeadlockError from a handler: nothing changed
            self._running = False
            try:
                self.brokk.close(timeout=0)  # drop what is left; running handlers finish
            except brokk.TimeoutError:
                pass
            self._drop_objects(None)
            raise TimeoutError(
                "Broker close timed out waiting for quiescence; "
                "un-acked messages remain. Use force=True to discard them."
            )
        self._running = False
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            self.brokk.close(left)
        except brokk.TimeoutError:
            self._drop_objects(None)
            raise TimeoutError(
                "Broker close timed out waiting for quiescence; "
                "un-acked messages remain. Use force=True to discard them."
            ) from None
        self._drop_objects(None)
        self.logger.info("Broker closed.")

    def ack(self, message_id: str) -> None:
        """
        Acknowledge message processing.
        Resilient to double-acks: a second call for the same ID is logged and ignored.
        """
        self._settle(message_id, None)

    def nack(self, message_id: str, requeue_message: Message | None = None) -> None:
        """
        Negative-acknowledge a message, and optionally requeue a new or the same message.
        """
        # Publish first, as Tadween does, so that the broker is never idle in between.
        if isinstance(requeue_message, Message):
            self.publish(requeue_message)
        self._settle(message_id, "nacked")

    def _settle(self, message_id: str, nack_reason: str | None) -> None:
        try:
            delivery_id = int(message_id)
            if nack_reason is None:
                self.brokk.ack(delivery_id)
            else:
                self.brokk.nack(delivery_id, requeue=False, reason=nack_reason)
        except (TypeError, ValueError, brokk.ClosedError):
            # UnknownDeliveryError, AlreadySettledError and out-of-range ids are ValueErrors.
            self.logger.warning(f"Double Ack or Unknown Message ID: {message_id}")

    def add_listener(self, listener: BrokerListener) -> None:
        with self._lock:
            if listener not in self._listeners:
                self._listeners.append(listener)

    def remove_listener(self, listener: BrokerListener) -> None:
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    def _notify_listeners(self, event: BrokerEvents, **kwargs) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                getattr(listener, event)(**kwargs)
            except Exception as e:
                self.logger.error(f"Listener error in {event}: {e}", exc_info=True)


# ---- listeners.py --------------------------------------------------------------------------------


class StatsCollector(BrokerListener):
    """
    Collects broker statistics from events, as Tadween's does:

    - 'messages_published': messages entering the broker.
    - 'messages_processed': successful handler executions (1 message, 2 handlers: 2).
    - 'messages_failed': failed handler executions.
    - 'queue_size': messages published but not yet dispatched.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._start_time = time.perf_counter()
        self._topic_counters: dict[str, dict] = {}
        self._queue_sizes: dict[str, int] = {}
        self._subscription_map: dict[str, tuple[str, Callable]] = {}
        self._topic_handlers: dict[str, list[Callable]] = {}

    def _counters(self, topic: str) -> dict:
        return self._topic_counters.setdefault(topic, {"published": 0, "processed": 0, "failed": 0})

    def on_publish(self, message: Message) -> None:
        with self._lock:
            self._counters(message.topic)["published"] += 1
            self._queue_sizes[message.topic] = self._queue_sizes.get(message.topic, 0) + 1

    def on_message_dispatched(self, message: Message, topic: str) -> None:
        with self._lock:
            if topic in self._queue_sizes:
                self._queue_sizes[topic] -= 1

    def on_message_processed(self, message: Message, topic: str) -> None:
        with self._lock:
            if topic in self._topic_counters:
                self._topic_counters[topic]["processed"] += 1

    def on_message_failed(self, message: Message, topic: str, error: Exception) -> None:
        with self._lock:
            if topic in self._topic_counters:
                self._topic_counters[topic]["failed"] += 1

    def on_subscribe(self, topic: str, handler: Callable, subscription_id: str) -> None:
        with self._lock:
            self._subscription_map[subscription_id] = (topic, handler)
            self._topic_handlers.setdefault(topic, []).append(handler)

    def on_unsubscribe(self, topic: str, subscription_id: str) -> None:
        with self._lock:
            if subscription_id not in self._subscription_map:
                return
            _, handler = self._subscription_map.pop(subscription_id)
            if topic in self._topic_handlers:
                try:
                    self._topic_handlers[topic].remove(handler)
                    if not self._topic_handlers[topic]:
                        del self._topic_handlers[topic]
                except ValueError:
                    pass

    def on_topic_created(self, topic: str) -> None:
        with self._lock:
            self._counters(topic)
            self._queue_sizes.setdefault(topic, 0)

    def get_stats(self) -> BrokerStats:
        """Current statistics snapshot."""
        with self._lock:
            topics_stats = {}
            for topic in set(self._topic_counters):
                subscription_count = sum(1 for t, _ in self._subscription_map.values() if t == topic)
                handlers = self._topic_handlers.get(topic, [])
                counters = self._topic_counters.get(topic, {})
                topics_stats[topic] = TopicStats(
                    topic_name=topic,
                    handler_count=len(handlers),
                    subscription_count=subscription_count,
                    queue_size=self._queue_sizes.get(topic, 0),
                    messages_published=counters.get("published", 0),
                    messages_processed=counters.get("processed", 0),
                    messages_failed=counters.get("failed", 0),
                    handler_names=self._extract_handler_names(handlers),
                    is_active=len(handlers) > 0,
                )
            return BrokerStats(
                total_topics=len(topics_stats),
                total_subscriptions=len(self._subscription_map),
                total_handlers=sum(len(h) for h in self._topic_handlers.values()),
                topics=topics_stats,
                uptime_seconds=time.perf_counter() - self._start_time,
            )

    @staticmethod
    def _extract_handler_names(handlers: list[Callable]) -> list[str]:
        names = []
        for handler in handlers:
            if hasattr(handler, "__name__"):
                names.append(handler.__name__)
            elif hasattr(handler, "__class__"):
                names.append(f"{handler.__class__.__name__}.__call__")
            else:
                names.append(str(type(handler).__name__))
        return names

    @staticmethod
    def pprint(stats: BrokerStats, detailed: bool = True):
        """Pretty print"""
        print("\n" + "=" * 60)
        print("BROKER STATISTICS")
        print("=" * 60)
        print(f"Uptime: {stats.uptime_seconds:.2f}s")
        print(f"Total Topics: {stats.total_topics}")
        print(f"Total Subscriptions: {stats.total_subscriptions}")
        print(f"Total Handlers: {stats.total_handlers}")
        if detailed and stats.topics:
            print("\n" + "-" * 60)
            print("TOPIC DETAILS")
            print("-" * 60)
            for topic_name, topic_stats in sorted(stats.topics.items()):
                print(f"\nTopic: {topic_name}")
                print(f"  Handlers: {topic_stats.handler_count}")
                print(f"  Subscriptions: {topic_stats.subscription_count}")
                print(f"  Queue Size (Waiting): {topic_stats.queue_size}")
                print(f"  Messages Published: {topic_stats.messages_published}")
                print(f"  Handler Executions (Success): {topic_stats.messages_processed}")
                print(f"  Handler Executions (Failed): {topic_stats.messages_failed}")
                if topic_stats.handler_names:
                    print("  Handler Names:")
                    for handler_name in topic_stats.handler_names:
                        print(f"    - {handler_name}")
        print("=" * 60 + "\n")

    def print_stats(self, detailed: bool = True) -> None:
        """Print formatted statistics to stdout."""
        self.pprint(self.get_stats(), detailed)


# ---- running Tadween programs unchanged ----------------------------------------------------------

_TADWEEN_MODULES = (
    "tadween_core.broker",
    "tadween_core.broker.base",
    "tadween_core.broker.memory",
    "tadween_core.broker.listeners",
)


def install(objects: bool = True) -> None:
    """Makes ``tadween_core.broker`` and its submodules (base, memory, listeners) this module,
    so that ``from tadween_core.broker import InMemoryBroker, Message`` gets brokk's. Call it
    before the program (or the rest of tadween_core) imports the broker. Works with or without
    tadween-core installed: without it, ``tadween_core`` is an empty package holding only the
    broker. ``objects``: memory:// brokers made without ``objects=`` carry any Python object,
    as Tadween's do (see the module docstring)."""
    global _objects_default
    _objects_default = objects
    this = sys.modules[__name__]
    package = sys.modules.get("tadween_core")
    if package is None:
        try:
            import tadween_core as package  # noqa: F811 - the real one, if installed
        except ImportError:
            package = types.ModuleType("tadween_core")
            package.__path__ = []  # a package with nothing else in it
            sys.modules["tadween_core"] = package
    for name in _TADWEEN_MODULES:
        sys.modules[name] = this
    package.broker = this
