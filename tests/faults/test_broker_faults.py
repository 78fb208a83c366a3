"""F1/F3 broker faults, short form, on a private embedded broker on a fixed port.

The embedded broker keeps its log in memory, so a hard kill loses every topic and offset:
what was published before the kill cannot be checked against the broker afterwards. The
F1 test therefore asserts the candles of the first burst were checkpointed *before* the
kill (they are in the DB and stay there, unchanged and once), and for the restarted broker
asserts only liveness (the same worker, never restarted, reconnects and emits candles for
ticks published after the broker is back) and no duplicate DB rows. The F3 pause keeps the
log, so it is checked against the full oracle."""

from __future__ import annotations

import signal
import time
from typing import Any

import pytest

from streams.broker import EmbeddedBroker

from ..integration.kafka_io import publish, read_all
from .harness import (
    db_candles,
    db_count,
    make_topics,
    settle,
    sqlite_url,
    tick_records,
    wait_for,
)

pytestmark = pytest.mark.broker


def test_broker_sigkill_and_restart_worker_reconnects_without_duplicates(
    fault_env: dict[str, str], spawn_worker: Any, own_broker: EmbeddedBroker,
) -> None:
    """Broker SIGKILLed after a checkpointed burst and restarted on the same port 5 s later:
    the worker survives without a restart, candles checkpointed before the kill are intact
    and unique, and ticks published after the broker is back reach fx.candles (liveness)."""
    env = dict(fault_env, FOREXD_BROKER_URL=own_broker.url)
    boot = own_broker.bootstrap
    make_topics(boot, env)
    publish(boot, f"{env['FOREXD_TOPIC_PREFIX']}fx.ticks", tick_records(1_000, jpy=False))
    w = spawn_worker(env, role="ticks", name="broker-kill")
    first, _ = settle(boot, env)
    assert not first.violations, first.summary()
    before = db_candles(sqlite_url(env))

    own_broker.signal(signal.SIGKILL)
    assert own_broker.proc is not None
    own_broker.proc.wait(10)
    time.sleep(5)
    own_broker.start()
    back = time.monotonic()
    make_topics(boot, env)
    later = tick_records(3_000, start=1_000, jpy=False)
    publish(boot, f"{env['FOREXD_TOPIC_PREFIX']}fx.ticks", later)
    wait_for(lambda: read_all(boot, f"{env['FOREXD_TOPIC_PREFIX']}fx.candles", idle_s=0.5, timeout_s=3),
             90, interval=1.0, what="candles after the broker restart")
    resumed = time.monotonic() - back
    assert w.alive(), w.log()[-3000:]
    url = sqlite_url(env)
    after = db_candles(url)
    assert db_count(url) == len(after) == len({(c.symbol, c.timeframe, c.open_ms) for c in after})
    assert set(before) <= set(after), "candles checkpointed before the broker kill changed or vanished"
    # The new log restarts at offset 0 while the worker's checkpoint says ~1,000: count how
    # many of the later ticks made it into 1m candles (reported, see docs/reliability.md).
    new_1m = [c for c in after if c.timeframe == "1m" and c not in before]
    print(f"broker sigkill: later ticks {len(later)}, counted in new 1m candles {sum(c.tick_count for c in new_1m)}")
    print(f"broker sigkill: first candles {resumed:.1f}s after the broker returned; db rows {len(before)} -> {len(after)}")
    w.stop()  # while the broker is up: a worker stopping without one waits out its timeouts


def test_broker_paused_then_resumed_worker_drains_to_oracle(
    fault_env: dict[str, str], spawn_worker: Any, own_broker: EmbeddedBroker,
) -> None:
    """Broker SIGSTOPped for 10 s mid-burst, then SIGCONT: the worker does not crash and the
    final DB and fx.candles equal the oracle (F3: I1, I2, I5, L1)."""
    env = dict(fault_env, FOREXD_BROKER_URL=own_broker.url)
    boot = own_broker.bootstrap
    make_topics(boot, env)
    publish(boot, f"{env['FOREXD_TOPIC_PREFIX']}fx.ticks", tick_records(6_000))
    w = spawn_worker(env, role="ticks", name="broker-pause")
    wait_for(lambda: _count(sqlite_url(env)) > 0, 120, interval=0.1, what="first checkpoint")
    own_broker.signal(signal.SIGSTOP)
    try:
        time.sleep(10)
    finally:
        own_broker.signal(signal.SIGCONT)
    report, converged = settle(boot, env)
    print(f"broker pause: converged {converged:.1f}s after SIGCONT; {report.summary()}")
    assert w.alive(), w.log()[-3000:]
    assert not report.violations, report.summary() + "\n" + w.log()[-3000:]
    w.stop()  # while the broker is up


def _count(url: str) -> int:
    try:
        return db_count(url)
    except Exception:  # noqa: BLE001
        return 0
