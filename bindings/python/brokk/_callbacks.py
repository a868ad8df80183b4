"""Callback glue: the registry of Python callables and the C trampolines that reach them.

C never holds a Python object. Each registration puts its callable in ``_registry`` under a
fresh integer key, passes that integer as ``user_data``, and passes ``FREE`` as
``free_user_data``: brokk calls it exactly once after the last invocation, and it deletes the
entry. The CFUNCTYPE trampolines below are created once, at import, and live as long as the
module: a collected CFUNCTYPE object would crash the next callback.

Each brokk thread keeps one Python thread state from its first callback on (``_threadstate``),
and the trampolines receive message views as plain addresses, copied with one
brokk_message_read each (``_message._read``): see the comments at the trampolines.

A trampoline never lets an exception reach C. A handler's exception (any BaseException but
``Requeue``) becomes a NACK whose failure reason is the exception's text, is kept on the broker
(``last_handler_error``) and is logged with its traceback on the logger "brokk" (naming the
handler, the topic and the delivery id); a listener's is kept (``last_listener_error``) and
logged the same way (naming the listener, the event and what it was about).
"""

from __future__ import annotations

import ctypes
import itertools
import logging
import os
import threading
import weakref
from collections.abc import Callable
from ctypes import CFUNCTYPE, c_bool, c_size_t, c_void_p
from typing import Any

from . import _ffi, _threadstate
from ._message import Message, Requeue, Verdict, _copy, _read

log = logging.getLogger("brokk")

_lock = threading.Lock()
_registry: dict[int, Any] = {}
_keys = itertools.count(1)  # 0 would arrive as NULL
_local = threading.local()

_ACK = int(Verdict.ACK)
_NACK = int(Verdict.NACK)
_REQUEUE = int(Verdict.REQUEUE)
_VERDICTS = frozenset(int(v) for v in Verdict)


class Teardown:
    """One broker's registrations whose free_user_data has not run yet (``live``), so that
    interpreter exit can wait for the finalisers of a broker released without waiting
    (brokk_broker_release). ``pid``: the process whose brokk threads run them (after a fork,
    the parent's)."""

    __slots__ = ("live", "pid", "__weakref__")

    def __init__(self) -> None:
        self.live = 0
        self.pid = os.getpid()


# Every Teardown that has live registrations or a live broker (entries and brokers hold them).
teardowns: weakref.WeakSet[Teardown] = weakref.WeakSet()


def finalisers_pending() -> int:
    """Registrations of this process's brokers whose finaliser has not run yet."""
    pid = os.getpid()
    with _lock:
        return sum(t.live for t in list(teardowns) if t.pid == pid)


def register(entry: Any) -> int:
    with _lock:
        key = next(_keys)
        _registry[key] = entry
        entry.teardown.live += 1
    return key


def unregister(key: int) -> Any:
    """Takes an entry back after a failed registration (brokk never calls FREE for it)."""
    with _lock:
        entry = _registry.pop(key, None)
        if entry is not None:
            entry.teardown.live -= 1
        return entry


def registry_size() -> int:
    with _lock:
        return len(_registry)


def _lookup(key: int | None) -> Any:
    # A plain dict read is atomic under the GIL.
    return _registry.get(key) if key else None


def in_callback() -> bool:
    """True on a thread that is running one of our trampolines (a brokk thread inside a handler,
    listener or finaliser): join and non-forced close would wait for themselves there."""
    return getattr(_local, "depth", 0) > 0


def _first_call_on_thread() -> None:
    """The first trampoline call on this thread (its thread-local storage is new): keep its
    thread state from now on, so that the next calls find it and ``_local`` persists."""
    _threadstate.pin()
    _local.depth = 1


class _Inside:
    """For the rare trampolines (listeners, finalisers); the handler trampoline inlines it."""

    __slots__ = ()

    def __enter__(self) -> None:
        try:
            _local.depth += 1
        except AttributeError:
            _first_call_on_thread()

    def __exit__(self, *exc: object) -> None:
        _local.depth -= 1


_inside = _Inside()


def exception_text(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _encode(text: str) -> bytes:
    return text.encode("utf-8", "replace")


# ---- entries -------------------------------------------------------------------------------------


class HandlerEntry:
    """A subscription's handler and the broker it reports errors to (weakly: an unreferenced
    broker may still be collected)."""

    __slots__ = ("handler", "owner", "teardown")

    def __init__(self, handler: Callable[[Message], Any], owner: Any):
        self.handler = handler
        self.owner = weakref.ref(owner)
        self.teardown: Teardown = owner._teardown

    def run(self, msg: int) -> int:
        """Runs the handler on the message view at address `msg` (valid during this call); the
        handler trampoline inlines this."""
        try:
            result = self.handler(_read(msg))
            if result is None:
                return _ACK
            return self.verdict(msg, result)
        except BaseException as exc:  # noqa: BLE001 - nothing may unwind into brokk
            return self.failed(msg, exc)

    def verdict(self, msg: int, result: Any) -> int:
        """The verdict for what the handler returned, other than None (ACK)."""
        if isinstance(result, Requeue):
            return _requeue(msg, result)
        if isinstance(result, int) and not isinstance(result, bool) and result in _VERDICTS:
            return int(result)
        raise TypeError(f"handler returned {result!r}; expected None, a brokk.Verdict or brokk.requeue(...)")

    def failed(self, msg: int, exc: BaseException) -> int:
        """The handler raised `exc` (or returned something that is no verdict)."""
        if isinstance(exc, Requeue):
            return _requeue(msg, exc)
        owner = self.owner()
        if owner is not None:
            owner._record_handler_error(exc)
        text = exception_text(exc)
        # A handler that reports its own errors (the Tadween facade's, which logs them as
        # Tadween does) says so with this attribute, so that each failure is logged once.
        if not getattr(self.handler, "_brokk_logs_its_errors", False):
            _log_handler_error(self.handler, msg, text, exc)
        reason = _encode(text)
        _ffi.lib.brokk_message_set_failure_reason(_view(msg), reason, len(reason))
        return _NACK


def _describe(obj: Any) -> str:
    """A callable or listener as a log message names it."""
    name = getattr(obj, "__qualname__", None)
    return name if isinstance(name, str) else repr(obj)


def _log_handler_error(handler: Any, msg: int, text: str, exc: BaseException) -> None:
    try:
        message = _read(msg)
        log.error(
            "brokk: handler %s failed on topic %r, delivery %d (attempt %d): %s",
            _describe(handler),
            message.topic,
            message.delivery_id,
            message.attempt,
            text,
            exc_info=exc,
        )
    except Exception:  # noqa: BLE001 - logging must not turn a NACK into something else
        pass


def _view(msg: int):
    """A message address as the ``const brokk_message *`` the library's functions take."""
    return ctypes.cast(msg, _MESSAGE_P)


_MESSAGE_P = ctypes.POINTER(_ffi.brokk_message)


def _requeue(msg: int, r: Requeue) -> int:
    delay = r.delay or 0
    if delay > 0:
        _ffi.lib.brokk_message_set_requeue_delay(_view(msg), max(1, round(delay * 1000)))
    if r.reason:
        reason = _encode(r.reason)
        _ffi.lib.brokk_message_set_failure_reason(_view(msg), reason, len(reason))
    return _REQUEUE


class ListenerEntry:
    """A listener object: each on_* method it has receives the matching events."""

    __slots__ = ("listener", "owner", "teardown")

    def __init__(self, listener: Any, owner: Any):
        self.listener = listener
        self.owner = weakref.ref(owner)
        self.teardown: Teardown = owner._teardown

    def emit(self, name: str, make_args: Callable[[], tuple]) -> None:
        args: tuple = ()
        try:
            method = getattr(self.listener, name, None)
            if method is not None:
                args = make_args()
                method(*args)
        except BaseException as exc:  # noqa: BLE001 - nothing may unwind into brokk
            owner = self.owner()
            if owner is not None:
                owner._record_listener_error(exc)
            try:
                log.error(
                    "brokk: listener %s failed in %s%s: %s",
                    _describe(self.listener),
                    name,
                    _event_text(args),
                    exception_text(exc),
                    exc_info=exc,
                )
            except Exception:  # noqa: BLE001
                pass


def _event_text(args: tuple) -> str:
    """What a listener event was about, for its error message."""
    if args and isinstance(args[0], Message):
        return f" on topic {args[0].topic!r}, delivery {args[0].delivery_id}"
    if args and isinstance(args[0], str):
        rest = f", subscription {args[1]}" if len(args) > 1 else ""
        return f" on topic {args[0]!r}{rest}"
    return ""


# ---- trampolines ---------------------------------------------------------------------------------


def _handler_trampoline(user_data, msg):
    # The hot path: one call per delivery, with `_inside` and HandlerEntry.run inlined.
    try:
        local = _local
        try:
            local.depth += 1
        except AttributeError:
            _first_call_on_thread()
        try:
            entry = _registry.get(user_data) if user_data else None
            if entry is None:  # cannot happen: brokk frees only after the last call
                return _NACK
            try:
                result = entry.handler(_read(msg))
                if result is None:
                    return _ACK
                return entry.verdict(msg, result)
            except BaseException as exc:  # noqa: BLE001 - nothing may unwind into brokk
                return entry.failed(msg, exc)
        finally:
            local.depth -= 1
    except BaseException:  # noqa: BLE001 - last resort, keep it trivial
        return _NACK


def _listener_event(user_data, name: str, make_args: Callable[[], tuple]) -> None:
    try:
        with _inside:
            entry = _lookup(user_data)
            if entry is not None:
                entry.emit(name, make_args)
    except BaseException:  # noqa: BLE001
        pass


def _text(ptr: int, length: int) -> str:
    return _copy(ptr, length).decode("utf-8") if length else ""


def _on_publish(user_data, msg):
    _listener_event(user_data, "on_publish", lambda: (_read(msg),))


def _on_dispatched(user_data, msg):
    _listener_event(user_data, "on_dispatched", lambda: (_read(msg),))


def _on_processed(user_data, msg):
    _listener_event(user_data, "on_processed", lambda: (_read(msg),))


def _on_failed(user_data, msg, reason, reason_len, requeued):
    _listener_event(
        user_data, "on_failed", lambda: (_read(msg), _text(reason, reason_len), bool(requeued))
    )


def _on_subscribe(user_data, topic, topic_len, subscription_id):
    _listener_event(user_data, "on_subscribe", lambda: (_text(topic, topic_len), subscription_id))


def _on_unsubscribe(user_data, topic, topic_len, subscription_id):
    _listener_event(user_data, "on_unsubscribe", lambda: (_text(topic, topic_len), subscription_id))


def _on_topic_created(user_data, topic, topic_len):
    _listener_event(user_data, "on_topic_created", lambda: (_text(topic, topic_len),))


def _free_trampoline(user_data):
    try:
        with _inside:
            with _lock:
                entry = _registry.pop(user_data, None) if user_data else None
                if entry is not None:
                    entry.teardown.live -= 1
            # Dropping the entry may run arbitrary __del__ code; it runs here, marked as inside
            # a brokk callback, so a Broker.__del__ it triggers does not wait for itself.
            del entry
    except BaseException:  # noqa: BLE001
        pass


# Created once, never collected (module globals).
#
# The trampolines are built on CFUNCTYPEs that declare every pointer as c_void_p, so ctypes hands
# them plain integers (a message address goes straight to brokk_message_read) instead of building
# a ctypes pointer object per call; each is then cast to the header's callback type, which has
# the same C signature (pointers are pointers), for the argtypes of subscribe and the fields of
# brokk_listener. A cast keeps the object it was made from alive.
_HANDLER_THUNK = CFUNCTYPE(_ffi.brokk_verdict, c_void_p, c_void_p)(_handler_trampoline)
_FREE_THUNK = CFUNCTYPE(None, c_void_p)(_free_trampoline)
_MESSAGE_EVENT = CFUNCTYPE(None, c_void_p, c_void_p)
_FAILED_EVENT = CFUNCTYPE(None, c_void_p, c_void_p, c_void_p, c_size_t, c_bool)
_SUBSCRIPTION_EVENT = CFUNCTYPE(None, c_void_p, c_void_p, c_size_t, _ffi.c_uint64)
_TOPIC_EVENT = CFUNCTYPE(None, c_void_p, c_void_p, c_size_t)
_LISTENER_THUNKS = {
    "on_publish": (_MESSAGE_EVENT(_on_publish), _ffi.brokk_message_event_cb),
    "on_dispatched": (_MESSAGE_EVENT(_on_dispatched), _ffi.brokk_message_event_cb),
    "on_processed": (_MESSAGE_EVENT(_on_processed), _ffi.brokk_message_event_cb),
    "on_failed": (_FAILED_EVENT(_on_failed), _ffi.brokk_failed_event_cb),
    "on_subscribe": (_SUBSCRIPTION_EVENT(_on_subscribe), _ffi.brokk_subscription_event_cb),
    "on_unsubscribe": (_SUBSCRIPTION_EVENT(_on_unsubscribe), _ffi.brokk_subscription_event_cb),
    "on_topic_created": (_TOPIC_EVENT(_on_topic_created), _ffi.brokk_topic_event_cb),
}

HANDLER = ctypes.cast(_HANDLER_THUNK, _ffi.brokk_handler_cb)
FREE = ctypes.cast(_FREE_THUNK, _ffi.brokk_free_cb)
LISTENER_CALLBACKS = {
    name: ctypes.cast(thunk, cb_type) for name, (thunk, cb_type) in _LISTENER_THUNKS.items()
}
