"""brokk.Broker: the C broker handle as a Python object. Every method is one C call (a wait
included: see _cancel.py for how Ctrl-C and ``cancel=`` reach it); the library decides
everything."""

from __future__ import annotations

import array
import atexit
import ctypes
import dataclasses
import enum
import json
import logging
import math
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from ctypes import POINTER, byref, c_char, c_size_t, c_uint64, c_void_p
from typing import Any

from . import _callbacks, _ffi, _log, _peek, _threadstate
from ._cancel import Cancel, Wait
from ._errors import (
    ClosedError,
    ForkedError,
    NotJSONError,
    TimeoutError,
    check,
    closed_error,
    error_for,
    invalid_argument,
)
from ._json import dumps as _dumps
from ._json import loads as _loads
from ._message import Message, _fetched, _Handle
from ._owned import Owned
from ._peek import Peeked

lib = _ffi.lib
# Pre-bound: the per-message paths look nothing up at call time.
_publish = _ffi.lib_address.brokk_broker_publish  # the broker, options and id buffer by address
_fetch = lib.brokk_broker_fetch
_fetch_batch_until = lib.brokk_broker_fetch_batch_until
_take_until = lib.brokk_broker_take_until
_string_free = lib.brokk_string_free
_ack = lib.brokk_broker_ack
_BUFFER_TOO_SMALL = _ffi.BROKK_STATUS_BUFFER_TOO_SMALL
_ack_batch = _ffi.lib_address.brokk_broker_ack_batch  # the ids by address (an array.array)
_last_error = _ffi.last_error
_ID_BUFFER_SIZE = _ffi.BROKK_ID_BUFFER_SIZE
_u64_array = array.array
assert array.array("Q").itemsize == 8, "array type Q is not 64-bit here"
_SIZE_MAX = 2 ** (8 * ctypes.sizeof(c_size_t)) - 1
_DELIVERY_PP = POINTER(POINTER(_ffi.brokk_delivery))
_tls = threading.local()  # per thread: the id buffer and the publish and take requests
# A take request's buffer starts this big and grows to the largest payload that did not fit,
# up to _TAKE_BUFFER_KEEP; a larger one comes through brokk_broker_take_until, in a buffer
# brokk allocates. (At most _MAX_REQUESTS requests per thread: at most 16 MiB of kept buffers
# per thread.)
_TAKE_BUFFER = 4096
_TAKE_BUFFER_KEEP = 64 << 10


# Publish and take call the request forms of the C functions (brokk_broker_publish_with,
# brokk_broker_take_with) with a request struct kept per thread and per topic: ctypes converts 4
# or 2 arguments instead of 8 or 9, and each costs it about as much as the rest of the call
# (docs/bench/analysis.md).
_publish_with = _ffi.lib_address.brokk_broker_publish_with
_take_with = _ffi.lib_address.brokk_broker_take_with
_MAX_REQUESTS = 256  # per thread and kind; past it the cache starts over
# Where every field of a take request is 8 bytes (64-bit platforms), the binding reads its
# length through a memoryview of 64-bit words, faster than a ctypes attribute; elsewhere through
# the attributes. (Its timeout stays 0: a take that waits goes through brokk_broker_take_until.)
_WORDS = all(
    getattr(_ffi.brokk_take_request, name).size == 8 for name, _ in _ffi.brokk_take_request._fields_
)
_LENGTH_WORD = _ffi.brokk_take_request.payload_len.offset // 8


def _publish_request(topic: str, priority: int) -> tuple[Any, ...]:
    """This thread's publish request for `topic` at `priority` (no id, no metadata), made and
    cached: (its address, the thread's id buffer, ...what it points to, kept alive)."""
    keep: list = []
    options = None if priority == 0 else _publish_options(None, None, priority, keep)
    topic_bytes = _topic_bytes(topic)
    id_out, id_address = _id_buffer()
    request = _ffi.brokk_publish_request(
        topic=topic_bytes,
        topic_len=_len(topic_bytes),
        options=None if options is None else ctypes.pointer(options),
        id_out=ctypes.cast(id_address, POINTER(c_char)),
        id_out_cap=_ID_BUFFER_SIZE,
    )
    try:
        requests = _tls.publish_requests
    except AttributeError:
        requests = _tls.publish_requests = {}
    if len(requests) >= _MAX_REQUESTS:
        requests.clear()
    prepared = (ctypes.addressof(request), id_out, request, options, keep)
    requests[topic if priority == 0 else (topic, priority)] = prepared
    return prepared


def _id_buffer() -> tuple[Any, int]:
    """This thread's id buffer (publish copies the id out of it)."""
    try:
        return _tls.id_out
    except AttributeError:
        id_out = ctypes.create_string_buffer(_ID_BUFFER_SIZE)
        _tls.id_out = (id_out, ctypes.addressof(id_out))
        return _tls.id_out


def _take_request(topic: Any, group: Any, size: int) -> tuple[Any, ...]:
    """A take request for `topic` and `group` with a payload buffer of `size` bytes: (its
    address, its fields as 64-bit words or the struct itself (see _WORDS), the buffer as a
    memoryview, its size, ...what it points to)."""
    topic_bytes = _topic_bytes(topic)
    group_bytes = None if group is None else _bytes("group", group)
    data = bytearray(size)
    buffer = (c_char * size).from_buffer(data)
    request = _ffi.brokk_take_request(
        topic=topic_bytes,
        topic_len=_len(topic_bytes),
        group=group_bytes,
        group_len=_len(group_bytes),
        timeout_ms=0,
        payload_out=ctypes.cast(buffer, POINTER(c_char)),
        payload_cap=size,
        payload_len=0,
    )
    fields = memoryview(request).cast("B").cast("Q") if _WORDS else request
    return (ctypes.addressof(request), fields, memoryview(data), size, request, buffer)


# A close with a time limit up to this runs on the calling thread; a longer one on a helper
# thread, so that Ctrl-C interrupts the caller's wait (brokk_broker_close takes no token).
_INLINE_CLOSE_MS = 100
# At interpreter exit, how long to wait for calls in flight and running handlers to finish.
_EXIT_WAIT_SECONDS = 10.0

_MISSING: Any = object()


class RetentionPolicy(enum.IntEnum):
    """BROKK_RETENTION_*: what a topic with no consumer group does past retention_limit."""

    REJECT = _ffi.BROKK_RETENTION_REJECT
    DROP_OLDEST = _ffi.BROKK_RETENTION_DROP_OLDEST
    DROP_NEWEST = _ffi.BROKK_RETENTION_DROP_NEWEST
    OFF = _ffi.BROKK_RETENTION_OFF


class Backpressure(enum.IntEnum):
    """BROKK_BACKPRESSURE_*: what publish does when a consumer group's queue is full."""

    BLOCK = _ffi.BROKK_BACKPRESSURE_BLOCK
    FAIL = _ffi.BROKK_BACKPRESSURE_FAIL
    DROP = _ffi.BROKK_BACKPRESSURE_DROP


@dataclasses.dataclass(frozen=True)
class CloseReport:
    """What close did (brokk_close_report)."""

    remaining: int
    dropped: int
    retained_discarded: int


# brokk_stats, field for field (counters and gauges: see docs/c-api.md, "Statistics").
Stats = dataclasses.make_dataclass(
    "Stats",
    [(name, int) for name, _ in _ffi.brokk_stats._fields_],
    frozen=True,
    namespace={"__doc__": "Broker-wide statistics at one moment (brokk_stats), field for field."},
)
Stats.__module__ = "brokk"


@dataclasses.dataclass(frozen=True)
class BatchMessage:
    """One message of ``publish_batch``: a payload (serialised as ``publish`` does) or ``raw`` JSON,
    and the options ``publish`` takes."""

    payload: Any = None
    id: str | None = None
    metadata: Any = None
    priority: int = 0
    raw: bytes | str | None = None


# ---- argument conversion: Python values to what C takes; range errors as the library's --------


def _int(name: str, value: Any, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if not lo <= value <= hi:
        raise invalid_argument(f"{name} = {value} is outside [{lo}, {hi}]")
    return value


def _u32(name: str, value: Any) -> int:
    return _int(name, value, 0, 2**32 - 1)


def _u64(name: str, value: Any) -> int:
    return _int(name, value, 0, 2**64 - 1)


def _i32(name: str, value: Any) -> int:
    return _int(name, value, -(2**31), 2**31 - 1)


def _ms(name: str, seconds: Any) -> int:
    """Seconds (int or float) to whole milliseconds, rounded up so that a positive duration
    never becomes 0 (which means "none" or "default" to the library)."""
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, not {type(seconds).__name__}")
    if not seconds >= 0:  # also NaN
        raise invalid_argument(f"{name} = {seconds} must be >= 0 seconds")
    ms = math.ceil(seconds * 1000) if math.isfinite(seconds) else _ffi.BROKK_WAIT_FOREVER
    return min(ms, _ffi.BROKK_WAIT_FOREVER)


def _wait_ms(name: str, seconds: float | None) -> int:
    return _ffi.BROKK_WAIT_FOREVER if seconds is None else _ms(name, seconds)


def _bytes(name: str, value: Any) -> bytes | None:
    """A text argument as the bytes C gets. None stays None (NULL: the library says whether that
    is allowed). Strings are encoded with surrogatepass, so text that is not valid UTF-8 reaches
    the library, which rejects it with INVALID_UTF8."""
    if value is None:
        return None
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"{name} must be str or bytes, not {type(value).__name__}")


def _len(data: bytes | None) -> int:
    return 0 if data is None else len(data)


# json.dumps(value, ensure_ascii=False, allow_nan=False), without its per-call set-up, for a
# value JSON carries unchanged; NotJSONError for any other (see _json.py).
_encode_json = _dumps


def _json(value: Any, what: str) -> bytes:
    return _encode_json(value, what).encode("utf-8", "surrogatepass")


# Topic names as the bytes C gets, for the names a program publishes on again and again.
_topic_cache: dict[str, bytes] = {}
_TOPIC_CACHE_SIZE = 1024


def _topic_bytes(topic: Any) -> bytes | None:
    if type(topic) is not str:
        return _bytes("topic", topic)
    data = _topic_cache.get(topic)
    if data is None:
        data = _bytes("topic", topic)
        if len(_topic_cache) >= _TOPIC_CACHE_SIZE:
            _topic_cache.clear()
        _topic_cache[topic] = data
    return data


def _payload(payload: Any, raw: Any, what: str = "payload") -> bytes:
    if raw is not None:
        if payload is not _MISSING and payload is not None:
            raise TypeError("give either a payload or raw JSON, not both")
        return _bytes("raw", raw)
    if payload is _MISSING:
        raise TypeError("publish needs a payload (or raw=...)")
    return _json(payload, what)


def _metadata(metadata: Any, what: str = "metadata") -> bytes | None:
    if metadata is None or isinstance(metadata, (str, bytes, bytearray, memoryview)):
        return _bytes("metadata", metadata)  # None: "{}"; text: JSON as is
    return _json(metadata, what)


def _publish_options(id: Any, metadata: Any, priority: Any, keep: list) -> _ffi.brokk_publish_options:
    id_bytes = _bytes("id", id)
    meta = _metadata(metadata)
    keep += [id_bytes, meta]
    return _ffi.brokk_publish_options(id_bytes, _len(id_bytes), meta, _len(meta), _i32("priority", priority))


def _fetch_options(
    group: Any, ack_deadline: Any, max_attempts: Any, dead_letter_topic: Any
) -> _ffi.brokk_fetch_options | None:
    """The options of a fetch; None (NULL: all zero, the library's defaults) when none is set."""
    if group is None and ack_deadline is None and dead_letter_topic is None and type(max_attempts) is int:
        if max_attempts == 0:
            return None
    group_bytes = _bytes("group", group)
    dlt = _bytes("dead_letter_topic", dead_letter_topic)
    # The struct holds c_char_p fields, which keep their bytes alive.
    return _ffi.brokk_fetch_options(
        group=group_bytes,
        group_len=_len(group_bytes),
        ack_deadline_ms=0 if ack_deadline is None else _ms("ack_deadline", ack_deadline),
        max_attempts=_u32("max_attempts", max_attempts),
        dead_letter_topic=dlt,
        dead_letter_topic_len=_len(dlt),
    )


def _topics(topics: Any, keep: list) -> tuple[Any, int]:
    """A list of brokk_str views of `topics` (None: NULL, every topic; one str: that topic)."""
    if topics is None:
        return None, 0
    if isinstance(topics, (str, bytes)):
        topics = [topics]
    names = [_bytes("topics", t) for t in topics]
    array = (_ffi.brokk_str * len(names))()
    for i, name in enumerate(names):
        if name is None:
            continue  # a NULL pointer: the library answers NULL_ARGUMENT
        buf = ctypes.create_string_buffer(name, len(name))
        keep.append(buf)
        array[i].ptr = ctypes.cast(buf, POINTER(c_char))
        array[i].len = len(name)
    keep.append(array)
    return array, len(names)


# ---- the broker ----------------------------------------------------------------------------------

_live: weakref.WeakSet[Broker] = weakref.WeakSet()


class Broker(Owned):
    """A brokk broker (brokk_broker). Any thread may use it, concurrently; handlers and
    listeners run on brokk's threads. Close it (or use ``with``); a broker still open at
    interpreter exit is closed with force then, before Python finalises.

    Options map to brokk_broker_options; None or 0 means the library's default. Durations are
    in seconds.

    After a fork (``os.fork``, ``multiprocessing`` with the fork start method) the child cannot
    use the broker its parent made, and the binding handles that by itself. On a backend that
    processes share (``sqlite://``, ``redis://``, ``redis+cluster://``) the child's first call
    opens a fresh broker with the same URL and options, and the object goes on with it. The
    parent's subscriptions and listeners belong to the parent's process and are not carried
    over: in the child their handlers never run (the parent's go on receiving as before), and
    the child subscribes anew if it wants deliveries. On ``memory://`` (nothing to share)
    every call in the child raises ``ForkedError``; make a new Broker there. In the child,
    ``close()`` of a parent's broker it never used, and garbage collection, release nothing
    and never wait, and interpreter exit leaves the parent's brokers alone. A Broker does not
    pickle (``TypeError``): to hand one to a ``spawn`` child, pass its URL."""

    _free_fn = staticmethod(lib.brokk_broker_free)
    _release_fn = staticmethod(lib.brokk_broker_release)

    def __init__(
        self,
        url: str | None = "memory://",
        *,
        workers: int | None = None,
        max_payload_bytes: int | None = None,
        listener_queue_capacity: int | None = None,
        retention_limit: int | None = None,
        retention_policy: RetentionPolicy | int = RetentionPolicy.REJECT,
        queue_capacity: int | None = None,
        backpressure: Backpressure | int = Backpressure.BLOCK,
        publish_timeout: float | None = None,
    ):
        options = _ffi.brokk_broker_options(
            worker_threads=_u32("workers", workers or 0),
            max_payload_bytes=_u64("max_payload_bytes", max_payload_bytes or 0),
            listener_queue_capacity=_u32("listener_queue_capacity", listener_queue_capacity or 0),
            retention_limit=_u64("retention_limit", retention_limit or 0),
            retention_policy=_u32("retention_policy", int(retention_policy)),
            queue_capacity=_u64("queue_capacity", queue_capacity or 0),
            backpressure=_u32("backpressure", int(backpressure)),
            publish_timeout_ms=0 if publish_timeout is None else _ms("publish_timeout", publish_timeout),
        )
        url_bytes = _bytes("url", url)
        if url_bytes is not None and b"\0" in url_bytes:
            raise invalid_argument("url must not contain NUL")  # C reads it up to the first NUL
        out = POINTER(_ffi.brokk_broker)()
        check(lib.brokk_broker_new(url_bytes, byref(options), byref(out)))
        super().__init__(out)
        self._address = ctypes.cast(out, c_void_p).value  # for the calls bound by address
        self.url = url
        # What a forked child needs to open a broker of its own (see _inherit_at_fork).
        self._new_args = (url_bytes, options)
        self._shared = _is_shared(url)
        self._fork_state: str | None = None  # "inherited" in a forked child until it reopens
        self.last_handler_error: BaseException | None = None
        self.last_listener_error: BaseException | None = None
        self._listener_ids: dict[int, tuple[Any, int]] = {}
        self._close_started = False
        self._close_finished = threading.Event()
        self._close_report: CloseReport | None = None
        self._teardown = _callbacks.Teardown()  # its registrations' finalisers still to run
        _callbacks.teardowns.add(self._teardown)
        _live.add(self)

    def _closed_error(self) -> Exception:
        return closed_error()

    # ---- fork ----------------------------------------------------------------------------------
    # A forked child cannot use its parent's broker: every C call on it returns FORKED, and its
    # free releases nothing (the threads it would join are in the parent). So in the child the
    # at-fork hook marks each broker the parent made as inherited, by setting _release_pending:
    # the hot paths already test that flag, so the check costs them nothing, and the first call
    # lands in _check_open. There a broker on a backend processes share (sqlite://, redis://,
    # redis+cluster://) opens a fresh broker with the same URL and options and carries on with
    # it; on memory:// (nothing to share) every call raises ForkedError. The parent's
    # subscriptions and listeners stay the parent's: the child's broker starts with none.

    def _inherit_at_fork(self) -> None:
        """In a forked child (the at-fork hook): forget the parent's threads and calls."""
        self._lock = threading.Lock()  # another thread may have held them at the fork
        self._cond = threading.Condition(self._lock)
        del self._calls[:]  # calls in flight on threads the child does not have
        if self._close_started or self._release_pending:
            # Closed (or closing on a thread the child does not have): closed in the child too.
            self._close_started = True
            self._close_finished.set()
            self._release_pending = True
            self._freed.set()
            return
        self._fork_state = "inherited"
        self._listener_ids.clear()
        self._release_pending = True

    def _check_open(self) -> None:
        """A call found _release_pending set: raises ClosedError, or ForkedError for a parent's
        broker on memory://, or reopens a parent's broker on a shared backend and returns."""
        if self._fork_state is None:
            raise self._closed_error()
        if not self._shared:
            raise ForkedError(
                _ffi.BROKK_STATUS_FORKED,
                f"this broker ({self.url}) was made by the parent process (pid {self._pid}); after a"
                " fork the child cannot use it, and a memory:// broker has nothing a new one could"
                " share: open a Broker in the child"
            )
        with self._lock:
            if self._fork_state is None:
                return  # another thread of the child reopened it
            out = POINTER(_ffi.brokk_broker)()
            url_bytes, options = self._new_args
            check(lib.brokk_broker_new(url_bytes, byref(options), byref(out)))
            # The parent's pointer is dropped, not freed: in the child its free releases nothing.
            self._ptr = out
            self._address = ctypes.cast(out, c_void_p).value
            self._pid = os.getpid()
            self._detach = False
            self._freed = threading.Event()
            self._close_finished = threading.Event()
            self._close_report = None
            self._teardown = _callbacks.Teardown()
            _callbacks.teardowns.add(self._teardown)
            self._fork_state = None
            self._release_pending = False  # last: a call that sees it clear finds the new pointer

    def _acquire(self) -> Any:
        self._calls.append(None)
        if self._release_pending:
            try:
                self._check_open()
            except BaseException:
                self._unuse()
                raise
        return self._ptr

    def __reduce__(self) -> Any:
        # A broker is a live handle with threads: it does not travel to another process.
        raise TypeError(
            "a brokk.Broker cannot be pickled (it holds threads and a connection of this process);"
            " pass its URL and open a Broker in the other process"
        )

    @property
    def closed(self) -> bool:
        """True once a close has started (publish and subscribe fail from then on)."""
        return self._close_started or super().closed

    def __repr__(self) -> str:
        return f"<brokk.Broker {self.url!r}{' closed' if self.closed else ''}>"

    def _record_handler_error(self, exc: BaseException) -> None:
        self.last_handler_error = exc

    def _record_listener_error(self, exc: BaseException) -> None:
        self.last_listener_error = exc

    # ---- publish -------------------------------------------------------------------------------

    def publish(
        self,
        topic: str,
        payload: Any = _MISSING,
        *,
        id: str | None = None,
        metadata: Any = None,
        priority: int = 0,
        raw: bytes | str | None = None,
    ) -> str:
        """Publishes `payload` (serialised with json.dumps), or `raw` bytes of JSON as they are,
        on `topic`; returns the message id (`id`, or one brokk generated). `metadata`: a dict
        (or the JSON text of an object). A payload or metadata that JSON cannot carry unchanged
        (a key that is not a str, NaN, a tuple, a set, ...) raises ``NotJSONError`` and nothing
        is published."""
        # The hot path of a producer: one C call, nothing built that the defaults do not need
        # (no options struct without options, the id buffer reused per thread, the topic's
        # bytes cached), and the in-flight bracket of Owned._use inlined.
        if raw is None and payload is not _MISSING:
            data = _encode_json(payload).encode("utf-8", "surrogatepass")
        elif type(raw) is bytes and (payload is _MISSING or payload is None):
            data = raw
        else:
            data = _payload(payload, raw)
        if id is None and metadata is None and type(topic) is str and type(priority) is int:
            # This thread's request for the topic and priority: four arguments to convert.
            try:
                prepared = _tls.publish_requests[topic if priority == 0 else (topic, priority)]
            except (AttributeError, KeyError):
                prepared = _publish_request(topic, priority)
            calls = self._calls
            calls.append(None)  # the in-flight bracket of Owned._acquire/_unuse, inlined
            try:
                if self._release_pending:
                    self._check_open()
                status = _publish_with(self._address, prepared[0], data, len(data))
                if status:
                    raise error_for(status, _last_error())
            finally:
                calls.pop()
                if self._release_pending and not calls:
                    self._last_out()
            return prepared[1].value.decode("ascii")
        topic_bytes = _topic_cache.get(topic) if type(topic) is str else None
        if topic_bytes is None:
            topic_bytes = _topic_bytes(topic)
        if id is None and metadata is None and type(priority) is int and priority == 0:
            options = None  # NULL: the defaults
        else:
            keep: list = []
            options = byref(_publish_options(id, metadata, priority, keep))
        id_out, id_address = _id_buffer()
        calls = self._calls
        calls.append(None)  # the in-flight bracket of Owned._acquire/_unuse, inlined
        try:
            if self._release_pending:
                self._check_open()
            status = _publish(
                self._address,
                topic_bytes,
                len(topic_bytes) if topic_bytes is not None else 0,
                data,
                len(data),
                options,
                id_address,
                _ID_BUFFER_SIZE,
            )
            if status:
                raise error_for(status, _last_error())
        finally:
            calls.pop()
            if self._release_pending and not calls:
                self._last_out()
        return id_out.value.decode("ascii")

    def publish_batch(self, topic: str, messages: Iterable[BatchMessage | Any]) -> list[str]:
        """Publishes every message on `topic` in one call, all or nothing; returns their ids.
        Each item is a ``BatchMessage`` or a bare payload."""
        topic_bytes = _bytes("topic", topic)
        items = [m if isinstance(m, BatchMessage) else BatchMessage(payload=m) for m in messages]
        keep: list = []
        array = (_ffi.brokk_batch_message * len(items))()
        for i, m in enumerate(items):
            try:
                data = _payload(m.payload, m.raw)
                array[i].options = _publish_options(m.id, m.metadata, m.priority, keep)
            except NotJSONError:  # again, to name the message in the error
                _payload(m.payload, m.raw, f"messages[{i}].payload")
                _metadata(m.metadata, f"messages[{i}].metadata")
                raise
            keep.append(data)
            array[i].payload = data
            array[i].payload_len = len(data)
        ids_out = ctypes.create_string_buffer(len(items) * _ffi.BROKK_ID_BUFFER_SIZE)
        with self._use() as ptr:
            check(
                lib.brokk_broker_publish_batch(
                    ptr,
                    topic_bytes,
                    _len(topic_bytes),
                    array if items else None,
                    len(items),
                    ids_out if items else None,
                    len(ids_out) if items else 0,
                )
            )
        size = _ffi.BROKK_ID_BUFFER_SIZE
        raw = ids_out.raw  # one copy: .raw copies the whole buffer each time it is read
        return [raw[i * size : (i + 1) * size].split(b"\0", 1)[0].decode("ascii") for i in range(len(items))]

    # ---- subscribe -----------------------------------------------------------------------------

    def subscribe(
        self,
        topic: str,
        handler: Callable[[Message], Any],
        *,
        manual_ack: bool = False,
        concurrency: int = 1,
        group: str | None = None,
        ack_deadline: float | None = None,
        max_attempts: int = 0,
        dead_letter_topic: str | None = None,
    ) -> int:
        """Calls `handler(message)` on a brokk worker thread for each delivery; returns the
        subscription id. The handler returns a ``Verdict`` or None (ACK); raising is a NACK with
        the exception's text as reason (kept in ``last_handler_error``); ``raise Requeue(delay)``
        or ``return requeue(delay)`` requeues. With ``manual_ack``, ``Verdict.LATER`` leaves the
        delivery for ``ack``/``nack`` by ``message.delivery_id``, from any thread."""
        if handler is not None and not callable(handler):
            raise TypeError(f"handler must be callable, not {type(handler).__name__}")
        topic_bytes = _bytes("topic", topic)
        group_bytes = _bytes("group", group)
        dlt = _bytes("dead_letter_topic", dead_letter_topic)
        options = _ffi.brokk_subscription_options(
            manual_ack=bool(manual_ack),
            concurrency=_u32("concurrency", concurrency),
            group=group_bytes,
            group_len=_len(group_bytes),
            ack_deadline_ms=0 if ack_deadline is None else _ms("ack_deadline", ack_deadline),
            max_attempts=_u32("max_attempts", max_attempts),
            dead_letter_topic=dlt,
            dead_letter_topic_len=_len(dlt),
        )
        sub_id = c_uint64()
        # A NULL function pointer for None: the library answers NULL_ARGUMENT.
        trampoline = _callbacks.HANDLER if handler is not None else _ffi.brokk_handler_cb()
        with self._use() as ptr:
            key = _callbacks.register(_callbacks.HandlerEntry(handler, self))
            try:
                check(
                    lib.brokk_broker_subscribe(
                        ptr,
                        topic_bytes,
                        _len(topic_bytes),
                        trampoline,
                        key,
                        _callbacks.FREE,
                        byref(options),
                        byref(sub_id),
                    )
                )
            except BaseException:
                _callbacks.unregister(key)  # a failed registration takes nothing
                raise
        return sub_id.value

    def unsubscribe(self, subscription_id: int) -> None:
        """Stops a subscription; its queued deliveries are dropped."""
        with self._use() as ptr:
            check(lib.brokk_broker_unsubscribe(ptr, _u64("subscription_id", subscription_id)))

    # ---- pull ----------------------------------------------------------------------------------

    def fetch(
        self,
        topic: str,
        *,
        group: str | None = None,
        timeout: float | None = 0.0,
        ack_deadline: float | None = None,
        max_attempts: int = 0,
        dead_letter_topic: str | None = None,
        cancel: Cancel | None = None,
    ) -> Message | None:
        """Takes the next delivery of `group` (None: the group "default") on `topic`, highest
        priority first, waiting up to `timeout` seconds (0: not at all; None: without limit);
        None if none came. The delivery awaits ``ack``/``nack`` by ``delivery_id``. A wait
        yields to Ctrl-C (KeyboardInterrupt, nothing taken); ``cancel``: a ``Cancel`` whose
        ``cancel()`` ends it with ``CancelledError``, nothing taken."""
        timeout_ms = _wait_ms("timeout", timeout)
        if cancel is not None:
            # brokk_broker_fetch_batch_until of one, which the token can interrupt.
            got = self._fetch_until(
                topic, 1, group, timeout_ms, ack_deadline, max_attempts, dead_letter_topic, cancel
            )
            return got[0] if got else None
        # A wait first looks without waiting (as take_raw does, and for the same reason).
        topic_bytes = _topic_bytes(topic)
        options = _fetch_options(group, ack_deadline, max_attempts, dead_letter_topic)
        out = c_void_p()
        with self._use() as ptr:
            check(
                _fetch(
                    ptr,
                    topic_bytes,
                    _len(topic_bytes),
                    None if options is None else byref(options),
                    0,
                    ctypes.cast(byref(out), _DELIVERY_PP),
                )
            )
            if out.value:
                return _fetched([_Handle(out.value)])[0]
        if timeout_ms:
            got = self._fetch_until(
                topic, 1, group, timeout_ms, ack_deadline, max_attempts, dead_letter_topic, None
            )
            return got[0] if got else None
        return None

    def _fetch_until(
        self,
        topic: Any,
        n: int,
        group: Any,
        timeout_ms: int,
        ack_deadline: Any,
        max_attempts: Any,
        dead_letter_topic: Any,
        cancel: Cancel | None,
    ) -> list[Message]:
        """One brokk_broker_fetch_batch_until of up to `n` deliveries (see fetch_many)."""
        topic_bytes = _topic_bytes(topic)
        options = _fetch_options(group, ack_deadline, max_attempts, dead_letter_topic)
        out = (c_void_p * n)()
        count = c_size_t()
        error = None
        got: list[Message] = []
        wait = Wait(cancel) if timeout_ms or cancel is not None else None
        try:
            with self._use() as ptr:
                status = _fetch_batch_until(
                    ptr,
                    topic_bytes,
                    _len(topic_bytes),
                    None if options is None else byref(options),
                    n,
                    timeout_ms,
                    None if wait is None else wait.token,
                    ctypes.cast(out, _DELIVERY_PP),
                    byref(count),
                )
                if status:
                    error = error_for(status, _last_error())
                elif count.value:
                    # Each handle owned first, so that all are freed whatever happens next.
                    got = _fetched(list(map(_Handle, out[: count.value])))
        finally:
            caught = None if wait is None else wait.end()
        if caught is not None:
            # Ctrl-C: the check cancelled the wait (CANCELLED, nothing taken). Should the call
            # have returned deliveries all the same, they are dropped with the Message objects
            # and come back after their ack deadline, as after a Ctrl-C right after the call.
            raise caught
        if error is not None:
            raise error
        return got

    def take_raw(
        self,
        topic: str,
        *,
        group: str | None = None,
        timeout: float | None = 0.0,
        cancel: Cancel | None = None,
    ) -> bytes | None:
        """Takes the next delivery of `group` (None: the group "default") on `topic` and acks it
        in the same step (brokk_broker_take: one call, and on SQLite one commit): returns its
        payload, the JSON text as bytes, whatever its size, or None if none came within
        `timeout` seconds (0: not at all; None: without limit). At most once: the message is
        gone from the group once this returns, whatever happens next. For consumers that keep no
        delivery open; listeners hear it dispatched, then processed. A wait yields to Ctrl-C
        (KeyboardInterrupt, nothing taken); ``cancel``: a ``Cancel`` whose ``cancel()`` ends it
        with ``CancelledError``, nothing taken."""
        if cancel is not None:
            return self._take_until(topic, group, _wait_ms("timeout", timeout), cancel)
        # A wait first looks without waiting, and only if nothing is there makes the call that
        # waits: that one needs a token (on the main thread), and brokk's waiting take costs
        # several times what this one does, which would slow a busy consumer's every take.
        timeout_ms = 0 if timeout == 0 and type(timeout) in (float, int) else _wait_ms("timeout", timeout)
        # The hot path of a taker (timeout 0, pynenc's retrieve): one C call with this thread's
        # request for the topic and group (brokk_broker_take_with, its timeout 0: no token, as
        # nothing waits), and the in-flight bracket of Owned inlined.
        key = topic if group is None else (topic, group)
        try:
            prepared = _tls.take_requests[key]
        except (AttributeError, KeyError, TypeError):  # TypeError: an unhashable topic or group
            prepared = self._new_take_request(key, topic, group, _TAKE_BUFFER)
        fields = prepared[1]
        calls = self._calls
        calls.append(None)  # the in-flight bracket of Owned._acquire/_unuse, inlined
        try:
            if self._release_pending:
                self._check_open()
            status = _take_with(self._address, prepared[0])
        finally:
            calls.pop()
            if self._release_pending and not calls:
                self._last_out()
        n = fields[_LENGTH_WORD] if _WORDS else fields.payload_len
        if status == 0:
            if n:
                return prepared[2][:n].tobytes()
            return self._take_until(topic, group, timeout_ms, None) if timeout_ms else None
        if status == _BUFFER_TOO_SMALL and n > prepared[3]:
            # Nothing was taken. This thread's buffer grows for next time (up to
            # _TAKE_BUFFER_KEEP), and one take_until takes the next message whatever its size:
            # that one, or, if another consumer took it meanwhile, the one after it.
            if n < _TAKE_BUFFER_KEEP:
                self._new_take_request(key, topic, group, n + 1)
            return self._take_until(topic, group, timeout_ms, None)
        raise error_for(status, _last_error())

    def _take_until(self, topic: Any, group: Any, timeout_ms: int, cancel: Cancel | None) -> bytes | None:
        """One brokk_broker_take_until: the payload, any size, in a buffer brokk allocates."""
        topic_bytes = _topic_bytes(topic)
        group_bytes = _bytes("group", group)
        out = POINTER(c_char)()
        length = c_size_t()
        error = payload = None
        wait = Wait(cancel) if timeout_ms or cancel is not None else None
        try:
            with self._use() as ptr:
                status = _take_until(
                    ptr,
                    topic_bytes,
                    _len(topic_bytes),
                    group_bytes,
                    _len(group_bytes),
                    timeout_ms,
                    None if wait is None else wait.token,
                    byref(out),
                    byref(length),
                )
                if status:
                    error = error_for(status, _last_error())
                elif out:
                    try:
                        payload = ctypes.string_at(out, length.value)
                    finally:
                        _string_free(out)
        finally:
            caught = None if wait is None else wait.end()
        if caught is not None:
            raise caught  # Ctrl-C: the check cancelled the wait (CANCELLED, nothing taken)
        if error is not None:
            raise error
        return payload

    @staticmethod
    def _new_take_request(key: Any, topic: str, group: str | None, size: int) -> tuple[Any, ...]:
        """A take request, cached for this thread under `key` (None: not cached)."""
        prepared = _take_request(topic, group, size)
        if key is not None and type(topic) is str and (group is None or type(group) is str):
            try:
                requests = _tls.take_requests
            except AttributeError:
                requests = _tls.take_requests = {}
            if len(requests) >= _MAX_REQUESTS:
                requests.clear()
            requests[key] = prepared
        return prepared

    def take(
        self,
        topic: str,
        *,
        group: str | None = None,
        timeout: float | None = 0.0,
        default: Any = None,
        cancel: Cancel | None = None,
    ) -> Any:
        """``take_raw``, with the payload parsed (json.loads); `default` if none came."""
        raw = self.take_raw(topic, group=group, timeout=timeout, cancel=cancel)
        return default if raw is None else _loads(raw)

    def fetch_many(
        self,
        topic: str,
        max: int,
        *,
        group: str | None = None,
        timeout: float | None = 0.0,
        ack_deadline: float | None = None,
        max_attempts: int = 0,
        dead_letter_topic: str | None = None,
        cancel: Cancel | None = None,
    ) -> list[Message]:
        """Takes up to `max` deliveries of `group` (None: the group "default") on `topic` in one
        call (brokk_broker_fetch_batch_until): waits up to `timeout` seconds for the first (0:
        not at all; None: without limit), then takes what is queued at that moment, highest
        priority first. Returns them in that order, [] if none came. Each awaits
        ``ack``/``nack`` by ``delivery_id``; ``ack_many`` acks a batch in one call. `max` must
        be at least 1 (0: ``InvalidArgumentError``, from the library). A wait yields to Ctrl-C
        (KeyboardInterrupt, nothing taken); ``cancel``: a ``Cancel`` whose ``cancel()`` ends it
        with ``CancelledError``, nothing taken."""
        n = _int("max", max, 0, _SIZE_MAX)
        timeout_ms = _wait_ms("timeout", timeout)
        if cancel is None and timeout_ms:
            # A wait first looks without waiting (as take_raw does, and for the same reason).
            got = self._fetch_until(topic, n, group, 0, ack_deadline, max_attempts, dead_letter_topic, None)
            if got:
                return got
        return self._fetch_until(
            topic, n, group, timeout_ms, ack_deadline, max_attempts, dead_letter_topic, cancel
        )

    def ack(self, delivery_id: int) -> None:
        """Acks a delivery awaiting an ack (manual-ack handler's, or fetched)."""
        with self._use() as ptr:
            check(_ack(ptr, _u64("delivery_id", delivery_id)))

    def ack_many(self, delivery_ids: Iterable[int]) -> int:
        """Acks every delivery in `delivery_ids`, in order, in one call (brokk_broker_ack_batch);
        returns how many were acked. A failing id does not stop the others: after trying them
        all, the first failure is raised (its message names the index and the id), with
        ``.acked`` set to how many were acked. ``ClosedError`` stops where the broker closed."""
        ids = delivery_ids if type(delivery_ids) is list else list(delivery_ids)
        n = len(ids)
        # The common case converted in bulk (array checks the range of each: OverflowError);
        # anything else goes through the per-id conversion, which raises what ack() raises.
        try:
            if bool in set(map(type, ids)):
                raise TypeError
            id_array = _u64_array("Q", ids)
        except (TypeError, OverflowError):
            id_array = _u64_array("Q", [_u64(f"delivery_ids[{k}]", i) for k, i in enumerate(ids)])
        address = id_array.buffer_info()[0] if n else None
        acked = c_size_t()
        with self._use() as ptr:
            status = _ack_batch(ptr, address, n, byref(acked))
            if status:
                error = error_for(status, _last_error())
                error.acked = acked.value
                raise error
        return acked.value

    def nack(
        self, delivery_id: int, requeue: bool = False, delay: float = 0.0, reason: str | None = None
    ) -> None:
        """Nacks a delivery awaiting an ack: requeued (no earlier than `delay` seconds from now)
        or given up (dead-lettered if its subscription or fetch named a topic)."""
        reason_bytes = _bytes("reason", reason)
        with self._use() as ptr:
            check(
                lib.brokk_broker_nack(
                    ptr,
                    _u64("delivery_id", delivery_id),
                    bool(requeue),
                    _ms("delay", delay),
                    reason_bytes,
                    _len(reason_bytes),
                )
            )

    def peek(self, topic: str, group: str | None = None, max: int = 10) -> list[Peeked]:
        """The next `max` deliveries (1 to 10 000) that a fetch of `group` (None: the group
        "default") on `topic` would get, in the order it would get them, without taking them:
        nothing is claimed, no attempt counted, no statistic or listener event. Deliveries in
        flight and requeues still waiting out their delay are left out. Nothing is created: a
        group that does not exist yet shows what the topic retains for its first named group
        ([] once it has one). `max` out of range:
        ``InvalidArgumentError``, from the library."""
        topic_bytes = _topic_bytes(topic)
        group_bytes = _bytes("group", group)
        n = _int("max", max, 0, _SIZE_MAX)
        result = POINTER(_ffi.brokk_peek_result)()
        with self._use() as ptr:
            check(
                lib.brokk_broker_peek(
                    ptr, topic_bytes, _len(topic_bytes), group_bytes, _len(group_bytes), n, byref(result)
                )
            )
        try:
            return _peek.read_all(result)
        finally:
            lib.brokk_peek_result_free(result)

    def count(self, topics: str | Iterable[str] | None = None) -> int:
        """Messages waiting on `topics` (one name, several, or None for all): retained ones plus
        deliveries queued in consumer groups."""
        keep: list = []
        array, n = _topics(topics, keep)
        out = c_uint64()
        with self._use() as ptr:
            check(lib.brokk_broker_count(ptr, array, n, byref(out)))
        return out.value

    def purge(self, topics: str | Iterable[str] | None = None) -> int:
        """Discards what ``count`` counts on `topics`; returns how many."""
        keep: list = []
        array, n = _topics(topics, keep)
        out = c_uint64()
        with self._use() as ptr:
            check(lib.brokk_broker_purge(ptr, array, n, byref(out)))
        return out.value

    def count_group(self, topic: str, group: str) -> int:
        """Ready deliveries of consumer group `group` on `topic`: what ``fetch`` of that group
        could take now, its share of ``count(topic)``. Deliveries in flight and requeues still
        waiting out their delay are left out. A group or topic that does not exist counts 0 and
        is not created."""
        topic_bytes = _topic_bytes(topic)
        group_bytes = _bytes("group", group)
        out = c_uint64()
        with self._use() as ptr:
            check(
                lib.brokk_broker_count_group(
                    ptr, topic_bytes, _len(topic_bytes), group_bytes, _len(group_bytes), byref(out)
                )
            )
        return out.value

    def purge_group(self, topic: str, group: str) -> int:
        """Discards what ``count_group`` counts, atomically; returns how many. Deliveries in
        flight (settled as usual), delayed requeues, other groups, retained messages and the
        group itself stay. A group that does not exist purges 0 and is not created."""
        topic_bytes = _topic_bytes(topic)
        group_bytes = _bytes("group", group)
        out = c_uint64()
        with self._use() as ptr:
            check(
                lib.brokk_broker_purge_group(
                    ptr, topic_bytes, _len(topic_bytes), group_bytes, _len(group_bytes), byref(out)
                )
            )
        return out.value

    # ---- listeners -----------------------------------------------------------------------------

    def add_listener(self, listener: Any) -> int:
        """Adds an observer: each of on_publish(message), on_dispatched(message),
        on_processed(message), on_failed(message, reason, requeued), on_subscribe(topic,
        subscription_id), on_unsubscribe(topic, subscription_id), on_topic_created(topic) that it
        has runs on brokk's listener thread, in event order. Returns the listener id."""
        table = _ffi.brokk_listener()
        for name, trampoline in _callbacks.LISTENER_CALLBACKS.items():
            if callable(getattr(listener, name, None)):
                setattr(table, name, trampoline)
        table.free_user_data = _callbacks.FREE
        listener_id = c_uint64()
        with self._use() as ptr:
            key = _callbacks.register(_callbacks.ListenerEntry(listener, self))
            table.user_data = key
            try:
                check(lib.brokk_broker_add_listener(ptr, byref(table), byref(listener_id)))
            except BaseException:
                _callbacks.unregister(key)  # a failed registration takes nothing
                raise
        self._listener_ids[id(listener)] = (listener, listener_id.value)
        return listener_id.value

    def remove_listener(self, listener: Any) -> None:
        """Removes a listener, given as the object added or its id."""
        if isinstance(listener, int) and not isinstance(listener, bool):
            listener_id = listener
            for key, (_, lid) in list(self._listener_ids.items()):
                if lid == listener_id:
                    self._listener_ids.pop(key, None)
        else:
            entry = self._listener_ids.pop(id(listener), None)
            listener_id = entry[1] if entry else 0  # 0 is never issued: UNKNOWN_LISTENER
        with self._use() as ptr:
            check(lib.brokk_broker_remove_listener(ptr, _u64("listener", listener_id)))

    # ---- operator log --------------------------------------------------------------------------

    def set_logger(self, logger: logging.Logger | None) -> None:
        """Sends this broker's log records (its store's included) to `logger` and its children
        per target ("brokk::redis" to ``logger.getChild("redis")``) instead of the "brokk"
        logger; None sends them back there. See brokk._log."""
        with self._use() as ptr:
            _log.set_broker_logger(ptr, self, logger)

    # ---- statistics ----------------------------------------------------------------------------

    def stats(self) -> Stats:
        """The broker's totals (brokk_stats)."""
        out = _ffi.brokk_stats()
        with self._use() as ptr:
            check(lib.brokk_broker_stats(ptr, byref(out)))
        return Stats(**{name: getattr(out, name) for name, _ in out._fields_})

    def stats_json(self) -> dict:
        """The JSON snapshot, per topic and broker-wide (docs/c-api.md, "Statistics"), decoded."""
        return json.loads(self._text(lib.brokk_broker_stats_json))

    def stats_prometheus(self) -> str:
        """The statistics in the Prometheus text exposition format 0.0.4, ready to serve from a
        ``/metrics`` endpoint (``Content-Type: text/plain; version=0.0.4``); metric names in
        docs/c-api.md, "Prometheus"."""
        return self._text(lib.brokk_broker_stats_prometheus).decode("utf-8")

    def store_view(self) -> dict:
        """Every topic the store holds, read from the store without changing anything: its
        retained messages and, per consumer group, the ready, delayed and in-flight deliveries (on
        SQLite and Redis every process's topics and groups, on memory this broker's), decoded
        from the JSON of docs/c-api.md, "Store view"."""
        return json.loads(self._text(lib.brokk_broker_store_view_json))

    def store_view_prometheus(self) -> str:
        """The store view as Prometheus gauges (``brokk_store_*``, named apart from the
        statistics' so that both can be served together; docs/c-api.md, "Store view")."""
        return self._text(lib.brokk_broker_store_view_prometheus).decode("utf-8")

    def _text(self, call) -> bytes:
        """The bytes of a string that `call` (broker, out, length) hands back for us to free."""
        out = POINTER(c_char)()
        length = c_size_t()
        with self._use() as ptr:
            check(call(ptr, byref(out), byref(length)))
        try:
            return ctypes.string_at(out, length.value)
        finally:
            lib.brokk_string_free(out)

    # ---- join and close ------------------------------------------------------------------------

    def join(self, timeout: float | None = None, *, cancel: Cancel | None = None) -> None:
        """Waits until nothing is queued, running or awaiting an ack and every listener event is
        delivered. Raises ``brokk.TimeoutError`` (``.remaining``) after `timeout` seconds
        (None: no limit). Yields to Ctrl-C (KeyboardInterrupt); ``cancel``: a ``Cancel`` whose
        ``cancel()`` ends the wait with ``CancelledError``."""
        timeout_ms = _wait_ms("timeout", timeout)
        remaining = c_uint64()
        error = None
        wait = Wait(cancel) if timeout_ms or cancel is not None else None
        try:
            with self._use() as ptr:
                status = lib.brokk_broker_join_until(
                    ptr, timeout_ms, None if wait is None else wait.token, byref(remaining)
                )
                if status:
                    error = error_for(status, _last_error())
        finally:
            caught = None if wait is None else wait.end()
        if caught is not None:
            raise caught  # Ctrl-C: the check cancelled the wait
        if isinstance(error, TimeoutError):
            error.remaining = remaining.value
        if error is not None:
            raise error

    def close(self, timeout: float | None = None, force: bool = False) -> CloseReport | None:
        """Closes the broker (publish and subscribe fail at once), waits up to `timeout` seconds
        (None: no limit) for what was published to be settled, drops the rest, then releases
        the handle: every later call raises ``ClosedError``. ``force`` drops everything at once.
        Raises ``brokk.TimeoutError`` (``.remaining``, ``.report``) if time ran out; the broker is
        closed all the same. Idempotent: a second call returns the first one's report.

        After a graceful close, releasing runs brokk_broker_free, which waits for the handlers
        and listeners running at that moment; close waits for that within the same `timeout`,
        and past it lets the release finish on its own thread, so a stuck handler cannot make
        close overrun its timeout. After a forced close, or one whose time ran out, releasing
        runs brokk_broker_release, which waits for nothing: close returns at once, and handlers
        still running (a forced close does not stop them) finish on brokk's threads, where the
        library then runs their finalisers. Interpreter exit waits for those, up to its bound.

        The close itself runs on a helper thread while the caller waits for it, so Ctrl-C
        interrupts the caller; the close goes on (at most `timeout`) and releases the handle
        when it ends. From inside a handler or listener only a forced close is allowed
        (``WouldDeadlockError``)."""
        timeout_ms = _wait_ms("timeout", timeout)
        deadline = None if timeout_ms == _ffi.BROKK_WAIT_FOREVER else time.monotonic() + timeout_ms / 1000
        if self._fork_state is not None:
            # The parent's broker in a forked child, never used here: nothing of it is this
            # process's to close. It is closed in the child from now on; the parent's goes on.
            self._fork_state = None
            self._close_started = True
            self._close_finished.set()
            self._release(detach=True)  # drops the pointer (a child's copy is never freed)
            return None
        inside = _callbacks.in_callback()
        with self._cond:
            # Another thread's close is under way: wait for its outcome (it may fail with
            # WOULD_DEADLOCK and leave the broker open, and then this one closes it).
            while self._close_started and not self._close_finished.is_set():
                if inside:
                    return None  # a brokk thread must not wait for the close it may hold up
                self._cond.wait()  # _run_close notifies; Ctrl-C interrupts it (POSIX)
            if self._close_finished.is_set():
                return self._close_report
            self._close_started = True
        if force or timeout_ms <= _INLINE_CLOSE_MS or inside:
            report, error = self._run_close(timeout_ms, force)
        else:
            outcome: list = []
            done = threading.Event()

            def closer() -> None:
                outcome.extend(self._run_close(timeout_ms, force))
                done.set()

            # Not a daemon: interpreter exit waits for a close in progress to finish.
            threading.Thread(target=closer, name="brokk-close").start()
            done.wait()
            report, error = outcome
        if not inside and self._close_finished.is_set():
            _wait_until(self._freed, deadline)
        if error is not None:
            raise error
        return report

    def _run_close(self, timeout_ms: int, force: bool) -> tuple[CloseReport | None, BaseException | None]:
        """One brokk_broker_close. If it closed the broker (OK, or TIMEOUT: closed all the same),
        the handle is released; if it changed nothing (WOULD_DEADLOCK, ...), a later close may
        try again."""
        out = _ffi.brokk_close_report()
        error: BaseException | None = None
        try:
            with self._use() as ptr:
                status = lib.brokk_broker_close(ptr, timeout_ms, bool(force), byref(out))
                if status != _ffi.BROKK_STATUS_OK:
                    error = error_for(status, _ffi.last_error())
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            error = exc
        if error is None or isinstance(error, (TimeoutError, ClosedError)):
            report = CloseReport(out.remaining, out.dropped, out.retained_discarded)
            if isinstance(error, ClosedError):
                report, error = self._close_report, None  # closed already: nothing to report
            elif isinstance(error, TimeoutError):
                error.remaining = out.remaining
                error.report = report
            self._close_report = report
            # close() waits for the release, within its timeout. Past a forced close or a
            # timeout, handlers may still run (or be stuck): release without waiting for them.
            self._release(background=True, detach=force or isinstance(error, TimeoutError))
            self._listener_ids.clear()  # the listeners are gone with the broker
            with self._cond:
                self._close_finished.set()
                self._cond.notify_all()
            return report, error
        with self._cond:
            self._close_started = False
            self._cond.notify_all()
        return None, error

    #: How long leaving ``with`` waits for what was published to be settled, in seconds (None:
    #: without limit). Past it the rest is dropped and ``brokk.TimeoutError`` raised, so that a
    #: handler that never returns cannot hang the ``with`` statement. Set it per broker.
    exit_timeout: float | None = 30.0

    def __exit__(self, exc_type: Any, *exc: object) -> None:
        """Leaving ``with`` closes: gracefully, for up to ``exit_timeout`` seconds, on a normal
        exit; with force when an exception is on its way out."""
        self.close(timeout=self.exit_timeout, force=exc_type is not None)

    def _close_at_exit(self, deadline: float) -> None:
        try:
            self.close(timeout=max(0.0, deadline - time.monotonic()), force=True)
        except BaseException:  # noqa: BLE001
            pass
        # Let calls in flight on other threads see CLOSED and return (the close wakes their
        # waits), then release (brokk_broker_release: the teardown goes on on brokk's threads; _close_all
        # waits for it).
        self._release(wait=max(0.0, deadline - time.monotonic()), detach=True)


_SHARED_SCHEMES = ("sqlite", "redis", "redis+cluster", "redis+sentinel", "rediss", "rediss+sentinel")


def _is_shared(url: Any) -> bool:
    """True for a backend that processes share (a forked child reopens the URL)."""
    if isinstance(url, bytes):
        url = url.decode("utf-8", "replace")
    if not isinstance(url, str):
        return False  # None: memory://
    return url.split("://", 1)[0].lower() in _SHARED_SCHEMES


def _after_fork_in_child() -> None:
    # The child has only the forking thread: every lock another thread held at the fork stays
    # held, and every broker the parent made is the parent's (see Broker._inherit_at_fork).
    _callbacks._lock = threading.Lock()
    for broker in list(_live):
        try:
            broker._inherit_at_fork()
        except BaseException:  # noqa: BLE001 - an at-fork hook must not fail the fork
            pass


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _wait_until(event: threading.Event, deadline: float | None) -> bool:
    """Waits for `event` until `deadline` (None: no limit). One wait, no slices: on POSIX a
    signal interrupts a lock's wait in Python 3, so Ctrl-C interrupts it (its handler runs, and
    KeyboardInterrupt comes out of the wait; tests/test_lifecycle.py checks it for close)."""
    return event.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))


@atexit.register
def _close_all() -> None:
    """Brokers left open at exit are closed with force and released before Python finalises;
    then the exit waits, up to _EXIT_WAIT_SECONDS in all, for the teardown of this process's
    brokers, those closed earlier with force included: until every finaliser has run and every
    brokk thread has given back its thread state (handlers that are finishing, finalisers and
    thread exits still need the interpreter). So no brokk thread calls into a finalising
    interpreter, unless a handler is stuck past the bound."""
    deadline = time.monotonic() + _EXIT_WAIT_SECONDS
    pid = os.getpid()
    for broker in list(_live):
        if broker._teardown.pid == pid:  # not a copy a fork inherited: its threads are elsewhere
            broker._close_at_exit(deadline)
    while _callbacks.finalisers_pending() or _threadstate.pinned_threads():
        if time.monotonic() >= deadline:
            return
        time.sleep(0.005)


def version() -> str:
    """brokk_version(): the library's "MAJOR.MINOR.PATCH"."""
    return lib.brokk_version().decode("ascii")


def version_number() -> int:
    return lib.brokk_version_number()


def abi_version() -> int:
    return lib.brokk_abi_version()
