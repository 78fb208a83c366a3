"""fx.forecasts.paths through the real broker (issue 16): with ``FOREXD_PATHS`` on, a worker
serving the bundled 1m/H24 model publishes one paths record per forecast, and what a consumer
decodes from it reproduces the forecast: the quantiles recomputed from the decoded paths (the
predictor's quantile and calibration functions) equal the record's, and so do the touch
probabilities (the predictor's :func:`touch_from_paths`), within the quantisation bound."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from forex_diffusion.bundled import MODELS, SAMPLE_TICKS
from forex_diffusion.diffusion.predictor import Predictor
from forex_diffusion.domain import Candle
from forex_diffusion.forecast.forecaster import ForecasterConfig, SymbolForecaster
from forex_diffusion.forecast.touch import touch_from_paths
from forex_diffusion.offline import aggregate_ticks_file
from forex_diffusion.wire import decode_paths, encode_candle

from .kafka_io import create_topics, publish, read_all
from .test_candle_stream import stream_order

pytestmark = pytest.mark.broker
MODEL = MODELS / "EURUSD-1m-h24"
TOPICS = ("candles", "indicators", "deadletter", "forecasts", "forecasts.paths", "drift", "models", "retrain.requests")
SAMPLES = 32  # every sampled path is published: the forecast is a function of them
ENV = {
    "FOREXD_SYMBOLS": "EURUSD",
    "FOREXD_HORIZON": "24",
    "FOREXD_PATHS": str(SAMPLES),
    "FOREXD_FORECAST_SAMPLES": str(SAMPLES),
    "FOREXD_FORECAST_STEPS": "2",
    "FOREXD_SNAPSHOT_INTERVAL_S": "0.5",
}


def _due(candles: list[Candle], pred: Predictor) -> set[int]:
    """The as_of of every forecast the worker makes on ``candles`` (the core, offline)."""
    f = SymbolForecaster("EURUSD", ForecasterConfig(timeframes=("1m", "5m", "1h"), forecast_timeframes=("1m",)))
    return {o.candle.close_ms for c in candles if (o := f.on_candle(c)).due and f.request(o, pred.context_spec)}


def as_of(m: Any) -> int:
    """The ``as_of`` of a forecast or paths message."""
    return int(json.loads(m.value)["as_of"])


def _touch_bound(logchg: np.ndarray, dist: np.ndarray, sides: np.ndarray, w: np.ndarray, delta: float) -> np.ndarray:
    """``[nb, H]``: how far the touch probabilities of paths within ``delta`` (log) of ``logchg`` can be.

    A path's touch by step h can differ only when its running extreme is within ``delta`` of the
    band; the model's share then moves by at most those paths over all, weighted by ``1 - w``,
    and the running maximum over steps carries the largest earlier difference on.
    """
    run = np.where(
        sides[:, None, None] > 0, np.maximum.accumulate(logchg, axis=1), -np.minimum.accumulate(logchg, axis=1)
    )  # [nb, S, H]
    near = np.count_nonzero(np.abs(run - dist[:, None, None]) <= delta + 1e-12, axis=1) / logchg.shape[0]
    return np.maximum.accumulate((1.0 - w)[None, :] * near, axis=1)


def test_decoded_paths_reproduce_the_forecast_quantiles_and_touch_probabilities(
    tmp_path: Path, kafka_bootstrap: str, worker_env: dict[str, str], spawn_worker: Any
) -> None:
    shutil.copytree(MODEL, tmp_path / "models" / MODEL.name)
    env = {**worker_env, **ENV, "FOREXD_MODEL_DIR": str(tmp_path / "models")}
    prefix = env["FOREXD_TOPIC_PREFIX"]
    create_topics(kafka_bootstrap, [f"{prefix}fx.{t}" for t in TOPICS], 2)
    candles = stream_order(aggregate_ticks_file(SAMPLE_TICKS, timeframes=["1m", "5m", "1h"]).candles)[:240]
    pred = Predictor.load(MODEL)
    due = _due(candles, pred)
    assert len(due) > 100
    publish(kafka_bootstrap, f"{prefix}fx.candles", [(b"EURUSD", encode_candle(c)) for c in candles])

    w = spawn_worker(env)
    fmsgs = read_all(kafka_bootstrap, f"{prefix}fx.forecasts", expect=len(due), timeout_s=240, distinct=as_of)
    pmsgs = read_all(kafka_bootstrap, f"{prefix}fx.forecasts.paths", expect=len(due), timeout_s=240, distinct=as_of)
    forecasts = {as_of(m): json.loads(m.value) for m in fmsgs}
    paths = {as_of(m): (m.key, *decode_paths(m.value)) for m in pmsgs}
    assert set(forecasts) == set(paths) == due, (len(forecasts), len(paths), len(due), w.log()[-2000:])

    model = pred.model
    qscale = float(np.max(np.abs(model.quantile_scale.numpy())))
    for t, rec in forecasts.items():
        key, header, prices = paths[t]
        assert key == b"EURUSD"
        ids = ("symbol", "timeframe", "horizon", "model_version", "last_close")
        assert {k: header[k] for k in ids} == {k: rec[k] for k in ids} and rec["model_version"] == pred.version
        assert header["n_paths"] == header["samples"] == rec["samples"] == SAMPLES and prices.shape == (SAMPLES, 24)
        wt = np.asarray(header["rw_weight"], dtype=np.float64)
        np.testing.assert_array_equal(wt, model.rw_weight.numpy().astype(np.float64))
        last, sigma = header["last_close"], np.array([header["sigma"]])
        delta = 0.5 / header["scale"]  # the stated bound of each decoded log price
        logchg = np.log(prices / last)  # [S, H]

        # quantiles: the predictor's np.quantile over the paths, then the model's calibration
        q_log = np.moveaxis(np.quantile(logchg[None], rec["levels"], axis=1), 0, -1)  # [1, H, Q]
        qs = last * np.exp(model.calibrate_quantiles(q_log, sigma)[0])
        err = np.max(np.abs(np.log(qs / np.asarray(rec["quantiles"]))))
        assert err <= delta * qscale * np.max(1.0 - wt) + 1e-12, (t, err)

        # touch probabilities: the predictor's function on the decoded paths
        touch = rec["touch"]
        sides = np.array([1 if b.startswith("+") else -1 for b in touch["bands"]])
        dist = sides * np.log(np.asarray(touch["levels"]) / last)
        p, _rw = touch_from_paths(logchg[None], dist[None], sides.tolist(), sigma, wt)
        bound = _touch_bound(logchg, dist, sides, wt, delta) + 5e-5 + 1e-12  # the record rounds to 4 decimals
        assert np.all(np.abs(p[0] - np.asarray(touch["p"])) <= bound), t
    assert w.alive()
