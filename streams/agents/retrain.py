"""The retrain agent: ``fx.retrain.requests`` → one job per model key in a child process →
the outcome on ``fx.models``. The stream keeps flowing while a job trains.

Every request is checked before anything is built from it (issue 13): the wire form and its
``request_id`` (:func:`~retraining.jobs.decode_request`), then the model key against the
configured symbols, timeframes and horizons (:func:`~retraining.jobs.check_key`). A refused
request is dead-lettered with its reason; an unexpected error is dead-lettered as
``internal`` with its type and logged at ERROR; nothing escapes :meth:`RetrainAgent.handle`.
Jobs run at most ``retrain_concurrency`` at once from a bounded queue
(:class:`~retraining.job_queue.RetrainQueue`) and are killed after ``retrain_timeout_s``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from forex_diffusion.errors import RejectReason, ValidationError
from forex_diffusion.trigger import RetrainRequest
from retraining.job_queue import RetrainQueue
from retraining.jobs import JobConfig, JobOutcome, check_key, decode_request, encode_outcome
from retraining.runner import run_job_async
from retraining.schedule import ScheduleEntry, due_requests

from ..deadletter import dead_letter_headers, dead_letter_record

if TYPE_CHECKING:
    from ..app import Runtime
    from ..settings import Settings

__all__ = ["RetrainAgent", "job_config"]

log = logging.getLogger(__name__)


def job_config(s: Settings) -> JobConfig:
    """The worker's job settings: ``FOREXD_RETRAIN_JOB_CONFIG`` (else the defaults at the
    worker's horizon), with ``FOREXD_SHADOW_FORECASTS`` unless that JSON names ``shadow_forecasts``."""
    data = json.loads(s.retrain_job_config) if s.retrain_job_config else {"horizon": s.horizon}
    if isinstance(data, dict) and "shadow_forecasts" not in data:
        data = {**data, "shadow_forecasts": s.shadow_forecasts}
    return JobConfig.from_dict(data)


class RetrainAgent:
    """Check requests, run their jobs in separate processes (capped, queued), publish outcomes."""

    def __init__(self, rt: Runtime) -> None:
        s = rt.settings
        self.rt = rt
        self.config = job_config(s)
        self.model_dir = Path(s.model_dir or (s.data_dir / "models"))
        self.schedule = [ScheduleEntry.parse(x) for x in s.retrain_schedule]
        self.horizons = frozenset(
            {s.horizon, self.config.horizon, *s.model_horizons.values(), *(e.key.horizon for e in self.schedule)}
        )
        self.last_fired: dict[str, int] = {}
        self.queue = RetrainQueue(self._run, concurrency=s.retrain_concurrency, default_horizon=self.config.horizon)

    def register(self) -> None:
        app, topics = self.rt.app, self.rt.topics

        @app.agent(topics["retrain.requests"], name="forexd.retrain")
        async def retrain(stream: Any) -> None:
            async for event in stream.events():
                self.handle(event.message)

        if self.schedule:

            @app.timer(interval=30.0)
            async def scheduled() -> None:
                reqs, self.last_fired = due_requests(self.schedule, self.last_fired, now_ms=int(time.time() * 1000))
                for r in reqs:
                    self.start(r)

    def handle(self, msg: Any) -> None:
        """Check a request message and queue its job, or dead-letter it (never raises)."""
        try:
            request = self.named(decode_request(msg.value))
            self.check(request)
            if self.queue.submit(request) == "queue_full":
                raise ValidationError(
                    RejectReason.QUEUE_FULL,
                    f"{self.queue.queued} retrain jobs already wait (max {self.queue.max_queued})",
                )
        except ValidationError as exc:
            self._dead_letter(msg, exc)
        except Exception as exc:  # noqa: BLE001 - no exception escapes the per-record path
            log.exception(
                "retrain.internal_error topic=%s partition=%s offset=%s", msg.topic, msg.partition, msg.offset
            )
            self._dead_letter(msg, ValidationError(RejectReason.INTERNAL, type(exc).__name__))

    def named(self, request: RetrainRequest) -> RetrainRequest:
        """A request naming no horizon, for a timeframe that ``FOREXD_MODELS`` serves, retrains
        that timeframe's model (issue 16); otherwise the job's horizon applies, as before."""
        s = self.rt.settings
        h = s.model_horizons.get(request.timeframe) if s.models and request.horizon is None else None
        return request if h is None else replace(request, horizon=h)

    def check(self, request: RetrainRequest) -> None:
        """Refuse a request whose model key the worker does not serve (``ValidationError``)."""
        s = self.rt.settings
        check_key(
            request,
            symbols=s.symbols,
            timeframes=s.timeframes,
            horizons=self.horizons,
            default_horizon=self.config.horizon,
        )

    def start(self, request: RetrainRequest) -> None:
        """Queue a request this worker made itself (the schedule); refusals are logged."""
        try:
            request = self.named(request)
            self.check(request)
            said = self.queue.submit(request)
        except Exception:  # noqa: BLE001 - a bad schedule entry never stops the timer
            log.exception("retrain.scheduled_refused request=%s", request.request_id)
            return
        if said == "queue_full":
            log.error("retrain.scheduled_refused request=%s reason=queue_full", request.request_id)

    def _dead_letter(self, msg: Any, error: ValidationError) -> None:
        try:
            value = dead_letter_record(
                topic=msg.topic, partition=msg.partition, offset=msg.offset, raw=msg.value, key=msg.key, error=error
            )
            headers = dead_letter_headers(topic=msg.topic, partition=msg.partition, offset=msg.offset, error=error)
            asyncio.ensure_future(self.rt.topics["deadletter"].send(key=msg.key, value=value, headers=headers))
            log.info("retrain.refused offset=%s reason=%s", msg.offset, error.reason.value)
            if self.rt.metrics is not None:
                self.rt.metrics.dead_letter("retrain_requests", error.reason)
        except Exception:  # noqa: BLE001 - a dead letter that cannot be built is logged, never raised
            log.exception(
                "retrain.dead_letter_failed offset=%s reason=%s", getattr(msg, "offset", None), error.reason.value
            )

    async def _run(self, request: RetrainRequest) -> None:
        s, m = self.rt.settings, self.rt.metrics
        t0 = time.monotonic()
        outcome: JobOutcome = await run_job_async(
            request,
            db_url=s.db_url,
            model_dir=self.model_dir,
            config=self.config,
            threads=1,
            timeout_s=s.retrain_timeout_s,
        )
        await self.rt.topics["models"].send(key=request.symbol.encode(), value=encode_outcome(outcome))
        log.info("retrain.outcome request=%s status=%s reason=%s", request.request_id, outcome.status, outcome.reason)
        if m is not None:
            m.retrain_outcome(outcome.status)
            m.retrain_duration(time.monotonic() - t0)
