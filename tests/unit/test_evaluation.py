"""Evaluation metrics against closed forms and brute force; baselines on real data."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.stats import norm

from forex_diffusion.diffusion import ContextSpec, SeriesContext
from forex_diffusion.diffusion.inputs import frame_candles
from forex_diffusion.ingest.readers import read_candles
from forex_diffusion.quality.evaluation import (
    QUANTILE_LEVELS,
    coverage,
    crps_quantiles,
    crps_samples,
    default_step_groups,
    ewma_random_walk_quantiles,
    ewma_volatility,
    median_abs_error,
    pit,
    random_walk_log_quantiles,
    summarize_forecasts,
)

from ..realdata import DATA, require

HOURLY = DATA / "lean_oanda_eurusd_h1_2007_2017.csv.gz"


def _gaussian_crps(mu: float, sd: float, y: float) -> float:
    z = (y - mu) / sd
    return sd * (z * (2 * norm.cdf(z) - 1) + 2 * norm.pdf(z) - 1 / math.sqrt(math.pi))


def test_crps_samples_equals_brute_force_pairwise_form() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 40))
    y = rng.normal(size=5)
    brute = np.abs(x - y[:, None]).mean(1) - 0.5 * np.abs(x[:, :, None] - x[:, None, :]).mean((1, 2))
    np.testing.assert_allclose(crps_samples(x, y), brute, rtol=1e-12, atol=1e-14)


def test_crps_samples_tends_to_the_gaussian_closed_form() -> None:
    x = norm.ppf((np.arange(20_000) + 0.5) / 20_000) * 2.0 + 1.0  # quasi-sample of N(1, 2)
    for y in (-3.0, 1.0, 4.5):
        assert float(crps_samples(x, np.array(y))) == pytest.approx(_gaussian_crps(1.0, 2.0, y), rel=2e-3)


def test_crps_quantiles_approaches_crps_with_dense_levels() -> None:
    levels = (np.arange(1, 200) / 200).tolist()
    q = norm.ppf(levels)
    for y in (-1.5, 0.2, 2.0):
        assert float(crps_quantiles(q, np.array(y), levels)) == pytest.approx(_gaussian_crps(0, 1, y), rel=0.02)


def test_crps_quantiles_is_zero_only_at_a_point_mass_on_the_outcome() -> None:
    q = np.full(11, 1.2)
    assert float(crps_quantiles(q, np.array(1.2))) == 0.0
    assert float(crps_quantiles(q, np.array(1.3))) > 0.0


def test_coverage_pit_and_mae() -> None:
    y = np.array([0.0, 1.0, 2.0, np.nan])
    assert coverage(np.array([-1, 1.5, 1.0, 0]), np.array([1, 2.0, 3.0, 1]), y) == pytest.approx(2 / 3)
    rng = np.random.default_rng(1)
    samples = rng.normal(size=(4000, 50))
    p = pit(samples, rng.normal(size=4000))  # calibrated → uniform
    assert abs(p.mean() - 0.5) < 0.02 and abs((p < 0.1).mean() - 0.1) < 0.03
    assert median_abs_error(np.array([1.0, 2.0, 0.0]), np.array([2.0, 2.0, np.nan])) == 0.5


def test_random_walk_quantiles_follow_sqrt_h_and_the_median_is_the_last_price() -> None:
    q = ewma_random_walk_quantiles(np.array([1.1, 100.0]), np.array([0.001, 0.002]), 4)
    assert q.shape == (2, 4, 11)
    np.testing.assert_allclose(q[:, :, 5], [[1.1] * 4, [100.0] * 4])
    width = np.log(q[0, :, -1] / q[0, :, 0])
    np.testing.assert_allclose(width / width[0], np.sqrt([1, 2, 3, 4]), rtol=1e-12)
    assert width[0] == pytest.approx(2 * 1.6448536 * 0.001, rel=1e-6)


def test_ewma_volatility_matches_the_series_context_on_real_hourly() -> None:
    require(HOURLY.name)  # a bundled file: absent, the test fails
    f = read_candles(HOURLY, symbol="EURUSD", price="mid").frame.iloc[:3000]
    spec = ContextSpec(window=8, warmup=24, ewma_lambda=0.94)
    ctx = SeriesContext(symbol="EURUSD", timeframe="1h", spec=spec)
    sig_ctx = []
    for candle in frame_candles(f, "EURUSD", "1h"):
        ctx.update(candle)
        sig_ctx.append(ctx.sigma)
    sig = ewma_volatility(np.diff(np.log(f.close.to_numpy())), lam=0.94, warmup=24)
    np.testing.assert_allclose(sig, sig_ctx[1:], rtol=1e-12)
    # RiskMetrics one-step 90 % interval covers about 90 % of real hourly returns (fat tails: a bit less)
    r = np.diff(np.log(f.close.to_numpy()))
    z = np.abs(r[25:] / sig[24:-1])
    assert 0.85 < (z <= 1.6449).mean() < 0.95


def test_summary_per_step_group_against_hand_computed_values() -> None:
    cols = {f"q{round(t * 100):02d}": [t] * 2 for t in QUANTILE_LEVELS}
    rows = pd.DataFrame(
        {
            "step": [1, 2],
            **cols,
            "realized": [0.5, np.nan],
            **{f"rw_q{round(t * 100):02d}": [0.5] * 2 for t in QUANTILE_LEVELS},
        }
    )
    (g1, g2) = summarize_forecasts(rows, [(1, 1), (2, 2)])
    assert g1.n == 1 and g2.n == 0 and math.isnan(g2.crps)
    assert g1.rw_crps == 0.0 and math.isnan(g1.skill)  # perfect baseline: skill undefined
    assert g1.crps == pytest.approx(float(crps_quantiles(np.array(QUANTILE_LEVELS), np.array(0.5))))
    assert g1.cover90 == 1.0 and g1.cover50 == 1.0  # q25 = 0.25 ≤ 0.5 ≤ 0.75
    assert default_step_groups(24) == [(1, 1), (2, 3), (4, 6), (7, 12), (13, 24)]
    assert default_step_groups(60)[-1] == (25, 60)


@given(st.lists(st.floats(min_value=0.0, max_value=1.0), min_size=1, max_size=9))
def test_random_walk_quantiles_use_scipys_normal_quantiles_to_the_bit(levels: list[float]) -> None:
    """The z-values come from ``scipy.special.ndtri`` (no scipy.stats at a worker's start):
    exactly what ``scipy.stats.norm.ppf`` gives, 0 and 1 (infinite z) included."""
    for lv in (levels, list(QUANTILE_LEVELS)):
        got = random_walk_log_quantiles(1.0, 1, lv)[0]
        want = norm.ppf(np.asarray(lv, dtype=np.float64))
        np.testing.assert_array_equal(got, want)
        assert np.array_equal(np.signbit(got), np.signbit(want))
