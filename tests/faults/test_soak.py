"""Long form (``-m soak``): ≥ 20 cycles of worker SIGKILLs and failpoint crashes under a
restarting supervisor loop while bursts of ticks keep arriving; the final state equals the
oracle. Prints cycles, ticks, lost, duplicated and recovery times."""

from __future__ import annotations

import random
import signal
import statistics
import time
from typing import Any

import pytest

from ..integration.kafka_io import publish
from .harness import db_count, make_topics, settle, sqlite_url, tick_records, wait_for

pytestmark = [pytest.mark.broker, pytest.mark.soak]
CYCLES = 20
FAULTS = ("sigkill", "after_consume_before_processing:700", "during_output_send:2", "after_db_upsert_before_commit:2")


def test_soak_twenty_worker_crash_cycles_end_equal_to_oracle(
    fault_env: dict[str, str], spawn_worker: Any, kafka_bootstrap: str,
) -> None:
    """Each cycle publishes a burst, lets a supervisor (re)start the worker, kills it with
    SIGKILL or a failpoint mid-burst; at the end one clean worker drains and the DB and
    fx.candles equal the oracle with nothing lost and no double count."""
    rnd = random.Random(7)
    make_topics(kafka_bootstrap, fault_env)
    url = sqlite_url(fault_env)
    per = 2_000  # sample rows per burst: every burst spans an hour boundary (bursts end before one)
    recoveries: list[float] = []
    published = 0
    for cycle in range(CYCLES):
        published += publish(kafka_bootstrap, f"{fault_env['FOREXD_TOPIC_PREFIX']}fx.ticks",
                             tick_records(per, start=cycle * per))
        fault = FAULTS[cycle % len(FAULTS)]
        env = dict(fault_env) if fault == "sigkill" else dict(fault_env, FOREXD_FAILPOINT=fault,
                                                              FOREXD_SNAPSHOT_INTERVAL_S="0.1")
        before = _count(url)
        t0 = time.monotonic()
        w = spawn_worker(env, role="ticks", name=f"soak{cycle}")
        wait_for(lambda before=before, w=w: _count(url) > before or not w.alive(), 120, interval=0.1, what=f"progress in cycle {cycle}")
        recoveries.append(time.monotonic() - t0)
        if fault == "sigkill":
            time.sleep(rnd.uniform(0.0, 1.0))
            w.kill(signal.SIGKILL)
        assert w.wait(120) is not None, f"cycle {cycle} ({fault}): worker did not die"
    w = spawn_worker(fault_env, role="ticks", name="soak-final")
    report, converged = settle(kafka_bootstrap, fault_env, timeout_s=180)
    print(f"soak: cycles={CYCLES} ticks={published} lost={len(report.lost)} duplicated_db_rows="
          f"{report.db_rows - report.expected + len(report.lost)} topic_redeliveries={report.topic_duplicates} "
          f"restart_to_progress_s median={statistics.median(recoveries):.1f} max={max(recoveries):.1f} "
          f"final_converge_s={converged:.1f} {report.summary()}")
    assert not report.violations, report.summary() + "\n" + w.log()[-3000:]


def _count(url: str) -> int:
    try:
        return db_count(url)
    except Exception:  # noqa: BLE001
        return 0
