"""A valid envelope of every stateful class holding one hostile value anywhere.

A checkpoint row may be written by hand or by someone hostile. For every class of the state
contract (:mod:`test_stateful`'s cases): a real snapshot taken after real inputs, with one
leaf of its plain structure (any depth: a field, an element of a list, a value of a mapping)
replaced by a hostile value (negative, zero, -0.0, 10**400, 1e308, nan, inf, a string, a
list, a mapping, None, True). Its restore either refuses it (``StateError``; or
``ArtifactError`` where a signed part no longer matches its signature: both stop the worker
with ``state.refused`` and exit 65), or gives an object that takes the next real inputs
without raising and whose snapshot still round-trips through strict JSON. Never a state
that restores and then raises on the next tick or candle: the worker would restore it again
on every restart (a crash loop).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from forex_diffusion.diffusion.context import SeriesContext
from forex_diffusion.diffusion.inputs import InputsBuilder
from forex_diffusion.errors import ArtifactError, StateError
from forex_diffusion.forecast.features import FeatureBuilder
from forex_diffusion.ingest.spikes import SpikeConfig, SpikeGuard
from forex_diffusion.ingest.time_jumps import TimeJumpConfig, TimeJumpGuard

sys.path.insert(0, str(Path(__file__).resolve().parent))
import test_stateful as contract  # noqa: E402  (the contract's cases: every stateful class of the core)

HOSTILE: tuple[Any, ...] = (
    -1,
    -0.5,
    0,
    0.0,
    -0.0,
    10**400,
    1e308,
    math.nan,
    math.inf,
    -math.inf,
    "x",
    "",
    [],
    [1],
    {},
    {"a": 1},
    None,
    True,
)

#: real inputs fed after the restore
NEXT = 40

Path_ = tuple[Any, ...]


def _leaves(node: Any, path: Path_ = ()) -> list[Path_]:
    """Every leaf of ``node``: a scalar, or an empty list or mapping."""
    if isinstance(node, dict) and node:
        return [p for k, v in node.items() for p in _leaves(v, (*path, k))]
    if isinstance(node, list) and node:
        return [p for i, v in enumerate(node) for p in _leaves(v, (*path, i))]
    return [path] if path else []


def _shape(path: Path_) -> Path_:
    """The field a leaf is an instance of (list indices are one field)."""
    return tuple("[]" if isinstance(k, int) else k for k in path)


@cache
def _real(name: str) -> tuple[dict[str, Any], tuple[tuple[Path_, ...], ...]]:
    """A real snapshot half way through the inputs, and its leaves grouped by field."""
    case = contract.CASES[name]
    inputs = case.inputs()
    obj = case.make()
    contract._run(case, obj, inputs[: len(inputs) // 2])  # noqa: SLF001
    data = contract._json(case.snap(obj))  # noqa: SLF001
    groups: dict[Path_, list[Path_]] = {}
    for p in _leaves(data["state"]):
        groups.setdefault(_shape(p), []).append(p)
    return data, tuple(tuple(g) for g in groups.values())


def _set(root: Any, path: Path_, value: Any) -> None:
    for k in path[:-1]:
        root = root[k]
    root[path[-1]] = value


#: cases whose restore is told the series it restores, as its caller does (a context of
#: another series refuses every candle of this one: the forecaster passes its own series)
LOAD = {
    "series_context": dataclasses.replace(
        contract.CASES["series_context"], load=lambda d: SeriesContext.restore(d, symbol="EURUSD", timeframe="1m")
    ),
    "feature_builder": dataclasses.replace(
        contract.CASES["feature_builder"], load=lambda d: FeatureBuilder.restore(d, symbol="EURUSD")
    ),
    "inputs_builder": dataclasses.replace(
        contract.CASES["inputs_builder"], load=lambda d: InputsBuilder.restore(d, symbol="EURUSD", timeframe="1m")
    ),
}


def check(name: str, path: Path_, value: Any) -> None:
    """``value`` at ``path`` of the real snapshot of ``name``: refused, or restores and runs."""
    case = LOAD.get(name, contract.CASES[name])
    data, _ = _real(name)
    bad = copy.deepcopy(data)
    _set(bad["state"], path, copy.deepcopy(value))
    try:
        restored = case.load(bad)
    except (StateError, ArtifactError):
        return
    inputs = case.inputs()
    cut = len(inputs) // 2
    for x in inputs[cut : cut + NEXT]:
        case.step(restored, x)  # never raises
    snap = case.snap(restored)
    text = json.dumps(snap, allow_nan=False)  # strict JSON: the next checkpoint can be written
    again = case.load(json.loads(text))
    assert contract._json(case.scrub(case.snap(again))) == contract._json(case.scrub(json.loads(text)))  # noqa: SLF001


@st.composite
def _hostile(draw: st.DrawFn, name: str) -> tuple[Path_, Any]:
    _, groups = _real(name)
    group = draw(st.sampled_from(groups))
    path = draw(st.sampled_from(group))
    return path, draw(st.sampled_from(HOSTILE))


#: classes whose restore still takes a hostile value it later fails on (findings, reported:
#: their restore lives in files of other changes, or is not fixed yet)
OPEN: dict[str, str] = {}


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(n, marks=pytest.mark.xfail(strict=True, reason=OPEN[n])) if n in OPEN else n
        for n in sorted(contract.CASES)
    ],
)
def test_one_hostile_leaf_is_refused_or_restores_an_object_that_continues(name: str) -> None:
    @settings(
        max_examples=40,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
        database=None,
        derandomize=True,  # the same examples on every run (the open findings are strict xfails)
    )
    @given(hit=_hostile(name))
    def prop(hit: tuple[Path_, Any]) -> None:
        check(name, *hit)

    prop()


def _leaf(name: str, shape: Path_, which: int) -> Path_:
    """The ``which``-th leaf (0: first, -1: last) of the field ``shape`` of the real snapshot."""
    _, groups = _real(name)
    return next(g for g in groups if _shape(g[0]) == shape)[which]


#: the values each fixed class took before and failed on (or escaped restore with)
FOUND = [
    # SpikeGuard: float(last_good) outside malformed(): OverflowError, ValueError, TypeError
    ("spike_guard", ("last_good",), 0, 10**400),
    ("spike_guard", ("last_good",), 0, "x"),
    ("spike_guard", ("last_good",), 0, []),
    ("spike_guard", ("sigma",), 0, 1e300),  # exp(k * sigma): OverflowError
    # CandleAggregator: a bar holding a string: TypeError on the next tick
    ("candle_aggregator", ("series", "EURUSD", "bars", "[]", "[]", "[]"), 0, "x"),
    ("candle_aggregator", ("series", "EURUSD", "bars", "[]", "[]", "[]"), 3, "x"),
    # SeriesContext: var -1 (ValueError: sqrt), n_returns -1 (ZeroDivisionError), last close 0
    ("series_context", ("var",), 0, -1),
    ("series_context", ("n_returns",), 0, -1),
    ("series_context", ("last_close",), 0, 0),
    ("series_context", ("last_close",), 0, -1),
    ("series_context", ("symbol",), 0, "x"),  # another series' context refuses every candle
    # indicators: 1e308 in a running sum overflows to inf/nan: the next snapshot is not JSON
    ("indicator", ("state", "gain"), 0, 1e308),
    ("indicator_bank", ("indicators", "[]", "state", "state", "gain"), -1, 1e308),
    ("quality_monitor", ("windows", "[]", "[]", "[]"), -1, math.nan),
    # FeatureBuilder: a last close of 0 or -1 (ZeroDivisionError, ValueError on the next
    # candle), its realised volatility's, a bank other than its config's (ValueError: zip)
    ("feature_builder", ("series", "1m", "prev"), 0, 0),
    ("feature_builder", ("series", "1m", "prev"), 0, -1),
    ("feature_builder", ("series", "1m", "rv", "state", "state", "prev"), 0, 0),
    ("feature_builder", ("config", "spec"), 0, ""),
    ("feature_builder", ("symbol",), 0, -1),
    # ShadowTracker: OverflowError escaped its lenient restore (inf as a time, 10**400 a quantile)
    ("shadow_tracker", ("series", "[]", "[]", "[]", "[]"), 0, math.inf),
    ("shadow_tracker", ("series", "[]", "[]", "[]", "[]", "[]", "[]"), 0, 10**400),
    # SymbolForecaster: a history candle holding nan (the next snapshot is no JSON), a pending
    # forecast of 1e308 (its scores overflow), a feature block of no values (ValueError: zip)
    ("symbol_forecaster", ("series", "1m", "history", "[]", "close"), -1, math.nan),
    ("symbol_forecaster", ("series", "1m", "history", "[]", "symbol"), -1, math.nan),
    ("symbol_forecaster", ("series", "1m", "pending", "[]", "[]", "[]", "[]"), -1, 1e308),
    ("symbol_forecaster", ("series", "1m", "features", "state", "series", "5m", "blocks", "[]", "[]"), -1, ""),
    # IndicatorBank: an ATR's previous close None after bars (TypeError in the fused step)
    ("indicator_bank", ("indicators", "[]", "state", "state", "pc"), -1, None),
    # CrossBook: a variance of -1 (ValueError: sqrt on the next candle), a count of returns
    # of -1 (ZeroDivisionError in the variance's seeding)
    ("cross_book", ("1m", "v"), 0, -1),
    ("cross_book", ("1m", "n"), 0, -1),
    # InputsBuilder: another series' builder (ModelError on the next candle), a feature
    # builder inside of another symbol (refused every candle), a forming higher-timeframe
    # bar that is a string or a list of one number (ValueError: unpacking it on the next candle)
    ("inputs_builder", ("symbol",), 0, "x"),
    ("inputs_builder", ("indicators", "state", "symbol"), 0, "x"),
    ("inputs_builder", ("bars", "[]"), 0, "x"),
    ("inputs_builder", ("bars", "[]"), 0, [1]),
]


@pytest.mark.parametrize(
    ("name", "shape", "which", "value"), FOUND, ids=[f"{n}-{s[-1]}-{str(v)[:8]}" for n, s, _, v in FOUND]
)
def test_the_hostile_values_found_are_refused_or_restore_an_object_that_continues(
    name: str, shape: Path_, which: int, value: Any
) -> None:
    check(name, _leaf(name, shape, which), value)


# -- numbers by type ---------------------------------------------------------------------------
#
# A checkpoint row holding "1e400", "nan" or True where a number belongs restored without
# complaint (``float()`` reads all three), then failed on every candle or tick and made every
# later snapshot non-JSON (NaN, Infinity): the worker's checkpoint then failed for ever with
# consumption paused. Every number of a state is now read by type (``forex_diffusion.state``:
# ``number``, ``count``, ``time_ms``): at a leaf whose real value is a number, a numeric string,
# a bool or a number no series builds (past ``MAX_MAGNITUDE``, nan, inf) is a StateError.

NOT_NUMBERS: tuple[Any, ...] = (
    "nan",
    "inf",
    "-Infinity",
    "1e400",
    "1.5",
    "1",
    True,
    False,
    1e308,
    -1e308,
    10**400,
    math.nan,
    math.inf,
    -math.inf,
)


def _strict_item(x: Any) -> int:
    """The guards' held items in these cases are ints: read by type, as the pipeline reads its
    held ticks (``forex_diffusion.ingest.pipeline``), not with ``int()`` (which takes True, 2.5)."""
    if type(x) is not int:
        raise StateError("a held item is not an integer")
    return x


#: the guards hand their held items to the caller's decoder: the cases' is ``int``
NUMBER_LOAD = {
    **LOAD,
    "spike_guard": dataclasses.replace(
        contract.CASES["spike_guard"], load=contract._restore_into(lambda: SpikeGuard(SpikeConfig()), _strict_item)
    ),
    "time_guard": dataclasses.replace(
        contract.CASES["time_guard"], load=contract._restore_into(lambda: TimeJumpGuard(TimeJumpConfig()), _strict_item)
    ),
}


def _number_groups(name: str) -> list[tuple[Path_, ...]]:
    """The fields of ``name``'s real snapshot that hold numbers (not bools), each its number leaves."""
    data, groups = _real(name)

    def value(path: Path_) -> Any:
        node = data["state"]
        for k in path:
            node = node[k]
        return node

    # only the leaves that are numbers: a field may hold strings beside numbers (a pending
    # forecast's model version, a shadow pair's versions), and "1.5" is a legitimate version
    numeric = (tuple(p for p in g if type(value(p)) in (int, float)) for g in groups)
    return [g for g in numeric if g]


def _refused_number(name: str, path: Path_, value: Any) -> bool:
    """Whether ``value`` at ``path`` of ``name``'s real snapshot is refused (lenient classes:
    nothing restored)."""
    case = NUMBER_LOAD.get(name, contract.CASES[name])
    data, _ = _real(name)
    bad = copy.deepcopy(data)
    _set(bad["state"], path, copy.deepcopy(value))
    try:
        restored = case.load(bad)
    except (StateError, ArtifactError):
        return True
    if case.lenient:
        return contract._json(case.snap(restored)) == contract._json(case.snap(case.make()))  # noqa: SLF001
    return False


@st.composite
def _not_a_number(draw: st.DrawFn, name: str) -> tuple[Path_, Any]:
    group = draw(st.sampled_from(_number_groups(name)))
    return draw(st.sampled_from(group)), draw(st.sampled_from(NOT_NUMBERS))


@pytest.mark.parametrize("name", sorted(contract.CASES))
def test_a_numeric_string_bool_or_out_of_range_number_at_a_number_field_is_refused(name: str) -> None:
    assert _number_groups(name), f"{name}: no number field found in its real snapshot"

    @settings(
        max_examples=40,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
        database=None,
        derandomize=True,
    )
    @given(hit=_not_a_number(name))
    def prop(hit: tuple[Path_, Any]) -> None:
        path, value = hit
        assert _refused_number(name, path, value), f"{name} restored {value!r} at {path}"

    prop()


#: one of each kind of NOT_NUMBERS (a restore of the forecaster takes ~20 ms: 206 fields)
KINDS: tuple[Any, ...] = ("1e400", "1.5", True, 10**400, 1e308, math.nan)


@pytest.mark.parametrize("name", sorted(contract.CASES))
def test_every_number_field_refuses_every_kind_of_non_number(name: str) -> None:
    """Exhaustive over fields (the first leaf of each), where the property samples: each field
    gets two kinds of value, one that is no number and one that is a bad number ("1e400" and
    10**400, "1.5" and 1e308, True and NaN, rotating over the fields), so that every kind meets a
    third of the fields (all six kinds on every field cost the forecaster's 64 s in a 4-process
    `make test` on 2 idle cores)."""
    groups = _number_groups(name)
    half = len(KINDS) // 2
    accepted = [
        (_shape(group[0]), value)
        for i, group in enumerate(groups)
        for value in (KINDS[i % half], KINDS[i % half + half])
        if not _refused_number(name, group[0], value)
    ]
    assert not accepted, accepted[:10]
