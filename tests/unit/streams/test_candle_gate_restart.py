"""A candle worker restarted in the middle of a far-ahead confirmation admits what one that
never stopped admits (hostile review, 2026-12-06).

The gate counts consecutive far-ahead candles (a feed resuming after a week's gap) and admits
the one that completes the confirmation; the candles before it are ``future_ts`` dead letters.
The count was not checkpointed: a restart after two of three forgot them, refused the next two
as well, and the series lost candles for good (dead letters are never replayed). It is now
part of the series' checkpointed state, and a malformed one is refused as a state error.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from forex_diffusion.domain import Candle
from forex_diffusion.errors import StateError
from forex_diffusion.ingest.candle_gate import CandleGate, CandleGateConfig
from streams.agents.candles import CandleAgent
from tests.unit.streams.test_containment import _candle_agent, _candle_msgs, _candles, _dead, _feed_candles

WEEKS = 9 * 86_400_000  # past the gate's 7 days


def _resuming_feed() -> list[Candle]:
    """60 bars, then the feed resumes nine days on with 20 more."""
    cs = _candles(80)
    return cs[:60] + [replace(c, open_ms=c.open_ms + WEEKS, close_ms=c.close_ms + WEEKS) for c in cs[60:]]


def _outcome(agent: CandleAgent) -> tuple[list[tuple[str, int]], list[int]]:
    dead = [(d["reason"], d["offset"]) for d in _dead(agent)]
    return dead, [c.open_ms for c in agent.effects.at(0).candles]


@pytest.mark.parametrize("cut", [61, 62])  # after one or two of the three far-ahead candles
def test_a_restart_during_the_confirmation_admits_what_never_stopping_admits(tmp_path: Path, cut: int) -> None:
    msgs = _candle_msgs(_resuming_feed())
    whole = _candle_agent(tmp_path / "whole")
    _feed_candles(whole, msgs, batch=1)
    dead, admitted = _outcome(whole)
    assert dead == [("future_ts", 60), ("future_ts", 61)]  # the third completes the confirmation

    first = _candle_agent(tmp_path / "first")
    _feed_candles(first, msgs[:cut], batch=1)
    state = first._snapshot(0, ["EURUSD"])
    second = _candle_agent(tmp_path / "second")
    second._restore(0, state)
    _feed_candles(second, msgs[cut:], batch=1)
    dead2, admitted2 = _outcome(second)
    # before: the restarted worker refused msgs cut.. until three more agreed (two more lost)
    assert _outcome(first)[0] + dead2 == dead
    assert _outcome(first)[1] + admitted2 == admitted


@settings(max_examples=60, deadline=None)
@given(
    state=st.one_of(
        st.none(),
        st.integers(),
        st.text(max_size=3),
        st.lists(st.integers(), max_size=3),
        st.dictionaries(
            st.one_of(st.text(max_size=20), st.integers()),
            st.one_of(
                st.lists(
                    st.one_of(st.integers(-(2**64), 2**64), st.floats(), st.booleans(), st.text(max_size=2)), max_size=4
                ),
                st.integers(),
                st.none(),
            ),
            max_size=3,
        ),
    )
)
def test_a_gate_state_is_read_back_or_refused_as_a_state_error_never_anything_else(state: object) -> None:
    g = CandleGate(CandleGateConfig(max_ahead_ms=WEEKS // 9 * 7, confirm=3))
    try:
        g.restore("EURUSD", {"kind": "candle gate", "v": 1, "state": state})
    except StateError:
        return
    assert isinstance(state, dict)
    for tf, seen in state.items():
        assert isinstance(tf, str) and isinstance(seen, list) and 1 <= len(seen) <= 2
        assert all(type(t) is int and t >= 0 for t in seen) and seen == sorted(set(seen))
        assert g.held("EURUSD", tf) == len(seen)


def test_snapshot_and_restore_round_trip_one_symbol_and_leave_the_others() -> None:
    g = CandleGate(CandleGateConfig(max_ahead_ms=86_400_000, confirm=3))
    far = Candle(symbol="EURUSD", timeframe="1h", open_ms=10 * 86_400_000, close_ms=10 * 86_400_000 + 3_600_000,
                 open=1.1, high=1.1, low=1.1, close=1.1)  # fmt: skip
    assert g.check(far, watermark_ms=0, now_ms=None) is not None
    assert g.check(replace(far, symbol="GBPUSD"), watermark_ms=0, now_ms=None) is not None
    snap = g.snapshot("EURUSD")
    assert snap == {"kind": "candle gate", "v": 1, "state": {"1h": [far.open_ms]}}
    h = CandleGate(g.config)
    h.restore("EURUSD", snap)
    assert h.held("EURUSD", "1h") == 1 and h.held("GBPUSD", "1h") == 0
    assert h.holds("EURUSD") and not h.holds("USDJPY")
    g.restore("EURUSD", {**snap, "state": {}})  # an empty state clears the symbol's, not another's
    assert g.held("EURUSD", "1h") == 0 and g.held("GBPUSD", "1h") == 1


@pytest.mark.parametrize("gate", [[1], "x", {"EURUSD": {"kind": "candle gate", "v": 1, "state": {"1m": ["x"]}}}])
def test_a_gate_state_that_cannot_be_read_is_dropped_and_the_series_restores(
    tmp_path: Path, gate: object, caplog: pytest.LogCaptureFixture
) -> None:
    """A review found a gate value that is no mapping raising AttributeError, and any refused
    gate state stopping the worker; it is worth a few candles' confirmation at most, so it is
    dropped with a warning (as a shadow's is) and the series' forecaster restores."""
    import logging

    msgs = _candle_msgs(_resuming_feed())
    first = _candle_agent(tmp_path / "first")
    _feed_candles(first, msgs[:61], batch=1)
    state = first._snapshot(0, ["EURUSD"])
    state["EURUSD"]["gate"] = gate
    second = _candle_agent(tmp_path / "second")
    with caplog.at_level(logging.WARNING, logger="streams.agents.candles"):
        second._restore(0, state)
    assert any(r.getMessage().startswith("gate.state_dropped symbol=EURUSD") for r in caplog.records)
    assert "EURUSD" in second.forecasters and not second.gate.holds("EURUSD")
