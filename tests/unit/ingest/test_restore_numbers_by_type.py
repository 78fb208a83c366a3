"""A checkpoint row holding numeric strings or bad held ticks is refused at restore.

Regression: ``float()`` read a stored ``"1e400"``, ``"nan"`` or ``True`` as a number, so a
tick pipeline or an indicator restored without complaint, then failed on every later tick
(dead-lettered as ``internal``) and wrote snapshots holding Infinity/NaN, which the worker's
checkpoint could never write (retried for ever with consumption paused). Held ticks are now
read as the wire and the validator read a tick, every number of a state by type
(:mod:`forex_diffusion.state`), and a stored aggregator bar is bounded as a wire candle.
"""

from __future__ import annotations

import copy
import json
import math
from typing import Any

import pytest

from forex_diffusion.domain import Tick
from forex_diffusion.errors import StateError
from forex_diffusion.indicators.base import Indicator
from forex_diffusion.indicators.moving import SMA
from forex_diffusion.ingest.aggregation import CandleAggregator
from forex_diffusion.ingest.pipeline import TickPipeline
from forex_diffusion.instruments import InstrumentRegistry

REG = InstrumentRegistry()
T0 = 1_399_000_000_000


def _tick(i: int, *, bid: float | None = None, ask: float | None = None) -> Tick:
    """Tick ``i`` of a quiet EUR/USD (mids a few pips apart), or one at ``bid``/``ask``."""
    b = round(1.38727 + (i % 7) * 0.00001, 5)
    bid, ask = (b, round(b + 0.00002, 5)) if bid is None or ask is None else (bid, ask)
    return Tick(symbol="EURUSD", ts_ms=T0 + i * 1000, bid=bid, ask=ask, tick_id=f"a{i}")


#: ticks before the jump (past the spike guard's warm-up of 100), then one 3 % up
JUMP_AT = 300
JUMP = {"bid": 1.42888, "ask": 1.42890}


def _pipeline() -> TickPipeline:
    return TickPipeline(timeframes=("1m",), instruments=REG)


def _held_by_time_guard() -> dict[str, Any]:
    """A real snapshot whose time guard holds the first two ticks of EURUSD (as JSON reads it)."""
    p = _pipeline()
    for i in range(2):
        p.process(_tick(i), ref=[0, i])
    snap = json.loads(json.dumps(p.snapshot(["EURUSD"])))
    assert len(snap["times"]["EURUSD"]["state"]["held"]) == 2
    return snap


def _held_by_spike_guard() -> dict[str, Any]:
    """A real snapshot whose spike guard holds a jump of EURUSD (a tick 3 % up)."""
    p = _pipeline()
    for i in range(JUMP_AT):
        p.process(_tick(i), ref=[0, i])
    p.process(_tick(JUMP_AT, **JUMP), ref=[0, JUMP_AT])
    snap = json.loads(json.dumps(p.snapshot(["EURUSD"])))
    assert len(snap["spikes"]["EURUSD"]["state"]["held"]) == 1
    return snap


def _held(snap: dict[str, Any], guard: str) -> dict[str, Any]:
    return snap[guard]["EURUSD"]["state"]["held"][0][1]  # type: ignore[no-any-return]


#: a field of a held tick and a value no accepted tick has
BAD_HELD = [
    ("bid", "1e400"),
    ("bid", "nan"),
    ("ask", "inf"),
    ("bid", "1.38727"),  # a number as a string: the wire reads it, a state must not
    ("bid", True),
    ("ask", math.nan),
    ("bid", 1e30),  # past the wire's price bound
    ("bid", 500.0),  # within the bound, outside EUR/USD's range
    ("bid", -1.38727),
    ("volume", "0"),
    ("volume", -1.0),
    ("volume", 1e300),
    ("ts_ms", -5),
    ("ts_ms", float(T0)),  # an int that is a float
    ("ts_ms", str(T0)),
    ("ts_ms", True),
    ("ts_ms", 10**20),
    ("ts_ms", 1_000),  # 1970: a unit error (bad_ts)
    ("symbol", "GBPUSD"),  # another (known) series' tick
    ("symbol", "XXXYYY"),
    ("tick_id", 7),
    ("tick_id", "x" * 200),
]


@pytest.mark.parametrize("guard", ["times", "spikes"])
@pytest.mark.parametrize(("field", "value"), BAD_HELD, ids=[f"{f}={str(v)[:12]}" for f, v in BAD_HELD])
def test_a_held_tick_the_wire_would_refuse_is_a_state_error(guard: str, field: str, value: Any) -> None:
    snap = _held_by_time_guard() if guard == "times" else _held_by_spike_guard()
    _held(snap, guard)[field] = value
    with pytest.raises(StateError) as info:
        _pipeline().restore(snap)
    if isinstance(value, str) and len(value) > 3:
        assert value not in str(info.value)  # the field is named, never the value


def test_held_ticks_of_an_unknown_symbol_create_no_series() -> None:
    """B11: a series of a symbol the registry does not know is never created from a checkpoint
    (the time guard released its ticks into a new aggregator series)."""
    snap = _held_by_time_guard()
    snap["times"]["XXXYYY"] = snap["times"].pop("EURUSD")
    for _, t in snap["times"]["XXXYYY"]["state"]["held"]:
        t["symbol"] = "XXXYYY"
    p = _pipeline()
    with pytest.raises(StateError, match="unknown_symbol"):
        p.restore(snap)
    assert "XXXYYY" not in p.aggregator._series  # noqa: SLF001


def test_the_reproducer_a_held_price_of_1e400_no_longer_wedges_the_series() -> None:
    snap = _held_by_time_guard()
    snap["times"]["EURUSD"]["state"]["held"][0][1]["bid"] = "1e400"
    with pytest.raises(StateError, match="held tick bid"):
        _pipeline().restore(snap)


@pytest.mark.parametrize("guard", ["times", "spikes"])
def test_a_valid_snapshot_with_held_ticks_restores_and_continues_exactly(guard: str) -> None:
    snap = _held_by_time_guard() if guard == "times" else _held_by_spike_guard()
    n = 2 if guard == "times" else JUMP_AT + 1
    straight, restored = _pipeline(), _pipeline()
    for i in range(n):
        straight.process(_tick(i) if i < JUMP_AT else _tick(i, **JUMP), ref=[0, i])
    restored.restore(copy.deepcopy(snap))
    assert json.loads(json.dumps(restored.snapshot(["EURUSD"]))) == snap
    out_a, out_b = [], []
    for i in range(n, n + 130):
        out_a += straight.process(_tick(i), ref=[0, i])
        out_b += restored.process(_tick(i), ref=[0, i])
    assert out_a == out_b and out_a
    assert straight.take_quarantined() == restored.take_quarantined()
    json.dumps(restored.snapshot(["EURUSD"]), allow_nan=False)


# -- aggregator bars: bounded as wire candles --------------------------------------------------


def _aggregator_state() -> dict[str, Any]:
    agg = CandleAggregator(["1m"])
    for i in range(3):
        agg.add("EURUSD", T0 + i * 1000, 1.38727, 1.38729)
    return json.loads(json.dumps(agg.snapshot()))


# bar slots: open_ms, end_ms, o, h, l, c, volume, n, spread sum, spread min, spread max, first, last
BAD_BAR = [
    (3, 1e30),  # a high past the wire's price bound: accepted, then failed to encode downstream
    (3, "1.4"),
    (5, True),
    (6, 1e30),  # a volume past the wire's candle volume bound
    (6, -1.0),
    (7, 2**31),  # a tick count past the store's 32-bit column
    (7, True),
    (9, -2e9),
    (0, -60_000),  # a bar of 1969
    (11, "1399000000000"),
]


@pytest.mark.parametrize(("slot", "value"), BAD_BAR, ids=[f"{s}={str(v)[:12]}" for s, v in BAD_BAR])
def test_a_stored_aggregator_bar_outside_the_wire_bounds_is_a_state_error(slot: int, value: Any) -> None:
    state = _aggregator_state()
    state["state"]["series"]["EURUSD"]["bars"][0][0][slot] = value
    with pytest.raises(StateError):
        CandleAggregator(["1m"]).restore(state)


def test_a_valid_aggregator_state_restores_as_before() -> None:
    state = _aggregator_state()
    agg = CandleAggregator(["1m"])
    assert agg.restore(copy.deepcopy(state)) == ["EURUSD"]
    assert json.loads(json.dumps(agg.snapshot())) == state


# -- indicators ------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["nan", "inf", "1e400", "1.5", True, None, [1.2]])
def test_the_reproducer_an_sma_buffer_holding_a_non_number_is_a_state_error(value: Any) -> None:
    s = SMA(3)
    for x in (1.1, 1.2, 1.3):
        s.update(x)
    d = s.snapshot()
    d["state"]["state"]["buf"][0] = value
    with pytest.raises(StateError, match="buf"):
        Indicator.restore(d)


@pytest.mark.parametrize("value", ["nan", "1e400", True, ["1.2"], {"a": 1}])
def test_an_indicator_value_holding_a_non_number_is_a_state_error(value: Any) -> None:
    s = SMA(3)
    for x in (1.1, 1.2, 1.3):
        s.update(x)
    d = s.snapshot()
    d["state"]["raw"] = value
    with pytest.raises(StateError, match="raw"):
        Indicator.restore(d)
