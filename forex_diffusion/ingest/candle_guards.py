"""What admits a final candle of ``fx.candles`` to its series, and its per-series state.

A candle feed's bar is checked in event time first (:class:`~forex_diffusion.ingest.candle_gate.CandleGate`,
against the series' watermark: its last candle or the latest one the price-jump guard holds),
then for a price jump (:class:`~forex_diffusion.ingest.candle_spikes.CandleSpikeGuard`, through
:meth:`~forex_diffusion.forecast.forecaster.SymbolForecaster.on_final`). Both keep per-series
state that goes into the series' checkpoint: a far-ahead confirmation in progress (``gate``)
and the price-jump guard with its held candles (``spikes``). The candle agent holds one
:class:`CandleGuards`; ``forexd backtest`` runs the same two guards in the same order
(:func:`forex_diffusion.offline.check_candle_times`).

>>> from forex_diffusion.domain import Candle
>>> g = CandleGuards()
>>> c = Candle(symbol="EURUSD", timeframe="1h", open_ms=3_600_000 * 400_000, close_ms=3_600_000 * 400_001,
...            open=1.1, high=1.1, low=1.1, close=1.1)
>>> g.admit_time(c, last_open=None, now_ms=None)  # the series' first candle: nothing to refuse
>>> g.snapshot("EURUSD")  # no confirmation in progress, no price seen yet: nothing to checkpoint
{}
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from forex_diffusion.domain import Candle
from forex_diffusion.errors import StateError, ValidationError
from forex_diffusion.ingest.candle_gate import CandleGate, CandleGateConfig
from forex_diffusion.ingest.candle_spikes import CandleSpikeGuard
from forex_diffusion.ingest.spikes import SpikeConfig

__all__ = ["CandleGuards"]


class CandleGuards:
    """The event-time gate and the price-jump guard of every series of a candle consumer."""

    __slots__ = ("gate", "spikes")

    def __init__(self, gate: CandleGateConfig | None = None, spikes: SpikeConfig | None = None) -> None:
        self.gate = CandleGate(gate)
        self.spikes = CandleSpikeGuard(spikes)

    def admit_time(self, candle: Candle, *, last_open: int | None, now_ms: int | None) -> None:
        """Refuse (``ValidationError``, ``future_ts``) a final candle the gate refuses: one
        closing past the clock, or opening far ahead of its series' watermark (``last_open``,
        its last processed candle's open time, or the latest held candle's) and not yet
        confirmed by the candles after it."""
        last = self.spikes.watermark(candle, last_open)
        if (reason := self.gate.check(candle, watermark_ms=last, now_ms=now_ms)) is not None:
            what = f"{candle.symbol} {candle.timeframe} open_time={candle.open_ms}"
            raise ValidationError(reason, f"{what} ahead of the series (last open {last}) or the clock")

    def snapshot(self, symbol: str) -> dict[str, Any]:
        """``symbol``'s parts of its series' checkpoint (``gate`` while a confirmation is in
        progress, ``spikes`` once it has a guard), each ``{symbol: state}``."""
        parts = (("gate", self.gate), ("spikes", self.spikes))
        return {name: {symbol: part.snapshot(symbol)} for name, part in parts if part.holds(symbol)}

    def restore(
        self, symbol: str, state: Mapping[str, Any], *, last_open: Mapping[str, int], now_ms: int
    ) -> list[tuple[str, str]]:
        """Load ``symbol``'s parts of a series' checkpoint (its guards are replaced; a part
        absent starts afresh) and return those dropped as ``(part, why)``: a part that cannot be
        read is worth at most a few candles' confirmation, and refusing it stopped the worker.
        A held candle is read against the series' ``last_open`` (by timeframe) and the clock."""
        dropped: list[tuple[str, str]] = []
        if not isinstance(state, Mapping):
            state = {name: state for name in ("gate", "spikes")}  # each part then refused as no mapping
        closes_by = now_ms + self.gate.config.future_skew_ms
        for name, part in (("gate", self.gate), ("spikes", self.spikes)):
            part.drop([symbol])
            if (parts := state.get(name)) is None:
                continue
            try:
                if not isinstance(parts, dict):
                    raise StateError(f"a {part.state_kind} state is a {type(parts).__name__}, not a mapping")
                if (one := parts.get(symbol)) is None:
                    continue
                if part is self.spikes:
                    self.spikes.restore(symbol, one, after=last_open, closes_by_ms=closes_by)
                else:
                    self.gate.restore(symbol, one)
            except StateError as exc:
                dropped.append((name, str(exc)[:200]))
        return dropped

    def drop(self, symbols: Iterable[str]) -> None:
        """Forget the series of ``symbols`` (their partition was revoked)."""
        gone = list(symbols)
        self.gate.drop(gone)
        self.spikes.drop(gone)
