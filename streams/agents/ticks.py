"""The tick agent: decode → :class:`~forex_diffusion.pipeline.TickPipeline` → closed candles,
published on ``fx.candles`` and stored with the offsets they reflect (:mod:`streams.consumer`).
Quiet series close on the idle timer (:mod:`forex_diffusion.idle_close`)."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from forex_diffusion.domain import Candle
from forex_diffusion.errors import ValidationError
from forex_diffusion.idle_close import IdleClocks
from forex_diffusion.pipeline import TickPipeline
from forex_diffusion.wire import decode_tick, encode_candle, encode_tick
from retraining.failpoints import failpoint

from ..broker_facts import broker_facts
from ..consumer import CheckpointingConsumer, Effects

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
            before_capture=self._dead_letter_quarantined,  # none may wait past a checkpoint
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
                limit = self.rt.settings.max_message_bytes
                tick = decode_tick(msg.value, key=msg.key, instruments=self.rt.instruments, max_bytes=limit)
                rec.symbol, rec.stage = tick.symbol, "process"
                self.consumer.progress.touch(msg.partition, tick.symbol)  # its series goes in the next checkpoint
                closed = self.pipeline.process(tick, now_ms=int(time.time() * 1000), ref=[msg.partition, msg.offset])
                rec.stage = "encode"
                wire = [encode_candle(c) for c in closed]
                rec.stage = "account"
                self.symbols[msg.partition].add(tick.symbol)
                ev = self.pipeline.event_time(tick.symbol)  # not a held far-future tick's time
                self.idle.seen(tick.symbol, msg.partition, time.monotonic(), tick.ts_ms if ev is None else ev)
                self._queue(msg.partition, zip(closed, wire, strict=True))
                if (m := self.rt.metrics) is not None:
                    m.ticks_processed(tick.symbol)
                    m.feed_seen(tick.symbol, tick.ts_ms / 1000.0)
                    if tick.bid >= tick.ask:  # accepted crossed (within tolerance) or locked quote
                        m.quote_flagged(tick.symbol, "crossed" if tick.bid > tick.ask else "locked")
        finally:  # held ticks the pipeline gave up on (this record may itself have been refused)
            self._dead_letter_quarantined()
        self.consumer.mark(msg)

    def _queue(self, p: int, closed: Iterable[tuple[Candle, bytes | None]]) -> None:
        for c, value in closed:  # encoded when it closed (never at flush: issue 13)
            if value is not None:
                e = self.effects.at(p)
                e.candles.append(c)
                e.records.append(("candles", c.symbol.encode(), value))

    def _dead_letter_quarantined(self) -> None:
        """Dead-letter held ticks that were not confirmed (B9 price jumps, far-future event
        times), each with its own origin."""
        for q in self.pipeline.take_quarantined():
            (qp, qoff), err = q.ref, ValidationError(q.reason, q.detail)
            raw, key, topic = encode_tick(q.tick), q.symbol.encode(), self.consumer.progress.topic
            self.contain.refuse(topic=topic, partition=qp, offset=qoff, raw=raw, key=key, symbol=q.symbol, error=err)

    def _on_refused(self, exc: ValidationError, symbol: str | None) -> None:
        if self.rt.metrics is not None and exc.reason.value == "late":
            self.rt.metrics.late_tick(symbol if symbol in self.rt.instruments else None)

    def _emitted(self, done: Effects) -> None:
        if self.rt.metrics is not None:
            for c in (c for e in done.parts.values() for c in e.candles):
                self.rt.metrics.candles_emitted(c.symbol, c.timeframe)

    async def on_timer(self) -> None:
        """Close the forming bars of quiet series, as far as the broker vouches the feed is quiet."""
        prog = self.consumer.progress
        facts = broker_facts(self.rt.app, prog.topic, self.idle.partitions(), prog.offsets)
        healthy, idle_s = self.consumer.healthy.is_set(), self.rt.settings.idle_close_s
        changed, closed = self.idle.close(self.pipeline, facts, now_s=time.monotonic(), idle_s=idle_s, healthy=healthy)
        self._dead_letter_quarantined()  # a quiet feed confirms no jump: released holds, or refused
        for p, syms in changed.items():  # issue 15: the series it changed go in the next checkpoint
            for sym in syms:
                prog.touch(p, sym)
        for p, bars in closed.items():  # a candle that cannot be encoded (a bug) is logged, left out
            self._queue(p, ((c, self._encoded(c)) for c in bars))

    def _encoded(self, c: Candle) -> bytes | None:
        info = {"symbol": c.symbol, "timeframe": c.timeframe, "open_ms": c.open_ms}
        return self.contain.guarded("candle.encode_failed", lambda: encode_candle(c), **info)
