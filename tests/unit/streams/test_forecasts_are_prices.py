"""The stream never emits a forecast whose quantiles are no prices (hostile review, 2026-12-06).

Candles of EUR/USD that swing between 0.08 and 16.5 (inside the instrument's bounds; when
this was found, candle feeds had no B9 guard, and its hold confirms a level on one bar, so
swings repeated on two bars still pass) made the random walk's quantiles run to 1e11: the candle agent
stored and published them, and ``forexd report`` then refused each as "quantiles" with exit
0. Now such a forecast is neither stored nor published (a ``forecast.not_prices`` warning
each), and every forecast of the ordinary candles before and after the swings is emitted as
the core computes it.
"""

from __future__ import annotations

import json
import logging
import math
import random
from pathlib import Path

import numpy as np
import pytest

from forex_diffusion.domain import Candle
from forex_diffusion.forecast.forecaster import ForecasterConfig, RandomWalkPredictor, SymbolForecaster
from forex_diffusion.forecast.result import not_prices
from forex_diffusion.ingest.candle_spikes import CandleSpikeGuard
from tests.unit.streams.test_agents_in_context import _worker, put_candles

T0 = 1_600_000_000_000 // 60_000 * 60_000


def _feed() -> list[Candle]:
    """120 ordinary 1m bars, 60 that jump between 0.08 and 16.5, then 240 ordinary ones."""
    rng, p, out = random.Random(7), 1.1, []
    for i in range(420):
        o = p
        if 120 <= i < 180:
            p = rng.choice([0.08, 16.5])
        else:
            p = (1.1 if i == 180 else p) * math.exp(rng.gauss(0.0, 5e-4))
        h, lo = max(o, p), min(o, p)
        t = T0 + i * 60_000
        out.append(
            Candle(symbol="EURUSD", timeframe="1m", open_ms=t, close_ms=t + 60_000, open=o, high=h, low=lo, close=p)
        )
    return out


@pytest.mark.asyncio
async def test_forecasts_of_swinging_candles_are_not_emitted_and_the_rest_are(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cs = _feed()
    rt = _worker(tmp_path, ("candles",), timeframes=("1m",), forecast_timeframes=("1m",), horizon=12)
    with caplog.at_level(logging.WARNING, logger="streams.agents.forecasts"):
        await put_candles(rt.candle_agent, cs)  # type: ignore[attr-defined]
    got = [json.loads(v) for _k, v in rt.topics["forecasts"].sent]  # type: ignore[attr-defined]
    # the core, candle by candle (through the candle feed's B9 guard, as the agent): which
    # forecasts are prices
    f = SymbolForecaster("EURUSD", ForecasterConfig(timeframes=("1m",), forecast_timeframes=("1m",), horizon=12))
    guard = CandleSpikeGuard()
    priced, refused = [], []
    for c in cs:
        for o in f.on_final(c, guard):
            if o.due and (req := f.request(o, None)) is not None:
                fc = RandomWalkPredictor(12).forecast([req])[0]
                (refused if not_prices(fc) else priced).append(fc.as_of_ms)
                if not not_prices(fc):
                    f.record(fc, o)
        f.settle()
    assert refused and priced  # the swings do make some forecasts no prices; the rest are prices
    assert [r["as_of_ms"] for r in got] == priced  # before: every one was published
    assert all(0 < q <= 1e9 for r in got for row in r["quantiles"] for q in row)
    said = [r for r in caplog.records if r.getMessage().startswith("forecast.not_prices")]
    assert len(said) == len(refused)


def test_not_prices_says_why_for_each_kind_of_value() -> None:
    from forex_diffusion.forecast.result import Forecast

    def make(values: list[float]) -> Forecast:
        return Forecast(
            symbol="EURUSD", timeframe="1m", as_of_ms=0, horizon=1, model_version="rw", last_close=1.1,
            levels=tuple(0.1 * (k + 1) for k in range(len(values))), quantiles=np.array([values]),
            mean=np.array([1.1]), p_up=np.array([0.5]), steps=0, samples=0, latency_s=0.0,
        )  # fmt: skip

    assert not_prices(make([1.09, 1.1, 1.11])) is None
    assert not_prices(make([1e9, 1e9])) is None  # the bound itself is a price
    assert not_prices(make([1.1, 1e9 * 1.0000001])) == "quantiles outside (0, 1e+09]: from 1.1 to 1e+09"
    assert not_prices(make([0.0, 1.1])) == "quantiles outside (0, 1e+09]: from 0 to 1.1"
    assert not_prices(make([math.nan, 1.1])) == "quantiles outside (0, 1e+09]: from 1.1 to 1.1, 1 not finite"
    assert not_prices(make([math.inf, -math.inf])) == "quantiles outside (0, 1e+09]: none finite, 2 not finite"


def test_not_prices_checks_the_mean_and_the_random_walk_of_the_record_too() -> None:
    """A review found forecasts whose quantiles were prices published with a mean of 8.7e38,
    and records whose random-walk quantiles (drawn from the EWMA volatility) the report
    refused."""
    from forex_diffusion.forecast.result import Forecast

    f = Forecast(
        symbol="EURUSD", timeframe="1m", as_of_ms=0, horizon=2, model_version="m", last_close=1.1,
        levels=(0.1, 0.9), quantiles=np.array([[1.0, 1.2], [0.9, 1.3]]), mean=np.array([1.1, 8.7e38]),
        p_up=np.array([0.5, 0.5]), steps=0, samples=0, latency_s=0.0,
    )  # fmt: skip
    assert not_prices(f) == "mean outside (0, 1e+09]: from 1.1 to 8.7e+38"
    ok = Forecast(**{**{k: getattr(f, k) for k in f.__dataclass_fields__}, "mean": np.array([1.1, 1.1])})
    assert not_prices(ok) is None and not_prices(ok, 1e-3) is None
    assert not_prices(ok, 30.0) is not None and not_prices(ok, 30.0).startswith("random-walk quantiles outside")
    assert not_prices(ok, math.nan) is None  # no volatility: no random walk to check


def test_backtest_leaves_out_the_forecasts_the_stream_leaves_out(caplog: pytest.LogCaptureFixture) -> None:
    """``forexd backtest`` runs the stream's code: a forecast the stream does not emit is not
    scored offline either (a review: it scored 16 of 372 such forecasts, quantiles to 1.45e11)."""
    import pandas as pd

    from forex_diffusion.bundled import MODELS
    from forex_diffusion.diffusion.predictor import Predictor
    from forex_diffusion.quality.evaluation import QUANTILE_COLUMNS
    from forex_diffusion.reports.backtest import BacktestConfig, backtest

    cs = _feed()
    frame = pd.DataFrame({k: [getattr(c, k) for c in cs] for k in ("open", "high", "low", "close")})
    frame.insert(0, "ts_ms", [c.open_ms for c in cs])
    model = Predictor.load(sorted((MODELS / "EURUSD-1m-h24").glob("*.pt"))[-1])
    with caplog.at_level(logging.WARNING, logger="forex_diffusion.reports.backtest"):
        rows = backtest(frame, model, BacktestConfig(symbol="EURUSD", timeframe="1m", samples=16, steps=4))
    dropped = [r for r in caplog.records if r.getMessage().startswith("backtest.not_prices")]
    assert dropped  # the swings make some forecasts no prices (before: scored)
    q = rows[list(QUANTILE_COLUMNS)].to_numpy()
    assert len(rows) and bool(((q > 0) & (q <= 1e9)).all())
