"""SeriesContext: streaming equals the batch feature builder, bounded, restorable."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from forex_diffusion.diffusion import ContextSpec, SeriesContext, build_features, calendar_features
from forex_diffusion.domain import Candle
from forex_diffusion.errors import ConfigError, ModelError

HOUR = 3_600_000


def _bars(frame: pd.DataFrame, n: int) -> list[Candle]:
    f = frame.iloc[:n]
    return [
        Candle(symbol="EURUSD", timeframe="1h", open_ms=int(t), close_ms=int(t) + HOUR, open=o, high=h, low=lo, close=c)
        for t, o, h, lo, c in zip(f.ts_ms, f.open, f.high, f.low, f.close, strict=True)
    ]


def test_streaming_requests_equal_batch_features_on_real_hourly(hourly: pd.DataFrame) -> None:
    spec = ContextSpec(window=24, warmup=12)
    bars = _bars(hourly, 1500)
    ctx = SeriesContext(symbol="EURUSD", timeframe="1h", spec=spec)
    feats = build_features(
        np.array([b.close_ms for b in bars]),
        np.array([b.high for b in bars]),
        np.array([b.low for b in bars]),
        np.array([b.close for b in bars]),
        spec,
    )
    checked = 0
    for i, bar in enumerate(bars):
        ctx.update(bar)
        req = ctx.request(bar.close_ms)
        assert (req is not None) == bool(feats.ready[i])
        if req is not None:
            np.testing.assert_allclose(req.conditioning(), feats.cond[i], rtol=0, atol=1e-12)
            assert req.sigma == pytest.approx(feats.sigma[i], rel=1e-14)
            checked += 1
    assert checked == 1500 - spec.ready_after


def test_snapshot_restore_resumes_identically_and_is_json(hourly: pd.DataFrame) -> None:
    bars = _bars(hourly, 400)
    a = SeriesContext(symbol="EURUSD", timeframe="1h", spec=ContextSpec(window=32))
    for bar in bars[:200]:
        a.update(bar)
    b = SeriesContext.restore(json.loads(json.dumps(a.snapshot())))
    for bar in bars[200:]:
        a.update(bar)
        b.update(bar)
        ra, rb = a.request(), b.request()
        assert ra is not None and rb is not None
        np.testing.assert_array_equal(ra.conditioning(), rb.conditioning())
        assert ra.sigma == rb.sigma


def test_memory_is_bounded_by_window(hourly: pd.DataFrame) -> None:
    ctx = SeriesContext(symbol="EURUSD", timeframe="1h", spec=ContextSpec(window=8, warmup=4))
    for bar in _bars(hourly, 1000):
        ctx.update(bar)
    snap = ctx.snapshot()["state"]
    assert len(snap["returns"]) == 8 and len(snap["ranges"]) == 8


def test_forming_duplicate_and_out_of_order_candles_are_ignored(hourly: pd.DataFrame) -> None:
    bars = _bars(hourly, 60)
    ctx = SeriesContext(symbol="EURUSD", timeframe="1h", spec=ContextSpec(window=8, warmup=4))
    for bar in bars[:50]:
        ctx.update(bar)
    before = ctx.snapshot()
    forming = Candle(**{**bars[50].to_dict(), "final": False})
    assert not ctx.update(forming)
    assert not ctx.update(bars[49])  # duplicate
    assert not ctx.update(bars[10])  # out of order
    assert ctx.snapshot() == before


def test_request_is_none_while_warming_up_and_refuses_other_as_of(hourly: pd.DataFrame) -> None:
    bars = _bars(hourly, 40)
    ctx = SeriesContext(symbol="EURUSD", timeframe="1h", spec=ContextSpec(window=16, warmup=8))
    for bar in bars[:16]:
        ctx.update(bar)
    assert ctx.request() is None  # 15 returns < 16
    ctx.update(bars[16])
    assert ctx.request() is not None
    with pytest.raises(ModelError):
        ctx.request(bars[16].close_ms + HOUR)  # a future as_of: look-ahead refused


def test_candle_of_another_series_is_refused(hourly: pd.DataFrame) -> None:
    ctx = SeriesContext(symbol="GBPUSD", timeframe="1h")
    with pytest.raises(ModelError):
        ctx.update(_bars(hourly, 1)[0])


def test_flat_prices_hit_the_sigma_floor_not_a_division_by_zero() -> None:
    spec = ContextSpec(window=4, warmup=2, min_sigma=1e-7)
    ctx = SeriesContext(symbol="EURUSD", timeframe="1h", spec=spec)
    for i in range(10):
        ctx.update(
            Candle(
                symbol="EURUSD",
                timeframe="1h",
                open_ms=i * HOUR,
                close_ms=(i + 1) * HOUR,
                open=1.1,
                high=1.1,
                low=1.1,
                close=1.1,
            )
        )
    req = ctx.request()
    assert req is not None and req.sigma == 1e-7
    assert np.all(np.isfinite(req.conditioning()))


def test_calendar_features_know_the_week_and_sessions() -> None:
    monday_0800 = 1_704_700_800_000  # 2024-01-08 08:00 UTC, a Monday
    f = calendar_features(monday_0800)
    how = 8.0
    assert f[0] == pytest.approx(math.sin(2 * math.pi * how / 168))
    assert f[1] == pytest.approx(math.cos(2 * math.pi * how / 168))
    assert f[8] == pytest.approx(math.sin(2 * math.pi * 8 / 24))
    assert list(f[-3:]) == [1.0, 1.0, 0.0]  # Asia and London, not New York
    assert list(calendar_features(monday_0800 + 6 * HOUR)[-3:]) == [0.0, 1.0, 1.0]
    assert calendar_features(np.array([monday_0800, monday_0800])).shape == (2, 23)


def test_spec_rejects_bad_parameters() -> None:
    with pytest.raises(ConfigError):
        ContextSpec(ewma_lambda=1.0)
    with pytest.raises(ConfigError):
        ContextSpec(window=0)
    with pytest.raises(ConfigError):
        ContextSpec.from_dict({"window": 4, "colour": "red"})
