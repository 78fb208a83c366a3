"""Issue 15: PostgreSQL down when a worker starts. The worker waits for it (WARNING
``database.wait`` lines, no exit, no restart loop), starts once it answers, and the stored
candles then equal the oracle."""

from __future__ import annotations

from typing import Any

import pytest

from ..waiting import wait_for_workers
from .harness import make_topics, pg_ctl, pg_restart_safely, settle, tick_records
from .test_db_faults import _count

pytestmark = pytest.mark.broker


@pytest.mark.postgres
@pytest.mark.serial  # stops the machine's PostgreSQL: nothing else may use it meanwhile
def test_worker_started_while_postgres_is_down_waits_then_equals_oracle(
    fault_env: dict[str, str],
    spawn_worker: Any,
    kafka_bootstrap: str,
    pg_url: str,
) -> None:
    from ..integration.kafka_io import publish

    env = dict(fault_env, FOREXD_DATABASE_URL=pg_url, FOREXD_DB_WAIT_S="600")
    make_topics(kafka_bootstrap, env)
    publish(kafka_bootstrap, f"{env['FOREXD_TOPIC_PREFIX']}fx.ticks", tick_records(2_000))
    pg_ctl("stop", "-m", "fast")
    try:
        w = spawn_worker(env, role="ticks", name="pg-late")
        # progress, not the clock: two wait lines means it is waiting, not exiting
        wait_for_workers(lambda: w.log().count("database.wait") >= 2 or not w.alive(), w, what="database.wait lines")
        assert w.alive(), "the worker exited while PostgreSQL was down:\n" + w.log()[-3000:]
        assert "Traceback" not in w.log(), w.log()[-3000:]
    finally:
        pg_restart_safely()
    wait_for_workers(lambda: _count(pg_url) > 0 or not w.alive(), w, what="first candles in PostgreSQL")
    report, _ = settle(kafka_bootstrap, env, timeout_s=60, workers=[w])
    assert w.alive(), w.log()[-3000:]
    assert not report.violations, report.summary() + "\n" + w.log()[-3000:]
    line = next(ln for ln in w.log().splitlines() if "database.wait" in ln)
    assert "WARNING" in line and "url=postgresql" in line, line
