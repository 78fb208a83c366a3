"""The first lookup of a series runs off the event loop: it asks the registry and may load the
series' model, and with the first model the worker imports torch (over a second of CPU; a worker
serving only the random walk never imports it). On the loop thread that stalled every agent
of the worker, heartbeats included. A broken torch install is that model's refusal, not a
series left without forecasts."""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from forex_diffusion.forecast.forecaster import RandomWalkPredictor
from retraining.serving import ModelBook
from streams.agents.book import serving_models
from tests.unit.retraining.test_global_routing import fake_model


def _book(tmp_path: Path, rejected: list[str]) -> tuple[ModelBook, Path]:
    models = tmp_path / "models"
    own = fake_model(models, None, "20260101T000000000000Z-cccccccc", symbol="GBPUSD")
    return ModelBook(None, horizon=24, model_dir=models, on_rejected=lambda v, e: rejected.append(v)), own


def test_a_first_lookup_loads_its_model_off_the_loop_and_a_known_series_stays_on_it(tmp_path: Path) -> None:
    book, own = _book(tmp_path, [])
    threads: list[tuple[str, bool]] = []  # (symbol, looked up on the loop's thread)
    lookup = book.predictor

    def recorded(symbol: str, timeframe: str) -> Any:
        threads.append((symbol, threading.current_thread() is threading.main_thread()))
        return lookup(symbol, timeframe)

    book.predictor = recorded  # type: ignore[method-assign]
    agent = SimpleNamespace(models=book)
    series = {("GBPUSD", "1m"), ("EURUSD", "1m")}
    first = asyncio.run(serving_models(agent, series))  # type: ignore[arg-type]  # the loop runs on this thread
    again = asyncio.run(serving_models(agent, series))  # type: ignore[arg-type]
    assert first[("GBPUSD", "1m")].version == own.stem  # its model, loaded
    assert isinstance(first[("EURUSD", "1m")], RandomWalkPredictor)
    assert again == first
    assert threads == [("EURUSD", False), ("GBPUSD", False), ("EURUSD", True), ("GBPUSD", True)]


def test_a_model_whose_code_cannot_be_imported_is_refused_and_the_series_gets_the_random_walk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    rejected: list[str] = []
    book, own = _book(tmp_path, rejected)
    monkeypatch.setitem(sys.modules, "forex_diffusion.diffusion.predictor", None)  # import raises ImportError
    with caplog.at_level(logging.ERROR, logger="retraining.serving"):
        got = asyncio.run(serving_models(SimpleNamespace(models=book), {("GBPUSD", "1m")}))  # type: ignore[arg-type]
    assert isinstance(got[("GBPUSD", "1m")], RandomWalkPredictor)
    assert rejected == [own.stem] and own.stem in book.rejected
    said = [r for r in caplog.records if "model.rejected" in r.getMessage()]
    assert len(said) == 1 and said[0].exc_info is not None  # what failed to import, with its traceback
