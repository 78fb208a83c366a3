"""Two workers in one group: a second worker joins mid-stream (the partitions are split
between them), then the first is killed with SIGKILL (the survivor takes every partition).
The state each worker takes over is the checkpoint stored with its offsets in the database,
not a changelog replay: the final DB and fx.candles equal the oracle (I1, I2, I5, I11).

This is the scenario of the measured Faust warning in issue #8 (a changelog-backed table
lost updates across exactly this handover)."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest

from ..integration.kafka_io import publish
from ..waiting import wait_for_workers
from .harness import bad_records, interleave, make_topics, settle, tick_records

pytestmark = pytest.mark.broker
PARTITION = {b"EURUSD": 0, b"USDJPY": 1}  # one symbol per partition, so both workers get work


def _partition(key: bytes | None) -> int:
    return PARTITION.get(key or b"", 0)  # refused records (e.g. an unknown symbol) go with EURUSD


def _status_processed(log: str) -> int:
    lines = [ln for ln in log.splitlines() if "ticks.status processed=" in ln]
    return int(lines[-1].split("processed=")[1].split()[0]) if lines else 0


def test_second_worker_joins_then_first_is_killed_ends_equal_to_oracle(
    fault_env: dict[str, str],
    spawn_worker: Any,
    kafka_bootstrap: str,
    tmp_path: Path,
) -> None:
    env_a = dict(fault_env, FOREXD_DATABASE_URL=f"sqlite:///{tmp_path / 'shared.db'}")
    env_b = dict(env_a, FOREXD_DATA_DIR=str(tmp_path / "var-b"))
    make_topics(kafka_bootstrap, env_a)
    topic = f"{env_a['FOREXD_TOPIC_PREFIX']}fx.ticks"
    bursts = [tick_records(2_500, start=i * 2_500) for i in range(3)]
    t0 = int(bursts[0][200][1].split(b'"ts":')[1].split(b",")[0])
    published = publish(kafka_bootstrap, topic, interleave(bursts[0], bad_records(t0)), _partition)

    a = spawn_worker(env_a, role="ticks", name="a")
    wait_for_workers(lambda: _status_processed(a.log()) > 0, a, what="worker a processing", interval=0.5)
    b = spawn_worker(env_b, role="ticks", name="b")
    # the group rebalances: each worker ends up with one partition of fx.ticks
    wait_for_workers(lambda: "Worker]: Ready" in b.log(), a, b, what="worker b assigned", interval=0.5)
    published += publish(kafka_bootstrap, topic, bursts[1], _partition)
    wait_for_workers(
        lambda: _status_processed(b.log()) > 0, a, b, what="worker b processing its partition", interval=0.5
    )
    a.kill(signal.SIGKILL)
    assert a.wait(30) is not None
    published += publish(kafka_bootstrap, topic, bursts[2], _partition)
    report, converged = settle(kafka_bootstrap, env_b, timeout_s=120, published=published, workers=[b])
    print(f"rebalance+kill: converged {converged:.1f}s {report.summary()}")
    assert b.alive(), b.log()[-3000:]
    assert not report.violations, report.summary() + "\nA:\n" + a.log()[-2000:] + "\nB:\n" + b.log()[-3000:]
