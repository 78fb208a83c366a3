"""Wire decoding refuses hostile input with the catalogue's reason codes."""

from __future__ import annotations

import json

import pytest

from forex_diffusion.domain import Candle, Tick
from forex_diffusion.errors import RejectReason, ValidationError
from forex_diffusion.wire import decode_candle, decode_tick, encode_candle, encode_tick

GOOD = {"v": 1, "symbol": "EURUSD", "ts": 1_399_000_000_000, "bid": 1.38727, "ask": 1.38729}


def raw(**kw: object) -> bytes:
    d = dict(GOOD)
    for k, v in kw.items():
        if v is ...:
            d.pop(k)
        else:
            d[k] = v
    return json.dumps(d).encode()


@pytest.mark.parametrize(
    "payload,key,reason",
    [
        (b"\xff\xfe\x00garbage", None, RejectReason.MALFORMED),  # B1 bad UTF-8
        (b'{"v":1,"symbol":"EURUSD","ts":1', None, RejectReason.MALFORMED),  # B1 truncated
        (b"[1,2,3]", None, RejectReason.SCHEMA),  # B2 not an object
        (raw(bid=...), None, RejectReason.SCHEMA),  # B2 missing field
        (raw(bid=[1.0]), None, RejectReason.SCHEMA),  # B2 wrong type
        (raw(bid=True), None, RejectReason.SCHEMA),
        (raw(ts="2014-05-01"), None, RejectReason.SCHEMA),
        (raw(ts=1.399e12), None, RejectReason.SCHEMA),
        (raw(v=2), None, RejectReason.SCHEMA_VERSION),  # B3
        (raw(v="1"), None, RejectReason.SCHEMA),
        (b'{"v":1,"symbol":"EURUSD","ts":1399000000000,"bid":NaN,"ask":1.2}', None, RejectReason.NON_FINITE),  # B4
        (b'{"v":1,"symbol":"EURUSD","ts":1399000000000,"bid":1.1,"ask":Infinity}', None, RejectReason.NON_FINITE),
        (raw(bid="nan"), None, RejectReason.NON_FINITE),  # B4 numeric string
        (raw(ask="-Infinity"), None, RejectReason.NON_FINITE),
        (raw(symbol="XAUUSD"), None, RejectReason.UNKNOWN_SYMBOL),  # B11
        (raw(symbol="EURO/USD"), None, RejectReason.UNKNOWN_SYMBOL),  # B12 outside the alias map
        (raw(), b"USDJPY", RejectReason.KEY_MISMATCH),  # B19
        (raw(tick_id=["x"]), None, RejectReason.SCHEMA),
    ],
)
def test_decode_tick_refuses_with_reason(payload: bytes, key: bytes | None, reason: RejectReason) -> None:
    with pytest.raises(ValidationError) as ei:
        decode_tick(payload, key=key)
    assert ei.value.reason is reason


def test_oversize_message_is_refused_before_parsing() -> None:
    big = raw(pad="x" * 100_000)
    with pytest.raises(ValidationError) as ei:
        decode_tick(big, max_bytes=64 * 1024)
    assert ei.value.reason is RejectReason.OVERSIZE


def test_aliases_normalise_and_extra_fields_are_ignored() -> None:
    t = decode_tick(raw(symbol="eur_usd", extra={"a": 1}), key=b"EURUSD")
    assert t == Tick(symbol="EURUSD", ts_ms=GOOD["ts"], bid=1.38727, ask=1.38729)  # type: ignore[arg-type]


@pytest.mark.parametrize("key", [None, b"EUR/USD", b"eurusd", b"USDJPY", b"\xff"])
def test_key_that_is_not_the_canonical_symbol_is_refused(key: bytes | None) -> None:
    # issue 13 finding 6: a null or alias key used to be accepted (the symbol's ticks then
    # landed on several partitions); the key must be the canonical symbol
    with pytest.raises(ValidationError) as ei:
        decode_tick(raw(symbol="eur_usd"), key=key)
    assert ei.value.reason is RejectReason.KEY_MISMATCH


def test_prices_as_strings_are_exact() -> None:
    assert decode_tick(raw(bid="1.38727")).bid == 1.38727


def test_tick_round_trip() -> None:
    t = Tick(symbol="USDJPY", ts_ms=1_357_077_600_295, bid=86.655, ask=86.728, volume=2.0, tick_id="f:2")
    assert decode_tick(encode_tick(t), key=b"USDJPY") == t


def test_candle_round_trip_and_inconsistent_bar_refused() -> None:
    c = Candle(
        symbol="EURUSD",
        timeframe="1m",
        open_ms=60_000 * 23_316_667,
        close_ms=60_000 * 23_316_668,
        open=1.1,
        high=1.2,
        low=1.0,
        close=1.15,
        tick_count=3,
        spread_mean=0.0001,
        spread_min=0.0,
        spread_max=0.0002,
        revision=3,
    )
    assert decode_candle(encode_candle(c), key=b"EURUSD") == c
    bad = json.loads(encode_candle(c))
    bad["high"] = 1.05
    with pytest.raises(ValidationError) as ei:
        decode_candle(json.dumps(bad).encode())
    assert ei.value.reason is RejectReason.INCONSISTENT
    bad["high"] = 1.2
    bad["timeframe"] = "7m"
    with pytest.raises(ValidationError) as ei:
        decode_candle(json.dumps(bad).encode(), timeframes=frozenset({"1m"}))
    assert ei.value.reason is RejectReason.SCHEMA
