"""Long form (``-m soak``) of F14's lock and of F17: 20 cycles each.

- F14: another process holds ``BEGIN EXCLUSIVE`` on the worker's SQLite file for 3-30 s, taken
  a third of the way into each burst while the rest of it is published. One worker
  throughout, never restarted. Recovery: from the lock's release to the next checkpoint, and
  to the checkpoint covering every tick acknowledged before the release.
- F17: the topic grows by one burst per cycle; a live worker keeps its database equal to the
  oracle, and each cycle a worker of a new consumer group replays the whole topic from
  offset 0 into the same (populated) replay database; cycle 0 and a last replay go into
  empty ones. Every replayed table is row-for-row identical to the live one, each row once.

Prints cycles, ticks, lost, duplicated, recovery and replay times.
"""

from __future__ import annotations

import hashlib
import random
import statistics
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from forex_diffusion.storage import make_engine
from forex_diffusion.storage.tables import candles as candles_table
from forex_diffusion.storage.tables import snapshots

from ..integration.kafka_io import publish
from .harness import (
    Generator,
    SqliteLockHolder,
    bad_records,
    by_symbol,
    db_count,
    hour_bursts,
    interleave,
    make_topics,
    settle,
    sqlite_url,
    wait_for,
)

pytestmark = [pytest.mark.broker, pytest.mark.soak]
CYCLES = 20


def _burst(records: list[Any]) -> list[Any]:
    """A burst of real ticks with the catalogue's refused records spread through it."""
    t0 = int(records[len(records) // 2][1].split(b'"ts":')[1].split(b",")[0])
    return interleave(records, bad_records(t0))


def _offsets(url: str, topic: str, consumer: str | None = None) -> dict[int, int]:
    """Checkpointed offsets of ``topic`` per partition (of ``consumer`` only, when given);
    empty while the database has none or cannot be read."""
    try:
        eng = make_engine(url)
    except Exception:  # noqa: BLE001 - no file yet
        return {}
    try:
        q = sa.select(snapshots.c.partition, snapshots.c.offset).where(snapshots.c.topic == topic)
        if consumer is not None:
            q = q.where(snapshots.c.consumer == consumer)
        with eng.connect() as c:
            return {int(r.partition): int(r.offset) for r in c.execute(q)}
    except Exception:  # noqa: BLE001
        return {}
    finally:
        eng.dispose()


def _rows(url: str) -> list[tuple[Any, ...]]:
    """The candle table as stored, every column, in key order (for byte-for-byte comparison)."""
    eng = make_engine(url)
    try:
        with eng.connect() as c:
            return [
                tuple(r)
                for r in c.execute(
                    sa.select(candles_table).order_by(
                        candles_table.c.symbol, candles_table.c.timeframe, candles_table.c.open_ms
                    )
                )
            ]
    finally:
        eng.dispose()


def _rows_or_none(url: str) -> list[tuple[Any, ...]] | None:
    try:
        return _rows(url)
    except Exception:  # noqa: BLE001 - the worker is creating the file
        return None


def _digest(rows: list[tuple[Any, ...]]) -> str:
    return hashlib.sha256(repr(rows).encode()).hexdigest()[:16]


@pytest.mark.timeout(1800)
def test_soak_twenty_sqlite_exclusive_locks_of_3_to_30_s_end_equal_to_oracle(
    fault_env: dict[str, str],
    spawn_worker: Any,
    kafka_bootstrap: str,
) -> None:
    """20 cycles: a burst is being published; a third of the way in, another process takes
    ``BEGIN EXCLUSIVE`` on the worker's SQLite file for 3-30 s while the rest arrives. The
    worker is never restarted, never exits and never gives up (``database is locked`` is
    transient); after each release it checkpoints again, and at the end the DB and
    fx.candles equal the oracle with nothing lost and no row twice."""
    rnd = random.Random(23)
    env = fault_env
    boot, topic = kafka_bootstrap, f"{env['FOREXD_TOPIC_PREFIX']}fx.ticks"
    make_topics(boot, env)
    url = sqlite_url(env)
    db = Path(env["FOREXD_DATA_DIR"]) / "forexd.db"
    bursts = [_burst(b) for b in hour_bursts(CYCLES)]
    w = spawn_worker(env, role="ticks", name="soak-sqlite-lock")
    wait_for(lambda: w.alive() and "Worker]: Ready" in w.log(), 120, interval=0.2, what="worker ready")
    pid = w.proc.pid
    gen = Generator(boot, topic, batch=50, interval_s=0.05, partition_of=by_symbol)
    holds, to_next, to_backlog, pending_at_release = [], [], [], []
    published = 0
    for cycle in range(CYCLES):
        gen.start(bursts[cycle])
        target = published + len(bursts[cycle]) // 3
        wait_for(lambda target=target: len(gen.acked) >= target, 120, interval=0.05, what=f"a third of burst {cycle}")
        hold = rnd.uniform(3.0, 30.0)
        holds.append(hold)
        holder = SqliteLockHolder(db, hold)
        try:
            holder.wait_locked()
            published = gen.join(180)  # the rest of the burst arrives under the lock
            assert holder.proc.wait(hold + 60) == 0
        finally:
            holder.close()
        released = time.monotonic()
        at_release = _offsets(url, topic)
        backlog: dict[int, int] = {}
        for _t, p, off, _v in gen.acked:
            backlog[p] = max(backlog.get(p, -1), off)
        pending_at_release.append(sum(max(0, off - at_release.get(p, -1)) for p, off in backlog.items()))
        nxt = None
        while True:
            now = _offsets(url, topic)
            if nxt is None and any(off > at_release.get(p, -1) for p, off in now.items()):
                nxt = time.monotonic() - released
            if all(now.get(p, -1) >= off for p, off in backlog.items()):
                covered = time.monotonic() - released
                break
            assert time.monotonic() - released < 120, (
                f"cycle {cycle}: no checkpoint covering {backlog} "
                f"within 120 s of the release (at {now})\n" + w.log()[-3000:]
            )
            time.sleep(0.05)
        to_next.append(0.0 if nxt is None else nxt)  # None: the release found everything checkpointed
        to_backlog.append(covered)
        assert w.alive() and w.proc.pid == pid, w.log()[-3000:]
        print(
            f"cycle {cycle}: lock {hold:.1f}s; {pending_at_release[-1]} offsets uncheckpointed at the release; "
            f"next checkpoint {to_next[-1]:.2f}s, backlog covered {covered:.2f}s after it",
            flush=True,
        )
    report, converged = settle(boot, env, timeout_s=180, published=published)
    log = w.log()
    failed, retried = log.count("checkpoint.failed"), log.count("db.retry")
    dup_rows = report.db_rows - report.expected + len(report.lost)
    print(
        f"soak[sqlite locks]: cycles={CYCLES} ticks={published} lost={len(report.lost)} duplicated_db_rows="
        f"{dup_rows} lock_s {min(holds):.1f}-{max(holds):.1f} (sum {sum(holds):.0f}) "
        f"release_to_next_checkpoint_s median={statistics.median(to_next):.2f} max={max(to_next):.2f} "
        f"release_to_backlog_checkpoint_s median={statistics.median(to_backlog):.2f} max={max(to_backlog):.2f} "
        f"uncheckpointed_at_release median={statistics.median(pending_at_release):.0f} "
        f"max={max(pending_at_release)} failed_checkpoints={failed} db_retries={retried} "
        f"final_converge_s={converged:.1f} {report.summary()}"
    )
    assert w.alive() and w.proc.pid == pid, log[-3000:]
    assert "storage.fatal" not in log and "[CRITICAL]" not in log, log[-3000:]
    assert not report.violations, report.summary() + "\n" + log[-3000:]
    w.stop()


@pytest.mark.timeout(2400)
def test_soak_twenty_replays_from_zero_into_a_populated_db_give_identical_tables(
    fault_env: dict[str, str],
    spawn_worker: Any,
    kafka_bootstrap: str,
    tmp_path: Path,
) -> None:
    """20 cycles: one more burst on the topic, the live worker settles equal to the oracle,
    then a worker of a fresh consumer group replays the whole topic from offset 0 into the
    replay database (empty in cycle 0, populated by the earlier replays after). Its table is
    identical to the live one, every column of every row, each row once; a last replay into
    an empty database gives the same table again."""
    boot, app = kafka_bootstrap, fault_env["FOREXD_APP_ID"]
    topic = f"{fault_env['FOREXD_TOPIC_PREFIX']}fx.ticks"
    make_topics(boot, fault_env)
    live_url = f"sqlite:///{tmp_path / 'live.db'}"
    replay_url = f"sqlite:///{tmp_path / 'replay.db'}"
    live_env = dict(fault_env, FOREXD_DATABASE_URL=live_url)
    bursts = [_burst(b) for b in hour_bursts(CYCLES)]
    live = spawn_worker(live_env, role="ticks", name="live")
    published, durations, sizes = 0, [], []

    def replay(k: int | str, url: str) -> float:
        """Replay the topic from 0 into ``url`` with a new group; seconds until it equals the live table."""
        env = dict(fault_env, FOREXD_DATABASE_URL=url, FOREXD_APP_ID=f"{app}-r{k}")
        consumer = f"{app}-r{k}:ticks"
        end = _offsets(live_url, topic, f"{app}:ticks")  # the live worker has the whole topic
        want = _rows(live_url)
        t0 = time.monotonic()
        r = spawn_worker(env, role="ticks", name=f"replay-{k}")
        try:
            wait_for(
                lambda: (
                    all(_offsets(url, topic, consumer).get(p, -1) >= off for p, off in end.items())
                    and _rows_or_none(url) == want
                ),
                240,
                interval=0.25,
                what=f"replay {k} equal to the live table",
            )
            took = time.monotonic() - t0
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{r.log()[-3000:]}") from None
        r.stop()
        got = _rows(url)
        assert got == want, f"replay {k}: the table changed at stop"
        assert db_count(url) == len(got) == len({row[:3] for row in got}), "a candle held twice"
        return took

    for cycle in range(CYCLES):
        published += publish(boot, topic, bursts[cycle])
        report, _ = settle(boot, live_env, timeout_s=180, published=published)
        assert not report.violations, report.summary() + "\n" + live.log()[-3000:]
        before = _rows(replay_url) if cycle else []
        durations.append(replay(cycle, replay_url))
        rows = _rows(replay_url)
        sizes.append(len(rows))
        assert set(before) <= set(rows), "a replay into the populated DB changed a row it already held"
        print(
            f"cycle {cycle}: {published} records, {len(rows)} candles ({_digest(rows)}); replay into "
            f"{'an empty' if cycle == 0 else 'the populated'} DB equal after {durations[-1]:.1f}s",
            flush=True,
        )
    last = replay("empty", f"sqlite:///{tmp_path / 'empty.db'}")
    final = _rows(live_url)
    assert _rows(replay_url) == final == _rows(f"sqlite:///{tmp_path / 'empty.db'}")
    report, converged = settle(boot, live_env, timeout_s=60, published=published)
    assert not report.violations, report.summary()
    print(
        f"soak[replay]: cycles={CYCLES} ticks={published} candles={len(final)} ({_digest(final)}) "
        f"lost={len(report.lost)} duplicated_db_rows={db_count(replay_url) - len(final)} "
        f"replay_s median={statistics.median(durations):.1f} max={max(durations):.1f} "
        f"first={durations[0]:.1f} last={durations[-1]:.1f} final_empty_replay_s={last:.1f} {report.summary()}"
    )
    live.stop()
