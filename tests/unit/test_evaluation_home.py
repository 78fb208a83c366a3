"""One home for the scores: the baseline, CRPS, PIT and interval hits of every consumer come from evaluation.

The forecaster scores each realised step once (:func:`~forex_diffusion.quality.evaluation.score_step`);
the drift monitor and the quality monitor take that score and give the numbers a fresh
scoring of the same inputs gives.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from scipy.stats import norm

from forex_diffusion.bundled import SAMPLE_TICKS
from forex_diffusion.diffusion import model as diffusion_model
from forex_diffusion.diffusion.context import ForecastRequest
from forex_diffusion.domain import Candle
from forex_diffusion.drift import DriftMonitor
from forex_diffusion.forecast import forecaster as forecasting
from forex_diffusion.forecast.forecaster import ForecasterConfig, RandomWalkPredictor, SymbolForecaster, rw_quantiles
from forex_diffusion.offline import aggregate_ticks_file
from forex_diffusion.quality import evaluation, monitoring
from forex_diffusion.quality.evaluation import (
    QUANTILE_LEVELS,
    StepScore,
    central_interval,
    crps_quantiles,
    ewma_random_walk_quantiles,
    interval_hits,
    random_walk_log_quantiles,
    score_step,
)
from forex_diffusion.quality.monitoring import QualityMonitor

HORIZON = 6
N_CANDLES = 600


@pytest.fixture(scope="module")
def candles() -> list[Candle]:
    return aggregate_ticks_file(SAMPLE_TICKS, timeframes=["1m"]).candles[:N_CANDLES]


def test_every_random_walk_baseline_is_the_evaluation_one_to_the_bit() -> None:
    rng = np.random.default_rng(5)
    last = rng.uniform(0.6, 160.0, 7)
    sigma = rng.uniform(1e-4, 5e-3, 7)
    ref = ewma_random_walk_quantiles(last, sigma, 9)
    # closed form, written here from its definition
    z = norm.ppf(np.asarray(QUANTILE_LEVELS))
    closed = last[:, None, None] * np.exp(sigma[:, None, None] * np.sqrt(np.arange(1.0, 10.0))[None, :, None] * z)
    np.testing.assert_allclose(ref, closed, rtol=1e-14)
    assert np.array_equal(ref, last[:, None, None] * np.exp(random_walk_log_quantiles(sigma, 9)))
    assert diffusion_model.random_walk_log_quantiles is random_walk_log_quantiles
    for i in range(7):
        assert np.array_equal(rw_quantiles(float(last[i]), float(sigma[i]), 9), ref[i])
        req = ForecastRequest(
            symbol="EURUSD",
            timeframe="1h",
            as_of_ms=3_600_000,
            last_close=float(last[i]),
            sigma=float(sigma[i]),
            past_returns=np.zeros(4),
            past_ranges=np.zeros(4),
            calendar=np.zeros(4),
            vol_ratio=0.0,
        )
        (fc,) = RandomWalkPredictor(9).forecast([req])
        assert np.array_equal(fc.quantiles, ref[i])


def test_central_interval_interpolates_only_across_a_narrow_gap() -> None:
    q = np.arange(1.0, 12.0)  # one value per QUANTILE_LEVELS entry
    lo, hi = central_interval(q, "50")  # type: ignore[misc]
    assert (float(lo), float(hi)) == (3.5, 8.5)  # q25 halfway between q20 and q30, q75 between q70 and q80
    lo, hi = central_interval(q, "90")  # type: ignore[misc]
    assert (float(lo), float(hi)) == (1.0, 11.0)
    assert central_interval(np.array([0.9, 1.0, 1.1]), "50", (0.1, 0.5, 0.9)) is None  # 0.4 gap: not measured
    assert central_interval(np.array([0.9, 1.0, 1.1]), "90", (0.1, 0.5, 0.9)) is None  # 0.05 below every level
    hits = interval_hits(np.tile(q, (4, 1)), np.array([3.5, 3.49, 8.5, 8.51]), "50")
    assert hits is not None and hits.tolist() == [True, False, True, False]  # ends included


def test_score_step_equals_the_separate_scores() -> None:
    rng = np.random.default_rng(2)
    for _ in range(50):
        q = np.sort(rng.normal(1.1, 0.01, len(QUANTILE_LEVELS)))
        rw = np.sort(rng.normal(1.1, 0.02, len(QUANTILE_LEVELS)))
        y = float(rng.normal(1.1, 0.015))
        s = score_step(q, rw, y)
        assert s.crps == float(crps_quantiles(q[None, :], np.array([y]))[0])
        assert s.crps_rw == float(crps_quantiles(rw[None, :], np.array([y]))[0])
        assert s.pit == float(np.interp(y, q, QUANTILE_LEVELS, left=0.0, right=1.0))
        assert s.hit90 == bool(q[0] <= y <= q[-1])
        assert s.hit50 == bool(q[2] + 0.5 * (q[3] - q[2]) <= y <= q[7] + 0.5 * (q[8] - q[7]))


def _run(candles: list[Candle]) -> tuple[SymbolForecaster, list[Any]]:
    cfg = ForecasterConfig(timeframes=("1m",), forecast_timeframes=("1m",), horizon=HORIZON)
    f = SymbolForecaster(candles[0].symbol, cfg)
    pred = RandomWalkPredictor(HORIZON)
    evals = []
    for c in candles:
        o = f.on_candle(c)
        evals.extend(o.evaluations)
        if o.due:
            req = f.request(o, None)
            assert req is not None
            f.record(pred.forecast([req])[0], o)
    return f, evals


def test_forecaster_scores_each_realised_step_once_and_monitors_reuse_it(
    candles: list[Candle], monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[StepScore] = []

    def counted(*args: Any, **kwargs: Any) -> StepScore:
        out = score_step(*args, **kwargs)
        calls.append(out)
        return out

    monkeypatch.setattr(forecasting, "score_step", counted)
    drift_fed: list[StepScore] = []
    real_update = DriftMonitor.update_score

    def spy(self: DriftMonitor, horizon: int, ts_ms: int, score: StepScore) -> Any:
        drift_fed.append(score)
        return real_update(self, horizon, ts_ms, score)

    monkeypatch.setattr(DriftMonitor, "update_score", spy)
    _, evals = _run(candles)
    assert len(evals) > 1000
    assert len(calls) == len(evals)  # one scoring per realised step
    assert all(ev.score is sc for ev, sc in zip(evals, calls, strict=True))
    # drift is fed the very same score objects for the steps it watches (1 and the horizon)
    assert drift_fed and all(any(s is ev.score for ev in evals) for s in drift_fed)
    assert len(drift_fed) == sum(ev.step in (1, HORIZON) for ev in evals)

    # the quality monitor adds the score without scoring again, and equals a monitor that scores itself
    monkeypatch.setattr(monitoring, "score_step", None)  # a second scoring would now fail
    fed, scored = QualityMonitor(window=200), QualityMonitor(window=200)
    for ev in evals:
        fed.add(ev.symbol, ev.timeframe, ev.step, ev.score)
    monkeypatch.setattr(monitoring, "score_step", evaluation.score_step)
    for ev in evals:
        scored.update(
            ev.symbol,
            ev.timeframe,
            ev.step,
            QUANTILE_LEVELS,
            ev.quantiles.tolist(),
            ev.rw_quantiles.tolist(),
            ev.realized,
        )
    rows = fed.snapshot_metrics()
    assert rows == scored.snapshot_metrics()
    assert {r.horizon for r in rows} == {"1", "2-4", "5-12"}
    assert all(r.coverage_50 is not None and 0.2 < r.coverage_50 < 0.8 for r in rows)  # measured (q25 interpolated)


def test_drift_update_score_equals_the_separate_updates(candles: list[Candle]) -> None:
    _, evals = _run(candles)
    a, b = DriftMonitor("EURUSD", "1m"), DriftMonitor("EURUSD", "1m")
    for ev in evals:
        ts = ev.as_of_ms + ev.step * 60_000
        got = a.update_score(ev.step, ts, ev.score)
        s = ev.score
        want = b.update_crps(ev.step, s.crps, ts) + b.update_calibration(
            ev.step, ts, pit=s.pit, hit50=s.hit50, hit90=s.hit90
        )
        assert got == want
    for h in range(1, HORIZON + 1):
        ca, cb = a.calibration(h), b.calibration(h)
        assert ca is not None and cb is not None
        assert (ca.coverage50, ca.coverage90, ca.pit_chi2) == (cb.coverage50, cb.coverage90, cb.pit_chi2)
