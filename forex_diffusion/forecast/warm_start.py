"""Warm start: rebuild a series that has no checkpointed state from the stored candles.

A worker that takes over a series without state for it (a new symbol on the partition, a
model timeframe added to ``FOREXD_MODELS``, a series whose model horizon changed) would
otherwise wait ``window`` candles -- and the indicator banks ~250 -- before its first
forecast, although the database holds the history. :func:`stored_history` reads the last
``per_timeframe`` closed candles of each timeframe that come before the first new candle
in stream order, and :func:`warm_start` replays them through
:meth:`~forex_diffusion.forecast.forecaster.SymbolForecaster.warm`: the series end in the state
they would have had seeing those candles live, so the first new candle is forecast.

A checkpoint restore stays the primary path: only :attr:`SymbolForecaster.cold` series
(no restored state) are warmed.

A stored row that is not a candle the stream could have written (NaN, zero or text prices,
high below low, prices outside the instrument's range, a time off the timeframe's grid, a
count past the wire's: :func:`~forex_diffusion.storage.fetch_candles`)
is never replayed: it is skipped and counted by reason (``skipped``), and the series is
warmed from the others.
"""

from __future__ import annotations

from collections import Counter

from sqlalchemy import Engine

from forex_diffusion.domain import Candle
from forex_diffusion.forecast.forecaster import SymbolForecaster
from forex_diffusion.instruments import InstrumentRegistry
from forex_diffusion.storage.repository import fetch_candles
from forex_diffusion.timeframes import Timeframe

__all__ = ["stream_key", "stored_history", "warm_start"]


def stream_key(candle: Candle) -> tuple[int, int]:
    """Position of a candle in the stream of its symbol: close time, then the shorter
    timeframe first (the order :class:`~forex_diffusion.ingest.aggregation.CandleAggregator`
    emits)."""
    return candle.close_ms, Timeframe.parse(candle.timeframe).duration_ms


def stored_history(
    engine: Engine,
    symbol: str,
    timeframes: tuple[str, ...],
    *,
    before: Candle,
    per_timeframe: int,
    skipped: Counter[str] | None = None,
    instruments: InstrumentRegistry | None = None,
) -> list[Candle]:
    """The stored closed candles of ``symbol`` that come before ``before`` in stream order,
    at most the last ``per_timeframe`` of each of ``timeframes``, in stream order; the rows
    skipped as no candle (prices judged by ``instruments``, default the built-in registry)
    are counted by reason in ``skipped``."""
    if per_timeframe <= 0:
        return []
    first = stream_key(before)
    out: list[Candle] = []
    for tf in timeframes:
        dur = Timeframe.parse(tf).duration_ms
        # candles closing up to ``before``'s close (one more: the one closing with it, of a
        # timeframe after it in stream order, is filtered out below)
        rows = fetch_candles(
            engine,
            symbol,
            tf,
            end_ms=before.close_ms - dur + 1,
            limit=per_timeframe + 1,
            checked=True,
            skipped=skipped,
            instruments=instruments,
        )
        kept = [c for c in rows if stream_key(c) < first]
        out.extend(kept[-per_timeframe:])
    out.sort(key=stream_key)
    return out


def warm_start(
    forecaster: SymbolForecaster,
    engine: Engine,
    *,
    before: Candle,
    per_timeframe: int,
    skipped: Counter[str] | None = None,
    instruments: InstrumentRegistry | None = None,
) -> int:
    """Warm ``forecaster``'s cold series from the stored candles before ``before``; return
    how many candles were replayed (0: nothing cold, or nothing stored). Stored rows that are
    no candle are skipped, counted by reason in ``skipped``."""
    if not forecaster.cold:
        return 0
    if per_timeframe <= 0:
        forecaster.cold = set()
        return 0
    history = stored_history(
        engine,
        forecaster.symbol,
        forecaster.config.timeframes,
        before=before,
        per_timeframe=per_timeframe,
        skipped=skipped,
        instruments=instruments,
    )
    return forecaster.warm(history)
