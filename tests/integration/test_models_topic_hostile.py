"""Hostile ``fx.models`` records through the real broker: each is a dead letter with its reason,
and the candle agent neither stops nor changes -- its forecasts equal the offline core's.

Before: the worker's ``fx.models`` agent logged a refused record (``models.refused``) and
dropped it, with no dead letter and no count, and acted on any record that decoded (an outcome
for a symbol or timeframe it does not serve, or keyed by another symbol, refreshed its book).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from forex_diffusion.domain import Candle
from forex_diffusion.forecast.forecaster import ForecasterConfig, RandomWalkPredictor, SymbolForecaster
from forex_diffusion.forecast.warm_start import stream_key
from forex_diffusion.offline import aggregate_ticks_file
from forex_diffusion.wire import decode_dead_letter, encode_candle
from tests.waiting import wait_for_workers

from .kafka_io import create_topics, publish, read_all

pytestmark = pytest.mark.broker
TOPICS = ("ticks", "candles", "indicators", "deadletter", "forecasts", "drift", "models", "retrain.requests")
HORIZON = 12
N_CANDLES = 400  # the first candles of the sample, in the order the tick agent emits them

GOOD: dict[str, Any] = {
    "v": 1,
    "request_id": "manual-7",  # a request this worker did not open (forexd retrain): finishes nothing
    "key": "EURUSD/1m/12",
    "symbol": "EURUSD",
    "timeframe": "1m",
    "horizon": HORIZON,
    "version": None,
    "status": "failed",
    "reason": "no data",
    "metrics": {},
    "duration_s": 1.0,
    "champion": None,
    "artifact": None,
    "sha256": None,
    "finished_at_ms": 1_700_000_000_000,
}


def _doc(**changes: Any) -> bytes:
    return json.dumps({**GOOD, **changes}).encode()


HOSTILE: list[tuple[bytes | None, bytes | None, str]] = [
    (b"\x00\xff garbage", b"EURUSD", "malformed"),
    (None, b"EURUSD", "malformed"),  # a tombstone
    (b'"\xed\xa0\x80"', b"EURUSD", "malformed"),  # a lone surrogate, UTF-8 encoded
    (_doc(filler="x" * 200_000), b"EURUSD", "oversize"),
    (_doc(horizon="12"), b"EURUSD", "schema"),
    (_doc(request_id="r\x00"), b"EURUSD", "schema"),
    (_doc(symbol="EUR\ud800"), b"EURUSD", "schema"),
    (_doc(duration_s=float("nan")), b"EURUSD", "non_finite"),
    (_doc(symbol="USDJPY", key="USDJPY/1m/12"), b"USDJPY", "unknown_symbol"),
    (_doc(timeframe="4h", key="EURUSD/4h/12"), b"EURUSD", "unknown_key"),
    (_doc(request_id="../x"), b"EURUSD", "schema"),
    (_doc(), b"GBPUSD", "key_mismatch"),
]


def _candles(sample_ticks: Path) -> list[Candle]:
    return sorted(aggregate_ticks_file(sample_ticks, timeframes=["1m", "5m", "1h"]).candles, key=stream_key)[:N_CANDLES]


def _offline(candles: list[Candle]) -> dict[int, dict[str, Any]]:
    """The core's forecast records of ``candles`` (random walk), as JSON, by ``as_of``."""
    cfg = ForecasterConfig(timeframes=("1m", "5m", "1h"), forecast_timeframes=("1m",), horizon=HORIZON)
    f, pred, out = SymbolForecaster("EURUSD", cfg), RandomWalkPredictor(HORIZON), {}
    for c in candles:
        o = f.on_candle(c)
        if o.due:
            req = f.request(o, None)
            assert req is not None
            rec = json.loads(json.dumps(f.record(pred.forecast([req])[0], o)))
            out[rec["as_of_ms"]] = rec
    return out


def test_hostile_models_records_are_dead_letters_and_the_candle_agent_goes_on_unchanged(
    worker_env: dict[str, str], spawn_worker: Any, kafka_bootstrap: str, sample_ticks: Path
) -> None:
    env = dict(worker_env, FOREXD_SYMBOLS="EURUSD", FOREXD_HORIZON=str(HORIZON), FOREXD_SNAPSHOT_INTERVAL_S="0.5")
    prefix = env["FOREXD_TOPIC_PREFIX"]
    create_topics(kafka_bootstrap, [f"{prefix}fx.{t}" for t in TOPICS], 2)
    candles = _candles(sample_ticks)
    half = len(candles) // 2
    w = spawn_worker(env)
    publish(kafka_bootstrap, f"{prefix}fx.candles", [(b"EURUSD", encode_candle(c)) for c in candles[:half]])
    # the hostile records on one partition, in order, among the candles; then one good outcome
    publish(kafka_bootstrap, f"{prefix}fx.models", [(k, v) for v, k, _r in HOSTILE], partition_of=lambda k: 0)
    publish(kafka_bootstrap, f"{prefix}fx.candles", [(b"EURUSD", encode_candle(c)) for c in candles[half:]])
    publish(kafka_bootstrap, f"{prefix}fx.models", [(b"EURUSD", json.dumps(GOOD).encode())], partition_of=lambda k: 0)

    # the worker's start (imports, group join) is as long as the machine is slow: waited for on
    # its log, which grows while it starts and consumes, not for so many seconds
    # (every hostile record refused, or the good outcome after them taken: a worker that takes a
    # hostile one fails the checks below, not this wait)
    wait_for_workers(
        lambda: w.log().count("models.refused") >= len(HOSTILE) or "models.refreshed" in w.log(),
        w,
        what="the fx.models records consumed",
    )
    dead = read_all(kafka_bootstrap, f"{prefix}fx.deadletter", expect=len(HOSTILE), timeout_s=120)
    letters = sorted((decode_dead_letter(m.value) for m in dead), key=lambda d: d["offset"])
    assert [(d["source_topic"], d["partition"], d["offset"], d["reason"]) for d in letters] == [
        (f"{prefix}fx.models", 0, i, reason) for i, (_v, _k, reason) in enumerate(HOSTILE)
    ], w.log()[-3000:]
    assert all(d["size"] == len(v or b"") and d["error"] for d, (v, _k, _r) in zip(letters, HOSTILE, strict=True))

    # the candle agent's state is the one the candles alone make: its forecasts are the core's
    expected = _offline(candles)
    got = read_all(kafka_bootstrap, f"{prefix}fx.forecasts", expect=len(expected), timeout_s=240)
    by_as_of = {json.loads(m.value)["as_of_ms"]: json.loads(m.value) for m in got}
    assert expected and set(by_as_of) == set(expected), (len(by_as_of), len(expected), w.log()[-3000:])

    def strip(r: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in r.items() if k != "latency_s"}

    assert all(strip(by_as_of[t]) == strip(expected[t]) for t in expected)

    # the good outcome after them was taken (the one refresh an accepted outcome makes), and the
    # worker runs on
    wait_for_workers(lambda: "models.refreshed" in w.log(), w, what="the good outcome taken")
    assert w.log().count("models.refreshed") == 1 and w.log().count("models.refused") == len(HOSTILE)
    assert w.alive()
