"""Lazy re-exports for a subpackage's public face (PEP 562).

A subpackage names each public object and the module that defines it; the module loads on
first use, so importing one module of the package never pays for its siblings (pandas,
torch). ``from package import *`` and ``dir(package)`` see every name.

>>> import forex_diffusion.quality as quality
>>> quality.score_step is __import__("forex_diffusion.quality.evaluation", fromlist=["x"]).score_step
True
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, exports: Mapping[str, str]
) -> tuple[list[str], Callable[[str], object], Callable[[], list[str]]]:
    """``(__all__, __getattr__, __dir__)`` for ``package``, whose public names are the keys of
    ``exports`` (``{name: module under package}``), each loaded on first use and then cached
    on the package."""

    def __getattr__(name: str) -> object:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(sys.modules[package].__dict__) | set(exports))

    return list(exports), __getattr__, __dir__
