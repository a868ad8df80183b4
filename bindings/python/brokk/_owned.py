"""The base of every Python object that owns one brokk pointer (after wasmtime-py's
``_managed.py``): ``close()`` is idempotent, ``with`` closes, and ``__del__`` is only a net.

Every call that uses the pointer brackets itself with ``_use()``, which counts it as in flight.
The C free runs once no call is in flight: at once if none is, otherwise when the last one
ends. So a free never races a call on another thread, and a thread never waits for its own call.

The bracket takes no lock: it is on every call, and two lock round trips cost more than a
short C call. A call appends to ``_calls`` and then reads ``_release_pending``; a release sets
``_release_pending`` and then reads ``_calls``. Each of those is one operation under the GIL, so
whichever comes second sees the other: a call that started before the release is in ``_calls``
(the release leaves the free to it), and a call that starts after sees the flag and raises.
Whoever frees takes the pointer under ``_lock``, so it is freed once.

Free-threaded CPython (3.13t) has no GIL to put those two steps in one order: its per-object
locks do not keep a store to one object (the flag) before a load from another (the list), so a
call and a release could each miss the other and the free race the call. There (or with
BROKK_PYTHON_LOCKED_BRACKET=1, which the tests use to run this path under the GIL) the call's
append and the release's flag are each taken under ``_lock`` (``_LockedCalls``): whichever takes
it second sees the other. The rest of the bracket is unchanged, as ``_take_ptr`` already frees
once whoever else sees the release last.

A free may wait (brokk_broker_free waits for the handlers running at that moment), so it runs
on a thread of its own whenever the thread asking for it must not wait: a brokk thread inside a
callback, a thread whose call happened to be the last in flight, or a close that has a deadline
to keep. ``_freed`` tells when it has returned.

A release that must not wait at all (``detach``: a forced close, a close whose time ran out,
``__del__``) calls ``_release_fn`` instead where the class has one (brokk_broker_release): it
returns at once, on any thread, and the library finishes the teardown, finalisers included, on
a thread of its own once the callbacks running at that moment return. The registry keeps each
callable until its finaliser runs, and the trampolines live as long as the module, so a handler
that returns after that is safe; the exit hook in _broker.py waits for those finalisers.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from . import _callbacks


# Whether the bracket must lock (see the module docstring): no GIL in this interpreter.
LOCKED_BRACKET = (not getattr(sys, "_is_gil_enabled", lambda: True)()) or (
    os.environ.get("BROKK_PYTHON_LOCKED_BRACKET") == "1"
)


class _LockedCalls(list):
    """The calls in flight of one owner, appended under the owner's lock."""

    __slots__ = ("_owner",)

    def __init__(self, owner: Owned):
        super().__init__()
        self._owner = owner

    def append(self, item: None) -> None:
        with self._owner._lock:
            list.append(self, item)


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
    # Releases without waiting for anything (see the module docstring); None: _free_fn always.
    _release_fn: Callable[[Any], None] | None = None

    def __init__(self, ptr: Any):
        self._ptr = ptr
        # One item per call in flight (see the module docstring).
        self._calls: list[None] = _LockedCalls(self) if LOCKED_BRACKET else []
        self._release_pending = False
        self._detach = False  # release with _release_fn (set before _release_pending)
        self._pid = os.getpid()  # a forked child's copy is not released: its threads are not there
        # Taken only to take the pointer for its free, and by a release that waits for the calls
        # in flight (_cond, notified by the last of them).
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
        self._calls.append(None)
        if self._release_pending:
            self._unuse()
            raise self._closed_error()
        return self._ptr

    def _unuse(self) -> None:
        calls = self._calls
        calls.pop()
        if self._release_pending and not calls:
            self._last_out()

    def _last_out(self) -> None:
        """The last call in flight ended with a release pending: frees, unless someone did."""
        ptr = self._take_ptr(notify=True)
        if ptr is not None:
            self._free(ptr, background=True)  # this thread only happened to be last

    def _take_ptr(self, notify: bool = False) -> Any:
        """The pointer, for its free, once (None to anyone after the first)."""
        with self._lock:
            ptr, self._ptr = self._ptr, None
            if notify:
                self._cond.notify_all()
        return ptr

    def _use(self) -> _Use:
        return _Use(self)

    def _release(self, wait: float = 0.0, background: bool = False, detach: bool = False) -> bool:
        """Frees the pointer now if no call is in flight, else leaves it to the last one.
        Idempotent. `background`: free on a thread of its own. `detach`: release with
        ``_release_fn``, which waits for nothing (the first release to ask decides). `wait`:
        wait up to that many seconds for the calls in flight and for the free, wherever it runs,
        to have returned. Returns whether it has."""
        deadline = time.monotonic() + wait
        if detach and not self._release_pending:
            self._detach = True
        if LOCKED_BRACKET:
            with self._lock:
                self._release_pending = True
        else:
            self._release_pending = True
        if self._calls and wait > 0:
            with self._cond:
                self._cond.wait_for(lambda: not self._calls or self._ptr is None, timeout=wait)
        if not self._calls:
            ptr = self._take_ptr()
            if ptr is not None:
                self._free(ptr, background)
        if wait > 0:
            self._freed.wait(max(0.0, deadline - time.monotonic()))
        return self._freed.is_set()

    def _free(self, ptr: Any, background: bool = False) -> None:
        if self._detach and self._release_fn is not None:
            self._free_now(ptr)  # returns at once, on any thread
            return
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
        cls = type(self)
        try:
            if self._pid != os.getpid():
                pass  # a copy a fork inherited: the parent releases the real one
            elif self._detach and cls._release_fn is not None:
                cls._release_fn(ptr)
            else:
                cls._free_fn(ptr)
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
            # Never waits: the collector may run this on any thread, a handler's included.
            self._release(detach=True)
        except BaseException:  # noqa: BLE001 - a net: nothing useful to do at collection time
            pass
