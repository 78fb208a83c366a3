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
    Exits 78 on a bad FOREXD_* value (a metrics port it cannot bind too), 65 or 66 on a
    SQLite database it cannot use (as `forexd models`), and 74 when the database refuses
    writes for good (read-only).
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
    _check_metrics_addr(settings.metrics_addr, settings.metrics_port)
    _check_cafile(settings.kafka_security_protocol, settings.kafka_ssl_cafile)

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


def _check_metrics_addr(addr: str, port: int) -> None:
    """Refuse, before the broker is waited for, a ``FOREXD_METRICS_ADDR`` that does not resolve
    to an address to bind, or a ``FOREXD_METRICS_PORT`` that cannot be bound there (another
    process holds it, or a port below 1024 without the right): exit 78, one line naming them.
    The settings check the address's form only, and the endpoint's bind failed after the broker
    and database waits, as ``error: [Errno -2] Name or service not known`` or ``[Errno 98]
    Address already in use`` (exit 74) naming no variable. Nothing when the endpoint is off;
    port 0 (any free one) is not tried."""
    import socket

    from forex_diffusion.errors import SettingsError

    from ..launch import metrics_unbindable

    if port < 0:
        return
    if port > 65_535:  # getaddrinfo takes it modulo 2**16 (65536 probed port 0), or overflows
        raise SettingsError(f"FOREXD_METRICS_PORT={port} is not a TCP port (0..65535, or negative for no /metrics)")
    try:
        infos = socket.getaddrinfo(addr, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (OSError, UnicodeError) as exc:  # socket.gaierror; UnicodeError: a label IDNA refuses
        why = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        raise SettingsError(
            f"FOREXD_METRICS_ADDR={addr!r} does not resolve to an address to bind ({why}): set an address "
            "of this host (127.0.0.1, 0.0.0.0) or a name that resolves, or FOREXD_METRICS_PORT=-1 to turn "
            "/metrics off"
        ) from None
    if port == 0:
        return
    family, _type, _proto, _name, sockaddr = infos[0]  # the address prometheus_client binds
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the endpoint's server does
            probe.bind(sockaddr)
    except OSError as exc:
        raise metrics_unbindable(addr, port, exc) from None


def _check_cafile(protocol: str, cafile: str | None) -> None:
    """Refuse, before the broker is waited for, a ``FOREXD_KAFKA_SSL_CAFILE`` that TLS cannot
    load (missing, unreadable, no certificate in it): it failed when the app was built, after
    the waits, naming no variable (``[Errno 2] No such file or directory``, exit 66)."""
    import ssl

    from forex_diffusion.errors import SettingsError

    if protocol not in ("SSL", "SASL_SSL") or not cafile:
        return
    try:
        ssl.create_default_context(cafile=cafile)
    except (OSError, ssl.SSLError) as exc:  # ssl.SSLError is an OSError; named for the reader
        why = exc.strerror or str(exc) or type(exc).__name__
        raise SettingsError(
            f"FOREXD_KAFKA_SSL_CAFILE={cafile!r} cannot be loaded as CA certificates ({why}): "
            "name a readable PEM file of the CA that signed the broker's certificate"
        ) from None


def register(app: typer.Typer) -> None:
    app.command("worker")(worker)
