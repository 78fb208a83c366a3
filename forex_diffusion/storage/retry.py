"""Transient/permanent classification of database errors and the bounded retry policy.

Transient: lost or refused connections, SQLite ``database is locked``/``busy``, server
shutting down, serialization failures, and a statement PostgreSQL cancelled because it ran
past ``statement_timeout`` or waited past ``lock_timeout`` (a hung or locked database is an
outage to wait out, not a bad statement: see ``make_engine``). Permanent (raised at once):
integrity, schema and programming errors, a read-only database. Retries stop after ``attempts`` or ``max_delay_s``
(well below Faust's processing timeouts) and wait with full jitter.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError, ProgrammingError
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_random_exponential,
)

from forex_diffusion.errors import PermanentStorageError, StorageError, TransientStorageError

__all__ = ["classify", "db_retry", "is_transient"]

log = logging.getLogger(__name__)
P = ParamSpec("P")
R = TypeVar("R")

_TRANSIENT_TEXT = (
    "database is locked",
    "database is busy",
    "could not connect",
    "connection refused",
    "server closed the connection",
    "terminating connection",
    "connection reset",
    "connection already closed",
    "the database system is starting up",
    "the database system is shutting down",
    "the database system is not yet accepting connections",
    "the database system is in recovery mode",
    "could not serialize access",
    "deadlock detected",
    # PostgreSQL's statement_timeout / lock_timeout (and a cancel by an operator or a standby's
    # recovery conflict): "canceling statement due to statement timeout" / "... lock timeout"
    "canceling statement due to",
    "timeout expired",
    "no route to host",
    "ssl syscall error",
)
_PERMANENT_TEXT = ("readonly database", "read-only", "no such table", "disk i/o error")


def is_transient(exc: BaseException) -> bool:
    """Whether retrying ``exc`` may succeed."""
    if isinstance(exc, TransientStorageError):
        return True
    if isinstance(exc, (IntegrityError, ProgrammingError, PermanentStorageError)):
        return False
    if isinstance(exc, DBAPIError):
        text = str(exc.orig if exc.orig is not None else exc).lower()
        if any(t in text for t in _PERMANENT_TEXT):
            return False
        if exc.connection_invalidated:
            return True
        if isinstance(exc, OperationalError):
            return True if any(t in text for t in _TRANSIENT_TEXT) else "lock" in text
    return isinstance(exc, (ConnectionError, TimeoutError))


def classify(exc: BaseException) -> StorageError:
    """Translate a database exception into the project's error tree (message without values)."""
    kind = TransientStorageError if is_transient(exc) else PermanentStorageError
    orig = getattr(exc, "orig", None)
    detail = type(orig or exc).__name__ + ": " + str(orig or exc).splitlines()[0][:200]
    return kind(detail)


def _log_retry(state: RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome else None
    log.warning("db.retry attempt=%d error=%s", state.attempt_number, type(exc).__name__)


def db_retry(
    fn: Callable[P, R], *, attempts: int = 6, max_delay_s: float = 30.0, max_wait_s: float = 5.0
) -> Callable[P, R]:
    """Wrap ``fn`` so transient database errors are retried, then translated.

    Raises :class:`TransientStorageError` when the retry budget is spent and
    :class:`PermanentStorageError` at once for anything not transient.
    """

    def wrapped(*args: P.args, **kwargs: P.kwargs) -> R:
        retrying = Retrying(
            retry=retry_if_exception(is_transient),
            stop=stop_after_attempt(attempts) | stop_after_delay(max_delay_s),
            wait=wait_random_exponential(multiplier=0.05, max=max_wait_s),
            before_sleep=_log_retry,
            reraise=True,
        )
        try:
            return retrying(fn, *args, **kwargs)
        except StorageError:
            raise
        except (DBAPIError, ConnectionError, TimeoutError) as exc:
            raise classify(exc) from exc

    wrapped.__name__ = getattr(fn, "__name__", "db_call")
    wrapped.__doc__ = fn.__doc__
    return wrapped
