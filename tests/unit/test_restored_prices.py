"""A price a state holds for the next return (a series' last close, a realised volatility's
previous input, the feature builder's previous close) is read back within
``[PRICE_FLOOR, 1e9]`` (:func:`forex_diffusion.state.price`; the realised volatility, an
indicator of any positive series, from ``PRICE_FLOOR`` up): a denormal one (5e-324) was
restored, and the next candle's return ``log(1.1 / 5e-324)`` was inf -- sigma inf and a state
no longer JSON (found by a hypothesis hunt over mutated snapshots); one over the wire's 1e9
made the next ratio underflow to 0 and ``log`` raise. Inside the bounds the next values stay
finite, at both ends."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import pytest

from forex_diffusion.diffusion.context import SeriesContext
from forex_diffusion.domain import Candle
from forex_diffusion.errors import StateError
from forex_diffusion.forecast.features import FeatureBuilder, FeatureConfig
from forex_diffusion.indicators.volatility import RealisedVolatility
from forex_diffusion.ingest.validation import MAX_PRICE
from forex_diffusion.state import PRICE_FLOOR, price

T0 = 1_700_000_040_000 - 1_700_000_040_000 % 60_000


def _bar(i: int, c: float) -> Candle:
    return Candle(
        symbol="EURUSD",
        timeframe="1m",
        open_ms=T0 + i * 60_000,
        close_ms=T0 + (i + 1) * 60_000,
        open=c,
        high=c * 1.0002,
        low=c * 0.9998,
        close=c,
    )


def _context(v: float) -> Any:
    ctx = SeriesContext(symbol="EURUSD", timeframe="1m")
    for i in range(50):
        ctx.update(_bar(i, 1.1 + 1e-4 * (i % 3)))
    snap = json.loads(json.dumps(ctx.snapshot()))
    snap["state"]["last_close"] = v
    r = SeriesContext.restore(snap, symbol="EURUSD", timeframe="1m")
    r.update(_bar(50, 1.1))
    assert math.isfinite(r.sigma)
    return r.snapshot()


def _volatility(v: float) -> Any:
    rv = RealisedVolatility(5)
    for i in range(10):
        rv.update(1.1 + 1e-4 * (i % 3))
    snap = json.loads(json.dumps(rv.snapshot()))
    snap["state"]["state"]["prev"] = v
    r = RealisedVolatility.restore(snap)
    assert r.update(1.1) is not None and math.isfinite(r.value)  # type: ignore[arg-type]
    return r.snapshot()


def _features(v: float) -> Any:
    fb = FeatureBuilder(FeatureConfig(forecast_timeframe="1m", timeframes=("1m",)), symbol="EURUSD")
    for i in range(50):
        fb.on_candle(_bar(i, 1.1 + 1e-4 * (i % 3)))
    snap = json.loads(json.dumps(fb.snapshot()))
    snap["state"]["series"]["1m"]["prev"] = v
    r = FeatureBuilder.restore(snap, symbol="EURUSD")
    r.on_candle(_bar(50, 1.1))
    return r.snapshot()


SITES: dict[str, Callable[[float], Any]] = {"context": _context, "volatility": _volatility, "features": _features}


@pytest.mark.parametrize("site", SITES)
@pytest.mark.parametrize("v", [5e-324, 1e-310, PRICE_FLOOR / 2, 0.0, -1.1, math.nextafter(MAX_PRICE, math.inf), 1e150])
def test_a_restored_price_outside_the_bounds_is_a_state_error(site: str, v: float) -> None:
    if site == "volatility" and v > MAX_PRICE:  # an indicator of any positive series: not capped
        json.dumps(SITES[site](v), allow_nan=False)
        return
    with pytest.raises(StateError):
        SITES[site](v)


def test_a_realised_volatility_of_values_over_a_price_restores() -> None:
    """The indicator takes any positive series; its snapshot restores whatever it was fed."""
    rv = RealisedVolatility(2)
    for x in (2e9, 2.1e9, 2.2e9):
        rv.update(x)
    again = RealisedVolatility.restore(json.loads(json.dumps(rv.snapshot())))
    assert again.update(2.3e9) == rv.update(2.3e9)


@pytest.mark.parametrize("site", SITES)
@pytest.mark.parametrize("v", [PRICE_FLOOR, 1.1, MAX_PRICE])
def test_inside_the_bounds_the_next_values_stay_finite(site: str, v: float) -> None:
    json.dumps(SITES[site](v), allow_nan=False)


def test_the_bound_is_the_wires() -> None:
    assert price(MAX_PRICE) == MAX_PRICE
    with pytest.raises(ValueError):
        price(math.nextafter(MAX_PRICE, math.inf))
