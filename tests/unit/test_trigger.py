"""Retrain trigger policy: debounce, cooldown, de-duplication, purity; rates on real data."""

from __future__ import annotations

import json
from collections.abc import Sequence

import pytest

from forex_diffusion.domain import Candle
from forex_diffusion.drift import DriftEvent, DriftMonitor
from forex_diffusion.errors import ConfigError
from forex_diffusion.ingest.readers import read_candles
from forex_diffusion.online import OnlineLearnerSet
from forex_diffusion.quality.trigger import (
    RetrainRequest,
    TriggerPolicy,
    TriggerState,
    close_request,
    decide,
    request,
    request_id_for,
)

from ..online_features import BasicFeatures
from ..realdata import DATA, require

HOUR = 3_600_000
DAY = 24 * HOUR
H1_FILE = DATA / "lean_oanda_eurusd_h1_2007_2017.csv.gz"
# Stated in docs/drift.md: with the default policy (7-day cooldown) a series asks for at most
# this many retrains a year on real hourly EUR/USD (measured 0.45/yr over 2007-2017).
REQUESTS_PER_YEAR_BUDGET = 12.0

POLICY = TriggerPolicy(min_detectors=2, persistence=3, window_ms=DAY, cooldown_ms=7 * DAY, request_ttl_ms=3 * DAY)


def ev(detector: str, t: int, *, horizon: int | None = 1, symbol: str = "EURUSD") -> DriftEvent:
    return DriftEvent(
        detector=detector, statistic=1.0, threshold=0.5, symbol=symbol, timeframe="1h", horizon=horizon, ts_ms=t
    )


def test_single_detector_is_debounced_and_a_second_one_triggers() -> None:
    d1, s1 = decide([ev("adwin:error", 0)], TriggerState(), POLICY, now_ms=0)
    assert d1.request is None and d1.reason.startswith("debounce:")
    d2, s2 = decide([ev("page_hinkley:error", HOUR)], s1, POLICY, now_ms=HOUR)
    assert d2.request is not None and d2.reason.startswith("drift:")
    req = d2.request
    assert (req.symbol, req.timeframe, req.horizon, req.reason, req.requested_at_ms) == (
        "EURUSD",
        "1h",
        None,
        "drift",
        HOUR,
    )
    assert "adwin:error@1" in req.detail and "page_hinkley:error@1" in req.detail
    assert s2.open_requests["EURUSD/1h"] == (req.request_id, HOUR)


def test_events_older_than_the_window_do_not_count() -> None:
    _, s1 = decide([ev("adwin:error", 0)], TriggerState(), POLICY, now_ms=0)
    d, _ = decide([ev("page_hinkley:error", DAY + 1)], s1, POLICY, now_ms=DAY + 1)
    assert d.request is None and d.reason.startswith("debounce:")


def test_a_persistent_single_detector_triggers() -> None:
    state = TriggerState()
    decisions = []
    for k in range(3):
        d, state = decide([ev("coverage90", k * HOUR)], state, POLICY, now_ms=k * HOUR)
        decisions.append(d)
    assert [d.request is None for d in decisions] == [True, True, False]
    assert decisions[-1].reason.startswith("drift:") and "persistent" in decisions[-1].reason


def test_same_detector_on_two_horizons_counts_as_two_detectors() -> None:
    d, _ = decide([ev("adwin:error", 0, horizon=1), ev("adwin:error", 0, horizon=12)], TriggerState(), POLICY, now_ms=0)
    assert d.request is not None


def test_cooldown_blocks_a_second_request_of_the_series_then_expires() -> None:
    pol = TriggerPolicy(cooldown_ms=7 * DAY, request_ttl_ms=DAY)
    pair = [ev("adwin:error", 0), ev("page_hinkley:error", 0)]
    d1, s = decide(pair, TriggerState(), pol, now_ms=0)
    assert d1.request is not None
    s = close_request(s, d1.request.request_id)
    t = 3 * DAY
    d2, s = decide([ev("adwin:error", t), ev("page_hinkley:error", t)], s, pol, now_ms=t)
    assert d2.request is None and d2.reason.startswith("cooldown:")
    t = 7 * DAY + HOUR
    d3, _ = decide([ev("adwin:error", t), ev("coverage50", t)], s, pol, now_ms=t)
    assert d3.request is not None


def test_one_open_request_per_model_key_until_closed_or_expired() -> None:
    pol = TriggerPolicy(cooldown_ms=0, request_ttl_ms=2 * DAY)
    pair = [ev("adwin:error", 0), ev("page_hinkley:error", 0)]
    d1, s = decide(pair, TriggerState(), pol, now_ms=0)
    assert d1.request is not None
    d2, s = decide([ev("adwin:error", HOUR), ev("coverage90", HOUR)], s, pol, now_ms=HOUR)
    assert d2.request is None and d2.reason.startswith("duplicate:") and d1.request.request_id in d2.reason
    closed = close_request(s, d1.request.request_id)
    assert close_request(closed, "unknown-id") == closed
    d3, _ = decide([ev("adwin:error", 2 * HOUR), ev("coverage90", 2 * HOUR)], closed, pol, now_ms=2 * HOUR)
    assert d3.request is not None
    t = 2 * DAY + HOUR  # the first request was never closed: its job is presumed dead
    d4, _ = decide([ev("adwin:error", t), ev("coverage90", t)], s, pol, now_ms=t)
    assert d4.request is not None


def test_per_horizon_models_get_their_own_keys() -> None:
    pol = TriggerPolicy(per_horizon=True, cooldown_ms=0)
    d1, s = decide(
        [ev("adwin:error", 0, horizon=1), ev("page_hinkley:error", 0, horizon=1)], TriggerState(), pol, now_ms=0
    )
    assert d1.request is not None and d1.request.horizon == 1 and d1.request.key == "EURUSD/1h/1"
    d2, _ = decide(
        [ev("adwin:error", HOUR, horizon=12), ev("page_hinkley:error", HOUR, horizon=12)], s, pol, now_ms=HOUR
    )
    assert d2.request is not None and d2.request.key == "EURUSD/1h/12"


def test_decide_is_pure_and_deterministic() -> None:
    _, s1 = decide([ev("adwin:error", 0)], TriggerState(), POLICY, now_ms=0)
    before = json.dumps(s1.to_dict(), sort_keys=True)
    events = [ev("page_hinkley:error", HOUR)]
    a = decide(events, s1, POLICY, now_ms=HOUR)
    b = decide(events, TriggerState.from_dict(json.loads(before)), POLICY, now_ms=HOUR)
    assert json.dumps(s1.to_dict(), sort_keys=True) == before  # input state untouched
    assert a == b
    assert a[0].request is not None
    assert a[0].request.request_id == request_id_for("EURUSD", "1h", None, "drift", HOUR)


def test_events_of_two_series_in_one_call_are_refused() -> None:
    with pytest.raises(ConfigError):
        decide([ev("adwin:error", 0), ev("adwin:error", 0, symbol="GBPUSD")], TriggerState(), POLICY, 0)
    assert decide([], TriggerState(), POLICY, 0)[0].reason == "no events"


def test_manual_request_skips_debounce_and_cooldown_but_not_deduplication() -> None:
    d1, s = decide([ev("adwin:error", 0), ev("coverage90", 0)], TriggerState(), POLICY, now_ms=0)
    assert d1.request is not None
    d2, s2 = request(s, POLICY, symbol="EURUSD", timeframe="1h", now_ms=HOUR)
    assert d2.request is None and d2.reason.startswith("duplicate:")
    s = close_request(s, d1.request.request_id)
    d3, _ = request(s, POLICY, symbol="EURUSD", timeframe="1h", now_ms=HOUR, reason="schedule")
    assert d3.request is not None and d3.request.reason == "schedule"
    with pytest.raises(ConfigError):
        request(s, POLICY, symbol="EURUSD", timeframe="1h", now_ms=HOUR, reason="drift")


def test_request_and_state_round_trip_through_json() -> None:
    d, s = decide([ev("adwin:error", 0), ev("coverage90", 0)], TriggerState(), POLICY, now_ms=0)
    assert d.request is not None
    assert RetrainRequest.from_dict(json.loads(json.dumps(d.request.to_dict()))) == d.request
    assert TriggerState.from_dict(json.loads(json.dumps(s.to_dict()))) == s
    with pytest.raises(ConfigError):
        RetrainRequest.from_dict({**d.request.to_dict(), "priority": 1})
    with pytest.raises(ConfigError):
        RetrainRequest(request_id="x", symbol="EURUSD", timeframe="1h", horizon=None, reason="whim", requested_at_ms=0)  # type: ignore[arg-type]


@pytest.mark.parametrize("kwargs", [{"min_detectors": 0}, {"window_ms": 0}, {"cooldown_ms": -1}, {"max_events": 1}])
def test_bad_policy_is_refused(kwargs: dict[str, int]) -> None:
    with pytest.raises(ConfigError):
        TriggerPolicy(**kwargs)  # type: ignore[arg-type]


# -- real hourly EUR/USD ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_events() -> tuple[list[tuple[int, list[DriftEvent]]], float]:
    """Drift events of the learners + KS detectors over 2007-2009 hourly EUR/USD, and the years."""
    require(H1_FILE.name)  # a bundled file: absent, the test fails
    frame = read_candles(H1_FILE, symbol="EURUSD", price="mid").frame
    frame = frame[frame.ts_ms < 1262304000000]  # 2007-01-01 .. 2009-12-31
    learners = OnlineLearnerSet("EURUSD", "1h")
    monitor = DriftMonitor("EURUSD", "1h")
    feats = BasicFeatures()
    out: list[tuple[int, list[DriftEvent]]] = []
    for ts, c in zip(frame.ts_ms.tolist(), frame.close.tolist(), strict=True):
        candle = Candle(symbol="EURUSD", timeframe="1h", open_ms=ts, close_ms=ts + HOUR, open=c, high=c, low=c, close=c)
        f, vol = feats.update(c)
        events = monitor.update_learner(learners.step(candle, f, vol)) + monitor.update_features(f, ts + HOUR)
        if events:
            out.append((ts + HOUR, events))
    years = (frame.ts_ms.iloc[-1] - frame.ts_ms.iloc[0]) / (365.25 * DAY)
    return out, float(years)


def _requests(batches: Sequence[tuple[int, list[DriftEvent]]], policy: TriggerPolicy) -> list[RetrainRequest]:
    state, made = TriggerState(), []
    for now, events in batches:
        for rid, at in list(state.open_requests.values()):
            if now - at > DAY:  # the retrain job finished within a day
                state = close_request(state, rid)
        d, state = decide(events, state, policy, now)
        if d.request is not None:
            made.append(d.request)
    return made


def test_cooldown_keeps_real_eurusd_requests_within_a_retrain_budget(
    real_events: tuple[list[tuple[int, list[DriftEvent]]], float],
) -> None:
    batches, years = real_events
    n_events = sum(len(e) for _, e in batches)
    with_policy = _requests(batches, POLICY)
    without_cooldown = _requests(batches, TriggerPolicy(cooldown_ms=0, request_ttl_ms=DAY))
    every_event = _requests(batches, TriggerPolicy(min_detectors=1, cooldown_ms=0, request_ttl_ms=DAY))
    assert n_events > 0
    assert len(with_policy) / years <= REQUESTS_PER_YEAR_BUDGET
    gaps = [b.requested_at_ms - a.requested_at_ms for a, b in zip(with_policy, with_policy[1:], strict=False)]
    assert all(g >= POLICY.cooldown_ms for g in gaps)
    assert len(with_policy) <= len(without_cooldown) <= len(every_event) <= n_events
    assert len(every_event) > len(with_policy)  # the policy does hold requests back
