"""``forexd demo``: broker + worker + replay of the bundled sample + metrics, live forecasts."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import typer

if TYPE_CHECKING:
    from rich.table import Table


def _positive(value: float | None, param: typer.CallbackParam) -> float | None:
    """A finite number > 0 (or no value): a negative, zero, NaN or infinite speed or duration
    would replay at no pace at all, or never end."""
    if value is not None and not 0 < value < math.inf:
        raise typer.BadParameter(f"{param.opts[0]} must be a finite number > 0, not {value!r}")
    return value


def _data_dir(value: Path | None, param: typer.CallbackParam) -> Path | None:
    """A directory the demo can write (made if missing), checked before anything starts: a file,
    a path under a file or a read-only place would otherwise fail after the live table is up.
    Refused like any output that cannot be created (exit 73), as ``--model-dir``. A
    ``forexd.db`` the directory holds already must be a database the worker can use (as
    ``forexd worker`` checks it): the demo reported only that its worker exited with 65."""
    from forex_diffusion.errors import OutputError

    from ._common import check_database, check_model_dir

    if value is None:
        return None
    check_model_dir(value, "--data-dir")
    try:
        value.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot make --data-dir {value}: {exc.strerror or exc}") from None
    value = value.resolve()  # the worker runs in it: a relative path would name value/value there
    db = value / "forexd.db"
    if db.exists() or db.is_symlink():
        from forex_diffusion.storage import sqlite_url  # '%', '?', '#' escaped: the file the worker opens

        check_database(sqlite_url(db), write=True, where="--data-dir")
    return value


def demo(
    duration: Optional[float] = typer.Option(
        None, "--duration", callback=_positive, help="Seconds to run (default: until Ctrl-C)."
    ),
    speed: float = typer.Option(
        600.0, "--speed", callback=_positive, help="Replay speed as a multiple of real time (> 0)."
    ),
    data_dir: Optional[Path] = typer.Option(
        None,
        "--data-dir",
        callback=_data_dir,
        help="Keep broker/worker logs and the SQLite DB here (default: a temporary dir).",
        readable=False,
    ),
    metrics_port: Optional[int] = typer.Option(
        None, "--metrics-port", min=1, max=65535, help="Port of /metrics on 127.0.0.1 (default: a free one)."
    ),
    plain: bool = typer.Option(False, "--plain", help="Print one line per forecast instead of a live table."),
) -> None:
    """Run the whole system locally: embedded broker, a worker on SQLite, the bundled OANDA
    EUR/USD ticks replayed at --speed, /metrics, and a live table of the latest forecasts
    (median and 90 % band at steps 1, 6 and 24, p_up, model version, latency).

    Stops, ending its broker and worker, and exits quietly with status 141 when the reader of
    standard output goes away (| head), at once, whether or not anything is being written."""
    from rich.console import Console
    from rich.live import Live
    from rich.table import Table

    from ..cli import reader_gone
    from ..demo import DemoResult, _fmt, run_demo

    class _Console(Console):
        def on_broken_pipe(self) -> None:
            """Go quiet. rich's own answer, standard output onto /dev/null and SystemExit(1), hid
            the reader gone from the demo (its check of standard output) when the live table's
            refresh thread met it: the thread ended, the demo ran on and exited 0."""
            self.quiet = True

    console = _Console()
    latest: dict[str, list[str]] = {}
    cols = ["symbol", "tf", "as_of (UTC)", "+1 median [5%, 95%]", "+6", "+24", "p_up(+1)", "model", "latency"]

    def table() -> Table:
        t = Table(title="forexd demo: latest forecasts")
        for c in cols:
            t.add_column(c)
        for row in list(latest.values())[-8:]:
            t.add_row(*row)
        return t

    def play(show: Callable[[dict[str, Any]], None]) -> DemoResult:
        return run_demo(
            duration=duration,
            speed=speed,
            data_dir=data_dir,
            metrics_port=metrics_port,
            show=show,
            keep=data_dir is not None,
            gone=lambda: reader_gone(1),
        )

    if plain:

        def show(rec: dict[str, Any]) -> None:
            typer.echo("forecast " + " | ".join(_fmt(rec)))

        res = play(show)
    else:
        with Live(table(), console=console, refresh_per_second=4) as live:

            def show(rec: dict[str, Any]) -> None:
                latest[str(rec["as_of_ms"] % 8)] = _fmt(rec)
                live.update(table())

            console.print("starting embedded broker and worker (first forecasts after ~72 one-minute candles)...")
            res = play(show)
    typer.echo(
        f"published {res.published} ticks, received {res.received} forecasts; "
        f"metrics were at {res.metrics_url}; all child processes ended"
    )


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
