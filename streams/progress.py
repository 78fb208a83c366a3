"""Per-partition progress of a stateful consumer, stored with its effects in the database.

The consumer's state for a partition and the offset it reflects are saved in one
transaction (with the candle/forecast upserts they caused, after the output messages are
acknowledged by the broker). When partitions are assigned, the state is restored and the
consumer seeks to ``offset + 1``: Kafka is the log, the database is the checkpoint.

Issue 15: the state is stored per series. The agent marks which series a record or a
timer changed (:meth:`PartitionProgress.mark`, :meth:`PartitionProgress.touch`); a
checkpoint writes only those (``snapshot(partition, series) -> {series: state}``), and the
restore assembles the partition from its parts (``restore(partition, {series: state})``; a
row written before the parts existed arrives whole, as the part :data:`WHOLE_STATE`). Each
write carries the epoch its owner claimed when it was assigned the partition: a worker that
lost the partition (paused, evicted) is refused (:class:`StaleOwnerError`), drops the
partition's state and stops writing it. The checkpoint remembers a fingerprint of the record
at its offset; the group's committed offset is that record's, so a restarted worker reads it
again first and tells a reset or recreated log from the one it checkpointed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

from faust.types import TP
from sqlalchemy.exc import DBAPIError

from forex_diffusion.errors import PermanentStorageError, StaleOwnerError, StateError, StorageError
from forex_diffusion.storage import Checkpoint, claim_progress, load_snapshot, save_progress
from forex_diffusion.storage.retry import classify
from retraining.failpoints import fires

__all__ = ["EXIT_STATE_REFUSED", "EXIT_STORAGE_FATAL", "WHOLE_STATE", "PartitionProgress", "record_fingerprint"]

log = logging.getLogger(__name__)

T = TypeVar("T")

EXIT_STORAGE_FATAL = 74  # sysexits EX_IOERR: the database refuses writes for good
EXIT_STATE_REFUSED = 65  # sysexits EX_DATAERR: a state failed its signature (issue 13), or cannot be written
FATAL_MIN_ATTEMPTS = 3  # a permanent storage error is fatal only after this many checkpoints failed with it

#: The part under which a checkpoint written before issue 15 (one whole state) is restored.
WHOLE_STATE = ""


def record_fingerprint(record: Any) -> str:
    """A short digest of a record's key, value and timestamp (what tells two logs apart)."""
    h = hashlib.sha256()
    for v in (getattr(record, "key", None), getattr(record, "value", None)):
        b = v if isinstance(v, bytes) else b"" if v is None else str(v).encode()
        h.update(len(b).to_bytes(8, "big"))
        h.update(b)
    ts = getattr(record, "timestamp", None)
    h.update(b"-" if ts is None else str(round(float(ts) * 1000)).encode())
    return h.hexdigest()[:32]


@dataclass
class _Delta:
    """What one checkpoint of a partition writes in per-series mode."""

    parts: dict[str, Any]
    removed: list[str]
    full: bool
    fingerprint: str | None
    epoch: int | None
    names: set[str] = field(default_factory=set)


def _flush_and_exit(code: int) -> None:
    """Flush the log handlers and standard streams, then end the process with ``code`` at once.
    A stream that is closed or absent (a worker started with ``2>&-``: ``sys.stderr`` is None)
    is passed over: it raised ``AttributeError`` here, and the exit status was lost."""
    for h in logging.getLogger().handlers:
        with contextlib.suppress(Exception):  # a handler over a closed stream
            h.flush()
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
    os._exit(code)


class PartitionProgress:
    """Track processed offsets per partition of one topic; checkpoint and restore them."""

    def __init__(
        self,
        *,
        app: Any = None,
        consumer: str,
        topic: str,
        engine: Any,
        snapshot: Callable[..., dict[str, Any]],
        restore: Callable[[int, dict[str, Any]], None],
        drop: Callable[[int], None],
        series: Callable[[int], Iterable[str]] | None = None,
        fatal_after_s: float = 30.0,
    ) -> None:
        """``series`` (the series a partition holds now) turns on per-series checkpoints: then
        ``snapshot(partition, series)`` returns ``{series: state}`` of the series asked for that
        have a state (one asked for and left out is deleted), and ``restore(partition, parts)``
        gets ``{series: state}``. Without it, ``snapshot(partition)`` is the whole state."""
        self.app = app
        self.consumer = consumer
        self.topic = topic
        self.engine = engine
        self._snapshot = snapshot
        self._restore = restore
        self._drop = drop
        self.offsets: dict[int, int] = {}
        self.dirty: set[int] = set()
        self.resets = 0  # log resets detected (see admit)
        self.last_save = time.monotonic()
        self._commits: set[asyncio.Future[None]] = set()
        # partitions assigned whose state is still being loaded: their messages wait (D15)
        self.restoring: dict[int, asyncio.Event] = {}
        self.fatal_after_s = fatal_after_s
        self._permanent: tuple[float, int] | None = None  # (first failure, count) of the current streak
        self._series = series
        self.changed: dict[int, set[str]] = {}  # series changed since the last capture
        self._unsaved: dict[int, set[str]] = {}  # series captured, not yet durable (a failed write retries them)
        self._full: set[int] = set()  # partitions whose next checkpoint writes every series
        self._unsaved_full: set[int] = set()
        self.epochs: dict[int, int] = {}  # partition -> the epoch this worker claimed
        self.fenced: set[int] = set()  # partitions another worker claimed since: not processed, not written
        # partitions revoked from this worker and not assigned again: records of them still in
        # hand (a batch the revoke did not wait for) are not admitted, marked or written
        self.revoked: set[int] = set()
        self.revocations: dict[int, int] = {}  # partition -> times revoked (a batch in hand across one is stale)
        self._records: dict[int, Any] = {}  # the record at each partition's offset (its fingerprint is taken lazily)
        self._fingerprints: dict[int, tuple[int, str]] = {}  # partition -> (offset, fingerprint of its record)
        self._expect: dict[int, str] = {}  # fingerprint the restored checkpoint's record must have

    async def restored(self, partition: int) -> None:
        """Return once ``partition``'s state is restored (at once unless an assignment is
        loading it). A failed load leaves it waiting: the worker stops rather than counting
        records into a state the snapshot would then overwrite."""
        ev = self.restoring.get(partition)
        if ev is not None:
            await ev.wait()

    def admit(self, partition: int, offset: int, record: Any = None) -> bool:
        """Whether a message is new: its offset is past the last one processed.

        A message at or before the checkpoint is already in the restored state (the group's
        committed offset may lag the checkpoint by the commit that failed with a crash) —
        unless the log no longer holds the checkpoint (D3: a broker that lost its log, a
        topic deleted and recreated): then its offsets start again below the checkpoint and
        every message is new. See :meth:`_log_was_reset`. ``record``, the message at
        ``offset``: when it is the checkpoint's own record and its fingerprint is not the one
        checkpointed, the log was reset and has grown past the checkpoint again (issue 15).
        A partition fenced off (claimed by another worker) admits nothing.
        """
        if partition in self.fenced or partition in self.revoked:
            return False
        last = self.offsets.get(partition)
        if last is None or offset > last:
            self._expect.pop(partition, None)  # past the checkpoint's record: it cannot be checked any more
            return True
        if self._log_was_reset(partition, offset, last):
            self._restart_at(partition, offset)
            return True
        want = self._expect.get(partition) if offset == last and record is not None else None
        if want is not None:
            del self._expect[partition]
            got = record_fingerprint(record)
            if got != want:
                self.resets += 1
                log.error(
                    "progress.log_reset consumer=%s topic=%s partition=%d checkpoint=%d fingerprint=%s "
                    "found=%s: the record at the checkpoint is another one (the log was reset or recreated "
                    "and has grown past it); consuming it from here",
                    self.consumer,
                    self.topic,
                    partition,
                    last,
                    want,
                    got,
                )
                self._restart_at(partition, offset)
                return True
        return False

    def _restart_at(self, partition: int, offset: int) -> None:
        self.offsets[partition] = offset - 1
        self._expect.pop(partition, None)
        self._records.pop(partition, None)
        self._fingerprints.pop(partition, None)
        self.dirty.add(partition)

    def _log_was_reset(self, partition: int, offset: int, last: int) -> bool:
        """Whether the log of ``partition`` no longer reaches ``last``, the offset processed last.

        Asked only for a message at or before ``last`` (after a restart, or when the consumer
        fell back to the log start because its position was out of range). A log that held
        offset ``last`` has a high-water mark above it, and the mark never falls unless the
        log is truncated. The mark is the one of the fetch responses (the broker's
        ListOffsets answer is not used: the embedded broker reports the last batch's base
        offset there, below records it has delivered). Not detected: a reset log that has
        grown past ``last`` again: that is told by the fingerprint of the checkpointed record
        (:meth:`admit`, issue 15).
        """
        try:
            hw = self.app.consumer.highwater(TP(self.topic, partition)) if self.app is not None else None
        except Exception:  # noqa: BLE001 - not fetched yet: decide on a later message
            hw = None
        if hw is None or last < hw:
            return False
        self.resets += 1
        log.error(
            "progress.log_reset consumer=%s topic=%s partition=%d checkpoint=%d log_end=%d "
            "first_offset=%d: the log no longer holds the checkpoint; consuming it from here",
            self.consumer,
            self.topic,
            partition,
            last,
            hw,
            offset,
        )
        return True

    def mark(self, partition: int, offset: int, series: str | None = None, record: Any = None) -> None:
        """Record that ``offset`` of ``partition`` has been processed (in memory), changing
        ``series`` (if given); ``record`` is the message (its fingerprint goes with the checkpoint)."""
        if partition in self.fenced or partition in self.revoked:
            return
        self.offsets[partition] = offset
        self.dirty.add(partition)
        if record is not None:
            self._records[partition] = record
        if series is not None:
            self.changed.setdefault(partition, set()).add(series)

    def touch(self, partition: int, series: str | None = None) -> None:
        """Record that ``series`` of ``partition`` changed without a record (a timer, an outcome);
        without ``series``, every series of the partition (the next checkpoint writes them all)."""
        if partition in self.fenced or partition in self.revoked:
            return
        self.dirty.add(partition)
        if series is None:
            self._full.add(partition)
        else:
            self.changed.setdefault(partition, set()).add(series)

    def _fingerprint(self, partition: int, offset: int) -> str | None:
        """The fingerprint of the record at ``offset`` (None when this worker has not seen it)."""
        rec = self._records.pop(partition, None)
        if rec is not None and getattr(rec, "offset", None) == offset:
            self._fingerprints[partition] = (offset, record_fingerprint(rec))
        known = self._fingerprints.get(partition)
        return known[1] if known is not None and known[0] == offset else None

    def capture(self, partitions: Iterable[int] = ()) -> dict[int, tuple[int, Any]]:
        """Take ``(offset, state)`` of every dirty partition (and ``partitions``) right now.

        Synchronous on purpose: the state and the offsets are consistent because no other
        coroutine runs in between. The caller persists them later with :meth:`persist`. In
        per-series mode the state is the series changed since the last durable checkpoint.
        """
        parts = sorted(self.dirty | set(partitions))
        self.dirty.clear()
        out: dict[int, tuple[int, Any]] = {}
        for p in parts:
            if p not in self.offsets or p in self.fenced or p in self.revoked:
                continue
            offset = self.offsets[p]
            fp = self._fingerprint(p, offset)
            if self._series is None:
                out[p] = (offset, self._snapshot(p))
                continue
            full = p in self._full or p in self._unsaved_full
            if full:
                self._full.discard(p)
                self._unsaved_full.add(p)
                self.changed.pop(p, None)
                names = set(self._series(p))
            else:
                names = self.changed.pop(p, set()) | self._unsaved.get(p, set())
            self._unsaved[p] = names
            state = self._snapshot(p, sorted(names)) if names else {}
            delta = _Delta(state, sorted(names - state.keys()), full, fp, self.epochs.get(p), names)
            out[p] = (offset, delta)
        return out

    async def persist(
        self,
        captured: dict[int, tuple[int, dict[str, Any]]],
        effects: Mapping[int, tuple[Sequence[Any], ...]] | None = None,
    ) -> None:
        """Write each captured ``(offset, state)`` with its ``(candles, forecasts[, drift events[,
        shadow score rows]])`` in one transaction."""
        if fires("pause_before_checkpoint_write"):  # fault tests: paused with its checkpoint in hand
            os.kill(os.getpid(), signal.SIGSTOP)
        effects = effects or {}
        loop = asyncio.get_running_loop()
        written: list[int] = []
        for p, (offset, state) in captured.items():
            candles, forecasts, *more = effects.get(p, ((), ()))
            drift = more[0] if more else ()
            shadow = more[1] if len(more) > 1 else ()
            if isinstance(state, _Delta):
                kw: dict[str, Any] = {
                    "parts": state.parts,
                    "removed": state.removed,
                    "full": state.full,
                    "epoch": state.epoch,
                    "fingerprint": state.fingerprint,
                }
            else:
                if p not in self.offsets:
                    continue  # revoked since its capture: unfenced, it could overwrite the next owner's
                kw = {"state": state, "epoch": self.epochs.get(p), "fingerprint": self._fingerprint(p, offset)}
            try:
                await loop.run_in_executor(
                    None,
                    partial(
                        save_progress,
                        self.engine,
                        consumer=self.consumer,
                        topic=self.topic,
                        partition=p,
                        offset=offset,
                        candle_items=list(candles),
                        forecast_rows=list(forecasts),
                        drift_items=list(drift),
                        shadow_rows=list(shadow),
                        **kw,
                    ),
                )
            except StaleOwnerError as exc:
                if kw["epoch"] == self.epochs.get(p):
                    self._fence(p, exc)
                else:  # captured by an earlier assignment of this worker (in flight across a revoke)
                    log.warning(
                        "progress.stale_write consumer=%s topic=%s partition=%d epoch=%s current=%s: %s",
                        self.consumer,
                        self.topic,
                        p,
                        kw["epoch"],
                        self.epochs.get(p),
                        exc,
                    )
                continue
            written.append(p)
            if isinstance(state, _Delta) and self._unsaved.get(p) is state.names:
                del self._unsaved[p]
                self._unsaved_full.discard(p)
        captured = {p: captured[p] for p in written}
        if self.app is not None and captured:
            # The group's committed offset follows the checkpoint, never leads it (the topic
            # does not ack to Faust, so Faust never commits it: see create_app). The checkpoint in the database is what
            # counts; the commit only shortens the replay after a restart (admit() skips what
            # the state holds), so it runs in the background and may fail or time out.
            # Committed at the checkpoint's own record (not after it): a restarted worker reads
            # that record first and checks its fingerprint (admit); it is then skipped.
            positions = {TP(self.topic, p): off for p, (off, _s) in captured.items()}
            task = asyncio.ensure_future(self._commit(positions))
            self._commits.add(task)
            task.add_done_callback(self._commits.discard)
        self.last_save = time.monotonic()
        self._permanent = None

    def _fence(self, partition: int, exc: StaleOwnerError) -> None:
        """Another worker claimed ``partition`` since this one was assigned it (this one was
        paused or cut off and evicted by the group): drop its state and stop writing it. The
        worker goes on with its other partitions; a new assignment claims it afresh."""
        log.error(
            "progress.fenced consumer=%s topic=%s partition=%d epoch=%s: %s -- another worker owns "
            "this partition now; its state is dropped here and no longer written",
            self.consumer,
            self.topic,
            partition,
            self.epochs.get(partition),
            exc,
        )
        self._forget(partition)
        self.fenced.add(partition)

    def _forget(self, partition: int) -> None:
        self._drop(partition)
        self.offsets.pop(partition, None)
        self.dirty.discard(partition)
        for d in (self.changed, self._unsaved, self.epochs, self._records, self._fingerprints, self._expect):
            d.pop(partition, None)
        self._full.discard(partition)
        self._unsaved_full.discard(partition)

    def checkpoint_failed(self, exc: BaseException) -> None:
        """Count a failed checkpoint; exit the process when the database refuses writes for good.

        A :class:`PermanentStorageError` (read-only database, disk I/O error, missing table) is
        retried like any failure -- an operator may fix it within seconds -- but a streak of
        them lasting ``fatal_after_s`` (and at least ``FATAL_MIN_ATTEMPTS`` checkpoints) is
        fatal (F14): one CRITICAL line names the cause and the database (no password), and
        the process exits with :data:`EXIT_STORAGE_FATAL` at once, so a supervisor sees it.
        Nothing is committed: the group's offset never leads the last durable checkpoint,
        and the restarted worker replays from there. Any other failure (broker down, a
        transient database error) ends the streak: those are waited out, never fatal.

        A :class:`StateError` (a state that cannot be written: not strict JSON, NaN or
        Infinity inside) is fatal at once, as a state that cannot be restored is: written again
        it fails again, and consumption stays paused meanwhile (it was retried for ever).
        """
        if isinstance(exc, StateError):
            self._state_unwritable(exc)
            return
        if not isinstance(exc, PermanentStorageError):
            self._permanent = None
            return
        now = time.monotonic()
        first, n = self._permanent or (now, 0)
        self._permanent = (first, n + 1)
        if n + 1 >= FATAL_MIN_ATTEMPTS and now - first >= self.fatal_after_s:
            self._fatal(exc, n + 1, now - first)

    def _state_unwritable(self, exc: StateError) -> None:
        """Stop the worker: a state it holds cannot be checkpointed (:data:`EXIT_STATE_REFUSED`).

        Nothing is committed past the last durable checkpoint; the restarted worker restores
        that and replays from there. One ERROR line names the error (never the state's values).
        """
        log.error(
            "state.unwritable consumer=%s topic=%s error=%s: %s -- not checkpointed; offsets stay at "
            "the last durable checkpoint; exiting with %d",
            self.consumer,
            self.topic,
            type(exc).__name__,
            str(exc).splitlines()[0][:300] if str(exc) else "",
            EXIT_STATE_REFUSED,
        )
        _flush_and_exit(EXIT_STATE_REFUSED)

    def _fatal(self, exc: BaseException, attempts: int, span_s: float) -> None:
        from .commands._common import hide_password  # render_as_string's kept a ?password= query value

        db = hide_password(self.engine.url.render_as_string(hide_password=False)) if self.engine is not None else "?"
        log.critical(
            "storage.fatal consumer=%s db=%s attempts=%d over=%.1fs error=%s: %s -- the database "
            "refuses writes; exiting with %d, offsets stay at the last durable checkpoint",
            self.consumer,
            db,
            attempts,
            span_s,
            type(exc).__name__,
            str(exc).splitlines()[0][:200] if str(exc) else "",
            EXIT_STORAGE_FATAL,
        )
        _flush_and_exit(EXIT_STORAGE_FATAL)

    async def _load_snapshot(self, partition: int) -> tuple[int | None, Checkpoint | None]:
        """Claim ``partition`` (a new owner epoch, issue 15) and read its checkpoint, in one
        executor call; a database that does not answer is waited out.

        An outage during a rebalance pauses the restore (a WARNING line per attempt, backing
        off to 30 s) instead of crashing the worker; a row that cannot be read as a state
        (not JSON) stops it like a refused snapshot.
        """
        c, t, p = self.consumer, self.topic, partition

        def claim_and_load() -> tuple[int | None, Checkpoint | None]:
            epoch = claim_progress(self.engine, consumer=c, topic=t, partition=p) if self.engine is not None else None
            return epoch, load_snapshot(self.engine, consumer=c, topic=t, partition=p, detail=True)

        while True:
            try:
                return await self._wait_db(partition, claim_and_load)
            except ValueError as exc:  # the state column is not JSON
                self._state_refused(partition, -1, exc)

    async def _wait_db(self, partition: int, call: Callable[[], T]) -> T:
        loop = asyncio.get_running_loop()
        delay = 0.5
        while True:
            try:
                return await loop.run_in_executor(None, call)
            except (StorageError, DBAPIError, ConnectionError, TimeoutError) as exc:
                err = exc if isinstance(exc, StorageError) else classify(exc)
                if isinstance(err, PermanentStorageError):
                    # the claim is the assignment's first checkpoint write: a database that refuses
                    # writes for good (read-only, F14) is fatal after the same streak as a checkpoint
                    log.warning(
                        "checkpoint.failed consumer=%s partition=%d step=claim error=%s retry_in=%.1fs",
                        self.consumer,
                        partition,
                        err,
                        delay,
                    )
                    self.checkpoint_failed(err)
                else:
                    log.warning(
                        "progress.restore_waits consumer=%s partition=%d error=%s retry_in=%.1fs",
                        self.consumer,
                        partition,
                        err,
                        delay,
                    )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    def _state_refused(self, partition: int, offset: int, exc: Exception) -> None:
        """Stop the worker: a checkpointed state failed its signature or cannot be restored.

        Issue 13 (see docs/operations.md, "State snapshots are signed"): starting the series
        fresh from the checkpoint's offset would silently lose its history (the state would
        no longer be the fold of the input, I6/I7), and would let whoever can write the table
        reset it. So, like fatal storage, the worker stops loudly with
        :data:`EXIT_STATE_REFUSED`; an operator fixes the key or deletes the row.
        """
        log.error(
            "state.refused consumer=%s topic=%s partition=%d offset=%d error=%s: %s -- not loaded; fix "
            "FOREXD_STATE_KEY (shared by every worker) or delete this partition's checkpoint row to "
            "start it fresh; exiting with %d",
            self.consumer,
            self.topic,
            partition,
            offset,
            type(exc).__name__,
            exc,
            EXIT_STATE_REFUSED,
        )
        _flush_and_exit(EXIT_STATE_REFUSED)

    async def _commit(self, positions: dict[TP, int]) -> None:
        try:
            await asyncio.wait_for(self.app.consumer._commit(positions), timeout=10.0)
        except Exception as exc:  # a failed commit only means a longer (deduplicated) replay
            log.warning("progress.commit_failed consumer=%s error=%s", self.consumer, type(exc).__name__)

    async def on_assigned(self, app: Any, assigned: Iterable[TP]) -> None:
        """Restore state of each newly assigned partition of our topic and position it.

        Faust resumes a partition at the group's *committed* offset. Faust never commits
        these topics itself (they do not ack; its commits would run ahead of the
        checkpoint); the agents commit right after each checkpoint, so the database decides
        where consumption resumes.
        """
        mine = [tp for tp in assigned if tp.topic == self.topic]
        if not mine:
            return
        # D15: Faust starts delivering a new partition's records while its snapshot is still
        # being read (below, in an executor). Processed then, they went into an empty series
        # that the restore overwrote, and were never read again (6 ticks lost per hand-over in
        # the F7 soak). Mark the partitions before the first await; handle() waits on them.
        for tp in mine:
            if tp.partition not in self.restoring:
                self.restoring[tp.partition] = asyncio.Event()
        for tp in mine:
            p = tp.partition
            epoch, snap = await self._load_snapshot(p)
            if epoch is not None:  # issue 15: every write of this assignment carries it (an older owner's are refused)
                self.epochs[p] = epoch
            self.fenced.discard(p)
            self.revoked.discard(p)
            if snap is None:
                self.offsets.pop(p, None)
            else:
                offset = snap.offset
                try:
                    if self._series is None:
                        self._restore(p, snap.parts if snap.state is None else snap.state)
                    elif snap.state is not None:  # written before issue 15: restored whole, rewritten as parts
                        self._restore(p, {WHOLE_STATE: snap.state})
                        self._full.add(p)
                        self.dirty.add(p)
                    else:
                        self._restore(p, snap.parts)
                except Exception as exc:  # noqa: BLE001 - issue 13: a state that fails is never loaded
                    # a tampered or foreign signature (ArtifactError), a malformed or unknown-version
                    # snapshot (ConfigError, KeyError, ...): the worker stops, it never hangs in restore
                    self._state_refused(p, offset, exc)
                self.offsets[p] = offset
                if snap.fingerprint is not None:
                    self._fingerprints[p] = (offset, snap.fingerprint)
                    self._expect[p] = snap.fingerprint
                log.info(
                    "progress.restored consumer=%s partition=%d offset=%d epoch=%s parts=%d",
                    self.consumer,
                    p,
                    offset,
                    self.epochs.get(p),
                    len(snap.parts),
                )
            self.restoring.pop(p).set()
        # No explicit seek: Faust's recovery seeks to the group's committed offset, which the
        # agents keep equal to (or, after a crash between checkpoint and commit, just behind)
        # the checkpoint, and admit() skips what the restored state already holds. (Seeking
        # here races the fetcher, which can then fail with a KeyError on the partition.)

    async def on_shutdown(self, checkpoint: Callable[[], Awaitable[None]], *, timeout_s: float = 10.0) -> None:
        """Checkpoint once more when the worker stops gracefully (F5: commit before exit).

        Faust sends ``on_before_shutdown`` after its consumer has stopped and before the
        producer is flushed and stopped: nothing new arrives, and the candles and dead
        letters the checkpoint publishes still go out. Bounded: a checkpoint that cannot
        finish (database or broker down) leaves the previous one, which is as safe, only a
        longer replay.
        """
        try:
            await asyncio.wait_for(checkpoint(), timeout=timeout_s)
        except TimeoutError:
            log.warning(
                "shutdown.checkpoint_timeout consumer=%s: the restart replays from the last checkpoint", self.consumer
            )
        else:
            log.info("shutdown.checkpoint consumer=%s offsets=%s", self.consumer, dict(sorted(self.offsets.items())))

    async def on_revoked(
        self, revoked: Iterable[TP], *, checkpoint: Callable[[], Awaitable[None]] | None = None
    ) -> None:
        """Checkpoint (``checkpoint``, bounded), then forget the state of revoked partitions.

        Faust gives the rebalance callbacks less than the session timeout; an unfinished
        checkpoint only means the next owner replays from the previous one.
        """
        if checkpoint is not None:
            try:
                await asyncio.wait_for(checkpoint(), timeout=5.0)
            except TimeoutError:
                log.warning(
                    "revoke.checkpoint_timeout consumer=%s: the next owner replays from the last checkpoint",
                    self.consumer,
                )
        for tp in revoked:
            if tp.topic == self.topic:
                self._forget(tp.partition)
                self.fenced.discard(tp.partition)
                self.revoked.add(tp.partition)
                self.revocations[tp.partition] = self.revocations.get(tp.partition, 0) + 1
