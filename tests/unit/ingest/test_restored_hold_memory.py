"""A guard's memory of an expired hold, read back from a checkpoint, stands where a hold can.

A snapshot the guards write never holds a memory whose ticks run past one reach of its anchor
(time guard), later than the series' time (spike guard: its ticks passed the time guard
first), whose anchor is no jump from the series, or a carried one away from the hold that goes
on it. One edited (or written under other settings) was taken as it was: a memory a year
ahead made every tick of a genuine new time or level ``late``, for ever (found by a hostile
review). Such a memory is now forgotten on restore, which loses nothing but the confirmations
it counted; every memory a guard wrote is kept (property below).
"""

from __future__ import annotations

import copy
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from forex_diffusion.domain import Tick
from forex_diffusion.errors import ValidationError
from forex_diffusion.ingest.pipeline import TickPipeline
from forex_diffusion.ingest.spikes import SpikeConfig
from forex_diffusion.ingest.time_jumps import TimeJumpConfig
from forex_diffusion.instruments import InstrumentRegistry

T0 = 1_700_000_040_000
YEAR = 365 * 86_400_000


def _pipe() -> TickPipeline:
    return TickPipeline(
        timeframes=["1m"],
        instruments=InstrumentRegistry(),
        spikes=SpikeConfig(warmup=3, confirm=2),
        times=TimeJumpConfig(max_jump_ms=60_000, confirm=2, hours=None),
    )


def _feed(p: TickPipeline, ticks: list[Tick]) -> list[str]:
    out = []
    for t in ticks:
        try:
            p.process(t)
            out.append("ok")
        except ValidationError as exc:
            out.append(exc.reason.value)
    return out


def _tick(ts: int, mid: float) -> Tick:
    return Tick(symbol="EURUSD", ts_ms=ts, bid=mid - 0.0001, ask=mid + 0.0001)


def _warm() -> dict[str, Any]:
    p = _pipe()
    assert _feed(p, [_tick(T0 + i * 1000, 1.1) for i in range(6)]) == ["ok"] * 6
    snap: dict[str, Any] = json.loads(json.dumps(p.snapshot(["EURUSD"])))
    return snap


def _restored(edit: dict[str, Any]) -> TickPipeline:
    snap = _warm()
    for guard, memory in edit.items():
        snap[guard]["EURUSD"]["state"]["expired"] = memory
    p = _pipe()
    p.restore(json.loads(json.dumps(snap)))
    return p


GAP = [_tick(T0 + 3_600_000 + i * 1000, 1.1) for i in range(8)]  # the feed back after an hour
LEVEL = [_tick(T0 + 7000 + i * 1000, 1.2) for i in range(8)]  # a genuine new level


def test_a_time_memory_whose_ticks_run_a_year_past_its_anchor_is_forgotten() -> None:
    p = _restored({"times": [T0 + 3_600_000, 1, T0 + 3_600_000 + YEAR]})
    assert _feed(p, GAP) == ["ok"] * 8  # before: late x 8


def test_a_spike_memory_later_than_the_series_time_is_forgotten() -> None:
    p = _restored({"spikes": [1.2001, 1, T0 + YEAR]})
    assert _feed(p, LEVEL) == ["ok"] * 8  # before: late x 8


def test_a_memory_whose_anchor_is_no_jump_is_forgotten() -> None:
    """An anchor at the series' own time or level: no hold could have stood there."""
    p = _restored({"times": [T0 + 6000, 1, T0 + 6000], "spikes": [1.1, 1, T0 + 5000]})
    assert p.snapshot(["EURUSD"])["times"]["EURUSD"]["state"].get("expired") is None
    assert p.snapshot(["EURUSD"])["spikes"]["EURUSD"]["state"].get("expired") is None


def test_a_memory_the_guard_could_have_written_is_kept() -> None:
    p = _restored({"times": [T0 + 3_600_000, 1, T0 + 3_600_000], "spikes": [1.2001, 1, T0 + 5000]})
    snap = p.snapshot(["EURUSD"])
    assert snap["times"]["EURUSD"]["state"]["expired"] == [T0 + 3_600_000, 1, T0 + 3_600_000]
    assert snap["spikes"]["EURUSD"]["state"]["expired"] == [1.2001, 1, T0 + 5000]


_op = st.one_of(
    st.tuples(
        st.just("tick"),
        st.one_of(st.integers(0, 3000), st.sampled_from([120_000, 200_000, -120_000, 61_000])),
        st.sampled_from([1.1, 1.1002, 1.0998, 1.122, 1.1221, 1.65, 1.067]),
    ),
    st.tuples(st.just("expire"), st.just(0), st.just(0.0)),
    st.tuples(st.just("tick"), st.integers(0, 3000), st.sampled_from([1.65, 1.067])),  # price jumps, more often
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(_op, min_size=1, max_size=40), tail=st.lists(_op, max_size=10))
def test_every_snapshot_the_guards_write_restores_whole_and_goes_on_the_same(
    ops: list[tuple[str, int, float]], tail: list[tuple[str, int, float]]
) -> None:
    """Property: ticks with price and time jumps and expiries at random points; the snapshot
    restores to itself (no memory a guard wrote is forgotten) and both pipelines then refuse,
    quarantine and close the same."""

    def run(p: TickPipeline, steps: list[tuple[str, int, float]], clock: list[int]) -> list[Any]:
        log: list[Any] = []
        for kind, dt, mid in steps:
            if kind == "expire":
                p.expire_hold("EURUSD")
            else:
                clock[0] = max(T0 - 10**7, clock[0] + dt)
                try:
                    log.append([c.close for c in p.process(_tick(clock[0], mid))])
                except ValidationError as exc:
                    log.append(exc.reason.value)
            log.append([(q.reason.value, q.tick.ts_ms) for q in p.take_quarantined()])
        return log

    clock = [T0]
    a = _pipe()
    run(a, [("tick", 1000, 1.1)] * 4 + ops, clock)  # warm: the spike guard judges from the 4th
    snap = json.loads(json.dumps(a.snapshot(["EURUSD"])))
    b = _pipe()
    b.restore(copy.deepcopy(snap))
    assert json.loads(json.dumps(b.snapshot(["EURUSD"]))) == snap
    assert run(a, tail, [clock[0]]) == run(b, tail, [clock[0]])
