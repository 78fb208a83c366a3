"""Long form (``-m soak``): ≥ 20 cycles of worker SIGKILLs and failpoint crashes under a
restarting supervisor loop while bursts of ticks keep arriving, of broker pauses, of broker
kills and restarts (durable broker), and of PostgreSQL outages; the final state equals the
oracle. Prints cycles, ticks, lost, duplicated and recovery times."""

from __future__ import annotations

import random
import signal
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from streams.broker import EmbeddedBroker

from ..integration.kafka_io import publish, read_all
from .harness import (
    RESUME_BUDGET_S,
    Generator,
    acked_but_missing,
    bounce,
    db_count,
    describe_missing,
    hour_bursts,
    make_topics,
    pause,
    pg_ctl,
    pg_restart_safely,
    resumed_after,
    session_s,
    settle,
    sqlite_url,
    unexpected_errors,
    wait_for,
)

pytestmark = [pytest.mark.broker, pytest.mark.soak]
CYCLES = 20
FAULTS = (
    "sigkill",
    "after_consume_before_processing:700",
    "during_output_send:2",
    "after_db_upsert_before_commit:2",
    "sigterm",
)


def test_soak_twenty_worker_crash_cycles_end_equal_to_oracle(
    fault_env: dict[str, str],
    spawn_worker: Any,
    kafka_bootstrap: str,
) -> None:
    """Each cycle publishes a burst, lets a supervisor (re)start the worker, kills it with
    SIGKILL or a failpoint mid-burst; at the end one clean worker drains and the DB and
    fx.candles equal the oracle with nothing lost and no double count."""
    rnd = random.Random(7)
    make_topics(kafka_bootstrap, fault_env)
    url = sqlite_url(fault_env)
    bursts = hour_bursts(CYCLES)  # one clock hour each, never empty
    recoveries: list[float] = []
    published = 0
    for cycle in range(CYCLES):
        published += publish(kafka_bootstrap, f"{fault_env['FOREXD_TOPIC_PREFIX']}fx.ticks", bursts[cycle])
        fault = FAULTS[cycle % len(FAULTS)]
        signalled = fault in ("sigkill", "sigterm")
        env = (
            dict(fault_env) if signalled else dict(fault_env, FOREXD_FAILPOINT=fault, FOREXD_SNAPSHOT_INTERVAL_S="0.1")
        )
        before = _count(url)
        t0 = time.monotonic()
        w = spawn_worker(env, role="ticks", name=f"soak{cycle}")
        wait_for(
            lambda before=before, w=w: _count(url) > before or not w.alive(),
            120,
            interval=0.1,
            what=f"progress in cycle {cycle}",
        )
        recoveries.append(time.monotonic() - t0)
        if signalled:
            time.sleep(rnd.uniform(0.0, 1.0))
            w.kill(signal.SIGKILL if fault == "sigkill" else signal.SIGTERM)
        assert w.wait(120) is not None, f"cycle {cycle} ({fault}): worker did not die"
    w = spawn_worker(fault_env, role="ticks", name="soak-final")
    report, converged = settle(kafka_bootstrap, fault_env, timeout_s=180, published=published)
    _report("worker crashes", published, report, recoveries, converged)
    print(
        f"soak: cycles={CYCLES} ticks={published} lost={len(report.lost)} duplicated_db_rows="
        f"{report.db_rows - report.expected + len(report.lost)} topic_redeliveries={report.topic_duplicates} "
        f"restart_to_progress_s median={statistics.median(recoveries):.1f} max={max(recoveries):.1f} "
        f"final_converge_s={converged:.1f} {report.summary()}"
    )
    assert not report.violations, report.summary() + "\n" + w.log()[-3000:]


def _count(url: str) -> int:
    try:
        return db_count(url)
    except Exception:  # noqa: BLE001
        return 0


def _stacks(w: Any) -> str:
    """Thread stacks of a stuck worker (py-spy, when installed), for the failure message."""
    import shutil
    import subprocess

    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if w.proc is None or not Path(spy).exists():
        return "(no py-spy)"
    res = subprocess.run([spy, "dump", "--pid", str(w.proc.pid)], capture_output=True, text=True, timeout=60)
    return res.stdout[-6000:] + res.stderr[-500:]


def _report(what: str, published: int, report: Any, recoveries: list[float], converged: float) -> None:
    print(
        f"soak[{what}]: cycles={CYCLES} ticks={published} lost={len(report.lost)} "
        f"duplicated_db_rows={report.db_rows - report.expected + len(report.lost)} "
        f"recovery_s median={statistics.median(recoveries):.1f} max={max(recoveries):.1f} "
        f"final_converge_s={converged:.1f}"
    )


def test_soak_twenty_broker_pauses_end_equal_to_oracle(
    fault_env: dict[str, str],
    spawn_worker: Any,
    own_broker: EmbeddedBroker,
) -> None:
    """F3 long form: 20 cycles of a burst published, then the broker SIGSTOPped for 0.4-0.75
    times the session timeout (3-6 s at 8 s, 2.4-4.5 s at 6 s: shorter than the session)
    under the running worker; recovery = time from SIGCONT to the next checkpointed candle.
    The final DB and fx.candles equal the oracle."""
    rnd = random.Random(11)
    env = dict(fault_env, FOREXD_BROKER_URL=own_broker.url)
    boot = own_broker.bootstrap
    make_topics(boot, env)
    url = sqlite_url(env)
    bursts, published, recoveries = hour_bursts(CYCLES), 0, []
    w = spawn_worker(env, role="ticks", name="soak-broker")
    for cycle in range(CYCLES):
        published += publish(boot, f"{env['FOREXD_TOPIC_PREFIX']}fx.ticks", bursts[cycle])
        before = _count(url)
        assert own_broker.proc is not None
        pause(own_broker.proc.pid, rnd.uniform(0.4, 0.75) * session_s(env))
        t0 = time.monotonic()
        try:
            wait_for(
                lambda before=before: _count(url) > before, 120, interval=0.1, what=f"progress after pause {cycle}"
            )
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{_stacks(w)}\n{w.log()[-3000:]}") from None
        recoveries.append(time.monotonic() - t0)
        assert w.alive(), w.log()[-3000:]
    report, converged = settle(boot, env, timeout_s=180, published=published)
    _report("broker pauses", published, report, recoveries, converged)
    assert not report.violations, report.summary() + "\n" + w.log()[-3000:]
    w.stop()


@pytest.mark.timeout(1800)
def test_soak_twenty_broker_kills_and_restarts_end_equal_to_oracle(
    fault_env: dict[str, str],
    spawn_worker: Any,
    durable_broker: EmbeddedBroker,
) -> None:
    """F1/F2 long form on the durable broker: 20 cycles, SIGKILL and SIGTERM in turn, each a
    third of the way into a burst the generator is publishing; the broker stays down 5-20 s
    and is restarted on the same port and storage. Recovery = broker back to the checkpoint
    covering the first tick acknowledged after its return. One worker throughout, never
    restarted; at the end every acknowledged send is on the topic and the DB and fx.candles
    equal the oracle."""
    rnd = random.Random(17)
    env = dict(fault_env, FOREXD_BROKER_URL=durable_broker.url)
    boot, topic = durable_broker.bootstrap, f"{env['FOREXD_TOPIC_PREFIX']}fx.ticks"
    make_topics(boot, env)
    url = sqlite_url(env)
    bursts, recoveries, downs = hour_bursts(CYCLES + 1), [], []
    w = spawn_worker(env, role="ticks", name="soak-broker-kill")
    wait_for(lambda: "Worker]: Ready" in w.log(), 120, interval=0.2, what="worker ready")
    pid = w.proc.pid
    gen = Generator(boot, topic, batch=50, interval_s=0.1).start(bursts[0])
    for cycle in range(CYCLES):
        target = sum(len(b) for b in bursts[:cycle]) + len(bursts[cycle]) // 3
        wait_for(lambda target=target: len(gen.acked) >= target, 120, interval=0.05, what=f"mid-burst {cycle}")
        at_fault = len(gen.acked)
        sig = signal.SIGKILL if cycle % 2 == 0 else signal.SIGTERM
        down = rnd.uniform(5.0, 20.0)
        downs.append(down)
        back = bounce(durable_broker, sig, down)
        gen.join(180)  # the sends the outage blocked (a SIGTERMed broker drains them first)
        gen.start(bursts[cycle + 1])  # the feed goes on
        try:
            recoveries.append(resumed_after(gen, url, topic, back, timeout_s=120))
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{_stacks(w)}\n{w.log()[-3000:]}") from None
        assert w.alive() and w.proc.pid == pid, w.log()[-3000:]
        print(
            f"cycle {cycle}: {signal.Signals(sig).name} down {down:.1f}s (acked {at_fault} before), "
            f"consumed again {recoveries[-1]:.1f}s after the broker returned",
            flush=True,
        )
    published = gen.join(180)
    report, converged = settle(boot, env, timeout_s=180, published=published)
    ticks = read_all(boot, topic, expect=published, timeout_s=120)
    missing = acked_but_missing(gen.acked, ticks)
    errors = unexpected_errors(w.log())
    _report("broker kills", published, report, recoveries, converged)
    print(
        f"soak[broker kills]: sigkill={(CYCLES + 1) // 2} sigterm={CYCLES // 2} down_s {min(downs):.1f}-"
        f"{max(downs):.1f} acked={published} on_topic={len(ticks)} resent={len(gen.failures)} "
        f"acked_lost={len(missing)} unexpected_error_lines={len(errors)} {report.summary()}"
    )
    assert not missing, "acknowledged sends lost by the broker: " + describe_missing(gen.acked, ticks, missing)
    assert w.alive() and w.proc.pid == pid, w.log()[-3000:]
    assert not report.violations, report.summary() + "\n" + w.log()[-3000:]
    assert max(recoveries) <= RESUME_BUDGET_S, f"recoveries {recoveries}"
    assert not errors, "error-level log lines beyond reconnect messages:\n" + "\n".join(errors[:20])
    w.stop()  # while the broker is up


@pytest.mark.postgres
@pytest.mark.serial
def test_soak_twenty_postgres_outages_and_one_of_120_s_end_equal_to_oracle(
    fault_env: dict[str, str],
    spawn_worker: Any,
    kafka_bootstrap: str,
    pg_url: str,
) -> None:
    """F13 long form: 20 PostgreSQL stops (2-5 s, immediate) while bursts arrive, then one
    outage of 120 s: the worker never exits, holds consumption while checkpoints fail, and
    drains after each return; recovery = time from PostgreSQL ready to the next checkpoint.
    The final DB equals the oracle."""
    rnd = random.Random(13)
    env = dict(fault_env, FOREXD_DATABASE_URL=pg_url)
    make_topics(kafka_bootstrap, env)
    bursts, published, recoveries = hour_bursts(CYCLES + 1), 0, []
    w = spawn_worker(env, role="ticks", name="soak-pg")
    wait_for(lambda: w.alive() and "Worker]: Ready" in w.log(), 120, interval=0.2, what="worker ready")
    for cycle in range(CYCLES + 1):
        published += publish(kafka_bootstrap, f"{env['FOREXD_TOPIC_PREFIX']}fx.ticks", bursts[cycle])
        before = _count(pg_url)
        outage = 120.0 if cycle == CYCLES else rnd.uniform(2.0, 5.0)
        try:
            pg_ctl("stop", "-m", "immediate")
            time.sleep(outage)
            assert w.alive(), f"the worker died during outage {cycle}:\n" + w.log()[-3000:]
        finally:
            pg_restart_safely()
        t0 = time.monotonic()
        wait_for(
            lambda before=before: _count(pg_url) > before, 120, interval=0.2, what=f"progress after outage {cycle}"
        )
        recoveries.append(time.monotonic() - t0)
    report, converged = settle(kafka_bootstrap, env, timeout_s=180, published=published)
    _report("postgres outages", published, report, recoveries, converged)
    assert w.alive(), w.log()[-3000:]
    assert not report.violations, report.summary() + "\n" + w.log()[-3000:]
