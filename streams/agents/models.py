"""The model-outcome agent: ``fx.models`` → the candle agent's model book and retrain triggers;
and the book's lookups on the batch path (:func:`serving_models`).

An outcome on ``fx.models`` (a retrain job's, or a shadow's decision) finishes its request,
so the series' trigger may open new ones; the model book is then refreshed at once -- and
every 15 s, for promotions and rollbacks made from the CLI -- and the shadows running here
are settled.

Every outcome is checked first (:meth:`OutcomeInbox.check`): its wire form, then that it is an
outcome this worker could be sent -- keyed by its symbol, a request id of the requests' form,
a symbol and timeframe served here. A refused one is dead-lettered with its reason as every
input topic's records are (:class:`~streams.deadletter.Containment`, counted as
``dead_letters_total{source="models"}``), acknowledged before the next outcome is taken, and
touches nothing else: no request, no refresh of the book.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from forex_diffusion.errors import RejectReason, StorageError, TransientStorageError, ValidationError
from forex_diffusion.forecast.forecaster import ForecasterConfig
from forex_diffusion.instruments import is_symbol_set_key
from forex_diffusion.timeframes import Timeframe
from forex_diffusion.wire import decode_model_outcome
from retraining.records import check_request_id
from retraining.serving import ModelBook

from ..consumer import Outbox, backoff_s

if TYPE_CHECKING:
    from ..app import Runtime
    from ..settings import Settings
    from .candles import CandleAgent

__all__ = [
    "OutcomeInbox",
    "close_request",
    "finish_request",
    "forecaster_config",
    "model_book",
    "register_models",
    "serving_models",
]

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
    """Decode an outcome and finish the request it answers; a refused value is logged only.
    This is the step without a message (tools); the agent checks each message and
    dead-letters what it refuses (:class:`OutcomeInbox`)."""
    try:
        data = decode_model_outcome(value)
    except ValidationError as exc:
        _refused(exc, None)
        return
    finish_request(agent, data)


def finish_request(agent: CandleAgent, data: dict[str, Any]) -> None:
    """Finish the request a decoded outcome answers (an unknown one changes nothing)."""
    sym = data["symbol"]
    if (f := agent.forecasters.get(sym)) is not None:
        f.close_request(data["timeframe"], data["request_id"])
        for p in [p for p, syms in agent.symbols.items() if sym in syms]:
            agent.consumer.progress.touch(p, sym)  # issue 15: in the next checkpoint


def _refused(error: ValidationError, symbol: str | None) -> None:
    log.warning("models.refused reason=%s error=%s", error.reason.value, error.detail[:200])


class OutcomeInbox:
    """The candle worker's ``fx.models`` consumer: check each outcome and finish its request,
    or dead-letter it with its reason, acknowledged before the next one
    (:class:`~streams.consumer.Outbox`, source ``models``)."""

    def __init__(self, agent: CandleAgent) -> None:
        s = agent.rt.settings
        self.agent = agent
        self.outbox = Outbox(agent.rt, name="models", on_refused=_refused)
        self.contain = self.outbox.contain
        self.symbols = frozenset(s.symbols)
        self.timeframes = frozenset(s.timeframes) | {Timeframe.parse(t).name for t in s.timeframes}

    def check(self, msg: Any) -> dict[str, Any]:
        """The outcome of ``msg``, decoded and checked (``ValidationError``: refused). Its symbol
        is one served here, or a global model's (``*``, a symbol set); outcomes of requests
        of any origin (a drift trigger, ``forexd retrain``, the schedule, a shadow) pass."""
        data = decode_model_outcome(msg.value)
        sym, tf = data["symbol"], data["timeframe"]
        if sym not in self.symbols and sym != "*" and not is_symbol_set_key(sym):
            raise ValidationError(RejectReason.UNKNOWN_SYMBOL, f"symbol {sym!r} is not served here")
        if tf not in self.timeframes:
            raise ValidationError(RejectReason.UNKNOWN_KEY, f"timeframe {tf!r} is not served here")
        check_request_id(data["request_id"])
        key = None if msg.key is None else bytes(msg.key)
        if key != sym.encode():
            shown = "no key" if key is None else f"key {key[:32].decode('utf-8', 'replace')!r}"
            raise ValidationError(RejectReason.KEY_MISMATCH, f"{shown} is not the outcome's symbol {sym!r}")
        return data

    async def handle(self, msg: Any) -> bool:
        """Finish the request ``msg`` answers (True), or dead-letter ``msg`` (False; never
        raises for bad input): a dead letter is acknowledged before this returns."""
        with self.contain.record(msg) as rec:
            data = self.check(msg)
            rec.stage, rec.symbol = "process", data["symbol"]
            finish_request(self.agent, data)
        await self.outbox.deliver()
        return not rec.failed


def register_models(agent: CandleAgent) -> None:
    """Attach the ``fx.models`` agent and the periodic refresh of ``agent``'s model book."""
    app, book, loop = agent.rt.app, agent.models, asyncio.get_running_loop
    inbox = OutcomeInbox(agent)

    @app.agent(agent.rt.topics["models"], name="forexd.models")
    async def models(stream: Any) -> None:
        async for event in stream.events():
            if not await inbox.handle(event.message):
                continue  # dead-lettered: nothing else is touched (the 15 s refresh goes on)
            try:
                versions = await loop().run_in_executor(None, book.refresh)
            except StorageError as exc:  # the registry is unreachable: the 15 s refresh retries
                log.warning("models.refresh_failed error=%s: %s", type(exc).__name__, str(exc)[:200])
                continue
            except Exception as exc:  # noqa: BLE001 - a bug of the refresh: logged with its traceback, the stream goes on
                inbox.contain.internal("models.refresh_error", exc)
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
        except Exception as exc:  # noqa: BLE001 - a bug (e.g. a manifest it cannot read) never stops the worker
            inbox.contain.internal("models.refresh_error", exc)
        try:
            await agent.shadow.settle()  # shadows running here: export, and decide any that are due
        except Exception as exc:  # noqa: BLE001 - as the refresh's: a bug of one settle never stops the worker
            inbox.contain.internal("models.settle_error", exc)

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
