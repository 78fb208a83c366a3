"""``forexd worker``: run the stream processors (configuration from FOREXD_* variables)."""

from __future__ import annotations

from typing import Optional

import typer

from ._common import LOG_LEVELS

_ROLES = "stream, ticks, candles, retrain, all"


def worker(
    ctx: typer.Context,
    role: str = typer.Option("stream", "--role", help=f"One of {_ROLES} (stream = ticks+candles+forecasts)."),
    log_level: Optional[str] = typer.Option(
        None, "--log-level", help="crit|error|warn|info|debug (default: forexd --log-level, warn)."
    ),
    legacy_level: Optional[str] = typer.Option(None, "--loglevel", hidden=True, help="Old spelling of --log-level."),
) -> None:
    """Run a Faust worker.

    Reads fx.ticks / fx.candles / fx.models / fx.retrain.requests (by role); writes
    fx.candles, fx.forecasts, fx.drift, fx.retrain.requests, fx.models, fx.deadletter and
    the database at FOREXD_DATABASE_URL (SQLite under FOREXD_DATA_DIR by default). Serves
    Prometheus metrics on FOREXD_METRICS_ADDR:FOREXD_METRICS_PORT (127.0.0.1 by default).
    Exits 78 on a bad FOREXD_* value, 65 or 66 on a SQLite database it cannot use (as
    `forexd models`), and 74 when the database refuses writes for good (read-only).
    """
    from ..launch import ROLES
    from ..settings import Settings

    if role not in ROLES:
        raise typer.BadParameter(f"--role must be one of {', '.join(ROLES)}, not {role!r}")
    level = (log_level or legacy_level or (ctx.obj or {}).get("log_level") or "warn").lower()
    if level not in LOG_LEVELS:
        raise typer.BadParameter(f"--log-level must be crit, error, warn, info or debug, not {level!r}")
    # faust takes logging's own names: crit -> CRITICAL, warn -> WARNING
    name = {"crit": "critical", "warn": "warning"}.get(level, level)
    settings = Settings.from_env()
    _check_sqlite(settings.db_url)

    from ..launch import run_worker

    run_worker(role=role, log_level=name, settings=settings)


def _check_sqlite(url: str) -> None:
    """Refuse, before the broker is waited for, a SQLite ``FOREXD_DATABASE_URL`` the worker
    cannot use: a directory, a device, a file that is not a database or another program's,
    an in-memory one (each connection a new empty database). Each ended
    as a storage failure (exit 74: ``DatabaseError: file is not a database``) or a worker
    that failed its checkpoints. PostgreSQL is waited for at start (``FOREXD_DB_WAIT_S``)."""
    from forex_diffusion.errors import ConfigError, SettingsError

    from ._common import _sqlite_file, check_database

    if not _sqlite_file(url)[0]:
        return
    try:
        # not write=True: a read-only database is F14's documented path (checkpoints fail,
        # one CRITICAL storage.fatal line, exit 74), whenever the file became read-only
        check_database(url, where="FOREXD_DATABASE_URL")
    except SettingsError:
        raise
    except ConfigError as exc:  # the variable holds a bad value: exit 78, as every FOREXD_* one
        raise SettingsError(str(exc)) from exc


def register(app: typer.Typer) -> None:
    app.command("worker")(worker)
