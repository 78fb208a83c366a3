"""The tick agent: decode → validate → aggregate → publish and store closed candles."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from typing import TYPE_CHECKING, Any

from forex_diffusion.codec import decode_tick, encode_candle
from forex_diffusion.domain import Candle
from forex_diffusion.errors import ValidationError
from forex_diffusion.pipeline import TickPipeline

from ..deadletter import dead_letter_headers, dead_letter_record
from retraining.failpoints import failpoint
from ..progress import PartitionProgress

if TYPE_CHECKING:
    from ..app import Runtime

__all__ = ["TickAgent"]

log = logging.getLogger(__name__)


class TickAgent:
    """Consume ``fx.ticks``; emit final candles to ``fx.candles`` and the database."""

    consumer_name = "ticks"

    def __init__(self, rt: Runtime) -> None:
        s = rt.settings
        self.rt = rt
        self.pipeline = TickPipeline(
            timeframes=s.timeframes, instruments=rt.instruments, price=s.price,  # type: ignore[arg-type]
            allowed_lateness_ms=s.allowed_lateness_ms,
        )
        self.pending: dict[int, list[Candle]] = defaultdict(list)
        self.symbols: dict[int, set[str]] = defaultdict(set)
        self.partition_of: dict[str, int] = {}
        self.last_arrival: dict[str, tuple[float, int]] = {}
        self.lock = asyncio.Lock()
        self.sends: list[Any] = []
        self.progress = PartitionProgress(
            consumer=f"{s.app_id}:{self.consumer_name}", topic=s.topic("ticks"), engine=rt.engine,
            snapshot=lambda p: self.pipeline.snapshot(sorted(self.symbols.get(p, ()))),
            restore=self._restore, drop=self._drop,
        )
        self.processed = 0

    def _restore(self, partition: int, state: dict[str, Any]) -> None:
        self.pipeline.restore(state)
        for sym in state.get("aggregator", {}).get("series", {}):
            self.symbols[partition].add(sym)
            self.partition_of[sym] = partition

    def _drop(self, partition: int) -> None:
        syms = sorted(self.symbols.pop(partition, set()))
        self.pipeline.drop(syms)
        for s in syms:
            self.partition_of.pop(s, None)
            self.last_arrival.pop(s, None)
        self.pending.pop(partition, None)

    def register(self) -> None:
        app, topics, s = self.rt.app, self.rt.topics, self.rt.settings

        @app.agent(topics["ticks"], name="forexd.ticks")
        async def ticks(stream: Any) -> None:
            async for event in stream.events():
                await self.handle(event.message)

        @app.timer(interval=0.5)
        async def housekeeping() -> None:
            await self.on_timer()

        @app.on_partitions_assigned.connect
        async def _assigned(sender: Any, assigned: Any, **_: Any) -> None:
            await self.progress.on_assigned(app, assigned)

        @app.on_partitions_revoked.connect
        async def _revoked(sender: Any, revoked: Any, **_: Any) -> None:
            await self.flush()
            await self.progress.on_revoked(revoked)

        self._ticks_agent = ticks
        self._interval = s.snapshot_interval_s

    async def handle(self, msg: Any) -> None:
        """Process one message (never raises for bad input)."""
        p = msg.partition
        failpoint("after_consume_before_processing")
        try:
            tick = decode_tick(msg.value, key=msg.key, instruments=self.rt.instruments,
                               max_bytes=self.rt.settings.max_message_bytes)
            closed = self.pipeline.process(tick, now_ms=int(time.time() * 1000))
        except ValidationError as exc:
            await self.dead_letter(msg, exc)
        else:
            sym = tick.symbol
            if self.partition_of.get(sym) != p:
                self.partition_of[sym] = p
                self.symbols[p].add(sym)
            self.last_arrival[sym] = (time.monotonic(), tick.ts_ms)
            if closed:
                self.pending[p].extend(closed)
            m = self.rt.metrics
            if m is not None:
                m.ticks_processed(sym)
                m.feed_seen(sym, tick.ts_ms / 1000.0)
        self.progress.mark(p, msg.offset)
        self.processed += 1
        if time.monotonic() - self.progress.last_save >= self._interval or sum(map(len, self.pending.values())) >= 1000:
            await self.flush()

    async def dead_letter(self, msg: Any, exc: ValidationError) -> None:
        """Send the refused message to ``fx.deadletter`` with its reason and origin."""
        value = dead_letter_record(topic=msg.topic, partition=msg.partition, offset=msg.offset,
                                   raw=msg.value, key=msg.key, error=exc)
        headers = dead_letter_headers(topic=msg.topic, partition=msg.partition, offset=msg.offset, error=exc)
        fut = await self.rt.topics["deadletter"].send(key=msg.key, value=value, headers=headers)
        self.sends.append(fut)
        m = self.rt.metrics
        if m is not None:
            m.dead_letter("ticks", exc.reason.value)
            if exc.reason.value == "late":
                m.late_tick(None)
        log.debug("deadletter reason=%s partition=%d offset=%d", exc.reason.value, msg.partition, msg.offset)

    async def on_timer(self) -> None:
        """Close candles of idle series on wall-clock time; checkpoint periodically."""
        now = time.monotonic()
        idle_s = self.rt.settings.idle_close_s
        for sym, (wall, event_ms) in list(self.last_arrival.items()):
            idle = now - wall
            if idle >= idle_s:
                closed = self.pipeline.advance(sym, event_ms + int(idle * 1000))
                if closed:
                    p = self.partition_of[sym]
                    self.pending[p].extend(closed)
                    self.progress.dirty.add(p)
        if any(self.pending.values()) or (self.progress.dirty and now - self.progress.last_save >= self._interval):
            await self.flush()

    async def flush(self) -> None:
        """Publish pending candles, wait for the broker's acks, then checkpoint with the DB upserts."""
        async with self.lock:
            pending, self.pending = self.pending, defaultdict(list)
            topic = self.rt.topics["candles"]
            sends, self.sends = self.sends, []
            for candles in pending.values():
                for c in candles:
                    sends.append(await topic.send(key=c.symbol.encode(), value=encode_candle(c)))
            if sends:
                failpoint("during_output_send")
                await asyncio.gather(*sends)
            effects = {p: (cs, ()) for p, cs in pending.items() if cs}
            for p in effects:
                self.progress.dirty.add(p)
            if not self.progress.dirty:
                return
            await self.progress.save(effects)
            failpoint("after_db_upsert_before_commit")
            m = self.rt.metrics
            if m is not None:
                for cs in pending.values():
                    for c in cs:
                        m.candles_emitted(c.symbol, c.timeframe)
