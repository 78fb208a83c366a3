"""``forexd worker``: run the stream processors (configuration from FOREXD_* variables)."""

from __future__ import annotations

import typer


def worker(
    role: str = typer.Option("stream", "--role", help="stream (ticks+candles+forecasts), ticks, candles, retrain, or all."),
    log_level: str = typer.Option("warn", "--loglevel", help="crit|error|warn|info|debug"),
) -> None:
    """Run a Faust worker.

    Reads fx.ticks / fx.candles / fx.models / fx.retrain.requests (by role); writes
    fx.candles, fx.forecasts, fx.drift, fx.retrain.requests, fx.models, fx.deadletter and
    the database at FOREXD_DATABASE_URL (SQLite under FOREXD_DATA_DIR by default). Serves
    Prometheus metrics on FOREXD_METRICS_ADDR:FOREXD_METRICS_PORT (127.0.0.1 by default).
    """
    from ..runner import run_worker

    run_worker(role=role, log_level=log_level)


def register(app: typer.Typer) -> None:
    app.command("worker")(worker)
