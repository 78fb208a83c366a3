"""Drift → retrain → gated promotion → hot swap, through the broker and PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from forex_diffusion.offline import aggregate_ticks_file
from forex_diffusion.storage import make_engine
from forex_diffusion.storage.model_registry import ModelKey, get_aliases
from forex_diffusion.wire import encode_candle
from streams.demo import DEMO_JOB

from .kafka_io import create_topics, publish, read_all

pytestmark = [pytest.mark.broker, pytest.mark.postgres]
TOPICS = ("ticks", "candles", "indicators", "deadletter", "forecasts", "drift", "models", "retrain.requests")
DUR = {"1m": 1, "5m": 5, "1h": 60}
# the demo's small retrain job, at this test's horizon and with longer training and hold-out windows
TINY_JOB = {**DEMO_JOB, "horizon": 12, "train_candles": 600, "holdout_candles": 120}


def test_drift_request_is_trained_gated_and_swapped_in_without_a_gap(
    worker_env: dict[str, str],
    spawn_worker: Any,
    kafka_bootstrap: str,
    sample_ticks: Path,
    pg_url: str,
    tmp_path: Path,
    wait_until: Any,
) -> None:
    env = dict(
        worker_env,
        FOREXD_SYMBOLS="EURUSD",
        FOREXD_HORIZON="12",
        FOREXD_DATABASE_URL=pg_url,
        FOREXD_MODEL_DIR=str(tmp_path / "models"),
        FOREXD_RETRAIN_JOB_CONFIG=json.dumps(TINY_JOB),
        FOREXD_SNAPSHOT_INTERVAL_S="0.5",
    )
    prefix = env["FOREXD_TOPIC_PREFIX"]
    create_topics(kafka_bootstrap, [f"{prefix}fx.{t}" for t in TOPICS], 2)
    candles = sorted(
        aggregate_ticks_file(sample_ticks, timeframes=["1m", "5m", "1h"]).candles,
        key=lambda c: (c.close_ms, -DUR[c.timeframe]),
    )
    first, second = candles[:1500], candles[1500:]
    publish(kafka_bootstrap, f"{prefix}fx.candles", [(b"EURUSD", encode_candle(c)) for c in first])
    w = spawn_worker(env, role="all")

    # the drift detectors on the live forecasts raise a request by themselves
    reqs = read_all(kafka_bootstrap, f"{prefix}fx.retrain.requests", expect=1, timeout_s=120)
    assert reqs, w.log()[-3000:]
    req = json.loads(reqs[0].value)
    assert req["reason"] == "drift" and req["symbol"] == "EURUSD"
    outs = read_all(kafka_bootstrap, f"{prefix}fx.models", expect=1, timeout_s=300)
    assert outs, w.log()[-4000:]
    outcome = json.loads(outs[0].value)
    assert outcome["request_id"] == req["request_id"]
    assert outcome["status"] in ("promoted", "rejected"), outcome
    eng = make_engine(pg_url)
    champion = get_aliases(eng, ModelKey(symbol="EURUSD", timeframe="1m", horizon=12)).get("champion")
    if outcome["status"] == "promoted":
        assert champion == outcome["version"] and Path(outcome["artifact"]).exists()
    else:  # a worse challenger is never promoted: the random walk keeps serving
        assert champion is None
    # the forecaster refreshes its model book on the fx.models record (and logs it)
    wait_until(lambda: "models.refreshed" in w.log(), 120, what="the model book refreshed on the outcome")

    publish(kafka_bootstrap, f"{prefix}fx.candles", [(b"EURUSD", encode_candle(c)) for c in second])
    due = {c.close_ms for c in second if c.timeframe == "1m"}
    # every due as_of, plus one key for all the first half's forecasts; a loaded machine may
    # pause the worker for seconds (a checkpoint, the model swap), so idle ends the read late
    msgs = read_all(
        kafka_bootstrap,
        f"{prefix}fx.forecasts",
        expect=len(due) + 1,
        timeout_s=240,
        idle_s=30,
        distinct=lambda m: _due_or_other(json.loads(m.value)["as_of_ms"], due),
    )
    recs: dict[int, dict[str, Any]] = {}
    for m in msgs:
        v = json.loads(m.value)
        recs[v["as_of_ms"]] = v
    missing = sorted(due - set(recs))
    assert not missing, f"{len(missing)} closed candles without a forecast, first {missing[:3]}"
    served = {recs[t]["model_version"] for t in due}
    assert served == {outcome["version"] if outcome["status"] == "promoted" else "rw-ewma"}
    assert w.alive()
    print(f"outcome={outcome['status']} reason={outcome['reason']} job_s={outcome['duration_s']:.1f} served={served}")


def _due_or_other(as_of: int, due: set[int]) -> int:
    return as_of if as_of in due else -1
