"""``fetch_candles(checked=True)`` does its per-timeframe work once per read and builds each
candle once (it was about 3x the unchecked read's cost per row: ``tf.bounds`` and a dataclass
``replace`` per row), accepting and refusing exactly the rows it did: the checker is compared
with the previous one (kept here as the reference) on hostile rows. Costs are measured by
bench/bench_fetch_checked.py, never asserted here.
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from forex_diffusion.domain import Candle
from forex_diffusion.errors import RejectReason
from forex_diffusion.ingest.validation import EPOCH_FIRST_MS, MAX_CANDLE_VOLUME, MAX_PRICE, MAX_TS_MS
from forex_diffusion.storage import fetch_candles, make_engine, repository, upsert_candles
from forex_diffusion.timeframes import Timeframe

TS_MAX = repository.TS_MAX


def _real(v: Any) -> bool:
    return type(v) in (int, float) and math.isfinite(v)


def _reference(r: Any, tf: Timeframe) -> RejectReason | None:
    """The checker of commit 8dce382, as it was, with the wire's 1971..2100 bar span added."""
    if type(r.open_ms) is not int or type(r.close_ms) is not int:
        return RejectReason.SCHEMA
    prices = (r.open, r.high, r.low, r.close)
    if not all(type(v) in (int, float) for v in prices):
        return RejectReason.SCHEMA
    if not (0 <= r.open_ms < r.close_ms <= TS_MAX):
        return RejectReason.BAD_TS
    if r.close_ms <= EPOCH_FIRST_MS or r.open_ms >= MAX_TS_MS:
        return RejectReason.BAD_TS
    try:
        if tf.bounds(r.open_ms) != (r.open_ms, r.close_ms):
            return RejectReason.BAD_TS
    except (OverflowError, ValueError):
        return RejectReason.BAD_TS
    if not all(math.isfinite(v) for v in prices):
        return RejectReason.NON_FINITE
    if not min(prices) > 0:
        return RejectReason.NON_POSITIVE
    if max(prices) > MAX_PRICE:
        return RejectReason.OUT_OF_RANGE
    if not (r.low <= min(r.open, r.close) and r.high >= max(r.open, r.close)):
        return RejectReason.INCONSISTENT
    if not (_real(r.volume) and 0 <= r.volume <= MAX_CANDLE_VOLUME):
        return RejectReason.OUT_OF_RANGE
    if type(r.tick_count) is not int or r.tick_count < 0 or type(r.revision) is not int or r.revision < 0:
        return RejectReason.SCHEMA
    if not all(v is None or _real(v) for v in (r.spread_mean, r.spread_min, r.spread_max)):
        return RejectReason.NON_FINITE
    return None


_price = st.one_of(
    st.floats(0.5, 2.0),
    st.sampled_from([0, -1.0, 0.0, math.nan, math.inf, 1e308, 2e9, 1, 3, "x", None, True, b"\x00"]),
)
_time = st.one_of(
    st.integers(-2, 10).map(lambda k: 1_400_000_000_000 - 1_400_000_000_000 % 86_400_000 + k * 60_000),
    st.integers(-2, 2).map(lambda k: EPOCH_FIRST_MS + k * 86_400_000 - 7_200_000),  # 1970-12-31 and near
    st.integers(-2, 2).map(lambda k: MAX_TS_MS + k * 86_400_000 - 7_200_000),  # 2099-12-31 and near
    st.sampled_from([0, -60_000, TS_MAX, TS_MAX + 1, 2**62, 1.5e12, "x", None]),
)
_count = st.sampled_from([0, 1, -1, 2.0, "x", None, True])
_volume = st.sampled_from([0.0, 1.0, 5, -1.0, math.nan, 1e300, "x", None])
_spread = st.sampled_from([None, 1e-4, 0, math.inf, math.nan, "x"])


@settings(max_examples=400, deadline=None)
@given(
    tf=st.sampled_from(["1m", "5m", "1h", "4h", "1d"]),
    open_ms=_time,
    bars=st.sampled_from([1, 0, 2, -1]),
    close_shift=st.sampled_from([0, 0, 0, 1, -1]),
    prices=st.tuples(_price, _price, _price, _price),
    volume=_volume,
    ticks=_count,
    revision=_count,
    spreads=st.tuples(_spread, _spread, _spread),
)
def test_the_checker_accepts_and_refuses_what_it_did(
    tf: str,
    open_ms: Any,
    bars: int,
    close_shift: int,
    prices: Any,
    volume: Any,
    ticks: Any,
    revision: Any,
    spreads: Any,
) -> None:
    t = Timeframe.parse(tf)
    close_ms = open_ms + bars * t.duration_ms + close_shift if type(open_ms) is int else open_ms
    o, h, lo, c = prices
    r = SimpleNamespace(
        open_ms=open_ms,
        close_ms=close_ms,
        open=o,
        high=h,
        low=lo,
        close=c,
        volume=volume,
        tick_count=ticks,
        revision=revision,
        spread_mean=spreads[0],
        spread_min=spreads[1],
        spread_max=spreads[2],
    )
    assert repository._candle_problem(r, t, repository._grid(t)) == _reference(r, t)
    assert repository._candle_problem(r, t) == _reference(r, t)  # without the hoisted grid too


def _candles(n: int) -> list[Candle]:
    t0 = 1_400_000_000_000 - 1_400_000_000_000 % 60_000
    return [
        Candle(
            symbol="EURUSD",
            timeframe="1m",
            open_ms=t0 + i * 60_000,
            close_ms=t0 + (i + 1) * 60_000,
            open=1.1,
            high=1.2,
            low=1.0,
            close=1.15,
            volume=3.0,
            tick_count=2,
            spread_mean=1e-4,
        )
        for i in range(n)
    ]


def test_a_checked_read_of_a_fixed_length_timeframe_calls_no_bounds_per_row_nor_replace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    eng = make_engine(f"sqlite:///{tmp_path / 'fx.db'}")
    upsert_candles(eng, _candles(50))
    expected = fetch_candles(eng, "EURUSD", "1m")

    def per_row(*_: Any, **__: Any) -> Any:
        raise AssertionError("per-row work in a checked read")

    monkeypatch.setattr(Timeframe, "bounds", per_row)
    monkeypatch.setattr(repository, "replace", per_row, raising=False)
    skipped: Counter[str] = Counter()
    got = fetch_candles(eng, "EURUSD", "1m", checked=True, skipped=skipped)
    eng.dispose()
    assert got == expected and not skipped
    assert all(type(v) is float for c in got for v in (c.open, c.high, c.low, c.close, c.volume))
