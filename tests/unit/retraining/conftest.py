"""Fixtures of the retraining tests: real hourly EUR/USD candles in a database, tiny job settings."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
import torch

from forex_diffusion.diffusion import ContextSpec, TrainConfig, TrainResult, train
from forex_diffusion.domain import Candle
from forex_diffusion.ingest.readers import read_candles
from forex_diffusion.quality.trigger import RetrainRequest
from forex_diffusion.storage import make_engine, upsert_candles
from forex_diffusion.timeframes import Timeframe, datetime_to_ms
from retraining.jobs import JobConfig
from retraining.policy import PromotionPolicy

from ...realdata import DATA, require

HOURLY = DATA / "lean_oanda_eurusd_h1_2007_2017.csv.gz"
HORIZON = 12

#: Training settings that run in a few seconds on 2 cores.
TINY_TRAIN: dict[str, object] = dict(
    context={"window": 16, "warmup": 12},
    width=32,
    cond_width=32,
    blocks=1,
    max_steps=20,
    eval_every=10,
    batch_size=128,
    val_windows=32,
    val_samples=16,
    calib_windows=64,
    test_windows=64,
    sample_steps=4,
    samples=32,
    device="cpu",
    max_minutes=1.0,
)


def ms(y: int, m: int, d: int) -> int:
    """Epoch ms of a UTC date."""
    return datetime_to_ms(datetime(y, m, d, tzinfo=UTC))


def tiny_job(**kw: object) -> JobConfig:
    """Job settings: 2,400 training + 240 hold-out hourly candles, lenient first promotion."""
    base: dict[str, object] = dict(
        horizon=HORIZON,
        train=TINY_TRAIN,
        train_candles=2400,
        holdout_candles=240,
        warmup_candles=200,
        eval_every=4,
        eval_samples=32,
        policy=PromotionPolicy(min_improvement=0.005, min_skill_vs_rw=-0.05, coverage90_bounds=(0.6, 1.0)),
    )
    base.update(kw)
    return JobConfig(**base)  # type: ignore[arg-type]


def request(request_id: str = "r1", **kw: object) -> RetrainRequest:
    """A manual request for EURUSD/1h/12."""
    base: dict[str, object] = dict(
        request_id=request_id, symbol="EURUSD", timeframe="1h", horizon=HORIZON, reason="manual", requested_at_ms=0
    )
    base.update(kw)
    return RetrainRequest(**base)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def hourly_candles() -> list[Candle]:
    """Hourly EUR/USD bid candles 2015-10 .. 2016-06 (real data)."""
    return load_hourly_candles()


def load_hourly_candles() -> list[Candle]:
    """The candles of :func:`hourly_candles` (from the bundled hourly file)."""
    require(HOURLY.name)  # a bundled file: absent, the test fails
    frame = read_candles(HOURLY, symbol="EURUSD", price="bid").frame
    frame = frame[(frame["ts_ms"] >= ms(2015, 10, 1)) & (frame["ts_ms"] < ms(2016, 7, 1))]
    tf = Timeframe.parse("1h")
    return [
        Candle(
            symbol="EURUSD",
            timeframe="1h",
            open_ms=int(r.ts_ms),
            close_ms=tf.end_of(int(r.ts_ms)),
            open=float(r.open),
            high=float(r.high),
            low=float(r.low),
            close=float(r.close),
        )
        for r in frame.itertuples()
    ]


@pytest.fixture
def sqlite_db(tmp_path: Path, hourly_candles: list[Candle]) -> str:
    """A SQLite file holding the hourly candles."""
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    eng = make_engine(url)
    upsert_candles(eng, hourly_candles)
    eng.dispose()
    return url


@pytest.fixture(scope="session")
def tiny_checkpoint(hourly_candles: list[Candle], tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    """One tiny model trained on real hourly data (copied into many registry versions)."""
    import pandas as pd

    torch.set_num_threads(2)
    frame = pd.DataFrame(
        {
            "ts_ms": [c.open_ms for c in hourly_candles],
            "open": [c.open for c in hourly_candles],
            "high": [c.high for c in hourly_candles],
            "low": [c.low for c in hourly_candles],
            "close": [c.close for c in hourly_candles],
        }
    ).iloc[:2400]
    cfg = TrainConfig.from_dict({**TINY_TRAIN, "symbol": "EURUSD", "timeframe": "1h", "horizon": HORIZON})
    assert isinstance(cfg.context, ContextSpec)
    return train(cfg, frame, tmp_path_factory.mktemp("tiny"))


def stage_copy(result: TrainResult, dest: Path, version: str) -> Path:
    """Copy the tiny checkpoint to ``dest/<version>.pt`` with its manifest renamed to ``version``."""
    dest.mkdir(parents=True, exist_ok=True)
    pt = dest / f"{version}.pt"
    shutil.copyfile(result.checkpoint, pt)
    manifest = json.loads(result.checkpoint.with_suffix(".json").read_text())
    manifest["version"] = version
    manifest["file"] = pt.name
    pt.with_suffix(".json").write_text(json.dumps(manifest))
    return pt
