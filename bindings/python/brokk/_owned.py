"""The base of every Python object that owns one brokk pointer (after wasmtime-py's
``_managed.py``): ``close()`` is idempotent, ``with`` closes, and ``__del__`` is only a net.

Every call that uses the pointer brackets itself with ``_use()``, which counts it as in flight.
The C free runs once no call is in flight: at once if none is, otherwise when the last one
ends. So a free never races a call on another thread, and a thread never waits for its own call.
A free may wait (brokk_broker_free waits for the handlers running at that moment), so it runs
on a thread of its own whenever the thread asking for it must not wait: a brokk thread inside a
callback, a thread whose call happened to be the last in flight, or a close that has a deadline
to keep. ``_freed`` tells when it has returned.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from . import _callbacks


class _Use:
    __slots__ = ("_owner",)

    def __init__(self, owner: Owned):
        self._owner = owner

    def __enter__(self) -> Any:
        return self._owner._acquire()

    def __exit__(self, *exc: object) -> None:
        self._owner._unuse()


class Owned:
    """Owns ``_ptr``, released with ``_free_fn``; subclasses say what a released handle raises."""

    _free_fn: Callable[[Any], None]

    def __init__(self, ptr: Any):
        self._ptr = ptr
        self._users = 0
        self._release_pending = False
        # _lock is _cond's lock: holding one is holding the other. The per-call bracket takes the
        # bare lock (a C-level context manager), not the Condition's Python-level one.
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._freed = threading.Event()  # set once the C free has returned

    def _closed_error(self) -> Exception:
        raise NotImplementedError

    @property
    def closed(self) -> bool:
        """True once the handle is released or being released."""
        return self._ptr is None or self._release_pending

    def _acquire(self) -> Any:
        with self._lock:
            if self._ptr is None or self._release_pending:
                raise self._closed_error()
            self._users += 1
            return self._ptr

    def _unuse(self) -> None:
        ptr = None
        with self._lock:
            self._users -= 1
            # Only a pending release waits for the count to reach 0 (_release sets
            # _release_pending before it waits), so there is nothing to do otherwise.
            if self._users == 0 and self._release_pending:
                self._cond.notify_all()
                if self._ptr is not None:
                    ptr, self._ptr = self._ptr, None
        if ptr is not None:
            self._free(ptr, background=True)  # this thread only happened to be last

    def _use(self) -> _Use:
        return _Use(self)

    def _release(self, wait: float = 0.0, background: bool = False) -> bool:
        """Frees the pointer now if no call is in flight, else leaves it to the last one.
        Idempotent. `background`: free on a thread of its own. `wait`: wait up to that many
        seconds for the calls in flight and for the free, wherever it runs, to have returned.
        Returns whether it has."""
        deadline = time.monotonic() + wait
        ptr = None
        with self._cond:
            if self._ptr is not None:
                self._release_pending = True
                if wait > 0:
                    self._cond.wait_for(lambda: self._users == 0, timeout=wait)
                if self._users == 0 and self._ptr is not None:
                    ptr, self._ptr = self._ptr, None
        if ptr is not None:
            self._free(ptr, background)
        if wait > 0:
            self._freed.wait(max(0.0, deadline - time.monotonic()))
        return self._freed.is_set()

    def _free(self, ptr: Any, background: bool = False) -> None:
        if background or _callbacks.in_callback():
            # Not a daemon: interpreter exit waits for a free under way, so that no handler it
            # waits for runs into a finalising interpreter.
            try:
                threading.Thread(target=self._free_now, args=(ptr,), name="brokk-release").start()
                return
            except RuntimeError:
                # "can't create new thread at interpreter shutdown" (3.12+): the atexit hook is
                # waiting for this very free, so it runs here rather than not at all. (From
                # inside a callback brokk_broker_free returns at once and finishes the teardown
                # on a brokk thread.)
                pass
        self._free_now(ptr)

    def _free_now(self, ptr: Any) -> None:
        try:
            type(self)._free_fn(ptr)
        finally:
            self._freed.set()

    def close(self) -> None:
        self._release()

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self._release()
        except BaseException:  # noqa: BLE001 - a net: nothing useful to do at collection time
            pass
