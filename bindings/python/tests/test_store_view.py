"""Broker.store_view() and store_view_prometheus(): every topic and consumer group of the store
with its depth, read without changing anything; on SQLite and Redis also what another broker
made (the C side is tested in tests/c/test_stats.c, the core on every backend in
core/tests/broker.rs)."""

from __future__ import annotations

import pytest

import brokk
from conftest import T

pytestmark = pytest.mark.both_backends


def test_the_view_shows_retained_messages_and_each_group_by_state(broker):
    broker.publish("parked", {"n": 1})  # no group yet: retained
    broker.publish("parked", {"n": 2})
    assert broker.fetch("jobs", group="workers", timeout=0) is None  # made the group, took nothing
    for i in range(3):
        broker.publish("jobs", i)
    held = broker.fetch("jobs", group="workers", timeout=T(5))
    assert held is not None
    view = broker.store_view()
    assert view["topics"]["parked"]["retained"] == 2
    assert view["topics"]["parked"]["groups"] == {}
    workers = view["topics"]["jobs"]["groups"]["workers"]
    assert (workers["ready"], workers["delayed"], workers["in_flight"]) == (2, 0, 1)
    broker.ack(held.delivery_id)
    # Reading it changed nothing: no group was made on "parked", which still retains both.
    assert broker.store_view()["topics"]["parked"] == view["topics"]["parked"]
    assert broker.count(["parked"]) == 2


def test_the_view_in_the_prometheus_text_format(broker):
    parser = pytest.importorskip(
        "prometheus_client.parser", reason="prometheus_client is not installed (make test-python installs it)"
    )
    broker.publish("parked", 1)
    broker.fetch("jobs", group="workers", timeout=0)
    broker.publish("jobs", 1)
    fams = {f.name: f for f in parser.text_string_to_metric_families(broker.store_view_prometheus())}
    retained = {s.labels["topic"]: s.value for s in fams["brokk_store_messages_retained"].samples}
    assert retained["parked"] == 1.0
    ready = {(s.labels["topic"], s.labels["group"]): s.value for s in fams["brokk_store_deliveries_ready"].samples}
    assert ready[("jobs", "workers")] == 1.0
    assert fams["brokk_store_deliveries_ready"].type == "gauge"


def test_a_closed_broker_refuses():
    broker = brokk.Broker()
    broker.close()
    with pytest.raises(brokk.ClosedError):
        broker.store_view()
    with pytest.raises(brokk.ClosedError):
        broker.store_view_prometheus()
