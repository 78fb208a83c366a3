"""F4/F5/F3-style worker faults, short form: one cycle each of SIGKILL, SIGTERM,
SIGSTOP+SIGCONT and every failpoint, on a burst of real ticks (two symbols, two
partitions, a few refused records). After the fault the final DB and ``fx.candles`` equal
the oracle fold of the ticks topic: nothing lost, nothing counted twice, each candle once
in the DB, and exactly the refused records dead-lettered."""

from __future__ import annotations

import ast
import re
import signal
import time
from typing import Any

import pytest

from ..integration.kafka_io import publish
from ..waiting import wait_for_workers
from .harness import (
    bad_records,
    by_symbol,
    checkpoint_offsets,
    db_count,
    interleave,
    make_topics,
    past_session_s,
    settle,
    sqlite_url,
    tick_records,
    wait_for_producer_reset,
)

pytestmark = pytest.mark.broker

N_TICKS = 6_000  # EUR/USD rows of the sample; with the derived USD/JPY about 11,000 records


def _burst(bootstrap: str, env: dict[str, str]) -> int:
    good = tick_records(N_TICKS)
    t0 = int(good[200][1].split(b'"ts":')[1].split(b",")[0])
    records = interleave(good, bad_records(t0))
    make_topics(bootstrap, env)
    # each symbol on its own partition: a checkpoint covers two partitions (the key hash
    # would put both on partition 1)
    return publish(bootstrap, f"{env['FOREXD_TOPIC_PREFIX']}fx.ticks", records, by_symbol)


def _first_checkpoint(env: dict[str, str], w: Any) -> None:
    """Wait for the first checkpointed candles of ``w``, while its start-up and consumption go on."""
    wait_for_workers(lambda: _safe_count(sqlite_url(env)) > 0, w, what="the first checkpointed candles", interval=0.1)


def _safe_count(url: str) -> int:
    try:
        return db_count(url)
    except Exception:  # noqa: BLE001 - the file may not exist yet
        return 0


@pytest.mark.parametrize(
    "fault",
    [
        "sigkill",
        # D8 (docs/reliability.md): once seen failing with 6 bars off the oracle, before the D9 fix
        # and the final checkpoint on SIGTERM; 25 of 25 runs since, 10 of them under load
        "sigterm",
        "sigstop",
    ],
)
def test_worker_signal_mid_burst_ends_equal_to_oracle(
    fault: str,
    fault_env: dict[str, str],
    spawn_worker: Any,
    kafka_bootstrap: str,
) -> None:
    """A worker killed (-9), stopped gracefully (-TERM) or paused (-STOP/-CONT) 2 s longer than
    the session timeout in the middle of a burst, then restarted (kill, term) or resumed
    (stop), ends with the DB and fx.candles equal to the oracle (I1, I2, I5, I11)."""
    n = _burst(kafka_bootstrap, fault_env)
    w = first = spawn_worker(fault_env, role="ticks", name="first")
    _first_checkpoint(fault_env, w)
    before = db_count(sqlite_url(fault_env))
    if fault == "sigkill":
        w.kill(signal.SIGKILL)
        assert w.wait(30) is not None
    elif fault == "sigterm":
        w.kill(signal.SIGTERM)
        rc = w.wait(60)
        assert rc is not None, "SIGTERM did not stop the worker within 60 s"
        # F5: a graceful stop checkpoints what it processed before it exits
        stopped = re.findall(r"shutdown\.checkpoint consumer=\S+ offsets=(\{[^}]*\})", w.log())
        assert stopped, "no final checkpoint on SIGTERM\n" + w.log()[-3000:]
        topic = f"{fault_env['FOREXD_TOPIC_PREFIX']}fx.ticks"
        assert checkpoint_offsets(sqlite_url(fault_env), topic) == ast.literal_eval(stopped[-1])
    else:
        assert w.proc is not None
        os_pause(w.proc.pid, past_session_s(fault_env))
    t_restart = time.monotonic()
    if fault != "sigstop":
        w = spawn_worker(fault_env, role="ticks", name="second")
    report, converged = settle(kafka_bootstrap, fault_env, published=n, workers=[w])
    assert not report.violations, (
        report.summary()
        + "\n--- first worker\n"
        + first.log()[-4000:]
        + "\n--- worker after the fault\n"
        + w.log()[-4000:]
    )
    assert w.alive(), w.log()[-3000:]
    print(
        f"fault={fault} db_rows_at_fault={before} recovered_in={time.monotonic() - t_restart:.1f}s "
        f"(converged {converged:.1f}s) {report.summary()}"
    )


def os_pause(pid: int, seconds: float) -> None:
    from .harness import pause

    pause(pid, seconds)


@pytest.mark.parametrize(
    "failpoint",
    [
        "after_consume_before_processing:4000",
        "during_output_send:2",
        "after_db_upsert_before_commit:2",
    ],
)
def test_worker_failpoint_crash_then_restart_ends_equal_to_oracle(
    failpoint: str,
    fault_env: dict[str, str],
    spawn_worker: Any,
    kafka_bootstrap: str,
) -> None:
    """A worker that dies (exit 137) at a named failpoint — before processing a consumed
    message, between the output sends and their acks, between the DB checkpoint and the
    offset commit — and is restarted ends equal to the oracle (I1, I2, I3, I5, I11)."""
    n = _burst(kafka_bootstrap, fault_env)
    w = spawn_worker(
        dict(fault_env, FOREXD_FAILPOINT=failpoint, FOREXD_SNAPSHOT_INTERVAL_S="0.1"), role="ticks", name="first"
    )
    # start-up, then consumption up to the failpoint: the limit is on a stall of its log
    wait_for_workers(lambda: not w.alive(), w, what=f"the failpoint {failpoint}")
    rc = w.wait(0)
    assert rc == 137, f"failpoint {failpoint} did not fire (rc={rc})\n" + w.log()[-3000:]
    w2 = spawn_worker(fault_env, role="ticks", name="second")
    report, converged = settle(kafka_bootstrap, fault_env, published=n, workers=[w2])
    assert not report.violations, report.summary() + "\n" + w2.log()[-3000:]
    assert w2.alive()
    print(f"failpoint={failpoint} converged_in={converged:.1f}s {report.summary()}")


def test_wedged_producer_is_recreated_and_the_same_worker_ends_equal_to_oracle(
    fault_env: dict[str, str],
    spawn_worker: Any,
    kafka_bootstrap: str,
) -> None:
    """F16's "producer re-initialised after indefinite errors": at the first checkpoint with
    sends (the batch-consuming tick agent takes the whole burst in about two checkpoints, so a
    later one may never come) the failpoint ``wedge_producer`` cancels the worker's aiokafka
    sender task, so its sends are never
    delivered nor failed (the aiokafka wedge). Checkpoints fail on the ack timeout and keep
    their records; once sends have failed for ``producer_reset_after_s`` the worker builds a
    new producer and swaps it in. The same process (never restarted) then checkpoints again,
    and the DB and fx.candles equal the oracle (I1, I2, I5, I11).

    The failpoint wedges exactly once, but it does not bound the resets: on a loaded broker the
    new producer's sends can also miss the 2 s ack timeout for 5 s, and the watch then rightly
    builds another one. So the test asserts at least one reset, not exactly one."""
    n = _burst(kafka_bootstrap, fault_env)
    env = dict(
        fault_env,
        FOREXD_FAILPOINT="wedge_producer:1",
        FOREXD_PRODUCER_REQUEST_TIMEOUT_S="2",
        FOREXD_PRODUCER_RESET_AFTER_S="5",
    )
    w = spawn_worker(env, role="ticks", name="wedged")
    pid = w.proc.pid
    wait_for_producer_reset(w)
    report, converged = settle(kafka_bootstrap, fault_env, published=n, workers=[w])
    log = w.log()
    assert not report.violations, report.summary() + "\n" + log[-4000:]
    assert w.alive() and w.proc.pid == pid, log[-3000:]
    assert "failpoint wedge_producer" in log and "checkpoint.failed" in log, log[-3000:]
    resets = log.count("producer.reset failing_for=")
    assert resets >= 1, log[-3000:]
    print(
        f"wedged producer: {resets} producer reset(s), {log.count('checkpoint.failed')} failed checkpoints in all; "
        f"converged {converged:.1f}s; {report.summary()}"
    )
