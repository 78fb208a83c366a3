"""Ingest: quotes and candle files in, candles out (the tick agent's and ``forexd candles``' room).

Modules: :mod:`.validation` (one reason per refused quote), :mod:`.time_jumps` and
:mod:`.spikes` (the event-time and price-jump guards), :mod:`.aggregation` (ticks → candles
by event time), :mod:`.pipeline` (the chain the tick agent runs), :mod:`.idle_close` (when a
quiet series may close), :mod:`.candle_gate` and :mod:`.candle_spikes` (candles admitted in
event time, and held on a price jump), :mod:`.readers` and :mod:`.replaying` (files → records).
"""

from __future__ import annotations

from forex_diffusion._lazy import lazy_exports

#: Each public name → the module (under this package) that defines it.
_EXPORTS = {
    "CandleAggregator": "aggregation",
    "CandleGate": "candle_gate",
    "CandleGuards": "candle_guards",
    "CandleSpikeGuard": "candle_spikes",
    "IdleClocks": "idle_close",
    "TickPipeline": "pipeline",
    "read_candles": "readers",
    "read_ticks": "readers",
    "records_from_file": "replaying",
    "SpikeGuard": "spikes",
    "TimeJumpGuard": "time_jumps",
    "TickValidator": "validation",
}

__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
