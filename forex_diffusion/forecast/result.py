"""The forecast of one series, as a sampling call returns it.

:class:`Forecast` is what :class:`~forex_diffusion.diffusion.predictor.Predictor` and the
random walk served while no model is registered both return. It lives apart from the
predictor so that a worker serving the random walk (no model yet) never loads torch:
about a second of every worker's start.

>>> import numpy as np
>>> f = Forecast(symbol="EURUSD", timeframe="1h", as_of_ms=0, horizon=1, model_version="rw",
...              last_close=1.1, levels=(0.05, 0.5, 0.95), quantiles=np.array([[1.09, 1.1, 1.11]]),
...              mean=np.array([1.1]), p_up=np.array([0.5]), steps=0, samples=0, latency_s=0.0)
>>> f.quantile(0.95).tolist()
[1.11]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from forex_diffusion.errors import ConfigError
from forex_diffusion.forecast.touch import ExtremesForecast, TouchForecast
from forex_diffusion.ingest.validation import MAX_PRICE
from forex_diffusion.quality.evaluation import ewma_random_walk_quantiles

__all__ = ["Forecast", "not_prices", "price_issue"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Forecast:
    """A probabilistic forecast of the next ``horizon`` closes of one series.

    Attributes
    ----------
    quantiles
        ``[horizon, Q]`` price quantiles at ``levels``.
    mean
        ``[horizon]`` mean price.
    p_up
        ``[horizon]`` probability that the close at the step is above ``last_close``.
    latency_s
        Wall time of the sampling call that produced this forecast (shared by its batch).
    touch, extremes
        Touch probabilities of the predictor's bands and running max/min quantiles per
        step (:mod:`forex_diffusion.forecast.touch`); None when not computed.
    paths
        ``[samples, horizon]`` the sampled price paths (the model's, spread-calibrated: the
        quantiles also apply the per-level scale, and with the touch probabilities blend
        with the random walk); None for a predictor that samples none.
    rw_weight
        ``[horizon]`` weight of the EWMA random walk in this forecast, per step (None: none).
    """

    symbol: str
    timeframe: str
    as_of_ms: int
    horizon: int
    model_version: str
    last_close: float
    levels: tuple[float, ...]
    quantiles: np.ndarray
    mean: np.ndarray
    p_up: np.ndarray
    steps: int
    samples: int
    latency_s: float
    touch: TouchForecast | None = None
    extremes: ExtremesForecast | None = None
    paths: np.ndarray | None = None
    rw_weight: np.ndarray | None = None

    def quantile(self, level: float) -> np.ndarray:
        """Return the ``[horizon]`` path of one quantile level."""
        try:
            return self.quantiles[:, self.levels.index(level)]
        except ValueError as exc:
            raise ConfigError(f"level {level} not in {self.levels}") from exc

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-able form (arrays as nested lists; ``touch``/``extremes`` when present)."""
        out = {
            "symbol": self.symbol,
            "timeframe": self.timeframe,
            "as_of": self.as_of_ms,
            "horizon": self.horizon,
            "model_version": self.model_version,
            "last_close": self.last_close,
            "levels": list(self.levels),
            "quantiles": self.quantiles.tolist(),
            "mean": self.mean.tolist(),
            "p_up": self.p_up.tolist(),
            "steps": self.steps,
            "samples": self.samples,
            "latency_s": self.latency_s,
        }
        if self.touch is not None:
            out["touch"] = self.touch.to_dict()
        if self.extremes is not None:
            out["extremes"] = self.extremes.to_dict()
        return out


def not_prices(forecast: Forecast, sigma: float | None = None) -> str | None:
    """Why a price of ``forecast``'s record is no price (non-finite, <= 0, or past the wire's
    ``PRICE_MAX``), or None when every one is: its quantiles, its mean, its running maximum
    and minimum, its touch levels and, given ``sigma`` (the EWMA volatility its record's
    random walk is drawn with), the random walk's quantiles.

    A series whose candles swing within the instrument's bounds (0.08 to 16.5 for EUR/USD, a
    feed that is not B9-guarded) makes the random walk's and a model's quantiles run to 1e11
    and their mean to 1e47: the stream stored and published them, and ``forexd report``
    refused each. The stream no longer emits them (one warning each), and ``forexd
    backtest`` leaves them out alike.

    >>> import numpy as np
    >>> f = Forecast(symbol="EURUSD", timeframe="1h", as_of_ms=0, horizon=1, model_version="rw",
    ...              last_close=1.1, levels=(0.05, 0.95), quantiles=np.array([[0.5, 4.7e11]]),
    ...              mean=np.array([1.1]), p_up=np.array([0.5]), steps=0, samples=0, latency_s=0.0)
    >>> not_prices(f)
    'quantiles outside (0, 1e+09]: from 0.5 to 4.7e+11'
    """
    parts: list[tuple[str, Any]] = [("quantiles", forecast.quantiles), ("mean", forecast.mean)]
    if forecast.extremes is not None:
        parts += [("running maximum", forecast.extremes.max), ("running minimum", forecast.extremes.min)]
    if forecast.touch is not None:
        parts.append(("touch levels", forecast.touch.levels))
    if sigma is not None and np.isfinite(sigma):
        parts.append(
            ("random-walk quantiles", ewma_random_walk_quantiles(forecast.last_close, sigma, forecast.horizon))
        )
    for name, values in parts:
        if (why := price_issue(name, values)) is not None:
            return why
    return None


def price_issue(name: str, values: Any) -> str | None:
    """Why ``values`` (named ``name``) are not all prices: finite, > 0 and at most the wire's
    ``PRICE_MAX`` (the validator's ``MAX_PRICE``); None when they are. The one test the stream,
    the backtest and ``forexd report`` apply to a forecast's prices."""
    q = np.asarray(values, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        if bool(np.all((q > 0.0) & (q <= MAX_PRICE))):  # NaN compares False
            return None
    finite = q[np.isfinite(q)]
    span = f"from {finite.min():.3g} to {finite.max():.3g}" if finite.size else "none finite"
    span += "" if finite.size == q.size else f", {q.size - finite.size} not finite"
    return f"{name} outside (0, {MAX_PRICE:g}]: {span}"
