"""``forexd candles FILE``: aggregate a tick file offline with the stream's code."""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer

from forex_diffusion.timeframes import parse_timeframes

from ._common import check_input, check_output, check_price, progress_bar, write_rejects


def candles(
    file: Path = typer.Argument(
        ...,
        help="Tick file (CSV, optionally .gz): ts_ms,bid,ask | timestamp,symbol,bid,ask[,volume] | Dukascopy | HistData; "
        "- (or a pipe) reads it from standard input.",
    ),
    output: Path | None = typer.Option(None, "-o", "--output", help="CSV to write (default: standard output)."),
    price: str = typer.Option("mid", "--price", help="Price side of the candles: mid|bid|ask."),
    timeframes: str = typer.Option("1m", "--timeframes", help="Comma-separated timeframes, e.g. 1m,5m,1h."),
    symbol: str | None = typer.Option(
        None, "--symbol", help="Symbol for files without one (else taken from the file name)."
    ),
    lateness_ms: int = typer.Option(2000, "--allowed-lateness-ms", help="Allowed lateness of ticks (event time)."),
    rejects: Path | None = typer.Option(None, "--rejects", help="Write each refused row with its reason to this CSV."),
) -> None:
    """Read ticks from FILE and write candles as CSV.

    Writes symbol,timeframe,open_time,open,high,low,close,tick_count,volume and spread
    columns (open_time ISO-8601 UTC; prices at the instrument's precision). Bad rows are
    refused with the stream's validator; counts by reason go to standard error.
    """
    from forex_diffusion.errors import DataFormatError, InputNotFoundError
    from forex_diffusion.ingest.readers import sniff_kind
    from forex_diffusion.offline import aggregate_ticks_file, write_candles_csv

    price = check_price(price)
    parse_timeframes(timeframes)
    stdin = str(file) == "-"
    if stdin:
        if sys.stdin is None or sys.stdin.isatty():
            raise InputNotFoundError(
                "tick file - is standard input, and that is a terminal: pipe a tick file in "
                "(cat ticks.csv | forexd candles -) or name the file"
            )
    else:
        check_input(file, "tick file", pipe_ok=True)  # read once: ``forexd candles <(zcat f.gz)``
    taken = [] if stdin else [(file, "the tick file")]
    check_output(output, other=taken)
    check_output(rejects, "--rejects", other=[*taken, (output, "the -o file")])
    shown = "standard input" if stdin else str(file)
    with _read_once(file, stdin) as source:
        try:
            if sniff_kind(source) == "candles":  # the tick reader has no bid/ask to read in it
                raise DataFormatError(
                    f"{file.name if source == file else shown} holds candles, not ticks: pass a tick file "
                    "(forexd indicators, backtest and train read candle files)"
                )
            with progress_bar("candles") as progress:
                task = progress.add_task("", total=None)
                run = aggregate_ticks_file(
                    source,
                    timeframes=timeframes,
                    price=price,
                    symbol=symbol,
                    allowed_lateness_ms=lateness_ms,
                    progress=lambda done, total: progress.update(task, completed=done, total=total),
                )
        except DataFormatError as exc:
            if source == file:
                raise
            raise DataFormatError(str(exc).replace(str(source), shown)) from exc  # never the spool's path
    if output is None:
        write_candles_csv(run.candles, sys.stdout, price=price)
    else:
        with output.open("w", newline="") as fh:
            write_candles_csv(run.candles, fh, price=price)
    if rejects is not None:
        write_rejects(run.rejects, rejects)
    summary = ", ".join(f"{k}={v}" for k, v in sorted(run.counts.items())) or "none"
    typer.echo(
        f"ticks={run.ticks_read} candles={len(run.candles)} crossed_accepted={run.crossed_accepted} "
        f"locked={run.locked} rejected: {summary}",
        err=True,
    )


@contextmanager
def _read_once(file: Path, stdin: bool) -> Iterator[Path]:
    """``file`` itself when it is a regular file; a pipe (``<(zcat f.gz)``, ``/dev/stdin``) or
    standard input (``-``) copied once into a temporary file of the same name, which can be
    sniffed and then read (a pipe read to learn its layout would be gone for the reader: a
    candle file through a pipe was refused for its missing bid/ask columns, not as candles).
    """
    if not stdin and file.is_file():
        yield file
        return
    with tempfile.TemporaryDirectory(prefix="forexd-candles-") as tmp:
        spool = Path(tmp) / ("stdin" if stdin else file.name)  # the name may carry the symbol
        with spool.open("wb") as out:
            if stdin:
                shutil.copyfileobj(sys.stdin.buffer, out, 1 << 20)
            else:
                with file.open("rb") as src:
                    shutil.copyfileobj(src, out, 1 << 20)
        yield spool


def register(app: typer.Typer) -> None:
    app.command("candles")(candles)
