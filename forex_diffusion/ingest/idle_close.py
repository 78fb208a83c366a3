"""Decide when a quiet series' forming bars may close on wall-clock time (the idle close).

A series is idle only when its *feed* is quiet. While the consumer is paused (database or
broker down) or lags, wall-clock time passes without the feed being quiet, and closing a bar
then would refuse the series' own remaining ticks as late. The broker's facts about each
partition tell the two apart (:class:`BrokerFacts`: the high-water mark and the age of the
last fetch response, beside the last offset processed); unknown means behind. Quiet time
also counts only up to the broker's last answer: after it the feed is unknown (a broker
killed right after it answered is not a quiet feed).

This module is pure: the facts are read from the consumer by one adapter
(``streams.broker_facts``), and the tick agent applies the decision.

>>> clocks = {"EURUSD": SeriesClock(partition=0, wall_s=100.0, event_ms=60_000)}
>>> caught_up = {0: BrokerFacts(highwater=10, last_offset=9, fetch_age_s=0.5)}
>>> decide(clocks, caught_up, now_s=112.0, idle_s=10.0, healthy=True).close
{'EURUSD': 71500}
>>> lagging = {0: BrokerFacts(highwater=50, last_offset=9, fetch_age_s=0.5)}
>>> d = decide(clocks, lagging, now_s=112.0, idle_s=10.0, healthy=True)
>>> d.close, sorted(d.restart)
({}, ['EURUSD'])
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

__all__ = [
    "FETCH_FRESH_S",
    "BrokerFacts",
    "IdleClocks",
    "IdleDecision",
    "SeriesClock",
    "decide",
    "is_behind",
    "unanswered_s",
]

FETCH_FRESH_S = 5.0  # a fetch response older than this: the broker is not answering


@dataclass(frozen=True, slots=True)
class BrokerFacts:
    """What the consumer knows of one partition.

    Parameters
    ----------
    highwater
        The high-water mark of the last fetch response (None: not fetched yet).
    last_offset
        The last offset this worker processed (None: none yet).
    fetch_age_s
        Seconds since the last fetch response for the partition (None: not known).
    """

    highwater: int | None
    last_offset: int | None
    fetch_age_s: float | None = None


class SeriesClock(NamedTuple):
    """A series' quiet clock: its partition, the wall-clock (monotonic) seconds of its last
    tick -- or of the moment its worker caught up -- and its event time then."""

    partition: int
    wall_s: float
    event_ms: int


@dataclass(frozen=True, slots=True)
class IdleDecision:
    """``restart``: series whose quiet time counts again from now (their worker is behind the
    feed); ``close``: idle series, each with the event time its clock advances to."""

    restart: frozenset[str] = frozenset()
    close: dict[str, int] = field(default_factory=dict)


def is_behind(facts: BrokerFacts | None, *, healthy: bool) -> bool:
    """Whether the partition's log may hold ticks this worker has not processed.

    Unhealthy (paused while checkpoints fail): behind. No facts at all (no broker, an
    in-memory run): caught up. Otherwise behind unless the high-water mark is known and
    reached, and the fetch response it came with is fresh (:data:`FETCH_FRESH_S`).
    """
    if not healthy:
        return True
    if facts is None:
        return False
    hw, last = facts.highwater, facts.last_offset
    if hw is None or last is None or last + 1 < hw:
        return True
    return facts.fetch_age_s is not None and facts.fetch_age_s > FETCH_FRESH_S


def unanswered_s(facts: BrokerFacts | None) -> float:
    """Seconds since the broker last answered a fetch for the partition (0 when unknown)."""
    if facts is None or facts.fetch_age_s is None:
        return 0.0
    return max(0.0, facts.fetch_age_s)


def decide(
    clocks: Mapping[str, SeriesClock],
    facts: Mapping[int, BrokerFacts],
    *,
    now_s: float,
    idle_s: float,
    healthy: bool,
) -> IdleDecision:
    """Which series restart their quiet clock and which close, at wall-clock ``now_s``.

    A series whose partition is behind (:func:`is_behind`) restarts; any other series idle
    for ``idle_s`` -- counted from its clock to ``now_s``, less the time the broker has not
    answered -- closes up to its event time plus that idle time. ``facts`` misses a
    partition when there is no broker to ask.
    """
    restart: set[str] = set()
    close: dict[str, int] = {}
    for sym, c in clocks.items():
        f = facts.get(c.partition)
        if is_behind(f, healthy=healthy):
            restart.add(sym)
            continue
        idle = now_s - c.wall_s - unanswered_s(f)
        if idle >= idle_s:
            close[sym] = c.event_ms + int(idle * 1000)
    return IdleDecision(restart=frozenset(restart), close=close)


class _Series(Protocol):
    def idle_mark(self, symbol: str) -> Any: ...

    def expire_hold(self, symbol: str) -> int: ...

    def advance(self, symbol: str, event_ms: int) -> list[Any]: ...


class IdleClocks:
    """The quiet clock of every series a tick consumer holds, and the idle close applied to them.

    ``seen`` after each tick (the series' event time, not a held far-future tick's), ``drop``
    the series of a revoked partition, and ``close`` on the timer: it restarts the clocks of
    series whose worker is behind, and advances every idle series of ``series`` (a
    :class:`~forex_diffusion.ingest.pipeline.TickPipeline`): a quiet feed first ends the holds
    of the series' guards (the first ticks of a new series are released; a held jump is
    refused, and remembered, so the ticks after the quiet go on confirming it), then closes
    the bars it has waited out.
    """

    def __init__(self) -> None:
        self.clocks: dict[str, SeriesClock] = {}

    def seen(self, symbol: str, partition: int, wall_s: float, event_ms: int) -> None:
        """The series got a tick: its quiet time starts again."""
        self.clocks[symbol] = SeriesClock(partition, wall_s, event_ms)

    def drop(self, symbols: Iterable[str]) -> None:
        """Forget the clocks of ``symbols``."""
        for s in symbols:
            self.clocks.pop(s, None)

    def partitions(self) -> set[int]:
        """The partitions of the series watched."""
        return {c.partition for c in self.clocks.values()}

    def close(
        self, series: _Series, facts: Mapping[int, BrokerFacts], *, now_s: float, idle_s: float, healthy: bool
    ) -> tuple[dict[int, set[str]], dict[int, list[Any]]]:
        """Apply :func:`decide`: return the series whose state changed and the candles closed,
        by partition."""
        d = decide(self.clocks, facts, now_s=now_s, idle_s=idle_s, healthy=healthy)
        for sym in d.restart:
            self.clocks[sym] = self.clocks[sym]._replace(wall_s=now_s)
        changed: dict[int, set[str]] = defaultdict(set)
        closed: dict[int, list[Any]] = defaultdict(list)
        for sym, until_ms in d.close.items():
            p = self.clocks[sym].partition
            mark = series.idle_mark(sym)
            if series.expire_hold(sym):
                changed[p].add(sym)
            bars = series.advance(sym, until_ms)
            if series.idle_mark(sym) != mark:  # its clock moved (or holds ended), no bar closed maybe
                changed[p].add(sym)
            if bars:
                closed[p] += bars
                changed[p].add(sym)
        return dict(changed), dict(closed)
