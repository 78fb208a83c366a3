"""Named model inputs: the ``extra`` conditioning built from indicators, higher timeframes and other pairs.

A model's manifest names its inputs (``"inputs": {"names": [...], "features": [...]}``);
:class:`InputSpec` parses them, :class:`InputsBuilder` builds the extra vector of one
series candle by candle, and :func:`build_extra` runs that very builder over whole frames
for training and ``forexd backtest``. The stream (``forex_diffusion.forecast.forecaster``) feeds
the same builder the same closed candles, so the three agree bit for bit.

Inputs (all scale-free: price levels and returns are divided by a volatility, oscillators
centred and scaled; the model standardises them again with train-set mean/std):

``indicators``
    The indicator bank of the series' own timeframe through
    :class:`~forex_diffusion.forecast.features.FeatureBuilder` with :data:`INDICATOR_SPEC`
    (RSI 14, Bollinger 20/2, ATR 14, MACD 12/26/9, Donchian 20, Stochastic 14/3, ADX 14,
    Hurst 100): levels as ``ln(level/close)/vol``, ATR and MACD lines as
    ``value/close/vol``, oscillators as ``(x-50)/50``, Hurst as ``H-0.5`` (``vol``: RMS log
    return over 100 bars). The block's own returns and ``logvol`` are left out (the
    context window already holds the returns, ``vol_ratio`` the volatility level).
    14 features; ready after 253 bars (ADX).
``mtf`` or ``mtf:TF1,TF2``
    Higher-timeframe bars *derived from the series' own candles* (a higher bar closes when
    a candle reaches its end or a candle of a later bucket arrives, so it is never seen
    while forming), each through a FeatureBuilder with :data:`MTF_SPEC` (Bollinger 20/2,
    Donchian 20) and its last 3 returns, all over that timeframe's 20-bar RMS volatility.
    Default timeframes: 1m → 15m,1h; 5m and 15m → 1h,4h; 30m and 1h → 4h,1d; 4h → 1d.
    Deriving the bars (rather than reading the worker's own higher-timeframe candles) is
    what makes training, backtest and stream see the same bars.
``cross:SYM1,SYM2``
    Other pairs of the same timeframe: for each, from its last closed candle at or before
    ``as_of``, the 1-bar and 6-bar log returns over its own EWMA volatility (λ 0.94, the
    context's seeding; the 6-bar one also over ``sqrt(6)``). The value at ``as_of`` is
    defined only once the other pair's stream has reached ``as_of`` (a candle closing at
    or after it has been seen): until then :meth:`InputsBuilder.vector` answers None, in
    the stream as offline, so a forecast is never made from an incomplete other pair.

Several inputs are written comma-separated: ``indicators,mtf:4h,1d,cross:GBPUSD,USDJPY``
(a token that is not an input name continues the previous input's list).

>>> spec = InputSpec.parse("indicators,cross:GBPUSD", "1h")
>>> spec.names, len(spec.features), spec.cross_symbols
(('indicators', 'cross:GBPUSD'), 16, ('GBPUSD',))
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from forex_diffusion.diffusion.context import ContextSpec, _step_var
from forex_diffusion.domain import Candle
from forex_diffusion.errors import ConfigError, ModelError, StateError
from forex_diffusion.forecast.features import FeatureBuilder, FeatureConfig
from forex_diffusion.instruments import InstrumentRegistry
from forex_diffusion.state import count, malformed, number, price, unwrap, wrap
from forex_diffusion.timeframes import Timeframe

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "INDICATOR_SPEC",
    "INPUT_NAMES",
    "MTF_SPEC",
    "CrossBook",
    "InputSpec",
    "InputsBuilder",
    "build_extra",
    "build_extra_frame",
    "frame_candles",
]

INPUT_NAMES = ("indicators", "mtf", "cross")
INDICATOR_SPEC = "rsi_14,bb_20,atr_14,macd_12_26_9,donchian_20,stoch_14_3,adx_14,hurst_100"
MTF_SPEC = "bb_20,donchian_20"
_MTF_DEFAULT = {
    "1m": ("15m", "1h"),
    "5m": ("1h", "4h"),
    "15m": ("1h", "4h"),
    "30m": ("4h", "1d"),
    "1h": ("4h", "1d"),
    "4h": ("1d",),
}
_CROSS_LAGS = (1, 6)
#: Entries kept per other pair: the lookback of the longest return plus slack for a pair
#: that runs ahead of the series asking.
_CROSS_KEEP = 64
_XSPEC = ContextSpec()


def _is_own_feature(name: str) -> bool:
    return not (name.startswith("ret_") or name.startswith("logvol@"))


@dataclass(frozen=True, slots=True)
class InputSpec:
    """The named inputs of a model at one timeframe, in order (see the module docs)."""

    names: tuple[str, ...]
    timeframe: str

    def __post_init__(self) -> None:
        tf = Timeframe.parse(self.timeframe).name
        object.__setattr__(self, "timeframe", tf)
        kinds = [n.split(":", 1)[0] for n in self.names]
        for n, k in zip(self.names, kinds, strict=True):
            if k not in INPUT_NAMES:
                raise ConfigError(f"unknown model input {n!r:.60}; known: {', '.join(INPUT_NAMES)}")
        if len(set(kinds)) != len(kinds):
            raise ConfigError(f"model inputs name one kind twice: {','.join(self.names)!r:.80}")
        self.mtf_timeframes  # noqa: B018 - validates
        for s in self.cross_symbols:
            if not s or not s.replace("_", "").replace("/", "").isalnum():
                raise ConfigError(f"bad cross-pair symbol {s!r:.40}")

    @classmethod
    def parse(cls, text: str | Sequence[str] | None, timeframe: str) -> InputSpec:
        """Parse ``"indicators,mtf,cross:GBPUSD,USDJPY"`` (or a list of such tokens)."""
        if text is None:
            return cls((), timeframe)
        raw = text.split(",") if isinstance(text, str) else [p for t in text for p in str(t).split(",")]
        groups: list[list[str]] = []
        for tok in (t.strip() for t in raw):
            if not tok:
                continue
            head = tok.split(":", 1)
            if head[0].lower() in INPUT_NAMES:
                groups.append([head[0].lower()] + ([head[1]] if len(head) > 1 and head[1] else []))
            elif groups and groups[-1][0] in ("mtf", "cross") and (len(groups[-1]) > 1 or ":" in tok):
                groups[-1].append(tok)
            else:
                raise ConfigError(f"unknown model input {tok!r:.60}; known: {', '.join(INPUT_NAMES)}")
        names = []
        for g in groups:
            if g[0] == "indicators":
                if len(g) > 1:
                    raise ConfigError("'indicators' takes no arguments")
                names.append("indicators")
            elif g[0] == "mtf":
                tfs = [Timeframe.parse(t).name for t in g[1:]] or list(
                    _MTF_DEFAULT.get(Timeframe.parse(timeframe).name, ())
                )
                names.append("mtf:" + ",".join(tfs))
            else:
                if len(g) < 2:
                    raise ConfigError("'cross' needs symbols: cross:GBPUSD,USDJPY")
                # canonical, as the stream's candles name the pairs (cross:eur/usd is EURUSD)
                reg = InstrumentRegistry()
                names.append("cross:" + ",".join(reg.normalise(s.strip()) or s.strip().upper() for s in g[1:]))
        return cls(tuple(names), timeframe)

    def __bool__(self) -> bool:
        return bool(self.names)

    def _arg(self, kind: str) -> tuple[str, ...] | None:
        for n in self.names:
            k, _, rest = n.partition(":")
            if k == kind:
                return tuple(x for x in rest.split(",") if x)
        return None

    @property
    def has_indicators(self) -> bool:
        """Whether ``indicators`` is named."""
        return "indicators" in self.names

    @property
    def mtf_timeframes(self) -> tuple[str, ...]:
        """Higher timeframes of ``mtf`` (empty when not named)."""
        tfs = self._arg("mtf")
        if tfs is None:
            return ()
        own = Timeframe.parse(self.timeframe)
        if not tfs:
            raise ConfigError(f"no default higher timeframes for {own.name}: name them, mtf:TF1,TF2")
        out = []
        for t in tfs:
            ht = Timeframe.parse(t)
            if ht.duration_ms <= own.duration_ms or (not ht.is_daily and ht.duration_ms % own.duration_ms):
                raise ConfigError(f"mtf timeframe {ht.name} is not a multiple of {own.name}")
            if own.is_daily:
                raise ConfigError("mtf needs a timeframe shorter than 1d")
            out.append(ht.name)
        if len(set(out)) != len(out):
            raise ConfigError(f"mtf names a timeframe twice: {out!r:.80}")
        return tuple(out)

    @property
    def cross_symbols(self) -> tuple[str, ...]:
        """Other pairs of ``cross`` (empty when not named)."""
        return self._arg("cross") or ()

    @property
    def features(self) -> tuple[str, ...]:
        """Names of the extra columns, in order (what the manifest stores)."""
        out: list[str] = []
        for n in self.names:
            kind = n.split(":", 1)[0]
            if kind == "indicators":
                out += [c for c in _indicator_builder(self.timeframe).names if _is_own_feature(c)]
            elif kind == "mtf":
                fb = _mtf_builder(self.mtf_timeframes)
                if fb is not None:
                    out += [c for c in fb.names if not c.startswith("logvol@")]
            else:
                out += [f"xret_{k}@{s}" for s in self.cross_symbols for k in _CROSS_LAGS]
        return tuple(out)

    def to_dict(self) -> dict[str, Any]:
        """The manifest's ``inputs`` entry."""
        return {"names": list(self.names), "timeframe": self.timeframe, "features": list(self.features)}

    @classmethod
    def from_manifest(cls, manifest: Mapping[str, Any]) -> InputSpec:
        """The inputs a manifest names (none for models trained before inputs existed).

        Raises ``ConfigError`` when the stored feature names differ from what this code
        builds (the model was trained with another definition of an input).
        """
        data = manifest.get("inputs") or {}
        if not isinstance(data, Mapping) or not all(
            isinstance(data.get(k, []), list) and all(isinstance(x, str) for x in data.get(k, []))
            for k in ("names", "features")
        ):
            raise ConfigError(f"inputs must be an object of names and features (lists of text), got {data!r:.80}")
        tf = str(manifest.get("timeframe") or data.get("timeframe") or "1m")
        if not data:
            return cls((), tf)
        spec = cls(tuple(data.get("names", [])), str(data.get("timeframe", tf)))
        stored = tuple(data.get("features", []))
        if stored != spec.features:
            raise ConfigError(
                f"the model's inputs {','.join(spec.names)} were built as {len(stored)} features "
                f"that this version builds differently ({len(spec.features)})"
            )
        return spec


def _indicator_builder(tf: str, symbol: str | None = None) -> FeatureBuilder:
    return FeatureBuilder(
        FeatureConfig(forecast_timeframe=tf, timeframes=(tf,), spec=INDICATOR_SPEC, vol_window=100, return_lags=1),
        symbol=symbol,
    )


def _mtf_builder(tfs: tuple[str, ...], symbol: str | None = None) -> FeatureBuilder | None:
    if not tfs:
        return None
    return FeatureBuilder(
        FeatureConfig(forecast_timeframe=tfs[0], timeframes=tfs, spec=MTF_SPEC, vol_window=20, return_lags=3),
        symbol=symbol,
    )


class _Bars:
    """Higher-timeframe bars of one timeframe, derived from closed lower-timeframe candles."""

    __slots__ = ("tf", "cur")

    def __init__(self, tf: str) -> None:
        self.tf = Timeframe.parse(tf)
        self.cur: list[Any] | None = None  # [open_ms, end_ms, o, h, l, c]

    def update(self, c: Candle) -> list[Candle]:
        out = []
        start, end = self.tf.bounds(c.open_ms)
        cur = self.cur
        if cur is not None and cur[0] != start:
            out.append(self._emit(c.symbol))
            cur = None
        if cur is None:
            self.cur = cur = [start, end, c.open, c.high, c.low, c.close]
        else:
            cur[3] = max(cur[3], c.high)
            cur[4] = min(cur[4], c.low)
            cur[5] = c.close
        if c.close_ms >= end:
            out.append(self._emit(c.symbol))
        return out

    def _emit(self, symbol: str) -> Candle:
        assert self.cur is not None
        o, e, op, hi, lo, cl = self.cur
        self.cur = None
        return Candle(
            symbol=symbol,
            timeframe=self.tf.name,
            open_ms=int(o),
            close_ms=int(e),
            open=float(op),
            high=float(hi),
            low=float(lo),
            close=float(cl),
        )


class _XSeries:
    """Recent closes of one other pair with their EWMA variance (for ``cross``)."""

    __slots__ = ("times", "logc", "var", "n", "seed", "v")

    def __init__(self) -> None:
        self.times: deque[int] = deque(maxlen=_CROSS_KEEP)
        self.logc: deque[float] = deque(maxlen=_CROSS_KEEP)
        self.var: deque[float] = deque(maxlen=_CROSS_KEEP)
        self.n = 0  # returns seen
        self.seed = 0.0
        self.v = 0.0

    def update(self, c: Candle) -> None:
        if self.times and c.close_ms <= self.times[-1]:
            return
        lc = math.log(c.close)
        if self.logc:
            r = lc - self.logc[-1]
            self.v, _, self.seed = _step_var(self.v, 0.0, self.seed, self.n, r, _XSPEC)
            self.n += 1
        self.times.append(c.close_ms)
        self.logc.append(lc)
        self.var.append(self.v if self.n >= _XSPEC.warmup else math.nan)

    def values(self, as_of_ms: int) -> list[float] | None:
        if not self.times or self.times[-1] < as_of_ms:
            return None  # the pair's stream has not reached as_of: not complete yet
        j = bisect.bisect_right(self.times, as_of_ms) - 1
        if j < max(_CROSS_LAGS):
            return None
        v = self.var[j]
        if not v == v:  # nan: still seeding
            return None
        sig = max(math.sqrt(v), _XSPEC.min_sigma)
        clip = _XSPEC.clip
        return [max(-clip, min(clip, (self.logc[j] - self.logc[j - k]) / (sig * math.sqrt(k)))) for k in _CROSS_LAGS]

    def snapshot(self) -> dict[str, Any]:
        # strict JSON: the variance of a return still seeding (NaN) is written as null
        return {
            "times": list(self.times),
            "logc": list(self.logc),
            "var": [None if v != v else v for v in self.var],
            "n": self.n,
            "seed": self.seed,
            "v": self.v,
        }

    @classmethod
    def restore(cls, d: dict[str, Any]) -> _XSeries:
        """Inverse of :meth:`snapshot`; run inside :func:`malformed` (it raises ``ValueError``/
        ``TypeError`` on what :meth:`update` never leaves: the next candle would fail on it)."""
        x = cls()
        # what update() leaves: increasing integer close times, one finite log close and one
        # variance (null while seeding, else >= 0: values() takes its square root) per time,
        # a count of returns >= 0 (the seeding divides by it + 1) and a variance and seed >= 0
        times = [count(t, low=-(2**62)) for t in d["times"]]
        if any(b <= a for a, b in zip(times, times[1:], strict=False)):
            raise ValueError("cross-pair close times not increasing")
        logc = [number(v) for v in d["logc"]]
        var = [math.nan if v is None else number(v, low=0.0) for v in d["var"]]
        if not len(times) == len(logc) == len(var):
            raise ValueError(f"cross-pair entries of {len(times)} times, {len(logc)} closes, {len(var)} variances")
        x.times.extend(times)
        x.logc.extend(logc)
        x.var.extend(var)
        x.n, x.seed, x.v = count(d["n"]), number(d["seed"], low=0.0), number(d["v"], low=0.0)
        return x


class CrossBook:
    """Recent closes of the pairs one worker (or one offline run) has seen, per timeframe.

    Fed every closed candle (:meth:`update`); :meth:`values` answers the ``cross`` features
    of one pair at an ``as_of``. Memory: 64 closes per (pair, timeframe).
    """

    state_kind = "cross_book"
    state_version = 1

    def __init__(self) -> None:
        self._series: dict[tuple[str, str], _XSeries] = {}

    def update(self, candle: Candle) -> None:
        """Take one closed candle of any pair (forming ones are ignored)."""
        if not candle.final:
            return
        key = (candle.symbol, candle.timeframe)
        s = self._series.get(key)
        if s is None:
            s = self._series[key] = _XSeries()
        s.update(candle)

    def values(self, symbol: str, timeframe: str, as_of_ms: int) -> list[float] | None:
        """The pair's features at ``as_of_ms``, or None while its stream has not reached it."""
        s = self._series.get((symbol, timeframe))
        return None if s is None else s.values(as_of_ms)

    def reached(self, symbol: str, timeframe: str) -> int | None:
        """Close time of the pair's last candle seen."""
        s = self._series.get((symbol, timeframe))
        return s.times[-1] if s is not None and s.times else None

    def snapshot(self, symbol: str) -> dict[str, Any]:
        """The entries of one pair (every timeframe), plain data in the envelope."""
        return wrap(self, {tf: s.snapshot() for (sym, tf), s in self._series.items() if sym == symbol})

    def restore(self, symbol: str, data: dict[str, Any]) -> None:
        """Put back one pair's entries from :meth:`snapshot` output (the bare layout written
        before the envelope is read too)."""
        state = unwrap(data, self, legacy=lambda old: old)
        with malformed(self):
            restored = {(symbol, str(tf)): _XSeries.restore(d) for tf, d in state.items()}
        self._series.update(restored)

    def is_empty(self, symbol: str) -> bool:
        """Whether no entry of ``symbol`` is held."""
        return not any(sym == symbol for sym, _ in self._series)


class InputsBuilder:
    """Builds the extra vector of one series from its closed candles (and a :class:`CrossBook`).

    Parameters
    ----------
    spec
        The model's inputs.
    symbol
        The series.
    """

    state_kind = "inputs_builder"
    state_version = 1

    def __init__(self, spec: InputSpec, symbol: str) -> None:
        self.spec = spec
        self.symbol = symbol
        self.indicators = _indicator_builder(spec.timeframe, symbol) if spec.has_indicators else None
        self.mtf = _mtf_builder(spec.mtf_timeframes, symbol)
        self.bars = [_Bars(t) for t in spec.mtf_timeframes]
        self.last_close_ms: int | None = None
        if self.indicators is not None:
            names = self.indicators.names
            self._ind_idx = np.array([i for i, n in enumerate(names) if _is_own_feature(n)], dtype=np.int64)
        if self.mtf is not None:
            names = self.mtf.names
            self._mtf_idx = np.array([i for i, n in enumerate(names) if not n.startswith("logvol@")], dtype=np.int64)
        self.width = len(spec.features)

    def update(self, candle: Candle) -> bool:
        """Take one closed candle of the series' timeframe; return whether it was new."""
        if (
            not candle.final
            or candle.timeframe != self.spec.timeframe
            or (self.last_close_ms is not None and candle.close_ms <= self.last_close_ms)
        ):
            return False
        if candle.symbol != self.symbol:
            raise ModelError(f"candle {candle.symbol} fed to the inputs of {self.symbol}")
        self.last_close_ms = candle.close_ms
        if self.mtf is not None:
            emitted = [b for bars in self.bars for b in bars.update(candle)]
            for b in sorted(emitted, key=lambda c: (c.close_ms, -(c.close_ms - c.open_ms))):
                self.mtf.on_candle(b)
        if self.indicators is not None:
            self.indicators.on_candle(candle)
        return True

    def own(self, as_of_ms: int) -> np.ndarray | None:
        """The indicator and higher-timeframe part at ``as_of_ms`` (the last candle's close), or None."""
        if self.last_close_ms != as_of_ms:
            return None
        parts: list[np.ndarray] = []
        for name in self.spec.names:
            kind = name.split(":", 1)[0]
            if kind == "indicators":
                assert self.indicators is not None
                fv = self.indicators.features(self.spec.timeframe, as_of_ms)
                if fv is None:
                    return None
                parts.append(fv.values[self._ind_idx])
            elif kind == "mtf":
                assert self.mtf is not None
                fv = self.mtf.features(self.spec.mtf_timeframes[0], as_of_ms)
                if fv is None:
                    return None
                parts.append(fv.values[self._mtf_idx])
        out = np.concatenate(parts) if parts else np.zeros(0)
        return out if np.all(np.isfinite(out)) else None

    def vector(self, as_of_ms: int, book: CrossBook | None = None, own: np.ndarray | None = None) -> np.ndarray | None:
        """The whole extra vector at ``as_of_ms`` in the manifest's order, or None while not ready.

        ``own``: the result of :meth:`own` taken at ``as_of_ms`` (when the builder has
        moved on since); ``book``: the other pairs (needed when ``cross`` is named).
        """
        part = self.own(as_of_ms) if own is None else own
        if part is None:
            return None
        if not self.spec.cross_symbols:
            return part
        if book is None:
            return None
        xs: list[float] = []
        for s in self.spec.cross_symbols:
            v = book.values(s, self.spec.timeframe, as_of_ms)
            if v is None:
                return None
            xs += v
        # order: the names' order, with cross where it is named
        out: list[np.ndarray] = []
        pos = 0
        for name in self.spec.names:
            kind = name.split(":", 1)[0]
            if kind == "cross":
                out.append(np.asarray(xs, dtype=np.float64))
            else:
                w = self._kind_width(kind)
                out.append(part[pos : pos + w])
                pos += w
        return np.concatenate(out)

    def _kind_width(self, kind: str) -> int:
        return len(self._ind_idx) if kind == "indicators" else len(self._mtf_idx)

    def snapshot(self) -> dict[str, Any]:
        """Plain data (JSON-able), in the envelope."""
        state = {
            "spec": list(self.spec.names),
            "timeframe": self.spec.timeframe,
            "symbol": self.symbol,
            "last_close_ms": self.last_close_ms,
            "indicators": None if self.indicators is None else self.indicators.snapshot(),
            "mtf": None if self.mtf is None else self.mtf.snapshot(),
            "bars": [b.cur for b in self.bars],
        }
        return wrap(self, state)

    @classmethod
    def restore(cls, data: dict[str, Any], *, symbol: str | None = None, timeframe: str | None = None) -> InputsBuilder:
        """Inverse of :meth:`snapshot` (the bare layout written before the envelope is read too).

        ``symbol``/``timeframe``: the series the caller restores; a state of another series is
        refused (``StateError``: it would refuse every candle). The feature builders inside
        are restored for the builder's own series and must have the configuration its inputs
        build (another one answers vectors of another width)."""
        data = unwrap(data, cls, legacy=lambda old: old)
        with malformed(cls):
            names, tf, sym = data["spec"], data["timeframe"], data["symbol"]
            if not (
                isinstance(names, list)
                and all(isinstance(n, str) for n in names)
                and isinstance(tf, str)
                and isinstance(sym, str)
            ):
                raise StateError("an inputs builder's inputs, timeframe and symbol are names")
            b = cls(InputSpec(tuple(names), tf), sym)
            if (symbol is not None and b.symbol != symbol) or (
                timeframe is not None and b.spec.timeframe != Timeframe.parse(timeframe).name
            ):
                raise StateError(f"the inputs builder stored for {symbol}/{timeframe} is {sym[:16]!r}/{tf[:8]!r}'s")
            last = data["last_close_ms"]
            b.last_close_ms = None if last is None else count(last, low=-(2**62))
            b.indicators = _restore_part(b.indicators, data["indicators"], b.symbol, "indicators")
            b.mtf = _restore_part(b.mtf, data["mtf"], b.symbol, "mtf")
            for bars, cur in zip(b.bars, data["bars"], strict=True):
                bars.cur = None if cur is None else _restore_bar(bars.tf, cur)
        return b


def _restore_part(fresh: FeatureBuilder | None, data: Any, symbol: str, what: str) -> FeatureBuilder | None:
    """A feature builder of :meth:`InputsBuilder.restore`: stored where the inputs name one,
    for the builder's series, with the configuration the inputs build."""
    if (fresh is None) != (data is None):
        raise StateError(f"an inputs builder {'with' if data is not None else 'without'} its {what} builder")
    if fresh is None:
        return None
    fb = FeatureBuilder.restore(data, symbol=symbol)
    if fb.config != fresh.config:
        raise StateError(f"the {what} builder stored is not the one the inputs build")
    return fb


def _restore_bar(tf: Timeframe, cur: Any) -> list[Any]:
    """A forming higher-timeframe bar ``[open_ms, end_ms, o, h, l, c]``: its bucket's bounds, prices > 0."""
    if not isinstance(cur, list) or len(cur) != 6:
        raise ValueError("a forming bar is [open_ms, end_ms, open, high, low, close]")
    start, end = count(cur[0], low=-(2**62)), count(cur[1], low=-(2**62))
    if tf.bounds(start) != (start, end):
        raise ValueError(f"a forming {tf.name} bar {start}..{end} is not one of its buckets")
    return [start, end, *(price(p) for p in cur[2:])]


def frame_candles(frame: pd.DataFrame, symbol: str, timeframe: str) -> list[Candle]:
    """Closed candles of a ``ts_ms, open, high, low, close`` frame, sorted, one per open time.

    Sorted by ``ts_ms`` (stable); of a repeated open time the FIRST row in the frame's order
    is kept, as the stream's candle agent keeps the first candle of an open time it receives
    and refuses the others as duplicates; close time from the timeframe. ``forexd train`` and
    ``backtest`` hand over rows in file order with the stream's refusals already dropped
    (:func:`forex_diffusion.offline.check_candle_times`: a duplicate or a row before its
    series' last is refused there), so the sort changes nothing for them.
    """
    tf = Timeframe.parse(timeframe)
    f = frame.sort_values("ts_ms", kind="stable").drop_duplicates("ts_ms", keep="first")
    opens = f["open"].tolist() if "open" in f.columns else f["close"].tolist()
    return [
        Candle(
            symbol=symbol,
            timeframe=tf.name,
            open_ms=int(ts),
            close_ms=tf.end_of(int(ts)),
            open=float(o),
            high=float(h),
            low=float(lo),
            close=float(c),
        )
        for ts, o, h, lo, c in zip(
            f["ts_ms"].tolist(), opens, f["high"].tolist(), f["low"].tolist(), f["close"].tolist(), strict=True
        )
    ]


def build_extra(
    candles: Sequence[Candle], spec: InputSpec, others: Mapping[str, Iterable[Candle]] | None = None
) -> np.ndarray:
    """Run :class:`InputsBuilder` over a whole series; row ``i`` is the vector at ``candles[i]``'s close.

    Rows not ready (warm-up, an other pair not reaching the time) are NaN. ``others``: the
    cross pairs' candles (same timeframe), each in time order; fed to a :class:`CrossBook`
    up to and including their first candle closing at or after the row's time (what a
    worker has seen when that pair's stream reached ``as_of``).
    """
    out = np.full((len(candles), len(spec.features)), np.nan)
    if not candles or not spec:
        return out
    symbol = candles[0].symbol
    builder = InputsBuilder(spec, symbol)
    book = CrossBook()
    feeds: list[tuple[Iterator[Candle], list[Candle | None]]] = []
    for s in spec.cross_symbols:
        it = iter(sorted((others or {}).get(s, ()), key=lambda c: c.close_ms))
        feeds.append((it, [next(it, None)]))
    for i, c in enumerate(candles):
        if not builder.update(c):
            continue
        for it, head in feeds:
            last = book.reached(head[0].symbol, head[0].timeframe) if head[0] is not None else None
            while head[0] is not None and (last is None or last < c.close_ms):
                book.update(head[0])
                last = head[0].close_ms
                head[0] = next(it, None)
        v = builder.vector(c.close_ms, book)
        if v is not None:
            out[i] = v
    return out


def build_extra_frame(
    frame: pd.DataFrame, symbol: str, timeframe: str, spec: InputSpec, others: Mapping[str, pd.DataFrame] | None = None
) -> np.ndarray:
    """:func:`build_extra` for a candle frame; rows aligned with ``frame``'s rows.

    A row dropped as a repeated open time (any but the first of them, as in :func:`frame_candles`) gets NaN.
    """
    f = frame.reset_index(drop=True)
    order = f.sort_values("ts_ms", kind="stable")
    kept = order.drop_duplicates("ts_ms", keep="first").index.to_numpy()
    bars = frame_candles(f, symbol, timeframe)
    oth = {s: frame_candles(of, s, timeframe) for s, of in (others or {}).items()}
    missing = [s for s in spec.cross_symbols if s not in oth]
    if missing:
        raise ConfigError(f"the inputs name other pairs {', '.join(missing)} but no candles of them were given")
    ext = build_extra(bars, spec, oth)
    out = np.full((len(f), ext.shape[1]), np.nan)
    out[kept] = ext
    return out
