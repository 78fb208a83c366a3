"""F13/F14 database faults, short form: PostgreSQL stopped for ~12 s under a worker that
checkpoints to it, an SQLite file held under ``BEGIN EXCLUSIVE`` by another process, and an
SQLite file made read-only under a running worker.

The worker must not crash (it retries with backoff; L2), must not commit offsets past
unpersisted candles (I3), and once the database is back the final state equals the oracle
(I1, I2, I5)."""

from __future__ import annotations

import asyncio
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from streams.progress import EXIT_STORAGE_FATAL

from ..integration.kafka_io import publish
from ..waiting import wait_for_workers
from .harness import (
    SqliteLockHolder,
    bad_records,
    checkpoint_offsets,
    db_count,
    interleave,
    make_topics,
    pg_ctl,
    pg_restart_safely,
    settle,
    tick_records,
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
    fault_env: dict[str, str],
    spawn_worker: Any,
    kafka_bootstrap: str,
    pg_url: str,
) -> None:
    """PostgreSQL stopped (immediate) for 12 s while a worker checkpoints candles into it,
    with ticks still arriving: the worker stays up and, after PG returns, the DB equals
    the oracle with every candle once."""
    env = dict(fault_env, FOREXD_DATABASE_URL=pg_url)
    make_topics(kafka_bootstrap, env)
    _publish_burst(kafka_bootstrap, env, 3_000)
    w = spawn_worker(env, role="ticks", name="pg")
    wait_for_workers(lambda: _count(pg_url) > 0, w, what="first candles in PostgreSQL")
    try:
        pg_ctl("stop", "-m", "immediate")
        down = time.monotonic()
        _publish_burst(kafka_bootstrap, env, 3_000, start=3_000)  # ticks keep arriving during the outage
        time.sleep(max(0.0, 12.0 - (time.monotonic() - down)))
        assert w.alive(), "the worker died while PostgreSQL was down:\n" + w.log()[-3000:]
    finally:
        pg_restart_safely()
    back = time.monotonic()
    report, converged = settle(kafka_bootstrap, env, timeout_s=60, workers=[w])
    print(f"pg outage: recovered {time.monotonic() - back:.1f}s after PG returned; {report.summary()}")
    assert w.alive(), w.log()[-3000:]
    assert not report.violations, report.summary() + "\n" + w.log()[-3000:]


def test_sqlite_exclusive_lock_is_waited_out_and_db_equals_oracle(
    fault_env: dict[str, str],
    spawn_worker: Any,
    kafka_bootstrap: str,
) -> None:
    """Another process holds ``BEGIN EXCLUSIVE`` on the worker's SQLite file for 8 s in the
    middle of a burst: ``database is locked`` is retried, the worker stays up, and the final
    DB equals the oracle."""
    make_topics(kafka_bootstrap, fault_env)
    _publish_burst(kafka_bootstrap, fault_env, 3_000)
    db = Path(fault_env["FOREXD_DATA_DIR"]) / "forexd.db"
    w = spawn_worker(fault_env, role="ticks", name="sqlite")
    wait_for_workers(lambda: _count(f"sqlite:///{db}") > 0, w, what="first candles in SQLite")
    holder = SqliteLockHolder(db, 8.0)
    try:
        holder.wait_locked()
        _publish_burst(kafka_bootstrap, fault_env, 3_000, start=3_000)
        assert holder.proc.wait(30) == 0
    finally:
        holder.close()
    report, converged = settle(kafka_bootstrap, fault_env, workers=[w])
    print(f"sqlite lock: converged {converged:.1f}s after release; {report.summary()}")
    assert w.alive(), w.log()[-3000:]
    assert not report.violations, report.summary() + "\n" + w.log()[-3000:]


def _chattr(flag: str, paths: list[Path]) -> None:
    subprocess.run(["chattr", flag, *map(str, paths)], check=True, capture_output=True, timeout=30)


def _immutable(paths: list[Path]) -> None:
    """``chattr +i``: refused even to root (for whom ``chmod a-w`` changes nothing)."""
    try:
        _chattr("+i", paths)
    except (OSError, subprocess.CalledProcessError) as exc:  # not root, or a filesystem without it
        pytest.skip(f"chattr +i is not available, so the file cannot be made read-only for root: {exc}")


def _committed(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int]:
    """The consumer group's committed offsets of ``topic`` (partitions without one left out)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    async def go() -> dict[int, int]:
        c = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
        await c.start()
        try:
            out = {}
            for p in range(partitions):
                off = await c.committed(TopicPartition(topic, p))
                if off is not None and off >= 0:
                    out[p] = off
            return out
        finally:
            await c.stop()

    return asyncio.run(go())


def _critical_lines(log: str) -> list[str]:
    return [ln for ln in log.splitlines() if "[CRITICAL]" in ln]


def test_sqlite_read_only_is_fatal_after_a_bounded_retry_and_a_restart_equals_oracle(
    fault_env: dict[str, str],
    spawn_worker: Any,
    kafka_bootstrap: str,
) -> None:
    """F14, read-only: the worker's SQLite file (and its WAL) become read-only in the middle
    of a burst. The tests run as root, whom ``chmod a-w`` does not stop, so the files are
    made immutable (``chattr +i``): the running worker's writes then fail with ``disk I/O
    error``, a permanent error. It stops consuming, retries for the bounded budget
    (``FOREXD_DB_FATAL_AFTER_S``), logs one CRITICAL line naming the cause and the database,
    and exits non-zero; it commits no offset past the DB checkpoint. After ``chattr -i``
    (the operator's ``chmod u+w``) a restarted worker ends equal to the oracle: nothing was
    skipped."""
    make_topics(kafka_bootstrap, fault_env)
    _publish_burst(kafka_bootstrap, fault_env, 3_000)
    db = Path(fault_env["FOREXD_DATA_DIR"]) / "forexd.db"
    url = f"sqlite:///{db}"
    topic = f"{fault_env['FOREXD_TOPIC_PREFIX']}fx.ticks"
    w = spawn_worker(dict(fault_env, FOREXD_DB_FATAL_AFTER_S="3"), role="ticks", name="readonly")
    wait_for_workers(lambda: _count(url) > 0, w, what="first candles in SQLite")
    files = [f for f in (db, Path(f"{db}-wal")) if f.exists()]
    try:
        _immutable(files)
        t_ro = time.monotonic()
        durable = checkpoint_offsets(url, topic)
        _publish_burst(kafka_bootstrap, fault_env, 3_000, start=3_000)  # ticks keep arriving
        rc = w.wait(90)
        took = time.monotonic() - t_ro
        log = w.log()
        assert rc is not None, "the worker kept running on a read-only database:\n" + log[-3000:]
        assert rc == EXIT_STORAGE_FATAL, f"the worker exited with {rc} on a read-only database:\n" + log[-3000:]
        crit = _critical_lines(log)
        assert len(crit) == 1 and "storage.fatal" in crit[0] and f"db={url}" in crit[0], crit or log[-3000:]
        assert re.search(r"disk I/O error|readonly database", crit[0]), crit[0]
        failed = log.count("checkpoint.failed")
        assert failed >= 3, f"only {failed} attempts before giving up\n" + log[-3000:]
        assert checkpoint_offsets(url, topic) == durable
        committed = _committed(kafka_bootstrap, fault_env["FOREXD_APP_ID"], topic, int(fault_env["FOREXD_PARTITIONS"]))
        assert all(off <= durable.get(p, -1) + 1 for p, off in committed.items()), (committed, durable)
        print(
            f"sqlite read-only: exit {rc} {took:.1f}s after chattr +i, {failed} failed checkpoints; "
            f"checkpoint {durable}, committed {committed}"
        )
    finally:
        _chattr("-i", files)
    w2 = spawn_worker(fault_env, role="ticks", name="writable-again")
    report, converged = settle(kafka_bootstrap, fault_env, workers=[w2])
    print(f"sqlite read-only: converged {converged:.1f}s after chattr -i and a restart; {report.summary()}")
    assert w2.alive(), w2.log()[-3000:]
    assert not report.violations, report.summary() + "\n" + w2.log()[-3000:]


def test_worker_started_on_a_read_only_sqlite_file_exits_non_zero_and_commits_nothing(
    fault_env: dict[str, str],
    spawn_worker: Any,
    kafka_bootstrap: str,
) -> None:
    """F14, read-only at start (``chmod a-w`` bites a worker that opens the file): the tables
    exist, the file is immutable, ticks are waiting. The worker consumes, its first
    checkpoints fail with ``attempt to write a readonly database``; after the bounded retry
    it logs one CRITICAL line and exits non-zero, with no candle stored and no offset
    committed, so the next worker starts from offset 0."""
    make_topics(kafka_bootstrap, fault_env)
    _publish_burst(kafka_bootstrap, fault_env, 3_000)
    db = Path(fault_env["FOREXD_DATA_DIR"]) / "forexd.db"
    db.parent.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{db}"
    topic = f"{fault_env['FOREXD_TOPIC_PREFIX']}fx.ticks"
    assert db_count(url) == 0  # creates the tables
    files = [db]
    try:
        _immutable(files)
        w = spawn_worker(dict(fault_env, FOREXD_DB_FATAL_AFTER_S="3"), role="ticks", name="readonly-start")
        # start-up, consumption, the failing checkpoints: the limit is on a stall of its log
        wait_for_workers(lambda: not w.alive(), w, what="the worker to give up")
        rc = w.wait(0)
        log = w.log()
        assert rc == EXIT_STORAGE_FATAL, f"exit {rc}\n" + log[-3000:]
        crit = _critical_lines(log)
        assert len(crit) == 1 and "attempt to write a readonly database" in crit[0] and f"db={url}" in crit[0], (
            crit or log[-3000:]
        )
        assert log.count("checkpoint.failed") >= 3, log[-3000:]
        assert db_count(url) == 0 and checkpoint_offsets(url, topic) == {}
        assert _committed(kafka_bootstrap, fault_env["FOREXD_APP_ID"], topic, int(fault_env["FOREXD_PARTITIONS"])) == {}
        print(f"sqlite read-only at start: exit {rc} after {log.count('checkpoint.failed')} failed checkpoints")
    finally:
        _chattr("-i", files)
