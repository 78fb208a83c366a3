"""Hurst's compiled steady-state steps (numba) equal its uncompiled numpy steps bit for bit.

``forex_diffusion/indicators/hurst.py`` keeps the window in one float64 buffer and runs its
steady state through :func:`hurst_kernels` (a loop compiled by numba, lazily, cached on
disk); without numba (or with ``FOREXD_NO_JIT=1``) the window pass runs as numpy calls.
These tests feed both the real EURUSD candles with revisions of the forming candle, exact
resyncs every ``period`` updates and snapshot round trips, and require equal floats.
"""

from __future__ import annotations

import math
import os
import random
import subprocess
import sys

import pytest

from forex_diffusion.indicators import Hurst
from forex_diffusion.indicators.hurst import hurst_kernels, python_kernels
from forex_diffusion.ingest.readers import read_candles

from ...realdata import DATA, require

M1 = DATA / "lean_oanda_eurusd_m1_2014-05-01_15.csv.gz"


@pytest.fixture(scope="module")
def closes() -> list[float]:
    require(M1.name)  # a bundled file: absent, the test fails
    return [float(c) for c in read_candles(M1, price="bid").frame["close"].tolist()[:8000]]


def test_the_compiled_kernels_are_in_use() -> None:
    pytest.importorskip("numba", reason="numba is a dependency; without it Hurst runs its numpy steps")
    k = hurst_kernels()
    assert k.step is not python_kernels().step
    assert type(k.step).__name__ in ("builtin_function_or_method", "CPUDispatcher")


@pytest.mark.parametrize("period", [8, 33, 100])
def test_compiled_equals_python_on_real_closes(closes: list[float], period: int) -> None:
    jit, ref = Hurst(period), Hurst(period)
    ref._k = python_kernels()
    rnd = random.Random(period)
    values = 0
    for i, c in enumerate(closes):
        forming = c * (1.0 + rnd.uniform(-2e-3, 2e-3))
        assert jit.revise(forming) == ref.revise(forming), f"revise at bar {i}"
        a, b = jit.update(c), ref.update(c)
        assert a == b, f"update at bar {i}: {a!r} != {b!r}"
        values += a is not None
        if i % 997 == 500:  # a restored copy continues exactly
            jit = Hurst.restore(jit.snapshot())
    assert values == len(closes) - period
    assert jit.snapshot() == ref.snapshot()


def test_flat_window_and_steady_trend_edge_values() -> None:
    h = Hurst(8)
    assert [h.update(1.25) for _ in range(12)][8:] == [0.5] * 4  # no variation: no memory
    h = Hurst(8)
    out = [h.update(math.exp(0.001 * i)) for i in range(20)]  # constant log return: var == 0
    assert out[8:] == [0.5] * 12


def test_numpy_fallback_selected_by_environment() -> None:
    code = (
        "from forex_diffusion.indicators.hurst import hurst_kernels, python_kernels;"
        "assert hurst_kernels() == python_kernels(); print('numpy')"
    )
    env = dict(os.environ, FOREXD_NO_JIT="1")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "numpy"
