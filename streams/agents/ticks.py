"""The tick agent: decode → :class:`~forex_diffusion.ingest.pipeline.TickPipeline` → closed candles,
published on ``fx.candles`` and stored with the offsets they reflect (:mod:`streams.consumer`).
Quiet series close on the idle timer (:mod:`forex_diffusion.ingest.idle_close`)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from forex_diffusion.ingest.idle_close import IdleClocks
from forex_diffusion.ingest.pipeline import TickPipeline
from retraining.failpoints import failpoint

from ..broker_facts import BulkFeed
from ..consumer import SeriesAgent
from .tick_step import close_idle, count_emitted, count_late, dead_letter_quarantined, process, restore_series

if TYPE_CHECKING:
    from ..app import Runtime

__all__ = ["TickAgent"]

BATCH = 512  # most ticks handled between two turns of the event loop


class TickAgent(SeriesAgent):
    """Consume ``fx.ticks``; emit final candles to ``fx.candles`` and the database."""

    def __init__(self, rt: Runtime) -> None:
        super().__init__()
        s = rt.settings
        self.rt = rt
        self.pipeline = TickPipeline(
            timeframes=s.timeframes,
            instruments=rt.instruments,
            price=s.price,  # type: ignore[arg-type]
            allowed_lateness_ms=s.allowed_lateness_ms,
        )
        self.idle = IdleClocks()
        self._checkpointed(
            rt,
            name="ticks",
            before_capture=lambda: dead_letter_quarantined(self),  # none may wait past a checkpoint
            on_persisted=lambda done: count_emitted(self, done),
            on_refused=lambda exc, symbol: count_late(self, exc, symbol),
        )

    def _series_state(self, symbol: str) -> dict[str, Any]:
        """Per series (issue 15): the pipeline's state of ``symbol``."""
        return self.pipeline.snapshot([symbol])

    def _restore_series(self, partition: int, state: dict[str, Any]) -> None:
        restore_series(self, partition, state)

    def _drop(self, partition: int) -> None:
        syms = sorted(self.symbols.pop(partition, set()))
        self.pipeline.drop(syms)
        self.idle.drop(syms)

    def register(self) -> None:
        self.feed = BulkFeed(self.rt.app, self.consumer.progress.topic)  # fetched ticks, a batch at a time
        self.feed.install()

        @self.rt.app.agent(self.rt.topics["ticks"], name="forexd.ticks")
        async def ticks(stream: Any) -> None:
            async for msgs in self.feed.batches(stream, BATCH):
                await self.handle_batch(msgs)
                await asyncio.sleep(0)  # the fetcher, the timers and a checkpoint run between batches

        self.agent = ticks
        self.consumer.register(self.rt.app, timer_s=0.5, on_timer=self.on_timer)

    async def handle_batch(self, msgs: list[Any]) -> None:
        """:meth:`handle` each message, awaiting only where one must wait (issue 15: throughput)."""
        fresh, admit_now, admissible = self.feed.fresh, self.consumer.admit_now, self.consumer.admissible
        for msg in msgs:
            if not fresh(msg):
                continue  # taken across a rebalance: Faust's stream leaves it out too
            failpoint("after_consume_before_processing")
            ok = admit_now(msg)
            while ok is None:  # checkpoints failing, or its partition being restored: wait, then ask again
                await admissible(msg)
                # a rebalance while it waited (the database down, its partition revoked and assigned
                # again): the record is the old generation's; admitted into the restored state, it
                # would make the records between the checkpoint and it look processed (lost)
                ok = admit_now(msg) if fresh(msg) else False
            if ok:
                self.apply(msg)

    async def handle(self, msg: Any) -> None:
        """Process one message (never raises for bad input, never waits for I/O)."""
        failpoint("after_consume_before_processing")
        if await self.consumer.admit(msg):  # else already reflected in the restored state
            self.apply(msg)

    def apply(self, msg: Any) -> None:
        """Process one admitted message and mark it."""
        try:  # Containment (issue 13): a record that fails is dead-lettered once, and we go on
            with self.contain.record(msg) as rec:
                process(self, msg, rec)
        finally:  # held ticks the pipeline gave up on (this record may itself have been refused)
            dead_letter_quarantined(self)
        self.consumer.mark(msg)

    async def on_timer(self) -> None:
        """The idle close (:func:`~streams.agents.tick_step.close_idle`)."""
        await close_idle(self)
