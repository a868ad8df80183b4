"""The two implementations of Tadween's broker surface the Tadween tests run against: brokk's
facade always, and tadween-core itself when it is installed (make test-python installs
tadween-core==0.1.0b3 from PyPI into its venv)."""

from __future__ import annotations

import types

import pytest

TADWEEN_MISSING = (
    "tadween-core is not installed, so the side-by-side run against the real Tadween broker is "
    "skipped (make test-python installs tadween-core==0.1.0b3 from PyPI; it was unavailable)"
)


def facade() -> types.SimpleNamespace:
    from brokk.compat import tadween

    return types.SimpleNamespace(
        name="brokk",
        Message=tadween.Message,
        InMemoryBroker=tadween.InMemoryBroker,
        StatsCollector=tadween.StatsCollector,
        BrokerListener=tadween.BrokerListener,
        BaseMessageBroker=tadween.BaseMessageBroker,
    )


def real_tadween() -> types.SimpleNamespace:
    try:
        from tadween_core.broker import BaseMessageBroker, InMemoryBroker, Message, StatsCollector
        from tadween_core.broker.base import BrokerListener
    except ImportError:
        pytest.skip(TADWEEN_MISSING)
    from brokk.compat import tadween

    if InMemoryBroker is tadween.InMemoryBroker:
        pytest.skip("tadween_core.broker is brokk's facade in this process (install() was called)")
    return types.SimpleNamespace(
        name="tadween",
        Message=Message,
        InMemoryBroker=InMemoryBroker,
        StatsCollector=StatsCollector,
        BrokerListener=BrokerListener,
        BaseMessageBroker=BaseMessageBroker,
    )
