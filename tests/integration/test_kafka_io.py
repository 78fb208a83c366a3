"""The tests' publisher: one call lands in each partition's log at once, in order, whatever
pauses the publishing process takes in the middle of it."""

from __future__ import annotations

import asyncio
import threading
import time
import zlib
from collections.abc import Iterator

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from .kafka_io import create_topics, publish, read_all

pytestmark = pytest.mark.broker
PARTITIONS = 2


def _ends_seen(bootstrap: str, topic: str, stop: threading.Event) -> set[tuple[int, ...]]:
    """Every distinct tuple of log ends of ``topic`` seen while ``stop`` is not set."""

    async def go() -> set[tuple[int, ...]]:
        c = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        await c.start()
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        seen: set[tuple[int, ...]] = set()
        try:
            while not stop.is_set():
                ends = await c.end_offsets(tps)
                seen.add(tuple(ends[tp] for tp in tps))
                await asyncio.sleep(0.02)
        finally:
            await c.stop()
        return seen

    return asyncio.run(go())


def _paused_burst(n: int, pause_s: float, paused: threading.Event) -> Iterator[tuple[bytes | None, bytes]]:
    """``n`` records on two keys with a pause of the whole process in the middle (the thread
    sleeps, as a descheduled publisher would)."""
    for i in range(n):
        if i == n // 2:
            paused.set()
            time.sleep(pause_s)
        yield (b"EURUSD" if i % 2 else b"USDJPY", b"%06d" % i + b"x" * 100)


def test_a_burst_with_a_pause_lands_at_once(kafka_bootstrap: str, topic_prefix: str) -> None:
    topic = f"{topic_prefix}.burst"
    create_topics(kafka_bootstrap, [topic], PARTITIONS)
    n = 1200  # about 66 KB a key: four of the producer's default 16 KiB batches before the pause
    stop, paused = threading.Event(), threading.Event()
    seen: list[set[tuple[int, ...]]] = []
    watch = threading.Thread(target=lambda: seen.append(_ends_seen(kafka_bootstrap, topic, stop)))
    watch.start()
    try:
        sent = publish(kafka_bootstrap, topic, _paused_burst(n, 1.5, paused), lambda k: zlib.crc32(k) % PARTITIONS)
    finally:
        stop.set()
        watch.join()
    assert paused.is_set() and sent == n
    per_key = {zlib.crc32(k) % PARTITIONS: n // 2 for k in (b"EURUSD", b"USDJPY")}
    final = tuple(per_key.get(p, 0) for p in range(PARTITIONS))
    # each partition's log end went from 0 to its share in one step, never through a part of it
    for p in range(PARTITIONS):
        assert {ends[p] for ends in seen[0]} <= {0, final[p]}, f"partition {p} showed a part of the burst"
    got = read_all(kafka_bootstrap, topic, expect=n)
    for p in range(PARTITIONS):
        values = [m.value for m in got if m.partition == p]
        assert values == sorted(values), "order within a partition is kept"
    assert sorted(m.value for m in got) == sorted(v for _k, v in _paused_burst(n, 0.0, threading.Event()))


def test_default_partitioning_is_the_producers_key_hash(kafka_bootstrap: str, topic_prefix: str) -> None:
    """Without ``partition_of`` a key goes where a plain producer sends it (murmur2, as the
    workers' own producers and Java clients), so tests that rely on co-partitioning hold."""
    from aiokafka.partitioner import DefaultPartitioner

    topic = f"{topic_prefix}.keyed"
    create_topics(kafka_bootstrap, [topic], 4)
    keys = [f"K{i}".encode() for i in range(40)]
    publish(kafka_bootstrap, topic, [(k, k) for k in keys])
    got = read_all(kafka_bootstrap, topic, expect=len(keys))
    want = {k: DefaultPartitioner()(k, [0, 1, 2, 3], [0, 1, 2, 3]) for k in keys}
    assert {m.key: m.partition for m in got} == want


def test_a_record_larger_than_a_batch_is_refused(kafka_bootstrap: str, topic_prefix: str) -> None:
    """aiokafka takes any record into an empty batch and ``send_batch`` skips the producer's
    size check: without its own, the publisher sent a 3 MiB record the old one refused."""
    topic = f"{topic_prefix}.big"
    create_topics(kafka_bootstrap, [topic], 1)
    with pytest.raises(ValueError, match="larger than a batch"):
        publish(kafka_bootstrap, topic, [(b"K", b"x" * (3 * 1024 * 1024))])
