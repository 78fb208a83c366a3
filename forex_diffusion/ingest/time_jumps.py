"""Event-time jump guard: hold a tick far ahead of its series until later ticks confirm it.

One bad clock must not move a watermark (DESIGN.md "One boundary"). A tick of one series
is a *time jump* when its event time is more than ``max_jump_ms`` of *open-market* time
after the latest event time the guard let through (``top``); the weekly closure
(:class:`~forex_diffusion.market_hours.MarketHours`) does not count::

    jump  <=>  ts > reach(top)      reach(t) = t + max_jump_ms of open-market time

The default, ten minutes, holds a clock that is minutes to years ahead (a local time taken
for UTC, a corrupt year), which would otherwise make every tick after it late. A real feed
crosses the weekend without tripping it; a real gap longer than that inside the week (a
holiday, an outage, a quiet roll-over) is confirmed by the ticks after it at once and nothing
is lost: those few ticks only wait for their confirmation (two holds in each of the two
weeks of OANDA and FXCM EUR/USD ticks bundled for the tests). A clock less than ten minutes
ahead is not caught: the ticks behind it that are older than its watermark are refused
``late``, as without the guard. The wall clock is not used here:
replays and backfills of history are guarded as well as a live feed (the validator judges
a tick against the wall clock when the caller gives one).

**Hold** (like the price guard, :mod:`~forex_diffusion.ingest.spikes`). A jump is held, with
whatever the caller attached to it, and the ticks after it decide:

* a tick within ``max_jump_ms`` (open-market time) of the first held one confirms the new time; after
  ``confirm`` (M) confirmations every held tick is released in arrival order and ``top``
  moves to the latest of them;
* a tick that is not a jump (back near the series' time) ends the hold: the held ticks are
  refused (``future_ts``) and that tick passes;
* a jump far from the held time starts a new hold (the previous held ticks are refused).

**Start of a series.** Before any tick was let through there is no time to judge against,
and the first tick may be the bad one. The first ticks are held until one cluster of event
times (ticks within ``max_jump_ms`` of one tick) has M + 1 members and outnumbers the held
ticks outside it by at least M; that cluster is released (in arrival order), the others are
refused (``future_ts`` when after the cluster, ``late`` when before it). At the end of
the input (:meth:`TimeJumpGuard.settle`) the largest cluster is released (ties: the
earliest), so a series of one tick still gives its candle.

A held tick never moves the clock: the caller keeps it out of the aggregator until it is
released (see :class:`~forex_diffusion.ingest.pipeline.TickPipeline`).

>>> g = TimeJumpGuard(TimeJumpConfig(max_jump_ms=1_000, confirm=2, hours=None))
>>> g.hold_first("a", 0), g.hold_first("b", 10), g.hold_first("c", 20)
(None, None, (['a', 'b', 'c'], []))
>>> g.top, g.limit
(20, 1020)
>>> g.classify(5_000), g.hold("far", 5_000)
('start', None)
>>> g.classify(30)  # back near the series' time: the jump was a bad clock
'revert'
>>> g.end_hold()
['far']
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from forex_diffusion.errors import ConfigError, StateError
from forex_diffusion.ingest.spikes import Holding
from forex_diffusion.market_hours import DEFAULT_MARKET_HOURS, MarketHours
from forex_diffusion.state import malformed, time_ms, unwrap, wrap

__all__ = ["TimeJumpConfig", "TimeJumpGuard", "TimeVerdict"]

T = TypeVar("T")

TimeVerdict = Literal["start", "confirm", "revert", "restart", "first"]

_NEVER = -(1 << 63)  # a limit no event time passes: every tick goes to classify
_Expired = tuple[int, int, int]  # an expired hold: its first event time, its ticks, its latest event time
DAY_MS = 86_400_000
MINUTE_MS = 60_000


@dataclass(frozen=True, slots=True, kw_only=True)
class TimeJumpConfig:
    """Event-time jump guard settings.

    enabled: False turns the guard off (every tick passes).
    max_jump_ms: how far past its series' latest event time a tick may be without being
        held, in open-market time (default ten minutes; closures of ``hours`` do not count).
    hours: the weekly closure skipped by ``max_jump_ms`` (None: plain elapsed time).
    idle_cap_ms: the idle timer never moves a series' clock more than this past its latest
        let-through tick (default 4 days: a daily bar still closes on a quiet feed).
    confirm: M, the ticks near the new time that accept it (and, at the start of a series,
        the lead the winning cluster needs).
    max_start_held: at most this many ticks are held at the start of a series; past it the
        largest cluster is released (a memory bound).
    """

    enabled: bool = True
    max_jump_ms: int = 10 * MINUTE_MS
    confirm: int = 3
    max_start_held: int = 64
    hours: MarketHours | None = DEFAULT_MARKET_HOURS
    idle_cap_ms: int = 4 * DAY_MS

    def __post_init__(self) -> None:
        if type(self.max_jump_ms) is not int or not (0 < self.max_jump_ms <= 30 * DAY_MS):
            raise ConfigError("max_jump_ms must be an int in (0, 30 days]")
        if type(self.idle_cap_ms) is not int or self.idle_cap_ms <= 0:
            raise ConfigError("idle_cap_ms must be a positive int")
        if type(self.confirm) is not int or not (1 <= self.confirm <= 100):
            raise ConfigError("confirm must be an int in [1, 100]")
        if type(self.max_start_held) is not int or self.max_start_held < 2 * self.confirm + 1:
            raise ConfigError("max_start_held must be an int >= 2 * confirm + 1")


class TimeJumpGuard(Holding[T, int]):
    """Hold ticks of one series far ahead of its event time until later ticks confirm them.

    Hot path: a tick with ``ts <= limit`` is not a jump; the caller lets it through and
    calls :meth:`accept`. ``limit`` is ``top + max_jump_ms`` once the series has a time, and
    below every event time while ticks are held or before the first is let through.
    Otherwise the caller asks :meth:`classify` and acts: ``start``/``confirm`` →
    :meth:`hold`; ``restart`` → :meth:`end_hold` then :meth:`hold`; ``revert`` →
    :meth:`end_hold` then let the tick through; ``first`` (no time yet) →
    :meth:`hold_first`. Held items are opaque to the guard.
    """

    __slots__ = (
        "config",
        "top",
        "limit",
        "_held",
        "_held_ts",
        "_jump",
        "_confirm",
        "_hours",
    )

    state_kind = "time_guard"
    state_version = 1

    def __init__(self, config: TimeJumpConfig | None = None, *, top: int | None = None) -> None:
        cfg = config or TimeJumpConfig()
        self.config = cfg
        self._jump = cfg.max_jump_ms
        self._hours = cfg.hours
        self._confirm = cfg.confirm
        self._held: list[T] = []
        self._held_ts: list[int] = []
        self._expired: _Expired | None = None  # see expire()
        self._carry: _Expired | None = None  # the expired hold the one in progress goes on
        self.top: int | None = None
        self.limit = _NEVER
        if top is not None:
            self.accept(top)

    def reach(self, ts: int) -> int:
        """The latest event time not a jump from ``ts``: ``max_jump_ms`` of open-market time."""
        hours = self._hours
        return ts + self._jump if hours is None else hours.add_open_time(ts, self._jump)

    def _near(self, a: int, b: int) -> bool:
        lo, hi = (a, b) if a <= b else (b, a)
        return hi <= self.reach(lo)

    def _jumps(self, anchor: int) -> bool:
        return self.top is not None and anchor > self.reach(self.top)

    def _spans(self, anchor: int, latest_ms: int) -> bool:
        return latest_ms <= self.reach(anchor)

    def _first(self) -> int:
        return self._held_ts[0]

    # -- hot path ---------------------------------------------------------------------------

    def accept(self, ts: int) -> None:
        """Take ``ts`` as let through: the series' time moves to it if it is later."""
        top = self.top
        if top is None or ts > top:
            self.top = ts
            if not self._held and self._expired is None:
                self.limit = self.reach(ts)

    def _settle_limit(self) -> None:
        """``limit`` for the state: below every event time (each tick to :meth:`classify`)
        before the first tick, while ticks are held, or while an expired hold waits for the
        next tick; else ``max_jump_ms`` past ``top``."""
        top = self.top
        waits = bool(self._held) or self._expired is not None
        self.limit = _NEVER if top is None or waits else self.reach(top)

    # -- hold -------------------------------------------------------------------------------

    @property
    def held_ts(self) -> tuple[int, ...]:
        """Event times of the held items, in arrival order."""
        return tuple(self._held_ts)

    def classify(self, ts: int) -> TimeVerdict:
        """Judge ``ts`` past ``limit`` (pure): see the module docstring."""
        top = self.top
        if top is None:
            return "first"
        if ts <= self.reach(top):
            return "revert"  # near the series' time: ends a hold (if any), the tick passes
        if not self._held:
            return "start"
        return "confirm" if self._near(ts, self._anchor(self._held_ts[0])) else "restart"

    def hold(self, item: T, ts: int) -> list[T] | None:
        """Hold ``item`` (a jump); return every held item once the new time is confirmed. A hold
        that starts near the time of the hold just expired (:meth:`expire`) goes on counting
        its confirmations."""
        if not self._held and self.top is not None:
            self._carry = self._taken_over(ts)
        self._held.append(item)
        self._held_ts.append(ts)
        self.limit = _NEVER
        if self._counted() <= self._confirm:
            return None
        items, times = self._held, self._held_ts
        self._held, self._held_ts, self._carry = [], [], None
        for t in times:
            self.accept(t)
        self.limit = self.reach(self.top)  # type: ignore[arg-type]
        return items

    def end_hold(self) -> list[T]:
        """Stop holding; return the held items (the caller refuses them)."""
        items = self._held
        self._held, self._held_ts, self._carry, self._expired = [], [], None, None
        self._settle_limit()
        return items

    def expire(self) -> list[T]:
        """Stop holding because the feed went quiet; return the held items (the caller
        refuses them), but remember their time and count.

        As :meth:`~forex_diffusion.ingest.spikes.SpikeGuard.expire`: quiet says nothing of a
        clock, so the next hold that starts near this time, with no tick near the series'
        time in between, counts these ticks among its ``confirm`` (the ticks already expired
        stay refused). Before the series has a time, use :meth:`settle`.
        """
        if not self._held or self.top is None:
            return []
        items = self._remember(self._held_ts[0], max(self._held_ts), self._confirm)
        self._settle_limit()  # the next tick, near the series' time or not, ends or goes on it
        return items

    # -- start of a series ------------------------------------------------------------------

    def hold_first(self, item: T, ts: int) -> tuple[list[T], list[T]] | None:
        """Hold ``item`` while the series has no time; once a cluster wins, return
        ``(released, refused)`` (both in arrival order) and set the series' time."""
        self._held.append(item)
        self._held_ts.append(ts)
        n = len(self._held)
        if n < self._confirm + 1:
            return None
        members = self._best()
        if len(members) < self._confirm + 1 or len(members) - (n - len(members)) < self._confirm:
            if n < self.config.max_start_held:
                return None
            return self.settle()
        return self._release(members)

    def settle(self) -> tuple[list[T], list[T]]:
        """End a start-of-series hold: release the largest cluster (ties: the earliest), refuse
        the rest. Returns ``(released, refused)``; ``([], [])`` when nothing is held."""
        if not self._held:
            return [], []
        if self.top is not None:
            return [], self.end_hold()
        return self._release(self._best())

    def _best(self) -> list[int]:
        """Indices of the largest cluster of held event times (ties: the earliest centre)."""
        best: list[int] = []
        best_t = 0
        for t in self._held_ts:
            m = self._cluster(t)
            if len(m) > len(best) or (len(m) == len(best) and t < best_t):
                best, best_t = m, t
        return best

    def _cluster(self, t: int) -> list[int]:
        return [i for i, x in enumerate(self._held_ts) if self._near(x, t)]

    def _release(self, members: list[int]) -> tuple[list[T], list[T]]:
        keep = set(members)
        released = [x for i, x in enumerate(self._held) if i in keep]
        refused = [x for i, x in enumerate(self._held) if i not in keep]
        times = [self._held_ts[i] for i in members]
        self._held, self._held_ts = [], []
        for t in times:
            self.accept(t)
        self.limit = self.reach(self.top)  # type: ignore[arg-type]
        return released, refused

    # -- state ------------------------------------------------------------------------------

    def snapshot(self, encode: Callable[[T], Any]) -> dict[str, Any]:
        """Plain-data state (in the envelope); ``encode`` turns a held item into JSON-able data."""
        held = [[t, encode(x)] for t, x in zip(self._held_ts, self._held, strict=True)]
        return wrap(self, self._memory_state({"top": self.top, "held": held}))

    def restore(self, data: dict[str, Any], decode: Callable[[Any], T]) -> None:
        """Inverse of :meth:`snapshot` (``decode`` inverts its ``encode``); the bare layout
        written before the envelope is read too."""
        state = unwrap(data, self, legacy=lambda old: old)
        with malformed(self):  # event times: ints in the wire's range (time_ms), the latest or null
            top = None if state["top"] is None else time_ms(state["top"], field="top")
            limit = self.config.max_start_held if top is None else self._confirm
            raw = state["held"]
            if isinstance(raw, list) and len(raw) > limit:  # before decoding a long list
                raise StateError("time guard snapshot holds more ticks than its config allows")
            held = [(time_ms(t, field="held time"), decode(x)) for t, x in raw]
            expired, carry = (self._expired_hold(state.get(key), key) for key in ("expired", "carry"))
        if len(held) > limit:
            raise StateError("time guard snapshot holds more ticks than its config allows")
        self._check_memory(expired, carry, len(held), top is not None, self._confirm)
        self.top = top
        self._held_ts = [t for t, _ in held]
        self._held = [x for _, x in held]
        self._expired, self._carry = self._fitting(expired, carry)
        self._settle_limit()

    def _expired_hold(self, data: Any, field: str) -> _Expired | None:
        """An expired hold's ``[first time, ticks, latest time]`` read back (ticks in [1,
        confirm], the latest not before the first; absent: None)."""
        if data is None:
            return None
        t0, ticks, latest = data
        if type(ticks) is not int or not (1 <= ticks <= self._confirm):
            raise StateError(f"time guard snapshot's {field} ticks must be an int in [1, confirm], got {ticks!r}")
        t0, latest = time_ms(t0, field=f"{field} time"), time_ms(latest, field=f"{field} latest time")
        if latest < t0:
            raise StateError(f"time guard snapshot's {field} latest time is before its first")
        return t0, ticks, latest
