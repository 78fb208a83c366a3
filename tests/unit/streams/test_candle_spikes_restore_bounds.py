"""A checkpointed price-jump guard whose held candle does not stand after its series' last
candle, within the candle gate's reach, is dropped (with a warning) on restore.

A held candle dated three years ahead, valid in shape, was restored: every real candle after
it was "behind" it, counted a duplicate, with no row, no dead letter and no forecast, and the
series stood still (adversarial review). The stream's own states restore as before
(``test_candle_agent_spikes``: a restart mid-hold equals never stopping)."""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from .test_containment import _candle_agent, _candle_msgs, _candles


def _feed(agent: Any, msgs: list[Any]) -> None:
    async def go() -> None:
        for m in msgs:
            await agent.handle_batch([m])

    asyncio.run(go())


@pytest.mark.parametrize("shift_ms", [3 * 365 * 86_400_000, -60_000 * 5])  # years ahead; before the last candle
def test_a_held_candle_out_of_place_is_dropped_and_the_series_goes_on(
    tmp_path: Path, shift_ms: int, caplog: pytest.LogCaptureFixture
) -> None:
    cs = _candles(80)
    a = _candle_agent(tmp_path / "a")
    _feed(a, _candle_msgs(cs[:40]))
    state = json.loads(json.dumps(a._snapshot(0, ["EURUSD"])))
    guard = state["EURUSD"]["spikes"]["EURUSD"]["state"]["1m"]
    inner = guard["state"] if "state" in guard else guard
    t = cs[39].open_ms + shift_ms
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
