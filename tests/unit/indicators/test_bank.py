"""IndicatorBank on real EURUSD minutes: revise vs update, redelivery, snapshot/restore."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from forex_diffusion.domain import Candle
from forex_diffusion.errors import ConfigError
from forex_diffusion.indicators import BankSpec, IndicatorBank, compute_indicators

from ...realdata import DATA, require

M1 = DATA / "lean_oanda_eurusd_m1_2014-05-01_15.csv.gz"


@pytest.fixture(scope="module")
def candles() -> list[Candle]:
    require(M1.name)  # a bundled file: absent, the test fails
    from forex_diffusion.ingest.readers import read_candles

    f = read_candles(M1, price="mid").frame.iloc[:1500]
    return [
        Candle(
            symbol="EURUSD", timeframe="1m", open_ms=int(t), close_ms=int(t) + 60_000, open=o, high=h, low=lo, close=c
        )
        for t, o, h, lo, c in zip(f.ts_ms, f.open, f.high, f.low, f.close, strict=True)
    ]


def test_forming_revisions_then_close_equal_plain_updates(candles: list[Candle]) -> None:
    rng = random.Random(3)
    plain = IndicatorBank()
    live = IndicatorBank()
    for c in candles:
        for _ in range(rng.randrange(0, 3)):
            x = c.close * (1 + rng.uniform(-1e-3, 1e-3))
            forming = Candle(
                symbol=c.symbol,
                timeframe=c.timeframe,
                open_ms=c.open_ms,
                close_ms=c.close_ms,
                open=c.open,
                high=max(c.high, x),
                low=min(c.low, x),
                close=x,
                final=False,
            )
            twin = IndicatorBank.restore(live.snapshot())
            assert live.revise(forming) == twin.update(forming)
            assert live.values() == twin.values()
        assert live.update(c) == plain.update(c)
    assert plain.is_ready and all(v is not None for v in plain.values().values())


def test_redelivered_candle_is_ignored(candles: list[Candle]) -> None:
    bank = IndicatorBank("sma_5,atr_3")
    for c in candles[:50]:
        bank.update(c)
    before = bank.snapshot()
    assert bank.update(candles[40]) == bank.values() and bank.duplicates == 1
    assert bank.revise(candles[49]) == bank.committed_values()
    assert bank.snapshot()["state"]["indicators"] == before["state"]["indicators"]


def test_snapshot_is_json_and_resumes_exactly(candles: list[Candle]) -> None:
    straight = IndicatorBank()
    outs = [straight.update(c) for c in candles]
    bank = IndicatorBank()
    for c in candles[:700]:
        bank.update(c)
    resumed = IndicatorBank.restore(json.loads(json.dumps(bank.snapshot())))
    assert resumed.count == 700 and resumed.values() == outs[699]
    assert [resumed.update(c) for c in candles[700:]] == outs[700:]


def test_compute_indicators_equals_bank_updates(candles: list[Candle]) -> None:
    import pandas as pd

    frame = pd.DataFrame(
        {
            "ts_ms": [c.open_ms for c in candles],
            "symbol": "EURUSD",
            "high": [c.high for c in candles],
            "low": [c.low for c in candles],
            "close": [c.close for c in candles],
        }
    )
    out = compute_indicators(frame)
    bank = IndicatorBank()
    rows = [bank.update(c) for c in candles]
    for col in bank.columns:
        expected = np.array([np.nan if r[col] is None else r[col] for r in rows])
        np.testing.assert_array_equal(out[col].to_numpy(), expected)


def test_spec_validation() -> None:
    assert BankSpec.parse("bb_20, sma_5").indicators == ("bb_20_2", "sma_5")
    with pytest.raises(ConfigError):
        BankSpec.parse("sma_20,sma_20")
    with pytest.raises(ConfigError):
        BankSpec.parse("sma_x")
    with pytest.raises(ConfigError):
        BankSpec.from_dict({"indicators": ["sma_5"], "extra": 1})
    with pytest.raises(ConfigError):
        IndicatorBank.restore({"type": "IndicatorBank", "version": 99})
