"""The same Tadween programs on tadween-core and on brokk.compat.tadween must observe the same
things. Skipped, with the reason, when tadween-core is not installed."""

from __future__ import annotations

import pytest
from tadween_impls import facade, real_tadween
from tadween_scenarios import SCENARIOS


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.__name__)
def test_same_observable_results(scenario):
    tadween = real_tadween()  # skips if tadween-core is absent
    expected = scenario(tadween)
    got = scenario(facade())
    assert got == expected


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.__name__)
def test_scenarios_run_on_the_facade(scenario):
    """The same programs on brokk alone, so that they run even where tadween-core is absent."""
    result = scenario(facade())
    assert result.get("joined", True) is True
