"""Candles on ``fx.candles`` must overlap 1971-01-01..2100-01-01 (B18, ``bad_ts``): the span the
offline readers take epoch bars from, so that the stream admits every bar ``forexd train`` and
``forexd backtest`` read (daily bars of the 1970s included) and no bar of 1970.

Review finding: ``decode_candle`` only asked ``open_time >= 0`` while the tick validator refused
anything before 2000 as ``bad_ts``; a first forged bar dated 1970 became a new series' watermark
(the gate checks nothing without one), and the genuine bars after it were refused as ``future_ts``.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from forex_diffusion.errors import RejectReason, ValidationError
from forex_diffusion.ingest.readers import EPOCH_FIRST_MS
from forex_diffusion.ingest.validation import MAX_TS_MS, MIN_TS_MS, TickValidator, ValidationConfig
from forex_diffusion.wire import decode_candle

DAY = 86_400_000


def _raw(open_ms: int, length_ms: int, timeframe: str) -> bytes:
    obj: dict[str, Any] = {
        "v": 1,
        "symbol": "EURUSD",
        "timeframe": timeframe,
        "open_time": open_ms,
        "close_time": open_ms + length_ms,
        "open": 1.1,
        "high": 1.1,
        "low": 1.1,
        "close": 1.1,
    }
    return json.dumps(obj).encode()


def test_the_floor_and_ceiling_are_the_tick_validators_defaults() -> None:
    cfg = ValidationConfig()
    assert (cfg.min_ts_ms, cfg.max_ts_ms) == (MIN_TS_MS, MAX_TS_MS)
    v = TickValidator(cfg)
    assert v.check("EURUSD", MIN_TS_MS - 1, 1.1, 1.1001) is RejectReason.BAD_TS
    assert v.check("EURUSD", MIN_TS_MS, 1.1, 1.1001) is None


@pytest.mark.parametrize(
    "open_ms,length_ms,timeframe",
    [
        (60_000, 60_000, "1m"),  # the reviewer's forged bar: 1970
        (0, 60_000, "1m"),
        (EPOCH_FIRST_MS - 60_000, 60_000, "1m"),  # the last minute of 1970
        (EPOCH_FIRST_MS - DAY - 2 * 3_600_000, DAY, "1d"),  # the last day bar of 1970 (rolls at 22:00 UTC)
        (MAX_TS_MS, 60_000, "1m"),  # opens at the ceiling
        (MAX_TS_MS, 3_600_000, "1h"),
        (1_399_000_000 // 60_000 * 60_000, 60_000, "1m"),  # seconds read as ms: 1970-01-17, on the grid
    ],
)
def test_a_bar_outside_the_ticks_range_is_bad_ts(open_ms: int, length_ms: int, timeframe: str) -> None:
    with pytest.raises(ValidationError) as ei:
        decode_candle(_raw(open_ms, length_ms, timeframe))
    assert ei.value.reason is RejectReason.BAD_TS


@pytest.mark.parametrize(
    "open_ms,length_ms,timeframe",
    [
        (EPOCH_FIRST_MS, 60_000, "1m"),  # the first minute of 1971
        (EPOCH_FIRST_MS - 2 * 3_600_000, DAY, "1d"),  # 1970-12-31 22:00: holds the first 22 hours of 1971
        (MIN_TS_MS - 60_000, 60_000, "1m"),  # the last minute of 1999: before any tick, a bar offline reads
        (MAX_TS_MS - 2 * 3_600_000, DAY, "1d"),  # ends past the ceiling, holds 2099's last 2 hours
        (MAX_TS_MS - 60_000, 60_000, "1m"),  # the last minute of 2099: ends at the ceiling
        (MAX_TS_MS - 3_600_000, 3_600_000, "1h"),
    ],
)
def test_a_bar_inside_the_range_is_accepted(open_ms: int, length_ms: int, timeframe: str) -> None:
    c = decode_candle(_raw(open_ms, length_ms, timeframe))
    assert (c.open_ms, c.close_ms) == (open_ms, open_ms + length_ms)
