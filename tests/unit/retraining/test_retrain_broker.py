"""``forexd retrain --wait`` through the embedded broker: the request arrives, the matching outcome returns.

A stand-in for the retrain agent (the real one lives in ``streams/agents``) answers on
``fx.models``: first an outcome of another request (which must be skipped), then the
matching one.
"""

from __future__ import annotations

import asyncio

import pytest

from retraining.jobs import JobOutcome, decode_request, encode_outcome
from streams.commands.retrain import send_request
from streams.kafka import make_consumer, make_producer
from streams.settings import Settings

from .conftest import request

pytestmark = pytest.mark.broker


async def fake_agent(settings: Settings) -> None:
    consumer = make_consumer(settings, settings.topic("retrain.requests"))
    await consumer.start()
    producer = make_producer(settings)
    await producer.start()
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=200)
            for msgs in batch.values():
                for m in msgs:
                    req = decode_request(m.value)
                    for rid in ("someone-else", req.request_id):
                        out = JobOutcome(
                            request_id=rid,
                            key=req.key,
                            symbol=req.symbol,
                            timeframe=req.timeframe,
                            horizon=req.horizon or 24,
                            version="v1",
                            status="rejected",
                            reason="not_better: test",
                        )
                        await producer.send_and_wait(
                            settings.topic("models"), encode_outcome(out), key=req.symbol.encode()
                        )
                    return
    finally:
        await consumer.stop()
        await producer.stop()


def test_wait_returns_the_outcome_of_this_request_only(kafka_bootstrap: str, topic_prefix: str) -> None:
    settings = Settings(broker_url=f"kafka://{kafka_bootstrap}", topic_prefix=topic_prefix, partitions=2)
    req = request("cli-wait")

    async def scenario() -> JobOutcome | None:
        agent = asyncio.create_task(fake_agent(settings))
        try:
            return await send_request(settings, req, wait=True, timeout_s=30)
        finally:
            await asyncio.wait_for(agent, 30)

    got = asyncio.run(scenario())
    assert got is not None and got.request_id == "cli-wait" and got.exit_code == 3
