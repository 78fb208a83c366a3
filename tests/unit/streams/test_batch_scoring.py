"""The candle agent's scored state and records do not depend on its batching.

``CandleAgent.handle_batch`` runs every candle of a batch through its forecaster, samples
the batch's due forecasts in one call per model and records them, then publishes each
candle's records. A worker behind (batches of 64, as ``stream.take_events(64, ...)`` hands
them) must end where a live one (batches of 1) does: the same forecaster state (quality
windows, pending forecasts, trigger), the same forecasts, drift events and retrain requests,
in the same order. The core side is ``tests/unit/test_forecaster_batching.py``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from forex_diffusion.bundled import SAMPLE_TICKS
from forex_diffusion.diffusion.context import ForecastRequest
from forex_diffusion.diffusion.predictor import Forecast
from forex_diffusion.forecast.forecaster import RandomWalkPredictor
from forex_diffusion.instruments import InstrumentRegistry
from forex_diffusion.offline import aggregate_ticks_file
from forex_diffusion.wire import encode_candle
from streams.agents.candles import CandleAgent
from streams.app import Runtime
from streams.settings import Settings

HORIZON = 12
N_CANDLES = 700


class WidePredictor:
    """The random walk with 1.5 times the volatility: deterministic, and scored unlike the baseline."""

    version = "rw-wide"
    horizon = HORIZON
    context_spec = None

    def forecast(
        self, requests: Sequence[ForecastRequest], *, steps: int | None = None, samples: int | None = None
    ) -> list[Forecast]:
        out = RandomWalkPredictor(HORIZON).forecast([replace(r, sigma=1.5 * r.sigma) for r in requests])
        return [replace(fc, model_version=self.version) for fc in out]


def candle_agent(tmp_path: Path, symbols: tuple[str, ...] = ("EURUSD",)) -> CandleAgent:
    """A candle agent of ``symbols`` at 1m without a broker or database (effects stay in its buffer)."""
    s = Settings(
        symbols=symbols,
        timeframes=("1m",),
        forecast_timeframes=("1m",),
        horizon=HORIZON,
        data_dir=tmp_path,
        model_dir=tmp_path / "models",
        status_interval_s=0,
    )
    rt = Runtime(
        settings=s,
        app=SimpleNamespace(consumer=None),  # type: ignore[arg-type]
        topics={},
        instruments=InstrumentRegistry.of(s.symbols),
        engine=None,
    )
    return CandleAgent(rt)


def candle_messages(n: int) -> list[Any]:
    """The first ``n`` 1m candles of the bundled sample as ``fx.candles`` messages of partition 0."""
    candles = aggregate_ticks_file(SAMPLE_TICKS, timeframes=["1m"]).candles[:n]
    return [
        SimpleNamespace(topic="fx.candles", partition=0, offset=i, key=b"EURUSD", value=encode_candle(c))
        for i, c in enumerate(candles)
    ]


def _run(tmp_path: Path, batch: int) -> tuple[Any, dict[str, list[Any]], list[Any]]:
    agent = candle_agent(tmp_path)
    pred = WidePredictor()
    agent.models.predictor = lambda sym, tf: pred  # type: ignore[method-assign, assignment]
    msgs = candle_messages(N_CANDLES)

    async def go() -> None:
        for i in range(0, len(msgs), batch):
            await agent.handle_batch(msgs[i : i + batch])

    asyncio.run(go())
    out: dict[str, list[Any]] = {}
    for kind, _key, value in agent.effects.out:
        out.setdefault(kind, []).append(json.loads(value) if kind != "forecasts.paths" else value)
    drift_rows = [(e.ts_ms, e.detector, e.horizon, e.statistic) for e in agent.effects.at(0).drift]
    return json.loads(json.dumps(agent.forecasters["EURUSD"].snapshot())), out, drift_rows


def test_a_worker_behind_ends_where_a_live_one_does(tmp_path: Path) -> None:
    live_state, live_out, live_drift = _run(tmp_path / "live", 1)
    behind_state, behind_out, behind_drift = _run(tmp_path / "behind", 64)
    assert len(live_out["forecasts"]) > 600
    assert live_drift and live_out["retrain.requests"]  # scores drift on these candles, and ask for a retrain
    quality = live_state["state"]["quality"]["state"]["windows"]
    assert {w[2]: len(w[3]) for w in quality}["5-12"] == 500  # a full window: its order decides its content
    assert behind_state["state"]["quality"] == live_state["state"]["quality"]
    assert behind_state["state"]["series"]["1m"]["pending"] == live_state["state"]["series"]["1m"]["pending"]
    assert behind_state["state"]["series"]["1m"]["trigger"] == live_state["state"]["series"]["1m"]["trigger"]
    assert behind_state == live_state
    assert behind_drift == live_drift
    assert behind_out.keys() == live_out.keys()
    for kind, records in live_out.items():
        assert behind_out[kind] == records, kind
