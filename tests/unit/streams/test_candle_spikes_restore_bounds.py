"""A checkpointed price-jump guard whose held candle does not open after its series' last
candle, or closes in the future, is dropped (with a warning) on restore; one the stream
wrote after a long gap the candle gate confirmed restores.

A held candle dated years ahead, valid in shape, was restored: every real candle after it was
"behind" it, counted a duplicate, with no row, no dead letter and no forecast, and the series
stood still (adversarial review). A first bound, the gate's reach from the series' last
candle, refused the stream's own hold after a 10-day outage (a second review and a crash
test with real workers): the held candle was lost and the gate confirmed the gap again."""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from .test_containment import _candle_agent, _candle_msgs, _candles, _dead


def _feed(agent: Any, msgs: list[Any]) -> None:
    async def go() -> None:
        for m in msgs:
            await agent.handle_batch([m])

    asyncio.run(go())


@pytest.mark.parametrize("to_ms", [4_102_444_800_000 - 120_000, None])  # late 2099 (the future); before the last candle
def test_a_held_candle_out_of_place_is_dropped_and_the_series_goes_on(
    tmp_path: Path, to_ms: int | None, caplog: pytest.LogCaptureFixture
) -> None:
    cs = _candles(80)
    a = _candle_agent(tmp_path / "a")
    _feed(a, _candle_msgs(cs[:40]))
    state = json.loads(json.dumps(a._snapshot(0, ["EURUSD"])))
    guard = state["EURUSD"]["spikes"]["EURUSD"]["state"]["1m"]
    inner = guard["state"] if "state" in guard else guard
    t = cs[39].open_ms - 5 * 60_000 if to_ms is None else to_ms
    forged = replace(cs[39], open_ms=t, close_ms=t + 60_000)
    inner["held"] = [[forged.close, {"candle": forged.to_dict(), "ref": [0, 39]}]]
    b = _candle_agent(tmp_path / "b")
    with caplog.at_level(logging.WARNING):
        b._restore(0, state)
    assert not b.spikes.held("EURUSD", "1m")
    assert any("spikes.state_dropped" in r.getMessage() for r in caplog.records)
    before = len(b.effects.at(0).candles)
    _feed(b, _candle_msgs(cs)[40:80])
    assert len(b.effects.at(0).candles) - before == 40  # before: 0 (every one a "duplicate")
    assert b.forecasters["EURUSD"].last_open == {"1m": cs[79].open_ms}


def test_a_hold_after_a_gap_the_gate_confirmed_restores_as_if_never_stopped(tmp_path: Path) -> None:
    """10 days without candles, then 5 % higher: the gate refuses two (future_ts), admits the
    third, the guard holds it; a restart then equals a worker that never stopped."""
    gap = 10 * 86_400_000
    cs = _candles(80)

    def later(c: Any) -> Any:
        o, h, lo, cl = (round(v * 1.05, 5) for v in (c.open, c.high, c.low, c.close))
        return replace(c, open_ms=c.open_ms + gap, close_ms=c.close_ms + gap, open=o, high=h, low=lo, close=cl)

    msgs = _candle_msgs(cs[:40] + [later(c) for c in cs[40:]])
    whole = _candle_agent(tmp_path / "whole")
    _feed(whole, msgs)
    first = _candle_agent(tmp_path / "first")
    _feed(first, msgs[:43])
    assert first.spikes.held("EURUSD", "1m")  # the first candle the gate admitted after the gap
    second = _candle_agent(tmp_path / "second")
    second._restore(0, json.loads(json.dumps(first._snapshot(0, ["EURUSD"]))))
    assert second.spikes.held("EURUSD", "1m") == first.spikes.held("EURUSD", "1m")  # before: dropped
    _feed(second, msgs[43:])
    rows = [c.open_ms for a in (first, second) for c in a.effects.at(0).candles]
    assert rows == [c.open_ms for c in whole.effects.at(0).candles]
    dead = [(d["reason"], d["offset"]) for a in (first, second) for d in _dead(a)]
    assert dead == [(d["reason"], d["offset"]) for d in _dead(whole)]
