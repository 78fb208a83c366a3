"""Command-line pieces the benchmark scripts share (run as ``python bench/bench_x.py``, so
this folder is first on ``sys.path`` and ``from _cli import ...`` finds this module)."""

from __future__ import annotations

import argparse

__all__ = ["optional_count", "positive_int"]


def positive_int(text: str) -> int:
    """``argparse`` type: an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive integer")
    return value


def optional_count(ap: argparse.ArgumentParser, name: str, *, default: int, metavar: str, help: str) -> None:
    """Add an optional positional integer of at least 1 (``help`` says its default)."""
    ap.add_argument(name, nargs="?", type=positive_int, default=default, metavar=metavar, help=help)
