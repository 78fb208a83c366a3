"""``forexd train FILE``: train a diffusion forecaster on a candle file and save a checkpoint."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from forex_diffusion.errors import OutputError
from forex_diffusion.instruments import InstrumentRegistry
from forex_diffusion.timeframes import Timeframe

from ._common import check_input, check_positive, check_price, progress_bar

if TYPE_CHECKING:
    from forex_diffusion.diffusion import TrainProgress

logger = logging.getLogger(__name__)


def train_command(
    file: Path = typer.Argument(..., help="Candle file (CSV, optionally .gz), any layout `forexd candles` writes or the readers know."),
    symbol: str = typer.Option(..., "--symbol", help="Symbol, e.g. EURUSD (selects its rows in files with several)."),
    timeframe: str = typer.Option(..., "--timeframe", help="Timeframe of the candles, e.g. 1h (selects it in files with several)."),
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
    threads: int = typer.Option(2, "--threads", help="torch CPU threads (>= 1)."),
    keep: int = typer.Option(3, "--keep", help="Checkpoints kept for this model key."),
) -> None:
    """Train on FILE, calibrate on the validation span, score the test span, save a checkpoint.

    Reads one candle file; writes a weights-only checkpoint and its JSON manifest (configs,
    data window, metrics, sha256) under --model-dir. Prints the test scores per step and,
    as the LAST line, the checkpoint path.
    """
    from forex_diffusion.backtest import parse_utc_date
    from forex_diffusion.diffusion import ContextSpec, TrainConfig

    check_price(price)
    for value, option in ((threads, "--threads"), (horizon, "--horizon"), (window, "--window"),
                          (max_steps, "--max-steps"), (keep, "--keep"), (calib_windows, "--calib-windows")):
        check_positive(value, option)
    if not max_minutes > 0:
        raise typer.BadParameter(f"--max-minutes must be positive, not {max_minutes}")
    sym = InstrumentRegistry().normalise(symbol) or symbol.upper()
    Timeframe.parse(timeframe)
    dates = None
    if split:
        parts = [p for p in split.split(",") if p.strip()]
        if len(parts) != 2:
            raise typer.BadParameter("--split takes DATE1,DATE2")
        dates = (parse_utc_date(parts[0]), parse_utc_date(parts[1]))
    config = TrainConfig(
        symbol=sym, timeframe=timeframe, horizon=horizon,
        context=ContextSpec(window=window), width=width, blocks=blocks, split=dates,
        calib_windows=calib_windows, test_windows=calib_windows, val_windows=min(512, calib_windows),
        until_ms=parse_utc_date(until) if until else None, max_minutes=max_minutes,
        max_steps=max_steps, seed=seed, device=device, compile=compile_, keep=keep)
    check_input(file, "candle file")
    _check_model_dir(model_dir)

    import torch

    from forex_diffusion.diffusion import train
    from forex_diffusion.readers import check_price_scale, read_candle_series

    torch.set_num_threads(threads)
    loaded = read_candle_series(file, symbol=sym, timeframe=timeframe, price=price)  # type: ignore[arg-type]
    check_price_scale(loaded.frame, sym, file)
    with progress_bar("train", elapsed=True, description=True) as progress:
        task = progress.add_task("", total=config.max_minutes * 60.0)

        def report(p: TrainProgress) -> None:
            progress.update(task, completed=min(p.elapsed_s, p.budget_s),
                            description=f"step {p.step} loss {p.loss:.4f} val CRPS {p.val_crps:.3e}")

        result = train(config, loaded.frame, model_dir, progress=report)
    m = result.metrics
    typer.echo(f"steps={m['steps']} stop={m['stop_reason']} seconds={m['train_seconds']:.1f} params={m['params']}")
    test = m.get("test")
    if test:
        typer.echo("step  skill_vs_rw  cover50  cover90")
        for i, (s, c5, c9) in enumerate(zip(test["skill"], test["cover50"], test["cover90"], strict=True), start=1):
            typer.echo(f"{i:4d}  {s:+.4f}      {c5:.3f}    {c9:.3f}")
    typer.echo(str(result.checkpoint))


def _check_model_dir(model_dir: Path) -> None:
    """Refuse, before training, a --model-dir that cannot be created or written."""
    import os

    if model_dir.exists() and not model_dir.is_dir():
        raise OutputError(f"--model-dir {model_dir} is a file: pass a directory")
    probe = model_dir
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not os.access(probe, os.W_OK):
        raise OutputError(f"cannot create checkpoints under {model_dir}: {probe} is not writable; "
                          "choose another --model-dir")


def register(app: typer.Typer) -> None:
    """Add ``train`` to the ``forexd`` app."""
    app.command("train")(train_command)
