"""B9 huge-jump guard: held jumps are accepted once confirmed, bad prints are quarantined."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from forex_diffusion.bundled import SAMPLE_TICKS
from forex_diffusion.domain import Candle, Tick
from forex_diffusion.errors import ConfigError, RejectReason
from forex_diffusion.ingest.readers import read_ticks
from forex_diffusion.ingest.spikes import SpikeConfig, SpikeGuard

from ..pipeline_runs import feed, pipeline, run
from ..realdata import require

SAMPLE = SAMPLE_TICKS
SNB_MS = 1_421_314_200_000  # 2015-01-15 09:30 UTC, the SNB drops the EUR/CHF floor


def no_guard(ticks: list[Tick]) -> list[Candle]:
    candles, quarantined, _ = run(ticks, spikes=SpikeConfig(enabled=False))
    assert not quarantined
    return candles


def quote(symbol: str, ts_ms: int, mid: float, half_spread: float = 0.00002) -> Tick:
    m = round(mid, 5)
    return Tick(symbol=symbol, ts_ms=ts_ms, bid=round(m - half_spread, 5), ask=round(m + half_spread, 5))


def walk(
    symbol: str,
    t0: int,
    start: float,
    n: int,
    *,
    step: float = 0.00002,
    seed: int = 1,
    dt: int = 700,
    half_spread: float = 0.00002,
) -> list[Tick]:
    rng = random.Random(seed)
    out, mid = [], start
    for i in range(n):
        out.append(quote(symbol, t0 + i * dt, mid, half_spread))
        mid += rng.choice((-step, 0.0, step))
    return out


def eurchf_2015_01_15() -> tuple[list[Tick], list[Tick]]:
    """Calm EUR/CHF at the 1.20 floor until 09:30 UTC, then 0.8597 and trading near it."""
    before = walk("EURCHF", SNB_MS - 300 * 700, 1.2011, 300, step=0.00001)
    after = [
        quote("EURCHF", SNB_MS + i * 700, m, 0.0005) for i, m in enumerate((0.8597, 0.8620, 0.8610, 0.8580))
    ]  # within 0.5 % of 0.8597
    after += walk("EURCHF", SNB_MS + 4 * 700, 0.8580, 400, step=0.0004, seed=2, half_spread=0.0005)
    return before, after


def sample_ticks(n: int, start: int = 0) -> list[Tick]:
    frame = read_ticks(SAMPLE).frame.iloc[start : start + n]
    return [
        Tick(symbol="EURUSD", ts_ms=t, bid=b, ask=a)
        for t, b, a in zip(frame.ts_ms.tolist(), frame.bid.tolist(), frame.ask.tolist(), strict=True)
    ]


def bad_print(t: Tick, factor: float = 1.1, dt: int = 1) -> Tick:
    return Tick(symbol=t.symbol, ts_ms=t.ts_ms + dt, bid=round(t.bid * factor, 5), ask=round(t.ask * factor, 5))


# -- the guard alone ------------------------------------------------------------------------


def test_config_is_frozen_keyword_only_and_validated() -> None:
    for kw in (
        {"k": 0},
        {"k": float("inf")},
        {"min_move": 0},
        {"min_move": 1},
        {"alpha": 0},
        {"alpha": 1.5},
        {"warmup": 1},
        {"confirm": 0},
        {"confirm": 2.0},
    ):
        with pytest.raises(ConfigError):
            SpikeConfig(**kw)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        SpikeConfig(threshold=3)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        SpikeConfig(25.0)  # type: ignore[misc]


def test_sigma_is_the_running_mean_then_the_ewma_of_absolute_log_returns() -> None:
    import math

    g: SpikeGuard[str] = SpikeGuard(SpikeConfig(alpha=0.5, k=2.0, min_move=1e-9))
    mids = [1.0, 1.01, 1.0, 1.03, 1.03]
    for m in mids:
        assert not g.is_jump(m) and g.low <= m <= g.high  # warm-up: never a jump
        g.accept(m)
    r = [abs(math.log(b / a)) for a, b in zip(mids, mids[1:], strict=False)]
    s = (r[0] + r[1]) / 2  # 1/m weights while m < 1/alpha = 2
    s += 0.5 * (r[2] - s)
    s += 0.5 * (r[3] - s)
    assert g.sigma == pytest.approx(s) and g.threshold == pytest.approx(2 * s) and g.n == 5


def test_no_hold_during_warm_up() -> None:
    g: SpikeGuard[str] = SpikeGuard(SpikeConfig(warmup=5, k=2.0))
    for m in (1.2, 1.2001, 1.2, 0.86):  # a jump at the 4th tick: still warming up
        assert not g.is_jump(m) and g.classify(m) == "revert"
        g.accept(m)
    g.accept(0.8601)
    assert (
        g.is_jump(1.2) and not (g.low <= 1.2 <= g.high) and g.classify(1.2) == "start"
    )  # now warm (sigma ~ 0.33 / 4 holds the jump in it: 2 sigma < 0.33)


def test_both_bounds_must_be_exceeded() -> None:
    g: SpikeGuard[str] = SpikeGuard(SpikeConfig(warmup=2, k=25.0, min_move=0.005))
    for m in (1.0, 1.0001, 1.0):  # sigma = 1e-4: k*sigma = 0.25 % < min_move
        g.accept(m)
    assert not g.is_jump(1.004)  # 0.4 %: above k*sigma, below min_move
    assert g.is_jump(1.006)
    g2: SpikeGuard[str] = SpikeGuard(SpikeConfig(warmup=2, k=25.0, min_move=0.005))
    for m in (1.0, 1.01, 1.0):  # sigma ~ 1 %: k*sigma ~ 25 %
        g2.accept(m)
    assert not g2.is_jump(1.1)  # 10 %: above min_move, below k*sigma


def test_snapshot_is_plain_json_and_restores_the_same_guard() -> None:
    g: SpikeGuard[str] = SpikeGuard(SpikeConfig(warmup=3, confirm=2))
    for m in (1.2011, 1.2012, 1.2010):
        g.accept(m)
    assert g.classify(0.8597) == "start"
    g.hold("first", 0.8597)
    data = json.loads(json.dumps(g.snapshot(lambda x: x)))
    h: SpikeGuard[str] = SpikeGuard(SpikeConfig(warmup=3, confirm=2))
    h.restore(data, str)
    assert (h.n, h.last_good, h.sigma, h.threshold, h.held, h.low, h.high) == (
        g.n,
        g.last_good,
        g.sigma,
        g.threshold,
        g.held,
        g.low,
        g.high,
    )
    assert h.classify(0.8600) == "confirm" and h.hold("second", 0.86) is None
    assert h.classify(0.8601) == "confirm" and h.hold("third", 0.8601) == ["first", "second", "third"]


@pytest.mark.parametrize("bad", [{"n": -1}, {"n": 0}, {"sigma": float("nan")}, {"held": [[1.0, "a"]] * 4}, {}])
def test_malformed_guard_snapshot_is_refused(bad: dict[str, Any]) -> None:
    data: dict[str, Any] = {"n": 5, "last_good": 1.1, "sigma": 1e-5, "held": []}
    data.update(bad)
    if not bad:
        del data["sigma"]
    with pytest.raises((ConfigError, KeyError)):
        SpikeGuard(SpikeConfig()).restore(data, str)


# -- in the pipeline ------------------------------------------------------------------------


def test_eurchf_2015_01_15_drop_is_held_then_accepted_with_the_candles_of_no_guard() -> None:
    before, after = eurchf_2015_01_15()
    p = pipeline()
    out, quarantined, refused = feed(p, before)
    assert (quarantined, refused) == ([], [])
    for t in after[:3]:  # the jump and two confirmations: held, no candle yet
        assert p.process(t) == []
    assert p.held_count("EURCHF") == 3 and p.spike_counters.holds == 1
    out.extend(p.process(after[3]))  # the third confirmation releases all four
    assert p.held_count("EURCHF") == 0
    rest, quarantined, refused = feed(p, after[4:])
    out += rest + p.flush()
    assert (quarantined, refused, p.take_quarantined()) == ([], [], [])
    assert out == no_guard(before + after)
    c = p.spike_counters
    assert (c.holds, c.confirmed, c.released, c.unconfirmed, c.quarantined) == (1, 1, 4, 0, 0)
    assert max(x.high for x in out) >= 1.2011 and min(x.low for x in out) < 0.86  # both levels


def test_erratic_real_jump_ends_up_accepted_at_the_level_that_holds() -> None:
    """The first print after the SNB move was not where the market settled: it is quarantined
    when a third level appears, and that level is accepted once three ticks confirm it."""
    before, _ = eurchf_2015_01_15()
    after = [
        quote("EURCHF", SNB_MS + i * 700, m, 0.0005)
        for i, m in enumerate((0.8597, 0.9800, 0.9760, 0.9790, 0.9820, 0.9830, 0.9810))
    ]
    candles, quarantined, refused = run(before + after)
    assert refused == []
    assert [(q.tick, q.ref, q.reason) for q in quarantined] == [
        (after[0], {"partition": 0, "offset": 300}, RejectReason.SPIKE_UNCONFIRMED)
    ]
    assert candles == no_guard(before + after[1:])


@pytest.mark.parametrize("repeats", [1, 2, 3])
def test_bad_print_that_reverts_is_quarantined_with_its_ref(repeats: int) -> None:
    ticks = sample_ticks(3_000)
    bad = [bad_print(ticks[1_500], dt=k) for k in range(1, repeats + 1)]  # M=3: three is still short
    stream = ticks[:1_501] + bad + ticks[1_501:]
    candles, quarantined, refused = run(stream)
    assert refused == []
    assert [(q.symbol, q.tick, q.ref, q.reason) for q in quarantined] == [
        ("EURUSD", b, {"partition": 0, "offset": 1_501 + k}, RejectReason.SPIKE_UNCONFIRMED) for k, b in enumerate(bad)
    ]
    assert candles == no_guard(ticks)


def test_four_ticks_at_the_new_level_are_a_real_move_even_if_it_reverts_later() -> None:
    ticks = sample_ticks(3_000)
    bad = [bad_print(ticks[1_500], dt=k) for k in range(1, 5)]  # jump + M=3 confirmations
    stream = ticks[:1_501] + bad + ticks[1_501:]
    candles, quarantined, refused = run(stream)
    assert (quarantined, refused) == ([], [])  # the way back is a jump too, and it is confirmed as well
    assert candles == no_guard(stream)


def test_without_the_guard_the_bad_print_reaches_the_candles() -> None:
    ticks = sample_ticks(2_000)
    stream = ticks[:1_000] + [bad_print(ticks[999])] + ticks[1_000:]
    candles, quarantined, _ = run(stream, spikes=SpikeConfig(enabled=False))
    assert quarantined == [] and max(c.high for c in candles) > 1.5


@pytest.mark.parametrize("cut", [301, 302, 303])  # after the jump, after 1 and 2 confirmations
def test_snapshot_mid_hold_then_restore_continues_as_if_never_stopped(cut: int) -> None:
    before, after = eurchf_2015_01_15()
    stream = before + after
    want = run(stream)
    p = pipeline()
    out, quarantined, refused = feed(p, stream[:cut])
    assert p.held_count("EURCHF") == cut - 300
    state = json.loads(json.dumps(p.snapshot(["EURCHF"])))
    del p  # the worker dies; another one restores the checkpoint
    q = pipeline()
    q.restore(state)
    rest, more_q, more_r = feed(q, stream[cut:], start=cut)
    got = (out + rest + q.flush(), quarantined + more_q + q.take_quarantined(), refused + more_r)
    assert got == want


@pytest.mark.parametrize("cut", [1_502, 1_503])
def test_snapshot_mid_hold_of_a_bad_print_restores_its_refs(cut: int) -> None:
    ticks = sample_ticks(3_000)
    stream = ticks[:1_501] + [bad_print(ticks[1_500], dt=k) for k in (1, 2)] + ticks[1_501:]
    want = run(stream)
    p = pipeline()
    out, quarantined, _ = feed(p, stream[:cut])
    state = json.loads(json.dumps(p.snapshot(["EURUSD"])))
    q = pipeline()
    q.restore(state)
    rest, more_q, _ = feed(q, stream[cut:], start=cut)
    assert (out + rest + q.flush(), quarantined + more_q + q.take_quarantined()) == want[:2]
    assert [x.ref["offset"] for x in want[1]] == [1_501, 1_502]


def test_a_tick_late_against_a_held_tick_is_late_as_without_the_guard() -> None:
    before, after = eurchf_2015_01_15()
    late = quote("EURCHF", after[0].ts_ms - 2_500, 0.8600, 0.0005)  # lateness is 2 s
    stream = before + after[:1] + [late] + after[1:]
    got = run(stream)
    assert got[2] == [(301, RejectReason.LATE)] and got[1] == []
    assert got[0] == no_guard(stream)


def test_idle_timer_does_not_move_the_clock_past_held_ticks() -> None:
    before, after = eurchf_2015_01_15()
    p = pipeline()
    out, _, _ = feed(p, before + after[:1])
    out += p.advance("EURCHF", after[0].ts_ms + 3_600_000)  # an hour of silence during the hold
    assert p.aggregator.last_event_ms("EURCHF") <= after[0].ts_ms  # as far as the bars it closed
    rest, quarantined, refused = feed(p, after[1:], start=301)
    out += rest + p.flush()
    assert (quarantined, refused) == ([], [])
    assert sorted(out, key=lambda c: (c.timeframe, c.open_ms)) == sorted(
        no_guard(before + after), key=lambda c: (c.timeframe, c.open_ms)
    )


def test_flush_quarantines_an_unconfirmed_hold() -> None:
    before, after = eurchf_2015_01_15()
    candles, quarantined, _ = run(before + after[:2])
    assert [q.tick for q in quarantined] == after[:2]
    assert {q.reason for q in quarantined} == {RejectReason.SPIKE_UNCONFIRMED}
    assert candles == no_guard(before)


def test_restore_of_an_older_snapshot_without_guard_state_starts_a_fresh_guard() -> None:
    ticks = sample_ticks(500)
    p = pipeline()
    feed(p, ticks[:300])
    state = p.snapshot(["EURUSD"])
    del state["spikes"]
    q = pipeline()
    q.restore(state)
    assert q.held_count("EURUSD") == 0
    rest, quarantined, refused = feed(q, ticks[300:])
    assert (quarantined, refused) == ([], [])


def test_restore_with_the_guard_turned_off_quarantines_the_held_ticks() -> None:
    before, after = eurchf_2015_01_15()
    p = pipeline()
    feed(p, before + after[:2])
    q = pipeline(spikes=SpikeConfig(enabled=False))
    q.restore(json.loads(json.dumps(p.snapshot(["EURCHF"]))))
    assert [(x.tick, x.ref["offset"]) for x in q.take_quarantined()] == [(after[0], 300), (after[1], 301)]


def test_drop_forgets_held_ticks_and_malformed_snapshots_are_config_errors() -> None:
    before, after = eurchf_2015_01_15()
    p = pipeline()
    feed(p, before + after[:2])
    state = p.snapshot(["EURCHF"])
    p.drop(["EURCHF"])
    assert p.held_count("EURCHF") == 0 and p.snapshot(["EURCHF"])["spikes"] == {}
    state["spikes"]["EURCHF"]["state"]["held"][0][1]["ts_ms"] = "soon"
    with pytest.raises(ConfigError):
        pipeline().restore(state)


def test_bundled_sample_holds_nothing_and_candles_equal_no_guard() -> None:
    ticks = sample_ticks(200_000)
    p = pipeline()
    candles, quarantined, refused = feed(p, ticks)
    candles += p.flush()
    assert (quarantined, refused, p.spike_counters.holds) == ([], [], 0)
    assert candles == no_guard(ticks)


@pytest.mark.shared_data
@pytest.mark.parametrize(
    "name",
    [
        "lean_fxcm_eurusd_ticks_2014-05-01_15.csv.gz",
        "lean_oanda_eurusd_ticks_2014-05-01_15.csv.gz",
        "truefx_usdjpy_ticks_2013-01-01_sample.csv.gz",
    ],
)
def test_real_tick_files_hold_nothing_with_the_defaults(name: str) -> None:
    path = require(name)
    frame = read_ticks(path).frame
    g: SpikeGuard[None] = SpikeGuard()
    jumps = 0
    for b, a in zip(frame.bid.tolist(), frame.ask.tolist(), strict=True):
        mid = (b + a) * 0.5
        if not (g.low <= mid <= g.high):
            jumps += 1  # would start a hold (none expected: the largest tick move is 0.22 %)
        g.accept(mid)
    assert jumps == 0
