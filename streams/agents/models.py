"""The model-outcome agent: ``fx.models`` → the candle agent's model book and retrain triggers;
and the book's lookups on the batch path (:func:`serving_models`).

An outcome on ``fx.models`` (a retrain job's, or a shadow's decision) finishes its request,
so the series' trigger may open new ones; the model book is then refreshed at once -- and
every 15 s, for promotions and rollbacks made from the CLI -- and the shadows running here
are settled.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from forex_diffusion.errors import StorageError, TransientStorageError, ValidationError
from forex_diffusion.forecast.forecaster import ForecasterConfig
from forex_diffusion.wire import decode_model_outcome
from retraining.serving import ModelBook

from ..consumer import backoff_s

if TYPE_CHECKING:
    from ..app import Runtime
    from ..settings import Settings
    from .candles import CandleAgent

__all__ = ["close_request", "forecaster_config", "model_book", "register_models", "serving_models"]

log = logging.getLogger(__name__)


def forecaster_config(s: Settings) -> ForecasterConfig:
    """The series' configuration: issue 16, one model per forecast timeframe, each at its own
    horizon (``FOREXD_MODELS``); with several horizons a retrain request names its own."""
    horizons = s.model_horizons
    return ForecasterConfig(
        timeframes=s.timeframes,
        forecast_timeframes=s.forecast_timeframes,
        horizon=s.horizon,
        models=tuple(horizons.items()),
        keyed_horizons=len(set(horizons.values())) > 1,
    )


def model_book(rt: Runtime) -> ModelBook:
    """The worker's serving models (champions and shadows) by series."""
    s, m = rt.settings, rt.metrics
    return ModelBook(
        rt.engine,
        horizon=s.horizon,
        horizons=s.model_horizons,
        device=s.device,
        model_dir=s.model_dir or (s.data_dir / "models"),
        on_rejected=(lambda v, e: m.artifact_rejected()) if m is not None else None,
        touch_bands=s.touch_bands,
        sampling_steps={"FOREXD_FORECAST_STEPS": s.forecast_steps, "FOREXD_FORECAST_MIN_STEPS": s.forecast_min_steps},
    )


def close_request(agent: CandleAgent, value: bytes) -> None:
    """Finish the request an outcome answers (a refused outcome is logged, nothing else)."""
    try:
        data = decode_model_outcome(value)
    except ValidationError as exc:
        log.warning("models.refused reason=%s error=%s", exc.reason.value, exc.detail[:200])
        return
    sym = data["symbol"]
    if (f := agent.forecasters.get(sym)) is not None:
        f.close_request(data["timeframe"], data["request_id"])
        for p in [p for p, syms in agent.symbols.items() if sym in syms]:
            agent.consumer.progress.touch(p, sym)  # issue 15: in the next checkpoint


def register_models(agent: CandleAgent) -> None:
    """Attach the ``fx.models`` agent and the periodic refresh of ``agent``'s model book."""
    app, book, loop = agent.rt.app, agent.models, asyncio.get_running_loop

    @app.agent(agent.rt.topics["models"], name="forexd.models")
    async def models(stream: Any) -> None:
        async for value in stream:
            close_request(agent, value)
            try:
                versions = await loop().run_in_executor(None, book.refresh)
            except StorageError as exc:  # the registry is unreachable: the 15 s refresh retries
                log.warning("models.refresh_failed error=%s: %s", type(exc).__name__, str(exc)[:200])
                continue
            log.info("models.refreshed versions=%s", versions)
            if (m := agent.rt.metrics) is not None:
                for (sym, tf), v in versions.items():
                    m.model_in_service(f"{sym}/{tf}/{book.horizon_of(tf)}", v)

    async def refresh_models() -> None:
        try:
            await loop().run_in_executor(None, book.refresh)
        except StorageError as exc:  # PostgreSQL down or recovering: the models in service stay, the next tick retries
            log.warning("models.refresh_failed error=%s: %s", type(exc).__name__, str(exc)[:200])
        await agent.shadow.settle()  # shadows running here: export, and decide any that are due

    app.timer(interval=15.0)(refresh_models)


async def serving_models(agent: CandleAgent, series: set[tuple[str, str]]) -> dict[tuple[str, str], Any]:
    """The model serving each ``(symbol, timeframe)`` of ``series``. A series looked up for the
    first time asks the registry: while the database is unreachable the lookup is retried
    with the checkpoint's back-off (the batch, and so consumption, waits: Kafka is the
    buffer), never let out to stop the worker (D16's last case)."""
    out: dict[tuple[str, str], Any] = {}
    for key in sorted(series):
        failures = 0
        while True:
            try:
                out[key] = agent.models.predictor(*key)
                break
            except TransientStorageError as exc:
                failures += 1
                log.warning("models.lookup_failed symbol=%s timeframe=%s attempt=%d error=%s", *key, failures, exc)
                await asyncio.sleep(backoff_s(failures))
    return out
