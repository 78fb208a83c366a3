"""Incremental indicators: O(1) updates, exact revision of the forming candle, snapshots.

Every indicator has ``update(x)`` (a closed input), ``revise(x)`` (the forming input, not
committed), ``value``, ``is_ready``, ``reset()``, ``clone()``, ``snapshot()`` and
``Indicator.restore(data)``; scalar indicators take floats (a bar is read at its close),
bar indicators take anything with ``high``/``low``/``close`` (a :class:`Candle`).
Values equal TA-Lib's from TA-Lib's first value; see ``docs/indicators.md``.
"""

from __future__ import annotations

from .bank import DEFAULT_SPEC, BankSpec, IndicatorBank
from .base import (
    READY_TOLERANCE,
    BarIndicator,
    BarLike,
    Indicator,
    ScalarIndicator,
    SimpleBar,
)
from .batch import compute_indicators
from .channels import Donchian, Keltner
from .extrema import Max, Min
from .hurst import Hurst
from .momentum import MACD, RSI, Stochastic
from .moving import EMA, SMA
from .registry import INDICATOR_CLASSES, build_indicator, indicator_class, indicator_token
from .trend import ADX
from .values import BandsValue, ChannelValue, MACDValue, StochasticValue
from .volatility import ATR, BollingerBands, RealisedVolatility

__all__ = [
    "ADX",
    "ATR",
    "DEFAULT_SPEC",
    "EMA",
    "INDICATOR_CLASSES",
    "MACD",
    "READY_TOLERANCE",
    "RSI",
    "SMA",
    "BandsValue",
    "BankSpec",
    "BarIndicator",
    "BarLike",
    "BollingerBands",
    "ChannelValue",
    "Donchian",
    "Hurst",
    "Indicator",
    "IndicatorBank",
    "Keltner",
    "MACDValue",
    "Max",
    "Min",
    "RealisedVolatility",
    "ScalarIndicator",
    "SimpleBar",
    "Stochastic",
    "StochasticValue",
    "build_indicator",
    "compute_indicators",
    "indicator_class",
    "indicator_token",
]
