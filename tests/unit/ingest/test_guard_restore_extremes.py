"""Restored guard states at the edges of their bounds, and closes at the edges of floats
(a final hostile review). A restored ``last_good`` of 1e-300 made the next price's threshold
``exp`` overflow on every candle (each dead-lettered ``internal``, the series stuck); a held
level that is not its candle's close was restored and turned sigma to NaN; closes of 5e-324
beside 1e9 raised from a log of an underflowed ratio; a stored row of a symbol no registry
knows was read with no price bound at all."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from forex_diffusion.domain import Candle
from forex_diffusion.errors import StateError
from forex_diffusion.ingest.candle_guards import CandleGuards
from forex_diffusion.ingest.candle_spikes import CandleSpikeGuard
from forex_diffusion.ingest.spikes import SpikeGuard
from forex_diffusion.storage.repository import price_span

H = 3_600_000
T0 = 400_000 * H


def _bar(i: int, close: float) -> Candle:
    return Candle(
        symbol="EURUSD", timeframe="1h", open_ms=T0 + i * H, close_ms=T0 + (i + 1) * H,
        open=close, high=close, low=close, close=close,
    )  # fmt: skip


def test_a_tick_guard_restored_at_a_tiny_last_good_accepts_the_next_price() -> None:
    g: SpikeGuard[Any] = SpikeGuard()
    g.restore({"n": 3, "last_good": 1e-290, "sigma": 0.0, "held": []}, lambda x: x)
    g.accept(1.1)  # before: OverflowError (exp of k * sigma)
    assert math.isfinite(g.threshold) and math.isfinite(g.sigma)


@pytest.mark.parametrize("last_good", [1e-300, 5e-324])
def test_a_last_good_no_price_ratio_stays_finite_from_is_refused(last_good: float) -> None:
    with pytest.raises(StateError):
        SpikeGuard().restore({"n": 3, "last_good": last_good, "sigma": 0.0, "held": []}, lambda x: x)


def _holding() -> dict[str, Any]:
    g = CandleSpikeGuard()
    for i in range(30):
        g.admit(_bar(i, 1.1 + 1e-4 * (i % 2)))
    assert g.admit(_bar(30, 2.0)) == []  # held
    snap: dict[str, Any] = json.loads(json.dumps(g.snapshot("EURUSD")))
    return snap


def test_a_held_level_that_is_not_its_candles_close_is_dropped() -> None:
    snap = _holding()
    snap["state"]["1h"]["state"]["held"][0][0] = 1e-250
    guards = CandleGuards()
    dropped = guards.restore("EURUSD", {"spikes": {"EURUSD": snap}}, last_open={"1h": T0 + 29 * H}, now_ms=2**42)
    assert [name for name, _ in dropped] == ["spikes"]
    snap = _holding()  # the same state as written restores
    assert guards.restore("EURUSD", {"spikes": {"EURUSD": snap}}, last_open={"1h": T0 + 29 * H}, now_ms=2**42) == []


def test_a_state_that_is_no_mapping_is_dropped_part_by_part() -> None:
    dropped = CandleGuards().restore("EURUSD", [1, 2], last_open={}, now_ms=0)  # type: ignore[arg-type]
    assert [name for name, _ in dropped] == ["gate", "spikes"]


@pytest.mark.parametrize("closes", [[1e9] * 21 + [1e-300, 5e-324], [1e9, 5e-324], [1.1, 1e-150, 1e-160]])
def test_closes_at_the_edges_of_floats_are_judged_without_an_exception(closes: list[float]) -> None:
    g = CandleSpikeGuard()
    for i, c in enumerate(closes):
        g.admit(_bar(i, c))
        g.take_quarantined()


def test_a_symbol_no_registry_knows_has_the_readers_default_range() -> None:
    assert price_span("ZZZQQQ") == pytest.approx((1e-5, 1e7))


def test_a_restored_hold_longer_than_the_config_allows_is_refused_before_it_is_decoded() -> None:
    """A state holding 200,000 held items was decoded item by item (each a tick rebuilt) before
    its length was compared with what the config allows: refused now before the first."""
    from forex_diffusion.ingest.time_jumps import TimeJumpGuard

    decoded: list[Any] = []

    def decode(x: Any) -> Any:
        decoded.append(x)
        return x

    spikes: SpikeGuard[Any] = SpikeGuard()
    with pytest.raises(StateError, match="more ticks than confirm allows"):
        spikes.restore({"n": 3, "last_good": 1.1, "sigma": 0.0, "held": [[1.2, {}]] * 200_000}, decode)
    times: TimeJumpGuard[Any] = TimeJumpGuard()
    with pytest.raises(StateError, match="more ticks than its config allows"):
        times.restore({"top": T0, "held": [[T0 + H, {}]] * 200_000}, decode)
    with pytest.raises(StateError, match="more ticks than its config allows"):  # no top: the start's own limit
        times.restore({"top": None, "held": [[T0 + H, {}]] * 200_000}, decode)
    assert decoded == []
