"""brokk's operator log in Python's logging: real records from real events (a close that left
work behind, a listener queue overflow, a wait for SQLite's write lock), under the "brokk"
logger's children or a broker's own logger, levels mapped, silence on request, and a failing
logging setup that never reaches brokk."""

from __future__ import annotations

import logging
import subprocess
import sys
import threading

import pytest
from conftest import T, sqlite_url, wait_for

import brokk
from brokk import _callbacks


class Records(logging.Handler):
    """Keeps every record it is given."""

    def __init__(self) -> None:
        super().__init__(level=1)
        self.records: list[logging.LogRecord] = []
        self.guard = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        with self.guard:
            self.records.append(record)

    def of(self, name: str, level: int | None = None) -> list[logging.LogRecord]:
        with self.guard:
            return [r for r in self.records if r.name == name and (level is None or r.levelno == level)]


@pytest.fixture
def records():
    """Records of the "brokk" logger and its children, at every level, while the test runs."""
    handler = Records()
    root = logging.getLogger("brokk")
    old = root.level
    root.addHandler(handler)
    root.setLevel(1)
    yield handler
    root.removeHandler(handler)
    root.setLevel(old)


def _close_with_work_left(broker: brokk.Broker) -> None:
    release = threading.Event()
    broker.subscribe("stuck", lambda m: None if release.wait(T(10)) else None)
    for i in range(3):
        broker.publish("stuck", i)
    wait_for(lambda: broker.stats().workers_active == 1, what="a handler running")
    try:
        with pytest.raises(brokk.TimeoutError):
            broker.close(timeout=0.02)
    finally:
        release.set()


@pytest.mark.both_backends
def test_a_close_that_left_work_is_a_warning_on_brokk_close(backend_url, records):
    broker = brokk.Broker(backend_url, workers=1)
    _close_with_work_left(broker)
    warned = records.of("brokk.close", logging.WARNING)
    assert len(warned) == 1, [r.getMessage() for r in records.records]
    assert "unfinished" in warned[0].getMessage()
    assert warned[0].brokk_target == "brokk::close"


def test_a_clean_close_is_info_and_filtered_by_the_logger_level(records):
    logging.getLogger("brokk.close").setLevel(logging.WARNING)
    try:
        brokk.Broker().close()
        assert records.of("brokk.close") == []
    finally:
        logging.getLogger("brokk.close").setLevel(logging.NOTSET)
    brokk.Broker().close()
    info = records.of("brokk.close", logging.INFO)
    assert len(info) == 1 and "nothing left behind" in info[0].getMessage()


def test_a_listener_queue_overflow_is_a_warning(records):
    gate = threading.Event()

    class Stuck:
        def on_publish(self, message):
            gate.wait(T(10))

    with brokk.Broker(listener_queue_capacity=1) as broker:
        broker.add_listener(Stuck())
        for i in range(20):
            broker.publish("events", i)
        gate.set()
        assert records.of("brokk.listener", logging.WARNING), [r.getMessage() for r in records.records]


def test_a_broker_with_its_own_logger_logs_there_only(records):
    own = logging.getLogger("brokk_test_own")
    handler = Records()
    own.addHandler(handler)
    own.setLevel(1)
    try:
        before = _callbacks.registry_size()
        broker = brokk.Broker()
        broker.set_logger(own)
        broker.close()
        assert [r.name for r in handler.records] == ["brokk_test_own.close"]
        assert records.of("brokk.close") == []
        assert _callbacks.registry_size() == before, "the logger entry is released with the broker"

        broker = brokk.Broker()
        broker.set_logger(own)
        broker.set_logger(None)  # back to the "brokk" logger
        broker.close()
        assert len(records.of("brokk.close")) == 1
        with pytest.raises(TypeError):
            brokk.Broker().set_logger("not a logger")  # type: ignore[arg-type]
    finally:
        own.removeHandler(handler)


def test_route_to_logging_false_silences_brokk(records):
    brokk.route_to_logging(False)
    try:
        brokk.Broker().close()
        assert records.records == []
    finally:
        brokk.route_to_logging(True)
    brokk.Broker().close()
    assert len(records.of("brokk.close")) == 1


def test_a_failing_logging_setup_never_reaches_brokk(records):
    class Broken(logging.Filter):
        def filter(self, record):
            raise RuntimeError("a broken filter")

    broken = Broken()
    logging.getLogger("brokk.close").addFilter(broken)
    try:
        with brokk.Broker() as broker:
            got = []
            broker.subscribe("t", got.append)
            broker.publish("t", 1)
            broker.join(timeout=T(10))
        assert len(got) == 1
    finally:
        logging.getLogger("brokk.close").removeFilter(broken)


_HOLD_LOCK = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
conn.execute("COMMIT")
"""


def test_a_wait_for_sqlite_s_write_lock_is_logged(tmp_path, records):
    # Another process holds the write lock (in this process, a second SQLite library's fcntl
    # locks would not conflict with brokk's: POSIX locks belong to the process).
    path = tmp_path / "locked.db"
    with brokk.Broker(sqlite_url(path, "busy_timeout_ms=10000")) as broker:
        assert broker.fetch("waits", group="g", timeout=0) is None  # the group: publish writes
        holder = subprocess.Popen(
            [sys.executable, "-c", _HOLD_LOCK, str(path), "0.3"], stdout=subprocess.PIPE, text=True
        )
        try:
            assert holder.stdout.readline().strip() == "locked"
            broker.publish("waits", 1)  # waits for the other process's lock
        finally:
            holder.wait(timeout=T(10))
        delivery = broker.fetch("waits", group="g", timeout=T(10))
        assert delivery is not None
        broker.ack(delivery.delivery_id)
    waited = [r for r in records.of("brokk.sqlite") if "write lock" in r.getMessage()]
    assert waited and waited[0].levelno >= logging.INFO, [r.getMessage() for r in records.records]
    assert str(path) in waited[0].getMessage()
