"""Forecast evaluation: CRPS, interval coverage, PIT, MAE of the median, and baselines.

The one home of these scores: training's validation report, the backtest summary, the
live quality monitor, the drift detectors and the forecaster's per-candle scoring all call
this module (:func:`score_step` scores one realised step once; the monitor and the drift
detectors take its :class:`StepScore`).

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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike

from forex_diffusion.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "CENTRAL_INTERVALS",
    "QUANTILE_COLUMNS",
    "QUANTILE_LEVELS",
    "StepGroupSummary",
    "StepScore",
    "central_interval",
    "coverage",
    "crps_quantiles",
    "crps_samples",
    "default_step_groups",
    "ewma_random_walk_quantiles",
    "ewma_volatility",
    "interval_hits",
    "mean_of",
    "median_abs_error",
    "pinball_loss",
    "pit",
    "pit_from_quantiles",
    "quantile_column",
    "random_walk_log_quantiles",
    "score_step",
    "skill_score",
    "summarize_forecasts",
]

#: Quantile levels of every forecast (and the CSV columns ``q05 … q95``).
QUANTILE_LEVELS: tuple[float, ...] = (0.05, 0.10, 0.20, 0.30, 0.40, 0.50, 0.60, 0.70, 0.80, 0.90, 0.95)


def skill_score(score: float, reference: float) -> float:
    """``1 - score / reference`` for a loss (CRPS, Brier) against a reference's: above 0 beats
    it; NaN when the reference's loss is not positive (nothing to beat).

    >>> skill_score(0.8, 1.0), skill_score(1.0, 0.0)
    (0.19999999999999996, nan)
    """
    return 1.0 - score / reference if reference > 0 else math.nan


_MAX_DOUBLE = 1.7976931348623157e308


def mean_of(values: Iterable[float]) -> float:
    """The mean of ``values`` (NaN for none), exactly rounded, and finite where they all are:
    ``math.fsum`` raises on a sum past the largest double (two scores of 9e307, a hostile
    stored row, stopped the shadow's decision with ``OverflowError``), and on ``inf`` with
    ``-inf`` (``ValueError``). Such a sum is taken over the values divided by twice their
    count (at most half the largest double), then doubled (the largest double at most);
    infinities of both signs give NaN.

    >>> mean_of([0.25, 0.5, 0.75]), mean_of([9e307, 9e307]), mean_of([1.7976931348623157e308] * 3), mean_of([])
    (0.5, 9e+307, 1.7976931348623157e+308, nan)
    >>> mean_of([math.inf, 1.0]), mean_of([math.inf, -math.inf])
    (inf, nan)
    """
    xs = [float(v) for v in values]
    if not xs:
        return math.nan
    try:
        return math.fsum(xs) / len(xs)
    except OverflowError:  # finite values whose sum is not: halves of count-ths, doubled
        half = math.fsum(x / (2 * len(xs)) for x in xs)
        # a mean of finite values is at most the largest double: the division's rounding up
        # may double past it by an ulp
        return 2.0 * half if abs(half) <= _MAX_DOUBLE / 2 else math.copysign(_MAX_DOUBLE, half)
    except ValueError:  # inf and -inf
        return math.nan


def quantile_column(tau: float) -> str:
    """The column that holds the ``tau`` quantile in backtest rows and reports (0.05 → ``q05``)."""
    return f"q{round(tau * 100):02d}"


#: The columns of :data:`QUANTILE_LEVELS`, in order: ``q05 … q95``.
QUANTILE_COLUMNS: tuple[str, ...] = tuple(map(quantile_column, QUANTILE_LEVELS))

#: The central intervals every consumer scores: name -> (lower level, upper level).
CENTRAL_INTERVALS: dict[str, tuple[float, float]] = {"50": (0.25, 0.75), "90": (0.05, 0.95)}

_LEVEL_TOL = 1e-9
#: Widest gap between two levels across which a missing level is interpolated (the grid's 0.1).
_MAX_INTERP_GAP = 0.1 + _LEVEL_TOL


def _z(levels: Sequence[float]) -> np.ndarray:
    """The standard normal quantiles of ``levels``: ``scipy.special.ndtri``, what
    ``scipy.stats.norm.ppf`` computes (to the bit, tested), without loading ``scipy.stats``
    (half a second of every worker's start; a tick worker never asks for a quantile)."""
    if tuple(levels) == QUANTILE_LEVELS:
        return _z_default()
    from scipy.special import ndtri

    z: np.ndarray = ndtri(np.asarray(levels, dtype=np.float64))
    return z


@cache
def _z_default() -> np.ndarray:
    """:func:`_z` of :data:`QUANTILE_LEVELS`, computed once (read-only)."""
    from scipy.special import ndtri

    z: np.ndarray = ndtri(np.asarray(QUANTILE_LEVELS, dtype=np.float64))
    z.flags.writeable = False
    return z


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


def pinball_loss(tau: ArrayLike, quantile: ArrayLike, realized: ArrayLike) -> np.ndarray:
    """Return the pinball (quantile) loss ``max(tau u, (tau - 1) u)``, ``u = realized - quantile``.

    Broadcasts its arguments.

    >>> float(pinball_loss(0.9, 1.0, 2.0)), round(float(pinball_loss(0.9, 3.0, 2.0)), 12)
    (0.9, 0.1)
    """
    u = np.asarray(realized, dtype=np.float64) - np.asarray(quantile, dtype=np.float64)
    tau = np.asarray(tau, dtype=np.float64)
    out: np.ndarray = np.maximum(tau * u, (tau - 1.0) * u)
    return out


def crps_quantiles(quantiles: np.ndarray, y: ArrayLike, levels: Sequence[float] = QUANTILE_LEVELS) -> np.ndarray:
    """Return the quantile-loss form of the CRPS, ``2 * mean_k rho_{tau_k}(y - q_k)``.

    Shapes: ``quantiles [..., Q]`` (ordered as ``levels``), ``y [...]`` → ``[...]``.
    """
    tau = np.asarray(levels, dtype=np.float64)
    q = np.asarray(quantiles, dtype=np.float64)
    if q.shape[-1] != tau.size:
        raise ConfigError(f"expected {tau.size} quantiles, got {q.shape[-1]}")
    loss = pinball_loss(tau, q, np.asarray(y, dtype=np.float64)[..., None])
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


def central_interval(
    quantiles: np.ndarray, name: str, levels: Sequence[float] = QUANTILE_LEVELS
) -> tuple[np.ndarray, np.ndarray] | None:
    """Return the ends ``(lower [...], upper [...])`` of the central interval ``name`` (``"50"``, ``"90"``).

    ``quantiles [..., Q]`` are ordered as ``levels``. An end whose level is not among
    ``levels`` is interpolated linearly between the two neighbouring levels
    (``q25 = q20 + 0.5 (q30 - q20)``) when they are at most 0.1 apart; otherwise the
    interval is not measurable and None is returned.

    >>> lo, hi = central_interval(np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0]), "50")
    >>> float(lo), float(hi)
    (3.5, 8.5)
    """
    q = np.asarray(quantiles, dtype=np.float64)
    ends = [_quantile_at(q, tau, levels) for tau in CENTRAL_INTERVALS[name]]
    if ends[0] is None or ends[1] is None:
        return None
    return ends[0], ends[1]


def _quantile_at(q: np.ndarray, tau: float, levels: Sequence[float]) -> np.ndarray | None:
    for i, level in enumerate(levels):
        if abs(level - tau) <= _LEVEL_TOL:
            out: np.ndarray = q[..., i]
            return out
        if level > tau:
            if i == 0 or level - levels[i - 1] > _MAX_INTERP_GAP:
                return None
            lo = levels[i - 1]
            a, b = q[..., i - 1], q[..., i]
            interp: np.ndarray = a + (tau - lo) / (level - lo) * (b - a)
            return interp
    return None


def interval_hits(
    quantiles: np.ndarray, y: ArrayLike, name: str, levels: Sequence[float] = QUANTILE_LEVELS
) -> np.ndarray | None:
    """Return whether each ``y [...]`` lies in the central interval ``name``, ends included; None if unmeasurable."""
    ends = central_interval(quantiles, name, levels)
    if ends is None:
        return None
    yy = np.asarray(y, dtype=np.float64)
    out: np.ndarray = (ends[0] <= yy) & (yy <= ends[1])
    return out


def pit_from_quantiles(quantiles: np.ndarray, y: float, levels: Sequence[float] = QUANTILE_LEVELS) -> float:
    """Return the PIT of ``y`` under one forecast's quantiles ``[Q]``: the level interpolated at ``y``.

    0 below the lowest quantile, 1 above the highest.

    >>> pit_from_quantiles(np.array([1.0, 2.0, 3.0]), 2.5, (0.25, 0.5, 0.75))
    0.625
    """
    return float(np.interp(y, quantiles, np.asarray(levels, dtype=np.float64), left=0.0, right=1.0))


@dataclass(frozen=True, slots=True)
class StepScore:
    """The scores of one realised horizon step of one forecast (see :func:`score_step`).

    ``hit50`` / ``hit90``: whether the realised value lies in the central 50 % / 90 %
    interval (None when the levels cannot measure it).
    """

    crps: float
    crps_rw: float
    pit: float
    hit50: bool | None
    hit90: bool | None


def score_step(
    quantiles: ArrayLike, rw_quantiles: ArrayLike, realized: float, levels: Sequence[float] = QUANTILE_LEVELS
) -> StepScore:
    """Score one realised step: CRPS of the model and of the random walk, PIT, interval hits.

    ``quantiles`` and ``rw_quantiles`` are ``[Q]`` ordered as ``levels``.

    >>> s = score_step([0.9, 1.0, 1.1], [0.8, 1.0, 1.2], 1.05, (0.25, 0.5, 0.75))
    >>> round(s.crps, 6), round(s.crps_rw, 6), s.pit, s.hit50, s.hit90
    (0.05, 0.083333, 0.625, True, None)
    """
    q = np.asarray(quantiles, dtype=np.float64)
    rw = np.asarray(rw_quantiles, dtype=np.float64)
    y = np.array([realized], dtype=np.float64)
    hits = {name: interval_hits(q, realized, name, levels) for name in CENTRAL_INTERVALS}
    return StepScore(
        crps=float(crps_quantiles(q[None, :], y, levels)[0]),
        crps_rw=float(crps_quantiles(rw[None, :], y, levels)[0]),
        pit=pit_from_quantiles(q, realized, levels),
        hit50=None if hits["50"] is None else bool(hits["50"]),
        hit90=None if hits["90"] is None else bool(hits["90"]),
    )


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


def random_walk_log_quantiles(sigma: ArrayLike, horizon: int, levels: Sequence[float] = QUANTILE_LEVELS) -> np.ndarray:
    """Return log-change quantiles of the Gaussian random walk: ``sigma * sqrt(h) * z_tau``, ``h = 1..horizon``.

    Shapes: ``sigma [...]`` (a scalar included) → ``[..., horizon, Q]``.
    """
    if horizon < 1:
        raise ConfigError(f"horizon must be >= 1, got {horizon}")
    z = _z(levels)
    h = np.sqrt(np.arange(1, horizon + 1, dtype=np.float64))
    sg = np.asarray(sigma, dtype=np.float64)[..., None, None]
    out: np.ndarray = sg * h[:, None] * z[None, :]
    return out


def ewma_random_walk_quantiles(
    last_close: ArrayLike, sigma: ArrayLike, horizon: int, levels: Sequence[float] = QUANTILE_LEVELS
) -> np.ndarray:
    """Return price quantiles of the Gaussian random walk in log price.

    ``price_h = last_close * exp(sigma * sqrt(h) * z_tau)``, ``h = 1..horizon``.
    Shapes: ``last_close [...]``, ``sigma [...]`` (scalars included) → ``[..., horizon, Q]``.
    """
    log_q = random_walk_log_quantiles(sigma, horizon, levels)
    out: np.ndarray = np.asarray(last_close, dtype=np.float64)[..., None, None] * np.exp(log_q)
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
    names = [quantile_column(t) for t in levels]
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
        in50, in90 = interval_hits(q, y, "50", levels), interval_hits(q, y, "90", levels)
        rw90 = interval_hits(rq, y, "90", levels)
        out.append(
            StepGroupSummary(
                steps=(lo, hi),
                n=len(g),
                crps=c,
                rw_crps=rc,
                skill=skill_score(c, rc),
                cover50=_share(in50),
                cover90=_share(in90),
                rw_cover90=_share(rw90),
                mae_median=median_abs_error(g["q50"].to_numpy(), y) if len(g) else math.nan,
            )
        )
    return out


def _share(hits: np.ndarray | None) -> float:
    return float(hits.mean()) if hits is not None and hits.size else math.nan
