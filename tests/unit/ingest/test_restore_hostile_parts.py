"""Parts of a tick worker's checkpoint the restore took without a look (found by a hypothesis
hunt over mutated snapshots), each of which came back later as a crash or a lost candle:

* a held tick's ``ref`` (the tick agent's ``[partition, offset]``; the pipeline keeps any
  caller's ref): dead-lettering the tick of a restored one in another form, when its jump was
  refused, raised out of the tick agent (a str compared with an int, a pair of three) -- at
  every restart from that checkpoint; its origin is now unknown (-1);
* an aggregator bar's spread sum: any number within 1e150 was restored, and the bar's candle
  had a mean spread outside its own min and max, or one the wire refuses (the candle lost,
  its ticks counted again after the replay);
* an aggregator series' name: any text, whose candles the wire refuses;
* a mapping part given as a list or a string: ``AttributeError``, not the one error type.
"""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from forex_diffusion.domain import Tick
from forex_diffusion.errors import StateError
from forex_diffusion.ingest.aggregation import CandleAggregator
from forex_diffusion.ingest.pipeline import Quarantined, TickPipeline
from forex_diffusion.instruments import InstrumentRegistry
from forex_diffusion.wire import encode_candle
from streams.agents.tick_step import dead_letter_quarantined

T0 = 1_700_000_000_000


def _pipeline() -> TickPipeline:
    return TickPipeline(timeframes=["1m"], instruments=InstrumentRegistry())


def _holding() -> dict[str, Any]:
    """A pipeline's snapshot holding one price jump (not yet confirmed), through JSON."""
    p = _pipeline()
    for i in range(200):
        p.process(Tick(symbol="EURUSD", ts_ms=T0 + i * 1000, bid=1.1, ask=1.1002), ref=[0, i])
    p.process(Tick(symbol="EURUSD", ts_ms=T0 + 200_000, bid=1.3, ask=1.3002), ref=[0, 200])
    snap: dict[str, Any] = json.loads(json.dumps(p.snapshot(["EURUSD"])))
    assert snap["spikes"]["EURUSD"]["state"]["held"][0][1]["ref"] == [0, 200]
    return snap


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=4),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=2), inner, max_size=2),
    max_leaves=6,
)


def _agent(held: list[Quarantined], refused: list[tuple[int, int]]) -> Any:
    """What :func:`dead_letter_quarantined` uses of a tick agent; records each dead letter's origin."""
    return SimpleNamespace(
        pipeline=SimpleNamespace(take_quarantined=lambda: held),
        consumer=SimpleNamespace(progress=SimpleNamespace(topic="fx.ticks")),
        contain=SimpleNamespace(refuse=lambda **kw: refused.append((kw["partition"], kw["offset"]))),
    )


@settings(max_examples=300, deadline=None)
@given(ref=_json)
def test_a_restored_held_tick_whatever_its_ref_is_dead_lettered_by_the_tick_agent(ref: Any) -> None:
    snap = _holding()
    snap["spikes"]["EURUSD"]["state"]["held"][0][1]["ref"] = ref
    q = _pipeline()
    q.restore(snap)  # the pipeline keeps its caller's ref as it was given
    q.process(Tick(symbol="EURUSD", ts_ms=T0 + 201_000, bid=1.1, ask=1.1002), ref=[0, 201])  # the jump reverts
    held = q.take_quarantined()
    assert [x.ref for x in held] == [ref]
    refused: list[tuple[int, int]] = []
    dead_letter_quarantined(_agent(held, refused))  # raised out of the agent: '<=' of str and int, ...
    pair = type(ref) is list and len(ref) == 2 and all(type(v) is int for v in ref)
    assert refused == [tuple(ref) if pair else (-1, -1)]  # -1: the origin is not known


@pytest.mark.parametrize("part", ["spikes", "times"])
@pytest.mark.parametrize("value", [[], ["EURUSD"], "EURUSD", 3])
def test_a_mapping_part_of_another_type_is_a_state_error(part: str, value: Any) -> None:
    snap = _holding()
    with pytest.raises(StateError):
        _pipeline().restore({**snap, part: value})


def _aggregator_snapshot() -> dict[str, Any]:
    a = CandleAggregator(["1m"], allowed_lateness_ms=0)
    for i in range(30):
        a.add("EURUSD", T0 + i * 1000, 1.1, 1.1002)
    snap: dict[str, Any] = json.loads(json.dumps(a.snapshot()))
    return snap


@settings(max_examples=200, deadline=None)
@given(ssum=st.floats(-1e150, 1e150))
def test_a_restored_bar_gives_a_candle_the_wire_takes_with_its_mean_spread_between_min_and_max(ssum: float) -> None:
    snap = _aggregator_snapshot()
    snap["state"]["series"]["EURUSD"]["bars"][0][-1][8] = ssum  # the spread sum
    a = CandleAggregator(["1m"], allowed_lateness_ms=0)
    try:
        a.restore(snap)
    except StateError:
        return
    a.add("EURUSD", T0 + 30_000, 1.1, 1.1002)
    for c in a.flush():
        encode_candle(c)
        assert c.spread_min is not None and c.spread_max is not None and c.spread_mean is not None
        assert c.spread_min - 1e-12 <= c.spread_mean <= c.spread_max + 1e-12


def test_the_spread_sum_of_real_ticks_restores() -> None:
    """The check refuses no bar that ticks make: many ticks of uneven spreads, summed in floats."""
    a = CandleAggregator(["1h"], allowed_lateness_ms=0)
    for i in range(3000):
        a.add("EURUSD", T0 + i * 1000, 1.1, 1.1 + 1e-5 * (1 + (i * 7919) % 13) / 3)
    b = CandleAggregator(["1h"], allowed_lateness_ms=0)
    b.restore(json.loads(json.dumps(a.snapshot())))
    assert [c.spread_mean for c in b.flush()] == [c.spread_mean for c in a.flush()]


@pytest.mark.parametrize("name", ["bad\x1bname", "eurusd", "EURUSD ", "", "EUR/USD"])
def test_a_restored_series_whose_name_is_no_symbol_is_a_state_error(name: str) -> None:
    snap = _aggregator_snapshot()
    snap["state"]["series"][name] = snap["state"]["series"]["EURUSD"]
    with pytest.raises(StateError, match="no canonical symbol"):
        CandleAggregator(["1m"], allowed_lateness_ms=0).restore(snap)
