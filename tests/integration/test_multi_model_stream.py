"""One worker serving two (timeframe, horizon) models through the real broker (issue 16):
``FOREXD_MODELS=1m:12,5m:6`` publishes forecasts for both series, each with its own horizon,
equal to the offline core's run of the same candles. Restarted with its checkpoint gone, a
worker rebuilds both series from the stored candles and forecasts the first new candle of
each."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from sqlalchemy import delete

from forex_diffusion.domain import Candle
from forex_diffusion.forecast.forecaster import ForecasterConfig
from forex_diffusion.offline import aggregate_ticks_file
from forex_diffusion.storage import make_engine
from forex_diffusion.storage.tables import snapshots
from forex_diffusion.wire import encode_candle

from ..waiting import log_progress, until
from .kafka_io import create_topics, publish, read_all
from .test_candle_stream import offline_records

pytestmark = pytest.mark.broker
TOPICS = ("ticks", "candles", "indicators", "deadletter", "forecasts", "drift", "models", "retrain.requests")
MODELS = {"1m": 12, "5m": 6}


@pytest.fixture(scope="module")
def candles(sample_ticks: Path) -> list[Candle]:
    out = aggregate_ticks_file(sample_ticks, timeframes=["1m", "5m", "1h"]).candles
    dur = {"1m": 1, "5m": 5, "1h": 60}
    return sorted(out, key=lambda c: (c.close_ms, dur[c.timeframe]))[:1560]


def offline(candles: list[Candle]) -> dict[tuple[str, int], dict[str, Any]]:
    cfg = ForecasterConfig(
        timeframes=("1m", "5m", "1h"),
        forecast_timeframes=tuple(MODELS),
        horizon=12,
        models=tuple(MODELS.items()),
        keyed_horizons=True,
    )
    return {(rec["timeframe"], rec["as_of_ms"]): rec for rec in offline_records(candles, cfg, MODELS)}


def _strip(rec: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in rec.items() if k != "latency_s"}


def test_a_worker_serves_two_timeframe_horizon_models_and_restarted_without_state_forecasts_at_once(
    worker_env: dict[str, str],
    spawn_worker: Any,
    kafka_bootstrap: str,
    candles: list[Candle],
) -> None:
    env = dict(worker_env, FOREXD_SYMBOLS="EURUSD", FOREXD_MODELS="1m:12,5m:6", FOREXD_SNAPSHOT_INTERVAL_S="0.5")
    del env["FOREXD_FORECAST_TIMEFRAMES"]  # FOREXD_MODELS replaces it (both set: exit 78)
    prefix = env["FOREXD_TOPIC_PREFIX"]
    create_topics(kafka_bootstrap, [f"{prefix}fx.{t}" for t in TOPICS], 2)
    first, later = candles[:1500], candles[1500:]
    publish(kafka_bootstrap, f"{prefix}fx.candles", [(b"EURUSD", encode_candle(c)) for c in first])
    expected = offline(first)
    assert {tf for tf, _ in expected} == {"1m", "5m"}
    w = spawn_worker(env)
    msgs = read_all(
        kafka_bootstrap,
        f"{prefix}fx.forecasts",
        expect=len(expected),
        timeout_s=240,
        distinct=lambda m: (json.loads(m.value)["timeframe"], json.loads(m.value)["as_of_ms"]),
    )
    got = {(r["timeframe"], r["as_of_ms"]): r for r in (json.loads(m.value) for m in msgs)}
    assert set(got) == set(expected), (len(got), len(expected), w.log()[-3000:])
    for key, rec in got.items():
        assert rec["horizon"] == MODELS[rec["timeframe"]] == len(rec["quantiles"])
        assert _strip(rec) == _strip(expected[key]), key
    assert w.alive()

    # restart with the checkpoint gone (the stored candles stay): the first new candle of each
    # series is forecast at once, not a context window later
    assert w.stop() is not None
    engine = make_engine(f"sqlite:///{Path(env['FOREXD_DATA_DIR']) / 'forexd.db'}")
    with engine.begin() as conn:
        assert conn.execute(delete(snapshots)).rowcount > 0
    w2 = spawn_worker(env, name="restarted")
    publish(kafka_bootstrap, f"{prefix}fx.candles", [(b"EURUSD", encode_candle(c)) for c in later])
    firsts = {tf: next(c for c in later if c.timeframe == tf) for tf in MODELS}
    want = {(tf, c.close_ms) for tf, c in firsts.items()}
    seen: set[tuple[str, int]] = set()
    read = [0]  # forecasts read so far: with the restarted worker's log, the progress of the wait

    async def first_new_forecasts() -> None:
        """Read fx.forecasts once, incrementally, until the forecasts of ``want`` are on it; the
        limit is on a stall (120 s without a new record or a new line of the worker's log)."""
        c = AIOKafkaConsumer(
            f"{prefix}fx.forecasts",
            bootstrap_servers=kafka_bootstrap,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        await c.start()

        async def reader() -> None:
            while True:
                for msgs in (await c.getmany(timeout_ms=300)).values():
                    for m in msgs:
                        read[0] += 1
                        r = json.loads(m.value)
                        if (r["timeframe"], r["as_of_ms"]) in want:
                            assert r["horizon"] == MODELS[r["timeframe"]]
                            seen.add((r["timeframe"], r["as_of_ms"]))

        task = asyncio.ensure_future(reader())
        try:
            await until(
                lambda: seen == want or task.done(),
                120,
                interval=0.2,
                what=f"forecasts of the first new candles {want}",
                progress=lambda: (read[0], log_progress(w2.log())),
            )
            if task.done():
                task.result()  # the reader's assertion, if it failed
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await c.stop()

    asyncio.run(first_new_forecasts())
    assert seen == want
    assert w2.alive()
