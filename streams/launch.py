"""Start a worker process: settings from the environment, metrics endpoint, Faust worker."""

from __future__ import annotations

import errno
import logging
import socket
import time

from forex_diffusion.errors import ServiceUnavailableError, SettingsError

from .settings import Settings, broker_addresses

__all__ = ["ROLES", "metrics_unbindable", "run_worker", "wait_for_broker", "wait_for_database"]

log = logging.getLogger(__name__)

ROLES = {
    "stream": ("ticks", "candles"),
    "ticks": ("ticks",),
    "candles": ("candles",),
    "retrain": ("retrain",),
    "all": ("ticks", "candles", "retrain"),
}


def wait_for_broker(url: str, wait_s: float, *, interval_s: float = 2.0) -> None:
    """Return once a bootstrap address of ``url`` accepts a TCP connection.

    Raises
    ------
    ServiceUnavailableError
        None answered within ``wait_s`` seconds (one WARNING line per failed round).
    """
    addrs = broker_addresses(url)  # SettingsError (exit 78) for an address without a valid host:port
    why = "no answer"
    deadline = time.monotonic() + wait_s
    while True:
        for host, port in addrs:
            try:
                with socket.create_connection((host, port), timeout=min(5.0, max(wait_s, 0.5))):
                    return
            except OSError as exc:
                why = exc.strerror or type(exc).__name__
        if time.monotonic() >= deadline:
            raise ServiceUnavailableError("broker", url, f"{why}; start it or set FOREXD_BROKER_URL")
        log.warning("broker.wait address=%s error=%s", ",".join(f"{h}:{p}" for h, p in addrs), why)
        time.sleep(min(interval_s, max(0.0, deadline - time.monotonic())))


def wait_for_database(settings: Settings, *, interval_s: float = 2.0) -> None:
    """Return once the database of ``settings`` answers ``SELECT 1``.

    A worker started while PostgreSQL is down (or still starting, or restarting under a
    rebalance) waits for it here with one WARNING ``database.wait`` line per attempt, then
    starts, instead of exiting and being restarted in a loop. SQLite (a local file) is not
    waited for. An error that waiting cannot cure (a wrong password, a missing database, a
    refused connection option) is raised at once. Every line shows the URL with its
    password hidden, in the user part or a query parameter.

    Raises
    ------
    SettingsError
        The server has no such database, or it or libpq refuses a connection option of the
        URL (exit 78: a bad ``FOREXD_DATABASE_URL``); a driver that is not installed.
    ServiceUnavailableError
        No answer within ``settings.db_wait_s`` seconds, a refused login, or another
        permanent connection error (exit 69).
    """
    if settings.db_url.startswith("sqlite"):
        return
    from sqlalchemy import text
    from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError

    from forex_diffusion.storage.retry import classify, is_transient

    from .db_text import hide_password, hide_secrets

    url = settings.db_url
    # hide_password, not SQLAlchemy's render_as_string(hide_password=True): that one printed
    # a password given as a query parameter (?password=...) in every line below
    shown = hide_password(url)
    try:
        probe = settings.make_db_engine(create=False)
    except (ImportError, NoSuchModuleError, ArgumentError) as exc:  # postgresql:// is psycopg (3) in SQLAlchemy 2.1
        raise SettingsError(
            f"database URL {shown} needs a driver that is not installed ({hide_secrets(str(exc), url)}): "
            "name an installed one in FOREXD_DATABASE_URL, e.g. postgresql+psycopg2://"
        ) from exc
    deadline = time.monotonic() + settings.db_wait_s
    try:
        while True:
            try:
                with probe.connect() as conn:
                    conn.execute(text("SELECT 1"))
                return
            except DBAPIError as exc:
                why = hide_secrets(str(classify(exc)), url)  # a driver may echo an option's value
                _refuse_answered(exc, why, shown)
                if not is_transient(exc):
                    raise ServiceUnavailableError("database", shown, f"{why}; fix FOREXD_DATABASE_URL") from exc
            probe.dispose()  # the next attempt opens a fresh connection
            if time.monotonic() >= deadline:
                raise ServiceUnavailableError("database", shown, f"{why}; start it or set FOREXD_DATABASE_URL")
            log.warning("database.wait url=%s error=%s", shown, why)
            time.sleep(min(interval_s, max(0.0, deadline - time.monotonic())))
    finally:
        probe.dispose()


def _refuse_answered(exc: BaseException, why: str, shown: str) -> None:
    """Raise, for a server that answered and refused what ``FOREXD_DATABASE_URL`` asks, the
    error waiting cannot cure: a database it does not have or a connection option it (or
    libpq) refuses is a bad value of the variable (``SettingsError``, exit 78, as ``forexd``
    exits 66 and 2 for them), a refused login is said so (exit 69). Both were reported as
    "database unreachable" before."""
    from forex_diffusion.storage.engine import is_option_error

    from .db_text import LOGIN_REFUSED, MISSING_DATABASE, NO_PASSWORD, LoginRefusedError

    if (missing := MISSING_DATABASE.search(why)) is not None:
        raise SettingsError(
            f"FOREXD_DATABASE_URL names database {missing.group(1)}, which the server of {shown} does not have: "
            "create it (createdb) or fix FOREXD_DATABASE_URL"
        ) from exc
    if is_option_error(exc):
        raise SettingsError(
            f"FOREXD_DATABASE_URL {shown} has a connection option that is refused ({why}): fix FOREXD_DATABASE_URL"
        ) from exc
    if LOGIN_REFUSED.search(why) or NO_PASSWORD.search(why):  # as `forexd` says it: the server runs
        raise LoginRefusedError(shown, why, "FOREXD_DATABASE_URL") from exc


def metrics_unbindable(addr: str, port: int, exc: OSError) -> SettingsError:
    """The one-line refusal of a ``/metrics`` endpoint that cannot bind ``addr:port`` (exit 78),
    naming what to change by the error: the address (not one of this host's, or no longer
    resolving), the port's privilege, or the port (held by another process, or anything else)."""
    why = " ".join((exc.strerror or str(exc) or type(exc).__name__).split())  # one line, whatever it says
    where = f"FOREXD_METRICS_PORT={port} cannot be bound on FOREXD_METRICS_ADDR={addr[:64]!r} ({why})"
    off = "or FOREXD_METRICS_PORT=-1 to turn /metrics off"
    if isinstance(exc, socket.gaierror) or exc.errno == errno.EADDRNOTAVAIL:
        fix = f"set FOREXD_METRICS_ADDR to an address of this host (127.0.0.1, 0.0.0.0), {off}"
    elif exc.errno in (errno.EACCES, errno.EPERM):
        fix = f"a port below 1024 needs privilege: choose a port from 1024, 0 for any free one, {off}"
    else:
        fix = f"another process may hold it; choose another port, 0 for any free one, {off}"
    return SettingsError(f"{where}: {fix}")


def _check_partitions(settings: Settings) -> None:
    """:func:`streams.kafka.check_partitions`, its client's own log quiet: a broker that cannot
    be asked yet is the worker's to report (Faust waits for it), in its own words."""
    import asyncio

    from .kafka import check_partitions

    client_log = logging.getLogger("aiokafka")
    level = client_log.level
    client_log.setLevel(logging.CRITICAL)
    try:
        asyncio.run(check_partitions(settings))
    finally:
        client_log.setLevel(level)


def run_worker(*, role: str = "stream", log_level: str = "warn", settings: Settings | None = None) -> None:
    """Build the app for ``role`` and run it until SIGTERM/SIGINT."""
    if role not in ROLES:
        raise SystemExit(f"unknown role {role!r}; choose from {', '.join(ROLES)}")
    settings = settings or Settings.from_env()
    settings.check_device()  # FOREXD_DEVICE=cuda without CUDA: exit 78 before anything starts
    if "retrain" in ROLES[role]:
        settings.retrain_job()  # a malformed FOREXD_RETRAIN_JOB_CONFIG: exit 78 before anything starts
    wait_for_broker(settings.broker_url, settings.broker_wait_s)
    wait_for_database(settings)
    if {"ticks", "candles"} & set(ROLES[role]):  # a retrain-only worker keeps no state by partition
        _check_partitions(settings)  # fx.ticks/fx.candles of another count: exit 78, before the group
    import faust  # after the checks: a refused setting answers without loading the stream (seconds)

    from .app import create_app

    metrics = None
    try:
        from .metrics import Metrics

        metrics = Metrics(
            settings.symbols,
            timeframes=settings.timeframes,
            partitions=settings.partitions,
            topics=[
                settings.topic(n)
                for n in ("ticks", "candles", "forecasts", "drift", "retrain.requests", "models", "deadletter")
                + (("forecasts.paths",) if settings.paths else ())
            ],
        )
        if settings.metrics_port >= 0:
            try:
                metrics.serve(settings.metrics_addr, settings.metrics_port)
            except OSError as exc:  # taken since forexd worker tried it (or run_worker called directly)
                raise metrics_unbindable(settings.metrics_addr, settings.metrics_port, exc) from None
    except ImportError:  # metrics module not available
        metrics = None
    rt = create_app(settings, roles=ROLES[role], metrics=metrics)
    worker = faust.Worker(
        rt.app,
        loglevel=log_level.upper() if log_level != "warn" else "WARNING",
        redirect_stdouts=False,
        override_logging=True,
    )
    worker.execute_from_commandline()
