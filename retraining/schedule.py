"""Scheduled retraining: a fixed interval per model key → the retrain requests now due (pure).

A :class:`ScheduleEntry` fires once per slot ``[offset + k * every, offset + (k+1) * every)``
(epoch ms, UTC): :func:`due_requests` returns a request for each entry whose current slot
it has not fired yet, and the new "last fired" map. The request id is derived from the
key and the slot start, so a restarted scheduler that fires the same slot again sends the
same id, which the retrain agent's de-duplication drops.

>>> e = ScheduleEntry.parse("EURUSD/1h/24@1d")
>>> reqs, last = due_requests([e], {}, now_ms=86_400_000 + 5)
>>> [(r.symbol, r.reason, r.requested_at_ms) for r in reqs]
[('EURUSD', 'schedule', 86400000)]
>>> due_requests([e], last, now_ms=2 * 86_400_000 - 1)[0]
[]
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from forex_diffusion.errors import ConfigError
from forex_diffusion.quality.trigger import RetrainRequest
from forex_diffusion.storage.model_registry import ModelKey

__all__ = ["ScheduleEntry", "due_requests", "parse_interval"]

_UNITS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
#: Longest interval or offset: a year. Past it a slot starts before the epoch or far after
#: any clock (an interval of 10**400 hours was taken), and a count of 5,000 digits was
#: int()'s ValueError, a traceback when the retrain worker started.
INTERVAL_MAX_MS = 366 * 86_400_000
# ASCII digits only (\d takes other scripts' digits), at most 12 of them: int() is never asked for more
_INTERVAL = re.compile(r"\s*([0-9]{1,12})\s*([smhdw])\s*")


def parse_interval(text: str) -> int:
    """``30m``, ``6h``, ``1d``, ``2w`` → milliseconds (at most :data:`INTERVAL_MAX_MS`, a year).

    >>> parse_interval("6h")
    21600000
    """
    m = _INTERVAL.fullmatch(text)
    if m is None or int(m.group(1)) < 1:
        raise ConfigError(f"bad interval {text[:40]!r}: expected e.g. 30m, 6h, 1d, 1w")
    ms = int(m.group(1)) * _UNITS[m.group(2)]
    if ms > INTERVAL_MAX_MS:
        raise ConfigError(f"bad interval {text[:40]!r}: at most a year (366d, 52w)")
    return ms


@dataclass(frozen=True, slots=True, kw_only=True)
class ScheduleEntry:
    """Retrain ``key`` every ``every_ms``, slots aligned on ``offset_ms`` (epoch ms)."""

    key: ModelKey
    every_ms: int
    offset_ms: int = 0

    def __post_init__(self) -> None:
        if self.every_ms < 60_000:
            raise ConfigError(f"a schedule interval must be >= 1 minute, got {self.every_ms} ms")
        if self.key.symbol == "*":
            raise ConfigError("a scheduled retrain needs a symbol, not '*'")

    @classmethod
    def parse(cls, text: str) -> ScheduleEntry:
        """``SYMBOL/tf/H@INTERVAL[+OFFSET]``, e.g. ``EURUSD/1h/24@1d+2h``."""
        key, sep, rest = text.partition("@")
        if not sep:
            raise ConfigError(f"bad schedule entry {text!r}: expected KEY@INTERVAL[+OFFSET]")
        every, _, offset = rest.partition("+")
        return cls(
            key=ModelKey.parse(key), every_ms=parse_interval(every), offset_ms=parse_interval(offset) if offset else 0
        )

    def slot(self, now_ms: int) -> int:
        """Start of the slot holding ``now_ms``."""
        return self.offset_ms + ((now_ms - self.offset_ms) // self.every_ms) * self.every_ms


def due_requests(
    entries: Sequence[ScheduleEntry], last_fired: Mapping[str, int], *, now_ms: int
) -> tuple[list[RetrainRequest], dict[str, int]]:
    """Return the requests due at ``now_ms`` and the updated ``{key: slot fired}`` map.

    Pure: inputs are not modified. An entry fires when its current slot is later than the
    one it last fired (a missed slot fires once, not once per missed slot).
    """
    out: list[RetrainRequest] = []
    fired = dict(last_fired)
    for e in entries:
        k = str(e.key)
        slot = e.slot(now_ms)
        last = fired.get(k)
        if last is not None and last >= slot:
            continue
        fired[k] = slot
        detail = f"every {e.every_ms} ms"
        out.append(RetrainRequest.create(e.key.symbol, e.key.timeframe, e.key.horizon, "schedule", slot, detail=detail))
    return out, fired
