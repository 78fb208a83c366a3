"""Broker round-trip throughput on the embedded broker, measured in one run:

1. raw aiokafka ``getmany`` + ``json.loads`` (the ceiling);
2. a bare Faust agent that only counts the messages (the peer);
3. the project's tick agent (decode → validate → aggregate → publish/store candles), with
   its metrics recorded as ``forexd worker`` records them (not served).

Each Faust run is a fresh worker process reading the same pre-published topic; the clock
runs from its first event to its N-th (the tick agent: to the end of the checkpoint after
its N-th), so group joining is not counted. Issue 15's target: the tick agent at least as
fast as the bare Faust agent (it takes each fetch's ticks in bulk: streams/broker_facts.py).
Run: ``.venv/bin/python bench/bench_broker.py [N]`` (default 100,000 ticks of the sample).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _cli import optional_count  # bench/ is first on sys.path when a script runs

from forex_diffusion.bundled import SAMPLE_TICKS

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SAMPLE = SAMPLE_TICKS


def _settings(bootstrap: str, prefix: str, data_dir: str, app_id: str):  # type: ignore[no-untyped-def]
    from streams.settings import Settings

    return Settings(
        broker_url=f"kafka://{bootstrap}",
        topic_prefix=prefix,
        app_id=app_id,
        data_dir=Path(data_dir),
        partitions=1,
        symbols=("EURUSD",),
        timeframes=("1m", "5m", "1h"),
        forecast_timeframes=("1m",),
        metrics_port=-1,
    )


def child(mode: str, bootstrap: str, prefix: str, n: int, data_dir: str) -> None:
    """Run one Faust worker that reports first→N-th event time, then exits."""
    import faust

    from streams.app import create_app

    settings = _settings(bootstrap, prefix, data_dir, f"bench-{mode}-{os.getpid()}")
    state = {"n": 0, "t0": 0.0}
    if mode == "count":
        app = faust.App(
            settings.app_id,
            broker=settings.broker_url,
            store="memory://",
            autodiscover=False,
            datadir=str(Path(data_dir) / "faust-count"),  # not ./<app id>-data in the working directory
            value_serializer="raw",
            key_serializer="raw",
            web_enabled=False,
            consumer_auto_offset_reset="earliest",
            broker_rebalance_timeout=5,
            broker_session_timeout=6,
            broker_heartbeat_interval=1,
        )
        topic = app.topic(settings.topic("ticks"), value_type=bytes, key_type=bytes)

        @app.agent(topic)
        async def count(stream):  # type: ignore[no-untyped-def]
            async for _ in stream:
                if state["n"] == 0:
                    state["t0"] = time.perf_counter()
                state["n"] += 1
                if state["n"] >= n:
                    print(json.dumps({"mode": mode, "n": n, "seconds": time.perf_counter() - state["t0"]}), flush=True)
                    os._exit(0)
    else:
        from streams.metrics import Metrics

        topics = [settings.topic(t) for t in ("ticks", "candles", "forecasts", "drift", "retrain.requests", "models")]
        metrics = Metrics(
            settings.symbols, timeframes=settings.timeframes, partitions=settings.partitions, topics=topics
        )
        rt = create_app(settings, roles=("ticks",), metrics=metrics)
        app = rt.app
        from streams.agents import ticks as ticks_mod

        orig = ticks_mod.TickAgent.handle_batch

        async def handle_batch(self, msgs):  # type: ignore[no-untyped-def]
            if state["n"] == 0:
                state["t0"] = time.perf_counter()
            await orig(self, msgs)
            state["n"] += len(msgs)
            if state["n"] >= n:
                await self.consumer.flush()
                if os.environ.get("BENCH_PROFILE"):
                    prof.disable()
                    prof.dump_stats(os.environ["BENCH_PROFILE"])
                print(json.dumps({"mode": mode, "n": n, "seconds": time.perf_counter() - state["t0"]}), flush=True)
                os._exit(0)

        ticks_mod.TickAgent.handle_batch = handle_batch  # type: ignore[method-assign]
        if os.environ.get("BENCH_PROFILE"):
            import cProfile

            prof = cProfile.Profile()
            prof.enable()
    worker = faust.Worker(app, loglevel="WARNING", redirect_stdouts=False)
    worker.execute_from_commandline()


async def raw_consume(bootstrap: str, topic: str, n: int) -> float:
    from aiokafka import AIOKafkaConsumer

    c = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False)
    await c.start()
    got, t0 = 0, 0.0
    try:
        while got < n:
            batch = await c.getmany(timeout_ms=1000, max_records=10_000)
            for msgs in batch.values():
                if got == 0 and msgs:
                    t0 = time.perf_counter()
                for m in msgs:
                    json.loads(m.value)
                got += len(msgs)
    finally:
        await c.stop()
    return time.perf_counter() - t0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        description=(
            "Broker round-trip throughput on an embedded broker, in records/s: aiokafka batched send, "
            "raw aiokafka getmany + json.loads (the ceiling), a bare Faust agent that only counts (the "
            "peer) and the forexd tick agent (decode, validate, aggregate, publish/store candles, "
            "checkpoint), on the same pre-published ticks of the bundled EUR/USD sample; each Faust run "
            "is a fresh worker process, best of 2."
        ),
        epilog=(
            "Prints 'tick agent / bare Faust agent': the counting agent's seconds over the tick agent's "
            "(above 1: the tick agent is faster); target >= 1.0."
        ),
    )
    optional_count(ap, "n", default=100_000, metavar="N", help="ticks to send, 1..111,408 (default: 100000)")
    return ap


def main() -> None:
    parser = build_parser()
    n = parser.parse_args().n
    from forex_diffusion.ingest.replaying import records_from_file
    from streams.broker import EmbeddedBroker
    from streams.kafka import ensure_topics, make_producer

    _, count, recs = records_from_file(SAMPLE, symbol="EURUSD")  # encoded lazily, in the timed loop
    if n > count:  # the consumers would wait for records never published
        parser.error(f"N must be at most {count:,}, the sample's EUR/USD ticks")
    broker = EmbeddedBroker().start()
    try:
        prefix = "bench."
        with tempfile.TemporaryDirectory() as tmp:
            settings = _settings(broker.bootstrap, prefix, tmp, "bench")
            topic = settings.topic("ticks")

            async def publish() -> float:
                await ensure_topics(settings, [topic])
                p = make_producer(settings)
                await p.start()
                t0 = time.perf_counter()
                futs = []
                for i, (k, _ts, v) in enumerate(recs):
                    if i >= n:
                        break
                    futs.append(await p.send(topic, value=v, key=k.encode()))
                await asyncio.gather(*futs)
                dt = time.perf_counter() - t0
                await p.stop()
                return dt

            t_pub = asyncio.run(publish())
            t_raw = asyncio.run(raw_consume(broker.bootstrap, topic, n))
            results: dict[str, float] = {}
            for mode in ("count", "ticks", "count", "ticks"):
                out = subprocess.run(
                    [sys.executable, __file__, "--child", mode, broker.bootstrap, prefix, str(n), tmp],
                    capture_output=True,
                    text=True,
                    timeout=600,
                )
                line = [x for x in out.stdout.splitlines() if x.startswith("{")]
                if not line:
                    print(out.stdout[-2000:], out.stderr[-3000:])
                    raise SystemExit(f"{mode} run failed")
                r = json.loads(line[-1])
                results[mode] = min(results.get(mode, 1e9), r["seconds"])
        print(f"records: {n:,} (bundled OANDA EUR/USD ticks), 1 partition, embedded broker")
        print(f"{'aiokafka batched send':36s} {n / t_pub:10,.0f} records/s")
        print(f"{'aiokafka getmany + json.loads':36s} {n / t_raw:10,.0f} records/s  (ceiling)")
        print(f"{'bare Faust counting agent':36s} {n / results['count']:10,.0f} records/s  (peer)")
        print(f"{'forexd tick agent':36s} {n / results['ticks']:10,.0f} records/s")
        ratio = results["count"] / results["ticks"]
        print(f"tick agent / bare Faust agent: {ratio:.2f}  (target >= 1.0: {'met' if ratio >= 1.0 else 'NOT met'})")
    finally:
        broker.stop()


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":  # a worker this script starts (see main)
        child(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), sys.argv[6])
    else:
        main()
