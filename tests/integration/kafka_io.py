"""Small synchronous helpers to publish and read topics in integration tests."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from streams.kafka import ensure_topics
from streams.settings import Settings


def create_topics(bootstrap: str, names: Iterable[str], partitions: int) -> None:
    """Create the topics where missing, as the command-line tools do (:func:`streams.kafka.ensure_topics`)."""
    asyncio.run(ensure_topics(Settings(broker_url=bootstrap, partitions=partitions), names))


def publish(bootstrap: str, topic: str, records: Iterable[tuple[bytes | None, bytes]], partition_of: Any = None) -> int:
    """Publish ``(key, value)`` records in order; ``partition_of(key)`` picks partitions
    explicitly (default: the producer's key hash)."""

    async def go() -> int:
        p = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=10, max_request_size=4 * 1024 * 1024)
        await p.start()
        n = 0
        try:
            futs = []
            for key, value in records:
                part = None if partition_of is None else partition_of(key)
                futs.append(await p.send(topic, value=value, key=key, partition=part))
                n += 1
                if len(futs) >= 5000:
                    await asyncio.gather(*futs)
                    futs.clear()
            await asyncio.gather(*futs)
        finally:
            await p.stop()
        return n

    return asyncio.run(go())


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
