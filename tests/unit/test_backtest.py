"""Walk-forward backtest: deterministic CSV, same forecasts as the per-candle agent path, CLI."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from forex_diffusion.diffusion import ContextSpec, Predictor, TrainConfig, train
from forex_diffusion.domain import Candle
from forex_diffusion.errors import ConfigError
from forex_diffusion.ingest.readers import read_candles
from forex_diffusion.reports.backtest import (
    BACKTEST_COLUMNS,
    BacktestConfig,
    backtest,
    parse_utc_date,
    write_backtest_csv,
)
from forex_diffusion.timeframes import datetime_to_ms
from streams.cli import app

from ..realdata import DATA, require

HOURLY = DATA / "lean_oanda_eurusd_h1_2007_2017.csv.gz"
HOUR = 3_600_000


def ms(y: int, m: int, d: int) -> int:
    return datetime_to_ms(datetime(y, m, d, tzinfo=UTC))


@pytest.fixture(scope="module")
def hourly() -> pd.DataFrame:
    require(HOURLY.name)  # a bundled file: absent, the test fails
    f = read_candles(HOURLY, symbol="EURUSD", price="mid").frame
    return f[(f.ts_ms >= ms(2016, 1, 1)) & (f.ts_ms < ms(2016, 7, 1))].reset_index(drop=True)


@pytest.fixture(scope="module")
def model_path(hourly: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.set_num_threads(2)
    cfg = TrainConfig(
        symbol="EURUSD",
        timeframe="1h",
        horizon=6,
        context=ContextSpec(window=12, warmup=12),
        width=32,
        cond_width=32,
        blocks=1,
        max_steps=40,
        eval_every=20,
        batch_size=128,
        val_windows=64,
        val_samples=16,
        calib_windows=128,
        test_windows=64,
        sample_steps=4,
        samples=32,
        device="cpu",
        split=(ms(2016, 4, 1), ms(2016, 5, 15)),
    )
    return train(cfg, hourly, tmp_path_factory.mktemp("bt_models")).checkpoint


def _csv(rows: pd.DataFrame) -> str:
    buf = io.StringIO()
    write_backtest_csv(rows, buf)
    return buf.getvalue()


def test_same_backtest_twice_gives_byte_identical_csv(hourly: pd.DataFrame, model_path: Path) -> None:
    cfg = BacktestConfig(symbol="EURUSD", timeframe="1h", from_ms=ms(2016, 6, 1), every=5)
    a = _csv(backtest(hourly, Predictor.load(model_path), cfg))
    b = _csv(backtest(hourly, Predictor.load(model_path), cfg))
    assert a == b and a.splitlines()[0] == ",".join(BACKTEST_COLUMNS)
    assert len(a.splitlines()) > 100


def test_backtest_rows_equal_an_agent_style_forecast_at_the_same_as_of(hourly: pd.DataFrame, model_path: Path) -> None:
    pred = Predictor.load(model_path)
    cfg = BacktestConfig(symbol="EURUSD", timeframe="1h", from_ms=ms(2016, 6, 1), to_ms=ms(2016, 6, 10))
    rows = backtest(hourly, pred, cfg)
    target = int(rows["as_of"].iloc[6 * 40])  # some as_of in the middle of a batch
    # the agent: one context fed candle by candle, one forecast on the candle that closes at as_of
    ctx = pred.new_context("EURUSD", "1h")
    fc = None
    for t, o, h, lo, c in zip(hourly.ts_ms, hourly.open, hourly.high, hourly.low, hourly.close, strict=True):
        ctx.update(
            Candle(
                symbol="EURUSD", timeframe="1h", open_ms=int(t), close_ms=int(t) + HOUR, open=o, high=h, low=lo, close=c
            )
        )
        if int(t) + HOUR == target:
            req = ctx.request(target)
            assert req is not None
            fc = pred.forecast([req])[0]
            break
    assert fc is not None
    mine = rows[rows["as_of"] == target].sort_values("step")
    qcols = [c for c in BACKTEST_COLUMNS if c.startswith("q")]
    np.testing.assert_allclose(mine[qcols].to_numpy(), fc.quantiles, rtol=1e-6, atol=0)
    np.testing.assert_allclose(mine["p_up"].to_numpy(), fc.p_up, atol=1e-12)


def test_realized_rw_and_window_bounds(hourly: pd.DataFrame, model_path: Path) -> None:
    pred = Predictor.load(model_path)
    start = ms(2016, 6, 27)
    rows = backtest(hourly, pred, BacktestConfig(symbol="EURUSD", timeframe="1h", from_ms=start, every=3))
    as_of = rows["as_of"].unique()
    closes = dict(zip((hourly.ts_ms + HOUR).tolist(), hourly.close.tolist(), strict=True))
    ordered = sorted(closes)
    positions = np.array([ordered.index(int(t)) for t in as_of])
    assert as_of.min() >= start and ordered[positions[0] - 1] < start  # first due candle at/after --from
    assert np.all(np.diff(positions) == 3)  # every third candle
    first = rows[rows["as_of"] == as_of[0]]
    pos = int(positions[0])
    assert first["realized"].tolist() == [closes[ordered[pos + k]] for k in range(1, 7)]
    assert first["rw_q50"].tolist() == [closes[int(as_of[0])]] * 6  # the RW median is the last close
    last = rows[rows["as_of"] == as_of[-1]]
    assert last["realized"].isna().any()  # the file ends before the horizon does
    assert (rows["q05"] <= rows["q95"]).all()


def test_backtest_config_refuses_bad_values() -> None:
    with pytest.raises(ConfigError):
        BacktestConfig(symbol="EURUSD", timeframe="1h", every=0)
    with pytest.raises(ConfigError):
        BacktestConfig(symbol="EURUSD", timeframe="1h", from_ms=2, to_ms=1)
    with pytest.raises(ConfigError):
        parse_utc_date("yesterday")


def test_cli_backtest_writes_csv_and_prints_a_summary(model_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "bt.csv"
    res = CliRunner().invoke(
        app,
        [
            "backtest",
            str(HOURLY),
            "--symbol",
            "EURUSD",
            "--timeframe",
            "1h",
            "--model",
            str(model_path),
            "--from",
            "2016-06-20",
            "--to",
            "2016-06-24",
            "--every",
            "2",
            "-o",
            str(out),
            "--plot",
            str(tmp_path / "fan.png"),
        ],
    )
    assert res.exit_code == 0, res.output
    rows = pd.read_csv(out)
    assert list(rows.columns) == list(BACKTEST_COLUMNS)
    assert rows["as_of"].min() >= ms(2016, 6, 20) and rows["as_of"].max() <= ms(2016, 6, 24)
    assert "skill" in res.output and "cover90" in res.output
    png = (tmp_path / "fan.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and b"IDAT" in png and b"IEND" in png
    bad = CliRunner().invoke(
        app,
        [
            "backtest",
            str(HOURLY),
            "--symbol",
            "EURUSD",
            "--timeframe",
            "1h",
            "--model",
            str(tmp_path / "missing.pt"),
            "-o",
            str(out),
        ],
    )
    assert bad.exit_code == 2 and "not found" in bad.output
