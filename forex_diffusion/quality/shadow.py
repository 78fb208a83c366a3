"""Live shadow of a challenger (issue 16): its forecasts beside the champion's, scored when realised.

A challenger that beat the champion on the offline hold-out first serves in **shadow**: on
every candle where the champion forecasts a series, the shadow forecasts it too (same
request, same seeding rule, same sampling budget), and :class:`ShadowTracker` keeps the
pair. Each later candle of the series realises one more step of both, scored exactly as
the champion's live forecasts are (:func:`~forex_diffusion.quality.evaluation.crps_quantiles` on
the step's quantiles and the realised close, the 5–95 % interval hit, the EWMA random
walk from the origin's volatility). The agent forecasts after it has processed its whole
batch of candles, so a pair first catches up on the closes after its origin that the
tracker has seen already: step ``k`` is always the ``k``-th candle after the origin. Once every step of an origin is realised, it becomes
one :class:`ShadowRealised` (a ``shadow_scores`` row): means over the horizon's steps, for
the shadow and for the champion on the same closes.

The tracker is plain state: :meth:`ShadowTracker.snapshot` / :meth:`ShadowTracker.restore`
carry the unrealised pairs in the candle agent's checkpoint, so a restarted worker realises
them exactly as the one that made them would have. Nothing here publishes a forecast.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from forex_diffusion.domain import Candle
from forex_diffusion.errors import ConfigError, StateError
from forex_diffusion.forecast.forecaster import rw_quantiles
from forex_diffusion.forecast.result import Forecast
from forex_diffusion.quality.evaluation import crps_quantiles
from forex_diffusion.state import count, numbers, rows, time_ms, unwrap, wrap

__all__ = ["ShadowRealised", "ShadowTracker"]

log = logging.getLogger(__name__)

_MAX_PENDING = 4096  # pairs per series at most (a horizon's worth is what the stream keeps)
_RECENT = 512  # closes kept per series: a forecast added after later candles of its batch catches up


@dataclass(frozen=True, slots=True, kw_only=True)
class ShadowRealised:
    """One shadow forecast whose every step is realised, beside the champion's on the same origin."""

    symbol: str
    timeframe: str
    horizon: int
    version: str
    champion_version: str
    as_of_ms: int
    crps: float
    champion_crps: float
    rw_crps: float
    cover90: float
    champion_cover90: float
    realised_ms: int

    @property
    def key(self) -> str:
        """The model key ``SYMBOL/timeframe/horizon``."""
        return f"{self.symbol}/{self.timeframe}/{self.horizon}"

    def row(self) -> dict[str, Any]:
        """The ``shadow_scores`` row (:data:`forex_diffusion.storage.model_registry.SHADOW_COLUMNS`)."""
        return {
            "version": self.version,
            "as_of_ms": self.as_of_ms,
            "model_key": self.key,
            "champion_version": self.champion_version,
            "steps": self.horizon,
            "crps": self.crps,
            "champion_crps": self.champion_crps,
            "rw_crps": self.rw_crps,
            "cover90": self.cover90,
            "champion_cover90": self.champion_cover90,
            "realised_ms": self.realised_ms,
        }


class _Pair:
    """An unrealised origin: both forecasts' quantiles, the random walk's, and the running sums."""

    __slots__ = ("as_of_ms", "champion", "horizon", "q_champion", "q_shadow", "rw", "seen", "sums", "version")

    def __init__(
        self,
        *,
        as_of_ms: int,
        version: str,
        champion: str,
        q_shadow: np.ndarray,
        q_champion: np.ndarray,
        rw: np.ndarray,
        seen: int = 0,
        sums: list[float] | None = None,
    ) -> None:
        self.as_of_ms, self.version, self.champion = as_of_ms, version, champion
        self.q_shadow, self.q_champion, self.rw = q_shadow, q_champion, rw
        self.horizon = int(q_shadow.shape[0])
        self.seen = seen
        # crps shadow, crps champion, crps random walk, hits90 shadow, hits90 champion
        self.sums = sums if sums is not None else [0.0, 0.0, 0.0, 0.0, 0.0]

    def realise(self, close: float) -> None:
        """Score the next step on the realised ``close``, as the champion's live forecasts are scored."""
        i, y = self.seen, np.array([close])
        self.sums[0] += float(crps_quantiles(self.q_shadow[i][None, :], y)[0])
        self.sums[1] += float(crps_quantiles(self.q_champion[i][None, :], y)[0])
        self.sums[2] += float(crps_quantiles(self.rw[i][None, :], y)[0])
        self.sums[3] += float(self.q_shadow[i][0] <= close <= self.q_shadow[i][-1])
        self.sums[4] += float(self.q_champion[i][0] <= close <= self.q_champion[i][-1])
        self.seen += 1

    def result(self, symbol: str, timeframe: str, realised_ms: int) -> ShadowRealised:
        """The realised origin (every step scored): means over the steps."""
        h = float(self.horizon)
        return ShadowRealised(
            symbol=symbol,
            timeframe=timeframe,
            horizon=self.horizon,
            version=self.version,
            champion_version=self.champion,
            as_of_ms=self.as_of_ms,
            crps=self.sums[0] / h,
            champion_crps=self.sums[1] / h,
            rw_crps=self.sums[2] / h,
            cover90=self.sums[3] / h,
            champion_cover90=self.sums[4] / h,
            realised_ms=realised_ms,
        )

    def to_list(self) -> list[Any]:
        return [
            self.as_of_ms,
            self.version,
            self.champion,
            self.q_shadow.tolist(),
            self.q_champion.tolist(),
            self.rw.tolist(),
            self.seen,
            list(self.sums),
        ]

    @classmethod
    def from_list(cls, d: list[Any]) -> _Pair:
        as_of, version, champion, qs, qc, rw, seen, sums = d
        # numbers by type (forex_diffusion.state): a numeric string, True, nan, inf or a
        # magnitude past MAX_MAGNITUDE is refused (a TypeError or ValueError naming the field)
        as_of_ms = time_ms(as_of, field="shadow pair as_of_ms")
        arrays = [
            np.array(rows(x, field=f"shadow pair {name}"), dtype=np.float64)
            for x, name in ((qs, "shadow quantiles"), (qc, "champion quantiles"), (rw, "random walk quantiles"))
        ]
        h = arrays[0].shape[0] if arrays[0].ndim == 2 else 0
        if h < 1 or any(a.shape != arrays[0].shape for a in arrays):
            raise ConfigError("shadow pair: quantiles must be three finite [horizon, levels] arrays")
        step = count(seen, high=h - 1, field="shadow pair seen")
        sum_values = numbers(sums, low=0.0, field="shadow pair sums")
        if not (isinstance(version, str) and isinstance(champion, str) and len(sum_values) == 5):
            raise ConfigError("shadow pair: bad version, step count or sums")
        return cls(
            as_of_ms=as_of_ms,
            version=version,
            champion=champion,
            q_shadow=arrays[0],
            q_champion=arrays[1],
            rw=arrays[2],
            seen=step,
            sums=sum_values,
        )


class ShadowTracker:
    """Unrealised shadow/champion forecast pairs per ``(symbol, timeframe)``; pure state, no I/O.

    >>> t = ShadowTracker()
    >>> t.pending_count()
    0
    """

    state_kind = "shadow_tracker"
    state_version = 1

    def __init__(self) -> None:
        self._pending: dict[tuple[str, str], list[_Pair]] = {}
        # the latest closes per series, (close_ms, close): the candle agent processes a whole
        # batch of candles before it forecasts, so a pair may start behind its series
        self._recent: dict[tuple[str, str], deque[tuple[int, float]]] = {}
        self._ready: list[ShadowRealised] = []

    def add(self, shadow: Forecast, champion: Forecast, *, sigma: float) -> bool:
        """Remember a shadow forecast and the champion's of the same origin; False if not comparable.

        Both must be of the same series, origin, horizon and quantile levels, with finite
        quantiles; ``sigma`` (the EWMA volatility at the origin, as the champion's record
        uses) must be finite and positive.
        """
        same = (
            shadow.symbol == champion.symbol
            and shadow.timeframe == champion.timeframe
            and shadow.as_of_ms == champion.as_of_ms
            and shadow.horizon == champion.horizon
            and tuple(shadow.levels) == tuple(champion.levels)
        )
        qs = np.asarray(shadow.quantiles, dtype=np.float64)
        qc = np.asarray(champion.quantiles, dtype=np.float64)
        if not (
            same
            and qs.shape == qc.shape
            and qs.ndim == 2
            and math.isfinite(sigma)
            and sigma > 0
            and np.isfinite(qs).all()
            and np.isfinite(qc).all()
        ):
            return False
        rw = rw_quantiles(champion.last_close, sigma, champion.horizon)
        if not np.isfinite(rw).all():
            return False
        pair = _Pair(
            as_of_ms=shadow.as_of_ms,
            version=shadow.model_version,
            champion=champion.model_version,
            q_shadow=qs,
            q_champion=qc,
            rw=rw,
        )
        key = (shadow.symbol, shadow.timeframe)
        for close_ms, close in self._recent.get(key, ()):  # candles after the origin seen already
            if close_ms > pair.as_of_ms and pair.seen < pair.horizon:
                pair.realise(close)
                if pair.seen == pair.horizon:
                    self._ready.append(pair.result(shadow.symbol, shadow.timeframe, close_ms))
        if pair.seen < pair.horizon:
            series = self._pending.setdefault(key, [])
            if len(series) >= _MAX_PENDING:
                series.pop(0)
            series.append(pair)
        return True

    def drain(self) -> list[ShadowRealised]:
        """Origins fully realised by :meth:`add` (their steps' candles came before the forecast)."""
        ready, self._ready = self._ready, []
        return ready

    def on_candle(self, candle: Candle) -> list[ShadowRealised]:
        """Realise one more step of every pending pair of the candle's series (a new closed
        candle, never a duplicate); return the origins now fully realised."""
        key = (candle.symbol, candle.timeframe)
        self._recent.setdefault(key, deque(maxlen=_RECENT)).append((candle.close_ms, candle.close))
        done, self._ready = self._ready, []
        series = self._pending.get(key)
        if not series:
            return done
        keep: list[_Pair] = []
        for p in series:
            if p.as_of_ms >= candle.close_ms:
                keep.append(p)  # not after its origin (cannot happen in order; never scored)
                continue
            p.realise(candle.close)
            if p.seen < p.horizon:
                keep.append(p)
            else:
                done.append(p.result(candle.symbol, candle.timeframe, candle.close_ms))
        self._pending[key] = keep
        return done

    def pending_count(self, symbol: str | None = None) -> int:
        """Unrealised pairs (of one symbol, or all)."""
        return sum(len(v) for (s, _), v in self._pending.items() if symbol is None or s == symbol)

    def drop(self, symbols: Iterable[str]) -> None:
        """Forget the pairs of ``symbols`` (their partition was revoked)."""
        gone = set(symbols)
        for k in [k for k in self._pending if k[0] in gone]:
            del self._pending[k]
        for k in [k for k in self._recent if k[0] in gone]:
            del self._recent[k]
        self._ready = [r for r in self._ready if r.symbol not in gone]

    def snapshot(self, symbols: Iterable[str]) -> dict[str, Any]:
        """Plain-data state of ``symbols``' pairs, in the envelope (:mod:`forex_diffusion.state`)."""
        wanted = set(symbols)
        series = [
            [s, tf, [p.to_list() for p in ps]] for (s, tf), ps in sorted(self._pending.items()) if s in wanted and ps
        ]
        return wrap(self, {"series": series})

    def restore(self, data: Any) -> int:
        """Add the pairs of a :meth:`snapshot`; return how many. A malformed part is dropped
        with a warning (it can only make the shadow realise fewer forecasts, never others)."""
        n = 0
        try:
            state = unwrap(data, self, legacy=_legacy)
            for symbol, tf, pairs in state["series"]:
                restored = [_Pair.from_list(p) for p in pairs][-_MAX_PENDING:]
                self._pending[(str(symbol), str(tf))] = restored
                n += len(restored)
        except (ConfigError, KeyError, TypeError, ValueError, IndexError, AttributeError, ArithmeticError) as exc:
            # ArithmeticError: inf read as a time or a step, 10**400 as a quantile (OverflowError)
            log.warning("shadow.state_dropped error=%s", str(exc)[:200])
        return n


def _legacy(old: dict[str, Any]) -> dict[str, Any]:
    """The layout before the envelope: ``{"v": 1, "series": [...]}``."""
    if old.get("v") != 1 or set(old) != {"v", "series"}:
        raise StateError(f"unsupported shadow state {str(old)[:60]!r}")
    return {"series": old["series"]}
