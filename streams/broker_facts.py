"""Read what the consumer knows of each partition (:class:`~forex_diffusion.ingest.idle_close.BrokerFacts`),
and take a topic's fetched records from it in bulk (:class:`BulkFeed`).

The one place that reads Faust's and aiokafka's consumer: for the idle close and the lag
metric, the high-water mark of the last fetch response, and when that response came
(aiokafka under Faust's consumer thread; another transport answers None); for the tick
agent, the records of ``fx.ticks`` as each fetch returned them (issue 15: throughput).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any, cast

from faust.transport.drivers.aiokafka import Consumer as AIOKafkaConsumer
from faust.types import TP

from forex_diffusion.ingest.idle_close import BrokerFacts

__all__ = ["BulkConsumer", "BulkFeed", "broker_facts", "highwater", "last_fetch_ms"]


def last_fetch_ms(consumer: Any, tp: TP) -> float | None:
    """Wall-clock ms of the last fetch response for ``tp``, or None where not exposed."""
    try:
        ts = consumer._thread._consumer.last_poll_timestamp(tp)
    except Exception:  # noqa: BLE001 - another transport, or not assigned yet
        return None
    return None if ts is None else float(ts)


def highwater(consumer: Any, tp: TP) -> int | None:
    """The high-water mark of ``tp`` from the last fetch (None: no assignment or no fetch yet)."""
    try:
        hw = consumer.highwater(tp)
    except Exception:  # noqa: BLE001 - not known to be caught up
        return None
    return None if hw is None else int(hw)


def broker_facts(app: Any, topic: str, partitions: Iterable[int], offsets: Mapping[int, int]) -> dict[int, BrokerFacts]:
    """The facts of ``partitions`` of ``topic``; empty when the app has no consumer (no broker)."""
    consumer = getattr(app, "consumer", None)
    if consumer is None:
        return {}
    now_ms = time.time() * 1000.0
    out = {}
    for p in partitions:
        tp = TP(topic, p)
        polled = last_fetch_ms(consumer, tp)
        out[p] = BrokerFacts(
            highwater=highwater(consumer, tp),
            last_offset=offsets.get(p),
            fetch_age_s=None if polled is None else (now_ms - polled) / 1000.0,
        )
    return out


class BulkConsumer(AIOKafkaConsumer):
    """Faust's aiokafka consumer, handing each fetch's records of the topics of its ``feeds`` to
    their :class:`BulkFeed` at once instead of one by one to the conductor.

    Faust delivers a record through its fetcher loop, the conductor, the topic's channel queue
    and the agent's stream, several coroutine steps each: most of what a tick costs once its
    own work is small. The records handed over are those Faust's ``getmany`` would deliver
    (flow active, partition active or buffered, not below the read offset), and Faust's group
    management -- rebalances, pauses, seeks, the read offsets -- is untouched. Other topics
    go Faust's way.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.feeds: dict[str, BulkFeed] = {}

    async def _wait_next_records(self, timeout: float) -> tuple[Any, Any]:
        records, active = await super()._wait_next_records(timeout)
        if records and self.feeds and self.flow_active and not self.should_stop:
            fetched = cast(dict[TP, list[Any]], records)  # aiokafka's own dict, Faust iterates what is left
            generation = self.app.consumer_generation_id  # the fetch's (Faust's getmany takes it here too)
            for tp in [tp for tp in fetched if tp.topic in self.feeds]:
                recs = fetched.pop(tp)  # never left to Faust: it would stamp them with a later generation
                if self.app.consumer_generation_id != generation or not self.flow_active:
                    # a rebalance came while an earlier partition's records waited for the flow
                    # (put): these are the old generation's, and its seek fetches them again
                    continue
                if active is None or tp in active or tp in self._buffered_partitions:
                    await self.feeds[tp.topic].put(self, tp, recs)
        return records, active


class BulkFeed:
    """The records of one topic, in batches as fetched (:class:`BulkConsumer`), and any that
    Faust delivers to the agent's stream one by one (another transport, ``test_context()``).

    What Faust does for a record on its way to a stream is done here once per fetch: a
    record below the partition's read offset is left out, the read offset moves on, and the
    partition stops being fetched while more than ``high`` records wait (Faust's
    ``on_buffer_full``; fetched again below half of it). What Faust's stream does when it
    takes a record is :meth:`fresh`. Faust clears the feed with the streams' queues when a
    rebalance starts or flow resumes (``app.flow_control``).
    """

    def __init__(self, app: Any, topic: str, *, high: int | None = None) -> None:
        self.app = app
        self.topic = topic
        self.high = high if high is not None else 4 * int(app.conf.stream_buffer_maxsize)
        self._queue: deque[Any] = deque()
        self._ready = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._full: set[TP] = set()
        self._consumer: Any = None

    def install(self) -> None:
        """Have the worker's consumer (not created yet) be a :class:`BulkConsumer`; with
        another transport, or a consumer already made, records come through the stream."""
        transport = self.app.transport
        if self.app._consumer is None and transport.Consumer is AIOKafkaConsumer:
            transport.Consumer = BulkConsumer

    def attach(self) -> None:
        """Take the topic's records from the worker's consumer (when a :class:`BulkConsumer`),
        and be cleared by Faust with the streams' queues."""
        consumer = self.app.consumer
        if isinstance(consumer, BulkConsumer):
            consumer.feeds[self.topic] = self
            self._consumer = consumer
        self.app.flow_control.manage_queue(self)

    async def put(self, consumer: Any, tp: TP, records: list[Any]) -> None:
        """Queue the records of ``tp`` one fetch returned (Faust's drain loop and conductor, once
        per fetch). Like the conductor it waits while ``app.flow_control`` holds the streams
        (a rebalance, the recovery after it): what it queued then, Faust clears on resuming."""
        read = consumer._read_offset[tp]
        if read is not None and records[0].offset < read:
            records = [r for r in records if r.offset >= read]
        if not records:
            return
        to_message = consumer._to_message  # stamps the generation: fetched before a rebalance, not fresh
        msgs = [to_message(tp, r) for r in records]
        await self.app.flow_control.acquire()
        if not (consumer.flow_active and self.fresh(msgs[0])):
            return  # a rebalance came meanwhile: Faust's stream leaves them out; the new assignment fetches them
        consumer._read_offset[tp] = records[-1].offset
        self._queue.extend(msgs)
        self._ready.set()
        if len(self._queue) >= self.high and tp not in self._full:
            tp = TP(tp.topic, tp.partition)  # Faust's own type, not aiokafka's (its active set asserts it)
            self._full.add(tp)
            consumer.on_buffer_full(tp)
            self.app.sensors.on_topic_buffer_full(tp)

    def fresh(self, msg: Any) -> bool:
        """What Faust's stream asks of each record it takes: not taken while a rebalance holds
        the flow, nor fetched before the consumer group's latest generation."""
        app = self.app
        return bool(app.flow_control.is_active()) and msg.generation_id == app.consumer_generation_id

    def clear(self) -> None:
        """Forget what waits (Faust: a rebalance starts, or flow resumes after it)."""
        self._queue.clear()
        self._drained()

    async def batches(self, stream: Any, size: int) -> AsyncIterator[list[Any]]:
        """The records, at most ``size`` at a time, in the order they came; ``stream`` is the
        agent's (its iteration subscribes the topic, and brings what Faust delivers itself)."""
        self.attach()  # before the stream subscribes the topic: no record of it passes by
        relay = asyncio.ensure_future(self._relay(stream))
        relay.add_done_callback(lambda _: self._ready.set())
        try:
            while True:
                while not self._queue:
                    if relay.done():
                        relay.result()  # the stream's error, if any
                        return
                    self._ready.clear()
                    await self._ready.wait()
                yield self._take(size)
        finally:
            relay.cancel()

    async def _relay(self, stream: Any) -> None:
        async for event in stream.events():
            self._queue.append(event.message)
            self._ready.set()
            while len(self._queue) >= self.high:
                self._room.clear()
                await self._room.wait()

    def _take(self, n: int) -> list[Any]:
        q = self._queue
        if len(q) <= n:
            out = list(q)
            q.clear()
        else:
            out = [q.popleft() for _ in range(n)]
        if len(q) <= self.high // 2:
            self._drained()
        return out

    def _drained(self) -> None:
        self._room.set()
        if self._full and self._consumer is not None:
            for tp in self._full:
                self._consumer.on_buffer_drop(tp)
        self._full.clear()
