"""Touch probabilities and running extremes: from known paths, the random walk's table, the record, the backtest."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import integrate
from scipy.stats import norm
from typer.testing import CliRunner

from forex_diffusion.diffusion import ForecastRequest, Predictor
from forex_diffusion.diffusion.inputs import frame_candles
from forex_diffusion.domain import Candle
from forex_diffusion.errors import ConfigError, ValidationError
from forex_diffusion.forecast.forecaster import forecast_record, rw_quantiles
from forex_diffusion.forecast.touch import (
    DEFAULT_TOUCH_BANDS,
    TouchBand,
    band_distances,
    extremes_from_paths,
    parse_touch_bands,
    realised_touch,
    rw_extreme_quantiles,
    rw_touch_probability,
    summarize_touch,
    touch_from_paths,
    touch_reliability,
)
from forex_diffusion.ingest.readers import read_candles
from forex_diffusion.reports.backtest import BacktestConfig, backtest, parse_utc_date
from forex_diffusion.reports.html import ReportConfig, ReportData, realise, render_report, touch_realise
from forex_diffusion.wire import decode_forecast, encode_forecast, encode_record
from streams.cli import app

from ..realdata import real_path, require

ROOT = Path(__file__).resolve().parents[2]
BUNDLED = ROOT / "forex_diffusion" / "bundled" / "models" / "EURUSD-1h-h24"
HOURLY = real_path("lean_oanda_eurusd_h1_2007_2017.csv.gz")


def test_touch_from_known_paths_is_the_share_of_paths_reaching_the_level() -> None:
    # 4 paths, 3 steps, cumulative log changes
    x = np.array([[[0.1, 0.3, 0.0], [-0.2, -0.1, 0.25], [0.0, -0.4, -0.1], [0.2, 0.2, 0.2]]])
    dist = np.array([[0.2, 0.2, 0.35]])  # +0.2, -0.2, +0.35
    p, _rw = touch_from_paths(x, dist, [1, -1, 1], np.array([0.1]), np.zeros(3))
    # +0.2: path 4 at step 1; paths 1 at step 2; path 2 at step 3 -> 1/4, 2/4, 3/4
    # -0.2: path 2 at step 1 (equal counts as touched); path 3 at step 2 -> 1/4, 2/4, 2/4
    # +0.35: never
    np.testing.assert_allclose(p[0], [[0.25, 0.5, 0.75], [0.25, 0.5, 0.5], [0.0, 0.0, 0.0]])
    # weight 1: the random walk alone (distance 2 sigma: step 1 is 1 - Phi(2))
    p1, rw = touch_from_paths(x, dist, [1, -1, 1], np.array([0.1]), np.ones(3))
    np.testing.assert_allclose(p1, rw)
    assert abs(rw[0, 0, 0] - norm.sf(2.0)) < 0.002
    # blend: linear in the weight
    ph, _ = touch_from_paths(x, dist, [1, -1, 1], np.array([0.1]), np.full(3, 0.25))
    np.testing.assert_allclose(ph, 0.75 * p + 0.25 * rw)


def test_extremes_from_known_paths() -> None:
    x = np.array([[[0.1, 0.3, 0.0], [-0.2, -0.1, 0.25], [0.0, -0.4, -0.1]]])
    mx, mn = extremes_from_paths(x, np.array([0.1]), np.zeros(3), levels=(0.5,))
    np.testing.assert_allclose(
        mx[0, :, 0], [0.0, 0.0, 0.25]
    )  # medians of running max (0.1,-0.2,0), (.3,-.1,0), (.3,.25,0)
    np.testing.assert_allclose(mn[0, :, 0], [0.0, -0.2, -0.2])


def test_random_walk_table_matches_exact_values_and_an_independent_simulation() -> None:
    d = np.array([0.0, 0.5, 1.0, 2.0, 3.0])
    p = rw_touch_probability(d, 24)  # [5, 24]
    np.testing.assert_allclose(p[:, 0], norm.sf(d), atol=0.003)  # one step: exact
    # two steps: P(max(S1, S2) >= d) = 1 - int_{-inf}^{d} phi(s) Phi(d - s) ds
    for k, dk in enumerate(d):
        exact = 1.0 - integrate.quad(lambda s, dk=dk: norm.pdf(s) * norm.cdf(dk - s), -np.inf, dk)[0]
        assert abs(p[k, 1] - exact) < 0.003, (dk, p[k, 1], exact)
    # an independent simulation (another generator and seed), within 5 standard errors
    rng = np.random.default_rng(7)
    m = np.maximum.accumulate(np.cumsum(rng.standard_normal((40_000, 24)), axis=1), axis=1)
    sim = (m[:, None, :] >= d[None, :, None]).mean(axis=0)
    se = np.sqrt(sim * (1 - sim) / 40_000) + 1e-4
    assert np.all(np.abs(p - sim) < 5 * se + 0.002)
    # many steps: near the reflection principle with the discrete-monitoring shift 0.5826
    cont = 2 * norm.sf((2.0 + 0.5826) / np.sqrt(24))
    assert abs(p[3, 23] - cont) < 0.01
    # monotone in steps and in distance, bounded
    assert np.all(np.diff(p, axis=1) >= 0) and np.all(np.diff(p, axis=0) <= 0)
    assert p.min() >= 0 and p.max() <= 1
    assert np.all(rw_touch_probability(np.array([np.inf]), 24) == 0)
    # extremes: the one-step running max is the step itself; max and min mirror each other
    mx, mn = rw_extreme_quantiles(24)
    np.testing.assert_allclose(mx[0], norm.ppf([0.05, 0.5, 0.95]), atol=0.02)
    np.testing.assert_allclose(mn, -mx[:, ::-1])


def test_band_specs_parse_and_refuse() -> None:
    assert parse_touch_bands(None) == DEFAULT_TOUCH_BANDS
    assert [b.name for b in parse_touch_bands("0.5vol,1vol")] == [b.name for b in DEFAULT_TOUCH_BANDS]
    assert [b.name for b in parse_touch_bands("+20pip, -2sigma, 20pips")] == ["+20pip", "-2sigma", "-20pip"]
    assert parse_touch_bands("") == () and parse_touch_bands("none") == ()
    for bad in ("1", "vol", "0vol", "-1x", "1e999vol", "abc"):
        with pytest.raises(ConfigError):
            parse_touch_bands(bad)
    # distances: pips exact in price, sigma and vol scaled
    bands = parse_touch_bands("+20pip,-20pip,+2sigma,-1vol")
    d = band_distances(bands, np.array([1.1, 100.0]), np.array([0.001, 0.002]), 16, ["EURUSD", "USDJPY"])
    side = np.array([b.side for b in bands])
    lv = np.array([[1.1], [100.0]]) * np.exp(side * d)
    np.testing.assert_allclose(lv[:, :2], [[1.1020, 1.0980], [100.2, 99.8]])
    np.testing.assert_allclose(d[:, 2:], [[0.002, 0.004], [0.004, 0.008]])
    assert np.isinf(
        band_distances([TouchBand(-1, 2e4, "pip")], np.array([1.1]), np.array([0.001]), 4, ["EURUSD"])
    ).all()


def test_realised_touch_on_known_closes() -> None:
    closes = np.array([1.0, 1.01, 0.98, 1.03, 1.0])
    hit = realised_touch(closes, np.array([0, 3]), np.array([[1.02, 0.98], [1.02, 0.98]]), [1, -1], 3)
    np.testing.assert_array_equal(hit[0], [[0, 0, 1], [0, 1, 1]])
    assert hit[1, 0, 0] == 0 and hit[1, 1, 0] == 0 and np.isnan(hit[1, :, 1:]).all()


@pytest.fixture(scope="module")
def bundled() -> Predictor:
    return Predictor.load(BUNDLED, touch_bands="0.5vol,1vol,2vol,+30pip,-30pip")


@pytest.fixture(scope="module")
def hourly_2017() -> pd.DataFrame:
    require(HOURLY.name)  # a bundled file: absent, the test fails
    f = read_candles(HOURLY, symbol="EURUSD", price="mid").frame
    return f[(f.ts_ms >= parse_utc_date("2016-12-20")) & (f.ts_ms < parse_utc_date("2017-01-25"))].reset_index(
        drop=True
    )


@pytest.fixture(scope="module")
def slice_rows(bundled: Predictor, hourly_2017: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    parts: list[pd.DataFrame] = []
    rows = backtest(
        hourly_2017,
        bundled,
        BacktestConfig(symbol="EURUSD", timeframe="1h", from_ms=parse_utc_date("2017-01-02"), every=4, batch=16),
        touch=parts,
    )
    return rows, pd.concat(parts, ignore_index=True)


def test_model_touch_probabilities_are_monotone_bounded_and_ordered_by_band(
    bundled: Predictor, slice_rows: tuple[pd.DataFrame, pd.DataFrame], hourly_2017: pd.DataFrame
) -> None:
    _rows, t = slice_rows
    p = t.pivot_table(index=["as_of", "band"], columns="step", values="p")
    assert p.shape[1] == 24 and len(p) > 100
    v = p.to_numpy()
    assert np.all(np.diff(v, axis=1) >= -1e-12) and v.min() >= 0 and v.max() <= 1
    for side in "+-":
        a, b, c = (p.xs(f"{side}{k}vol", level="band").to_numpy() for k in ("0.5", "1", "2"))
        assert np.all(a >= b - 1e-12) and np.all(b >= c - 1e-12)  # wider band, lower probability
        assert (a > c).mean() > 0.9
    # extremes of a forecast bracket the last close and widen with the step
    fc = bundled.forecast([_request(bundled, hourly_2017)])[0]
    assert fc.extremes is not None and fc.touch is not None
    assert np.all(np.diff(fc.extremes.max[:, 2]) >= 0) and np.all(np.diff(fc.extremes.min[:, 0]) <= 0)
    assert fc.extremes.max[-1, 1] > fc.last_close > fc.extremes.min[-1, 1]
    assert np.all(fc.extremes.max[:, 0] <= fc.extremes.max[:, 2])
    np.testing.assert_allclose(fc.touch.levels[6:], [fc.last_close + 0.003, fc.last_close - 0.003])


def _request(pred: Predictor, hourly: pd.DataFrame) -> ForecastRequest:
    f = hourly[hourly.ts_ms < parse_utc_date("2017-01-05")]
    ctx = pred.new_context("EURUSD", "1h")
    for candle in frame_candles(f, "EURUSD", "1h"):
        ctx.update(candle)
    req = ctx.request(int(f.ts_ms.iloc[-1]) + 3_600_000)
    assert req is not None
    return req


def test_touch_does_not_change_the_quantiles(bundled: Predictor, hourly_2017: pd.DataFrame) -> None:
    req = _request(bundled, hourly_2017)
    plain = Predictor.load(BUNDLED, touch_bands="")
    a, b = bundled.forecast([req])[0], plain.forecast([req])[0]
    assert b.touch is None and a.touch is not None
    assert np.array_equal(a.quantiles, b.quantiles) and np.array_equal(a.mean, b.mean)
    assert np.array_equal(a.p_up, b.p_up)


def test_record_round_trips_through_the_wire_and_old_records_decode(
    bundled: Predictor, hourly_2017: pd.DataFrame
) -> None:
    req = _request(bundled, hourly_2017)
    fc = bundled.forecast([req])[0]
    rec = forecast_record(fc, learner=None, rw=rw_quantiles(fc.last_close, req.sigma, fc.horizon))
    d = decode_forecast(encode_forecast(rec))
    assert fc.touch is not None and fc.extremes is not None
    assert d["touch"]["bands"] == list(fc.touch.bands)
    np.testing.assert_allclose(d["touch"]["p"], fc.touch.p, atol=5e-5)
    np.testing.assert_allclose(d["touch"]["rw_p"], fc.touch.rw_p, atol=5e-5)
    np.testing.assert_allclose(d["touch"]["levels"], fc.touch.levels)
    np.testing.assert_allclose(d["extremes"]["max"], fc.extremes.max)
    assert d["extremes"]["levels"] == [0.05, 0.5, 0.95]
    assert d["quantiles"] == rec["quantiles"]
    # an old record (no touch, no extremes) decodes, and has neither
    old = {k: v for k, v in rec.items() if k not in ("touch", "extremes")}
    d_old = decode_forecast(encode_forecast(old))
    assert "touch" not in d_old and "extremes" not in d_old and d_old["quantiles"] == rec["quantiles"]
    # a probability outside [0, 1] or a malformed band name is refused
    bad = json.loads(encode_forecast(rec))
    bad["touch"]["p"][0][0] = 1.5
    with pytest.raises(ValidationError):
        decode_forecast(json.dumps(bad))
    bad = json.loads(encode_forecast(rec))
    bad["touch"]["bands"][0] = "up a bit"
    with pytest.raises(ValidationError):
        decode_forecast(json.dumps(bad))
    assert encode_record("forecasts", rec) == encode_forecast(rec)


def test_backtest_touch_scores_are_finite_and_the_random_walk_has_zero_skill_against_itself(
    slice_rows: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    rows, t = slice_rows
    assert t["as_of"].nunique() == rows["as_of"].nunique()
    s = summarize_touch(t)
    assert [x.step for x in s] == list(range(1, 25))
    assert all(np.isfinite([x.brier, x.rw_brier, x.skill, x.rate]).all() for x in s)
    assert all(0 <= x.brier <= 1 and x.n > 0 for x in s)
    rw_self = summarize_touch(t.assign(p=t["rw_p"]))
    assert all(x.skill == 0.0 for x in rw_self)
    by_band = summarize_touch(t, by_band=True)
    assert len(by_band) == 24 * 8
    rel = touch_reliability(t)
    assert rel["n"].sum() == np.isfinite(t["hit"]).sum()
    assert ((rel["predicted"] >= rel["bin_lo"]) & (rel["predicted"] <= rel["bin_hi"])).all()
    # the realised touches are those of the closes
    assert set(np.unique(t["hit"].dropna())) <= {0.0, 1.0}


def test_cli_backtest_prints_touch_scores_and_refuses_a_bad_band(tmp_path: Path) -> None:
    require(HOURLY.name)  # a bundled file: absent, the test fails
    out, tout = tmp_path / "bt.csv", tmp_path / "touch.csv"
    args = [
        "backtest",
        str(HOURLY),
        "--symbol",
        "EURUSD",
        "--timeframe",
        "1h",
        "--model",
        str(BUNDLED),
        "--from",
        "2017-06-05",
        "--to",
        "2017-06-07",
        "--every",
        "6",
        "-o",
        str(out),
    ]
    res = CliRunner().invoke(app, [*args, "--touch-bands", "1vol,+25pip", "--touch-output", str(tout)])
    assert res.exit_code == 0, res.output
    assert "touch (+1vol, -1vol, +25pip; close-based)" in res.output and "touch reliability" in res.output
    t = pd.read_csv(tout)
    assert list(t.columns) == ["as_of", "band", "step", "level", "p", "rw_p", "hit"]
    assert set(t["band"]) == {"+1vol", "-1vol", "+25pip"}
    bad = CliRunner().invoke(app, [*args, "--touch-bands", "1parsec"])
    assert bad.exit_code == 2 and "touch band" in bad.output


def test_report_scores_stored_touch_probabilities_like_the_backtest(
    bundled: Predictor, hourly_2017: pd.DataFrame, slice_rows: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    _rows, t = slice_rows
    as_ofs = sorted(t["as_of"].unique())[::6]
    ctx = bundled.new_context("EURUSD", "1h")
    payloads = []
    for ts, o, h, lo, c in zip(
        hourly_2017.ts_ms, hourly_2017.open, hourly_2017.high, hourly_2017.low, hourly_2017.close, strict=True
    ):
        ctx.update(
            Candle(
                symbol="EURUSD",
                timeframe="1h",
                open_ms=int(ts),
                close_ms=int(ts) + 3_600_000,
                open=o,
                high=h,
                low=lo,
                close=c,
            )
        )
        if int(ts) + 3_600_000 in as_ofs:
            req = ctx.request(int(ts) + 3_600_000)
            assert req is not None
            fc = bundled.forecast([req])[0]
            rec = forecast_record(fc, learner=None, rw=rw_quantiles(fc.last_close, req.sigma, fc.horizon))
            payloads.append(decode_forecast(encode_forecast(rec)))  # as stored: through the wire
    candles = pd.DataFrame(
        {
            "open_ms": hourly_2017.ts_ms.to_numpy(),
            "close_ms": hourly_2017.ts_ms.to_numpy() + 3_600_000,
            "close": hourly_2017.close.to_numpy(),
        }
    )
    mine = touch_realise(payloads, candles)
    ref = t[t["as_of"].isin(as_ofs)]
    merged = mine.merge(ref, on=["as_of", "band", "step"], suffixes=("", "_bt"))
    assert len(merged) == len(ref) == len(mine) > 0
    np.testing.assert_allclose(merged["p"], merged["p_bt"], atol=1e-4)  # the record rounds to 4 decimals
    np.testing.assert_array_equal(merged["hit"].to_numpy(), merged["hit_bt"].to_numpy())
    data = ReportData(
        config=ReportConfig(symbol="EURUSD", timeframe="1h"),
        candles=candles,
        steps=realise(payloads, candles),
        payloads=tuple(payloads),
    )
    page = render_report(data)
    section = page.split("<h2>Touch probabilities</h2>")[1].split("<h2>")[0]
    assert 'class="touchrel"' in section and "RW Brier" in section and "observed touch frequency" in section
    # a report of records without touch says so
    old = [{k: v for k, v in p.items() if k != "touch"} for p in payloads]
    page = render_report(ReportData(config=data.config, candles=candles, steps=data.steps, payloads=tuple(old)))
    assert "No realised touch probability" in page.split("<h2>Touch probabilities</h2>")[1]


def test_worker_setting_and_model_book_apply_the_bands() -> None:
    from forex_diffusion.errors import SettingsError
    from retraining.serving import ModelBook
    from streams.settings import Settings

    assert Settings.from_env({}).touch_bands == "0.5vol,1vol"
    assert Settings.from_env({"FOREXD_TOUCH_BANDS": "+20pip,1sigma"}).touch_bands == "+20pip,1sigma"
    with pytest.raises(SettingsError, match="touch band"):
        Settings.from_env({"FOREXD_TOUCH_BANDS": "20 parsecs"})
    book = ModelBook(None, horizon=24, model_dir=BUNDLED.parent, touch_bands="+20pip,1sigma")
    pred = book.predictor("EURUSD", "1h")
    assert isinstance(pred, Predictor)
    assert [b.name for b in pred.touch_bands] == ["+20pip", "+1sigma", "-1sigma"]
    none = ModelBook(None, horizon=24, model_dir=BUNDLED.parent, touch_bands="none").predictor("EURUSD", "1h")
    assert isinstance(none, Predictor) and none.touch_bands == ()


def test_a_band_too_far_to_price_gives_an_infinite_level_without_a_warning(hourly_2017: pd.DataFrame) -> None:
    # a hostile FOREXD_TOUCH_BANDS / --touch-bands size is accepted by the parser; its level
    # overflowed with a RuntimeWarning on stderr (forexd backtest) at every forecast
    import warnings

    far = Predictor.load(BUNDLED, touch_bands="1e300sigma,+1e300pip")
    req = _request(far, hourly_2017)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fc = far.forecast([req])[0]
    assert fc.touch is not None and np.isposinf(fc.touch.levels[0]) and fc.touch.levels[1] == 0.0
    assert fc.touch.levels[2] > 1e290 and (fc.touch.p == 0.0).all()


def test_a_horizon_past_the_touch_limit_loads_without_the_random_walk_table(
    hourly_2017: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the table grows as H**1.5 and was built at every load (H=10000: ~10 GB): a longer model
    # forecasts as before touch probabilities existed, with neither touch nor extremes
    import forex_diffusion.diffusion.predictor as predictor_module

    plain = Predictor.load(BUNDLED)
    req = _request(plain, hourly_2017)
    ref = plain.forecast([req])[0]
    monkeypatch.setattr(predictor_module, "TOUCH_HORIZON_MAX", 23)

    def refuse(horizon: int) -> None:
        raise AssertionError(f"random-walk touch table built for H={horizon}")

    monkeypatch.setattr(predictor_module, "rw_touch_table", refuse)
    long = Predictor.load(BUNDLED)
    fc = long.forecast([req])[0]
    assert fc.touch is None and fc.extremes is None
    assert np.array_equal(fc.quantiles, ref.quantiles) and np.array_equal(fc.p_up, ref.p_up)
    assert "touch" not in fc.to_dict() and "extremes" not in fc.to_dict()
