"""The state contract of every stateful class (river's estimator checks, for state).

Each class that names a ``state_kind`` (:mod:`forex_diffusion.state`) is found by walking the
core package, and must have a case here: a fresh object, real inputs (the bundled EUR/USD
ticks, their 1m/5m candles), a step that feeds one input and returns what it produced, and
its snapshot/restore calls. For every case:

* snapshot -> JSON text -> restore -> continue gives exactly the outputs (and the final
  state) of the object that never stopped;
* the snapshot is one envelope of the class's kind and version; another kind, another
  version, or a malformed state is a :class:`StateError`; the layout before the envelope
  (version 0) of each class that had one still restores;
* the restored object is independent: feeding it leaves the original alone, and changing the
  data it was restored from changes nothing in it; restore does not change its input;
* the snapshot's size does not grow with the number of inputs fed (bounded classes).
"""

from __future__ import annotations

import copy
import dataclasses
import importlib
import json
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import forex_diffusion
from forex_diffusion.bundled import SAMPLE_TICKS
from forex_diffusion.diffusion.context import ForecastRequest, SeriesContext
from forex_diffusion.diffusion.inputs import CrossBook, InputsBuilder, InputSpec
from forex_diffusion.domain import Candle, Tick
from forex_diffusion.drift import DriftConfig
from forex_diffusion.errors import StateError, ValidationError
from forex_diffusion.forecast.features import FeatureBuilder, FeatureConfig
from forex_diffusion.forecast.forecaster import ForecasterConfig, RandomWalkPredictor, SymbolForecaster
from forex_diffusion.forecast.warm_start import stream_key
from forex_diffusion.indicators import Indicator, IndicatorBank
from forex_diffusion.indicators.catalogue import build_indicator
from forex_diffusion.ingest.aggregation import CandleAggregator
from forex_diffusion.ingest.candle_gate import CandleGate
from forex_diffusion.ingest.candle_spikes import CandleSpikeGuard
from forex_diffusion.ingest.readers import read_ticks
from forex_diffusion.ingest.spikes import SpikeConfig, SpikeGuard
from forex_diffusion.ingest.time_jumps import TimeJumpConfig, TimeJumpGuard
from forex_diffusion.ingest.validation import TickValidator, ValidationConfig
from forex_diffusion.offline import aggregate_ticks_file
from forex_diffusion.quality.monitoring import QualityMonitor
from forex_diffusion.quality.shadow import ShadowTracker
from forex_diffusion.state import ENVELOPE_KEYS, is_envelope

# -- real inputs ----------------------------------------------------------------------------


@cache
def ticks() -> tuple[Tick, ...]:
    """The first 4,000 bundled EUR/USD ticks."""
    f = read_ticks(SAMPLE_TICKS).frame.iloc[:4000]
    return tuple(
        Tick(symbol="EURUSD", ts_ms=t, bid=b, ask=a)
        for t, b, a in zip(f.ts_ms.tolist(), f.bid.tolist(), f.ask.tolist(), strict=True)
    )


@cache
def all_candles() -> tuple[Candle, ...]:
    """1m and 5m candles of the bundled ticks (three days), in stream order."""
    out = aggregate_ticks_file(SAMPLE_TICKS, timeframes=["1m", "5m"]).candles
    return tuple(sorted(out, key=stream_key))


def candles() -> tuple[Candle, ...]:
    """The first 900 of :func:`all_candles`."""
    return all_candles()[:900]


def candles_1m() -> tuple[Candle, ...]:
    return tuple(c for c in candles() if c.timeframe == "1m")


@cache
def spiky_mids() -> tuple[float, ...]:
    """Mids of the ticks with bad prints (reverted), and a level shift that confirms."""
    mids = [(t.bid + t.ask) / 2 for t in ticks()]
    for i in range(300, len(mids), 400):
        mids[i] *= 1.02  # a lone bad print: held, then reverted
    for i in range(2000, len(mids)):
        mids[i] *= 1.01  # a new level: held, then confirmed
    return tuple(mids)


@cache
def jumpy_times() -> tuple[int, ...]:
    """Event times of the ticks with a few far-future stamps (held, then refused)."""
    ts = [t.ts_ms for t in ticks()]
    for i in range(250, len(ts), 500):
        ts[i] += 30 * 86_400_000
    return tuple(ts)


@cache
def dup_ticks() -> tuple[tuple[Tick, str], ...]:
    """Ticks with ids; every 7th repeats the id of the tick three before."""
    out = []
    for i, t in enumerate(ticks()):
        out.append((t, f"id{i - 3 if i % 7 == 0 and i >= 3 else i}"))
    return tuple(out)


# -- steps: feed one input, return what it produced (comparable) ------------------------------


def step_aggregator(a: CandleAggregator, t: Tick) -> Any:
    try:
        return [c.to_dict() for c in a.add(t.symbol, t.ts_ms, t.bid, t.ask)]
    except ValidationError as exc:
        return str(exc.reason)


def step_validator(v: TickValidator, x: tuple[Tick, str]) -> Any:
    t, tid = x
    return v.check(t.symbol, t.ts_ms, t.bid, t.ask, tick_id=tid, late_before_ms=t.ts_ms - 2_000)


def step_spike(g: SpikeGuard[int], x: tuple[int, float]) -> Any:
    i, m = x
    if g.low <= m <= g.high:
        g.accept(m)
        return "pass"
    verdict = g.classify(m)
    if verdict == "revert":
        out = ("revert", g.end_hold())
        g.accept(m)
        return out
    ended = g.end_hold() if verdict == "restart" else []
    return (verdict, ended, g.hold(i, m))


def step_time(c: TimeJumpGuard[int], x: tuple[int, int]) -> Any:
    i, ts = x
    if ts <= c.limit:
        c.accept(ts)
        return "pass"
    verdict = c.classify(ts)
    if verdict == "first":
        return ("first", c.hold_first(i, ts))
    if verdict == "revert":
        out = ("revert", c.end_hold())
        c.accept(ts)
        return out
    ended = c.end_hold() if verdict == "restart" else []
    return (verdict, ended, c.hold(i, ts))


def step_indicator(ind: Indicator[Any], c: Candle) -> Any:
    return ind.update(c)


def step_bank(b: IndicatorBank, c: Candle) -> Any:
    return b.update(c)


def step_features(fb: FeatureBuilder, c: Candle) -> Any:
    fv = fb.on_candle(c)
    return (None if fv is None else fv.values.tolist(), fb.indicator_values(c.timeframe))


def step_context(ctx: SeriesContext, c: Candle) -> Any:
    ctx.update(c)
    return (ctx.sigma, ctx.last_close_ms)


def gate_inputs() -> tuple[tuple[Candle, int], ...]:
    """1m candles nine days past the watermark (runs of far-ahead candles, each confirmed by
    the third), but for one near the watermark every 40 candles and two before the middle
    (where the hostile tests snapshot: a confirmation is then in progress), which ends a run."""
    cs = candles_1m()
    near = {i for i in range(len(cs)) if i % 40 == 39} | {len(cs) // 2 - 2}
    return tuple((c, c.open_ms if i in near else c.open_ms - 9 * 86_400_000) for i, c in enumerate(cs))


def step_gate(g: CandleGate, x: tuple[Candle, int]) -> Any:
    c, wm = x
    return (g.check(c, watermark_ms=wm, now_ms=None), g.held("EURUSD", "1m"))


def _load_gate(d: dict[str, Any]) -> CandleGate:
    g = CandleGate()
    g.restore("EURUSD", d)
    return g


@cache
def spiky_candles() -> tuple[tuple[int, Candle], ...]:
    """1m candles with a bad close (reverted by the next bar) every 50 bars and just before the
    middle (held where the contract snapshots), and a 3 % level shift two thirds in (confirmed)."""
    cs = candles_1m()
    out = []
    for i, c in enumerate(cs):
        f = 1.05 if i % 50 == 25 or i == len(cs) // 2 - 1 else 1.0
        f *= 1.03 if i >= 2 * len(cs) // 3 else 1.0
        out.append((i, dataclasses.replace(c, open=c.open * f, high=c.high * f, low=c.low * f, close=c.close * f)))
    return tuple(out)


def step_candle_spikes(g: CandleSpikeGuard, x: tuple[int, Candle]) -> Any:
    i, c = x
    passed = [k.open_ms for k in g.admit(c, [0, i])]
    return (passed, [(q.ref, q.reason.value) for q in g.take_quarantined()], len(g.held("EURUSD", "1m")))


def _load_candle_spikes(d: dict[str, Any]) -> CandleSpikeGuard:
    g = CandleSpikeGuard()
    g.restore("EURUSD", d)
    return g


def step_book(b: CrossBook, c: Candle) -> Any:
    b.update(c)
    return b.values("EURUSD", c.timeframe, c.close_ms)


def step_inputs(b: InputsBuilder, c: Candle) -> Any:
    b.update(c)
    own = b.own(c.close_ms)
    return None if own is None else np.asarray(own).tolist()


# small buffers (history, the KS windows), so that three days of candles fill each of them
FCFG = ForecasterConfig(
    timeframes=("1m", "5m"),
    forecast_timeframes=("1m",),
    horizon=6,
    history=64,
    drift=DriftConfig(ks_reference_size=40, ks_recent_size=20, ks_check_every=5, ks_stride=2),
)
RW = RandomWalkPredictor(6)


def step_forecaster(f: SymbolForecaster, c: Candle) -> Any:
    o = f.on_candle(c)
    rec = None
    if o.due and o.request is not None:
        rec = f.record(RW.forecast([o.request])[0], o)
        rec.pop("latency_s", None)
    learner = None if o.learner is None else [p.to_dict() for p in o.learner.predictions]
    evals = [(e.as_of_ms, e.step, e.crps, e.crps_rw) for e in o.evaluations]
    return (o.due, rec, learner, evals, [ev.detector for ev in o.drift])


def step_shadow(t: ShadowTracker, c: Candle) -> Any:
    done = t.on_candle(c)
    if c.timeframe == "1m" and c.close_ms % 180_000 == 0:  # a shadow forecast every third minute
        champ = RandomWalkPredictor(4).forecast([_request(c, 2e-4)])[0]
        shadow = RandomWalkPredictor(4).forecast([_request(c, 3e-4)])[0]
        t.add(shadow, champ, sigma=2e-4)
    return [repr(r) for r in done]


def _request(c: Candle, sigma: float) -> ForecastRequest:
    """A random-walk request at ``c`` (the random walk reads only the close and sigma)."""
    return ForecastRequest(
        symbol=c.symbol,
        timeframe=c.timeframe,
        as_of_ms=c.close_ms,
        last_close=c.close,
        sigma=sigma,
        past_returns=np.zeros(4),
        past_ranges=np.zeros(4),
        calendar=np.zeros(4),
        vol_ratio=0.0,
    )


def step_quality(m: QualityMonitor, c: Candle) -> Any:
    sigma = 2e-4 * c.open
    q = [c.open + sigma * z for z in (-1.64, -0.67, 0.0, 0.67, 1.64)]
    rw = [c.open + 1.5 * sigma * z for z in (-1.64, -0.67, 0.0, 0.67, 1.64)]
    step = 1 + c.open_ms // 60_000 % 16
    m.update(c.symbol, c.timeframe, step, [0.05, 0.25, 0.5, 0.75, 0.95], q, rw, c.close)
    return [dataclasses.astuple(r) for r in m.snapshot_metrics()]


# -- the cases ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """How to drive one stateful class."""

    cls: type
    make: Callable[[], Any]
    inputs: Callable[[], tuple[Any, ...]]
    step: Callable[[Any, Any], Any]
    snap: Callable[[Any], dict[str, Any]]
    load: Callable[[dict[str, Any]], Any]
    # the layout before the envelope (version 0), built from a current state; None: none existed
    legacy: Callable[[dict[str, Any]], Any] | None = None
    # parts of a snapshot that may differ between equal states (signed pickles)
    scrub: Callable[[dict[str, Any]], Any] = lambda d: d
    bounded: bool = True
    # a state it cannot read is dropped with a warning, never raised (the shadow tracker: a
    # lost state only makes it realise fewer forecasts)
    lenient: bool = False
    # inputs long enough to fill every bounded buffer (default: ``inputs``)
    long_inputs: Callable[[], tuple[Any, ...]] | None = None


def _restore_into(make: Callable[[], Any], *args: Any) -> Callable[[dict[str, Any]], Any]:
    def load(d: dict[str, Any]) -> Any:
        obj = make()
        obj.restore(d, *args)
        return obj

    return load


def _with_version(**extra: Any) -> Callable[[dict[str, Any]], Any]:
    return lambda state: {**extra, **state, "version": 1}


def _scrub_forecaster(d: dict[str, Any]) -> Any:
    d = copy.deepcopy(d)
    for s in d["state"]["series"].values():
        del s["learners"], s["drift"]  # signed pickles: equal states need not pickle to equal bytes
    return d


def _agg() -> CandleAggregator:
    return CandleAggregator(["1m", "5m"], allowed_lateness_ms=2_000)


def _book() -> CrossBook:
    return CrossBook()


def _load_book(d: dict[str, Any]) -> CrossBook:
    b = CrossBook()
    b.restore("EURUSD", d)
    return b


def _shadow_load(d: dict[str, Any]) -> ShadowTracker:
    t = ShadowTracker()
    t.restore(d)
    return t


INPUT_NAMES = ("indicators", "mtf:5m")

CASES: dict[str, Case] = {
    "candle_aggregator": Case(
        CandleAggregator,
        _agg,
        ticks,
        step_aggregator,
        lambda a: a.snapshot(),
        _restore_into(_agg),
        legacy=_with_version(),
    ),
    "tick_ids": Case(
        TickValidator,
        lambda: TickValidator(ValidationConfig(dedup_window=32)),
        dup_ticks,
        step_validator,
        lambda v: v.snapshot(),
        _restore_into(lambda: TickValidator(ValidationConfig(dedup_window=32))),
        legacy=lambda state: state,
    ),
    "spike_guard": Case(
        SpikeGuard,
        lambda: SpikeGuard(SpikeConfig()),
        lambda: tuple(enumerate(spiky_mids())),
        step_spike,
        lambda g: g.snapshot(lambda x: x),
        _restore_into(lambda: SpikeGuard(SpikeConfig()), int),
        legacy=lambda state: state,
    ),
    "time_guard": Case(
        TimeJumpGuard,
        lambda: TimeJumpGuard(TimeJumpConfig()),
        lambda: tuple(enumerate(jumpy_times())),
        step_time,
        lambda c: c.snapshot(lambda x: x),
        _restore_into(lambda: TimeJumpGuard(TimeJumpConfig()), int),
        legacy=lambda state: state,
    ),
    "indicator": Case(
        Indicator,
        lambda: build_indicator("rsi_14"),
        candles_1m,
        step_indicator,
        lambda i: i.snapshot(),
        Indicator.restore,
        legacy=_with_version(),
    ),
    "indicator_bank": Case(
        IndicatorBank,
        lambda: IndicatorBank("sma_5,rsi_14,atr_14,macd_12_26_9"),
        candles_1m,
        step_bank,
        lambda b: b.snapshot(),
        IndicatorBank.restore,
        legacy=_with_version(type="IndicatorBank"),
    ),
    "feature_builder": Case(
        FeatureBuilder,
        lambda: FeatureBuilder(
            FeatureConfig(forecast_timeframe="1m", timeframes=("1m", "5m"), spec="sma_5,rsi_14,atr_14"), symbol="EURUSD"
        ),
        candles,
        step_features,
        lambda f: f.snapshot(),
        FeatureBuilder.restore,
        legacy=_with_version(type="FeatureBuilder"),
    ),
    "series_context": Case(
        SeriesContext,
        lambda: SeriesContext(symbol="EURUSD", timeframe="1m"),
        candles_1m,
        step_context,
        lambda c: c.snapshot(),
        SeriesContext.restore,
        legacy=lambda state: state,
    ),
    "cross_book": Case(
        CrossBook,
        _book,
        candles,
        step_book,
        lambda b: b.snapshot("EURUSD"),
        _load_book,
        legacy=lambda state: state,
    ),
    "inputs_builder": Case(
        InputsBuilder,
        lambda: InputsBuilder(InputSpec(INPUT_NAMES, "1m"), "EURUSD"),
        candles,
        step_inputs,
        lambda b: b.snapshot(),
        InputsBuilder.restore,
        legacy=lambda state: state,
    ),
    "symbol_forecaster": Case(
        SymbolForecaster,
        lambda: SymbolForecaster("EURUSD", FCFG),
        candles,
        step_forecaster,
        lambda f: f.snapshot(),
        lambda d: SymbolForecaster.restore(d, FCFG, symbol="EURUSD"),
        legacy=lambda state: {k: v for k, v in _with_version()(state).items() if k != "quality"},
        scrub=_scrub_forecaster,
        long_inputs=all_candles,
    ),
    "shadow_tracker": Case(
        ShadowTracker,
        ShadowTracker,
        candles,
        step_shadow,
        lambda t: t.snapshot(["EURUSD"]),
        _shadow_load,
        legacy=lambda state: {"v": 1, **state},
        lenient=True,
    ),
    "candle gate": Case(
        CandleGate,
        CandleGate,
        gate_inputs,
        step_gate,
        lambda g: g.snapshot("EURUSD"),
        _load_gate,
    ),
    "candle spike guard": Case(
        CandleSpikeGuard,
        CandleSpikeGuard,
        spiky_candles,
        step_candle_spikes,
        lambda g: g.snapshot("EURUSD"),
        _load_candle_spikes,
    ),
    "quality_monitor": Case(
        QualityMonitor,
        lambda: QualityMonitor(window=10),
        candles,
        step_quality,
        lambda m: m.snapshot(),
        QualityMonitor.restore,
    ),
}


def _json(d: Any) -> Any:
    return json.loads(json.dumps(d))


def _run(case: Case, obj: Any, inputs: tuple[Any, ...]) -> list[Any]:
    return _json([case.step(obj, x) for x in inputs])


# -- discovery ------------------------------------------------------------------------------


def test_every_stateful_class_of_the_core_has_a_case() -> None:
    kinds: dict[str, type] = {}
    for info in pkgutil.walk_packages(forex_diffusion.__path__, "forex_diffusion."):
        mod = importlib.import_module(info.name)
        for obj in vars(mod).values():
            if isinstance(obj, type) and obj.__module__ == mod.__name__ and "state_kind" in vars(obj):
                assert isinstance(obj.state_version, int) and obj.state_version >= 1, obj
                assert obj.state_kind not in kinds, f"{obj} and {kinds[obj.state_kind]} share a kind"
                kinds[obj.state_kind] = obj
    assert {k: c.__name__ for k, c in kinds.items()} == {k: c.cls.__name__ for k, c in CASES.items()}


# -- the contract ---------------------------------------------------------------------------

IDS = sorted(CASES)


@pytest.fixture(params=IDS)
def case(request: pytest.FixtureRequest) -> Case:
    return CASES[request.param]


def test_restored_from_json_continues_as_if_it_never_stopped(case: Case) -> None:
    inputs = case.inputs()
    cut = len(inputs) // 2
    straight, resumed = case.make(), case.make()
    first = _run(case, straight, inputs[:cut])
    assert first == _run(case, resumed, inputs[:cut])
    data = case.snap(resumed)
    assert is_envelope(data) and data.keys() == ENVELOPE_KEYS
    assert (data["kind"], data["v"]) == (case.cls.state_kind, case.cls.state_version)  # type: ignore[attr-defined]
    text = json.dumps(data, allow_nan=False)  # strict JSON: NaN/inf never reach a checkpoint
    restored = case.load(json.loads(text))
    rest = _run(case, straight, inputs[cut:])
    assert len({json.dumps(x) for x in rest}) > 1, "the inputs exercise nothing"
    assert _run(case, restored, inputs[cut:]) == rest
    assert _json(case.scrub(case.snap(restored))) == _json(case.scrub(case.snap(straight)))


@pytest.mark.parametrize("name", [k for k in IDS if CASES[k].legacy is not None])
def test_a_pre_envelope_state_restores_as_version_0(name: str) -> None:
    """Each class checkpointed before the envelope (all but the quality monitor, which had
    no state) reads that layout."""
    case = CASES[name]
    assert case.legacy is not None
    inputs = case.inputs()
    cut = len(inputs) // 2
    straight = case.make()
    _run(case, straight, inputs[:cut])
    old = case.legacy(_json(case.snap(straight))["state"])
    restored = case.load(old)
    assert _run(case, restored, inputs[cut:]) == _run(case, straight, inputs[cut:])


def _refused(case: Case, bad: Any) -> None:
    """``bad`` is refused: a StateError, or (lenient classes) nothing restored."""
    if case.lenient:
        assert _json(case.snap(case.load(bad))) == _json(case.snap(case.make()))
        return
    with pytest.raises(StateError):
        case.load(bad)


def test_another_kind_another_version_or_a_malformed_state_is_a_state_error(case: Case) -> None:
    inputs = case.inputs()
    obj = case.make()
    _run(case, obj, inputs[:200])
    data = _json(case.snap(obj))
    other = next(k for k in CASES if k != data["kind"])
    for bad in (
        {**data, "kind": other},
        {**data, "v": data["v"] + 1},
        {**data, "v": "1"},
        {**data, "state": None},
        {**data, "state": [1, 2, 3]},
        {**data, "extra": 1},
        [data],
        "state",
    ):
        _refused(case, bad)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=4),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=8,
)


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(value=JSON)
def test_any_json_in_place_of_a_state_is_refused_or_restores(case: Case, value: Any) -> None:
    """Whatever JSON an envelope of the right kind carries: a StateError (or, for the few
    states an empty mapping is valid for, an object that runs); never another exception."""
    data = {"kind": case.cls.state_kind, "v": case.cls.state_version, "state": value}  # type: ignore[attr-defined]
    try:
        restored = case.load(data)
    except StateError:
        return
    _run(case, restored, case.inputs()[:50])


def test_a_state_missing_any_field_is_refused_or_restores(case: Case) -> None:
    """Each top-level field of a real state dropped in turn (a truncated or older layout):
    a StateError, or an object that restores and runs (optional fields have defaults)."""
    inputs = case.inputs()
    obj = case.make()
    _run(case, obj, inputs[:300])
    data = _json(case.snap(obj))
    if not isinstance(data["state"], dict):
        return
    for key in data["state"]:
        cut = copy.deepcopy(data)
        del cut["state"][key]
        if case.lenient:
            case.load(cut)
            continue
        try:
            restored = case.load(cut)
        except StateError:
            continue
        _run(case, restored, inputs[300:340])


def test_a_restored_object_is_independent_and_restore_does_not_touch_its_input(case: Case) -> None:
    inputs = case.inputs()
    cut = len(inputs) // 2
    obj = case.make()
    _run(case, obj, inputs[:cut])
    data = _json(case.snap(obj))
    kept = copy.deepcopy(data)
    restored = case.load(data)
    assert data == kept  # restore read its input without changing it
    before = _json(case.scrub(case.snap(obj)))
    after_restore = _json(case.scrub(case.snap(restored)))
    _run(case, restored, inputs[cut:])  # feeding the clone ...
    assert _json(case.scrub(case.snap(obj))) == before  # ... leaves the original alone
    again = case.load(kept)
    _clear(data)  # changing the data a clone came from ...
    assert _json(case.scrub(case.snap(again))) == after_restore  # ... changes nothing in it
    fresh = case.make()
    assert _json(case.scrub(case.snap(fresh))) == _json(case.scrub(case.snap(case.make())))


def _clear(node: Any) -> None:
    """Empty every list and mapping in ``node`` (in place)."""
    if isinstance(node, dict):
        for v in node.values():
            _clear(v)
    elif isinstance(node, list):
        for v in node:
            _clear(v)
        node.clear()


@pytest.mark.parametrize("name", [k for k in IDS if CASES[k].bounded])
def test_the_snapshot_stays_bounded_however_many_inputs_are_fed(name: str) -> None:
    case = CASES[name]
    inputs = (case.long_inputs or case.inputs)()
    obj = case.make()
    half = len(inputs) // 2
    _run(case, obj, inputs[:half])
    at_half = len(json.dumps(case.snap(obj)))
    _run(case, obj, inputs[half:])
    at_end = len(json.dumps(case.snap(obj)))
    # twice the inputs: within 1.2x (+1 kB) of the size at half way, never twice
    assert at_end <= 1.2 * at_half + 1024, (at_half, at_end)


def test_restored_forecaster_reports_the_same_quality_as_one_that_never_stopped() -> None:
    """Issue 15: the quality monitor is per-series state, checkpointed with the forecaster."""
    cs = candles()
    cut = len(cs) // 2
    straight, first = SymbolForecaster("EURUSD", FCFG), SymbolForecaster("EURUSD", FCFG)
    for c in cs[:cut]:
        step_forecaster(straight, c)
        step_forecaster(first, c)
    assert first.quality.snapshot_metrics()  # forecasts were scored before the restart
    restored = SymbolForecaster.restore(_json(first.snapshot()), FCFG, symbol="EURUSD")
    assert restored.quality.snapshot_metrics() == straight.quality.snapshot_metrics()
    for c in cs[cut:]:
        step_forecaster(straight, c)
        step_forecaster(restored, c)
    rows = straight.quality.snapshot_metrics()
    assert rows == restored.quality.snapshot_metrics()
    assert {r.horizon for r in rows} == {"1", "2-4", "5-12"} and all(r.count > 0 for r in rows)
    # a forecaster restored from a checkpoint of before the envelope (no monitor) starts empty
    old = {**_json(first.snapshot())["state"], "version": 1}
    del old["quality"]
    assert SymbolForecaster.restore(old, FCFG, symbol="EURUSD").quality.snapshot_metrics() == []


def test_pending_forecasts_are_records_and_old_lists_restore() -> None:
    from forex_diffusion.forecast.forecaster import PendingForecast

    f = SymbolForecaster("EURUSD", FCFG)
    for c in candles()[:200]:
        step_forecaster(f, c)
    pending = list(f.series["1m"].pending)
    assert pending and all(isinstance(p, PendingForecast) for p in pending)
    listed = _json(f.snapshot())["state"]["series"]["1m"]["pending"]
    # the checkpoint keeps the list layout it always had: [as_of_ms, model_version, q, rw, seen]
    assert listed == [[p.as_of_ms, p.model_version, p.quantiles.tolist(), p.rw.tolist(), p.seen] for p in pending]
    assert [PendingForecast.from_list(p).to_list() for p in listed] == listed
    for bad in ([1, 2, 3], [0, "v", [[1.0]], [[1.0, 2.0]], 0], "x"):
        with pytest.raises(StateError):
            PendingForecast.from_list(bad)  # type: ignore[arg-type]
