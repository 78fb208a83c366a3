"""A stored candle row the wire would refuse is no candle for the checked read.

Another program writing to the database can store what ``fx.candles`` never carries: a tick
count of 2**40, a revision of 2**62, spreads of 1e200, a EUR/USD close of 5,000. The checked
read (``fetch_candles(checked=True)``: warm start, retraining, the report) took them: a warm
start put such a row in a series' history, the series' next checkpoint wrote it, and the
forecaster's restore refused that checkpoint, so every worker taking the partition stopped on
it (exit 65), and removing the checkpoint did not help (the next warm start read the row
again); a 5,000 close went into the indicators, learners and training data. Now the read
asks what :func:`forex_diffusion.wire.decode_candle` asks, the instrument's range included.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from forex_diffusion.domain import Candle
from forex_diffusion.errors import ValidationError
from forex_diffusion.forecast.forecaster import ForecasterConfig, SymbolForecaster
from forex_diffusion.forecast.warm_start import warm_start
from forex_diffusion.instruments import Instrument, InstrumentRegistry
from forex_diffusion.storage import fetch_candles, make_engine, upsert_candles
from forex_diffusion.wire import decode_candle, encode_candle

T0 = 1_399_999_980_000
M = 60_000


def _candle(i: int, close: float = 1.1) -> Candle:
    return Candle(
        symbol="EURUSD",
        timeframe="1m",
        open_ms=T0 + i * M,
        close_ms=T0 + (i + 1) * M,
        open=1.1,
        high=max(1.1002, close),
        low=min(1.0998, close),
        close=close,
        volume=3.0,
        tick_count=3,
    )


def _update(path: Path, change: str, open_ms: int) -> None:
    con = sqlite3.connect(path)
    try:
        con.execute(f"UPDATE candles SET {change} WHERE open_ms = ?", (open_ms,))  # noqa: S608
        con.commit()
    finally:
        con.close()


PAST_THE_WIRE = [
    ("tick_count_2_40", "tick_count = 1099511627776"),
    ("tick_count_int32_plus_1", "tick_count = 2147483648"),
    ("revision_2_62", "revision = 4611686018427387904"),
    ("spread_mean_1e200", "spread_mean = 1e200"),
    ("spread_min_minus_1e200", "spread_min = -1e200"),
    ("spread_max_past_price_max", "spread_max = 2e9"),
    ("eurusd_close_5000", "close = 5000, high = 5000"),
    ("eurusd_low_1e_12", "low = 1e-12"),
    ("eurusd_all_9_9e8", "open = 9.9e8, high = 9.9e8, low = 9.9e8, close = 9.9e8"),
]


@pytest.mark.parametrize(("name", "change"), PAST_THE_WIRE, ids=[n for n, _ in PAST_THE_WIRE])
def test_a_stored_row_past_the_wire_bounds_is_skipped_as_out_of_range(tmp_path: Path, name: str, change: str) -> None:
    path = tmp_path / "fx.db"
    eng = make_engine(f"sqlite:///{path}")
    good = [_candle(i) for i in range(10)]
    upsert_candles(eng, good)
    _update(path, change, good[4].open_ms)
    skipped: Counter[str] = Counter()
    assert fetch_candles(eng, "EURUSD", "1m", checked=True, skipped=skipped) == good[:4] + good[5:]
    assert skipped == Counter({"out_of_range": 1})
    # the wire refuses the same row: the read asks no more and no less of it
    raw = json.loads(encode_candle(good[4]))
    for col, value in (c.split(" = ") for c in change.split(", ")):
        raw[col] = json.loads(value)
    with pytest.raises(ValidationError):
        decode_candle(json.dumps(raw), key=b"EURUSD")
    eng.dispose()


def test_the_range_is_the_configured_instruments_when_given(tmp_path: Path) -> None:
    """A registry that gives EURUSD a wider range (a user's instruments) reads a 50 close."""
    path = tmp_path / "fx.db"
    eng = make_engine(f"sqlite:///{path}")
    rows = [_candle(i) for i in range(5)] + [_candle(5, close=50.0)]
    upsert_candles(eng, rows)
    assert fetch_candles(eng, "EURUSD", "1m", checked=True) == rows[:5]
    wide = InstrumentRegistry([Instrument("EURUSD", 0.0001, 5, 0.5, 100.0)])
    assert fetch_candles(eng, "EURUSD", "1m", checked=True, instruments=wide) == rows
    eng.dispose()


def test_a_warm_start_past_a_row_the_wire_refuses_leaves_a_state_that_restores(tmp_path: Path) -> None:
    """The crash loop: the warmed series' snapshot restores (before: StateError, history
    tick_count outside [0, 2147483647])."""
    path = tmp_path / "fx.db"
    eng = make_engine(f"sqlite:///{path}")
    rows = [_candle(i, close=1.1 + 1e-4 * (i % 3)) for i in range(40)]
    upsert_candles(eng, rows)
    _update(path, "tick_count = 1099511627776", rows[30].open_ms)
    cfg = ForecasterConfig(timeframes=("1m",), forecast_timeframes=("1m",), horizon=6, history=64)
    f = SymbolForecaster("EURUSD", cfg)
    skipped: Counter[str] = Counter()
    assert warm_start(f, eng, before=_candle(40), per_timeframe=100, skipped=skipped) == 39
    assert skipped == Counter({"out_of_range": 1})
    state = json.loads(json.dumps(f.snapshot()))
    restored = SymbolForecaster.restore(state, cfg, symbol="EURUSD")  # before: StateError
    assert restored.last_open == f.last_open == {"1m": rows[-1].open_ms}
    eng.dispose()


_count = st.one_of(st.integers(0, 5), st.integers(2**31 - 2, 2**31 + 2), st.integers(2**62 - 1, 2**63 - 1))
_spread = st.one_of(st.none(), st.floats(-3e9, 3e9, allow_nan=False), st.sampled_from([1e9, -1e9, 1e200]))
_price = st.one_of(st.floats(1e-13, 1e9, allow_nan=False), st.sampled_from([0.08, 16.5, 0.0799, 16.51, 1.1]))


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(ticks=_count, revision=_count, spreads=st.tuples(_spread, _spread, _spread), prices=st.lists(_price, min_size=2))
def test_the_checked_read_takes_a_row_exactly_when_the_wire_takes_it(
    tmp_path: Path, ticks: int, revision: int, spreads: tuple[Any, Any, Any], prices: list[float]
) -> None:
    """Property: counts, spreads and prices drawn around every bound; the checked read keeps
    the row iff ``decode_candle`` accepts the same values."""
    lo, hi = min(prices), max(prices)
    c = Candle(
        symbol="EURUSD",
        timeframe="1m",
        open_ms=T0,
        close_ms=T0 + M,
        open=prices[0],
        high=hi,
        low=lo,
        close=prices[-1],
        volume=1.0,
        tick_count=ticks,
        revision=revision,
        spread_mean=spreads[0],
        spread_min=spreads[1],
        spread_max=spreads[2],
    )
    raw = {
        "v": 1,
        "symbol": "EURUSD",
        "timeframe": "1m",
        "open_time": T0,
        "close_time": T0 + M,
        "open": c.open,
        "high": hi,
        "low": lo,
        "close": c.close,
        "volume": 1.0,
        "tick_count": ticks,
        "spread_mean": spreads[0],
        "spread_min": spreads[1],
        "spread_max": spreads[2],
        "final": True,
        "revision": revision,
    }
    try:
        decode_candle(json.dumps(raw), key=b"EURUSD")
        wire_takes = True
    except ValidationError:
        wire_takes = False
    path = tmp_path / "p.db"
    path.unlink(missing_ok=True)
    eng = make_engine(f"sqlite:///{path}")
    con = sqlite3.connect(path)
    con.execute(
        "INSERT INTO candles (symbol, timeframe, open_ms, close_ms, open, high, low, close, volume, tick_count,"
        " spread_mean, spread_min, spread_max, revision, final) VALUES ('EURUSD', '1m', ?, ?, ?, ?, ?, ?, 1.0, ?,"
        " ?, ?, ?, ?, 1)",
        (T0, T0 + M, c.open, hi, lo, c.close, ticks, *spreads, revision),
    )
    con.commit()
    con.close()
    got = fetch_candles(eng, "EURUSD", "1m", checked=True)
    eng.dispose()
    assert (len(got) == 1) == wire_takes, (raw, got)
