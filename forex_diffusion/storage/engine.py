"""Engine construction with safe defaults for both backends."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event

from .tables import metadata

__all__ = ["make_engine", "sqlite_url"]


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

        db_retry(metadata.create_all)(engine)  # a database still starting up is waited for
    return engine
