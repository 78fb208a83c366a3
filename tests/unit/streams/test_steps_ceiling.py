"""``FOREXD_FORECAST_STEPS`` is a ceiling: a model whose schedule has fewer steps samples them all.

One setting serves every model a worker loads, and models may be trained with different
schedules (the bundled ones have ``T`` = 200). Before, a configured 500 passed the settings
and then every forecast of such a model failed (``forecast.failed``, logged) — the worker ran
and published nothing. Now the model samples its ``T`` steps, the record says so, and the
model book says once, when it loads the model, that the setting was capped.
"""

from __future__ import annotations

import functools
import json
import logging
import shutil
from pathlib import Path

import pytest

from forex_diffusion.diffusion.predictor import Predictor
from forex_diffusion.errors import ConfigError
from forex_diffusion.forecast.batching import STEPS_MAX, steps_for
from forex_diffusion.forecast.forecaster import ForecasterConfig, RandomWalkPredictor, SymbolForecaster
from retraining.serving import ModelBook

from .test_agents_in_context import _candles
from .test_paths_agent import MODEL, _run

SAMPLES = 4
candles = functools.cache(_candles)  # the sample ticks aggregated once for this module


def test_a_step_count_over_the_schedule_is_capped_at_its_t_and_the_predictor_still_refuses_it() -> None:
    pred = Predictor.load(MODEL)
    assert pred.max_steps == pred.model.schedule.steps == 200
    assert [steps_for(pred, s) for s in (None, 1, 199, 200, 201, STEPS_MAX)] == [None, 1, 199, 200, 200, 200]
    assert steps_for(RandomWalkPredictor(24), STEPS_MAX) == STEPS_MAX  # no schedule: as it is
    with pytest.raises(ConfigError, match=r"1\.\.200, got 201"):  # a caller asking the model directly
        pred.forecast([_request(pred)], steps=201, samples=SAMPLES)


def _request(pred: Predictor):  # type: ignore[no-untyped-def]
    f = SymbolForecaster("EURUSD", ForecasterConfig(timeframes=("1m", "5m"), forecast_timeframes=("1m",), horizon=24))
    return next(
        r for c in candles() if (o := f.on_candle(c)).due and (r := f.request(o, pred.context_spec)) is not None
    )


@pytest.mark.parametrize(
    ("configured", "warned"),
    [
        ({"FOREXD_FORECAST_STEPS": 500}, ["FOREXD_FORECAST_STEPS=500"]),
        (
            {"FOREXD_FORECAST_STEPS": 500, "FOREXD_FORECAST_MIN_STEPS": 300},
            ["FOREXD_FORECAST_STEPS=500", "FOREXD_FORECAST_MIN_STEPS=300"],
        ),
        ({"FOREXD_FORECAST_STEPS": None, "FOREXD_FORECAST_MIN_STEPS": 201}, ["FOREXD_FORECAST_MIN_STEPS=201"]),
        ({"FOREXD_FORECAST_STEPS": 200, "FOREXD_FORECAST_MIN_STEPS": 10}, []),
        ({"FOREXD_FORECAST_STEPS": None}, []),
    ],
)
def test_the_model_book_says_once_when_a_setting_is_over_a_loaded_models_schedule(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, configured: dict[str, int | None], warned: list[str]
) -> None:
    shutil.copytree(MODEL, tmp_path / MODEL.name)
    book = ModelBook(None, horizon=24, model_dir=tmp_path, sampling_steps=configured)
    with caplog.at_level(logging.WARNING, logger="retraining.serving"):
        first = book.predictor("EURUSD", "1m")
        book.refresh()
        assert book.predictor("EURUSD", "1m") is first  # loaded once
    capped = [r.getMessage() for r in caplog.records if "model.steps_capped" in r.getMessage()]
    assert capped == [f"model.steps_capped version={first.version} {w} model_max=200" for w in warned]


@pytest.mark.asyncio
async def test_a_worker_configured_over_the_models_schedule_forecasts_with_the_models_t(tmp_path: Path) -> None:
    pred = Predictor.load(MODEL)
    f = SymbolForecaster("EURUSD", ForecasterConfig(timeframes=("1m", "5m"), forecast_timeframes=("1m",), horizon=24))
    cs, due = [], 0
    for c in candles():  # up to the third forecast: each samples 200 steps
        cs.append(c)
        due += (o := f.on_candle(c)).due and f.request(o, pred.context_spec) is not None
        if due == 3:
            break
    # valid settings (1..1000), over the bundled model's T = 200
    sent, _ = await _run(tmp_path, cs, forecast_samples=SAMPLES, forecast_steps=STEPS_MAX)
    records = [json.loads(v) for _k, v in sent]
    assert len(records) == 3, "before: every forecast failed (sampling steps must be in 1..200, got 1000)"
    assert {(r["model_version"], r["steps"], r["samples"]) for r in records} == {(pred.version, 200, SAMPLES)}
