"""Composite indicator values: small frozen dataclasses."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["BandsValue", "ChannelValue", "MACDValue", "StochasticValue"]


@dataclass(frozen=True, slots=True)
class BandsValue:
    """Lower, middle and upper band (Bollinger, Keltner)."""

    lower: float
    middle: float
    upper: float

    @property
    def width(self) -> float:
        """``upper - lower``."""
        return self.upper - self.lower


@dataclass(frozen=True, slots=True)
class ChannelValue:
    """Upper and lower channel (Donchian: highest high, lowest low)."""

    upper: float
    lower: float

    @property
    def middle(self) -> float:
        """``(upper + lower) / 2``."""
        return (self.upper + self.lower) / 2.0


@dataclass(frozen=True, slots=True)
class MACDValue:
    """MACD line, its signal line and the histogram ``macd - signal``."""

    macd: float
    signal: float
    histogram: float


@dataclass(frozen=True, slots=True)
class StochasticValue:
    """Stochastic %K and %D (both 0..100)."""

    k: float
    d: float
