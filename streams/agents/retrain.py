"""The retrain agent: ``fx.retrain.requests`` → one job per model key in a child process →
the outcome on ``fx.models``. The stream keeps flowing while a job trains.

Every request is checked before anything is built from it (issue 13): its wire form
(:func:`~retraining.jobs.decode_request`), then its model key against what the worker serves
(:func:`~retraining.jobs.check_key`), then its Kafka key, which must be its symbol
(``key_mismatch``, B19, the check of fx.ticks and fx.candles). A refused request is
dead-lettered with its reason, an unexpected error as ``internal``, and acknowledged before
the next request is taken (:class:`~streams.consumer.Outbox`). At most ``retrain_concurrency`` jobs run at once, from a
bounded queue (:class:`~retraining.job_queue.RetrainQueue`), each killed after ``retrain_timeout_s``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from forex_diffusion.errors import RejectReason, ValidationError
from forex_diffusion.instruments import InstrumentRegistry
from forex_diffusion.quality.trigger import RetrainRequest
from forex_diffusion.wire import UNCHECKED, UnknownFields, canonical_symbol
from retraining.job_queue import RetrainQueue
from retraining.jobs import JobOutcome, check_key, decode_request, encode_outcome
from retraining.runner import run_job_async
from retraining.schedule import ScheduleEntry

from ..consumer import Outbox
from .scheduled import register_schedule

if TYPE_CHECKING:
    from ..app import Runtime

__all__ = ["RetrainAgent"]

log = logging.getLogger(__name__)


class RetrainAgent:
    """Check requests, run their jobs in separate processes (capped, queued), publish outcomes."""

    def __init__(self, rt: Runtime) -> None:
        s = rt.settings
        self.rt = rt
        self.config = s.retrain_job()
        self.model_dir = Path(s.model_dir or (s.data_dir / "models"))
        self.schedule = [ScheduleEntry.parse(x) for x in s.retrain_schedule]
        self.horizons = frozenset(
            {s.horizon, self.config.horizon, *s.model_horizons.values(), *(e.key.horizon for e in self.schedule)}
        )
        self.last_fired: dict[str, int] = {}
        self.instruments = InstrumentRegistry.of(s.symbols)  # the Kafka key check's symbols
        self.queue = RetrainQueue(self._run, concurrency=s.retrain_concurrency, default_horizon=self.config.horizon)
        self.outbox = Outbox(rt, name="retrain_requests", on_refused=self._refused)

    def register(self) -> None:
        app, topics = self.rt.app, self.rt.topics

        @app.agent(topics["retrain.requests"], name="forexd.retrain")
        async def retrain(stream: Any) -> None:
            async for event in stream.events():
                await self.handle(event.message)

        self.agent = retrain
        register_schedule(self)

    async def handle(self, msg: Any) -> None:
        """Check a request message and queue its job, or dead-letter it (never raises for bad
        input); a dead letter is acknowledged before this returns. The unknown fields of a
        request that decodes are counted (B2), the request checked as any other."""
        with self.outbox.contain.record(msg) as rec:
            with UnknownFields() as unknown:
                request = decode_request(msg.value)
            if unknown.count and (m := self.rt.metrics) is not None:
                m.unknown_fields(msg.topic, unknown.count, unknown.names)
            rec.stage, rec.symbol = "validate", request.symbol
            self.submit(request, key=msg.key)
        await self.outbox.deliver()

    def submit(self, request: RetrainRequest, *, key: Any = UNCHECKED) -> None:
        """Name, check and queue a request (``ValidationError``: refused, the queue is full).

        ``key`` is the Kafka key of a request read from ``fx.retrain.requests``: it must be the
        request's symbol (B19: keys are the canonical symbol, as the candle worker and
        ``forexd retrain`` send it), else ``key_mismatch``; a request the worker made itself
        (the schedule) has none to check.
        """
        request = self.named(request)
        self.check(request)
        canonical_symbol(request.symbol, key, self.instruments)  # fx.ticks' and fx.candles' key check
        if self.queue.submit(request) == "queue_full":
            raise ValidationError(
                RejectReason.QUEUE_FULL, f"{self.queue.queued} retrain jobs already wait (max {self.queue.max_queued})"
            )

    def named(self, request: RetrainRequest) -> RetrainRequest:
        """A request naming no horizon, for a timeframe that ``FOREXD_MODELS`` serves, retrains
        that timeframe's model (issue 16); otherwise the job's horizon applies, as before."""
        s = self.rt.settings
        h = s.model_horizons.get(request.timeframe) if s.models and request.horizon is None else None
        return request if h is None else replace(request, horizon=h)

    def check(self, request: RetrainRequest) -> None:
        """Refuse a request whose model key the worker does not serve (``ValidationError``)."""
        s, h = self.rt.settings, self.config.horizon
        check_key(request, symbols=s.symbols, timeframes=s.timeframes, horizons=self.horizons, default_horizon=h)

    def _refused(self, error: ValidationError, symbol: str | None) -> None:
        log.info("retrain.refused symbol=%s reason=%s", symbol, error.reason.value)

    async def _run(self, request: RetrainRequest) -> None:
        s, m, t0, cfg = self.rt.settings, self.rt.metrics, time.monotonic(), self.config
        job = run_job_async(
            request, db_url=s.db_url, model_dir=self.model_dir, config=cfg, timeout_s=s.retrain_timeout_s
        )
        outcome: JobOutcome = await job
        await self.rt.topics["models"].send(key=request.symbol.encode(), value=encode_outcome(outcome))
        log.info("retrain.outcome request=%s status=%s reason=%s", request.request_id, outcome.status, outcome.reason)
        if m is not None:
            m.retrain_outcome(outcome.status)
            m.retrain_duration(time.monotonic() - t0)
