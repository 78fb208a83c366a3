"""A bounded retrain job queue: at most ``concurrency`` jobs at once, one per model key.

The retrain agent submits every admitted request here. A request for a key that is already
queued or running *coalesces* into that job (it would train on the same candles); a request
id seen before is a *duplicate* (a redelivery); a request that finds ``max_queued`` requests
waiting is refused (``queue_full``) and the caller dead-letters it. Nothing is dropped
silently: :meth:`RetrainQueue.submit` says what became of each request.

>>> import asyncio
>>> from forex_diffusion.quality.trigger import RetrainRequest
>>> ran = []
>>> async def job(r: RetrainRequest) -> None:
...     ran.append(r.request_id)
>>> def req(i: str, tf: str) -> RetrainRequest:
...     return RetrainRequest(request_id=i, symbol="EURUSD", timeframe=tf, horizon=24,
...                           reason="manual", requested_at_ms=0)
>>> async def main() -> list[str]:
...     q = RetrainQueue(job, concurrency=1, max_queued=1)
...     said = [q.submit(req("a", "1h")), q.submit(req("b", "1h")), q.submit(req("c", "1m")),
...             q.submit(req("d", "5m"))]
...     await q.join()
...     return said + [q.submit(req("a", "1h"))]  # a redelivery of a finished request
>>> asyncio.run(main()), ran
(['started', 'coalesced', 'queued', 'queue_full', 'duplicate'], ['a', 'c'])
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Literal

from forex_diffusion.errors import ConfigError
from forex_diffusion.quality.trigger import RetrainRequest

from .jobs import InFlight

__all__ = ["Admission", "RetrainQueue"]

logger = logging.getLogger(__name__)

#: What :meth:`RetrainQueue.submit` did with a request.
Admission = Literal["started", "queued", "coalesced", "duplicate", "queue_full"]


class RetrainQueue:
    """Run retrain jobs with a concurrency cap, from a bounded FIFO queue, one per model key.

    Parameters
    ----------
    run
        Runs one job to its end (its own errors are its business: an exception is logged at
        ERROR and the queue goes on).
    concurrency
        Jobs running at once (each is a Python + torch process: default 1 per worker).
    max_queued
        Requests waiting beyond the running ones; more are refused (``queue_full``).
    default_horizon
        Horizon of requests that name none (their model key).
    """

    def __init__(
        self,
        run: Callable[[RetrainRequest], Awaitable[None]],
        *,
        concurrency: int = 1,
        max_queued: int = 64,
        default_horizon: int = 24,
    ) -> None:
        if concurrency < 1 or max_queued < 0:
            raise ConfigError(f"concurrency must be >= 1 and max_queued >= 0, got {concurrency}, {max_queued}")
        self._run = run
        self.concurrency = concurrency
        self.max_queued = max_queued
        self.inflight = InFlight(default_horizon=default_horizon)
        self._pending: deque[RetrainRequest] = deque()
        self._tasks: set[asyncio.Task[None]] = set()
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def running(self) -> int:
        """Jobs running now."""
        return len(self._tasks)

    @property
    def queued(self) -> int:
        """Requests waiting for a slot."""
        return len(self._pending)

    def submit(self, request: RetrainRequest) -> Admission:
        """Queue ``request`` (and start it if a slot is free); return what became of it.

        Must be called from the event loop's thread (jobs start as tasks).
        """
        key = self.inflight.key(request)
        if key in self.inflight.running():
            logger.info(
                "retrain.coalesced request=%s key=%s into=%s", request.request_id, key, self.inflight.running()[key]
            )
            return "coalesced"
        if len(self._pending) >= self.max_queued and len(self._tasks) >= self.concurrency:
            logger.warning(
                "retrain.queue_full request=%s key=%s queued=%d running=%d",
                request.request_id,
                key,
                len(self._pending),
                len(self._tasks),
            )
            return "queue_full"
        if not self.inflight.admit(request):  # the key is free, so: a request id seen before
            return "duplicate"
        self._pending.append(request)
        self._pump()
        return "queued" if self._pending and self._pending[-1] is request else "started"

    async def join(self) -> None:
        """Return once no job is queued or running."""
        await self._idle.wait()

    def _pump(self) -> None:
        while self._pending and len(self._tasks) < self.concurrency:
            request = self._pending.popleft()
            task = asyncio.ensure_future(self._job(request))
            self._tasks.add(task)
            self._idle.clear()

    async def _job(self, request: RetrainRequest) -> None:
        try:
            await self._run(request)
        except Exception:  # noqa: BLE001 - one job's bug never stops the queue
            logger.exception("retrain.job_error request=%s", request.request_id)
        finally:
            self.inflight.done(request)
            task = asyncio.current_task()
            if task is not None:
                self._tasks.discard(task)
            self._pump()
            if not self._tasks and not self._pending:
                self._idle.set()
