"""brokk as a pynenc broker plugin: ``broker_cls = "BrokkBroker"``.

pynenc (0.4.0) routes invocation ids to named queues with a priority and lets its runners
retrieve them. ``BrokkBroker`` implements pynenc's ``BaseBroker`` on a ``brokk.Broker``, so that
a pynenc application keeps its queues in memory, in a SQLite file or on Redis (chosen by URL),
and a C, C++ or Go program can route invocation ids to the same queues. It is registered in the
``pynenc.plugins`` entry-point group (bindings/python/pyproject.toml); pynenc imports it at app
start, and ``broker_cls`` picks it by class name.

The mapping, which a producer in another language follows to route work here:

- queue ``Q`` of app ``A`` is the brokk topic ``pynenc.`` + N(A, 100) + ``__`` + N(Q, 255 - that
  prefix's length), where N is ``brokk.topic_name`` (brokk_topic_name_part in C, ``TopicName``
  in Go, ``brokk::topic_name`` in C++): bytes of ``[A-Za-z0-9.-]`` kept, every other byte ``_``
  and two hex digits, too long a name cut and hashed. App ``my app``, queue ``default``:
  ``pynenc.my_20app__default``. A name never contains ``__``, so two (app, queue) pairs never
  share a topic (``brokk_topic_prefix``, default ``"pynenc.{app_id}__"``, with ``{app_id}``
  replaced by N(A, 100));
- an invocation id is a message whose payload is the id as a JSON string (``"3f2a...-..."``);
- pynenc's priority ``p`` (a float in [-100, 100]) is the brokk priority ``round(p * 1e6)``
  (``PRIORITY_SCALE``): higher first, FIFO within one priority, as in pynenc. Priorities closer
  than 1e-6 are one priority;
- workers fetch from the topic's group named ``default`` (a fetch without a group).

Nothing else: validation is pynenc's own (queue names, priorities, the queue-mismatch policy),
and ordering, "each id retrieved once", counting and purging are brokk's. Differences from
pynenc's brokers and the optional acknowledged retrieval are in docs/pynenc.md.
"""

from __future__ import annotations

import json
import os
import threading
import weakref
from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from cistell import ConfigField
from pynenc.broker.base_broker import BaseBroker
from pynenc.conf.config_base import ConfigPynencBase
from pynenc.conf.config_broker import ConfigBroker, validate_priority
from pynenc.conf.config_sqlite import ConfigSQLite
from pynenc.exceptions import ConfigError, PynencError
from pynenc.identifiers.invocation_id import InvocationId

import brokk
from brokk._json import dumps as _dumps

if TYPE_CHECKING:
    from pynenc.app import Pynenc
    from pynenc.builder import PynencBuilder

__all__ = [
    "PRIORITY_SCALE",
    "BrokkBroker",
    "BrokkBuilderPlugin",
    "ConfigBrokerBrokk",
    "ConfigBrokk",
    "brokk_priority",
]

# pynenc priority p -> brokk priority round(p * PRIORITY_SCALE); pynenc bounds p to [-100, 100],
# so the result stays within [-1e8, 1e8], well inside brokk's int32.
PRIORITY_SCALE = 1_000_000
# "No limit" for brokk's retention_limit and queue_capacity: pynenc's queues are unbounded.
_UNBOUNDED = 2**63 - 1
# route_invocations publishes in batches of at most this many ids (each batch all or nothing).
_BATCH = 10_000
_PRIORITY_CACHE_SIZE = 1024
_TOPIC_CACHE_SIZE = 1024
# The longest app id fragment in a topic (brokk.topic_name); the queue name gets the rest.
APP_ID_MAX_LEN = 100
# brokk.topic_name needs room for its hashed tail to cut a long name.
_MIN_QUEUE_PART = 18
# Brokers of this process: a forked child drops its copy's client (which has no threads there)
# and opens its own on first use.
_brokers: weakref.WeakSet[BrokkBroker] = weakref.WeakSet()


# pynenc makes an app's broker lazily and without a lock (``Pynenc.broker``): two threads that
# touch it first at the same moment (a runner thread starting while the main thread routes)
# each make a BrokkBroker, and the app keeps whichever is assigned last. On memory:// each would
# have queues of its own, and what was routed through the one the app dropped would never be
# retrieved; on SQLite or Redis both reach the store, but each counts only its own work. So the
# BrokkBrokers of one app object share one brokk client, closed when the last of them closes.
class _SharedClient:
    __slots__ = ("client", "users")

    def __init__(self, client: brokk.Broker) -> None:
        self.client = client
        self.users = 0


_app_clients: weakref.WeakKeyDictionary[Any, _SharedClient] = weakref.WeakKeyDictionary()
_app_clients_lock = threading.Lock()


def _after_fork_in_child() -> None:
    _app_clients.clear()  # the parent's: a child opens its own
    for broker in list(_brokers):
        broker._forked()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _id_payload(invocation_id: str) -> bytes:
    """The JSON text of an invocation id: quoted as it is when nothing in it needs escaping
    (pynenc's ids are UUIDs), else by brokk's encoder (the one brokk.Broker.publish uses)."""
    plain = invocation_id.isascii() and invocation_id.isprintable()
    if plain and '"' not in invocation_id and "\\" not in invocation_id:
        return b'"' + invocation_id.encode("ascii") + b'"'
    return _dumps(invocation_id, "invocation id").encode("utf-8", "surrogatepass")


def _invocation_id(raw: bytes) -> str | None:
    """The id in a payload (a JSON string), or None if it is not a string."""
    if raw[0] == 0x22 and raw[-1] == 0x22 and 0x5C not in raw:  # quoted, no backslash escape
        return raw[1:-1].decode("utf-8")
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if type(value) is str else None


def _pynenc_error(exc: brokk.BrokkError, what: str) -> PynencError:
    """pynenc's error type for a failed brokk call: a caller or configuration mistake is a
    ConfigError (as pynenc raises for a bad queue name or priority), any other failure (a store
    that is unavailable, a closed broker) a PynencError; the brokk error is its cause."""
    if isinstance(exc, brokk.CallerError):
        return ConfigError(f"brokk: {what}: {exc}")
    return PynencError(f"brokk: {what}: {exc}")


def brokk_priority(priority: Any) -> int:
    """The brokk priority of a pynenc priority, validated as pynenc validates it."""
    return round(validate_priority(priority, label="Broker priority") * PRIORITY_SCALE)


class ConfigBrokk(ConfigPynencBase):
    """Settings of the brokk broker plugin (section ``brokk`` of pynenc's config file; env vars
    ``PYNENC__BROKK_URL``, ...).

    :cvar ConfigField[str] brokk_url:
        Where the queues live: ``memory://`` (the default: this process),
        ``sqlite:///abs/path/file.db`` (a file several processes share), ``redis://host:port/db``.
        ``{sqlite_db_path}`` in it is replaced by pynenc's ``sqlite_db_path`` setting, so that the
        queues follow the app's own SQLite file: ``sqlite://{sqlite_db_path}-brokk.db`` keeps them
        in a file beside it (brokk does not share a file with another application). An app
        without ``sqlite_db_path`` (pynenc in memory) then keeps its queues in ``memory://``.
    :cvar ConfigField[str] brokk_topic_prefix:
        Prepended to the queue name's topic fragment (``brokk.topic_name``) to make its brokk
        topic; ``{app_id}`` is replaced by the app id's fragment, so that apps sharing a store
        keep apart, as pynenc's SQLiteBroker does. End it with ``__`` after ``{app_id}`` (as the
        default does): a fragment never contains ``__``, so no two apps share a topic.
    :cvar ConfigField[float] brokk_ack_deadline_sec:
        0 (the default): retrieve takes the id for good, as pynenc's brokers do. Above 0:
        acknowledged retrieval. The id stays held until ``BrokkBroker.ack_invocation``; if that
        does not come within this many seconds, or the worker's process dies (SQLite, Redis), it
        is delivered again.
    :cvar ConfigField[int] brokk_max_attempts:
        With acknowledged retrieval: deliveries of one routed id before it is given up and
        dropped; 0: no limit.
    :cvar ConfigField[int] brokk_queue_capacity:
        Ids one queue may hold before routing fails with ``brokk.FullError``; 0 (the default):
        no limit, as in pynenc.
    """

    brokk_url = ConfigField("memory://")
    brokk_topic_prefix = ConfigField("pynenc.{app_id}__")
    brokk_ack_deadline_sec = ConfigField(0.0)
    brokk_max_attempts = ConfigField(0)
    brokk_queue_capacity = ConfigField(0)


class ConfigBrokerBrokk(ConfigBroker, ConfigBrokk, ConfigSQLite):
    """Configuration of ``BrokkBroker``: pynenc's broker settings plus ``ConfigBrokk`` (and
    ``sqlite_db_path``, for ``{sqlite_db_path}`` in ``brokk_url``)."""


class BrokkBroker(BaseBroker):
    """pynenc's broker interface on brokk. See the module docstring for the mapping."""

    def __init__(self, app: Pynenc) -> None:
        super().__init__(app)
        conf = self.conf
        try:
            app_part = brokk.topic_name(str(app.app_id), APP_ID_MAX_LEN)
        except brokk.BrokkError as exc:  # an app id that is not text (a lone surrogate)
            raise ConfigError(f"app id {app.app_id!r}: {exc}") from exc
        try:
            self._prefix = str(conf.brokk_topic_prefix).format(app_id=app_part)
        except (KeyError, IndexError, ValueError) as exc:
            raise ConfigError(f"brokk_topic_prefix {conf.brokk_topic_prefix!r}: {exc}") from exc
        # What is left of a topic's 255 bytes for the queue name.
        self._queue_max = brokk.TOPIC_MAX_LEN - len(self._prefix.encode("utf-8"))
        if self._queue_max < _MIN_QUEUE_PART:
            raise ConfigError(
                f"brokk_topic_prefix {conf.brokk_topic_prefix!r} gives {self._prefix!r}, which leaves"
                f" {self._queue_max} bytes of a brokk topic's {brokk.TOPIC_MAX_LEN} for the queue name;"
                f" at least {_MIN_QUEUE_PART} are needed"
            )
        self._topic_cache: dict[str, str] = {}
        deadline = float(conf.brokk_ack_deadline_sec)
        if not deadline >= 0:
            raise ConfigError(f"brokk_ack_deadline_sec must be >= 0, not {deadline}")
        self.acknowledged = deadline > 0
        # Acknowledged retrieval fetches with a deadline (options); otherwise none (NULL options).
        self._fetch_options: dict[str, Any] = {}
        if self.acknowledged:
            self._fetch_options = {"ack_deadline": deadline, "max_attempts": int(conf.brokk_max_attempts)}
        self._held: dict[str, list[int]] = {}  # acknowledged retrieval: id -> delivery ids
        self._lock = threading.Lock()
        # Queue names already known good (configured, validated): topic, without re-validating.
        self._topics: dict[str, str] = {}
        self._used: set[str] = set()  # every queue this broker has touched, for purge
        self._priorities: dict[Any, int] = {}
        self._client: brokk.Broker | None = None
        self._open()
        _brokers.add(self)

    @cached_property
    def conf(self) -> ConfigBrokerBrokk:
        return ConfigBrokerBrokk(
            config_values=self.app.config_values, config_filepath=self.app.config_filepath
        )

    # ---- the brokk broker ------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """``brokk_url``, with ``{sqlite_db_path}`` replaced (see ConfigBrokk)."""
        url = str(self.conf.brokk_url)
        if "{sqlite_db_path}" in url:
            path = str(self.conf.sqlite_db_path)
            return url.replace("{sqlite_db_path}", path) if path else "memory://"
        return url

    def _open(self) -> brokk.Broker:
        with _app_clients_lock:
            shared = _app_clients.get(self.app)
            if shared is None or shared.client.closed:
                shared = _SharedClient(self._new_client(self.url))
                _app_clients[self.app] = shared
            shared.users += 1
            self._client = shared.client
        return shared.client

    def _new_client(self, url: str) -> brokk.Broker:
        limit = int(self.conf.brokk_queue_capacity) or _UNBOUNDED
        try:
            return brokk.Broker(url, workers=2, retention_limit=limit, queue_capacity=limit)
        except brokk.BrokkError as exc:  # a bad URL, a path that cannot be a store, Redis down
            raise _pynenc_error(exc, f"brokk_url {url!r}") from exc

    def _forked(self) -> None:
        """In a forked child: the parent's client and deliveries are the parent's."""
        self._client = None
        self._held.clear()
        self._lock = threading.Lock()

    @property
    def client(self) -> brokk.Broker:
        """The ``brokk.Broker`` under this broker (reopened in a forked child, whose copy of the
        parent's has no threads, and after ``close``)."""
        client = self._client
        if client is None:
            with self._lock:
                client = self._client or self._open()
        return client

    def close(self) -> None:
        """Closes the brokk broker at once, once no other BrokkBroker of this app uses it (see
        ``_SharedClient``). On SQLite and Redis, what is queued stays in the store and ids held
        unacknowledged go back to their queue; in memory, the queues are gone."""
        with _app_clients_lock:
            client, self._client = self._client, None
            if client is None:
                return
            shared = _app_clients.get(self.app)
            if shared is not None and shared.client is client:
                shared.users -= 1
                if shared.users > 0:
                    return  # another BrokkBroker of this app still uses it
                del _app_clients[self.app]
        try:
            client.close(force=True)
        except brokk.BrokkError as exc:
            raise _pynenc_error(exc, "closing") from exc

    # ---- names -----------------------------------------------------------------------------------

    def topic(self, queue_name: str) -> str:
        """The brokk topic of a pynenc queue: the prefix, then ``brokk.topic_name(queue_name)``
        (the queue name is not validated here)."""
        topic = self._topic_cache.get(queue_name)
        if topic is None:
            try:
                topic = self._prefix + brokk.topic_name(queue_name, self._queue_max)
            except brokk.BrokkError as exc:
                raise _pynenc_error(exc, f"queue name {queue_name!r}") from exc
            if len(self._topic_cache) >= _TOPIC_CACHE_SIZE:
                self._topic_cache.clear()
            self._topic_cache[queue_name] = topic
        return topic

    def _validate_queue_names(self, queue_names: Sequence[str]) -> None:
        # pynenc's validation, skipped for names already validated and configured: for those it
        # can neither fail nor log, so skipping it changes nothing but the time it takes.
        topics = self._topics
        for name in queue_names:
            if name not in topics:
                break
        else:
            return
        super()._validate_queue_names(queue_names)
        configured = self.configured_queue_set
        for name in queue_names:
            self._used.add(name)
            if name in configured:
                topics[name] = self.topic(name)

    def _topic_of(self, queue_name: str) -> str:
        topic = self._topics.get(queue_name)
        if topic is None:
            self._validate_queue_names((queue_name,))
            topic = self.topic(queue_name)
        return topic

    def _priority(self, priority: Any) -> int:
        try:
            return self._priorities[priority]
        except (KeyError, TypeError):
            value = brokk_priority(priority)
            if len(self._priorities) >= _PRIORITY_CACHE_SIZE:
                self._priorities.clear()
            try:
                self._priorities[priority] = value
            except TypeError:
                pass  # an unhashable priority that pynenc accepted
            return value

    # ---- route -----------------------------------------------------------------------------------

    def route_invocation(self, invocation_id: InvocationId, queue_name: str, priority: float) -> None:
        """As BaseBroker's (the same validation, in the same order), once per queue name."""
        # The hot path of a producer, inlined: cached topic and priority, the id quoted as is.
        topic = self._topics.get(queue_name) or self._topic_of(queue_name)
        try:
            brokk_prio = self._priorities[priority]
        except (KeyError, TypeError):
            brokk_prio = self._priority(priority)
        self._publish(topic, invocation_id, brokk_prio)

    def route_invocations(
        self, invocation_ids: Sequence[InvocationId], queue_name: str, priority: float
    ) -> None:
        topic = self._topic_of(queue_name)
        self._publish_many(topic, invocation_ids, self._priority(priority))

    def _route_invocation(self, invocation_id: InvocationId, queue_name: str, priority: float) -> None:
        self._publish(self.topic(queue_name), invocation_id, self._priority(priority))

    def _route_invocations(
        self, invocation_ids: Sequence[InvocationId], queue_name: str, priority: float
    ) -> None:
        self._publish_many(self.topic(queue_name), invocation_ids, self._priority(priority))

    def _publish(self, topic: str, invocation_id: InvocationId, priority: int) -> None:
        try:
            data = _id_payload(invocation_id if type(invocation_id) is str else str(invocation_id))
            (self._client or self.client).publish(topic, raw=data, priority=priority)
        except brokk.BrokkError as exc:
            raise _pynenc_error(exc, f"routing to {topic!r}") from exc

    def _publish_many(self, topic: str, invocation_ids: Sequence[InvocationId], priority: int) -> None:
        try:
            ids = [_id_payload(str(i)) for i in invocation_ids]
            client = self.client
        except brokk.BrokkError as exc:
            raise _pynenc_error(exc, f"routing to {topic!r}") from exc
        for first in range(0, len(ids), _BATCH):
            batch = [brokk.BatchMessage(raw=i, priority=priority) for i in ids[first : first + _BATCH]]
            try:
                client.publish_batch(topic, batch)
            except brokk.BrokkError as exc:
                raise _pynenc_error(exc, f"routing to {topic!r}") from exc

    # ---- retrieve --------------------------------------------------------------------------------

    def retrieve_invocation(self, queue_name: str | None = None) -> InvocationId | None:
        """The next invocation id of `queue_name` (None: the first configured queue), highest
        priority first and FIFO within a priority, or None at once if the queue is empty."""
        if queue_name is None:
            queue_name = self.conf.queues[0]
        topic = self._topics.get(queue_name) or self._topic_of(queue_name)
        try:
            return self._retrieve(topic)
        except brokk.BrokkError as exc:
            raise _pynenc_error(exc, f"retrieving from {topic!r}") from exc

    def _retrieve(self, topic: str) -> InvocationId | None:
        client = self._client or self.client
        if not self.acknowledged:
            # One call, acked as it is taken (one commit on SQLite), as pynenc's brokers pop.
            raw = client.take_raw(topic)
            while raw is not None:
                if raw[0] == 0x22 and raw[-1] == 0x22 and 0x5C not in raw:  # _invocation_id, inlined
                    return raw[1:-1].decode("utf-8")  # type: ignore[return-value]  (a NewType of str)
                invocation_id = _invocation_id(raw)
                if invocation_id is not None:
                    return invocation_id  # type: ignore[return-value]
                self.app.logger.warning(
                    f"brokk: dropped a message on {topic!r} whose payload is not a JSON string: {raw[:100]!r}"
                )
                raw = client.take_raw(topic)
            return None
        while True:
            message = client.fetch(topic, timeout=0, **self._fetch_options)
            if message is None:
                return None
            invocation_id = message.payload
            if type(invocation_id) is not str:
                # Not something pynenc can route: given up (dropped, counted failed by brokk).
                client.nack(message.delivery_id, reason="payload is not an invocation id (a JSON string)")
                self.app.logger.warning(
                    f"brokk: dropped a message on {topic!r} whose payload is not a JSON string: "
                    f"{message.raw_payload[:100]!r}"
                )
                continue
            if self.acknowledged:
                with self._lock:
                    self._held.setdefault(invocation_id, []).append(message.delivery_id)
            else:
                client.ack(message.delivery_id)
            return InvocationId(invocation_id)

    def ack_invocation(self, invocation_id: InvocationId) -> int:
        """Acknowledged retrieval: the worker is done with `invocation_id`; it is never delivered
        again. Returns how many held deliveries of it were acked (0: none held, or taken back
        after the deadline)."""
        return self._settle(invocation_id, requeue=None)

    def nack_invocation(self, invocation_id: InvocationId, requeue: bool = True) -> int:
        """Acknowledged retrieval: gives `invocation_id` back to its queue now (``requeue``), or
        drops it. Returns how many held deliveries of it were settled."""
        return self._settle(invocation_id, requeue=requeue)

    def _settle(self, invocation_id: InvocationId, requeue: bool | None) -> int:
        with self._lock:
            deliveries = self._held.pop(str(invocation_id), [])
        done = 0
        try:
            client = self.client
            for delivery_id in deliveries:
                try:
                    if requeue is None:
                        client.ack(delivery_id)
                    else:
                        client.nack(delivery_id, requeue=requeue)
                    done += 1
                except (brokk.UnknownDeliveryError, brokk.AlreadySettledError):
                    pass  # its deadline passed: brokk took it back and delivers it again
        except brokk.BrokkError as exc:
            raise _pynenc_error(exc, f"settling {invocation_id!r}") from exc
        return done

    # ---- count and purge -------------------------------------------------------------------------

    def count_invocations(self, queue_names: Sequence[str] | None = None) -> int:
        """Ids waiting in `queue_names` (None: every configured queue); ids retrieved and not yet
        acknowledged (acknowledged retrieval) are not counted."""
        queues = self.conf.queues if queue_names is None else tuple(queue_names)
        self._validate_queue_names(queues)
        if not queues:
            return 0
        topics = [self.topic(q) for q in queues]
        try:
            return self.client.count(topics)
        except brokk.BrokkError as exc:
            raise _pynenc_error(exc, f"counting {topics!r}") from exc

    def purge(self) -> None:
        """Discards every id waiting in the configured queues and in every queue this broker has
        routed to, retrieved from or counted (what pynenc's MemBroker clears)."""
        queues = set(self.conf.queues) | self._used
        topics = sorted(self.topic(q) for q in queues)
        try:
            self.client.purge(topics)
        except brokk.BrokkError as exc:
            raise _pynenc_error(exc, f"purging {topics!r}") from exc
        with self._lock:
            self._held.clear()


# ---- PynencBuilder: .brokk_broker(url) ------------------------------------------------------------


class BrokkBuilderPlugin:
    """Adds ``brokk_broker(url, ...)`` to ``PynencBuilder`` (pynenc calls
    ``register_builder_methods`` for every ``pynenc.plugins`` entry point)."""

    @staticmethod
    def register_builder_methods(builder_class: type) -> None:
        builder_class.register_plugin_method("brokk_broker", brokk_broker)


def brokk_broker(
    builder: PynencBuilder,
    url: str = "memory://",
    *,
    topic_prefix: str | None = None,
    ack_deadline_sec: float | None = None,
    max_attempts: int | None = None,
    queue_capacity: int | None = None,
) -> PynencBuilder:
    """Puts the app's broker on brokk at `url`. Call it after ``memory()`` or ``sqlite()``,
    which set every component, the broker included."""
    builder._config["broker_cls"] = BrokkBroker.__name__
    builder._config["brokk_url"] = url
    for key, value in (
        ("brokk_topic_prefix", topic_prefix),
        ("brokk_ack_deadline_sec", ack_deadline_sec),
        ("brokk_max_attempts", max_attempts),
        ("brokk_queue_capacity", queue_capacity),
    ):
        if value is not None:
            builder._config[key] = value
    builder._plugin_components.add("brokk")
    return builder
