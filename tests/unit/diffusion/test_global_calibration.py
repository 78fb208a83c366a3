"""The random-walk weight of the calibration: the one-standard-error rule (issue 16, global vs per-series).

A global model and the per-series models it is compared with are calibrated by the same
rule; what tells them apart is how many validation windows back each choice. One
validation year of daily candles (≈ 300 windows) is too few to tell a small gain of the
network from noise, so the weight of the random walk must not be the bare minimiser of
the validation CRPS.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from forex_diffusion.diffusion import TrainConfig
from forex_diffusion.diffusion.denoiser import DenoiserConfig
from forex_diffusion.diffusion.model import DiffusionModel, ModelConfig
from forex_diffusion.diffusion.training import _RW_GRID, _fit_rw_weight, _smooth_steps, _Windows, _windows
from forex_diffusion.ingest.readers import read_candle_series
from forex_diffusion.quality.evaluation import crps_quantiles, random_walk_log_quantiles

from ...realdata import DATA

DAILY = DATA / "lean_oanda_d1_4pairs.csv.gz"
H = 10


@pytest.fixture(scope="module")
def validation_year() -> _Windows:
    """EURUSD daily windows of 2016 (origins and targets inside the year): one validation year."""
    frame = read_candle_series(DAILY, symbol="EURUSD", timeframe="1d").frame
    w = _windows(frame, TrainConfig(symbol="EURUSD", timeframe="1d", horizon=H), None)
    lo, hi = (int(pd.Timestamp(d, tz="UTC").value // 1_000_000) for d in ("2016-01-01", "2017-01-01"))
    return w.take(np.flatnonzero((w.origin_ms >= lo) & (w.end_ms <= hi)))


@pytest.fixture
def model() -> DiffusionModel:
    return DiffusionModel(ModelConfig(denoiser=DenoiserConfig(horizon=H, cond_dim=4)))


def _argmin_weight(model: DiffusionModel, q: np.ndarray, w: _Windows) -> np.ndarray:
    """The bare minimiser of the smoothed validation CRPS (the rule before the standard error)."""
    losses = []
    for g in _RW_GRID:
        model.rw_weight.fill_(float(g))
        losses.append(crps_quantiles(model.calibrate_quantiles(q, w.sigma), w.cum).mean(axis=0))
    out: np.ndarray = _RW_GRID[_smooth_steps(np.stack(losses)).argmin(axis=0)]
    return out


def test_a_network_without_information_falls_back_to_the_random_walk(
    validation_year: _Windows, model: DiffusionModel
) -> None:
    """Quantiles that are the random walk's randomly widened or narrowed per window carry no
    information; on a year of real daily EURUSD the bare minimiser still gives them weight
    (chance gains), the one-standard-error rule (almost) never does."""
    w = validation_year
    assert 250 <= len(w) <= 320
    rw = random_walk_log_quantiles(w.sigma, H)
    new, old = [], []
    for seed in range(10):
        noise = np.exp(0.3 * np.random.default_rng(seed).standard_normal(len(w)))
        q = rw * noise[:, None, None]
        new.append(_fit_rw_weight(model, q, w))
        old.append(_argmin_weight(model, q, w))
    new_w, old_w = np.stack(new), np.stack(old)
    # the rule never picks less random walk than the minimiser: the minimiser always qualifies
    assert (new_w >= old_w).all()
    assert old_w.mean() < 0.95 and (old_w < 1.0).sum() >= 20  # chance gains the minimiser takes
    assert new_w.mean() >= 0.99 and (new_w < 1.0).sum() <= 2


def test_a_clear_gain_keeps_the_network(validation_year: _Windows, model: DiffusionModel) -> None:
    """Quantiles shifted toward the realised change (a network that knows something) beat the
    random walk by far more than the noise: the rule keeps the minimiser's weight, 0."""
    w = validation_year
    q = random_walk_log_quantiles(w.sigma, H) + 0.3 * w.cum[:, :, None]
    np.testing.assert_array_equal(_fit_rw_weight(model, q, w), np.zeros(H))


def test_too_few_windows_for_an_error_take_the_minimiser(validation_year: _Windows, model: DiffusionModel) -> None:
    """Fewer than two blocks of H windows give no standard error: the minimiser is taken."""
    w = validation_year.take(np.arange(H + 3))
    q = random_walk_log_quantiles(w.sigma, H) * 0.8
    np.testing.assert_array_equal(_fit_rw_weight(model, q, w), _argmin_weight(model, q, w))
