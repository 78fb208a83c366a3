"""The bank's fused step gives bit for bit the values of its members fed one by one.

Once past the warm-up an :class:`IndicatorBank` runs one generated step (``fused.py``)
instead of every member's ``_push``; these tests pin that the switch changes no value, that
the members' own state is brought up to date before anything reads it (revise, snapshot,
pickle, ``indicators``), and that shared work (true range, an EMA used twice) stays exact.
"""

from __future__ import annotations

import json
import pickle
import random
from pathlib import Path
from typing import Any

import pytest

from forex_diffusion.domain import Candle
from forex_diffusion.indicators import IndicatorBank, build_indicator
from forex_diffusion.indicators.fused import part_of

from ...realdata import DATA, require

M1 = DATA / "lean_oanda_eurusd_m1_2014-05-01_15.csv.gz"
H1 = DATA / "lean_oanda_eurusd_h1_2007_2017.csv.gz"

SPECS = {
    "default": "default",
    # every class with a part, other parameters (resync periods, nested SMA offsets),
    # members without a part (max, min, rv) called inside the fused step
    "odd": "sma_7,ema_5,rsi_5,atr_3,bb_10_1.5,macd_5_35_5,donchian_5,keltner_10_1.5_5,stoch_14_3_3,"
    "adx_5,hurst_32,max_20,min_14,rv_20,ema_10",
    # an EMA shared by ema_20 and Keltner's middle line; one true range for four members;
    # degenerate periods
    "shared": "ema_20,keltner_20,atr_10,adx_2,stoch_5_1_1,sma_1,ema_1,atr_1,bb_2,stoch_1_2_1,donchian_1",
}


def _synthetic(n: int, seed: int) -> list[Candle]:
    """A random walk with flat stretches, repeated closes and zero-range bars (ties everywhere)."""
    rng = random.Random(seed)
    out, c = [], 1.3
    for i in range(n):
        if i % 97 < 30:  # flat: no variation at all (Hurst 0.5, stochastic HH == LL, TR 0)
            h = lo = c
        else:
            c = round(c + rng.choice([-2e-4, -1e-4, 0.0, 1e-4, 2e-4]), 5)
            h = round(c + rng.choice([0.0, 1e-4]), 5)
            lo = round(c - rng.choice([0.0, 1e-4]), 5)
        out.append(
            Candle(
                symbol="EURUSD",
                timeframe="1m",
                open_ms=i * 60_000,
                close_ms=(i + 1) * 60_000,
                open=c,
                high=h,
                low=lo,
                close=c,
            )
        )
    return out


def _real(path: Path, n: int) -> list[Candle]:
    require(path.name)  # a bundled file: absent, the test fails
    from forex_diffusion.ingest.readers import read_candles

    f = read_candles(path, price="bid").frame.iloc[:n]
    return [
        Candle(symbol="EURUSD", timeframe="x", open_ms=int(t), close_ms=int(t) + 1, open=o, high=h, low=lo, close=c)
        for t, o, h, lo, c in zip(f.ts_ms, f.open, f.high, f.low, f.close, strict=True)
    ]


@pytest.fixture(scope="module", params=["m1", "h1", "synthetic"])
def candles(request: pytest.FixtureRequest) -> list[Candle]:
    if request.param == "synthetic":
        return _synthetic(3000, 5)
    return _real(M1 if request.param == "m1" else H1, 3000)


def _flat(v: Any, width: int) -> list[float | None]:
    if v is None:
        return [None] * width
    if width == 1:
        return [v]
    return [getattr(v, f) for f in v.__dataclass_fields__]


def _members_one_by_one(bank: IndicatorBank, candles: list[Candle]) -> list[list[float | None]]:
    inds = [build_indicator(t) for t in bank.spec.indicators]
    return [[x for ind in inds for x in _flat(ind.update(c), len(ind.columns))] for c in candles]


def _is_fused(bank: IndicatorBank) -> bool:
    return bank._kernel is not None and bank._step_list is bank._kernel.step_list


@pytest.mark.parametrize("spec", sorted(SPECS))
def test_fused_bank_equals_members_fed_one_by_one(spec: str, candles: list[Candle]) -> None:
    bank = IndicatorBank(SPECS[spec])
    expected = _members_one_by_one(bank, candles)
    got = []
    for i, c in enumerate(candles):  # both entry points: dict (with redelivery check) and list
        got.append(list(bank.update(c).values()) if i % 2 else list(bank._update_list(c)))
    assert _is_fused(bank)
    assert got == expected  # exact, not approximate


def test_default_members_all_have_a_fused_part() -> None:
    bank = IndicatorBank()
    missing = [t for t in bank.spec.indicators if part_of(build_indicator(t), "x_") is None]
    assert not missing


@pytest.mark.parametrize("spec", sorted(SPECS))
def test_revise_snapshot_pickle_while_fused_continue_exactly(spec: str, candles: list[Candle]) -> None:
    rng = random.Random(9)
    plain = IndicatorBank(SPECS[spec])
    live = IndicatorBank(SPECS[spec])
    for i, c in enumerate(candles[:1200]):
        assert live.update(c) == plain.update(c)
        if i % 50 == 49:
            assert _is_fused(live) or i < 300
            x = c.close * (1 + rng.uniform(-1e-3, 1e-3))
            forming = Candle(
                symbol=c.symbol,
                timeframe=c.timeframe,
                open_ms=c.open_ms + 1,
                close_ms=c.close_ms + 1,
                open=c.close,
                high=max(c.close, x),
                low=min(c.close, x),
                close=x,
                final=False,
            )
            twin = IndicatorBank.restore(json.loads(json.dumps(live.snapshot())))
            assert live.revise(forming) == twin.update(forming)
            # a snapshot and a pickle taken now carry the fused state, and resume exactly
            live = pickle.loads(pickle.dumps(IndicatorBank.restore(live.snapshot())))
            assert live.values() == plain.committed_values()
    assert live.snapshot() == plain.snapshot()


def test_members_handed_out_are_up_to_date(candles: list[Candle]) -> None:
    bank = IndicatorBank()
    inds = [build_indicator(t) for t in bank.spec.indicators]
    for c in candles[:700]:
        bank.update(c)
        for ind in inds:
            ind.update(c)
    assert _is_fused(bank)
    assert [i.snapshot()["state"]["state"] for i in bank.indicators] == [i.snapshot()["state"]["state"] for i in inds]
    assert [i.count for i in bank.indicators] == [700] * len(inds)


def test_inconsistent_members_keep_the_bank_on_the_members_with_a_warning(
    candles: list[Candle], caplog: pytest.LogCaptureFixture
) -> None:
    # ATR and ADX share one previous close in the fused step; a snapshot whose two
    # previous closes disagree cannot be fused, so the bank must keep calling the members.
    from forex_diffusion.indicators import Indicator

    bank = IndicatorBank("atr_14,adx_14")
    for c in candles[:400]:
        bank.update(c)
    data = json.loads(json.dumps(bank.snapshot()))
    data["state"]["indicators"][0]["state"]["state"]["pc"] += 1e-4
    with caplog.at_level("WARNING", logger="forex_diffusion.indicators.bank"):
        odd = IndicatorBank.restore(data)
    assert "fused step disabled" in caplog.text and not _is_fused(odd)
    members = [Indicator.restore(d) for d in data["state"]["indicators"]]
    for c in candles[400:700]:
        expected = [m.update(c) for m in members]
        assert list(odd.update(c).values()) == expected
