"""The candle agent's effects: each candle's side outputs, and the forecasts of a batch.

The due requests of a batch go to their models in ONE sampling call per model, in an
executor so the event loop never blocks, at the batch's budget
(:mod:`forex_diffusion.forecast_batch`: the reduced one while the worker is behind).
"""

from __future__ import annotations

import asyncio
import logging
from functools import partial
from typing import TYPE_CHECKING, Any

from forex_diffusion.errors import ForexDiffusionError
from forex_diffusion.forecast_batch import group_by_model, sampling_budget
from forex_diffusion.forecasting import CandleOutcome
from forex_diffusion.wire import encode_drift, encode_forecast, encode_indicators, encode_retrain_request

if TYPE_CHECKING:
    from .candles import CandleAgent

__all__ = ["account", "forecast_batch", "side_outputs"]

log = logging.getLogger(__name__)

Due = tuple[int, CandleOutcome, Any]  # (partition, outcome, message)


def side_outputs(o: CandleOutcome) -> list[tuple[str, bytes, bytes]]:
    """The indicator, drift and retrain-request records of one outcome, encoded."""
    key = o.candle.symbol.encode()
    side: list[tuple[str, bytes, bytes]] = []
    if o.indicators is not None:
        side.append(("indicators", key, encode_indicators(o.candle, o.indicators)))
    side += [("drift", key, encode_drift(ev)) for ev in o.drift]
    if o.retrain is not None:
        side.append(("retrain.requests", key, encode_retrain_request(o.retrain)))
    return side


def account(agent: CandleAgent, p: int, o: CandleOutcome, side: list[tuple[str, bytes, bytes]]) -> None:
    """Queue one outcome's records and rows; count it."""
    for kind, key, value in side:
        agent.effects.publish(kind, key, value)
    e, m = agent.effects.at(p), agent.rt.metrics
    e.drift += o.drift  # stored with the checkpoint
    if m is not None:
        for ev in o.drift:
            m.drift_event(ev.detector.split(":")[0], ev.symbol, ev.timeframe)
        if o.retrain is not None:
            m.retrain_request(o.retrain.reason)
        # the scored steps feed the forecaster's own quality monitor (its checkpointed state, issue 15)
    if not o.duplicate:
        agent.shadow.on_candle(p, o.candle)
        e.candles.append(o.candle)
        if m is not None:
            m.candles_processed(o.candle.symbol, o.candle.timeframe)


async def forecast_batch(agent: CandleAgent, outcomes: list[Due]) -> None:
    """Forecast every due series of a batch: one sampling call per model."""
    s = agent.rt.settings
    budget = sampling_budget(
        len(outcomes),
        steps=s.forecast_steps,
        samples=s.forecast_samples,
        min_steps=s.forecast_min_steps,
        min_samples=s.forecast_min_samples,
        degrade_batch=s.forecast_degrade_batch,
    )
    due = [d for d in outcomes if d[1].due]
    for pred, group in group_by_model(due, lambda d: agent.models.predictor(d[1].candle.symbol, d[1].candle.timeframe)):
        spec, inputs = getattr(pred, "context_spec", None), getattr(pred, "inputs", None)
        asked = []
        for p, o, msg in group:
            with agent.contain.record(msg) as scope:
                scope.stage, scope.symbol = "forecast", o.candle.symbol
                r = agent.forecasters[o.candle.symbol].request(o, spec, inputs)
                if r is not None:
                    asked.append((p, o, msg, r))
        if not asked:
            continue
        call = partial(pred.forecast, [r for *_, r in asked], steps=budget.steps, samples=budget.samples)
        version = getattr(pred, "version", "?")
        try:
            fcs = await asyncio.get_running_loop().run_in_executor(None, call)
        except ForexDiffusionError as exc:
            log.error("forecast.failed model=%s error=%s", version, exc)
            continue
        except Exception as exc:  # noqa: BLE001 - a bug of the model path: no one record's fault
            agent.contain.internal("forecast.internal_error", exc, model=version, forecasts="none for this batch")
            continue
        emitted = []
        for (p, o, msg, _r), fc in zip(asked, fcs, strict=True):
            with agent.contain.record(msg) as scope:
                scope.stage, scope.symbol = "forecast", o.candle.symbol
                rec = agent.forecasters[o.candle.symbol].record(fc, o, degraded=budget.degraded)
                emitted.append((p, o, fc))
                agent.effects.publish("forecasts", o.candle.symbol.encode(), encode_forecast(rec))
                agent.effects.at(p).forecasts.append(rec)
                agent.forecasts_emitted += 1
                if (m := agent.rt.metrics) is not None:
                    sym, tf = o.candle.symbol, o.candle.timeframe
                    m.forecast_emitted(sym, tf, fc.latency_s, fc.steps, fc.samples, budget.degraded)
                    m.model_in_service(f"{sym}/{tf}/{agent.models.horizon_of(tf)}", fc.model_version)
        await agent.shadow.forecast(  # issue 16: the same requests, for a shadow of these series
            emitted,
            lambda o, sp: agent.forecasters[o.candle.symbol].request(
                o, getattr(sp, "context_spec", None), getattr(sp, "inputs", None)
            ),
            steps=budget.steps,
            samples=budget.samples,
            degraded=budget.degraded,
        )
