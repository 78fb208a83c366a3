"""train(): chronological split with leakage check, metrics, manifest, calibration."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from forex_diffusion.diffusion import TrainConfig, TrainResult
from forex_diffusion.diffusion.inputs import frame_candles
from forex_diffusion.diffusion.training import train
from forex_diffusion.errors import ConfigError, ModelError

from .conftest import ms, tiny_config


def test_train_writes_a_checkpoint_with_a_complete_manifest(tiny_model: TrainResult) -> None:
    m = tiny_model.manifest
    assert tiny_model.checkpoint.is_file() and tiny_model.checkpoint.parent.name == "EURUSD-1h-h12"
    assert m["sha256"] and m["version"] == tiny_model.version
    assert m["data_window"]["split_ms"] == [ms(2016, 3, 1), ms(2016, 5, 1)]
    assert m["data_window"]["n_train"] > 3000 and m["data_window"]["n_val"] > 500
    assert m["metrics"]["ks_time_train_val"] == 1.0 and m["metrics"]["ks_time_val_test"] == 1.0
    assert m["train_config"]["horizon"] == 12 and m["context"]["window"] == 16
    test = m["metrics"]["test"]
    assert len(test["skill"]) == 12
    assert all(math.isfinite(x) for x in test["crps"])
    scales = m["metrics"]["spread_scale"]
    assert len(scales) == 12 and all(0.5 <= s <= 2.0 for s in scales)


def test_calibrated_tiny_model_covers_about_ninety_percent_on_validation(tiny_model: TrainResult) -> None:
    # calibration is fitted on these windows: coverage must come out near nominal
    cov = np.array(tiny_model.metrics["val"]["cover90"])
    assert 0.8 <= cov.mean() <= 0.97


def test_default_split_is_sixty_twenty_twenty(hourly: pd.DataFrame, tmp_path: Path) -> None:
    res = train(tiny_config(split=None, max_steps=2, eval_every=1, calib_windows=32, test_windows=32), hourly, tmp_path)
    dw = res.manifest["data_window"]
    total = dw["n_train"] + dw["n_val"] + dw["n_test"]
    assert dw["n_train"] / total == pytest.approx(0.6, abs=0.01)
    assert dw["n_test"] / total == pytest.approx(0.2, abs=0.01)


def test_split_leaving_no_validation_is_refused(hourly: pd.DataFrame, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="split leaves"):
        train(tiny_config(split=(ms(2020, 1, 1), ms(2021, 1, 1))), hourly, tmp_path)


def test_until_drops_later_candles(hourly: pd.DataFrame, tmp_path: Path) -> None:
    res = train(
        tiny_config(until_ms=ms(2016, 6, 1), max_steps=2, eval_every=1, calib_windows=32, test_windows=32),
        hourly,
        tmp_path,
    )
    assert res.manifest["data_window"]["last_close_ms"] <= ms(2016, 6, 1)


def test_config_rejects_unknown_keys_and_bad_values() -> None:
    with pytest.raises(ConfigError):
        TrainConfig.from_dict({"symbol": "EURUSD", "timeframe": "1h", "colour": 1})
    with pytest.raises(ConfigError):
        TrainConfig(symbol="EURUSD", timeframe="7x")
    with pytest.raises(ConfigError):
        TrainConfig(symbol="EURUSD", timeframe="1h", split=(5, 1))
    cfg = tiny_config()
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg


def test_extra_features_are_learned_and_then_required(hourly: pd.DataFrame, tmp_path: Path) -> None:
    from forex_diffusion.diffusion import Predictor

    # controlled cause: extras are a deterministic function of the time (the property is plumbing)
    extra = np.stack([np.sin(hourly.ts_ms.to_numpy() / 3.6e6), np.cos(hourly.ts_ms.to_numpy() / 3.6e6)], axis=1)
    res = train(
        tiny_config(max_steps=2, eval_every=1, calib_windows=32, test_windows=32), hourly, tmp_path, extra=extra
    )
    pred = Predictor.load(res.checkpoint)
    assert pred.extra_dim == 2 and res.manifest["extra_dim"] == 2
    ctx = pred.new_context("EURUSD", "1h")
    f = hourly.iloc[:100]
    for candle in frame_candles(f, "EURUSD", "1h"):
        ctx.update(candle)
    with pytest.raises(ModelError, match="extra features"):
        pred.forecast([ctx.request()])  # type: ignore[list-item]
    fc = pred.forecast([ctx.request(extra=extra[99])])[0]  # type: ignore[list-item]
    assert np.all(np.isfinite(fc.quantiles))
