"""The checkpointing consumer every stateful agent shares (issue 15).

A checkpoint publishes its records and waits for every acknowledgement before it stores
state, offsets and rows in one transaction; a failing one keeps every effect (in order), stops
consumption, opens the database circuit and backs off, and the next one that succeeds closes
it; no checkpoint captures inside a step; a revoke checkpoints, then forgets the partition's
effects; dead letters are built by one Containment and acknowledged (the outbox retries).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any, TypeVar

import pytest
from faust.types import TP

from forex_diffusion.errors import RejectReason, ValidationError
from forex_diffusion.storage import load_snapshot, make_engine
from streams.consumer import CheckpointingConsumer, Effects, Outbox
from streams.metrics import CIRCUIT_STATES, Metrics
from streams.settings import Settings

from ...waiting import until

CIRCUIT = "forexd_circuit_breaker_state"
T = TypeVar("T")


class Topic:
    """A topic whose sends are acknowledged when the test says so (or refused)."""

    def __init__(self, log: list[Any], name: str) -> None:
        self.log, self.name = log, name
        self.pending: list[asyncio.Future[None]] = []
        self.refuse = 0  # the next n sends fail

    async def send(self, *, key: Any = None, value: Any = None, headers: Any = None) -> asyncio.Future[None]:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.refuse:
            self.refuse -= 1
            fut.set_exception(ConnectionError("broker down"))
        else:
            self.pending.append(fut)
        self.log.append(("send", self.name, value))
        return fut

    def ack_all(self) -> None:
        for fut in self.pending:
            if not fut.done():
                self.log.append(("ack", self.name, None))
                fut.set_result(None)
        self.pending.clear()


def _runtime(tmp_path: Path, **kw: Any) -> SimpleNamespace:
    s = Settings(symbols=("EURUSD",), timeframes=("1m",), data_dir=tmp_path, status_interval_s=0, **kw)
    log: list[Any] = []
    topics = {k: Topic(log, k) for k in ("candles", "forecasts", "deadletter", "models")}
    metrics = Metrics(s.symbols, timeframes=s.timeframes)
    engine = make_engine(f"sqlite:///{tmp_path / 'forexd.db'}")
    return SimpleNamespace(settings=s, app=None, topics=topics, engine=engine, metrics=metrics, log=log)


def _consumer(rt: SimpleNamespace, state: dict[int, Any]) -> CheckpointingConsumer:
    return CheckpointingConsumer(
        rt,
        name="ticks",
        snapshot=lambda p: {"n": state.get(p, 0)},
        restore=lambda p, s: state.__setitem__(p, s["n"]),
        drop=lambda p: state.pop(p, None),
    )


def _msg(offset: int, partition: int = 0, value: bytes = b"{}") -> Any:
    return SimpleNamespace(topic="fx.ticks", partition=partition, offset=offset, key=b"EURUSD", value=value)


async def _acking(rt: SimpleNamespace) -> None:
    """Acknowledge every send as it comes (a healthy broker). Each turn sleeps a little:
    spinning on ``sleep(0)`` would hold the GIL the checkpoint's storage thread needs."""
    while True:
        for t in rt.topics.values():
            t.ack_all()
        await asyncio.sleep(0.001)


async def _finish(aw: Awaitable[T], *, progress: Callable[[], Any], what: str) -> T:
    """Await checkpoint work (and the background retries it waits for) as long as it keeps
    moving: it fails after 60 s without ``progress`` (sends, acks, failures), never on a total
    deadline, so a slow or busy machine is given the time it needs."""
    task = asyncio.ensure_future(aw)
    try:
        await until(task.done, 60, interval=0.005, what=what, progress=progress)
    finally:
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    return task.result()


@pytest.fixture
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("streams.consumer.backoff_s", lambda failures: 0.0)


@pytest.mark.asyncio
async def test_a_checkpoint_stores_state_offsets_and_rows_only_after_every_record_is_acknowledged(
    tmp_path: Path,
) -> None:
    rt = _runtime(tmp_path)
    state = {0: 0}
    c = _consumer(rt, state)
    stored: list[Any] = []
    persist = c.progress.persist

    async def spy(captured: Any, effects: Any = None) -> None:
        stored.append(("persist", dict(captured), list(rt.log)))
        await persist(captured, effects)

    c.progress.persist = spy  # type: ignore[method-assign]
    for off in range(3):
        assert await c.admit(_msg(off))
        state[0] += 1
        c.effects.at(0).records.append(("candles", b"EURUSD", f"candle-{off}".encode()))
        c.mark(_msg(off))
    c.contain.fail(_msg(3, value=b"junk"), ValidationError(RejectReason.MALFORMED, "not JSON"), stage="decode")
    c.mark(_msg(3))
    flush = asyncio.ensure_future(c.flush())
    for _ in range(20):
        await asyncio.sleep(0)
    assert not stored, "state stored before the broker acknowledged the records"
    assert [(k, t) for k, t, _v in rt.log] == [("send", "deadletter")] + [("send", "candles")] * 3  # dead letters first
    for t in rt.topics.values():
        t.ack_all()
    await flush
    ((_, captured, seen),) = stored
    assert captured == {0: (3, {"n": 3})} and [k for k, *_ in seen].count("ack") == 4
    assert load_snapshot(rt.engine, consumer=c.progress.consumer, topic="fx.ticks", partition=0) == (3, {"n": 3})
    assert not c.effects and c.healthy.is_set() and c.processed == 4


@pytest.mark.asyncio
async def test_a_failing_checkpoint_keeps_every_effect_in_order_pauses_and_the_next_one_recovers(
    tmp_path: Path, no_backoff: None, caplog: pytest.LogCaptureFixture
) -> None:
    rt = _runtime(tmp_path)
    c = _consumer(rt, {0: 1})
    c.effects.at(0).records += [("candles", b"EURUSD", b"a"), ("candles", b"EURUSD", b"b")]
    c.effects.publish("forecasts", b"EURUSD", b"f")
    c.mark(_msg(0))
    rt.topics["candles"].refuse = 1
    with caplog.at_level(logging.WARNING, logger="streams.consumer"):
        await c.flush()
        assert not c.healthy.is_set() and c.failures == 1
        assert rt.metrics.registry.get_sample_value(CIRCUIT, {"dependency": "database"}) == CIRCUIT_STATES["open"]
        # kept, in order, with what came meanwhile after them
        c.effects.at(0).records.append(("candles", b"EURUSD", b"c"))
        assert [v for *_, v in c.effects.at(0).records] == [b"a", b"b", b"c"] and c.effects.out[0][2] == b"f"
        assert load_snapshot(rt.engine, consumer=c.progress.consumer, topic="fx.ticks", partition=0) is None
        # consumption waits while checkpoints fail; the retry (in the background) releases it
        acks = asyncio.ensure_future(_acking(rt))
        try:
            assert await _finish(
                c.admit(_msg(1)), progress=lambda: (len(rt.log), c.failures), what="the retried checkpoint"
            )
        finally:
            acks.cancel()
    assert c.healthy.is_set() and c.failures == 0
    assert rt.metrics.registry.get_sample_value(CIRCUIT, {"dependency": "database"}) == CIRCUIT_STATES["closed"]
    assert "checkpoint.failed consumer=ticks attempt=1 error=ProducerSendFailed" in caplog.text
    assert "checkpoint.recovered consumer=ticks after=1 failures" in caplog.text
    published = [v for k, t, v in rt.log if k == "send" and t == "candles"]
    assert published[-3:] == [b"a", b"b", b"c"]


@pytest.mark.asyncio
async def test_no_checkpoint_captures_inside_a_step(tmp_path: Path) -> None:
    rt = _runtime(tmp_path)
    state = {0: 0}
    c = _consumer(rt, state)
    acks = asyncio.ensure_future(_acking(rt))
    try:
        async with c.step():
            c.mark(_msg(0))
            state[0] = 1  # half of the step's change
            flush = asyncio.ensure_future(c.flush())
            for _ in range(20):
                await asyncio.sleep(0)
            assert not flush.done() and 0 in c.progress.dirty  # waiting for the step to end
            state[0] = 2
        await _finish(flush, progress=lambda: len(rt.log), what="the checkpoint")
    finally:
        acks.cancel()
    assert load_snapshot(rt.engine, consumer=c.progress.consumer, topic="fx.ticks", partition=0) == (0, {"n": 2})


@pytest.mark.asyncio
async def test_a_revoke_checkpoints_then_forgets_the_partition_and_its_effects(tmp_path: Path) -> None:
    rt = _runtime(tmp_path)
    state = {0: 5, 1: 7}
    c = _consumer(rt, state)
    for p in (0, 1):
        c.mark(_msg(10, partition=p))
    rt.topics["candles"].refuse = 10**6  # the checkpoint cannot finish: the revoke goes on without it
    c.effects.at(1).records.append(("candles", b"EURUSD", b"x"))
    c.effects.publish("forecasts", b"EURUSD", b"kept")
    await c._revoked(None, [TP("fx.ticks", 1)])
    assert 1 not in state and 1 not in c.progress.offsets and 1 not in c.effects.parts
    assert c.effects.out == [("forecasts", b"EURUSD", b"kept")]  # records of no partition outlive it
    assert state == {0: 5} and c.progress.offsets == {0: 10}


def test_effects_take_and_give_back_keep_the_order_of_every_list() -> None:
    e = Effects()
    e.dead_letter(b"k", b"d1", [])
    e.publish("forecasts", b"k", b"f1")
    e.at(0).candles.append("c1")
    taken = e.take()
    assert not e and e.n_records == 0
    e.dead_letter(b"k", b"d2", [])
    e.at(0).candles.append("c2")
    e.give_back(taken)
    assert [v for _k, v, _h in e.dead] == [b"d1", b"d2"] and e.at(0).candles == ["c1", "c2"]
    assert e.rows() == {0: (["c1", "c2"], [], [], [])} and e.n_records == 1


@pytest.mark.asyncio
async def test_the_outbox_sends_its_dead_letters_again_until_they_are_acknowledged(
    tmp_path: Path, no_backoff: None
) -> None:
    rt = _runtime(tmp_path)
    box = Outbox(rt, name="retrain_requests")
    with box.contain.record(_msg(4, value=b"{")) as rec:
        raise ValidationError(RejectReason.SCHEMA, "bad request")
    assert rec.failed and len(box.effects.dead) == 1
    rt.topics["deadletter"].refuse = 2
    acks = asyncio.ensure_future(_acking(rt))
    try:
        await _finish(box.deliver(), progress=lambda: (len(rt.log), box.failures), what="the outbox's delivery")
    finally:
        acks.cancel()
    sent = [json.loads(v) for k, t, v in rt.log if k == "send"]
    assert [d["reason"] for d in sent] == ["schema"] * 3 and sent[-1]["offset"] == 4
    assert not box.effects and box.failures == 0


@pytest.mark.asyncio
async def test_a_checkpoint_given_up_on_keeps_its_dead_letters_and_records(tmp_path: Path) -> None:
    """A revoke or a shutdown waits for the checkpoint a bounded time, then cancels it: what it
    had taken goes back (a dead letter it held was lost before)."""
    rt = _runtime(tmp_path)
    c = _consumer(rt, {0: 1})
    c.contain.fail(_msg(0, value=b"junk"), ValidationError(RejectReason.MALFORMED, "not JSON"), stage="decode")
    c.effects.at(0).records.append(("candles", b"EURUSD", b"a"))
    c.mark(_msg(0))
    flush = asyncio.ensure_future(c.flush())
    for _ in range(20):
        await asyncio.sleep(0)
    assert not c.effects  # taken; the broker never answers
    flush.cancel()
    with pytest.raises(asyncio.CancelledError):
        await flush
    assert len(c.effects.dead) == 1 and [v for *_, v in c.effects.at(0).records] == [b"a"]
    assert 0 in c.progress.dirty


@pytest.mark.asyncio
async def test_a_checkpoint_woken_as_a_step_ends_waits_for_the_step_begun_meanwhile(tmp_path: Path) -> None:
    """Regression (the candle stream's crash between the checkpoint and the commit): a checkpoint
    waiting for a batch to end was woken by it, but the next batch had begun before it ran, and
    it captured that batch half done (its forecasts not made); the restarted worker skipped them."""
    rt = _runtime(tmp_path)
    state = {0: 0}
    c = _consumer(rt, state)
    acks = asyncio.ensure_future(_acking(rt))
    try:
        async with c.step():
            c.mark(_msg(0))
            state[0] = 1
            flush = asyncio.ensure_future(c.flush())
            for _ in range(5):
                await asyncio.sleep(0)
        async with c.step():  # begins before the woken checkpoint runs
            state[0] = 2  # half of this step's change
            for _ in range(20):
                await asyncio.sleep(0)
            assert not flush.done()
            state[0] = 3
        await _finish(flush, progress=lambda: len(rt.log), what="the checkpoint")
    finally:
        acks.cancel()
    assert load_snapshot(rt.engine, consumer=c.progress.consumer, topic="fx.ticks", partition=0) == (0, {"n": 3})
