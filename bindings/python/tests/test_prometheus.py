"""Broker.stats_prometheus(): the Prometheus text exposition format, read back with the
reference parser (prometheus_client, which `make test-python` installs; skipped, saying so,
where it is absent)."""

from __future__ import annotations

import pytest

import brokk
from conftest import T

parser = pytest.importorskip(
    "prometheus_client.parser", reason="prometheus_client is not installed (make test-python installs it)"
)


def families(text: str) -> dict:
    return {f.name: f for f in parser.text_string_to_metric_families(text)}


def samples(family, name: str) -> dict:
    """{topic label (or None): value} of the family's samples called `name`."""
    return {s.labels.get("topic"): s.value for s in family.samples if s.name == name}


def test_the_text_parses_and_agrees_with_the_stats(broker):
    broker.subscribe("orders", lambda m: None)
    broker.subscribe("orders", lambda m: brokk.Verdict.NACK)
    for i in range(3):
        broker.publish("orders", i)
    broker.publish("parked", 1)  # retained: no group yet
    broker.join(T(10))
    text = broker.stats_prometheus()
    assert isinstance(text, str) and text.endswith("\n")
    fams = families(text)
    # Counters: the parser names the family without _total and the samples with it.
    published = fams["brokk_messages_published"]
    assert published.type == "counter"
    assert samples(published, "brokk_messages_published_total") == {"orders": 3.0, "parked": 1.0}
    assert samples(fams["brokk_deliveries_processed"], "brokk_deliveries_processed_total")["orders"] == 3.0
    assert samples(fams["brokk_deliveries_failed"], "brokk_deliveries_failed_total")["orders"] == 3.0
    retained = fams["brokk_messages_retained"]
    assert retained.type == "gauge"
    assert samples(retained, "brokk_messages_retained") == {"orders": 0.0, "parked": 1.0}
    assert fams["brokk_deliveries_queued"].type == "gauge"
    assert samples(fams["brokk_topics"], "brokk_topics") == {None: 2.0}
    assert samples(fams["brokk_workers"], "brokk_workers") == {None: 2.0}
    assert samples(fams["brokk_subscriptions"], "brokk_subscriptions")["orders"] == 2.0
    # Every family has its HELP text; totals are sums of the per-topic series.
    assert all(f.documentation for f in fams.values())
    stats = broker.stats()
    assert sum(samples(published, "brokk_messages_published_total").values()) == stats.published


def test_an_empty_broker_names_every_family_without_samples(broker):
    fams = families(broker.stats_prometheus())
    assert fams["brokk_messages_published"].samples == []
    assert samples(fams["brokk_topics"], "brokk_topics") == {None: 0.0}
    assert samples(fams["brokk_uptime_seconds"], "brokk_uptime_seconds")[None] >= 0.0


def test_a_closed_broker_raises_closed(broker):
    broker.close(T(10))
    with pytest.raises(brokk.ClosedError):
        broker.stats_prometheus()
