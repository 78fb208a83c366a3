"""Per-symbol processing chains driven by plain method calls (the agents are thin shells).

:class:`TickPipeline` is validate → aggregate: the tick agent and ``forexd candles`` run
it the same way. Its state (open buckets, watermark, recent tick ids) snapshots per
symbol as plain data, so a worker that takes over a partition resumes where the last
one stopped.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .aggregation import CandleAggregator
from .domain import Candle, PriceSide, Tick
from .errors import ConfigError, ValidationError
from .instruments import InstrumentRegistry
from .timeframes import Timeframe
from .validation import TickValidator, ValidationConfig

__all__ = ["TickPipeline"]


class TickPipeline:
    """Validate and aggregate ticks of the configured symbols into candles."""

    def __init__(
        self,
        *,
        timeframes: Sequence[str | Timeframe] | str,
        instruments: InstrumentRegistry,
        price: PriceSide = "mid",
        allowed_lateness_ms: int = 2_000,
        validation: ValidationConfig | None = None,
    ) -> None:
        self.instruments = instruments
        self.validator = TickValidator(validation or ValidationConfig(), instruments)
        self.aggregator = CandleAggregator(timeframes, price=price, allowed_lateness_ms=allowed_lateness_ms)

    def process(self, tick: Tick, *, now_ms: int | None = None) -> list[Candle]:
        """Return the candles ``tick`` closes; raise :class:`ValidationError` if refused.

        ``tick.symbol`` must be canonical (the codec normalises it).
        """
        reason = self.validator.check(
            tick.symbol, tick.ts_ms, tick.bid, tick.ask, tick_id=tick.tick_id, now_ms=now_ms
        )
        if reason is not None:
            raise ValidationError(reason, f"{tick.symbol} ts_ms={tick.ts_ms}")
        return self.aggregator.add(tick.symbol, tick.ts_ms, tick.bid, tick.ask, tick.volume)

    def advance(self, symbol: str, event_ms: int) -> list[Candle]:
        """Idle-series timer: move ``symbol``'s event clock without a tick."""
        return self.aggregator.advance(symbol, event_ms)

    def flush(self) -> list[Candle]:
        """Close every open candle (end of a finite input)."""
        return self.aggregator.flush()

    def snapshot(self, symbols: Sequence[str]) -> dict[str, Any]:
        """Plain-data state of ``symbols``."""
        seen = self.validator.snapshot()
        return {
            "aggregator": self.aggregator.snapshot(symbols),
            "tick_ids": {s: seen[s] for s in symbols if s in seen},
        }

    def restore(self, data: dict[str, Any]) -> None:
        """Load what :meth:`snapshot` wrote (replacing those symbols' state)."""
        try:
            self.aggregator.restore(data["aggregator"])
            current = self.validator.snapshot()
            current.update(data.get("tick_ids", {}))
            self.validator.restore(current)
        except (KeyError, TypeError) as exc:
            raise ConfigError(f"malformed tick pipeline snapshot: {exc}") from exc

    def drop(self, symbols: Sequence[str]) -> None:
        """Forget the state of ``symbols`` (their partition moved to another worker)."""
        for s in symbols:
            self.aggregator._series.pop(s, None)
            self.validator._seen.pop(s, None)
