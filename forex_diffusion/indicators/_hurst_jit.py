"""The Hurst steps of :mod:`.hurst` compiled by numba (imported lazily: numba costs ~0.3 s)."""

from __future__ import annotations

from typing import Any

import numba
import numpy as np

from forex_diffusion.indicators import hurst

__all__ = ["kernels"]

_jit = numba.njit(cache=True, nogil=True, error_model="numpy")  # IEEE results, no fast-math
advance = _jit(hurst._advance)
exponent = _jit(hurst._exponent)


@_jit
def step(buf: np.ndarray, w: int, lx: float) -> float:
    advance(buf, w, lx)
    return exponent(buf, w)


def _entry(dispatcher: Any) -> Any:
    """The compiled function of the one signature: skips the dispatcher's per-call typing."""
    overloads = dispatcher.overloads
    if len(overloads) == 1:
        entry = next(iter(overloads.values())).entry_point
        if callable(entry):
            return entry
    return dispatcher  # pragma: no cover - several signatures: let numba dispatch


def kernels() -> hurst.Kernels:
    """Compile (or load from numba's cache) for ``(float64[::1], int64, float64)`` and return."""
    w = 9
    buf = np.zeros(w + hurst.LOGN + 1)
    buf[w + hurst.LOGN] = 1.0
    step(buf, w, 0.0)
    advance(buf, w, 0.0)
    exponent(buf, w)
    return hurst.Kernels(_entry(step), _entry(advance), _entry(exponent))
