"""The checkpointing consumer: what every stateful agent shares, written once.

An agent is decode → core step → effects. :class:`CheckpointingConsumer` owns the rest:

- per-partition progress (:class:`~streams.progress.PartitionProgress`, handed the agent's
  per-partition state functions ``snapshot``, ``restore`` and ``drop``);
- the effects buffer (:class:`Effects`): the records to publish -- dead letters included,
  built by the one :class:`~streams.deadletter.Containment` -- and the rows to store with
  the checkpoint (candles, forecasts, drift events, shadow score rows), per partition;
- the checkpoint (:meth:`~CheckpointingConsumer.flush`): capture state and offsets, publish
  the records and wait for the broker's acknowledgements, then write state, offsets and rows
  in one database transaction. Offsets are never stored ahead of their effects;
- back-off and the health gate: while checkpoints fail, consumption stops (Kafka is the
  buffer), ``forexd_circuit_state{dependency="database"}`` is open and each failure is
  logged (``checkpoint.failed``, then ``checkpoint.recovered``);
- the rebalance and shutdown hooks, and a periodic ``<name>.status`` line.

:class:`SeriesAgent` is the base of the agents whose state is kept per series (ticks, candles):
it hands their consumer the per-series checkpoint functions (issue 15) built on the series of
each partition.

:class:`Outbox` is the same buffer for a consumer that keeps no checkpoint (the retrain
agent): its dead letters are acknowledged before the stream moves past their record.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, fields
from typing import Any

from forex_diffusion.errors import ValidationError
from retraining.failpoints import failpoint

from .deadletter import Containment, DeadLetter
from .producer import send_all
from .progress import PartitionProgress

__all__ = ["CheckpointingConsumer", "Effects", "Outbox", "PartitionEffects", "SeriesAgent", "backoff_s"]

log = logging.getLogger(__name__)

Record = tuple[str, bytes | None, bytes]  # (topic kind, key, value)


def backoff_s(failures: int) -> float:
    """The pause after the ``failures``-th failure in a row: 0.5 s doubling up to 30 s."""
    return min(30.0, 0.25 * 2.0 ** min(failures, 7))


@dataclass
class PartitionEffects:
    """What one partition's next checkpoint publishes (``records``) and stores (the rest)."""

    records: list[Record] = field(default_factory=list)
    candles: list[Any] = field(default_factory=list)
    forecasts: list[dict[str, Any]] = field(default_factory=list)
    drift: list[Any] = field(default_factory=list)
    shadow: list[dict[str, Any]] = field(default_factory=list)

    def rows(self) -> tuple[list[Any], ...]:
        """``(candles, forecasts, drift events, shadow score rows)``, as the checkpoint stores them."""
        return (self.candles, self.forecasts, self.drift, self.shadow)

    def put_back(self, older: PartitionEffects) -> None:
        """Put an older (failed) checkpoint's effects first."""
        for f in fields(self):
            getattr(self, f.name)[:0] = getattr(older, f.name)


class Effects:
    """The effects buffer: what the next checkpoint publishes and stores.

    ``dead`` holds dead letters (``(key, value, headers)``, the sink of the consumer's
    :class:`~streams.deadletter.Containment`) and ``out`` records of no partition
    (``(topic kind, key, value)``): both outlive a revoke. ``parts`` holds each partition's
    own (:class:`PartitionEffects`), forgotten with the partition.
    """

    def __init__(self) -> None:
        self.dead: list[DeadLetter] = []
        self.out: list[Record] = []
        self.parts: dict[int, PartitionEffects] = {}

    def at(self, partition: int) -> PartitionEffects:
        """The effects of ``partition`` (created empty)."""
        e = self.parts.get(partition)
        if e is None:
            e = self.parts[partition] = PartitionEffects()
        return e

    def publish(self, kind: str, key: bytes | None, value: bytes) -> None:
        """Queue a record for the topic of ``kind`` (``forecasts``, ``models``, ...)."""
        self.out.append((kind, key, value))

    def dead_letter(self, key: bytes | None, value: bytes, headers: list[tuple[str, bytes]]) -> None:
        """Queue a dead letter for ``fx.deadletter``."""
        self.dead.append((key, value, headers))

    @property
    def n_records(self) -> int:
        """Records queued, dead letters aside."""
        return len(self.out) + sum(len(e.records) for e in self.parts.values())

    def __bool__(self) -> bool:
        return bool(self.dead or self.out or any(e.records for e in self.parts.values()))

    def take(self) -> Effects:
        """Everything queued, as a new buffer; this one starts empty."""
        taken = Effects()
        taken.dead, self.dead = self.dead, []
        taken.out, self.out = self.out, []
        taken.parts, self.parts = self.parts, {}
        return taken

    def give_back(self, older: Effects) -> None:
        """A failed checkpoint: its effects go first into the next one."""
        self.dead[:0] = older.dead
        self.out[:0] = older.out
        for p, e in older.parts.items():
            self.at(p).put_back(e)

    def drop(self, partition: int) -> None:
        """Forget a revoked partition's effects (its next owner replays them)."""
        self.parts.pop(partition, None)

    def records(self, topics: dict[str, Any]) -> list[tuple[Any, bytes | None, bytes, Any]]:
        """``(topic, key, value, headers)`` of every record, dead letters first."""
        dl = topics["deadletter"] if self.dead else None
        out: list[tuple[Any, bytes | None, bytes, Any]] = [(dl, k, v, h) for k, v, h in self.dead]
        out += [(topics[kind], k, v, None) for kind, k, v in self.out]
        out += [(topics[kind], k, v, None) for e in self.parts.values() for kind, k, v in e.records]
        return out

    def rows(self) -> dict[int, tuple[list[Any], ...]]:
        """The rows to store, by partition."""
        return {p: e.rows() for p, e in self.parts.items()}


class CheckpointingConsumer:
    """One stateful consumer of the topic ``fx.<name>``: progress, effects, checkpoints, health.

    Parameters
    ----------
    rt
        The worker's :class:`~streams.app.Runtime`.
    name
        The topic kind consumed (``ticks``, ``candles``): the checkpoint's consumer name, the
        dead-letter metric's source and the status line's prefix.
    snapshot, restore, drop, series
        The agent's per-partition state functions, handed to
        :class:`~streams.progress.PartitionProgress` as they are (``series``: per-series
        checkpoints, issue 15).
    flush_at
        Records queued that start a checkpoint at once (else the timer does).
    before_capture
        Called right before each checkpoint takes the buffer (queue what may not wait).
    on_persisted
        Called with the effects of each checkpoint once durable.
    on_refused
        Called with ``(error, symbol)`` after each dead letter.
    """

    def __init__(
        self,
        rt: Any,
        *,
        name: str,
        snapshot: Callable[..., dict[str, Any]],
        restore: Callable[[int, dict[str, Any]], None],
        drop: Callable[[int], None],
        series: Callable[[int], Iterable[str]] | None = None,
        flush_at: int = 1000,
        before_capture: Callable[[], None] | None = None,
        on_persisted: Callable[[Effects], None] | None = None,
        on_refused: Callable[[ValidationError, str | None], None] | None = None,
    ) -> None:
        s = rt.settings
        self.rt = rt
        self.name = name
        self.flush_at = flush_at
        self.before_capture = before_capture
        self.on_persisted = on_persisted
        self.effects = Effects()
        self.contain = Containment(
            source=name, sink=self.effects.dead_letter, metrics=lambda: self.rt.metrics, on_refused=on_refused
        )
        self.progress = PartitionProgress(
            app=rt.app,
            consumer=f"{s.app_id}:{name}",
            topic=s.topic(name),
            engine=rt.engine,
            fatal_after_s=s.db_fatal_after_s,
            snapshot=snapshot,
            restore=restore,
            drop=drop,
            series=series,  # issue 15: per-series checkpoints (see PartitionProgress)
        )
        # cleared while checkpoints fail (database or broker down): consumption stops --
        # Kafka is the buffer -- instead of piling up state it cannot persist
        self.healthy = asyncio.Event()
        self.healthy.set()
        # cleared inside a step: a checkpoint captures state only between steps, never while a
        # batch is half done (its state advanced but its effects not queued yet)
        self._between = asyncio.Event()
        self._between.set()
        self._step_revocations: dict[int, int] = {}  # the partitions' revocations when the step began
        self._lock = asyncio.Lock()
        self._flush_task: asyncio.Future[None] | None = None
        self.failures = 0
        self.processed = 0
        self._last_status = time.monotonic()

    # -- the stream ------------------------------------------------------------------------------

    async def wait_healthy(self) -> None:
        """Hold consumption until a checkpoint succeeds again (retried in the background)."""
        while not self.healthy.is_set():
            self.schedule_flush()
            try:
                await asyncio.wait_for(self.healthy.wait(), timeout=1.0)
            except TimeoutError:
                continue

    @asynccontextmanager
    async def step(self) -> AsyncIterator[None]:
        """Process a batch: wait while checkpoints fail, and let no checkpoint capture inside."""
        await self.wait_healthy()
        self._between.clear()
        self._step_revocations = dict(self.progress.revocations)
        try:
            yield
        finally:
            self._between.set()
        if self.effects.n_records >= self.flush_at:
            self.schedule_flush()

    async def admit(self, msg: Any) -> bool:
        """Whether ``msg`` is new (past the restored state). Outside a :meth:`step` it first
        waits while checkpoints fail; it always waits for its partition's restore (D15:
        never count into a state about to be restored)."""
        await self.admissible(msg)
        return self.current(msg.partition) and self.progress.admit(msg.partition, msg.offset, msg)

    async def admissible(self, msg: Any) -> None:
        """The waits of :meth:`admit`, without its answer: a caller holding records of an older
        generation checks them again after waiting (a rebalance may have come meanwhile)."""
        if not self.healthy.is_set() and self._between.is_set():
            await self.wait_healthy()
        if self.progress.restoring:
            await self.progress.restored(msg.partition)

    def admit_now(self, msg: Any) -> bool | None:
        """:meth:`admit` where it would not wait; None where it would (checkpoints failing
        outside a :meth:`step`, or ``msg``'s partition being restored): await :meth:`admissible` and ask again."""
        if (not self.healthy.is_set() and self._between.is_set()) or msg.partition in self.progress.restoring:
            return None
        return self.current(msg.partition) and self.progress.admit(msg.partition, msg.offset, msg)

    def current(self, partition: int) -> bool:
        """Whether ``partition`` is this worker's, and inside a :meth:`step` still by the
        assignment the step began under: a batch in hand across a revoke (which does not wait
        for the step past its bound) is the old assignment's, even when the partition was
        assigned to this worker again and restored meanwhile -- its next owner replays it."""
        p = self.progress
        if partition in p.revoked or partition in p.fenced:
            return False
        return not self.busy or p.revocations.get(partition, 0) == self._step_revocations.get(partition, 0)

    def mark(self, msg: Any) -> None:
        """``msg`` is processed (its effects queued); start a checkpoint when enough wait."""
        self.progress.mark(msg.partition, msg.offset, record=msg)  # its fingerprint goes with the checkpoint
        self.processed += 1
        if self._between.is_set() and self.effects.n_records >= self.flush_at:
            self.schedule_flush()

    @property
    def busy(self) -> bool:
        """Inside a :meth:`step`."""
        return not self._between.is_set()

    @property
    def flushing(self) -> bool:
        return self._flush_task is not None and not self._flush_task.done()

    # -- checkpoints -----------------------------------------------------------------------------

    def schedule_flush(self) -> None:
        """Start a background checkpoint unless one is already running (the agent never waits)."""
        if not self.flushing:
            self._flush_task = asyncio.ensure_future(self.flush())

    async def flush(self) -> None:
        """Checkpoint: capture state and offsets now, publish the records they imply and wait
        for the broker's acks, then write state, offsets and rows in one transaction. On any
        failure everything is kept for the next attempt, consumption pauses, and it backs off."""
        async with self._lock:
            while not self._between.is_set():  # woken by set(), a new step may have begun since
                await self._between.wait()
            # no await between here and capture(): state, offsets and effects agree
            if self.before_capture is not None:
                self.before_capture()
            taken = self.effects.take()
            captured = self.progress.capture(taken.parts.keys())
            if not captured and not taken:
                self.healthy.set()
                return
            try:
                await send_all(self.rt, taken.records(self.rt.topics))
                await self.progress.persist(captured, taken.rows())
                failpoint("after_db_upsert_before_commit")
            except asyncio.CancelledError:  # a bounded revoke or shutdown gave up on it: keep everything
                self.effects.give_back(taken)
                self.progress.dirty |= set(captured)
                raise
            except Exception as exc:  # noqa: BLE001 - any failure: keep everything, retry, back off
                self.effects.give_back(taken)
                self.progress.dirty |= set(captured)
                await self._failed(exc)
                return
            if self.failures:
                log.warning("checkpoint.recovered consumer=%s after=%d failures", self.name, self.failures)
                self._circuit("closed")
            self.failures = 0
            self.healthy.set()
        if self.on_persisted is not None:
            try:
                self.on_persisted(taken)
            except Exception:  # noqa: BLE001 - the checkpoint is durable; what follows it never undoes that
                log.exception("checkpoint.after_failed consumer=%s", self.name)

    async def _failed(self, exc: Exception) -> None:
        self.failures += 1
        self.healthy.clear()
        text = str(exc).splitlines()[0][:200] if str(exc) else ""
        log.warning(
            "checkpoint.failed consumer=%s attempt=%d error=%s: %s", self.name, self.failures, type(exc).__name__, text
        )
        self.progress.checkpoint_failed(exc)  # F14: a lasting permanent storage error exits
        self._circuit("open")
        await asyncio.sleep(backoff_s(self.failures))

    def _circuit(self, state: str) -> None:
        if self.rt.metrics is not None:
            self.rt.metrics.circuit_state("database", state)

    # -- the worker ------------------------------------------------------------------------------

    def register(self, app: Any, *, timer_s: float, on_timer: Callable[[], Awaitable[None]] | None = None) -> None:
        """Connect the rebalance and shutdown hooks, and a timer (``on_timer``, then :meth:`tick`)."""

        async def timer() -> None:
            if on_timer is not None:
                await on_timer()
            self.tick()

        app.timer(interval=timer_s, name=f"forexd.{self.name}.timer")(timer)

        app.on_partitions_assigned.connect(self._assigned)
        app.on_partitions_revoked.connect(self._revoked)
        app.on_before_shutdown.connect(self._stopping)

    async def _assigned(self, sender: Any, assigned: Any, **_: Any) -> None:
        await self.progress.on_assigned(self.rt.app, assigned)

    async def _revoked(self, sender: Any, revoked: Any, **_: Any) -> None:
        await self.progress.on_revoked(revoked, checkpoint=self.flush)
        for tp in revoked:
            if tp.topic == self.progress.topic:
                self.effects.drop(tp.partition)

    async def _stopping(self, sender: Any, **_: Any) -> None:
        await self.progress.on_shutdown(self.flush)

    def tick(self) -> None:
        """Checkpoint what waits (effects, or state past the snapshot interval); log the status."""
        now = time.monotonic()
        s = self.rt.settings
        if self.effects or (self.progress.dirty and now - self.progress.last_save >= s.snapshot_interval_s):
            self.schedule_flush()
        if now - self._last_status >= s.status_interval_s > 0:
            self._last_status = now
            log.info(
                "%s.status processed=%d offsets=%s pending=%d dead=%d healthy=%s failures=%d flushing=%s",
                self.name,
                self.processed,
                dict(sorted(self.progress.offsets.items())),
                self.effects.n_records,
                len(self.effects.dead),
                self.healthy.is_set(),
                self.failures,
                self.flushing,
            )


class SeriesAgent:
    """An agent whose state is kept, and checkpointed, per series (issue 15).

    ``symbols`` holds the series of each partition. A subclass writes what is its own: the
    state of one series (:meth:`_series_state`, None where it has none), restoring one
    checkpointed state (:meth:`_restore_series`: a series', or the whole state of an older
    checkpoint) and forgetting a revoked partition (:meth:`_drop`); :meth:`_checkpointed`
    builds its :class:`CheckpointingConsumer` on them.
    """

    consumer: CheckpointingConsumer
    contain: Containment
    effects: Effects

    def __init__(self) -> None:
        self.symbols: dict[int, set[str]] = defaultdict(set)

    def _checkpointed(self, rt: Any, *, name: str, **hooks: Any) -> None:
        """Consume ``fx.<name>`` through a :class:`CheckpointingConsumer` of this state;
        ``hooks`` are its other keywords (``flush_at``, ``on_persisted``, ...)."""
        self.consumer = CheckpointingConsumer(
            rt,
            name=name,
            snapshot=self._snapshot,
            restore=self._restore,
            drop=self._drop,
            series=self._series,  # a checkpoint writes the series it changed
            **hooks,
        )
        self.contain, self.effects = self.consumer.contain, self.consumer.effects

    def _series(self, partition: int) -> Iterable[str]:
        return self.symbols.get(partition, ())

    def _snapshot(self, partition: int, series: Iterable[str]) -> dict[str, Any]:
        """The state of each series of ``series`` still here that has one."""
        held = self.symbols.get(partition, ())
        return {s: state for s in series if s in held and (state := self._series_state(s)) is not None}

    def _restore(self, partition: int, parts: dict[str, Any]) -> None:
        for state in parts.values():  # one per series (or the whole state of an older checkpoint)
            self._restore_series(partition, state)

    def _series_state(self, symbol: str) -> Any:
        raise NotImplementedError

    def _restore_series(self, partition: int, state: dict[str, Any]) -> None:
        raise NotImplementedError

    def _drop(self, partition: int) -> None:
        raise NotImplementedError


class Outbox:
    """Dead letters of a consumer that keeps no checkpoint, acknowledged before it moves on.

    The record's offset is committed by Faust once the agent takes the next one; the agent
    awaits :meth:`deliver` first, so no dead letter is lost with a crash (at-least-once).
    """

    def __init__(
        self, rt: Any, *, name: str, on_refused: Callable[[ValidationError, str | None], None] | None = None
    ) -> None:
        self.rt = rt
        self.name = name
        self.effects = Effects()
        self.contain = Containment(
            source=name, sink=self.effects.dead_letter, metrics=lambda: self.rt.metrics, on_refused=on_refused
        )
        self.failures = 0

    async def deliver(self) -> None:
        """Send what is queued and wait for the acks; retried with back-off until they come."""
        while self.effects:
            taken = self.effects.take()
            try:
                await send_all(self.rt, taken.records(self.rt.topics))
            except Exception as exc:  # noqa: BLE001 - the broker is down: wait, as the stream does
                self.effects.give_back(taken)
                self.failures += 1
                log.warning(
                    "outbox.send_failed consumer=%s attempt=%d error=%s", self.name, self.failures, type(exc).__name__
                )
                await asyncio.sleep(backoff_s(self.failures))
            else:
                self.failures = 0
