"""One Python thread state per brokk thread, kept from its first callback until the thread exits.

Why. brokk's workers, its listener thread and its timer thread are not Python threads. ctypes
runs every callback between PyGILState_Ensure and PyGILState_Release. On a thread without a
thread state, Ensure creates one, and Release, its counter back at 0, destroys it: every callback
paid for a new PyThreadState, its first frame-stack chunk and an empty threading.local storage,
about 20 µs, most of a callback's cost (docs/bench/analysis.md).

How (``pin``). On a brokk thread's first callback, the trampoline calls PyGILState_Ensure once
more and never releases it. That Ensure finds the thread state ctypes just made, with the GIL
held, so it only raises the thread state's gilstate counter from 1 to 2 and returns LOCKED. When
the callback returns, ctypes' Release takes the counter back to 1: not 0, so the thread state is
kept. And because ctypes' own Ensure returned UNLOCKED, that Release still releases the GIL
(PyEval_SaveThread). So between callbacks the thread holds a detached thread state and not the
GIL: publishers and every other Python thread run as before. Each later callback's Ensure finds
the thread state (counter 1 -> 2, PyEval_RestoreThread takes the GIL), its Release detaches it
again (2 -> 1, GIL released). Nothing is allocated, and threading.local values survive from one
callback to the next. This relies only on the documented PyGILState contract: calls nest, and
each Release undoes exactly what its own Ensure did.
tests/test_threadstate.py checks that the GIL is free between callbacks, that thread-locals
persist, that no thread state outlives its thread, and that exiting with live brokers neither
hangs nor crashes; the suite runs on 3.11 and 3.12.

Releasing (``_on_thread_exit``). A kept thread state must be given back by its own thread
before that thread ends, or it leaks until interpreter exit: measured, 18 KiB per broker created
and closed (a PyThreadState, its frame chunk and thread-local storage for each of its three
threads), so a program that creates brokers in a loop would grow without bound. So ``pin`` also
registers ``_on_thread_exit`` with glibc's __cxa_thread_atexit_impl, the hook behind C++
thread_local destructors, which runs when the thread exits and, unlike a pthread-key destructor,
before glibc clears the thread's pthread keys, one of which holds the thread's thread state for
PyGILState. The hook is a ctypes callback, so it runs between ctypes' Ensure (which finds the
pinned thread state: counter 1 -> 2) and Release. It calls PyGILState_Release(LOCKED) for the
pinned Ensure (2 -> 1; LOCKED: the GIL stays with the callback), and ctypes' Release then takes
the counter to 0 and deletes the thread state, on its own thread, as CPython does at the end of
the threads it creates. brokk_broker_free joins the broker's threads, so when it returns their
thread states are gone (tests/test_threadstate.py counts them). Where that hook does not exist
(not glibc), nothing is pinned: callbacks work as before, only slower.

Which threads. Only threads Python did not create. A Python thread (the main thread, any
threading.Thread: those in threading._active) has a permanent thread state already, and may run
a trampoline itself (a finaliser that runs while it calls unsubscribe or close). A brokk thread
may be in threading._active too, as a _DummyThread, if a callback called
threading.current_thread() (logging does); such an entry outlives its thread, and its ident can
come back for a new one, so a _DummyThread does not count as a Python thread.

Shutdown. brokk._broker's atexit hook closes and releases every broker before Python
finalises, and waits (``pinned_threads``) until every pinned thread has exited, and given back
its thread state; that includes the threads of brokers released earlier without waiting
(brokk_broker_release), which exit on their own. A brokk thread still inside a Python callback
at finalisation (a handler stuck past the exit wait) is in the same position as without pinning.
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading

_PyGILState_LOCKED = 0

# Fresh function objects (not the shared ctypes.pythonapi attributes, whose restype others may
# set). pythonapi is a PyDLL: these run with the GIL held, which both require.
_ensure = ctypes.pythonapi["PyGILState_Ensure"]
_ensure.restype = ctypes.c_int
_ensure.argtypes = []
_release = ctypes.pythonapi["PyGILState_Release"]
_release.restype = None
_release.argtypes = [ctypes.c_int]

_state = threading.local()  # .pinned: this thread holds the extra Ensure
# How many threads hold a pinned thread state now (for the exit wait in _broker.py: a thread
# that still has to give its back needs the interpreter).
_pinned_count = 0
_count_lock = threading.Lock()
_python_threads: dict = getattr(threading, "_active", {})
_DummyThread: type = getattr(threading, "_DummyThread", type(None))


def _on_thread_exit(_obj) -> None:
    # Runs on the exiting thread, inside ctypes' Ensure/Release, which found the pinned thread
    # state: give back the pinned Ensure. The thread-local lives in that thread state; a thread
    # state ctypes made afresh would not have `pinned`.
    global _pinned_count
    if getattr(_state, "pinned", False):
        _state.pinned = False
        with _count_lock:
            _pinned_count -= 1
        _release(_PyGILState_LOCKED)


def _thread_exit_hook():
    """A function that registers ``_on_thread_exit`` to run when the calling thread exits,
    before its pthread keys are cleared (CPython keeps the thread's thread state under one);
    None where there is none (not glibc)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        register = ctypes.CDLL(None).__cxa_thread_atexit_impl  # glibc 2.18+
    except (OSError, AttributeError):
        return None
    destructor_t = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
    register.argtypes = [destructor_t, ctypes.c_void_p, ctypes.c_void_p]
    register.restype = ctypes.c_int
    destructor = destructor_t(_on_thread_exit)
    # A registered destructor must never be freed, not even when this module is torn down at
    # interpreter exit: one reference is leaked on purpose.
    ctypes.pythonapi.Py_IncRef(ctypes.py_object(destructor))
    return lambda: register(destructor, None, None) == 0


_register_exit = _thread_exit_hook()


def pin() -> None:
    """Keeps this thread's thread state alive until the thread exits (see the module docstring).
    Call it, with the GIL held, on a thread's first callback; Python's own threads are left as
    they are."""
    if _register_exit is None or getattr(_state, "pinned", False):
        return
    known = _python_threads.get(threading.get_ident())
    if known is not None and not isinstance(known, _DummyThread):
        return  # a thread Python started (a _DummyThread stands for a foreign one)
    global _pinned_count
    if not _register_exit():  # without the exit hook, do not pin
        return
    _ensure()
    _state.pinned = True
    with _count_lock:
        _pinned_count += 1


def _after_fork_in_child() -> None:
    # Only the forking thread lives on in the child (and _count_lock may have been held by
    # another thread at the fork).
    global _pinned_count, _count_lock
    _count_lock = threading.Lock()
    _pinned_count = 1 if pinned() else 0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def pinned_threads() -> int:
    """How many threads hold a pinned thread state now (each gives it back as it exits)."""
    return _pinned_count


def pinned() -> bool:
    """True on a thread whose thread state ``pin`` keeps (for tests)."""
    return getattr(_state, "pinned", False)
