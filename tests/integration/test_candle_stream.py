"""Candles through the real broker: indicators equal ``forexd indicators``, forecasts and
learner predictions equal the offline run of the same core, and a worker killed mid-stream
resumes from its checkpoint to exactly the uninterrupted result."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from forex_diffusion.domain import Candle
from forex_diffusion.forecast.forecaster import ForecasterConfig, RandomWalkPredictor, SymbolForecaster
from forex_diffusion.indicators import compute_indicators
from forex_diffusion.offline import aggregate_ticks_file
from forex_diffusion.wire import encode_candle

from ..waiting import wait_for_workers
from .kafka_io import create_topics, publish, read_all

pytestmark = pytest.mark.broker
TOPICS = ("ticks", "candles", "indicators", "deadletter", "forecasts", "drift", "models", "retrain.requests")
DUR = {"1m": 1, "5m": 5, "1h": 60}
HORIZON = 12


def stream_order(candles: list[Candle]) -> list[Candle]:
    """The order the tick agent emits: by close time, higher timeframes first."""
    return sorted(candles, key=lambda c: (c.close_ms, -DUR[c.timeframe]))


@pytest.fixture(scope="module")
def sample_candles(sample_ticks: Path) -> list[Candle]:
    return stream_order(aggregate_ticks_file(sample_ticks, timeframes=["1m", "5m", "1h"]).candles)


def offline_records(candles: list[Candle], cfg: ForecasterConfig, horizon_of: dict[str, int]) -> list[dict[str, Any]]:
    """The core's fx.forecasts records for ``candles`` (random walk at each timeframe's horizon), as JSON."""
    f = SymbolForecaster("EURUSD", cfg)
    preds = {tf: RandomWalkPredictor(h) for tf, h in horizon_of.items()}
    out = []
    for c in candles:
        o = f.on_candle(c)
        if o.due:
            req = f.request(o, None)
            assert req is not None
            out.append(json.loads(json.dumps(f.record(preds[c.timeframe].forecast([req])[0], o))))
    return out


def offline_forecasts(candles: list[Candle]) -> dict[int, dict[str, Any]]:
    cfg = ForecasterConfig(timeframes=("1m", "5m", "1h"), forecast_timeframes=("1m",), horizon=HORIZON)
    return {rec["as_of_ms"]: rec for rec in offline_records(candles, cfg, {"1m": HORIZON})}


def _env(worker_env: dict[str, str]) -> dict[str, str]:
    return dict(worker_env, FOREXD_SYMBOLS="EURUSD", FOREXD_HORIZON=str(HORIZON), FOREXD_SNAPSHOT_INTERVAL_S="0.5")


def _by_as_of(msgs: list[Any]) -> dict[int, list[dict[str, Any]]]:
    out: dict[int, list[dict[str, Any]]] = {}
    for m in msgs:
        v = json.loads(m.value)
        out.setdefault(v["as_of_ms"], []).append(v)
    return out


def _strip(rec: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in rec.items() if k not in ("latency_s",)}


def test_indicators_and_forecasts_through_the_broker_equal_the_offline_core(
    worker_env: dict[str, str],
    spawn_worker: Any,
    kafka_bootstrap: str,
    sample_candles: list[Candle],
    tmp_path: Path,
) -> None:
    env = _env(worker_env)
    prefix = env["FOREXD_TOPIC_PREFIX"]
    create_topics(kafka_bootstrap, [f"{prefix}fx.{t}" for t in TOPICS], 2)
    publish(kafka_bootstrap, f"{prefix}fx.candles", [(b"EURUSD", encode_candle(c)) for c in sample_candles])
    expected = offline_forecasts(sample_candles)
    w = spawn_worker(env)
    got = _by_as_of(read_all(kafka_bootstrap, f"{prefix}fx.forecasts", expect=len(expected), timeout_s=240))
    assert set(got) == set(expected), (len(got), len(expected), w.log()[-3000:])
    for as_of, recs in got.items():
        for r in recs:
            assert _strip(r) == _strip(expected[as_of])
    # learner predictions are part of every record, for both horizons
    assert all(
        {p["horizon"] for p in recs[0]["learner"]} == {1, HORIZON} for recs in got.values() if recs[0]["learner"]
    )

    # indicators published per closed candle equal `forexd indicators` (compute_indicators) on the same candles
    ind = [
        json.loads(m.value)
        for m in read_all(kafka_bootstrap, f"{prefix}fx.indicators", expect=len(sample_candles), timeout_s=60)
    ]
    for tf in ("1m", "1h"):
        cs = [c for c in sample_candles if c.timeframe == tf]
        frame = pd.DataFrame(
            {
                "ts_ms": [c.open_ms for c in cs],
                "symbol": "EURUSD",
                "open": [c.open for c in cs],
                "high": [c.high for c in cs],
                "low": [c.low for c in cs],
                "close": [c.close for c in cs],
                "volume": 0.0,
            }
        )
        ref = compute_indicators(frame)
        streamed = {r["open_time"]: r["values"] for r in ind if r["timeframe"] == tf}
        assert len(streamed) == len(cs)
        cols = [k for k in streamed[cs[0].open_ms] if k in ref.columns]
        assert len(cols) >= 15
        for i, c in enumerate(cs):
            row = ref.iloc[i]
            for k in cols:
                a, b = streamed[c.open_ms][k], row[k]
                if a is None:
                    assert pd.isna(b), (tf, i, k)
                else:
                    assert a == pytest.approx(b, rel=1e-12, abs=1e-12), (tf, i, k)
    assert w.alive()


# The crash between the database write and the offset commit runs here with ``make soak``: make
# test runs it for the candles role (tests/faults/test_candle_faults.py,
# test_candle_worker_crash_at_failpoint_restarts_to_the_oracle, which also checks the stored rows
# and the checkpointed state) and for the ticks role (tests/faults/test_worker_faults.py). This
# worker runs both agents in one process (the stream role), killed mid-stream after 200
# forecasts: SIGKILL and the crash between the sends and their acks stay in make test.
@pytest.mark.parametrize(
    "crash",
    [
        "sigkill",
        "during_output_send:2",
        pytest.param("after_db_upsert_before_commit:2", marks=pytest.mark.soak),
    ],
)
def test_worker_killed_mid_stream_resumes_to_the_uninterrupted_result(
    worker_env: dict[str, str],
    spawn_worker: Any,
    kafka_bootstrap: str,
    sample_candles: list[Candle],
    wait_until: Any,
    crash: str,
) -> None:
    env = _env(worker_env)
    prefix = env["FOREXD_TOPIC_PREFIX"]
    create_topics(kafka_bootstrap, [f"{prefix}fx.{t}" for t in TOPICS], 2)
    candles = sample_candles[:2500]
    expected = offline_forecasts(candles)
    records = [(b"EURUSD", encode_candle(c)) for c in candles]
    if crash == "sigkill":
        # the second half is published only after the kill: on a fast machine the first worker
        # could otherwise finish the whole stream before the test sees its first forecasts
        publish(kafka_bootstrap, f"{prefix}fx.candles", records[:1250])
        w1 = spawn_worker(dict(env, FOREXD_SNAPSHOT_INTERVAL_S="2"), name="first")
        read = [0]  # forecasts on the topic at the last look: the progress of the wait

        def forecasts() -> int:
            read[0] = len(read_all(kafka_bootstrap, f"{prefix}fx.forecasts", idle_s=0.3, timeout_s=5))
            return read[0]

        # a loaded machine may take minutes to start the worker and forecast 200 candles: the
        # limit is on a stall (300 s without a new forecast), not on the whole
        wait_until(lambda: forecasts() >= 200, 300, interval=0.2, what="the first forecasts", progress=lambda: read[0])
        w1.kill(signal.SIGKILL)
        publish(kafka_bootstrap, f"{prefix}fx.candles", records[1250:])
    else:
        publish(
            kafka_bootstrap, f"{prefix}fx.candles", records
        )  # a failpoint exits the worker (os._exit(137)) at a named point of its 3rd checkpoint
        w1 = spawn_worker(dict(env, FOREXD_FAILPOINT=crash, FOREXD_SNAPSHOT_INTERVAL_S="0.1"), name="first")
    # the first worker stops (SIGKILL, or the failpoint at its 3rd checkpoint, after start-up and
    # two checkpoints): the limit is on a stall of its log (120 s without a new line), not on the whole
    wait_for_workers(lambda: w1.proc.poll() is not None, w1, what="the first worker to stop")
    before = len(_by_as_of(read_all(kafka_bootstrap, f"{prefix}fx.forecasts", idle_s=0.5, timeout_s=10)))
    assert before < len(expected), "the first worker must stop mid-stream"
    w2 = spawn_worker(env, name="second")
    got = _by_as_of(
        read_all(
            kafka_bootstrap,
            f"{prefix}fx.forecasts",
            expect=len(expected),
            timeout_s=240,
            distinct=lambda m: json.loads(m.value)["as_of_ms"],
        )
    )
    assert set(got) == set(expected), (len(got), len(expected), w2.log()[-3000:])
    redelivered = sum(len(v) - 1 for v in got.values())
    for as_of, recs in got.items():
        for r in recs:  # the copies re-emitted after the crash are identical too
            assert _strip(r) == _strip(expected[as_of]), as_of
    last = max(expected)
    learner = np.array([p["scaled_return"] for p in expected[last]["learner"]])
    assert np.isfinite(learner).all()
    assert w2.alive()
    print(f"crash={crash} forecasts={len(expected)} before={before} re-emitted after the crash={redelivered}")
