"""Forecast evaluation: CRPS, interval coverage, PIT, MAE of the median, and baselines.

Two CRPS forms are provided. :func:`crps_samples` is the energy form
``E|X - y| - E|X - X'| / 2`` from an ensemble; :func:`crps_quantiles` is the
quantile-loss (pinball) form ``2 * mean_q rho_q(y - q)`` over a set of quantile
levels, which tends to the CRPS as the levels get dense. The baseline is the Gaussian
random walk whose volatility is the RiskMetrics EWMA of log returns
(:func:`ewma_volatility`, :func:`ewma_random_walk_quantiles`).

>>> import numpy as np
>>> levels = np.array(QUANTILE_LEVELS)
>>> q = ewma_random_walk_quantiles(np.array([1.0]), np.array([0.01]), 2, levels)
>>> q.shape
(1, 2, 11)
>>> round(float(q[0, 0, 5]), 6)  # the median is the last price
1.0
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import norm

from .errors import ConfigError

__all__ = [
    "QUANTILE_LEVELS",
    "StepGroupSummary",
    "coverage",
    "crps_quantiles",
    "crps_samples",
    "default_step_groups",
    "ewma_random_walk_quantiles",
    "ewma_volatility",
    "median_abs_error",
    "pit",
    "summarize_forecasts",
]

#: Quantile levels of every forecast (and the CSV columns ``q05 … q95``).
QUANTILE_LEVELS: tuple[float, ...] = (0.05, 0.10, 0.20, 0.30, 0.40, 0.50, 0.60, 0.70, 0.80, 0.90, 0.95)


def crps_samples(samples: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Return the CRPS of an ensemble (energy form, unbiased "fair" variant not used).

    Parameters
    ----------
    samples
        ``[..., S]`` ensemble members.
    y
        ``[...]`` observations.

    Returns
    -------
    numpy.ndarray
        ``[...]`` CRPS, ``mean|X - y| - mean|X - X'| / 2`` (computed by sorting, O(S log S)).
    """
    x = np.sort(np.asarray(samples, dtype=np.float64), axis=-1)
    y = np.asarray(y, dtype=np.float64)
    s = x.shape[-1]
    term1 = np.mean(np.abs(x - y[..., None]), axis=-1)
    # mean_{i,j}|x_i - x_j| = 2/S^2 * sum_i (2i - S + 1) x_(i) for sorted x, i = 0..S-1
    w = 2.0 * np.arange(s) - s + 1.0
    term2 = 2.0 * np.sum(w * x, axis=-1) / (s * s)
    out: np.ndarray = term1 - 0.5 * term2
    return out


def crps_quantiles(quantiles: np.ndarray, y: np.ndarray, levels: Sequence[float] = QUANTILE_LEVELS) -> np.ndarray:
    """Return the quantile-loss form of the CRPS, ``2 * mean_k rho_{tau_k}(y - q_k)``.

    Shapes: ``quantiles [..., Q]`` (ordered as ``levels``), ``y [...]`` → ``[...]``.
    """
    tau = np.asarray(levels, dtype=np.float64)
    q = np.asarray(quantiles, dtype=np.float64)
    if q.shape[-1] != tau.size:
        raise ConfigError(f"expected {tau.size} quantiles, got {q.shape[-1]}")
    u = np.asarray(y, dtype=np.float64)[..., None] - q
    loss = np.maximum(tau * u, (tau - 1.0) * u)
    out: np.ndarray = 2.0 * loss.mean(axis=-1)
    return out


def coverage(lower: np.ndarray, upper: np.ndarray, y: np.ndarray) -> float:
    """Return the fraction of finite ``y`` inside ``[lower, upper]``."""
    y = np.asarray(y, dtype=np.float64)
    ok = np.isfinite(y)
    if not ok.any():
        return math.nan
    inside = (np.asarray(lower)[ok] <= y[ok]) & (y[ok] <= np.asarray(upper)[ok])
    return float(inside.mean())


def pit(samples: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Return the probability integral transform ``P(X <= y)`` of each forecast.

    Ties are split (randomised PIT replaced by its mid value). Shapes: ``samples [..., S]``,
    ``y [...]`` → ``[...]`` in [0, 1]; a calibrated forecaster gives uniform values.
    """
    x = np.asarray(samples, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)[..., None]
    out: np.ndarray = np.mean(x < y, axis=-1) + 0.5 * np.mean(x == y, axis=-1)
    return out


def median_abs_error(median: np.ndarray, y: np.ndarray) -> float:
    """Return the mean absolute error of the median over finite ``y``."""
    y = np.asarray(y, dtype=np.float64)
    ok = np.isfinite(y)
    return float(np.mean(np.abs(np.asarray(median, dtype=np.float64)[ok] - y[ok]))) if ok.any() else math.nan


def ewma_volatility(log_returns: np.ndarray, lam: float = 0.94, warmup: int = 24) -> np.ndarray:
    """Return the RiskMetrics EWMA volatility after each return, seeded with the mean square.

    ``sigma[i]`` uses returns ``0..i``; the first ``warmup`` values are the running root
    mean square. Same recursion as :class:`forex_diffusion.diffusion.SeriesContext`.
    """
    if not 0.0 < lam < 1.0:
        raise ConfigError(f"lambda must be in (0, 1), got {lam}")
    r2 = np.square(np.asarray(log_returns, dtype=np.float64)).tolist()
    out = np.empty(len(r2))
    v = seed = 0.0
    for i, x in enumerate(r2):
        if i < warmup:
            seed += x
            v = seed / (i + 1)
        else:
            v = lam * v + (1.0 - lam) * x
        out[i] = v
    return np.sqrt(out)


def ewma_random_walk_quantiles(
    last_close: np.ndarray, sigma: np.ndarray, horizon: int, levels: Sequence[float] = QUANTILE_LEVELS
) -> np.ndarray:
    """Return price quantiles of the Gaussian random walk in log price.

    ``price_h = last_close * exp(sigma * sqrt(h) * z_tau)``, ``h = 1..horizon``.
    Shapes: ``last_close [N]``, ``sigma [N]`` → ``[N, horizon, Q]``.
    """
    if horizon < 1:
        raise ConfigError(f"horizon must be >= 1, got {horizon}")
    z = norm.ppf(np.asarray(levels, dtype=np.float64))
    h = np.sqrt(np.arange(1, horizon + 1, dtype=np.float64))
    lc = np.asarray(last_close, dtype=np.float64)[:, None, None]
    sg = np.asarray(sigma, dtype=np.float64)[:, None, None]
    out: np.ndarray = lc * np.exp(sg * h[None, :, None] * z[None, None, :])
    return out


def default_step_groups(horizon: int) -> list[tuple[int, int]]:
    """Return inclusive step ranges: 1, 2–3, 4–6, 7–12, 13–24, 25–60, … clipped to ``horizon``."""
    edges = [1, 2, 4, 7, 13, 25, 61, 121, 241]
    out = []
    for lo, hi in zip(edges, edges[1:] + [10**9], strict=False):
        if lo > horizon:
            break
        out.append((lo, min(hi - 1, horizon)))
    return out


@dataclass(frozen=True, slots=True)
class StepGroupSummary:
    """Scores of one step group (model vs the EWMA random walk)."""

    steps: tuple[int, int]
    n: int
    crps: float
    rw_crps: float
    skill: float
    cover50: float
    cover90: float
    rw_cover90: float
    mae_median: float


def summarize_forecasts(
    rows: pd.DataFrame, groups: Sequence[tuple[int, int]] | None = None, levels: Sequence[float] = QUANTILE_LEVELS
) -> list[StepGroupSummary]:
    """Score backtest rows per step group.

    ``rows`` has the backtest CSV columns (``step``, ``q05…q95``, ``rw_q05…rw_q95``,
    ``realized``); rows without a realised value are ignored. Skill is
    ``1 - CRPS / CRPS_rw`` with CRPS in the quantile-loss form over ``levels``. The 50 %
    interval ``[q25, q75]`` is interpolated linearly between the ``q20/q30`` and ``q70/q80``
    columns; the 90 % interval is ``[q05, q95]``.
    """
    names = [_qname(t) for t in levels]
    done = rows[np.isfinite(rows["realized"].to_numpy(dtype=np.float64))]
    horizon = int(rows["step"].max()) if len(rows) else 0
    out = []
    for lo, hi in groups or default_step_groups(horizon):
        g = done[(done["step"] >= lo) & (done["step"] <= hi)]
        y = g["realized"].to_numpy(dtype=np.float64)
        q = g[names].to_numpy(dtype=np.float64)
        rq = g[["rw_" + n for n in names]].to_numpy(dtype=np.float64)
        c = float(crps_quantiles(q, y, levels).mean()) if len(g) else math.nan
        rc = float(crps_quantiles(rq, y, levels).mean()) if len(g) else math.nan
        out.append(
            StepGroupSummary(
                steps=(lo, hi),
                n=len(g),
                crps=c,
                rw_crps=rc,
                skill=1.0 - c / rc if rc > 0 else math.nan,
                cover50=coverage(_interp(g, 0.25), _interp(g, 0.75), y) if len(g) else math.nan,
                cover90=coverage(g["q05"].to_numpy(), g["q95"].to_numpy(), y) if len(g) else math.nan,
                rw_cover90=coverage(g["rw_q05"].to_numpy(), g["rw_q95"].to_numpy(), y) if len(g) else math.nan,
                mae_median=median_abs_error(g["q50"].to_numpy(), y) if len(g) else math.nan,
            )
        )
    return out


def _qname(tau: float) -> str:
    return f"q{round(tau * 100):02d}"


def _interp(g: pd.DataFrame, tau: float) -> np.ndarray:
    """Linear interpolation of the quantile ``tau`` between the two nearest columns (0.25: q20/q30)."""
    lo, hi = math.floor(tau * 10) / 10, math.ceil(tau * 10) / 10
    a = g[_qname(lo)].to_numpy(dtype=np.float64)
    b = g[_qname(hi)].to_numpy(dtype=np.float64)
    w = (tau - lo) / (hi - lo)
    out: np.ndarray = a + w * (b - a)
    return out
