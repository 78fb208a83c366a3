"""Per-series forecasting context: the rolling window a predictor conditions on.

A :class:`SeriesContext` is fed the closed candles of one ``(symbol, timeframe)`` in
order. It keeps bounded state (the last ``window`` log returns and log ranges, two
EWMA variances, the last close) and builds a :class:`ForecastRequest` for an ``as_of``.
Training builds the same features with :func:`build_features`, which runs the very same
recursion over a whole frame, so what the model saw in training is what it sees online.

Scaling: a return ``r_t = log(c_t / c_{t-1})`` is divided by the EWMA volatility at the
forecast origin, ``sigma_t`` (RiskMetrics, ``lambda = 0.94`` by default), so the model
works on volatility-scaled returns. ``sigma == 0`` is guarded by ``min_sigma``.

>>> from forex_diffusion.domain import Candle
>>> ctx = SeriesContext(symbol="EURUSD", timeframe="1h", spec=ContextSpec(window=4, warmup=3))
>>> for i, c in enumerate([1.10, 1.101, 1.1005, 1.102, 1.1015, 1.103]):
...     _ = ctx.update(Candle(symbol="EURUSD", timeframe="1h", open_ms=i * 3_600_000,
...                           close_ms=(i + 1) * 3_600_000, open=c, high=c + 2e-4,
...                           low=c - 2e-4, close=c))
>>> req = ctx.request(6 * 3_600_000)
>>> req.past_returns.shape, round(req.last_close, 4)
((4,), 1.103)
"""

from __future__ import annotations

import logging
import math
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from forex_diffusion.domain import Candle
from forex_diffusion.errors import ConfigError, ModelError, StateError, check_field_types
from forex_diffusion.state import count, finite, malformed, number, price, unwrap, wrap

__all__ = [
    "CALENDAR_DIM",
    "CONTEXT_MAX",
    "ContextSpec",
    "ForecastRequest",
    "SeriesContext",
    "build_features",
    "calendar_features",
]

logger = logging.getLogger(__name__)

_HOUR_MS = 3_600_000
#: Epoch (1970-01-01) was a Thursday: hours from Monday 00:00 UTC to the epoch.
_EPOCH_HOUR_OF_WEEK = 72.0
#: Number of calendar covariates produced by :func:`calendar_features`.
CALENDAR_DIM = 23
#: The longest window or warm-up a context takes, in candles (training refuses longer, and
#: so does the loader: a manifest is not covered by the checkpoint's sha256).
CONTEXT_MAX = 10_000


@dataclass(frozen=True, slots=True, kw_only=True)
class ContextSpec:
    """Parameters of the context window; stored in every checkpoint's manifest.

    Parameters
    ----------
    window
        Number of past returns (and ranges) the model sees.
    ewma_lambda
        RiskMetrics decay of the volatility used to scale returns (0.94 by default).
    slow_lambda
        Decay of a slower EWMA volatility; ``log(sigma / sigma_slow)`` is a covariate.
    warmup
        Returns used to seed both variances with their mean square; the context is ready
        once ``max(window, warmup)`` returns have been seen.
    min_sigma
        Floor of the volatility (guards ``sigma == 0`` on flat prices).
    clip
        Scaled returns and ranges are clipped to ``[-clip, clip]``.
    """

    window: int = 48
    ewma_lambda: float = 0.94
    slow_lambda: float = 0.995
    warmup: int = 24
    min_sigma: float = 1e-7
    clip: float = 10.0

    def __post_init__(self) -> None:
        for name in ("window", "warmup"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)!r:.40}")
            if getattr(self, name) > CONTEXT_MAX:
                raise ConfigError(f"{name} must be at most {CONTEXT_MAX}, got {getattr(self, name)!r:.40}")
        for name in ("ewma_lambda", "slow_lambda"):
            lam = getattr(self, name)
            if not 0.0 < lam < 1.0:
                raise ConfigError(f"{name} must be in (0, 1), got {lam!r:.40}")
        if not 0.0 < self.min_sigma < 1.0:  # a floor of a log return's volatility
            raise ConfigError(f"min_sigma must be in (0, 1), got {self.min_sigma!r:.40}")
        if not 0.0 < self.clip <= 1e4:  # in units of the volatility
            raise ConfigError(f"clip must be in (0, 10000], got {self.clip!r:.40}")

    @property
    def ready_after(self) -> int:
        """Returns needed before the first request."""
        return max(self.window, self.warmup)

    def cond_dim(self, extra: int = 0) -> int:
        """Width of the raw conditioning vector: ``2*window + CALENDAR_DIM + 1 + extra``."""
        return 2 * self.window + CALENDAR_DIM + 1 + extra

    def to_dict(self) -> dict[str, Any]:
        """Return the plain-data form."""
        return {f: getattr(self, f) for f in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ContextSpec:
        """Build from :meth:`to_dict` output; unknown keys and values of another type are refused."""
        return cls(**check_field_types(cls, data, "ContextSpec"))


@dataclass(frozen=True, slots=True, kw_only=True)
class ForecastRequest:
    """Everything a predictor needs for one series at one ``as_of``.

    Attributes
    ----------
    past_returns, past_ranges
        ``[window]`` float64, oldest first: ``log(c_t/c_{t-1}) / sigma`` and
        ``log(high/low) / sigma``, clipped.
    calendar
        ``[CALENDAR_DIM]`` covariates of ``as_of`` (hour of week, hour of day, minute of
        hour as Fourier terms; Asia/London/New York session flags).
    vol_ratio
        ``log(sigma / sigma_slow)``.
    extra
        Optional ``[E]`` extra feature vector (the indicators' features); a model trained
        without extras ignores it.
    """

    symbol: str
    timeframe: str
    as_of_ms: int
    last_close: float
    sigma: float
    past_returns: np.ndarray
    past_ranges: np.ndarray
    calendar: np.ndarray
    vol_ratio: float
    extra: np.ndarray | None = None

    def conditioning(self) -> np.ndarray:
        """Return the raw conditioning vector ``[2*window + CALENDAR_DIM + 1 (+E)]`` (float64)."""
        parts = [self.past_returns, self.past_ranges, self.calendar, np.array([self.vol_ratio])]
        if self.extra is not None:
            parts.append(np.asarray(self.extra, dtype=np.float64).ravel())
        return np.concatenate(parts)


def calendar_features(as_of_ms: np.ndarray | int) -> np.ndarray:
    """Return calendar covariates of timestamps, shape ``[..., CALENDAR_DIM]``.

    Hour of week (4 Fourier pairs), hour of day (4 pairs), minute of hour (2 pairs) and
    three session flags in UTC: Asia 00–09, London 07–16, New York 12–21. The
    timestamp is the forecast origin (the close time of the last closed candle).
    """
    ms = np.asarray(as_of_ms, dtype=np.int64)
    hours = (ms // 60_000).astype(np.float64) / 60.0  # whole minutes, exact in float64
    how = np.mod(hours + _EPOCH_HOUR_OF_WEEK, 168.0)
    hod = np.mod(hours, 24.0)
    moh = np.mod(hours * 60.0, 60.0)
    cols: list[np.ndarray] = []
    for period, value, pairs in ((168.0, how, 4), (24.0, hod, 4), (60.0, moh, 2)):
        for k in range(1, pairs + 1):
            angle = 2.0 * math.pi * k * value / period
            cols.append(np.sin(angle))
            cols.append(np.cos(angle))
    cols.append(((hod >= 0.0) & (hod < 9.0)).astype(np.float64))
    cols.append(((hod >= 7.0) & (hod < 16.0)).astype(np.float64))
    cols.append(((hod >= 12.0) & (hod < 21.0)).astype(np.float64))
    return np.stack(cols, axis=-1)


@dataclass(slots=True)
class _State:
    returns: deque[float]
    ranges: deque[float]
    var: float = 0.0
    var_slow: float = 0.0
    seed_sum: float = 0.0
    n_returns: int = 0
    last_close: float | None = None
    last_close_ms: int | None = None


class SeriesContext:
    """Rolling window of one ``(symbol, timeframe)`` fed closed candles.

    Parameters
    ----------
    symbol, timeframe
        The series key.
    spec
        Window and volatility parameters (take them from the model's manifest).

    Notes
    -----
    Memory is bounded by ``spec.window``. Forming candles (``final=False``) and candles
    that do not advance time (duplicates, out of order) are ignored. Returns are taken
    between consecutive candles, gaps included (a weekend is one step).
    """

    state_kind = "series_context"
    state_version = 1

    def __init__(self, *, symbol: str, timeframe: str, spec: ContextSpec | None = None) -> None:
        self.symbol = symbol
        self.timeframe = timeframe
        self.spec = spec or ContextSpec()
        self._s = _State(deque(maxlen=self.spec.window), deque(maxlen=self.spec.window))

    @property
    def is_ready(self) -> bool:
        """Whether enough candles have been seen to build a request."""
        return self._s.n_returns >= self.spec.ready_after

    @property
    def last_close_ms(self) -> int | None:
        """Close time of the last accepted candle."""
        return self._s.last_close_ms

    @property
    def sigma(self) -> float:
        """Current EWMA volatility of log returns (floored)."""
        return max(math.sqrt(self._s.var), self.spec.min_sigma)

    def reset(self) -> None:
        """Forget everything."""
        self._s = _State(deque(maxlen=self.spec.window), deque(maxlen=self.spec.window))

    def update(self, candle: Candle) -> bool:
        """Feed one closed candle; return whether it was accepted."""
        s = self._s
        if not candle.final:
            return False
        if candle.symbol != self.symbol or candle.timeframe != self.timeframe:
            raise ModelError(f"candle {candle.symbol}/{candle.timeframe} fed to context {self.symbol}/{self.timeframe}")
        if s.last_close_ms is not None and candle.close_ms <= s.last_close_ms:
            logger.debug(
                "context ignores candle symbol=%s close_ms=%d (not after %d)",
                self.symbol,
                candle.close_ms,
                s.last_close_ms,
            )
            return False
        if not (candle.close > 0.0 and candle.high > 0.0 and candle.low > 0.0):
            raise ModelError(f"non-positive price in candle {candle.key}")
        rng = math.log(candle.high / candle.low) if candle.high >= candle.low else 0.0
        if s.last_close is not None:
            r = math.log(candle.close / s.last_close)
            s.var, s.var_slow, s.seed_sum = _step_var(s.var, s.var_slow, s.seed_sum, s.n_returns, r, self.spec)
            s.n_returns += 1
            s.returns.append(r)
            s.ranges.append(rng)
        s.last_close = candle.close
        s.last_close_ms = candle.close_ms
        return True

    def request(self, as_of_ms: int | None = None, *, extra: np.ndarray | None = None) -> ForecastRequest | None:
        """Build the request for ``as_of_ms`` (default: the last close time); None while warming up.

        ``as_of_ms`` must equal the close time of the last accepted candle: a forecast
        is made from the candles closed at ``as_of``, never from later ones.
        """
        s = self._s
        if not self.is_ready or s.last_close is None or s.last_close_ms is None:
            return None
        as_of = s.last_close_ms if as_of_ms is None else int(as_of_ms)
        if as_of != s.last_close_ms:
            raise ModelError(f"request as_of={as_of} but the context is at {s.last_close_ms}")
        sigma = max(math.sqrt(s.var), self.spec.min_sigma)
        sigma_slow = max(math.sqrt(s.var_slow), self.spec.min_sigma)
        clip = self.spec.clip
        past = np.clip(np.fromiter(s.returns, dtype=np.float64) / sigma, -clip, clip)
        ranges = np.clip(np.fromiter(s.ranges, dtype=np.float64) / sigma, -clip, clip)
        return ForecastRequest(
            symbol=self.symbol,
            timeframe=self.timeframe,
            as_of_ms=as_of,
            last_close=s.last_close,
            sigma=sigma,
            past_returns=past,
            past_ranges=ranges,
            calendar=calendar_features(as_of),
            vol_ratio=math.log(sigma / sigma_slow),
            extra=None if extra is None else np.asarray(extra, dtype=np.float64).copy(),
        )

    def snapshot(self) -> dict[str, Any]:
        """Return the state as plain data (JSON-able), in the envelope."""
        s = self._s
        state = {
            "symbol": self.symbol,
            "timeframe": self.timeframe,
            "spec": self.spec.to_dict(),
            "returns": list(s.returns),
            "ranges": list(s.ranges),
            "var": s.var,
            "var_slow": s.var_slow,
            "seed_sum": s.seed_sum,
            "n_returns": s.n_returns,
            "last_close": s.last_close,
            "last_close_ms": s.last_close_ms,
        }
        return wrap(self, state)

    @classmethod
    def restore(cls, data: dict[str, Any], *, symbol: str | None = None, timeframe: str | None = None) -> SeriesContext:
        """Rebuild a context from :meth:`snapshot` output (the bare layout written before the
        envelope is read too). ``symbol``/``timeframe``: the series the caller restores; a
        state of another series is refused (``StateError``: it would refuse every candle)."""
        data = unwrap(data, cls, legacy=lambda old: old)
        finite(cls, data)
        with malformed(cls):
            if not (isinstance(data["symbol"], str) and isinstance(data["timeframe"], str)):
                raise StateError("a context's symbol and timeframe are names")
            if (symbol is not None and data["symbol"] != symbol) or (
                timeframe is not None and data["timeframe"] != timeframe
            ):
                raise StateError(
                    f"the context stored for {symbol}/{timeframe} is {data['symbol'][:16]!r}/{data['timeframe'][:8]!r}'s"
                )
            ctx = cls(symbol=data["symbol"], timeframe=data["timeframe"], spec=ContextSpec.from_dict(data["spec"]))
            s = ctx._s
            # what update() leaves: log returns and ranges, variances and their seed >= 0 (the
            # next candle takes a square root and divides by the count), a last close > 0 (it
            # divides by it and takes a logarithm)
            s.returns.extend(number(x) for x in data["returns"])
            s.ranges.extend(number(x, low=0.0) for x in data["ranges"])
            s.var = number(data["var"], low=0.0)
            s.var_slow = number(data["var_slow"], low=0.0)
            s.seed_sum = number(data["seed_sum"], low=0.0)
            s.n_returns = count(data["n_returns"])
            s.last_close = None if data["last_close"] is None else price(data["last_close"], field="last_close")
            s.last_close_ms = None if data["last_close_ms"] is None else count(data["last_close_ms"], low=-(2**62))
        return ctx


def _step_var(
    var: float, var_slow: float, seed_sum: float, n: int, r: float, spec: ContextSpec
) -> tuple[float, float, float]:
    """Advance both variances by one return; the first ``warmup`` seed with the mean square."""
    r2 = r * r
    if n < spec.warmup:
        seed_sum += r2
        var = var_slow = seed_sum / (n + 1)
        return var, var_slow, seed_sum
    lam, lam_s = spec.ewma_lambda, spec.slow_lambda
    return lam * var + (1.0 - lam) * r2, lam_s * var_slow + (1.0 - lam_s) * r2, seed_sum


@dataclass(frozen=True, slots=True)
class SeriesFeatures:
    """Whole-series features built by :func:`build_features` (row ``i`` = origin at candle ``i``)."""

    close_ms: np.ndarray
    close: np.ndarray
    log_close: np.ndarray
    sigma: np.ndarray
    ready: np.ndarray
    cond: np.ndarray


def build_features(
    close_ms: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    spec: ContextSpec,
    extra: np.ndarray | None = None,
) -> SeriesFeatures:
    """Run the :class:`SeriesContext` recursion over a whole series.

    Parameters
    ----------
    close_ms, high, low, close
        ``[N]`` arrays of consecutive closed candles (strictly increasing ``close_ms``).
    spec
        The context parameters.
    extra
        Optional ``[N, E]`` extra features, row ``i`` known at ``close_ms[i]``; a row
        with a NaN (inputs not ready yet) is not ready.

    Returns
    -------
    SeriesFeatures
        ``cond[i]`` equals ``SeriesContext.request(close_ms[i]).conditioning()`` wherever
        ``ready[i]``; other rows are zero.
    """
    n = len(close)
    if n and np.any(np.diff(close_ms) <= 0):
        raise ModelError("candles must have strictly increasing close times")
    if np.any(~(close > 0)) or np.any(~(high > 0)) or np.any(~(low > 0)):
        raise ModelError("non-positive or non-finite price in the series")
    w = spec.window
    log_close = np.log(close)
    # same scalar arithmetic as SeriesContext.update, in the same order
    rets = np.zeros(n)
    rngs = np.where(high >= low, np.log(high / np.where(low > 0, low, 1.0)), 0.0)
    var = np.zeros(n)
    var_slow = np.zeros(n)
    v = vs = ss = 0.0
    closes = close.tolist()
    for i in range(1, n):
        r = math.log(closes[i] / closes[i - 1])
        rets[i] = r
        v, vs, ss = _step_var(v, vs, ss, i - 1, r, spec)
        var[i], var_slow[i] = v, vs
    sigma = np.maximum(np.sqrt(var), spec.min_sigma)
    sigma_slow = np.maximum(np.sqrt(var_slow), spec.min_sigma)
    ready = np.arange(n) >= spec.ready_after
    if extra is not None:
        ready &= np.isfinite(extra).all(axis=1)  # extras still warming up (NaN): no window
    e_dim = 0 if extra is None else extra.shape[1]
    cond = np.zeros((n, 2 * w + 1 + _calendar_width() + e_dim))
    idx = np.flatnonzero(ready)
    if idx.size:
        win = np.lib.stride_tricks.sliding_window_view(rets[1:], w)  # win[j] = rets[j+1 .. j+w]
        wrg = np.lib.stride_tricks.sliding_window_view(rngs[1:], w)
        s = sigma[idx][:, None]
        cond[idx, :w] = np.clip(win[idx - w] / s, -spec.clip, spec.clip)
        cond[idx, w : 2 * w] = np.clip(wrg[idx - w] / s, -spec.clip, spec.clip)
        cond[idx, 2 * w : 2 * w + CALENDAR_DIM] = calendar_features(close_ms[idx])
        cond[idx, 2 * w + CALENDAR_DIM] = np.log(sigma[idx] / sigma_slow[idx])
        if extra is not None:
            cond[idx, 2 * w + CALENDAR_DIM + 1 :] = extra[idx]
    return SeriesFeatures(close_ms=close_ms, close=close, log_close=log_close, sigma=sigma, ready=ready, cond=cond)


def _calendar_width() -> int:
    return CALENDAR_DIM
