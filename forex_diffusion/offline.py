"""Offline pipelines over files, running the same core code as the agents.

:func:`aggregate_ticks_file` (``forexd candles``) runs the tick agent's
:class:`~forex_diffusion.ingest.pipeline.TickPipeline` row by row: the same validator, event-time
jump guard, price spike guard and aggregator, so a file gives the candles a replay of it
into a worker gives, and a row either reaches the candles or is refused with its reason.
"""

from __future__ import annotations

import csv
import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import numpy as np
import pandas as pd

from forex_diffusion.domain import Candle, PriceSide, Tick
from forex_diffusion.errors import ConfigError, DataFormatError, RejectReason, ValidationError
from forex_diffusion.ingest.candle_gate import CandleGate, CandleGateConfig
from forex_diffusion.ingest.candle_spikes import CandleSpikeGuard, QuarantinedCandle
from forex_diffusion.ingest.pipeline import TickPipeline
from forex_diffusion.ingest.readers import FileReject, read_ticks
from forex_diffusion.ingest.spikes import SpikeConfig
from forex_diffusion.ingest.time_jumps import TimeJumpConfig
from forex_diffusion.ingest.validation import (
    EPOCH_FIRST_MS,
    MAX_CANDLE_VOLUME,
    MAX_PRICE,
    MAX_TS_MS,
    PRICE_RANGE_FACTOR,
    ValidationConfig,
)
from forex_diffusion.instruments import Instrument, InstrumentRegistry
from forex_diffusion.precision import price_decimals, price_text
from forex_diffusion.timeframes import ms_to_datetime

__all__ = [
    "CANDLE_CSV_COLUMNS",
    "CandleRun",
    "aggregate_ticks_file",
    "TS_MAX",
    "TS_MIN",
    "check_candle_rows",
    "check_candle_times",
    "gate_for_spacing",
    "format_ms",
    "write_candles_csv",
]

CANDLE_CSV_COLUMNS = (
    "symbol",
    "timeframe",
    "open_time",
    "open",
    "high",
    "low",
    "close",
    "tick_count",
    "volume",
    "spread_mean",
    "spread_min",
    "spread_max",
)


def format_ms(ms: int) -> str:
    """ISO-8601 UTC with millisecond precision only when needed (``2014-05-01T00:00:00Z``)."""
    dt = ms_to_datetime(ms)
    if ms % 1000:
        return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(slots=True)
class CandleRun:
    """Result of aggregating a tick file: candles, refused rows, counts by reason."""

    candles: list[Candle]
    rejects: list[FileReject] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    ticks_read: int = 0
    crossed_accepted: int = 0
    locked: int = 0


def _rows_of(frame: pd.DataFrame, symbol: str, instruments: InstrumentRegistry, path: str | Path) -> pd.DataFrame:
    """The rows of ``frame`` (read ticks) that name ``symbol`` (``EURUSD``, ``EUR/USD``,
    ``eur_usd``: as ``forexd train`` selects candles); a file without a symbol column names it
    on every row. A row naming none is kept, refused later and listed as without ``--symbol``
    (it is no other symbol's). ``DataFormatError`` naming the symbols the file holds when none
    does."""
    want = _pair(instruments, symbol) or symbol.upper()
    names = {n: _pair(instruments, n) if isinstance(n, str) else None for n in frame["symbol"].unique()}
    keep = frame["symbol"].map(names).eq(want).to_numpy()
    if keep.all():
        return frame
    if keep.any():  # a row naming no symbol is no other symbol's: kept, to be refused and listed
        keep = keep | frame["symbol"].fillna("").eq("").to_numpy(dtype=bool)
    else:
        held = sorted({str(c or n)[:24] for n, c in names.items() if isinstance(n, str) and n})
        blanks = any(not (isinstance(n, str) and n) for n in names)
        fix = f"write the ticks' pair ({want}) in that column, or remove the column (--symbol {want} then names every row)"
        if not held:
            raise DataFormatError(f"{path} holds no {want} ticks: its symbol column is blank on every row; {fix}")
        if not any(c or (len(n) == 6 and n.isascii() and n.isalpha()) for n, c in names.items() if isinstance(n, str)):
            # values no --symbol takes ("1"): "pass one of those" was no advice
            shown = ", ".join(repr(v) for v in held[:5]) + (f" and {len(held) - 5:,} more" if len(held) > 5 else "")
            shown += " and rows without a symbol" if blanks else ""
            raise DataFormatError(
                f"{path} holds no {want} ticks: its symbol column holds no symbol (it holds {shown}); {fix}"
            )
        shown = ", ".join(held[:10]) + (f" and {len(held) - 10} more" if len(held) > 10 else "")
        shown += " and rows without a symbol" if blanks else ""
        raise DataFormatError(f"{path} holds no {want} ticks (it holds {shown}): pass one of those to --symbol")
    return frame[keep].reset_index(drop=True)


def _refused_of(rejects: list[FileReject], symbol: str, instruments: InstrumentRegistry) -> list[FileReject]:
    """The rows the reader refused that name ``symbol`` (as :func:`_rows_of` selects), or no
    symbol it could read: ``forexd candles --symbol EURUSD`` counted GBPUSD's bad rows too."""
    want = _pair(instruments, symbol) or symbol.upper()
    names = {r.symbol: _pair(instruments, r.symbol) for r in rejects}
    return [r for r in rejects if not r.symbol.strip() or names[r.symbol] == want]


def _pair(instruments: InstrumentRegistry, name: str) -> str | None:
    """The canonical pair ``name`` spells (EURUSD, EUR/USD, eur_usd), or None."""
    return instruments.normalise(name) or instruments.normalise(name.upper())


def aggregate_ticks_file(
    path: str | Path,
    *,
    timeframes: Sequence[str] | str = ("1m",),
    price: PriceSide = "mid",
    symbol: str | None = None,
    allowed_lateness_ms: int = 2_000,
    validation: ValidationConfig | None = None,
    spikes: SpikeConfig | None = None,
    times: TimeJumpConfig | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> CandleRun:
    """Read, validate and aggregate a tick file with the tick agent's pipeline.

    A bad row never stops the run: it is refused with its reason (``rejects``), counted,
    and the rest is aggregated; a row the guards hold and then refuse (a price jump or a
    far-future time not confirmed) is refused once, with that reason. Candles are returned
    sorted by symbol, timeframe duration and open time. ``symbol`` names the rows of a file
    without a symbol column; of a file with one, only its rows are read (``DataFormatError``
    naming the symbols the file holds when it holds none).
    """
    instruments = InstrumentRegistry()
    if symbol is not None:
        instruments = instruments.with_symbol(symbol)
    loaded = read_ticks(path, symbol=symbol, instruments=instruments)
    frame = loaded.frame if symbol is None else _rows_of(loaded.frame, symbol, instruments, path)
    # a symbol named in the file is known to the offline commands
    for name in set(frame["symbol"].unique().tolist()):
        if instruments.normalise(name) is None and isinstance(name, str) and len(name) == 6 and name.isalpha():
            instruments = instruments.with_symbol(name)
    pipe = TickPipeline(
        timeframes=timeframes,
        instruments=instruments,
        price=price,
        allowed_lateness_ms=allowed_lateness_ms,
        validation=validation,
        spikes=spikes,
        times=times,
    )
    rejects = loaded.rejects if symbol is None else _refused_of(loaded.rejects, symbol, instruments)
    run = CandleRun(candles=[], rejects=list(rejects))
    run.counts.update(r.reason.value for r in rejects)
    out = run.candles
    process, take = pipe.process, pipe.take_quarantined
    normalise = instruments.normalise
    lines = frame["line"].tolist()
    n = len(lines)

    def refuse(line: int, reason: RejectReason, detail: str) -> None:
        run.counts[reason.value] += 1
        run.rejects.append(FileReject(line, reason, detail, ""))

    for i, (line, ts, sym, b, a, v) in enumerate(
        zip(
            lines,
            frame["ts_ms"].tolist(),
            frame["symbol"].tolist(),
            frame["bid"].tolist(),
            frame["ask"].tolist(),
            frame["volume"].tolist(),
            strict=True,
        )
    ):
        canon = normalise(sym) if isinstance(sym, str) else None
        if canon is None:
            refuse(int(line), RejectReason.UNKNOWN_SYMBOL, f"{sym} ts_ms={ts} bid={b!r} ask={a!r}")
        else:
            try:
                closed = process(Tick(symbol=canon, ts_ms=ts, bid=b, ask=a, volume=v), ref=int(line))
            except ValidationError as exc:
                refuse(int(line), exc.reason, f"{canon} ts_ms={ts} bid={b!r} ask={a!r} volume={v!r}")
            else:
                if closed:
                    out.extend(closed)
                for q in take():
                    refuse(q.ref, q.reason, f"{q.detail}: {q.symbol} ts_ms={q.tick.ts_ms} bid={q.tick.bid!r}")
        if progress is not None and i % 100_000 == 0:
            progress(i, n)
    out.extend(pipe.flush())
    for q in take():
        refuse(q.ref, q.reason, f"{q.detail}: {q.symbol} ts_ms={q.tick.ts_ms} bid={q.tick.bid!r}")
    run.ticks_read = n
    run.crossed_accepted = pipe.validator.counters.crossed_accepted
    run.locked = pipe.validator.counters.locked
    order = {t.name: t.duration_ms for t in pipe.aggregator.timeframes}
    out.sort(key=lambda c: (c.symbol, order[c.timeframe], c.open_ms))
    run.rejects.sort(key=lambda r: r.line)
    return run


#: A symbol as the wire's ``symbol`` field takes it (``forex_diffusion.wire``'s pattern).
_SYMBOL_IN = re.compile(r"[A-Za-z0-9/_.:-]{1,32}")


def _instrument(reg: InstrumentRegistry, name: object) -> Instrument | None:
    """The instrument of a symbol a file names: a known one, or any six ASCII letters (a
    symbol named in a file is known to the offline commands, as :func:`aggregate_ticks_file`
    has it); None for anything else (empty, control characters, another length)."""
    if not isinstance(name, str):
        return None
    canon = reg.normalise(name)
    if canon is None and len(name) == 6 and name.isascii() and name.isalpha():
        try:
            reg = reg.with_symbol(name)
        except ConfigError:
            return None
        canon = reg.normalise(name) or reg.normalise(name.upper())
    return reg.get(canon) if canon is not None else None


def check_candle_rows(
    frame: pd.DataFrame, *, instruments: InstrumentRegistry | None = None
) -> tuple[pd.DataFrame, list[FileReject]]:
    """Split a read candle frame into the rows the stream admits and those it refuses.

    The rules are :func:`forex_diffusion.wire.decode_candle`'s, which the candle agent runs on
    every ``fx.candles`` record, with its reasons and in its order: a symbol that is neither
    known nor six ASCII letters (``unknown_symbol``; the wire calls one it cannot even spell
    ``schema``), a price or volume that is
    not finite (``non_finite``), a price past :data:`~forex_diffusion.wire.PRICE_MAX` or a
    volume outside ``[0, CANDLE_VOLUME_MAX]`` (``out_of_range``), a price <= 0
    (``non_positive``), high and low that do not bound open and close (``inconsistent``,
    high < low too), prices outside the instrument's traded range widened by
    :data:`~forex_diffusion.ingest.validation.PRICE_RANGE_FACTOR` (``out_of_range``; a symbol
    the registry does not know has the default range, as ``InstrumentRegistry.with_symbol`` gives it).
    What needs a timeframe (the bar on its grid) is not checked: a file's bars need none.

    ``frame`` has :func:`~forex_diffusion.ingest.readers.read_candles`' columns (``line``,
    ``symbol``, ``open``, ``high``, ``low``, ``close``, ``volume``); the admitted rows keep
    their order and index is reset. Rejects are sorted by line.
    """
    # the wire's PRICE_MAX and CANDLE_VOLUME_MAX, read where they are defined: importing the wire
    # (scipy, river) made `forexd indicators` 0.8 s slower on any file
    PRICE_MAX, CANDLE_VOLUME_MAX = MAX_PRICE, MAX_CANDLE_VOLUME  # noqa: N806 - the wire's names
    n = len(frame)
    if not n:
        return frame, []
    reg = instruments or InstrumentRegistry()
    prices = {k: frame[k].to_numpy(dtype=float) for k in ("open", "high", "low", "close")}
    volume = frame["volume"].to_numpy(dtype=float) if "volume" in frame.columns else np.zeros(n)
    reason = np.full(n, "", dtype=object)

    def mark(cond: np.ndarray, why: RejectReason) -> None:
        reason[cond & (reason == "")] = why.value

    syms = frame["symbol"].to_numpy(dtype=object)
    codes, names = pd.factorize(frame["symbol"], use_na_sentinel=True)  # an empty cell: -1
    f = PRICE_RANGE_FACTOR
    floor, ceiling = np.full(len(names) + 1, np.nan), np.full(len(names) + 1, np.nan)  # [-1]: no symbol
    spelled = np.zeros(len(names) + 1, dtype=bool)
    for i, name in enumerate(names):
        spelled[i] = isinstance(name, str) and _SYMBOL_IN.fullmatch(name) is not None
        inst = _instrument(reg, name)
        if inst is not None:
            floor[i], ceiling[i] = inst.low / f, inst.high * f
    floor, ceiling, spelled = floor[codes], ceiling[codes], spelled[codes]
    unknown = np.isnan(floor)
    with np.errstate(invalid="ignore"):
        mark(~spelled, RejectReason.UNKNOWN_SYMBOL)  # the record's first field (its schema)
        for k in ("open", "high", "low", "close"):  # then the prices' and volume's schema
            x = prices[k]
            mark(~np.isfinite(x), RejectReason.NON_FINITE)
            mark(x > PRICE_MAX, RejectReason.OUT_OF_RANGE)
        mark(~np.isfinite(volume), RejectReason.NON_FINITE)
        mark((volume < 0.0) | (volume > CANDLE_VOLUME_MAX), RejectReason.OUT_OF_RANGE)
        mark(unknown, RejectReason.UNKNOWN_SYMBOL)  # then the symbol's instrument
        o, h, lo, c = prices["open"], prices["high"], prices["low"], prices["close"]
        mark(~(np.minimum.reduce([o, h, lo, c]) > 0), RejectReason.NON_POSITIVE)
        mark(~((lo <= np.minimum(o, c)) & (h >= np.maximum(o, c))), RejectReason.INCONSISTENT)
        mark(~unknown & ((lo < floor) | (h > ceiling)), RejectReason.OUT_OF_RANGE)
    bad = reason != ""
    if not bad.any():
        return frame, []
    lines = frame["line"].to_numpy()
    rejects = []
    for j in np.flatnonzero(bad):
        why = RejectReason(reason[j])
        detail = f"{syms[j]} open={float(o[j])!r} high={float(h[j])!r} low={float(lo[j])!r} close={float(c[j])!r}"
        if why is RejectReason.INCONSISTENT:
            detail = f"high/low do not bound open/close: {detail}"
        elif why is RejectReason.OUT_OF_RANGE and math.isfinite(volume[j]) and not 0 <= volume[j] <= CANDLE_VOLUME_MAX:
            detail = f"{detail} volume={float(volume[j])!r}"
        rejects.append(FileReject(int(lines[j]), why, detail, ""))
    rejects.sort(key=lambda r: r.line)
    return frame[~bad].reset_index(drop=True), rejects


#: The wire's ``TS_MIN`` and ``TS_MAX`` (an ``open_time``/``close_time`` outside is ``bad_ts``),
#: written here for the reason :func:`check_candle_rows` gives for the price bounds.
TS_MIN, TS_MAX = 0, 253_402_300_799_999


def gate_for_spacing(open_ms: np.ndarray) -> CandleGateConfig:
    """The candle gate for bars opening at ``open_ms``: the stream's
    (:class:`~forex_diffusion.ingest.candle_gate.CandleGateConfig`'s defaults), unless the bars'
    most common spacing is wider than a third of its ``max_ahead_ms`` (a week): then three such
    spacings (of the bars in 1971..2100: a 1969 row, refused, made a file's spacing its own). The stream's timeframes (a day at most) keep its gate; weekly or monthly bars,
    which no stream runs, are not all "far ahead" of the bar before them.

    >>> t0 = 1_600_000_000_000  # 2020-09-13
    >>> gate_for_spacing(t0 + np.arange(0, 10 * 60_000, 60_000)).max_ahead_ms == CandleGateConfig().max_ahead_ms
    True
    >>> gate_for_spacing(t0 + np.arange(0, 5 * 30 * 86_400_000, 30 * 86_400_000)).max_ahead_ms // 86_400_000
    90
    """
    default = CandleGateConfig()
    t = np.asarray(open_ms, dtype=np.int64)
    t = t[(t >= EPOCH_FIRST_MS) & (t < MAX_TS_MS)]  # a time no bar has (refused) spaces nothing
    gaps = np.diff(np.sort(t))
    gaps = gaps[gaps > 0]
    if not len(gaps):
        return default
    values, counts = np.unique(gaps, return_counts=True)
    spacing = int(values[np.argmax(counts)])
    if 3 * spacing <= default.max_ahead_ms:
        return default
    return CandleGateConfig(max_ahead_ms=3 * spacing, future_skew_ms=default.future_skew_ms, confirm=default.confirm)


def check_candle_times(
    frame: pd.DataFrame,
    *,
    duration_ms: int = 0,
    now_ms: int | None = None,
    gate: CandleGateConfig | None = None,
    spikes: SpikeConfig | None = None,
) -> tuple[pd.DataFrame, list[FileReject]]:
    """Split candles into those the candle agent hands to their series and those it refuses
    for their time or a price jump, in the agent's order, each symbol a series of its own:

    - an open or close time outside the wire's :data:`TS_MIN`..:data:`TS_MAX` (``bad_ts``,
      :func:`forex_diffusion.wire.decode_candle`);
    - a close past the wall clock ``now_ms`` (a final bar cannot have closed in the future), or
      an open more than the gate's ``max_ahead_ms`` past the series' last candle and not yet
      confirmed by the candles after it (``future_ts``, :class:`~forex_diffusion.ingest.candle_gate.CandleGate`);
    - an open time the series already took (``duplicate``) or before its last candle's
      (``late``): the stream's forecaster ignores such a candle as a redelivery, and the
      indicator bank would repeat its previous values for it;
    - a close that jumps far from the series' last accepted one and is not confirmed by the
      next candle(s) (``spike_unconfirmed``: the agent's
      :class:`~forex_diffusion.ingest.candle_spikes.CandleSpikeGuard`, ``spikes`` its settings,
      default :data:`~forex_diffusion.ingest.candle_spikes.CANDLE_SPIKES`). A confirmed jump
      is kept in its place (the stream releases it, in order, with the bar that confirms it);
      one still held at the end of the file is refused, as the stream would still hold it.

    ``frame`` holds :func:`check_candle_rows`' admitted rows in file order (columns ``line``,
    ``ts_ms``, ``symbol``, ``open``…``close``); ``duration_ms`` is the bars' timeframe (close =
    open + duration; 0 when unknown: the close is taken as the open). Admitted rows keep their
    order, index reset; rejects are sorted by line.

    >>> f = pd.DataFrame({"line": [2, 3, 4, 5], "ts_ms": [120_000_000, 60_000_000, 120_000_000, 180_000_000],
    ...                   "symbol": ["EURUSD"] * 4, "close": [1.1] * 4})
    >>> kept, refused = check_candle_times(f, duration_ms=60_000)
    >>> kept["line"].tolist(), [(r.line, r.reason.value) for r in refused]
    ([2, 5], [(3, 'late'), (4, 'duplicate')])
    """
    n = len(frame)
    if not n:
        return frame, []
    gates, guard = CandleGate(gate), CandleSpikeGuard(spikes)
    admit = np.ones(n, dtype=bool)
    rejects: list[FileReject] = []
    last: dict[str, int] = {}
    taken: dict[str, set[int]] = {}
    close = frame["close"].tolist() if "close" in frame.columns else [math.nan] * n
    rows = zip(frame["line"].tolist(), frame["ts_ms"].tolist(), frame["symbol"].tolist(), close, strict=True)
    for i, (line, ts, sym, c) in enumerate(rows):
        ts = int(ts)
        end = ts + duration_ms
        key = str(sym)
        reason: RejectReason | None = None
        if not (TS_MIN <= ts and end <= TS_MAX):
            reason, detail = RejectReason.BAD_TS, f"{sym} open_time={ts} is outside {TS_MIN}..{TS_MAX} (epoch ms)"
        else:
            prev = last.get(key)
            bar = Candle(symbol=key, timeframe="", open_ms=ts, close_ms=end, open=c, high=c, low=c, close=c)
            reason = gates.check(bar, watermark_ms=prev, now_ms=now_ms)
            if reason is not None:
                was = "none" if prev is None else format_ms(prev)
                detail = f"{sym} open_time={format_ms(ts)} ahead of the series (last open {was}) or the clock"
            elif prev is not None and ts <= prev:
                reason = RejectReason.DUPLICATE if ts in taken[key] else RejectReason.LATE
                what = "again" if reason is RejectReason.DUPLICATE else "back in time"
                detail = f"{sym} open_time={format_ms(ts)} {what} (the series' last open {format_ms(prev)})"
            else:
                last[key] = ts
                taken.setdefault(key, set()).add(ts)
                if math.isfinite(c) and c > 0:  # a frame without closes has no price to guard
                    guard.admit(bar, i)
        if reason is not None:
            admit[i] = False
            rejects.append(FileReject(int(line), reason, detail, ""))
        _refuse_jumps(frame, guard.take_quarantined(), admit, rejects)
    _refuse_jumps(frame, guard.flush(), admit, rejects)
    if admit.all():
        return frame, []
    rejects.sort(key=lambda r: r.line)
    return frame[admit].reset_index(drop=True), rejects


def _refuse_jumps(frame: pd.DataFrame, held: list[QuarantinedCandle], admit: np.ndarray, out: list[FileReject]) -> None:
    """Refuse the rows (``ref``: their position in ``frame``) of the candles the guard quarantined."""
    for q in held:
        i, c = q.ref, q.candle
        admit[i] = False
        detail = f"{c.symbol} open_time={format_ms(c.open_ms)} close={c.close!r}: {q.detail}"
        out.append(FileReject(int(frame["line"].iat[i]), q.reason, detail, ""))


def candle_csv_row(c: Candle, decimals: tuple[int, int] | None = None) -> list[object]:
    """One CSV row in :data:`CANDLE_CSV_COLUMNS` order: floats in shortest round-trip form, or
    with ``decimals`` = (prices, spreads) rounded to those decimals (spread mean: 2 more)."""
    if decimals is None:
        return [
            c.symbol,
            c.timeframe,
            format_ms(c.open_ms),
            repr(c.open),
            repr(c.high),
            repr(c.low),
            repr(c.close),
            c.tick_count,
            repr(c.volume),
            "" if c.spread_mean is None else repr(c.spread_mean),
            "" if c.spread_min is None else repr(c.spread_min),
            "" if c.spread_max is None else repr(c.spread_max),
        ]
    d, ds = decimals
    return [
        c.symbol,
        c.timeframe,
        format_ms(c.open_ms),
        price_text(c.open, d),
        price_text(c.high, d),
        price_text(c.low, d),
        price_text(c.close, d),
        c.tick_count,
        repr(c.volume),
        price_text(c.spread_mean, ds + 2),
        price_text(c.spread_min, ds),
        price_text(c.spread_max, ds),
    ]


def write_candles_csv(candles: Iterable[Candle], out: IO[str], *, price: str | None = None) -> int:
    """Write candles as CSV with a header; return the number of rows.

    With ``price`` (the side the candles were built from: ``mid``, ``bid``, ``ask``), prices
    and spreads are written at the instrument's precision (:mod:`~forex_diffusion.precision`,
    no ``1.3868299999999998``); without it, as exact shortest round-trip floats.
    """
    w = csv.writer(out, lineterminator="\n")
    w.writerow(CANDLE_CSV_COLUMNS)
    n = 0
    cache: dict[str, tuple[int, int]] = {}
    for c in candles:
        decimals = None
        if price is not None:
            if c.symbol not in cache:
                cache[c.symbol] = (price_decimals(c.symbol, price), price_decimals(c.symbol, "mid"))
            decimals = cache[c.symbol]
        w.writerow(candle_csv_row(c, decimals))
        n += 1
    return n
