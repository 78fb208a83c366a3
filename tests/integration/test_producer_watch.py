"""ProducerWatch (RELIABILITY F16: re-initialise the producer after indefinite errors) on real
aiokafka producers against the broker: a wedged producer is replaced by one that delivers;
a replacement that cannot connect is not swapped in; a success clears the count."""

from __future__ import annotations

import asyncio
import logging
import time
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition

from streams.producer import RETIRE_TIMEOUT_S, ProducerSendFailed, ProducerWatch, send_all

from ..waiting import until

pytestmark = pytest.mark.broker
# Margins relative to the work they bound, not to the machine's speed: a healthy send is
# acknowledged in milliseconds, a producer starts in well under a second.
HEALTHY_ACK_TIMEOUT_S = 60.0
WEDGED_ACK_TIMEOUT_S = 1.0  # a wedged send is never acknowledged, whatever the timeout
START_TIMEOUT_S = 60.0


class _Holder:
    """The two attributes of Faust's aiokafka ``Producer`` the watch uses."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self._producer: AIOKafkaProducer | None = None
        self.made = 0

    def _new_producer(self) -> AIOKafkaProducer:
        self.made += 1
        return AIOKafkaProducer(bootstrap_servers=self.bootstrap, request_timeout_ms=2000)


class _Topic:
    """``topic.send`` as Faust's topics expose it: returns the delivery future."""

    def __init__(self, holder: _Holder, name: str) -> None:
        self.holder, self.name = holder, name

    async def send(self, *, key: bytes | None, value: bytes, headers: Any = None) -> Any:
        assert self.holder._producer is not None
        return await self.holder._producer.send(self.name, value=value, key=key, headers=headers, partition=0)


def _topic_name(request: pytest.FixtureRequest) -> str:
    return "pw-" + request.node.name.replace("[", "-").replace("]", "").replace("_", "-")[:60]


async def _read(bootstrap: str, topic: str, n: int, stall_s: float = 60.0) -> list[bytes]:
    """The first ``n`` records of partition 0 (fewer if none arrives for ``stall_s``): the limit
    follows progress, so a slow broker that keeps delivering is never cut off."""
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False)
    await c.start()
    try:
        c.assign([TopicPartition(topic, 0)])
        out: list[bytes] = []
        loop = asyncio.get_running_loop()
        last = loop.time()
        while len(out) < n and loop.time() - last < stall_s:
            for recs in (await c.getmany(timeout_ms=500)).values():
                if recs:
                    last = loop.time()
                out += [r.value for r in recs]
        return out
    finally:
        await c.stop()


def test_wedged_producer_is_replaced_and_the_retried_records_arrive(
    kafka_bootstrap: str,
    request: pytest.FixtureRequest,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The sender task of a real producer is cancelled (the aiokafka wedge): its sends never
    complete, send_all fails with ProducerSendFailed after the ack timeout, and once sends
    have failed for ``after_s`` the watch swaps in a new producer; the same records sent
    again are acknowledged and are on the topic (the wedged ones never are).

    No margin here depends on the machine's speed: the watch's clock is driven by the test
    (real time plus a skew the test sets), so the first failure is far below ``after_s``
    however slow it is, and the second is past it because the test moves the clock; wedged
    sends time out whatever their ack timeout (their sender is gone), so they get a short one,
    and healthy sends get one far longer than their work."""
    topic = _topic_name(request)
    after_s = 60.0
    skew = [0.0]  # added to the watch's clock: time the test makes pass

    async def go() -> None:
        holder = _Holder(kafka_bootstrap)
        holder._producer = holder._new_producer()
        await holder._producer.start()
        counted: list[int] = []
        metrics = SimpleNamespace(producer_reset=lambda: counted.append(1))
        settings = SimpleNamespace(send_ack_timeout_s=HEALTHY_ACK_TIMEOUT_S)
        rt = SimpleNamespace(settings=settings, app=SimpleNamespace(producer=holder))
        rt.producer = ProducerWatch(
            rt.app,
            after_s=after_s,
            start_timeout_s=START_TIMEOUT_S,
            metrics=metrics,
            clock=lambda: time.monotonic() + skew[0],
        )
        t = _Topic(holder, topic)
        await send_all(rt, [(t, b"k", b"before", None)])  # a healthy producer: acknowledged
        wedged = holder._producer
        wedged._sender.sender_task.cancel()
        records = [(t, b"k", f"r{i}".encode(), None) for i in range(3)]
        settings.send_ack_timeout_s = WEDGED_ACK_TIMEOUT_S  # never acknowledged: fail soon
        with pytest.raises(ProducerSendFailed, match="TimeoutError"):
            await send_all(rt, records)  # failing for about 1 s, far below after_s: kept
        assert holder._producer is wedged and counted == [] and rt.producer.failures == 1
        skew[0] = after_s  # the sends have now been failing for longer than after_s
        with pytest.raises(ProducerSendFailed):
            await send_all(rt, records)  # failing for after_s and more: replaced
        assert holder._producer is not wedged and counted == [1] and rt.producer.resets == 1
        settings.send_ack_timeout_s = HEALTHY_ACK_TIMEOUT_S
        await send_all(rt, records)  # the retry goes through the new producer
        assert rt.producer.failures == 0 and rt.producer.failing_since is None
        # the replaced producer is closed in the background (bounded by RETIRE_TIMEOUT_S): wait for that close to end
        await until(
            lambda: not rt.producer._retiring,
            RETIRE_TIMEOUT_S + 60,
            interval=0.05,
            what="the replaced producer's close",
        )
        assert wedged._closed, "the replaced producer was not closed"
        got = await _read(kafka_bootstrap, topic, 4)
        assert got == [b"before", b"r0", b"r1", b"r2"]
        await holder._producer.stop()

    with caplog.at_level(logging.INFO, logger="streams.producer"):
        asyncio.run(go())
    assert any("producer.reset failing_for=" in r.getMessage() for r in caplog.records)


def test_replacement_that_cannot_connect_is_not_swapped_in(
    kafka_bootstrap: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """While the broker is unreachable a new producer cannot start: the watch keeps the old
    one (no swap to a producer that never connected) and tries again on a later failure."""

    async def go() -> None:
        holder = _Holder(kafka_bootstrap)
        holder._producer = old = holder._new_producer()
        await old.start()
        holder.bootstrap = "127.0.0.1:9"  # discard port: nothing listens
        watch = ProducerWatch(SimpleNamespace(producer=holder), after_s=0.0, start_timeout_s=START_TIMEOUT_S)
        assert await watch.failed(started=watch.clock()) is False
        assert holder._producer is old and watch.resets == 0 and holder.made == 2
        holder.bootstrap = kafka_bootstrap  # reachable again
        assert await watch.failed(started=watch.clock()) is True
        assert holder._producer is not old and watch.resets == 1 and holder.made == 3
        await holder._producer.stop()

    with caplog.at_level(logging.INFO, logger="streams.producer"):
        asyncio.run(go())
    assert any("producer.reset deferred" in r.getMessage() for r in caplog.records)


def test_a_success_between_failures_restarts_the_count() -> None:
    """Intermittent failures, each followed by a success, never add up to a reset."""
    now = [0.0]
    watch = ProducerWatch(SimpleNamespace(producer=None), after_s=10.0, start_timeout_s=1.0, clock=lambda: now[0])

    async def go() -> None:
        for _ in range(5):
            now[0] += 8.0
            assert await watch.failed(started=now[0] - 8.0) is False
            watch.succeeded()
            assert watch.failing_since is None and watch.failures == 0
        now[0] += 6.0
        assert await watch.failed(started=now[0] - 6.0) is False
        now[0] += 6.0
        # 12 s of failing with no success: a reset is due, but this app has no aiokafka producer
        assert await watch.failed(started=now[0]) is False
        assert watch.failures == 2

    asyncio.run(go())
