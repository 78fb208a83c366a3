"""F8, "changelog recovery from scratch": stop the worker, delete its local table store,
restart; the recovered state equals the oracle fold and recovery finishes.

This project keeps no Faust table and no changelog: each consumer's state is stored in the
database *with the offset it reflects* (``streams/progress.py``). The local store Faust keeps
is its data directory (``<FOREXD_DATA_DIR>/faust``); the worker must not depend on it. So the
fault here deletes that directory (and everything else in the data dir except the database
file the test reads) between a kill and the restart. The restarted worker restores each
partition from the DB checkpoint (``progress.restored``) and ends equal to the oracle.
Short form: one SIGKILL; long form (``-m soak``): 20 cycles, SIGKILL and SIGTERM in turn,
each mid-burst.
"""

from __future__ import annotations

import random
import re
import shutil
import signal
import statistics
import time
from pathlib import Path
from typing import Any

import pytest

from ..integration.kafka_io import publish
from ..waiting import wait_for_workers
from .harness import (
    bad_records,
    db_count,
    hour_bursts,
    interleave,
    make_topics,
    settle,
    sqlite_url,
    tick_records,
    wait_for,
)

pytestmark = pytest.mark.broker

N_TICKS = 6_000
CYCLES = 20
# F8: the restore must not hang. Its log may stand still 60 s at most, and the whole restore
# (a worker start, a group join, the DB read: about 10 s on an idle machine) may take 300 s.
RECOVERY_STALL_S, RECOVERY_CEILING_S = 60.0, 300.0


def _count(url: str) -> int:
    try:
        return db_count(url)
    except Exception:  # noqa: BLE001 - not created yet
        return 0


def _wipe_local_store(data_dir: Path) -> list[str]:
    """Delete everything in the worker's data dir but the SQLite database; return what went."""
    gone = []
    for p in sorted(data_dir.iterdir()):
        if p.name.startswith("forexd.db"):
            continue
        gone.append(p.name)
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    return gone


def _restored(log: str) -> dict[int, int]:
    return {int(p): int(o) for p, o in re.findall(r"progress\.restored consumer=\S+ partition=(\d+) offset=(\d+)", log)}


def test_local_store_deleted_after_a_kill_restart_restores_from_db_and_equals_oracle(
    fault_env: dict[str, str],
    spawn_worker: Any,
    kafka_bootstrap: str,
) -> None:
    """F8 short form: a worker is killed (-9) after its first checkpoints, its Faust data
    directory is deleted, and the restarted worker restores from the DB checkpoint (not from
    local files) without hanging (its log never still for 60 s, the restore within 300 s); the DB and fx.candles equal the oracle (I1, I2, I5, I11)."""
    good = tick_records(N_TICKS)
    t0 = int(good[200][1].split(b'"ts":')[1].split(b",")[0])
    records = interleave(good, bad_records(t0))
    make_topics(kafka_bootstrap, fault_env)
    n = publish(kafka_bootstrap, f"{fault_env['FOREXD_TOPIC_PREFIX']}fx.ticks", records)
    url, data_dir = sqlite_url(fault_env), Path(fault_env["FOREXD_DATA_DIR"])
    w = spawn_worker(fault_env, role="ticks", name="first")
    wait_for_workers(lambda: _count(url) > 0, w, what="the first checkpointed candles", interval=0.1)
    w.kill(signal.SIGKILL)
    assert w.wait(30) is not None
    gone = _wipe_local_store(data_dir)
    assert "faust" in gone, f"no Faust local store to delete in {data_dir}: {gone}"
    t = time.monotonic()
    w2 = spawn_worker(fault_env, role="ticks", name="second")
    wait_for_workers(
        lambda: _restored(w2.log()),
        w2,
        what="restore from the DB checkpoint",
        timeout=RECOVERY_STALL_S,
        ceiling=RECOVERY_CEILING_S,
        interval=0.1,
    )
    restored_s = time.monotonic() - t
    report, converged = settle(kafka_bootstrap, fault_env, published=n, workers=[w2])
    assert not report.violations, report.summary() + "\n" + w2.log()[-4000:]
    assert w2.alive(), w2.log()[-3000:]
    print(
        f"F8: deleted {gone}; restored {_restored(w2.log())} {restored_s:.1f}s after restart; "
        f"converged {converged:.1f}s; {report.summary()}"
    )


@pytest.mark.soak
def test_soak_twenty_local_store_deletions_end_equal_to_oracle(
    fault_env: dict[str, str],
    spawn_worker: Any,
    kafka_bootstrap: str,
) -> None:
    """F8 long form: 20 cycles, each publishes one clock hour of ticks, starts a worker, kills
    it (SIGKILL and SIGTERM in turn) 0-1 s after its first progress in the cycle, and deletes
    the local store before the next start; one final worker drains. Every restart restores
    from the DB; the end equals the oracle."""
    rnd = random.Random(8)
    make_topics(kafka_bootstrap, fault_env)
    url, data_dir = sqlite_url(fault_env), Path(fault_env["FOREXD_DATA_DIR"])
    bursts = hour_bursts(CYCLES)
    published, restores, progress = 0, 0, []
    for cycle in range(CYCLES):
        published += publish(kafka_bootstrap, f"{fault_env['FOREXD_TOPIC_PREFIX']}fx.ticks", bursts[cycle])
        before = _count(url)
        t = time.monotonic()
        w = spawn_worker(fault_env, role="ticks", name=f"f8-{cycle}")
        wait_for(lambda before=before: _count(url) > before, 240, interval=0.1, what=f"progress in cycle {cycle}")
        progress.append(time.monotonic() - t)
        restores += bool(_restored(w.log()))
        time.sleep(rnd.uniform(0.0, 1.0))
        w.kill(signal.SIGKILL if cycle % 2 == 0 else signal.SIGTERM)
        assert w.wait(120) is not None, f"cycle {cycle}: worker did not stop"
        assert "faust" in _wipe_local_store(data_dir), f"cycle {cycle}: no local store to delete"
    w = spawn_worker(fault_env, role="ticks", name="f8-final")
    report, converged = settle(kafka_bootstrap, fault_env, timeout_s=180, published=published)
    print(
        f"soak[F8 local store deleted]: cycles={CYCLES} ticks={published} lost={len(report.lost)} "
        f"duplicated_db_rows={report.db_rows - report.expected + len(report.lost)} restarts_restored_from_db="
        f"{restores}/{CYCLES - 1} start_to_progress_s median={statistics.median(progress):.1f} "
        f"max={max(progress):.1f} final_converge_s={converged:.1f} {report.summary()}"
    )
    assert not report.violations, report.summary() + "\n" + w.log()[-3000:]
    assert restores >= CYCLES - 1, f"only {restores} restarts restored from the DB"
