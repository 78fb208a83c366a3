"""Tick validation: one reason code per refused quote, counters for accepted quirks.

The checks follow the bad-input catalogue (RELIABILITY.md §3). Real feeds cross: about
10 % of FXCM EUR/USD ticks have bid > ask by up to 2.2 pips, so crossed quotes within
``crossed_tolerance`` (a fraction of mid) are accepted and counted, never clamped.

Extremes are refused on arrival, never discovered later (issue 13): a price beyond
``price_range_factor`` times the instrument's traded range (:mod:`~forex_diffusion.instruments`),
a negative, sub-``min_volume`` or over-``max_volume`` volume (so sums of volumes stay
finite) get reason ``out_of_range``; a non-finite volume ``non_finite``.

Ticks inside the weekly FX closure (B21, :mod:`~forex_diffusion.market_hours`) follow an
explicit policy: ``off_hours="accept"`` (default: accepted and counted in
``counters.off_hours``; real feeds quote there) or ``"reject"`` (reason ``off_hours``).

>>> v = TickValidator(ValidationConfig())
>>> v.check("EURUSD", 1_399_000_000_000, 1.38727, 1.38729) is None
True
>>> v.check("EURUSD", 1_399_000_000_000, float("nan"), 1.38729)
<RejectReason.NON_FINITE: 'non_finite'>
>>> v.check("EURUSD", 1_399_000_000_000, 1e304, 1e304)
<RejectReason.OUT_OF_RANGE: 'out_of_range'>
>>> v.check("EURUSD", 1_399_000_000_000, 1.38727, 1.38729, volume=1e308)
<RejectReason.OUT_OF_RANGE: 'out_of_range'>
"""

from __future__ import annotations

import itertools
import math
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from forex_diffusion.domain import Tick
from forex_diffusion.errors import ConfigError, RejectReason, StateError, ValidationError
from forex_diffusion.instruments import InstrumentRegistry
from forex_diffusion.market_hours import DEFAULT_MARKET_HOURS, MarketHours
from forex_diffusion.state import MAX_TIME_MS, count, malformed, unwrap, wrap

PRICE_RANGE_FACTOR = 10.0
"""By default a price must lie in ``[low / f, high * f]`` of its instrument's traded range
(ticks here, candles in :func:`forex_diffusion.wire.decode_candle`)."""

MAX_TICK_VOLUME = 1e15
"""The largest tick volume accepted by default (the wire schema's bound too): a sum of 1e9 of
them stays finite and exact enough."""

MAX_PRICE = 1e9
"""The largest price magnitude of a tick or a candle (the wire schema's ``PRICE_MAX``; no
instrument trades near it). Here, not in :mod:`forex_diffusion.wire`, so that the offline
candle check reads it without loading the wire's imports (scipy, river: 1.5 s a command)."""

MAX_CANDLE_VOLUME = 1e24
"""The largest volume of one candle (the wire schema's ``CANDLE_VOLUME_MAX``)."""

__all__ = ["ValidationConfig", "TickValidator", "ValidationCounters"]

MIN_TS_MS = 946_684_800_000
"""2000-01-01 UTC in epoch ms: the earliest tick time accepted by default (bad-input catalogue
B18: earlier is a unit error, a time before the epoch or garbage; ``bad_ts``;
:class:`ValidationConfig`'s ``min_ts_ms``). Candles start earlier, at the offline readers' floor
(:data:`EPOCH_FIRST_MS`, 1971-01-01: daily bars of the 1970s;
:func:`forex_diffusion.wire.decode_candle`)."""
MAX_TS_MS = 4_102_444_800_000
"""2100-01-01 UTC in epoch ms: event times are before it (ticks, and candles in
:func:`forex_diffusion.wire.decode_candle`)."""
EPOCH_FIRST_MS = 31_536_000_000
"""1971-01-01 UTC in epoch ms: the first time of a candle (a bar must overlap
``EPOCH_FIRST_MS..MAX_TS_MS``: on the wire, :func:`forex_diffusion.wire.decode_candle`, and in
a stored row, :func:`forex_diffusion.storage.repository.fetch_candles`) and the first date an
epoch number of a file may give (:data:`forex_diffusion.ingest.readers.EPOCH_FIRST_MS`, which
is this one)."""
_UNKNOWN_TS = -(1 << 62)  # event time of an id restored from an older snapshot: forgettable


def bar_in_span(open_ms: int, end_ms: int) -> bool:
    """Whether the bar ``open_ms..end_ms`` overlaps ``EPOCH_FIRST_MS..MAX_TS_MS`` (1971-01-01 to
    2100-01-01): the candles' time rule, on the wire and in a stored row. A bar that straddles
    an end, as a day bar rolling at 22:00 does, is in.

    >>> bar_in_span(EPOCH_FIRST_MS - 7_200_000, EPOCH_FIRST_MS + 79_200_000)
    True
    >>> bar_in_span(EPOCH_FIRST_MS - 60_000, EPOCH_FIRST_MS)
    False
    """
    return end_ms > EPOCH_FIRST_MS and open_ms < MAX_TS_MS


@dataclass(frozen=True, slots=True, kw_only=True)
class ValidationConfig:
    """Validator settings.

    crossed_tolerance: largest accepted ``(bid - ask) / mid`` (default 5e-4, about 7 pips
        on EUR/USD; FXCM's worst real crossing is 2.2 pips).
    max_spread_fraction: widest accepted ``(ask - bid) / mid`` (0.5 %, polygon's FX filter).
    future_skew_ms: how far past the wall clock an event may be (when ``now_ms`` is given).
    max_decimals_extra: digits allowed beyond the instrument's quoted precision.
    dedup_window: tick ids remembered per symbol for duplicate detection. Past it, the
        oldest ids are forgotten only once a copy would be refused as late anyway (see
        ``late_before_ms`` of :meth:`TickValidator.check`), up to ``dedup_cap_factor`` times
        the window (a memory bound for feeds denser than any real one).
    off_hours: policy for ticks inside the weekly closure ``market_hours``: ``"accept"``
        (default; counted in ``counters.off_hours``) or ``"reject"`` (reason ``off_hours``).
    market_hours: the closure (default Friday 22:00 to Sunday 21:00 UTC).
    price_range_factor: a price must lie within the instrument's traded range widened by
        this factor, ``[low / f, high * f]`` (default 10); beyond: ``out_of_range``.
    max_volume: largest accepted tick volume (default 1e15: a sum of 1e9 of them is
        still finite and exact enough); ``min_volume``: smallest accepted positive volume
        (default 1e-9; sub-normal volumes are garbage). 0 is always accepted.
    """

    crossed_tolerance: float = 5e-4
    max_spread_fraction: float = 5e-3
    future_skew_ms: int = 5_000
    min_ts_ms: int = MIN_TS_MS
    max_ts_ms: int = MAX_TS_MS
    check_precision: bool = True
    max_decimals_extra: int = 0
    dedup_window: int = 10_000
    dedup_cap_factor: int = 10
    off_hours: Literal["accept", "reject"] = "accept"
    market_hours: MarketHours = DEFAULT_MARKET_HOURS
    price_range_factor: float = PRICE_RANGE_FACTOR
    max_volume: float = MAX_TICK_VOLUME
    min_volume: float = 1e-9

    def __post_init__(self) -> None:
        if self.off_hours not in ("accept", "reject"):
            raise ConfigError(f"off_hours must be 'accept' or 'reject', not {self.off_hours!r}")
        if not isinstance(self.market_hours, MarketHours):
            raise ConfigError("market_hours must be a MarketHours")
        if not (0 <= self.crossed_tolerance < 0.1):
            raise ConfigError("crossed_tolerance must be in [0, 0.1)")
        if not (0 < self.max_spread_fraction < 1):
            raise ConfigError("max_spread_fraction must be in (0, 1)")
        if self.future_skew_ms < 0 or self.dedup_window < 0 or self.max_decimals_extra < 0:
            raise ConfigError("future_skew_ms, dedup_window and max_decimals_extra must be >= 0")
        if self.dedup_cap_factor < 1:
            raise ConfigError("dedup_cap_factor must be >= 1")
        if self.min_ts_ms >= self.max_ts_ms:
            raise ConfigError("min_ts_ms must be below max_ts_ms")
        if not (1.0 <= self.price_range_factor <= 1e6):
            raise ConfigError("price_range_factor must be in [1, 1e6]")
        if not (0.0 < self.min_volume < self.max_volume <= 1e200):
            raise ConfigError("volumes bounds must satisfy 0 < min_volume < max_volume <= 1e200")


@dataclass(slots=True)
class ValidationCounters:
    """Accepted quirks and refusals, by kind."""

    accepted: int = 0
    crossed_accepted: int = 0
    locked: int = 0
    off_hours: int = 0  # accepted inside the weekly closure (policy "accept")
    rejected: dict[str, int] = field(default_factory=dict)


class TickValidator:
    """Check quotes against the catalogue; stateful only for duplicate ids (bounded)."""

    state_kind = "tick_ids"
    state_version = 1

    def __init__(self, config: ValidationConfig | None = None, instruments: InstrumentRegistry | None = None) -> None:
        self.config = config or ValidationConfig()
        self.instruments = instruments or InstrumentRegistry()
        self.counters = ValidationCounters()
        self._seen: dict[str, OrderedDict[str, int]] = {}  # tick id -> its event time, in arrival order
        self._scale: dict[str, float] = {}
        self._range: dict[str, tuple[float, float]] = {}
        self._hours = self.config.market_hours
        self._open_from, self._open_until = 0, 0  # the open period of the last tick (a cache)
        self._reject_off = self.config.off_hours == "reject"

    def is_off_hours(self, ts_ms: int) -> bool:
        """Return whether ``ts_ms`` falls in the configured weekly closure."""
        return self._hours.is_closed(ts_ms)

    def check(
        self,
        symbol: str,
        ts_ms: int,
        bid: float,
        ask: float,
        *,
        volume: float = 0.0,
        tick_id: str | None = None,
        now_ms: int | None = None,
        late_before_ms: int | None = None,
    ) -> RejectReason | None:
        """Return the reason ``symbol/ts_ms/bid/ask/volume`` is refused, or None when accepted.

        ``symbol`` must already be canonical (see :meth:`InstrumentRegistry.normalise`).
        Accepted crossed, locked or off-hours quotes are counted. ``late_before_ms`` is the
        event time below which the caller refuses a tick of ``symbol`` as late (the
        aggregator's watermark): beyond ``dedup_window`` only ids of such ticks are forgotten,
        so a copy is never accepted twice (D12). Without it ids are forgotten by count.
        """
        reason = self._reason(symbol, ts_ms, bid, ask, volume, tick_id, now_ms, late_before_ms)
        c = self.counters
        if reason is None:
            c.accepted += 1
            if bid > ask:
                c.crossed_accepted += 1
            elif bid == ask:
                c.locked += 1
        else:
            c.rejected[reason.value] = c.rejected.get(reason.value, 0) + 1
        return reason

    def _reason(
        self,
        symbol: str,
        ts_ms: int,
        bid: float,
        ask: float,
        volume: float,
        tick_id: str | None,
        now_ms: int | None,
        late_before_ms: int | None = None,
    ) -> RejectReason | None:
        cfg = self.config
        if symbol not in self.instruments:
            return RejectReason.UNKNOWN_SYMBOL
        if type(ts_ms) is not int or not (cfg.min_ts_ms <= ts_ms < cfg.max_ts_ms):
            return RejectReason.BAD_TS
        if now_ms is not None and ts_ms > now_ms + cfg.future_skew_ms:
            return RejectReason.FUTURE_TS
        if not (math.isfinite(bid) and math.isfinite(ask)):
            return RejectReason.NON_FINITE
        if not (bid > 0 and ask > 0):
            return RejectReason.NON_POSITIVE
        rng = self._range.get(symbol)
        if rng is None:
            rng = self._price_range(symbol)
        if not (rng[0] <= bid <= rng[1] and rng[0] <= ask <= rng[1]):
            return RejectReason.OUT_OF_RANGE
        if volume:  # 0 (no volume) is the common case
            if not math.isfinite(volume):
                return RejectReason.NON_FINITE
            if not (cfg.min_volume <= volume <= cfg.max_volume):
                return RejectReason.OUT_OF_RANGE  # negative, sub-normal or too large to sum
        mid = (bid + ask) * 0.5
        spread = ask - bid
        if -spread > cfg.crossed_tolerance * mid:
            return RejectReason.CROSSED
        if spread > cfg.max_spread_fraction * mid:
            return RejectReason.WIDE_SPREAD
        if cfg.check_precision and not (self._on_grid(symbol, bid) and self._on_grid(symbol, ask)):
            return RejectReason.PRECISION
        off = False
        if not (self._open_from <= ts_ms < self._open_until):  # once a week, or off hours
            off = self._hours.is_closed(ts_ms)
            if not off:
                self._open_from, self._open_until = self._hours.open_span(ts_ms)
            elif self._reject_off:
                return RejectReason.OFF_HOURS
        if tick_id is not None and cfg.dedup_window:
            seen = self._seen.get(symbol)
            if seen is None:
                seen = self._seen[symbol] = OrderedDict()
            if tick_id in seen:
                return RejectReason.DUPLICATE
            seen[tick_id] = ts_ms
            if len(seen) > cfg.dedup_window:
                self._forget(seen, late_before_ms)
        if off:
            self.counters.off_hours += 1
        return None

    def _forget(self, seen: OrderedDict[str, int], late_before_ms: int | None) -> None:
        """Drop the oldest ids beyond the window, keeping those whose copy would not be late."""
        cfg = self.config
        if late_before_ms is None:
            seen.popitem(last=False)
            return
        cap = cfg.dedup_window * cfg.dedup_cap_factor
        while len(seen) > cfg.dedup_window:
            if len(seen) <= cap and next(iter(seen.values())) >= late_before_ms:
                return  # its copy would still be accepted: remember it (a dense burst)
            seen.popitem(last=False)

    def _price_range(self, symbol: str) -> tuple[float, float]:
        inst = self.instruments.get(symbol)
        assert inst is not None
        f = self.config.price_range_factor
        rng = self._range[symbol] = (inst.low / f, inst.high * f)
        return rng

    def _on_grid(self, symbol: str, price: float) -> bool:
        scale = self._scale.get(symbol)
        if scale is None:
            inst = self.instruments.get(symbol)
            assert inst is not None
            scale = self._scale[symbol] = 10.0 ** (inst.decimals + self.config.max_decimals_extra)
        x = price * scale
        if not (-1e300 < x < 1e300):  # never reached after the range check; round(inf) raises
            return False
        return bool(abs(x - round(x)) < 1e-6 * max(1.0, abs(x)) ** 0.5)

    def validate(self, tick: Tick, *, now_ms: int | None = None) -> Tick:
        """Return ``tick`` (with its canonical symbol) or raise :class:`ValidationError`."""
        symbol = self.instruments.normalise(tick.symbol)
        if symbol is None:
            self.counters.rejected["unknown_symbol"] = self.counters.rejected.get("unknown_symbol", 0) + 1
            raise ValidationError(RejectReason.UNKNOWN_SYMBOL, f"symbol {tick.symbol[:32]!r}")
        reason = self.check(
            symbol, tick.ts_ms, tick.bid, tick.ask, volume=tick.volume, tick_id=tick.tick_id, now_ms=now_ms
        )
        if reason is not None:
            raise ValidationError(reason, f"{symbol} ts_ms={tick.ts_ms} bid={tick.bid!r} ask={tick.ask!r}")
        if symbol != tick.symbol:
            return Tick(
                symbol=symbol, ts_ms=tick.ts_ms, bid=tick.bid, ask=tick.ask, volume=tick.volume, tick_id=tick.tick_id
            )
        return tick

    def snapshot(self, symbols: Iterable[str] | None = None) -> dict[str, Any]:
        """Plain-data state (in the envelope): per symbol (all by default) the recent tick ids
        in arrival order and their event times as differences from the previous one (small
        numbers in JSON)."""
        names = self._seen if symbols is None else [s for s in symbols if s in self._seen]
        out: dict[str, Any] = {}
        for s in names:
            seen = self._seen[s]
            ts = list(seen.values())
            out[s] = {"ids": list(seen), "dts": [t - p for t, p in zip(ts, [0, *ts[:-1]], strict=True)]}
        return wrap(self, out)

    def restore(self, data: dict[str, Any], *, merge: bool = False) -> None:
        """Inverse of :meth:`snapshot`: replace the whole state, or with ``merge`` only the
        symbols ``data`` names. The layout before the envelope (the bare mapping of symbols)
        is read too; there, a plain list of ids (older still) is restored with unknown times,
        forgettable by count as before."""
        state = unwrap(data, self, legacy=lambda old: old)
        seen: dict[str, OrderedDict[str, int]] = {}
        with malformed(self):
            for s, v in state.items():
                if isinstance(v, list):
                    seen[s] = OrderedDict.fromkeys(v, _UNKNOWN_TS)
                    continue
                ids, dts = v["ids"], v["dts"]
                if len(ids) != len(dts):
                    raise StateError(f"tick ids of {s}: {len(ids)} ids, {len(dts)} times")
                # each an integer (not True, 1.5 or "15"), and the times they add up to event times
                # (the wire's range) or the unknown time of an id restored from a bare list
                times = list(itertools.accumulate(count(t, low=-(2**63), high=2**63, field="dts") for t in dts))
                if not all(t == _UNKNOWN_TS or 0 <= t <= MAX_TIME_MS for t in times):
                    raise StateError("malformed tick_ids state: dts add up to a time outside the wire's range")
                seen[s] = OrderedDict(zip(ids, times, strict=True))
        if merge:
            self._seen.update(seen)
        else:
            self._seen = seen
