"""F13/F14 database faults, short form: PostgreSQL stopped for ~12 s under a worker that
checkpoints to it, and an SQLite file held under ``BEGIN EXCLUSIVE`` by another process.

The worker must not crash (it retries with backoff; L2), must not commit offsets past
unpersisted candles (I3), and once the database is back the final state equals the oracle
(I1, I2, I5)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from ..integration.kafka_io import publish
from .harness import (
    SqliteLockHolder,
    bad_records,
    db_count,
    interleave,
    make_topics,
    pg_ctl,
    pg_restart_safely,
    settle,
    tick_records,
    wait_for,
)

pytestmark = pytest.mark.broker


def _count(url: str) -> int:
    try:
        return db_count(url)
    except Exception:  # noqa: BLE001 - absent file / DB down
        return 0


def _publish_burst(bootstrap: str, env: dict[str, str], n: int, start: int = 0) -> None:
    good = tick_records(n, start=start)
    t0 = int(good[200][1].split(b'"ts":')[1].split(b",")[0])
    publish(bootstrap, f"{env['FOREXD_TOPIC_PREFIX']}fx.ticks", interleave(good, bad_records(t0)))


@pytest.mark.postgres
@pytest.mark.serial  # stops the machine's PostgreSQL: nothing else may use it meanwhile
def test_postgres_outage_worker_survives_and_db_equals_oracle(
    fault_env: dict[str, str], spawn_worker: Any, kafka_bootstrap: str, pg_url: str,
) -> None:
    """PostgreSQL stopped (immediate) for 12 s while a worker checkpoints candles into it,
    with ticks still arriving: the worker stays up and, after PG returns, the DB equals
    the oracle with every candle once."""
    env = dict(fault_env, FOREXD_DATABASE_URL=pg_url)
    make_topics(kafka_bootstrap, env)
    _publish_burst(kafka_bootstrap, env, 3_000)
    w = spawn_worker(env, role="ticks", name="pg")
    wait_for(lambda: _count(pg_url) > 0, 120, interval=0.2, what="first candles in PostgreSQL")
    try:
        pg_ctl("stop", "-m", "immediate")
        down = time.monotonic()
        _publish_burst(kafka_bootstrap, env, 3_000, start=3_000)  # ticks keep arriving during the outage
        time.sleep(max(0.0, 12.0 - (time.monotonic() - down)))
        assert w.alive(), "the worker died while PostgreSQL was down:\n" + w.log()[-3000:]
    finally:
        pg_restart_safely()
    back = time.monotonic()
    report, converged = settle(kafka_bootstrap, env, timeout_s=60)
    print(f"pg outage: recovered {time.monotonic() - back:.1f}s after PG returned; {report.summary()}")
    assert w.alive(), w.log()[-3000:]
    assert not report.violations, report.summary() + "\n" + w.log()[-3000:]


def test_sqlite_exclusive_lock_is_waited_out_and_db_equals_oracle(
    fault_env: dict[str, str], spawn_worker: Any, kafka_bootstrap: str,
) -> None:
    """Another process holds ``BEGIN EXCLUSIVE`` on the worker's SQLite file for 8 s in the
    middle of a burst: ``database is locked`` is retried, the worker stays up, and the final
    DB equals the oracle."""
    make_topics(kafka_bootstrap, fault_env)
    _publish_burst(kafka_bootstrap, fault_env, 3_000)
    db = Path(fault_env["FOREXD_DATA_DIR"]) / "forexd.db"
    w = spawn_worker(fault_env, role="ticks", name="sqlite")
    wait_for(lambda: _count(f"sqlite:///{db}") > 0, 120, interval=0.2, what="first candles in SQLite")
    holder = SqliteLockHolder(db, 8.0)
    try:
        holder.wait_locked()
        _publish_burst(kafka_bootstrap, fault_env, 3_000, start=3_000)
        assert holder.proc.wait(30) == 0
    finally:
        holder.close()
    report, converged = settle(kafka_bootstrap, fault_env)
    print(f"sqlite lock: converged {converged:.1f}s after release; {report.summary()}")
    assert w.alive(), w.log()[-3000:]
    assert not report.violations, report.summary() + "\n" + w.log()[-3000:]
