"""One worker serving two (timeframe, horizon) models through the real broker (issue 16):
``FOREXD_MODELS=1m:12,5m:6`` publishes forecasts for both series, each with its own horizon,
equal to the offline core's run of the same candles."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from forex_diffusion.codec import encode_candle
from forex_diffusion.domain import Candle
from forex_diffusion.forecasting import ForecasterConfig, RandomWalkPredictor, SymbolForecaster
from forex_diffusion.offline import aggregate_ticks_file

from .kafka_io import create_topics, publish, read_all

pytestmark = pytest.mark.broker
TOPICS = ("ticks", "candles", "indicators", "deadletter", "forecasts", "drift", "models", "retrain.requests")
MODELS = {"1m": 12, "5m": 6}


@pytest.fixture(scope="module")
def candles(sample_ticks: Path) -> list[Candle]:
    out = aggregate_ticks_file(sample_ticks, timeframes=["1m", "5m", "1h"]).candles
    dur = {"1m": 1, "5m": 5, "1h": 60}
    return sorted(out, key=lambda c: (c.close_ms, dur[c.timeframe]))[:1500]


def offline(candles: list[Candle]) -> dict[tuple[str, int], dict[str, Any]]:
    cfg = ForecasterConfig(timeframes=("1m", "5m", "1h"), forecast_timeframes=tuple(MODELS), horizon=12,
                           models=tuple(MODELS.items()), keyed_horizons=True)
    f = SymbolForecaster("EURUSD", cfg)
    preds = {tf: RandomWalkPredictor(h) for tf, h in MODELS.items()}
    out = {}
    for c in candles:
        o = f.on_candle(c)
        if o.due:
            req = f.request(o, None)
            assert req is not None
            rec = f.record(preds[c.timeframe].forecast([req])[0], o)
            out[(rec["timeframe"], rec["as_of_ms"])] = json.loads(json.dumps(rec))
    return out


def _strip(rec: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in rec.items() if k != "latency_s"}


def test_a_worker_serving_two_timeframe_horizon_models_forecasts_both(
    worker_env: dict[str, str], spawn_worker: Any, kafka_bootstrap: str, candles: list[Candle],
) -> None:
    env = dict(worker_env, FOREXD_SYMBOLS="EURUSD", FOREXD_MODELS="1m:12,5m:6", FOREXD_SNAPSHOT_INTERVAL_S="0.5")
    del env["FOREXD_FORECAST_TIMEFRAMES"]  # FOREXD_MODELS replaces it (both set: exit 78)
    prefix = env["FOREXD_TOPIC_PREFIX"]
    create_topics(kafka_bootstrap, [f"{prefix}fx.{t}" for t in TOPICS], 2)
    publish(kafka_bootstrap, f"{prefix}fx.candles", [(b"EURUSD", encode_candle(c)) for c in candles])
    expected = offline(candles)
    assert {tf for tf, _ in expected} == {"1m", "5m"}
    w = spawn_worker(env)
    msgs = read_all(kafka_bootstrap, f"{prefix}fx.forecasts", expect=len(expected), timeout_s=240,
                    distinct=lambda m: (json.loads(m.value)["timeframe"], json.loads(m.value)["as_of_ms"]))
    got = {(r["timeframe"], r["as_of_ms"]): r for r in (json.loads(m.value) for m in msgs)}
    assert set(got) == set(expected), (len(got), len(expected), w.log()[-3000:])
    for key, rec in got.items():
        assert rec["horizon"] == MODELS[rec["timeframe"]] == len(rec["quantiles"])
        assert _strip(rec) == _strip(expected[key]), key
    assert w.alive()
