"""The tick agent: decode → validate → aggregate → publish and store closed candles."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from typing import TYPE_CHECKING, Any

from faust.types import TP

from forex_diffusion.domain import Candle
from forex_diffusion.errors import ValidationError
from forex_diffusion.pipeline import TickPipeline
from forex_diffusion.wire import decode_tick, encode_candle, encode_tick
from retraining.failpoints import failpoint

from ..deadletter import Containment
from ..producer import send_all
from ..progress import PartitionProgress

if TYPE_CHECKING:
    from ..app import Runtime

__all__ = ["TickAgent"]

log = logging.getLogger(__name__)


FETCH_FRESH_MS = 5_000.0  # a fetch response older than this: the broker is not answering


def _last_fetch_ms(consumer: Any, tp: TP) -> float | None:
    """Wall-clock ms of the last fetch response for ``tp`` (aiokafka under Faust's consumer
    thread), or None where the consumer does not expose it."""
    try:
        ts = consumer._thread._consumer.last_poll_timestamp(tp)
    except Exception:  # noqa: BLE001 - another transport, or not assigned yet
        return None
    return None if ts is None else float(ts)


class TickAgent:
    """Consume ``fx.ticks``; emit final candles to ``fx.candles`` and the database."""

    consumer_name = "ticks"

    def __init__(self, rt: Runtime) -> None:
        s = rt.settings
        self.rt = rt
        self.pipeline = TickPipeline(
            timeframes=s.timeframes,
            instruments=rt.instruments,
            price=s.price,  # type: ignore[arg-type]
            allowed_lateness_ms=s.allowed_lateness_ms,
        )
        self.pending: dict[int, list[Candle]] = defaultdict(list)
        # the fx.candles value of each pending candle, encoded when it closed (same order)
        self.pending_wire: dict[int, list[bytes]] = defaultdict(list)
        self.symbols: dict[int, set[str]] = defaultdict(set)
        self.partition_of: dict[str, int] = {}
        self.last_arrival: dict[str, tuple[float, int]] = {}
        self.lock = asyncio.Lock()
        self.dead: list[tuple[Any, bytes, list[tuple[str, bytes]]]] = []
        self.contain = Containment(
            source="ticks",
            sink=lambda k, v, h: self.dead.append((k, v, h)),
            metrics=lambda: self.rt.metrics,
            on_refused=self._on_refused,
        )
        self.n_pending = 0
        self._flush_task: asyncio.Future[None] | None = None
        # cleared while checkpoints fail (database or broker down): the agent then stops
        # consuming — Kafka is the buffer — instead of piling up state it cannot persist
        self.healthy = asyncio.Event()
        self.healthy.set()
        self.failures = 0
        self.progress = PartitionProgress(
            app=rt.app,
            consumer=f"{s.app_id}:{self.consumer_name}",
            topic=s.topic("ticks"),
            engine=rt.engine,
            fatal_after_s=s.db_fatal_after_s,
            snapshot=lambda p: self.pipeline.snapshot(sorted(self.symbols.get(p, ()))),
            restore=self._restore,
            drop=self._drop,
        )
        self.processed = 0
        self._last_status = time.monotonic()

    def _restore(self, partition: int, state: dict[str, Any]) -> None:
        self.pipeline.restore(state)
        now = time.monotonic()
        # a series restored with only held ticks (its first ticks, awaiting confirmation) has no
        # aggregator series yet: it joins the idle timer too, which expires the hold
        held = {sym for sym, t in state.get("times", {}).items() if t.get("held")}
        for sym in set(state.get("aggregator", {}).get("series", {})) | held:
            self.symbols[partition].add(sym)
            self.partition_of[sym] = partition
            # a restored series may get no new tick at all (its feed ended before the crash):
            # its forming bars must still close on the idle timer, counted from the restore
            last_ms = self.pipeline.aggregator.last_event_ms(sym)
            if last_ms is None:
                last_ms = self.pipeline.event_time(sym)
            if last_ms is None and sym in held:
                last_ms = min(t for t, _ in state["times"][sym]["held"])
            if last_ms is not None and sym not in self.last_arrival:
                self.last_arrival[sym] = (now, last_ms)

    def _drop(self, partition: int) -> None:
        syms = sorted(self.symbols.pop(partition, set()))
        self.pipeline.drop(syms)
        for s in syms:
            self.partition_of.pop(s, None)
            self.last_arrival.pop(s, None)
        self.n_pending -= len(self.pending.pop(partition, []))
        self.pending_wire.pop(partition, None)

    def register(self) -> None:
        app, topics, s = self.rt.app, self.rt.topics, self.rt.settings

        @app.agent(topics["ticks"], name="forexd.ticks")
        async def ticks(stream: Any) -> None:
            async for event in stream.events():
                await self.handle(event.message)
                # yield to the background checkpoint now and then
                if self._flush_task is not None and not self._flush_task.done() and self.processed % 256 == 0:
                    await asyncio.sleep(0)

        @app.timer(interval=0.5)
        async def housekeeping() -> None:
            await self.on_timer()

        @app.on_partitions_assigned.connect
        async def _assigned(sender: Any, assigned: Any, **_: Any) -> None:
            await self.progress.on_assigned(app, assigned)

        @app.on_partitions_revoked.connect
        async def _revoked(sender: Any, revoked: Any, **_: Any) -> None:
            await self.progress.on_revoked(revoked, checkpoint=self.flush)

        @app.on_before_shutdown.connect
        async def _stopping(sender: Any, **_: Any) -> None:
            await self.progress.on_shutdown(self.flush)

        self._ticks_agent = ticks
        self._interval = s.snapshot_interval_s

    async def handle(self, msg: Any) -> None:
        """Process one message (never raises for bad input, never waits for I/O)."""
        p = msg.partition
        failpoint("after_consume_before_processing")
        if not self.healthy.is_set():
            await self.wait_healthy()
        if self.progress.restoring:
            await self.progress.restored(p)  # D15: never count into a state about to be restored
        if not self.progress.admit(p, msg.offset):
            return  # already reflected in the restored state
        # Containment (issue 13): whatever fails for this record -- decode, validation,
        # processing, encoding the candles it closed -- dead-letters it once, and we go on.
        try:
            self._process(msg, p)
        finally:
            # held ticks the pipeline gave up on (this record may itself have been refused)
            self._dead_letter_quarantined(msg.topic)
        self.progress.mark(p, msg.offset)

    def _process(self, msg: Any, p: int) -> None:
        with self.contain.record(msg) as rec:
            tick = decode_tick(
                msg.value, key=msg.key, instruments=self.rt.instruments, max_bytes=self.rt.settings.max_message_bytes
            )
            rec.symbol = sym = tick.symbol
            rec.stage = "process"
            closed = self.pipeline.process(tick, now_ms=int(time.time() * 1000), ref=[p, msg.offset])
            rec.stage = "encode"
            wire = [encode_candle(c) for c in closed]
            rec.stage = "account"
            if self.partition_of.get(sym) != p:
                self.partition_of[sym] = p
                self.symbols[p].add(sym)
            # the idle timer counts from the series' time: a held far-future tick is not it
            ev = self.pipeline.event_time(sym)
            self.last_arrival[sym] = (time.monotonic(), tick.ts_ms if ev is None else ev)
            if closed:
                self.pending[p].extend(closed)
                self.pending_wire[p].extend(wire)
                self.n_pending += len(closed)
            m = self.rt.metrics
            if m is not None:
                m.ticks_processed(sym)
                m.feed_seen(sym, tick.ts_ms / 1000.0)
                if tick.bid >= tick.ask:  # accepted crossed (within tolerance) or locked quote
                    m.quote_flagged(sym, "crossed" if tick.bid > tick.ask else "locked")
        self.processed += 1
        if self.n_pending >= 1000:
            self.schedule_flush()

    def dead_letter(self, msg: Any, exc: ValidationError, symbol: str | None = None) -> None:
        """Queue the refused message for ``fx.deadletter`` with its reason and origin."""
        self.contain.fail(msg, exc, stage="validate", symbol=symbol)

    def _dead_letter_quarantined(self, topic: str) -> None:
        """Dead-letter held ticks that were not confirmed (B9 price jumps, far-future event
        times), with their own origin."""
        for q in self.pipeline.take_quarantined():
            qp, qoff = q.ref
            self.contain.refuse(
                topic=topic,
                partition=qp,
                offset=qoff,
                raw=encode_tick(q.tick),
                key=q.symbol.encode(),
                symbol=q.symbol,
                error=ValidationError(q.reason, q.detail),
            )

    def _on_refused(self, exc: ValidationError, symbol: str | None) -> None:
        m = self.rt.metrics
        if m is not None and exc.reason.value == "late":
            m.late_tick(symbol if symbol in self.rt.instruments else None)

    def _queue_idle_closed(self, p: int, closed: list[Candle]) -> None:
        """Queue candles the idle timer closed (no record to dead-letter: a candle that cannot
        be encoded -- a bug -- is logged at ERROR, counted and left out)."""
        for c in closed:
            try:
                value = encode_candle(c)
            except Exception as exc:  # noqa: BLE001 - contained: the timer goes on
                self.contain.internal_errors += 1
                log.error(
                    "candle.encode_failed symbol=%s timeframe=%s open_ms=%d error=%s",
                    c.symbol,
                    c.timeframe,
                    c.open_ms,
                    type(exc).__name__,
                    exc_info=exc,
                )
                continue
            self.pending[p].append(c)
            self.pending_wire[p].append(value)
            self.n_pending += 1

    async def on_timer(self) -> None:
        """Close candles of idle series on wall-clock time; checkpoint periodically."""
        now = time.monotonic()
        idle_s = self.rt.settings.idle_close_s
        behind = self._behind_partitions()
        for sym, (wall, event_ms) in list(self.last_arrival.items()):
            if sym in self.partition_of and self.partition_of[sym] in behind:
                # the feed is not quiet, this worker is behind it (paused while checkpoints
                # fail, or slow): its next ticks are already in the log, so the quiet time
                # counts only from when it has caught up again
                self.last_arrival[sym] = (now, event_ms)
                continue
            # quiet only as far as the broker vouches for it: after its last fetch response
            # the feed is unknown (a broker killed right after it answered is not a quiet feed)
            idle = now - wall - self._unanswered_s(self.partition_of.get(sym))
            if idle >= idle_s:
                if self.pipeline.expire_hold(sym):  # a quiet feed confirms no jump
                    self._dead_letter_quarantined(self.progress.topic)
                    self.progress.dirty.add(self.partition_of[sym])
                closed = self.pipeline.advance(sym, event_ms + int(idle * 1000))
                if closed:
                    p = self.partition_of[sym]
                    self._queue_idle_closed(p, closed)
                    self.progress.dirty.add(p)
        if self.n_pending or self.dead or (self.progress.dirty and now - self.progress.last_save >= self._interval):
            self.schedule_flush()
        if now - self._last_status >= self.rt.settings.status_interval_s > 0:
            self._last_status = now
            flushing = self._flush_task is not None and not self._flush_task.done()
            log.info(
                "ticks.status processed=%d offsets=%s pending=%d dead=%d healthy=%s failures=%d flushing=%s",
                self.processed,
                dict(sorted(self.progress.offsets.items())),
                self.n_pending,
                len(self.dead),
                self.healthy.is_set(),
                self.failures,
                flushing,
            )

    def _unanswered_s(self, partition: int | None) -> float:
        """Seconds since the broker last answered a fetch for ``partition`` (0 when unknown)."""
        consumer = getattr(self.rt.app, "consumer", None)
        if consumer is None or partition is None:
            return 0.0
        polled = _last_fetch_ms(consumer, TP(self.progress.topic, partition))
        return 0.0 if polled is None else max(0.0, (time.time() * 1000.0 - polled) / 1000.0)

    def _behind_partitions(self) -> set[int]:
        """Partitions whose log holds ticks this worker has not processed yet.

        A series is idle only when its *feed* is quiet. While the agent is paused (database
        or broker down) or lags, wall-clock time passes without the feed being quiet, and
        closing a bar then would refuse its own remaining ticks as late. The broker's
        high-water mark from the last fetch tells the two apart; unknown means behind.
        """
        parts = set(self.partition_of.values())
        if not self.healthy.is_set():
            return parts
        consumer = getattr(self.rt.app, "consumer", None)
        if consumer is None:
            return set()
        behind = set()
        now_ms = time.time() * 1000.0
        for p in parts:
            tp = TP(self.progress.topic, p)
            try:
                hw = consumer.highwater(tp)
            except Exception:  # noqa: BLE001 - no assignment or no fetch yet: not known to be caught up
                hw = None
            last = self.progress.offsets.get(p)
            if hw is None or last is None or last + 1 < hw:
                behind.add(p)
                continue
            # the high-water mark is only as fresh as the last fetch response: while the broker
            # does not answer (paused, restarting) the feed is not known to be quiet
            polled = _last_fetch_ms(consumer, tp)
            if polled is not None and now_ms - polled > FETCH_FRESH_MS:
                behind.add(p)
        return behind

    def schedule_flush(self) -> None:
        """Start a background checkpoint unless one is already running (the agent never waits)."""
        if self._flush_task is None or self._flush_task.done():
            self._flush_task = asyncio.ensure_future(self.flush())

    async def flush(self) -> None:
        """Checkpoint: capture state+offsets now, publish the candles and dead letters they
        imply, wait for the broker's acks, then write state, offsets and candles in one DB
        transaction. Offsets are never stored ahead of their effects."""
        async with self.lock:
            self._dead_letter_quarantined(self.progress.topic)  # none may wait past this checkpoint
            pending, self.pending = self.pending, defaultdict(list)
            wire, self.pending_wire = self.pending_wire, defaultdict(list)
            dead, self.dead = self.dead, []
            self.n_pending = 0
            captured = self.progress.capture(pending.keys())
            if not captured and not dead:
                self.healthy.set()
                return
            try:
                await self._publish_and_persist(pending, wire, dead, captured)
            except Exception as exc:  # noqa: BLE001 - any failure: keep everything, retry, back off
                for p, cs in pending.items():
                    self.pending[p][:0] = cs
                    self.pending_wire[p][:0] = wire.get(p, [])
                    self.n_pending += len(cs)
                self.dead[:0] = dead
                self.progress.dirty |= set(captured)
                self.failures += 1
                self.healthy.clear()
                log.warning(
                    "checkpoint.failed attempt=%d error=%s: %s",
                    self.failures,
                    type(exc).__name__,
                    str(exc).splitlines()[0][:200] if str(exc) else "",
                )
                self.progress.checkpoint_failed(exc)  # F14: a lasting permanent storage error exits
                if self.rt.metrics is not None:
                    self.rt.metrics.circuit_state("database", "open")
                await asyncio.sleep(min(30.0, 0.25 * 2 ** min(self.failures, 7)))
                return
            if self.failures:
                log.warning("checkpoint.recovered after=%d failures", self.failures)
                if self.rt.metrics is not None:
                    self.rt.metrics.circuit_state("database", "closed")
            self.failures = 0
            self.healthy.set()

    async def wait_healthy(self) -> None:
        """Hold consumption until a checkpoint succeeds again (retried in the background)."""
        while not self.healthy.is_set():
            self.schedule_flush()
            try:
                await asyncio.wait_for(self.healthy.wait(), timeout=1.0)
            except TimeoutError:
                continue

    async def _publish_and_persist(
        self, pending: dict[int, list[Candle]], wire: dict[int, list[bytes]], dead: list[Any], captured: dict[int, Any]
    ) -> None:
        topic, dl_topic = self.rt.topics["candles"], self.rt.topics["deadletter"]
        records = [(dl_topic, key, value, headers) for key, value, headers in dead]
        # encoded when they closed (never at flush: a value that cannot be encoded must not
        # wedge the checkpoint, issue 13 finding 3)
        records += [
            (topic, c.symbol.encode(), value, None)
            for p, cs in pending.items()
            for c, value in zip(cs, wire.get(p, []), strict=True)
        ]
        await send_all(self.rt, records)
        effects = {p: (cs, ()) for p, cs in pending.items() if cs}
        await self.progress.persist(captured, effects)
        failpoint("after_db_upsert_before_commit")
        m = self.rt.metrics
        if m is not None:
            for cs in pending.values():
                for c in cs:
                    m.candles_emitted(c.symbol, c.timeframe)
