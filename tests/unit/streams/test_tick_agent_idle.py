"""The tick agent's idle close counts only quiet *feed* time, never its own pause or lag.

Regression: while checkpoints failed (database down) the agent held consumption, the
wall-clock idle timer closed the forming bars, and the ticks of those bars still waiting
in the log were then refused as late (31 ticks per symbol lost in the PostgreSQL-outage
fault test).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from forex_diffusion.bundled import SAMPLE_TICKS
from forex_diffusion.ingest.readers import read_ticks
from forex_diffusion.instruments import InstrumentRegistry
from forex_diffusion.wire import encode
from streams.agents.ticks import TickAgent
from streams.app import Runtime
from streams.settings import Settings

SAMPLE = SAMPLE_TICKS


class FakeConsumer:
    def __init__(self) -> None:
        self.hw: int | None = None

    def highwater(self, tp: Any) -> int | None:
        return self.hw


def _n_candles(agent: TickAgent) -> int:
    """Closed candles queued for the next checkpoint."""
    return sum(len(e.candles) for e in agent.effects.parts.values())


def _agent(tmp_path: Path) -> tuple[TickAgent, FakeConsumer]:
    s = Settings(symbols=("EURUSD",), timeframes=("1m", "5m"), data_dir=tmp_path, idle_close_s=3.0, status_interval_s=0)
    consumer = FakeConsumer()
    rt = Runtime(
        settings=s,
        app=SimpleNamespace(consumer=consumer),
        topics={},
        instruments=InstrumentRegistry.of(s.symbols),
        engine=None,
    )
    return TickAgent(rt), consumer


def _feed(agent: TickAgent, n: int) -> int:
    frame = read_ticks(SAMPLE).frame.iloc[:n]
    for off, (t, b, a) in enumerate(zip(frame.ts_ms.tolist(), frame.bid.tolist(), frame.ask.tolist(), strict=True)):
        msg = SimpleNamespace(
            topic="fx.ticks",
            partition=0,
            offset=off,
            key=b"EURUSD",
            value=encode({"v": 1, "symbol": "EURUSD", "ts": t, "bid": b, "ask": a}),
        )
        asyncio.run(agent.handle(msg))
    return n - 1


def _quiet_for(agent: TickAgent, seconds: float) -> None:
    for sym, c in list(agent.idle.clocks.items()):
        agent.idle.clocks[sym] = c._replace(wall_s=c.wall_s - seconds)


async def _timer(agent: TickAgent) -> None:
    agent.consumer.schedule_flush = lambda: None  # type: ignore[method-assign]  # no broker here
    await agent.on_timer()


def test_idle_close_waits_while_the_log_holds_unprocessed_ticks(tmp_path: Path) -> None:
    agent, consumer = _agent(tmp_path)
    last = _feed(agent, 300)
    base = _n_candles(agent)
    consumer.hw = last + 50  # the broker holds 49 more ticks than we processed: we lag
    _quiet_for(agent, 60)
    asyncio.run(_timer(agent))
    assert _n_candles(agent) == base
    consumer.hw = None  # high-water mark unknown: not known to be caught up
    _quiet_for(agent, 60)
    asyncio.run(_timer(agent))
    assert _n_candles(agent) == base
    consumer.hw = last + 1  # caught up: quiet time now counts, from the moment we caught up
    asyncio.run(_timer(agent))
    assert _n_candles(agent) == base
    _quiet_for(agent, 400)
    asyncio.run(_timer(agent))
    assert _n_candles(agent) == base + 2  # the forming 1m and 5m bars close


def test_idle_close_waits_while_checkpoints_fail(tmp_path: Path) -> None:
    agent, consumer = _agent(tmp_path)
    consumer.hw = _feed(agent, 300) + 1
    base = _n_candles(agent)
    agent.consumer.healthy.clear()  # consumption held: the feed may be busy, we cannot tell
    _quiet_for(agent, 60)
    asyncio.run(_timer(agent))
    assert _n_candles(agent) == base
    agent.consumer.healthy.set()
    _quiet_for(agent, 400)
    asyncio.run(_timer(agent))
    assert _n_candles(agent) == base + 2


def test_idle_close_waits_while_the_broker_does_not_answer_fetches(tmp_path: Path) -> None:
    """Caught up by the last high-water mark, but that fetch response is old (broker paused
    or restarting): the feed is not known to be quiet, so nothing closes."""
    import time

    agent, consumer = _agent(tmp_path)
    consumer.hw = _feed(agent, 300) + 1
    polled = {"ms": time.time() * 1000 - 30_000}
    consumer._thread = SimpleNamespace(_consumer=SimpleNamespace(last_poll_timestamp=lambda tp: polled["ms"]))
    base = _n_candles(agent)
    _quiet_for(agent, 400)
    asyncio.run(_timer(agent))
    assert _n_candles(agent) == base
    polled["ms"] = time.time() * 1000  # fetches answered again
    _quiet_for(agent, 400)
    asyncio.run(_timer(agent))
    assert _n_candles(agent) == base + 2


def test_restored_series_without_new_ticks_still_closes_on_the_idle_timer(tmp_path: Path) -> None:
    """A worker restarted after its feed ended restores forming bars and receives no tick:
    the idle timer must still close them (it lost the last bars of a burst before)."""
    first, _ = _agent(tmp_path)
    last = _feed(first, 300)
    state = first.pipeline.snapshot(["EURUSD"])
    agent, consumer = _agent(tmp_path / "second")
    agent._restore(0, {"EURUSD": state})  # per series (issue 15)
    agent.consumer.progress.offsets[0] = last
    consumer.hw = last + 1
    _quiet_for(agent, 400)
    asyncio.run(_timer(agent))
    assert _n_candles(agent) == 2


def test_restored_series_holding_only_its_first_ticks_is_released_by_the_idle_timer(tmp_path: Path) -> None:
    """A worker restarted while a new series' first ticks still waited for confirmation (the
    time guard holds them) was not watched by the idle timer: with no further tick, they
    stayed held in the checkpoint for ever. Now the quiet feed releases them."""
    first, _ = _agent(tmp_path)
    last = _feed(first, 3)  # fewer than the 4 a start-of-series cluster needs
    state = first.pipeline.snapshot(["EURUSD"])
    assert state["times"]["EURUSD"]["state"]["held"] and not state["aggregator"]["state"].get("series")
    agent, consumer = _agent(tmp_path / "second")
    agent._restore(0, {"EURUSD": state})  # per series (issue 15)
    assert "EURUSD" in agent.idle.clocks
    agent.consumer.progress.offsets[0] = last
    consumer.hw = last + 1
    _quiet_for(agent, 400)
    asyncio.run(_timer(agent))
    asyncio.run(_timer(agent))
    assert _n_candles(agent) >= 1  # the released ticks' bars closed on the quiet feed


def test_idle_timer_counts_quiet_time_only_up_to_the_last_fetch_response(tmp_path: Path) -> None:
    """Regression (F1, broker ``kill -9`` mid-burst): the worker had processed every tick of
    its last fetch, the broker died right after answering, and 3.5 s later (its answer 3.4 s
    old, younger than the 5 s staleness rule) the 3 s idle timer advanced the series' clock;
    the next ticks, already acknowledged by the broker and fetched after its restart, were
    refused as late (4 ticks, 6 bars off the oracle in every run of the durable-broker F1
    test). Time after the last fetch response is not known to be quiet."""
    import time

    agent, consumer = _agent(tmp_path)
    frame = read_ticks(SAMPLE).frame.iloc[:320]
    ticks = list(zip(frame.ts_ms.tolist(), frame.bid.tolist(), frame.ask.tolist(), strict=True))

    def feed(first: int, last: int) -> None:
        for off in range(first, last):
            t, b, a = ticks[off]
            asyncio.run(
                agent.handle(
                    SimpleNamespace(
                        topic="fx.ticks",
                        partition=0,
                        offset=off,
                        key=b"EURUSD",
                        value=encode({"v": 1, "symbol": "EURUSD", "ts": t, "bid": b, "ask": a}),
                    )
                )
            )

    feed(0, 297)  # the sample's ticks 297-299 follow tick 296 within 0.3 s
    consumer.hw = 297  # caught up with the last fetch response
    polled = {"ms": time.time() * 1000 - 3_400}
    consumer._thread = SimpleNamespace(_consumer=SimpleNamespace(last_poll_timestamp=lambda tp: polled["ms"]))
    _quiet_for(agent, 3.5)
    asyncio.run(_timer(agent))
    polled["ms"] = time.time() * 1000  # the broker is back: the ticks it held arrive
    feed(297, 320)
    assert agent.effects.dead == [], "ticks the broker held during its outage were refused"
    assert agent.consumer.processed == 320


def test_what_an_idle_advance_changes_goes_in_the_next_checkpoint(tmp_path: Path) -> None:
    """Issue 15 (per-series checkpoints): the series the idle timer changed must be in the next
    checkpoint, or a restart after a crash restores an older state than a worker never stopped
    has. An advance that closes no bar changes nothing (the clock moves only as far as the bars
    it closes: before, it moved to the quiet time, which this test then required be written);
    one that closes the forming bar changes the series, and it is written."""
    agent, consumer = _agent(tmp_path)
    last = _feed(agent, 300)
    agent.consumer.progress.capture()  # the checkpoint of the ticks: nothing left changed
    agent.effects.take()
    consumer.hw = last + 1
    before = agent.pipeline.snapshot(["EURUSD"])
    _quiet_for(agent, 3.5)  # idle (3 s), not long enough to close a 1m bar
    asyncio.run(_timer(agent))
    assert _n_candles(agent) == 0
    assert agent.pipeline.snapshot(["EURUSD"]) == before  # nothing changed: nothing to write
    _quiet_for(agent, 400)
    asyncio.run(_timer(agent))
    assert _n_candles(agent) == 2  # the forming 1m and 5m bars
    assert agent.pipeline.snapshot(["EURUSD"]) != before
    captured = agent.consumer.progress.capture()
    assert 0 in captured and "EURUSD" in captured[0][1].parts
