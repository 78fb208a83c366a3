"""Contract of every incremental indicator in ``forex_diffusion.indicators``.

Discovered by introspection, each indicator is checked on real EURUSD candles against a
batch reference (TA-Lib where TA-Lib has it, pandas written here otherwise), step by step
to 1e-9, and for revise exactness, snapshot/pickle round trips, clone, bounded memory and
the meaning of ``is_ready``.
"""

from __future__ import annotations

import importlib
import inspect
import json
import math
import pickle
import pkgutil
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import forex_diffusion.indicators as pkg
from forex_diffusion.domain import Candle
from forex_diffusion.indicators import READY_TOLERANCE, Indicator, build_indicator

from ..realdata import DATA, require

talib = pytest.importorskip("talib", reason="ta-lib is a test dependency (pip install ta-lib)")

M1 = DATA / "lean_oanda_eurusd_m1_2014-05-01_15.csv.gz"
H1 = DATA / "lean_oanda_eurusd_h1_2007_2017.csv.gz"
N_BARS = 3000
TOL = 1e-9


def _load(path: Path, n: int) -> list[Candle]:
    require(path.name)  # a bundled file: absent, the test fails
    from forex_diffusion.ingest.readers import read_candles

    f = read_candles(path, price="bid").frame.iloc[:n]
    return [
        Candle(symbol="EURUSD", timeframe="x", open_ms=int(t), close_ms=int(t) + 1, open=o, high=h, low=lo, close=c)
        for t, o, h, lo, c in zip(f.ts_ms, f.open, f.high, f.low, f.close, strict=True)
    ]


@pytest.fixture(scope="module", params=["m1", "h1"])
def candles(request: pytest.FixtureRequest) -> list[Candle]:
    return _load(M1 if request.param == "m1" else H1, N_BARS)


# ---- batch references ------------------------------------------------------------------
Arrays = tuple[np.ndarray, np.ndarray, np.ndarray]


def _seeded_ewm(x: pd.Series, alpha: float, seed_at: int, seed: float) -> np.ndarray:
    """EWM recursion starting at ``seed_at`` from ``seed`` (TA-Lib seeding), NaN before."""
    out = np.full(len(x), np.nan)
    s = pd.concat([pd.Series([seed]), x.iloc[seed_at + 1 :]], ignore_index=True)
    out[seed_at:] = s.ewm(alpha=alpha, adjust=False).mean().to_numpy()
    return out


def _true_range(h: np.ndarray, lo: np.ndarray, c: np.ndarray) -> pd.Series:
    pc = pd.Series(c).shift(1)
    tr = pd.concat([pd.Series(h - lo), (pd.Series(h) - pc).abs(), (pd.Series(lo) - pc).abs()], axis=1).max(axis=1)
    tr.iloc[0] = np.nan
    return tr


def ref_keltner(
    h: np.ndarray, lo: np.ndarray, c: np.ndarray, period: int = 20, mult: float = 2.0, atr_period: int = 10
) -> np.ndarray:
    close = pd.Series(c)
    mid = _seeded_ewm(close, 2.0 / (period + 1), period - 1, close.iloc[:period].mean())
    tr = _true_range(h, lo, c)
    atr = _seeded_ewm(tr, 1.0 / atr_period, atr_period, tr.iloc[1 : atr_period + 1].mean())
    return np.column_stack([mid - mult * atr, mid, mid + mult * atr])


def ref_keltner_plain(h: np.ndarray, lo: np.ndarray, c: np.ndarray) -> np.ndarray:
    """The textbook pandas Keltner: EWMs seeded by the first value (differs early on)."""
    mid = pd.Series(c).ewm(span=20, adjust=False).mean().to_numpy()
    atr = _true_range(h, lo, c).ewm(alpha=0.1, adjust=False).mean().to_numpy()
    return np.column_stack([mid - 2 * atr, mid, mid + 2 * atr])


def ref_donchian(h: np.ndarray, lo: np.ndarray, c: np.ndarray, period: int = 20) -> np.ndarray:
    return np.column_stack([pd.Series(h).rolling(period).max(), pd.Series(lo).rolling(period).min()])


def ref_rv(c: np.ndarray, period: int = 20) -> np.ndarray:
    r = np.log(pd.Series(c)).diff()
    return np.sqrt((r * r).rolling(period).mean()).to_numpy()[:, None]


def _rs_hurst(r: np.ndarray) -> float:
    s = r.std()
    y = np.cumsum(r - r.mean())
    rng = max(y.max(), 0.0) - min(y.min(), 0.0)
    if s == 0 or rng == 0:
        return 0.5
    return float(np.log(rng / s) / np.log(len(r)))


def ref_hurst(c: np.ndarray, period: int = 100) -> np.ndarray:
    r = np.log(pd.Series(c)).diff()
    return r.rolling(period).apply(_rs_hurst, raw=True).to_numpy()[:, None]


def _stack(*cols: np.ndarray) -> np.ndarray:
    return np.column_stack(cols)


# token -> reference(h, l, c) giving one column per output, NaN where undefined
REFERENCES: dict[str, Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]] = {
    "sma_20": lambda h, lo, c: _stack(talib.SMA(c, 20)),
    "sma_7": lambda h, lo, c: _stack(talib.SMA(c, 7)),
    "ema_20": lambda h, lo, c: _stack(talib.EMA(c, 20)),
    "ema_5": lambda h, lo, c: _stack(talib.EMA(c, 5)),
    "rsi_14": lambda h, lo, c: _stack(talib.RSI(c, 14)),
    "rsi_5": lambda h, lo, c: _stack(talib.RSI(c, 5)),
    "atr_14": lambda h, lo, c: _stack(talib.ATR(h, lo, c, 14)),
    "atr_3": lambda h, lo, c: _stack(talib.ATR(h, lo, c, 3)),
    "bb_20": lambda h, lo, c: _stack(*list(talib.BBANDS(c, 20, 2, 2, 0))[::-1]),
    "bb_10_1.5": lambda h, lo, c: _stack(*list(talib.BBANDS(c, 10, 1.5, 1.5, 0))[::-1]),
    "macd_12_26_9": lambda h, lo, c: _stack(*talib.MACD(c, 12, 26, 9)),
    "macd_5_35_5": lambda h, lo, c: _stack(*talib.MACD(c, 5, 35, 5)),
    "max_20": lambda h, lo, c: _stack(talib.MAX(c, 20)),
    "min_14": lambda h, lo, c: _stack(talib.MIN(c, 14)),
    "stoch_14_3": lambda h, lo, c: _stack(*talib.STOCHF(h, lo, c, 14, 3, 0)),
    "stoch_14_3_3": lambda h, lo, c: _stack(*talib.STOCH(h, lo, c, 14, 3, 0, 3, 0)),
    "adx_14": lambda h, lo, c: _stack(talib.ADX(h, lo, c, 14)),
    "adx_5": lambda h, lo, c: _stack(talib.ADX(h, lo, c, 5)),
    "keltner_20": ref_keltner,
    "keltner_10_1.5_5": lambda h, lo, c: ref_keltner(h, lo, c, 10, 1.5, 5),
    "donchian_20": ref_donchian,
    "donchian_5": lambda h, lo, c: ref_donchian(h, lo, c, 5),
    "rv_20": lambda h, lo, c: ref_rv(c, 20),
    "hurst_100": lambda h, lo, c: ref_hurst(c, 100),
    "hurst_32": lambda h, lo, c: ref_hurst(c, 32),
}


def discovered_classes() -> list[type[Indicator[Any]]]:
    """Every concrete Indicator subclass defined in the package's modules."""
    found: dict[str, type[Indicator[Any]]] = {}
    for mod in pkgutil.iter_modules(pkg.__path__):
        module = importlib.import_module(f"{pkg.__name__}.{mod.name}")
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, Indicator) and not inspect.isabstract(obj) and obj.__module__ == module.__name__:
                found[obj.__name__] = obj
    return sorted(found.values(), key=lambda k: k.__name__)


def test_every_discovered_indicator_has_a_reference() -> None:
    classes = discovered_classes()
    assert len(classes) >= 14
    covered = {type(build_indicator(t)) for t in REFERENCES}
    missing = [k.__name__ for k in classes if k not in covered]
    assert not missing, f"indicators without a batch reference in this contract: {missing}"


TOKENS = sorted(REFERENCES)


def _arrays(candles: list[Candle]) -> Arrays:
    return (
        np.array([b.high for b in candles]),
        np.array([b.low for b in candles]),
        np.array([b.close for b in candles]),
    )


def _flat(v: Any, width: int) -> list[float]:
    if v is None:
        return [math.nan] * width
    if isinstance(v, float):
        return [v]
    return [float(getattr(v, f)) for f in v.__dataclass_fields__]


def _run(ind: Indicator[Any], candles: list[Candle]) -> np.ndarray:
    w = len(ind.columns)
    return np.array([_flat(ind.update(b), w) for b in candles])


@pytest.mark.parametrize("token", TOKENS)
def test_equals_batch_reference_step_by_step(token: str, candles: list[Candle]) -> None:
    ind = build_indicator(token)
    got = _run(ind, candles)
    ref = REFERENCES[token](*_arrays(candles))
    assert got.shape == ref.shape
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref), err_msg=f"{token}: defined on different bars")
    assert np.isfinite(got[-1]).all(), f"{token}: undefined at the end of {len(candles)} bars"
    np.testing.assert_allclose(got, ref, rtol=0, atol=TOL, equal_nan=True, err_msg=token)


def test_keltner_textbook_pandas_seeding_agrees_from_bar_500(candles: list[Candle]) -> None:
    # pandas ewm starts from the first value, TA-Lib (and we) from an SMA of the first
    # `period` values; the difference decays geometrically and is gone well before bar 500.
    got = _run(build_indicator("keltner_20"), candles)
    plain = ref_keltner_plain(*_arrays(candles))
    np.testing.assert_allclose(got[500:], plain[500:], rtol=0, atol=TOL)
    assert np.nanmax(np.abs(got[19:40] - plain[19:40])) > 1e-7  # they do differ early on


def _perturbed(b: Candle, rng: random.Random) -> Candle:
    c = b.close * (1 + rng.uniform(-2e-3, 2e-3))
    h = max(b.high * (1 + rng.uniform(0, 1e-3)), c)
    lo = min(b.low * (1 - rng.uniform(0, 1e-3)), c)
    return Candle(
        symbol=b.symbol,
        timeframe=b.timeframe,
        open_ms=b.open_ms,
        close_ms=b.close_ms,
        open=b.open,
        high=h,
        low=lo,
        close=c,
        final=False,
    )


@pytest.mark.parametrize("token", TOKENS)
def test_revise_equals_update_on_a_copy(token: str, candles: list[Candle]) -> None:
    rng = random.Random(7)
    ind = build_indicator(token)
    for i, b in enumerate(candles[:400]):
        if i % 7 == 0:
            alt = _perturbed(b, rng)
            twin = pickle.loads(pickle.dumps(ind))
            revised = _flat(ind.revise(alt), len(ind.columns))
            assert _flat(ind.value, len(ind.columns)) == revised
            expected = _flat(twin.update(alt), len(ind.columns))
            assert revised == expected or (np.isnan(revised).all() and np.isnan(expected).all()), (token, i)
        ind.update(b)


@pytest.mark.parametrize("token", TOKENS)
def test_many_revisions_then_original_input_change_nothing(token: str, candles: list[Candle]) -> None:
    rng = random.Random(11)
    plain = _run(build_indicator(token), candles[:600])
    ind = build_indicator(token)
    w = len(ind.columns)
    revised_total = 0
    out = []
    for b in candles[:600]:
        for _ in range(rng.randrange(1, 5)):
            if revised_total < 1000:
                ind.revise(_perturbed(b, rng))
                revised_total += 1
        out.append(_flat(ind.update(b), w))
    assert revised_total == 1000
    np.testing.assert_array_equal(np.array(out), plain)


@pytest.mark.parametrize("token", TOKENS)
def test_snapshot_json_restore_continue_equals_never_stopping(token: str, candles: list[Candle]) -> None:
    cut = 350
    straight = _run(build_indicator(token), candles[:700])
    ind = build_indicator(token)
    _run(ind, candles[:cut])
    data = json.loads(json.dumps(ind.snapshot()))
    assert data["kind"] == "indicator" and data["v"] == 1 and data["state"]["type"] == type(ind).__name__
    resumed = Indicator.restore(data)
    assert type(resumed) is type(ind) and resumed.count == cut and resumed.params() == ind.params()
    np.testing.assert_array_equal(_run(resumed, candles[cut:700]), straight[cut:])
    again = pickle.loads(pickle.dumps(ind))
    np.testing.assert_array_equal(_run(again, candles[cut:700]), straight[cut:])


@pytest.mark.parametrize("token", TOKENS)
def test_clone_is_unfitted_and_reset_forgets(token: str, candles: list[Candle]) -> None:
    ind = build_indicator(token)
    first = _run(ind, candles[:300])
    fresh = ind.clone()
    assert type(fresh) is type(ind) and fresh.params() == ind.params()
    assert fresh.count == 0 and fresh.value is None and not fresh.is_ready
    assert ind.count == 300  # the original keeps its state
    ind.reset()
    assert ind.count == 0 and ind.value is None
    np.testing.assert_array_equal(_run(ind, candles[:300]), first)


@pytest.mark.parametrize("token", TOKENS)
def test_memory_is_bounded(token: str, candles: list[Candle]) -> None:
    ind = build_indicator(token)
    _run(ind, candles[:1000])
    size_1000 = len(json.dumps(ind.snapshot()))
    _run(ind, candles[1000:3000])
    size_3000 = len(json.dumps(ind.snapshot()))
    assert size_3000 <= size_1000 * 1.1 + 64, (size_1000, size_3000)


@pytest.mark.parametrize("token", TOKENS)
def test_ready_means_start_independent_within_tolerance(token: str, candles: list[Candle]) -> None:
    ind_a = build_indicator(token)
    ind_b = build_indicator(token)
    start_b = 300
    a = _run(ind_a, candles)
    b = np.full_like(a, np.nan)
    for i, bar in enumerate(candles[start_b:], start=start_b):
        b[i] = _flat(ind_b.update(bar), len(ind_b.columns))
        if ind_b.is_ready:
            break
    else:
        pytest.fail(f"{token} not ready after {len(candles) - start_b} bars")
    ready_from = start_b + ind_b.ready_after - 1
    assert ind_b.count == ind_b.ready_after
    scale = np.nanmax(a, axis=0) - np.nanmin(a, axis=0)
    diff = np.abs(a[ready_from] - b[ready_from])
    assert (diff <= READY_TOLERANCE * scale + 1e-12).all(), (token, diff, scale)
