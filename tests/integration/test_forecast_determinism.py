"""A diffusion forecast produced through the broker equals the one ``forexd backtest`` produces
for the same as_of (the same context, model and per-series seed)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from forex_diffusion.bundled import MODELS
from forex_diffusion.diffusion.predictor import Predictor
from forex_diffusion.offline import aggregate_ticks_file
from forex_diffusion.reports.backtest import BacktestConfig, backtest
from forex_diffusion.wire import encode_candle

from .kafka_io import create_topics, publish, read_all

pytestmark = pytest.mark.broker
MODEL_DIR = MODELS / "EURUSD-1m-h24"
TOPICS = ("ticks", "candles", "indicators", "deadletter", "forecasts", "drift", "models", "retrain.requests")
DUR = {"1m": 1, "5m": 5, "1h": 60}
Q = ["q05", "q10", "q20", "q30", "q40", "q50", "q60", "q70", "q80", "q90", "q95"]


def _model_with_inputs(frame: pd.DataFrame, models: Path) -> Path:
    """A tiny 1m/H24 model whose conditioning includes the indicator bank and derived 5m bars."""
    from forex_diffusion.diffusion import ContextSpec, TrainConfig, train
    from forex_diffusion.diffusion.inputs import InputSpec, build_extra_frame

    config = TrainConfig(
        symbol="EURUSD",
        timeframe="1m",
        horizon=24,
        context=ContextSpec(window=16, warmup=12),
        width=16,
        cond_width=16,
        blocks=1,
        max_steps=20,
        eval_every=10,
        batch_size=64,
        val_windows=32,
        val_samples=8,
        calib_windows=64,
        test_windows=64,
        sample_steps=4,
        samples=32,
        device="cpu",
        inputs=("indicators", "mtf:5m"),
    )
    extra = build_extra_frame(frame, "EURUSD", "1m", InputSpec(config.inputs, "1m"))
    return train(config, frame, models, extra=extra).checkpoint


@pytest.mark.parametrize("inputs", [False, True], ids=["calendar_only", "with_inputs"])
def test_broker_forecasts_equal_backtest_rows_for_the_same_as_of(
    worker_env: dict[str, str],
    spawn_worker: Any,
    kafka_bootstrap: str,
    sample_ticks: Path,
    tmp_path: Path,
    inputs: bool,
) -> None:
    models = tmp_path / "models"
    env = dict(worker_env, FOREXD_SYMBOLS="EURUSD", FOREXD_HORIZON="24", FOREXD_MODEL_DIR=str(models))
    prefix = env["FOREXD_TOPIC_PREFIX"]
    create_topics(kafka_bootstrap, [f"{prefix}fx.{t}" for t in TOPICS], 2)
    candles = sorted(
        aggregate_ticks_file(sample_ticks, timeframes=["1m", "5m", "1h"]).candles,
        key=lambda c: (c.close_ms, -DUR[c.timeframe]),
    )[:1200]
    m1 = [c for c in candles if c.timeframe == "1m"]
    frame = pd.DataFrame(
        {
            "ts_ms": [c.open_ms for c in m1],
            "open": [c.open for c in m1],
            "high": [c.high for c in m1],
            "low": [c.low for c in m1],
            "close": [c.close for c in m1],
        }
    )
    if inputs:  # the worker builds the model's inputs with the builder the backtest runs
        pred = Predictor.load(_model_with_inputs(frame, models))
        assert pred.inputs and pred.extra_dim > 0
    else:
        shutil.copytree(MODEL_DIR, models / MODEL_DIR.name)
        pred = Predictor.load(MODEL_DIR)
    publish(kafka_bootstrap, f"{prefix}fx.candles", [(b"EURUSD", encode_candle(c)) for c in candles])
    rows = backtest(frame, pred, BacktestConfig(symbol="EURUSD", timeframe="1m"))
    assert len(rows) > 0
    expected_as_of = sorted(set(rows.as_of.tolist()))

    w = spawn_worker(env)
    msgs = read_all(
        kafka_bootstrap,
        f"{prefix}fx.forecasts",
        expect=len(expected_as_of),
        timeout_s=240,
        distinct=lambda m: json.loads(m.value)["as_of_ms"],
    )
    got = {json.loads(m.value)["as_of_ms"]: json.loads(m.value) for m in msgs}
    assert set(got) == set(expected_as_of), (len(got), len(expected_as_of), w.log()[-2000:])
    assert {r["model_version"] for r in got.values()} == {pred.version}
    for as_of, g in rows.groupby("as_of"):
        rec = got[as_of]
        broker_q = np.asarray(rec["quantiles"])  # [H, 11]
        np.testing.assert_allclose(broker_q, g[Q].to_numpy(), rtol=1e-7, atol=0)
        np.testing.assert_allclose(np.asarray(rec["p_up"]), g["p_up"].to_numpy(), rtol=1e-7, atol=1e-12)
