"""Storage on SQLite and PostgreSQL: keyed upserts, atomic progress, error classification."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy.exc import IntegrityError, OperationalError

from forex_diffusion.domain import Candle
from forex_diffusion.errors import PermanentStorageError, TransientStorageError
from forex_diffusion.offline import aggregate_ticks_file
from forex_diffusion.storage import (
    count_candles,
    db_retry,
    fetch_candles,
    fetch_forecasts,
    is_transient,
    load_snapshot,
    make_engine,
    save_progress,
    upsert_candles,
    upsert_forecasts,
)


def candle(open_ms: int = 0, close: float = 1.5, revision: int = 3, final: bool = True) -> Candle:
    return Candle(
        symbol="EURUSD",
        timeframe="1m",
        open_ms=open_ms,
        close_ms=open_ms + 60_000,
        open=1.0,
        high=2.0,
        low=0.5,
        close=close,
        tick_count=revision,
        revision=revision,
        final=final,
    )


def test_replayed_candles_are_stored_once_with_identical_values(db_url: str, sample_ticks: Path) -> None:
    run = aggregate_ticks_file(sample_ticks, timeframes=["1m", "1h"])
    eng = make_engine(db_url)
    upsert_candles(eng, run.candles)
    first = fetch_candles(eng, "EURUSD", "1m") + fetch_candles(eng, "EURUSD", "1h")
    upsert_candles(eng, run.candles)  # replay
    upsert_candles(eng, run.candles[::-1])  # redelivery out of order
    assert count_candles(eng) == len(run.candles)
    assert fetch_candles(eng, "EURUSD", "1m") + fetch_candles(eng, "EURUSD", "1h") == first
    assert sorted(first, key=lambda c: (c.timeframe, c.open_ms)) == sorted(
        run.candles, key=lambda c: (c.timeframe, c.open_ms)
    )


def test_forming_candle_moves_forward_final_candle_is_immutable(db_url: str) -> None:
    eng = make_engine(db_url)
    upsert_candles(eng, [candle(close=1.1, revision=2, final=False)])
    upsert_candles(eng, [candle(close=1.2, revision=1, final=False)])  # older revision: ignored
    assert fetch_candles(eng, "EURUSD", "1m", final_only=False)[0].close == 1.1
    upsert_candles(eng, [candle(close=1.3, revision=5, final=True)])
    upsert_candles(eng, [candle(close=9.9, revision=9, final=True)])  # a final bar never changes
    (c,) = fetch_candles(eng, "EURUSD", "1m")
    assert (c.close, c.revision, c.final) == (1.3, 5, True)


def test_fetch_recent_window_is_oldest_first(db_url: str) -> None:
    eng = make_engine(db_url)
    upsert_candles(eng, [candle(open_ms=i * 60_000) for i in range(10)])
    assert [c.open_ms // 60_000 for c in fetch_candles(eng, "EURUSD", "1m", limit=3)] == [7, 8, 9]
    assert [c.open_ms // 60_000 for c in fetch_candles(eng, "EURUSD", "1m", start_ms=120_000, end_ms=300_000)] == [
        2,
        3,
        4,
    ]


def test_progress_snapshot_and_effects_commit_together(db_url: str) -> None:
    eng = make_engine(db_url)
    assert load_snapshot(eng, consumer="ticks", topic="fx.ticks", partition=0) is None
    save_progress(
        eng,
        consumer="ticks",
        topic="fx.ticks",
        partition=0,
        offset=41,
        state={"a": [1, 2]},
        candle_items=[candle()],
        forecast_rows=[
            {"symbol": "EURUSD", "timeframe": "1m", "as_of_ms": 60_000, "horizon": 3, "model_version": "v1", "q": [1.0]}
        ],
    )
    save_progress(eng, consumer="ticks", topic="fx.ticks", partition=0, offset=42, state={"a": [3]})
    assert load_snapshot(eng, consumer="ticks", topic="fx.ticks", partition=0) == (42, {"a": [3]})
    assert count_candles(eng) == 1 and len(fetch_forecasts(eng)) == 1
    # a failing write leaves neither the offset nor the effects
    with pytest.raises((ValueError, PermanentStorageError)):
        save_progress(
            eng,
            consumer="ticks",
            topic="fx.ticks",
            partition=0,
            offset=43,
            state={"x": float("nan")},
            candle_items=[candle(open_ms=60_000)],
        )
    assert load_snapshot(eng, consumer="ticks", topic="fx.ticks", partition=0) == (42, {"a": [3]})
    assert count_candles(eng) == 1


def test_forecast_upsert_is_keyed(db_url: str) -> None:
    eng = make_engine(db_url)
    row = {"symbol": "EURUSD", "timeframe": "1m", "as_of_ms": 60_000, "horizon": 3, "model_version": "v1", "q50": 1.1}
    upsert_forecasts(eng, [row])
    upsert_forecasts(eng, [dict(row, q50=1.2)])
    assert fetch_forecasts(eng) == [dict(row, q50=1.2)]


def test_error_classification() -> None:
    locked = OperationalError("UPDATE", {}, sqlite3.OperationalError("database is locked"))
    assert is_transient(locked)
    readonly = OperationalError("INSERT", {}, sqlite3.OperationalError("attempt to write a readonly database"))
    assert not is_transient(readonly)
    assert not is_transient(IntegrityError("INSERT", {}, sqlite3.IntegrityError("UNIQUE constraint failed")))


def test_transient_errors_are_retried_then_translated_permanent_raised_at_once() -> None:
    calls = {"n": 0}

    def flaky() -> str:
        calls["n"] += 1
        if calls["n"] < 3:
            raise OperationalError("SELECT", {}, sqlite3.OperationalError("database is locked"))
        return "ok"

    assert db_retry(flaky, max_wait_s=0.01)() == "ok" and calls["n"] == 3

    def always_locked() -> None:
        calls["n"] += 1
        raise OperationalError("SELECT", {}, sqlite3.OperationalError("database is locked"))

    calls["n"] = 0
    with pytest.raises(TransientStorageError):
        db_retry(always_locked, attempts=4, max_wait_s=0.01)()
    assert calls["n"] == 4

    def integrity() -> None:
        calls["n"] += 1
        raise IntegrityError("INSERT", {"secret": "__SENTINEL__"}, sqlite3.IntegrityError("NOT NULL constraint failed"))

    calls["n"] = 0
    with pytest.raises(PermanentStorageError) as ei:
        db_retry(integrity)()
    assert calls["n"] == 1 and "__SENTINEL__" not in str(ei.value)


def test_sqlite_write_lock_held_by_another_process_is_waited_out(tmp_path: Path) -> None:
    db = tmp_path / "locked.db"
    eng = make_engine(f"sqlite:///{db}")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sqlite3,time,sys; c=sqlite3.connect(sys.argv[1], isolation_level=None);"
            "c.execute('BEGIN EXCLUSIVE'); print('locked', flush=True); time.sleep(3); c.execute('COMMIT')",
            str(db),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
    t0 = time.monotonic()
    upsert_candles(eng, [candle()])  # busy_timeout + retries ride out the 3 s lock
    holder.wait(10)
    assert count_candles(eng) == 1 and time.monotonic() - t0 >= 1.0


@pytest.mark.postgres
def test_postgres_checkpoint_sends_one_statement_per_thousand_candles_not_one_per_row(pg_url: str) -> None:
    """F15 regression: psycopg2's executemany ran the candle upsert once per row (SQLAlchemy
    does not batch ON CONFLICT DO UPDATE), so a checkpoint of 300 candles took 120 s on a
    database 200 ms away. Now 2,500 candles go as 3 multi-row statements, and duplicate
    forecast keys in one batch keep the last row."""
    import sqlalchemy as sa

    eng = make_engine(pg_url)
    statements: list[bool] = []

    @sa.event.listens_for(eng, "before_cursor_execute")
    def _count(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        if statement.lstrip().upper().startswith("INSERT INTO CANDLES"):
            statements.append(executemany)

    items = [candle(open_ms=i * 60_000, final=i % 2 == 0) for i in range(2_500)]
    fc = {"symbol": "EURUSD", "timeframe": "1m", "as_of_ms": 60_000, "horizon": 3, "model_version": "v1"}
    save_progress(
        eng,
        consumer="ticks",
        topic="fx.ticks",
        partition=0,
        offset=7,
        state={},
        candle_items=items,
        forecast_rows=[dict(fc, q50=1.0), dict(fc, q50=2.0)],
    )
    assert statements == [False, False, False]
    assert count_candles(eng) == 2_500
    assert fetch_candles(eng, "EURUSD", "1m", final_only=False) == items
    assert fetch_forecasts(eng) == [dict(fc, q50=2.0)]
    # the conflict rule holds row by row inside one statement: finals stay, forming bars advance
    statements.clear()
    upsert_candles(eng, [candle(open_ms=i * 60_000, close=9.9, revision=4, final=True) for i in range(2_500)])
    assert statements == [False, False, False]
    got = fetch_candles(eng, "EURUSD", "1m", final_only=False)
    assert [c.close for c in got] == [1.5 if i % 2 == 0 else 9.9 for i in range(2_500)]
    eng.dispose()
