"""Retrain job claims in the database: one trainer per model key across every retrain worker.

The in-process :class:`~retraining.job_queue.RetrainQueue` runs one job per key *in one
worker*. Two retrain workers (scale-out, issue 15) would each admit a request for the same
key, and train it twice at once (same candles, same staging tree, one
:meth:`~retraining.registry.ModelRegistry.recover` deleting what the other is writing).
A job therefore claims its key here first: a row ``retrain_claims(key, owner, request_id,
claimed_ms, expires_ms)`` of the shared database.

* **Claim** (:meth:`JobClaims.acquire`): free key → the row is inserted; a key whose claim
  expired (its owner stopped renewing: killed, hung, partitioned) or whose owner is a dead
  process of this host → taken over; a live claim → :class:`ClaimHeld`. On PostgreSQL the row
  is read ``FOR UPDATE SKIP LOCKED`` (a claimant in the middle of its own claim is skipped,
  never waited for); on SQLite the take-over is one conditional ``UPDATE``.
* **Lease** (:class:`Claim`): the owner renews ``expires_ms`` every ``lease_s / 4`` from a
  daemon thread (a training step can last minutes). A renewal that finds another owner marks
  the claim lost; :meth:`Claim.check` raises :class:`ClaimLost` before the job registers
  anything, so a job whose claim expired under it (a paused process) never writes a decision
  over the new owner's.
* **Release**: the row is deleted by its owner when the job ends (whatever its outcome).
"""

from __future__ import annotations

import logging
import os
import re
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from sqlalchemy import BigInteger, Column, Engine, MetaData, String, Table, delete, insert, select, update
from sqlalchemy.exc import DBAPIError

from forex_diffusion.errors import ForexDiffusionError, StorageError
from forex_diffusion.storage.retry import db_retry

__all__ = ["Claim", "ClaimHeld", "ClaimLost", "JobClaims", "claims_table", "default_owner"]

logger = logging.getLogger(__name__)

#: A claim not renewed for this long is free for another worker.
LEASE_S = 120.0
#: Largest pid an owner may name (Linux's PID_MAX_LIMIT, 2**22): past it the owner is unreadable.
PID_MAX = 4_194_304
_PID = re.compile(r"[0-9]{1,7}")  # ASCII digits only: '²' and '١' are str.isdigit() but no pid

_metadata = MetaData()
claims_table = Table(
    "retrain_claims",
    _metadata,
    Column("key", String(128), primary_key=True),  # str(ModelKey): EURUSD/1h/24
    Column("owner", String(200), nullable=False),  # host:pid:nonce of the claiming process
    Column("request_id", String(64), nullable=False),
    Column("claimed_ms", BigInteger, nullable=False),
    Column("expires_ms", BigInteger, nullable=False),
)


class ClaimHeld(ForexDiffusionError):
    """Another live retrain job holds the key's claim: this job does not run."""


class ClaimLost(ForexDiffusionError):
    """The job's claim expired and another owner took the key: the job registers nothing."""


def _local_host() -> str:
    """This host as an owner names it: the host name and, where known, the PID namespace
    (``name~inode``). Two containers may share a host name (a compose service's ``hostname``)
    but not their PIDs: a pid of another namespace is never judged dead here."""
    name = socket.gethostname()[:100]
    try:
        ns = "".join(ch for ch in os.readlink("/proc/self/ns/pid") if ch.isdigit())
    except OSError:  # no /proc (not Linux): the host name alone
        return name
    return f"{name}~{ns}" if ns else name


def default_owner() -> str:
    """``host:pid:nonce`` of this process (the nonce tells two lives of one pid apart; the
    host carries the PID namespace, see :func:`_local_host`)."""
    return f"{_local_host()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _now_ms() -> int:
    return int(time.time() * 1000)


def _dead_local_owner(owner: str) -> bool:
    """Whether ``owner`` names a process of this host that no longer exists (a killed job's
    claim is then free at once instead of after its lease).

    An owner this cannot read (not ``host:pid:nonce``, a pid that is not ASCII digits or past
    :data:`PID_MAX`) is a live or foreign holder, never ours to break: ``'²'.isdigit()`` is
    true but ``int('²')`` a ValueError, and a pid of 31 digits made ``os.kill`` raise
    OverflowError, a traceback that ended the job."""
    parts = owner.rsplit(":", 2)
    if len(parts) != 3 or parts[0] != _local_host() or _PID.fullmatch(parts[1]) is None:
        return False
    pid = int(parts[1])
    if not 1 <= pid <= PID_MAX or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except (OSError, OverflowError):  # PermissionError: alive, another user's; else not a pid here
        return False
    return False


def _ensure_table(engine: Engine) -> None:
    try:
        _metadata.create_all(engine)
    except DBAPIError as exc:  # a concurrent creator won the race: the table exists now
        text = str(exc.orig).lower()
        if "already exists" not in text and "pg_type_typname_nsp_index" not in text:
            raise


@dataclass
class Claim:
    """A held claim: renewed from a daemon thread until :meth:`release`."""

    claims: JobClaims
    key: str
    owner: str
    request_id: str
    lost: threading.Event = field(default_factory=threading.Event)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start_heartbeat(self) -> None:
        interval = max(0.05, self.claims.lease_s / 4)

        def beat() -> None:
            while not self._stop.wait(interval):
                try:
                    if not self.claims.renew(self):
                        logger.warning("retrain.claim_lost key=%s owner=%s", self.key, self.owner)
                        self.lost.set()
                        return
                except StorageError as exc:  # the database is away: the lease may run out
                    logger.warning("retrain.claim_renew_failed key=%s error=%s", self.key, exc)

        self._thread = threading.Thread(target=beat, name=f"claim-{self.key}", daemon=True)
        self._thread.start()

    def check(self) -> None:
        """Raise :class:`ClaimLost` unless this process still owns the key (asked of the database)."""
        if self.lost.is_set() or not self.claims.renew(self):
            self.lost.set()
            raise ClaimLost(f"the claim on {self.key} expired and was taken by another retrain job")

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        try:
            self.claims.release(self)
        except StorageError as exc:  # it expires by itself
            logger.warning("retrain.claim_release_failed key=%s error=%s", self.key, exc)


class JobClaims:
    """Claims of model keys in ``engine``'s database (see the module's text)."""

    def __init__(self, engine: Engine, *, owner: str | None = None, lease_s: float = LEASE_S) -> None:
        if not lease_s > 0:
            raise ValueError(f"lease_s must be > 0, got {lease_s}")
        self.engine = engine
        self.owner = owner or default_owner()
        self.lease_s = lease_s
        db_retry(_ensure_table)(engine)

    @property
    def _lease_ms(self) -> int:
        return max(1, round(self.lease_s * 1000))

    def acquire(self, key: str, request_id: str) -> Claim:
        """Claim ``key`` for this owner (not renewed: see :meth:`hold`).

        Raises
        ------
        ClaimHeld
            A live claim of another owner.
        """
        holder = db_retry(self._acquire)(key, request_id)
        if holder is not None:
            raise ClaimHeld(f"{key} is being retrained by {holder}")
        logger.info("retrain.claimed key=%s owner=%s request=%s", key, self.owner, request_id)
        return Claim(self, key, self.owner, request_id)

    @contextmanager
    def hold(self, key: str, request_id: str) -> Iterator[Claim]:
        """Claim ``key``, renew it while the block runs, release it after."""
        claim = self.acquire(key, request_id)
        claim.start_heartbeat()
        try:
            yield claim
        finally:
            claim.release()

    def _acquire(self, key: str, request_id: str) -> str | None:
        """None when claimed, else the live holder."""
        now = _now_ms()
        row = {
            "key": key,
            "owner": self.owner,
            "request_id": request_id,
            "claimed_ms": now,
            "expires_ms": now + self._lease_ms,
        }
        t = claims_table
        with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                from sqlalchemy.dialects.postgresql import insert as pg_insert

                conn.execute(pg_insert(t).values(**row).on_conflict_do_nothing(index_elements=["key"]))
                found = conn.execute(
                    select(t.c.owner, t.c.expires_ms).where(t.c.key == key).with_for_update(skip_locked=True)
                ).first()
                if found is None:  # another claimant holds the row in its open transaction
                    return "a concurrent claimant"
                if found.owner == self.owner:  # inserted just now (or already ours)
                    return None
                if found.expires_ms >= now and not _dead_local_owner(found.owner):
                    return str(found.owner)
                conn.execute(update(t).where(t.c.key == key).values(**row))  # expired: taken over
                logger.warning("retrain.claim_taken_over key=%s from=%s", key, found.owner)
                return None
            # SQLite (one writer at a time): insert if free, else one conditional UPDATE
            if conn.execute(insert(t).values(**row).prefix_with("OR IGNORE")).rowcount == 1:
                return None
            found = conn.execute(select(t.c.owner, t.c.expires_ms).where(t.c.key == key)).first()
            if found is None:  # released in between: the next attempt inserts it
                raise _Retry()
            stale = found.owner != self.owner and _dead_local_owner(found.owner)
            cond = (t.c.owner == found.owner) if stale else (t.c.expires_ms < now) | (t.c.owner == self.owner)
            if conn.execute(update(t).where(t.c.key == key, cond).values(**row)).rowcount == 1:
                if found.owner != self.owner:
                    logger.warning("retrain.claim_taken_over key=%s from=%s", key, found.owner)
                return None
            return str(found.owner)

    def renew(self, claim: Claim) -> bool:
        """Extend ``claim``'s lease; False when another owner has the key now."""

        def _renew() -> bool:
            t = claims_table
            with self.engine.begin() as conn:
                res = conn.execute(
                    update(t)
                    .where(t.c.key == claim.key, t.c.owner == claim.owner)
                    .values(expires_ms=_now_ms() + self._lease_ms)
                )
                return bool(res.rowcount == 1)

        return db_retry(_renew)()

    def release(self, claim: Claim) -> None:
        """Delete ``claim``'s row if it is still this owner's."""

        def _release() -> None:
            t = claims_table
            with self.engine.begin() as conn:
                conn.execute(delete(t).where(t.c.key == claim.key, t.c.owner == claim.owner))

        db_retry(_release)()

    def holder(self, key: str) -> tuple[str, int] | None:
        """``(owner, expires_ms)`` of ``key``'s claim, or None."""

        def _read() -> tuple[str, int] | None:
            with self.engine.connect() as conn:
                found = conn.execute(
                    select(claims_table.c.owner, claims_table.c.expires_ms).where(claims_table.c.key == key)
                ).first()
            return None if found is None else (str(found.owner), int(found.expires_ms))

        return db_retry(_read)()


class _Retry(ConnectionError):
    """The claim row vanished between two statements: retried (db_retry retries ConnectionError)."""
