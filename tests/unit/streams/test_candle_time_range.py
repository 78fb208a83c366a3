"""The candle agent refuses a bar dated 1970 (B18, ``bad_ts``) before it reaches the gate.

Review finding: a new series has no watermark, so the gate admitted any first bar; one forged
1m bar dated 1970 (``open_time`` 60000) became the series' last open time and the genuine bars
after it were refused as ``future_ts`` until three of them confirmed the "jump"."""

from __future__ import annotations

from pathlib import Path

from forex_diffusion.domain import Candle
from tests.unit.streams.test_containment import _candle_agent, _candle_msgs, _candles, _dead, _feed_candles


def test_a_forged_1970_first_bar_is_bad_ts_and_the_series_starts_with_the_genuine_ones(tmp_path: Path) -> None:
    cs = _candles(30)
    forged = Candle(
        symbol="EURUSD", timeframe="1m", open_ms=60_000, close_ms=120_000, open=1.39, high=1.39, low=1.39, close=1.39
    )
    msgs = _candle_msgs([forged, *cs])
    agent = _candle_agent(tmp_path)
    _feed_candles(agent, msgs)
    assert [(d["reason"], d["offset"]) for d in _dead(agent)] == [("bad_ts", 0)]
    assert [c.open_ms for c in agent.effects.at(0).candles] == [c.open_ms for c in cs]
    assert agent.forecasters["EURUSD"].last_open["1m"] == cs[-1].open_ms
