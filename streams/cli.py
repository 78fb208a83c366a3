"""The ``forexd`` command line.

Each sub-command lives in its own module under :mod:`streams.commands` and exposes
``register(app: typer.Typer) -> None``; this module discovers and registers them all.
Command modules import only the standard library, typer and the light core modules
(errors, settings, timeframes) at import time; torch, pandas, faust, aiokafka and
sqlalchemy are imported inside the command functions, so ``forexd --help`` stays fast.

Every error a user can cause ends as one line on standard error (``error: <problem>:
<fix>``) and an exit status from :data:`EXIT_CODES`; the table is in the README
("Command line", "Exit codes"). A value the line echoes is cut to a bounded length.
A reader of standard output that goes away (``| head -1``) ends any command quietly with
:data:`EXIT_PIPE` (141): :class:`ForexdGroup`.
"""

from __future__ import annotations

import contextlib
import errno
import importlib
import io
import logging
import os
import pkgutil
import select
import sys
from collections.abc import Iterator, Sequence
from pathlib import PurePath
from typing import Any, get_args

import typer
from typer.core import TyperGroup

from forex_diffusion.errors import (
    ConfigError,
    DataFormatError,
    ForexDiffusionError,
    InputNotFoundError,
    ModelError,
    OutputError,
    RegistryError,
    ServiceUnavailableError,
    SettingsError,
    StorageError,
    ValidationError,
)

from . import commands
from .commands._common import LOG_LEVELS, guard_stdout, one_line, write_failed

# the click exceptions typer raises (typer >= 0.25 vendors click as typer._click)
_click = importlib.import_module(typer.BadParameter.__module__)

__all__ = ["EXIT_CODES", "LOG_LEVELS", "app", "error_line", "exit_code_for", "main", "reader_gone"]

EXIT_OK = 0
EXIT_FAILED = 1  # retrain job failed; no forecast in the span (backtest, report)
EXIT_USAGE = 2  # click's own usage errors; a bad option value; a model or registry refusal
EXIT_REJECTED = 3  # retrain: the challenger was rejected
EXIT_DATAERR = 65  # sysexits EX_DATAERR: input data unusable as given
EXIT_NOINPUT = 66  # EX_NOINPUT: an input file missing or unreadable
EXIT_UNAVAILABLE = 69  # EX_UNAVAILABLE: broker or database unreachable
EXIT_CANTCREAT = 73  # EX_CANTCREAT: an output file cannot be created
EXIT_OSERR = 71  # EX_OSERR: out of memory (a model or a window too large for this machine)
EXIT_IOERR = 74  # EX_IOERR: storage failure (the worker's fatal storage exit too)
EXIT_CONFIG = 78  # EX_CONFIG: a FOREXD_* variable holds a bad value
EXIT_INTERRUPTED = 130  # Ctrl-C
EXIT_PIPE = 141  # 128 + SIGPIPE: standard output's reader went away (| head), as cat's status

#: Exception class → exit status, first match wins (subclasses before their bases).
EXIT_CODES: tuple[tuple[type[BaseException], int], ...] = (
    (InputNotFoundError, EXIT_NOINPUT),
    (FileNotFoundError, EXIT_NOINPUT),
    (IsADirectoryError, EXIT_NOINPUT),
    (DataFormatError, EXIT_DATAERR),
    (ValidationError, EXIT_DATAERR),
    (ServiceUnavailableError, EXIT_UNAVAILABLE),
    (OutputError, EXIT_CANTCREAT),
    (SettingsError, EXIT_CONFIG),
    (ConfigError, EXIT_USAGE),
    (ModelError, EXIT_USAGE),
    (RegistryError, EXIT_USAGE),
    (StorageError, EXIT_IOERR),
    (OSError, EXIT_IOERR),
    (ForexDiffusionError, EXIT_FAILED),
)


def exit_code_for(exc: BaseException) -> int | None:
    """The exit status of ``exc`` from :data:`EXIT_CODES`, or None for a bug (not mapped)."""
    for cls, code in EXIT_CODES:
        if isinstance(exc, cls):
            return code
    return None


def _allocation_failed(exc: RuntimeError) -> bool:
    """Whether torch's allocator refused memory (CPU or CUDA)."""
    text = str(exc)
    return "can't allocate memory" in text or "out of memory" in text.lower()


def _out_of_memory(exc: BaseException) -> str:
    """The line for a command that ran out of memory: what failed to fit, and what to make smaller."""
    what = one_line(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    return (
        f"error: out of memory ({what[:160]}): make the model or its inputs smaller "
        "(--width, --blocks, --window, a shorter span of candles) or use a machine with more memory"
    )


def error_line(exc: BaseException) -> str:
    """``error: <message>`` on one bounded line (:func:`~streams.commands._common.one_line`:
    newlines and runs of spaces folded, control characters escaped, long echoed values cut)."""
    return f"error: {one_line(str(exc)) or type(exc).__name__}"


def _not_utf8(value: object) -> str | None:
    """The first text in ``value`` (a string, or one in a tuple or list) that cannot be written
    as UTF-8, or None. A byte of the command line that is not UTF-8 reaches Python as a lone
    surrogate (PEP 383): a file name may hold one, a symbol, version or reason may not."""
    items = value if isinstance(value, tuple | list) else (value,)
    for item in items:
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return item
    return None


def _utf8_text_only(command: Any) -> None:
    """Have every command under ``command`` refuse, before it runs, a text argument that is not
    UTF-8: the database driver, the broker's JSON and a strict standard output each raised
    ``UnicodeEncodeError`` on it, a traceback, possibly after the work (``models promote
    $'\\xff'``). Paths arrive as :class:`~pathlib.Path` and are left alone."""
    for sub in getattr(command, "commands", {}).values():
        _utf8_text_only(sub)
    run = getattr(command, "callback", None)
    if run is None or getattr(run, "_utf8_checked", False):
        return
    params = {p.name: p for p in command.params}

    def checked(*args: Any, **kwargs: Any) -> Any:
        for name, value in kwargs.items():
            if (bad := _not_utf8(value)) is not None:
                try:  # the bytes as given: 'EUR\\xffUSD'
                    raw = bad.encode("utf-8", "surrogateescape")
                except UnicodeEncodeError:
                    raw = bad.encode("utf-8", "backslashreplace")
                shown = raw.decode("ascii", "backslashreplace")
                raise _click.BadParameter(
                    f"'{shown}' holds bytes that are not UTF-8 text: only a file name may; write it in UTF-8",
                    param=params.get(name),
                )
        return run(*args, **kwargs)

    checked._utf8_checked = True  # type: ignore[attr-defined]
    command.callback = checked


def _names_a_path(annotation: Any) -> bool:
    """Whether a parameter's annotation is a path (``Path``, ``Path | None``, ``list[Path]``)."""
    if isinstance(annotation, type):
        return issubclass(annotation, PurePath)
    return any(_names_a_path(a) for a in get_args(annotation))


def _no_empty_paths(command: Any) -> None:
    """Have every path argument and option under ``command`` refuse an empty value (``-o ""``,
    ``--model-dir "$UNSET"``) as a usage error (2) naming it, as ``--db ""`` is refused. The raw
    text is asked before typer makes it a :class:`~pathlib.Path`: ``Path("")`` is ``Path(".")``,
    so ``train --model-dir ""`` wrote under the working directory (exit 0), ``candles ""`` said
    ``tick file . is a directory`` and ``-o ""`` ``cannot write .``."""
    for sub in getattr(command, "commands", {}).values():
        _no_empty_paths(sub)
    for param in getattr(command, "params", ()):
        descriptor = getattr(param, "type_descriptor", None)
        if getattr(param, "_empty_checked", False) or not _names_a_path(getattr(descriptor, "annotation", None)):
            continue
        process = param.process_value

        def checked(ctx: Any, value: Any, _process: Any = process, _param: Any = param) -> Any:
            items = value if isinstance(value, tuple | list) else (value,)
            if any(isinstance(item, str) and item == "" for item in items):
                raise _click.BadParameter(
                    "the path is empty (an unset shell variable?): give a file or directory name",
                    ctx=ctx,
                    param=_param,
                )
            return _process(ctx, value)

        param.process_value = checked
        param._empty_checked = True


def reader_gone(fd: int) -> bool:
    """Whether ``fd`` is a pipe (or socket) whose reader went away: a write to it fails with
    ``EPIPE``. Asked of the descriptor itself (``poll`` reports ``POLLERR``), so an ``EPIPE``
    from the broker's or the database's socket is never taken for it."""
    try:
        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        return any(ev & (select.POLLERR | select.POLLHUP) for _fd, ev in poller.poll(0))
    except (OSError, ValueError, AttributeError):  # not a descriptor (closed, in memory); no poll()
        return False


def _is_epipe(exc: BaseException | None) -> bool:
    """Whether ``exc`` or an exception it was raised from (a command may wrap an ``OSError``
    in its own error) is ``EPIPE``."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno == errno.EPIPE:
            return True
        exc = exc.__cause__ or exc.__context__
    return False


class _OutputGone(Exception):
    """Standard output's (or error's) reader went away. Raised in place of the ``EPIPE``
    ``OSError``, which typer would answer with exit 1 before :class:`ForexdGroup` saw it."""


class _OtherPipe(Exception):
    """An ``EPIPE`` not of standard output or error (a socket's), carried past typer's exit 1
    to :class:`ForexdGroup`, which reports it as the ``OSError`` it is."""

    def __init__(self, error: OSError) -> None:
        super().__init__(str(error))
        self.error = error


@contextlib.contextmanager
def _output_gone() -> Iterator[None]:
    try:
        yield
    except SystemExit as exc:
        # rich (typer's help) answers EPIPE itself: standard output onto /dev/null, SystemExit(1)
        if exc.code == 1 and isinstance(exc.__context__, BrokenPipeError):
            raise _OutputGone() from exc
        raise
    except Exception as exc:
        # standard output only: with just standard error gone, an EPIPE may be a socket's (74)
        if _is_epipe(exc) and reader_gone(1):
            raise _OutputGone() from exc
        if isinstance(exc, OSError) and exc.errno == errno.EPIPE:
            raise _OtherPipe(exc) from exc
        raise


def _silence_gone_outputs() -> None:
    """Point standard output and error, where their reader went away, at ``/dev/null``: what
    Python still holds for them is flushed there at exit, not reported as ``Exception ignored
    ... BrokenPipeError`` (with status 120). As Python's documentation on SIGPIPE advises."""
    gone = [fd for fd in (1, 2) if reader_gone(fd)]
    if not gone:
        return
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        for fd in gone:
            os.dup2(null, fd)
    finally:
        os.close(null)


def _drop_stdout() -> None:
    """Point standard output at ``/dev/null``: what it holds and cannot be written is dropped."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        null = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(null, sys.stdout.fileno())
        finally:
            os.close(null)


def _flush_stdout() -> bool:
    """Flush standard output; False when its reader went away (its last lines are lost)."""
    try:
        if sys.stdout is not None:
            sys.stdout.flush()
    except ValueError:  # closed by the command: nothing is held
        return True
    except OSError as exc:
        if _is_epipe(exc) and reader_gone(1):
            return False
        raise
    return True


def _say(text: str) -> None:
    """``text`` on standard error; nothing when its reader went away (``2>&1 | head``): the
    status still says what happened, as :func:`streams.progress._flush_and_exit` keeps it."""
    try:
        typer.echo(text, err=True)
    except OSError as exc:
        if not (_is_epipe(exc) and reader_gone(2)):
            raise


class ForexdGroup(TyperGroup):
    """The root group: usage errors and the project's errors become one line and a status.

    A reader of standard output that goes away (``forexd tail … | head -1``) ends the command
    quietly with :data:`EXIT_PIPE` (141, as a tool killed by SIGPIPE), wherever the failed
    write was: no ``BrokenPipeError`` traceback, no ``Exception ignored`` line, not typer's
    exit 1. An error whose line cannot be written (standard error gone) keeps its status.
    """

    def make_context(self, *args: Any, **kwargs: Any) -> Any:  # --help and --version print here
        with _output_gone():
            return super().make_context(*args, **kwargs)

    def invoke(self, ctx: Any) -> Any:  # every sub-command runs within
        with _output_gone():
            return super().invoke(ctx)

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        _utf8_text_only(self)
        _no_empty_paths(self)
        try:
            rv = super().main(
                args, prog_name, complete_var, standalone_mode=False, windows_expand_args=windows_expand_args, **extra
            )
            code = rv if isinstance(rv, int) else EXIT_OK
        except _OutputGone:
            code = EXIT_PIPE
        except _click.NoArgsIsHelpError as exc:
            _say(exc.format_message())
            code = EXIT_USAGE
        except _click.UsageError as exc:
            where = exc.ctx.command_path if exc.ctx is not None else "forexd"
            _say(f"error: {one_line(exc.format_message())} (see '{where} --help')")
            code = exc.exit_code
        except _click.ClickException as exc:
            _say(f"error: {one_line(exc.format_message())}")
            code = exc.exit_code
        except typer.Abort:
            _say("aborted")
            code = EXIT_INTERRUPTED
        except MemoryError as exc:  # numpy's too (_ArrayMemoryError)
            _say(_out_of_memory(exc))
            code = EXIT_OSERR
        except RuntimeError as exc:
            if not _allocation_failed(exc):
                raise
            _say(_out_of_memory(exc))  # torch's allocator: a RuntimeError (CUDA's OutOfMemoryError one too)
            code = EXIT_OSERR
        except (ForexDiffusionError, OSError, _OtherPipe) as caught:
            error = caught.error if isinstance(caught, _OtherPipe) else caught
            mapped = exit_code_for(error)
            if mapped is None:  # pragma: no cover - every OSError is mapped
                raise
            if _is_epipe(error) and reader_gone(1):  # a command's own error made of the failed write
                code = EXIT_PIPE
            else:
                _say(error_line(error))
                code = mapped
                if str(error).startswith("cannot write standard output"):
                    _drop_stdout()  # what it still holds would fail again at the flush: said once
        code = self._flush(code)
        if not standalone_mode:
            return code
        sys.exit(code)

    @staticmethod
    def _flush(code: int) -> int:
        """Write out what standard output still holds, before the interpreter's own flush at
        exit could fail with no status to tell it (``Exception ignored``, status 120); return
        the status then: :data:`EXIT_PIPE` for a command that succeeded but whose reader went
        away, 74 with its line for an output that cannot be written (``> /dev/full``)."""
        try:
            gone = not _flush_stdout()
        except OSError as exc:
            _say(error_line(exc if str(exc).startswith("cannot write ") else write_failed(None, exc)))
            _drop_stdout()
            return code or EXIT_IOERR
        if gone and code == EXIT_OK:
            code = EXIT_PIPE
        _silence_gone_outputs()
        return code


app = typer.Typer(
    name="forexd",
    cls=ForexdGroup,
    help="ForexDiffusion Streaming: streaming FX candles, indicators, learners and diffusion forecasts.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            v = version("forex-diffusion-streaming")
        except PackageNotFoundError:  # pragma: no cover - running from a bare source tree
            v = "unknown (not installed)"
        typer.echo(f"forexd {v}")
        raise typer.Exit()


def _level(ctx: typer.Context, param: typer.CallbackParam, value: str) -> str:
    """``--log-level``, else ``FOREXD_LOG_LEVEL``, in lower case. A bad option is a usage error
    (2); a bad variable is a setting's (78, :class:`SettingsError` naming it, as every other
    ``FOREXD_*`` refusal): it was click's ``Invalid value for '--log-level'``, exit 2. The value
    is shown as its bytes (``'\\xff'``, not ``'\\udcff'``), cut as the settings cut one."""
    low = value.lower()
    if low in LOG_LEVELS:
        return low
    from .settings import shown_bytes  # as the settings show a variable's bytes

    shown = shown_bytes(value)
    levels = "crit, error, warn, info, debug"
    source = ctx.get_parameter_source(param.name) if param.name is not None else None
    if getattr(source, "name", None) == "ENVIRONMENT":  # click's ParameterSource.ENVIRONMENT
        raise SettingsError(f"FOREXD_LOG_LEVEL={shown} is not a log level: set it to one of {levels} or unset it")
    raise typer.BadParameter(f"{shown} is not a log level: use one of {levels}")


@app.callback()
def _root(
    ctx: typer.Context,
    log_level: str = typer.Option(
        "warn", "--log-level", envvar="FOREXD_LOG_LEVEL", callback=_level, help="crit|error|warn|info|debug."
    ),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    from .settings import unknown_variables

    logging.basicConfig(level=LOG_LEVELS[log_level], format="%(asctime)s %(levelname)s %(name)s %(message)s")
    ctx.obj = {"log_level": log_level}
    for line in unknown_variables():
        typer.echo(one_line(line), err=True)


def _register_all() -> None:
    for mod in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if mod.name.startswith("_"):
            continue
        module = importlib.import_module(f"{commands.__name__}.{mod.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(app)


_register_all()


def main() -> None:
    """Entry point of the ``forexd`` console script.

    Standard output writes a file name's bytes that are not UTF-8 back as they came (as
    ``ls`` does), whatever ``PYTHONIOENCODING`` says: with ``utf-8`` (strict) the closing
    ``backtest … -> bt\\xff.csv`` line raised ``UnicodeEncodeError`` after the work was done.
    A failed write to it (``> /dev/full``) is one line naming standard output and the fix
    (:func:`~streams.commands._common.guard_stdout`), not a bare ``[Errno 28]``.
    """
    if isinstance(sys.stdout, io.TextIOWrapper) and sys.stdout.errors == "strict":
        sys.stdout.reconfigure(errors="surrogateescape")
    sys.stdout = guard_stdout(sys.stdout)  # a failed write names standard output and the fix
    app()


if __name__ == "__main__":
    main()
