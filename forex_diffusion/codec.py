"""Deprecated home of the tick and candle codec: re-exports :mod:`forex_diffusion.wire`.

Every topic's schema, decoder and encoder live in :mod:`forex_diffusion.wire`; this module
keeps the names its importers used.

>>> t = decode_tick(b'{"v":1,"symbol":"EUR/USD","ts":1399000000000,"bid":1.1,"ask":1.2}')
>>> (t.symbol, t.ts_ms)
('EURUSD', 1399000000000)
"""

from __future__ import annotations

from .wire import (
    DEFAULT_MAX_BYTES,
    SCHEMA_VERSION,
    candle_to_wire,
    decode_candle,
    decode_json,
    decode_tick,
    encode,
    encode_candle,
    encode_tick,
)

__all__ = [
    "DEFAULT_MAX_BYTES",
    "SCHEMA_VERSION",
    "candle_to_wire",
    "decode_candle",
    "decode_json",
    "decode_tick",
    "encode",
    "encode_candle",
    "encode_tick",
]
