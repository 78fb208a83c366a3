"""Warm start and several (timeframe, horizon) models per forecaster (issue 16).

A forecaster rebuilt from the stored candles (SQLite and PostgreSQL) forecasts the first
new candle exactly as one that saw those candles live, with the diffusion model and the
random walk; without the warm start it could not forecast it at all. Each forecast
timeframe keeps its own model horizon (learners, pending forecasts, retrain key), and
snapshots carry it: an old snapshot (no horizon) restores, a series of another horizon
starts afresh (cold) and can then be warmed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from forex_diffusion.bundled import MODELS, SAMPLE_TICKS
from forex_diffusion.diffusion import Predictor
from forex_diffusion.domain import Candle
from forex_diffusion.drift import DriftEvent
from forex_diffusion.forecast.forecaster import ForecasterConfig, RandomWalkPredictor, SymbolForecaster
from forex_diffusion.forecast.warm_start import stored_history, stream_key, warm_start
from forex_diffusion.offline import aggregate_ticks_file
from forex_diffusion.quality.trigger import TriggerPolicy, TriggerState, decide
from forex_diffusion.storage import make_engine, upsert_candles

TFS = ("1m", "5m")
# the 1m series at the bundled model's horizon, the 5m one at 6
CFG = ForecasterConfig(timeframes=TFS, forecast_timeframes=TFS, horizon=24, models=(("5m", 6),))
M1 = sorted((MODELS / "EURUSD-1m-h24").glob("*.pt"))[-1]


@pytest.fixture(scope="module")
def candles() -> list[Candle]:
    """Real EUR/USD 1m and 5m candles of the bundled ticks, in stream order."""
    return sorted(aggregate_ticks_file(SAMPLE_TICKS, timeframes=list(TFS)).candles, key=stream_key)


@pytest.fixture(scope="module")
def model() -> Predictor:
    return Predictor.load(M1)


def _split(candles: list[Candle], n_1m: int) -> int:
    """Index of the ``n_1m``-th 1m candle: what lies before it is stored."""
    return [i for i, c in enumerate(candles) if c.timeframe == "1m"][n_1m]


def _record(f: SymbolForecaster, c: Candle, preds: dict[str, Any]) -> dict[str, Any] | None:
    o = f.on_candle(c)
    if not o.due:
        return None
    pred = preds[c.timeframe]
    req = f.request(o, pred.context_spec if isinstance(pred, Predictor) else None)
    assert req is not None
    rec = f.record(pred.forecast([req], steps=2, samples=16)[0], o)
    rec.pop("latency_s", None)
    return json.loads(json.dumps(rec))


def test_a_warm_started_forecaster_forecasts_its_first_new_candle_as_an_uninterrupted_one(
    db_url: str,
    candles: list[Candle],
    model: Predictor,
) -> None:
    k = _split(candles, 1400)  # 1,400 1m and 280 5m candles stored: the indicator banks are ready
    stored, new = candles[:k], candles[k : k + 12]
    engine = make_engine(db_url)
    upsert_candles(engine, stored)
    preds: dict[str, Any] = {"1m": model, "5m": RandomWalkPredictor(6)}

    live = SymbolForecaster("EURUSD", CFG)  # the uninterrupted worker, forecasting before the restart
    rw = {"1m": RandomWalkPredictor(24), "5m": preds["5m"]}  # (the random walk: a fast stand-in)
    for i, c in enumerate(stored):
        if i < len(stored) - 60:
            live.on_candle(c)
        else:
            _record(live, c, rw)

    assert SymbolForecaster("EURUSD", CFG).on_candle(new[0]).due is False  # a cold one cannot forecast it
    warm = SymbolForecaster("EURUSD", CFG)
    assert warm.cold == {"1m", "5m"}
    assert warm_start(warm, engine, before=new[0], per_timeframe=2_000) == len(stored)
    assert warm.cold == set() and warm.last_open == live.last_open

    first = [_record(warm, c, preds) for c in new]
    expected = [_record(live, c, preds) for c in new]
    assert first[0] is not None and first[0]["timeframe"] == "1m" and first[0]["horizon"] == 24
    assert first[0]["model_version"] == model.version
    assert first == expected
    assert {r["horizon"] for r in first if r is not None and r["timeframe"] == "5m"} == {6}
    assert all(r["learner"] for r in first if r is not None)  # the learners were rebuilt too
    # the state the stream keeps beyond the forecasts is the same: features, context, learners,
    # history (drift, pending forecasts and the trigger differ: nothing was published for them)
    a, b = live.snapshot()["state"]["series"], warm.snapshot()["state"]["series"]
    for tf in TFS:
        for part in ("horizon", "features", "context", "learners", "history", "contexts"):
            assert a[tf][part] == b[tf][part], (tf, part)


def test_stored_history_is_bounded_per_timeframe_and_stops_before_the_first_new_candle(
    tmp_path: Path,
    candles: list[Candle],
) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'h.db'}")
    upsert_candles(engine, candles[:3000])
    before = next(c for c in candles[2000:] if c.timeframe == "1m" and c.close_ms % 300_000 == 0)
    got = stored_history(engine, "EURUSD", TFS, before=before, per_timeframe=50)
    assert got == sorted(got, key=stream_key)
    earlier = [c for c in candles[:3000] if stream_key(c) < stream_key(before)]
    for tf in TFS:
        mine = [c for c in got if c.timeframe == tf]
        assert mine == [c for c in earlier if c.timeframe == tf][-50:]
    # the 5m candle closing with the first new 1m one is stored but comes after it in the
    # stream (the aggregator emits the shorter timeframe first): not replayed
    with_it = [c for c in candles[:3000] if c.timeframe == "5m" and c.close_ms == before.close_ms]
    assert len(with_it) == 1 and with_it[0] not in got
    assert stored_history(engine, "EURUSD", TFS, before=before, per_timeframe=0) == []
    assert stored_history(engine, "GBPUSD", TFS, before=before, per_timeframe=50) == []


def _state(f: SymbolForecaster) -> dict[str, Any]:
    """The snapshot without the learners' pickles (equal states need not pickle to equal bytes)."""
    snap = f.snapshot()["state"]
    for d in snap["series"].values():
        del d["learners"]
    return snap


def test_snapshots_keep_each_series_horizon_and_an_old_snapshot_still_restores(
    tmp_path: Path,
    candles: list[Candle],
) -> None:
    f = SymbolForecaster("EURUSD", CFG)
    for c in candles[:600]:
        f.on_candle(c)
    assert {tf: s.horizon for tf, s in f.series.items()} == {"1m": 24, "5m": 6}
    assert f.series["5m"].learners.config.horizons == (1, 6)
    assert f.series["1m"].learners.config.horizons == (1, 24)
    assert f.series["5m"].pending.maxlen == 7
    snap = json.loads(json.dumps(f.snapshot()))
    assert {tf: d["horizon"] for tf, d in snap["state"]["series"].items()} == {"1m": 24, "5m": 6}

    back = SymbolForecaster.restore(snap, CFG, symbol="EURUSD")
    assert back.cold == set() and _state(back) == _state(f)

    old = json.loads(json.dumps(snap))  # a snapshot of before issue 16: no horizon per series
    for d in old["state"]["series"].values():
        del d["horizon"]
    restored = SymbolForecaster.restore(old, CFG, symbol="EURUSD")
    assert restored.cold == set() and _state(restored) == _state(f)
    for c in candles[600:700]:  # and it goes on as the original does, learners included
        a, b = f.on_candle(c), restored.on_candle(c)
        assert (a.learner is None) == (b.learner is None)
        if a.learner is not None and b.learner is not None:
            assert a.learner.predictions == b.learner.predictions

    # the 5m model's horizon changed: its series starts afresh (cold), the 1m one is restored,
    # and a warm start rebuilds only the cold one
    changed = ForecasterConfig(timeframes=TFS, forecast_timeframes=TFS, horizon=24, models=(("5m", 12),))
    g = SymbolForecaster.restore(snap, changed, symbol="EURUSD")
    assert g.cold == {"5m"} and g.series["5m"].horizon == 12 and not g.series["5m"].history
    assert _state(g)["series"]["1m"] == _state(back)["series"]["1m"]
    engine = make_engine(f"sqlite:///{tmp_path / 'w.db'}")
    upsert_candles(engine, candles[:600])
    assert warm_start(g, engine, before=candles[600], per_timeframe=500) > 0
    assert g.cold == set() and len(g.series["5m"].history) == sum(c.timeframe == "5m" for c in candles[:600])
    assert _state(g)["series"]["1m"] == _state(back)["series"]["1m"]  # untouched
    assert g.last_open == back.last_open


def test_retrain_requests_name_the_series_horizon_when_a_forecaster_serves_several() -> None:
    cfg = ForecasterConfig(
        timeframes=TFS,
        forecast_timeframes=TFS,
        horizon=24,
        models=(("5m", 6),),
        keyed_horizons=True,
        trigger=TriggerPolicy(min_detectors=1),
    )
    f = SymbolForecaster("EURUSD", cfg)
    ev = DriftEvent(
        detector="adwin:error", statistic=1.0, threshold=0.5, symbol="EURUSD", timeframe="5m", horizon=1, ts_ms=1_000
    )
    d, _ = decide([ev], TriggerState(), f.series["5m"].policy, now_ms=1_000)
    assert d.request is not None and d.request.horizon == 6 and d.request.key == "EURUSD/5m/6"
    d1, _ = decide(
        [DriftEvent(**{**ev.to_dict(), "timeframe": "1m"})], TriggerState(), f.series["1m"].policy, now_ms=1_000
    )
    assert d1.request is not None and d1.request.key == "EURUSD/1m/24"
    assert d1.request.request_id != d.request.request_id
    # one horizon per worker (today's default): the key names no horizon, as before
    plain = SymbolForecaster(
        "EURUSD", ForecasterConfig(timeframes=TFS, forecast_timeframes=TFS, trigger=TriggerPolicy(min_detectors=1))
    )
    d0, _ = decide([ev], TriggerState(), plain.series["5m"].policy, now_ms=1_000)
    assert d0.request is not None and d0.request.horizon is None
