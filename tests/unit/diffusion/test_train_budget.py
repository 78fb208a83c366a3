"""train(): ``max_minutes`` bounds the whole call, calibration and test scoring included.

Regression: ``forexd train --max-minutes 0.25`` (15 s) on the hourly EUR/USD file ran 198 s:
the training loop kept min(15 %, 60 s) for what follows, then calibration and test scoring
sampled their 4,096 + 4,096 windows whatever the time left. The clocks here advance with
the work done (training steps, sampled paths), never with the machine, so the tests hold
on a fast or a loaded machine alike.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from forex_diffusion.diffusion import training
from forex_diffusion.diffusion.training import train

from .conftest import tiny_config


class WorkClock:
    """Monotonic time that passes with the work: ``tick_s`` per reading, ``path_s`` per sampled path."""

    def __init__(self, tick_s: float, path_s: float) -> None:
        self.t = 0.0
        self.tick_s = tick_s
        self.path_s = path_s

    def __call__(self) -> float:
        self.t += self.tick_s
        return self.t


@pytest.fixture
def work_clock(monkeypatch: pytest.MonkeyPatch) -> WorkClock:
    """A clock charged 5 ms per sampled path (a slow machine), 10 ms per reading."""
    clock = WorkClock(tick_s=0.01, path_s=0.005)
    real = training._sample_cum

    def charged(*args: Any, **kwargs: Any) -> np.ndarray:
        out = real(*args, **kwargs)
        clock.t += out.shape[0] * out.shape[1] * clock.path_s  # [N, S, H]: windows x paths
        return out

    monkeypatch.setattr(training, "_sample_cum", charged)
    return clock


# 512 + 512 windows of 32 paths: ~164 s of work on the clock above, against a 60 s budget
_BIG = {"calib_windows": 512, "test_windows": 512, "max_minutes": 1.0}


@pytest.mark.parametrize("given", ["argument", "module_time"])
def test_small_budget_cuts_calibration_and_test_windows_to_fit(
    given: str,
    hourly: pd.DataFrame,
    tmp_path: Path,
    work_clock: WorkClock,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    torch.set_num_threads(2)
    if given == "module_time":  # the default clock, read where train() reads it
        monkeypatch.setattr(training, "time", SimpleNamespace(monotonic=work_clock))
    with caplog.at_level(logging.WARNING, logger="forex_diffusion.diffusion.training"):
        if given == "argument":
            res = train(tiny_config(**_BIG), hourly, tmp_path, clock=work_clock)
        else:
            res = train(tiny_config(**_BIG), hourly, tmp_path)
    assert work_clock.t <= 60.0  # the whole call, on the clock it was given
    budget = res.metrics["budget"]
    assert budget["cut"] is True and budget["exceeded"] is False
    assert budget["calib_windows_planned"] == 512 and budget["test_windows_planned"] == 512
    assert training.BUDGET_MIN_WINDOWS <= budget["calib_windows"] < 512
    assert training.BUDGET_MIN_WINDOWS <= budget["test_windows"] < 512
    assert res.metrics["val"]["n"] == budget["calib_windows"]
    assert res.metrics["test"]["n"] == budget["test_windows"]
    # the per-window cost is measured on the first batch: 32 paths x 5 ms (+ two readings)
    assert budget["window_ms"][0] == pytest.approx(160.0, abs=1.0)
    saved = json.loads(res.checkpoint.with_suffix(".json").read_text())
    assert saved["metrics"]["budget"] == budget
    assert any("train budget cut windows" in r.getMessage() for r in caplog.records)


def test_budget_too_small_for_the_minimum_windows_finishes_and_says_so(
    hourly: pd.DataFrame, tmp_path: Path, work_clock: WorkClock, caplog: pytest.LogCaptureFixture
) -> None:
    torch.set_num_threads(2)
    with caplog.at_level(logging.WARNING, logger="forex_diffusion.diffusion.training"):
        res = train(tiny_config(**{**_BIG, "max_minutes": 0.1}), hourly, tmp_path, clock=work_clock)
    budget = res.metrics["budget"]
    assert res.metrics["steps"] < 60 and res.metrics["stop_reason"] == "time_budget"
    assert budget["calib_windows"] == budget["test_windows"] == training.BUDGET_MIN_WINDOWS
    assert budget["cut"] is True and budget["exceeded"] is True
    assert res.checkpoint.is_file()
    assert any("train budget exceeded" in r.getMessage() for r in caplog.records)


def _numbers(metrics: dict[str, Any]) -> dict[str, Any]:
    """The metrics without the timings."""
    out = {k: v for k, v in metrics.items() if k not in ("train_seconds", "budget")}
    out["budget"] = {k: v for k, v in metrics["budget"].items() if k not in ("budget_s", "window_ms")}
    return out


def test_budget_that_does_not_bind_changes_no_number(
    hourly: pd.DataFrame, tmp_path: Path, work_clock: WorkClock
) -> None:
    torch.set_num_threads(2)
    config = tiny_config(calib_windows=200, test_windows=200)  # a first batch and two more
    stopped = train(config, hourly, tmp_path / "a", clock=lambda: 0.0)  # no time passes: no budget
    start = work_clock.t  # the charged sampling of the first run
    ample = train(
        tiny_config(calib_windows=200, test_windows=200, max_minutes=100.0), hourly, tmp_path / "b", clock=work_clock
    )
    assert 30.0 < work_clock.t - start < 100.0 * 60.0  # time passed, within the budget
    assert ample.metrics["budget"]["cut"] is False and ample.metrics["budget"]["exceeded"] is False
    assert ample.metrics["budget"]["calib_windows"] == ample.metrics["val"]["n"] == 200
    assert _numbers(ample.metrics) == _numbers(stopped.metrics)


def test_sampling_a_set_in_two_ranges_gives_the_numbers_of_one_pass(hourly: pd.DataFrame) -> None:
    # what lets a budget that does not bind keep the timed first batch
    config = tiny_config()
    windows = training._windows(hourly, config, None)
    w = windows.take(np.arange(100))
    model, _ = training._new_model(config, config.context.cond_dim(0), w, torch.device("cpu"))
    args = (model, w, 8, 2, 7, torch.device("cpu"))
    whole = training._sample_cum(*args, calibrated=False)
    first = training._sample_cum(*args, calibrated=False, stop=64)
    rest = training._sample_cum(*args, calibrated=False, start=64)
    assert first.shape[0] == 64 and rest.shape[0] == 36
    assert np.array_equal(np.concatenate([first, rest]), whole)


def test_slowdown_after_the_first_batch_stops_the_phase_within_the_budget(
    hourly: pd.DataFrame, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the first calibration batch says everything fits; then the machine gets 5 times slower
    torch.set_num_threads(2)
    clock = WorkClock(tick_s=0.01, path_s=0.001)
    real = training._sample_cum
    batches: list[int] = []

    def charged(*args: Any, **kwargs: Any) -> np.ndarray:
        out = real(*args, **kwargs)
        if args[2] == 32:  # samples: calibration and test, not the validation evaluations
            batches.append(out.shape[0])
        clock.t += out.shape[0] * out.shape[1] * clock.path_s * (5.0 if len(batches) > 1 else 1.0)
        return out

    monkeypatch.setattr(training, "_sample_cum", charged)
    res = train(tiny_config(**_BIG), hourly, tmp_path, clock=clock)
    budget = res.metrics["budget"]
    assert clock.t <= 60.0
    assert budget["cut"] is True and budget["exceeded"] is False
    assert training.BUDGET_MIN_WINDOWS <= budget["calib_windows"] < 512
    assert res.metrics["val"]["n"] == budget["calib_windows"]
    assert res.metrics["test"]["n"] == budget["test_windows"] < 512


def test_coarse_to_fine_order_spreads_every_prefix() -> None:
    order = training._coarse_to_fine(16)
    assert sorted(order.tolist()) == list(range(16)) and order[0] == 0
    assert sorted(order[:4].tolist()) == [0, 4, 8, 12]
    assert sorted(training._coarse_to_fine(13)[:4].tolist()) == [0, 4, 8, 12]
    assert training._coarse_to_fine(1).tolist() == [0] and training._coarse_to_fine(0).tolist() == []


def test_out_of_time_before_any_evaluation_scores_the_weights_on_few_windows(
    hourly: pd.DataFrame, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the evaluation that ends a run cut before its first one has nothing to compare with
    torch.set_num_threads(2)
    clock = WorkClock(tick_s=0.01, path_s=0.0)
    real = training._sample_cum
    evaluated: list[int] = []

    def spy(*args: Any, **kwargs: Any) -> np.ndarray:
        out = real(*args, **kwargs)
        if args[2] == 16:  # val_samples
            evaluated.append(out.shape[0])
        return out

    monkeypatch.setattr(training, "_sample_cum", spy)
    config = tiny_config(val_windows=256, eval_every=1000, max_minutes=0.005)  # 0.3 s: ~20 steps
    res = train(config, hourly, tmp_path, clock=clock)
    assert res.metrics["stop_reason"] == "time_budget" and res.metrics["steps"] < 60
    assert evaluated == [training.BUDGET_MIN_WINDOWS]
    assert np.isfinite(res.metrics["best_val_crps"])
