"""Re-create the worker's Kafka producer when its sends keep failing (RELIABILITY F16).

A producer client can wedge for good while the broker is fine: aiokafka has had several
(`aio-libs/aiokafka#176`, `#267`, `#517`: sends hang or fail forever after a broker restart or a
leader change), and a sender task that dies leaves every later send pending for ever. Jepsen's
advice, which RELIABILITY.md follows, is to re-initialise the producer after indefinite
errors. The agents report each checkpoint's sends here; once they have failed for
``after_s`` without a success in between, a new aiokafka producer is built from Faust's own
settings and started, and only if it connects does it replace the old one (which is then
closed in the background, bounded). A broker that is still unreachable therefore leaves the
old producer in place, and the next failure tries again.

Offsets are never committed past unacknowledged sends (a failed checkpoint keeps its
records and retries them), so the records the old producer held are sent again by the new
one: at-least-once, with the keyed sinks idempotent.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from retraining.failpoints import failpoint, fires

__all__ = ["ProducerSendFailed", "ProducerWatch", "send_all"]

log = logging.getLogger(__name__)

RETIRE_TIMEOUT_S = 30.0  # closing the replaced producer; it may hold batches it cannot deliver


class ProducerSendFailed(Exception):
    """A checkpoint's sends failed (refused, or not acknowledged in time); wraps the cause."""


class ProducerWatch:
    """Counts failing sends since the last success and re-creates the producer when they
    have gone on for ``after_s`` (one watch per agent; the agents share Faust's producer)."""

    def __init__(
        self,
        app: Any,
        *,
        after_s: float,
        start_timeout_s: float,
        metrics: Any = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.app = app
        self.after_s = after_s
        self.start_timeout_s = start_timeout_s
        self.metrics = metrics
        self.clock = clock
        self.failing_since: float | None = None
        self.failures = 0
        self.resets = 0
        self._replaced = False
        self._retiring: set[asyncio.Task[None]] = set()

    def before_sends(self) -> None:
        """Failpoint ``wedge_producer[:n]``: stop the producer's sender task, as the aiokafka
        bugs above did; sends then queue and are never delivered or failed."""
        if fires("wedge_producer"):
            sender = getattr(self._client(), "_sender", None)
            task = getattr(sender, "sender_task", None)
            if task is not None:
                log.warning("failpoint wedge_producer: producer sender task cancelled")
                task.cancel()

    def succeeded(self) -> None:
        """A checkpoint's sends were all acknowledged."""
        if self.failing_since is not None:
            how = "the new producer" if self._replaced else f"after {self.failures} failures"
            log.info("producer.recovered %s: sends acknowledged %.1fs later", how, self.clock() - self.failing_since)
        self.failing_since = None
        self.failures = 0
        self._replaced = False

    async def failed(self, started: float) -> bool:
        """Sends that began at ``started`` (clock time) failed. Re-create the producer when
        sends have failed for ``after_s``; True if it was replaced."""
        if self.failing_since is None:
            self.failing_since = started
        self.failures += 1
        failing_for = self.clock() - self.failing_since
        if failing_for < self.after_s:
            return False
        if await self.reset(failing_for):
            self.failing_since = self.clock()  # the new producer gets ``after_s`` of its own
            self.failures = 0
            self._replaced = True
            return True
        return False

    def _faust_producer(self) -> Any:
        return getattr(self.app, "producer", None)

    def _client(self) -> Any:
        return getattr(self._faust_producer(), "_producer", None)

    async def reset(self, failing_for: float = 0.0) -> bool:
        """Build and start a new aiokafka producer; swap it in only if it started."""
        fp = self._faust_producer()
        make = getattr(fp, "_new_producer", None)
        old = self._client()
        if make is None or old is None:
            log.warning("producer.reset unsupported by this transport (%s)", type(fp).__name__)
            return False
        new = make()
        try:
            await asyncio.wait_for(new.start(), timeout=self.start_timeout_s)
        except Exception as exc:  # noqa: BLE001 - broker unreachable: keep the old one, try again later
            log.warning(
                "producer.reset deferred failing_for=%.1fs: new producer did not start (%s)",
                failing_for,
                type(exc).__name__,
            )
            self._retire(new)
            return False
        fp._producer = new
        self.resets += 1
        log.warning(
            "producer.reset failing_for=%.1fs failures=%d resets=%d: replaced by a new producer",
            failing_for,
            self.failures,
            self.resets,
        )
        if self.metrics is not None:
            self.metrics.producer_reset()
        self._retire(old)
        return True

    def _retire(self, producer: Any) -> None:
        async def close() -> None:
            try:
                await asyncio.wait_for(producer.stop(), timeout=RETIRE_TIMEOUT_S)
            except Exception as exc:  # noqa: BLE001 - a wedged producer may not close cleanly
                log.info("producer.retire %s", type(exc).__name__)

        task = asyncio.ensure_future(close())
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)


async def send_all(rt: Any, records: list[tuple[Any, bytes | None, bytes, Any]]) -> None:
    """Send ``(topic, key, value, headers)`` records and wait for every acknowledgement.

    Raises :class:`ProducerSendFailed` when a send is refused or not acknowledged within
    ``send_ack_timeout_s`` (past the producer's own request timeout, so the producer retries
    a lost request first): the checkpoint fails and is retried, it never hangs. The runtime's
    :class:`ProducerWatch` sees every outcome and re-creates a producer that keeps failing.
    """
    if not records:
        return
    watch: ProducerWatch | None = getattr(rt, "producer", None)
    started = time.monotonic()
    sends: list[asyncio.Future[Any]] = []
    try:
        if watch is not None:
            watch.before_sends()
        for topic, key, value, headers in records:
            sends.append(await topic.send(key=key, value=value, headers=headers))
        failpoint("during_output_send")
        await asyncio.wait_for(asyncio.gather(*sends), timeout=rt.settings.send_ack_timeout_s)
    except Exception as exc:  # noqa: BLE001 - any failure fails the checkpoint
        for fut in sends:  # the records are sent again; their failures are this one
            fut.add_done_callback(_retrieved)
        if watch is not None:
            await watch.failed(started)
        raise ProducerSendFailed(f"{type(exc).__name__}: {exc}"[:300]) from exc
    if watch is not None:
        watch.succeeded()


def _retrieved(fut: asyncio.Future[Any]) -> None:
    """Mark an abandoned send's failure as seen (asyncio would log it at ERROR when collected)."""
    if not fut.cancelled():
        fut.exception()
