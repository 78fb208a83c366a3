"""Stored rows written by hand, by another program, by a crashed writer or by someone hostile.

A checkpoint row (``state_snapshots``, ``snapshot_parts``) that cannot be read as a state is
refused with ONE error, :class:`~forex_diffusion.errors.StateError` (a ``ValueError``: the
worker's restore stops with its exit 65, docs/reliability.md), never a driver error, a
``RecursionError`` or a traceback of ``json``; a candle row that is not a candle the stream
could have written is skipped by the checked read (``fetch_candles(checked=True)``) and
counted by reason, never replayed or drawn.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from forex_diffusion.domain import Candle
from forex_diffusion.errors import StateError
from forex_diffusion.storage import (
    fetch_candles,
    fetch_forecasts,
    load_snapshot,
    make_engine,
    save_progress,
    upsert_candles,
    upsert_forecasts,
)

KEY = {"consumer": "ticks", "topic": "fx.ticks", "partition": 0}
SECRET = "s3cr3t-row-text"


def _db(tmp_path: Path, name: str = "fx.db") -> tuple[sa.Engine, Path]:
    path = tmp_path / name
    return make_engine(f"sqlite:///{path}"), path


def _sql(path: Path, statement: str, *params: Any) -> None:
    con = sqlite3.connect(path)
    try:
        con.execute(statement, params)
        con.commit()
    finally:
        con.close()


# -- checkpoint rows ---------------------------------------------------------------------------

#: (name, SQL value of state_snapshots.state): each is no state this build wrote
WHOLE_STATES = [
    ("truncated", '\'{"EURUSD": {"kind": "candle_aggregator", "v": 1, "st\''),
    ("not_json", f"'{SECRET} <not json>'"),
    ("not_utf8", "CAST(X'7B2261223A22FF227D' AS TEXT)"),  # {"a":"\xff"}
    ("blob", "X'00FF10'"),
    ("integer", "5"),
    ("real", "2.5"),
    ("json_array", "'[1, 2, 3]'"),
    ("json_string", f"'\"{SECRET}\"'"),
    ("json_null", "'null'"),
    ("nan", "'{\"a\": NaN}'"),
    ("huge_int", '\'{"a": ' + "9" * 5000 + "}'"),
    ("deep", "'" + "[" * 100_000 + "]" * 100_000 + "'"),
]


@pytest.mark.parametrize(("name", "value"), WHOLE_STATES, ids=[n for n, _ in WHOLE_STATES])
def test_a_whole_state_row_that_is_no_state_is_refused_with_a_state_error(
    tmp_path: Path, name: str, value: str
) -> None:
    eng, path = _db(tmp_path)
    save_progress(eng, **KEY, offset=41, state={"EURUSD": {"kind": "x", "v": 1, "state": {}}})
    _sql(path, f"UPDATE state_snapshots SET state = {value}")  # noqa: S608 - test values above
    with pytest.raises(StateError, match="checkpoint of ticks fx.ticks\\[0\\]") as err:
        load_snapshot(eng, **KEY, detail=True)
    assert SECRET not in str(err.value)  # the row's text is never echoed
    with pytest.raises(StateError):
        load_snapshot(eng, **KEY)
    eng.dispose()


PART_VALUES = [
    ("truncated", '\'{"kind": "forecaster", "v"\''),
    ("not_utf8", "CAST(X'FF' AS TEXT)"),
    ("integer", "7"),
    ("json_list", "'[]'"),
]


@pytest.mark.parametrize(("name", "value"), PART_VALUES, ids=[n for n, _ in PART_VALUES])
def test_a_part_row_that_is_no_state_is_refused_with_a_state_error(tmp_path: Path, name: str, value: str) -> None:
    eng, path = _db(tmp_path)
    save_progress(eng, **KEY, offset=9, parts={"EURUSD": {"kind": "x", "v": 1, "state": {}}, "USDJPY": {}})
    _sql(path, f"UPDATE snapshot_parts SET state = {value} WHERE part = 'USDJPY'")  # noqa: S608
    with pytest.raises(StateError, match="USDJPY"):
        load_snapshot(eng, **KEY, detail=True)
    eng.dispose()


def test_a_part_name_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    eng, path = _db(tmp_path)
    save_progress(eng, **KEY, offset=9, parts={"EURUSD": {}})
    _sql(path, "UPDATE snapshot_parts SET part = CAST(X'45FF' AS TEXT)")
    with pytest.raises(StateError, match="not UTF-8"):
        load_snapshot(eng, **KEY, detail=True)
    eng.dispose()


@pytest.mark.parametrize("column", ["offset", "epoch"])
@pytest.mark.parametrize("value", ["'12'", "'abc'", "X'01'", "1.5", "CAST(X'FF' AS TEXT)"])
def test_an_offset_or_epoch_that_is_no_integer_is_refused(tmp_path: Path, column: str, value: str) -> None:
    eng, path = _db(tmp_path)
    save_progress(eng, **KEY, offset=9, state={})
    _sql(path, f'UPDATE state_snapshots SET "{column}" = {value}')  # noqa: S608
    if value == "'12'":  # INTEGER affinity stores well-formed integer text as the integer
        snap = load_snapshot(eng, **KEY, detail=True)
        assert snap is not None and getattr(snap, column) == 12
        return
    with pytest.raises(StateError, match="not an integer"):
        load_snapshot(eng, **KEY, detail=True)
    eng.dispose()


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(raw=st.one_of(st.binary(max_size=64), st.text(max_size=64).map(lambda t: t.encode("utf-8", "surrogatepass"))))
def test_any_stored_state_bytes_read_as_the_object_written_or_a_state_error(tmp_path: Path, raw: bytes) -> None:
    """Property: whatever bytes the state column holds, the reader answers the JSON object
    they encode, or a StateError; nothing else escapes."""
    path = tmp_path / "prop.db"
    if not path.exists():
        make_engine(f"sqlite:///{path}").dispose()
    eng = make_engine(f"sqlite:///{path}")
    save_progress(eng, **KEY, offset=3, state={"a": 1})
    _sql(path, "UPDATE state_snapshots SET state = CAST(? AS TEXT)", raw)
    try:
        expected: Any = json.loads(raw.decode("utf-8"), parse_constant=lambda c: 1 / 0)
    except (UnicodeDecodeError, ValueError, ZeroDivisionError, RecursionError):
        expected = StateError
    try:
        got: Any = load_snapshot(eng, **KEY)
    except StateError:
        got = StateError
    finally:
        eng.dispose()
    if raw == b"":  # an empty state: the checkpoint is its (no) parts
        assert got == (3, {})
    elif expected is StateError or not isinstance(expected, dict):
        assert got is StateError
    else:
        assert got == (3, expected)


def test_postgresql_state_rows_that_are_no_state_are_refused(pg_url: str) -> None:
    eng = make_engine(pg_url)
    save_progress(eng, **KEY, offset=5, state={"a": 1})
    for value in ('{"a": 1, "b"', f"{SECRET}", "[1]", '{"a": NaN}'):
        with eng.begin() as c:
            c.execute(sa.text("UPDATE state_snapshots SET state = :v"), {"v": value})
        with pytest.raises(StateError) as err:
            load_snapshot(eng, **KEY, detail=True)
        assert SECRET not in str(err.value)
    eng.dispose()


# -- candle rows --------------------------------------------------------------------------------


def _candle(i: int, close: float = 1.1) -> Candle:
    return Candle(
        symbol="EURUSD",
        timeframe="1m",
        open_ms=1_399_999_980_000 + i * 60_000,
        close_ms=1_399_999_980_000 + (i + 1) * 60_000,
        open=1.1,
        high=max(1.2, close),
        low=min(1.0, close),
        close=close,
        volume=3.0,
        tick_count=3,
    )


HOSTILE_CANDLES = [
    ("text_close", "close = 'abc'", "schema"),
    ("blob_close", "close = X'00'", "schema"),
    ("not_utf8_close", "close = CAST(X'FF' AS TEXT)", "schema"),
    ("inf_close", "close = 9e999, high = 9e999", "non_finite"),
    ("zero", "close = 0, low = 0", "non_positive"),
    ("negative", "low = -1", "non_positive"),
    ("huge", "close = 1e200, high = 1e200", "out_of_range"),
    ("high_below_low", "high = 0.5", "inconsistent"),
    ("close_ms_off", "close_ms = close_ms + 7", "bad_ts"),
    ("close_before_open", "close_ms = 0", "bad_ts"),
    ("off_grid", "open_ms = open_ms + 1, close_ms = close_ms + 1", "bad_ts"),
    ("year_10000", "open_ms = 253402300800000, close_ms = 253402300860000", "bad_ts"),
    ("year_1970", "open_ms = 0, close_ms = 60000", "bad_ts"),  # decode_candle's floor: 1971-01-01
    ("last_minute_of_1970", "open_ms = 31535940000, close_ms = 31536000000", "bad_ts"),
    ("year_2100", "open_ms = 4102444800000, close_ms = 4102444860000", "bad_ts"),
    ("negative_volume", "volume = -5", "out_of_range"),
    ("text_tick_count", "tick_count = 'x'", "schema"),
    ("inf_spread", "spread_mean = 9e999", "non_finite"),
]


_MOVED_BEFORE_THE_WINDOW = {"year_1970", "last_minute_of_1970"}


@pytest.mark.parametrize(("name", "change", "reason"), HOSTILE_CANDLES, ids=[n for n, _, _ in HOSTILE_CANDLES])
def test_a_stored_row_that_is_no_candle_is_skipped_and_counted(
    tmp_path: Path, name: str, change: str, reason: str
) -> None:
    eng, path = _db(tmp_path)
    good = [_candle(i) for i in range(10)]
    upsert_candles(eng, good)
    _sql(path, f"UPDATE candles SET {change} WHERE open_ms = ?", good[4].open_ms)  # noqa: S608
    skipped: Counter[str] = Counter()
    got = fetch_candles(eng, "EURUSD", "1m", checked=True, skipped=skipped)
    assert got == good[:4] + good[5:]
    assert skipped == Counter({reason: 1})
    # the latest-N window too, oldest first (a row moved to 1970 is out of it: the seven latest are good)
    skipped.clear()
    window = fetch_candles(eng, "EURUSD", "1m", limit=7, checked=True, skipped=skipped)
    if name in _MOVED_BEFORE_THE_WINDOW:
        assert window == good[2:4] + good[5:]
        assert not skipped
    else:
        assert window == good[3:4] + good[5:]
        assert skipped == Counter({reason: 1})
    eng.dispose()


def test_rows_whose_open_time_is_not_an_integer_never_crowd_out_the_window(tmp_path: Path) -> None:
    """SQLite sorts text and blobs past every number: 50 such rows of the series were the
    whole latest-10 window, and no candle came back."""
    eng, path = _db(tmp_path)
    good = [_candle(i) for i in range(20)]
    upsert_candles(eng, good)
    con = sqlite3.connect(path)
    con.executemany(
        "INSERT INTO candles SELECT symbol, timeframe, ?, close_ms, open, high, low, close, volume, tick_count, "
        "spread_mean, spread_min, spread_max, revision, final FROM candles WHERE open_ms = ?",
        [(v, good[0].open_ms) for v in [f"x{i}" for i in range(40)] + [1.5e12 + i + 0.5 for i in range(10)]],
    )
    con.commit()
    con.close()
    assert fetch_candles(eng, "EURUSD", "1m", limit=10, checked=True) == good[-10:]
    eng.dispose()


_value = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.text(max_size=5),
    st.binary(max_size=3),
    st.none(),
)


def _storable(v: Any) -> Any:
    """A value for a NOT NULL column: SQLite stores NaN as NULL."""
    return 0.0 if v is None or (isinstance(v, float) and math.isnan(v)) else v


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(rows=st.lists(st.tuples(st.integers(0, 30), _value, _value, _value, _value, _value), min_size=1, max_size=8))
def test_any_stored_candle_values_read_as_valid_candles_or_counted_skips(tmp_path: Path, rows: list[Any]) -> None:
    """Property: whatever a hand-written row holds, the checked read returns only candles the
    stream could have written, in open-time order, and counts every other row it read."""
    path = tmp_path / "c.db"
    path.unlink(missing_ok=True)
    eng = make_engine(f"sqlite:///{path}")
    con = sqlite3.connect(path)
    keys = set()
    for i, o, h, lo, c, vol in rows:
        if i in keys:
            continue
        keys.add(i)
        vals = [_storable(v) for v in (o, h, lo, c)]
        con.execute(
            "INSERT INTO candles (symbol, timeframe, open_ms, close_ms, open, high, low, close, volume, tick_count,"
            " revision, final) VALUES ('EURUSD', '1m', ?, ?, ?, ?, ?, ?, ?, 1, 0, 1)",
            (
                1_399_999_980_000 + i * 60_000,
                1_399_999_980_000 + (i + 1) * 60_000,
                *vals,
                _storable(vol),
            ),
        )
    con.commit()
    con.close()
    skipped: Counter[str] = Counter()
    got = fetch_candles(eng, "EURUSD", "1m", checked=True, skipped=skipped)
    eng.dispose()
    assert len(got) + skipped.total() == len(keys)
    assert [c.open_ms for c in got] == sorted(c.open_ms for c in got)
    for c in got:
        prices = (c.open, c.high, c.low, c.close)
        assert all(type(p) is float and math.isfinite(p) and 0 < p <= 1e9 for p in prices)
        assert c.low <= min(c.open, c.close) and c.high >= max(c.open, c.close)
        assert c.close_ms - c.open_ms == 60_000 and math.isfinite(c.volume) and c.volume >= 0


def test_postgresql_nan_and_inconsistent_candles_are_skipped(pg_url: str) -> None:
    eng = make_engine(pg_url)
    good = [_candle(i) for i in range(6)]
    upsert_candles(eng, good)
    with eng.begin() as c:
        c.execute(sa.text("UPDATE candles SET close = 'NaN'::float8 WHERE open_ms = :t"), {"t": good[1].open_ms})
        c.execute(sa.text("UPDATE candles SET high = 0.1 WHERE open_ms = :t"), {"t": good[2].open_ms})
        c.execute(sa.text("UPDATE candles SET low = '-Infinity'::float8 WHERE open_ms = :t"), {"t": good[3].open_ms})
    skipped: Counter[str] = Counter()
    assert fetch_candles(eng, "EURUSD", "1m", checked=True, skipped=skipped) == [good[0], *good[4:]]
    assert skipped == Counter({"non_finite": 2, "inconsistent": 1})
    eng.dispose()


# -- forecast rows ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    ["'{not json'", "'[1]'", "CAST(X'FF' AS TEXT)", "5", "'" + "[" * 100_000 + "'"],
    ids=["not_json", "list", "not_utf8", "integer", "deep"],
)
def test_fetch_forecasts_skips_a_row_that_is_no_json_object(tmp_path: Path, value: str) -> None:
    eng, path = _db(tmp_path)
    fc = {"symbol": "EURUSD", "timeframe": "1m", "as_of_ms": 60_000, "horizon": 3, "model_version": "v1"}
    upsert_forecasts(eng, [fc, dict(fc, as_of_ms=120_000)])
    _sql(path, f"UPDATE forecasts SET payload = {value} WHERE as_of_ms = 60000")  # noqa: S608
    assert fetch_forecasts(eng) == [dict(fc, as_of_ms=120_000)]
    eng.dispose()


def test_postgresql_fetch_forecasts_reads_objects_and_skips_others(pg_url: str) -> None:
    eng = make_engine(pg_url)
    fc = {"symbol": "EURUSD", "timeframe": "1m", "as_of_ms": 60_000, "horizon": 3, "model_version": "v1"}
    upsert_forecasts(eng, [fc, dict(fc, as_of_ms=120_000)])
    with eng.begin() as c:
        c.execute(sa.text("UPDATE forecasts SET payload = CAST('[1, 2]' AS JSON) WHERE as_of_ms = 60000"))
    assert fetch_forecasts(eng) == [dict(fc, as_of_ms=120_000)]
    eng.dispose()


# -- the worker's restore -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    ["'" + "[" * 100_000 + "]" * 100_000 + "'", "CAST(X'7B226C6F636B223AFF7D' AS TEXT)", "'[]'"],
    ids=["deep", "not_utf8_lock", "list"],
)
def test_the_worker_stops_with_exit_65_on_a_state_row_it_cannot_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, value: str
) -> None:
    """docs/operations.md: a state that cannot be restored stops the worker (exit 65), it never
    waits on the partition for ever. Before: RecursionError escaped the assignment hook; text
    that is not UTF-8 was a database error (holding 'lock': retried as transient for ever)."""
    import asyncio
    import logging

    from faust.types import TP

    import streams.progress as progress_mod
    from streams.progress import EXIT_STATE_REFUSED, PartitionProgress

    eng, path = _db(tmp_path)
    save_progress(eng, consumer="test:candles", topic="fx.candles", partition=0, offset=7, state={"a": 1})
    _sql(path, f"UPDATE state_snapshots SET state = {value}")  # noqa: S608

    def exit_(code: int) -> None:
        raise SystemExit(code)

    monkeypatch.setattr(progress_mod.os, "_exit", exit_)
    pp = PartitionProgress(
        app=None,
        consumer="test:candles",
        topic="fx.candles",
        engine=eng,
        snapshot=lambda p: {},
        restore=lambda p, s: None,
        drop=lambda p: None,
    )
    with caplog.at_level(logging.ERROR), pytest.raises(SystemExit) as info:
        asyncio.run(pp.on_assigned(None, [TP("fx.candles", 0)]))
    assert info.value.code == EXIT_STATE_REFUSED
    assert "state.refused consumer=test:candles topic=fx.candles partition=0" in caplog.text
    assert "StateError" in caplog.text
    eng.dispose()
