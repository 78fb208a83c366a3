"""Per-symbol processing chains driven by plain method calls (the agents are thin shells).

:class:`TickPipeline` is validate → time guard → spike guard → aggregate, what the tick
agent runs per tick and what ``forexd candles``
(:func:`~forex_diffusion.offline.aggregate_ticks_file`) runs per row. Its state (open
buckets, watermark, recent tick ids, the time and spike guards with their held ticks)
snapshots per symbol as plain data, so a worker that takes over a partition resumes where
the last one stopped.

The time guard (:mod:`~forex_diffusion.ingest.time_jumps`) holds a tick far ahead of its series'
event time (default: more than ten minutes of open-market time) until later ticks confirm the
new time, so one bad clock cannot move the watermark; an unconfirmed one is refused as
``future_ts`` (through
:meth:`TickPipeline.take_quarantined`). The first ticks of a series are held until their
times agree (see the module); candles are the same as without the guard.

The spike guard (B9, :mod:`~forex_diffusion.ingest.spikes`) holds a huge jump back from the
aggregator until ``confirm`` ticks confirm the new level; then the held ticks go through
the aggregator in arrival order, so the candles equal those built without the guard.
An unconfirmed jump is quarantined: :meth:`TickPipeline.take_quarantined` hands the
quarantined ticks, with the ``ref`` the caller passed for each, back to the caller.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from forex_diffusion.domain import Candle, PriceSide, Tick
from forex_diffusion.errors import RejectReason, StateError, ValidationError
from forex_diffusion.ingest.aggregation import CandleAggregator
from forex_diffusion.ingest.spikes import SpikeConfig, SpikeCounters, SpikeGuard
from forex_diffusion.ingest.time_jumps import TimeJumpConfig, TimeJumpGuard
from forex_diffusion.ingest.validation import MAX_PRICE, MAX_TICK_VOLUME, TickValidator, ValidationConfig
from forex_diffusion.instruments import InstrumentRegistry
from forex_diffusion.market_hours import MarketHours
from forex_diffusion.state import number, time_ms
from forex_diffusion.timeframes import Timeframe

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
    detail: str = "price jump held and not confirmed"


def _encode(item: _Held) -> dict[str, Any]:
    t, ref = item
    return {
        "symbol": t.symbol,
        "ts_ms": t.ts_ms,
        "bid": t.bid,
        "ask": t.ask,
        "volume": t.volume,
        "tick_id": t.tick_id,
        "ref": ref,
    }


#: what the validator refuses in a quote's own values (its first checks, in this order, before
#: any that compares the quote with settings a restart may change: crossed, spread, precision,
#: off hours, duplicates): a held tick restored with one of them is no tick the stream accepted
_VALUE_REASONS = frozenset(
    {
        RejectReason.UNKNOWN_SYMBOL,
        RejectReason.BAD_TS,
        RejectReason.NON_FINITE,
        RejectReason.NON_POSITIVE,
        RejectReason.OUT_OF_RANGE,
    }
)
_TICK_ID_MAX = 128  # characters: the wire's bound on ``tick_id``


def _decoder(symbol: str, validator: TickValidator) -> Callable[[Any], _Held]:
    """Read back a tick the guards of ``symbol`` hold (what :func:`_encode` wrote), as the wire
    and the validator read a tick (StateError otherwise, naming the field, never the value):
    a tick of ``symbol`` itself, a known instrument; numbers by type (no numeric string, no
    ``True``, no float time; :mod:`forex_diffusion.state`), prices in ``(0, MAX_PRICE]`` and
    a volume in ``[0, MAX_TICK_VOLUME]`` (the wire's bounds), then the value checks of
    :meth:`TickValidator.check` (``validator``: a scratch one with the pipeline's settings;
    its counters and ids are not the pipeline's): time in the tick range, prices finite and
    within the instrument's range. Without it "1e400" or "nan" restored as a price wedged the
    series (every later tick failed) and made every later checkpoint non-JSON."""

    def decode(data: Any) -> _Held:
        if type(data) is not dict:
            raise StateError("malformed tick pipeline snapshot: a held tick is not a mapping")
        if data["symbol"] != symbol:
            raise StateError("malformed tick pipeline snapshot: a held tick of another symbol")
        # a TypeError or ValueError here is the guard's StateError (its restore reads us in malformed())
        ts = time_ms(data["ts_ms"], field="held tick ts_ms")
        bid = number(data["bid"], low=0.0, above=True, high=MAX_PRICE, field="held tick bid")
        ask = number(data["ask"], low=0.0, above=True, high=MAX_PRICE, field="held tick ask")
        volume = number(data["volume"], low=0.0, high=MAX_TICK_VOLUME, field="held tick volume")
        tick_id = data["tick_id"]
        if tick_id is not None and (type(tick_id) is not str or len(tick_id) > _TICK_ID_MAX):
            raise TypeError(f"held tick tick_id is not a string of at most {_TICK_ID_MAX} characters")
        ref = data["ref"]
        reason = validator.check(symbol, ts, bid, ask, volume=volume)
        if reason in _VALUE_REASONS:
            raise StateError(f"malformed tick pipeline snapshot: a held tick the validator refuses ({reason.value})")
        return Tick(symbol=symbol, ts_ms=ts, bid=bid, ask=ask, volume=volume, tick_id=tick_id), ref

    return decode


class TickPipeline:
    """Validate, guard against huge jumps, and aggregate ticks of the configured symbols.

    ``spikes`` configures the B9 guard (default :class:`SpikeConfig`: on, k=25,
    min_move=0.5 %, M=3; ``SpikeConfig(enabled=False)`` turns it off); ``times`` the
    event-time jump guard (default :class:`TimeJumpConfig`: on, ten minutes of open-market time, M=3). The B21
    weekend policy is ``validation.off_hours`` (default ``accept``: counted in
    :attr:`off_hours`).

    What a caller of the guard must know:

    * :meth:`process` returns ``[]`` for a held tick and raises nothing; the candles come
      out of the call that confirms the hold. Drain :meth:`take_quarantined` after every
      call (dead-letter each record by its ``ref``) *before* checkpointing: a quarantined
      tick is no longer in :meth:`snapshot`.
    * Lateness is judged as if the held ticks had reached the aggregator: a tick older than
      a held tick by more than ``allowed_lateness_ms`` is refused ``late``, as it would be
      without the guard.
    * :meth:`advance` never moves a symbol's clock past its earliest held tick;
      :meth:`flush` (end of a finite input) quarantines what is still held (the first
      ticks of a series held by the time guard are released instead: nothing contradicts
      them). Candles of ticks released outside :meth:`process` (by :meth:`expire_hold`)
      come out of the next :meth:`advance`, :meth:`process` or :meth:`flush`.
    * Feed the idle timer from :meth:`event_time`, not from the last tick's time: a held
      far-future tick is not the series' time.
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
        times: TimeJumpConfig | None = None,
    ) -> None:
        self.instruments = instruments
        self.validator = TickValidator(validation or ValidationConfig(), instruments)
        self.aggregator = CandleAggregator(timeframes, price=price, allowed_lateness_ms=allowed_lateness_ms)
        self.spike_config = spikes or SpikeConfig()
        self.spike_counters = SpikeCounters()
        self.time_counters: dict[str, int] = {"holds": 0, "confirmed": 0, "refused": 0}
        self._guard_on = self.spike_config.enabled
        self._guards: dict[str, SpikeGuard[_Held]] = {}
        self.time_config = times or TimeJumpConfig()
        self._clock_on = self.time_config.enabled
        self._clocks: dict[str, TimeJumpGuard[_Held]] = {}
        self._quarantined: list[Quarantined] = []
        self._released: list[Candle] = []  # candles of ticks released outside process()

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
        reason = self.validator.check(
            sym,
            tick.ts_ms,
            tick.bid,
            tick.ask,
            volume=tick.volume,
            tick_id=tick.tick_id,
            now_ms=now_ms,
            late_before_ms=None if last is None else last - self.aggregator.allowed_lateness_ms,
        )
        if reason is not None:
            raise ValidationError(reason, f"{sym} ts_ms={tick.ts_ms}")
        if self._clock_on:
            c = self._clocks.get(sym)
            if c is None:
                c = self._new_clock(sym)
            if tick.ts_ms > c.limit:  # a jump in time, ticks are held, or a new series
                return self._time_guarded(c, tick, ref)
            if tick.ts_ms > c.top:  # type: ignore[operator]  # top is set when limit is
                c.accept(tick.ts_ms)
        if self._released:
            return self._drain_released() + self._price_stage(tick, ref)
        return self._price_stage(tick, ref)

    def _price_stage(self, tick: Tick, ref: Any) -> list[Candle]:
        """Spike guard → aggregator for a tick the validator and time guard let through."""
        sym = tick.symbol
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

    # -- the time guard ---------------------------------------------------------------------

    def _new_clock(self, sym: str) -> TimeJumpGuard[_Held]:
        """A guard for ``sym``, starting from the time its restored state already has."""
        top = self.aggregator.last_event_ms(sym)
        g = self._guards.get(sym)
        if g is not None and g.holding:
            held = max(t.ts_ms for t, _ in g.held)
            top = held if top is None else max(top, held)
        c: TimeJumpGuard[_Held] = TimeJumpGuard(self.time_config, top=top)
        self._clocks[sym] = c
        return c

    def _time_guarded(self, c: TimeJumpGuard[_Held], tick: Tick, ref: Any) -> list[Candle]:
        """The rare path: ``tick`` is far ahead of its series, time-held ticks wait, or the
        series has no time yet."""
        sym = tick.symbol
        out = self._drain_released()
        verdict = c.classify(tick.ts_ms)
        if verdict == "first":
            settled = c.hold_first((tick, ref), tick.ts_ms)
            if settled is not None:
                out += self._settled(sym, c, *settled)
            return out
        if verdict == "revert":  # back near the series' time: the held ticks were a bad clock
            self._refuse_time(sym, c.end_hold(), c.top)
            c.accept(tick.ts_ms)
            return out + self._price_stage(tick, ref)
        if verdict == "restart":  # far from the series and from the held time
            self._refuse_time(sym, c.end_hold(), c.top)
        if verdict in ("confirm", "start"):  # late against a held tick (or one of an expired hold it goes on)
            times = [*c.held_ts] if verdict == "confirm" else []
            if (prior := c.continued_ms(tick.ts_ms)) is not None:
                times.append(prior)
            top = max(times, default=None)
            lateness = self.aggregator.allowed_lateness_ms
            if top is not None and tick.ts_ms < top - lateness:  # as without the guard
                self.aggregator.late_count += 1
                raise ValidationError(
                    RejectReason.LATE,
                    f"{sym} ts_ms={tick.ts_ms} older than watermark {top - lateness} (held ticks count)",
                )
        if verdict != "confirm":
            self.time_counters["holds"] += 1
            log.info(
                "time.hold symbol=%s ts_ms=%d series_ms=%s max_jump_ms=%d",
                sym,
                tick.ts_ms,
                c.top,
                self.time_config.max_jump_ms,
            )
        released = c.hold((tick, ref), tick.ts_ms)
        if released is not None:
            self.time_counters["confirmed"] += 1
            log.info("time.confirmed symbol=%s ticks=%d series_ms=%s", sym, len(released), c.top)
            out += self._release(released)
        return out

    def _settled(self, sym: str, c: TimeJumpGuard[_Held], released: list[_Held], refused: list[_Held]) -> list[Candle]:
        """The first ticks of ``sym`` agreed on a time: pass ``released`` on, refuse the rest."""
        self._refuse_time(sym, refused, c.top)
        return self._release(released)

    def _release(self, items: Sequence[_Held]) -> list[Candle]:
        out: list[Candle] = []
        for t, r in items:
            try:
                out.extend(self._price_stage(t, r))
            except ValidationError as exc:  # late against an earlier released tick
                self._quarantined.append(Quarantined(t.symbol, t, r, exc.reason, exc.detail))
        return out

    def _refuse_time(self, sym: str, items: Sequence[_Held], series_ms: int | None) -> None:
        if not items:
            return
        self.time_counters["refused"] += len(items)
        log.info(
            "time.unconfirmed symbol=%s ticks=%d first_ts_ms=%d series_ms=%s",
            sym,
            len(items),
            items[0][0].ts_ms,
            series_ms,
        )
        for t, r in items:
            ahead = series_ms is None or t.ts_ms > series_ms
            reason = RejectReason.FUTURE_TS if ahead else RejectReason.LATE
            what = "ahead of" if ahead else "before"
            self._quarantined.append(
                Quarantined(
                    sym,
                    t,
                    r,
                    reason,
                    f"event time {t.ts_ms} far {what} its series ({series_ms}), not confirmed by later ticks",
                )
            )

    def _drain_released(self) -> list[Candle]:
        out, self._released = self._released, []
        return out

    def event_time(self, symbol: str) -> int | None:
        """The latest event time of ``symbol`` the guards let through (None before the
        first); time-held ticks do not count. What an idle timer should count from."""
        c = self._clocks.get(symbol)
        if c is not None:
            return c.top
        return self.aggregator.last_event_ms(symbol)

    def time_held_count(self, symbol: str) -> int:
        """How many ticks of ``symbol`` the time guard holds."""
        c = self._clocks.get(symbol)
        return 0 if c is None else len(c.held)

    # -- the spike guard --------------------------------------------------------------------

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
            # lateness as the aggregator would judge it had the held ticks gone through (and
            # the expired ones this tick goes on confirming: as in a file, where they are held)
            self._check_late(sym, tick.ts_ms, g.held, g.continued_ms(mid))
        if verdict != "confirm":
            self.spike_counters.holds += 1
            log.info(
                "spike.hold symbol=%s ts_ms=%d mid=%r last_good=%r threshold=%.6f",
                sym,
                tick.ts_ms,
                mid,
                g.last_good,
                g.threshold,
            )
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

    def _check_late(self, sym: str, ts_ms: int, held: Sequence[_Held], prior_ms: int | None = None) -> None:
        top = self.aggregator.last_event_ms(sym)
        for t, _ in held:
            if top is None or t.ts_ms > top:
                top = t.ts_ms
        if prior_ms is not None and (top is None or prior_ms > top):
            top = prior_ms
        if top is not None and ts_ms < top - self.aggregator.allowed_lateness_ms:
            self.aggregator.late_count += 1
            raise ValidationError(
                RejectReason.LATE,
                f"{sym} ts_ms={ts_ms} older than watermark "
                f"{top - self.aggregator.allowed_lateness_ms} (held ticks count)",
            )

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
        if not self._quarantined:
            return []
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

    def idle_mark(self, symbol: str) -> tuple[int | None, int, int]:
        """What the idle timer changes of ``symbol``'s state (its event clock, the ticks held):
        the timer's series changed when this did, closing a bar or not (issue 15: then the
        next checkpoint writes it)."""
        return self.aggregator.last_event_ms(symbol), self.time_held_count(symbol), self.held_count(symbol)

    def advance(self, symbol: str, event_ms: int) -> list[Candle]:
        """Idle-series timer: move ``symbol``'s event clock without a tick.

        While ticks are held the clock stops at the earliest price-held tick, so that
        releasing them never makes them late, and it never goes more than the time guard's
        ``idle_cap_ms`` past the series' latest let-through tick (a held far-future tick is
        not the series' time). Candles of ticks :meth:`expire_hold` released come first.
        """
        g = self._guards.get(symbol)
        if g is not None and g.holding:
            event_ms = min(event_ms, min(t.ts_ms for t, _ in g.held))
        c = self._clocks.get(symbol)
        if c is not None and c.top is not None:
            event_ms = min(event_ms, c.top + self.time_config.idle_cap_ms)
        out = self._drain_released()
        return out + self.aggregator.advance(symbol, event_ms)

    def expire_hold(self, symbol: str) -> int:
        """End the open holds of ``symbol`` without confirmation (its feed went quiet).

        Price-held ticks are quarantined as ``spike_unconfirmed``, time-held ones as
        ``future_ts``; the first ticks of a new series are released instead (their candles
        come out of the next :meth:`advance`). Each guard remembers the hold it ended, so
        that on a thin feed the ticks after the quiet go on confirming it (``expire``).
        Returns how many were quarantined.
        """
        n = len(self._quarantined)
        c = self._clocks.get(symbol)
        if c is not None and c.holding:
            if c.top is None:
                released, refused = c.settle()
                self._refuse_time(symbol, refused, c.top)
                self._released += self._release(released)
            else:
                self._refuse_time(symbol, c.expire(), c.top)
        g = self._guards.get(symbol)
        if g is not None and g.holding:
            self._quarantine(symbol, g.expire(max(t.ts_ms for t, _ in g.held)))
        return len(self._quarantined) - n

    def flush(self) -> list[Candle]:
        """Close every open candle (end of a finite input). Held ticks are quarantined, but
        the first ticks of a series the time guard holds are released (largest cluster)."""
        for sym in sorted(self._clocks):
            c = self._clocks[sym]
            if c.holding:
                released, refused = c.settle()
                self._refuse_time(sym, refused, c.top)
                self._released += self._release(released)
        for sym in sorted(self._guards):
            g = self._guards[sym]
            if g.holding:
                self._quarantine(sym, g.end_hold())
        out = self._drain_released()
        return out + self.aggregator.flush()

    # -- state ------------------------------------------------------------------------------

    def snapshot(self, symbols: Sequence[str]) -> dict[str, Any]:
        """Plain-data (JSON-able when the refs are) state of ``symbols``."""
        return {
            "aggregator": self.aggregator.snapshot(symbols),
            "tick_ids": self.validator.snapshot(symbols),
            "spikes": {s: self._guards[s].snapshot(_encode) for s in symbols if s in self._guards},
            "times": {s: self._clocks[s].snapshot(_encode) for s in symbols if s in self._clocks},
        }

    def restore(self, data: dict[str, Any]) -> dict[str, int | None]:
        """Load what :meth:`snapshot` wrote (replacing those symbols' state).

        Returns the symbols restored: each with the event time of its earliest tick held by
        the time guard (a series restored with only its first ticks held has no aggregator
        series yet), or None.

        A snapshot without ``spikes`` (older versions) starts the guards afresh (warm-up);
        one without ``times`` starts the time guards from the restored watermark. With a
        guard turned off, ticks the snapshot holds are quarantined (the first ticks of a
        series held by the time guard are released; their candles come out of the next
        :meth:`advance`, :meth:`process` or :meth:`flush`).
        """
        try:
            out: dict[str, int | None] = dict.fromkeys(self.aggregator.restore(data["aggregator"]))
            self.validator.restore(data.get("tick_ids", {}), merge=True)
            spikes = data.get("spikes", {})
            times = data.get("times", {})
            for sym in set(out) | set(spikes) | set(times):
                self._guards.pop(sym, None)
                self._clocks.pop(sym, None)
            scratch = TickValidator(self.validator.config, self.instruments)
            for sym, state in spikes.items():
                g: SpikeGuard[_Held] = SpikeGuard(self.spike_config)
                g.restore(state, _decoder(sym, scratch))
                if self._guard_on:
                    self._guards[sym] = g
                else:
                    self._quarantine(sym, g.end_hold())
            for sym, state in times.items():
                c: TimeJumpGuard[_Held] = TimeJumpGuard(self.time_config)
                c.restore(state, _decoder(sym, scratch))
                self._clocks[sym] = c
                if c.held_ts:
                    out[sym] = min(c.held_ts)
                if (held := self._guards.get(sym)) is not None and sym in spikes and c.top is not None:
                    held.forget_after(c.top)  # its ticks passed this guard first
                if not self._clock_on:
                    released, refused = c.settle()
                    self._refuse_time(sym, refused, c.top)
                    self._released += self._release(released)
                    del self._clocks[sym]
        except StateError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as exc:  # AttributeError: a list for a mapping
            raise StateError(f"malformed tick pipeline snapshot: {exc}") from exc
        return out

    def drop(self, symbols: Sequence[str]) -> None:
        """Forget the state of ``symbols`` (their partition moved to another worker)."""
        for s in symbols:
            self.aggregator._series.pop(s, None)
            self.validator._seen.pop(s, None)
            self._guards.pop(s, None)
            self._clocks.pop(s, None)
