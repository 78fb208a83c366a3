"""Engine construction with safe defaults for both backends."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from forex_diffusion.storage.tables import metadata

__all__ = [
    "CONNECT_TIMEOUT_S",
    "LOCK_TIMEOUT_S",
    "STATEMENT_TIMEOUT_S",
    "create_tables",
    "make_engine",
    "postgres_connect_args",
    "sqlite_url",
]

#: Defaults of the PostgreSQL timeouts (the worker's FOREXD_DB_*_TIMEOUT_S override them).
CONNECT_TIMEOUT_S = 10.0
STATEMENT_TIMEOUT_S = 60.0
LOCK_TIMEOUT_S = 10.0
# drivers built on libpq: ``connect_timeout`` and ``options`` are connection parameters
_LIBPQ_DRIVERS = ("psycopg2", "psycopg")


def sqlite_url(path: str | Path) -> str:
    """Return the SQLAlchemy URL of a SQLite file."""
    return f"sqlite:///{Path(path).resolve()}"


def _ms(seconds: float) -> int:
    """Milliseconds of a timeout, rounded up (a tiny positive timeout never becomes 0, which
    PostgreSQL reads as "no limit"); 0 for 0 or less."""
    return math.ceil(seconds * 1000) if seconds > 0 else 0


def postgres_connect_args(
    url: str,
    *,
    connect_timeout_s: float = CONNECT_TIMEOUT_S,
    statement_timeout_s: float = STATEMENT_TIMEOUT_S,
    lock_timeout_s: float = LOCK_TIMEOUT_S,
) -> dict[str, Any]:
    """libpq connection parameters that bound connecting, each statement and each lock wait.

    ``options`` carries ``-c statement_timeout=… -c lock_timeout=…`` (milliseconds) *before*
    any ``options`` of ``url`` itself, so the URL's settings (a ``search_path``, or its own
    timeouts) are kept and win. A ``connect_timeout`` in the URL wins too. A timeout of 0 or
    less means no limit (PostgreSQL's and libpq's 0).
    """
    query = make_url(url).query
    given = query.get("options", "")
    user_options = " ".join(given) if isinstance(given, tuple) else given
    ours = f"-c statement_timeout={_ms(statement_timeout_s)} -c lock_timeout={_ms(lock_timeout_s)}"
    args: dict[str, Any] = {"options": f"{ours} {user_options}".strip()}
    if "connect_timeout" not in query:
        # whole seconds, rounded up (libpq waits forever with 0, and makes 1 s into 2 s)
        args["connect_timeout"] = math.ceil(connect_timeout_s) if connect_timeout_s > 0 else 0
    return args


def make_engine(
    url: str,
    *,
    create: bool = True,
    connect_timeout_s: float = CONNECT_TIMEOUT_S,
    statement_timeout_s: float = STATEMENT_TIMEOUT_S,
    lock_timeout_s: float = LOCK_TIMEOUT_S,
    **kwargs: Any,
) -> Engine:
    """Create an engine for ``url`` and (by default) the project's tables.

    Bound parameters are kept out of logs and error strings (``hide_parameters``), pooled
    connections are pinged before use, and SQLite runs in WAL mode with a busy timeout so
    a concurrent writer waits instead of failing at once.

    On PostgreSQL every connection is bounded: connecting (``connect_timeout_s``), each
    statement (``statement_timeout_s``) and each wait for a lock (``lock_timeout_s``); 0 means
    no limit. A hung or locked database then fails a call with an error that
    :func:`~forex_diffusion.storage.retry.classify` calls transient (it is retried, and a
    consumer pauses as in an outage) instead of blocking the caller for ever. Drivers not
    built on libpq get the two statement timeouts with ``SET`` on each new connection.
    """
    opts: dict[str, Any] = {"hide_parameters": True, "pool_pre_ping": True, **kwargs}
    if url.startswith("sqlite"):
        opts.setdefault("connect_args", {"timeout": 5.0})
    parsed = make_url(url)
    postgres = parsed.get_backend_name() == "postgresql"
    libpq = postgres and parsed.get_driver_name() in _LIBPQ_DRIVERS
    if libpq:
        args = postgres_connect_args(
            url,
            connect_timeout_s=connect_timeout_s,
            statement_timeout_s=statement_timeout_s,
            lock_timeout_s=lock_timeout_s,
        )
        opts["connect_args"] = {**args, **opts.get("connect_args", {})}
    engine = create_engine(url, **opts)
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:  # pragma: no cover - trivial
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=5000")
            cur.close()

    elif postgres and not libpq:  # pragma: no cover - the project's tests run psycopg2
        statement_ms, lock_ms = _ms(statement_timeout_s), _ms(lock_timeout_s)

        @event.listens_for(engine, "connect")
        def _timeouts(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute(f"SET statement_timeout = {statement_ms}")  # integers, not input
            cur.execute(f"SET lock_timeout = {lock_ms}")
            cur.close()
            dbapi_conn.commit()  # a SET in a rolled-back transaction would be undone

    if create:
        from forex_diffusion.storage.retry import db_retry

        db_retry(create_tables)(engine)  # a database still starting up is waited for
    return engine


def create_tables(engine: Engine, *, attempts: int | None = None) -> None:
    """Create the project's tables that do not exist yet, tolerating a concurrent creator.

    ``create_all`` checks, then creates: another process (a second worker, a test reading the
    same file) creating a table in between makes it fail with "table ... already exists"
    (SQLite) or a duplicate ``pg_type`` row (PostgreSQL). That is not an error: the next
    check sees the table. (Found under load: a worker exited at start while the fault
    harness opened the same SQLite file.) Every lost race means one more table exists at the
    next check, so one attempt per table (plus one) always suffices: with 4 processes racing,
    one lost three races in a row (``table model_aliases already exists``).
    """
    if attempts is None:
        attempts = len(metadata.tables) + 1
    for attempt in range(attempts):
        try:
            metadata.create_all(engine)
            return
        except DBAPIError as exc:
            if attempt + 1 < attempts and _lost_creation_race(exc):
                continue
            raise


def _lost_creation_race(exc: DBAPIError) -> bool:
    text = str(exc.orig).lower()
    return "already exists" in text or "pg_type_typname_nsp_index" in text
