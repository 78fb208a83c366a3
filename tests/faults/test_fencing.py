"""Issue 15, fencing: a worker paused with its checkpoint in hand cannot overwrite the state
of the worker that took its partitions over.

Worker ``a`` stops itself (SIGSTOP, failpoint ``pause_before_checkpoint_write``) at a
checkpoint it has captured but not written. Worker ``b`` joins; the group evicts the silent
``a`` and gives ``b`` every partition, whose claims make ``b`` their owner (a new epoch); ``b``
processes the rest of the log and checkpoints it. Then ``a`` is resumed (SIGCONT): its stale
checkpoint is refused (``progress.fenced`` at ERROR, no exit), nothing of it is written, and
the database ends equal to the oracle.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from forex_diffusion.storage import make_engine, snapshots

from ..integration.kafka_io import publish
from ..waiting import wait_for_workers
from .harness import make_topics, settle, tick_records, wait_for

pytestmark = pytest.mark.broker


def _stopped(pid: int) -> bool:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0] == "T"


def _rows(url: str, topic: str) -> dict[int, tuple[int, int]]:
    eng = make_engine(url)
    try:
        with eng.connect() as c:
            q = sa.select(snapshots.c.partition, snapshots.c.offset, snapshots.c.epoch).where(
                snapshots.c.topic == topic
            )
            return {r.partition: (r.offset, r.epoch) for r in c.execute(q)}
    finally:
        eng.dispose()


def test_a_paused_worker_resumed_after_its_eviction_cannot_overwrite_the_new_owner(
    fault_env: dict[str, str],
    spawn_worker: Any,
    kafka_bootstrap: str,
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    # the 2nd write: the tick agent takes the burst in one or two checkpoints, and the idle
    # close of the last bars writes one more; idle advances that close no bar write none (a
    # 3rd write came from those and, on a fast run, never came)
    env_a = dict(fault_env, FOREXD_DATABASE_URL=url, FOREXD_FAILPOINT="pause_before_checkpoint_write:2")
    env_b = dict(fault_env, FOREXD_DATABASE_URL=url, FOREXD_DATA_DIR=str(tmp_path / "var-b"))
    make_topics(kafka_bootstrap, env_a)
    topic = f"{env_a['FOREXD_TOPIC_PREFIX']}fx.ticks"
    published = publish(kafka_bootstrap, topic, tick_records(4_000))
    a = spawn_worker(env_a, role="ticks", name="a")
    assert a.proc is not None
    wait_for_workers(lambda: _stopped(a.proc.pid), a, what="worker a paused at its 2nd checkpoint")
    paused = _rows(url, topic)
    b = spawn_worker(env_b, role="ticks", name="b")
    report, converged = settle(kafka_bootstrap, env_b, timeout_s=180, published=published, workers=[b])
    assert not report.violations, report.summary() + "\nB:\n" + b.log()[-3000:]
    owned = _rows(url, topic)
    assert all(owned[p][1] > paused.get(p, (-1, 0))[1] for p in owned), (paused, owned)  # b claimed each

    a.proc.send_signal(signal.SIGCONT)
    wait_for(lambda: "progress.fenced" in a.log(), 60, interval=0.2, what="a's stale checkpoint refused")
    assert a.alive(), a.log()[-3000:]
    after = _rows(url, topic)
    assert {p: off for p, (off, _e) in after.items()} == {p: off for p, (off, _e) in owned.items()}, (owned, after)
    report, _ = settle(kafka_bootstrap, env_b, timeout_s=120, published=published)
    assert not report.violations, report.summary() + "\nA:\n" + a.log()[-3000:]
    print(f"fencing: b converged in {converged:.1f}s; a refused: {a.log().count('progress.fenced')} partition(s)")
    a.stop()
    b.stop()
