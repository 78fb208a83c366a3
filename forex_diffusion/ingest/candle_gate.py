"""Admit candles from ``fx.candles`` in event time: no forged far-future bar moves a series.

A candle's own shape (OHLC order, grid, close = open + timeframe) is checked by
:func:`forex_diffusion.wire.decode_candle`. What needs the series is checked here, before the
candle touches any state:

- its ``close_time`` is not beyond the wall clock by more than ``future_skew_ms`` (a final bar
  cannot have closed in the future);
- its ``open_time`` is not more than ``max_ahead_ms`` past the series' watermark (the open
  time of the last candle it accepted) -- unless ``confirm`` consecutive candles, each
  following the previous one, show the series really moved on (a feed resuming after a long
  gap). The candles refused meanwhile are ``future_ts``; the one that completes the
  confirmation is admitted.

Without this, one forged bar dated years ahead became the series' last open time, and every
real candle after it was a "duplicate" (issue 13, finding 6).

>>> from dataclasses import replace
>>> from forex_diffusion.domain import Candle
>>> g = CandleGate(CandleGateConfig(max_ahead_ms=86_400_000, confirm=2))
>>> c = Candle(symbol="EURUSD", timeframe="1h", open_ms=10 * 86_400_000, close_ms=10 * 86_400_000 + 3_600_000,
...            open=1.1, high=1.1, low=1.1, close=1.1)
>>> g.check(c, watermark_ms=0, now_ms=None).value
'future_ts'
>>> g.check(replace(c, open_ms=c.open_ms + 3_600_000, close_ms=c.close_ms + 3_600_000),
...        watermark_ms=0, now_ms=None) is None
True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from forex_diffusion.domain import Candle
from forex_diffusion.errors import ConfigError, RejectReason
from forex_diffusion.state import malformed, time_ms, unwrap, wrap

__all__ = ["CandleGate", "CandleGateConfig"]


@dataclass(frozen=True, slots=True, kw_only=True)
class CandleGateConfig:
    """Bounds of :class:`CandleGate`.

    Parameters
    ----------
    max_ahead_ms
        How far past the series' watermark a candle may open (default 7 days: longer than
        any market closure).
    future_skew_ms
        How far past the wall clock a final candle may close.
    confirm
        Consecutive far-ahead candles that confirm a genuine jump (the last one is admitted).
    """

    max_ahead_ms: int = 7 * 86_400_000
    future_skew_ms: int = 60_000
    confirm: int = 3

    def __post_init__(self) -> None:
        if self.max_ahead_ms <= 0 or self.future_skew_ms < 0 or self.confirm < 1:
            raise ConfigError("max_ahead_ms must be > 0, future_skew_ms >= 0 and confirm >= 1")


class CandleGate:
    """Decide whether a decoded candle may reach a series (see the module docstring).

    State: per ``(symbol, timeframe)``, the open times of the far-ahead candles seen in a row
    (at most ``confirm - 1``), checkpointed with the series (:meth:`snapshot`,
    :meth:`restore`): a restart in the middle of a confirmation refused the candles that
    completed it, as ``future_ts`` dead letters never replayed, so a restarted worker lost
    candles a worker never stopped admitted.
    """

    state_kind = "candle gate"
    state_version = 1

    def __init__(self, config: CandleGateConfig | None = None) -> None:
        self.config = config or CandleGateConfig()
        self._ahead: dict[tuple[str, str], list[int]] = {}

    def check(self, candle: Candle, *, watermark_ms: int | None, now_ms: int | None) -> RejectReason | None:
        """Return the reason to refuse ``candle``, or None to admit it."""
        cfg = self.config
        if now_ms is not None and candle.close_ms > now_ms + cfg.future_skew_ms:
            return RejectReason.FUTURE_TS
        key = (candle.symbol, candle.timeframe)
        if watermark_ms is None or candle.open_ms <= watermark_ms + cfg.max_ahead_ms:
            self._ahead.pop(key, None)
            return None
        seen = self._ahead.get(key, [])
        if seen and not (seen[-1] < candle.open_ms <= seen[-1] + cfg.max_ahead_ms):
            seen = []  # not a continuation of the candidates: start again from this one
        if len(seen) + 1 >= cfg.confirm:
            self._ahead.pop(key, None)
            return None
        self._ahead[key] = [*seen, candle.open_ms]
        return RejectReason.FUTURE_TS

    def held(self, symbol: str, timeframe: str) -> int:
        """Far-ahead candles of the series counted towards a confirmation."""
        return len(self._ahead.get((symbol, timeframe), ()))

    def drop(self, symbols: Any) -> None:
        """Forget the series of ``symbols`` (their partition was revoked)."""
        gone = set(symbols)
        for key in [k for k in self._ahead if k[0] in gone]:
            del self._ahead[key]

    def holds(self, symbol: str) -> bool:
        """Whether a confirmation of ``symbol``'s series is in progress."""
        return any(s == symbol for s, _ in self._ahead)

    def snapshot(self, symbol: str) -> dict[str, Any]:
        """The confirmations in progress of ``symbol``'s series, by timeframe (in the envelope)."""
        return wrap(self, {tf: list(seen) for (s, tf), seen in self._ahead.items() if s == symbol})

    def restore(self, symbol: str, data: Any) -> None:
        """Load what :meth:`snapshot` wrote for ``symbol`` (its series' confirmations in
        progress are replaced); :class:`~forex_diffusion.errors.StateError` when it is no
        such state: a mapping of timeframe names to at most ``confirm - 1`` increasing open
        times, each within ``max_ahead_ms`` of the one before."""
        cfg = self.config
        state = unwrap(data, self)
        with malformed(self):
            if not isinstance(state, dict):
                raise TypeError(f"is a {type(state).__name__}, not a mapping")
            got: dict[tuple[str, str], list[int]] = {}
            for tf, seen in state.items():
                if not (isinstance(tf, str) and 0 < len(tf) <= 16 and isinstance(seen, list)):
                    raise ValueError("a timeframe's entry is not a name and a list")
                times = [time_ms(t, field="open time") for t in seen]
                if not 0 < len(times) < cfg.confirm or any(
                    not (a < b <= a + cfg.max_ahead_ms) for a, b in zip(times, times[1:], strict=False)
                ):
                    raise ValueError("open times are not a confirmation in progress")
                got[(symbol, tf)] = times
        for key in [k for k in self._ahead if k[0] == symbol]:
            del self._ahead[key]
        self._ahead.update(got)

    def reset(self) -> None:
        """Forget every confirmation in progress."""
        self._ahead.clear()
