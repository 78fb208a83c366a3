"""Incremental indicators: O(1) updates, exact revision of the forming candle, snapshots.

Every indicator has ``update(x)`` (a closed input), ``revise(x)`` (the forming input, not
committed), ``value``, ``is_ready``, ``reset()``, ``clone()``, ``snapshot()`` and
``Indicator.restore(data)``; scalar indicators take floats (a bar is read at its close),
bar indicators take anything with ``high``/``low``/``close`` (a :class:`Candle`).
Values equal TA-Lib's from TA-Lib's first value; see ``docs/indicators.md``.
"""

from __future__ import annotations

from forex_diffusion.indicators.bank import DEFAULT_SPEC, BankSpec, IndicatorBank
from forex_diffusion.indicators.base import (
    READY_TOLERANCE,
    BarIndicator,
    BarLike,
    Indicator,
    ScalarIndicator,
    SimpleBar,
)
from forex_diffusion.indicators.batch import compute_indicators
from forex_diffusion.indicators.catalogue import INDICATOR_CLASSES, build_indicator, indicator_class, indicator_token
from forex_diffusion.indicators.channels import Donchian, Keltner
from forex_diffusion.indicators.extrema import Max, Min
from forex_diffusion.indicators.hurst import Hurst
from forex_diffusion.indicators.momentum import MACD, RSI, Stochastic
from forex_diffusion.indicators.moving import EMA, SMA
from forex_diffusion.indicators.trend import ADX
from forex_diffusion.indicators.values import BandsValue, ChannelValue, MACDValue, StochasticValue
from forex_diffusion.indicators.volatility import ATR, BollingerBands, RealisedVolatility

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
