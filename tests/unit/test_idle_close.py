"""The idle close as a pure function of broker facts (issue 15).

Over generated facts: a series whose partition is behind (the log holds more, the mark is
unknown, the last fetch answer is stale, or checkpoints fail) never closes; a series closes
only after ``idle_s`` of quiet time the broker vouches for, and to its event time plus exactly
that; every series is decided once. The regressions the tick agent met are pinned by name.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from forex_diffusion.ingest.idle_close import (
    FETCH_FRESH_S,
    BrokerFacts,
    IdleClocks,
    SeriesClock,
    decide,
    is_behind,
    unanswered_s,
)

PARTITIONS = st.integers(0, 3)
OFFSETS = st.none() | st.integers(-1, 1_000)
AGES = st.none() | st.floats(-5.0, 60.0, allow_nan=False)
FACTS = st.builds(BrokerFacts, highwater=OFFSETS, last_offset=OFFSETS, fetch_age_s=AGES)
CLOCKS = st.dictionaries(
    st.sampled_from(["EURUSD", "USDJPY", "GBPUSD", "AUDUSD", "USDCHF"]),
    st.builds(SeriesClock, partition=PARTITIONS, wall_s=st.floats(0.0, 1_000.0), event_ms=st.integers(0, 10**12)),
)


@given(
    clocks=CLOCKS,
    facts=st.dictionaries(PARTITIONS, FACTS),
    now_s=st.floats(0.0, 2_000.0),
    idle_s=st.floats(0.1, 600.0),
    healthy=st.booleans(),
)
def test_a_series_closes_only_when_its_partition_is_caught_up_answered_and_quiet_long_enough(
    clocks: dict[str, SeriesClock], facts: dict[int, BrokerFacts], now_s: float, idle_s: float, healthy: bool
) -> None:
    d = decide(clocks, facts, now_s=now_s, idle_s=idle_s, healthy=healthy)
    assert set(d.close) | d.restart <= set(clocks) and not set(d.close) & d.restart  # each decided once
    for sym, c in clocks.items():
        f = facts.get(c.partition)
        behind = not healthy or (
            f is not None
            and (
                f.highwater is None
                or f.last_offset is None
                or f.last_offset + 1 < f.highwater
                or (f.fetch_age_s is not None and f.fetch_age_s > FETCH_FRESH_S)
            )
        )
        assert (sym in d.restart) == behind
        if sym in d.close:
            quiet = now_s - c.wall_s - unanswered_s(f)
            assert quiet >= idle_s and not behind
            assert d.close[sym] == c.event_ms + int(quiet * 1000) >= c.event_ms
        elif not behind:
            assert now_s - c.wall_s - unanswered_s(f) < idle_s


@given(facts=FACTS, healthy=st.booleans())
def test_a_partition_the_log_holds_more_of_is_behind_whatever_else_is_known(facts: BrokerFacts, healthy: bool) -> None:
    if facts.highwater is not None and facts.last_offset is not None and facts.last_offset + 1 < facts.highwater:
        assert is_behind(facts, healthy=healthy)
    if not healthy:
        assert is_behind(facts, healthy=False)
    assert 0.0 <= unanswered_s(facts)


@given(clocks=CLOCKS, now_s=st.floats(0.0, 2_000.0))
def test_without_a_broker_to_ask_quiet_time_is_wall_clock_time(clocks: dict[str, SeriesClock], now_s: float) -> None:
    d = decide(clocks, {}, now_s=now_s, idle_s=10.0, healthy=True)
    assert not d.restart and set(d.close) == {s for s, c in clocks.items() if now_s - c.wall_s >= 10.0}


def test_regression_paused_worker_restarts_the_quiet_clock_instead_of_closing() -> None:
    """The PostgreSQL-outage fault test lost 31 ticks per symbol: the agent was paused, the wall
    clock ran, the bars closed, and the ticks still in the log were refused as late."""
    clocks = {"EURUSD": SeriesClock(0, 0.0, 1_000)}
    caught_up = {0: BrokerFacts(highwater=10, last_offset=9, fetch_age_s=0.1)}
    paused = decide(clocks, caught_up, now_s=400.0, idle_s=10.0, healthy=False)
    assert paused.restart == {"EURUSD"} and paused.close == {}
    assert decide(clocks, caught_up, now_s=400.0, idle_s=10.0, healthy=True).close == {"EURUSD": 1_000 + 399_900}


def test_regression_time_after_the_last_fetch_answer_is_not_quiet_time() -> None:
    """F1 (broker kill -9 mid-burst): its last answer 3.4 s old (fresher than the staleness
    rule), 3.5 s after the last tick a 3 s idle timer closed the bars and the ticks the broker
    held were refused as late. Only 0.1 s of that is vouched for."""
    clocks = {"EURUSD": SeriesClock(0, 100.0, 5_000)}
    facts = {0: BrokerFacts(highwater=297, last_offset=296, fetch_age_s=3.4)}
    d = decide(clocks, facts, now_s=103.5, idle_s=3.0, healthy=True)
    assert d.close == {} and d.restart == frozenset()


class Series:
    """A pipeline stand-in: one held tick per series, one bar closed per advance."""

    def __init__(self) -> None:
        self.held = {"EURUSD": 1}
        self.advanced: list[tuple[str, int]] = []

    def idle_mark(self, symbol: str) -> tuple[int, int]:
        return self.held.get(symbol, 0), len(self.advanced)

    def expire_hold(self, symbol: str) -> int:
        return self.held.pop(symbol, 0)

    def advance(self, symbol: str, event_ms: int) -> list[str]:
        self.advanced.append((symbol, event_ms))
        return [f"{symbol}@{event_ms}"]


def test_idle_clocks_apply_the_decision_per_partition() -> None:
    clocks, series = IdleClocks(), Series()
    clocks.seen("EURUSD", 0, 0.0, 1_000)
    clocks.seen("USDJPY", 1, 0.0, 2_000)
    facts = {1: BrokerFacts(highwater=50, last_offset=9)}  # partition 1 lags
    changed, closed = clocks.close(series, facts, now_s=20.0, idle_s=10.0, healthy=True)
    assert changed == {0: {"EURUSD"}} and closed == {0: ["EURUSD@21000"]} and series.held == {}
    assert clocks.clocks["USDJPY"] == SeriesClock(1, 20.0, 2_000)  # counts again from now
    assert clocks.partitions() == {0, 1}
    clocks.drop(["EURUSD"])
    assert clocks.partitions() == {1}
