"""Warm start from stored candles written by hand, by another program or by someone hostile.

A stored row that is not a candle the stream could have written (text, NaN, zero or huge
prices, high below low, a close time of 0 -- sorted first in stream order, it made every later
candle a "duplicate" and the series started with ONE candle of history --, an open time off
the grid) is skipped and counted; the series warms from the others exactly as if the row
were missing, and the first new candle is forecast. Before: TypeError, ValueError ("math
domain error"), OverflowError or a ConfigError ended the warm start (the series started
cold), or the bad row was replayed into the indicators and learners (high < low) or cut the
history to one candle (close_ms = 0).
"""

from __future__ import annotations

import logging
import math
import sqlite3
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from forex_diffusion.bundled import SAMPLE_TICKS
from forex_diffusion.forecast.forecaster import ForecasterConfig, RandomWalkPredictor, SymbolForecaster
from forex_diffusion.forecast.warm_start import stream_key, warm_start
from forex_diffusion.offline import aggregate_ticks_file
from forex_diffusion.storage import make_engine, upsert_candles
from forex_diffusion.wire import encode_candle
from streams.agents import warm
from streams.app import create_app
from streams.settings import Settings

H = 12
CFG = ForecasterConfig(timeframes=("1m",), forecast_timeframes=("1m",), horizon=H)
CANDLES = sorted(aggregate_ticks_file(SAMPLE_TICKS, timeframes=["1m"]).candles, key=stream_key)[:420]
STORED, FIRST = CANDLES[:400], CANDLES[400]

#: (SET clause, the reason the checked read gives)
CORRUPT = [
    ("close = 'abc'", "schema"),
    ("close = CAST(X'FF' AS TEXT)", "schema"),
    ("close = X'00'", "schema"),
    ("close = 9e999, high = 9e999", "non_finite"),
    ("close = 0, low = 0", "non_positive"),
    ("close = 1e200, high = 1e200", "out_of_range"),
    ("high = low - 0.01", "inconsistent"),
    ("close_ms = 0", "bad_ts"),
    ("close_ms = close_ms + 7", "bad_ts"),
    ("open_ms = open_ms + 1, close_ms = close_ms + 1", "bad_ts"),
    ("volume = -1", "out_of_range"),
]


def _forecast_of_first(f: SymbolForecaster) -> dict[str, Any] | None:
    o = f.on_candle(FIRST)
    req = f.request(o, None) if o.due else None
    if req is None:
        return None
    rec = f.record(RandomWalkPredictor(H).forecast([req])[0], o)
    rec.pop("latency_s", None)
    return rec


def _db(path: Path, changes: dict[int, str]) -> Any:
    """STORED in a SQLite file, then each row ``i`` of ``changes`` changed by its SET clause."""
    path.unlink(missing_ok=True)
    eng = make_engine(f"sqlite:///{path}")
    upsert_candles(eng, STORED)
    con = sqlite3.connect(path)
    for i, clause in changes.items():
        con.execute(f"UPDATE candles SET {clause} WHERE open_ms = ?", (STORED[i].open_ms,))  # noqa: S608
    con.commit()
    con.close()
    return eng


@pytest.fixture(scope="module")
def clean_forecast(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    eng = _db(tmp_path_factory.mktemp("clean") / "c.db", {})
    f = SymbolForecaster("EURUSD", CFG)
    assert warm_start(f, eng, before=FIRST, per_timeframe=len(STORED)) == len(STORED)
    eng.dispose()
    rec = _forecast_of_first(f)
    assert rec is not None
    return rec


@settings(max_examples=8, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(
    changes=st.dictionaries(
        st.integers(0, len(STORED) - 1), st.sampled_from(range(len(CORRUPT))), min_size=1, max_size=4
    )
)
def test_hostile_stored_candles_are_skipped_as_if_missing_and_the_first_candle_is_forecast(
    tmp_path: Path, changes: dict[int, int]
) -> None:
    """Property: warming from a store with hostile rows gives the state of warming from the
    same store with those rows deleted; the skips are counted by reason."""
    hostile = _db(tmp_path / "h.db", {i: CORRUPT[k][0] for i, k in changes.items()})
    missing = _db(tmp_path / "m.db", {i: "symbol = 'GONE'" for i in changes})
    f, g = SymbolForecaster("EURUSD", CFG), SymbolForecaster("EURUSD", CFG)
    skipped: Counter[str] = Counter()
    n = warm_start(f, hostile, before=FIRST, per_timeframe=len(STORED), skipped=skipped)
    assert n == warm_start(g, missing, before=FIRST, per_timeframe=len(STORED)) == len(STORED) - len(changes)
    hostile.dispose()
    missing.dispose()
    assert skipped == Counter(CORRUPT[k][1] for k in changes.values())
    got, want = _forecast_of_first(f), _forecast_of_first(g)
    assert got is not None and got == want
    assert all(math.isfinite(x) for row in got["quantiles"] for x in row)


def test_one_hostile_row_among_the_last_candles_changes_nothing_but_its_own_absence(
    tmp_path: Path, clean_forecast: dict[str, Any]
) -> None:
    """The row closing last (close_ms = 0 sorted it first: every other candle was then a
    'duplicate', one candle replayed, and the first new candle was not forecast)."""
    eng = _db(tmp_path / "h.db", {len(STORED) - 1: "close_ms = 0"})
    f = SymbolForecaster("EURUSD", CFG)
    assert warm_start(f, eng, before=FIRST, per_timeframe=len(STORED)) == len(STORED) - 1
    eng.dispose()
    rec = _forecast_of_first(f)
    assert rec is not None and rec["last_close"] == clean_forecast["last_close"]


def test_a_million_row_series_is_read_only_as_far_as_the_window(tmp_path: Path) -> None:
    """10^6 stored rows of the symbol (most of them hostile text times, which sort past every
    number): the warm start reads its window and replays it, nothing more."""
    path = tmp_path / "big.db"
    eng = _db(path, {})
    con = sqlite3.connect(path)
    con.execute(
        "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 999999) "
        "INSERT INTO candles SELECT 'EURUSD', '1m', 'x' || i, 0, 1.1, 1.2, 1.0, 1.1, 1, 1, NULL, NULL, NULL, 0, 1 "
        "FROM n"
    )
    con.commit()
    con.close()
    f = SymbolForecaster("EURUSD", CFG)
    skipped: Counter[str] = Counter()
    assert warm_start(f, eng, before=FIRST, per_timeframe=300, skipped=skipped) == 300
    eng.dispose()
    assert not skipped and _forecast_of_first(f) is not None


@pytest.mark.asyncio
async def test_the_agent_logs_the_skipped_rows_and_forecasts_the_first_candle(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    s = Settings(
        symbols=("EURUSD",),
        data_dir=tmp_path,
        model_dir=tmp_path / "models",
        timeframes=("1m",),
        forecast_timeframes=("1m",),
        horizon=H,
        warm_candles=len(STORED),
    )
    ca = create_app(s, roles=("candles",)).candle_agent  # type: ignore[attr-defined]
    upsert_candles(ca.rt.engine, STORED)
    con = sqlite3.connect(tmp_path / "forexd.db")
    con.execute("UPDATE candles SET close = 'NaN' WHERE open_ms = ?", (STORED[-1].open_ms,))
    con.execute("UPDATE candles SET high = 0.5 WHERE open_ms = ?", (STORED[-2].open_ms,))
    con.commit()
    con.close()
    msg = SimpleNamespace(key=b"EURUSD", value=encode_candle(FIRST), partition=0, offset=0, topic="fx.candles")
    with caplog.at_level(logging.INFO, logger="streams.agents.warm"):
        await warm.warm_batch(ca, [msg])
    f = ca.forecasters["EURUSD"]
    assert not f.cold
    line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("warm.start"))
    assert f"candles={len(STORED) - 2} skipped=2 reasons=inconsistent:1,schema:1" in line
    assert _forecast_of_first(f) is not None
