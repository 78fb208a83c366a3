"""Long form (``-m soak``) of the input faults F9, F10 and F11 (RELIABILITY.md §1): 20 bursts
into one running ``ticks`` worker, each burst mixing all three. Prints cycles, ticks,
duplicates and late ticks injected and dead-lettered, lost, duplicated DB rows and the
convergence times."""

from __future__ import annotations

import random
import statistics
import time
from collections import Counter
from typing import Any

import pytest

from streams.broker import free_port
from streams.settings import Settings

from ..integration.kafka_io import read_all
from .harness import Record, fold, hour_bursts, make_topics, sqlite_url, wait_for
from .input_faults import (
    clean_oracle,
    converge,
    dead_letter_reasons,
    expected_refusals,
    metric,
    out_of_order,
    publish_with_restart,
    safe_db,
    shuffle_within,
    ts_of,
    with_copies,
    with_late,
)

pytestmark = [pytest.mark.broker, pytest.mark.soak]
CYCLES = 20


@pytest.mark.timeout(1800)
def test_soak_twenty_bursts_of_duplicate_shuffled_and_late_ticks_end_equal_to_oracle(
    fault_env: dict[str, str],
    spawn_worker: Any,
    kafka_bootstrap: str,
) -> None:
    """Each cycle publishes one clock hour of real ticks (two symbols) into the running
    worker: shuffled within 75 % of the allowed lateness (F10), with 1 % extra ticks older
    than the watermark minus the lateness (F11), 5 % re-published 1-400 records later (F9),
    and published by a producer without idempotence that is stopped mid-burst with 50-300
    records in flight, which a new producer sends again (F9). After each burst the DB must
    reach the oracle of the clean ticks so far (sorted by event time); at the end the DB
    and fx.candles equal it, each copy is dead-lettered once as ``duplicate`` and each late
    tick once as ``late``, and the worker's counters agree."""
    rnd = random.Random(23)
    port = free_port()
    env = dict(fault_env, FOREXD_METRICS_PORT=str(port))
    lateness = Settings.from_env(env).allowed_lateness_ms
    topic = f"{env['FOREXD_TOPIC_PREFIX']}fx.ticks"
    url = sqlite_url(env)
    make_topics(kafka_bootstrap, env)
    bursts = hour_bursts(CYCLES)
    w = spawn_worker(env, role="ticks", name="soak-input")
    wait_for(lambda: "Worker]: Ready" in w.log(), 120, interval=0.2, what="worker ready")
    clean: list[Record] = []
    late_ids: set[str] = set()
    copies = resent = published = moved = 0
    convergence: list[float] = []
    floors: list[float] = []  # the idle timer's wall-clock walk to the burst's last bar end
    for cycle, burst in enumerate(bursts):
        arrival = shuffle_within(burst, int(lateness * 0.75), rnd)
        moved += out_of_order(arrival)
        arrival, late = with_late(arrival, max(5, len(burst) // 100), lateness, rnd, tag=f"late{cycle}", start=50)
        stream, n_copies = with_copies(arrival, 0.05, rnd, max_gap=400)
        sent = publish_with_restart(
            kafka_bootstrap,
            topic,
            stream,
            restart_at=rnd.randint(len(stream) // 3, 2 * len(stream) // 3),
            in_flight=rnd.randint(50, 300),
        )
        assert not sent.failures and sent.records == len(stream) + sent.resent, sent
        t0 = time.monotonic()
        clean += burst
        late_ids |= late
        copies, resent, published = copies + n_copies, resent + sent.resent, published + sent.records
        expected = clean_oracle(clean, lateness).candles
        try:
            wait_for(
                lambda expected=expected: safe_db(url) == expected,
                120,
                interval=0.25,
                what=f"the DB to equal the oracle after burst {cycle}",
            )
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{w.log()[-4000:]}") from None
        convergence.append(time.monotonic() - t0)
        floors.append(_idle_floor_s(burst, lateness, float(env["FOREXD_IDLE_CLOSE_S"])))
        assert w.alive(), w.log()[-3000:]
        print(
            f"cycle {cycle}: ticks={len(burst)} late={len(late)} copies={n_copies} resent={sent.resent} "
            f"(of {sent.in_flight} in flight) records={sent.records} converged {convergence[-1]:.1f}s "
            f"(idle-close floor {floors[-1]:.1f}s)",
            flush=True,
        )
    ticks = read_all(kafka_bootstrap, topic, expect=published, timeout_s=120)
    assert len(ticks) == published, f"read {len(ticks)} of {published} published ticks"
    oracle = clean_oracle(clean, lateness)
    oracle.refused = expected_refusals(ticks, late_ids)
    reasons = Counter(oracle.refused.values())
    assert reasons == {"duplicate": copies + resent, "late": len(late_ids)}, reasons
    assert fold(ticks, allowed_lateness_ms=lateness).candles == oracle.candles  # the topic's own fold agrees
    report, converged = converge(kafka_bootstrap, env, oracle, timeout_s=120)
    late_counted = metric(port, "forexd_late_ticks_total")
    dups_counted = metric(port, "forexd_dead_letters_total", source="ticks", reason="duplicate")
    beyond = [c - f for c, f in zip(convergence, floors, strict=True)]
    dead = Counter(r for _p, _o, r in dead_letter_reasons(kafka_bootstrap, env, report.dead_letters))
    print(
        f"soak[input F9+F10+F11]: cycles={CYCLES} ticks={len(clean)} records_published={published} "
        f"out_of_order={moved} duplicates_injected={copies + resent} (copies {copies}, resent after producer "
        f"restarts {resent}) duplicates_dead_lettered={dead['duplicate']} (metric {dups_counted:.0f}) "
        f"late_injected={len(late_ids)} late_dead_lettered={dead['late']} (forexd_late_ticks_total "
        f"{late_counted:.0f}) lost={len(report.lost)} duplicated_db_rows="
        f"{report.db_rows - report.expected + len(report.lost)} convergence_after_burst_s "
        f"median={statistics.median(convergence):.1f} max={max(convergence):.1f} (beyond the idle-close floor: median "
        f"{statistics.median(beyond):.1f} max {max(beyond):.1f}) final_converge_s={converged:.1f} "
        f"{report.summary()}"
    )
    assert not report.violations, report.summary() + "\n" + w.log()[-3000:]
    assert dead == reasons
    assert late_counted == len(late_ids) and dups_counted == copies + resent
    assert w.alive(), w.log()[-3000:]
    w.stop()


def _idle_floor_s(burst: list[Record], lateness_ms: int, idle_close_s: float) -> float:
    """The least wall time after a burst before its last bars can close: the idle timer moves
    a quiet series' clock with wall time, from its last tick, and the hour bar closes when
    that clock minus the lateness reaches the hour's end."""
    last = max(ts_of(r) for r in burst)
    end = (last // 3_600_000 + 1) * 3_600_000
    return max(idle_close_s, (end - last + lateness_ms) / 1000.0)
