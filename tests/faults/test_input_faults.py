"""Input faults, short form (RELIABILITY.md §1 F9, F10, F11), through a real ``ticks``
worker on the embedded broker, on real EUR/USD quotes of the bundled sample (plus the derived
USD/JPY; one symbol per partition):

- F9: 5 % of the ticks re-published (same ``tick_id``) and a producer without idempotence
  stopped with a batch in flight, the batch sent again by a new producer;
- F10: ticks shuffled inside a window of event time smaller than the allowed lateness;
- F11: ticks older than the watermark minus the allowed lateness.

Each test's oracle is folded from the clean tick list in event-time order (not from the
topic); the DB and ``fx.candles`` must equal it, and the dead letters must be exactly the
injected copies (``duplicate``) and late ticks (``late``), once each."""

from __future__ import annotations

import json
import random
from collections import Counter
from typing import Any

import pytest

from forex_diffusion.domain import Tick
from forex_diffusion.errors import ValidationError
from forex_diffusion.ingest.pipeline import TickPipeline
from forex_diffusion.ingest.readers import read_ticks
from forex_diffusion.instruments import InstrumentRegistry
from streams.broker import free_port
from streams.settings import Settings

from ..integration.kafka_io import publish, read_all
from .harness import SAMPLE, TIMEFRAMES, Oracle, by_symbol, fold, make_topics, tick_records
from .input_faults import (
    DEDUP_WINDOW,
    as_messages,
    clean_oracle,
    converge,
    expected_refusals,
    max_behind,
    metric,
    out_of_order,
    publish_with_restart,
    shuffle_within,
    with_copies,
    with_late,
)

pytestmark = pytest.mark.broker

N_TICKS = 6_000  # EUR/USD rows of the sample; with the derived USD/JPY about 11,800 records


def _lateness(env: dict[str, str]) -> int:
    return Settings.from_env(env).allowed_lateness_ms


def _ticks_topic(bootstrap: str, env: dict[str, str], n: int) -> list[Any]:
    msgs = read_all(bootstrap, f"{env['FOREXD_TOPIC_PREFIX']}fx.ticks", expect=n, timeout_s=60)
    assert len(msgs) == n, f"read {len(msgs)} of {n} published ticks"
    return msgs


def _run(bootstrap: str, env: dict[str, str], spawn_worker: Any, oracle: Oracle, name: str) -> tuple[Any, Any, float]:
    w = spawn_worker(env, role="ticks", name=name)
    report, converged = converge(bootstrap, env, oracle, timeout_s=120, workers=[w])
    assert not report.violations, report.summary() + "\n" + w.log()[-4000:]
    assert w.alive(), w.log()[-3000:]
    return w, report, converged


def test_duplicate_ticks_and_a_non_idempotent_producer_restart_are_dead_lettered_once_each(
    fault_env: dict[str, str],
    spawn_worker: Any,
    kafka_bootstrap: str,
) -> None:
    """F9: 5 % of the ticks re-published 1-2,000 records after their original, and halfway
    through the stream the producer (idempotence off) stopped with 500 records in flight,
    which a new producer sends again. The candles equal those of the stream without the
    copies; every copy is dead-lettered once as ``duplicate`` (as many as injected), and the
    worker's ``forexd_dead_letters_total{reason="duplicate"}`` says the same."""
    rnd = random.Random(9)
    port = free_port()
    env = dict(fault_env, FOREXD_METRICS_PORT=str(port))
    clean = tick_records(N_TICKS)
    stream, copies = with_copies(clean, 0.05, rnd, max_gap=2_000)  # ≤ 2,000 records: ≤ ~1,000 ids of a symbol
    make_topics(kafka_bootstrap, env)
    sent = publish_with_restart(
        kafka_bootstrap, f"{env['FOREXD_TOPIC_PREFIX']}fx.ticks", stream, restart_at=len(stream) // 2, in_flight=500
    )
    assert not sent.failures and sent.resent == sent.in_flight, sent  # the stopped producer delivered its batch
    injected = copies + sent.resent
    ticks = _ticks_topic(kafka_bootstrap, env, sent.records)
    assert len(ticks) == len(clean) + injected
    oracle = clean_oracle(clean, _lateness(env))
    oracle.refused = expected_refusals(ticks, set())
    assert Counter(oracle.refused.values()) == {"duplicate": injected}
    assert fold(ticks).candles == oracle.candles  # the topic's own fold agrees (it refuses the copies)
    w, report, converged = _run(kafka_bootstrap, env, spawn_worker, oracle, "f9")
    assert metric(port, "forexd_dead_letters_total", source="ticks", reason="duplicate") == injected, w.log()[-2000:]
    print(
        f"F9: ticks={len(clean)} copies={copies} resent_after_restart={sent.resent} injected={injected} "
        f"dead_lettered={report.dead_letters}(+{report.dead_letter_copies} copies) "
        f"converged {converged:.1f}s {report.summary()}"
    )


def test_ticks_shuffled_within_the_allowed_lateness_give_the_candles_of_the_sorted_stream(
    fault_env: dict[str, str],
    spawn_worker: Any,
    kafka_bootstrap: str,
) -> None:
    """F10: the ticks shuffled so that none arrives more than 75 % of the allowed lateness
    behind its symbol's clock. Nothing is refused, and the candles equal the oracle of the
    ticks sorted by event time. (With no lateness allowed the same order would lose ticks and
    change candles: the shuffle is a real fault.)"""
    rnd = random.Random(10)
    lateness = _lateness(fault_env)
    clean = tick_records(N_TICKS)
    stream = shuffle_within(clean, int(lateness * 0.75), rnd)
    moved = out_of_order(stream)
    assert moved > len(stream) // 10, f"only {moved} ticks out of order"
    strict = fold(as_messages(stream), allowed_lateness_ms=0)
    oracle = clean_oracle(clean, lateness)
    assert strict.refused and strict.candles != oracle.candles
    make_topics(kafka_bootstrap, fault_env)
    n = publish(kafka_bootstrap, f"{fault_env['FOREXD_TOPIC_PREFIX']}fx.ticks", stream, partition_of=by_symbol)
    assert fold(_ticks_topic(kafka_bootstrap, fault_env, n)).candles == oracle.candles
    _w, report, converged = _run(kafka_bootstrap, fault_env, spawn_worker, oracle, "f10")
    assert report.dead_letters == 0
    print(
        f"F10: ticks={n} out_of_order={moved} max_behind_ms={max_behind(stream)} lateness_ms={lateness} "
        f"(strict fold would refuse {len(strict.refused)}) converged {converged:.1f}s {report.summary()}"
    )


def test_ticks_later_than_the_allowed_lateness_are_dead_lettered_counted_and_change_no_candle(
    fault_env: dict[str, str],
    spawn_worker: Any,
    kafka_bootstrap: str,
) -> None:
    """F11: 60 ticks older than their symbol's watermark (the latest event time before them
    minus the allowed lateness) by 1 ms, by up to a minute or by up to 30 minutes. The
    candles equal those of the stream without them (closed candles unchanged, on the DB
    and on fx.candles); each is dead-lettered once as ``late`` and counted in the worker's
    ``forexd_late_ticks_total``."""
    rnd = random.Random(11)
    port = free_port()
    env = dict(fault_env, FOREXD_METRICS_PORT=str(port))
    lateness = _lateness(env)
    clean = tick_records(N_TICKS)
    stream, late_ids = with_late(clean, 60, lateness, rnd)
    make_topics(kafka_bootstrap, env)
    n = publish(kafka_bootstrap, f"{env['FOREXD_TOPIC_PREFIX']}fx.ticks", stream, partition_of=by_symbol)
    ticks = _ticks_topic(kafka_bootstrap, env, n)
    oracle = clean_oracle(clean, lateness)
    oracle.refused = expected_refusals(ticks, late_ids)
    assert Counter(oracle.refused.values()) == {"late": len(late_ids)}
    topic_fold = fold(ticks, allowed_lateness_ms=lateness)
    assert topic_fold.candles == oracle.candles and topic_fold.refused == oracle.refused
    w, report, converged = _run(kafka_bootstrap, env, spawn_worker, oracle, "f11")
    counted = metric(port, "forexd_late_ticks_total")
    assert counted == len(late_ids), w.log()[-2000:]
    assert metric(port, "forexd_dead_letters_total", source="ticks", reason="late") == len(late_ids)
    print(
        f"F11: ticks={len(clean)} late_injected={len(late_ids)} late_dead_lettered={report.dead_letters} "
        f"forexd_late_ticks_total={counted:.0f} converged {converged:.1f}s {report.summary()}"
    )


# -- the duplicate window (F9's limit) ----------------------------------------------------
# The worker's validator (TickPipeline with the default ValidationConfig) remembers the last
# DEDUP_WINDOW tick ids per symbol, first in first out. These run the core, not a worker.


def _eurusd(rows: Any) -> list[Tick]:
    return [
        Tick(symbol="EURUSD", ts_ms=t, bid=b, ask=a, tick_id=f"e:{i}")
        for i, (t, b, a) in enumerate(zip(rows.ts_ms.tolist(), rows.bid.tolist(), rows.ask.tolist(), strict=True))
    ]


def _refusal(pipeline: TickPipeline, tick: Tick) -> str | None:
    try:
        pipeline.process(tick)
    except ValidationError as exc:
        return exc.reason.value
    return None


def test_on_real_ticks_a_copy_beyond_the_duplicate_window_is_refused_late_not_counted_twice() -> None:
    """Real ticks: a copy of the tick DEDUP_WINDOW ids back is a ``duplicate``; a copy of
    the one just beyond is no longer recognised, but is far older than the watermark
    (10,000 ticks of the sample span hours), so it is refused ``late``: not counted twice,
    but dead-lettered and counted as late, not as a duplicate."""
    ticks = _eurusd(read_ticks(SAMPLE).frame.iloc[: DEDUP_WINDOW + 100])
    pipeline = TickPipeline(timeframes=TIMEFRAMES, instruments=InstrumentRegistry.of(["EURUSD"]))
    assert [_refusal(pipeline, t) for t in ticks] == [None] * len(ticks)
    assert _refusal(pipeline, ticks[-DEDUP_WINDOW]) == "duplicate"
    assert _refusal(pipeline, ticks[-DEDUP_WINDOW - 1]) == "late"
    assert _refusal(pipeline, ticks[0]) == "late"


def test_a_copy_beyond_the_duplicate_window_but_within_the_lateness_is_refused() -> None:
    """D12, synthetic (the cause needs a feed denser than any real one: 10,001 ticks of a
    symbol inside the 2 s allowed lateness; the densest real file has 337): the copy is a
    ``duplicate``, also after a snapshot round trip (before the fix it was accepted, and its
    bar counted the tick twice, I2)."""
    t0 = 1_399_273_200_000  # 2014-05-05 07:00 UTC
    pipeline = TickPipeline(timeframes=TIMEFRAMES, instruments=InstrumentRegistry.of(["EURUSD"]))
    ticks = [
        Tick(symbol="EURUSD", ts_ms=t0 + i // 10, bid=1.38676, ask=1.38686, tick_id=f"s:{i}")
        for i in range(DEDUP_WINDOW + 1)
    ]
    assert [_refusal(pipeline, t) for t in ticks] == [None] * len(ticks)
    assert _refusal(pipeline, ticks[0]) == "duplicate"
    restored = TickPipeline(timeframes=TIMEFRAMES, instruments=InstrumentRegistry.of(["EURUSD"]))
    restored.restore(json.loads(json.dumps(pipeline.snapshot(["EURUSD"]))))
    assert _refusal(restored, ticks[1]) == "duplicate"
