"""ForexDiffusion's functional core: no Kafka, no Faust, driven by plain method calls.

The package root re-exports the vocabulary every layer shares, all of it light to import
(no torch, pandas or SQLAlchemy): the exception tree (:mod:`forex_diffusion.errors`), the
domain records (:mod:`forex_diffusion.domain`), timeframes and instruments. Everything
else lives in its own module or subpackage, each with its own ``__all__``:
:mod:`~forex_diffusion.indicators`, :mod:`~forex_diffusion.online`,
:mod:`~forex_diffusion.diffusion` (torch), :mod:`~forex_diffusion.storage` (SQLAlchemy).

>>> from forex_diffusion import Timeframe, ValidationError, ForexDiffusionError
>>> Timeframe.parse("5m").duration_ms
300000
>>> issubclass(ValidationError, ForexDiffusionError)
True
"""

from __future__ import annotations

from forex_diffusion import errors as _errors
from forex_diffusion.domain import Candle, PriceSide, Tick
from forex_diffusion.errors import *  # noqa: F403 (the whole exception tree, as errors.__all__ lists it)
from forex_diffusion.instruments import DEFAULT_INSTRUMENTS, Instrument, InstrumentRegistry
from forex_diffusion.timeframes import DEFAULT_TIMEFRAMES, TIMEFRAME_NAMES, Timeframe, parse_timeframes

__all__ = [
    "DEFAULT_INSTRUMENTS",
    "DEFAULT_TIMEFRAMES",
    "TIMEFRAME_NAMES",
    "Candle",
    "Instrument",
    "InstrumentRegistry",
    "PriceSide",
    "Tick",
    "Timeframe",
    "parse_timeframes",
]
__all__ += _errors.__all__
