"""Drift events in storage: a keyed upsert on SQLite and PostgreSQL, written in the
checkpoint transaction (replays overwrite, never duplicate; a failed checkpoint writes none)."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from forex_diffusion.drift import DriftEvent
from forex_diffusion.errors import PermanentStorageError
from forex_diffusion.storage import (
    drift_events,
    fetch_drift_events,
    load_snapshot,
    make_engine,
    save_progress,
    upsert_drift_events,
)


def event(
    ts_ms: int = 60_000,
    detector: str = "adwin:crps",
    horizon: int | None = 3,
    statistic: float = 0.5,
    symbol: str = "EURUSD",
) -> DriftEvent:
    return DriftEvent(
        detector=detector,
        statistic=statistic,
        threshold=0.1,
        symbol=symbol,
        timeframe="1m",
        horizon=horizon,
        ts_ms=ts_ms,
    )


def _count(eng: object) -> int:
    with eng.connect() as conn:  # type: ignore[attr-defined]
        return int(conn.execute(select(func.count()).select_from(drift_events)).scalar_one())


def test_drift_events_replayed_are_stored_once_with_the_last_values(db_url: str) -> None:
    eng = make_engine(db_url)
    evs = [event(ts_ms=60_000 * i, horizon=(None if i % 2 else 3)) for i in range(1, 6)]
    assert upsert_drift_events(eng, evs) == 5
    upsert_drift_events(eng, evs[::-1])  # redelivery out of order
    upsert_drift_events(eng, [event(ts_ms=60_000, horizon=None, statistic=0.9)])  # replay with new values
    assert _count(eng) == 5
    rows = fetch_drift_events(eng, "EURUSD", "1m")
    assert [r["ts_ms"] for r in rows] == [60_000 * i for i in range(1, 6)]
    # an event without a horizon reads back without one
    assert [r["horizon"] for r in rows] == [None, 3, None, 3, None]
    assert rows[0]["statistic"] == 0.9 and rows[1]["statistic"] == 0.5
    assert rows[0]["detector"] == "adwin:crps" and rows[0]["threshold"] == 0.1


def test_drift_events_of_one_batch_with_one_key_keep_the_last(db_url: str) -> None:
    eng = make_engine(db_url)
    upsert_drift_events(eng, [event(statistic=0.2), event(statistic=0.7)])
    (row,) = fetch_drift_events(eng)
    assert row["statistic"] == 0.7


def test_detectors_and_horizons_and_series_are_distinct_keys(db_url: str) -> None:
    eng = make_engine(db_url)
    upsert_drift_events(
        eng,
        [event(), event(detector="page_hinkley:crps"), event(horizon=6), event(horizon=None), event(symbol="GBPUSD")],
    )
    assert _count(eng) == 5
    assert len(fetch_drift_events(eng, "EURUSD", "1m")) == 4
    assert fetch_drift_events(eng, "EURUSD", "5m") == []


def test_save_progress_writes_drift_events_with_the_offset(db_url: str) -> None:
    eng = make_engine(db_url)
    save_progress(
        eng,
        consumer="c",
        topic="fx.candles",
        partition=0,
        offset=41,
        state={"a": 1},
        drift_items=[event(), event(ts_ms=120_000, horizon=None)],
    )
    assert load_snapshot(eng, consumer="c", topic="fx.candles", partition=0) == (41, {"a": 1})
    assert _count(eng) == 2
    # the replay after a restart writes the same events again: overwritten, not doubled
    save_progress(
        eng,
        consumer="c",
        topic="fx.candles",
        partition=0,
        offset=42,
        state={"a": 2},
        drift_items=[event(), event(ts_ms=120_000, horizon=None)],
    )
    assert _count(eng) == 2


def test_a_checkpoint_that_fails_after_the_drift_rows_writes_none_of_them(db_url: str) -> None:
    eng = make_engine(db_url)
    # the drift rows are written first; the snapshot row then violates NOT NULL: all rolls back
    with pytest.raises(PermanentStorageError):
        save_progress(
            eng,
            consumer="c",
            topic="fx.candles",
            partition=None,  # type: ignore[arg-type]
            offset=1,
            state={},
            drift_items=[event()],
        )
    assert _count(eng) == 0
