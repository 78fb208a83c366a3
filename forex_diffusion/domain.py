"""Domain records: frozen, keyword-only, tz-aware UTC.

Prices are floats parsed from the feed's text; timestamps are kept as epoch milliseconds
(``ts_ms``/``open_ms``) with tz-aware ``datetime`` views, so bucketing stays integer maths.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from datetime import datetime
from typing import Any, Literal

from forex_diffusion.timeframes import ms_to_datetime

__all__ = ["Candle", "PriceSide", "Tick", "field_dict"]

PriceSide = Literal["mid", "bid", "ask"]


def field_dict(obj: Any) -> dict[str, Any]:
    """A dataclass instance's fields by name, in declaration order (shallow: values as they are)."""
    return {f.name: getattr(obj, f.name) for f in fields(obj)}


@dataclass(frozen=True, slots=True, kw_only=True)
class Tick:
    """One top-of-book quote."""

    symbol: str
    ts_ms: int
    bid: float
    ask: float
    volume: float = 0.0
    tick_id: str | None = None

    @property
    def ts(self) -> datetime:
        """Event time, tz-aware UTC."""
        return ms_to_datetime(self.ts_ms)

    @property
    def mid(self) -> float:
        """Mid price ``(bid + ask) / 2``."""
        return (self.bid + self.ask) / 2.0

    @property
    def spread(self) -> float:
        """``ask - bid`` (negative for a crossed quote)."""
        return self.ask - self.bid


@dataclass(frozen=True, slots=True, kw_only=True)
class Candle:
    """An OHLC bar of one (symbol, timeframe), left-closed ``[open_ms, close_ms)``.

    ``final`` is False while the bar is still forming; ``revision`` counts the updates that
    built it (a sink keeps the highest). Spread fields are None for candles that came from
    an external candle feed without quotes.
    """

    symbol: str
    timeframe: str
    open_ms: int
    close_ms: int
    open: float
    high: float
    low: float
    close: float
    volume: float = 0.0
    tick_count: int = 0
    spread_mean: float | None = None
    spread_min: float | None = None
    spread_max: float | None = None
    final: bool = True
    revision: int = 0

    @property
    def open_time(self) -> datetime:
        """Bucket open, tz-aware UTC."""
        return ms_to_datetime(self.open_ms)

    @property
    def close_time(self) -> datetime:
        """Bucket end (exclusive), tz-aware UTC; the ``as_of`` of forecasts made on this bar."""
        return ms_to_datetime(self.close_ms)

    @property
    def key(self) -> tuple[str, str, int]:
        """The sink key ``(symbol, timeframe, open_ms)``."""
        return (self.symbol, self.timeframe, self.open_ms)

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (JSON-able)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Candle:
        """Inverse of :meth:`to_dict`."""
        return cls(**data)
