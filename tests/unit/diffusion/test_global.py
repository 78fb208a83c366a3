"""Global models: windows per series, one split by time for all, manifest, embedding, CLI."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from forex_diffusion.diffusion import Predictor, TrainConfig, train
from forex_diffusion.diffusion.training import _pooled_windows, _split, _windows
from forex_diffusion.domain import Candle
from forex_diffusion.ingest.readers import read_candle_series
from forex_diffusion.instruments import symbol_set_key
from forex_diffusion.timeframes import Timeframe
from streams.cli import app

from ...realdata import DATA
from .conftest import ms, tiny_config

DAILY = DATA / "lean_oanda_d1_4pairs.csv.gz"
TWO = symbol_set_key(["EURUSD", "GBPUSD"])
DAY = Timeframe.parse("1d")


def two_series(hourly: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Two series over different spans: the first ~7 months as EURUSD, the last ~9 (prices x1.5) as GBPUSD."""
    a = hourly[hourly["ts_ms"] < ms(2016, 2, 1)].reset_index(drop=True)
    b = hourly[hourly["ts_ms"] >= ms(2015, 10, 1)].reset_index(drop=True).copy()
    for c in ("open", "high", "low", "close"):
        b[c] = b[c] * 1.5
    return {"EURUSD": a, "GBPUSD": b}


def global_config(**kw: object) -> TrainConfig:
    config: TrainConfig = replace(tiny_config(), symbol=TWO, series=("EURUSD", "GBPUSD"), **kw)
    return config


def test_pooled_windows_are_each_series_own_windows_and_never_cross(hourly: pd.DataFrame) -> None:
    frames = two_series(hourly)
    config = global_config()
    pooled = _pooled_windows(frames, config, None)
    assert pooled.series is not None
    for i, name in enumerate(config.series):
        own = _windows(frames[name], config, None)
        mine = pooled.take(np.flatnonzero(pooled.series == i))
        # exactly the windows of that series alone: same features, targets, times
        for field in ("cond", "target", "cum", "sigma", "origin_ms", "end_ms"):
            np.testing.assert_array_equal(getattr(mine, field), getattr(own, field))
        close_ms = frames[name]["ts_ms"].to_numpy() + 3_600_000
        assert np.isin(mine.origin_ms, close_ms).all() and np.isin(mine.end_ms, close_ms).all()
    # series A ends 2016-02-01: none of its windows reaches past its own last candle
    assert pooled.end_ms[pooled.series == 0].max() <= ms(2016, 2, 1)


def test_split_cuts_every_series_at_the_same_dates(hourly: pd.DataFrame) -> None:
    frames = two_series(hourly)
    config = global_config(split=(ms(2016, 1, 4), ms(2016, 1, 25)))
    d1, d2 = config.split  # type: ignore[misc]
    tr, va, te, dates = _split(_pooled_windows(frames, config, None), config)
    assert dates == (d1, d2)
    for i in (0, 1):
        t, v, s = (w.take(np.flatnonzero(w.series == i)) for w in (tr, va, te))
        assert len(t) and len(v) and t.end_ms.max() <= d1 and v.origin_ms.min() >= d1 and v.end_ms.max() <= d2
        if len(s):
            assert s.origin_ms.min() >= d2
        # the same windows a per-series split of that series gives
        own = replace(tiny_config(), split=(d1, d2))
        t1, v1, _, _ = _split(_windows(frames[config.series[i]], own, None), own)
        np.testing.assert_array_equal(t.origin_ms, t1.origin_ms)
        np.testing.assert_array_equal(v.origin_ms, v1.origin_ms)


def test_global_config_needs_the_set_key_and_distinct_series() -> None:
    with pytest.raises(Exception, match="symbol set's key"):
        replace(tiny_config(), series=("EURUSD", "GBPUSD"))
    with pytest.raises(Exception, match="repeat"):
        replace(tiny_config(), symbol=TWO, series=("EURUSD", "GBPUSD", "EURUSD"))
    with pytest.raises(Exception, match="several series"):
        replace(tiny_config(), series_embedding=4)


def test_global_model_manifest_round_trip_and_embedding(hourly: pd.DataFrame, tmp_path: Path) -> None:
    torch.set_num_threads(2)
    config = global_config(split=(ms(2016, 1, 4), ms(2016, 1, 25)), max_steps=30, series_embedding=4)
    result = train(config, two_series(hourly), tmp_path)
    assert result.checkpoint.parent.name == f"{TWO}-1h-h12"
    m = result.manifest
    assert m["symbols"] == ["EURUSD", "GBPUSD"] and m["series"] == ["EURUSD", "GBPUSD"]
    assert m["series_embedding"] == 4
    assert TrainConfig.from_dict(m["train_config"]) == config
    by_series = result.metrics["test_series"]  # scored per series (A's test span is one week)
    assert set(by_series) == {"EURUSD", "GBPUSD"} and 0 < by_series["EURUSD"]["n"] < by_series["GBPUSD"]["n"]
    pred = Predictor.load(result.checkpoint)
    assert pred.symbols == {"EURUSD", "GBPUSD"}
    assert [pred.series_index(s) for s in ("EURUSD", "GBPUSD", "USDJPY")] == [0, 1, -1]
    model = pred.model
    d = model.config.denoiser.cond_dim
    cond = torch.randn(1, d)
    noise = torch.randn(1, 8, 12)
    out = {i: model.sample(cond, noise, 4, torch.tensor([i])) for i in (0, 1, -1)}
    assert not torch.allclose(out[0], out[1])  # the embedding conditions the sampler
    torch.testing.assert_close(out[-1], model.sample(cond, noise, 4))  # unknown series: zero vector


def daily(*args: str, tmp: Path) -> list[str]:
    return [
        "train",
        *args,
        "--timeframe",
        "1d",
        "--horizon",
        "5",
        "--split",
        "2015-01-01,2016-01-01",
        "--until",
        "2017-01-01",
        "--max-steps",
        "4",
        "--window",
        "12",
        "--width",
        "16",
        "--blocks",
        "1",
        "--calib-windows",
        "64",
        "--model-dir",
        str(tmp),
        "--device",
        "cpu",
    ]


def test_cli_symbol_list_trains_one_model_that_forecasts_both(tmp_path: Path) -> None:
    res = CliRunner().invoke(
        app, daily(str(DAILY), "--symbol", "EURUSD,GBPUSD", "--series-embedding", "4", tmp=tmp_path / "m")
    )
    assert res.exit_code == 0, res.output
    path = Path(res.output.strip().splitlines()[-1])
    assert path.parent.name == f"{TWO}-1d-h5"
    pred = Predictor.load(path)
    assert pred.series == ("EURUSD", "GBPUSD")
    for sym in ("EURUSD", "GBPUSD"):
        frame = read_candle_series(DAILY, symbol=sym, timeframe="1d").frame
        ctx = pred.new_context(sym, "1d")
        for r in frame.tail(60).itertuples():
            ctx.update(
                Candle(
                    symbol=sym,
                    timeframe="1d",
                    open_ms=int(r.ts_ms),
                    close_ms=DAY.end_of(int(r.ts_ms)),
                    open=float(r.open),
                    high=float(r.high),
                    low=float(r.low),
                    close=float(r.close),
                )
            )
        req = ctx.request()
        assert req is not None
        fc = pred.forecast([req])[0]
        assert fc.symbol == sym and np.isfinite(fc.quantiles).all()
        assert abs(fc.quantile(0.5)[0] / float(frame["close"].iloc[-1]) - 1) < 0.05  # its own price scale
    # a global model serves only its symbols in backtest
    out = tmp_path / "bt.csv"
    res = CliRunner().invoke(
        app, ["backtest", str(DAILY), "--symbol", "NZDUSD", "--timeframe", "1d", "--model", str(path), "-o", str(out)]
    )
    assert res.exit_code == 65 and "does not serve NZDUSD" in res.output and "Traceback" not in res.output
    res = CliRunner().invoke(
        app,
        [
            "backtest",
            str(DAILY),
            "--symbol",
            "GBPUSD",
            "--timeframe",
            "1d",
            "--model",
            str(path),
            "-o",
            str(out),
            "--from",
            "2018-11-01",
            "-n",
            "8",
        ],
    )
    assert res.exit_code == 0, res.output
    assert set(pd.read_csv(out)["symbol"]) == {"GBPUSD"}


def test_cli_all_and_several_files_name_series_by_symbol_and_file(tmp_path: Path) -> None:
    copy = tmp_path / "fxcm_copy.csv.gz"
    shutil.copy(DAILY, copy)
    res = CliRunner().invoke(app, daily(str(DAILY), str(copy), "--symbol", "EURUSD", tmp=tmp_path / "m"))
    assert res.exit_code == 0, res.output
    manifest = json.loads(Path(res.output.strip().splitlines()[-1]).with_suffix(".json").read_text())
    assert manifest["series"] == ["EURUSD@lean_oanda_d1_4pairs", "EURUSD@fxcm_copy"]
    assert manifest["symbols"] == ["EURUSD"] and manifest["symbol"] == symbol_set_key(["EURUSD"])
    res = CliRunner().invoke(app, daily(str(DAILY), "--symbol", "all", tmp=tmp_path / "m"))
    assert res.exit_code == 0, res.output
    manifest = json.loads(Path(res.output.strip().splitlines()[-1]).with_suffix(".json").read_text())
    assert manifest["series"] == ["EURGBP", "EURUSD", "GBPUSD", "NZDUSD"]


def test_cli_selection_errors_are_one_line(tmp_path: Path) -> None:
    # a symbol the multi-symbol file does not hold: refused, never a mixture
    res = CliRunner().invoke(app, daily(str(DAILY), "--symbol", "EURUSD,XAUUSD", tmp=tmp_path / "m"))
    assert res.exit_code != 0 and "holds no XAUUSD candles" in res.output
    assert "Traceback" not in res.output and len(res.output.strip().splitlines()) == 1
    res = CliRunner().invoke(
        app, daily(str(DAILY), "--symbol", "EURUSD", "--series-embedding", "4", tmp=tmp_path / "m")
    )
    assert res.exit_code == 2 and "needs a global model" in res.output
    assert not (tmp_path / "m").exists()
    # a huge embedding width was a traceback (cannot allocate); it is a usage error before reading
    res = CliRunner().invoke(
        app, daily(str(DAILY), "--symbol", "all", "--series-embedding", "100000000", tmp=tmp_path / "m")
    )
    assert res.exit_code == 2 and "--series-embedding must be in [0, 1024]" in res.output, res.output
    assert not (tmp_path / "m").exists()


def test_cli_symbol_list_on_a_file_without_a_symbol_column_is_refused(tmp_path: Path) -> None:
    # such a file's rows take whatever symbol is asked for: EURUSD,GBPUSD trained two copies of
    # the EURUSD rows, one of them named GBPUSD (and served to GBPUSD series)
    f = read_candle_series(DAILY, symbol="EURUSD", timeframe="1d").frame
    plain = tmp_path / "vendor_eurusd_d1.csv"
    f[["ts_ms", "open", "high", "low", "close"]].to_csv(plain, index=False)
    res = CliRunner().invoke(app, daily(str(plain), "--symbol", "EURUSD,GBPUSD", tmp=tmp_path / "m"))
    assert res.exit_code == 65 and "holds no GBPUSD candles (it holds EURUSD)" in res.output, res.output
    assert len(res.output.strip().splitlines()) == 1 and not (tmp_path / "m").exists()
    # the same file twice trained a "global" model over two copies of one series
    res = CliRunner().invoke(app, daily(str(DAILY), str(DAILY), "--symbol", "EURUSD", tmp=tmp_path / "m"))
    assert res.exit_code == 2 and "given twice" in res.output, res.output
    assert not (tmp_path / "m").exists()
