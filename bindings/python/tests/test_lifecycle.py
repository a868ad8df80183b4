"""join, close, free and the interpreter: the GIL is released while brokk waits, long waits
yield to Ctrl-C, close is idempotent and bounded, and a broker left open at exit does not crash
the interpreter."""

from __future__ import annotations

import ctypes
import gc
import os
import signal
import threading
import time

import pytest
from conftest import T, run_python, wait_for

import brokk
from brokk import _callbacks, _ffi


def test_gil_is_released_during_a_blocking_call(broker):
    """One C call that blocks for up to 30 s (no slicing): if it held the GIL, this thread could
    not publish the message it is waiting for, and it would return empty-handed."""
    result = {}
    entered = threading.Event()

    def raw_fetch():
        out = ctypes.POINTER(_ffi.brokk_delivery)()
        with broker._use() as ptr:
            entered.set()
            status = _ffi.lib.brokk_broker_fetch(ptr, b"gil", 3, None, int(T(30) * 1000), ctypes.byref(out))
        result["status"] = status
        if out:
            msg = brokk.Message._from_view(_ffi.lib.brokk_delivery_message(out))
            result["payload"] = msg.payload
            broker.ack(msg.delivery_id)
            _ffi.lib.brokk_delivery_free(out)

    thread = threading.Thread(target=raw_fetch)
    thread.start()
    assert entered.wait(T(10))
    spins = 0
    while spins < 100_000:  # pure Python work while the other thread sits in C
        spins += 1
    broker.publish("gil", {"spins": spins})
    thread.join(T(30))
    assert result == {"status": 0, "payload": {"spins": 100_000}}


def test_other_threads_progress_during_a_long_fetch(broker):
    got = {}
    thread = threading.Thread(target=lambda: got.setdefault("msg", broker.fetch("slow.topic", timeout=T(30))))
    thread.start()
    counter = 0
    for _ in range(1000):
        counter += 1
        time.sleep(0)
    broker.publish("slow.topic", counter)
    thread.join(T(30))
    assert got["msg"].payload == 1000
    broker.ack(got["msg"].delivery_id)


@pytest.fixture(autouse=True)
def _sigint_raises_keyboard_interrupt():
    """A shell starts background jobs with SIGINT ignored, and Python then leaves it ignored;
    these tests need Python's own handler, which raises KeyboardInterrupt."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def _interrupt_soon(delay: float = 0.2) -> threading.Timer:
    timer = threading.Timer(delay, os.kill, args=(os.getpid(), signal.SIGINT))
    timer.start()
    return timer


def _pending(broker: brokk.Broker) -> int:
    """Leaves one delivery awaiting an ack, so join and close cannot finish on their own."""
    broker.publish("pending", 1)
    msg = broker.fetch("pending", timeout=T(10))
    return msg.delivery_id


def test_ctrl_c_interrupts_a_join_without_timeout(broker):
    delivery = _pending(broker)
    # A net, not a timing assertion: should the interrupt be lost, the ack ends the join.
    safety = threading.Timer(T(60), lambda: broker.ack(delivery))
    safety.start()
    try:
        timer = _interrupt_soon()
        started = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            broker.join()
        assert time.monotonic() - started < T(10)
        timer.join()
    finally:
        safety.cancel()
    broker.ack(delivery)  # the broker is untouched by the interrupt
    broker.join(T(10))


# Each wait is one C call with the whole timeout; on the main thread it gets a checked token
# whose check runs the signal handlers (brokk/_cancel.py). A wait given a Cancel too.
WAITS = {
    "fetch": lambda b, c: b.fetch("never", timeout=None, cancel=c),
    "fetch_many": lambda b, c: b.fetch_many("never", 8, timeout=None, cancel=c),
    "take_raw": lambda b, c: b.take_raw("never", timeout=T(60), cancel=c),
    "take": lambda b, c: b.take("never", timeout=None, cancel=c),
}


@pytest.mark.parametrize("with_cancel", [False, True], ids=["plain", "with-cancel"])
@pytest.mark.parametrize("call", sorted(WAITS))
def test_ctrl_c_interrupts_a_wait_and_takes_nothing(broker, call, with_cancel):
    broker.fetch("never", timeout=0)  # the group, so that what is published later waits in it
    cancel = brokk.Cancel() if with_cancel else None
    # A net: should the interrupt be lost, the message ends the wait (and the test fails).
    safety = threading.Timer(T(60), lambda: broker.publish("never", "safety"))
    safety.start()
    try:
        timer = _interrupt_soon()
        started = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            WAITS[call](broker, cancel)
        assert time.monotonic() - started < T(10)
        timer.join()
    finally:
        safety.cancel()
    assert broker.count("never") == 0
    broker.publish("never", "after")  # nothing was taken and the group still works
    assert broker.take("never") == "after"
    if cancel is not None:
        assert not cancel.cancelled  # Ctrl-C leaves the caller's token as it was
        cancel.close()


SIGINT_SCRIPT = r"""
import signal, sys, threading, time, brokk
signal.signal(signal.SIGINT, signal.default_int_handler)  # not ignored, whatever the shell did
b = brokk.Broker(workers=2)
b.publish("held", 1)
held = b.fetch("held", timeout=10)  # awaits its ack: join cannot finish on its own
b.fetch("q", timeout=0)  # the group
for name, wait in [
    ("fetch", lambda: b.fetch("q", timeout=None)),
    ("take", lambda: b.take("q", timeout=120)),
    ("join", lambda: b.join()),
]:
    print("waiting", name, flush=True)
    started = time.monotonic()
    try:
        wait()
    except KeyboardInterrupt:
        print("interrupted", name, round(time.monotonic() - started, 1), flush=True)
    else:
        print("returned", name, flush=True)
b.publish("q", "after")
print("after", b.take("q"), b.count("q"), flush=True)
b.ack(held.delivery_id)
b.close(10)
"""


def test_sigint_from_outside_interrupts_the_main_threads_waits():
    """A process of its own, whose main thread blocks in fetch (no limit), take (with a
    timeout) and join (a delivery held), each ended by a SIGINT sent from here."""
    import subprocess
    import sys
    from pathlib import Path

    env = dict(os.environ)
    package_root = str(Path(brokk.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    proc = subprocess.Popen(
        [sys.executable, "-c", SIGINT_SCRIPT],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        lines = []
        for name in ("fetch", "take", "join"):
            line = proc.stdout.readline().strip()
            assert line == f"waiting {name}", (line, proc.stderr.read() if not line else "")
            time.sleep(0.3)  # into the C call
            started = time.monotonic()
            proc.send_signal(signal.SIGINT)
            line = proc.stdout.readline().strip()
            assert line.startswith(f"interrupted {name}"), line
            assert time.monotonic() - started < T(10)
            lines.append(line)
        assert proc.stdout.readline().strip() == "after after 0"
        assert proc.wait(T(30)) == 0, proc.stderr.read()
    finally:
        proc.kill()
        proc.wait()


def test_ctrl_c_interrupts_a_close_which_then_finishes_on_its_own():
    before = _callbacks.registry_size()
    b = brokk.Broker(workers=2)
    b.subscribe("t", lambda m: None)
    delivery = _pending(b)
    safety = threading.Timer(T(60), lambda: b.ack(delivery))
    safety.start()
    try:
        timer = _interrupt_soon()
        with pytest.raises(KeyboardInterrupt):
            b.close()  # no time limit: waits for the pending delivery
        timer.join()
    finally:
        safety.cancel()
    assert b.closed  # closing: publish already fails
    with pytest.raises(brokk.ClosedError):
        b.publish("t", 1)
    b.ack(delivery)  # acks are still accepted while the close drains
    wait_for(lambda: _callbacks.registry_size() == before, what="the background close to release")
    assert b.close() == brokk.CloseReport(0, 0, 0)


def test_close_timeout_reports_what_was_left():
    b = brokk.Broker(workers=2)
    _pending(b)
    with pytest.raises(brokk.TimeoutError) as err:
        b.close(timeout=0.05)
    assert err.value.remaining == 1
    assert err.value.report == brokk.CloseReport(remaining=1, dropped=0, retained_discarded=0)
    assert b.closed
    with pytest.raises(brokk.ClosedError):
        b.stats()
    assert b.close() == err.value.report


def test_forced_close_drops_and_reports():
    b = brokk.Broker(workers=2)
    b.fetch("q", group="g", timeout=0)  # a group nobody takes from
    for i in range(5):
        b.publish("q", i)
    b.publish("retained.only", 1)
    report = b.close(timeout=T(10), force=True)
    assert report == brokk.CloseReport(remaining=0, dropped=5, retained_discarded=1)


def test_close_waits_for_running_handlers():
    b = brokk.Broker(workers=2)
    finished = []

    def slow(msg):
        time.sleep(0.05)
        finished.append(msg.payload)

    b.subscribe("slow", slow)
    for i in range(4):
        b.publish("slow", i)
    assert b.close(T(30)) == brokk.CloseReport(0, 0, 0)
    assert finished == [0, 1, 2, 3]


def test_concurrent_closes_share_one_outcome():
    b = brokk.Broker(workers=2)
    delivery = _pending(b)
    reports = []
    threads = [threading.Thread(target=lambda: reports.append(b.close(T(30)))) for _ in range(3)]
    for t in threads:
        t.start()
    time.sleep(0.05)
    b.ack(delivery)
    for t in threads:
        t.join(T(30))
    assert len(reports) == 3 and all(r == brokk.CloseReport(0, 0, 0) for r in reports)


def test_close_wakes_a_blocked_fetch():
    b = brokk.Broker(workers=2)
    errors = []

    def fetcher():
        try:
            b.fetch("nothing", timeout=None)
        except brokk.ClosedError as e:
            errors.append(e)

    thread = threading.Thread(target=fetcher)
    thread.start()
    time.sleep(0.05)
    b.close(T(10))
    thread.join(T(10))
    assert not thread.is_alive() and len(errors) == 1


def test_with_closes_gracefully_and_forces_on_error():
    with brokk.Broker(workers=2) as b:
        done = []
        b.subscribe("w", lambda m: done.append(m.payload))
        for i in range(3):
            b.publish("w", i)
    assert b.closed and sorted(done) == [0, 1, 2]  # drained before the handle went

    with pytest.raises(RuntimeError, match="boom"):
        with brokk.Broker(workers=2) as b:
            _pending(b)
            raise RuntimeError("boom")  # the pending delivery would make a graceful close wait forever
    assert b.closed


def test_leaving_with_waits_at_most_exit_timeout():
    """A handler that never returns cannot hang a ``with``: leaving it closes for up to
    ``exit_timeout`` seconds, then drops the rest and raises TimeoutError."""
    release = threading.Event()
    b = brokk.Broker(workers=2)
    b.exit_timeout = 0.2
    started = time.monotonic()
    try:
        with pytest.raises(brokk.TimeoutError):
            with b:
                b.subscribe("stuck", lambda m: release.wait(T(30)))
                b.publish("stuck", 1)
        assert time.monotonic() - started < T(10)
        assert b.closed
    finally:
        release.set()


LOCKED_BRACKET_SCRIPT = r"""
import threading, time, brokk
from brokk import _owned
assert _owned.LOCKED_BRACKET
b = brokk.Broker(workers=2)
assert type(b._calls).__name__ == "_LockedCalls"
b.subscribe("t", lambda m: None)
outcomes = []
def hammer():
    while True:
        try:
            b.publish("t", 1)
            b.take("u")
            b.stats()
        except brokk.ClosedError:
            outcomes.append("closed")
            return
threads = [threading.Thread(target=hammer) for _ in range(4)]
for t in threads:
    t.start()
time.sleep(0.1)
b.close(30)
for t in threads:
    t.join(30)
assert outcomes == ["closed"] * 4, outcomes
with brokk.Broker() as c:
    c.publish("t", 2)
print("ok", flush=True)
"""


def test_the_locked_bracket_of_free_threaded_python_works():
    """Free-threaded CPython takes the in-flight bracket under a lock (brokk/_owned.py); the
    same code runs here, forced on under the GIL, with calls on four threads racing a close.
    (This machine's pyenv has no free-threaded build to run the whole suite on.)"""
    import subprocess
    import sys
    from pathlib import Path

    env = dict(os.environ, BROKK_PYTHON_LOCKED_BRACKET="1")
    package_root = str(Path(brokk.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    result = subprocess.run(
        [sys.executable, "-c", LOCKED_BRACKET_SCRIPT], capture_output=True, text=True, timeout=T(120), env=env
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_importing_brokk_imports_neither_the_pynenc_plugin_nor_the_tadween_facade():
    result = run_python(
        "import sys, brokk; print(sorted(m for m in sys.modules if m.startswith(('brokk.pynenc', "
        "'brokk.compat', 'pynenc', 'tadween'))))"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_an_unreferenced_broker_is_freed_by_the_collector():
    before = _callbacks.registry_size()
    b = brokk.Broker(workers=2)
    b.subscribe("t", lambda m: None)
    b.add_listener(object())
    ref = ctypes.addressof(b._ptr.contents)
    assert ref
    del b
    gc.collect()
    # Released without waiting (brokk_broker_release): the library runs every finaliser.
    wait_for(lambda: _callbacks.registry_size() == before, what="every finaliser")


def test_broker_methods_are_usable_from_many_threads_while_closing():
    b = brokk.Broker(workers=2)
    b.subscribe("t", lambda m: None)
    stop = threading.Event()
    outcomes = []

    def hammer():
        while not stop.is_set():
            try:
                b.publish("t", 1)
                b.stats()
            except brokk.ClosedError:
                outcomes.append("closed")
                return

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.05)
    b.close(T(30))
    stop.set()
    for t in threads:
        t.join(T(10))
    assert outcomes == ["closed"] * 4


EXIT_SCRIPT = r"""
import threading, time, brokk
b = brokk.Broker(workers=2)
started = threading.Event()
def slow(msg):
    started.set()
    time.sleep(0.2)
b.subscribe("t", slow, concurrency=2)
class Listener:
    def on_processed(self, msg):
        pass
b.add_listener(Listener())
for i in range(50):
    b.publish("t", {"i": i})
# A daemon thread blocked in a fetch, too: at exit it sees the broker closed.
def fetcher():
    try:
        b.fetch("other", timeout=None)
    except brokk.ClosedError:
        pass
threading.Thread(target=fetcher, daemon=True).start()
started.wait(10)
print("exiting with a live broker", flush=True)
"""


def test_exit_with_a_live_broker_does_not_crash():
    result = run_python(EXIT_SCRIPT)
    assert result.returncode == 0, result.stderr
    assert "exiting with a live broker" in result.stdout
    assert "Fatal Python error" not in result.stderr and "Segmentation" not in result.stderr
    assert "Traceback" not in result.stderr, result.stderr


def test_exit_with_an_unclosed_broker_and_a_handler_referencing_it():
    script = r"""
import brokk
b = brokk.Broker(workers=2)
b.subscribe("ping", lambda m: b.publish("pong", m.payload))
b.subscribe("pong", lambda m: None)
for i in range(100):
    b.publish("ping", i)
print("bye", flush=True)
"""
    result = run_python(script)
    assert result.returncode == 0 and "bye" in result.stdout, result.stderr
    assert "Fatal Python error" not in result.stderr


def test_close_timeout_is_kept_even_with_a_stuck_handler():
    """The release (brokk_broker_free) waits for running handlers; close does not wait for it
    past its timeout: it returns while the handler is still stuck, and the release finishes on
    its own once the handler returns."""
    before = _callbacks.registry_size()
    b = brokk.Broker(workers=2)
    started, release = threading.Event(), threading.Event()
    finished = []

    def stuck(msg):
        started.set()
        release.wait(T(60))
        finished.append(msg.payload)

    b.subscribe("stuck", stuck)
    b.publish("stuck", 1)
    assert started.wait(T(10))
    with pytest.raises(brokk.TimeoutError) as err:
        b.close(timeout=0.05)
    assert finished == [] and err.value.remaining == 1  # returned while the handler still runs
    release.set()
    wait_for(lambda: _callbacks.registry_size() == before, what="the release to finish")
    assert finished == [1]


def _brokk_os_threads() -> int:
    """How many threads of this process brokk started (their names start with "brokk")."""
    count = 0
    for task in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{task}/comm") as f:
                count += f.read().startswith("brokk")
        except OSError:  # the thread has just exited
            pass
    return count


def _python_threads() -> set[str]:
    return {t.name for t in threading.enumerate() if not isinstance(t, threading._DummyThread)}


def _stuck_handler(started: threading.Event, release: threading.Event, finished: list):
    """A handler (an object, so that its finalisation can be seen) that blocks until `release`,
    and an Event set when the handler object is finalised (its registration's free_user_data
    dropped the last reference)."""

    class Stuck:
        def __call__(self, msg):
            started.set()
            release.wait(T(60))
            finished.append(msg.payload)

    handler = Stuck()
    finalised = threading.Event()
    import weakref

    weakref.finalize(handler, finalised.set)
    return handler, finalised


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="counts threads through /proc")
@pytest.mark.parametrize("timeout", [None, 10.0], ids=["no timeout", "timeout 10 s"])
def test_a_forced_close_returns_while_a_handler_is_still_running(timeout):
    """close(force=True) returns at once (brokk_broker_release), however long a handler runs and
    whatever the timeout; the handler finishes on its own, then its finaliser runs and every
    thread the broker started exits."""
    registry, os_threads, py_threads = _callbacks.registry_size(), _brokk_os_threads(), _python_threads()
    started, release, finished = threading.Event(), threading.Event(), []
    b = brokk.Broker(workers=2)
    handler, finalised = _stuck_handler(started, release, finished)
    b.subscribe("stuck", handler)
    del handler
    b.publish("stuck", 1)
    b.publish("stuck", 2)  # queued behind the stuck one: dropped
    assert started.wait(T(10))
    outcome = []
    closer = threading.Thread(target=lambda: outcome.append(b.close(timeout=timeout, force=True)))
    t0 = time.monotonic()
    closer.start()
    closer.join(T(1))
    returned_in = time.monotonic() - t0
    try:
        assert not closer.is_alive(), "close(force=True) waited for the running handler"
        assert returned_in < T(1)
        assert outcome == [brokk.CloseReport(remaining=0, dropped=1, retained_discarded=0)]
        assert b.closed and finished == [] and not finalised.is_set()
        with pytest.raises(brokk.ClosedError):
            b.publish("stuck", 3)
    finally:
        release.set()
        closer.join(T(30))
    wait_for(finalised.is_set, what="the handler's finaliser")
    assert finished == [1]
    wait_for(lambda: _callbacks.registry_size() == registry, what="the registry to empty")
    wait_for(lambda: _brokk_os_threads() <= os_threads, what="brokk's threads to exit")
    wait_for(lambda: _python_threads() <= py_threads, what="no Python thread left behind")
    assert b.close(force=True) == outcome[0]  # idempotent


def test_a_close_that_timed_out_does_not_leave_a_thread_waiting_for_the_handler():
    """A graceful close whose time ran out while a handler is stuck releases without waiting
    (brokk_broker_release): no Python thread stays blocked in brokk_broker_free, which would
    hold up interpreter exit for as long as the handler."""
    py_threads = _python_threads()
    started, release, finished = threading.Event(), threading.Event(), []
    b = brokk.Broker(workers=2)
    handler, finalised = _stuck_handler(started, release, finished)
    b.subscribe("stuck", handler)
    del handler
    b.publish("stuck", 1)
    assert started.wait(T(10))
    try:
        with pytest.raises(brokk.TimeoutError):
            b.close(timeout=0.2)
        wait_for(lambda: _python_threads() <= py_threads, timeout=2, what="no brokk-release thread")
    finally:
        release.set()
    wait_for(finalised.is_set, what="the handler's finaliser")
    assert finished == [1]


def test_exit_right_after_a_forced_close_with_a_handler_still_running():
    """The interpreter exits while a force-closed broker's handler still runs: the exit waits
    (up to its bound) for the handler to return and its finaliser to run, and nothing crashes."""
    script = r"""
import os, threading, brokk
say = lambda text: os.write(1, text.encode() + b"\n")  # one write: lines from two threads stay whole
b = brokk.Broker(workers=2)
started, release = threading.Event(), threading.Event()
class Stuck:
    def __call__(self, msg):
        started.set()
        release.wait(30)
        say("handler returned")
    def __del__(self):  # (weakref.finalize's own exit hook would disable it before brokk's runs)
        say("handler finalised")
handler = Stuck()
b.subscribe("t", handler)
del handler
b.publish("t", 1)
started.wait(10)
b.close(force=True)
say("closed")
threading.Timer(0.3, release.set).start()
"""
    result = run_python(script, timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["closed", "handler returned", "handler finalised"], result.stdout
    assert "Fatal Python error" not in result.stderr and "Traceback" not in result.stderr, result.stderr


def test_a_forked_child_exits_at_once_leaving_the_parents_broker_alone():
    """A child forked while a broker runs inherits a copy of it without its threads: calls on it
    raise ForkedError, and at exit the child neither closes nor releases that copy, nor waits
    for its finalisers (the parent's)."""
    script = r"""
import os, sys, time, brokk
b = brokk.Broker(workers=2)
b.subscribe("t", lambda m: None)
b.publish("t", 1)
b.join(10)
started = time.monotonic()
pid = os.fork()
if pid == 0:
    try:
        b.publish("t", 3)
        sys.exit(3)
    except brokk.ForkedError:  # the library refuses a parent's broker in a child
        sys.exit(0)  # a normal exit: atexit hooks and finalisation run
_, status = os.waitpid(pid, 0)
print("child", os.waitstatus_to_exitcode(status), round(time.monotonic() - started, 1), flush=True)
b.publish("t", 2)  # the parent's broker works on
b.close(10)
print("parent closed", flush=True)
"""
    result = run_python(script, timeout=60)
    assert result.returncode == 0, result.stderr
    child, parent = result.stdout.splitlines()
    _, code, seconds = child.split()
    assert code == "0" and float(seconds) < 5  # the exit wait, were it waiting, lasts 10 s
    assert parent == "parent closed"
