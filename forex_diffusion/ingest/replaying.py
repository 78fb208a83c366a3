"""Turn files into topic records in event-time order, paced against the wall clock."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from forex_diffusion.ingest.readers import FileReject, columns, read_candles, read_ticks, sniff_kind
from forex_diffusion.timeframes import Timeframe
from forex_diffusion.wire import encode_unchecked

__all__ = ["ReplayRecord", "records_from_file"]

ReplayRecord = tuple[str, int, bytes]  # (key symbol, event ts_ms, value)


def records_from_file(
    path: str | Path,
    *,
    symbol: str | None = None,
    timeframe: str | None = None,
    kind: str | None = None,
    price: str = "mid",
    tick_ids: bool = False,
    rejects: list[FileReject] | None = None,
) -> tuple[str, int, Iterator[ReplayRecord]]:
    """Return ``(kind, count, records)`` for a tick or candle file.

    Ticks become ``fx.ticks`` values (with ``tick_id = "<file>:<line>"`` when ``tick_ids``);
    candles become ``fx.candles`` values of ``timeframe`` (required for candle files).
    Rows the reader cannot parse are not published: they are appended to ``rejects`` when
    given (the same rows, reasons and lines ``forexd candles --rejects`` lists).
    """
    kind = kind or sniff_kind(path)
    stem = Path(path).name.split(".")[0]
    if kind == "ticks":
        loaded = read_ticks(path, symbol=symbol)
        frame = loaded.frame
        if rejects is not None:
            rejects.extend(loaded.rejects)

        def gen_ticks() -> Iterator[ReplayRecord]:
            for line, ts, sym, b, a, v in columns(frame, "line", "ts_ms", "symbol", "bid", "ask", "volume"):
                obj: dict[str, object] = {"symbol": sym, "ts": ts, "bid": b, "ask": a}
                if v:
                    obj["volume"] = v
                if tick_ids:
                    obj["tick_id"] = f"{stem}:{line}"
                yield sym, ts, encode_unchecked("ticks", obj)

        return kind, len(frame), gen_ticks()
    if timeframe is None:
        raise ValueError("candle files need a timeframe (--timeframe)")
    tf = Timeframe.parse(timeframe)
    loaded_candles = read_candles(path, symbol=symbol, price=price)  # type: ignore[arg-type]
    frame = loaded_candles.frame
    if rejects is not None:
        rejects.extend(loaded_candles.rejects)

    def gen_candles() -> Iterator[ReplayRecord]:
        for ts, sym, o, h, lo, c, v in columns(frame, "ts_ms", "symbol", "open", "high", "low", "close", "volume"):
            obj = {
                "symbol": sym,
                "timeframe": tf.name,
                "open_time": ts,
                "close_time": tf.end_of(ts),
                "open": o,
                "high": h,
                "low": lo,
                "close": c,
                "volume": v,
                "tick_count": 0,
                "final": True,
                "revision": 0,
            }
            # event time of a candle is its close
            yield sym, tf.end_of(ts), encode_unchecked("candles", obj)

    return kind, len(frame), gen_candles()
