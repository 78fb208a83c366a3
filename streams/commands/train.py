"""``forexd train FILE``: train a diffusion forecaster on a candle file and save a checkpoint."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from forex_diffusion.backtest import parse_utc_date
from forex_diffusion.diffusion import ContextSpec, TrainConfig, TrainProgress, train
from forex_diffusion.errors import ForexDiffusionError
from forex_diffusion.readers import read_candles

logger = logging.getLogger(__name__)


def train_command(
    file: Path = typer.Argument(..., help="Candle file (CSV, optionally .gz), any layout `forexd candles` writes or the readers know."),
    symbol: str = typer.Option(..., "--symbol", help="Symbol, e.g. EURUSD."),
    timeframe: str = typer.Option(..., "--timeframe", help="Timeframe of the file's candles, e.g. 1h."),
    horizon: int = typer.Option(24, "--horizon", help="Steps ahead H."),
    until: str | None = typer.Option(None, "--until", help="Ignore candles closing after DATE (UTC)."),
    split: str | None = typer.Option(None, "--split", help="DATE1,DATE2: train before DATE1, validate DATE1–DATE2, test after DATE2 (default 60/20/20)."),
    max_minutes: float = typer.Option(10.0, "--max-minutes", help="Wall-clock budget of the whole run."),
    max_steps: int = typer.Option(20_000, "--max-steps", help="Optimiser step cap."),
    model_dir: Path = typer.Option(..., "--model-dir", help="Checkpoint root; writes DIR/SYMBOL-TF-hH/VERSION.{pt,json}."),
    price: str = typer.Option("mid", "--price", help="Side of bid/ask files: mid|bid|ask."),
    window: int = typer.Option(48, "--window", help="Past candles the model sees."),
    width: int = typer.Option(96, "--width", help="Hidden width of the denoiser."),
    blocks: int = typer.Option(3, "--blocks", help="Residual blocks of the denoiser."),
    calib_windows: int = typer.Option(4096, "--calib-windows", help="Validation windows used to calibrate (and test windows scored)."),
    seed: int = typer.Option(0, "--seed", help="Seed of initialisation, batches and noise."),
    device: str = typer.Option("auto", "--device", help="auto|cpu|cuda."),
    compile_: bool = typer.Option(False, "--compile", help="Wrap the loss in torch.compile."),
    threads: int = typer.Option(2, "--threads", help="torch CPU threads."),
    keep: int = typer.Option(3, "--keep", help="Checkpoints kept for this model key."),
) -> None:
    """Train on FILE, calibrate on the validation span, score the test span, save a checkpoint.

    Reads one candle file; writes a weights-only checkpoint and its JSON manifest (configs,
    data window, metrics, sha256) under --model-dir. Prints the test scores per step and,
    as the LAST line, the checkpoint path.
    """
    if price not in ("mid", "bid", "ask"):
        raise typer.BadParameter("--price must be mid, bid or ask")
    err = Console(stderr=True)
    try:
        torch.set_num_threads(threads)
        dates = None
        if split:
            parts = [p for p in split.split(",") if p.strip()]
            if len(parts) != 2:
                raise typer.BadParameter("--split takes DATE1,DATE2")
            dates = (parse_utc_date(parts[0]), parse_utc_date(parts[1]))
        config = TrainConfig(
            symbol=symbol.upper(), timeframe=timeframe, horizon=horizon,
            context=ContextSpec(window=window), width=width, blocks=blocks, split=dates,
            calib_windows=calib_windows, test_windows=calib_windows, val_windows=min(512, calib_windows),
            until_ms=parse_utc_date(until) if until else None, max_minutes=max_minutes,
            max_steps=max_steps, seed=seed, device=device, compile=compile_, keep=keep)
        loaded = read_candles(file, symbol=symbol.upper(), price=price)  # type: ignore[arg-type]
        progress = Progress(TextColumn("train"), BarColumn(), TextColumn("{task.description}"),
                            TimeElapsedColumn(), console=err, transient=True)
        with progress:
            task = progress.add_task("", total=config.max_minutes * 60.0)

            def report(p: TrainProgress) -> None:
                progress.update(task, completed=min(p.elapsed_s, p.budget_s),
                                description=f"step {p.step} loss {p.loss:.4f} val CRPS {p.val_crps:.3e}")

            result = train(config, loaded.frame, model_dir, progress=report)
    except ForexDiffusionError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    m = result.metrics
    typer.echo(f"steps={m['steps']} stop={m['stop_reason']} seconds={m['train_seconds']:.1f} params={m['params']}")
    test = m.get("test")
    if test:
        typer.echo("step  skill_vs_rw  cover50  cover90")
        for i, (s, c5, c9) in enumerate(zip(test["skill"], test["cover50"], test["cover90"], strict=True), start=1):
            typer.echo(f"{i:4d}  {s:+.4f}      {c5:.3f}    {c9:.3f}")
    typer.echo(str(result.checkpoint))


def register(app: typer.Typer) -> None:
    """Add ``train`` to the ``forexd`` app."""
    app.command("train")(train_command)
