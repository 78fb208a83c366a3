"""Checks and helpers shared by the ``forexd`` sub-commands.

Light at import (standard library, typer and the core's error classes only): each helper
imports what it needs when called, so ``forexd --help`` does not load rich.progress,
aiokafka or sqlalchemy.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import typer

from forex_diffusion.errors import InputNotFoundError, OutputError, ServiceUnavailableError

if TYPE_CHECKING:
    from rich.progress import Progress
    from sqlalchemy.engine import Engine

    from forex_diffusion.domain import PriceSide

    from ..settings import Settings

__all__ = [
    "LOG_LEVELS",
    "PRICE_SIDES",
    "SEED_MAX",
    "THREADS_MAX",
    "broker_call",
    "check_input",
    "check_model_dir",
    "check_output",
    "check_positive",
    "check_price",
    "hide_password",
    "model_files",
    "open_engine",
    "progress_bar",
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


def write_rejects(rejects: Any, path: Path) -> None:
    """Write refused rows (``line, reason, detail``) as CSV, as ``candles`` and ``replay`` do."""
    import csv

    with path.open("w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["line", "reason", "detail"])
        for r in rejects:
            w.writerow([r.line, r.reason.value, r.detail or r.raw])


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
    if not path.exists():
        raise InputNotFoundError(f"{what} {path} does not exist: check the path")
    if path.is_dir():
        raise InputNotFoundError(f"{what} {path} is a directory: pass a file")
    if path.is_fifo() and not pipe_ok:
        raise InputNotFoundError(f"{what} {path} is a pipe, and this command reads it more than once: pass a file")
    if not (path.is_file() or path.is_fifo()):
        raise InputNotFoundError(f"{what} {path} is not a regular file (a device or socket): pass a file")
    if not os.access(path, os.R_OK):
        raise InputNotFoundError(f"{what} {path} is not readable: check its permissions")
    return path


def _same_file(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` name one file (through links, ``..`` or another spelling)."""
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and os.path.samefile(a, b))
    except OSError:
        return False


def model_files(model: Path) -> list[tuple[Path | None, str]]:
    """The files of ``--model`` (a checkpoint and its manifest, or every file of a model key's
    directory), as :func:`check_output`'s ``other``: an output over one destroys the model."""
    # a checkpoint named by either file: X.pt or X.json (its manifest) stands for both
    files = (
        sorted(model.iterdir())
        if model.is_dir()
        else sorted({model, model.with_suffix(".pt"), model.with_suffix(".json")})
    )
    return [(f, "a file of the model") for f in files if not f.is_dir()]


def check_output(path: Path | None, option: str = "-o", *, other: Sequence[tuple[Path | None, str]] = ()) -> None:
    """Refuse, before any work, an output whose directory is missing or not writable, or
    that is one of the files in ``other`` (``(path, what it is)``: the input, another output),
    which writing it would destroy."""
    if path is None:
        return
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise OutputError(f"cannot write {path}: it is a directory; give {option} a file name")
    for taken, what in other:
        if taken is not None and _same_file(path, taken):
            raise OutputError(f"cannot write {path}: it is {what} {taken}; choose another {option}")
    if not parent.is_dir():
        raise OutputError(
            f"cannot write {path}: directory {parent} does not exist; create it or choose another {option}"
        )
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise OutputError(f"cannot write {path}: permission denied; choose another {option}")


def check_model_dir(model_dir: Path, option: str = "--model-dir") -> None:
    """Refuse, before any work, a model directory that cannot be created or written: a file,
    a path under a file, a place without write permission."""
    if model_dir.exists() and not model_dir.is_dir():
        raise OutputError(f"{option} {model_dir} is a file: pass a directory")
    probe = model_dir
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise OutputError(f"{option} {model_dir} is under {probe}, a file: pass a directory")
    if not os.access(probe, os.W_OK):
        raise OutputError(f"cannot write under {model_dir}: {probe} is not writable; choose another {option}")


def file_symbols(path: Path, price: PriceSide = "mid") -> set[str]:
    """The symbols a candle file names: its symbol column, else the pair in its name (empty: none).

    A file without a symbol column gives its rows whatever symbol is asked for, so whether
    it holds pair X (a global model's series, a ``cross:X`` input) is asked here, not by
    reading X.
    """
    from forex_diffusion.errors import DataFormatError
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
    return Progress(*columns, console=err, transient=True, disable=not (sys.stderr.isatty() and err.is_terminal))


def hide_password(url: str) -> str:
    """``url`` with any password replaced by ``***``."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an unparsable URL is shown without its credentials
        return url.split("@", 1)[-1] if "@" in url else url


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
    return True, (Path(db) if db and db != ":memory:" else None)


def open_engine(url: str, *, create: bool = True, must_exist: bool = False, connect_timeout_s: int = 10) -> Engine:
    """An engine on ``url`` after one bounded connection attempt.

    ``create``: the tables are created where missing (and a SQLite file's directory), else
    only read. ``must_exist``: a SQLite file must be there already (a mistyped path is
    :class:`InputNotFoundError`, never a new empty database); without ``create`` it must too.

    Raises
    ------
    ServiceUnavailableError
        The database does not answer (address shown, password hidden).
    """
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError

    from forex_diffusion.errors import ConfigError
    from forex_diffusion.storage import make_engine

    sqlite, path = _sqlite_file(url)
    if sqlite:
        if path is not None and (must_exist or not create) and not path.exists():
            raise InputNotFoundError(
                f"database file {path} does not exist: check --db or FOREXD_DATABASE_URL / FOREXD_DATA_DIR"
            )
        if path is not None and create:
            path.parent.mkdir(parents=True, exist_ok=True)
    else:
        try:
            args: dict[str, Any] = {}
            if url.startswith(("postgresql", "postgres")):
                args = {"connect_timeout": connect_timeout_s}
            probe = create_engine(url, connect_args=args, pool_pre_ping=False, hide_parameters=True)
        except ImportError as exc:
            raise ConfigError(
                f"database URL {hide_password(url)} needs a driver that is not installed "
                f"({exc}): name an installed one, e.g. postgresql+psycopg2://"
            ) from exc
        except (ArgumentError, NoSuchModuleError, ValueError) as exc:
            raise ConfigError(
                f"database URL {hide_password(url)} is not valid ({exc}): fix --db or FOREXD_DATABASE_URL"
            ) from exc
        try:
            with probe.connect() as conn:
                conn.execute(text("SELECT 1"))
        except DBAPIError as exc:
            first = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else type(exc).__name__
            raise ServiceUnavailableError(
                "database", hide_password(url), f"{first}; start it or fix --db / FOREXD_DATABASE_URL"
            ) from exc
        finally:
            probe.dispose()
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
