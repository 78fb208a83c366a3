"""Start a worker process: settings from the environment, metrics endpoint, Faust worker."""

from __future__ import annotations

import logging
import socket
import time

from forex_diffusion.errors import ServiceUnavailableError, SettingsError

from .settings import Settings, broker_addresses

__all__ = ["ROLES", "run_worker", "wait_for_broker", "wait_for_database"]

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
    waited for. An error that waiting cannot cure (a wrong password, a missing database) is
    raised at once.

    Raises
    ------
    ServiceUnavailableError
        No answer within ``settings.db_wait_s`` seconds, or a permanent connection error.
    """
    if settings.db_url.startswith("sqlite"):
        return
    from sqlalchemy import text
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError

    from forex_diffusion.storage.retry import classify, is_transient

    shown = make_url(settings.db_url).render_as_string(hide_password=True)
    try:
        probe = settings.make_db_engine(create=False)
    except (ImportError, NoSuchModuleError, ArgumentError) as exc:  # postgresql:// is psycopg (3) in SQLAlchemy 2.1
        raise SettingsError(
            f"database URL {shown} needs a driver that is not installed ({exc}): "
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
                why = str(classify(exc))
                if not is_transient(exc):
                    raise ServiceUnavailableError("database", shown, f"{why}; fix FOREXD_DATABASE_URL") from exc
            probe.dispose()  # the next attempt opens a fresh connection
            if time.monotonic() >= deadline:
                raise ServiceUnavailableError("database", shown, f"{why}; start it or set FOREXD_DATABASE_URL")
            log.warning("database.wait url=%s error=%s", shown, why)
            time.sleep(min(interval_s, max(0.0, deadline - time.monotonic())))
    finally:
        probe.dispose()


def run_worker(*, role: str = "stream", log_level: str = "warn", settings: Settings | None = None) -> None:
    """Build the app for ``role`` and run it until SIGTERM/SIGINT."""
    import faust

    from .app import create_app

    if role not in ROLES:
        raise SystemExit(f"unknown role {role!r}; choose from {', '.join(ROLES)}")
    settings = settings or Settings.from_env()
    settings.check_device()  # FOREXD_DEVICE=cuda without CUDA: exit 78 before anything starts
    if "retrain" in ROLES[role]:
        settings.retrain_job()  # a malformed FOREXD_RETRAIN_JOB_CONFIG: exit 78 before anything starts
    wait_for_broker(settings.broker_url, settings.broker_wait_s)
    wait_for_database(settings)  # issue 15: PostgreSQL down at start is waited out, not crash-looped
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
            metrics.serve(settings.metrics_addr, settings.metrics_port)
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
