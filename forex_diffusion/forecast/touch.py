"""Touch probabilities and running extremes of sampled price paths, and their scores.

A forecast's sample paths answer two questions the marginal quantiles cannot: *will the
price touch this level before step h*, and *how far might it run (up or down) by step h*.

**Bands.** A band is a level above (``+``) or below (``-``) the last close, at a distance
given in one of three units (spec syntax ``[+|-]<size><unit>``; no sign: both sides):

- ``pip``: ``size`` pips of the instrument (0.01 for JPY quotes, 0.0001 otherwise);
- ``sigma``: ``size`` times the one-step EWMA volatility ``sigma`` at the origin (log price);
- ``vol``: ``size`` times the volatility over the horizon, ``sigma * sqrt(H)``.

Default :data:`DEFAULT_TOUCH_BANDS`: ``0.5vol,1vol`` (four bands: ±0.5 and ±1 horizon
volatilities; for EUR/USD hourly, H = 24, about ±25 and ±50 pips in 2017).

**Touch** (close-based): a band is touched by step ``h`` when one of the closes of steps
``1..h`` is at or beyond its level. Intrabar highs and lows are not modelled (the model
forecasts closes), so a wick through the level that closes back inside does not count,
and the probability is a lower bound of the intrabar touch probability.

**Calibration.** Like the quantiles: the model's probability (share of calibrated sample
paths whose running maximum/minimum reaches the level) is mixed with the EWMA random walk's
touch probability with the model's per-step weight ``rw_weight`` (a mixture of the two path
distributions gives exactly this average; as the weight varies with the step, the running
maximum over steps then keeps the probability non-decreasing). The random walk's probability is that of a
driftless Gaussian walk on discrete steps, ``P(max_{j<=h} S_j >= d)`` with unit step variance;
it has no closed form (the reflection principle is exact only for continuous monitoring), so
it is tabulated once per horizon from 2**18 simulated paths with a fixed seed
(:func:`rw_touch_table`; standard error below 0.001, checked against the exact one- and
two-step values and an independent simulation in ``tests/unit/test_touch.py``).

**Extremes**: quantiles (levels :data:`EXTREME_LEVELS`) of the running maximum and minimum of
the closes of steps ``1..h``, blended with the random walk's the same way (quantile
averaging, as the price quantiles).

**Scores** (:func:`touch_rows`, :func:`summarize_touch`, :func:`touch_reliability`): the
Brier score of each band and step against the realised touch, its skill
``1 - Brier / Brier_rw`` against the random walk's probabilities, and a reliability table
(predicted probability bins against the observed frequency).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

import numpy as np
import pandas as pd

from forex_diffusion.errors import ConfigError
from forex_diffusion.instruments import InstrumentRegistry
from forex_diffusion.quality.evaluation import skill_score

__all__ = [
    "DEFAULT_TOUCH_BANDS",
    "EXTREME_LEVELS",
    "ExtremesForecast",
    "TouchBand",
    "TouchForecast",
    "TouchStepSummary",
    "band_distances",
    "extremes_from_paths",
    "parse_touch_bands",
    "pip_size",
    "realised_touch",
    "rw_extreme_quantiles",
    "rw_touch_probability",
    "rw_touch_table",
    "summarize_touch",
    "touch_from_paths",
    "touch_reliability",
    "touch_rows",
]

Unit = Literal["pip", "sigma", "vol"]
_SPEC = re.compile(r"([+-]?)((?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)(pip|pips|sigma|vol)")
#: Quantile levels of the running maximum and minimum.
EXTREME_LEVELS: tuple[float, ...] = (0.05, 0.5, 0.95)
#: Simulated random-walk paths of the touch table, its seed and its grid spacing (sigma units).
RW_PATHS = 1 << 18
RW_SEED = 20170101
RW_GRID = 0.01


@dataclass(frozen=True, slots=True)
class TouchBand:
    """One level: ``side`` +1 (above the last close) or -1 (below), ``size`` in ``unit``."""

    side: int
    size: float
    unit: Unit

    @property
    def name(self) -> str:
        """``+0.5vol``, ``-10pip``, ``+2sigma``: the size in its shortest form that reads back
        as the same float, so two bands never share a name (``%g`` kept six digits:
        ``0.1234567vol`` and ``0.1234568vol`` were both ``+0.123457vol``, and a record's
        ``touch.bands`` and the backtest's by-band summary pooled them).

        >>> TouchBand(side=1, size=0.1234567, unit="vol").name, TouchBand(side=-1, size=20.0, unit="pip").name
        ('+0.1234567vol', '-20pip')
        """
        size = repr(self.size)
        return f"{'+' if self.side > 0 else '-'}{size[:-2] if size.endswith('.0') else size}{self.unit}"


def parse_touch_bands(spec: str | Sequence[str] | Sequence[TouchBand] | None) -> tuple[TouchBand, ...]:
    """Parse ``"0.5vol,1vol,+20pip"`` into bands (an unsigned spec gives both sides).

    ``None`` gives :data:`DEFAULT_TOUCH_BANDS`; ``""`` or ``"none"`` no band. Duplicates are
    dropped, order kept (up before down for an unsigned spec).

    >>> [b.name for b in parse_touch_bands("1vol,+20pip")]
    ['+1vol', '-1vol', '+20pip']
    """
    if spec is None:
        return DEFAULT_TOUCH_BANDS
    items: list[Any] = [s.strip() for s in spec.split(",")] if isinstance(spec, str) else list(spec)
    out: list[TouchBand] = []
    for item in items:
        if isinstance(item, TouchBand):
            bands = [item]
        else:
            text = str(item).strip()
            if not text or text.lower() == "none":
                continue
            m = _SPEC.fullmatch(text)
            if m is None:
                raise ConfigError(f"touch band {text[:32]!r}: expected [+|-]<size><pip|sigma|vol>, e.g. 1vol or +20pip")
            size = float(m.group(2))
            unit: Unit = "pip" if m.group(3).startswith("pip") else m.group(3)  # type: ignore[assignment]
            if not (math.isfinite(size) and size > 0):
                raise ConfigError(f"touch band {text[:32]!r}: size must be > 0")
            sides = [1] if m.group(1) == "+" else [-1] if m.group(1) == "-" else [1, -1]
            bands = [TouchBand(side=s, size=size, unit=unit) for s in sides]
        for b in bands:
            if b not in out:
                out.append(b)
    if len(out) > 32:
        raise ConfigError(f"at most 32 touch bands, got {len(out)}")
    return tuple(out)


DEFAULT_TOUCH_BANDS: tuple[TouchBand, ...] = (
    TouchBand(1, 0.5, "vol"),
    TouchBand(-1, 0.5, "vol"),
    TouchBand(1, 1.0, "vol"),
    TouchBand(-1, 1.0, "vol"),
)
"""``0.5vol,1vol``: ±0.5 and ±1 times ``sigma * sqrt(H)``."""

_REGISTRY = InstrumentRegistry()


def pip_size(symbol: str) -> float:
    """The pip of ``symbol`` (the registry's; else 0.01 for ``*JPY``, 0.0001 otherwise)."""
    inst = _REGISTRY.get(_REGISTRY.normalise(symbol) or symbol)
    if inst is not None:
        return inst.pip
    return 0.01 if symbol.upper().endswith("JPY") else 0.0001


def band_distances(
    bands: Sequence[TouchBand], last_close: np.ndarray, sigma: np.ndarray, horizon: int, symbols: Sequence[str]
) -> np.ndarray:
    """Return ``[N, nb]`` log distances (> 0; ``inf``: unreachable) of each band from the last close.

    A band's price level is ``last_close * exp(side * distance)`` (for pips exactly
    ``last_close ± size * pip``).
    """
    lc = np.asarray(last_close, dtype=np.float64)
    sg = np.asarray(sigma, dtype=np.float64)
    out = np.empty((lc.size, len(bands)))
    pips = np.array([pip_size(s) for s in symbols]) if any(b.unit == "pip" for b in bands) else None
    for k, b in enumerate(bands):
        if b.unit == "sigma":
            out[:, k] = b.size * sg
        elif b.unit == "vol":
            out[:, k] = b.size * sg * math.sqrt(horizon)
        else:
            assert pips is not None
            ratio = b.size * pips / lc
            if b.side > 0:
                out[:, k] = np.log1p(ratio)
            else:  # a level at or below zero is unreachable: inf
                with np.errstate(divide="ignore"):
                    out[:, k] = -np.log1p(-np.minimum(ratio, 1.0))
    return out


# -- the random walk ---------------------------------------------------------------------------


@lru_cache(maxsize=16)
def rw_touch_table(horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(grid, survival)``: ``survival[h-1, k] = P(max_{j<=h} S_j >= grid[k])``.

    ``S_j`` is a driftless Gaussian random walk with unit step variance (``S_0 = 0`` not
    included in the maximum); ``grid`` spans ``±(6 sqrt(H) + 2)`` in steps of
    :data:`RW_GRID`. Simulated once per horizon (``RW_PATHS`` paths, seed ``RW_SEED``,
    in chunks), cached; the read-only table is shared.
    """
    if not 1 <= horizon <= 100_000:
        raise ConfigError(f"horizon must be in [1, 100000], got {horizon}")
    half = int(math.ceil((6.0 * math.sqrt(horizon) + 2.0) / RW_GRID))
    grid = np.arange(-half, half + 1) * RW_GRID
    counts = np.zeros((horizon, grid.size + 1), dtype=np.int64)
    rng = np.random.default_rng(RW_SEED)
    chunk = max(1, min(RW_PATHS, (1 << 22) // horizon))
    done = 0
    while done < RW_PATHS:
        n = min(chunk, RW_PATHS - done)
        m = np.maximum.accumulate(np.cumsum(rng.standard_normal((n, horizon)), axis=1), axis=1)
        # bin j+1 holds maxima in [grid[j], grid[j+1]); bin 0 those below grid[0]
        idx = np.clip(np.floor(m / RW_GRID).astype(np.int64) + half + 1, 0, grid.size)
        for h in range(horizon):
            counts[h] += np.bincount(idx[:, h], minlength=grid.size + 1)
        done += n
    # P(M >= grid[k]) = share in bins k+1 .. end
    tail = np.cumsum(counts[:, ::-1], axis=1)[:, ::-1][:, 1:]
    survival = tail / float(RW_PATHS)
    survival.setflags(write=False)
    grid.setflags(write=False)
    return grid, survival


def rw_touch_probability(distance: np.ndarray, horizon: int) -> np.ndarray:
    """Return ``[..., H]``: the random walk's probability of reaching ``distance`` (sigma units) by step h.

    ``distance [...]`` is the band's distance from the last close divided by ``sigma``
    (the same for an upper and a lower band: the walk is symmetric); linear interpolation
    in the table of :func:`rw_touch_table`; ``inf`` gives 0.
    """
    grid, surv = rw_touch_table(horizon)
    d = np.asarray(distance, dtype=np.float64)
    pos = (np.nan_to_num(d, nan=np.inf, posinf=1e300) - grid[0]) / RW_GRID
    pos = np.clip(pos, 0.0, grid.size - 1.0)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, grid.size - 1)
    frac = pos - lo
    out: np.ndarray = surv[:, lo] * (1.0 - frac) + surv[:, hi] * frac  # [H, ...]
    out = np.moveaxis(out, 0, -1)
    return np.where(np.isnan(d)[..., None], np.nan, out)


@lru_cache(maxsize=16)
def _rw_max_quantiles(horizon: int, levels: tuple[float, ...]) -> np.ndarray:
    grid, surv = rw_touch_table(horizon)
    cdf = 1.0 - surv  # P(M < grid[k]), non-decreasing in k
    out = np.empty((horizon, len(levels)))
    for h in range(horizon):
        c, first = np.unique(cdf[h], return_index=True)
        out[h] = np.interp(levels, c, grid[first])
    out.setflags(write=False)
    return out


def rw_extreme_quantiles(horizon: int, levels: Sequence[float] = EXTREME_LEVELS) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(max_q, min_q)``, each ``[H, L]``: the walk's running max/min quantiles in sigma units."""
    mx = _rw_max_quantiles(horizon, tuple(float(x) for x in levels))
    mn = -_rw_max_quantiles(horizon, tuple(1.0 - float(x) for x in levels))
    return mx, mn


# -- forecasts -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TouchForecast:
    """Touch probabilities of one forecast.

    ``bands`` names (``+0.5vol``), ``levels [nb]`` their prices, ``p [nb, H]`` the
    calibrated probability of a close at or beyond the level by step h (non-decreasing in
    h), ``rw_p [nb, H]`` the random walk's.
    """

    bands: tuple[str, ...]
    levels: np.ndarray
    p: np.ndarray
    rw_p: np.ndarray

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (probabilities rounded to 4 decimals)."""
        return {
            "bands": list(self.bands),
            "levels": self.levels.tolist(),
            "p": np.round(self.p, 4).tolist(),
            "rw_p": np.round(self.rw_p, 4).tolist(),
        }


@dataclass(frozen=True, slots=True)
class ExtremesForecast:
    """Quantiles at ``levels`` of the running maximum and minimum close of steps 1..h: ``[H, L]`` prices."""

    levels: tuple[float, ...]
    max: np.ndarray
    min: np.ndarray

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {"levels": list(self.levels), "max": self.max.tolist(), "min": self.min.tolist()}


def touch_from_paths(
    logchg: np.ndarray, distance: np.ndarray, sides: Sequence[int], sigma: np.ndarray, rw_weight: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(p, rw_p)``, each ``[B, nb, H]``, from sampled paths.

    Parameters
    ----------
    logchg
        ``[B, S, H]`` cumulative log price changes from the last close (the calibrated paths).
    distance
        ``[B, nb]`` band distances (log, > 0), see :func:`band_distances`.
    sides
        ``[nb]`` +1 (upper band) or -1 (lower band).
    sigma
        ``[B]`` EWMA volatility at the origin.
    rw_weight
        ``[H]`` weight of the random walk per step (0: the model's paths alone).
    """
    x = np.asarray(logchg, dtype=np.float64)
    h = x.shape[-1]
    s = np.asarray(sides)
    d = np.asarray(distance, dtype=np.float64)
    model = np.empty((x.shape[0], len(s), h))
    for side, run in ((1, np.maximum.accumulate(x, axis=-1)), (-1, -np.minimum.accumulate(x, axis=-1))):
        k = np.flatnonzero(s == side)  # running max (min) of the paths [B, S, H] against these bands
        if k.size:
            model[:, k] = np.count_nonzero(run[:, None] >= d[:, k, None, None], axis=2) / x.shape[1]
    sg = np.asarray(sigma, dtype=np.float64)[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        rw = rw_touch_probability(np.where(sg > 0, d / sg, np.inf), h)  # [B, nb, H]
    w = np.asarray(rw_weight, dtype=np.float64).reshape(1, 1, h)
    # the weight changes with the step, so the blend can dip: a touch by step h implies one
    # by h+1, hence the running maximum over steps (a no-op when the weight is constant)
    p = np.maximum.accumulate(np.clip((1.0 - w) * model + w * rw, 0.0, 1.0), axis=-1)
    return p, rw


def _sample_quantiles(x: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """``x [B, S, H]`` → ``[B, H, L]``: numpy's default (linear) quantiles over axis 1, by one sort.

    (``np.quantile`` over a middle axis is several times slower than sorting.)
    """
    xs = np.sort(x, axis=1)
    pos = levels * (x.shape[1] - 1)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, x.shape[1] - 1)
    frac = pos - lo
    out: np.ndarray = xs[:, lo, :] * (1.0 - frac)[None, :, None] + xs[:, hi, :] * frac[None, :, None]
    return np.moveaxis(out, 1, -1)


def extremes_from_paths(
    logchg: np.ndarray, sigma: np.ndarray, rw_weight: np.ndarray, levels: Sequence[float] = EXTREME_LEVELS
) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(max_q, min_q)``, each ``[B, H, L]`` log changes: blended running max/min quantiles."""
    x = np.asarray(logchg, dtype=np.float64)
    h = x.shape[-1]
    lv = np.asarray(levels, dtype=np.float64)
    mq = _sample_quantiles(np.maximum.accumulate(x, axis=-1), lv)
    nq = _sample_quantiles(np.minimum.accumulate(x, axis=-1), lv)
    rmx, rmn = rw_extreme_quantiles(h, tuple(levels))
    sg = np.asarray(sigma, dtype=np.float64)[:, None, None]
    w = np.asarray(rw_weight, dtype=np.float64).reshape(1, h, 1)
    # non-decreasing (max) / non-increasing (min) in the step, as the running extremes are
    mx = np.maximum.accumulate((1.0 - w) * mq + w * rmx[None] * sg, axis=1)
    mn = np.minimum.accumulate((1.0 - w) * nq + w * rmn[None] * sg, axis=1)
    return mx, mn


# -- scores ------------------------------------------------------------------------------------

TOUCH_COLUMNS: tuple[str, ...] = ("as_of", "band", "step", "level", "p", "rw_p", "hit")


def realised_touch(
    closes: np.ndarray, start: np.ndarray, levels: np.ndarray, sides: Sequence[int], horizon: int
) -> np.ndarray:
    """Return ``[N, nb, H]``: 1.0 when a close of steps ``1..h`` after ``start`` is at or beyond the level.

    ``closes [T]``, ``start [N]`` the index of the origin's close, ``levels [N, nb]``
    prices; NaN where step h is past the end of ``closes``.
    """
    c = np.asarray(closes, dtype=np.float64)
    pos = np.asarray(start)[:, None] + np.arange(1, horizon + 1)[None, :]  # [N, H]
    ok = pos < len(c)
    path = np.where(ok, c[np.minimum(pos, len(c) - 1)], np.nan)
    up = np.fmax.accumulate(np.where(ok, path, -np.inf), axis=1)
    dn = np.fmin.accumulate(np.where(ok, path, np.inf), axis=1)
    s = np.asarray(sides)[None, :, None]
    lv = np.asarray(levels, dtype=np.float64)[:, :, None]
    hit = np.where(s > 0, up[:, None, :] >= lv, dn[:, None, :] <= lv).astype(np.float64)
    return np.where(ok[:, None, :], hit, np.nan)


def touch_rows(
    as_of: np.ndarray, bands: Sequence[str], levels: np.ndarray, p: np.ndarray, rw_p: np.ndarray, hit: np.ndarray
) -> pd.DataFrame:
    """Long table, one row per (as_of, band, step): columns :data:`TOUCH_COLUMNS`."""
    n, nb, h = p.shape
    return pd.DataFrame(
        {
            "as_of": np.repeat(np.asarray(as_of, dtype=np.int64), nb * h),
            "band": np.tile(np.repeat(np.asarray(bands, dtype=object), h), n),
            "step": np.tile(np.arange(1, h + 1), n * nb),
            "level": np.repeat(np.asarray(levels, dtype=np.float64).ravel(), h),
            "p": p.ravel(),
            "rw_p": rw_p.ravel(),
            "hit": hit.ravel(),
        },
        columns=list(TOUCH_COLUMNS),
    )


@dataclass(frozen=True, slots=True)
class TouchStepSummary:
    """Brier scores of one step (one band, or all bands pooled: ``band == "all"``)."""

    step: int
    band: str
    n: int
    rate: float
    brier: float
    rw_brier: float
    skill: float


def summarize_touch(rows: pd.DataFrame, *, by_band: bool = False) -> list[TouchStepSummary]:
    """Brier score and skill per step (bands pooled, or per band), over realised rows.

    ``rate`` is the observed touch frequency; ``skill = 1 - brier / rw_brier`` (NaN when the
    random walk's Brier score is 0).
    """
    done = rows[np.isfinite(rows["hit"].to_numpy(dtype=np.float64))]
    keys = ["step", "band"] if by_band else ["step"]
    out: list[TouchStepSummary] = []
    if done.empty:
        return out
    y = done["hit"].to_numpy(dtype=np.float64)
    frame = pd.DataFrame(
        {
            "step": done["step"].to_numpy(),
            "band": done["band"].to_numpy(),
            "y": y,
            "b": (done["p"].to_numpy(dtype=np.float64) - y) ** 2,
            "rb": (done["rw_p"].to_numpy(dtype=np.float64) - y) ** 2,
        }
    )
    for key, g in frame.groupby(keys, sort=True):
        k = key if isinstance(key, tuple) else (key,)
        b, rb = float(g["b"].mean()), float(g["rb"].mean())
        out.append(
            TouchStepSummary(
                step=int(k[0]),
                band=str(k[1]) if by_band else "all",
                n=len(g),
                rate=float(g["y"].mean()),
                brier=b,
                rw_brier=rb,
                skill=skill_score(b, rb),
            )
        )
    return out


def touch_reliability(rows: pd.DataFrame, bins: int = 10, column: str = "p") -> pd.DataFrame:
    """Reliability table of realised rows: per probability bin, mean predicted vs observed frequency.

    Bins are ``[k/bins, (k+1)/bins)`` (the last includes 1). Columns ``bin_lo, bin_hi, n,
    predicted, observed`` (empty bins left out). ``column``: ``p`` (model) or ``rw_p``.
    """
    done = rows[np.isfinite(rows["hit"].to_numpy(dtype=np.float64))]
    p = done[column].to_numpy(dtype=np.float64)
    y = done["hit"].to_numpy(dtype=np.float64)
    k = np.clip(np.floor(p * bins).astype(np.int64), 0, bins - 1)
    n = np.bincount(k, minlength=bins)
    sp = np.bincount(k, weights=p, minlength=bins)
    sy = np.bincount(k, weights=y, minlength=bins)
    keep = n > 0
    lo = np.arange(bins) / bins
    with np.errstate(invalid="ignore", divide="ignore"):
        return pd.DataFrame(
            {
                "bin_lo": lo[keep],
                "bin_hi": lo[keep] + 1.0 / bins,
                "n": n[keep],
                "predicted": sp[keep] / n[keep],
                "observed": sy[keep] / n[keep],
            }
        )
