"""Huge-jump guard for final candles (bad-input catalogue B9): hold a jump until the next bar confirms it.

Ticks have :class:`~forex_diffusion.ingest.spikes.SpikeGuard` in the tick pipeline; candles
from an external feed (``fx.candles``, and the candle files of ``forexd backtest``/``train``/
``indicators``) have this one, a :class:`SpikeGuard` per ``(symbol, timeframe)`` whose mid is
the candle's close and whose held item is the candle (with the caller's ``ref``). A candle is
a *jump* when its close is farther from the last accepted close than both ``k * sigma``
(``sigma``: the guard's running mean absolute log return of accepted closes) and
``min_move``. A jump is not dropped: it is **held** back from its series. Then:

* ``confirm`` (M) consecutive candles near the held close confirm the new level: the held
  candles come back, in order, ahead of the confirming one, and the caller processes them
  as if they had just arrived (indicators, learners, forecasts for them appear then);
* a candle back near the last accepted close ends the hold: the held candles are
  quarantined (``spike_unconfirmed``, :meth:`CandleSpikeGuard.take_quarantined`) and that
  candle passes;
* a jump to a third level quarantines the held candles and is held in turn.

One rule differs from the tick guard: a candle near *both* levels (the jump was barely past
the threshold) confirms the held one when it is nearer to it than to the last accepted
close. Without it a genuine move just past the bound, followed by a bar that went on a little
the same way, was quarantined by the tick guard's rule (not a jump from the old level: revert):
FXCM's GBP/USD daily bar of the Brexit vote, OANDA's EUR/USD hourly bar of 2017-04-23.

**Defaults** (:data:`CANDLE_SPIKES`): k = 20, ``min_move`` = 1.5 %, M = 1, no hold before 20
accepted candles, ``sigma``'s weight 0.05 (a memory of about 20 bars). Over the real
candle files the tests read (daily bars of four pairs, hourly and minute EUR/USD from three
vendors, 2007-2018: 355,000 candles) they quarantine no candle and hold 7, each released by
the next bar (``docs/reliability.md``). A genuine jump costs M bars of delay: its candle (and
its forecast) comes out with the next bar. A fat-finger lasting M + 1 bars or more is
accepted as a new level.

>>> from forex_diffusion.domain import Candle
>>> g = CandleSpikeGuard(SpikeConfig(warmup=3, confirm=1))
>>> bar = lambda i, c: Candle(symbol="EURUSD", timeframe="1h", open_ms=i * 3_600_000,
...                           close_ms=(i + 1) * 3_600_000, open=c, high=c, low=c, close=c)
>>> [len(g.admit(bar(i, c))) for i, c in enumerate([1.1000, 1.1010, 1.0990, 1.1005])]
[1, 1, 1, 1]
>>> g.admit(bar(4, 11.005)), [c.close for c in g.admit(bar(5, 1.1001))]
([], [1.1001])
>>> [(q.candle.close, q.reason.value) for q in g.take_quarantined()]
[(11.005, 'spike_unconfirmed')]
>>> g.admit(bar(6, 1.2101)), [c.close for c in g.admit(bar(7, 1.2110))]
([], [1.2101, 1.211])
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from forex_diffusion.domain import Candle
from forex_diffusion.errors import RejectReason
from forex_diffusion.ingest.spikes import SpikeConfig, SpikeCounters, SpikeGuard
from forex_diffusion.ingest.validation import MAX_PRICE
from forex_diffusion.state import count, malformed, number, time_ms, unwrap, wrap

__all__ = ["CANDLE_SPIKES", "CandleSpikeGuard", "QuarantinedCandle"]

log = logging.getLogger(__name__)

#: The candle guard's defaults (measured on the bundled candle files: module docstring).
CANDLE_SPIKES = SpikeConfig(k=20.0, min_move=0.015, alpha=0.05, warmup=20, confirm=1)

_Held = tuple[Candle, Any]  # a held candle and the caller's ref
_Key = tuple[str, str]  # (symbol, timeframe)


@dataclass(frozen=True, slots=True)
class QuarantinedCandle:
    """A final candle held as a price jump and not confirmed, with the caller's ``ref``."""

    candle: Candle
    ref: Any
    reason: RejectReason = RejectReason.SPIKE_UNCONFIRMED
    detail: str = "price jump held and not confirmed by the next candle"


def _encode(item: _Held) -> dict[str, Any]:
    c, ref = item
    return {"candle": c.to_dict(), "ref": ref}


def _decoder(symbol: str, timeframe: str) -> Callable[[Any], _Held]:
    """Read back a held candle of ``(symbol, timeframe)`` (what :func:`_encode` wrote): a final
    candle of that series, integer times (close after open), prices in ``(0, MAX_PRICE]``
    bounding open and close, a ref that is None or non-negative integers; otherwise a ``TypeError``/``ValueError`` (the guard's restore
    reads it inside :func:`~forex_diffusion.state.malformed`: a StateError)."""

    def decode(data: Any) -> _Held:
        if type(data) is not dict or type(data["candle"]) is not dict:
            raise TypeError("a held candle is not a mapping")
        c = Candle.from_dict(data["candle"])
        if c.symbol != symbol or c.timeframe != timeframe or c.final is not True:
            raise ValueError(f"a held candle that is no final {symbol}/{timeframe} candle")
        opened, closed = time_ms(c.open_ms, field="held open_ms"), time_ms(c.close_ms, field="held close_ms")
        o, h, lo, cl = (
            number(getattr(c, f), low=0.0, above=True, high=MAX_PRICE, field=f"held {f}")
            for f in ("open", "high", "low", "close")
        )
        if not (opened < closed and lo <= min(o, cl) and h >= max(o, cl)):
            raise ValueError("a held candle whose times or prices are no candle's")
        count(c.tick_count, field="held tick_count")
        count(c.revision, field="held revision")
        for f in ("volume", "spread_mean", "spread_min", "spread_max"):
            if (v := getattr(c, f)) is not None:
                number(v, field=f"held {f}")
        ref = data["ref"]  # what the callers pass: None, an int, or a few (partition, offset)
        for v in ref if type(ref) is list and len(ref) <= 4 else [] if ref is None else [ref]:
            count(v, field="held ref")
        return c, ref

    return decode


class CandleSpikeGuard:
    """Hold final candles that jump until the next ones confirm the level (see the module docstring).

    Call :meth:`admit` with each final candle that comes after its series' last one (and
    after every held one: :meth:`behind`); process what it returns, in order. Drain
    :meth:`take_quarantined` after every call, before checkpointing: a quarantined candle is
    no longer in :meth:`snapshot`. State: per ``(symbol, timeframe)``, the guard's level,
    ``sigma`` and held candles, checkpointed with the series (:meth:`snapshot`,
    :meth:`restore`): a restart in the middle of a hold neither loses nor repeats them.
    """

    state_kind = "candle spike guard"
    state_version = 1

    def __init__(self, config: SpikeConfig | None = None) -> None:
        self.config = config or CANDLE_SPIKES
        self.counters = SpikeCounters()
        self._guards: dict[_Key, SpikeGuard[_Held]] = {}
        self._quarantined: list[QuarantinedCandle] = []

    # -- the hot path -----------------------------------------------------------------------

    def admit(self, candle: Candle, ref: Any = None) -> list[Candle]:
        """The candles of ``candle``'s series to process now, in order: ``[candle]``; ``[]``
        when it is held; the held ones then ``candle`` when it confirms their level. ``ref``
        (opaque, JSON-able: the message's partition and offset) comes back with the candle if
        it is quarantined later, and is checkpointed while it is held."""
        if not self.config.enabled:
            return [candle]
        key = (candle.symbol, candle.timeframe)
        g = self._guards.get(key)
        if g is None:
            g = self._guards[key] = SpikeGuard(self.config)
        x = candle.close
        if g.low <= x <= g.high:
            g.accept(x)
            return [candle]
        verdict = g.classify(x)
        if verdict == "revert" and g.holding and self._nearer_held(g, x):
            verdict = "confirm"  # near both levels, nearer the held one: it goes on
        elif verdict == "restart" and self._goes_on(g, x):
            verdict = "confirm"  # farther the same way: a market that keeps moving after a break
        if verdict == "revert":  # back near the last good close: the held candle was a bad print
            self._quarantine(g.end_hold())
            g.accept(x)
            return [candle]
        if verdict == "restart":  # a third level: the held one was not confirmed
            self._quarantine(g.end_hold())
        if verdict != "confirm":
            self.counters.holds += 1
            log.info(
                "spike.hold symbol=%s timeframe=%s open_ms=%d close=%r last_good=%r threshold=%.6f",
                candle.symbol,
                candle.timeframe,
                candle.open_ms,
                x,
                g.last_good,
                g.threshold,
            )
        released = g.hold((candle, ref), x)
        if released is None:
            return []
        self.counters.confirmed += 1
        self.counters.released += len(released)
        log.info(
            "spike.confirmed symbol=%s timeframe=%s candles=%d level=%r",
            candle.symbol,
            candle.timeframe,
            len(released),
            g.last_good,
        )
        return [c for c, _ in released]

    @staticmethod
    def _goes_on(g: SpikeGuard[_Held], x: float) -> bool:
        """Whether ``x``, a jump from the last good close and far from the held one, goes on
        the held close's way: on its side of the last good close, and about as far from it
        (from 3/4 to 3 times the held close's log distance). EUR/CHF's SNB bar of 2015-01-15
        (1.2010 → 1.0284) was quarantined when the next day closed 2.4 % lower again (a "third
        level", 1.16 times as far), though a market that keeps moving after a break confirms
        it. A bad print is followed by a bar back near the old level (a revert), past it the
        other way, an ordinary move of the old level's (a fat finger at a tenth of the price,
        then a bar 2 % down), or another bad print much farther (a half, then a tenth of the
        price: 3.3 times as far). Two bad prints about as far the same way are taken, as two
        near each other are (``confirm`` = 1: the price of waiting one bar only)."""
        first, last = g.held[0][0].close, g.last_good
        if last is None:
            return False
        held, now = math.log(first) - math.log(last), math.log(x) - math.log(last)  # no ratio underflows to 0
        return held * now > 0 and 0.75 * abs(held) <= abs(now) <= 3.0 * abs(held)

    @staticmethod
    def _nearer_held(g: SpikeGuard[_Held], x: float) -> bool:
        first, last = g.held[0][0].close, g.last_good
        lx = math.log(x)
        return last is not None and abs(lx - math.log(first)) < abs(lx - math.log(last))

    def _quarantine(self, items: list[_Held]) -> None:
        if not items:
            return
        self.counters.unconfirmed += 1
        self.counters.quarantined += len(items)
        c = items[0][0]
        log.info(
            "spike.unconfirmed symbol=%s timeframe=%s candles=%d first_open_ms=%d",
            c.symbol,
            c.timeframe,
            len(items),
            c.open_ms,
        )
        self._quarantined.extend(QuarantinedCandle(c, r) for c, r in items)

    def take_quarantined(self) -> list[QuarantinedCandle]:
        """The candles quarantined since the last call (oldest first), forgotten here."""
        out, self._quarantined = self._quarantined, []
        return out

    def flush(self) -> list[QuarantinedCandle]:
        """End of a finite input (a file): quarantine every held candle (nothing confirmed
        them; the stream would go on holding them) and return what is quarantined."""
        for g in self._guards.values():
            self._quarantine(g.end_hold())
        return self.take_quarantined()

    # -- what the series sees ---------------------------------------------------------------

    def held(self, symbol: str, timeframe: str) -> tuple[Candle, ...]:
        """The held candles of a series, oldest first."""
        g = self._guards.get((symbol, timeframe))
        return () if g is None else tuple(c for c, _ in g.held)

    def behind(self, candle: Candle) -> bool:
        """Whether ``candle`` does not open after every held candle of its series (a
        redelivery, or a bar back in time): its series already took that place."""
        held = self.held(candle.symbol, candle.timeframe)
        return bool(held) and candle.open_ms <= held[-1].open_ms

    def watermark(self, candle: Candle, last_open: int | None) -> int | None:
        """The open time ``candle``'s series has reached: ``last_open`` (its last processed
        candle's) or its latest held candle's, whichever is later."""
        held = self.held(candle.symbol, candle.timeframe)
        if not held or (last_open is not None and last_open >= held[-1].open_ms):
            return last_open
        return held[-1].open_ms

    def holds(self, symbol: str) -> bool:
        """Whether ``symbol`` has a guard state worth checkpointing (any of its timeframes)."""
        return any(s == symbol for s, _ in self._guards)

    # -- state ------------------------------------------------------------------------------

    def snapshot(self, symbol: str) -> dict[str, Any]:
        """The guards of ``symbol``'s series, by timeframe, held candles included (in the envelope)."""
        return wrap(self, {tf: g.snapshot(_encode) for (s, tf), g in self._guards.items() if s == symbol})

    def restore(
        self, symbol: str, data: Any, *, after: Mapping[str, int] | None = None, closes_by_ms: int | None = None
    ) -> None:
        """Load what :meth:`snapshot` wrote for ``symbol`` (its series' guards are replaced);
        :class:`~forex_diffusion.errors.StateError` when it is no such state: among others, a
        held candle that does not open after its series' last one (``after``, by timeframe) or
        closes after ``closes_by_ms`` (the wall clock and the gate's skew: a final bar cannot
        have closed later). One dated years ahead made every real candle after it a duplicate,
        and the series stood still (adversarial review). A hold after a long gap the candle gate
        confirmed is a state the stream writes, and restores (bounding it by the gate's reach
        from the series' last candle dropped it, and the series diverged)."""
        state = unwrap(data, self)
        got: dict[_Key, SpikeGuard[_Held]] = {}
        with malformed(self):
            if not isinstance(state, dict):
                raise TypeError(f"is a {type(state).__name__}, not a mapping")
            for tf, guard in state.items():
                if not (isinstance(tf, str) and 0 < len(tf) <= 16):
                    raise ValueError("a timeframe's entry is not a name")
                g: SpikeGuard[_Held] = SpikeGuard(self.config)
                g.restore(guard, _decoder(symbol, tf))
                if any(a[0].open_ms >= b[0].open_ms for a, b in zip(g.held, g.held[1:], strict=False)):
                    raise ValueError("held candles are not in open-time order")
                if any(m != c.close for m, (c, _) in zip(g.held_mids, g.held, strict=True)):
                    raise ValueError("a held level is not its candle's close")
                last = None if after is None else after.get(tf)
                for c, _ in g.held:
                    if (last is not None and c.open_ms <= last) or (
                        closes_by_ms is not None and c.close_ms > closes_by_ms
                    ):
                        raise ValueError(
                            "a held candle does not open after its series' last candle, or closes in the future"
                        )
                got[(symbol, tf)] = g
        self.drop([symbol])
        for key, g in got.items():
            if self.config.enabled:
                self._guards[key] = g
            else:  # the guard was turned off: what it held was never confirmed
                self._quarantine(g.end_hold())

    def drop(self, symbols: Iterable[str]) -> None:
        """Forget the series of ``symbols`` (their partition was revoked)."""
        gone = set(symbols)
        for key in [k for k in self._guards if k[0] in gone]:
            del self._guards[key]

    def reset(self) -> None:
        """Forget every series."""
        self._guards.clear()
        self._quarantined.clear()
