"""Timeframes and event-time bucketing.

Buckets are left-closed ``[open, open + duration)`` and labelled by their open time, in
epoch milliseconds UTC. Intraday timeframes are aligned to the Unix epoch. The daily
timeframe follows the FX convention: the trading day rolls at 17:00 New York time,
DST-aware (configurable zone and hour), so a day is 23, 24 or 25 hours long around
daylight-saving changes.

>>> tf = Timeframe.parse("5m")
>>> tf.floor(1_399_000_123_456)
1398999900000
>>> Timeframe.parse("1d").bounds(1_399_000_123_456)  # 2014-05-02 03:15 UTC = 23:15 New York
(1398978000000, 1399064400000)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from forex_diffusion.errors import ConfigError

__all__ = [
    "DEFAULT_TIMEFRAMES",
    "TIMEFRAME_NAMES",
    "Timeframe",
    "canonical_name",
    "ms_to_datetime",
    "datetime_to_ms",
    "parse_timeframes",
]

_MINUTE = 60_000
_UNITS = {"m": _MINUTE, "h": 60 * _MINUTE, "d": 24 * 60 * _MINUTE}
TIMEFRAME_NAMES: tuple[str, ...] = ("1m", "5m", "15m", "30m", "1h", "4h", "1d")
DEFAULT_TIMEFRAMES: tuple[str, ...] = ("1m", "5m", "15m", "1h")


def canonical_name(text: str) -> str:
    """The one name of a timeframe written another way (``1H``, ``60m``: ``1h``); a text that
    names no timeframe as it is (said as written where it is refused).

    >>> canonical_name("1H"), canonical_name("60m"), canonical_name("1M"), canonical_name("x")
    ('1h', '1h', '1M', 'x')
    """
    try:
        return Timeframe.parse(text).name
    except ConfigError:
        return text


def ms_to_datetime(ms: int) -> datetime:
    """Return the tz-aware UTC datetime of epoch milliseconds."""
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)


def datetime_to_ms(dt: datetime) -> int:
    """Return epoch milliseconds of a tz-aware datetime (naive is refused)."""
    if dt.tzinfo is None:
        raise ConfigError(f"naive datetime {dt!r}: timestamps must be tz-aware (UTC)")
    delta = dt - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


@dataclass(frozen=True, slots=True)
class Timeframe:
    """A candle period: ``name`` like ``"5m"``; daily bars roll at ``day_roll_hour`` in ``day_roll_tz``."""

    name: str
    duration_ms: int
    day_roll_tz: str = "America/New_York"
    day_roll_hour: int = 17
    _zone: ZoneInfo | None = field(default=None, repr=False, compare=False)

    @classmethod
    def parse(cls, name: str, *, day_roll_tz: str = "America/New_York", day_roll_hour: int = 17) -> Timeframe:
        """Build a timeframe from its name (``1m 5m 15m 30m 1h 4h 1d`` and other ``N[m|h|d]``).

        ``H`` and ``D`` may be written in upper case; ``M`` may not: ``1M`` is a month in
        pandas, TradingView and vendors' files, and was read as a minute.
        """
        text = name.strip()
        if text[-1:] == "M":
            count = text[:-1]
            if not (count.isascii() and count.isdigit() and len(count) <= 4):
                return _parse(text, day_roll_tz, day_roll_hour, text)  # unknown: said with the name as written
            raise ConfigError(
                f"{_shown(text)}: M is a month in many tools and months are not a timeframe; {_minutes(count)}"
            )
        # said as written where refused ('1\uff2d' was echoed '1\uff4d', a letter the user never typed)
        return _parse(text.lower(), day_roll_tz, day_roll_hour, text)

    @property
    def is_daily(self) -> bool:
        """Whether bars follow the calendar roll rather than epoch alignment."""
        return self.duration_ms == _UNITS["d"]

    @property
    def seconds(self) -> float:
        """Nominal duration in seconds."""
        return self.duration_ms / 1000.0

    def floor(self, ts_ms: int) -> int:
        """Return the open time (epoch ms) of the bucket holding ``ts_ms``."""
        if not self.is_daily:
            return ts_ms - ts_ms % self.duration_ms
        return self.bounds(ts_ms)[0]

    def bounds(self, ts_ms: int) -> tuple[int, int]:
        """Return ``(open_ms, end_ms)`` of the bucket holding ``ts_ms``; end is exclusive."""
        if not self.is_daily:
            start = ts_ms - ts_ms % self.duration_ms
            return start, start + self.duration_ms
        assert self._zone is not None
        return _daily_bounds(ts_ms, self._zone, self.day_roll_hour)

    def end_of(self, open_ms: int) -> int:
        """Return the exclusive end of the bucket that opens at ``open_ms``."""
        return self.bounds(open_ms)[1]

    def __str__(self) -> str:
        return self.name


def _daily_bounds(ts_ms: int, zone: ZoneInfo, hour: int) -> tuple[int, int]:
    local = ms_to_datetime(ts_ms).astimezone(zone)
    day = (local - timedelta(hours=hour)).date()
    return _roll_ms(day.toordinal(), zone, hour), _roll_ms(day.toordinal() + 1, zone, hour)


@lru_cache(maxsize=4096)
def _roll_ms(ordinal: int, zone: ZoneInfo, hour: int) -> int:
    from datetime import date

    d = date.fromordinal(ordinal)
    local = datetime(d.year, d.month, d.day, hour, tzinfo=zone)
    return datetime_to_ms(local.astimezone(UTC))


def _shown(name: str, limit: int = 40) -> str:
    """``repr(name)``, cut to ``limit`` characters (a 5,000-digit name is not echoed whole)."""
    return repr(name) if len(name) <= limit else f"{name[:limit]!r}... ({len(name)} characters)"


def _minutes(count: str) -> str:
    """The advice for ``{count}M`` (``count`` ASCII digits): the canonical name of that many
    minutes (``0001M``: ``1m``, ``60M``: ``1h``), or why that many minutes is no timeframe either."""
    n = int(count)
    what = "a minute" if n == 1 else f"{n} minutes"
    try:
        return f"write {_parse(f'{n}m', 'America/New_York', 17, f'{n}m').name} for {what}"
    except ConfigError:
        return f"and {what} is no timeframe either: expected one of {', '.join(TIMEFRAME_NAMES)}"


@lru_cache(maxsize=64)
def _parse(name: str, day_roll_tz: str, day_roll_hour: int, written: str) -> Timeframe:
    """The timeframe ``name`` (its unit in lower case); ``written``, the name as given, is what
    a refusal shows."""
    digits = name[:-1]
    expected = f"expected one of {', '.join(TIMEFRAME_NAMES)}"
    shown = _shown(written)
    if len(name) < 2 or name[-1] not in _UNITS or not digits.isdigit():
        raise ConfigError(f"unknown timeframe {shown}; {expected}")
    if not digits.isascii():  # str.isdigit() takes '²' or '٣', which int() refuses or reads
        raise ConfigError(f"{shown} is not a timeframe (its count is not in ASCII digits); {expected}")
    significant = digits.lstrip("0") or "0"
    if len(significant) > len(str(_UNITS["d"] // _MINUTE)):  # past 1440m: no int() of 5,000 digits
        raise ConfigError(f"{shown} is not a timeframe: it is longer than a day, the longest is 1d")
    n = int(significant)
    if n <= 0:
        raise ConfigError(f"timeframe {shown} must be positive")
    duration = n * _UNITS[name[-1]]
    if name[-1] == "d" and n != 1:
        raise ConfigError(f"only the 1d daily timeframe is supported, not {shown}")
    if duration > _UNITS["d"] or (_UNITS["d"] % duration and name[-1] != "d"):
        raise ConfigError(f"timeframe {shown} must divide a day evenly")
    if not 0 <= day_roll_hour < 24:
        raise ConfigError(f"day_roll_hour must be in 0..23, got {day_roll_hour}")
    try:
        zone = ZoneInfo(day_roll_tz)
    except Exception as exc:  # ZoneInfoNotFoundError, ValueError
        raise ConfigError(f"unknown time zone {day_roll_tz!r}") from exc
    # one spelling per duration, whatever was written: 01m -> 1m, 60m -> 1h, 1440m -> 1d
    hour = _UNITS["h"]
    canonical = (
        "1d"
        if duration == _UNITS["d"]
        else (f"{duration // hour}h" if duration % hour == 0 else f"{duration // _MINUTE}m")
    )
    return Timeframe(canonical, duration, day_roll_tz, day_roll_hour, zone)


def parse_timeframes(names: str | Iterable[str], **kwargs: object) -> tuple[Timeframe, ...]:
    """Parse a comma-separated string or an iterable of names; sorted by duration, unique."""
    items: Sequence[str] = names.split(",") if isinstance(names, str) else list(names)
    parsed = {Timeframe.parse(n, **kwargs).name: Timeframe.parse(n, **kwargs) for n in items if n.strip()}  # type: ignore[arg-type]
    if not parsed:
        raise ConfigError("at least one timeframe is required")
    return tuple(sorted(parsed.values(), key=lambda t: t.duration_ms))
