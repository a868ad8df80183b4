"""Shared test helpers. Timeouts scale with BROKK_TEST_TIMEOUT_SCALE (default 1), as
librdkafka's tmout_multip does; no test asserts on timing."""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

import pytest

import redis_test_server

import brokk
from brokk import _callbacks

SCALE = float(os.environ.get("BROKK_TEST_TIMEOUT_SCALE", "1") or "1")
REPO = Path(__file__).resolve().parents[3]
HEADER = Path(os.environ.get("BROKK_HEADER", REPO / "include" / "brokk.h"))


def T(seconds: float) -> float:
    """A timeout, scaled for slow machines (valgrind, CI)."""
    return seconds * SCALE


def wait_for(predicate, timeout: float = 10.0, what: str = "condition") -> None:
    """Polls `predicate` until true; fails (never hangs) after a scaled `timeout`."""
    deadline = time.monotonic() + T(timeout)
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


def pytest_report_header(config):
    try:
        from importlib.metadata import version

        tadween = f"tadween-core {version('tadween-core')}: the side-by-side Tadween tests run"
    except Exception:  # noqa: BLE001 - any failure means: not installed
        tadween = "tadween-core not installed: the side-by-side Tadween tests skip"
    return [f"brokk {brokk.version()} from {brokk.LIBRARY_PATH} (timeout scale {SCALE})", tadween]


BACKENDS = ("memory", "sqlite", "redis")


def pytest_configure(config):
    # The name predates the third backend; it means "every backend" (BACKENDS).
    config.addinivalue_line(
        "markers",
        "both_backends: run the test's `broker` on every backend: memory://, a fresh SQLite file, and "
        "the session's redis-server under a key prefix of the test's own",
    )


def pytest_generate_tests(metafunc):
    # A test marked both_backends that takes `broker` runs on each backend of BACKENDS; others
    # on memory.
    if "backend_url" in metafunc.fixturenames and metafunc.definition.get_closest_marker("both_backends"):
        metafunc.parametrize("backend_url", BACKENDS, indirect=True)


def sqlite_url(path: Path, query: str = "") -> str:
    """The URL of a SQLite store at the absolute `path`."""
    return f"sqlite://{Path(path).resolve()}" + (f"?{query}" if query else "")


@pytest.fixture(scope="session", autouse=True)
def _redis_server_stopped_at_session_end():
    """Stops the session's redis-server, if a test started one (starts nothing itself)."""
    yield
    redis_test_server.stop()


@pytest.fixture(scope="session")
def redis_server() -> str:
    """The session's redis-server (core/src/store/redis/test-server.sh, owner: this pytest process), started
    on first use and stopped at the end of the session: its redis://127.0.0.1:PORT/0. Fails,
    saying why, when redis-server is missing."""
    return redis_test_server.base_url()


def redis_url(request, query: str = "") -> str:
    """A fresh store for the requesting test on the session's server: a key prefix of its own."""
    request.getfixturevalue("redis_server")
    return redis_test_server.url(request.node.name, query)


@pytest.fixture
def backend_url(request, tmp_path):
    """The backend URL of the test's broker: memory://, a SQLite file in tmp_path, or the
    session's redis-server under a key prefix of the test's own."""
    backend = getattr(request, "param", "memory")
    if backend == "memory":
        return "memory://"
    if backend == "redis":
        return redis_url(request)
    return sqlite_url(tmp_path / "brokk.db")


def _finalisers_pending() -> int:
    """Registrations of brokers closed or collected whose free_user_data has not run yet."""
    with _callbacks._lock:
        entries = list(_callbacks._registry.values())
    return sum(1 for e in entries if (owner := e.owner()) is None or owner.closed)


@pytest.fixture(autouse=True)
def _teardowns_finished():
    """Brokers a test closed with force, or left to the collector, finish their teardown (their
    finalisers) on brokk's threads after close returns: wait for that after each test, so that
    the next one counts registrations from a settled registry."""
    yield
    deadline = time.monotonic() + T(10)
    while _finalisers_pending() and time.monotonic() < deadline:
        time.sleep(0.005)


@pytest.fixture
def broker(backend_url):
    """A broker with two workers (on memory://, or on SQLite for tests marked both_backends);
    closed (with force) and checked for leaked callbacks after the test."""
    before = _callbacks.registry_size()
    b = brokk.Broker(backend_url, workers=2)
    yield b
    b.close(force=True)
    # free_user_data runs for every registration of this broker: the registry comes back. (After
    # a forced close the library runs the finalisers on its own thread, once running handlers
    # have returned: close does not wait for them.)
    wait_for(lambda: _callbacks.registry_size() == before, what="the broker's finalisers")


class Recorder:
    """A listener that records every event, thread-safely."""

    def __init__(self):
        self.lock = threading.Lock()
        self.events: list[tuple] = []

    def _add(self, *event):
        with self.lock:
            self.events.append(event)

    def on_publish(self, message):
        self._add("publish", message)

    def on_dispatched(self, message):
        self._add("dispatched", message)

    def on_processed(self, message):
        self._add("processed", message)

    def on_failed(self, message, reason, requeued):
        self._add("failed", message, reason, requeued)

    def on_subscribe(self, topic, subscription_id):
        self._add("subscribe", topic, subscription_id)

    def on_unsubscribe(self, topic, subscription_id):
        self._add("unsubscribe", topic, subscription_id)

    def on_topic_created(self, topic):
        self._add("topic_created", topic)

    def of(self, kind: str) -> list[tuple]:
        with self.lock:
            return [e for e in self.events if e[0] == kind]


@pytest.fixture(params=["brokk", "tadween"])
def tw(request):
    """Tadween's broker surface: a test taking it runs once on brokk.compat.tadween and once on
    tadween-core itself (skipped, saying why, when tadween-core is not installed)."""
    from tadween_impls import facade, real_tadween

    return facade() if request.param == "brokk" else real_tadween()


@pytest.fixture
def recorder():
    return Recorder()


def run_python(code: str, timeout: float = 60.0):
    """Runs `code` in a fresh interpreter: the same one, importing the same brokk."""
    import subprocess

    env = dict(os.environ)
    package_root = str(Path(brokk.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=T(timeout), env=env
    )
