"""Checkpoint cost (issue 15): bytes written per second and event-loop seconds per checkpoint,
full rewrite (before) against per-series parts (after), in the same process on the same state.

Two consumers, each holding 12 series on one partition (the 12 default instruments):

- ticks: a tick pipeline, each series fed the same FXCM EUR/USD ticks scaled into its own
  price range (1m/5m/1h bars, tick ids, guards); then EUR/USD ticks only;
- candles: a candle consumer's forecasters (features, learners, drift detectors, history),
  each fed the bundled EUR/USD 1m/5m candles under its name; then EUR/USD candles only
  (its state is the large one: the issue's 1.4 MB partition);

and one checkpoint per simulated second:

- before: ``PartitionProgress`` without ``series`` -- every checkpoint snapshots the
  partition's 12 series and rewrites its one row (what every checkpoint did before);
- after: ``PartitionProgress(series=...)`` -- the tick agent marks the series each tick
  changed, a checkpoint snapshots and writes only that one (a ``snapshot_parts`` row).

Both write to a SQLite file through ``save_progress`` (``FOREXD_BENCH_DB``: another
database URL, e.g. PostgreSQL). Bytes are the JSON state written (row or parts); event-loop
seconds are ``capture()`` (the snapshot, taken on the event loop); ``persist`` runs the
transaction in an executor. Acceptance: after <= 1/6 of before, in bytes.

Run: ``.venv/bin/python bench/bench_checkpoint.py [SECONDS] [TICKS_PER_SECOND]``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from _cli import optional_count  # bench/ is first on sys.path when a script runs
from faust.types import TP

from forex_diffusion.bundled import SAMPLE_TICKS
from forex_diffusion.domain import Candle, Tick
from forex_diffusion.errors import ValidationError
from forex_diffusion.forecast.forecaster import ForecasterConfig, SymbolForecaster
from forex_diffusion.forecast.warm_start import stream_key
from forex_diffusion.ingest.pipeline import TickPipeline
from forex_diffusion.ingest.readers import read_ticks
from forex_diffusion.instruments import DEFAULT_INSTRUMENTS, InstrumentRegistry
from forex_diffusion.offline import aggregate_ticks_file
from forex_diffusion.storage import make_engine
from streams.progress import PartitionProgress

ROOT = Path(__file__).resolve().parents[1]
TICKS = ROOT / "tests" / "data" / "lean" / "lean_fxcm_eurusd_ticks_2014-05-01_15.csv.gz"
SYMBOLS = [i.symbol for i in DEFAULT_INSTRUMENTS]
WARM = 20_000  # ticks per series before the checkpoints start (about 3 hours of EUR/USD)
WARM_CANDLES = 1_200  # candles per series before the checkpoints start (1m and 5m)


def _scaled(reg: InstrumentRegistry, sym: str, ts: list[int], bid: list[float], ask: list[float]) -> list[Tick]:
    inst = reg.get(sym)
    assert inst is not None
    k = (inst.low * inst.high) ** 0.5 / 1.38  # EUR/USD traded near 1.38 that day
    return [
        Tick(symbol=sym, ts_ms=t, bid=round(b * k, inst.decimals), ask=round(a * k, inst.decimals))
        for t, b, a in zip(ts, bid, ask, strict=True)
    ]


class Ticks:
    """A tick consumer's partition 0: the pipeline and the series it holds."""

    def __init__(self, reg: InstrumentRegistry) -> None:
        self.pipeline = TickPipeline(timeframes=["1m", "5m", "1h"], instruments=reg)
        self.symbols: set[str] = set()
        self.written = 0  # JSON bytes of state written

    def feed(self, ticks: Iterable[Tick], pp: PartitionProgress | None, offset: int) -> int:
        for t in ticks:
            try:
                self.pipeline.process(t, ref=[0, offset])
            except ValidationError:
                pass
            self.symbols.add(t.symbol)
            if pp is not None:
                pp.mark(0, offset, series=t.symbol)
            offset += 1
        self.pipeline.take_quarantined()
        return offset

    def whole(self, p: int) -> dict[str, Any]:
        return self.pipeline.snapshot(sorted(self.symbols))

    def parts(self, p: int, series: Iterable[str]) -> dict[str, Any]:
        return {s: self.pipeline.snapshot([s]) for s in series if s in self.symbols}


class Forecasters:
    """A candle consumer's partition 0: one forecaster per series (what the candle agent snapshots)."""

    CFG = ForecasterConfig(timeframes=("1m", "5m"), forecast_timeframes=("1m", "5m"), horizon=24)

    def __init__(self, _reg: InstrumentRegistry) -> None:
        self.forecasters: dict[str, SymbolForecaster] = {}
        self.symbols: set[str] = set()

    def feed(self, candles: Iterable[Candle], pp: PartitionProgress | None, offset: int) -> int:
        for c in candles:
            f = self.forecasters.get(c.symbol)
            if f is None:
                f = self.forecasters[c.symbol] = SymbolForecaster(c.symbol, self.CFG)
            f.on_candle(c)
            self.symbols.add(c.symbol)
            if pp is not None:
                pp.mark(0, offset, series=c.symbol)
            offset += 1
        return offset

    def whole(self, p: int) -> dict[str, Any]:
        return {"symbols": {s: self.forecasters[s].snapshot() for s in sorted(self.symbols)}}

    def parts(self, p: int, series: Iterable[str]) -> dict[str, Any]:
        return {s: {"symbols": {s: self.forecasters[s].snapshot()}} for s in series if s in self.symbols}


def run(
    url: str, *, kind: type, incremental: bool, warm: dict[str, list[Any]], live: list[Any], seconds: int
) -> dict[str, float]:
    reg = InstrumentRegistry.of(SYMBOLS)
    c = kind(reg)
    engine = make_engine(url)
    pp = PartitionProgress(
        consumer=f"bench:{'after' if incremental else 'before'}",
        topic="fx.ticks",
        engine=engine,
        snapshot=c.parts if incremental else c.whole,
        restore=lambda p, s: None,
        drop=lambda p: None,
        series=(lambda p: sorted(c.symbols)) if incremental else None,
    )
    per = len(live) // seconds
    loop_s: list[float] = []
    written = 0

    async def go() -> None:
        nonlocal written
        await pp.on_assigned(None, [TP("fx.ticks", 0)])  # claims the partition (its epoch)
        offset = 0
        for sym in SYMBOLS:
            offset = c.feed(warm[sym], pp, offset)
        await pp.persist(pp.capture())  # the state every series built up: not measured
        for i in range(seconds):
            offset = c.feed(live[i * per : (i + 1) * per], pp, offset)
            t0 = time.perf_counter()
            captured = pp.capture()  # on the event loop: the agent's checkpoint stops processing here
            loop_s.append(time.perf_counter() - t0)
            for _off, state in captured.values():
                parts = getattr(state, "parts", None)
                payloads = [state] if parts is None else list(parts.values())
                written += sum(len(json.dumps(v, separators=(",", ":"))) for v in payloads)
            await pp.persist(captured)

    t0 = time.perf_counter()
    asyncio.run(go())
    wall = time.perf_counter() - t0
    engine.dispose()
    return {"bytes_per_s": written / seconds, "loop_s": sum(loop_s) / len(loop_s), "wall_s": wall}


def _candles() -> tuple[dict[str, list[Candle]], list[Candle]]:
    """Each series' history (the first candles under its name), and EUR/USD's next ones."""
    candles = sorted(aggregate_ticks_file(SAMPLE_TICKS, timeframes=["1m", "5m"]).candles, key=stream_key)
    warm = {s: [dataclasses.replace(c, symbol=s) for c in candles[:WARM_CANDLES]] for s in SYMBOLS}
    return warm, candles[WARM_CANDLES:]


def report(title: str, before: dict[str, float], after: dict[str, float]) -> float:
    print(title)
    print(f"{'':28}{'before (full)':>16}{'after (parts)':>16}{'after/before':>14}")
    for key, label, fmt in (
        ("bytes_per_s", "state bytes written / s", "{:>16,.0f}"),
        ("loop_s", "event-loop s / checkpoint", "{:>16.5f}"),
        ("wall_s", "whole run, s", "{:>16.2f}"),
    ):
        ratio = after[key] / before[key] if before[key] else float("nan")
        print(f"{label:28}" + fmt.format(before[key]) + fmt.format(after[key]) + f"{ratio:>14.3f}")
    return after["bytes_per_s"] / before["bytes_per_s"]


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        description=(
            "Checkpoint cost: JSON state bytes written per second and event-loop seconds per checkpoint, "
            "full rewrite (before) against per-series parts (after), for a tick consumer and a candle "
            "consumer each holding 12 series on one partition, one checkpoint per simulated second. "
            "Writes to a temporary SQLite file, or to the database URL in FOREXD_BENCH_DB."
        ),
        epilog=(
            "Prints after/before per measure and consumer, then the acceptance: the worst bytes ratio "
            "after/before of both consumers <= 1/6 (PASS or FAIL)."
        ),
    )
    optional_count(
        ap, "seconds", default=30, metavar="SECONDS", help="simulated seconds, one checkpoint each (default: 30)"
    )
    optional_count(
        ap,
        "per_second",
        default=20,
        metavar="TICKS_PER_SECOND",
        help="EUR/USD ticks fed to the tick consumer per second (default: 20)",
    )
    return ap


def main() -> None:
    ap = build_parser()
    opts = ap.parse_args()
    if not TICKS.is_file():
        ap.error(f"{TICKS}: no such file (the FXCM EUR/USD tick file the benchmark reads)")
    seconds, per_second = opts.seconds, opts.per_second
    frame = read_ticks(TICKS, symbol="EURUSD").frame
    ts, bid, ask = frame.ts_ms.tolist(), frame.bid.tolist(), frame.ask.tolist()
    reg = InstrumentRegistry.of(SYMBOLS)
    warm = {s: _scaled(reg, s, ts[:WARM], bid[:WARM], ask[:WARM]) for s in SYMBOLS}
    n = seconds * per_second
    live = _scaled(reg, "EURUSD", ts[WARM : WARM + n], bid[WARM : WARM + n], ask[WARM : WARM + n])
    warm_c, live_c = _candles()
    base = os.environ.get("FOREXD_BENCH_DB")
    where = "FOREXD_BENCH_DB" if base else "SQLite"
    ratios = []
    scenarios: list[tuple[type, dict[str, list[Any]], list[Any], str]] = [
        (Ticks, warm, live, f"ticks ({per_second}/s)"),
        (Forecasters, warm_c, live_c[:seconds], "candles (1/s)"),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for kind, w, lv, what in scenarios:
            args: dict[str, Any] = {"kind": kind, "warm": w, "live": lv, "seconds": seconds}
            before = run(base or f"sqlite:///{tmp}/{kind.__name__}-before.db", incremental=False, **args)
            after = run(base or f"sqlite:///{tmp}/{kind.__name__}-after.db", incremental=True, **args)
            title = f"{kind.__name__}: 12 series on a partition, {what} for 1, {seconds} checkpoints (one a second), {where}"
            ratios.append(report(title, before, after))
    worst = max(ratios)
    verdict = "PASS" if worst <= 1 / 6 else "FAIL"
    print(f"acceptance (bytes after <= 1/6 of before, both consumers): {verdict} ({worst:.3f} <= {1 / 6:.3f})")


if __name__ == "__main__":
    main()
