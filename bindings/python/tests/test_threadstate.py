"""One Python thread state per brokk thread (brokk/_threadstate.py): kept between callbacks, the
GIL free between them, released when the thread exits, and a clean interpreter exit."""

from __future__ import annotations

import ctypes
import sys
import threading

import pytest
from conftest import T, run_python

import brokk
from brokk import _threadstate

pinning = pytest.mark.skipif(
    _threadstate._register_exit is None, reason="no thread-exit hook here: nothing is pinned"
)


def _thread_states() -> int:
    """How many thread states the interpreter has (PyInterpreterState_ThreadHead / _Next)."""
    api = ctypes.pythonapi
    get = api["PyInterpreterState_Get"]
    get.restype = ctypes.c_void_p
    head = api["PyInterpreterState_ThreadHead"]
    head.restype, head.argtypes = ctypes.c_void_p, [ctypes.c_void_p]
    nxt = api["PyThreadState_Next"]
    nxt.restype, nxt.argtypes = ctypes.c_void_p, [ctypes.c_void_p]
    n, ts = 0, head(get())
    while ts:
        n, ts = n + 1, nxt(ts)
    return n


@pinning
def test_a_worker_keeps_its_thread_state_between_callbacks(broker):
    local = threading.local()
    seen = []

    def handler(msg):
        local.calls = getattr(local, "calls", 0) + 1
        seen.append((threading.get_ident(), local.calls, _threadstate.pinned()))

    broker.subscribe("pin", handler)
    for i in range(50):
        broker.publish("pin", i)
    broker.join(T(10))
    assert len(seen) == 50 and all(pinned for _, _, pinned in seen)
    # Per thread, the thread-local count goes 1, 2, 3...: the storage survived every callback.
    by_thread: dict[int, list[int]] = {}
    for ident, calls, _ in seen:
        by_thread.setdefault(ident, []).append(calls)
    for counts in by_thread.values():
        assert counts == list(range(1, len(counts) + 1))
    assert not _threadstate.pinned()  # Python's own threads are left alone


@pinning
def test_threads_seen_by_threading_are_still_pinned():
    """A callback that calls threading.current_thread() (logging does) leaves a _DummyThread in
    threading._active, which outlives the brokk thread; its ident may come back for a later
    broker's thread, which must still be pinned."""
    for _ in range(3):
        b = brokk.Broker(workers=2)
        seen = []

        def handler(msg, seen=seen):
            threading.current_thread()
            seen.append(_threadstate.pinned())

        b.subscribe("dummy", handler)
        for i in range(10):
            b.publish("dummy", i)
        b.join(T(10))
        b.close()
        assert seen == [True] * 10


@pinning
def test_the_gil_is_free_between_callbacks(broker):
    """After the workers have pinned their thread states and gone idle, Python threads run pure
    Python code (no C call that would release the GIL) to completion: no worker sits on the GIL."""
    broker.subscribe("idle", lambda m: None)
    for i in range(20):
        broker.publish("idle", i)
    broker.join(T(10))
    results = []

    def spin():
        n = 0
        for _ in range(2_000_000):
            n += 1
        results.append(n)

    threads = [threading.Thread(target=spin) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(T(30))
    assert results == [2_000_000, 2_000_000]


@pinning
def test_a_publisher_is_not_starved_by_busy_handlers(broker):
    """Handlers that take the GIL for every delivery and a publisher that needs it for every
    publish both progress: the GIL is handed back after every callback."""
    count = [0]
    lock = threading.Lock()

    def handler(msg):
        # Two workers run this at once: `+=` on a shared cell may lose an update between its
        # read and its write, so it counts under a lock.
        with lock:
            count[0] += msg.payload["n"] >= 0

    broker.subscribe("busy", handler, concurrency=2)
    n = 20_000
    for i in range(n):
        broker.publish("busy", {"n": i})
    broker.join(T(60))
    assert count[0] == n


@pinning
def test_thread_states_are_released_when_brokers_are_freed():
    """Each worker gives its thread state back when it exits (brokk_broker_free joins them):
    brokers created and freed in a loop leave no thread states behind."""

    def cycle():
        b = brokk.Broker(workers=2)
        b.subscribe("x", lambda m: None, concurrency=2)
        b.add_listener(type("L", (), {"on_processed": lambda self, m: None})())
        for i in range(20):
            b.publish("x", i)
        b.join(T(10))
        b.close()

    cycle()
    before = _thread_states()
    for _ in range(10):
        cycle()
    assert _thread_states() <= before


EXIT_BUSY = r"""
import threading, brokk
b = brokk.Broker(workers=2)
done = threading.Event()
def handler(m):
    if m.payload == 5000:
        done.set()
b.subscribe("t", handler, concurrency=2)
class L:
    def on_processed(self, m):
        pass
b.add_listener(L())
def publisher():
    i = 0
    while True:
        try:
            b.publish("t", i)
        except brokk.BrokkError:
            return
        i += 1
threading.Thread(target=publisher, daemon=True).start()
done.wait(30)
print("exiting while handlers run", flush=True)
"""

EXIT_IDLE = r"""
import brokk
b = brokk.Broker(workers=2)
b.subscribe("t", lambda m: None)
for i in range(100):
    b.publish("t", i)
b.join(10)
print("exiting with idle pinned workers", flush=True)
"""


@pytest.mark.parametrize("script", [EXIT_BUSY, EXIT_IDLE], ids=["busy", "idle"])
def test_exit_with_pinned_workers_neither_hangs_nor_crashes(script):
    result = run_python(script, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "exiting" in result.stdout
    assert "Fatal Python error" not in result.stderr and "Segmentation" not in result.stderr
    assert "Traceback" not in result.stderr, result.stderr


def test_the_interpreter_is_the_one_the_suite_runs_on():
    # The suite runs on 3.11 (make test-python) and on 3.12 (see bindings/python/README.md).
    assert sys.version_info >= (3, 10)
