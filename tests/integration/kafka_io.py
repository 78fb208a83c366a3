"""Small synchronous helpers to publish and read topics in integration tests."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterable, Iterator
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

from streams.kafka import ensure_topics
from streams.settings import Settings


def create_topics(bootstrap: str, names: Iterable[str], partitions: int) -> None:
    """Create the topics where missing, as the command-line tools do (:func:`streams.kafka.ensure_topics`)."""
    asyncio.run(ensure_topics(Settings(broker_url=bootstrap, partitions=partitions), names))


def publish(bootstrap: str, topic: str, records: Iterable[tuple[bytes | None, bytes]], partition_of: Any = None) -> int:
    """Publish ``(key, value)`` records in order; ``partition_of(key)`` picks partitions
    explicitly (default: the producer's key hash, :class:`DefaultPartitioner`).

    One call is atomic to a consumer as far as Kafka allows: the records are grouped by
    partition (order kept within each) into record batches of up to ``BATCH_BYTES``, built
    in memory and only then sent, so a burst of up to 1 MiB a partition (the fault tests'
    largest is under 0.9 MB in all) lands in its partition's log at once. Sent one
    by one, a pause of the publishing process mid-burst (a busy machine) left a caught-up
    worker idle in the middle of a burst, and its idle close ended bars that the rest of the
    burst then reached late; the test's oracle has no such pause.
    """

    async def go() -> int:
        p = AIOKafkaProducer(
            bootstrap_servers=bootstrap,
            linger_ms=10,
            max_batch_size=BATCH_BYTES,
            max_request_size=4 * 1024 * 1024,
        )
        await p.start()
        try:
            by_partition = await _group(p, topic, records, partition_of)
            futs = []
            for part, recs in by_partition.items():
                for batch in _batches(p, recs):
                    futs.append(await p.send_batch(batch, topic, partition=part))
            await asyncio.gather(*futs)
        finally:
            await p.stop()
        return sum(len(recs) for recs in by_partition.values())

    return asyncio.run(go())


BATCH_BYTES = 1024 * 1024
"""The largest record batch :func:`publish` builds (the consumers' default fetch size)."""


async def _group(
    producer: AIOKafkaProducer, topic: str, records: Iterable[tuple[bytes | None, bytes]], partition_of: Any
) -> dict[int, list[tuple[bytes | None, bytes]]]:
    """``records`` by partition, in order within each."""
    partitions = sorted(await producer.partitions_for(topic))
    pick = DefaultPartitioner()
    out: dict[int, list[tuple[bytes | None, bytes]]] = {}
    for key, value in records:
        part = None if partition_of is None else partition_of(key)
        part = pick(key, partitions, partitions) if part is None else part
        out.setdefault(part, []).append((key, value))
    return out


def _batches(producer: AIOKafkaProducer, records: list[tuple[bytes | None, bytes]]) -> Iterator[Any]:
    """``records`` as few full record batches, in order."""
    batch = producer.create_batch()
    for key, value in records:
        if len(key or b"") + len(value or b"") > BATCH_BYTES:  # aiokafka takes any first record
            raise ValueError(f"a record of {len(value or b'')} bytes is larger than a batch ({BATCH_BYTES})")
        if batch.append(key=key, value=value, timestamp=None) is None:
            yield batch
            batch = producer.create_batch()
            batch.append(key=key, value=value, timestamp=None)
    if batch.record_count():
        yield batch


def read_all(
    bootstrap: str,
    topic: str,
    *,
    idle_s: float = 2.0,
    timeout_s: float = 30.0,
    expect: int | None = None,
    distinct: Any = None,
) -> list[Any]:
    """Every record of ``topic`` from the beginning, until ``expect`` are read or it is idle.

    With ``distinct`` (a function of a message), ``expect`` counts distinct keys, so
    redelivered copies do not end the wait early.

    ``timeout_s`` follows progress: it is the longest wait for the *next* record, not for all
    of them, so a slow or busy machine that keeps producing is never cut off mid-way.
    """

    async def go() -> list[Any]:
        c = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False)
        await c.start()
        out: list[Any] = []
        last = time.monotonic()
        try:
            while time.monotonic() - last < timeout_s:
                batch = await c.getmany(timeout_ms=300)
                got = False
                for msgs in batch.values():
                    for m in msgs:
                        out.append(m)
                        got = True
                if got:
                    last = time.monotonic()
                n = len(out) if distinct is None else len({distinct(m) for m in out})
                if expect is not None and n >= expect and time.monotonic() - last > 0.5:
                    break
                if expect is None and out and time.monotonic() - last > idle_s:
                    break
        finally:
            await c.stop()
        return out

    return asyncio.run(go())


def values(msgs: list[Any]) -> list[dict[str, Any]]:
    return [json.loads(m.value) for m in msgs]
