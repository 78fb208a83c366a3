"""Core aggregator throughput: ticks/s for 1m+5m+1h at once over the FXCM EUR/USD day files.

Peers measured in the same process on the same ticks:
- ``TickPipeline`` (validate + spike guard + aggregate: what the agent runs per tick), and
  the same with the spike guard off (its cost is the difference);
- pandas ``resample().ohlc()`` per timeframe (a batch computation, not streaming: the
  number a researcher gets from a DataFrame, shown for scale).

Run: ``.venv/bin/python bench/bench_aggregator.py [FILE]`` (one core; best of 3).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd

from forex_diffusion.bundled import SAMPLE_TICKS
from forex_diffusion.domain import Tick
from forex_diffusion.errors import DataFormatError
from forex_diffusion.ingest.aggregation import CandleAggregator
from forex_diffusion.ingest.pipeline import TickPipeline
from forex_diffusion.ingest.readers import read_ticks
from forex_diffusion.ingest.spikes import SpikeConfig
from forex_diffusion.instruments import InstrumentRegistry

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ROOT / "tests" / "data" / "lean" / "lean_fxcm_eurusd_ticks_2014-05-01_15.csv.gz"
SAMPLE = SAMPLE_TICKS
TFS = ["1m", "5m", "1h"]


def best(fn, repeat: int = 3) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        description=(
            "Core aggregator throughput: ticks/s and ns/tick building 1m+5m+1h candles at once from one "
            "EUR/USD tick file, beside the tick pipeline (validate + spike guard + aggregate), the pipeline "
            "with the spike guard off, and pandas resample().ohlc() per timeframe (a batch peer). "
            "One core, best of 3."
        ),
        epilog=(
            "Prints 'ratio core/pandas-batch': pandas time / core time (above 1: the streaming core is "
            "faster than the batch peer), and whether the core meets its 200,000 ticks/s target."
        ),
    )
    ap.add_argument(
        "file",
        nargs="?",
        type=Path,
        default=None,
        metavar="FILE",
        help=f"EUR/USD tick file (default: {DEFAULT.relative_to(ROOT)}, or the bundled sample without it)",
    )
    return ap


def main() -> None:
    ap = build_parser()
    args = ap.parse_args()
    if args.file is not None and not args.file.is_file():
        ap.error(f"{args.file}: {'not a file' if args.file.exists() else 'no such file'}")
    path = args.file if args.file is not None else (DEFAULT if DEFAULT.exists() else SAMPLE)
    try:
        frame = read_ticks(path, symbol="EURUSD").frame
    except DataFormatError as exc:
        ap.error(f"not a tick file: {exc}")
    ts, bid, ask = frame.ts_ms.tolist(), frame.bid.tolist(), frame.ask.tolist()
    n = len(ts)

    def core() -> None:
        agg = CandleAggregator(TFS)
        add = agg.add
        for i in range(n):
            add("EURUSD", ts[i], bid[i], ask[i])
        agg.flush()

    ticks = [Tick(symbol="EURUSD", ts_ms=t, bid=b, ask=a) for t, b, a in zip(ts, bid, ask, strict=True)]

    def pipeline(spikes: SpikeConfig | None = None) -> None:
        p = TickPipeline(timeframes=TFS, instruments=InstrumentRegistry(), spikes=spikes)
        proc = p.process
        for t in ticks:
            proc(t)
        p.flush()

    def pipeline_no_guard() -> None:
        pipeline(SpikeConfig(enabled=False))

    def pandas_batch() -> None:
        s = pd.Series(
            (frame.bid.to_numpy() + frame.ask.to_numpy()) / 2, index=pd.to_datetime(frame.ts_ms, unit="ms", utc=True)
        )
        for tf in ("1min", "5min", "1h"):
            s.resample(tf).ohlc().dropna()

    t_core, t_pipe, t_pd = best(core), best(pipeline), best(pandas_batch)
    t_nog = best(pipeline_no_guard)
    print(f"file: {path.name}  ticks: {n:,}  timeframes: {','.join(TFS)}")
    print(f"{'aggregator (core)':32s} {n / t_core:12,.0f} ticks/s  {t_core / n * 1e9:8.0f} ns/tick")
    print(f"{'validate+guard+aggregate (pipeline)':32s} {n / t_pipe:12,.0f} ticks/s  {t_pipe / n * 1e9:8.0f} ns/tick")
    print(f"{'pipeline, spike guard off':32s} {n / t_nog:12,.0f} ticks/s  {t_nog / n * 1e9:8.0f} ns/tick")
    print(f"{'pandas resample (batch peer)':32s} {n / t_pd:12,.0f} ticks/s  {t_pd / n * 1e9:8.0f} ns/tick")
    print(
        f"ratio core/pandas-batch: {t_pd / t_core:.2f}   target core >= 200,000 ticks/s: "
        f"{'met' if n / t_core >= 200_000 else 'NOT met'}"
    )


if __name__ == "__main__":
    main()
