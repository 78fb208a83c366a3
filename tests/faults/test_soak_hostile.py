"""F12 long form (``-m soak``): 20 bursts of real FXCM EUR/USD ticks, each with a 1 % mix of
every refused catalogue row (``test_hostile_input._bad``), into one worker that is never
restarted. After every burst the checkpoint moves past the burst's last record (poison
records never hold the offset back); at the end the dead-letter topic holds exactly the
injected records with their reasons, and the candles equal the oracle."""

from __future__ import annotations

import json
import statistics
import time
from typing import Any

import pytest

from forex_diffusion.ingest.readers import read_ticks
from forex_diffusion.wire import encode

from ..integration.kafka_io import publish, read_all
from ..realdata import require
from .harness import checkpoint_offsets, make_topics, settle, sqlite_url, wait_for
from .test_hostile_input import FXCM, _bad

pytestmark = [pytest.mark.broker, pytest.mark.soak]

CYCLES = 20
PER_BURST = 2_000  # good ticks per burst: the last of a busy clock hour (its bars close on the idle timer)


@pytest.mark.timeout(1800)
def test_soak_twenty_hostile_bursts_dead_letter_exactly_and_candles_equal_oracle(
    fault_env: dict[str, str],
    spawn_worker: Any,
    kafka_bootstrap: str,
) -> None:
    require(FXCM.name)  # a bundled file: absent, the test fails
    frame = read_ticks(FXCM).frame
    hour = frame.ts_ms // 3_600_000
    busy = [h for h, n in hour.value_counts().sort_index().items() if n >= PER_BURST]
    hours = busy[:: max(1, len(busy) // CYCLES)][:CYCLES]
    assert len(hours) == CYCLES
    env = dict(fault_env, FOREXD_SYMBOLS="EURUSD")
    topic = f"{env['FOREXD_TOPIC_PREFIX']}fx.ticks"
    url = sqlite_url(env)
    make_topics(kafka_bootstrap, env)
    w = spawn_worker(env, role="ticks", name="hostile-soak")
    pid = w.proc.pid
    injected: list[str] = []
    published, good_total, past = 0, 0, []
    for cycle, h in enumerate(hours):
        rows = frame[hour == h].iloc[-PER_BURST:]
        good = [
            (b"EURUSD", encode({"v": 1, "symbol": "EURUSD", "ts": t, "bid": b, "ask": a, "tick_id": f"f:{h}:{i}"}))
            for i, (t, b, a) in enumerate(zip(rows.ts_ms.tolist(), rows.bid.tolist(), rows.ask.tolist(), strict=True))
        ]
        t0, now = int(rows.ts_ms.iloc[200]), int(time.time() * 1000)
        n_bad = len(good) // 100
        step = len(good) // (n_bad + 1)
        stream: list[tuple[bytes | None, bytes]] = []
        burst_bad = 0
        for i, rec in enumerate(good):
            stream.append(rec)
            if i > 200 and i % step == 0 and burst_bad < n_bad:
                cat = _bad(t0, now, good[0][1], len(injected))
                k, v, r = cat[len(injected) % len(cat)]
                stream.append((k, v))
                injected.append(r)
                burst_bad += 1
        sent = time.monotonic()
        published += publish(kafka_bootstrap, topic, stream)
        good_total += len(good)
        # the checkpoint passes every record of the burst, poison included
        wait_for(
            lambda n=published: sum(o + 1 for o in _checkpoint(url, topic).values()) >= n,
            120,
            interval=0.1,
            what=f"the checkpoint past burst {cycle}",
        )
        past.append(time.monotonic() - sent)
        assert w.alive(), w.log()[-3000:]
    report, converged = settle(kafka_bootstrap, env, timeout_s=180, published=published)
    dl = read_all(kafka_bootstrap, f"{env['FOREXD_TOPIC_PREFIX']}fx.deadletter", expect=len(injected), timeout_s=60)
    reasons = sorted(json.loads(m.value)["reason"] for m in dl)
    kinds = sorted(set(injected))
    print(
        f"soak[F12 hostile]: cycles={CYCLES} good_ticks={good_total} records={published} injected={len(injected)} "
        f"kinds={len(kinds)} dead_letters={len(reasons)} lost={len(report.lost)} "
        f"duplicated_db_rows={report.db_rows - report.expected + len(report.lost)} publish_to_checkpoint_past_burst_s "
        f"median={statistics.median(past):.1f} max={max(past):.1f} final_converge_s={converged:.1f} {report.summary()}"
    )
    assert reasons == sorted(injected), f"{len(reasons)} dead letters for {len(injected)} injected\n{w.log()[-4000:]}"
    assert kinds == sorted({r for _, _, r in _bad(0, 0, b"")}), kinds
    assert not report.violations, report.summary() + "\n" + w.log()[-3000:]
    assert w.alive() and w.proc.pid == pid


def _checkpoint(url: str, topic: str) -> dict[int, int]:
    try:
        return checkpoint_offsets(url, topic)
    except Exception:  # noqa: BLE001 - the worker has not created its database yet
        return {}
