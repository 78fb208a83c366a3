"""Event-time jump guard in the tick pipeline (issue 13, finding 1) and extremes (2, 3).

A tick far ahead of its series is held like a price jump: it moves the watermark only once
later ticks confirm the new time, otherwise it is refused as ``future_ts``; the candles are
those of the stream without it. The guard state snapshots and restores with the pipeline.
"""

from __future__ import annotations

import json
import math

import pytest

from forex_diffusion.bundled import SAMPLE_TICKS
from forex_diffusion.domain import Tick
from forex_diffusion.errors import ConfigError, RejectReason, ValidationError
from forex_diffusion.ingest.readers import read_ticks
from forex_diffusion.ingest.time_jumps import TimeJumpConfig, TimeJumpGuard
from forex_diffusion.wire import encode_candle

from ..pipeline_runs import feed, pipeline, run

DAY = 86_400_000


def sample(n: int, start: int = 0) -> list[Tick]:
    f = read_ticks(SAMPLE_TICKS, symbol="EURUSD").frame.iloc[start : start + n]
    return [
        Tick(symbol="EURUSD", ts_ms=t, bid=b, ask=a)
        for t, b, a in zip(f.ts_ms.tolist(), f.bid.tolist(), f.ask.tolist(), strict=True)
    ]


def shifted(t: Tick, dt: int) -> Tick:
    return Tick(symbol=t.symbol, ts_ms=t.ts_ms + dt, bid=t.bid, ask=t.ask, volume=t.volume, tick_id=t.tick_id)


TICKS = sample(3_000)
CLEAN = run(TICKS, times=TimeJumpConfig(enabled=False))[0]


def test_clean_ticks_give_the_candles_of_no_guard_and_hold_nothing_after_the_start() -> None:
    p = pipeline()
    out, quarantined, refused = feed(p, TICKS)
    assert (quarantined, refused) == ([], [])
    assert p.time_counters == {"holds": 0, "confirmed": 0, "refused": 0}
    assert out + p.flush() == CLEAN


@pytest.mark.parametrize("where", [0, 1, 2, 1_500, 2_999, 3_000])
def test_one_tick_three_years_ahead_is_refused_future_ts_and_changes_no_candle(where: int) -> None:
    far = shifted(TICKS[min(where, 2_999)], 3 * 365 * DAY)
    candles, quarantined, refused = run(TICKS[:where] + [far] + TICKS[where:])
    assert candles == CLEAN and refused == []
    assert [(q.ref["offset"], q.reason, q.tick) for q in quarantined] == [(where, RejectReason.FUTURE_TS, far)]


def test_without_the_guard_the_far_tick_discards_the_rest_as_late() -> None:
    far = shifted(TICKS[999], 3 * 365 * DAY)
    candles, _, refused = run(TICKS[:1_000] + [far] + TICKS[1_000:], times=TimeJumpConfig(enabled=False))
    assert len(refused) == 2_000 and len(candles) < len(CLEAN) // 2


def test_a_real_gap_longer_than_the_limit_is_confirmed_and_gives_the_candles_of_no_guard() -> None:
    gap = TICKS[:1_500] + [shifted(t, 6 * DAY) for t in TICKS[1_500:]]  # the feed resumes 6 days later
    want = run(gap, times=TimeJumpConfig(enabled=False))[0]
    p = pipeline()
    out, quarantined, refused = feed(p, gap)
    assert (quarantined, refused) == ([], [])
    assert p.time_counters["holds"] == 1 and p.time_counters["confirmed"] == 1
    assert out + p.flush() == want


def test_two_far_jumps_to_different_times_are_both_refused() -> None:
    a, b = shifted(TICKS[100], 30 * DAY), shifted(TICKS[100], 300 * DAY)
    candles, quarantined, _ = run(TICKS[:101] + [a, b] + TICKS[101:])
    assert candles == CLEAN
    assert [(q.tick, q.reason) for q in quarantined] == [(a, RejectReason.FUTURE_TS), (b, RejectReason.FUTURE_TS)]


def test_first_ticks_of_a_series_far_before_the_rest_are_refused_late() -> None:
    past = shifted(TICKS[0], -400 * DAY)
    candles, quarantined, _ = run([past] + TICKS)
    assert candles == CLEAN
    assert [(q.tick, q.reason) for q in quarantined] == [(past, RejectReason.LATE)]


def test_a_series_of_one_tick_still_gives_its_candle() -> None:
    candles, quarantined, refused = run(TICKS[:1])
    assert (len(candles), quarantined, refused) == (2, [], [])


def test_a_tick_late_against_a_time_held_tick_is_late_as_without_the_guard() -> None:
    gap = TICKS[:500] + [shifted(t, 6 * DAY) for t in TICKS[500:]]
    late = shifted(gap[500], -5_000)  # lateness is 2 s
    stream = gap[:501] + [late] + gap[501:]
    got = run(stream)
    assert got[2] == [(501, RejectReason.LATE)] and got[1] == []
    assert got[0] == run(stream, times=TimeJumpConfig(enabled=False))[0]


@pytest.mark.parametrize("cut", [1_001, 1_002, 1_003])  # after the far tick, after 1 and 2 confirmations
def test_snapshot_mid_hold_then_restore_continues_as_if_never_stopped(cut: int) -> None:
    gap = TICKS[:1_000] + [shifted(t, 6 * DAY) for t in TICKS[1_000:]]
    want = run(gap)
    p = pipeline()
    out, quarantined, refused = feed(p, gap[:cut])
    assert p.time_held_count("EURUSD") == cut - 1_000
    state = json.loads(json.dumps(p.snapshot(["EURUSD"])))
    q = pipeline()
    q.restore(state)
    rest, more_q, more_r = feed(q, gap[cut:], start=cut)
    assert (out + rest + q.flush(), quarantined + more_q + q.take_quarantined(), refused + more_r) == want


@pytest.mark.parametrize("cut", [1, 2, 3])  # the first ticks of the series are held
def test_snapshot_at_the_start_of_a_series_round_trips(cut: int) -> None:
    p = pipeline()
    feed(p, TICKS[:cut])
    state = json.loads(json.dumps(p.snapshot(["EURUSD"])))
    q = pipeline()
    q.restore(state)
    out, quarantined, refused = feed(q, TICKS[cut:], start=cut)
    assert (out + q.flush(), quarantined, refused) == (CLEAN, [], [])


def test_snapshot_mid_hold_of_a_bad_clock_restores_its_ref() -> None:
    far = shifted(TICKS[1_000], 3 * 365 * DAY)
    stream = TICKS[:1_001] + [far] + TICKS[1_001:]
    p = pipeline()
    feed(p, stream[:1_002])
    q = pipeline()
    q.restore(json.loads(json.dumps(p.snapshot(["EURUSD"]))))
    _, quarantined, _ = feed(q, stream[1_002:], start=1_002)
    assert [(x.ref, x.reason) for x in quarantined] == [({"partition": 0, "offset": 1_001}, RejectReason.FUTURE_TS)]


def test_restore_of_an_older_snapshot_without_time_state_guards_from_the_watermark() -> None:
    p = pipeline()
    feed(p, TICKS[:1_000])
    state = p.snapshot(["EURUSD"])
    del state["times"]
    q = pipeline()
    q.restore(state)
    far = shifted(TICKS[999], 3 * 365 * DAY)
    out, quarantined, refused = feed(q, [far] + TICKS[1_000:])
    assert refused == [] and [x.reason for x in quarantined] == [RejectReason.FUTURE_TS]


def test_malformed_time_snapshot_is_a_config_error() -> None:
    p = pipeline()
    feed(p, TICKS[:10])
    state = p.snapshot(["EURUSD"])
    state["times"]["EURUSD"]["state"]["top"] = "soon"
    with pytest.raises(ConfigError):
        pipeline().restore(state)


def test_idle_timer_never_moves_the_clock_to_a_held_far_tick() -> None:
    far = shifted(TICKS[999], 3 * 365 * DAY)
    p = pipeline()
    feed(p, TICKS[:1_000] + [far])
    assert p.event_time("EURUSD") == TICKS[999].ts_ms  # what the agent's idle timer counts from
    p.advance("EURUSD", far.ts_ms + 10_000)  # a timer fed with the held tick's time
    # at most the cap (as far as the bars it closed: their end plus the lateness)
    assert TICKS[999].ts_ms < p.aggregator.last_event_ms("EURUSD") <= TICKS[999].ts_ms + TimeJumpConfig().idle_cap_ms
    assert p.time_held_count("EURUSD") == 1
    p.flush()
    assert [q.reason for q in p.take_quarantined()] == [RejectReason.FUTURE_TS]


def test_expire_hold_refuses_a_held_far_tick_and_releases_the_first_ticks_of_a_series() -> None:
    p = pipeline()
    feed(p, TICKS[:2])
    assert p.expire_hold("EURUSD") == 0 and p.time_held_count("EURUSD") == 0
    assert p.event_time("EURUSD") == TICKS[1].ts_ms
    feed(p, TICKS[2:1_000])
    feed(p, [shifted(TICKS[999], 30 * DAY)])
    assert p.expire_hold("EURUSD") == 1
    assert [q.reason for q in p.take_quarantined()] == [RejectReason.FUTURE_TS]


def test_guard_config_is_validated() -> None:
    for bad in ({"max_jump_ms": 0}, {"max_jump_ms": 1.5}, {"confirm": 0}, {"max_start_held": 3}):
        with pytest.raises(ConfigError):
            TimeJumpConfig(**bad)


def test_start_of_series_cluster_needs_a_lead_so_interleaved_bad_clocks_never_win() -> None:
    g: TimeJumpGuard[str] = TimeJumpGuard(TimeJumpConfig(max_jump_ms=10, confirm=3))
    # bad clocks (1000) interleaved one for one with real ticks (0..): the real ones win
    seq = [
        ("h1", 1000),
        ("r0", 0),
        ("h2", 1000),
        ("r1", 1),
        ("h3", 1000),
        ("r2", 2),
        ("h4", 1000),
        ("r3", 3),
        ("r4", 4),
        ("r5", 5),
        ("r6", 6),
    ]
    out = None
    for item, ts in seq:
        out = g.hold_first(item, ts)
        if out is not None:
            break
    assert out == (["r0", "r1", "r2", "r3", "r4", "r5", "r6"], ["h1", "h2", "h3", "h4"])
    assert g.top == 6


# -- extremes through the pipeline (what the tick agent runs) ------------------------------


@pytest.mark.parametrize(
    "bid,ask,volume,reason",
    [
        (1e304, 1e304, 0.0, RejectReason.OUT_OF_RANGE),  # was an OverflowError escaping the agent
        (1.7976931348623157e308, 1.7976931348623157e308, 0.0, RejectReason.OUT_OF_RANGE),
        (5e-324, 5e-324, 0.0, RejectReason.OUT_OF_RANGE),
        (1.38710, 1e308, 0.0, RejectReason.OUT_OF_RANGE),
        (1.38710, 1.38726, 1e308, RejectReason.OUT_OF_RANGE),
        (1.38710, 1.38726, -1.0, RejectReason.OUT_OF_RANGE),
        (1.38710, 1.38726, 5e-324, RejectReason.OUT_OF_RANGE),
        (1.38710, 1.38726, math.nan, RejectReason.NON_FINITE),
        (1.38710, 1.38726, math.inf, RejectReason.NON_FINITE),
    ],
)
def test_extreme_values_are_refused_with_a_reason_never_an_exception(
    bid: float, ask: float, volume: float, reason: RejectReason
) -> None:
    p = pipeline()
    feed(p, TICKS[:10])
    with pytest.raises(ValidationError) as exc:
        p.process(Tick(symbol="EURUSD", ts_ms=TICKS[10].ts_ms, bid=bid, ask=ask, volume=volume))
    assert exc.value.reason is reason


def test_two_huge_volumes_in_one_bucket_never_make_an_unencodable_candle() -> None:
    big = [
        Tick(symbol="EURUSD", ts_ms=TICKS[20].ts_ms + i, bid=TICKS[20].bid, ask=TICKS[20].ask, volume=1e308)
        for i in range(2)
    ]
    candles, _, refused = run(TICKS[:20] + big + TICKS[20:])
    assert [r for _, r in refused] == [RejectReason.OUT_OF_RANGE] * 2
    assert candles == CLEAN
    for c in candles:
        encode_candle(c)
