"""The tick agent's bulk path (issue 15: throughput): each fetch's ticks go from Faust's consumer
to the agent whole (:class:`~streams.broker_facts.BulkConsumer`, :class:`~streams.broker_facts.BulkFeed`)
and are handled a batch at a time (:meth:`~streams.agents.ticks.TickAgent.handle_batch`), with
what Faust and the per-message path did for each record kept: the read offset, the buffer
pressure, records of an older rebalance generation left out, the health gate, restores,
revokes and dead letters."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiokafka.structs import ConsumerRecord, TopicPartition
from faust.types import TP

from forex_diffusion.bundled import SAMPLE_TICKS
from forex_diffusion.domain import Candle
from forex_diffusion.ingest.pipeline import TickPipeline
from forex_diffusion.ingest.readers import read_ticks
from forex_diffusion.wire import decode_tick, encode
from streams.app import Runtime, create_app
from streams.broker_facts import BulkConsumer
from streams.settings import Settings

from ...waiting import until

TICKS, CANDLES = "fx.ticks", "fx.candles"


class AckingTopic:
    """Records what is sent; the broker acknowledges at once."""

    def __init__(self) -> None:
        self.sent: list[tuple[bytes | None, bytes]] = []

    async def send(self, *, key: Any = None, value: Any = None, headers: Any = None) -> asyncio.Future[None]:
        self.sent.append((key, value))
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut


def _worker(tmp_path: Path, **kw: Any) -> Runtime:
    s = Settings(symbols=("EURUSD",), data_dir=tmp_path, model_dir=tmp_path / "models", status_interval_s=0, **kw)
    rt = create_app(s, roles=("ticks",))
    rt.topics = {name: AckingTopic() for name in rt.topics}  # type: ignore[misc]
    return rt


def _values(n: int) -> list[bytes]:
    f = read_ticks(SAMPLE_TICKS).frame.iloc[:n]
    rows = zip(f.ts_ms.tolist(), f.bid.tolist(), f.ask.tolist(), strict=True)
    return [encode({"v": 1, "symbol": "EURUSD", "ts": t, "bid": b, "ask": a}) for t, b, a in rows]


def _record(
    topic: str, partition: int, offset: int, value: bytes, key: bytes = b"EURUSD"
) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(
        topic, partition, offset, 1_399_248_000_000 + offset, 0, key, value, None, len(key), len(value), []
    )


def _consumer(rt: Runtime) -> BulkConsumer:
    """The worker's consumer (not started), its fetches answered by ``_getmany``; flow open."""
    c = rt.app.consumer
    assert isinstance(c, BulkConsumer)  # installed by the tick agent before the worker made it
    rt.tick_agent.feed.attach()  # type: ignore[union-attr]
    rt.app.flow_control.resume()
    return c


def _answer(c: BulkConsumer, fetched: dict[TP, list[Any]]) -> None:
    async def getmany(active_partitions: Any, timeout: float) -> dict[Any, list[Any]]:
        return {TopicPartition(*tp): recs for tp, recs in fetched.items()}  # keyed as aiokafka keys them

    c._getmany = getmany  # type: ignore[method-assign]
    c.highwater = lambda tp: 2  # type: ignore[method-assign]  # what the broker's fetch response said


async def _faust_delivers(c: BulkConsumer) -> list[tuple[TP, int]]:
    """What Faust's ``getmany`` yields to its conductor, one record at a time."""
    return [(tp, m.offset) async for tp, m in c.getmany(timeout=0.01)]


STALL_S = 60.0  # the longest time without progress a wait allows: generous for a loaded machine


async def _until(cond: Callable[[], bool], what: str, progress: Callable[[], Any] | None = None) -> None:
    """Wait until ``cond()`` while the loop and its executor threads work: failing after
    :data:`STALL_S` seconds in which ``progress()`` (e.g. the ticks processed) did not change,
    or, for work of one step (no ``progress``), after :data:`STALL_S` in all."""
    await until(cond, STALL_S, what=what, progress=progress)


@pytest.mark.asyncio
async def test_a_fetch_of_ticks_goes_to_the_feed_whole_and_other_topics_one_by_one_to_faust(tmp_path: Path) -> None:
    rt = _worker(tmp_path)
    c, feed = _consumer(rt), rt.tick_agent.feed  # type: ignore[union-attr]
    t0, t1, k0 = TP(TICKS, 0), TP(TICKS, 1), TP(CANDLES, 0)
    c._active_partitions = {t0, k0}  # partition 1 of the ticks is not (or no longer) this worker's
    values = _values(8)
    _answer(
        c,
        {
            t0: [_record(TICKS, 0, i, v) for i, v in enumerate(values)],
            t1: [_record(TICKS, 1, 0, values[0])],
            k0: [_record(CANDLES, 0, 0, b"{}"), _record(CANDLES, 0, 1, b"{}")],
        },
    )
    c._read_offset[t0] = 3  # Faust delivers no record below the read offset (a seek moved it)

    assert await _faust_delivers(c) == [(k0, 0), (k0, 1)]  # the inactive partition: neither gets it
    msgs = list(feed._queue)
    assert [(m.partition, m.offset) for m in msgs] == [(0, i) for i in range(3, 8)]
    assert [m.value for m in msgs] == values[3:]
    assert msgs[0].timestamp == pytest.approx(1_399_248_000.003)  # Faust's own message: seconds
    assert all(m.generation_id == rt.app.consumer_generation_id for m in msgs)
    assert c._read_offset[t0] == 7

    c.stop_flow()  # a rebalance starts (as Faust's revoke does): the stream's check leaves them out
    rt.app.flow_control.suspend()
    assert not any(feed.fresh(m) for m in msgs)
    rt.app.flow_control.resume()  # ... and after it, they are of an older generation
    rt.app.consumer_generation_id += 1
    assert not any(feed.fresh(m) for m in msgs)


@pytest.mark.asyncio
async def test_a_full_feed_stops_fetching_its_partition_until_it_drains(tmp_path: Path) -> None:
    rt = _worker(tmp_path)
    c, feed = _consumer(rt), rt.tick_agent.feed  # type: ignore[union-attr]
    feed.high = 4
    t0 = TP(TICKS, 0)
    c._active_partitions = {t0}
    _answer(c, {t0: [_record(TICKS, 0, i, v) for i, v in enumerate(_values(6))]})
    await _faust_delivers(c)
    assert len(feed._queue) == 6
    assert t0 not in c._get_active_partitions() and t0 in c._buffered_partitions  # not fetched while full

    assert [m.offset for m in feed._take(3)] == [0, 1, 2]  # 3 left: above half of 4
    assert t0 not in c._get_active_partitions()
    assert [m.offset for m in feed._take(1)] == [3]  # 2 left: fetched again
    assert t0 in c._get_active_partitions() and t0 not in c._buffered_partitions

    await _faust_delivers(c)  # the same fetch again, and a rebalance clears every stream's queue
    rt.app.flow_control.clear()
    assert not feed._queue and t0 in c._get_active_partitions()


@pytest.mark.asyncio
async def test_a_batch_with_malformed_records_dead_letters_them_and_closes_the_candles_of_the_rest(
    tmp_path: Path,
) -> None:
    rt = _worker(tmp_path, timeframes=("1m", "5m"))
    ta, c = rt.tick_agent, _consumer(rt)
    assert ta is not None
    values = _values(1_200)
    bad = {100: (b"EURUSD", b"{not json"), 700: (b"USDJPY", values[700])}  # malformed; key of another symbol
    recs = [_record(TICKS, 0, i, *reversed(bad.get(i, (b"EURUSD", v)))) for i, v in enumerate(values)]
    msgs = [c._to_message(TP(TICKS, 0), r) for r in recs]
    for i in range(0, len(msgs), 500):
        await ta.handle_batch(msgs[i : i + 500])

    assert ta.consumer.processed == len(values) and ta.consumer.progress.offsets == {0: len(values) - 1}
    dead = [json.loads(v) for _k, v, _h in ta.effects.dead]
    assert [(d["reason"], d["offset"]) for d in dead] == [("malformed", 100), ("key_mismatch", 700)]
    oracle = TickPipeline(timeframes=("1m", "5m"), instruments=rt.instruments)
    now_ms = int(time.time() * 1000)
    want: list[Candle] = []
    for i, v in enumerate(values):
        if i not in bad:
            want += oracle.process(decode_tick(v, key=b"EURUSD", instruments=rt.instruments), now_ms=now_ms)
    assert want and [x for e in ta.effects.parts.values() for x in e.candles] == want


@pytest.mark.asyncio
async def test_a_batch_in_hand_across_a_revoke_processes_nothing_of_the_old_assignment(tmp_path: Path) -> None:
    rt = _worker(tmp_path)
    ta, c = rt.tick_agent, _consumer(rt)
    assert ta is not None
    v = _values(4)
    tp0, tp1 = TP(TICKS, 0), TP(TICKS, 1)
    batch = [
        c._to_message(tp1, _record(TICKS, 1, 0, v[0])),
        c._to_message(tp0, _record(TICKS, 0, 0, v[1])),  # its partition is being restored: the batch waits
        c._to_message(tp1, _record(TICKS, 1, 1, v[2])),
        c._to_message(tp0, _record(TICKS, 0, 1, v[3])),
    ]
    restore = ta.consumer.progress.restoring[0] = asyncio.Event()
    task = asyncio.ensure_future(ta.handle_batch(batch))
    await _until(lambda: ta.consumer.processed == 1, "the first tick handled", lambda: ta.consumer.processed)
    for _ in range(20):
        await asyncio.sleep(0)
    assert not task.done() and ta.consumer.processed == 1  # waits for the restore, outside any step

    # meanwhile the group rebalances: partition 0 is revoked (the checkpoint it takes may run
    # now, the batch being between two ticks), and the new generation begins
    await ta.consumer._revoked(None, {tp0})
    rt.app.consumer_generation_id += 1
    restore.set()
    await task
    assert ta.consumer.processed == 1
    assert ta.consumer.progress.offsets == {1: 0}  # the rest of the batch was the old assignment's
    assert 0 not in ta.consumer.progress.offsets and 0 not in ta.effects.parts


@pytest.mark.asyncio
async def test_consumption_pauses_between_ticks_while_checkpoints_fail(tmp_path: Path) -> None:
    rt = _worker(tmp_path)
    ta, c = rt.tick_agent, _consumer(rt)
    assert ta is not None
    msgs = [c._to_message(TP(TICKS, 0), _record(TICKS, 0, i, v)) for i, v in enumerate(_values(300))]
    await ta.handle_batch(msgs[:100])
    retried: list[int] = []
    ta.consumer.schedule_flush = lambda: retried.append(ta.consumer.processed)  # type: ignore[method-assign]
    ta.consumer.healthy.clear()  # the last checkpoint failed: Kafka is the buffer until one succeeds
    task = asyncio.ensure_future(ta.handle_batch(msgs[100:]))
    await _until(lambda: bool(retried), "a checkpoint retried")
    for _ in range(20):
        await asyncio.sleep(0)
    assert not task.done() and ta.consumer.processed == 100 and set(retried) == {100}
    assert not ta.consumer.busy  # no step held open: the retried checkpoint captures this state
    ta.consumer.healthy.set()
    await task
    assert ta.consumer.processed == 300 and ta.consumer.progress.offsets == {0: 299}


@pytest.mark.asyncio
async def test_ticks_faust_delivers_itself_reach_the_agent_in_order(tmp_path: Path) -> None:
    """Another transport, or ``test_context()``: the stream's records go through the same batches."""
    rt = _worker(tmp_path)
    ta = rt.tick_agent
    assert ta is not None
    values = _values(700)
    async with ta.agent.test_context() as agent:
        for v in values:
            await agent.put(v, key=b"EURUSD", partition=0)
        await _until(lambda: ta.consumer.processed == len(values), "every tick handled", lambda: ta.consumer.processed)
    assert ta.consumer.progress.offsets == {0: len(values) - 1}
    assert ta.effects.dead == []
