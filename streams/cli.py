"""The ``forexd`` command line.

Each sub-command lives in its own module under :mod:`streams.commands` and exposes
``register(app: typer.Typer) -> None``; this module discovers and registers them all.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil

import typer

from . import commands

app = typer.Typer(
    name="forexd",
    help="ForexDiffusion Streaming: streaming FX candles, indicators, learners and diffusion forecasts.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root(
    log_level: str = typer.Option("warn", "--log-level", help="crit|error|warn|info|debug"),
) -> None:
    level = {"crit": logging.CRITICAL, "error": logging.ERROR, "warn": logging.WARNING,
             "info": logging.INFO, "debug": logging.DEBUG}.get(log_level.lower(), logging.WARNING)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s %(message)s")


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
    """Entry point of the ``forexd`` console script."""
    app()
if __name__ == "__main__":
    main()
