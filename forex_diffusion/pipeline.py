"""Per-symbol processing chains driven by plain method calls (the agents are thin shells).

:class:`TickPipeline` is validate → spike guard → aggregate, what the tick agent runs per
tick (``forexd candles``, :func:`~forex_diffusion.offline.aggregate_ticks_file`, runs the
same validator and aggregator without the spike guard). Its state (open buckets, watermark, recent tick ids, the
spike guards with their held ticks) snapshots per symbol as plain data, so a worker that
takes over a partition resumes where the last one stopped.

The spike guard (B9, :mod:`~forex_diffusion.spikes`) holds a huge jump back from the
aggregator until ``confirm`` ticks confirm the new level; then the held ticks go through
the aggregator in arrival order, so the candles equal those built without the guard.
An unconfirmed jump is quarantined: :meth:`TickPipeline.take_quarantined` hands the
quarantined ticks, with the ``ref`` the caller passed for each, back to the caller.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .aggregation import CandleAggregator
from .domain import Candle, PriceSide, Tick
from .errors import ConfigError, RejectReason, ValidationError
from .instruments import InstrumentRegistry
from .market_hours import MarketHours
from .spikes import SpikeConfig, SpikeCounters, SpikeGuard
from .timeframes import Timeframe
from .validation import TickValidator, ValidationConfig

__all__ = ["Quarantined", "TickPipeline"]

log = logging.getLogger(__name__)

_Held = tuple[Tick, Any]  # a held tick and the caller's ref


@dataclass(frozen=True, slots=True)
class Quarantined:
    """A tick the pipeline accepted at first, then refused (``reason``), with its ``ref``."""

    symbol: str
    tick: Tick
    ref: Any
    reason: RejectReason


def _encode(item: _Held) -> dict[str, Any]:
    t, ref = item
    return {"symbol": t.symbol, "ts_ms": t.ts_ms, "bid": t.bid, "ask": t.ask,
            "volume": t.volume, "tick_id": t.tick_id, "ref": ref}


def _decode(data: dict[str, Any]) -> _Held:
    t = Tick(symbol=str(data["symbol"]), ts_ms=int(data["ts_ms"]), bid=float(data["bid"]),
             ask=float(data["ask"]), volume=float(data["volume"]), tick_id=data["tick_id"])
    return t, data["ref"]


class TickPipeline:
    """Validate, guard against huge jumps, and aggregate ticks of the configured symbols.

    ``spikes`` configures the B9 guard (default :class:`SpikeConfig`: on, k=25,
    min_move=0.5 %, M=3; ``SpikeConfig(enabled=False)`` turns it off). The B21 weekend
    policy is ``validation.off_hours`` (default ``accept``: counted in :attr:`off_hours`).

    What a caller of the guard must know:

    * :meth:`process` returns ``[]`` for a held tick and raises nothing; the candles come
      out of the call that confirms the hold. Drain :meth:`take_quarantined` after every
      call (dead-letter each record by its ``ref``) *before* checkpointing: a quarantined
      tick is no longer in :meth:`snapshot`.
    * Lateness is judged as if the held ticks had reached the aggregator: a tick older than
      a held tick by more than ``allowed_lateness_ms`` is refused ``late``, as it would be
      without the guard.
    * :meth:`advance` never moves a symbol's clock past its earliest held tick;
      :meth:`flush` (end of a finite input) quarantines what is still held.
    """

    def __init__(
        self,
        *,
        timeframes: Sequence[str | Timeframe] | str,
        instruments: InstrumentRegistry,
        price: PriceSide = "mid",
        allowed_lateness_ms: int = 2_000,
        validation: ValidationConfig | None = None,
        spikes: SpikeConfig | None = None,
    ) -> None:
        self.instruments = instruments
        self.validator = TickValidator(validation or ValidationConfig(), instruments)
        self.aggregator = CandleAggregator(timeframes, price=price, allowed_lateness_ms=allowed_lateness_ms)
        self.spike_config = spikes or SpikeConfig()
        self.spike_counters = SpikeCounters()
        self._guard_on = self.spike_config.enabled
        self._guards: dict[str, SpikeGuard[_Held]] = {}
        self._quarantined: list[Quarantined] = []

    # -- hot path ---------------------------------------------------------------------------

    def process(self, tick: Tick, *, now_ms: int | None = None, ref: Any = None) -> list[Candle]:
        """Return the candles ``tick`` closes; raise :class:`ValidationError` if refused.

        ``tick.symbol`` must be canonical (the codec normalises it). ``ref`` is opaque,
        JSON-able data of the caller (e.g. the message's partition and offset); it comes
        back with the tick if the tick is quarantined later (see :meth:`take_quarantined`),
        and is stored in :meth:`snapshot` while the tick is held. A held tick returns no
        candles now; they come out when the hold is confirmed.
        """
        sym = tick.symbol
        last = self.aggregator.last_event_ms(sym)
        reason = self.validator.check(sym, tick.ts_ms, tick.bid, tick.ask, tick_id=tick.tick_id, now_ms=now_ms,
                                      late_before_ms=None if last is None else last - self.aggregator.allowed_lateness_ms)
        if reason is not None:
            raise ValidationError(reason, f"{sym} ts_ms={tick.ts_ms}")
        if not self._guard_on:
            return self.aggregator.add(sym, tick.ts_ms, tick.bid, tick.ask, tick.volume)
        try:
            g = self._guards[sym]
        except KeyError:
            g = self._guards[sym] = SpikeGuard(self.spike_config)
        mid = (tick.bid + tick.ask) * 0.5
        if not (g.low <= mid <= g.high):  # a jump, or ticks are held
            return self._guarded(g, tick, mid, ref)
        closed = self.aggregator.add(sym, tick.ts_ms, tick.bid, tick.ask, tick.volume)
        g.accept(mid)  # after add: a late tick changes nothing
        return closed

    def _guarded(self, g: SpikeGuard[_Held], tick: Tick, mid: float, ref: Any) -> list[Candle]:
        """The rare path: ``tick`` is a jump, or ``symbol`` has held ticks."""
        sym = tick.symbol
        verdict = g.classify(mid)
        if verdict == "revert":  # back near the last good level: the jump was a bad print
            closed = self.aggregator.add(sym, tick.ts_ms, tick.bid, tick.ask, tick.volume)
            self._quarantine(sym, g.end_hold())
            g.accept(mid)
            return closed
        if verdict == "restart":  # a third level: the held one was not confirmed
            self._check_late(sym, tick.ts_ms, ())
            self._quarantine(sym, g.end_hold())
        else:
            # lateness as the aggregator would judge it had the held ticks gone through
            self._check_late(sym, tick.ts_ms, g.held)
        if verdict != "confirm":
            self.spike_counters.holds += 1
            log.info("spike.hold symbol=%s ts_ms=%d mid=%r last_good=%r threshold=%.6f",
                     sym, tick.ts_ms, mid, g.last_good, g.threshold)
        released = g.hold((tick, ref), mid)
        if released is None:
            return []
        c = self.spike_counters
        c.confirmed += 1
        c.released += len(released)
        log.info("spike.confirmed symbol=%s ticks=%d level=%r", sym, len(released), g.last_good)
        out: list[Candle] = []
        add = self.aggregator.add
        for t, r in released:
            try:
                out.extend(add(sym, t.ts_ms, t.bid, t.ask, t.volume))
            except ValidationError as exc:  # not expected: lateness was checked on entry
                self._quarantined.append(Quarantined(sym, t, r, exc.reason))
        return out

    def _check_late(self, sym: str, ts_ms: int, held: Sequence[_Held]) -> None:
        top = self.aggregator.last_event_ms(sym)
        for t, _ in held:
            if top is None or t.ts_ms > top:
                top = t.ts_ms
        if top is not None and ts_ms < top - self.aggregator.allowed_lateness_ms:
            self.aggregator.late_count += 1
            raise ValidationError(RejectReason.LATE, f"{sym} ts_ms={ts_ms} older than watermark "
                                  f"{top - self.aggregator.allowed_lateness_ms} (held ticks count)")

    def _quarantine(self, sym: str, items: Sequence[_Held]) -> None:
        if not items:
            return
        c = self.spike_counters
        c.unconfirmed += 1
        c.quarantined += len(items)
        log.info("spike.unconfirmed symbol=%s ticks=%d first_ts_ms=%d", sym, len(items), items[0][0].ts_ms)
        reason = RejectReason.SPIKE_UNCONFIRMED
        self._quarantined.extend(Quarantined(sym, t, r, reason) for t, r in items)

    # -- other entry points -----------------------------------------------------------------

    def take_quarantined(self) -> list[Quarantined]:
        """Return the ticks quarantined since the last call (oldest first) and forget them."""
        out, self._quarantined = self._quarantined, []
        return out

    def held_count(self, symbol: str) -> int:
        """How many ticks of ``symbol`` the spike guard holds."""
        g = self._guards.get(symbol)
        return 0 if g is None else len(g.held)

    @property
    def market_hours(self) -> MarketHours:
        """The weekly closure of the B21 policy."""
        return self.validator.config.market_hours

    @property
    def off_hours(self) -> int:
        """Ticks accepted inside the weekly closure (policy ``accept``)."""
        return self.validator.counters.off_hours

    def advance(self, symbol: str, event_ms: int) -> list[Candle]:
        """Idle-series timer: move ``symbol``'s event clock without a tick.

        While ticks are held the clock stops at the earliest held tick, so that releasing
        them never makes them late.
        """
        g = self._guards.get(symbol)
        if g is not None and g.holding:
            event_ms = min(event_ms, min(t.ts_ms for t, _ in g.held))
        return self.aggregator.advance(symbol, event_ms)

    def expire_hold(self, symbol: str) -> int:
        """End an open hold of ``symbol`` without confirmation (its feed went quiet): the held
        ticks are quarantined as ``spike_unconfirmed``. Returns how many were quarantined."""
        g = self._guards.get(symbol)
        if g is None or not g.holding:
            return 0
        items = g.end_hold()
        self._quarantine(symbol, items)
        return len(items)

    def flush(self) -> list[Candle]:
        """Close every open candle (end of a finite input); held ticks are quarantined."""
        for sym in sorted(self._guards):
            g = self._guards[sym]
            if g.holding:
                self._quarantine(sym, g.end_hold())
        return self.aggregator.flush()

    # -- state ------------------------------------------------------------------------------

    def snapshot(self, symbols: Sequence[str]) -> dict[str, Any]:
        """Plain-data (JSON-able when the refs are) state of ``symbols``."""
        seen = self.validator.snapshot()
        return {
            "aggregator": self.aggregator.snapshot(symbols),
            "tick_ids": {s: seen[s] for s in symbols if s in seen},
            "spikes": {s: self._guards[s].snapshot(_encode) for s in symbols if s in self._guards},
        }

    def restore(self, data: dict[str, Any]) -> None:
        """Load what :meth:`snapshot` wrote (replacing those symbols' state).

        A snapshot without ``spikes`` (older versions) starts the guards afresh (warm-up).
        With the guard turned off, ticks the snapshot holds are quarantined.
        """
        try:
            self.aggregator.restore(data["aggregator"])
            current = self.validator.snapshot()
            current.update(data.get("tick_ids", {}))
            self.validator.restore(current)
            spikes = data.get("spikes", {})
            for sym in set(data["aggregator"]["series"]) | set(spikes):
                self._guards.pop(sym, None)
            for sym, state in spikes.items():
                g: SpikeGuard[_Held] = SpikeGuard(self.spike_config)
                g.restore(state, _decode)
                if self._guard_on:
                    self._guards[sym] = g
                else:
                    self._quarantine(sym, g.end_hold())
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"malformed tick pipeline snapshot: {exc}") from exc

    def drop(self, symbols: Sequence[str]) -> None:
        """Forget the state of ``symbols`` (their partition moved to another worker)."""
        for s in symbols:
            self.aggregator._series.pop(s, None)
            self.validator._seen.pop(s, None)
            self._guards.pop(s, None)
