"""A candle not after its series' last one is dropped and counted (B13), not lost silently.

Review finding: ``candle_step.account`` skipped such a candle with no dead letter and no count;
a redelivery, a replay's copy and the genuine bars a forged later bar overtook (the gate's
residual, docs/reliability.md) all vanished without a trace.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from streams.agents.candles import CandleAgent
from streams.metrics import Metrics
from tests.unit.streams.test_containment import _NO_MODEL, _candle_msgs, _candles, _dead, _feed_candles, _runtime

DUPLICATES = "forexd_candles_duplicate_total"
PROCESSED = "forexd_candles_processed_total"
SERIES = {"symbol": "EURUSD", "timeframe": "1m"}


def _agent(tmp_path: Path) -> CandleAgent:
    rt = _runtime(tmp_path, forecast_timeframes=("1m",))
    rt.metrics = Metrics(rt.settings.symbols, timeframes=rt.settings.timeframes)
    agent = CandleAgent(rt)
    agent.models.predictor = lambda sym, tf: _NO_MODEL  # type: ignore[method-assign]
    return agent


def _count(agent: CandleAgent, name: str) -> float:
    assert agent.rt.metrics is not None
    return agent.rt.metrics.registry.get_sample_value(name, SERIES) or 0.0


def test_redelivered_candles_are_counted_once_each_and_stored_once(tmp_path: Path) -> None:
    cs = _candles(12)
    again = [cs[3], cs[7], cs[11], cs[11]]  # copies of earlier ones, and of the last one twice
    agent = _agent(tmp_path)
    _feed_candles(agent, _candle_msgs([*cs, *again]))
    assert [c.open_ms for c in agent.effects.at(0).candles] == [c.open_ms for c in cs]
    assert _dead(agent) == []
    assert (_count(agent, PROCESSED), _count(agent, DUPLICATES)) == (len(cs), len(again))


def test_genuine_bars_a_forged_later_bar_overtook_are_counted(tmp_path: Path) -> None:
    cs = _candles(10)
    day = 86_400_000
    forged = replace(cs[4], open_ms=cs[4].open_ms + 6 * day, close_ms=cs[4].close_ms + 6 * day)  # within the reach
    agent = _agent(tmp_path)
    _feed_candles(agent, _candle_msgs([*cs[:4], forged, *cs[4:]]))
    assert (_count(agent, PROCESSED), _count(agent, DUPLICATES)) == (5, 6)
