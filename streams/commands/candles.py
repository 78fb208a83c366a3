"""``forexd candles FILE``: aggregate a tick file offline with the stream's code."""

from __future__ import annotations

import errno
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from forex_diffusion.timeframes import parse_timeframes

from ..signals import terminating_exits, terminating_masked
from ._common import (
    Output,
    check_input,
    check_list,
    check_outputs,
    check_positive,
    check_price,
    input_path,
    output_path,
    progress_bar,
    write_failed,
    write_rejects,
)

if TYPE_CHECKING:
    from forex_diffusion.instruments import InstrumentRegistry

T = TypeVar("T")

#: Most bytes of standard input (or a pipe) spooled: the readers hold a file in memory, so
#: far less already fails; without a bound ``cat /dev/zero | forexd candles -`` filled /tmp.
SPOOL_MAX = 8 << 30
#: Free space the spool leaves on its file system (a full /tmp breaks every other program).
SPOOL_RESERVE = 64 << 20
_CHUNK = 1 << 20


#: Largest --allowed-lateness-ms: the worker's FOREXD_ALLOWED_LATENESS_MS bound (a week).
LATENESS_MAX_MS = 7 * 86_400_000


def check_symbol(symbol: str | None) -> InstrumentRegistry:
    """The instrument registry knowing ``--symbol`` (a known symbol or alias, or six letters),
    checked before the input is read (a pipe was read whole before a bad one was refused)."""
    from forex_diffusion.errors import ConfigError
    from forex_diffusion.instruments import InstrumentRegistry

    reg = InstrumentRegistry()
    if symbol is None:
        return reg
    try:
        return reg.with_symbol(symbol)
    except ConfigError as exc:
        raise typer.BadParameter(str(exc), param_hint="'--symbol'") from None


def is_stdout(path: Path | None) -> bool:
    """Whether an output option names standard output (``-``, as the input ``-`` names standard input)."""
    return path is not None and str(path) == "-"


def resolve_outputs(output: Path | None, rejects: Path | None) -> tuple[Path | None, Path | None, bool]:
    """``(-o file or None for standard output, --rejects file or None, whether the rejects go
    to standard output)``: ``-`` is standard output for either option, but not for both.
    Standard output closed (``>&-``) is refused here, before any work: what went there was
    lost, and the command said nothing and exited 0."""
    from forex_diffusion.errors import OutputError

    out = None if output is None or is_stdout(output) else output
    to_stdout = is_stdout(rejects)
    if to_stdout and out is None:
        raise typer.BadParameter(
            "--rejects - and the -o output would both go to standard output: give -o or --rejects a file name",
            param_hint="'--rejects'",
        )
    if (out is None or to_stdout) and (sys.stdout is None or _closed(sys.stdout)):
        what = "--rejects -" if to_stdout else "the output (no -o)"
        raise OutputError(f"standard output is closed, and {what} goes there: give a file name instead")
    return out, None if to_stdout else rejects, to_stdout


@contextmanager
def open_output(path: Path | None, option: str = "-o") -> Iterator[IO[str]]:
    """``path`` opened to write text, or standard output for None. A write that fails
    (``-o /dev/full``, a disk filling up) is one line naming the file and the option (exit
    74), and the half-written file is removed: it was ``[Errno 28] No space left on device``."""
    if path is None:
        yield sys.stdout
        sys.stdout.flush()  # a failed write is said now, before the command's summary line
        return
    opened = False
    try:
        with path.open("w", newline="") as fh:
            opened = True
            yield fh
    except OSError as exc:
        # only a regular file this command truncated is removed: a failed open (a read-only
        # file, a directory) removed the user's file, and a link is left to its target
        if opened and path.is_file() and not path.is_symlink():
            path.unlink(missing_ok=True)
        raise write_failed(path, exc, option) from exc


# The options `forexd candles` and `forexd indicators` share, declared once (typer reads
# them from the annotation).
CsvOutput = Annotated[
    Path | None,
    typer.Option(
        "-o", "--output", help="CSV to write (default, or -: standard output).", readable=False, parser=output_path
    ),
]
Rejects = Annotated[
    Path | None,
    typer.Option(
        "--rejects",
        help="Write each refused row with its reason to this CSV (- : standard output).",
        readable=False,
        parser=output_path,
    ),
]


def candles(
    file: Path = typer.Argument(
        ...,
        help="Tick file (CSV, optionally .gz): ts_ms,bid,ask | timestamp,symbol,bid,ask[,volume] | Dukascopy | HistData; "
        "- (or a pipe) reads it from standard input.",
        readable=False,
        parser=input_path,
    ),
    output: CsvOutput = None,
    price: str = typer.Option("mid", "--price", help="Price side of the candles: mid|bid|ask."),
    timeframes: str = typer.Option("1m", "--timeframes", help="Comma-separated timeframes, e.g. 1m,5m,1h."),
    symbol: str | None = typer.Option(
        None,
        "--symbol",
        help="Symbol of the ticks: names the rows of a file without a symbol column (else taken from the file "
        "name); in a file with one, only its rows are read (EURUSD, EUR/USD or eur_usd; none there: exit 65). "
        "Without it, every symbol of the file is written.",
    ),
    lateness_ms: int = typer.Option(
        2000, "--allowed-lateness-ms", help="Allowed lateness of ticks (event time), 0 to 604800000 (a week)."
    ),
    rejects: Rejects = None,
) -> None:
    """Read ticks from FILE and write candles as CSV.

    Writes symbol,timeframe,open_time,open,high,low,close,tick_count,volume and spread
    columns (open_time ISO-8601 UTC; prices at the instrument's precision). Bad rows are
    refused with the stream's validator; counts by reason go to standard error. Every row
    refused: exit 65, --rejects still written.
    """
    from forex_diffusion.errors import DataFormatError, InputNotFoundError
    from forex_diffusion.ingest.readers import sniff_kind
    from forex_diffusion.offline import aggregate_ticks_file, write_candles_csv

    price = check_price(price)
    check_list(timeframes, "--timeframes")  # 1m,,5m: an empty item (a typo) was dropped
    parse_timeframes(timeframes)  # ConfigError (exit 2) names the token: the core bounds the count
    check_positive(lateness_ms, "--allowed-lateness-ms", at_least=0, at_most=LATENESS_MAX_MS)
    check_symbol(symbol)
    stdin = str(file) == "-"
    if stdin:
        if sys.stdin is None or _closed(sys.stdin):  # ``forexd candles - <&-``
            raise InputNotFoundError(
                "tick file - is standard input, and it is closed: pipe a tick file in "
                "(cat ticks.csv | forexd candles -) or name the file"
            )
        if sys.stdin.isatty():
            raise InputNotFoundError(
                "tick file - is standard input, and that is a terminal: pipe a tick file in "
                "(cat ticks.csv | forexd candles -) or name the file"
            )
    else:
        check_input(file, "tick file", pipe_ok=True)  # read once: ``forexd candles <(zcat f.gz)``
    output, rejects, rejects_out = resolve_outputs(output, rejects)
    taken = [] if stdin else [(file, "the tick file")]
    check_outputs(
        taken,
        Output(output, "-o", "CSV", ".csv", stdout=True),
        Output(rejects, "--rejects", "CSV", ".csv", stdout=True),
    )
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
    summary = ", ".join(f"{k}={v}" for k, v in sorted(run.counts.items())) or "none"
    if run.rejects and not run.candles:  # every row refused: exit 65, the list written first
        if rejects is not None or rejects_out:
            with open_output(rejects, "--rejects") as fh:
                write_rejects(run.rejects, fh)
        name = file.name if not stdin else shown
        raise DataFormatError(
            f"{name}: every tick ({len(run.rejects)}) is one the stream refuses ({summary}; first at line "
            f"{run.rejects[0].line}): fix the file (--rejects lists each with its reason)"
        )
    with open_output(output) as fh:
        write_candles_csv(run.candles, fh, price=price)
    if rejects is not None or rejects_out:
        with open_output(rejects, "--rejects") as fh:
            write_rejects(run.rejects, fh)
    typer.echo(
        f"ticks={run.ticks_read} candles={len(run.candles)} crossed_accepted={run.crossed_accepted} "
        f"locked={run.locked} rejected: {summary}",
        err=True,
    )


def _closed(stream: IO[Any]) -> bool:
    """Whether a standard stream is there but closed (the stream, or its descriptor, gone)."""
    if getattr(stream, "closed", False):
        return True
    try:
        fd = stream.fileno()
    except (OSError, ValueError):  # no descriptor (an in-memory stream): it can be read
        return False
    try:
        os.fstat(fd)
    except OSError:
        return True
    return False


@contextmanager
def _spool_dir() -> Iterator[str]:
    """A temporary directory, removed however the block ends. Its creation and its removal
    are not interrupted by SIGTERM or SIGHUP (:func:`~streams.signals.terminating_masked`): a signal between ``mkdtemp``
    and the registration of the directory's cleanup left the spool in /tmp (the window a
    busy machine widens, and a test that signals as the directory appears hit)."""
    with terminating_masked():
        td = tempfile.TemporaryDirectory(prefix="forexd-candles-")
    try:
        yield td.name
    finally:
        with terminating_masked():
            td.cleanup()


def _spool(src: IO[bytes], out: IO[bytes], where: Path, shown: str) -> None:
    """Copy ``src`` into ``out`` (a file under ``where``), at most :data:`SPOOL_MAX` bytes and
    never past :data:`SPOOL_RESERVE` of free space on ``where``'s file system.

    Raises
    ------
    OutputError
        The file system is full, or would be (exit 73: the spool cannot be created).
    DataFormatError
        ``src`` holds more than :data:`SPOOL_MAX` bytes (exit 65).
    """
    from forex_diffusion.errors import DataFormatError, OutputError

    def full(free: int) -> OutputError:
        return OutputError(
            f"cannot copy {shown} to {where.parent.parent}: its file system has {free >> 20} MiB free; "
            "free space there, point TMPDIR at a larger one, or name a file instead"
        )

    total = 0
    while chunk := src.read(_CHUNK):
        total += len(chunk)
        if total > SPOOL_MAX:
            raise DataFormatError(
                f"{shown} holds more than {SPOOL_MAX >> 30} GiB, more than a tick file read into "
                "memory can be: split it into smaller files"
            )
        free = _free_bytes(where)
        if free - len(chunk) < SPOOL_RESERVE:
            raise full(free)
        try:
            out.write(chunk)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise full(_free_bytes(where)) from None
            raise


def _free_bytes(where: Path) -> int:
    """Free bytes (for this user) on the file system holding the file ``where`` (very many
    when that cannot be asked: a full disk is then caught by the write's ENOSPC)."""
    try:
        return shutil.disk_usage(where.parent).free
    except OSError:
        return sys.maxsize


@contextmanager
def _read_once(file: Path, stdin: bool) -> Iterator[Path]:
    """``file`` itself when it is a regular file; a pipe (``<(zcat f.gz)``, ``/dev/stdin``) or
    standard input (``-``) copied once into a temporary file of the same name, which can be
    sniffed and then read (a pipe read to learn its layout would be gone for the reader: a
    candle file through a pipe was refused for its missing bid/ask columns, not as candles).

    The copy is bounded (:func:`_spool`) and removed however the command ends: SIGTERM and
    SIGHUP exit through it (:func:`~streams.signals.terminating_exits`; they left it in /tmp before).
    """
    if not stdin and file.is_file():
        yield file
        return
    shown = "standard input" if stdin else str(file)
    with terminating_exits(), _spool_dir() as tmp:
        spool = Path(tmp) / ("stdin" if stdin else file.name)  # the name may carry the symbol
        with spool.open("wb") as out:
            if stdin:
                _spool(sys.stdin.buffer, out, spool, shown)
            else:
                with file.open("rb") as src:
                    _spool(src, out, spool, shown)
        yield spool


def register(app: typer.Typer) -> None:
    app.command("candles")(candles)
