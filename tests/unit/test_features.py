"""FeatureBuilder on real EURUSD minutes aggregated to 5m/15m: no look-ahead, readiness,
caching per close, snapshot/restore; Standardiser and the KS leakage check."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from forex_diffusion.domain import Candle
from forex_diffusion.errors import ConfigError, ValidationError
from forex_diffusion.forecast.features import (
    FeatureBuilder,
    FeatureConfig,
    FeatureVector,
    Standardiser,
    ks_leakage_check,
    ks_leakage_checks,
    sort_candles,
)
from forex_diffusion.timeframes import Timeframe

from ..realdata import DATA, require

M1 = DATA / "lean_oanda_eurusd_m1_2014-05-01_15.csv.gz"
N_MINUTES = 9000
CFG = FeatureConfig(forecast_timeframe="1m", timeframes=("1m", "5m", "15m"), vol_window=50)


def _minutes() -> list[Candle]:
    require(M1.name)  # a bundled file: absent, the test fails
    from forex_diffusion.ingest.readers import read_candles

    f = read_candles(M1, price="bid").frame.iloc[:N_MINUTES]
    return [
        Candle(
            symbol="EURUSD", timeframe="1m", open_ms=int(t), close_ms=int(t) + 60_000, open=o, high=h, low=lo, close=c
        )
        for t, o, h, lo, c in zip(f.ts_ms, f.open, f.high, f.low, f.close, strict=True)
    ]


def _aggregate(minutes: list[Candle], tf_name: str) -> list[Candle]:
    tf = Timeframe.parse(tf_name)
    out: list[Candle] = []
    group: list[Candle] = []
    for m in minutes + [None]:  # type: ignore[list-item]
        if group and (m is None or tf.floor(m.open_ms) != tf.floor(group[0].open_ms)):
            start = tf.floor(group[0].open_ms)
            out.append(
                Candle(
                    symbol="EURUSD",
                    timeframe=tf.name,
                    open_ms=start,
                    close_ms=tf.end_of(start),
                    open=group[0].open,
                    high=max(g.high for g in group),
                    low=min(g.low for g in group),
                    close=group[-1].close,
                )
            )
            group = []
        if m is not None:
            group.append(m)
    return out


def _stream(minutes: list[Candle]) -> list[Candle]:
    return sort_candles(minutes + _aggregate(minutes, "5m") + _aggregate(minutes, "15m"))


@pytest.fixture(scope="module")
def minutes() -> list[Candle]:
    return _minutes()


@pytest.fixture(scope="module")
def run(minutes: list[Candle]) -> dict[int, FeatureVector | None]:
    return _vectors(minutes)


def _vectors(minutes: list[Candle]) -> dict[int, FeatureVector | None]:
    fb = FeatureBuilder(CFG)
    out = {}
    for c in _stream(minutes):
        v = fb.on_candle(c)
        if c.timeframe == "1m":
            out[c.close_ms] = v
    return out


def test_vectors_appear_only_once_every_timeframe_is_ready(run: dict[int, FeatureVector | None]) -> None:
    times = sorted(run)
    first = next(i for i, t in enumerate(times) if run[t] is not None)
    # the 15m bank is ready after ADX(14)'s 253 bars: 253 quarter hours of data at least
    assert times[first] - times[0] >= 252 * 15 * 60_000
    assert all(run[t] is not None for t in times[first:])
    v = run[times[-1]]
    assert v is not None and np.isfinite(v.values).all()
    assert len(v.names) == len(v.values) == 3 * (5 + 1 + 19)
    assert v.names[0] == "ret_1@1m" and "adx_14@15m" in v.names and "hurst_100@5m" in v.names


def test_perturbing_candles_after_t_changes_no_feature_at_or_before_t(
    minutes: list[Candle], run: dict[int, FeatureVector | None]
) -> None:
    times = sorted(t for t, v in run.items() if v is not None)
    t_cut = times[len(times) // 2] + 7 * 60_000  # inside a 15m candle, which is then still forming
    assert t_cut % (15 * 60_000) != 0
    perturbed = [
        m
        if m.close_ms <= t_cut
        else Candle(
            symbol=m.symbol,
            timeframe=m.timeframe,
            open_ms=m.open_ms,
            close_ms=m.close_ms,
            open=m.open * 1.01,
            high=m.high * 1.02,
            low=m.low * 1.005,
            close=m.close * 1.015,
        )
        for m in minutes
    ]
    other = _vectors(perturbed)
    before = [t for t in run if t <= t_cut and run[t] is not None]
    after = [t for t in run if t > t_cut and run[t] is not None]
    assert len(before) > 100 and len(after) > 100
    for t in before:
        np.testing.assert_array_equal(run[t].values, other[t].values)  # type: ignore[union-attr]
    changed = sum(not np.array_equal(run[t].values, other[t].values) for t in after)  # type: ignore[union-attr]
    assert changed == len(after)


def test_higher_timeframe_block_is_its_last_closed_candle(minutes: list[Candle]) -> None:
    fb = FeatureBuilder(CFG)
    checked = 0
    for c in _stream(minutes):
        v = fb.on_candle(c)
        if v is None:
            continue
        block15 = fb.features("15m", v.as_of_ms)
        assert block15 is not None
        last_15m_close = v.as_of_ms - v.as_of_ms % (15 * 60_000)
        assert block15.as_of_ms == v.as_of_ms
        tail = v.as_dict()
        for name, value in block15.as_dict().items():
            assert tail[name] == value or (math.isnan(value) and math.isnan(tail[name]))
        # the cached 15m block is the one of the candle that closed at last_15m_close
        own = fb.features("15m", last_15m_close)
        assert own is not None and np.array_equal(own.values, block15.values)
        checked += 1
    assert checked > 1000


def test_snapshot_json_restore_continue_equals_never_stopping(
    minutes: list[Candle], run: dict[int, FeatureVector | None]
) -> None:
    stream = _stream(minutes)
    cut = len(stream) * 2 // 3
    fb = FeatureBuilder(CFG)
    for c in stream[:cut]:
        fb.on_candle(c)
    resumed = FeatureBuilder.restore(json.loads(json.dumps(fb.snapshot())))
    n = 0
    for c in stream[cut:]:
        v = resumed.on_candle(c)
        if c.timeframe == "1m":
            ref = run[c.close_ms]
            assert (v is None) == (ref is None)
            if v is not None and ref is not None:
                np.testing.assert_array_equal(v.values, ref.values)
                n += 1
    assert n > 1000


def test_redelivered_and_foreign_candles(minutes: list[Candle]) -> None:
    fb = FeatureBuilder(
        FeatureConfig(forecast_timeframe="1m", timeframes=("1m",), spec="sma_5", vol_window=5, return_lags=2)
    )
    outs = [fb.on_candle(m) for m in minutes[:20]]
    assert outs[-1] is not None
    assert fb.on_candle(minutes[10]) is None and fb.ignored == 1
    np.testing.assert_array_equal(fb.features().values, outs[-1].values)  # type: ignore[union-attr]
    with pytest.raises(ValidationError):
        fb.on_candle(
            Candle(symbol="GBPUSD", timeframe="1m", open_ms=0, close_ms=60_000, open=1, high=1, low=1, close=1)
        )


def test_config_rejects_bad_settings() -> None:
    with pytest.raises(ConfigError):
        FeatureConfig(forecast_timeframe="4h", timeframes=("1m", "5m"))
    with pytest.raises(ConfigError):
        FeatureConfig(vol_window=1)
    with pytest.raises(ConfigError):
        FeatureConfig.from_dict({"forecast_timeframe": "5m", "colour": "red"})
    assert FeatureConfig(timeframes=("1h", "5m", "15m")).timeframes == ("5m", "15m", "1h")


def test_standardiser_replaces_zero_sigma_by_one() -> None:
    x = np.array([[1.0, 2.0, 7.0], [3.0, 2.0, 9.0]])
    s = Standardiser().fit(x)
    np.testing.assert_array_equal(s.scale_, [1.0, 1.0, 1.0])
    np.testing.assert_array_equal(
        s.transform(np.array([[2.0, 2.0, 8.0], [5.0, 3.0, 10.0]])), [[0.0, 0.0, 0.0], [3.0, 1.0, 2.0]]
    )
    assert np.array_equal(Standardiser.from_dict(json.loads(json.dumps(s.to_dict()))).scale_, s.scale_)


def test_ks_flags_a_shifted_feature_not_a_stable_one(run: dict[int, FeatureVector | None]) -> None:
    rows = np.array([v.values for v in run.values() if v is not None])
    names = next(v for v in run.values() if v is not None).names
    j_ret = names.index("ret_1@1m")
    j_level = names.index("sma_20@15m")
    # interleaved rows of a normalised return: one distribution
    stable = ks_leakage_check(rows[0::2, j_ret], rows[1::2, j_ret], alpha=0.01)
    assert not stable.shifted and stable.n_train + stable.n_test == len(rows)
    # a chronological 60/20 split of a return shifted by one sigma: flagged
    n = len(rows)
    shifted = ks_leakage_check(rows[: int(0.6 * n), j_ret], rows[int(0.8 * n) :, j_ret] + 1.0)
    assert shifted.shifted and shifted.pvalue < 1e-6
    report = ks_leakage_checks(rows[: int(0.6 * n)], rows[int(0.8 * n) :], names)
    assert set(report) == set(names) and isinstance(report[names[j_level]].statistic, float)
    with pytest.raises(ConfigError):
        ks_leakage_check(rows[:, j_ret], rows[:, j_ret], alpha=1.5)
