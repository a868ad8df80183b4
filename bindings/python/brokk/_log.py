"""brokk's operator log (brokk_log_set_callback), routed to Python's ``logging``.

As a library should, brokk only emits: the application configures handlers and levels. Importing
brokk installs a process-wide callback that hands each record to the logger named after its
target, under ``logging.getLogger("brokk")``: "brokk::redis" goes to "brokk.redis",
"brokk::close" to "brokk.close", and so on. Levels map to logging's (TRACE is 5, below DEBUG).
``Broker.set_logger(logger)`` sends one broker's records to ``logger`` (and its children per
target) instead.

The callback takes every level and the logger filters (``isEnabledFor``), so that a level set
after import (``logging.basicConfig(level=logging.INFO)``) applies at once: brokk's records are
rare by design (outages, lapsed leases, dropped listener events, lock waits, close reports;
nothing per message), so crossing into Python for each costs little.

A record arrives on the brokk thread that saw the event (a worker, the listener thread, the
poller, or the thread inside a brokk call), with no brokk lock held; the trampolines take the
GIL, never raise into C, and keep a brokk thread's Python thread state like the other callbacks
(``_callbacks._inside``). At exit the process-wide callback is removed after the brokers are
closed (its atexit hook is registered before theirs), so no record reaches a finalising
interpreter.
"""

from __future__ import annotations

import atexit
import ctypes
import logging
import weakref
from ctypes import CFUNCTYPE, c_void_p
from typing import Any

from . import _callbacks, _ffi
from ._errors import check

TRACE = 5
"""The logging level of brokk's TRACE records (below DEBUG)."""

_LEVELS = {
    _ffi.BROKK_LOG_ERROR: logging.ERROR,
    _ffi.BROKK_LOG_WARN: logging.WARNING,
    _ffi.BROKK_LOG_INFO: logging.INFO,
    _ffi.BROKK_LOG_DEBUG: logging.DEBUG,
    _ffi.BROKK_LOG_TRACE: TRACE,
}

ROOT = logging.getLogger("brokk")


def _child(base: logging.Logger, target: str) -> logging.Logger:
    """The logger of `target` ("brokk::redis") under `base`: base.getChild("redis")."""
    _, _, part = target.partition("::")
    return base.getChild(part.replace("::", ".")) if part else base


def _forward(base: logging.Logger, level: int, target_addr: int, message_addr: int) -> None:
    py_level = _LEVELS.get(level, logging.ERROR)
    target = ctypes.string_at(target_addr).decode("utf-8", "replace")
    logger = _child(base, target)
    if logger.isEnabledFor(py_level):
        message = ctypes.string_at(message_addr).decode("utf-8", "replace")
        logger.log(py_level, "%s", message, extra={"brokk_target": target})


def _process_trampoline(user_data, level, target, message):
    try:
        with _callbacks._inside:
            _forward(ROOT, level, target, message)
    except BaseException:  # noqa: BLE001 - nothing may unwind into brokk
        pass


def _broker_trampoline(user_data, level, target, message):
    try:
        with _callbacks._inside:
            entry = _callbacks._lookup(user_data)
            if entry is not None:
                _forward(entry.logger, level, target, message)
    except BaseException:  # noqa: BLE001 - nothing may unwind into brokk
        pass


class LoggerEntry:
    """A broker's own logger, in the callback registry (released by FREE)."""

    __slots__ = ("logger", "owner", "teardown")

    def __init__(self, logger: logging.Logger, owner: Any):
        self.logger = logger
        self.owner = weakref.ref(owner)
        self.teardown = owner._teardown


# Created once, never collected (see _callbacks): plain addresses in, cast to the header's type.
_LOG_EVENT = CFUNCTYPE(None, c_void_p, _ffi.brokk_log_level, c_void_p, c_void_p)
_PROCESS_THUNK = _LOG_EVENT(_process_trampoline)
_BROKER_THUNK = _LOG_EVENT(_broker_trampoline)
PROCESS_CALLBACK = ctypes.cast(_PROCESS_THUNK, _ffi.brokk_log_cb)
BROKER_CALLBACK = ctypes.cast(_BROKER_THUNK, _ffi.brokk_log_cb)
_NO_CALLBACK = _ffi.brokk_log_cb()
_NO_FREE = _ffi.brokk_free_cb()


def route_to_logging(enabled: bool = True) -> None:
    """Routes the records of every broker without a logger of its own to ``logging`` (the
    default since import), or with ``enabled=False`` silences them."""
    callback = PROCESS_CALLBACK if enabled else _NO_CALLBACK
    check(_ffi.lib.brokk_log_set_callback(_ffi.BROKK_LOG_TRACE, callback, None, _NO_FREE))


def set_broker_logger(ptr: Any, owner: Any, logger: logging.Logger | None) -> None:
    """brokk_broker_set_log_callback for Broker.set_logger."""
    if logger is None:
        check(_ffi.lib.brokk_broker_set_log_callback(ptr, _ffi.BROKK_LOG_TRACE, _NO_CALLBACK, None, _NO_FREE))
        return
    if not isinstance(logger, logging.Logger):
        raise TypeError(f"logger must be a logging.Logger or None, not {type(logger).__name__}")
    key = _callbacks.register(LoggerEntry(logger, owner))
    try:
        status = _ffi.lib.brokk_broker_set_log_callback(
            ptr, _ffi.BROKK_LOG_TRACE, BROKER_CALLBACK, key, _callbacks.FREE
        )
        check(status)
    except BaseException:
        _callbacks.unregister(key)  # a failed registration takes nothing
        raise


route_to_logging()


@atexit.register
def _silence_at_exit() -> None:
    # Registered before brokk._broker's hook, so it runs after the brokers are closed.
    try:
        route_to_logging(False)
    except Exception:  # noqa: BLE001 - exit must go on
        pass
