"""Callback glue: the registry of Python callables and the C trampolines that reach them.

C never holds a Python object. Each registration puts its callable in ``_registry`` under a
fresh integer key, passes that integer as ``user_data``, and passes ``FREE`` as
``free_user_data``: brokk calls it exactly once after the last invocation, and it deletes the
entry. The CFUNCTYPE trampolines below are created once, at import, and live as long as the
module: a collected CFUNCTYPE object would crash the next callback.

A trampoline never lets an exception reach C. A handler's exception (any BaseException) becomes
a NACK whose failure reason is the exception's text, and is kept on the broker
(``last_handler_error``); a listener's is kept (``last_listener_error``) and logged.
"""

from __future__ import annotations

import itertools
import logging
import threading
import weakref
from collections.abc import Callable
from typing import Any

from . import _ffi
from ._message import Message, Requeue, Verdict

log = logging.getLogger("brokk")

_lock = threading.Lock()
_registry: dict[int, Any] = {}
_keys = itertools.count(1)  # 0 would arrive as NULL
_local = threading.local()

_ACK = int(Verdict.ACK)
_NACK = int(Verdict.NACK)
_REQUEUE = int(Verdict.REQUEUE)
_VERDICTS = frozenset(int(v) for v in Verdict)


def register(entry: Any) -> int:
    with _lock:
        key = next(_keys)
        _registry[key] = entry
    return key


def unregister(key: int) -> Any:
    """Takes an entry back after a failed registration (brokk never calls FREE for it)."""
    with _lock:
        return _registry.pop(key, None)


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


class _Inside:
    __slots__ = ()

    def __enter__(self) -> None:
        _local.depth = getattr(_local, "depth", 0) + 1

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

    __slots__ = ("handler", "owner")

    def __init__(self, handler: Callable[[Message], Any], owner: Any):
        self.handler = handler
        self.owner = weakref.ref(owner)

    def run(self, msg) -> int:
        try:
            message = Message._from_view(msg)
            result = self.handler(message)
            if result is None:
                return _ACK
            if isinstance(result, Requeue):
                return _requeue(msg, result)
            if isinstance(result, int) and not isinstance(result, bool) and result in _VERDICTS:
                return int(result)
            raise TypeError(
                f"handler returned {result!r}; expected None, a brokk.Verdict or brokk.requeue(...)"
            )
        except Requeue as r:
            return _requeue(msg, r)
        except BaseException as exc:  # noqa: BLE001 - nothing may unwind into brokk
            owner = self.owner()
            if owner is not None:
                owner._record_handler_error(exc)
            reason = _encode(exception_text(exc))
            _ffi.lib.brokk_message_set_failure_reason(msg, reason, len(reason))
            return _NACK


def _requeue(msg, r: Requeue) -> int:
    delay = r.delay or 0
    if delay > 0:
        _ffi.lib.brokk_message_set_requeue_delay(msg, max(1, round(delay * 1000)))
    if r.reason:
        reason = _encode(r.reason)
        _ffi.lib.brokk_message_set_failure_reason(msg, reason, len(reason))
    return _REQUEUE


class ListenerEntry:
    """A listener object: each on_* method it has receives the matching events."""

    __slots__ = ("listener", "owner")

    def __init__(self, listener: Any, owner: Any):
        self.listener = listener
        self.owner = weakref.ref(owner)

    def emit(self, name: str, make_args: Callable[[], tuple]) -> None:
        try:
            method = getattr(self.listener, name, None)
            if method is not None:
                method(*make_args())
        except BaseException as exc:  # noqa: BLE001 - nothing may unwind into brokk
            owner = self.owner()
            if owner is not None:
                owner._record_listener_error(exc)
            log.error("brokk: listener %r raised in %s", self.listener, name, exc_info=exc)


# ---- trampolines ---------------------------------------------------------------------------------


def _handler_trampoline(user_data, msg):
    try:
        with _inside:
            entry = _lookup(user_data)
            if entry is None:  # cannot happen: brokk frees only after the last call
                return _NACK
            return entry.run(msg)
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


def _text(ptr, length: int) -> str:
    return _ffi.ctypes.string_at(ptr, length).decode("utf-8") if length else ""


def _on_publish(user_data, msg):
    _listener_event(user_data, "on_publish", lambda: (Message._from_view(msg),))


def _on_dispatched(user_data, msg):
    _listener_event(user_data, "on_dispatched", lambda: (Message._from_view(msg),))


def _on_processed(user_data, msg):
    _listener_event(user_data, "on_processed", lambda: (Message._from_view(msg),))


def _on_failed(user_data, msg, reason, reason_len, requeued):
    _listener_event(
        user_data, "on_failed", lambda: (Message._from_view(msg), _text(reason, reason_len), bool(requeued))
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
            # Dropping the entry may run arbitrary __del__ code; it runs here, marked as inside
            # a brokk callback, so a Broker.__del__ it triggers does not wait for itself.
            del entry
    except BaseException:  # noqa: BLE001
        pass


# Created once, never collected (module globals).
HANDLER = _ffi.brokk_handler_cb(_handler_trampoline)
FREE = _ffi.brokk_free_cb(_free_trampoline)
LISTENER_CALLBACKS = {
    "on_publish": _ffi.brokk_message_event_cb(_on_publish),
    "on_dispatched": _ffi.brokk_message_event_cb(_on_dispatched),
    "on_processed": _ffi.brokk_message_event_cb(_on_processed),
    "on_failed": _ffi.brokk_failed_event_cb(_on_failed),
    "on_subscribe": _ffi.brokk_subscription_event_cb(_on_subscribe),
    "on_unsubscribe": _ffi.brokk_subscription_event_cb(_on_unsubscribe),
    "on_topic_created": _ffi.brokk_topic_event_cb(_on_topic_created),
}
