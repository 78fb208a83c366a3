"""Offline pipelines over files, running the same core code as the agents.

:func:`aggregate_ticks_file` (``forexd candles``) runs the tick agent's
:class:`~forex_diffusion.ingest.pipeline.TickPipeline` row by row: the same validator, event-time
jump guard, price spike guard and aggregator, so a file gives the candles a replay of it
into a worker gives, and a row either reaches the candles or is refused with its reason.
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from forex_diffusion.domain import Candle, PriceSide, Tick
from forex_diffusion.errors import RejectReason, ValidationError
from forex_diffusion.ingest.pipeline import TickPipeline
from forex_diffusion.ingest.readers import FileReject, read_ticks
from forex_diffusion.ingest.spikes import SpikeConfig
from forex_diffusion.ingest.time_jumps import TimeJumpConfig
from forex_diffusion.ingest.validation import ValidationConfig
from forex_diffusion.instruments import InstrumentRegistry
from forex_diffusion.precision import price_decimals, price_text
from forex_diffusion.timeframes import ms_to_datetime

__all__ = ["CANDLE_CSV_COLUMNS", "CandleRun", "aggregate_ticks_file", "format_ms", "write_candles_csv"]

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
    sorted by symbol, timeframe duration and open time.
    """
    instruments = InstrumentRegistry()
    if symbol is not None:
        instruments = instruments.with_symbol(symbol)
    loaded = read_ticks(path, symbol=symbol, instruments=instruments)
    frame = loaded.frame
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
    run = CandleRun(candles=[], rejects=list(loaded.rejects))
    run.counts.update(r.reason.value for r in loaded.rejects)
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
