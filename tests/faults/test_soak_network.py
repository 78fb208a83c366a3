"""Long form (``-m soak``) of F15 (database slow) and F16 (client↔broker partition): 20 cycles
each through the TCP fault proxy, under one worker that is never restarted; the final DB and
``fx.candles`` equal the oracle. Prints cycles, ticks, lost, duplicated, recovery times and
the final convergence like ``test_soak.py``."""

from __future__ import annotations

import random
import statistics
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from ..integration.kafka_io import publish
from .harness import Generator, by_symbol, hour_bursts, make_topics, settle, sqlite_url, wait_for
from .network import (
    CheckpointWatch,
    PartitionCycle,
    ProxiedBroker,
    dial_broker_directly,
    group_churn,
    partition_cycle,
    uncovered,
    via,
    worker_starts,
)
from .proxy import FaultProxy

pytestmark = [pytest.mark.broker, pytest.mark.soak]
CYCLES = 20


def _print(what: str, published: int, report: Any, recoveries: list[float], converged: float, extra: str) -> None:
    print(
        f"soak[{what}]: cycles={CYCLES} ticks={published} lost={len(report.lost)} "
        f"duplicated_db_rows={report.db_rows - report.expected + len(report.lost)} "
        f"recovery_s median={statistics.median(recoveries):.1f} max={max(recoveries):.1f} "
        f"final_converge_s={converged:.1f} {extra} {report.summary()}"
    )


@pytest.mark.postgres
@pytest.mark.timeout(1800)
def test_soak_twenty_slow_database_spells_end_equal_to_oracle(
    fault_env: dict[str, str],
    spawn_worker: Any,
    kafka_bootstrap: str,
    pg_url: str,
) -> None:
    """F15 long form: 20 bursts; after the first third of each is published, PostgreSQL
    (behind the proxy) turns slow, 100-300 ms per chunk each way, for 5-15 s while the rest
    of the burst is published. The worker never
    leaves its group and is never restarted; recovery = heal to the checkpoint covering the
    whole log (0 when the checkpoints kept pace). The final DB equals the oracle."""
    rnd = random.Random(17)
    pg = make_url(pg_url)
    topic = f"{fault_env['FOREXD_TOPIC_PREFIX']}fx.ticks"
    bursts, published, recoveries, lags, writes = hour_bursts(CYCLES), 0, [], [], []
    with FaultProxy(pg.host or "127.0.0.1", pg.port or 5432) as proxy, CheckpointWatch(pg_url, topic) as watch:
        env = dict(fault_env, FOREXD_DATABASE_URL=via(proxy, pg_url))
        make_topics(kafka_bootstrap, env)
        w = spawn_worker(env, role="ticks", name="soak-pg-slow")
        wait_for(lambda: "Worker]: Ready" in w.log(), 120, interval=0.2, what="worker ready")
        pid = w.proc.pid
        for cycle in range(CYCLES):
            delay_ms, spell = rnd.uniform(100.0, 300.0), rnd.uniform(5.0, 15.0)
            third = len(bursts[cycle]) // 3
            published += publish(kafka_bootstrap, topic, bursts[cycle][:third], partition_of=by_symbol)
            proxy.delay(delay_ms)
            slow = time.monotonic()
            gen = Generator(kafka_bootstrap, topic, batch=100, interval_s=0.05).start(bursts[cycle][third:])
            published += gen.join(120)
            time.sleep(max(0.0, spell - (time.monotonic() - slow)))
            lag = uncovered(gen.acked, watch.offsets())
            writes.append(len(watch.between(slow, time.monotonic())))
            proxy.heal()
            healed = time.monotonic()
            wait_for(
                lambda gen=gen: all(v <= 0 for v in uncovered(gen.acked, watch.offsets()).values()),
                120,
                interval=0.05,
                what=f"checkpoints covering burst {cycle}",
            )
            recoveries.append(time.monotonic() - healed)
            lags.append(sum(max(0, v) for v in lag.values()))
            assert w.alive(), f"the worker died in slow spell {cycle}:\n" + w.log()[-3000:]
        stats = proxy.stats()
        report, converged = settle(
            kafka_bootstrap, dict(env, FOREXD_DATABASE_URL=pg_url), timeout_s=180, published=published
        )
    log = w.log()
    churn = group_churn(log)
    _print(
        "slow database",
        published,
        report,
        recoveries,
        converged,
        f"checkpoint_writes_per_spell median={statistics.median(writes):.0f} min={min(writes)} "
        f"uncovered_offsets_at_heal median={statistics.median(lags):.0f} max={max(lags)} "
        f"checkpoint_failed={log.count('checkpoint.failed')} group_churn={len(churn)} proxy[{stats.summary()}]",
    )
    assert w.alive() and w.proc.pid == pid and worker_starts(log) == 1, log[-3000:]
    assert not churn, "the worker left or rejoined its group:\n" + "\n".join(churn[:10])
    assert min(writes) >= 1, f"a slow spell without a single checkpoint: {writes}"
    assert not report.violations, report.summary() + "\n" + log[-3000:]


@pytest.mark.timeout(3600)
def test_soak_twenty_broker_partitions_of_30_to_90_s_end_equal_to_oracle(
    fault_env: dict[str, str],
    spawn_worker: Any,
    tmp_path: Path,
) -> None:
    """F16 long form: 20 bursts; after the first third of each is published and partly
    checkpointed, the proxy between the worker and the broker forwards nothing for 30-90 s
    (RELIABILITY's range; the session timeout is 6 s) while the rest is published directly,
    then heals; every other heal first resets the held
    connections. The same worker reconnects every time; recovery = heal to the first
    checkpoint past the offsets checkpointed at the heal. The final DB (each candle once) and
    fx.candles equal the oracle."""
    rnd = random.Random(19)
    cycles: list[PartitionCycle] = []
    broker = ProxiedBroker(tmp_path / "proxied-broker.log").start()
    try:
        with dial_broker_directly(broker):
            env = dict(fault_env, FOREXD_BROKER_URL=broker.url)
            topic = f"{env['FOREXD_TOPIC_PREFIX']}fx.ticks"
            make_topics(broker.bootstrap, env)
            w = spawn_worker(env, role="ticks", name="soak-partition")
            wait_for(lambda: "Worker]: Ready" in w.log(), 120, interval=0.2, what="worker ready")
            pid = w.proc.pid
            bursts = hour_bursts(CYCLES)
            with CheckpointWatch(sqlite_url(env), topic) as watch:
                for cycle in range(CYCLES):
                    cycles.append(
                        partition_cycle(
                            broker,
                            watch,
                            topic,
                            bursts[cycle],
                            rnd.uniform(30.0, 90.0),
                            reset_on_heal=cycle % 2 == 1,
                            timeout_s=180,
                        )
                    )
                    assert w.alive(), f"the worker died in partition {cycle}:\n" + w.log()[-3000:]
            stats = broker.proxy.stats()
            published = sum(c.acked for c in cycles)
            report, converged = settle(broker.bootstrap, env, timeout_s=180, published=published)
            assert w.alive(), w.log()[-3000:]
            w.stop()  # while the broker is up
    finally:
        broker.stop()
    log = w.log()
    caught = [c.caught_up_s for c in cycles]
    _print(
        "broker partitions",
        published,
        report,
        [c.resume_s for c in cycles],
        converged,
        f"partition_s min={min(c.partition_s for c in cycles):.0f} max={max(c.partition_s for c in cycles):.0f} "
        f"total={sum(c.partition_s for c in cycles):.0f} caught_up_s median={statistics.median(caught):.1f} "
        f"max={max(caught):.1f} checkpoint_failed={log.count('checkpoint.failed')} "
        f"group_churn={len(group_churn(log))} topic_redeliveries={report.topic_duplicates} "
        f"proxy[{stats.summary()}]",
    )
    assert w.proc.pid == pid and worker_starts(log) == 1, log[-3000:]
    assert not report.violations, report.summary() + "\n" + log[-3000:]
