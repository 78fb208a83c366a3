"""Review of the tick agent's bulk path (issue 15): records fetched under an older consumer-group
generation never reach the agent's state, whether the rebalance that changed the generation
came while the fetch was being handed over (:class:`~streams.broker_facts.BulkConsumer`) or
while the agent waited for the database to come back (:meth:`~streams.agents.ticks.TickAgent.handle_batch`)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from aiokafka.structs import TopicPartition
from faust.types import TP

from .test_tick_batch import TICKS, _answer, _consumer, _record, _until, _values, _worker


@pytest.mark.asyncio
async def test_a_fetch_handed_over_across_a_rebalance_queues_nothing_of_the_old_generation(tmp_path: Path) -> None:
    rt = _worker(tmp_path)
    ta = rt.tick_agent
    assert ta is not None
    c, feed = _consumer(rt), ta.feed
    t0, t1 = TP(TICKS, 0), TP(TICKS, 1)
    c._active_partitions = {t0, t1}
    v = _values(6)
    _answer(
        c,
        {
            t0: [_record(TICKS, 0, i, v[i]) for i in range(3)],
            t1: [_record(TICKS, 1, 100 + i, v[3 + i]) for i in range(3)],  # fetched from position 100
        },
    )
    rt.app.flow_control.suspend()  # the streams are held (a rebalance's recovery) as the fetch returns
    handing = asyncio.ensure_future(c._wait_next_records(0.01))
    for _ in range(20):
        await asyncio.sleep(0)
    assert not handing.done()  # the first partition's records wait for the flow

    # the rebalance completes: a new generation, every partition sought back to its committed
    # offset (partition 1: 40), and the streams resumed
    rt.app.consumer_generation_id += 1
    c._read_offset[t0] = c._read_offset[t1] = 40
    rt.app.flow_control.resume()
    await handing

    # nothing fetched before the rebalance is queued as the new generation's, and the read
    # offsets stay where the seek put them: the new generation fetches 40.. again
    assert [(m.partition, m.offset) for m in feed._queue if feed.fresh(m)] == []
    assert c._read_offset[t1] == 40


@pytest.mark.asyncio
async def test_a_tick_waiting_out_a_database_outage_across_a_rebalance_is_not_processed(tmp_path: Path) -> None:
    rt = _worker(tmp_path)
    ta, c = rt.tick_agent, _consumer(rt)
    assert ta is not None
    tp0 = TP(TICKS, 0)
    msgs = [c._to_message(tp0, _record(TICKS, 0, i, v)) for i, v in enumerate(_values(10))]
    await ta.handle_batch(msgs[:3])
    await ta.consumer.flush()  # checkpoint at offset 2
    await ta.handle_batch(msgs[3:5])  # 3 and 4 processed, not checkpointed yet
    assert ta.consumer.progress.offsets == {0: 4}

    retried: list[int] = []
    ta.consumer.schedule_flush = lambda: retried.append(ta.consumer.processed)  # no retry of its own
    ta.consumer.healthy.clear()  # the database is down: the next batch waits at its first tick
    task = asyncio.ensure_future(ta.handle_batch(msgs[7:]))
    await _until(lambda: bool(retried), "the batch waiting for a checkpoint")

    # meanwhile the group rebalances and gives partition 0 back to this worker: the revoke's
    # checkpoint did not finish, so the new assignment restores offset 2 (3 and 4 are forgotten)
    await ta.consumer.progress.on_revoked({tp0})
    rt.app.consumer_generation_id += 1
    await ta.consumer._assigned(None, {tp0})
    assert ta.consumer.progress.offsets == {0: 2}
    ta.consumer.healthy.set()  # the database is back
    await task

    # the batch in hand was fetched before the rebalance: none of it goes into the restored state
    # (offset 7 processed now would make the new generation's 3..6 look processed: lost)
    assert ta.consumer.progress.offsets == {0: 2}
    assert ta.consumer.processed == 5


@pytest.mark.asyncio
async def test_fetched_ticks_waiting_for_a_paused_agent_stay_bounded(tmp_path: Path) -> None:
    """The agent takes nothing (the database is down): fetching stops once the feed is full."""
    rt = _worker(tmp_path)
    ta = rt.tick_agent
    assert ta is not None
    c, feed = _consumer(rt), ta.feed
    feed.high = 100
    tps = [TP(TICKS, p) for p in range(3)]
    c._active_partitions = set(tps)
    v = _values(1)[0]
    position = dict.fromkeys(range(3), 0)
    fetches: list[int] = []

    async def getmany(active_partitions: Any, timeout: float) -> dict[Any, list[Any]]:
        out = {}  # as aiokafka: records of the partitions asked for only, 60 each
        for tp in active_partitions:
            p = tp.partition
            out[TopicPartition(TICKS, p)] = [_record(TICKS, p, position[p] + i, v) for i in range(60)]
            position[p] += 60
        fetches.append(len(out))
        return out

    c._getmany = getmany
    for _ in range(3):
        await c._wait_next_records(0.01)
    assert c._buffered_partitions == set(tps) and not c._get_active_partitions()  # every partition paused
    n, held = len(fetches), len(feed._queue)
    assert held <= feed.high + 3 * 60  # at most one fetch per partition past the mark
    await c._wait_next_records(0.01)  # nothing more is fetched while the agent takes nothing
    assert len(fetches) == n and len(feed._queue) == held
    feed._take(held)  # the agent drains it: every partition is fetched again
    await c._wait_next_records(0.01)
    assert fetches[-1] == 3 and len(feed._queue) == 3 * 60
