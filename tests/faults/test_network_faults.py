"""F15 (database slow) and F16 (client↔broker partition), short form, through a TCP fault proxy.

RELIABILITY §1 injects both with ``tc netem`` and ``iptables``, which these machines lack;
:class:`~tests.faults.proxy.FaultProxy` stands between the worker and the one service the
fault concerns, and the test's own clients (generator, oracle, checker) go around it.

* F15: the worker's PostgreSQL is reached through the proxy; mid-burst every chunk is held
  200 ms each way for 20 s while ticks keep arriving. The worker stays in its group (no
  rebalance, no eviction, no restart), checkpoints go on during the delay and catch up with
  the log, and the final DB and ``fx.candles`` equal the oracle.
* F16: the worker reaches a private broker only through the proxy (the broker advertises
  it); mid-burst the proxy forwards nothing for longer than the session timeout while
  ticks keep arriving, then aborts the held connections and heals, so every client of the
  worker (fetcher, group coordinator, producer) must reconnect. The same worker process
  checkpoints again and drains; the DB holds each candle once and equals the oracle with
  ``fx.candles``. The long form (``test_soak_network.py``) holds 30-90 s partitions and
  heals every other one without the reset.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from ..integration.kafka_io import publish
from ..waiting import wait_for_workers
from .harness import (
    Generator,
    bad_records,
    by_symbol,
    interleave,
    make_topics,
    settle,
    sqlite_url,
    tick_records,
    wait_for,
)
from .network import (
    CheckpointWatch,
    ProxiedBroker,
    dial_broker_directly,
    group_churn,
    partition_cycle,
    uncovered,
    via,
    worker_starts,
)
from .proxy import FaultProxy

pytestmark = pytest.mark.broker

N_TICKS = 6_000  # EUR/USD rows of the sample; with the derived USD/JPY about 11,000 records
DB_DELAY_MS = 200.0
DB_SLOW_S = 20.0


def _records() -> list[tuple[bytes | None, bytes]]:
    good = tick_records(N_TICKS)
    t0 = int(good[200][1].split(b'"ts":')[1].split(b",")[0])
    return interleave(good, bad_records(t0))


@pytest.mark.postgres
def test_slow_postgres_200ms_per_chunk_keeps_worker_in_group_and_checkpointing(
    fault_env: dict[str, str],
    spawn_worker: Any,
    kafka_bootstrap: str,
    pg_url: str,
) -> None:
    """F15: PostgreSQL behind a proxy that holds every chunk 200 ms each way for 20 s, started
    mid-burst while ticks keep arriving: no rebalance or eviction (the log shows one join and
    no revocation; the process is never restarted), checkpoints continue during the delay
    and cover the whole published log before it ends, and the final DB and fx.candles equal
    the oracle (I1, I2, I5, I11)."""
    pg = make_url(pg_url)
    topic = f"{fault_env['FOREXD_TOPIC_PREFIX']}fx.ticks"
    records = _records()
    head, tail = records[:3_000], records[3_000:]
    with FaultProxy(pg.host or "127.0.0.1", pg.port or 5432) as proxy, CheckpointWatch(pg_url, topic) as watch:
        env = dict(fault_env, FOREXD_DATABASE_URL=via(proxy, pg_url))
        make_topics(kafka_bootstrap, env)
        published = publish(kafka_bootstrap, topic, head, partition_of=by_symbol)
        w = spawn_worker(env, role="ticks", name="pg-slow")
        pid = w.proc.pid
        wait_for_workers(lambda: watch.offsets(), w, what="the first checkpoint in PostgreSQL", interval=0.1)
        proxy.delay(DB_DELAY_MS)
        slow = time.monotonic()
        gen = Generator(kafka_bootstrap, topic, batch=100, interval_s=0.1).start(tail)  # ~8 s of ticks
        published += gen.join(120)
        fed = time.monotonic()
        time.sleep(max(0.0, DB_SLOW_S - (fed - slow)))  # the fault lasts DB_SLOW_S at least
        # ... and until the checkpoints, written through the slow database, cover the whole
        # published log: how soon depends on the machine, so the wait follows the offsets.
        wait_for(
            lambda: all(v <= 0 for v in uncovered(gen.acked, watch.offsets()).values()),
            60,
            interval=0.2,
            what="checkpoints to cover the log while PostgreSQL is slow",
            progress=watch.offsets,
        )
        at_heal = watch.offsets()
        during = watch.between(slow, time.monotonic())
        lag = uncovered(gen.acked, at_heal)
        stats = proxy.stats()
        proxy.heal()
        healed = time.monotonic()
        assert w.alive(), "the worker died while PostgreSQL was slow:\n" + w.log()[-3000:]
        report, converged = settle(
            kafka_bootstrap, dict(env, FOREXD_DATABASE_URL=pg_url), published=published, workers=[w]
        )
    log = w.log()
    churn = group_churn(log)
    failed = log.count("checkpoint.failed")
    gaps = [b.seen - a.seen for a, b in zip(during, during[1:], strict=False)]
    print(
        f"F15 slow PG ({DB_DELAY_MS:.0f} ms/chunk for {DB_SLOW_S:.0f} s): {len(during)} checkpoint writes "
        f"during the delay (largest gap {max(gaps, default=0):.1f}s), feed done {fed - slow:.1f}s in, "
        f"uncovered offsets at heal {lag}; checkpoint.failed lines {failed}; group churn {len(churn)}; "
        f"proxy {stats.summary()}; converged {converged:.1f}s after heal "
        f"({time.monotonic() - healed:.1f}s with the checks); {report.summary()}"
    )
    assert w.alive() and w.proc.pid == pid and worker_starts(log) == 1, log[-3000:]
    assert not churn, "the worker left or rejoined its group:\n" + "\n".join(churn[:10])
    assert stats.chunks_delayed > 0, f"no database traffic went through the delay: {stats.summary()}"
    assert {e.partition for e in during} == {0, 1}, f"checkpoints during the delay: {during}"
    assert len(during) >= 4, f"only {len(during)} checkpoint writes in {healed - slow:.0f} s of a slow database"
    assert all(v <= 0 for v in lag.values()), f"checkpoints did not keep pace: offsets not covered at heal {lag}"
    assert not report.violations, report.summary() + "\n" + log[-3000:]


F16_PARTITION_S = 12.0  # longer than the test workers' session timeout (TEST_SESSION_TIMEOUT_S, 6 s)
RESUME_BUDGET_S = 30.0  # as for a broker restart (F1): consuming again within 30 s


def test_broker_partition_longer_than_session_timeout_worker_reconnects_to_oracle(
    fault_env: dict[str, str],
    spawn_worker: Any,
    tmp_path: Path,
) -> None:
    """F16: the worker reaches the broker only through the proxy; mid-burst the proxy
    forwards nothing for 12 s (> the 6 s session timeout) while ticks keep arriving directly,
    then resets the held connections and heals. The same worker process (never restarted)
    reconnects and checkpoints again within 30 s, and the final DB (each candle once) and
    fx.candles equal the oracle (I1, I2, I5, I11)."""
    broker = ProxiedBroker(tmp_path / "proxied-broker.log").start()
    try:
        with dial_broker_directly(broker):
            env = dict(fault_env, FOREXD_BROKER_URL=broker.url)
            topic = f"{env['FOREXD_TOPIC_PREFIX']}fx.ticks"
            make_topics(broker.bootstrap, env)
            w = spawn_worker(env, role="ticks", name="partition")
            wait_for_workers(lambda: "Worker]: Ready" in w.log(), w, what="worker ready")
            pid = w.proc.pid
            with CheckpointWatch(sqlite_url(env), topic) as watch:
                cycle = partition_cycle(broker, watch, topic, _records(), F16_PARTITION_S, reset_on_heal=True)
            stats = broker.proxy.stats()
            report, converged = settle(broker.bootstrap, env, published=cycle.acked, workers=[w])
            assert w.alive(), w.log()[-3000:]
            w.stop()  # while the broker is up
    finally:
        broker.stop()
    log = w.log()
    churn = group_churn(log)
    print(
        f"F16 partition {cycle.partition_s:.0f}s (session timeout {env['FOREXD_BROKER_SESSION_TIMEOUT_S']}s): "
        f"acked {cycle.acked_at_cut}/{cycle.acked} at the cut; heal (connections reset) -> next checkpoint "
        f"{cycle.resume_s:.1f}s, -> caught up {cycle.caught_up_s:.1f}s; {cycle.reconnects} new connections; "
        f"group churn lines {len(churn)}, checkpoint.failed {log.count('checkpoint.failed')}; "
        f"proxy {stats.summary()}; converged {converged:.1f}s; {report.summary()}"
    )
    assert w.proc.pid == pid and worker_starts(log) == 1, log[-3000:]
    assert cycle.reconnects >= 1, f"the worker opened no connection after the reset: {stats.summary()}"
    assert cycle.resume_s <= RESUME_BUDGET_S, f"the worker checkpointed again only {cycle.resume_s:.1f}s after the heal"
    assert not report.violations, report.summary() + "\n" + log[-3000:]
