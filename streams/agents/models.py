"""The model-outcome agent: ``fx.models`` → the candle agent's model book and retrain triggers.

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

from forex_diffusion.errors import StorageError, ValidationError
from forex_diffusion.timeframes import Timeframe
from forex_diffusion.wire import UnknownFields, decode_model_outcome
from retraining.records import check_outcome

from ..consumer import Outbox

if TYPE_CHECKING:
    from .candles import CandleAgent

__all__ = ["OutcomeInbox", "close_request", "finish_request", "register_models"]

log = logging.getLogger(__name__)


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
        """The outcome of ``msg``, decoded and checked (:func:`~retraining.records.check_outcome`;
        ``ValidationError``: refused)."""
        return check_outcome(msg.key, msg.value, symbols=self.symbols, timeframes=self.timeframes)

    async def handle(self, msg: Any) -> bool:
        """Finish the request ``msg`` answers (True), or dead-letter ``msg`` (False; never
        raises for bad input): a dead letter is acknowledged before this returns. The unknown
        fields of an outcome that passes :meth:`check` are counted (B2)."""
        with self.contain.record(msg) as rec:
            with UnknownFields() as unknown:
                data = self.check(msg)
            if unknown.count and (m := self.agent.rt.metrics) is not None:
                m.unknown_fields(msg.topic, unknown.count, unknown.names)
            rec.stage, rec.symbol = "process", data["symbol"]
            finish_request(self.agent, data)
        await self.outbox.deliver()
        return not rec.failed


def register_models(agent: CandleAgent) -> None:
    """Attach the ``fx.models`` agent and the periodic refresh of ``agent``'s model book."""
    app, book, loop = agent.rt.app, agent.models, asyncio.get_running_loop
    inbox = OutcomeInbox(agent)

    async def refresh() -> dict[tuple[str, str], str] | None:
        """The book refreshed (its versions in service), or None: the models in service stay."""
        try:
            versions: dict[tuple[str, str], str] = await loop().run_in_executor(None, book.refresh)
            return versions
        except StorageError as exc:  # PostgreSQL down or recovering: the next outcome or tick retries
            log.warning("models.refresh_failed error=%s: %s", type(exc).__name__, str(exc)[:200])
        except Exception as exc:  # noqa: BLE001 - a bug (e.g. a manifest it cannot read) never stops the worker
            inbox.contain.internal("models.refresh_error", exc)
        return None

    @app.agent(agent.rt.topics["models"], name="forexd.models")
    async def models(stream: Any) -> None:
        async for event in stream.events():
            # dead-lettered: nothing else is touched (the 15 s refresh goes on)
            if not await inbox.handle(event.message) or (versions := await refresh()) is None:
                continue
            log.info("models.refreshed versions=%s", versions)
            if (m := agent.rt.metrics) is not None:
                for (sym, tf), v in versions.items():
                    m.model_in_service(f"{sym}/{tf}/{book.horizon_of(tf)}", v)

    async def refresh_models() -> None:
        await refresh()
        try:
            await agent.shadow.settle()  # shadows running here: export, and decide any that are due
        except Exception as exc:  # noqa: BLE001 - as the refresh's: a bug of one settle never stops the worker
            inbox.contain.internal("models.settle_error", exc)

    app.timer(interval=15.0)(refresh_models)
