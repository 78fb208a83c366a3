"""B9's genuine case on candles: EUR/CHF on 2015-01-15 (RELIABILITY.md), a break after which the
market keeps moving.

The candle guard held the SNB bar (1.2010 → 1.0284) and quarantined it when the next day
closed 2.4 % lower again: a jump from the old level and far from the held close was a "third
level". A bar that goes on away from the old level, on the held close's side, confirms the
break; a bad print is followed by a bar back near the old level, or on its other side, and
is still refused (closes approximate, found by an adversarial review).
"""

from __future__ import annotations

import math

import pytest

from forex_diffusion.domain import Candle
from forex_diffusion.ingest.candle_spikes import CandleSpikeGuard

DAY, HOUR = 86_400_000, 3_600_000


def _run(closes: list[float], step: int, t0: int, tf: str) -> tuple[list[float], list[float]]:
    g, got, lost = CandleSpikeGuard(), [], []
    for i, c in enumerate(closes):
        bar = Candle(
            symbol="EURCHF", timeframe=tf, open_ms=t0 + i * step, close_ms=t0 + (i + 1) * step,
            open=c, high=c, low=c, close=c,
        )  # fmt: skip
        got += [x.close for x in g.admit(bar, i)]
        lost += [q.candle.close for q in g.take_quarantined()]
    return got, lost


FLOOR_DAYS = [1.2010 + 0.0003 * math.sin(i) for i in range(22)]
FLOOR_HOURS = [1.2010 + 0.0001 * math.sin(i) for i in range(40)]


def test_the_snb_day_and_the_days_after_are_all_kept() -> None:
    after = [1.0284, 1.0040, 1.0050, 1.0030, 0.9990, 0.9780, 0.9850, 1.0020]
    got, lost = _run(FLOOR_DAYS + after, DAY, 1_418_601_600_000, "1d")
    assert lost == []  # before: [1.0284]
    assert got == FLOOR_DAYS + after


def test_the_hours_after_the_announcement_are_all_kept() -> None:
    after = [0.9800, 1.0000, 1.0300, 1.0400, 1.0200, 1.0350, 1.0400, 1.0300, 1.0280]
    got, lost = _run(FLOOR_HOURS + after, HOUR, 1_421_280_000_000 - 31 * HOUR, "1h")
    assert lost == []  # before: three genuine hourly bars
    assert got == FLOOR_HOURS + after


@pytest.mark.parametrize(
    ("bad", "next_close"),
    [(1.0284, 1.2011), (1.0284, 1.3500), (1.3500, 1.0284)],  # back near the floor; past it the other way
)
def test_a_bad_print_followed_by_a_bar_not_going_on_is_still_refused(bad: float, next_close: float) -> None:
    got, lost = _run([*FLOOR_DAYS, bad, next_close, 1.2012], DAY, 1_418_601_600_000, "1d")
    assert bad in lost and bad not in got


def test_a_fat_finger_then_an_ordinary_move_the_same_way_is_no_break() -> None:
    """A tenth of the price, then a bar 2 % down: the bad print is refused, the bar is judged
    on its own (held, then confirmed or refused by the next)."""
    got, lost = _run([*FLOOR_DAYS, 0.12010, 1.1770, 1.1760, 1.1765], DAY, 1_418_601_600_000, "1d")
    assert 0.12010 in lost and 0.12010 not in got
    assert got[-3:] == [1.1770, 1.1760, 1.1765]


@pytest.mark.parametrize(
    ("closes", "refused"),
    [
        ([0.6005, 0.12010, 1.2011], [0.6005, 0.12010]),  # half, then a tenth of the price: 3.3 times as far
        ([1.8015, 12.010, 1.2011], [1.8015, 12.010]),  # 1.5x, then 10x
        ([1.1770, 0.11770, 1.1765], [1.1770, 0.11770]),  # a real 2 % bar, then a decimal slip
        ([1.1770, 0.00001, 1.1765], [1.1770, 0.00001]),
        ([1.2490, 1.2262, 1.2264], [1.2490]),  # +4 % fat finger, then a real +2.1 % (half as far)
    ],
)
def test_a_bad_print_next_to_a_jump_much_nearer_or_farther_is_refused(
    closes: list[float], refused: list[float]
) -> None:
    """(Second adversarial review: the continuation rule had no upper bound and a lower bound of
    one half, and took every one of these into the series.)"""
    got, lost = _run([*FLOOR_DAYS, *closes], DAY, 1_418_601_600_000, "1d")
    assert all(r in lost and r not in got for r in refused), (got[len(FLOOR_DAYS) :], lost)
