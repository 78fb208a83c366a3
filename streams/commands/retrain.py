"""``forexd retrain``: retrain one model key, in-process (``--local``) or through the broker."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from forex_diffusion.errors import DataFormatError
from forex_diffusion.timeframes import Timeframe

from ..db_text import hide_secrets
from ..settings import Settings
from ._common import (
    THREADS_MAX,
    broker_call,
    check_input,
    check_model_dir,
    check_positive,
    echo_error,
    input_path,
    open_engine,
    progress_bar,
)
from .models import resolve_paths

if TYPE_CHECKING:
    from forex_diffusion.quality.trigger import RetrainRequest
    from retraining.records import JobOutcome

logger = logging.getLogger(__name__)


def _print(outcome: JobOutcome, why: str | None = None) -> None:
    """The outcome on standard output (status line, reason, JSON last), and for a failed job
    one line on standard error saying why: ``why`` (the job's error, for ``--local``), else
    where to read it. The published reason is a code and a type only (``model: ModelError``),
    and the error itself was in a log line alone."""
    typer.echo(f"{outcome.status} key={outcome.key} version={outcome.version} seconds={outcome.duration_s:.1f}")
    typer.echo(f"reason: {outcome.reason}")
    typer.echo(json.dumps(outcome.to_dict(), sort_keys=True))
    if outcome.status == "failed":
        said = why or "the retrain worker's log says why (a 'retrain failed' line)"
        echo_error(f"retrain of {outcome.key} failed ({outcome.reason}): {said}")


async def send_request(
    settings: Settings, request: RetrainRequest, *, wait: bool, timeout_s: float
) -> JobOutcome | None:
    """Send ``request`` to ``fx.retrain.requests``; with ``wait``, return the matching ``fx.models`` outcome.

    The consumer is positioned at the end of ``fx.models`` before the request is sent, so
    the outcome cannot be missed. Returns None when ``wait`` is False.

    Raises
    ------
    TimeoutError
        No outcome for the request within ``timeout_s``.
    ServiceUnavailableError
        The broker does not answer.
    """
    from aiokafka import TopicPartition

    from forex_diffusion.errors import ValidationError
    from retraining.records import decode_outcome, encode_request

    from ..kafka import ensure_topics, make_consumer, make_producer

    req_topic, models_topic = settings.topic("retrain.requests"), settings.topic("models")
    await broker_call(settings, lambda: ensure_topics(settings, [req_topic, models_topic]))
    consumer = make_consumer(settings) if wait else None
    try:
        if consumer is not None:
            await broker_call(settings, consumer.start, cleanup=consumer.stop)
            parts = consumer.partitions_for_topic(models_topic)
            if not parts:
                await consumer.topics()  # forces a metadata refresh
                parts = consumer.partitions_for_topic(models_topic) or set()
            tps = [TopicPartition(models_topic, p) for p in sorted(parts)]
            consumer.assign(tps)
            await consumer.seek_to_end(*tps)
            for tp in tps:
                await consumer.position(tp)
        producer = make_producer(settings)
        await broker_call(settings, producer.start, cleanup=producer.stop)
        try:
            await producer.send_and_wait(req_topic, encode_request(request), key=request.symbol.encode())
        finally:
            await producer.stop()
        if consumer is None:
            return None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for msgs in batch.values():
                for m in msgs:
                    try:
                        out = decode_outcome(m.value or b"")
                    except ValidationError:
                        continue
                    if out.request_id == request.request_id:
                        return out
        raise TimeoutError(f"no outcome for request {request.request_id} within {timeout_s} s")
    finally:
        if consumer is not None:
            await consumer.stop()


def retrain_command(
    symbol: str = typer.Option(..., "--symbol", help="Symbol, e.g. EURUSD."),
    timeframe: str = typer.Option(..., "--timeframe", help="Timeframe, e.g. 1h."),
    horizon: int | None = typer.Option(None, "--horizon", help="Steps ahead (default: the job's / worker's horizon)."),
    reason: str = typer.Option("", "--reason", help="Free text recorded with the request."),
    local: bool = typer.Option(False, "--local", help="Run the job here instead of sending it to the broker."),
    db: str | None = typer.Option(
        None, "--db", help="Database URL (default: FOREXD_DATABASE_URL / the data dir's SQLite file)."
    ),
    model_dir: Path | None = typer.Option(
        None, "--model-dir", help="Artifact root (default: FOREXD_MODEL_DIR / DATA_DIR/models).", readable=False
    ),
    config: Path | None = typer.Option(
        None,
        "--config",
        help="JSON file of job settings (JobConfig.to_dict form) for --local.",
        readable=False,
        parser=input_path,
    ),
    max_minutes: float | None = typer.Option(None, "--max-minutes", help="Training wall-clock budget for --local."),
    scope: str | None = typer.Option(
        None,
        "--scope",
        help="For --local: 'serving' retrains the model serving the symbol (a global model over its "
        "whole symbol set), 'series' the symbol's own key (default: the --config's, else serving).",
    ),
    threads: int = typer.Option(2, "--threads", help="torch CPU threads for --local (>= 1)."),
    wait: bool = typer.Option(False, "--wait", help="Broker form: wait for the outcome on fx.models."),
    timeout: float = typer.Option(1800.0, "--timeout", help="Seconds --wait waits."),
) -> None:
    """Retrain one model key (symbol, timeframe, horizon): train a challenger, score it against the champion, promote or reject.

    --local reads candles from --db, writes the artifact under --model-dir and the registry
    rows to --db, prints the outcome (last line: JSON) and exits 0 promoted (or shadow: a
    challenger that beat the champion serves in shadow for FOREXD_SHADOW_FORECASTS realised
    live forecasts first), 3 rejected, 1 failed; before any job, 66 when the --db file does
    not exist, 65 when it is no worker's database (no candles table), 73 when it is
    read-only. Without --local it sends a request to fx.retrain.requests (FOREXD_BROKER_URL,
    FOREXD_TOPIC_PREFIX); with --wait it prints the matching fx.models outcome and exits
    the same way.
    """
    from forex_diffusion.quality.trigger import RetrainRequest
    from forex_diffusion.wire import FORECAST_STEPS_MAX

    check_positive(threads, "--threads", at_most=THREADS_MAX)
    check_positive(horizon, "--horizon", at_most=FORECAST_STEPS_MAX)
    if not (timeout > 0 and math.isfinite(timeout)):  # inf, 1e400: a --wait that never ends
        raise typer.BadParameter(f"--timeout must be a positive, finite number of seconds, not {timeout}")
    if max_minutes is not None and not (max_minutes > 0 and math.isfinite(max_minutes * 60.0)):
        # nan said "TrainConfig: ConfigError: max_minutes must be > 0", naming no option; inf is
        # "Infinity" in the manifest, as `forexd train` refuses it
        raise typer.BadParameter(f"--max-minutes must be a positive, finite number of minutes, not {max_minutes}")
    if scope is not None and not local:
        raise typer.BadParameter(
            "--scope applies to --local; a sent request is scoped by the worker's FOREXD_RETRAIN_JOB_CONFIG"
        )
    if scope is not None:
        from retraining.jobs import SCOPES

        if scope not in SCOPES:
            raise typer.BadParameter(f"--scope must be one of {', '.join(SCOPES)}, not {scope!r:.40}")
    timeframe = Timeframe.parse(timeframe).name  # one spelling on the wire: 1H -> 1h
    if config is not None:
        check_input(config, "--config file")
    now = int(time.time() * 1000)
    settings = Settings.from_env()
    from forex_diffusion.instruments import InstrumentRegistry

    # EUR/USD, eur_usd -> EURUSD; a pair the registry does not list is taken as six letters
    sym = InstrumentRegistry().normalise(symbol) or (symbol.upper() if symbol.isalpha() and len(symbol) == 6 else None)
    if sym is None:
        raise typer.BadParameter(f"--symbol {symbol!r} is no currency pair (e.g. EURUSD or EUR/USD)")
    request = RetrainRequest.create(sym, timeframe, horizon, "manual", now, detail=reason)
    if local and model_dir is not None:
        check_model_dir(model_dir)  # before the job reads anything
    elif not local:
        settings.check_broker_url()
    why: str | None = None
    if local:
        outcome = _run_local(
            request,
            settings,
            config=config,
            max_minutes=max_minutes,
            db=db,
            model_dir=model_dir,
            threads=threads,
            scope=scope,
        )
        # the error may quote the database URL (a storage error): its password hidden
        why = None if outcome.error is None else hide_secrets(outcome.error, resolve_paths(db, model_dir)[0])
    else:
        try:
            got = asyncio.run(send_request(settings, request, wait=wait, timeout_s=timeout))
        except TimeoutError as exc:
            echo_error(f"{exc}: the retrain worker may be down or busy; raise --timeout or check `forexd tail models`")
            raise typer.Exit(1) from exc
        if got is None:
            typer.echo(f"sent request_id={request.request_id} key={request.key}")
            return
        outcome = got
    _print(outcome, why)
    raise typer.Exit(outcome.exit_code)


def _run_local(
    request: RetrainRequest,
    settings: Settings,
    *,
    config: Path | None,
    max_minutes: float | None,
    db: str | None,
    model_dir: Path | None,
    threads: int,
    scope: str | None = None,
) -> JobOutcome:
    import torch

    from retraining.jobs import JobConfig, run_retrain

    try:
        data: dict[str, Any] = json.loads(config.read_text(encoding="utf-8")) if config else {}
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise DataFormatError(f"--config {config} is not JSON ({exc}): fix the file (JobConfig.to_dict form)") from exc
    except ValueError as exc:  # int()'s digit limit (a number past 4,300 digits): was a traceback
        raise DataFormatError(
            f"--config {config} is not JSON (a number of more than 4,300 digits): fix the file (JobConfig.to_dict form)"
        ) from exc
    if not isinstance(data, dict):
        raise DataFormatError(
            f"--config {config} holds a JSON {type(data).__name__}, not an object of JobConfig fields"
        )
    data.setdefault("horizon", settings.horizon)
    data.setdefault("shadow_forecasts", settings.shadow_forecasts)  # issue 16: FOREXD_SHADOW_FORECASTS
    if max_minutes is not None:
        data["train"] = {**data.get("train", {}), "max_minutes": max_minutes}
    if scope is not None:
        data["scope"] = scope
    job = JobConfig.from_dict(data)
    url, mdir = resolve_paths(db, model_dir)
    torch.set_num_threads(threads)
    # the job reads candles a worker stored and writes registry rows: a mistyped path is no
    # place for a new empty database (its candles cannot be there; exit 66, as `models list`),
    # and a read-only file is refused before the job, not after it as a failed one
    engine = open_engine(url, must_exist=True, write=True, needs=("candles",))
    try:
        with progress_bar("retrain", elapsed=True, description=True) as progress:
            task = progress.add_task("starting", total=None)

            def stage(name: str, detail: Any) -> None:
                progress.update(task, description=f"{name} {detail if detail is not None else ''}"[:60])

            return run_retrain(request, engine=engine, model_dir=mdir, config=job, progress=stage)
    finally:
        engine.dispose()


def register(app: typer.Typer) -> None:
    """Add ``retrain`` to the ``forexd`` app."""
    app.command("retrain")(retrain_command)


__all__ = ["register", "retrain_command", "send_request"]
