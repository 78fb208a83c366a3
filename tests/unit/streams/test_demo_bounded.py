"""A long-running ``forexd demo`` keeps the latest forecasts only.

:class:`~streams.demo.DemoResult` appended every forecast it received to ``forecasts``: a
demo left running for days held all of them, a memory that grew without bound. It now keeps
the latest ``keep`` (:data:`~streams.demo.FORECASTS_KEPT` by default) and counts the rest.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from streams.demo import FORECASTS_KEPT, DemoResult, _take


def _value(minute: int) -> bytes:
    """A valid ``fx.forecasts`` record as of ``minute`` (as the worker writes one)."""
    horizon, levels = 3, [0.05, 0.5, 0.95]
    as_of = 1399000000000 + 60_000 * minute
    rec: dict[str, Any] = {
        "symbol": "EURUSD",
        "timeframe": "1m",
        "as_of": as_of,
        "as_of_ms": as_of,
        "horizon": horizon,
        "model_version": "v1",
        "last_close": 1.1,
        "levels": levels,
        "quantiles": [[1.09, 1.1, 1.11]] * horizon,
        "mean": [1.1] * horizon,
        "p_up": [0.5] * horizon,
        "steps": 8,
        "samples": 100,
        "latency_s": 0.012,
        "rw_quantiles": [[1.09, 1.1, 1.11]] * horizon,
        "degraded": False,
        "learner": [],
    }
    return json.dumps(rec).encode()


def test_demo_result_keeps_the_latest_forecasts_and_counts_the_dropped() -> None:
    result, shown = DemoResult(keep=5), list[dict[str, Any]]()
    for minute in range(23):
        _take(_value(minute), result, shown.append, f"offset={minute}")
    assert result.refused == 0 and len(shown) == 23  # every one shown
    assert len(result.forecasts) == 5
    assert [r["as_of_ms"] for r in result.forecasts] == [r["as_of_ms"] for r in shown[-5:]]  # oldest first
    assert result.received == 23 and result.dropped == 18


def test_demo_result_is_bounded_by_default() -> None:
    result = DemoResult()
    value = _value(0)
    for i in range(FORECASTS_KEPT + 50):
        _take(value, result, lambda rec: None, f"offset={i}")
    assert len(result.forecasts) == FORECASTS_KEPT
    assert result.received == FORECASTS_KEPT + 50 and result.dropped == 50


def test_demo_result_under_its_bound_keeps_every_forecast_as_a_list() -> None:
    result, shown = DemoResult(keep=10), list[dict[str, Any]]()
    for minute in range(4):
        _take(_value(minute), result, shown.append, f"offset={minute}")
    assert result.forecasts == shown and result.dropped == 0


@pytest.mark.parametrize("keep", [0, -1])
def test_demo_result_refuses_a_bound_under_one(keep: int) -> None:
    with pytest.raises(ValueError, match="keep must be at least 1"):
        DemoResult(keep=keep)
