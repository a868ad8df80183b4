"""The SQLite backend through the Python binding: what only a file can do (outlive a broker, be
shared by two brokers), close's hand-back, and the statuses of a file that is not a store.
The behaviour tests marked both_backends elsewhere run on SQLite as well."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, T, sqlite_url

import brokk
from brokk import _callbacks


@pytest.fixture
def db(tmp_path):
    return sqlite_url(tmp_path / "store.db")


def test_queued_messages_survive_a_new_broker_on_the_same_file(db):
    first = brokk.Broker(db, workers=2)
    assert first.fetch("durable", group="g") is None  # the named group exists from now on
    for i in range(3):
        first.publish("durable", {"n": i}, priority=i % 2, id=f"m-{i}")
    first.publish("retained", "kept for the first group")  # no group at all: retained
    assert first.count() == 4
    # A graceful close would wait for group g to be drained (as on memory://); a forced one
    # leaves everything durable in the file.
    first.close(force=True)
    with brokk.Broker(db, workers=2) as second:
        assert second.count() == 4 and second.count("durable") == 3
        got = second.fetch_many("durable", 10, group="g")
        assert [(m.payload["n"], m.parent_id, m.priority) for m in got] == [
            (1, "m-1", 1), (0, "m-0", 0), (2, "m-2", 0)]
        assert all(m.attempt == 1 and m.group == "g" for m in got)
        assert second.ack_many([m.delivery_id for m in got]) == 3
        kept = second.fetch("retained", group="late", timeout=T(5))
        assert kept is not None and kept.payload == "kept for the first group"
        second.ack(kept.delivery_id)
        second.join(T(10))
        assert second.count() == 0


def test_close_hands_held_deliveries_back_with_the_next_attempt(db):
    first = brokk.Broker(db, workers=2)
    first.publish("held", 1)
    msg = first.fetch("held", group="g", timeout=T(5))
    assert msg.attempt == 1 and first.count("held") == 0  # in flight: not counted
    with pytest.raises(brokk.TimeoutError) as err:
        first.close(timeout=0.05)  # not acked in time: goes back to the file for other brokers
    assert err.value.remaining == 1
    with brokk.Broker(db, workers=2) as second:
        assert second.count("held") == 1
        again = second.fetch("held", group="g", timeout=T(5))
        assert again is not None and again.payload == 1 and again.attempt == 2
        second.ack(again.delivery_id)


def test_forced_close_keeps_named_groups_and_drops_anonymous_ones(db):
    first = brokk.Broker(db, workers=2)
    first.fetch("t", group="g")
    first.subscribe("t", lambda m: brokk.Verdict.LATER, manual_ack=True)  # an anonymous group
    first.publish("t", "x")
    first.close(force=True)
    with brokk.Broker(db, workers=2) as second:
        assert second.count("t") == 1  # the named group's copy only
        msg = second.fetch("t", group="g", timeout=T(5))
        assert msg.payload == "x" and msg.attempt == 1
        second.ack(msg.delivery_id)


def test_two_brokers_on_one_file_compete_in_a_group_and_fan_out_across_groups(db):
    with brokk.Broker(db, workers=2) as a, brokk.Broker(db, workers=2) as b:
        for broker in (a, b):
            assert broker.fetch("shared", group="workers") is None
        assert b.fetch("shared", group="audit") is None
        ids = a.publish_batch("shared", list(range(20)))
        assert b.count("shared") == 40  # count covers the whole file, both groups
        taken = []
        for broker in (a, b, a, b):
            batch = broker.fetch_many("shared", 5, group="workers", timeout=T(5))
            taken += [m.payload for m in batch]
            broker.ack_many([m.delivery_id for m in batch])
        assert sorted(taken) == list(range(20))  # each went to exactly one member
        audit = b.fetch_many("shared", 100, group="audit", timeout=T(5))
        assert [m.parent_id for m in audit] == ids
        b.ack_many([m.delivery_id for m in audit])
        assert a.count() == 0


def test_purge_from_one_broker_covers_the_whole_file(db):
    with brokk.Broker(db, workers=2) as a, brokk.Broker(db, workers=2) as b:
        a.fetch("p", group="g")
        for i in range(4):
            a.publish("p", i)
        b.publish("q", "retained")
        assert b.purge("p") == 4 and a.count() == 1
        assert a.purge() == 1 and b.count() == 0


def test_a_subscription_in_one_broker_consumes_what_another_publishes(db):
    import queue

    got = queue.Queue()
    with brokk.Broker(db, workers=2) as consumer, brokk.Broker(db, workers=2) as producer:
        consumer.subscribe("push", got.put, group="g")
        producer.publish("push", {"from": "producer"})
        assert got.get(timeout=T(10)).payload == {"from": "producer"}
        consumer.join(T(10))


def test_url_options_are_accepted(tmp_path):
    url = sqlite_url(tmp_path / "opts.db", "synchronous=full&busy_timeout_ms=200&lease_ms=1000")
    with brokk.Broker(url) as b:
        b.publish("o", 1)
        assert b.count() == 1


@pytest.mark.parametrize("query", ["synchronous=sometimes", "busy_timeout_ms=soon", "nope=1"])
def test_bad_url_options_are_invalid_urls(tmp_path, query):
    with pytest.raises(brokk.InvalidURLError) as err:
        brokk.Broker(sqlite_url(tmp_path / "x.db", query))
    assert err.value.status == brokk.Status.INVALID_URL and isinstance(err.value, brokk.CallerError)
    assert not (tmp_path / "x.db").exists()


def test_a_directory_cannot_be_opened(tmp_path):
    with pytest.raises(brokk.CannotOpenStoreError) as err:
        brokk.Broker(sqlite_url(tmp_path))
    assert err.value.status == brokk.Status.CANNOT_OPEN_STORE and isinstance(err.value, brokk.CallerError)


def test_a_missing_folder_cannot_be_opened(tmp_path):
    with pytest.raises(brokk.CannotOpenStoreError):
        brokk.Broker(sqlite_url(tmp_path / "no" / "such" / "folder" / "x.db"))
    assert not (tmp_path / "no").exists()


def test_a_file_that_is_not_a_store_is_refused_and_left_untouched(tmp_path):
    junk = tmp_path / "junk.db"
    data = os.urandom(8192)
    junk.write_bytes(data)
    with pytest.raises(brokk.IncompatibleStoreError) as err:
        brokk.Broker(sqlite_url(junk))
    assert err.value.status == brokk.Status.INCOMPATIBLE_STORE
    assert junk.read_bytes() == data


def test_a_sqlite_file_of_another_application_is_refused(tmp_path):
    import sqlite3

    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE accounts (id INTEGER PRIMARY KEY, name TEXT)")
    before = other.read_bytes()
    with pytest.raises(brokk.IncompatibleStoreError):
        brokk.Broker(sqlite_url(other))
    assert other.read_bytes() == before


def test_a_failed_open_leaks_no_callbacks(tmp_path):
    before = _callbacks.registry_size()
    with pytest.raises(brokk.CannotOpenStoreError):
        brokk.Broker(sqlite_url(tmp_path))
    assert _callbacks.registry_size() == before


def test_two_process_example_runs(tmp_path):
    """examples/python/two_process.py: a producer process and a consumer process, one file."""
    example = REPO / "examples" / "python" / "two_process.py"
    env = dict(os.environ)
    package_root = str(Path(brokk.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    run = subprocess.run([sys.executable, str(example), str(tmp_path / "example.db")],
                         capture_output=True, text=True, timeout=T(60), env=env)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "consumer: got 5 orders" in run.stdout, run.stdout
