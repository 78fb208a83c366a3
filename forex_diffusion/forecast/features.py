"""Multi-timeframe feature vectors for the learners and the diffusion model.

A :class:`FeatureBuilder` serves one symbol. It is fed *closed* candles of its configured
timeframes in event-time order (at equal close times, higher timeframes first, which is
the order the aggregator and :func:`sort_candles` give). Each close updates that
timeframe's :class:`~forex_diffusion.indicators.IndicatorBank` and its realised
volatility, and computes the timeframe's *block* of features once; the block is cached
with its close time. A feature vector for timeframe ``T`` at ``as_of`` joins, for ``T``
and each higher timeframe, the latest cached block whose candle closed at or before
``as_of``, so a higher-timeframe feature is never from a candle still forming at
``as_of`` (no look-ahead), and no block is recomputed per consumer.

Block of a timeframe (names end in ``@<tf>``):

* ``ret_k``: the last ``return_lags`` log returns of the close, divided by the
  timeframe's recent realised volatility ``vol`` (RMS log return over ``vol_window``
  bars; a zero ``vol`` is replaced by 1);
* ``logvol``: ``ln(vol)``;
* each indicator column, made scale-free: price levels (SMA, EMA, bands, channels,
  extrema) as ``ln(level / close) / vol``; price differences (MACD lines, ATR) as
  ``value / close / vol``; oscillators on 0..100 (RSI, Stochastic, ADX) as
  ``(value - 50) / 50``; the Hurst exponent as ``H - 0.5``; ``rv`` as ``rv / vol``.

A vector is None until every bank of the vector is ready (see
:attr:`~forex_diffusion.indicators.IndicatorBank.is_ready`) and ``vol`` is defined.
:class:`Standardiser` (z-scores with ``sigma == 0`` replaced by 1) and
:func:`ks_leakage_check` (two-sample Kolmogorov-Smirnov) serve the training splits.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from forex_diffusion.domain import Candle
from forex_diffusion.errors import ConfigError, RejectReason, StateError, ValidationError
from forex_diffusion.indicators import BankSpec, IndicatorBank, RealisedVolatility
from forex_diffusion.state import count, malformed, number, price, unwrap, wrap
from forex_diffusion.timeframes import Timeframe

__all__ = [
    "FeatureBuilder",
    "FeatureConfig",
    "FeatureVector",
    "KSResult",
    "Standardiser",
    "ks_leakage_check",
    "ks_leakage_checks",
    "sort_candles",
]

log = logging.getLogger(__name__)

_LEVEL = ("sma_", "ema_", "bb_", "donchian_", "keltner_", "max_", "min_")
_DIFF = ("macd", "atr_")
_OSC = ("rsi_", "stoch_", "adx_")


def _transform(name: str) -> int:
    """Kind of scaling of an indicator column: 0 level, 1 difference, 2 oscillator, 3 hurst, 4 rv."""
    if name.startswith(_LEVEL):
        return 0
    if name.startswith(_DIFF):
        return 1
    if name.startswith(_OSC):
        return 2
    if name.startswith("hurst_"):
        return 3
    if name.startswith("rv_"):
        return 4
    raise ConfigError(f"no feature scaling known for indicator column {name!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class FeatureConfig:
    """What a :class:`FeatureBuilder` computes.

    Parameters
    ----------
    forecast_timeframe
        The timeframe ``T`` whose closes produce vectors in :meth:`FeatureBuilder.on_candle`.
    timeframes
        All timeframes used; must include ``forecast_timeframe``. Vectors for ``T`` use
        ``T`` and the timeframes longer than ``T``.
    spec
        Indicator set of every bank (comma-separated spec; None: the default set).
    vol_window
        Bars in the realised volatility that normalises returns and price distances.
    return_lags
        Number of recent normalised log returns per timeframe.
    history
        Cached blocks kept per timeframe (for ``features(tf, as_of)`` in the recent past).
    """

    forecast_timeframe: str = "5m"
    timeframes: tuple[str, ...] = ("5m", "15m", "1h")
    spec: str | None = None
    vol_window: int = 100
    return_lags: int = 5
    history: int = 8
    _bank_spec: BankSpec = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.timeframes, str):
            object.__setattr__(self, "timeframes", tuple(t for t in self.timeframes.split(",") if t.strip()))
        tfs = sorted(
            {Timeframe.parse(t).name: Timeframe.parse(t) for t in self.timeframes}.values(), key=lambda t: t.duration_ms
        )
        if not tfs:
            raise ConfigError("FeatureConfig.timeframes is empty")
        object.__setattr__(self, "timeframes", tuple(t.name for t in tfs))
        fc = Timeframe.parse(self.forecast_timeframe).name
        if fc not in self.timeframes:
            raise ConfigError(f"forecast_timeframe {fc!r} is not among timeframes {self.timeframes}")
        object.__setattr__(self, "forecast_timeframe", fc)
        for name in ("vol_window", "return_lags", "history"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"FeatureConfig.{name} must be an integer >= 1, got {v!r}")
        if self.vol_window < 2:
            raise ConfigError("FeatureConfig.vol_window must be >= 2")
        bank_spec = BankSpec.parse(self.spec)
        for col in IndicatorBank(bank_spec).columns:
            _transform(col)
        object.__setattr__(self, "_bank_spec", bank_spec)

    @property
    def bank_spec(self) -> BankSpec:
        """The parsed indicator set."""
        return self._bank_spec

    def context_timeframes(self, timeframe: str) -> tuple[str, ...]:
        """``timeframe`` and every configured timeframe longer than it, shortest first."""
        if timeframe not in self.timeframes:
            raise ConfigError(f"timeframe {timeframe!r} is not configured ({', '.join(self.timeframes)})")
        return self.timeframes[self.timeframes.index(timeframe) :]

    def to_dict(self) -> dict[str, Any]:
        """Plain data."""
        return {
            "forecast_timeframe": self.forecast_timeframe,
            "timeframes": list(self.timeframes),
            "spec": self.spec,
            "vol_window": self.vol_window,
            "return_lags": self.return_lags,
            "history": self.history,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureConfig:
        """Inverse of :meth:`to_dict`; unknown keys are refused."""
        known = {"forecast_timeframe", "timeframes", "spec", "vol_window", "return_lags", "history"}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"unknown FeatureConfig field(s): {', '.join(sorted(unknown))}")
        d = dict(data)
        if "timeframes" in d:
            d["timeframes"] = tuple(d["timeframes"])
        return cls(**d)


@dataclass(frozen=True, slots=True, eq=False)
class FeatureVector:
    """Features of one (symbol, timeframe) at ``as_of_ms`` (a close time, epoch ms).

    ``values`` is a read-only float64 array aligned with ``names``.
    """

    symbol: str
    timeframe: str
    as_of_ms: int
    names: tuple[str, ...]
    values: np.ndarray

    def as_dict(self) -> dict[str, float]:
        """Return ``{name: value}``."""
        return dict(zip(self.names, self.values.tolist(), strict=True))


class _Series:
    """State of one timeframe: bank, volatility, recent returns, cached blocks."""

    __slots__ = ("tf", "bank", "rv", "rets", "prev", "last_open", "blocks", "kinds")

    def __init__(self, tf: str, cfg: FeatureConfig) -> None:
        self.tf = tf
        self.bank = IndicatorBank(cfg.bank_spec)
        self.rv = RealisedVolatility(cfg.vol_window)
        self.rets: deque[float] = deque(maxlen=cfg.return_lags)
        self.prev: float | None = None
        self.last_open: int | None = None
        self.blocks: deque[tuple[int, list[float] | None]] = deque(maxlen=cfg.history)
        self.kinds = [_transform(c) for c in self.bank.columns]

    def ready(self) -> bool:
        return self.bank.is_ready and self.rv.is_ready and len(self.rets) == self.rets.maxlen

    def block(self, close: float, values: list[float | None], vol: float) -> list[float]:
        v = vol if vol > 0.0 else 1.0
        out = [r / v for r in reversed(self.rets)]
        out.append(math.log(vol) if vol > 0.0 else math.log(1e-12))
        for x, kind in zip(values, self.kinds, strict=True):
            if x is None:
                out.append(math.nan)
            elif kind == 0:
                out.append(math.log(x / close) / v if x > 0.0 else math.nan)
            elif kind == 1:
                out.append(x / close / v)
            elif kind == 2:
                out.append((x - 50.0) / 50.0)
            elif kind == 3:
                out.append(x - 0.5)
            else:
                out.append(x / v)
        return out

    def names(self, lags: int) -> list[str]:
        tf = self.tf
        return (
            [f"ret_{k}@{tf}" for k in range(1, lags + 1)] + [f"logvol@{tf}"] + [f"{c}@{tf}" for c in self.bank.columns]
        )

    def snapshot(self) -> dict[str, Any]:
        return {
            "bank": self.bank.snapshot(),
            "rv": self.rv.snapshot(),
            "rets": list(self.rets),
            "prev": self.prev,
            "last_open": self.last_open,
            # a value no candle defines (a level at or below zero: NaN) is null, as JSON has no NaN
            "blocks": [
                [t, None if b is None else [v if math.isfinite(v) else None for v in b]] for t, b in self.blocks
            ],
        }

    def load(self, data: dict[str, Any]) -> None:
        bank = IndicatorBank.restore(data["bank"])
        if list(bank.columns) != list(self.bank.columns):  # the block of each candle zips them
            raise StateError(f"a {self.tf} indicator bank that is not the one the config names")
        self.bank = bank
        rv = RealisedVolatility.restore(data["rv"])
        assert isinstance(rv, RealisedVolatility)
        self.rv = rv
        self.rets.clear()
        self.rets.extend(number(r) for r in data["rets"])
        # the last close > 0: the next candle divides by it and takes a logarithm
        self.prev = None if data["prev"] is None else price(data["prev"], field="prev")
        self.last_open = None if data["last_open"] is None else count(data["last_open"], low=-(2**62))
        self.blocks.clear()
        width = self.rets.maxlen + 1 + len(self.bank.columns)  # type: ignore[operator]
        for t, b in data["blocks"]:
            if not (b is None or len(b) == width):  # a vector zips its names with them
                raise StateError(f"a {self.tf} feature block of {len(b)} values, not {width}")
            values = None if b is None else [math.nan if v is None else number(v) for v in b]
            self.blocks.append((count(t, low=-(2**62)), values))


class FeatureBuilder:
    """Multi-timeframe features of one symbol, from closed candles (see the module docs).

    Parameters
    ----------
    config
        What to compute (None: :class:`FeatureConfig` defaults).
    symbol
        The symbol served; None takes the first candle's.

    Examples
    --------
    >>> fb = FeatureBuilder(FeatureConfig(forecast_timeframe="1m", timeframes=("1m",),
    ...                                   spec="sma_3", vol_window=3, return_lags=2))
    >>> def bar(i, c):
    ...     return Candle(symbol="EURUSD", timeframe="1m", open_ms=i * 60_000,
    ...                   close_ms=(i + 1) * 60_000, open=c, high=c, low=c, close=c)
    >>> [fb.on_candle(bar(i, c)) is None for i, c in enumerate([1.0, 1.01, 1.0, 1.02])]
    [True, True, True, False]
    >>> fb.names
    ('ret_1@1m', 'ret_2@1m', 'logvol@1m', 'sma_3@1m')
    """

    state_kind = "feature_builder"
    state_version = 1

    def __init__(self, config: FeatureConfig | None = None, *, symbol: str | None = None) -> None:
        self.config = config or FeatureConfig()
        self.symbol = symbol
        self._series = {tf: _Series(tf, self.config) for tf in self.config.timeframes}
        self._names: dict[str, tuple[str, ...]] = {}
        self.ignored = 0

    def names_for(self, timeframe: str) -> tuple[str, ...]:
        """Feature names of a vector for ``timeframe``."""
        if timeframe not in self._names:
            lags = self.config.return_lags
            self._names[timeframe] = tuple(
                n for tf in self.config.context_timeframes(timeframe) for n in self._series[tf].names(lags)
            )
        return self._names[timeframe]

    @property
    def names(self) -> tuple[str, ...]:
        """Feature names of a vector for the forecast timeframe."""
        return self.names_for(self.config.forecast_timeframe)

    def on_candle(self, candle: Candle) -> FeatureVector | None:
        """Take one closed candle; return the vector when it is on the forecast timeframe.

        Candles of other timeframes, not final, or not after the previous candle of
        their timeframe (a redelivery) are ignored (counted in ``ignored``).
        """
        if self.symbol is None:
            self.symbol = candle.symbol
        elif candle.symbol != self.symbol:
            raise ValidationError(
                RejectReason.KEY_MISMATCH, f"feature builder of {self.symbol} got a {candle.symbol} candle"
            )
        s = self._series.get(candle.timeframe)
        if s is None or not candle.final or (s.last_open is not None and candle.open_ms <= s.last_open):
            self.ignored += 1
            return None
        s.last_open = candle.open_ms
        c = candle.close
        if s.prev is not None:
            s.rets.append(math.log(c / s.prev))
        s.prev = c
        vol = s.rv.update(c)
        values = s.bank._update_list(candle)
        s.bank._last_open = candle.open_ms
        block = s.block(c, values, vol) if vol is not None and s.ready() else None
        s.blocks.append((candle.close_ms, block))
        if candle.timeframe != self.config.forecast_timeframe:
            return None
        return self.features(candle.timeframe, candle.close_ms)

    def indicator_values(self, timeframe: str) -> dict[str, float | None]:
        """Committed indicator values of ``timeframe``'s bank (after its last closed candle)."""
        tf = Timeframe.parse(timeframe).name
        if tf not in self._series:
            raise ConfigError(f"timeframe {tf} is not built by this FeatureBuilder")
        return self._series[tf].bank.committed_values()

    def features(self, timeframe: str | None = None, as_of_ms: int | None = None) -> FeatureVector | None:
        """Return the vector of ``timeframe`` at ``as_of_ms``, or None while not ready.

        Each timeframe contributes its latest cached block whose candle closed at or
        before ``as_of_ms`` (default: the last close of ``timeframe``).
        """
        tf = self.config.forecast_timeframe if timeframe is None else Timeframe.parse(timeframe).name
        ctx = self.config.context_timeframes(tf)
        own = self._series[tf]
        if as_of_ms is None:
            if not own.blocks:
                return None
            as_of_ms = own.blocks[-1][0]
        parts: list[float] = []
        for name in ctx:
            block = _latest(self._series[name].blocks, as_of_ms)
            if block is None:
                return None
            parts.extend(block)
        arr = np.array(parts, dtype=float)
        arr.setflags(write=False)
        return FeatureVector(
            symbol=self.symbol or "", timeframe=tf, as_of_ms=as_of_ms, names=self.names_for(tf), values=arr
        )

    def is_ready(self, timeframe: str | None = None) -> bool:
        """Whether the last vector of ``timeframe`` (default: forecast) is available."""
        return self.features(timeframe) is not None

    def snapshot(self) -> dict[str, Any]:
        """Return the whole builder as JSON-able plain data, in the envelope."""
        state = {
            "symbol": self.symbol,
            "config": self.config.to_dict(),
            "ignored": self.ignored,
            "series": {tf: s.snapshot() for tf, s in self._series.items()},
        }
        return wrap(self, state)

    @classmethod
    def restore(cls, data: dict[str, Any], *, symbol: str | None = None) -> FeatureBuilder:
        """Rebuild a builder from :meth:`snapshot` output (the layout before the envelope is read too).

        ``symbol``: the series the caller restores; a builder of another symbol is refused
        (``StateError``: it would refuse every candle of this one)."""
        data = unwrap(data, cls, legacy=_legacy)
        with malformed(cls):
            if not (data["symbol"] is None or isinstance(data["symbol"], str)):
                raise StateError("a feature builder's symbol is a name")
            if symbol is not None and data["symbol"] not in (None, symbol):
                raise StateError(f"the feature builder stored for {symbol} is {data['symbol'][:16]!r}'s")
            fb = cls(FeatureConfig.from_dict(data["config"]), symbol=data["symbol"])
            fb.ignored = count(data.get("ignored", 0), field="ignored")
            if set(data["series"]) != set(fb._series):
                raise StateError("FeatureBuilder snapshot: timeframes do not match its config")
            for tf, sdata in data["series"].items():
                fb._series[tf].load(sdata)
        return fb


def _legacy(old: dict[str, Any]) -> dict[str, Any]:
    """The layout before the envelope: the same fields beside ``"type"`` and ``"version": 1``."""
    if old.get("type") != "FeatureBuilder" or old.get("version") != 1:
        raise StateError(f"not a FeatureBuilder snapshot of version 1: {str(old)[:60]!r}")
    return {k: v for k, v in old.items() if k not in ("type", "version")}


def _latest(blocks: deque[tuple[int, list[float] | None]], as_of_ms: int) -> list[float] | None:
    for close_ms, block in reversed(blocks):
        if close_ms <= as_of_ms:
            return block
    return None


def sort_candles(candles: Iterable[Candle]) -> list[Candle]:
    """Order candles for a :class:`FeatureBuilder`: by close time, longer timeframes first."""
    return sorted(candles, key=lambda c: (c.close_ms, -(c.close_ms - c.open_ms)))


# ---- standardisation and leakage checks ----------------------------------------------------
class Standardiser:
    """Column z-scores fitted on training rows; a zero sigma is replaced by 1.

    Examples
    --------
    >>> s = Standardiser().fit(np.array([[1.0, 5.0], [3.0, 5.0]]))
    >>> s.transform(np.array([[2.0, 5.0], [4.0, 6.0]])).tolist()
    [[0.0, 0.0], [2.0, 1.0]]
    """

    def __init__(self) -> None:
        self.mean_: np.ndarray | None = None
        self.scale_: np.ndarray | None = None

    def fit(self, x: np.ndarray) -> Standardiser:
        """Learn column means and population sigmas (NaN rows ignored per column)."""
        arr = np.asarray(x, dtype=float)
        if arr.ndim != 2 or arr.shape[0] == 0:
            raise ConfigError(f"Standardiser.fit needs a non-empty 2-D array, got shape {arr.shape}")
        if np.isnan(arr).all(axis=0).any():
            raise ConfigError("Standardiser.fit: a column has no finite value")
        mean = np.nanmean(arr, axis=0)
        sd = np.nanstd(arr, axis=0)
        self.mean_ = mean
        self.scale_ = np.where(sd > 0.0, sd, 1.0)
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Return ``(x - mean) / scale`` (a new array)."""
        if self.mean_ is None or self.scale_ is None:
            raise ConfigError("Standardiser is not fitted")
        arr = np.asarray(x, dtype=float)
        if arr.shape[-1] != self.mean_.shape[0]:
            raise ConfigError(f"expected {self.mean_.shape[0]} columns, got {arr.shape[-1]}")
        out: np.ndarray = (arr - self.mean_) / self.scale_
        return out

    def to_dict(self) -> dict[str, Any]:
        """Plain data."""
        if self.mean_ is None or self.scale_ is None:
            raise ConfigError("Standardiser is not fitted")
        return {"mean": self.mean_.tolist(), "scale": self.scale_.tolist()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Standardiser:
        """Inverse of :meth:`to_dict`."""
        s = cls()
        s.mean_ = np.asarray(data["mean"], dtype=float)
        s.scale_ = np.asarray(data["scale"], dtype=float)
        return s


@dataclass(frozen=True, slots=True, kw_only=True)
class KSResult:
    """A two-sample Kolmogorov-Smirnov comparison of train and test values.

    ``shifted`` is True when ``pvalue < alpha``: the two samples are unlikely to come
    from one distribution (a leakage-like or regime shift worth a look).
    """

    statistic: float
    pvalue: float
    alpha: float
    shifted: bool
    n_train: int
    n_test: int


def ks_leakage_check(train: np.ndarray, test: np.ndarray, alpha: float = 0.01) -> KSResult:
    """Compare one feature's train and test distributions (``scipy.stats.ks_2samp``).

    Non-finite values are dropped.

    Parameters
    ----------
    train, test
        1-D samples.
    alpha
        Significance level in (0, 1).

    Returns
    -------
    KSResult
    """
    if not 0.0 < alpha < 1.0:
        raise ConfigError(f"alpha must be in (0, 1), got {alpha!r}")
    a = np.asarray(train, dtype=float)
    b = np.asarray(test, dtype=float)
    if a.ndim != 1 or b.ndim != 1:
        raise ConfigError("ks_leakage_check compares 1-D samples; use ks_leakage_checks for matrices")
    a = a[np.isfinite(a)]
    b = b[np.isfinite(b)]
    if len(a) < 2 or len(b) < 2:
        raise ConfigError(f"ks_leakage_check needs >= 2 finite values per sample, got {len(a)} and {len(b)}")
    from scipy import stats  # on first use: a worker never checks leakage (scipy.stats: 0.5 s a start)

    res = stats.ks_2samp(a, b)
    stat, p = float(res.statistic), float(res.pvalue)
    return KSResult(statistic=stat, pvalue=p, alpha=alpha, shifted=p < alpha, n_train=len(a), n_test=len(b))


def ks_leakage_checks(
    train: np.ndarray, test: np.ndarray, names: Sequence[str], alpha: float = 0.01
) -> dict[str, KSResult]:
    """Run :func:`ks_leakage_check` per column of two ``(rows, features)`` matrices."""
    a = np.asarray(train, dtype=float)
    b = np.asarray(test, dtype=float)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or a.shape[1] != len(names):
        raise ConfigError("ks_leakage_checks needs two matrices with one column per name")
    return {n: ks_leakage_check(a[:, j], b[:, j], alpha) for j, n in enumerate(names)}
