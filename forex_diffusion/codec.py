"""Wire codec: JSON values on the topics ↔ domain records, with reason codes.

Every value carries ``"v"`` (the schema version, currently 1). Decoding never trusts its
input: NaN/Infinity literals, wrong types, missing fields, unknown symbols, oversize
payloads and a Kafka key that disagrees with the payload are refused with a
:class:`~forex_diffusion.errors.ValidationError` whose reason is a fixed code. Unknown
extra fields are ignored (forward compatibility) and reported by the caller if it wishes.

>>> t = decode_tick(b'{"v":1,"symbol":"EUR/USD","ts":1399000000000,"bid":1.1,"ask":1.2}')
>>> (t.symbol, t.ts_ms)
('EURUSD', 1399000000000)
"""

from __future__ import annotations

import json
import math
from typing import Any

from .domain import Candle, Tick
from .errors import RejectReason, ValidationError
from .instruments import InstrumentRegistry

__all__ = [
    "SCHEMA_VERSION",
    "decode_candle",
    "decode_json",
    "decode_tick",
    "encode",
    "encode_candle",
    "encode_tick",
]

SCHEMA_VERSION = 1
DEFAULT_MAX_BYTES = 64 * 1024
_DEFAULT_REGISTRY = InstrumentRegistry()


def _reject_constant(name: str) -> Any:
    raise ValidationError(RejectReason.NON_FINITE, f"JSON constant {name}")


def decode_json(raw: bytes | str, *, max_bytes: int = DEFAULT_MAX_BYTES) -> dict[str, Any]:
    """Parse one JSON object strictly (no NaN/Infinity), refusing oversize input."""
    if len(raw) > max_bytes:
        raise ValidationError(RejectReason.OVERSIZE, f"{len(raw)} bytes > {max_bytes}")
    try:
        text = raw.decode("utf-8") if isinstance(raw, (bytes, bytearray, memoryview)) else raw
        obj = json.loads(text, parse_constant=_reject_constant)
    except ValidationError:
        raise
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ValidationError(RejectReason.MALFORMED, type(exc).__name__) from None
    if not isinstance(obj, dict):
        raise ValidationError(RejectReason.SCHEMA, f"expected an object, got {type(obj).__name__}")
    v = obj.get("v", SCHEMA_VERSION)
    if type(v) is not int:
        raise ValidationError(RejectReason.SCHEMA, "schema version 'v' must be an integer")
    if v != SCHEMA_VERSION:
        raise ValidationError(RejectReason.SCHEMA_VERSION, f"unsupported schema version {v}")
    return obj


def _price(obj: dict[str, Any], name: str) -> float:
    if name not in obj:
        raise ValidationError(RejectReason.SCHEMA, f"missing field {name!r}")
    x = obj[name]
    if type(x) is bool or not isinstance(x, (int, float, str)):
        raise ValidationError(RejectReason.SCHEMA, f"{name} must be a number")
    if isinstance(x, str):
        try:
            x = float(x)
        except ValueError:
            raise ValidationError(RejectReason.SCHEMA, f"{name} is not numeric") from None
    x = float(x)
    if not math.isfinite(x):
        raise ValidationError(RejectReason.NON_FINITE, f"{name} is not finite")
    return x


def _int(obj: dict[str, Any], name: str) -> int:
    if name not in obj:
        raise ValidationError(RejectReason.SCHEMA, f"missing field {name!r}")
    x = obj[name]
    if type(x) is not int:
        raise ValidationError(RejectReason.SCHEMA, f"{name} must be an integer (epoch ms)")
    return x


def _symbol(obj: dict[str, Any], key: bytes | str | None, reg: InstrumentRegistry) -> str:
    name = obj.get("symbol")
    if not isinstance(name, str):
        raise ValidationError(RejectReason.SCHEMA, "symbol must be a string")
    symbol = reg.normalise(name)
    if symbol is None:
        raise ValidationError(RejectReason.UNKNOWN_SYMBOL, f"symbol {name[:32]!r}")
    if key is not None:
        k = key.decode("utf-8", "replace") if isinstance(key, (bytes, bytearray)) else key
        if reg.normalise(k) != symbol:
            raise ValidationError(RejectReason.KEY_MISMATCH, f"key {k[:32]!r} != symbol {symbol}")
    return symbol


def decode_tick(
    raw: bytes | str,
    *,
    key: bytes | str | None = None,
    instruments: InstrumentRegistry | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> Tick:
    """Decode an ``fx.ticks`` value: ``{"v":1,"symbol","ts","bid","ask"[,"volume","tick_id"]}``."""
    obj = decode_json(raw, max_bytes=max_bytes)
    reg = instruments or _DEFAULT_REGISTRY
    symbol = _symbol(obj, key, reg)
    ts = _int(obj, "ts")
    bid = _price(obj, "bid")
    ask = _price(obj, "ask")
    vol = _price(obj, "volume") if obj.get("volume") is not None else 0.0
    tick_id = obj.get("tick_id")
    if tick_id is not None and not isinstance(tick_id, (str, int)) or isinstance(tick_id, bool):
        raise ValidationError(RejectReason.SCHEMA, "tick_id must be a string or an integer")
    return Tick(symbol=symbol, ts_ms=ts, bid=bid, ask=ask, volume=vol,
                tick_id=None if tick_id is None else str(tick_id))


def encode_tick(t: Tick) -> bytes:
    """Encode a tick for ``fx.ticks``."""
    obj: dict[str, Any] = {"v": SCHEMA_VERSION, "symbol": t.symbol, "ts": t.ts_ms, "bid": t.bid, "ask": t.ask}
    if t.volume:
        obj["volume"] = t.volume
    if t.tick_id is not None:
        obj["tick_id"] = t.tick_id
    return encode(obj)


def encode(obj: dict[str, Any]) -> bytes:
    """Compact JSON, refusing NaN/Infinity."""
    return json.dumps(obj, separators=(",", ":"), allow_nan=False).encode("utf-8")


def encode_candle(c: Candle) -> bytes:
    """Encode a candle for ``fx.candles`` (open/close times as epoch ms)."""
    return encode(candle_to_wire(c))


def candle_to_wire(c: Candle) -> dict[str, Any]:
    """Plain JSON-able dict of a candle in the topic's schema."""
    return {
        "v": SCHEMA_VERSION, "symbol": c.symbol, "timeframe": c.timeframe,
        "open_time": c.open_ms, "close_time": c.close_ms, "open": c.open, "high": c.high,
        "low": c.low, "close": c.close, "volume": c.volume, "tick_count": c.tick_count,
        "spread_mean": c.spread_mean, "spread_min": c.spread_min, "spread_max": c.spread_max,
        "final": c.final, "revision": c.revision,
    }


def decode_candle(
    raw: bytes | str,
    *,
    key: bytes | str | None = None,
    instruments: InstrumentRegistry | None = None,
    timeframes: frozenset[str] | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> Candle:
    """Decode an ``fx.candles`` value and check it is a consistent OHLC bar."""
    obj = decode_json(raw, max_bytes=max_bytes)
    reg = instruments or _DEFAULT_REGISTRY
    symbol = _symbol(obj, key, reg)
    tf = obj.get("timeframe")
    if not isinstance(tf, str) or (timeframes is not None and tf not in timeframes):
        raise ValidationError(RejectReason.SCHEMA, f"timeframe {str(tf)[:16]!r} not configured")
    o, h, lo, c = (_price(obj, k) for k in ("open", "high", "low", "close"))
    if min(o, h, lo, c) <= 0:
        raise ValidationError(RejectReason.NON_POSITIVE, "price <= 0")
    if not (lo <= min(o, c) and h >= max(o, c)):
        raise ValidationError(RejectReason.INCONSISTENT, "high/low do not bound open/close")
    open_ms, close_ms = _int(obj, "open_time"), _int(obj, "close_time")
    if close_ms <= open_ms:
        raise ValidationError(RejectReason.BAD_TS, "close_time <= open_time")
    spreads = {}
    for k in ("spread_mean", "spread_min", "spread_max"):
        spreads[k] = None if obj.get(k) is None else _price(obj, k)
    tc = obj.get("tick_count", 0)
    rev = obj.get("revision", 0)
    final = obj.get("final", True)
    if type(tc) is not int or type(rev) is not int or type(final) is not bool:
        raise ValidationError(RejectReason.SCHEMA, "tick_count/revision must be int, final bool")
    vol = _price(obj, "volume") if obj.get("volume") is not None else 0.0
    return Candle(symbol=symbol, timeframe=tf, open_ms=open_ms, close_ms=close_ms, open=o, high=h,
                  low=lo, close=c, volume=vol, tick_count=tc, final=final, revision=rev, **spreads)
