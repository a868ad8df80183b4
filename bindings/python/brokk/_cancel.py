"""Cancellation of brokk's blocking calls (brokk_cancel), and Ctrl-C while they wait.

Every wait (fetch, fetch_many, take, take_raw, join) is one C call with the whole timeout. CPython
runs signal handlers only on the main thread, between bytecodes: never while that thread sits in
a C call. So a call that waits on the main thread is given a checked token of its own
(brokk_cancel_new_checked): brokk calls it back on that thread at least every ``CHECK_MS`` while
it waits (and once before), with the GIL taken back by ctypes (``lib`` is a CDLL, which released
it for the call). The check runs the pending handlers; if one raised (KeyboardInterrupt), it
keeps the exception and cancels the wait, and the binding raises it once the call has returned
(CANCELLED: nothing was taken). Off the main thread no handler can run, so a call there gets no
check: no token, or the caller's ``Cancel``.

The check is a generator's ``send``, not a function: the interpreter runs pending handlers as a
Python frame starts, before its first statement, so a function's ``try`` could not catch what a
handler raises, and an exception must never leave a ctypes callback (ctypes prints it and
returns False: Ctrl-C would be lost). ``send`` is C, and resumes the generator inside its
``try``, where the handlers then run (and PyErr_CheckSignals runs any left).

A ``Cancel`` is a plain token (brokk_cancel_new), passed as it is off the main thread. On the
main thread the call still needs its checked token for Ctrl-C, and a call takes one token: so
the checked token is attached to the ``Cancel`` for the call, and ``cancel()`` triggers it too.
"""

from __future__ import annotations

import ctypes
import threading
from ctypes import POINTER, byref
from collections.abc import Iterator
from typing import Any

from . import _ffi
from ._errors import ClosedError, Status, check
from ._owned import Owned

lib = _ffi.lib

# How often a wait on the main thread looks for a signal: the slice the waits were cut into
# before brokk had tokens, so Ctrl-C is as prompt as it was.
CHECK_MS = 100

# pythonapi is a PyDLL: it keeps the GIL, and a -1 return with an exception set (a handler that
# raised) raises that exception from the call.
_check_signals = ctypes.pythonapi.PyErr_CheckSignals
_check_signals.restype = ctypes.c_int
_check_signals.argtypes = []


def _watch(caught: list[BaseException]) -> Iterator[bool]:
    """The check of one wait (primed, then sent to by brokk): False until a signal handler
    raises, then True ever after; the first exception is kept in `caught`."""
    while True:
        try:
            while not caught:
                yield False  # resumed here by the next check: pending handlers run here
                _check_signals()
            yield True
        except GeneratorExit:
            raise  # closed: end
        except BaseException as exc:  # noqa: BLE001 - raised by the call, once it has returned
            if not caught:
                caught.append(exc)


class Cancel(Owned):
    """A cancellation token for the waits of ``fetch``, ``fetch_many``, ``take``, ``take_raw`` and
    ``join``: pass it as ``cancel=``. ``cancel()``, from any thread, makes every call waiting on
    it raise ``CancelledError`` at once, having done nothing (nothing taken); so does every call
    given it afterwards, until ``reset()``. One token serves any number of calls, on any
    threads, one after another or at once. Ctrl-C still interrupts a wait on the main thread
    that was given a token (KeyboardInterrupt), and leaves the token as it was. Close it (or use
    ``with``) once no call uses it; a closed token raises ``ClosedError``."""

    _free_fn = staticmethod(lib.brokk_cancel_free)

    def __init__(self) -> None:
        out = POINTER(_ffi.brokk_cancel)()
        check(lib.brokk_cancel_new(byref(out)))
        super().__init__(out)
        # The checked tokens of main-thread calls given this one (see Wait), by address.
        self._attached: dict[int, Any] = {}

    def _closed_error(self) -> Exception:
        return ClosedError(Status.CLOSED, "the Cancel is closed")

    def cancel(self) -> None:
        """Cancels the token (brokk_cancel_trigger): calls waiting on it return now. Idempotent."""
        with self._use() as ptr, self._lock:
            check(lib.brokk_cancel_trigger(ptr))
            for token in self._attached.values():
                lib.brokk_cancel_trigger(token)

    def reset(self) -> None:
        """Makes a cancelled token usable again (brokk_cancel_reset). A call that the cancel
        already woke still raises ``CancelledError``."""
        with self._use() as ptr:
            check(lib.brokk_cancel_reset(ptr))

    @property
    def cancelled(self) -> bool:
        """Whether the token is cancelled."""
        with self._use() as ptr:
            return bool(lib.brokk_cancel_is_cancelled(ptr))

    def __repr__(self) -> str:
        state = "closed" if self.closed else "cancelled" if self.cancelled else "ready"
        return f"<brokk.Cancel {state}>"


class Wait:
    """The token of one call that may wait: on the main thread a checked token of its own
    (attached to the caller's ``Cancel`` if one was given), elsewhere the caller's ``Cancel`` or
    none. ``end()`` after the call, whatever happened."""

    __slots__ = ("token", "_own", "_cancel", "_caught", "_watch", "_check")

    def __init__(self, cancel: Cancel | None) -> None:
        if cancel is not None and not isinstance(cancel, Cancel):
            raise TypeError(f"cancel must be a brokk.Cancel, not {type(cancel).__name__}")
        self._own = None
        self._cancel = cancel
        if threading.current_thread() is not threading.main_thread():
            # No signal handler can run here: nothing to check. A Cancel is held in use for the
            # call, so that its close() leaves the free to the last call out.
            self.token = None if cancel is None else cancel._acquire()
            return
        self._caught: list[BaseException] = []
        self._watch = _watch(self._caught)
        next(self._watch)
        self._check = _ffi.brokk_cancel_check_cb(self._watch.send)  # lives until end()
        out = POINTER(_ffi.brokk_cancel)()
        check(lib.brokk_cancel_new_checked(self._check, None, CHECK_MS, byref(out)))
        self.token = self._own = out
        if cancel is not None:
            try:
                with cancel._use() as ptr, cancel._lock:
                    cancel._attached[ctypes.addressof(out.contents)] = out
                    if lib.brokk_cancel_is_cancelled(ptr):
                        lib.brokk_cancel_trigger(out)
            except BaseException:
                lib.brokk_cancel_free(out)
                raise

    def end(self) -> BaseException | None:
        """Releases the token; returns what its check caught during the call (Ctrl-C), if any."""
        cancel = self._cancel
        if self._own is None:
            if cancel is not None:
                cancel._unuse()
            return None
        if cancel is not None:
            with cancel._lock:
                cancel._attached.pop(ctypes.addressof(self._own.contents), None)
        lib.brokk_cancel_free(self._own)
        self._watch.close()
        return self._caught[0] if self._caught else None
