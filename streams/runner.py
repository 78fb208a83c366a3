"""Start a worker process: settings from the environment, metrics endpoint, Faust worker."""

from __future__ import annotations

import logging

from .settings import Settings

__all__ = ["ROLES", "run_worker"]

log = logging.getLogger(__name__)

ROLES = {
    "stream": ("ticks", "candles"),
    "ticks": ("ticks",),
    "candles": ("candles",),
    "retrain": ("retrain",),
    "all": ("ticks", "candles", "retrain"),
}


def run_worker(*, role: str = "stream", log_level: str = "warn", settings: Settings | None = None) -> None:
    """Build the app for ``role`` and run it until SIGTERM/SIGINT."""
    import faust

    from .app import create_app

    if role not in ROLES:
        raise SystemExit(f"unknown role {role!r}; choose from {', '.join(ROLES)}")
    settings = settings or Settings.from_env()
    metrics = None
    try:
        from .metrics import Metrics

        metrics = Metrics(
            settings.symbols, timeframes=settings.timeframes, partitions=settings.partitions,
            topics=[settings.topic(n) for n in ("ticks", "candles", "forecasts", "drift",
                                                "retrain.requests", "models", "deadletter")],
        )
        if settings.metrics_port >= 0:
            metrics.serve(settings.metrics_addr, settings.metrics_port)
    except ImportError:  # metrics module not available
        metrics = None
    rt = create_app(settings, roles=ROLES[role], metrics=metrics)
    worker = faust.Worker(rt.app, loglevel=log_level.upper() if log_level != "warn" else "WARNING",
                          redirect_stdouts=False, override_logging=True)
    worker.execute_from_commandline()
