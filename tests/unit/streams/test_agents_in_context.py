"""The agents run as Faust runs them, without a broker: ``agent.test_context()`` (issue 15).

Each test builds the worker's own App (:func:`streams.app.create_app`) and puts records into
the registered agent's test channel; the checkpoint then writes to the worker's SQLite
database, with the topics replaced by ones that acknowledge every send. What comes out equals
the core run on the same input (the tick pipeline, the forecaster with the random walk), bad
records are dead-lettered once, and the retrain agent's dead letters are acknowledged.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from forex_diffusion.bundled import SAMPLE_TICKS
from forex_diffusion.domain import Candle
from forex_diffusion.forecast.forecaster import ForecasterConfig, RandomWalkPredictor, SymbolForecaster
from forex_diffusion.forecast.warm_start import stream_key
from forex_diffusion.ingest.pipeline import TickPipeline
from forex_diffusion.ingest.readers import read_ticks
from forex_diffusion.offline import aggregate_ticks_file
from forex_diffusion.storage import fetch_candles, load_snapshot
from forex_diffusion.wire import decode_tick, encode, encode_candle
from streams.app import Runtime, create_app
from streams.settings import Settings

from ...waiting import until


class AckingTopic:
    """Records what is sent; the broker acknowledges at once."""

    def __init__(self) -> None:
        self.sent: list[tuple[bytes | None, bytes]] = []

    async def send(self, *, key: Any = None, value: Any = None, headers: Any = None) -> asyncio.Future[None]:
        self.sent.append((key, value))
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut


def _worker(tmp_path: Path, roles: tuple[str, ...], **kw: Any) -> Runtime:
    s = Settings(symbols=("EURUSD",), data_dir=tmp_path, model_dir=tmp_path / "models", status_interval_s=0, **kw)
    rt = create_app(s, roles=roles)
    rt.topics = {name: AckingTopic() for name in rt.topics}  # type: ignore[misc]
    return rt


STALL_S = 60.0  # the longest time without progress a wait allows: generous for a loaded machine


async def _until(cond: Callable[[], bool], what: str, progress: Callable[[], Any] | None = None) -> None:
    """Wait until ``cond()`` while the loop and its executor threads work: failing after
    :data:`STALL_S` seconds in which ``progress()`` (e.g. the records processed) did not
    change, or, for work of one step (no ``progress``), after :data:`STALL_S` in all."""
    await until(cond, STALL_S, what=what, progress=progress)


def _tick_values(n: int) -> list[bytes]:
    f = read_ticks(SAMPLE_TICKS).frame.iloc[:n]
    rows = zip(f.ts_ms.tolist(), f.bid.tolist(), f.ask.tolist(), strict=True)
    return [encode({"v": 1, "symbol": "EURUSD", "ts": t, "bid": b, "ask": a}) for t, b, a in rows]


@pytest.mark.asyncio
async def test_tick_agent_in_test_context_checkpoints_the_candles_the_pipeline_closes(tmp_path: Path) -> None:
    rt = _worker(tmp_path, ("ticks",), timeframes=("1m", "5m"))
    ta = rt.tick_agent  # type: ignore[attr-defined]
    values = _tick_values(1_500)
    bad = {100: (b"EURUSD", b"{not json"), 700: (b"USDJPY", values[700])}  # malformed; key is another symbol
    async with ta.agent.test_context() as agent:
        for i, v in enumerate(values):
            key, value = bad.get(i, (b"EURUSD", v))
            await agent.put(value, key=key, partition=0)
        await _until(lambda: ta.consumer.processed == len(values), "every tick handled", lambda: ta.consumer.processed)
    await ta.consumer.flush()

    oracle = TickPipeline(timeframes=("1m", "5m"), instruments=rt.instruments)
    now_ms = int(time.time() * 1000)
    want: list[Candle] = []
    for i, v in enumerate(values):
        if i not in bad:
            want += oracle.process(decode_tick(v, key=b"EURUSD", instruments=rt.instruments), now_ms=now_ms)
    stored = sorted(
        [c for tf in ("1m", "5m") for c in fetch_candles(rt.engine, "EURUSD", tf)],
        key=lambda c: (c.timeframe, c.open_ms),
    )
    assert want and stored == sorted(want, key=lambda c: (c.timeframe, c.open_ms))
    published = rt.topics["candles"].sent  # type: ignore[attr-defined]
    assert [v for _k, v in published] == [encode_candle(c) for c in want]
    dead = [json.loads(v) for _k, v in rt.topics["deadletter"].sent]  # type: ignore[attr-defined]
    assert [(d["reason"], d["offset"]) for d in dead] == [("malformed", 100), ("key_mismatch", 700)]
    snap = load_snapshot(rt.engine, consumer=ta.consumer.progress.consumer, topic="fx.ticks", partition=0)
    assert snap is not None and snap[0] == len(values) - 1
    assert not ta.effects and ta.consumer.healthy.is_set()


def _candles() -> list[Candle]:
    return sorted(aggregate_ticks_file(SAMPLE_TICKS, timeframes=["1m", "5m"]).candles, key=stream_key)[:400]


async def put_candles(ca: Any, cs: list[Candle]) -> None:
    """Put ``cs`` (EUR/USD, partition 0) through the candle agent ``ca`` as Faust does, wait
    until every batch is handled (while batches keep being handled), and flush the checkpoint."""
    async with ca.agent.test_context() as agent:
        for c in cs:
            await agent.put(encode_candle(c), key=b"EURUSD", partition=0)
        await _until(
            lambda: ca.consumer.processed == len(cs) and not ca.consumer.busy,
            "every batch handled",
            lambda: (ca.consumer.processed, ca.consumer.busy),
        )
    await ca.consumer.flush()


@pytest.mark.asyncio
async def test_candle_agent_in_test_context_forecasts_in_batches_as_the_core_does(tmp_path: Path) -> None:
    rt = _worker(tmp_path, ("candles",), timeframes=("1m", "5m"), forecast_timeframes=("1m",), horizon=12)
    ca = rt.candle_agent  # type: ignore[attr-defined]
    cs = _candles()
    async with ca.agent.test_context() as agent:
        for c in cs:
            await agent.put(encode_candle(c), key=b"EURUSD", partition=0)
        await agent.put(b"\x00garbage", key=b"EURUSD", partition=0)
        await _until(
            lambda: ca.consumer.processed == len(cs) + 1 and not ca.consumer.busy,
            "every batch handled",
            lambda: (ca.consumer.processed, ca.consumer.busy),
        )
    await ca.consumer.flush()

    f = SymbolForecaster("EURUSD", ForecasterConfig(timeframes=("1m", "5m"), forecast_timeframes=("1m",), horizon=12))
    want = []
    for c in cs:
        o = f.on_candle(c)
        if o.due:
            req = f.request(o, None)
            assert req is not None
            want.append(json.loads(json.dumps(f.record(RandomWalkPredictor(12).forecast([req])[0], o))))
    got = [json.loads(v) for _k, v in rt.topics["forecasts"].sent]  # type: ignore[attr-defined]
    assert want and [(r["as_of_ms"], r["quantiles"]) for r in got] == [(r["as_of_ms"], r["quantiles"]) for r in want]
    assert len(rt.topics["indicators"].sent) == len(cs)  # type: ignore[attr-defined]
    assert [json.loads(v)["reason"] for _k, v in rt.topics["deadletter"].sent] == ["malformed"]  # type: ignore[attr-defined]
    snap = load_snapshot(rt.engine, consumer=ca.consumer.progress.consumer, topic="fx.candles", partition=0)
    assert snap is not None and snap[0] == len(cs)
    assert len(fetch_candles(rt.engine, "EURUSD", "1m")) == sum(c.timeframe == "1m" for c in cs)


@pytest.mark.asyncio
async def test_retrain_agent_in_test_context_acknowledges_each_dead_letter(tmp_path: Path) -> None:
    rt = _worker(tmp_path, ("retrain",), timeframes=("1m",))
    ra = rt.retrain_agent  # type: ignore[attr-defined]
    async with ra.agent.test_context() as agent:
        await agent.put(b'{"v": 1}', key=b"EURUSD", partition=0)
        await agent.put(b"[", key=b"EURUSD", partition=0)
        await _until(
            lambda: len(rt.topics["deadletter"].sent) == 2,  # type: ignore[attr-defined]
            "both dead letters acknowledged",
            lambda: len(rt.topics["deadletter"].sent),  # type: ignore[attr-defined]
        )
    dead = [json.loads(v) for _k, v in rt.topics["deadletter"].sent]  # type: ignore[attr-defined]
    assert [(d["reason"], d["offset"]) for d in dead] == [("schema", 0), ("malformed", 1)]
    assert not ra.outbox.effects
