"""``forexd indicators``: real candle files in, TA-Lib-equal columns out."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from streams.cli import app

from ...realdata import require

talib = pytest.importorskip("talib", reason="ta-lib is a test dependency")

DEFAULT_COLUMNS = [
    "sma_20",
    "ema_20",
    "rsi_14",
    "atr_14",
    "bb_lower_20",
    "bb_middle_20",
    "bb_upper_20",
    "macd_12_26",
    "macd_signal_9",
    "macd_hist_12_26_9",
    "donchian_upper_20",
    "donchian_lower_20",
    "keltner_lower_20",
    "keltner_middle_20",
    "keltner_upper_20",
    "stoch_k_14",
    "stoch_d_3",
    "adx_14",
    "hurst_100",
]


@pytest.fixture()
def h1_slice(tmp_path: Path) -> Path:
    src = require("lean_oanda_eurusd_h1_2007_2017.csv.gz")
    with gzip.open(src, "rt") as fh:
        lines = [next(fh) for _ in range(1501)]
    out = tmp_path / "lean_oanda_eurusd_h1_slice.csv"
    out.write_text("".join(lines))
    return out


def test_default_columns_equal_talib_on_bid_side(h1_slice: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.csv"
    res = CliRunner().invoke(app, ["indicators", str(h1_slice), "-o", str(out), "--price", "bid"])
    assert res.exit_code == 0, res.output
    df = pd.read_csv(out)
    assert list(df.columns) == ["ts_ms", "symbol", "open", "high", "low", "close", "volume", *DEFAULT_COLUMNS]
    assert len(df) == 1500 and (df["symbol"] == "EURUSD").all()
    raw = pd.read_csv(h1_slice)
    np.testing.assert_array_equal(df["close"], raw["bid_close"])
    c, h, lo = df["close"].to_numpy(), df["high"].to_numpy(), df["low"].to_numpy()
    np.testing.assert_allclose(df["rsi_14"], talib.RSI(c, 14), atol=1e-9, equal_nan=True)
    np.testing.assert_allclose(df["adx_14"], talib.ADX(h, lo, c, 14), atol=1e-9, equal_nan=True)
    np.testing.assert_allclose(df["macd_signal_9"], talib.MACD(c)[1], atol=1e-9, equal_nan=True)
    # empty while warming up, then always present
    assert df["sma_20"].isna().sum() == 19 and df["adx_14"].isna().sum() == 27
    assert df["hurst_100"].isna().sum() == 100 and df[DEFAULT_COLUMNS].iloc[100:].notna().all().all()


def test_spec_and_only_ready_and_generic_layout(tmp_path: Path) -> None:
    src = require("backtesting-0.6.6_EURUSD_h1.csv")
    raw = pd.read_csv(src).iloc[:400]
    generic = tmp_path / "generic.csv"
    pd.DataFrame(
        {
            "timestamp": raw.iloc[:, 0],
            "symbol": "EURUSD",
            "open": raw.Open,
            "high": raw.High,
            "low": raw.Low,
            "close": raw.Close,
            "volume": raw.Volume,
        }
    ).to_csv(generic, index=False)
    out = tmp_path / "out.csv"
    res = CliRunner().invoke(app, ["indicators", str(generic), "-o", str(out), "--spec", "ema_10,rv_5", "--only-ready"])
    assert res.exit_code == 0, res.output
    df = pd.read_csv(out)
    assert list(df.columns)[-2:] == ["ema_10", "rv_5"]
    ema = talib.EMA(raw.Close.to_numpy(), 10)
    first_ready = df["ema_10"].first_valid_index()
    assert first_ready > 9  # defined at bar 9, ready only once the seed weighs <= 1e-6
    np.testing.assert_allclose(df["ema_10"][first_ready:], ema[first_ready:], atol=1e-12)


def test_bad_spec_is_a_clean_error(h1_slice: Path) -> None:
    res = CliRunner().invoke(app, ["indicators", str(h1_slice), "--spec", "sma_20,wobble_3"])
    assert res.exit_code == 2
    assert "unknown indicator 'wobble'" in res.output
