from __future__ import annotations

from datetime import UTC, datetime

import pytest

from forex_diffusion.errors import ConfigError
from forex_diffusion.timeframes import Timeframe, datetime_to_ms, ms_to_datetime, parse_timeframes


def ms(*args: int) -> int:
    return datetime_to_ms(datetime(*args, tzinfo=UTC))


@pytest.mark.parametrize(
    "name,dur",
    [("1m", 60_000), ("5m", 300_000), ("15m", 900_000), ("30m", 1_800_000), ("1h", 3_600_000), ("4h", 14_400_000)],
)
def test_intraday_buckets_are_left_closed_and_epoch_aligned(name: str, dur: int) -> None:
    tf = Timeframe.parse(name)
    t = ms(2014, 5, 1, 13, 7, 31)
    start, end = tf.bounds(t)
    assert start % dur == 0 and end - start == dur and start <= t < end
    assert tf.floor(start) == start  # the open instant belongs to its own bucket
    assert tf.floor(end) == end  # the end instant opens the next one


def test_daily_bar_rolls_at_17_new_york_in_summer_and_winter() -> None:
    tf = Timeframe.parse("1d")
    # summer (EDT, UTC-4): the day opens 21:00 UTC
    assert tf.bounds(ms(2014, 5, 2, 3, 15)) == (ms(2014, 5, 1, 21), ms(2014, 5, 2, 21))
    assert tf.floor(ms(2014, 5, 1, 20, 59, 59)) == ms(2014, 4, 30, 21)
    # winter (EST, UTC-5): 22:00 UTC
    assert tf.bounds(ms(2017, 1, 10, 12)) == (ms(2017, 1, 9, 22), ms(2017, 1, 10, 22))


def test_daily_bar_across_dst_change_is_23_hours_long() -> None:
    tf = Timeframe.parse("1d")
    # US DST began 2017-03-12 02:00 local; the trading day opening Sat 03-11 17:00 EST ends
    # Sun 03-12 17:00 EDT: 23 hours.
    start, end = tf.bounds(ms(2017, 3, 12, 12))
    assert start == ms(2017, 3, 11, 22) and end == ms(2017, 3, 12, 21)
    assert end - start == 23 * 3_600_000


def test_daily_roll_is_configurable() -> None:
    tf = Timeframe.parse("1d", day_roll_tz="UTC", day_roll_hour=0)
    assert tf.bounds(ms(2014, 5, 2, 3)) == (ms(2014, 5, 2), ms(2014, 5, 3))


@pytest.mark.parametrize("bad", ["", "7", "0m", "7m", "2d", "1w", "m1", "25h"])
def test_unknown_or_uneven_timeframes_are_refused(bad: str) -> None:
    with pytest.raises(ConfigError):
        Timeframe.parse(bad)


def test_parse_timeframes_sorts_and_dedups() -> None:
    assert [t.name for t in parse_timeframes("1h,1m,5m,1m")] == ["1m", "5m", "1h"]


def test_ms_datetime_round_trip_is_utc_aware() -> None:
    t = 1_399_000_123_456
    dt = ms_to_datetime(t)
    assert dt.tzinfo is UTC and datetime_to_ms(dt) == t
    with pytest.raises(ConfigError):
        datetime_to_ms(datetime(2014, 1, 1))


@pytest.mark.parametrize(
    "written, name",
    [("01m", "1m"), ("60m", "1h"), ("240m", "4h"), ("1440m", "1d"), ("1H", "1h"), (" 5m ", "5m"), ("24h", "1d")],
)
def test_one_spelling_per_duration(written: str, name: str) -> None:
    """Review finding: ``01m`` kept its spelling, so ``--timeframes 1m,01m`` gave each candle twice."""
    assert Timeframe.parse(written).name == name
    assert [t.name for t in parse_timeframes(f"1m,{written},{name}")] == sorted(
        {"1m", name}, key=lambda n: Timeframe.parse(n).duration_ms
    )
