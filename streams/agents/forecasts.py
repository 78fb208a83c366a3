"""The candle agent's forecasts of a batch: the due requests go to their models in ONE sampling call per model,
in an executor so the event loop never blocks, at the batch's budget (:mod:`forex_diffusion.forecast.batching`:
the reduced one while the worker is behind). With ``FOREXD_PATHS`` on, each forecast's first sample paths
follow it on ``fx.forecasts.paths``, in the same checkpoint."""

from __future__ import annotations

import asyncio
import logging
from functools import partial
from typing import TYPE_CHECKING

from forex_diffusion.errors import ForexDiffusionError, RejectReason, ValidationError
from forex_diffusion.forecast.batching import group_by_model, sampling_budget, steps_for
from forex_diffusion.forecast.forecaster import paths_record
from forex_diffusion.forecast.result import not_prices
from forex_diffusion.wire import encode_forecast

from ..settings import RECORD_BYTES_MAX
from .book import series_models
from .candle_step import Due

if TYPE_CHECKING:
    from forex_diffusion.forecast.result import Forecast

    from .candles import CandleAgent

__all__ = ["forecast_batch"]

log = logging.getLogger(__name__)


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
    # ``held(p)``: still this worker's by the batch's assignment. A partition revoked (or fenced) while the batch
    # awaited its forecasts has no forecasters of it here, or another assignment's; its next owner forecasts them.
    held = agent.consumer.current
    models = await series_models(agent, {(o.candle.symbol, o.candle.timeframe) for _, o, _ in due})
    due = [d for d in due if (d[1].candle.symbol, d[1].candle.timeframe) in models]
    for pred, group in group_by_model(due, lambda d: models[d[1].candle.symbol, d[1].candle.timeframe]):
        spec, inputs = getattr(pred, "context_spec", None), getattr(pred, "inputs", None)
        asked = []
        for p, o, msg in group:
            if not held(p):
                continue
            with agent.contain.record(msg) as scope:
                scope.stage, scope.symbol = "forecast", o.candle.symbol
                r = agent.forecasters[o.candle.symbol].request(o, spec, inputs)
                if r is not None:
                    asked.append((p, o, msg, r))
        if not asked:
            continue
        reqs, steps = [r for *_, r in asked], steps_for(pred, budget.steps)  # at most the model's T
        call = partial(pred.forecast, reqs, steps=steps, samples=budget.samples)
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
        for (p, o, msg, r), fc in zip(asked, fcs, strict=True):
            if not held(p):
                continue
            with agent.contain.record(msg) as scope:
                scope.stage, scope.symbol = "forecast", o.candle.symbol
                if (why := not_prices(fc, o.sigma)) is not None:  # neither stored nor published: no reader takes it
                    log.warning(
                        "forecast.not_prices symbol=%s model=%s as_of=%d %s", fc.symbol, version, fc.as_of_ms, why
                    )
                    if (m := agent.rt.metrics) is not None:
                        m.forecast_withheld(o.candle.symbol, o.candle.timeframe)
                    continue
                paths = _paths_record(agent, fc, r.sigma, s.paths)
                rec = agent.forecasters[o.candle.symbol].record(fc, o, degraded=budget.degraded)
                emitted.append((p, o, fc))
                agent.effects.at(p).forecasts.append(rec)
                if (value := _sendable(agent, encode_forecast(rec), fc)) is None:
                    continue
                agent.effects.publish("forecasts", o.candle.symbol.encode(), value)
                if paths is not None:  # with its forecast, in the same checkpoint (issue 16)
                    agent.effects.publish("forecasts.paths", o.candle.symbol.encode(), paths)
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


def _sendable(agent: CandleAgent, value: bytes, fc: Forecast) -> bytes | None:
    """``value``, or None (an internal error, logged) when it is over a Kafka message (from a horizon of about
    1,600 steps): sent, it would fail every checkpoint of its partition. The forecast is still stored and scored."""
    if len(value) <= RECORD_BYTES_MAX:
        return value
    exc = ValidationError(RejectReason.OVERSIZE, f"fx.forecasts record of {len(value):,} bytes > {RECORD_BYTES_MAX:,}")
    agent.contain.internal("forecast.oversize", exc, symbol=fc.symbol, horizon=fc.horizon)
    return None


def _paths_record(agent: CandleAgent, fc: Forecast, sigma: float, n: int) -> bytes | None:
    """``fc``'s fx.forecasts.paths value, or None (an internal error, logged) when a degenerate
    model's NaN or overflowed sample cannot be encoded: the forecast itself is not lost."""
    try:
        return paths_record(fc, sigma, n)
    except ValidationError as exc:
        agent.contain.internal("forecast.paths_unencodable", exc, symbol=fc.symbol, model=fc.model_version)
        return None
