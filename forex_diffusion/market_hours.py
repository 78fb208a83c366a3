"""The FX weekly calendar (bad-input catalogue B21): when the spot market is closed.

Spot FX trades round the clock from the Sunday open in Asia to the Friday 17:00 New York
close. In UTC that close is 21:00 in northern summer (EDT) and 22:00 in winter (EST), and
the Sunday open moves the same way (21:00 / 22:00 UTC). The default window here is a fixed
simplification: **closed from Friday 22:00 UTC to Sunday 21:00 UTC**, the part of the
weekend that is closed all year round. It never flags a tick of a normal session; it misses
the summer hour Friday 21:00-22:00 UTC and the winter hour Sunday 21:00-22:00 UTC. Both
ends are configurable (``MarketHours(closes="Fri 21:00", opens="Sun 22:00")``).

Real feeds do quote inside it: FXCM's indicative EUR/USD feed starts about Sunday
19:00 UTC (1,023 ticks in the two weekends of the Lean May 2014 file), so the validator's
default policy is to accept such ticks and count them (``off_hours="accept"``).

>>> is_off_hours(1_399_680_000_000)  # Saturday 2014-05-10 00:00 UTC
True
>>> is_off_hours(1_399_327_200_000)  # Monday 2014-05-05 22:00 UTC
False
>>> MarketHours(closes="Fri 21:00", opens="Sun 22:00").is_closed(1_399_669_200_000)  # Fri 21:00
True
"""

from __future__ import annotations

from dataclasses import dataclass, field

from forex_diffusion.errors import ConfigError

__all__ = ["DEFAULT_MARKET_HOURS", "WEEK_MS", "MarketHours", "is_off_hours", "week_ms"]

_DAY_MS = 86_400_000
_WEEK_MS = WEEK_MS = 7 * _DAY_MS
_MONDAY_SHIFT = 3 * _DAY_MS  # 1970-01-01 was a Thursday: shift epoch ms to "since a Monday"
_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def week_ms(ts_ms: int) -> int:
    """Milliseconds since the start of ``ts_ms``'s UTC week (Monday 00:00)."""
    return (ts_ms + _MONDAY_SHIFT) % _WEEK_MS


def _parse(text: str, what: str) -> int:
    """``"Fri 22:00"`` → milliseconds since Monday 00:00 UTC."""
    try:
        day, hm = text.strip().split()
        hh, mm = hm.split(":")
        d, h, m = _DAYS.index(day[:3].lower()), int(hh), int(mm)
    except ValueError as exc:
        raise ConfigError(f"{what} must look like 'Fri 22:00' (UTC), not {text!r}") from exc
    if len(day) != 3 or not (0 <= h < 24 and 0 <= m < 60):
        raise ConfigError(f"{what} must look like 'Fri 22:00' (UTC), not {text!r}")
    return d * _DAY_MS + (h * 60 + m) * 60_000


@dataclass(frozen=True, slots=True, kw_only=True)
class MarketHours:
    """The weekly closure, ``[closes, opens)`` as ``"Day HH:MM"`` in UTC.

    closes: when the week's trading ends (default ``"Fri 22:00"``).
    opens: when the next week's trading starts (default ``"Sun 21:00"``).
    """

    closes: str = "Fri 22:00"
    opens: str = "Sun 21:00"
    close_ms: int = field(init=False, repr=False, compare=False)  # since Monday 00:00 UTC
    open_ms: int = field(init=False, repr=False, compare=False)
    shift_ms: int = field(init=False, repr=False, compare=False)
    length_ms: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        c, o = _parse(self.closes, "closes"), _parse(self.opens, "opens")
        if c == o:
            raise ConfigError("closes and opens must differ")
        object.__setattr__(self, "close_ms", c)
        object.__setattr__(self, "open_ms", o)
        # closed  <=>  (ts_ms + shift_ms) % week < length_ms: time since the close, one modulo
        object.__setattr__(self, "shift_ms", (_MONDAY_SHIFT - c) % _WEEK_MS)
        object.__setattr__(self, "length_ms", (o - c) % _WEEK_MS)

    def is_closed(self, ts_ms: int) -> bool:
        """Return whether the market is closed at ``ts_ms`` (epoch ms UTC)."""
        return (ts_ms + self.shift_ms) % _WEEK_MS < self.length_ms

    def open_span(self, ts_ms: int) -> tuple[int, int]:
        """The open period ``[start, end)`` that holds ``ts_ms`` (which must be open), in epoch ms.

        A caller can test ``start <= ts < end`` for the next ticks instead of the modulo.
        """
        since_close = (ts_ms + self.shift_ms) % _WEEK_MS
        if since_close < self.length_ms:
            raise ValueError(f"ts_ms={ts_ms} falls in the closure")
        close = ts_ms - since_close
        return close + self.length_ms, close + _WEEK_MS

    def add_open_time(self, ts_ms: int, span_ms: int) -> int:
        """The instant at which ``span_ms`` of *open-market* time has passed since ``ts_ms``.

        Closures are skipped: from a Friday evening, one hour of open time ends an hour
        after the Sunday open. Bounded work: one step per closure crossed.

        >>> h = MarketHours()
        >>> fri = 1_399_669_200_000  # Fri 2014-05-09 21:00 UTC, an hour before the close
        >>> (h.add_open_time(fri, 2 * 3_600_000) - fri) // 3_600_000  # 1 h Friday + 47 h closed + 1 h Sunday
        49
        """
        if span_ms < 0:
            raise ValueError("span_ms must be >= 0")
        t = ts_ms
        since_close = (t + self.shift_ms) % _WEEK_MS
        if since_close < self.length_ms:  # closed: the count starts at the open
            t += self.length_ms - since_close
            since_close = self.length_ms
        left = span_ms
        while left > _WEEK_MS - since_close:  # past this week's close: skip the closure
            left -= _WEEK_MS - since_close
            t += _WEEK_MS - since_close + self.length_ms
            since_close = self.length_ms
        return t + left


DEFAULT_MARKET_HOURS = MarketHours()


def is_off_hours(ts_ms: int, hours: MarketHours = DEFAULT_MARKET_HOURS) -> bool:
    """Return whether ``ts_ms`` falls in the weekly FX closure of ``hours``."""
    return hours.is_closed(ts_ms)
