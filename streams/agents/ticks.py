"""The tick agent: decode → :class:`~forex_diffusion.ingest.pipeline.TickPipeline` → closed candles,
published on ``fx.candles`` and stored with the offsets they reflect (:mod:`streams.consumer`).
Quiet series close on the idle timer (:mod:`forex_diffusion.ingest.idle_close`)."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from forex_diffusion.errors import ValidationError
from forex_diffusion.ingest.idle_close import IdleClocks
from forex_diffusion.ingest.pipeline import TickPipeline
from retraining.failpoints import failpoint

from ..consumer import CheckpointingConsumer, Effects
from .tick_step import close_idle, dead_letter_quarantined, process

if TYPE_CHECKING:
    from ..app import Runtime

__all__ = ["TickAgent"]


class TickAgent:
    """Consume ``fx.ticks``; emit final candles to ``fx.candles`` and the database."""

    def __init__(self, rt: Runtime) -> None:
        s = rt.settings
        self.rt = rt
        self.pipeline = TickPipeline(
            timeframes=s.timeframes,
            instruments=rt.instruments,
            price=s.price,  # type: ignore[arg-type]
            allowed_lateness_ms=s.allowed_lateness_ms,
        )
        self.symbols: dict[int, set[str]] = defaultdict(set)
        self.idle = IdleClocks()
        self.consumer = CheckpointingConsumer(
            rt,
            name="ticks",
            snapshot=self._snapshot,
            restore=self._restore,
            drop=self._drop,
            series=lambda p: self.symbols.get(p, ()),  # issue 15: a checkpoint writes the series it changed
            before_capture=lambda: dead_letter_quarantined(self),  # none may wait past a checkpoint
            on_persisted=self._emitted,
            on_refused=self._on_refused,
        )
        self.contain, self.effects = self.consumer.contain, self.consumer.effects

    def _snapshot(self, partition: int, series: Iterable[str]) -> dict[str, Any]:
        """Per series (issue 15): the pipeline's state of each series of ``series`` still here."""
        held = self.symbols.get(partition, ())
        return {sym: self.pipeline.snapshot([sym]) for sym in series if sym in held}

    def _restore(self, partition: int, parts: dict[str, Any]) -> None:
        for state in parts.values():  # one per series (or the whole state of an older checkpoint)
            self._restore_one(partition, state)

    def _restore_one(self, partition: int, state: dict[str, Any]) -> None:
        restored = self.pipeline.restore(state)  # issue 15: {symbol: earliest held tick time or None}
        now = time.monotonic()
        # a series restored with only held ticks (its first ticks, awaiting confirmation) has no
        # aggregator series yet: it joins the idle timer too, which expires the hold
        for sym, held_since in restored.items():
            self.symbols[partition].add(sym)
            # a restored series may get no new tick at all (its feed ended before the crash):
            # its forming bars must still close on the idle timer, counted from the restore
            last_ms = self.pipeline.aggregator.last_event_ms(sym)
            if last_ms is None:
                last_ms = self.pipeline.event_time(sym)
            if last_ms is None:
                last_ms = held_since
            if last_ms is not None and sym not in self.idle.clocks:
                self.idle.seen(sym, partition, now, last_ms)

    def _drop(self, partition: int) -> None:
        syms = sorted(self.symbols.pop(partition, set()))
        self.pipeline.drop(syms)
        self.idle.drop(syms)

    def register(self) -> None:
        @self.rt.app.agent(self.rt.topics["ticks"], name="forexd.ticks")
        async def ticks(stream: Any) -> None:
            async for event in stream.events():
                await self.handle(event.message)
                await self.consumer.breathe()

        self.agent = ticks
        self.consumer.register(self.rt.app, timer_s=0.5, on_timer=self.on_timer)

    async def handle(self, msg: Any) -> None:
        """Process one message (never raises for bad input, never waits for I/O)."""
        failpoint("after_consume_before_processing")
        if not await self.consumer.admit(msg):
            return  # already reflected in the restored state
        try:  # Containment (issue 13): a record that fails is dead-lettered once, and we go on
            with self.contain.record(msg) as rec:
                process(self, msg, rec)
        finally:  # held ticks the pipeline gave up on (this record may itself have been refused)
            dead_letter_quarantined(self)
        self.consumer.mark(msg)

    async def on_timer(self) -> None:
        """The idle close (:func:`~streams.agents.tick_step.close_idle`)."""
        await close_idle(self)

    def _on_refused(self, exc: ValidationError, symbol: str | None) -> None:
        if self.rt.metrics is not None and exc.reason.value == "late":
            self.rt.metrics.late_tick(symbol if symbol in self.rt.instruments else None)

    def _emitted(self, done: Effects) -> None:
        if self.rt.metrics is not None:
            for c in (c for e in done.parts.values() for c in e.candles):
                self.rt.metrics.candles_emitted(c.symbol, c.timeframe)
