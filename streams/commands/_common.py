"""Checks and helpers shared by the ``forexd`` sub-commands.

Light at import (standard library, typer and the core's error classes only): each helper
imports what it needs when called, so ``forexd --help`` does not load rich.progress,
aiokafka or sqlalchemy.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import io
import logging
import os
import re
import stat
import sys
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TypeVar

import typer

from forex_diffusion.errors import (
    DataFormatError,
    InputNotFoundError,
    OutputError,
    ServiceUnavailableError,
    StorageError,
)

from ..db_text import LOGIN_REFUSED, MISSING_DATABASE, NO_PASSWORD, LoginRefusedError, hide_password, hide_secrets

if TYPE_CHECKING:
    from rich.progress import Progress
    from sqlalchemy.engine import Engine

    from forex_diffusion.domain import PriceSide

    from ..settings import Settings

__all__ = [
    "LOG_LEVELS",
    "LoginRefusedError",
    "Output",
    "PRICE_SIDES",
    "SEED_MAX",
    "THREADS_MAX",
    "broker_call",
    "check_database",
    "check_given",
    "check_input",
    "check_list",
    "check_model_dir",
    "check_output",
    "check_outputs",
    "check_output_format",
    "check_positive",
    "check_price",
    "database_url",
    "echo_error",
    "guard_stdout",
    "hide_password",
    "input_path",
    "model_files",
    "name_too_long",
    "one_line",
    "open_engine",
    "output_path",
    "progress_bar",
    "show_path",
    "write_failed",
    "writing",
]

#: ``--price`` values, each the core's :data:`~forex_diffusion.domain.PriceSide` of that name.
_SIDES: dict[str, PriceSide] = {"mid": "mid", "bid": "bid", "ask": "ask"}
PRICE_SIDES = tuple(_SIDES)

#: ``--log-level`` values and the logging level each means.
LOG_LEVELS: dict[str, int] = {
    "crit": logging.CRITICAL,
    "critical": logging.CRITICAL,
    "error": logging.ERROR,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "info": logging.INFO,
    "debug": logging.DEBUG,
}
T = TypeVar("T")

#: ``--threads`` ceiling: torch given 100000 threads died of a segfault or a MemoryError.
THREADS_MAX = 256
#: ``--seed`` ceiling: 99999999999999999999 overflowed torch.manual_seed (a traceback after
#: the file was read); training also seeds with seed + 1 and seed + window index.
SEED_MAX = 2**32 - 1


#: Longest echoed value (a word, or a quoted value) an error line keeps: a 5,000-digit number,
#: a broker URL of 10,000 addresses or a 1 MB --symbol made one line of megabytes.
VALUE_CLIP = 200
#: Longest error line (after clipping each value): a value of many short words is cut here.
LINE_CLIP = 1000

#: An echoed value: a quoted one (``repr``: may hold spaces) or a long run without spaces.
_VALUE = re.compile(r"""(?<!\w)(?:'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")(?!\w)|\S{""" + f"{VALUE_CLIP + 1},}}")


def _escape_controls(text: str) -> str:
    """``text`` with each character that is neither printable nor white space written as its
    escape (``\\x1b``): a terminal shows no colour, cursor move or bidirectional override."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or c.isspace() else c.encode("unicode_escape").decode("ascii") for c in text)


def _clip(value: str, limit: int = VALUE_CLIP) -> str:
    """``value`` cut to ``limit`` characters, marked with ``...`` and its length."""
    if len(value) <= limit:
        return value
    if len(value) > 2 and value[0] == value[-1] and value[0] in "'\"":  # a quoted value keeps its quotes
        return f"{value[: limit - 1]}{value[0]}... ({len(value) - 2} characters)"
    end = len(value)
    while end > len(value) - 3 and value[end - 1] in ":;,.)]}":  # the sentence's, not the value's
        end -= 1
    return f"{value[:limit]}... ({end} characters){value[end:]}"


def one_line(text: str) -> str:
    """``text`` as one bounded line, as every ``forexd`` error line is printed.

    Control characters are escaped, newlines and runs of white space folded, each echoed
    value longer than :data:`VALUE_CLIP` (a quoted value, or a run without spaces) cut to it
    with its length, and a line still longer than :data:`LINE_CLIP` cut in the middle (its
    start says the problem, its end the fix).
    """
    line = " ".join(_escape_controls(text).split())
    if len(line) <= VALUE_CLIP:
        return line
    line = _VALUE.sub(lambda m: _clip(m.group(0)), line)
    if len(line) > LINE_CLIP:
        tail = LINE_CLIP // 4
        cut = len(line) - (LINE_CLIP - tail) - tail
        line = f"{line[: LINE_CLIP - tail]}... ({cut} characters cut) ...{line[-tail:]}"
    return line


def echo_error(text: str) -> None:
    """Print ``error: <text>`` on standard error as :func:`one_line` makes it."""
    typer.echo(f"error: {one_line(text)}", err=True)


#: A write that failed for want of room: "free space there" is part of its fix.
_NO_ROOM = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def write_failed(path: Path | None, exc: OSError, option: str = "-o") -> OSError:
    """The one-line error of a failed write to ``path`` given by ``option`` (None: standard
    output), naming where and the fix: ``cannot write /dev/full: No space left on device; free
    space there or choose another -o``. Every output of every command is reported so (a bare
    ``[Errno 28] No space left on device`` named neither); the status stays 74 (EX_IOERR)."""
    where = "standard output" if path is None else str(path)
    other = "redirect standard output elsewhere" if path is None else f"choose another {option}"
    fix = f"free space there or {other}" if exc.errno in _NO_ROOM else other
    return OSError(f"cannot write {where}: {exc.strerror or exc}; {fix}")


@contextlib.contextmanager
def writing(path: Path, option: str = "-o") -> Iterator[None]:
    """Within, a failed write to ``path`` (a CSV or PNG a core function writes by its name) is
    :func:`write_failed`'s line; a regular file left half-written (its device full) is removed."""
    try:
        yield
    except OSError as exc:
        if exc.errno == errno.EPIPE or str(exc).startswith("cannot write "):
            raise
        if exc.errno in (*_NO_ROOM, errno.EIO) and path.is_file() and not path.is_symlink():
            path.unlink(missing_ok=True)
        raise write_failed(path, exc, option) from exc


class _StandardOutput(io.FileIO):
    """Standard output's descriptor, whose failed write (``> /dev/full``) is
    :func:`write_failed`'s line; ``EPIPE`` (its reader gone: exit 141) passes unchanged."""

    def write(self, data: Any) -> int | None:  # type: ignore[override]
        try:
            return super().write(data)
        except OSError as exc:
            if exc.errno == errno.EPIPE:
                raise
            raise write_failed(None, exc) from exc


def guard_stdout(stream: Any) -> Any:
    """``stream`` (standard output as Python opened it) rebuilt on :class:`_StandardOutput`
    with its encoding, errors and buffering, or ``stream`` itself when it is no file of a
    descriptor (closed, in memory). Every writer of standard output (``echo``, rich's help,
    a CSV to ``-o -``) then fails with one line naming it and the fix, wherever it writes."""
    if not isinstance(stream, io.TextIOWrapper):
        return stream
    try:
        fd = stream.fileno()
        stream.flush()
    except (OSError, ValueError):
        return stream
    raw = _StandardOutput(fd, "w", closefd=False)
    try:  # the buffer Python gives a file: its block size
        size = os.fstat(fd).st_blksize
    except OSError:
        size = 0
    return io.TextIOWrapper(
        io.BufferedWriter(raw, size if size > 1 else io.DEFAULT_BUFFER_SIZE),
        encoding=stream.encoding,
        errors=stream.errors,
        newline=None,
        line_buffering=stream.line_buffering,
        write_through=stream.write_through,
    )


def write_rejects(rejects: Iterable[Any], out: Path | IO[str]) -> None:
    """Write refused rows (``line, reason, detail``) as CSV to a file or an open text stream.

    ``candles``, ``indicators`` and ``replay`` write ``--rejects`` with it. The third column
    is the row's detail, else its raw text, made safe to show and to open:

    - every character that is not printable (ESC, C1 controls such as U+009B, tab, newline,
      U+2028, bidirectional overrides) is written as its escape (``\\x1b``, ``\\x9b``,
      ``\\t``), so ``cat`` of the file or ``--rejects -`` cannot drive a terminal and each
      refused row is one line;
    - a cell that would start with ``=``, ``+``, ``-`` or ``@`` (a formula when the file is
      opened in a spreadsheet: CSV injection) starts with ``'`` instead, as OWASP advises.

    The column is for reading: the escaped text is not the row's bytes again.
    """
    import csv

    def safe(text: str) -> str:
        if not text.isprintable():
            text = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)
        return f"'{text}" if text[:1] in ("=", "+", "-", "@") else text

    def write(fh: IO[str]) -> None:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["line", "reason", "detail"])
        for r in rejects:
            w.writerow([r.line, r.reason.value, safe(r.detail or r.raw)])

    if isinstance(out, Path):
        with writing(out, "--rejects"), out.open("w", newline="") as fh:
            write(fh)
    else:
        write(out)


def reject_summary(rejects: Any) -> str:
    """``reason=count, …`` of refused rows, or ``none``."""
    from collections import Counter

    counts = Counter(r.reason.value for r in rejects)
    return ", ".join(f"{k}={v}" for k, v in sorted(counts.items())) or "none"


def check_input(path: Path, what: str = "input file", *, pipe_ok: bool = False) -> Path:
    """Return ``path`` if it is a readable file, else raise :class:`InputNotFoundError`.

    A device (``/dev/zero``: read whole, it never ends) or a socket is refused. A pipe
    (``<(zcat f.gz)``, ``/dev/stdin``) is taken only with ``pipe_ok``, by a command that
    reads its input once: a second open of a pipe whose writer is gone blocks for ever.
    """
    shown = show_path(path)
    if (long := name_too_long(path)) is not None:
        raise InputNotFoundError(f"{what} {shown}: {long}")
    if not path.exists():
        if (why := _broken_link(path)) is not None:
            raise InputNotFoundError(f"{what} {shown} {why}")
        if str(path) == "-":  # `cat f | forexd indicators -`: only `forexd candles -` reads standard input
            raise InputNotFoundError(
                f"{what} - (standard input) is a pipe, and this command reads it more than once: pass a file"
            )
        raise InputNotFoundError(f"{what} {shown} does not exist: check the path")
    if path.is_dir():
        raise InputNotFoundError(f"{what} {shown} is a directory: pass a file")
    if path.is_fifo() and not pipe_ok:
        raise InputNotFoundError(f"{what} {shown} is a pipe, and this command reads it more than once: pass a file")
    if not (path.is_file() or path.is_fifo()):
        raise InputNotFoundError(f"{what} {shown} is not a regular file (a device or socket): pass a file")
    if not os.access(path, os.R_OK):
        raise InputNotFoundError(f"{what} {shown} is not readable: check its permissions")
    return path


def show_path(path: Path | str) -> str:
    """``path`` as an error line shows it: as typed, or quoted with its escapes (``'a\\nb.csv'``,
    ``'x\\udcff.csv'``) when it holds a character that is not printable. :func:`one_line` folds
    a newline into a space: ``candle file h1 .csv does not exist`` named a file that was
    never given, ``h1<newline>.csv``."""
    text = str(path)
    return text if text.isprintable() else repr(text)


def name_too_long(path: Path) -> str | None:
    """Why ``path`` is too long for the system (a name of it past the file system's limit, or
    the whole path past the system's), with the fix; None when it is not. A 5,000-character
    ``--model-dir`` said ``[Errno 36] File name too long`` (exit 74), naming no option."""
    try:
        os.lstat(path)
    except OSError as exc:
        if exc.errno != errno.ENAMETOOLONG:
            return None
    except ValueError:  # a NUL: no file has one, said by the check that follows
        return None
    else:
        return None
    longest = max((len(os.fsencode(part)) for part in path.parts), default=0)
    if longest > _NAME_MAX:
        said = f"a name in it is {longest:,} bytes long, past the {_NAME_MAX} a file name may have"
    else:
        said = f"it is {len(os.fsencode(path)):,} bytes long, past what the system takes in a path"
    return f"{said}: choose a shorter path"


#: Longest name of one file or directory (bytes) on the usual file systems (ext4, xfs, btrfs, tmpfs).
_NAME_MAX = 255


def _broken_link(path: Path) -> str | None:
    """Why the symbolic link ``path`` leads to no file (a loop, a missing target), with the
    fix; None when ``path`` is no link. ``Path.exists`` is False for both, said "does not exist"."""
    try:
        if not path.is_symlink():
            return None
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "is a symbolic link loop (it cannot be resolved): fix the link or pass the file itself"
        return f"is a link to {os.readlink(path)}, which does not exist: fix the link or pass the file itself"
    except ValueError:  # a NUL in the path
        return None
    return None


def _same_file(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` name one file (through links, ``..`` or another spelling)."""
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and os.path.samefile(a, b))
    except (OSError, ValueError, RuntimeError):  # ValueError: a NUL in the path; RuntimeError: a link loop
        return False


def _loop(path: Path) -> bool:
    """Whether ``path`` is a symbolic link that never resolves (a loop, or a chain past the system's limit)."""
    try:
        os.stat(path)
    except OSError as exc:
        return exc.errno == errno.ELOOP
    except ValueError:
        return False
    return False


def _is_char_device(path: Path) -> bool:
    """Whether ``path`` is a character device (``/dev/null``, a terminal), through links."""
    try:
        return stat.S_ISCHR(path.stat().st_mode)
    except (OSError, ValueError):
        return False


def model_files(model: Path) -> list[tuple[Path | None, str]]:
    """The files of ``--model`` (a checkpoint and its manifest, or every checkpoint and manifest
    of a model key's directory), as :func:`check_output`'s ``other``: an output over one
    destroys the model.

    Raises
    ------
    ArtifactError
        ``model`` is a directory holding no checkpoint (exit 2, as loading it says): before,
        an ``-o`` file that happened to be in it was refused as "a file of the model" (73).
    """
    from forex_diffusion.errors import ArtifactError

    if (long := name_too_long(model)) is not None:
        raise ArtifactError(f"--model {show_path(model)}: {long}")
    if (why := _broken_link(model)) is not None:  # was "checkpoint file not found", after the checks
        raise ArtifactError(f"--model {show_path(model)} {why}")
    if model.exists() and not (model.is_dir() or model.is_file()):  # was "checkpoint file not found"
        raise ArtifactError(
            f"--model {model} is not a regular file (a device, pipe or socket): "
            "pass a checkpoint (.pt or .json) or a model-key directory"
        )
    if model.is_dir():
        files = sorted(f for f in model.iterdir() if f.suffix in (".pt", ".json") and not f.is_dir())
        if not any(f.suffix == ".pt" for f in files):
            raise ArtifactError(
                f"{model}: no checkpoint in this directory: pass a checkpoint (.pt or .json) "
                "or a model-key directory that holds one"
            )
    else:  # a checkpoint named by either file: X.pt or X.json (its manifest) stands for both
        files = sorted({model, model.with_suffix(".pt"), model.with_suffix(".json")})
    return [(f, "a file of the model") for f in files if not f.is_dir()]


def check_output(path: Path | None, option: str = "-o", *, other: Sequence[tuple[Path | None, str]] = ()) -> None:
    """Refuse, before any work, an output whose directory is missing or not writable, or
    that is one of the files in ``other`` (``(path, what it is)``: the input, another output),
    which writing it would destroy."""
    if path is None:
        return
    parent = path.parent if str(path.parent) else Path(".")
    shown = show_path(path)
    if (long := name_too_long(path)) is not None:
        raise OutputError(f"cannot write {option} {shown}: {long}")
    if path.is_dir():
        raise OutputError(f"cannot write {shown}: it is a directory; give {option} a file name")
    if _loop(path):  # resolving it for the checks below was a traceback (RuntimeError: Symlink loop)
        raise OutputError(
            f"cannot write {shown}: it is a symbolic link loop (it cannot be resolved); fix the link or "
            f"choose another {option}"
        )
    for taken, what in other:  # a device (/dev/null, a terminal) may take two outputs: it holds no file
        if taken is not None and not _is_char_device(path) and _same_file(path, taken):
            raise OutputError(f"cannot write {shown}: it is {what} {show_path(taken)}; choose another {option}")
    if not parent.is_dir():
        raise OutputError(
            f"cannot write {shown}: directory {show_path(parent)} does not exist; create it or choose another {option}"
        )
    if path.is_symlink() and not path.exists() and not _is_char_device(path):
        # a link to nothing: written through, into a directory that may not be there (exit 74
        # after the work: "cannot write x.csv: No such file or directory")
        target = Path(os.path.join(parent, os.readlink(path)))
        if not target.parent.is_dir():
            raise OutputError(
                f"cannot write {shown}: it is a link to {show_path(os.readlink(path))}, whose directory does not "
                f"exist; fix the link or choose another {option}"
            )
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise OutputError(f"cannot write {shown}: permission denied; choose another {option}")


def output_path(value: str) -> Path:
    """An output option's text as a :class:`~pathlib.Path` (typer's ``parser``), refusing a name
    that ends as a directory's (``out/``, ``out/.``) where no such directory is: ``Path`` drops
    the ``/``, so ``-o newdir/`` wrote a FILE named newdir (exit 0), and ``-o x.csv/`` wrote over
    the file x.csv. A directory that is there is said by :func:`check_output` (exit 73)."""
    last = value.rstrip("/").rsplit("/", 1)[-1]
    if value.endswith("/") or last in (".", ".."):
        try:
            there, file = Path(value).is_dir(), Path(value.rstrip("/") or "/").is_file()
        except (OSError, ValueError):
            there = file = False
        if file:
            raise typer.BadParameter(
                f"{show_path(value)} ends as a directory's name does, and {show_path(Path(value))} is a file: "
                "name the file without that ending"
            )
        if not there:
            raise typer.BadParameter(
                f"{show_path(value)} ends as a directory's name does, and there is no such directory: "
                "name the file to write"
            )
    return Path(value)


def input_path(value: str) -> Path:
    """An input path option's text as a :class:`~pathlib.Path` (typer's ``parser``), refusing a
    name the system refuses as "Not a directory": one that goes on past a file as a directory's
    name does. ``--model x.pt/``, ``candles ticks.csv/`` and ``x.csv/.`` were read as the file
    itself (``Path`` drops the ``/`` and ``/.``; exit 0) where ``cat x.pt/`` fails, and
    ``x.csv/../y.csv`` was said not to exist. A name that is not there otherwise, or is a
    directory, is left to the command's own checks (which name the option's role)."""
    try:
        os.stat(value)
    except NotADirectoryError:
        file = _file_in(value)
        last = value.rstrip("/").rsplit("/", 1)[-1]
        if value.endswith("/") or last in (".", ".."):
            said = f"{show_path(value)} ends as a directory's name does, and {show_path(file)} is not a directory"
            fix = "name the file without that ending"
        else:
            said = f"{show_path(value)} goes on under {show_path(file)}, which is not a directory"
            fix = "check the path"
        raise typer.BadParameter(f"{said}: {fix}") from None
    except (OSError, ValueError):  # missing, a NUL, too long: said by the command's checks
        pass
    return Path(value)


def _file_in(value: str) -> str:
    """The first part of ``value`` (a path the system refuses as "Not a directory") that is
    no directory: the file the rest of the name was put under."""
    parts = value.split("/")
    for end in range(1, len(parts) + 1):
        head = "/".join(parts[:end])
        if not head:  # the root of an absolute path
            continue
        try:
            if not stat.S_ISDIR(os.stat(head).st_mode):
                return head
        except OSError:
            break
    return value.rstrip("/")


def check_list(value: str | None, option: str, *, takes: str = "") -> list[str]:
    """The items of the comma-separated ``value`` of ``option``, each stripped of the spaces
    around it (``--timeframes " 1m , 5m"`` is ``1m,5m``), or a usage error naming an item that
    is empty: ``1m,,5m``, ``1m,``, ``,1m`` and ``1m, ,5m`` were taken as ``1m,5m`` (exit 0), so a
    typo or an unset ``"$A,$B"`` went unnoticed. ``takes`` (e.g. ``DATE1,DATE2``) says what
    the option takes, in the line. An item named twice is left to the option's own rule
    (``--timeframes``, ``--symbol``, ``--touch-bands``: taken once; ``--spec``, ``--inputs``:
    refused). None: no items."""
    if value is None:
        return []
    name = option.lstrip("-").replace("-", "_")
    check_given((name,), **{name: value})  # "" or ",": the value is empty, or lists nothing
    items = value.split(",")
    for n, item in enumerate(items, 1):
        if item.strip():
            continue
        if n == 1:
            where = "the first: nothing before the first comma"
        elif n == len(items):
            where = "the last: nothing after the last comma"
        else:
            where = f"item {n}: nothing between two commas"
        shown = value if len(value) <= 60 else f"{value[:57]}..."
        raise typer.BadParameter(
            f"{shown!r} has an empty item ({where}): remove the extra comma{f'; it takes {takes}' if takes else ''}",
            param_hint=f"'{option}'",
        )
    return [item.strip() for item in items]


def check_model_dir(model_dir: Path, option: str = "--model-dir") -> None:
    """Refuse, before any work, a model directory that cannot be created or written: a file,
    a path under a file, a place without write permission, a path too long to create."""
    shown = show_path(model_dir)
    if (long := name_too_long(model_dir)) is not None:
        raise OutputError(f"{option} {shown}: {long}")
    if model_dir.exists() and not model_dir.is_dir():
        raise OutputError(f"{option} {shown} is a file: pass a directory")
    probe = model_dir
    while not probe.exists() and probe != probe.parent:
        if probe.is_symlink():  # a link to nothing: training ran, then "[Errno 17] File exists" (exit 74)
            said = (
                "a symbolic link loop (it cannot be resolved)"
                if _loop(probe)
                else f"a link to {show_path(os.readlink(probe))}, which does not exist"
            )
            raise OutputError(
                f"{option} {shown}: {show_path(probe)} is {said}: fix the link, or choose another {option}"
            )
        probe = probe.parent
    if not probe.is_dir():
        raise OutputError(f"{option} {shown} is under {show_path(probe)}, a file: pass a directory")
    if not os.access(probe, os.W_OK):
        raise OutputError(f"cannot write under {shown}: {show_path(probe)} is not writable; choose another {option}")


def file_symbols(path: Path, price: PriceSide = "mid") -> set[str]:
    """The symbols a candle file names: its symbol column, else the pair in its name (empty: none).

    A file without a symbol column gives its rows whatever symbol is asked for, so whether
    it holds pair X (a global model's series, a ``cross:X`` input) is asked here, not by
    reading X.
    """
    from forex_diffusion.ingest.readers import read_candles

    try:
        return {str(s) for s in read_candles(path, price=price).frame["symbol"].tolist() if s}
    except DataFormatError:
        return set()


def check_price(price: str) -> PriceSide:
    """``price`` as the side of bid/ask files it names, else a usage error."""
    side = _SIDES.get(price)
    if side is None:
        raise typer.BadParameter(f"--price must be mid, bid or ask, not {price!r}")
    return side


def check_given(lists: tuple[str, ...] = (), /, **options: str | None) -> None:
    """A usage error for an option given an empty text (``--from "$UNSET"``): it was taken for
    the option left out (``backtest --from ""`` scored the whole file, ``--touch-bands ""`` no
    touches). Keywords: the option's name with ``_`` for ``-`` (``plot_as_of``), its value.
    ``lists`` names those of them that are comma-separated lists, whose items are stripped and
    the empty ones dropped: one of nothing but commas (``--touch-bands ","``, ``"$A,$B"`` both
    unset) was empty too, and scored no touches with exit 0. (Not for an option whose own
    check names what it takes: ``--split ,`` says DATE1,DATE2.)"""
    for name, value in options.items():
        if value is None:
            continue
        empty = not value.strip()
        if empty or (name in lists and not value.replace(",", " ").strip()):
            option = "--" + name.rstrip("_").replace("_", "-")
            raise typer.BadParameter(
                ("the value is empty" if empty else f"the value {value[:20]!r} lists nothing")
                + f" (an unset shell variable?): give one or leave {option} out",
                param_hint=f"'{option}'",
            )


def check_positive(value: int | None, option: str, *, at_most: int | None = None, at_least: int = 1) -> None:
    """A usage error unless ``value`` is None or in ``at_least..at_most``."""
    if value is not None and value < at_least:
        raise typer.BadParameter(f"{option} must be at least {at_least}, not {value}")
    if value is not None and at_most is not None and value > at_most:
        raise typer.BadParameter(f"{option} must be at most {at_most}, not {value}")


def progress_bar(label: str, *, elapsed: bool = False, description: bool = False) -> Progress:
    """A transient rich progress bar on standard error, disabled unless that is a terminal."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        Progress,
        ProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    err = Console(stderr=True)
    columns: list[ProgressColumn | str] = [TextColumn(label), BarColumn()]
    columns.append(TextColumn("{task.description}") if description else TextColumn("{task.completed}/{task.total}"))
    columns.append(TimeElapsedColumn() if elapsed else TimeRemainingColumn())
    return Progress(*columns, console=err, transient=True, disable=not (_stderr_is_a_terminal() and err.is_terminal))


def _stderr_is_a_terminal() -> bool:
    """Whether standard error is a terminal; False when it is closed (``2>&-``: ``sys.stderr``
    is None) or unusable, so a command runs on with nothing to show instead of stopping."""
    stream = sys.stderr
    if stream is None:
        return False
    try:
        return bool(stream.isatty())
    except (ValueError, OSError):  # a closed or detached stream
        return False


def _sqlite_file(url: str) -> tuple[bool, Path | None]:
    """Whether ``url`` is SQLite (any driver), and its file (None: in memory, or unparsable)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        u = make_url(url)
    except (ArgumentError, ValueError):
        return False, None
    if u.get_backend_name() != "sqlite":
        return False, None
    db = u.database or ""
    if str(u.query.get("uri", "")).lower() == "true" and db.startswith("file:"):
        db = db.removeprefix("file:").split("?", 1)[0]  # sqlite:///file:/path/x.db?mode=ro&uri=true
        if str(u.query.get("mode", "")).lower() == "memory":
            return True, None
    return True, (Path(db) if db and db != ":memory:" else None)


def _sqlite_read_only(url: str) -> bool:
    """Whether a SQLite URL opens its file read-only (``?mode=ro&uri=true``, ``immutable=1``)."""
    from sqlalchemy.engine import make_url

    q = {k: str(v).lower() for k, v in make_url(url).query.items()}
    return q.get("uri") == "true" and (q.get("mode") == "ro" or q.get("immutable") in ("1", "true"))


#: Query arguments the pysqlite driver takes itself; any other it ignores (with a warning of
#: several lines) unless ``uri=true`` hands them to SQLite.
_PYSQLITE_ARGS = frozenset(
    {"timeout", "isolation_level", "detect_types", "check_same_thread", "cached_statements", "uri"}
)


def _sqlite_ignored_args(url: str) -> list[str]:
    """The query arguments of a SQLite URL its driver would ignore (``?mode=ro`` without ``uri=true``)."""
    from sqlalchemy.engine import make_url

    q = make_url(url).query
    if str(q.get("uri", "")).lower() == "true":
        return []
    return sorted(k for k in q if k not in _PYSQLITE_ARGS)


#: What every SQLite 3 database file starts with (an empty file is a new, empty database).
_SQLITE_MAGIC = b"SQLite format 3\x00"
#: Where a command's database is named (the worker has only the variable).
DB_OPTION = "--db or FOREXD_DATABASE_URL"


def database_url(db: str | None) -> str:
    """``--db``, else ``FOREXD_DATABASE_URL``, else the SQLite file under ``FOREXD_DATA_DIR``.

    An empty ``--db ""`` (an unset shell variable) is a usage error: it silently meant the
    default database before.
    """
    if db is not None and not db.strip():
        raise typer.BadParameter(
            "--db is empty: give a database URL (e.g. sqlite:///data/forexd.db) or leave --db out "
            "for FOREXD_DATABASE_URL"
        )
    if db:
        return db
    from ..settings import Settings

    return Settings.from_env().db_url


def _check_sqlite_file(path: Path, shown: str, fix: str) -> None:
    """Refuse an existing SQLite path that is no database file: a directory, a device, a file
    that cannot be read or that holds something else (``file is not a database`` later)."""
    if path.is_dir():  # `fix` may end "or a new file": "… a new file file" was said
        raise InputNotFoundError(f"database file {path} is a directory, not a file: {fix}")
    if not path.is_file():
        raise InputNotFoundError(f"database file {path} is not a regular file (a device, pipe or socket): {fix}")
    if not os.access(path, os.R_OK):
        raise InputNotFoundError(f"database file {path} is not readable: check its permissions or {fix}")
    try:
        with path.open("rb") as fh:
            head = fh.read(len(_SQLITE_MAGIC))
    except OSError as exc:
        raise InputNotFoundError(f"database file {path} cannot be read ({exc.strerror}): {fix}") from exc
    if head and head != _SQLITE_MAGIC:
        raise DataFormatError(f"{shown} is not a SQLite database ({path} holds something else): {fix}")


def _relative_note(path: Path) -> str:
    """For a relative SQLite path (``sqlite:///nonexistent/dir/x.db``: three slashes and a
    relative path), where it lies and how an absolute one is written: the URL was most
    likely meant as ``/nonexistent/dir/x.db``."""
    if path.is_absolute():
        return ""
    return f" (relative to {Path.cwd()}: an absolute path takes four slashes, sqlite:////{path})"


def _check_creatable(path: Path, where: str) -> None:
    """Refuse (exit 73) a new SQLite file whose directory cannot be created or written."""
    probe = path.parent
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise OutputError(f"cannot create database file {path}: {probe} is a file; fix {where}")
    if not os.access(probe, os.W_OK):
        raise OutputError(f"cannot create database file {path}: {probe} is not writable; fix {where}")


def _check_tables(shown: str, names: set[str], needs: Sequence[str], fix: str) -> None:
    """Refuse a database that holds tables, none of them the project's (another program's,
    which ``create`` would fill with ours), or that lacks a table the command reads."""
    from forex_diffusion.storage import metadata

    ours = names & {*metadata.tables, "retrain_claims"}  # retrain_claims: retraining.claims' own
    if names and not ours:
        listing = ", ".join(sorted(names)[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        raise DataFormatError(f"{shown} holds no forexd tables (it holds {listing}): {fix}")
    missing = [t for t in needs if t not in names]
    if missing:
        what = f"no forexd tables (no {missing[0]} table)" if not ours else f"no {missing[0]} table"
        raise DataFormatError(f"{shown} holds {what}: {fix}")


def check_database(
    url: str,
    *,
    create: bool = True,
    must_exist: bool = False,
    write: bool = False,
    needs: Sequence[str] = (),
    where: str = DB_OPTION,
    connect_timeout_s: int = 10,
) -> bool:
    """Check, with one bounded connection attempt, that ``url`` is a database of the project
    a command may use; return whether its tables may be created (False: a read-only file).

    ``create``: the tables will be created where missing (and a new SQLite file, which is
    only checked to be creatable: nothing is made here), else only read. ``must_exist``: a
    SQLite file must be there already (a mistyped path is :class:`InputNotFoundError`,
    never a new empty database); without ``create`` it must too. ``write``: the command
    writes rows, so a read-only SQLite file is refused before the work (not after it, as a
    failed job). ``needs``: tables the command reads. ``where``: what names the database,
    in the fix of each refusal.

    Every refusal is one line naming the database (password hidden) and the fix, raised
    before anything is created in it:

    Raises
    ------
    ConfigError
        An unparsable URL, a driver that is not installed or is an asyncio one, an in-memory
        SQLite database (gone when the command ends), a port outside 1..65535, a host that is
        not ASCII, a connection option libpq or the server refuses (``?sslmode=bogus``,
        ``?foo=bar``, ``?connect_timeout=abc``, ``?options=-c statement_timeout=x``) (exit 2).
    InputNotFoundError
        A SQLite file that is missing (``must_exist``), a directory, a device or
        unreadable; a PostgreSQL database that the server does not have (exit 66).
    DataFormatError
        A file that is not a SQLite database, a database holding tables none of which is the
        project's, or one without a table of ``needs`` (exit 65).
    OutputError
        A SQLite file the command writes that is read-only, or a new one whose directory
        cannot be created (exit 73).
    ServiceUnavailableError
        The database does not answer, or refuses the login (said so: not "start it")
        (address shown, password hidden) (exit 69).
    """
    from sqlalchemy import create_engine, inspect, text
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError

    from forex_diffusion.errors import ConfigError
    from forex_diffusion.storage.engine import check_url_options, is_option_error

    shown = hide_password(url)
    fix = f"point {where} at a worker's database" + (" or a new file" if create and not must_exist else "")
    if url != url.strip():
        raise ConfigError(f"database URL {shown!r} has white space around it: remove it from {where}")
    if "\x00" in url or "%00" in url:  # the drivers raise ValueError for it, deep in connect()
        raise ConfigError(f"database URL {shown!r} holds a NUL character (or %00): fix {where}")
    if "://" not in url:  # a path: `--db forexd.db`
        from forex_diffusion.storage.engine import sqlite_url  # its '%', '?' and '#' escaped

        hint = "" if "@" in url else f" (a SQLite file: {sqlite_url(Path(url).absolute())})"
        raise ConfigError(f"database URL {shown} is no URL{hint}: fix {where}")
    try:
        check_url_options(url)  # a bad port, host or option said "unreachable" (69): the URL is wrong
    except ConfigError as exc:
        raise ConfigError(f"database URL {shown} {exc}: fix {where}") from None
    sqlite, path = _sqlite_file(url)
    if sqlite and (ignored := _sqlite_ignored_args(url)):
        raise ConfigError(
            f"database URL {shown}: the SQLite driver ignores {', '.join(ignored)} without uri=true "
            f"(e.g. sqlite:///file:/path/forexd.db?mode=ro&uri=true); fix {where}"
        )
    if sqlite:
        if path is None:
            raise ConfigError(
                f"database URL {shown} is an in-memory database, gone when the command ends: "
                f"name a file in {where}, e.g. sqlite:///data/forexd.db"
            )
        if (long := name_too_long(path)) is not None:  # was "[Errno 36] File name too long" (exit 74)
            raise ConfigError(f"database URL {shown} names a file too long: {long} in {where}")
        if path.exists():
            _check_sqlite_file(path, shown, fix)
            # SQLite writes beside the file too (its -wal and -shm files, unless both exist)
            beside = os.access(path.parent, os.W_OK) or all(Path(f"{path}{x}").exists() for x in ("-wal", "-shm"))
            writable = not _sqlite_read_only(url) and os.access(path, os.W_OK) and beside
            if write and not writable:
                raise OutputError(
                    f"database file {path} is read-only, and this command writes to it: "
                    f"check its permissions, or point {where} at a writable database"
                )
            create = create and writable  # a read-only file is read as it is
        elif path.is_symlink():  # a new file would be made wherever the link points
            raise InputNotFoundError(
                f"database file {path} is a link to {os.readlink(path)}, which does not exist: {fix}"
            )
        elif must_exist or not create:
            raise InputNotFoundError(
                f"database file {path}{_relative_note(path)} does not exist: check {where} / FOREXD_DATA_DIR"
            )
        else:
            _check_creatable(path, where)
            return create  # a new database: nothing in it to check
    try:
        host = make_url(url).host or ""
    except (ArgumentError, ValueError) as exc:
        raise ConfigError(f"database URL {shown} is not valid ({exc}): fix {where}") from exc
    if "@" in host:  # user:p@ss@host: the driver would echo 'ss@host', a part of the password
        raise ConfigError(f"database URL {shown} has an '@' in its user name or password: write it as %40 in {where}")
    try:
        args: dict[str, Any] = {}
        if url.startswith(("postgresql", "postgres")):
            args = {"connect_timeout": connect_timeout_s}
        probe = create_engine(url, connect_args=args, pool_pre_ping=False, hide_parameters=True)
    except ImportError as exc:
        raise ConfigError(
            f"database URL {shown} needs a driver that is not installed "
            f"({exc}): name an installed one, e.g. postgresql+psycopg2://"
        ) from exc
    except (ArgumentError, NoSuchModuleError, ValueError, TypeError) as exc:
        raise ConfigError(f"database URL {shown} is not valid ({exc}): fix {where}") from exc
    try:
        with probe.connect() as conn:
            conn.execute(text("SELECT 1"))
            names = set(inspect(conn).get_table_names())
    except DBAPIError as exc:
        first = str(exc.orig).strip().splitlines()[0] if exc.orig is not None and str(exc.orig).strip() else ""
        first = hide_secrets(first, url) or type(exc.orig or exc).__name__
        if sqlite:
            low = first.lower()
            if "not a database" in low or "malformed" in low:  # past the header check: damaged
                raise DataFormatError(f"{shown} cannot be read as a SQLite database ({first}): {fix}") from exc
            if "unable to open" in low:
                raise InputNotFoundError(f"database file {path} cannot be opened ({first}): {fix}") from exc
            raise StorageError(f"database {shown}: {first}") from exc  # busy, I/O error: exit 74
        if (missing := MISSING_DATABASE.search(first)) is not None:  # it answered: the name is wrong
            raise InputNotFoundError(
                f"database {missing.group(1)} does not exist on the server of {shown}: "
                f"create it (createdb) or fix {where}"
            ) from exc
        if LOGIN_REFUSED.search(first) or NO_PASSWORD.search(first):  # it answered: not "unreachable, start it"
            raise LoginRefusedError(shown, first, where) from exc
        if is_option_error(exc):  # libpq or the server refused an option of the URL: it answered
            raise ConfigError(
                f"database URL {shown} has a connection option that is refused ({first}): fix {where}"
            ) from exc
        raise ServiceUnavailableError(
            "database", shown, f"{first}; start it or fix {where.replace(' or ', ' / ', 1)}"
        ) from exc
    finally:
        probe.dispose()
    _check_tables(shown, names, needs, fix)
    return create


def open_engine(
    url: str,
    *,
    create: bool = True,
    must_exist: bool = False,
    write: bool = False,
    needs: Sequence[str] = (),
    connect_timeout_s: int = 10,
) -> Engine:
    """An engine on ``url`` once :func:`check_database` has found it a database of the
    project the command may use (its arguments; its refusals, each one line)."""
    from forex_diffusion.storage import make_engine

    create = check_database(
        url, create=create, must_exist=must_exist, write=write, needs=needs, connect_timeout_s=connect_timeout_s
    )
    path = _sqlite_file(url)[1]
    if path is not None and not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)  # a new SQLite file (checked creatable)
    return make_engine(url, create=create)


async def broker_call(
    settings: Settings,
    make: Callable[[], Awaitable[T]],
    *,
    timeout_s: float | None = None,
    cleanup: Callable[[], Awaitable[Any]] | None = None,
) -> T:
    """Await ``make()`` (a client start, a topic check); an unreachable broker becomes
    :class:`ServiceUnavailableError` with its address, within ``timeout_s`` (default: the
    producer request timeout + 10 s), after ``cleanup()`` (e.g. stopping the client)."""
    from aiokafka.errors import KafkaConnectionError, KafkaError

    settings.check_broker_url()  # aiokafka raised ValueError/OverflowError for a bad port inside its loop
    limit = timeout_s if timeout_s is not None else settings.producer_request_timeout_s + 10.0
    # aiokafka logs each refused connection at ERROR; the one line below says it (shown at info)
    kafka_log = logging.getLogger("aiokafka")
    quiet = logging.getLogger().getEffectiveLevel() > logging.INFO and kafka_log.level == logging.NOTSET
    if quiet:
        kafka_log.setLevel(logging.CRITICAL)
    try:
        return await asyncio.wait_for(make(), limit)
    except (KafkaConnectionError, KafkaError, OSError, TimeoutError) as exc:
        if cleanup is not None:
            try:
                await cleanup()
            except Exception:  # noqa: BLE001, S110 - the client never started; nothing to close
                pass
        detail = "no answer" if isinstance(exc, TimeoutError) else type(exc).__name__
        raise ServiceUnavailableError(
            "broker", settings.broker_url, f"{detail}; start it or set FOREXD_BROKER_URL"
        ) from exc
    finally:
        if quiet:
            kafka_log.setLevel(logging.NOTSET)


#: Suffixes that name a well-known format, and the format: an output that holds another format
#: under one of them is refused (``backtest --plot chart.pdf`` wrote PNG bytes into chart.pdf).
_FORMAT_SUFFIXES = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".gif": "GIF",
    ".svg": "SVG",
    ".webp": "WebP",
    ".bmp": "BMP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".pdf": "PDF",
    ".eps": "PostScript",
    ".ps": "PostScript",
    ".html": "HTML",
    ".htm": "HTML",
    ".json": "JSON",
    ".csv": "CSV",
    ".xlsx": "Excel",
    ".xls": "Excel",
    ".ods": "OpenDocument",
    ".parquet": "Parquet",
    ".gz": "gzip",
    ".zip": "zip",
    ".bz2": "bzip2",
    ".xz": "xz",
    ".zst": "zstd",
}


@dataclass(frozen=True, slots=True)
class Output:
    """One output option of a command, for :func:`check_outputs`: its path, its option and the
    format it writes (as :func:`check_output_format` takes them)."""

    path: Path | None
    option: str
    writes: str
    suffix: str
    only: bool = False
    stdout: bool = False


def check_outputs(inputs: Sequence[tuple[Path | None, str]], *outputs: Output) -> None:
    """Every output of a command, before any work: each as :func:`check_output`, refused when
    it is one of ``inputs`` or an output named before it ("the -o file"), then, once all are
    writable (exit 73 says more than a suffix), each name's format (:func:`check_output_format`)."""
    taken = list(inputs)
    for o in outputs:
        check_output(o.path, o.option, other=taken)
        taken.append((o.path, f"the {o.option} file"))
    for o in outputs:
        check_output_format(o.path, o.option, o.writes, o.suffix, only=o.only, stdout=o.stdout)


def check_output_format(
    path: Path | None, option: str, writes: str, suffix: str, *, only: bool = False, stdout: bool = False
) -> None:
    """A usage error, before any work, for an output whose name says a well-known format other
    than ``writes``, the one written (its usual ``suffix``, e.g. ``.csv``): ``backtest --plot
    chart.pdf`` wrote PNG bytes into chart.pdf, ``report -o r.png`` HTML, ``-o x.csv.gz`` plain
    text that zcat and pandas refuse. Any other name (none, ``.txt``, ``.out``) is taken, unless
    ``only``: an image is opened by its name, so it must carry ``suffix``. A device
    (``/dev/null``) takes any format, and so does ``-`` where it is standard output
    (``stdout``); elsewhere ``-`` is refused: it was written as a file named ``-``."""
    if path is None or _is_char_device(path):
        return
    if str(path) == "-":
        if stdout:
            return
        raise typer.BadParameter(
            f"{option} writes {writes} to a file, not to standard output ({option} - would be a file "
            f"named '-'): name a {suffix} file"
        )
    got = path.suffix.lower()
    if got == suffix or _FORMAT_SUFFIXES.get(got) == writes:
        return
    said = _FORMAT_SUFFIXES.get(got)
    if said is not None:
        raise typer.BadParameter(
            f"{option} writes {writes}, not the {said} its name {path.name} says: name the file {suffix}"
        )
    if only:
        raise typer.BadParameter(f"{option} writes {writes}: name the file {suffix}, not {path.name}")
