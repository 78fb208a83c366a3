"""F17 for the forecast side: replaying the candle topic from offset 0 into an empty and into a
populated database gives identical forecast rows (and candle rows), each once (I5, I12).

``tests/faults/test_replay.py`` proves it for the tick agent's candles; this one runs the
candle agent (indicators, learners, random-walk forecasts) on real EUR/USD candles of the
bundled sample. Only the two wall-clock fields differ between runs by design: the row's
``created_ms`` (kept from the first write) and the payload's ``latency_s``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from forex_diffusion.offline import aggregate_ticks_file
from forex_diffusion.storage import make_engine
from forex_diffusion.storage.tables import forecasts, snapshots
from forex_diffusion.wire import encode_candle

from ..integration.kafka_io import create_topics, publish
from ..integration.test_candle_stream import HORIZON, TOPICS, offline_forecasts, stream_order
from ..waiting import wait_for_workers
from .harness import db_candles

pytestmark = pytest.mark.broker

N_CANDLES = 1_000  # of the sample's 1m/5m/1h candles in stream order: about 800 forecasts


def _rows(url: str) -> list[tuple[Any, ...]]:
    """Every forecast row without its wall-clock fields, in key order."""
    eng = make_engine(url)
    try:
        with eng.connect() as c:
            rows = c.execute(sa.select(forecasts).order_by(*forecasts.primary_key.columns)).all()
    finally:
        eng.dispose()
    return [
        (
            r.symbol,
            r.timeframe,
            r.as_of_ms,
            r.horizon,
            r.model_version,
            {k: v for k, v in dict(r.payload).items() if k != "latency_s"},
        )
        for r in rows
    ]


def _checkpoint(url: str, consumer: str, topic: str) -> dict[int, int]:
    eng = make_engine(url)
    try:
        with eng.connect() as c:
            rows = c.execute(
                sa.select(snapshots.c.partition, snapshots.c.offset).where(
                    (snapshots.c.consumer == consumer) & (snapshots.c.topic == topic)
                )
            ).all()
    except sa.exc.OperationalError:  # not created yet
        return {}
    finally:
        eng.dispose()
    return {int(r.partition): int(r.offset) for r in rows}


def test_replay_of_candles_into_empty_and_populated_db_gives_identical_forecast_rows(
    worker_env: dict[str, str],
    spawn_worker: Any,
    kafka_bootstrap: str,
    sample_ticks: Path,
    tmp_path: Path,
) -> None:
    """Worker A (candle role) fills DB-1 from fx.candles; worker B (new app id: new group and
    checkpoint, offset 0) replays into an empty DB-2 while worker C (another app id) replays
    into the populated DB-1. The forecast rows of DB-1 before, DB-1 after and DB-2 are
    identical, each key once, and match the offline run of the same core."""
    candles = stream_order(aggregate_ticks_file(sample_ticks, timeframes=["1m", "5m", "1h"]).candles)[:N_CANDLES]
    expected = offline_forecasts(candles)
    env = dict(worker_env, FOREXD_SYMBOLS="EURUSD", FOREXD_HORIZON=str(HORIZON), FOREXD_SNAPSHOT_INTERVAL_S="0.5")
    prefix, app = env["FOREXD_TOPIC_PREFIX"], env["FOREXD_APP_ID"]
    topic = f"{prefix}fx.candles"
    create_topics(kafka_bootstrap, [f"{prefix}fx.{t}" for t in TOPICS], 2)
    n = publish(kafka_bootstrap, topic, [(b"EURUSD", encode_candle(c)) for c in candles])
    assert n == len(candles)
    db1, db2 = f"sqlite:///{tmp_path / 'one.db'}", f"sqlite:///{tmp_path / 'two.db'}"

    a = spawn_worker(dict(env, FOREXD_DATABASE_URL=db1), role="candles", name="a")
    wait_for_workers(
        lambda: len(_safe_rows(db1)) >= len(expected),
        a,
        what="worker A's forecast rows",
        timeout=240,
        interval=0.5,
        progress=lambda: len(_safe_rows(db1)),
    )
    before = _rows(db1)
    a.stop()
    before_candles = db_candles(db1, symbols=["EURUSD"])
    assert len(before) == len(expected), (len(before), len(expected))
    assert {r[2] for r in before} == set(expected)
    for r in before:  # the streamed rows are the offline core's forecasts
        assert r[5] == {k: v for k, v in expected[r[2]].items() if k != "latency_s"}, r[2]

    end = _checkpoint(db1, f"{app}:candles", topic)  # A consumed the whole topic
    b = spawn_worker(dict(env, FOREXD_DATABASE_URL=db2, FOREXD_APP_ID=app + "-b"), role="candles", name="b")
    c = spawn_worker(dict(env, FOREXD_DATABASE_URL=db1, FOREXD_APP_ID=app + "-c"), role="candles", name="c")
    for url, who, w in ((db2, "b", b), (db1, "c", c)):
        wait_for_workers(
            lambda url=url, who=who: _checkpoint(url, f"{app}-{who}:candles", topic) == end,
            w,
            what=f"worker {who.upper()} replayed to {end}",
            timeout=240,
            interval=0.5,
            progress=lambda url=url, who=who: _checkpoint(url, f"{app}-{who}:candles", topic),
        )
        assert w.alive(), w.log()[-3000:]
    b.stop()
    c.stop()
    assert _rows(db2) == before, "replay into an empty DB gives different forecast rows"
    assert _rows(db1) == before, "replay into the populated DB changed its forecast rows"
    assert db_candles(db2, symbols=["EURUSD"]) == db_candles(db1, symbols=["EURUSD"]) == before_candles
    print(
        f"F17 forecasts: {len(before)} forecast rows, {len(before_candles)} candle rows identical after "
        f"replay into an empty and into a populated DB (checkpoint {end})"
    )


def _safe_rows(url: str) -> list[tuple[Any, ...]]:
    try:
        return _rows(url)
    except sa.exc.OperationalError:
        return []
