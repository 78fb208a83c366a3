"""A thin feed after a quiet spell, a level shift or a clock change: the stream follows it.

The tick agent runs the pipeline with an idle timer: after ``idle_s`` of wall-clock quiet it
ends the guards' holds and closes bars. On a thin feed (a tick every 15 s against the idle
close's 10 s) every tick after an hour's outage was held as a time jump, expired alone and
refused, and so was every tick of a real new price level: the series froze for as long as
the feed stayed thin, while ``forexd candles`` on the same ticks took them all. Now:

* an expired hold is remembered, so the next ticks near it go on confirming it: the stream
  refuses the first ``confirm`` ticks of a real jump in price or time (dead letters, with
  their reason) and follows from then on; a good tick in between ends the memory (a bad print
  every 15 s between good ticks is never accepted). Quiet time is not taken as time passed:
  a tick as far past the quiet as a bad clock is confirmed like one, in the stream as in a
  file (a guess from the quiet let one bad clock through, a review found);
* the memory is state: snapshot → restore → continue equals never stopping.

The stream is driven as the tick agent drives it (``streams.agents.tick_step``): each tick
through :meth:`TickPipeline.process`, ``IdleClocks.seen`` after it, and the idle timer every
half second of wall time, the feed replayed at its own speed. The ticks are the first hour
of the bundled OANDA EUR/USD ticks (2014-05-01), thinned or shifted.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from forex_diffusion.domain import Candle, Tick
from forex_diffusion.errors import StateError, ValidationError
from forex_diffusion.ingest.idle_close import IdleClocks
from forex_diffusion.ingest.pipeline import TickPipeline
from forex_diffusion.ingest.readers import read_ticks
from forex_diffusion.ingest.spikes import SpikeConfig, SpikeGuard
from forex_diffusion.ingest.time_jumps import TimeJumpConfig, TimeJumpGuard
from forex_diffusion.instruments import InstrumentRegistry
from tests.realdata import require

IDLE_S = 10.0
TIMER_S = 0.5
HOUR_MS = 3_600_000


def _real_ticks(n: int) -> list[Tick]:
    return list(_file_ticks()[:n])


@cache
def _file_ticks() -> tuple[Tick, ...]:
    rows = read_ticks(require("lean_oanda_eurusd_ticks_2014-05-01_15.csv.gz"), symbol="EURUSD").frame.iloc[:300]
    return tuple(
        Tick(symbol="EURUSD", ts_ms=int(t), bid=float(b), ask=float(a))
        for t, b, a in zip(rows.ts_ms, rows.bid, rows.ask, strict=True)
    )


def _pipeline() -> TickPipeline:
    return TickPipeline(timeframes=["1m"], instruments=InstrumentRegistry())


@dataclass
class Run:
    candles: list[Candle] = field(default_factory=list)
    refused: dict[int, str] = field(default_factory=dict)  # the tick's index → reason

    def key(self) -> list[tuple[int, float, float, float, float, int]]:
        return [(c.open_ms, c.open, c.high, c.low, c.close, c.tick_count) for c in self.candles]


def _offline(ticks: list[Tick]) -> Run:
    p, run = _pipeline(), Run()
    for i, t in enumerate(ticks):
        try:
            run.candles += p.process(t, ref=i)
        except ValidationError as exc:
            run.refused[i] = exc.reason.value
    run.candles += p.flush()
    run.refused |= {q.ref: q.reason.value for q in p.take_quarantined()}
    return run


def _stream(ticks: list[Tick], walls: list[float], restart_at: frozenset[int] = frozenset()) -> Run:
    """The tick agent's loop; before each tick index in ``restart_at`` the pipeline is
    snapshot (strict JSON), dropped and restored into a new one."""
    p, idle, run = _pipeline(), IdleClocks(), Run()
    next_timer = walls[0]

    def collect() -> None:
        for q in p.take_quarantined():
            run.refused[q.ref] = q.reason.value

    for i, (t, wall) in enumerate(zip(ticks, walls, strict=True)):
        while next_timer <= wall:
            _, closed = idle.close(p, {}, now_s=next_timer, idle_s=IDLE_S, healthy=True)
            run.candles += [c for bars in closed.values() for c in bars]
            collect()
            next_timer += TIMER_S
        if i in restart_at:
            state = json.loads(json.dumps(p.snapshot(["EURUSD"]), allow_nan=False))
            p = _pipeline()
            p.restore(state)
        try:
            run.candles += p.process(t, ref=i)
        except ValidationError as exc:
            run.refused[i] = exc.reason.value
        else:
            ev = p.event_time("EURUSD")
            idle.seen("EURUSD", 0, wall, t.ts_ms if ev is None else ev)
        collect()
    run.candles += p.flush()
    collect()
    return run


def _thin_after(ticks: list[Tick], start: int, *, every_ms: int, shift_ms: int = 0, scale: float = 1.0) -> list[Tick]:
    """``ticks`` to ``start``, then the rest one every ``every_ms`` from ``shift_ms`` after the
    last, with prices times ``scale``."""
    out = ticks[:start]
    t = ticks[start - 1].ts_ms + shift_ms
    for k in ticks[start:]:
        t += every_ms
        out.append(Tick(symbol=k.symbol, ts_ms=t, bid=round(k.bid * scale, 5), ask=round(k.ask * scale, 5)))
    return out


def _walls(ticks: list[Tick], *, lag_ms: dict[int, int] | None = None, speed: float = 1.0) -> list[float]:
    """Wall seconds at which the feed delivers each tick: at its event time over ``speed``
    (``forexd replay --speed``), less any clock change (``lag_ms``: from that index on, the
    event times are that far ahead of the wall clock)."""
    lag = lag_ms or {}
    shift, out = 0, []
    for i, t in enumerate(ticks):
        shift = lag.get(i, shift)
        out.append((t.ts_ms - shift - ticks[0].ts_ms) / 1000.0 / speed)
    return out


def test_a_thin_feed_after_an_hour_of_quiet_costs_confirm_ticks_then_the_stream_follows_it() -> None:
    confirm = TimeJumpConfig().confirm
    ticks = _thin_after(_real_ticks(260), 200, every_ms=15_000, shift_ms=HOUR_MS)
    off, live = _offline(ticks), _stream(ticks, _walls(ticks))
    assert off.refused == {} and sum(c.tick_count for c in off.candles) == len(ticks)
    # before: the 60 ticks after the quiet hour, every one future_ts, for ever
    assert live.refused == dict.fromkeys(range(200, 200 + confirm), "future_ts")
    kept = [t for i, t in enumerate(ticks) if i not in live.refused]
    assert live.key() == _offline(kept).key()


def test_a_real_level_shift_on_a_thin_feed_costs_confirm_ticks_then_the_stream_follows_it() -> None:
    confirm = SpikeConfig().confirm
    ticks = _thin_after(_real_ticks(260), 200, every_ms=15_000, scale=1.045)  # +4.5 %, then thin
    off, live = _offline(ticks), _stream(ticks, _walls(ticks))
    assert off.refused == {}  # the file confirms the level at its second tick
    # the stream: the first `confirm` ticks at the new level each waited alone and expired
    # (dead letters, spike_unconfirmed); the next one completes the confirmation
    assert live.refused == dict.fromkeys(range(200, 200 + confirm), "spike_unconfirmed")
    kept = [t for i, t in enumerate(ticks) if i not in live.refused]
    assert live.key() == _offline(kept).key()
    assert sum(c.tick_count for c in live.candles) == len(ticks) - confirm  # before: 200 (frozen)


def test_a_clock_change_on_a_thin_feed_costs_confirm_ticks_then_the_stream_follows_it() -> None:
    confirm = TimeJumpConfig().confirm
    # the feed's clock jumps an hour ahead (no quiet spell: the next tick comes 15 s later)
    ticks = _thin_after(_real_ticks(260), 200, every_ms=15_000, shift_ms=HOUR_MS)
    live = _stream(ticks, _walls(ticks, lag_ms={200: HOUR_MS}))
    assert live.refused == dict.fromkeys(range(200, 200 + confirm), "future_ts")
    kept = [t for i, t in enumerate(ticks) if i not in live.refused]
    assert live.key() == _offline(kept).key()


def test_a_bad_print_repeated_between_good_ticks_is_never_accepted() -> None:
    """Consecutive means consecutive: a good tick between two expired holds ends the memory."""
    base = _real_ticks(200)
    ticks, t = list(base), base[-1].ts_ms
    for k in range(12):  # a bad print, then a good tick, alternately, 15 s apart
        t += 15_000
        good = base[-1 - k]
        scale = 1.05 if k % 2 == 0 else 1.0
        ticks.append(Tick(symbol="EURUSD", ts_ms=t, bid=round(good.bid * scale, 5), ask=round(good.ask * scale, 5)))
    live = _stream(ticks, _walls(ticks))
    bad = [i for i in range(200, 212) if (i - 200) % 2 == 0]
    assert live.refused == dict.fromkeys(bad, "spike_unconfirmed")
    assert max(c.high for c in live.candles) < base[-1].ask * 1.01


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    case=st.sampled_from(["quiet", "level", "clock"]),
    every_s=st.sampled_from([5, 11, 15, 25]),
    restarts=st.frozensets(st.integers(195, 225), max_size=4),
)
def test_a_restart_anywhere_gives_what_never_stopping_gives(case: str, every_s: int, restarts: frozenset[int]) -> None:
    base = _real_ticks(230)
    shift, scale, lag = {"quiet": (HOUR_MS, 1.0, 0), "level": (0, 1.045, 0), "clock": (HOUR_MS, 1.0, HOUR_MS)}[case]
    ticks = _thin_after(base, 200, every_ms=every_s * 1000, shift_ms=shift, scale=scale)
    walls = _walls(ticks, lag_ms={200: lag})
    whole = _stream(ticks, walls)
    again = _stream(ticks, walls, restart_at=restarts)
    assert again.refused == whole.refused
    assert again.key() == whole.key()


def _expired_spike_guard() -> SpikeGuard[str]:
    g: SpikeGuard[str] = SpikeGuard(SpikeConfig(warmup=3, confirm=2))
    for mid in (1.2011, 1.2012, 1.2010):
        g.accept(mid)
    assert g.classify(0.8597) == "start" and g.hold("t1", 0.8597) is None
    assert g.expire(1_000) == ["t1"]
    return g


def test_an_expired_hold_survives_a_snapshot_and_a_snapshot_without_one_reads_as_before() -> None:
    g = _expired_spike_guard()
    state = g.snapshot(str)
    assert state["state"]["expired"] == [0.8597, 1, 1_000]
    back: SpikeGuard[str] = SpikeGuard(SpikeConfig(warmup=3, confirm=2))
    back.restore(state, str)
    for guard in (g, back):  # two more ticks near the level: confirmed (1 expired + 2)
        assert guard.classify(0.8600) == "start" and guard.hold("t2", 0.8600) is None
        assert guard.classify(0.8598) == "confirm" and guard.hold("t3", 0.8598) == ["t2", "t3"]
    old = g.snapshot(str)
    assert "expired" not in old["state"] and "carry" not in old["state"]  # a plain guard writes the old layout
    t: TimeJumpGuard[str] = TimeJumpGuard(TimeJumpConfig(max_jump_ms=1_000, confirm=2, hours=None), top=0)
    assert t.hold("far", 5_000) is None and t.expire() == ["far"]
    assert t.snapshot(str)["state"]["expired"] == [5_000, 1, 5_000]
    tb: TimeJumpGuard[str] = TimeJumpGuard(TimeJumpConfig(max_jump_ms=1_000, confirm=2, hours=None))
    tb.restore(t.snapshot(str), str)
    for guard2 in (t, tb):
        assert guard2.classify(5_100) == "start" and guard2.hold("b", 5_100) is None
        assert guard2.classify(5_200) == "confirm" and guard2.hold("c", 5_200) == ["b", "c"]
        assert guard2.top == 5_200


@given(
    expired=st.one_of(
        st.just("x"),
        st.lists(
            st.one_of(st.integers(-5, 5), st.floats(allow_nan=True), st.booleans(), st.text(max_size=2)), max_size=4
        ),
    )
)
def test_a_malformed_expired_hold_in_a_snapshot_is_a_state_error(expired: object) -> None:
    g = _expired_spike_guard()
    state = g.snapshot(str)
    state["state"]["expired"] = expired
    fresh: SpikeGuard[str] = SpikeGuard(SpikeConfig(warmup=3, confirm=2))
    try:
        fresh.restore(state, str)
    except StateError:
        return
    # read: it must be a level in the price range with 1..confirm ticks and a time
    assert isinstance(expired, list) and len(expired) == 3
    level, ticks, latest = expired
    assert type(ticks) is int and 1 <= ticks <= 2 and isinstance(level, (int, float)) and level > 0
    assert type(latest) is int and latest >= 0


def test_a_hold_held_with_an_expired_one_in_a_snapshot_is_refused() -> None:
    g = _expired_spike_guard()
    state = g.snapshot(str)
    state["state"]["held"] = [[0.86, "t9"]]  # held and expired at once: no guard writes that
    with pytest.raises(StateError, match="expired hold"):
        SpikeGuard[str](SpikeConfig(warmup=3, confirm=2)).restore(state, str)


@pytest.mark.parametrize("speed", [0.2, 0.5])
def test_a_feed_slower_than_the_wall_clock_loses_only_ticks_of_bars_already_closed(speed: float) -> None:
    """``forexd replay --speed 0.5``: the idle close takes each long gap for quiet and closes
    bars early (the price of closing on wall-clock time), but it moved the clock to the quiet
    time itself, ahead of the feed: every later tick was refused as late (2,998 of 3,000).
    Now the clock moves only as far as the bars it closed: a tick is refused as late only if
    its own bar was already emitted, and every other tick is in the stream's candles."""
    ticks = list(_file_ticks())
    live = _stream(ticks, _walls(ticks, speed=speed))
    assert set(live.refused.values()) <= {"late"}
    emitted = {c.open_ms for c in live.candles}
    minute = 60_000
    for i in live.refused:  # its bar was closed before it came: the stream had already emitted it
        assert ticks[i].ts_ms // minute * minute in emitted
    first = min(live.refused)  # before: every tick from the first late one on was refused
    assert [i for i in range(first, len(ticks)) if i not in live.refused]
    kept = [t for i, t in enumerate(ticks) if i not in live.refused]
    assert sum(c.tick_count for c in live.candles) == len(kept)


def test_a_feed_at_the_wall_clock_s_pace_gives_the_file_s_candles() -> None:
    ticks = list(_file_ticks())
    live = _stream(ticks, _walls(ticks))
    assert live.refused == {}
    assert live.key() == _offline(ticks).key()


def test_a_feed_resuming_behind_the_quiet_time_judges_its_clocks_against_its_own_time() -> None:
    """Review finding: the quiet time is the timer's guess, and it lasted. A feed that resumed
    an hour later from where it stopped (a producer's buffer, the next file replayed) had
    every tick judged against the guess, so one clock 30 minutes ahead among them passed and
    moved the watermark: the ticks after it were refused as late. The first tick let through
    now ends the guess; the stream refuses only the bad clock, as the file does."""
    base = _real_ticks(300)
    ticks = list(base)
    bad = 205
    ticks[bad] = Tick(symbol="EURUSD", ts_ms=base[199].ts_ms + 30 * 60_000, bid=base[bad].bid, ask=base[bad].ask)
    walls = _walls(ticks)
    walls[200:] = [w + 3600.0 for w in _walls(base)[200:]]  # ticks 200.. come an hour late
    off, live = _offline(ticks), _stream(ticks, walls)
    assert off.refused == {bad: "future_ts"}
    assert live.refused.pop(bad) == "future_ts"  # before: accepted, and the watermark moved 30 minutes
    emitted = {c.open_ms for c in live.candles}
    for i, why in live.refused.items():  # only ticks whose bar the quiet hour closed
        assert why == "late" and ticks[i].ts_ms // 60_000 * 60_000 in emitted
    assert len(live.refused) < 50  # before: every tick after the bad clock (94)


@pytest.mark.parametrize("case", ["level", "clock"])
def test_an_expired_hold_is_not_confirmed_by_ticks_late_against_it(case: str) -> None:
    """Review finding: ticks of a bad level (or clock) older than the first by more than the
    lateness are refused as late against it in a file; the stream, where the first had
    expired, counted them as its confirmations and accepted the bad level. Lateness now
    counts the expired ticks a tick goes on confirming."""
    base = _real_ticks(200)
    last = base[-1]
    if case == "level":
        bad = [last.ts_ms + dt for dt in (10_000, 3_000, 4_000, 5_000)]
        scale, first = 1.05, "spike_unconfirmed"
    else:
        bad = [last.ts_ms + 86_400_000 + dt for dt in (9 * 60_000, 0, 1_000, 2_000)]
        scale, first = 1.0, "future_ts"
    ticks = base + [
        Tick(symbol="EURUSD", ts_ms=t, bid=round(last.bid * scale, 5), ask=round(last.ask * scale, 5)) for t in bad
    ]
    walls = _walls(base) + [_walls(base)[-1] + 15.0 * (k + 1) for k in range(len(bad))]  # a thin feed
    off, live = _offline(ticks), _stream(ticks, walls)
    assert off.refused == {200: first, 201: "late", 202: "late", 203: "late"}
    assert live.refused == off.refused  # before: 203 completed the confirmation
    assert max(c.high for c in live.candles) < last.ask * 1.01
