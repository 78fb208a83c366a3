"""B9 through the tick agent: a bad print that reverts is dead-lettered as
``spike_unconfirmed`` with its own origin offset and raw tick; a confirmed jump is held, then
released into the candles; nothing else is dead-lettered."""

from __future__ import annotations

import asyncio
import json
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


def _n_candles(agent: TickAgent) -> int:
    """Closed candles queued for the next checkpoint."""
    return sum(len(e.candles) for e in agent.effects.parts.values())


def _agent(tmp_path: Path) -> TickAgent:
    s = Settings(symbols=("EURUSD",), timeframes=("1m",), data_dir=tmp_path, status_interval_s=0)
    rt = Runtime(
        settings=s,
        app=SimpleNamespace(consumer=None),
        topics={},
        instruments=InstrumentRegistry.of(s.symbols),
        engine=None,
    )
    return TickAgent(rt)


def _run(agent: TickAgent, rows: list[tuple[int, float, float]]) -> None:
    async def go() -> None:
        for off, (t, b, a) in enumerate(rows):
            msg = SimpleNamespace(
                topic="fx.ticks",
                partition=0,
                offset=off,
                key=b"EURUSD",
                value=encode({"v": 1, "symbol": "EURUSD", "ts": t, "bid": b, "ask": a}),
            )
            await agent.handle(msg)

    asyncio.run(go())


def _real(n: int) -> list[tuple[int, float, float]]:
    f = read_ticks(SAMPLE).frame.iloc[:n]
    return list(zip(f.ts_ms.tolist(), f.bid.tolist(), f.ask.tolist(), strict=True))


def _candles(agent: TickAgent) -> list[Any]:
    return [c for e in agent.effects.parts.values() for c in e.candles] + agent.pipeline.flush()


def test_reverting_bad_print_is_dead_lettered_with_its_origin(tmp_path: Path) -> None:
    rows = _real(3_000)
    t, b, a = rows[1_500]
    spiked = rows[:1_501] + [(t + 1, round(b * 1.03, 5), round(a * 1.03, 5))] + rows[1_501:]
    agent = _agent(tmp_path)
    _run(agent, spiked)
    dead = [json.loads(v) for _k, v, _h in agent.effects.dead]
    assert [(d["reason"], d["offset"]) for d in dead] == [("spike_unconfirmed", 1_501)]
    assert json.loads(dead[0]["raw"])["bid"] == round(b * 1.03, 5)
    clean = _agent(tmp_path / "clean")
    _run(clean, rows)
    assert _candles(agent) == _candles(clean)  # the bad print changed no candle


def test_confirmed_jump_is_held_then_released_without_dead_letters(tmp_path: Path) -> None:
    rows = _real(2_000)
    t0 = rows[-1][0]
    # a 3 % level shift that persists (the EUR/CHF 2015 kind of move, scaled)
    shifted = [
        (t0 + 1_000 * (i + 1), round(b * 0.97, 5), round(a * 0.97, 5)) for i, (_t, b, a) in enumerate(rows[-50:])
    ]
    agent = _agent(tmp_path)
    _run(agent, rows + shifted)
    assert agent.effects.dead == []
    assert agent.pipeline.spike_counters.confirmed == 1
    assert sum(c.tick_count for c in _candles(agent)) == len(rows) + len(shifted)


def test_hold_left_open_by_a_quiet_feed_is_quarantined_by_the_idle_timer(tmp_path: Path) -> None:
    rows = _real(2_000)
    t, b, a = rows[-1]
    agent = _agent(tmp_path)
    agent.rt.app.consumer = SimpleNamespace(highwater=lambda tp: 2_001)  # caught up with the log
    _run(agent, rows + [(t + 1, round(b * 1.03, 5), round(a * 1.03, 5))])  # the last tick is a jump
    assert agent.pipeline.held_count("EURUSD") == 1 and agent.effects.dead == []
    agent.consumer.schedule_flush = lambda: None  # type: ignore[method-assign]  # no broker here
    closed_before = _n_candles(agent)
    for sym, c in list(agent.idle.clocks.items()):
        agent.idle.clocks[sym] = c._replace(wall_s=c.wall_s - 400)
    asyncio.run(agent.on_timer())
    assert [json.loads(v)["reason"] for _k, v, _h in agent.effects.dead] == ["spike_unconfirmed"]
    assert agent.pipeline.held_count("EURUSD") == 0
    assert _n_candles(agent) == closed_before + 1  # and the forming bar, no longer held back, closes
