"""A retrain job reads its candles as the stream's other readers do: a stored row the stream
could not have written is skipped and counted, never trained on.

Before, ``_fetch_stage`` read the candles table unchecked: a row written by hand or by an older
version with an infinite or zero price, or high below low, went into the challenger's training frame
(NaN returns, a log of 0) and its hold-out.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import numpy as np
import pytest

from forex_diffusion.domain import Candle
from forex_diffusion.storage import make_engine
from retraining.jobs import _fetch_stage, _Job, key_of
from retraining.registry import ModelRegistry

from .conftest import request, tiny_job


@pytest.mark.parametrize(
    ("column", "value", "reason"),
    [("close", "1e999", "non_finite"), ("low", "0", "non_positive"), ("high", "0.5", "inconsistent")],
)
def test_a_stored_row_the_stream_could_not_have_written_is_skipped_and_counted(
    sqlite_db: str, hourly_candles: list[Candle], tmp_path: Path, column: str, value: str, reason: str
) -> None:
    cfg = tiny_job()
    n = cfg.train_candles + cfg.holdout_candles
    victim = hourly_candles[-10]  # inside the window the job reads
    path = sqlite_db.removeprefix("sqlite:///")
    with sqlite3.connect(path) as con:
        changed = con.execute(
            f"UPDATE candles SET {column} = CAST(? AS REAL) WHERE symbol = ? AND timeframe = ? AND open_ms = ?",  # noqa: S608 - a parameter name
            (value, victim.symbol, victim.timeframe, victim.open_ms),
        ).rowcount
    assert changed == 1
    engine = make_engine(sqlite_db)
    job = _Job(
        request=request("f1"),
        key=key_of(request("f1"), cfg.horizon),
        cfg=cfg,
        engine=engine,
        reg=ModelRegistry(engine, tmp_path / "m"),
        t0=time.monotonic(),
    )
    frame, hold = _fetch_stage(job, cfg.train_config("EURUSD", "1h", cfg.horizon))
    assert victim.open_ms not in set(frame["ts_ms"].tolist())
    assert len(frame) == n - 1 and hold == len(frame) - cfg.holdout_candles
    assert np.isfinite(frame[["open", "high", "low", "close"]].to_numpy()).all()
    assert (frame["high"] >= frame["low"]).all() and (frame["low"] > 0).all()
    skipped = job.metrics["data"]["skipped"]
    assert skipped == {reason: 1}, skipped
