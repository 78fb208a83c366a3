"""Tick → candle aggregation by event time, for several timeframes at once.

Semantics (DESIGN.md "Event time", RELIABILITY.md §4):

* A tick at ``ts`` belongs to the bucket ``[open, open + tf)`` holding ``ts``; only
  buckets with ticks produce a candle; candles are labelled by open time.
* Per symbol, the watermark is the latest event time seen minus ``allowed_lateness_ms``.
  A bucket closes (``final=True``) once the watermark reaches its end. A tick older than
  the watermark is *late*: it raises :class:`ValidationError` (reason ``late``) and is
  never merged. Any tick not older than the watermark lands in buckets that are still
  open on every timeframe, so a closed candle is immutable.
* Out-of-order ticks within the lateness revise the forming bucket: ``open`` is the
  price of the earliest event, ``close`` of the latest (ties: the later arrival).
* The price side is mid (default), bid or ask; spread statistics and tick counts are
  carried whatever the side.

The hot path works on ints and floats; :class:`~forex_diffusion.domain.Candle` records
are built only when a bucket closes or a caller asks for the forming ones.

>>> agg = CandleAggregator(["1m"], price="bid", allowed_lateness_ms=0)
>>> agg.add("EURUSD", 60_000, 1.1, 1.2)
[]
>>> [c.close for c in agg.add("EURUSD", 120_000, 1.3, 1.4)]
[1.1]
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Sequence
from typing import Any

from forex_diffusion.domain import Candle, PriceSide, Tick
from forex_diffusion.errors import ConfigError, RejectReason, StateError, ValidationError
from forex_diffusion.ingest.validation import MAX_CANDLE_VOLUME, MAX_PRICE
from forex_diffusion.state import count, malformed, number, time_ms, unwrap, wrap
from forex_diffusion.timeframes import Timeframe, parse_timeframes

__all__ = ["CandleAggregator"]

# Bar slots (a plain list is the fastest mutable record in CPython).
_OPEN_MS, _END_MS, _O, _H, _L, _C, _VOL, _N, _SSUM, _SMIN, _SMAX, _OTS, _CTS = range(13)
_INF = float("inf")
# the fields of a stored bar, by kind, named as a StateError names them
_BAR_TIMES = ((_OPEN_MS, "bar open"), (_END_MS, "bar end"), (_OTS, "bar first tick"), (_CTS, "bar last tick"))
_BAR_PRICES = ((_O, "bar open price"), (_H, "bar high"), (_L, "bar low"), (_C, "bar close"))
_BAR_SPREADS = ((_SMIN, "bar spread min"), (_SMAX, "bar spread max"))
_INT32_MAX = 2**31 - 1  # a candle's tick count on the wire and in the store
_CANONICAL_SYMBOL = re.compile(r"[A-Z]{6}")  # as the wire names a series (forex_diffusion.wire)


def _spread_sum_fits(ssum: float, n: int, smin: float, smax: float) -> bool:
    """Whether a sum of ``n`` spreads, each in ``[smin, smax]``, can be ``ssum``: within
    ``[n * smin, n * smax]`` less the rounding of ``n`` float additions (a sum past it made a
    candle whose mean spread lay outside its own min and max, or that the wire refuses)."""
    slack = max(1e-9, 4 * n * sys.float_info.epsilon) * n * max(abs(smin), abs(smax))
    return n * smin - slack <= ssum <= n * smax + slack


class _Series:
    """Open buckets of one symbol on every timeframe, and its watermark."""

    __slots__ = ("max_ts", "cur", "bars", "next_close")

    def __init__(self, n_tf: int) -> None:
        self.max_ts = -(2**62)
        self.cur: list[list[Any] | None] = [None] * n_tf  # latest bucket per timeframe
        self.bars: list[dict[int, list[Any]]] = [{} for _ in range(n_tf)]
        self.next_close = 2**62  # smallest end among open buckets


class CandleAggregator:
    """Aggregate ticks of many symbols into candles of several timeframes.

    Parameters
    ----------
    timeframes:
        Names (``"1m"``) or :class:`Timeframe` objects.
    price:
        ``"mid"`` (default), ``"bid"`` or ``"ask"``.
    allowed_lateness_ms:
        How far behind the latest event time a tick may arrive and still count.
    """

    state_kind = "candle_aggregator"
    state_version = 1

    def __init__(
        self,
        timeframes: Iterable[str | Timeframe] | str,
        *,
        price: PriceSide = "mid",
        allowed_lateness_ms: int = 2_000,
    ) -> None:
        if price not in ("mid", "bid", "ask"):
            raise ConfigError(f"price must be mid, bid or ask, not {price!r}")
        if allowed_lateness_ms < 0:
            raise ConfigError("allowed_lateness_ms must be >= 0")
        if isinstance(timeframes, str):
            tfs = parse_timeframes(timeframes)
        else:
            items = list(timeframes)
            tfs = tuple(t if isinstance(t, Timeframe) else Timeframe.parse(t) for t in items)
            if not tfs:
                raise ConfigError("at least one timeframe is required")
            tfs = tuple(sorted({t.name: t for t in tfs}.values(), key=lambda t: t.duration_ms))
        self.timeframes: tuple[Timeframe, ...] = tfs
        self.price: PriceSide = price
        self.allowed_lateness_ms = allowed_lateness_ms
        self._series: dict[str, _Series] = {}
        self._epoch_tf = tuple(not t.is_daily for t in tfs)
        self._dur = tuple(t.duration_ms for t in tfs)
        self.late_count = 0

    # -- hot path ---------------------------------------------------------------------------

    def add(self, symbol: str, ts_ms: int, bid: float, ask: float, volume: float = 0.0) -> list[Candle]:
        """Fold one validated quote; return the candles this closed (oldest first).

        Raises :class:`ValidationError` with reason ``late`` for a tick older than the
        watermark; the state is unchanged then.
        """
        s = self._series.get(symbol)
        if s is None:
            s = self._series[symbol] = _Series(len(self._dur))
        lateness = self.allowed_lateness_ms
        if ts_ms < s.max_ts - lateness:
            self.late_count += 1
            raise ValidationError(
                RejectReason.LATE,
                f"{symbol} ts_ms={ts_ms} older than watermark {s.max_ts - lateness}",
            )
        side = self.price
        p = (bid + ask) * 0.5 if side == "mid" else (bid if side == "bid" else ask)
        spread = ask - bid
        cur = s.cur
        for i in range(len(self._dur)):
            bar = cur[i]
            if bar is None or not (bar[0] <= ts_ms < bar[1]):
                bar = self._bucket(s, i, ts_ms)
            if bar[_N] == 0:
                bar[_O] = bar[_H] = bar[_L] = bar[_C] = p
                bar[_SMIN] = bar[_SMAX] = spread
                bar[_OTS] = bar[_CTS] = ts_ms
            else:
                if p > bar[_H]:
                    bar[_H] = p
                elif p < bar[_L]:
                    bar[_L] = p
                if ts_ms >= bar[_CTS]:
                    bar[_C] = p
                    bar[_CTS] = ts_ms
                elif ts_ms < bar[_OTS]:
                    bar[_O] = p
                    bar[_OTS] = ts_ms
                if spread < bar[_SMIN]:
                    bar[_SMIN] = spread
                elif spread > bar[_SMAX]:
                    bar[_SMAX] = spread
            bar[_N] += 1
            bar[_VOL] += volume
            bar[_SSUM] += spread
        if ts_ms > s.max_ts:
            s.max_ts = ts_ms
            if ts_ms - lateness >= s.next_close:
                return self._close(symbol, s, ts_ms - lateness)
        return []

    def _bucket(self, s: _Series, i: int, ts_ms: int) -> list[Any]:
        if self._epoch_tf[i]:
            start = ts_ms - ts_ms % self._dur[i]
            end = start + self._dur[i]
        else:
            start, end = self.timeframes[i].bounds(ts_ms)
        bars = s.bars[i]
        bar = bars.get(start)
        if bar is None:
            bar = [start, end, 0.0, 0.0, 0.0, 0.0, 0.0, 0, 0.0, 0.0, 0.0, 0, 0]
            bars[start] = bar
            if end < s.next_close:
                s.next_close = end
        if s.cur[i] is None or start >= s.cur[i][0]:  # type: ignore[index]
            s.cur[i] = bar
        return bar

    def _close(self, symbol: str, s: _Series, watermark: int) -> list[Candle]:
        out: list[tuple[int, int, Candle]] = []
        next_close = 2**62
        for i, bars in enumerate(s.bars):
            done = [k for k, b in bars.items() if b[_END_MS] <= watermark]
            for k in done:
                bar = bars.pop(k)
                if s.cur[i] is bar:
                    s.cur[i] = None
                out.append((bar[_END_MS], self._dur[i], self._candle(symbol, i, bar, True)))
            for b in bars.values():
                if b[_END_MS] < next_close:
                    next_close = b[_END_MS]
        s.next_close = next_close
        out.sort(key=lambda t: (t[0], t[1]))
        return [c for _, _, c in out]

    def _candle(self, symbol: str, i: int, bar: list[Any], final: bool) -> Candle:
        n = bar[_N]
        return Candle(
            symbol=symbol,
            timeframe=self.timeframes[i].name,
            open_ms=bar[_OPEN_MS],
            close_ms=bar[_END_MS],
            open=bar[_O],
            high=bar[_H],
            low=bar[_L],
            close=bar[_C],
            volume=bar[_VOL],
            tick_count=n,
            spread_mean=bar[_SSUM] / n,
            spread_min=bar[_SMIN],
            spread_max=bar[_SMAX],
            final=final,
            revision=n,
        )

    # -- other entry points -----------------------------------------------------------------

    def add_tick(self, tick: Tick) -> list[Candle]:
        """:meth:`add` for a :class:`Tick` record."""
        return self.add(tick.symbol, tick.ts_ms, tick.bid, tick.ask, tick.volume)

    def advance(self, symbol: str, event_ms: int) -> list[Candle]:
        """Close what a tick of ``symbol`` at ``event_ms`` would have closed, without a tick
        (idle-series timer), moving its clock only as far as those bars need: to the latest
        end among them plus the allowed lateness. Time never goes backwards.

        No tick was seen at ``event_ms``: a tick after the last bar closed is not late. (One
        behind it is, even in a gap where no bar was open: one watermark per series.)
        The clock used to move to ``event_ms`` itself, so on a feed slower than the wall
        clock (a replay at ``--speed 0.5``) each idle close put it ahead of the feed by the
        quiet time, and every tick after was refused as late (2,998 of 3,000 ticks).
        """
        s = self._series.get(symbol)
        if s is None or event_ms <= s.max_ts:
            return []
        lateness = self.allowed_lateness_ms
        wm = event_ms - lateness
        if wm < s.next_close:
            return []
        out = self._close(symbol, s, wm)
        s.max_ts = max(s.max_ts, out[-1].close_ms + lateness)  # sorted by end
        return out

    def flush(self, symbol: str | None = None) -> list[Candle]:
        """Close every open bucket (end of input); of one symbol or of all."""
        names = [symbol] if symbol is not None else sorted(self._series)
        out: list[Candle] = []
        for name in names:
            s = self._series.get(name)
            if s is not None:
                out.extend(self._close(name, s, 2**62))
        return out

    def forming(self, symbol: str) -> list[Candle]:
        """The still-open candles of ``symbol`` (``final=False``), by timeframe then time."""
        s = self._series.get(symbol)
        if s is None:
            return []
        return [self._candle(symbol, i, bars[k], False) for i, bars in enumerate(s.bars) for k in sorted(bars)]

    def watermark(self, symbol: str) -> int | None:
        """Current watermark of ``symbol`` in epoch ms, or None before its first tick."""
        s = self._series.get(symbol)
        return None if s is None else s.max_ts - self.allowed_lateness_ms

    def last_event_ms(self, symbol: str) -> int | None:
        """Latest event time seen for ``symbol``."""
        s = self._series.get(symbol)
        return None if s is None else s.max_ts

    @property
    def symbols(self) -> tuple[str, ...]:
        return tuple(self._series)

    def run(self, ticks: Iterable[Tick]) -> list[Candle]:
        """Aggregate ``ticks`` in order and flush; late ticks are skipped (and counted)."""
        out: list[Candle] = []
        for t in ticks:
            try:
                out.extend(self.add(t.symbol, t.ts_ms, t.bid, t.ask, t.volume))
            except ValidationError:
                continue
        out.extend(self.flush())
        return out

    # -- state ------------------------------------------------------------------------------

    def snapshot(self, symbols: Sequence[str] | None = None) -> dict[str, Any]:
        """Plain-data (JSON-able) state of the given symbols (all by default), in the envelope."""
        names = self._series if symbols is None else [s for s in symbols if s in self._series]
        series = {}
        for name in names:
            s = self._series[name]
            series[name] = {
                "max_ts": s.max_ts,
                "bars": [[list(b) for _, b in sorted(bars.items())] for bars in s.bars],
            }
        state = {
            "timeframes": [t.name for t in self.timeframes],
            "price": self.price,
            "allowed_lateness_ms": self.allowed_lateness_ms,
            "series": series,
        }
        return wrap(self, state)

    def restore(self, data: dict[str, Any]) -> list[str]:
        """Load state written by :meth:`snapshot` (replacing the symbols it names); return them.

        The layout before the envelope (``{"version": 1, ...}``) is read too."""
        state = unwrap(data, self, legacy=_legacy)
        with malformed(self):
            if state.get("timeframes") != [t.name for t in self.timeframes] or state.get("price") != self.price:
                raise StateError("aggregator snapshot was taken with other timeframes or price side")
            count(state.get("allowed_lateness_ms", 0), field="allowed_lateness_ms")  # informative: not restored
            return self._load(state["series"])

    def _load(self, series: dict[str, Any]) -> list[str]:
        restored = {}
        for name, sd in series.items():
            s = _Series(len(self._dur))
            s.max_ts = time_ms(sd["max_ts"], field="max_ts")
            if len(sd["bars"]) != len(self._dur):
                raise StateError(f"aggregator snapshot of {len(sd['bars'])} timeframes, not {len(self._dur)}")
            for i, bars in enumerate(sd["bars"]):
                for b in bars:
                    bar = self._checked(i, b)
                    if bar[_CTS] > s.max_ts:
                        raise StateError("an aggregator bar holds a tick after the series' latest")
                    s.bars[i][bar[_OPEN_MS]] = bar
                    if s.cur[i] is None or bar[_OPEN_MS] >= s.cur[i][0]:  # type: ignore[index]
                        s.cur[i] = bar
                    s.next_close = min(s.next_close, bar[_END_MS])
            if type(name) is not str or not _CANONICAL_SYMBOL.fullmatch(name):
                raise StateError("an aggregator series whose name is no canonical symbol")  # its candles: no symbol
            restored[name] = s
        self._series.update(restored)  # all or nothing: a malformed series changes no state
        return list(restored)

    def _checked(self, i: int, b: Any) -> list[Any]:
        """A bar of timeframe ``i`` read from a state, as :meth:`add` leaves one (or StateError),
        bounded as the wire bounds a candle (:data:`~forex_diffusion.wire.CANDLES`): its
        bucket's bounds, times in it (epoch ms in the wire's range), at least one tick and at
        most a 32-bit count, prices in ``(0, MAX_PRICE]`` with low <= open, close <= high,
        spreads within ``MAX_PRICE`` (min <= max), a volume in ``[0, MAX_CANDLE_VOLUME]``; each
        an ``int``/``float`` (a numeric string or ``True`` is none, :func:`~forex_diffusion.state.number`)."""
        if type(b) is not list or len(b) != _CTS + 1:
            raise StateError("an aggregator bar that is not a list of 13 fields")
        bar = b
        start, end, ots, cts = (time_ms(bar[k], field=f) for k, f in _BAR_TIMES)
        n = count(bar[_N], low=1, high=_INT32_MAX, field="bar tick count")
        o, h, lo, c = (number(bar[k], low=0.0, above=True, high=MAX_PRICE, field=f) for k, f in _BAR_PRICES)
        vol = number(bar[_VOL], low=0.0, high=MAX_CANDLE_VOLUME, field="bar volume")
        ssum = number(bar[_SSUM], field="bar spread sum")
        smin, smax = (number(bar[k], low=-MAX_PRICE, high=MAX_PRICE, field=f) for k, f in _BAR_SPREADS)
        bounds = (start, start + self._dur[i]) if self._epoch_tf[i] else self.timeframes[i].bounds(start)
        if (
            (start, end) != tuple(bounds)
            or (self._epoch_tf[i] and start % self._dur[i])
            or not (start <= ots <= cts < end)
            or n < 1
            or not (0 < lo <= min(o, c) and max(o, c) <= h)
            or not (smin <= smax)
            or not _spread_sum_fits(ssum, n, smin, smax)
        ):
            raise StateError("an aggregator bar that no ticks make")
        return [start, end, o, h, lo, c, vol, n, ssum, smin, smax, ots, cts]


def _legacy(old: dict[str, Any]) -> dict[str, Any]:
    """The layout before the envelope: the same fields beside ``"version": 1``."""
    if old.get("version") != 1:
        raise StateError(f"unsupported aggregator snapshot version {str(old.get('version'))[:20]}")
    return {k: v for k, v in old.items() if k != "version"}
