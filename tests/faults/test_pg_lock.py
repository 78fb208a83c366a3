"""Issue 15: a lock another session holds on PostgreSQL (an operator's ``LOCK TABLE``, a stuck
transaction) under a running worker. With ``FOREXD_DB_LOCK_TIMEOUT_S`` each checkpoint fails
as transient within the lock timeout instead of hanging; the worker stays up, retries, and
resumes once the lock is released; the final DB equals the oracle."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from ..integration.kafka_io import publish
from ..waiting import wait_for_workers
from .harness import make_topics, settle, tick_records
from .test_db_faults import _count

pytestmark = [pytest.mark.broker, pytest.mark.postgres]


def test_a_held_table_lock_pauses_checkpoints_and_the_worker_resumes_on_release(
    fault_env: dict[str, str], spawn_worker: Any, kafka_bootstrap: str, pg_url: str
) -> None:
    env = dict(fault_env, FOREXD_DATABASE_URL=pg_url, FOREXD_DB_LOCK_TIMEOUT_S="1")
    topic = f"{env['FOREXD_TOPIC_PREFIX']}fx.ticks"
    make_topics(kafka_bootstrap, env)
    published = publish(kafka_bootstrap, topic, tick_records(2_000))
    w = spawn_worker(env, role="ticks", name="pg-lock")
    wait_for_workers(lambda: _count(pg_url) > 0 or not w.alive(), w, what="first candles in PostgreSQL")
    other = sa.create_engine(pg_url)  # no timeouts: it holds the lock as long as the test says
    holder = other.connect()
    tx = holder.begin()
    try:
        holder.execute(sa.text("LOCK TABLE state_snapshots IN ACCESS EXCLUSIVE MODE"))
        published += publish(kafka_bootstrap, topic, tick_records(2_000, start=2_000))
        # progress, not the clock: the worker's checkpoints meet the lock and are retried
        wait_for_workers(
            lambda: "canceling statement due to lock timeout" in w.log() or not w.alive(),
            w,
            what="checkpoints failing on the lock timeout",
        )
        assert w.alive(), "the worker died while the lock was held:\n" + w.log()[-3000:]
    finally:
        tx.rollback()
        holder.close()
        other.dispose()
    report, converged = settle(kafka_bootstrap, env, timeout_s=60, published=published, workers=[w])
    print(f"pg lock: converged {converged:.1f}s after release; {report.summary()}")
    assert w.alive(), w.log()[-3000:]
    assert not report.violations, report.summary() + "\n" + w.log()[-3000:]
    failed = [ln for ln in w.log().splitlines() if "checkpoint.failed" in ln]
    assert failed and "TransientStorageError" in failed[0], failed[:1]  # transient: waited out, not fatal
    assert "checkpoint.recovered" in w.log(), w.log()[-3000:]
