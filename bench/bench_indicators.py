"""Benchmark: the incremental indicator bank against talipp on the same real candles.

Run: ``.venv/bin/python bench/bench_indicators.py [N_BARS] [REPEAT]``. Prints ns per candle
for both libraries on the same set of indicators (best of REPEAT runs, default 5, same
process), the ratio, the full default set, a per-indicator breakdown and the memory of one
series' bank. Each run builds a fresh bank, so the warm-up candles (members called one by
one until the fused step takes over, see ``forex_diffusion/indicators/fused.py``) and the
fused step's compilation (once per spec, cached; timed separately below) are not hidden.
Reads the bundled EUR/USD 1-minute bid candles (``tests/data/lean``, Apache-2.0); a checkout
without them exits 1 with one line naming the file.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from _cli import optional_count  # bench/ is first on sys.path when a script runs

from forex_diffusion.domain import Candle
from forex_diffusion.indicators import Hurst, IndicatorBank, build_indicator, fused
from forex_diffusion.indicators.hurst import python_kernels
from forex_diffusion.ingest.readers import read_candles

DATA = Path(__file__).resolve().parents[1] / "tests" / "data" / "lean" / "lean_oanda_eurusd_m1_2014-05-01_15.csv.gz"
TALIPP_SET = "rsi_14,ema_20,atr_14,bb_20,macd_12_26_9,keltner_20,donchian_20"
TALIPP_REF_NS = 19_000.0
"""talipp on TALIPP_SET as the issue measured it (#3): the machine speed the 5 us goal assumes."""


REPEAT = 5


def best_of(fn: Callable[[], object], repeat: int | None = None) -> float:
    repeat = REPEAT if repeat is None else repeat
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def best_of_each(fns: list[Callable[[], None]], repeat: int | None = None) -> list[float]:
    """Best time of each of ``fns``, run in turn round after round (A B C A B C ...).

    Interleaved, the peers of a comparison see the same moments of this shared machine's
    speed, which moves by up to 2x within a minute; their ratio is what is compared.
    """
    repeat = REPEAT if repeat is None else repeat
    best = [float("inf")] * len(fns)
    for _ in range(repeat):
        for i, fn in enumerate(fns):
            t = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - t)
    return best


def deep_size(obj: Any, seen: set[int] | None = None) -> int:
    """Bytes held by ``obj`` and everything it references (numpy: ``nbytes``).

    Functions count with their closure cells and what those hold, not their code object
    (the fused step's code is shared by every bank of a spec; see :func:`code_size`).
    """
    seen = set() if seen is None else seen
    if id(obj) in seen or isinstance(obj, (type, types.ModuleType, types.BuiltinFunctionType, np.ufunc)):
        return 0
    seen.add(id(obj))
    size = sys.getsizeof(obj)
    if isinstance(obj, types.MethodType):
        return size + deep_size(obj.__self__, seen)
    if isinstance(obj, types.FunctionType):
        return size + sum(sys.getsizeof(c) + deep_size(c.cell_contents, seen) for c in obj.__closure__ or ())
    if isinstance(obj, np.ndarray):  # getsizeof includes owned data; a view counts the array it shows
        return size if obj.base is None else size + deep_size(obj.base, seen)
    if isinstance(obj, dict):
        return size + sum(deep_size(k, seen) + deep_size(v, seen) for k, v in obj.items())
    if isinstance(obj, (list, tuple, set, frozenset)) or type(obj).__name__ == "deque":
        return size + sum(deep_size(v, seen) for v in obj)
    for klass in type(obj).__mro__:
        for slot in getattr(klass, "__slots__", ()):
            if hasattr(obj, slot):
                size += deep_size(getattr(obj, slot), seen)
    if hasattr(obj, "__dict__"):
        size += deep_size(vars(obj), seen)
    return size


def code_size(code: types.CodeType) -> int:
    """Bytes of a code object and the code objects nested in it."""
    return sys.getsizeof(code) + sum(code_size(c) for c in code.co_consts if isinstance(c, types.CodeType))


def ours(candles: list[Candle], spec: str, as_dict: bool) -> Callable[[], None]:
    def run() -> None:
        bank = IndicatorBank(spec)
        step = bank.update if as_dict else bank._update_list
        for c in candles:
            step(c)

    return run


def talipp_run(candles: list[Candle], full: bool) -> Callable[[], None]:
    from talipp.indicators import (
        ADX,
        ATR,
        BB,
        EMA,
        MACD,
        RSI,
        SMA,
        DonchianChannels,
        KeltnerChannels,
        Stoch,
    )
    from talipp.ohlcv import OHLCV

    bars = [OHLCV(c.open, c.high, c.low, c.close, 0.0) for c in candles]
    closes = [c.close for c in candles]

    def run() -> None:
        scalar = [RSI(14), EMA(20), BB(20, 2.0), MACD(12, 26, 9)]
        ohlc = [ATR(14), KeltnerChannels(20, 10, 2.0, 2.0), DonchianChannels(20)]
        if full:
            scalar.append(SMA(20))
            ohlc += [Stoch(14, 3), ADX(14, 14)]
        for x, b in zip(closes, bars, strict=True):
            for ind in scalar:
                ind.add(x)
                ind[-1]
            for ind in ohlc:
                ind.add(b)
                ind[-1]

    return run


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        description=(
            "The incremental indicator bank against talipp on the same EUR/USD 1-minute bid candles: "
            "ns per candle of each on a shared indicator set and on the full default set (runs "
            "interleaved, best of REPEAT, one process), a per-indicator breakdown, the fused step's "
            "compile time and the memory of one series' bank."
        ),
        epilog=(
            "Prints 'ratio talipp / ours(dict)' on the shared set and 'ratio talipp / ours w/o hurst' on "
            "the full set (talipp's time over ours: above 1, the bank is faster), and our times scaled to "
            "the machine where talipp's set took 19 us. Without the data file it says so and exits 0."
        ),
    )
    optional_count(
        ap,
        "n_bars",
        default=15_000,
        metavar="N_BARS",
        help="candles to read from the start of the file (default: 15000)",
    )
    optional_count(
        ap,
        "repeat",
        default=REPEAT,
        metavar="REPEAT",
        help=f"runs of each measurement, the best kept (default: {REPEAT})",
    )
    return ap


def main() -> int:
    global REPEAT
    args = build_parser().parse_args()
    if not DATA.exists():
        print(f"bench_indicators: {DATA} is missing (bundled with the repository); nothing measured", file=sys.stderr)
        return 1
    n = args.n_bars
    REPEAT = args.repeat
    f = read_candles(DATA, price="bid").frame.iloc[:n]
    candles = [
        Candle(
            symbol="EURUSD", timeframe="1m", open_ms=int(t), close_ms=int(t) + 60_000, open=o, high=h, low=lo, close=c
        )
        for t, o, h, lo, c in zip(f.ts_ms, f.open, f.high, f.low, f.close, strict=True)
    ]
    n = len(candles)
    print(f"{n} EURUSD 1-minute bid candles; ns per candle, best of {REPEAT}, one process")

    def ns(seconds: float) -> float:
        return seconds / n * 1e9

    try:
        import talipp  # noqa: F401

        have_talipp = True
    except ImportError:
        have_talipp = False
        print("talipp is not installed (pip install talipp): no comparison")

    print(f"\n[talipp set: {TALIPP_SET}]")
    runs = [ours(candles, TALIPP_SET, as_dict=False), ours(candles, TALIPP_SET, as_dict=True)]
    if have_talipp:
        runs.append(talipp_run(candles, full=False))
    times = [ns(t) for t in best_of_each(runs)]
    o_list, o_dict = times[0], times[1]
    print(f"  ours, values as list      {o_list:10.0f}")
    print(f"  ours, bank.update -> dict {o_dict:10.0f}")
    t_ns = 0.0
    if have_talipp:
        t_ns = times[2]
        print(f"  talipp add + [-1]         {t_ns:10.0f}")
        print(f"  ratio talipp / ours(dict) {t_ns / o_dict:10.1f}x")

    print("\n[full default set]")
    no_hurst = "sma_20,ema_20,rsi_14,atr_14,bb_20,macd_12_26_9,donchian_20,keltner_20,stoch_14_3,adx_14"
    runs = [
        ours(candles, "default", as_dict=False),
        ours(candles, "default", as_dict=True),
        ours(candles, no_hurst, as_dict=True),
    ]
    if have_talipp:
        runs += [talipp_run(candles, full=True), talipp_run(candles, full=False)]
    times = [ns(t) for t in best_of_each(runs)]
    d_list, d_dict, d_nh = times[:3]
    print(f"  ours, values as list      {d_list:10.0f}")
    print(f"  ours, bank.update -> dict {d_dict:10.0f}")
    print(f"  ours without hurst_100    {d_nh:10.0f}")
    print(f"  hurst_100's share         {d_dict - d_nh:10.0f}")
    if have_talipp:
        t_full, t_set = times[3], times[4]
        print(f"  talipp (no Hurst in it)   {t_full:10.0f}")
        print(f"  ratio talipp / ours w/o hurst {t_full / d_nh:6.1f}x")
        # This box's speed moves by 2x between runs (shared VM); the issue states its goal
        # on a machine where talipp's set took 19 us: scale by talipp's set in these rounds.
        scale = TALIPP_REF_NS / t_set
        print(f"  talipp set in these rounds {t_set:9.0f}")
        print(
            f"  scaled to talipp set = {TALIPP_REF_NS / 1000:.0f} us (x{scale:.2f}): "
            f"list {d_list * scale:.0f}, dict {d_dict * scale:.0f}"
        )

    print("\n[per indicator: member._push alone | one-member bank, values as list]")
    for tok in IndicatorBank().spec.indicators:
        ind = build_indicator(tok)
        xs: list[Any] = [c.close for c in candles] if ind.input_kind == "scalar" else candles

        def one(ind: Any = ind, xs: list[Any] = xs) -> None:
            fresh = ind.clone()
            push = fresh._push
            for x in xs:
                push(x)

        alone = ns(best_of(one))
        print(f"  {tok:18s} {alone:8.0f} {ns(best_of(ours(candles, tok, as_dict=False))):8.0f}")
        if isinstance(ind, Hurst):  # the uncompiled fallback (FOREXD_NO_JIT=1), same values

            def py_steps(ind: Any = ind, xs: list[Any] = xs) -> None:
                fresh = ind.clone()
                fresh._k = python_kernels()
                push = fresh._push
                for x in xs:
                    push(x)

            print(f"  {tok + ' numpy':18s} {ns(best_of(py_steps)):8.0f}")

    tokens = IndicatorBank().spec.indicators

    def generate() -> None:
        fused._factory.cache_clear()
        fused._factory(tokens)

    compile_us = best_of(generate) * 1e6
    new_bank_us = best_of(IndicatorBank) * 1e6
    print("\n[fused step of the default spec, once per spec and process]")
    print(f"  generate + compile the step                  {compile_us:8.0f} us")
    print(f"  a new bank of the spec (code cached)         {new_bank_us:8.0f} us")
    made = fused._factory(tokens)
    shared = code_size(made[0].__code__) if made is not None else 0

    bank = IndicatorBank()
    for c in candles:
        bank.update(c)
    print("\n[memory of one series, full default bank]")
    print(f"  in memory (deep size)     {deep_size(bank):8d} bytes")
    print(f"  JSON snapshot             {len(json.dumps(bank.snapshot())):8d} bytes")
    print("  shared by every bank of the spec, once per process:")
    print(f"    fused step code         {shared:8d} bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
