"""The candle agent's model book: built from the worker's settings, and looked up on the batch
path (:func:`series_models`), where a database outage is waited out and a bug of one series'
lookup costs that series' forecasts alone.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from typing import TYPE_CHECKING, Any

from forex_diffusion.errors import StorageError, TransientStorageError
from forex_diffusion.forecast.forecaster import ForecasterConfig
from retraining.serving import ModelBook

from ..consumer import backoff_s

if TYPE_CHECKING:
    from ..app import Runtime
    from ..settings import Settings
    from .candles import CandleAgent

__all__ = ["forecaster_config", "model_book", "series_models", "serving_models"]

log = logging.getLogger(__name__)

#: Per agent, the (symbol, timeframe, error type) of the failed model lookups already logged
#: with their traceback: a lookup failing with a bug failed again at every batch, an ERROR
#: traceback per series per batch (a log flood). Each failure is still counted.
_lookup_logged: weakref.WeakKeyDictionary[Any, set[tuple[str, str, str]]] = weakref.WeakKeyDictionary()


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


async def serving_models(agent: CandleAgent, series: set[tuple[str, str]]) -> dict[tuple[str, str], Any]:
    """The model serving each ``(symbol, timeframe)`` of ``series``. A series looked up for the
    first time asks the registry, and may load its model, in an executor thread (the first
    model loaded imports torch, over a second): while the database is unreachable the lookup is retried
    with the checkpoint's back-off (the batch, and so consumption, waits: Kafka is the
    buffer), never let out to stop the worker (D16's last case)."""
    out: dict[tuple[str, str], Any] = {}
    book = agent.models
    for key in sorted(series):
        failures = 0
        while True:
            try:
                if book.resolved(*key):
                    out[key] = book.predictor(*key)
                else:  # a query and maybe a model's load (with the first, torch's import): not on the loop
                    out[key] = await asyncio.get_running_loop().run_in_executor(None, book.predictor, *key)
                break
            except TransientStorageError as exc:
                failures += 1
                log.warning("models.lookup_failed symbol=%s timeframe=%s attempt=%d error=%s", *key, failures, exc)
                await asyncio.sleep(backoff_s(failures))
    return out


async def series_models(agent: CandleAgent, series: set[tuple[str, str]]) -> dict[tuple[str, str], Any]:
    """The model serving each series of ``series`` (:func:`serving_models`), looked up one
    series at a time: a lookup that fails with a bug (e.g. a registry row the storage layer cannot
    read) is an internal error of that series alone -- no forecast of it in this batch -- and the
    other series are forecast. Every such failure is counted (``contain.internal_errors``); the
    first of a series and error type is logged at ERROR with its traceback, a repeat at DEBUG
    only, until the series' lookup succeeds again. A storage failure is the worker's own (a
    transient one is waited out inside the lookup) and is let out."""
    out: dict[tuple[str, str], Any] = {}
    logged = _lookup_logged.setdefault(agent, set())
    for key in sorted(series):
        try:
            out.update(await serving_models(agent, {key}))
        except StorageError:
            raise
        except Exception as exc:  # noqa: BLE001 - no one record's fault: the stream goes on
            seen = (key[0], key[1], type(exc).__name__)
            if seen in logged:
                agent.contain.internal_errors += 1
                log.debug(
                    "forecast.model_lookup_error symbol=%s timeframe=%s error=%s forecasts=none this batch "
                    "(again: traceback logged once)",
                    *seen,
                )
                continue
            logged.add(seen)
            agent.contain.internal(
                "forecast.model_lookup_error",
                exc,
                symbol=key[0],
                timeframe=key[1],
                forecasts="none this batch",
                repeats="counted, logged at DEBUG",
            )
        else:
            if logged:  # the series serves again: a later failure of it is logged in full
                logged.difference_update({s for s in logged if s[:2] == key})
    return out
