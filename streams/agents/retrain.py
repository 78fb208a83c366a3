"""The retrain agent: ``fx.retrain.requests`` → one job per model key in a child process →
the outcome on ``fx.models``. The stream keeps flowing while a job trains."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from forex_diffusion.errors import ValidationError
from retraining.jobs import InFlight, JobConfig, JobOutcome, decode_request, encode_outcome
from retraining.runner import run_job_async
from retraining.schedule import ScheduleEntry, due_requests

from ..deadletter import dead_letter_headers, dead_letter_record

if TYPE_CHECKING:
    from ..app import Runtime

__all__ = ["RetrainAgent"]

log = logging.getLogger(__name__)


class RetrainAgent:
    """De-duplicate requests, run jobs in separate processes, publish outcomes."""

    def __init__(self, rt: Runtime) -> None:
        s = rt.settings
        self.rt = rt
        self.inflight = InFlight(default_horizon=s.horizon)
        self.config = JobConfig.from_dict(json.loads(s.retrain_job_config)) if s.retrain_job_config else JobConfig(horizon=s.horizon)
        self.model_dir = Path(s.model_dir or (s.data_dir / "models"))
        self.schedule = [ScheduleEntry.parse(x) for x in s.retrain_schedule]
        self.last_fired: dict[str, int] = {}
        self.tasks: set[asyncio.Task[None]] = set()

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
        """Admit a request message (or dead-letter it) and start its job."""
        try:
            request = decode_request(msg.value)
        except ValidationError as exc:
            value = dead_letter_record(topic=msg.topic, partition=msg.partition, offset=msg.offset,
                                       raw=msg.value, key=msg.key, error=exc)
            headers = dead_letter_headers(topic=msg.topic, partition=msg.partition, offset=msg.offset, error=exc)
            asyncio.ensure_future(self.rt.topics["deadletter"].send(key=msg.key, value=value, headers=headers))
            return
        self.start(request)

    def start(self, request: Any) -> None:
        if not self.inflight.admit(request):
            log.info("retrain.duplicate request=%s key=%s", request.request_id, request.symbol)
            return
        task = asyncio.ensure_future(self._run(request))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _run(self, request: Any) -> None:
        s, m = self.rt.settings, self.rt.metrics
        t0 = time.monotonic()
        try:
            outcome: JobOutcome = await run_job_async(request, db_url=s.db_url, model_dir=self.model_dir,
                                                      config=self.config, threads=1)
        finally:
            self.inflight.done(request)
        await self.rt.topics["models"].send(key=request.symbol.encode(), value=encode_outcome(outcome))
        log.info("retrain.outcome request=%s status=%s reason=%s", request.request_id, outcome.status, outcome.reason)
        if m is not None:
            m.retrain_outcome(outcome.status)
            m.retrain_duration(time.monotonic() - t0)
