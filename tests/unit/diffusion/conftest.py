"""Fixtures of the diffusion tests: real hourly EUR/USD and a tiny model trained on it."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pytest
import torch

from forex_diffusion.diffusion import ContextSpec, Predictor, TrainConfig, TrainResult, train
from forex_diffusion.ingest.readers import read_candles
from forex_diffusion.timeframes import datetime_to_ms

from ...realdata import DATA, require

HOURLY = DATA / "lean_oanda_eurusd_h1_2007_2017.csv.gz"


def ms(y: int, m: int, d: int) -> int:
    """Epoch ms of a UTC date."""
    return datetime_to_ms(datetime(y, m, d, tzinfo=UTC))


@pytest.fixture(scope="session")
def hourly() -> pd.DataFrame:
    """Hourly EUR/USD mid candles 2015-07 .. 2016-06 (real data)."""
    require(HOURLY.name)  # a bundled file: absent, the test fails
    frame = read_candles(HOURLY, symbol="EURUSD", price="mid").frame
    sel = (frame["ts_ms"] >= ms(2015, 7, 1)) & (frame["ts_ms"] < ms(2016, 7, 1))
    return frame[sel].reset_index(drop=True)


def tiny_config(**kw: object) -> TrainConfig:
    """A config that trains in a few seconds on 2 cores."""
    base: dict[str, object] = dict(
        symbol="EURUSD",
        timeframe="1h",
        horizon=12,
        context=ContextSpec(window=16, warmup=12),
        width=32,
        cond_width=32,
        blocks=1,
        max_steps=60,
        eval_every=30,
        batch_size=128,
        val_windows=64,
        val_samples=16,
        calib_windows=128,
        test_windows=128,
        sample_steps=4,
        samples=32,
        device="cpu",
        split=(ms(2016, 3, 1), ms(2016, 5, 1)),
        max_minutes=2.0,
    )
    base.update(kw)
    return TrainConfig(**base)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def tiny_model(hourly: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    """A tiny model trained for 60 steps on real hourly data."""
    torch.set_num_threads(2)
    return train(tiny_config(), hourly, tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session")
def predictor(tiny_model: TrainResult) -> Predictor:
    """The tiny model, loaded from its checkpoint."""
    return Predictor.load(tiny_model.checkpoint)
