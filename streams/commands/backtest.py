"""``forexd backtest FILE``: walk a model forward through a candle file, candle by candle."""

from __future__ import annotations

import math
from pathlib import Path

import torch
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from forex_diffusion.backtest import (
    BacktestConfig,
    backtest,
    fan_chart_png,
    parse_utc_date,
    write_backtest_csv,
)
from forex_diffusion.diffusion import Predictor
from forex_diffusion.errors import ForexDiffusionError
from forex_diffusion.evaluation import StepGroupSummary, summarize_forecasts
from forex_diffusion.readers import read_candles


def backtest_command(
    file: Path = typer.Argument(..., help="Candle file (CSV, optionally .gz)."),
    symbol: str = typer.Option(..., "--symbol", help="Symbol, e.g. EURUSD."),
    timeframe: str = typer.Option(..., "--timeframe", help="Timeframe of the file's candles."),
    model: Path = typer.Option(..., "--model", help="Checkpoint (.pt or .json) or a model-key directory (newest)."),
    from_: str | None = typer.Option(None, "--from", help="First as_of (UTC date); earlier candles only warm the context."),
    to: str | None = typer.Option(None, "--to", help="Last as_of (UTC date)."),
    every: int = typer.Option(1, "--every", help="Forecast every K-th candle."),
    output: Path = typer.Option(..., "-o", "--output", help="CSV to write, one row per (as_of, step)."),
    steps: int | None = typer.Option(None, "--steps", help="DDIM steps (default: the model's)."),
    samples: int | None = typer.Option(None, "--samples", help="Sample paths (default: the model's)."),
    price: str = typer.Option("mid", "--price", help="Side of bid/ask files: mid|bid|ask."),
    per_step: bool = typer.Option(False, "--per-step", help="Summarise every step instead of step groups."),
    plot: Path | None = typer.Option(None, "--plot", help="PNG fan chart of one forecast (--plot-as-of, default the last fully realised) against the realised path."),
    plot_as_of: str | None = typer.Option(None, "--plot-as-of", help="as_of (UTC time) of the plotted forecast."),
    threads: int = typer.Option(2, "--threads", help="torch CPU threads."),
    device: str = typer.Option("cpu", "--device", help="auto|cpu|cuda."),
) -> None:
    """Forecast at each due candle of FILE with --model and score against the EWMA random walk.

    Writes symbol,timeframe,as_of,step,q05..q95,mean,p_up,realized,rw_q05..rw_q95
    (as_of in epoch ms UTC; realized empty where unknown), then prints CRPS, skill vs the
    random walk and 50/90 % coverage per step group.
    """
    if price not in ("mid", "bid", "ask"):
        raise typer.BadParameter("--price must be mid, bid or ask")
    err = Console(stderr=True)
    try:
        torch.set_num_threads(threads)
        predictor = Predictor.load(model, device=device)
        config = BacktestConfig(symbol=symbol.upper(), timeframe=timeframe,
                                from_ms=parse_utc_date(from_) if from_ else None,
                                to_ms=parse_utc_date(to) if to else None,
                                every=every, steps=steps, samples=samples)
        frame = read_candles(file, symbol=symbol.upper(), price=price).frame  # type: ignore[arg-type]
        progress = Progress(TextColumn("backtest"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                            TimeRemainingColumn(), console=err, transient=True)
        with progress:
            task = progress.add_task("", total=len(frame))
            rows = backtest(frame, predictor, config,
                            progress=lambda done, total: progress.update(task, completed=done, total=total))
        write_backtest_csv(rows, output)
        plotted = None
        if plot is not None:
            plotted = fan_chart_png(rows, plot, as_of=parse_utc_date(plot_as_of) if plot_as_of else None)
    except ForexDiffusionError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    horizon = predictor.horizon
    groups = [(s, s) for s in range(1, horizon + 1)] if per_step else None
    summary = summarize_forecasts(rows, groups)
    typer.echo(f"model {predictor.key} {predictor.version}: {rows['as_of'].nunique()} forecasts, {len(rows)} rows -> {output}")
    typer.echo(format_summary(summary))
    if plot is not None:
        typer.echo(f"fan chart of as_of={plotted} -> {plot}")


def format_summary(summary: list[StepGroupSummary]) -> str:
    """Return the summary as a fixed-width text table."""
    lines = ["steps     n        crps        rw_crps     skill    cover50  cover90  rw_cover90"]
    for s in summary:
        label = f"{s.steps[0]}" if s.steps[0] == s.steps[1] else f"{s.steps[0]}-{s.steps[1]}"
        lines.append(f"{label:<8}{s.n:>6}  {_f(s.crps, '.4e'):>10}  {_f(s.rw_crps, '.4e'):>10}  "
                     f"{_f(s.skill, '+.4f'):>7}  {_f(s.cover50, '.3f'):>7}  {_f(s.cover90, '.3f'):>7}  "
                     f"{_f(s.rw_cover90, '.3f'):>9}")
    return "\n".join(lines)


def _f(x: float, spec: str) -> str:
    return "nan" if math.isnan(x) else format(x, spec)




def register(app: typer.Typer) -> None:
    """Add ``backtest`` to the ``forexd`` app."""
    app.command("backtest")(backtest_command)
