"""Predictor: batched, seeded, batch-independent forecasts from real-data contexts."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from forex_diffusion.diffusion import ForecastRequest, Predictor, SeriesContext, series_seed
from forex_diffusion.domain import Candle
from forex_diffusion.errors import ConfigError

HOUR = 3_600_000


def _requests(hourly: pd.DataFrame, predictor: Predictor, n: int, start: int = 6000) -> list[ForecastRequest]:
    ctx: SeriesContext = predictor.new_context("EURUSD", "1h")
    out = []
    f = hourly.iloc[start - 200 : start + n]
    for k, (t, o, h, lo, c) in enumerate(zip(f.ts_ms, f.open, f.high, f.low, f.close, strict=True)):
        ctx.update(
            Candle(
                symbol="EURUSD", timeframe="1h", open_ms=int(t), close_ms=int(t) + HOUR, open=o, high=h, low=lo, close=c
            )
        )
        if k >= 200:
            req = ctx.request()
            assert req is not None
            out.append(req)
    return out


def test_series_alone_equals_the_same_series_inside_a_batch_of_32(hourly: pd.DataFrame, predictor: Predictor) -> None:
    reqs = _requests(hourly, predictor, 32)
    batch = predictor.forecast(reqs, samples=100)
    for i in (0, 17, 31):
        alone = predictor.forecast([reqs[i]], samples=100)[0]
        # float32 matmuls may block differently for another batch size: 1e-6 relative on prices
        np.testing.assert_allclose(alone.quantiles, batch[i].quantiles, rtol=1e-6, atol=0)
        np.testing.assert_allclose(alone.mean, batch[i].mean, rtol=1e-6, atol=0)


def test_same_input_gives_the_same_forecast_and_different_as_of_differs(
    hourly: pd.DataFrame, predictor: Predictor
) -> None:
    reqs = _requests(hourly, predictor, 2)
    a = predictor.forecast(reqs)
    b = predictor.forecast(reqs)
    for x, y in zip(a, b, strict=True):
        assert np.array_equal(x.quantiles, y.quantiles) and np.array_equal(x.p_up, y.p_up)
    assert series_seed("EURUSD", "1h", reqs[0].as_of_ms, predictor.version) != series_seed(
        "EURUSD", "1h", reqs[1].as_of_ms, predictor.version
    )


def test_forecast_fields_are_consistent(hourly: pd.DataFrame, predictor: Predictor) -> None:
    req = _requests(hourly, predictor, 1)[0]
    fc = predictor.forecast([req], steps=3, samples=40)[0]
    h = predictor.horizon
    assert fc.quantiles.shape == (h, 11) and fc.mean.shape == (h,) and fc.p_up.shape == (h,)
    assert np.all(np.diff(fc.quantiles, axis=1) >= 0)  # quantiles ordered
    assert np.all((fc.p_up >= 0) & (fc.p_up <= 1))
    assert fc.steps == 3 and fc.samples == 40 and fc.model_version == predictor.version
    assert fc.as_of_ms == req.as_of_ms and fc.last_close == req.last_close
    # the spread is in the range of the volatility: q95/q05 within ±25 sigma*sqrt(h)
    width = np.log(fc.quantile(0.95) / fc.quantile(0.05))
    assert np.all(width > 0) and np.all(width < 25 * req.sigma * np.sqrt(np.arange(1, h + 1)))
    d = json.loads(json.dumps(fc.to_dict()))
    assert d["as_of"] == req.as_of_ms and len(d["quantiles"]) == h and d["levels"][0] == 0.05


def test_extra_features_are_ignored_by_a_model_trained_without_them(hourly: pd.DataFrame, predictor: Predictor) -> None:
    req = _requests(hourly, predictor, 1)[0]
    with_extra = ForecastRequest(**{**{f: getattr(req, f) for f in req.__dataclass_fields__}, "extra": np.arange(5.0)})
    a = predictor.forecast([req])[0]
    b = predictor.forecast([with_extra])[0]
    assert np.array_equal(a.quantiles, b.quantiles)


def test_bad_sampling_parameters_are_refused(hourly: pd.DataFrame, predictor: Predictor) -> None:
    req = _requests(hourly, predictor, 1)[0]
    with pytest.raises(ConfigError):
        predictor.forecast([req], samples=1)
    with pytest.raises(ConfigError):
        predictor.forecast([req], steps=0)
    # an absurd budget is refused before anything is allocated (10**8 samples was an
    # out-of-memory kill of `forexd backtest -n 100000000`), and steps beyond the schedule's T
    with pytest.raises(ConfigError, match="samples must be in 2..10000"):
        predictor.forecast([req], samples=10**8)
    with pytest.raises(ConfigError, match="sampling steps must be in 1.."):
        predictor.forecast([req], steps=predictor.model.schedule.steps + 1)
    assert predictor.forecast([req], samples=2, steps=1)[0].samples == 2  # the smallest budget works
    assert predictor.forecast([]) == []
