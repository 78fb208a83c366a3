"""IndicatorBank on real EURUSD minutes: revise vs update, redelivery, snapshot/restore."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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


# -- the parameter bound, in the core (it was only in `forexd indicators --spec`) ----------------

PERIODIC = [
    "sma",
    "ema",
    "rsi",
    "atr",
    "bb",
    "max",
    "min",
    "donchian",
    "keltner",
    "stoch",
    "adx",
    "rv",
    "hurst",
    "macd",
]


@pytest.mark.parametrize("name", PERIODIC)
def test_a_period_past_the_bound_is_refused_naming_the_token_and_the_limit(name: str) -> None:
    """``BankSpec.parse("hurst_10000000000")`` tried to allocate 74.5 GiB and ``sma_`` past
    2**63 ended in ``OverflowError``, through every entry point but the command's ``--spec``."""
    from forex_diffusion.indicators.base import PARAMETER_MAX

    for value in (PARAMETER_MAX + 1, 10**30):
        token = f"{name}_{value}"
        with pytest.raises(
            ConfigError, match=rf"indicator spec '{token}': \w+ may be at most {PARAMETER_MAX}, not {value}$"
        ):
            BankSpec.parse(f"sma_5,{token}")
    at = f"macd_12_{PARAMETER_MAX}" if name == "macd" else f"{name}_{PARAMETER_MAX}"  # macd: fast < slow
    assert BankSpec.parse(at).indicators[0].startswith(at)


@pytest.mark.parametrize(
    ("token", "says"),
    [
        ("keltner_20_2_100001", "atr_period may be at most 100000"),
        ("macd_12_100001_9", "slow may be at most 100000"),
        ("stoch_14_3_100001", "smooth_k may be at most 100000"),
        ("bb_20_100001", "k may be at most 100000"),  # a multiplier: the command refused it too
        ("bb_20_1e400", "k may be at most 100000"),  # inf
        ("bb_20_nan", "bad value 'nan' for k"),
        ("bb_20_inf", "bad value 'inf' for k"),
        ("sma_١٢", "bad value '١٢' for period"),  # int() reads it as 12
        ("sma_１２", "bad value '１２' for period"),
        ("sma_1e3", "bad value '1e3' for period"),
        ("sma_" + "9" * 5000, "bad value '9999"),  # int() refuses 4,300 digits with its own ValueError
        ("sma_0", "period must be an integer >= 1, got 0"),
    ],
)
def test_spec_parameters_are_ascii_numbers_within_bounds(token: str, says: str) -> None:
    with pytest.raises(ConfigError, match=f"^indicator spec '{token[:20]}") as exc:
        BankSpec.parse(token)
    assert says in str(exc.value) and len(str(exc.value)) < 300


def test_constructors_and_snapshots_are_held_to_the_bound_too() -> None:
    from forex_diffusion.errors import StateError
    from forex_diffusion.indicators import SMA, Hurst

    with pytest.raises(ConfigError, match="period may be at most 100000, not 100001"):
        SMA(100_001)
    with pytest.raises(ConfigError, match="at most 100000"):
        Hurst(10**10)  # before allocating its window
    snap = json.loads(json.dumps(IndicatorBank("hurst_10").snapshot()).replace("hurst_10", "hurst_10000000000"))
    with pytest.raises(StateError, match="at most 100000"):
        IndicatorBank.restore(snap)


def test_a_bank_holds_at_most_indicators_max_indicators() -> None:
    """5,000 tokens took 14 s to build (the fused step's source grows with each)."""
    from forex_diffusion.indicators.bank import INDICATORS_MAX

    assert len(BankSpec.parse(",".join(f"sma_{i}" for i in range(1, INDICATORS_MAX + 1))).indicators) == INDICATORS_MAX
    with pytest.raises(ConfigError, match=f"at most {INDICATORS_MAX} indicators, not 5,000"):
        BankSpec.parse(",".join(f"sma_{i}" for i in range(1, 5001)))


_TOKEN_PARAMS = st.one_of(
    st.integers(-3, 200_001).map(str),
    st.sampled_from(["nan", "inf", "1e400", "1e5", "1e-400", "2.5", ".5", "+3", "١٢", "", " 5", "0x10", "9" * 50]),
    st.text(max_size=4),
)
_TOKENS = st.builds(
    lambda name, params: "_".join([name, *params]),
    st.sampled_from([*PERIODIC, "SMA", "x", ""]),
    st.lists(_TOKEN_PARAMS, max_size=4),
)


@settings(max_examples=300, deadline=None)
@given(text=st.one_of(st.lists(_TOKENS, max_size=4).map(",".join), st.text(max_size=30)))
def test_any_spec_text_is_a_bounded_spec_or_one_config_error(text: str) -> None:
    from forex_diffusion.indicators.base import PARAMETER_MAX

    try:
        spec = BankSpec.parse(text)
    except ConfigError as exc:  # any other exception fails the test
        assert "\n" not in str(exc)
        return
    for ind in spec.build():
        assert all(abs(v) <= PARAMETER_MAX for v in ind.params().values()), (text, ind)
    assert BankSpec.parse(str(spec)) == spec
