"""B21 weekend policy: the FX weekly closure, and ticks inside it accepted-and-counted or refused."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from forex_diffusion.domain import Tick
from forex_diffusion.errors import ConfigError, RejectReason, ValidationError
from forex_diffusion.ingest.pipeline import TickPipeline
from forex_diffusion.ingest.readers import read_ticks
from forex_diffusion.ingest.validation import TickValidator, ValidationConfig
from forex_diffusion.instruments import InstrumentRegistry
from forex_diffusion.market_hours import MarketHours, is_off_hours

from ..realdata import require


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


@pytest.mark.parametrize(
    "when,closed",
    [
        ("2014-05-09 21:59:59.999", False),  # Friday, before the default close
        ("2014-05-09 22:00:00.000", True),
        ("2014-05-10 12:00:00.000", True),  # Saturday
        ("2014-05-11 20:59:59.999", True),  # Sunday, before the default open
        ("2014-05-11 21:00:00.000", False),
        ("2014-05-12 03:00:00.000", False),  # Monday
        ("2015-01-15 09:30:00.000", False),  # Thursday
    ],
)
def test_default_closure_is_friday_22_to_sunday_21_utc(when: str, closed: bool) -> None:
    assert is_off_hours(ms(when)) is closed
    assert MarketHours().is_closed(ms(when)) is closed


def test_closure_is_configurable_and_may_wrap_the_week() -> None:
    summer = MarketHours(closes="Fri 21:00", opens="Sun 21:00")  # the 17:00 New York close in EDT
    assert summer.is_closed(ms("2014-05-09 21:30")) and not is_off_hours(ms("2014-05-09 21:30"))
    wrap = MarketHours(closes="Sun 23:00", opens="Mon 01:00")  # across the Monday 00:00 week start
    assert [
        wrap.is_closed(ms(t)) for t in ("2014-05-11 22:59", "2014-05-11 23:00", "2014-05-12 00:30", "2014-05-12 01:00")
    ] == [False, True, True, False]


@pytest.mark.parametrize(
    "kw",
    [
        {"closes": "Friday 22:00"},
        {"closes": "Fri 25:00"},
        {"opens": "Sun"},
        {"opens": "Xyz 21:00"},
        {"closes": "Sun 21:00"},
    ],
)
def test_bad_hours_are_config_errors(kw: dict[str, str]) -> None:
    with pytest.raises(ConfigError):
        MarketHours(**kw)


def test_policy_must_be_accept_or_reject() -> None:
    with pytest.raises(ConfigError):
        ValidationConfig(off_hours="drop")  # type: ignore[arg-type]
    assert ValidationConfig().off_hours == "accept"


SATURDAY = ms("2014-05-10 12:00")


def test_reject_policy_refuses_weekend_ticks_with_off_hours() -> None:
    v = TickValidator(ValidationConfig(off_hours="reject"))
    assert v.check("EURUSD", SATURDAY, 1.38727, 1.38729) is RejectReason.OFF_HOURS
    assert v.check("EURUSD", ms("2014-05-12 03:00"), 1.38727, 1.38729) is None
    assert v.counters.rejected == {"off_hours": 1} and v.counters.off_hours == 0
    p = TickPipeline(
        timeframes=["1m"], instruments=InstrumentRegistry(), validation=ValidationConfig(off_hours="reject")
    )
    with pytest.raises(ValidationError) as ei:
        p.process(Tick(symbol="EURUSD", ts_ms=SATURDAY, bid=1.38727, ask=1.38729))
    assert ei.value.reason is RejectReason.OFF_HOURS and p.aggregator.symbols == ()


def test_reject_policy_refuses_before_the_tick_id_is_remembered() -> None:
    v = TickValidator(ValidationConfig(off_hours="reject"))
    for _ in range(2):  # a redelivery gets the same reason, not "duplicate"
        assert v.check("EURUSD", SATURDAY, 1.1, 1.1001, tick_id="x") is RejectReason.OFF_HOURS


def test_accept_policy_keeps_weekend_ticks_and_counts_them() -> None:
    p = TickPipeline(timeframes=["1m"], instruments=InstrumentRegistry())
    out = []
    for i in range(4):
        out += p.process(Tick(symbol="EURUSD", ts_ms=SATURDAY + i * 1_000, bid=1.38727, ask=1.38729))
    # Monday 03:00 is 6 h of open market after the weekend ticks: a time jump, held until the
    # ticks after it confirm the new time (the event-time guard), then the candle is whole
    for i in range(4):
        out += p.process(Tick(symbol="EURUSD", ts_ms=ms("2014-05-12 03:00") + i * 1_000, bid=1.38727, ask=1.38729))
    assert p.off_hours == 4 and p.validator.counters.accepted == 8
    assert p.validator.counters.rejected == {}
    assert [c.tick_count for c in out + p.flush()] == [4, 4]
    assert p.validator.is_off_hours(SATURDAY) and p.market_hours == MarketHours()


def test_counted_only_when_accepted() -> None:
    v = TickValidator()
    assert v.check("EURUSD", SATURDAY, float("nan"), 1.1) is RejectReason.NON_FINITE
    assert v.counters.off_hours == 0


@pytest.mark.shared_data
@pytest.mark.parametrize(
    "name,off",
    [
        ("lean_fxcm_eurusd_ticks_2014-05-01_15.csv.gz", 1_023),  # FXCM quotes from Sunday 19:00 UTC
        ("lean_oanda_eurusd_ticks_2014-05-01_15.csv.gz", 0),
        ("truefx_usdjpy_ticks_2013-01-01_sample.csv.gz", 0),
    ],
)
def test_real_feeds_inside_the_default_closure(name: str, off: int) -> None:
    """Measured: what the default window flags on real files (accepted by the default policy)."""
    path = require(name)
    ts = read_ticks(path).frame.ts_ms.tolist()
    assert sum(map(is_off_hours, ts)) == off


def test_open_span_is_the_open_period_holding_the_tick() -> None:
    h = MarketHours()
    assert h.open_span(ms("2014-05-07 12:00")) == (ms("2014-05-04 21:00"), ms("2014-05-09 22:00"))
    with pytest.raises(ValueError):
        h.open_span(SATURDAY)


@pytest.mark.parametrize("policy", ["accept", "reject"])
def test_validator_verdicts_equal_the_pure_function_in_any_tick_order(policy: str) -> None:
    """The validator caches the open period of the last tick: out-of-order ticks, weekends and
    far jumps in time must still get exactly ``is_off_hours``."""
    import random

    rng = random.Random(7)
    base = ms("2014-05-09 20:00")
    ts = [base + rng.randrange(0, 3 * 86_400_000) for _ in range(3_000)]
    ts += [
        ms("2014-05-16 21:59:59.999"),
        ms("2014-05-16 22:00"),
        ms("2014-05-07 12:00"),
        ms("2014-05-18 20:59:59.999"),
        ms("2014-05-18 21:00"),
    ]
    v = TickValidator(ValidationConfig(off_hours=policy))  # type: ignore[arg-type]
    got = [v.check("EURUSD", t, 1.38727, 1.38729) for t in ts]
    off = [is_off_hours(t) for t in ts]
    if policy == "reject":
        assert got == [RejectReason.OFF_HOURS if o else None for o in off]
    else:
        assert got == [None] * len(ts) and v.counters.off_hours == sum(off)
    assert 0 < sum(off) < len(ts)
