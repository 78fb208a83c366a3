"""Issue 15 (the D3 residual): a log reset that has grown past the checkpoint again is told by
the fingerprint of the checkpoint's record.

A worker checkpoints a first log and stops gracefully. The broker restarts empty (memory
storage: every record and committed offset is gone) and a longer log of other ticks is
published, so the new log reaches past the checkpoint: its high-water mark cannot tell the
reset (D3's test). The restarted worker reads the record at the checkpoint offset, finds
another fingerprint than the one checkpointed, logs ``progress.log_reset … fingerprint=``
and consumes the new log from there to its end. (The new log's records before the checkpoint
offset, read before the checkpoint's record, are skipped: docs/operations.md, "Fingerprint".)
"""

from __future__ import annotations

import signal
from typing import Any

import pytest
import sqlalchemy as sa

from forex_diffusion.storage import load_snapshot, make_engine, snapshots
from streams.broker import EmbeddedBroker

from ..integration.kafka_io import publish
from ..waiting import wait_for_workers
from .harness import hour_bursts, make_topics, settle, sqlite_url

pytestmark = pytest.mark.broker


def _checkpoints(url: str, topic: str) -> dict[int, tuple[int, str | None]]:
    eng = make_engine(url)
    try:
        with eng.connect() as c:
            q = sa.select(snapshots.c.partition, snapshots.c.offset, snapshots.c.fingerprint)
            return {r.partition: (r.offset, r.fingerprint) for r in c.execute(q.where(snapshots.c.topic == topic))}
    finally:
        eng.dispose()


def test_a_reset_log_grown_past_the_checkpoint_is_told_by_its_fingerprint(
    fault_env: dict[str, str],
    spawn_worker: Any,
    own_broker: EmbeddedBroker,
) -> None:
    env = dict(fault_env, FOREXD_BROKER_URL=own_broker.url)
    boot = own_broker.bootstrap
    topic = f"{env['FOREXD_TOPIC_PREFIX']}fx.ticks"
    consumer = f"{env['FOREXD_APP_ID']}:ticks"
    bursts = hour_bursts(4)
    first, second = bursts[0], [r for b in bursts[1:] for r in b]
    make_topics(boot, env)
    n = publish(boot, topic, first)
    w = spawn_worker(env, role="ticks", name="first")
    report, _ = settle(boot, env, published=n, workers=[w])
    assert not report.violations, report.summary() + "\n" + w.log()[-3000:]
    w.stop()  # graceful: checkpoints once more and commits at the checkpoint's record
    before = {p: cp for p, cp in _checkpoints(sqlite_url(env), topic).items() if cp[0] >= 0}  # -1: claimed only
    assert before and all(fp is not None for _off, fp in before.values()), before

    own_broker.signal(signal.SIGKILL)
    own_broker.wait(30)
    own_broker.start()  # memory storage: every topic, record and committed offset is gone
    make_topics(boot, env)
    m = publish(boot, topic, second)
    assert m > 2 * n, "the new log must reach past the checkpoint in every partition for this test"
    w2 = spawn_worker(env, role="ticks", name="second")
    wait_for_workers(
        lambda: "progress.log_reset" in w2.log() and "fingerprint=" in w2.log(),
        w2,
        what="the reset told by the checkpoint's fingerprint",
        timeout=240,
        interval=0.5,
        progress=lambda: _checkpoints(sqlite_url(env), topic),
    )
    eng = make_engine(sqlite_url(env))
    try:

        def consumed_to_the_end() -> bool:
            parts = range(int(env["FOREXD_PARTITIONS"]))
            cps = {p: load_snapshot(eng, consumer=consumer, topic=topic, partition=p) for p in parts}
            return sum(cp[0] + 1 for cp in cps.values() if cp is not None) == m

        wait_for_workers(consumed_to_the_end, w2, what="the new log consumed to its end", interval=0.5)
    finally:
        eng.dispose()
    assert w2.alive(), w2.log()[-3000:]
    lines = [ln for ln in w2.log().splitlines() if "progress.log_reset" in ln and "fingerprint=" in ln]
    print(f"fingerprint reset: {len(lines)} line(s); checkpoint {before}; new log {m} records")
    w2.stop()
