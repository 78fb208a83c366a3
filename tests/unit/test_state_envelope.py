"""The state envelope (issue 15): one format, one error, old checkpoints still readable.

The per-class contract is tests/contract/test_stateful.py (each class's layout of the
previous release restores there, the forecaster's included); here the pieces around it: the
helpers, the error's place in the tree, and a whole tick-pipeline checkpoint of the previous
release (no envelope anywhere) resuming exactly.
"""

from __future__ import annotations

import doctest
import json
from typing import Any

import pytest

from forex_diffusion import state
from forex_diffusion.bundled import SAMPLE_TICKS
from forex_diffusion.domain import Tick
from forex_diffusion.errors import ConfigError, ForexDiffusionError, StateError, ValidationError
from forex_diffusion.ingest.aggregation import CandleAggregator
from forex_diffusion.ingest.readers import read_ticks
from forex_diffusion.state import ENVELOPE_KEYS, is_envelope, unwrap, wrap

from ..pipeline_runs import feed, pipeline


def sample_ticks(n: int) -> list[Tick]:
    """The first ``n`` bundled EUR/USD ticks."""
    f = read_ticks(SAMPLE_TICKS).frame.iloc[:n]
    return [
        Tick(symbol="EURUSD", ts_ms=t, bid=b, ask=a)
        for t, b, a in zip(f.ts_ms.tolist(), f.bid.tolist(), f.ask.tolist(), strict=True)
    ]


def test_doctests() -> None:
    assert doctest.testmod(state).failed == 0


def test_state_error_is_a_config_error_of_the_project_tree() -> None:
    assert issubclass(StateError, ConfigError) and issubclass(StateError, ForexDiffusionError)
    assert issubclass(StateError, ValueError)  # as ConfigError: callers catching ValueError still do


def test_wrap_and_unwrap() -> None:
    agg = CandleAggregator(["1m"])
    env = wrap(agg, {"a": 1})
    assert env == {"kind": "candle_aggregator", "v": 1, "state": {"a": 1}} and env.keys() == ENVELOPE_KEYS
    assert is_envelope(env) and not is_envelope({**env, "x": 0}) and not is_envelope([env])
    assert unwrap(env, CandleAggregator) == {"a": 1}
    with pytest.raises(StateError, match="cannot restore a candle_aggregator"):
        unwrap({**env, "kind": "tick_ids"}, CandleAggregator)
    with pytest.raises(StateError, match="version 2"):
        unwrap({**env, "v": 2}, CandleAggregator)
    with pytest.raises(StateError, match="version True"):
        unwrap({**env, "v": True}, CandleAggregator)  # a bool is not a version
    with pytest.raises(StateError, match="not a candle_aggregator state"):
        unwrap({"a": 1}, CandleAggregator)  # no legacy reader: refused
    assert unwrap({"a": 1}, CandleAggregator, legacy=lambda old: {"b": old["a"]}) == {"b": 1}
    with pytest.raises(StateError, match="malformed old candle_aggregator state: KeyError"):
        unwrap({"x": 1}, CandleAggregator, legacy=lambda old: {"b": old["a"]})


def _old_pipeline_layout(new: dict[str, Any]) -> dict[str, Any]:
    """The tick pipeline's checkpoint as the previous release wrote it (no envelopes)."""
    return {
        "aggregator": {"version": 1, **new["aggregator"]["state"]},
        "tick_ids": new["tick_ids"]["state"],
        "spikes": {s: d["state"] for s, d in new["spikes"].items()},
        "times": {s: d["state"] for s, d in new["times"].items()},
    }


def _ids(ticks: list[Tick]) -> list[Tick]:
    return [Tick(symbol=t.symbol, ts_ms=t.ts_ms, bid=t.bid, ask=t.ask, tick_id=f"t{i}") for i, t in enumerate(ticks)]


def test_a_tick_pipeline_checkpoint_of_the_previous_release_resumes_exactly() -> None:
    ticks = _ids(sample_ticks(3_000))
    straight, first = pipeline(), pipeline()
    feed(straight, ticks[:1_500])
    feed(first, ticks[:1_500])
    old = json.loads(json.dumps(_old_pipeline_layout(first.snapshot(["EURUSD"]))))
    assert not any(is_envelope(v) for v in old.values())
    resumed = pipeline()
    assert resumed.restore(old) == {"EURUSD": None}
    rest = ticks[1_500:] + ticks[1_400:1_410]  # the last ten again: duplicates by their ids
    a, b = feed(straight, rest, 1_500), feed(resumed, rest, 1_500)
    assert a == b and len(a[0]) > 10 and [r for _, r in a[2]][-10:] == ["duplicate"] * 10
    assert straight.flush() == resumed.flush()


def test_a_bad_tick_pipeline_checkpoint_is_a_state_error() -> None:
    p = pipeline()
    feed(p, sample_ticks(200))
    snap = json.loads(json.dumps(p.snapshot(["EURUSD"])))
    for bad in (
        {**snap, "aggregator": {**snap["aggregator"], "v": 7}},
        {**snap, "tick_ids": {**snap["tick_ids"], "kind": "spike_guard"}},
        {**snap, "aggregator": {"version": 0}},
        {k: v for k, v in snap.items() if k != "aggregator"},
    ):
        with pytest.raises(StateError):
            pipeline().restore(bad)


def test_a_late_tick_is_still_a_validation_error_after_a_restore() -> None:
    ticks = sample_ticks(500)
    p = pipeline()
    feed(p, ticks[:400])
    q = pipeline()
    q.restore(json.loads(json.dumps(p.snapshot(["EURUSD"]))))
    late = Tick(symbol="EURUSD", ts_ms=ticks[0].ts_ms, bid=ticks[0].bid, ask=ticks[0].ask)
    with pytest.raises(ValidationError):
        q.process(late)
