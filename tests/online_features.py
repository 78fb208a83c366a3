"""A tiny causal feature set for tests of the online learners and drift detectors.

The learners take any ``Mapping[str, float]``; the product feeds them the indicator
features (:class:`forex_diffusion.forecast.features.FeatureBuilder`). This test helper (it was
``forex_diffusion.online.features``, used by no product code) gives cheap, closed-form
inputs. Every value at time t uses closes at or before t.

Features (all dimensionless, so one learner fits any price level):

``ret_k``
    ``log(c_t / c_{t-k}) / (vol * sqrt(k))`` for each lag ``k``: the vol-scaled k-step return.
``log_vol_ratio``
    ``log(vol_short / vol)``: whether the last few candles are calmer or wilder than usual.

``vol`` is the sample standard deviation of the last ``vol_window`` one-step log returns; it
is returned beside the features (not inside them) because the learners use it to scale
their targets.

>>> closes = [1.0, 1.01, 1.0, 1.02, 1.01, 1.03]
>>> feats = basic_features(closes, lags=(1, 2), vol_window=5, short_window=3)
>>> sorted(feats)
['log_vol_ratio', 'ret_1', 'ret_2']
>>> round(trailing_vol(closes, window=5), 6)
0.014975
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Sequence

from forex_diffusion.errors import ConfigError

__all__ = ["BasicFeatures", "basic_features", "trailing_vol"]

logger = logging.getLogger(__name__)

DEFAULT_LAGS: tuple[int, ...] = (1, 3, 12)
DEFAULT_VOL_WINDOW = 96
DEFAULT_SHORT_WINDOW = 12


def _std_of_log_returns(closes: Sequence[float], window: int) -> float:
    n = min(window, len(closes) - 1)
    if n < 2:
        return math.nan
    start = len(closes) - n - 1
    rets = [math.log(closes[i + 1] / closes[i]) for i in range(start, len(closes) - 1)]
    mean = math.fsum(rets) / n
    var = math.fsum((r - mean) ** 2 for r in rets) / (n - 1)
    return math.sqrt(var)


def trailing_vol(closes: Sequence[float], *, window: int = DEFAULT_VOL_WINDOW) -> float:
    """Return the std of the last ``window`` one-step log returns (NaN with fewer than 2).

    Parameters
    ----------
    closes
        Closes in time order, the latest last; positive.
    window
        Number of one-step returns used (fewer during warm-up).

    Returns
    -------
    float
        Sample standard deviation, NaN when fewer than two returns are available.
    """
    if window < 2:
        raise ConfigError(f"vol window must be >= 2, got {window}")
    return _std_of_log_returns(closes, window)


def basic_features(
    closes: Sequence[float],
    *,
    lags: Sequence[int] = DEFAULT_LAGS,
    vol_window: int = DEFAULT_VOL_WINDOW,
    short_window: int = DEFAULT_SHORT_WINDOW,
) -> dict[str, float]:
    """Compute the default causal features from a window of closes (latest last).

    A lag whose close is not yet in the window is left out; with no usable volatility
    (warm-up, or a flat window) the result is empty.

    Parameters
    ----------
    closes
        Closes in time order, positive.
    lags
        Return lags in candles.
    vol_window
        Candles in the volatility estimate that scales everything.
    short_window
        Candles in the short volatility of ``log_vol_ratio``.

    Returns
    -------
    dict[str, float]
        Finite feature values by name.
    """
    return _features_and_vol(closes, lags, vol_window, short_window)[0]


def _features_and_vol(
    closes: Sequence[float], lags: Sequence[int], vol_window: int, short_window: int
) -> tuple[dict[str, float], float]:
    vol = trailing_vol(closes, window=vol_window)
    if not (vol > 0.0 and math.isfinite(vol)):
        return {}, vol
    last = closes[-1]
    out: dict[str, float] = {}
    for k in lags:
        if k < 1:
            raise ConfigError(f"lags must be >= 1, got {k}")
        if len(closes) > k:
            out[f"ret_{k}"] = math.log(last / closes[-1 - k]) / (vol * math.sqrt(k))
    short = _std_of_log_returns(closes, short_window)
    if short > 0.0 and math.isfinite(short):
        out["log_vol_ratio"] = math.log(short / vol)
    return out, vol


class BasicFeatures:
    """Keep a bounded window of closes and return ``(features, vol)`` per closed candle.

    Parameters
    ----------
    lags, vol_window, short_window
        As in :func:`basic_features`.

    Examples
    --------
    >>> fb = BasicFeatures(lags=(1,), vol_window=3, short_window=2)
    >>> for c in (1.0, 1.01, 0.99):
    ...     feats, vol = fb.update(c)
    >>> sorted(feats), round(vol, 6)
    (['log_vol_ratio', 'ret_1'], 0.021179)
    """

    def __init__(
        self,
        *,
        lags: Sequence[int] = DEFAULT_LAGS,
        vol_window: int = DEFAULT_VOL_WINDOW,
        short_window: int = DEFAULT_SHORT_WINDOW,
    ) -> None:
        if not lags or min(lags) < 1:
            raise ConfigError(f"lags must be a non-empty sequence of ints >= 1, got {lags!r}")
        if vol_window < 2 or short_window < 2:
            raise ConfigError("vol_window and short_window must be >= 2")
        self.lags = tuple(int(k) for k in lags)
        self.vol_window = vol_window
        self.short_window = short_window
        self._closes: deque[float] = deque(maxlen=max(vol_window, short_window, *self.lags) + 1)

    @property
    def is_ready(self) -> bool:
        """Whether the window is full (every feature available)."""
        return len(self._closes) == self._closes.maxlen

    def update(self, close: float) -> tuple[dict[str, float], float]:
        """Append a closed candle's close; return its features and trailing vol.

        Parameters
        ----------
        close
            The close, positive and finite.

        Returns
        -------
        tuple[dict[str, float], float]
            Features (possibly partial or empty during warm-up) and the vol (NaN in warm-up).
        """
        if not (close > 0.0 and math.isfinite(close)):
            raise ConfigError(f"close must be positive and finite, got {close!r}")
        self._closes.append(close)
        return _features_and_vol(list(self._closes), self.lags, self.vol_window, self.short_window)

    def reset(self) -> None:
        """Forget every close."""
        self._closes.clear()
