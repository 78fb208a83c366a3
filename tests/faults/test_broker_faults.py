"""F1/F2/F3 broker faults, short form, on a private embedded broker on a fixed port.

F1 (``kill -9``) and F2 (SIGTERM) run against a *durable* embedded broker: its log and
committed offsets live in a local S3 server (moto), so they survive the kill and the oracle
can fold the whole ticks topic afterwards. The worker runs mid-burst while a generator keeps
publishing across the outage; the final DB and ``fx.candles`` must equal the oracle with no
worker restart, and every send the broker acknowledged must still be on the topic. The F3
pause keeps the log of the in-memory broker, so it runs there."""

from __future__ import annotations

import signal
import time
from typing import Any

import pytest

from streams.broker import EmbeddedBroker

from ..integration.kafka_io import publish, read_all
from ..waiting import wait_for_workers
from .harness import (
    RESUME_BUDGET_S,
    Generator,
    acked_but_missing,
    bad_records,
    bounce,
    db_count,
    describe_missing,
    hour_bursts,
    interleave,
    make_topics,
    past_session_s,
    resumed_after,
    settle,
    sqlite_url,
    tick_records,
    unexpected_errors,
)

pytestmark = pytest.mark.broker


def _count(url: str) -> int:
    try:
        return db_count(url)
    except Exception:  # noqa: BLE001
        return 0


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["sigkill", "sigterm"])
def test_durable_broker_stopped_mid_burst_and_restarted_worker_ends_equal_to_oracle(
    sig: int,
    fault_env: dict[str, str],
    spawn_worker: Any,
    durable_broker: EmbeddedBroker,
) -> None:
    """F1 (``kill -9``) and F2 (SIGTERM): the durable broker goes down for 5 s while the worker
    is mid-burst and the generator keeps publishing; after the restart the same worker (never
    restarted) consumes again within 30 s, every acknowledged send is on the topic, and the
    DB and fx.candles equal the oracle (I1, I2, I5, I11)."""
    env = dict(fault_env, FOREXD_BROKER_URL=durable_broker.url)
    boot, topic = durable_broker.bootstrap, f"{fault_env['FOREXD_TOPIC_PREFIX']}fx.ticks"
    url = sqlite_url(env)
    make_topics(boot, env)
    bursts = hour_bursts(3)
    t0 = int(bursts[0][200][1].split(b'"ts":')[1].split(b",")[0])
    records = interleave(bursts[0], bad_records(t0)) + bursts[1]
    w = spawn_worker(env, role="ticks", name=f"durable-{signal.Signals(sig).name.lower()}")
    wait_for_workers(lambda: "Worker]: Ready" in w.log(), w, what="worker ready")
    pid = w.proc.pid
    gen = Generator(boot, topic, batch=50, interval_s=0.1).start(records)
    wait_for_workers(
        lambda: _count(url) > 0 and len(gen.acked) >= len(records) // 3,
        w,
        what="a checkpoint mid-burst",
        interval=0.1,
        progress=lambda: len(gen.acked),
    )
    at_fault = len(gen.acked)
    back = bounce(durable_broker, sig, down_s=5.0)
    # the sends blocked by a kill go out once the broker is back; a SIGTERMed broker drains
    # for ~4 s first, still acknowledging sends. Then the next burst: the feed goes on.
    gen.join(120)
    gen.start(bursts[2])
    resume_s = resumed_after(gen, url, topic, back)
    n = gen.join(120)
    report, converged = settle(boot, env, published=n, workers=[w])
    ticks = read_all(boot, topic, expect=n, timeout_s=60)
    missing = acked_but_missing(gen.acked, ticks)
    errors = unexpected_errors(w.log())
    print(
        f"broker {signal.Signals(sig).name}: acked {at_fault}/{len(records)} at the fault, {n} in all "
        f"({len(ticks)} on the topic, {len(gen.failures)} failed sends resent); worker consumed again "
        f"{resume_s:.1f}s after the broker returned; converged {converged:.1f}s; "
        f"unexpected error lines {len(errors)}; {report.summary()}"
    )
    assert not missing, "acknowledged sends lost by the broker: " + describe_missing(gen.acked, ticks, missing)
    assert w.alive() and w.proc.pid == pid, w.log()[-3000:]
    assert not report.violations, report.summary() + "\n" + w.log()[-3000:]
    assert not errors, "error-level log lines beyond reconnect messages:\n" + "\n".join(errors[:20])
    assert resume_s <= RESUME_BUDGET_S, f"worker consumed again only {resume_s:.1f}s after the broker returned"
    w.stop()  # while the broker is up: a worker stopping without one waits out its timeouts


def test_broker_paused_then_resumed_worker_drains_to_oracle(
    fault_env: dict[str, str],
    spawn_worker: Any,
    own_broker: EmbeddedBroker,
) -> None:
    """Broker SIGSTOPped mid-burst for 2 s longer than the session timeout, then SIGCONT: the
    worker does not crash and the final DB and fx.candles equal the oracle (F3: I1, I2, I5, L1)."""
    env = dict(fault_env, FOREXD_BROKER_URL=own_broker.url)
    boot = own_broker.bootstrap
    make_topics(boot, env)
    publish(boot, f"{env['FOREXD_TOPIC_PREFIX']}fx.ticks", tick_records(6_000))
    w = spawn_worker(env, role="ticks", name="broker-pause")
    wait_for_workers(lambda: _count(sqlite_url(env)) > 0, w, what="first checkpoint", interval=0.1)
    own_broker.signal(signal.SIGSTOP)
    try:
        time.sleep(past_session_s(env))  # the fault's length: the broker is frozen
    finally:
        own_broker.signal(signal.SIGCONT)
    report, converged = settle(boot, env, workers=[w])
    print(f"broker pause: converged {converged:.1f}s after SIGCONT; {report.summary()}")
    assert w.alive(), w.log()[-3000:]
    assert not report.violations, report.summary() + "\n" + w.log()[-3000:]
    w.stop()  # while the broker is up
