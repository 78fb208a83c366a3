"""D3: a worker whose broker lost its log (memory storage restarted) consumes the new log.

The worker keeps running while the broker restarts empty; its checkpoint (in the database)
is at an offset the new log does not reach. Before the fix ``PartitionProgress.admit``
skipped every new record up to that offset as "already in the state" (1,722 of 2,296 later
ticks counted in one run). Now the fetch high-water mark below the checkpoint is detected
as a reset (``progress.log_reset`` in the log) and the new log is consumed from its start.
"""

from __future__ import annotations

import signal
import time
from typing import Any

import pytest

from streams.broker import EmbeddedBroker

from ..integration.kafka_io import publish, read_all
from ..waiting import wait_for_workers
from .harness import db_candles, fold, hour_bursts, make_topics, settle, sqlite_url

pytestmark = pytest.mark.broker


def test_worker_consumes_a_log_that_restarted_below_its_checkpoint(
    fault_env: dict[str, str],
    spawn_worker: Any,
    own_broker: EmbeddedBroker,
) -> None:
    env = dict(fault_env, FOREXD_BROKER_URL=own_broker.url)
    boot = own_broker.bootstrap
    ticks_topic = f"{env['FOREXD_TOPIC_PREFIX']}fx.ticks"
    first, second = hour_bursts(2)
    second = second[-len(second) // 3 :]  # fewer records than the checkpoint's offset; ends at its hour
    make_topics(boot, env)
    n = publish(boot, ticks_topic, first)
    w = spawn_worker(env, role="ticks", name="log-reset")
    report, _ = settle(boot, env, published=n, workers=[w])
    assert not report.violations, report.summary() + "\n" + w.log()[-3000:]
    before = db_candles(sqlite_url(env))

    own_broker.signal(signal.SIGKILL)
    own_broker.wait(30)
    own_broker.start()  # memory storage: every topic, record and committed offset is gone
    back = time.monotonic()
    make_topics(boot, env)
    m = publish(boot, ticks_topic, second)
    assert m < n // 2, "the new log must end below the checkpoint for this test"
    new_log = read_all(boot, ticks_topic, idle_s=1.0, timeout_s=60, expect=m)
    expected = sorted(before + fold(new_log).candles, key=lambda c: (c.symbol, c.timeframe, c.open_ms))
    assert not set(map(_key, before)) & set(map(_key, fold(new_log).candles)), "the bursts share a bar"

    def converged() -> bool:
        got = sorted(db_candles(sqlite_url(env)), key=lambda c: (c.symbol, c.timeframe, c.open_ms))
        return got == expected

    wait_for_workers(
        converged,
        w,
        what="the new log's candles in the DB, the old ones unchanged",
        timeout=240,
        interval=0.5,
        progress=lambda: db_candles(sqlite_url(env)),
    )
    took = time.monotonic() - back
    log = w.log()
    assert "progress.log_reset" in log, log[-3000:]
    assert w.alive(), log[-3000:]
    new_1m = [c for c in fold(new_log).candles if c.timeframe == "1m"]
    print(
        f"log reset: {m} records in the new log (checkpoint was past offset {n // 2 - 1}), "
        f"{sum(c.tick_count for c in new_1m)} ticks in {len(new_1m)} new 1m candles, "
        f"all in the DB {took:.1f}s after the broker was back"
    )
    w.stop()  # while the broker is up


def _key(c: Any) -> tuple[str, str, int]:
    return (c.symbol, c.timeframe, c.open_ms)
