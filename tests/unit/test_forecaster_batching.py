"""Live scoring does not depend on how the candle agent batches its candles.

The candle agent (``streams/agents/candles.py``) runs every candle of a batch through its
forecaster, then samples the batch's due forecasts in one call per model and records them.
Step ``k`` of a forecast is scored against the ``k``-th candle of its series after its origin
whatever the batching: the core run here in the agent's order, in batches of 64 (a worker
catching up), of any sizes (hypothesis), gives the scored state of the candle-by-candle run
(batches of 1): quality windows, pending forecasts, the drift monitor's inputs and events,
the trigger state, and the same forecast records.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from functools import cache
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from forex_diffusion.bundled import SAMPLE_TICKS
from forex_diffusion.diffusion.context import ForecastRequest
from forex_diffusion.diffusion.predictor import Forecast
from forex_diffusion.domain import Candle
from forex_diffusion.drift import DriftMonitor
from forex_diffusion.forecast.forecaster import ForecasterConfig, RandomWalkPredictor, SymbolForecaster
from forex_diffusion.offline import aggregate_ticks_file
from forex_diffusion.quality.evaluation import StepScore
from forex_diffusion.timeframes import Timeframe

HORIZON = 12
N_MINUTES = 900
CFG = ForecasterConfig(timeframes=("1m", "5m"), forecast_timeframes=("1m", "5m"), horizon=HORIZON)


class WidePredictor:
    """The random walk with 1.5 times the volatility: deterministic, and scored unlike the baseline."""

    version = "rw-wide"
    horizon = HORIZON

    def forecast(
        self, requests: Sequence[ForecastRequest], *, steps: int | None = None, samples: int | None = None
    ) -> list[Forecast]:
        out = RandomWalkPredictor(HORIZON).forecast([replace(r, sigma=1.5 * r.sigma) for r in requests])
        return [replace(fc, model_version=self.version) for fc in out]


@dataclass(repr=False)
class Run:
    snapshot: dict[str, Any]
    records: list[dict[str, Any]]
    drift_inputs: dict[tuple[str, int], list[tuple[int, float, float, float | None, bool | None, bool | None]]]
    events: list[tuple[Any, ...]]
    requests: list[dict[str, Any]]
    late: int


@cache
def _candles() -> list[Candle]:
    agg = aggregate_ticks_file(SAMPLE_TICKS, timeframes=["1m", "5m"]).candles
    last = sorted(c.close_ms for c in agg if c.timeframe == "1m")[N_MINUTES - 1]
    # stream order, as the aggregator publishes: close time, then the shorter timeframe first
    return sorted(
        (c for c in agg if c.close_ms <= last), key=lambda c: (c.close_ms, Timeframe.parse(c.timeframe).duration_ms)
    )


def _batches(candles: list[Candle], sizes: Sequence[int]) -> Iterator[list[Candle]]:
    i, k = 0, 0
    while i < len(candles):
        n = sizes[k % len(sizes)]
        yield candles[i : i + n]
        i, k = i + n, k + 1


def _run(sizes: Sequence[int]) -> Run:
    """The agent's order: every candle of a batch, then one sampling call, then the records."""
    with pytest.MonkeyPatch.context() as mp:
        return _run_in(_candles(), sizes, mp)


def _run_in(candles: list[Candle], sizes: Sequence[int], monkeypatch: pytest.MonkeyPatch) -> Run:
    fed: dict[tuple[str, int], list[Any]] = {}
    real = DriftMonitor.update_score

    def spy(self: DriftMonitor, horizon: int, ts_ms: int, score: StepScore) -> Any:
        fed.setdefault((self.timeframe, horizon), []).append(
            (ts_ms, score.crps, score.crps_rw, score.pit, score.hit50, score.hit90)
        )
        return real(self, horizon, ts_ms, score)

    monkeypatch.setattr(DriftMonitor, "update_score", spy)
    f, pred = SymbolForecaster("EURUSD", CFG), WidePredictor()
    records, events, requests, late = [], [], [], 0
    for batch in _batches(candles, sizes):
        outs = [f.on_candle(c) for c in batch]
        late -= sum(len(o.evaluations) for o in outs)
        asked = [(o, r) for o in outs if o.due and (r := f.request(o, None)) is not None]
        for (o, _), fc in zip(asked, pred.forecast([r for _, r in asked]), strict=True):
            records.append(json.loads(json.dumps(f.record(fc, o))))
        f.settle()
        for o in outs:  # each candle's outcome, once the batch's forecasts are recorded
            events += [(e.timeframe, e.ts_ms, e.detector, e.horizon, e.statistic) for e in o.drift]
            requests += [] if o.retrain is None else [o.retrain.to_dict()]
            late += len(o.evaluations)
    monkeypatch.setattr(DriftMonitor, "update_score", real)
    return Run(json.loads(json.dumps(f.snapshot())), records, fed, sorted(events), requests, late)


@cache
def _live() -> Run:
    return _run([1])


def _assert_same_scored_state(got: Run, want: Run) -> None:
    g, w = got.snapshot["state"], want.snapshot["state"]
    assert g["quality"] == w["quality"], "quality windows differ"  # every window, in order, to the bit
    for tf in ("1m", "5m"):
        gs, ws = g["series"][tf], w["series"][tf]
        assert gs["pending"] == ws["pending"], f"{tf} pending forecasts differ"
        assert gs["trigger"] == ws["trigger"], f"{tf} trigger states differ"
    for key, inputs in want.drift_inputs.items():  # each detector's inputs, in order
        assert got.drift_inputs.get(key) == inputs, f"drift inputs of {key} differ"
    assert got.drift_inputs.keys() == want.drift_inputs.keys()
    assert got.events == want.events, "drift events differ"
    assert got.requests == want.requests, "retrain requests differ"
    assert got.records == want.records, "forecast records differ"  # the forecasts themselves
    assert got.snapshot == want.snapshot, "states differ"  # and nothing else of the state either


def test_the_live_run_scores_every_step_once() -> None:
    live = _live()
    assert live.late == 0  # candle by candle, every step is scored by its own candle
    q = {tuple(w[:3]): len(w[3]) for w in live.snapshot["state"]["quality"]["state"]["windows"]}
    # the windows are full (500): the order in which steps come decides what they hold
    assert [q[("EURUSD", "1m", g)] for g in ("1", "2-4", "5-12")] == [500, 500, 500]
    assert live.events and live.requests  # the scores feed the drift detectors, which fire on these candles
    assert len(live.drift_inputs[("1m", 1)]) == len(live.drift_inputs[("1m", HORIZON)]) + HORIZON - 1
    assert len(live.records) > 900


def test_batches_of_64_score_as_candle_by_candle() -> None:
    got = _run([64])
    assert got.late > 9000  # most steps of a batch's forecasts are realised inside the batch
    _assert_same_scored_state(got, _live())


@settings(max_examples=4, deadline=None)
@given(sizes=st.lists(st.integers(1, 100), min_size=1, max_size=12))
def test_any_batching_scores_as_candle_by_candle(sizes: list[int]) -> None:
    _assert_same_scored_state(_run(sizes), _live())
