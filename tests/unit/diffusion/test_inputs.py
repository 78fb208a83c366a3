"""Named model inputs (indicators, higher timeframes, other pairs): one builder for training,
backtest and the stream; no look-ahead; manifest round trip; refusal of incomplete requests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from forex_diffusion.bundled import MODELS
from forex_diffusion.diffusion import Predictor, TrainResult, train
from forex_diffusion.diffusion.inputs import (
    CrossBook,
    InputsBuilder,
    InputSpec,
    build_extra,
    build_extra_frame,
    frame_candles,
)
from forex_diffusion.errors import ConfigError, ModelError
from forex_diffusion.forecast.forecaster import ForecasterConfig, SymbolForecaster
from forex_diffusion.ingest.readers import read_candle_series
from forex_diffusion.reports.backtest import BacktestConfig, backtest

from ...realdata import DATA
from .conftest import ms, tiny_config

HOURLY = DATA / "lean_oanda_eurusd_h1_2007_2017.csv.gz"
DAILY = DATA / "lean_oanda_d1_4pairs.csv.gz"
Q = ["q05", "q10", "q20", "q30", "q40", "q50", "q60", "q70", "q80", "q90", "q95"]


@pytest.fixture(scope="module")
def h1() -> pd.DataFrame:
    frame = read_candle_series(HOURLY, symbol="EURUSD", timeframe="1h").frame
    return frame.iloc[:1600].reset_index(drop=True)


@pytest.fixture(scope="module")
def d1() -> dict[str, pd.DataFrame]:
    return {s: read_candle_series(DAILY, symbol=s, timeframe="1d").frame for s in ("EURUSD", "GBPUSD", "NZDUSD")}


def test_module_examples_hold() -> None:
    import doctest

    from forex_diffusion.diffusion import inputs

    assert doctest.testmod(inputs).failed == 0


def test_spec_parses_names_and_refuses_unknown_ones() -> None:
    spec = InputSpec.parse("indicators,mtf,cross:gbpusd,NZDUSD", "1h")
    assert spec.names == ("indicators", "mtf:4h,1d", "cross:GBPUSD,NZDUSD")
    assert spec.mtf_timeframes == ("4h", "1d") and spec.cross_symbols == ("GBPUSD", "NZDUSD")
    # an alias is the canonical symbol the stream's candles carry (else the model never forecasts)
    assert InputSpec.parse("cross:eur/usd,GBP_USD", "1h").cross_symbols == ("EURUSD", "GBPUSD")
    assert len(spec.features) == 14 + 2 * 8 + 2 * 2 and len(set(spec.features)) == len(spec.features)
    assert InputSpec.parse("mtf:1h", "15m").names == ("mtf:1h",)
    for bad, tf in (("rsi", "1h"), ("cross", "1h"), ("mtf:30m", "1h"), ("mtf", "1d"), ("indicators,indicators", "1h")):
        with pytest.raises(ConfigError):
            InputSpec.parse(bad, tf)
    assert not InputSpec.parse(None, "1h") and not InputSpec.parse("", "1h")


def test_builder_online_equals_offline_on_real_hourly_data_through_a_restart(h1: pd.DataFrame) -> None:
    spec = InputSpec.parse("indicators,mtf", "1h")
    offline = build_extra_frame(h1, "EURUSD", "1h", spec)
    ready = np.isfinite(offline).all(axis=1)
    assert ready.sum() > 1000 and not ready[:250].any()  # ADX(14) needs 253 bars
    b = InputsBuilder(spec, "EURUSD")
    online = np.full_like(offline, np.nan)
    for i, c in enumerate(frame_candles(h1, "EURUSD", "1h")):
        if i == 900:  # a worker restart: the builder resumes from its plain-data snapshot
            b = InputsBuilder.restore(json.loads(json.dumps(b.snapshot(), allow_nan=False)))
        b.update(c)
        v = b.vector(c.close_ms)
        if v is not None:
            online[i] = v
    np.testing.assert_array_equal(online, offline)


def test_no_look_ahead_perturbing_the_future_leaves_earlier_inputs_unchanged(d1: dict[str, pd.DataFrame]) -> None:
    spec = InputSpec.parse("indicators,cross:GBPUSD", "1d")
    base = build_extra_frame(d1["EURUSD"], "EURUSD", "1d", spec, {"GBPUSD": d1["GBPUSD"]})
    k = 1500
    cut = int(d1["EURUSD"]["ts_ms"].iloc[k])  # the open of candle k: rows before k closed by then
    future = {}
    for s in ("EURUSD", "GBPUSD"):
        f = d1[s].copy()
        late = f["ts_ms"] >= cut
        f.loc[late, ["open", "high", "low", "close"]] *= np.linspace(0.7, 1.3, int(late.sum()))[:, None]
        future[s] = f
    moved = build_extra_frame(future["EURUSD"], "EURUSD", "1d", spec, {"GBPUSD": future["GBPUSD"]})
    np.testing.assert_array_equal(moved[:k], base[:k])
    assert np.isfinite(base[k - 1]).all()
    assert not np.allclose(moved[k + 30 :], base[k + 30 :], equal_nan=True)


def test_cross_input_needs_the_other_pair_to_reach_as_of() -> None:
    from forex_diffusion.domain import Candle

    day = 86_400_000

    def bar(sym: str, i: int, c: float) -> Candle:
        return Candle(
            symbol=sym, timeframe="1d", open_ms=i * day, close_ms=(i + 1) * day, open=c, high=c, low=c, close=c
        )

    book = CrossBook()
    spec = InputSpec.parse("cross:GBPUSD", "1d")
    b = InputsBuilder(spec, "EURUSD")
    rng = np.random.default_rng(0)
    for i in range(40):
        book.update(bar("GBPUSD", i, 1.3 + 0.01 * rng.standard_normal()))
    b.update(bar("EURUSD", 40, 1.1))
    assert b.vector(41 * day, book) is None  # GBPUSD's candle closing at as_of not seen yet
    # the book's state is strict JSON (the stored state refuses NaN) and restores exactly
    fresh = CrossBook()
    book.update(bar("USDJPY", 0, 110.0))  # one candle: its variance is still seeding
    for sym in ("GBPUSD", "USDJPY"):
        fresh.restore(sym, json.loads(json.dumps(book.snapshot(sym), allow_nan=False)))
    book = fresh
    book.update(bar("GBPUSD", 40, 1.31))
    book.update(bar("GBPUSD", 41, 1.5))  # a later one is never used for this as_of
    v = b.vector(41 * day, book)
    assert v is not None and v.shape == (2,) and np.all(np.abs(v) < 10)


def test_stream_forecaster_builds_the_same_inputs_as_the_backtest(d1: dict[str, pd.DataFrame]) -> None:
    spec = InputSpec.parse("indicators,cross:GBPUSD", "1d")
    pairs = {s: d1[s].iloc[1800:2500].reset_index(drop=True) for s in ("EURUSD", "GBPUSD")}
    offline = build_extra_frame(pairs["EURUSD"], "EURUSD", "1d", spec, {"GBPUSD": pairs["GBPUSD"]})
    cfg = ForecasterConfig(timeframes=("1d",), forecast_timeframes=("1d",), horizon=5)
    book = CrossBook()
    fcs = {s: SymbolForecaster(s, cfg, book=book) for s in pairs}
    # one batch per close time (the agent takes candles in batches and builds requests after each)
    bars = sorted((c for s in pairs for c in frame_candles(pairs[s], s, "1d")), key=lambda c: (c.close_ms, c.symbol))
    eur_index = {c.close_ms: i for i, c in enumerate(frame_candles(pairs["EURUSD"], "EURUSD", "1d"))}
    got = np.full_like(offline, np.nan)
    batch: list = []
    for n, c in enumerate(bars):
        if n == 700:  # restart of the worker: the forecasters and the book come back from their snapshots
            book = CrossBook()
            fcs = {
                s: SymbolForecaster.restore(
                    json.loads(json.dumps(f.snapshot(), allow_nan=False)), cfg, symbol=s, book=book
                )
                for s, f in fcs.items()
            }
        batch.append(fcs[c.symbol].on_candle(c))
        if n == len(bars) - 1 or bars[n + 1].close_ms != c.close_ms:
            for o in batch:
                if o.candle.symbol == "EURUSD":
                    req = fcs["EURUSD"].request(o, None, spec)
                    if req is not None:
                        got[eur_index[o.candle.close_ms]] = req.extra
            batch = []
    made = np.isfinite(got).all(axis=1)
    assert made.sum() > 350
    np.testing.assert_array_equal(got[made], offline[made])
    # the stream skipped only the warm-up: every row the backtest has, the stream made
    assert not np.isfinite(offline[~made]).all(axis=1).any()
    # a batch holding EURUSD's candle but not yet GBPUSD's: no forecast (never a stale other pair)
    e, g = (frame_candles(d1[s].iloc[2500:2501], s, "1d")[0] for s in ("EURUSD", "GBPUSD"))
    o = fcs["EURUSD"].on_candle(e)
    skipped = fcs["EURUSD"].inputs_skipped
    assert o.due and fcs["EURUSD"].request(o, None, spec) is None and fcs["EURUSD"].inputs_skipped == skipped + 1
    fcs["GBPUSD"].on_candle(g)
    late = fcs["EURUSD"].request(o, None, spec)
    assert late is not None and late.as_of_ms == e.close_ms


@pytest.fixture(scope="module")
def cross_model(d1: dict[str, pd.DataFrame], tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    torch.set_num_threads(2)
    config = tiny_config(
        timeframe="1d",
        split=(ms(2016, 1, 1), ms(2017, 1, 1)),
        inputs=("indicators", "cross:GBPUSD"),
        max_steps=20,
        eval_every=10,
        val_windows=32,
        calib_windows=64,
        test_windows=64,
        batch_size=64,
    )
    extra = build_extra_frame(d1["EURUSD"], "EURUSD", "1d", InputSpec(config.inputs, "1d"), {"GBPUSD": d1["GBPUSD"]})
    return train(config, d1["EURUSD"], tmp_path_factory.mktemp("inputs_models"), extra=extra)


def test_model_with_inputs_trains_names_them_and_forecasts_like_the_stream(
    cross_model: TrainResult, d1: dict[str, pd.DataFrame]
) -> None:
    m = cross_model.manifest
    assert m["inputs"]["names"] == ["indicators", "cross:GBPUSD"] and m["extra_dim"] == 16
    assert m["inputs"]["features"][-2:] == ["xret_1@GBPUSD", "xret_6@GBPUSD"]
    assert m["model"]["denoiser"]["cond_dim"] == 2 * 16 + 23 + 1 + 16
    pred = Predictor.load(cross_model.checkpoint)
    assert pred.inputs == InputSpec(("indicators", "cross:GBPUSD"), "1d")
    cfg = BacktestConfig(symbol="EURUSD", timeframe="1d", from_ms=ms(2017, 6, 1), to_ms=ms(2017, 7, 1))
    span = {s: d1[s][d1[s]["ts_ms"] >= ms(2016, 1, 1)].reset_index(drop=True) for s in ("EURUSD", "GBPUSD")}
    rows = backtest(span["EURUSD"], pred, cfg, others={"GBPUSD": span["GBPUSD"]})
    assert rows["as_of"].nunique() > 15
    # the stream: both pairs' forecasters on one worker share a book; the request is the backtest's
    fc_cfg = ForecasterConfig(
        timeframes=("1d",), forecast_timeframes=("1d",), horizon=pred.horizon, context=pred.context_spec
    )
    book = CrossBook()
    fcs = {s: SymbolForecaster(s, fc_cfg, book=book) for s in ("EURUSD", "GBPUSD")}
    # the other pair's candle at as_of is processed first (one partition, published in time order)
    bars = sorted(
        (c for s in fcs for c in frame_candles(span[s], s, "1d")), key=lambda c: (c.close_ms, c.symbol == "EURUSD")
    )
    reqs = []
    for c in bars:
        o = fcs[c.symbol].on_candle(c)
        r = fcs[c.symbol].request(o, pred.context_spec, pred.inputs) if c.symbol == "EURUSD" else None
        if r is not None and cfg.from_ms <= r.as_of_ms <= cfg.to_ms:  # type: ignore[operator]
            reqs.append(r)
    assert [r.as_of_ms for r in reqs] == sorted(set(rows["as_of"]))
    for f, (_, g) in zip(pred.forecast(reqs), rows.groupby("as_of"), strict=True):
        np.testing.assert_allclose(f.quantiles, g[Q].to_numpy(), rtol=1e-7, atol=0)


def test_a_request_without_the_inputs_is_refused_clearly(cross_model: TrainResult, d1: dict[str, pd.DataFrame]) -> None:
    pred = Predictor.load(cross_model.checkpoint)
    ctx = pred.new_context("EURUSD", "1d")
    for c in frame_candles(d1["EURUSD"].iloc[:300], "EURUSD", "1d"):
        ctx.update(c)
    req = ctx.request()
    assert req is not None
    with pytest.raises(ModelError, match=r"needs its inputs indicators,cross:GBPUSD \(16 extra features\)"):
        pred.forecast([req])
    with pytest.raises(ConfigError, match="give the candles of GBPUSD"):
        backtest(d1["EURUSD"], pred, BacktestConfig(symbol="EURUSD", timeframe="1d", from_ms=ms(2017, 6, 1)))


def test_manifest_round_trip_and_a_changed_definition_is_refused(cross_model: TrainResult, tmp_path: Path) -> None:
    m = dict(cross_model.manifest)
    spec = InputSpec.from_manifest(m)
    assert InputSpec.from_manifest({**m, "inputs": spec.to_dict()}) == spec
    changed = {**m, "inputs": {**m["inputs"], "features": m["inputs"]["features"][:-1]}}
    with pytest.raises(ConfigError, match="builds differently"):
        InputSpec.from_manifest(changed)
    # models trained before inputs existed (the bundled ones) have none
    for key in ("EURUSD-1h-h24", "EURUSD-1m-h24"):
        bundled = Predictor.load(MODELS / key)
        assert not bundled.inputs and bundled.extra_dim == 0 and bundled.new_inputs("EURUSD") is None


def test_train_refuses_inputs_without_their_features(d1: dict[str, pd.DataFrame], tmp_path: Path) -> None:
    config = tiny_config(timeframe="1d", split=(ms(2016, 1, 1), ms(2017, 1, 1)), inputs=("indicators",))
    with pytest.raises(ConfigError, match="no extra features were given"):
        train(config, d1["EURUSD"], tmp_path)
    with pytest.raises(ConfigError, match="have 14 columns"):
        train(config, d1["EURUSD"], tmp_path, extra=np.zeros((len(d1["EURUSD"]), 3)))
    assert build_extra([], InputSpec(("indicators",), "1d")).shape == (0, 14)


def test_cli_cross_input_from_a_file_without_a_symbol_column_is_refused(
    cross_model: TrainResult, d1: dict[str, pd.DataFrame], tmp_path: Path
) -> None:
    # such a file gives its rows any symbol asked for: cross:GBPUSD read the EURUSD rows as
    # GBPUSD's (train and backtest); the stream then fed the real GBPUSD -- refused instead
    from typer.testing import CliRunner

    from streams.cli import app

    plain = tmp_path / "vendor_eurusd_d1.csv"
    d1["EURUSD"][["ts_ms", "open", "high", "low", "close"]].to_csv(plain, index=False)
    res = CliRunner().invoke(
        app,
        [
            "train",
            str(plain),
            "--symbol",
            "EURUSD",
            "--inputs",
            "cross:GBPUSD",
            "--timeframe",
            "1d",
            "--horizon",
            "5",
            "--max-steps",
            "2",
            "--model-dir",
            str(tmp_path / "m"),
            "--device",
            "cpu",
        ],
    )
    assert (
        res.exit_code == 65
        and "cross:GBPUSD" in res.output
        and "holds no GBPUSD candles (it holds EURUSD)" in res.output
    )
    assert len(res.output.strip().splitlines()) == 1 and not (tmp_path / "m").exists()
    res = CliRunner().invoke(
        app,
        [
            "backtest",
            str(plain),
            "--model",
            str(cross_model.checkpoint),
            "--symbol",
            "EURUSD",
            "--timeframe",
            "1d",
            "--output",
            str(tmp_path / "bt.csv"),
            "--threads",
            "1",
        ],
    )
    assert res.exit_code == 65 and "holds no GBPUSD candles (it holds EURUSD)" in res.output, res.output
    assert len(res.output.strip().splitlines()) == 1
