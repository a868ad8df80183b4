"""A broker the parent made, in a forked child: on a shared backend (SQLite here) the binding
opens a fresh broker with the same URL and options on the child's first call; on memory:// every
call raises ForkedError; closing it or collecting it never crashes or hangs, and a child that
just exits, exits at once. Also: multiprocessing with fork and with spawn (a Broker does not
pickle), and forks from a thread while publishes run."""

from __future__ import annotations

import multiprocessing
import os
import pickle
import signal
import sys
import threading
import time

import pytest

import brokk
from conftest import T, wait_for

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


def _retry_transient(call, timeout: float = 10.0):
    """`call()`, again after each TransientError until the (scaled) timeout; then the error."""
    deadline = time.monotonic() + T(timeout)
    while True:
        try:
            return call()
        except brokk.TransientError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.001)


def _wait_child(pid: int, timeout: float = 20.0) -> int:
    """The child's exit status (a negative number: killed by that signal); kills it and fails
    if it has not exited within the (scaled) timeout."""
    deadline = time.monotonic() + T(timeout)
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            if os.WIFSIGNALED(status):
                return -os.WTERMSIG(status)
            return os.WEXITSTATUS(status)
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise AssertionError(f"child {pid} did not exit within {timeout}s")
        time.sleep(0.01)


def _fork(body) -> int:
    """Runs `body()` in a forked child; its exit status: 0 if it returned, 1 if it raised
    (the traceback goes to stderr), without running the parent's exit hooks twice."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            body()
            code = 0
        except BaseException:  # noqa: BLE001 - reported through the exit status
            import traceback

            traceback.print_exc()
        finally:
            sys.stderr.flush()
            os._exit(code)
    return _wait_child(pid)


@pytest.fixture
def sqlite_url(tmp_path):
    return f"sqlite://{tmp_path / 'fork.db'}"


def _busy_broker(url: str):
    """A broker with worker threads busy and a subscription receiving: what the child inherits."""
    broker = brokk.Broker(url, workers=4)
    got: list = []
    broker.subscribe("from-child", lambda m: got.append(m.payload))
    broker.subscribe("busy", lambda m: time.sleep(0.001), concurrency=4)
    for i in range(50):
        broker.publish("busy", {"i": i})
    return broker, got


def test_child_publishes_on_sqlite_and_parent_receives(sqlite_url):
    broker, got = _busy_broker(sqlite_url)
    try:

        def child():
            broker.publish("from-child", {"pid": os.getpid()})
            assert broker.count("from-child") >= 0  # the reopened broker answers
            # The parent's subscriptions stay the parent's: the child's broker has none of
            # them (the handler the parent subscribed never runs here).
            broker.close(timeout=T(10))
            with pytest.raises(brokk.ClosedError):
                broker.publish("from-child", {})

        assert _fork(child) == 0
        wait_for(lambda: got, what="the child's message in the parent")
        assert got[0]["pid"] != os.getpid()
        broker.publish("busy", {"after": True})  # the parent's broker is untouched
    finally:
        broker.close(timeout=T(10))


def test_child_on_memory_gets_forked_error():
    broker, _ = _busy_broker("memory://")
    try:

        def child():
            with pytest.raises(brokk.ForkedError, match="parent process"):
                broker.publish("from-child", {})
            with pytest.raises(brokk.ForkedError):
                broker.subscribe("t", lambda m: None)
            with pytest.raises(brokk.ForkedError):
                broker.fetch("busy")
            with pytest.raises(brokk.ForkedError):
                broker.count()
            broker.close()  # never raises, never waits for the parent's threads
            broker.close()
            with pytest.raises(brokk.ClosedError):
                broker.publish("from-child", {})

        assert _fork(child) == 0
        broker.publish("busy", {"after": True})
    finally:
        broker.close(timeout=T(10))


_EXIT_SCRIPT = r"""
import os, sys, time
import brokk

url, mode = sys.argv[1], sys.argv[2]
broker = brokk.Broker(url, workers=4)
got = []
broker.subscribe("from-child", lambda m: got.append(m.payload))
broker.subscribe("busy", lambda m: time.sleep(0.001), concurrency=4)
for i in range(50):
    broker.publish("busy", {"i": i})
if mode == "publish":
    broker.join(10)  # see test_fork_from_a_thread_while_publishing
pid = os.fork()
if pid == 0:
    if mode == "publish":
        broker.publish("from-child", {"pid": os.getpid()})
        broker.subscribe("child-only", lambda m: None)
    elif mode == "collect":
        del broker
        import gc
        gc.collect()
    # Falls off the end: the normal interpreter exit, atexit hooks and finalisation included.
else:
    deadline = time.monotonic() + float(sys.argv[3])
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            print("child hung")
            sys.exit(1)
        time.sleep(0.01)
    if os.WIFSIGNALED(status) or os.WEXITSTATUS(status) != 0:
        print("child status", status)
        sys.exit(1)
    if mode == "publish":
        while not got and time.monotonic() < deadline:
            time.sleep(0.01)
        if not got:
            print("nothing received")
            sys.exit(1)
    print("ok")
"""


@pytest.mark.parametrize(
    "mode", ["exit", "publish", "collect"]
)
@pytest.mark.parametrize("url", ["memory://", "sqlite"])
def test_child_exits_normally_and_promptly(url, mode, sqlite_url):
    """A child that exits the normal way (exit hooks, finalisation) with the parent's broker
    alive exits 0 at once: the exit hook does not wait for the parent's threads (and closes the
    child's own reopened broker, if it made one)."""
    if url == "memory://" and mode == "publish":
        pytest.skip("a memory:// child cannot publish (test_child_on_memory_gets_forked_error)")
    import subprocess

    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", _EXIT_SCRIPT, sqlite_url if url == "sqlite" else url, mode, str(T(15))],
        capture_output=True,
        text=True,
        timeout=T(60),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith("ok"), result.stdout + result.stderr
    assert time.monotonic() - started < T(20)


# ---- multiprocessing ------------------------------------------------------------------------

_mp_broker = None  # the parent's broker, inherited by a 'fork' child


def _mp_publish_inherited(topic: str) -> None:
    _mp_broker.publish(topic, {"via": "fork"})


def _mp_publish_on_memory(_topic: str) -> str:
    try:
        _mp_broker.publish("x", {})
    except brokk.ForkedError:
        return "forked"
    return "published"


def _mp_publish_url(url: str, topic: str) -> None:
    with brokk.Broker(url) as broker:
        broker.publish(topic, {"via": "spawn"})


def test_multiprocessing_fork(sqlite_url):
    global _mp_broker
    broker, got = _busy_broker(sqlite_url)
    _mp_broker = broker
    try:
        ctx = multiprocessing.get_context("fork")
        p = ctx.Process(target=_mp_publish_inherited, args=("from-child",))
        p.start()
        p.join(T(20))
        if p.is_alive():
            p.kill()
            p.join()
        assert p.exitcode == 0
        wait_for(lambda: got, what="the forked child's message")
        assert got == [{"via": "fork"}]
    finally:
        _mp_broker = None
        broker.close(timeout=T(10))


def test_multiprocessing_fork_pool_on_memory():
    global _mp_broker
    broker, _ = _busy_broker("memory://")
    _mp_broker = broker
    try:
        with multiprocessing.get_context("fork").Pool(2) as pool:
            assert pool.map(_mp_publish_on_memory, ["a", "b", "c"], chunksize=1) == ["forked"] * 3
    finally:
        _mp_broker = None
        broker.close(timeout=T(10))


def test_multiprocessing_spawn(sqlite_url):
    """A Broker does not pickle (it is this process's threads and connection); the URL does,
    and a spawned child opens its own broker with it."""
    broker, got = _busy_broker(sqlite_url)
    try:
        with pytest.raises(TypeError, match="cannot be pickled"):
            pickle.dumps(broker)
        ctx = multiprocessing.get_context("spawn")
        p = ctx.Process(target=_mp_publish_url, args=(sqlite_url, "from-child"))
        p.start()
        p.join(T(60))
        assert p.exitcode == 0
        wait_for(lambda: got, what="the spawned child's message")
        assert got == [{"via": "spawn"}]
        with pytest.raises(TypeError, match="cannot be pickled"):
            ctx.Process(target=_mp_publish_inherited, args=(broker,)).start()
    finally:
        broker.close(timeout=T(10))


# ---- stress ---------------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["memory://", "sqlite"])
def test_fork_from_a_thread_while_publishing(url, sqlite_url):
    """20 forks from a thread while other threads publish and brokk's workers deliver: every
    child exits 0 (no signal, no hang), whether it calls the parent's broker (memory://:
    ForkedError; SQLite: the binding reopens the file in the child, while the parent's threads
    are inside it), closes it or only exits."""
    broker = brokk.Broker(sqlite_url if url == "sqlite" else url, workers=4)
    received = []
    broker.subscribe("load", lambda m: received.append(1), concurrency=4)
    stop = threading.Event()

    def publisher():
        while not stop.is_set():
            try:
                broker.publish("load", {"n": 1})
            except brokk.TransientError:
                time.sleep(0.001)

    publishers = [threading.Thread(target=publisher) for _ in range(3)]
    for t in publishers:
        t.start()
    statuses: list = []

    def forker():
        for i in range(20):
            pid = os.fork()
            if pid == 0:
                code = 0
                try:
                    if i % 3 == 0 and url == "memory://":
                        try:
                            broker.publish("load", {"child": i})
                            code = 3
                        except brokk.ForkedError:
                            pass
                    elif i % 3 == 0:
                        # The parent's three publishers keep the file's write lock busy; a
                        # busy file is a TransientError, retried as they retry theirs.
                        _retry_transient(lambda: broker.publish("from-child", {"child": i}))
                        broker.close(timeout=T(10))
                    elif i % 3 == 1:
                        broker.close()
                except BaseException as e:  # noqa: BLE001
                    os.write(2, f"child {i}: {e!r}\n".encode())
                    code = 2
                os._exit(code)
            statuses.append(_wait_child(pid))

    try:
        forking = threading.Thread(target=forker)
        forking.start()
        forking.join(T(120))
        assert not forking.is_alive()
    finally:
        stop.set()
        for t in publishers:
            t.join()
        broker.close(timeout=T(10))
    assert statuses == [0] * 20
    assert received
