"""Every reason code of the tick validator (RELIABILITY.md §3) and the accepted quirks."""

from __future__ import annotations

import pytest

from forex_diffusion.domain import Tick
from forex_diffusion.errors import ConfigError, RejectReason, ValidationError
from forex_diffusion.ingest.readers import read_ticks
from forex_diffusion.ingest.validation import TickValidator, ValidationConfig
from forex_diffusion.instruments import InstrumentRegistry

from ..realdata import DATA, require

T0 = 1_399_000_000_000
NOW = T0 + 1_000


def check(**kw: object) -> RejectReason | None:
    args = {"symbol": "EURUSD", "ts_ms": T0, "bid": 1.38727, "ask": 1.38729}
    args.update(kw)
    return TickValidator().check(
        args.pop("symbol"), args.pop("ts_ms"), args.pop("bid"), args.pop("ask"), now_ms=NOW, **args
    )  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kw,reason",
    [
        ({"bid": float("nan")}, RejectReason.NON_FINITE),
        ({"ask": float("inf")}, RejectReason.NON_FINITE),
        ({"bid": float("-inf")}, RejectReason.NON_FINITE),
        ({"bid": 0.0}, RejectReason.NON_POSITIVE),
        ({"bid": -1.38}, RejectReason.NON_POSITIVE),
        ({"bid": 1.3900, "ask": 1.3800}, RejectReason.CROSSED),  # 100 pips crossed
        ({"bid": 1.30000, "ask": 1.40000}, RejectReason.WIDE_SPREAD),
        ({"bid": 1.387271}, RejectReason.PRECISION),  # a sixth decimal on a 5-digit quote
        ({"symbol": "XAUEUR"}, RejectReason.UNKNOWN_SYMBOL),
        ({"ts_ms": T0 // 1000}, RejectReason.BAD_TS),  # seconds sent as milliseconds
        ({"ts_ms": T0 * 1000}, RejectReason.BAD_TS),  # microseconds
        ({"ts_ms": -5}, RejectReason.BAD_TS),
        ({"ts_ms": float(T0)}, RejectReason.BAD_TS),
        ({"ts_ms": NOW + 60_000}, RejectReason.FUTURE_TS),
    ],
)
def test_each_bad_quote_gets_its_reason(kw: dict[str, object], reason: RejectReason) -> None:
    assert check(**kw) is reason


def test_good_quote_passes() -> None:
    assert check() is None


def test_duplicate_tick_id_is_refused_once_seen_and_window_is_bounded() -> None:
    v = TickValidator(ValidationConfig(dedup_window=2))
    assert v.check("EURUSD", T0, 1.1, 1.1001, tick_id="a") is None
    assert v.check("EURUSD", T0, 1.1, 1.1001, tick_id="a") is RejectReason.DUPLICATE
    assert v.check("EURUSD", T0, 1.1, 1.1001, tick_id="b") is None
    assert v.check("EURUSD", T0, 1.1, 1.1001, tick_id="c") is None
    assert v.check("EURUSD", T0, 1.1, 1.1001, tick_id="a") is None  # evicted: bounded memory
    assert v.counters.rejected == {"duplicate": 1}


def test_ids_past_the_window_are_kept_while_their_copy_would_not_be_late_up_to_the_cap() -> None:
    """D12: with ``late_before_ms`` (the aggregator's watermark) an id is forgotten past the
    window only once a copy would be refused late; a denser burst is held up to the cap."""
    v = TickValidator(ValidationConfig(dedup_window=2, dedup_cap_factor=3))
    for i, tid in enumerate("abcd"):  # 4 ids within the lateness: all kept
        assert v.check("EURUSD", T0 + i, 1.1, 1.1001, tick_id=tid, late_before_ms=T0 - 2_000) is None
    assert v.check("EURUSD", T0 + 9, 1.1, 1.1001, tick_id="a", late_before_ms=T0 - 2_000) is RejectReason.DUPLICATE
    for tid in "efgh":  # the cap (2 x 3 = 6 ids) bounds memory even inside the lateness
        assert v.check("EURUSD", T0 + 5, 1.1, 1.1001, tick_id=tid, late_before_ms=T0 - 2_000) is None
    assert list(v.snapshot()["state"]["EURUSD"]["ids"]) == list("cdefgh")
    # the watermark passes T0 + 4: the ids of c and d (T0 + 2, T0 + 3) go, those at T0 + 5 stay
    assert v.check("EURUSD", T0 + 3_000, 1.1, 1.1001, tick_id="i", late_before_ms=T0 + 4) is None
    assert list(v.snapshot()["state"]["EURUSD"]["ids"]) == list("efghi")
    assert v.check("EURUSD", T0 + 3_000, 1.1, 1.1001, tick_id="e", late_before_ms=T0 + 4) is RejectReason.DUPLICATE
    # past T0 + 5 every older id may go: back down to the window
    assert v.check("EURUSD", T0 + 3_001, 1.1, 1.1001, tick_id="j", late_before_ms=T0 + 6) is None
    assert list(v.snapshot()["state"]["EURUSD"]["ids"]) == list("ij")


def test_tick_id_snapshot_keeps_event_times_and_reads_the_older_list_form() -> None:
    v = TickValidator(ValidationConfig(dedup_window=2))
    for i, tid in enumerate("abc"):
        v.check("EURUSD", T0 + i, 1.1, 1.1001, tick_id=tid, late_before_ms=T0 - 1)
    snap = v.snapshot()
    assert snap == {"kind": "tick_ids", "v": 1, "state": {"EURUSD": {"ids": ["a", "b", "c"], "dts": [T0, 1, 1]}}}
    w = TickValidator(ValidationConfig(dedup_window=2))
    w.restore(snap)
    assert w.check("EURUSD", T0 + 5, 1.1, 1.1001, tick_id="a", late_before_ms=T0 - 1) is RejectReason.DUPLICATE
    old = TickValidator(ValidationConfig(dedup_window=2))
    old.restore({"EURUSD": ["a", "b"]})  # before D12: ids only, times unknown -> forgettable by count
    assert old.check("EURUSD", T0, 1.1, 1.1001, tick_id="b", late_before_ms=T0 - 1) is RejectReason.DUPLICATE
    assert old.check("EURUSD", T0, 1.1, 1.1001, tick_id="c", late_before_ms=T0 - 1) is None
    assert old.snapshot()["state"]["EURUSD"]["ids"] == ["b", "c"]
    with pytest.raises(ValueError):
        old.restore({"EURUSD": {"ids": ["a"], "dts": []}})


def test_same_timestamp_different_prices_without_ids_are_both_accepted() -> None:
    v = TickValidator()
    assert v.check("EURUSD", T0, 1.1, 1.1001) is None
    assert v.check("EURUSD", T0, 1.1002, 1.1003) is None


def test_locked_and_slightly_crossed_quotes_are_accepted_and_counted() -> None:
    v = TickValidator()
    assert v.check("EURUSD", T0, 1.38727, 1.38727) is None
    assert v.check("EURUSD", T0, 1.38729, 1.38727) is None  # crossed by 0.2 pip
    assert (v.counters.locked, v.counters.crossed_accepted) == (1, 1)


def test_crossed_tolerance_is_configurable() -> None:
    v = TickValidator(ValidationConfig(crossed_tolerance=0.0))
    assert v.check("EURUSD", T0, 1.38729, 1.38727) is RejectReason.CROSSED


def test_jpy_quotes_use_their_own_precision() -> None:
    v = TickValidator()
    assert v.check("USDJPY", T0, 86.655, 86.728) is None
    assert v.check("USDJPY", T0, 86.6551, 86.728) is RejectReason.PRECISION


def test_validate_normalises_aliases_and_raises_with_reason() -> None:
    v = TickValidator()
    t = v.validate(Tick(symbol="EUR/USD", ts_ms=T0, bid=1.1, ask=1.1001))
    assert t.symbol == "EURUSD"
    with pytest.raises(ValidationError) as ei:
        v.validate(Tick(symbol="EUR-USDX", ts_ms=T0, bid=1.1, ask=1.1001))
    assert ei.value.reason is RejectReason.UNKNOWN_SYMBOL


def test_alias_map_is_explicit() -> None:
    reg = InstrumentRegistry()
    assert {reg.normalise(s) for s in ("EURUSD", "eurusd", "EUR/USD", "eur_usd", "EUR-USD")} == {"EURUSD"}
    assert reg.normalise("EURO/USD") is None and reg.normalise("E U R U S D") is None


@pytest.mark.parametrize(
    "kw",
    [{"crossed_tolerance": -1}, {"max_spread_fraction": 0}, {"dedup_window": -1}, {"min_ts_ms": 10, "max_ts_ms": 5}],
)
def test_config_rejects_bad_values(kw: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        ValidationConfig(**kw)  # type: ignore[arg-type]


def test_config_rejects_unknown_keys() -> None:
    with pytest.raises(TypeError):
        ValidationConfig(tolerance=1)  # type: ignore[call-arg]


def test_real_fxcm_feed_flows_with_default_tolerance() -> None:
    """About 10 % of FXCM EUR/USD ticks are crossed by up to 2.2 pips: accepted, counted."""

    path = DATA / "lean_fxcm_eurusd_ticks_2014-05-01_15.csv.gz"
    require(path.name)  # a bundled file: absent, the test fails
    frame = read_ticks(path).frame
    v = TickValidator()
    reasons = [
        v.check("EURUSD", t, b, a)
        for t, b, a in zip(frame.ts_ms.tolist(), frame.bid.tolist(), frame.ask.tolist(), strict=True)
    ]
    assert all(r is None for r in reasons)
    assert v.counters.crossed_accepted == 116_871  # the data README's count
    assert 0.09 < v.counters.crossed_accepted / len(frame) < 0.11


@pytest.mark.parametrize(
    "kw,reason",
    [
        ({"bid": 1e304, "ask": 1e304}, RejectReason.OUT_OF_RANGE),  # was an OverflowError in _on_grid
        ({"bid": 1.7976931348623157e308, "ask": 1.7976931348623157e308}, RejectReason.OUT_OF_RANGE),
        ({"ask": 1e308}, RejectReason.OUT_OF_RANGE),
        ({"bid": 1e-308, "ask": 1e-308}, RejectReason.OUT_OF_RANGE),
        ({"bid": 5e-324, "ask": 5e-324}, RejectReason.OUT_OF_RANGE),
        ({"bid": 14.0, "ask": 14.0001}, None),  # within 10x EUR/USD's traded range: the spike guard's job
        ({"bid": 17.0, "ask": 17.0001}, RejectReason.OUT_OF_RANGE),
        ({"bid": -0.0}, RejectReason.NON_POSITIVE),
        ({"volume": 1e308}, RejectReason.OUT_OF_RANGE),  # two of them summed to inf at flush
        ({"volume": 1e16}, RejectReason.OUT_OF_RANGE),
        ({"volume": -1.0}, RejectReason.OUT_OF_RANGE),
        ({"volume": 5e-324}, RejectReason.OUT_OF_RANGE),
        ({"volume": float("nan")}, RejectReason.NON_FINITE),
        ({"volume": float("-inf")}, RejectReason.NON_FINITE),
        ({"volume": 0.0}, None),
        ({"volume": -0.0}, None),
        ({"volume": 1e15}, None),
        ({"volume": 0.75}, None),
    ],
)
def test_extremes_are_refused_on_arrival(kw: dict[str, object], reason: RejectReason | None) -> None:
    assert check(**kw) is reason


def test_usdjpy_range_is_its_own_and_unknown_symbols_get_a_wide_one() -> None:
    v = TickValidator()
    assert v.check("USDJPY", T0, 86.655, 86.728) is None
    assert v.check("USDJPY", T0, 1.387, 1.388) is RejectReason.OUT_OF_RANGE  # below 75 / 10
    reg = InstrumentRegistry().with_symbol("XAUUSD")
    w = TickValidator(ValidationConfig(check_precision=False), reg)
    assert w.check("XAUUSD", T0, 2350.10, 2350.50) is None
    assert w.check("XAUUSD", T0, 1e8, 1e8) is RejectReason.OUT_OF_RANGE
    with pytest.raises(ConfigError):
        ValidationConfig(max_volume=float("inf"))
    with pytest.raises(ConfigError):
        ValidationConfig(price_range_factor=0.5)
