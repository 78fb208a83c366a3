"""Engine construction with safe defaults for both backends."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import DBAPIError

from .tables import metadata

__all__ = ["create_tables", "make_engine", "sqlite_url"]


def sqlite_url(path: str | Path) -> str:
    """Return the SQLAlchemy URL of a SQLite file."""
    return f"sqlite:///{Path(path).resolve()}"


def make_engine(url: str, *, create: bool = True, **kwargs: Any) -> Engine:
    """Create an engine for ``url`` and (by default) the project's tables.

    Bound parameters are kept out of logs and error strings (``hide_parameters``), pooled
    connections are pinged before use, and SQLite runs in WAL mode with a busy timeout so
    a concurrent writer waits instead of failing at once.
    """
    opts: dict[str, Any] = {"hide_parameters": True, "pool_pre_ping": True, **kwargs}
    if url.startswith("sqlite"):
        opts.setdefault("connect_args", {"timeout": 5.0})
    engine = create_engine(url, **opts)
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:  # pragma: no cover - trivial
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=5000")
            cur.close()

    if create:
        from .retry import db_retry

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
