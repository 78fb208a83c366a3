"""Hurst exponent: rescaled-range (R/S) estimate over a rolling window of log returns."""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable
from functools import lru_cache
from typing import Any, ClassVar, NamedTuple

import numpy as np

from forex_diffusion.indicators.base import PeriodIndicator, ScalarIndicator
from forex_diffusion.indicators.fusion import Part
from forex_diffusion.state import number, numbers

_log = math.log
log = logging.getLogger(__name__)

__all__ = ["Hurst", "Kernels", "hurst_kernels", "python_kernels", "resync_exponent", "resync_step", "window_returns"]

# Layout of a Hurst buffer (float64, length period + 6): the window's period + 1 log prices
# in ring order, then its scalar state. One array is one argument for the compiled kernels.
LAST, POS, S1, S2, LOGN = range(1, 6)  # offsets after the ring: buf[w + LAST] ...


class Kernels(NamedTuple):
    """The compiled steady-state steps over a full Hurst buffer (see :func:`hurst_kernels`).

    ``step(buf, w, lx)`` commits the log price ``lx`` and returns ``H``; ``advance`` commits
    only; ``exponent(buf, w)`` returns ``H`` of the window ``buf`` holds.
    """

    step: Callable[[np.ndarray, int, float], float]
    advance: Callable[[np.ndarray, int, float], None]
    exponent: Callable[[np.ndarray, int], float]


def _advance(buf: np.ndarray, w: int, lx: float) -> None:
    """Write ``lx`` over the oldest log price of the full window; update the return sums."""
    nw = int(buf[w + POS])  # the oldest slot becomes the newest
    pos = nw + 1 if nw + 1 < w else 0
    r = lx - buf[w + LAST]
    o = buf[pos] - buf[nw]  # the return leaving the window
    buf[w + S1] += r - o
    buf[w + S2] += r * r - o * o
    buf[nw] = lx
    buf[w + LAST] = lx
    buf[w + POS] = pos


def _exponent(buf: np.ndarray, w: int) -> float:
    """``H`` of the full window in ``buf`` (see :class:`Hurst`): one pass over the ring."""
    n = w - 1
    m = buf[w + S1] / n
    var = buf[w + S2] / n - m * m
    if var <= 0.0:
        return 0.5
    pos = int(buf[w + POS])
    nw = pos - 1 if pos > 0 else w - 1
    base = buf[pos]
    slope = (buf[nw] - base) / n
    hi = 0.0  # Y_0 = Y_n = 0 belong to the set
    lo = 0.0
    for i in range(w):
        if i == nw:
            continue
        t = i - pos if i >= pos else i - pos + w
        y = (buf[i] - t * slope) - base
        if y > hi:
            hi = y
        elif y < lo:
            lo = y
    r = hi - lo
    if r <= 0.0:
        return 0.5
    return float(math.log(r / math.sqrt(var)) / buf[w + LOGN])


@lru_cache(maxsize=16)
def _offsets(w: int) -> tuple[np.ndarray, ...]:
    """Row ``pos``: ``t = (i - pos) mod w`` of every ring slot ``i``, as floats (read-only)."""
    b = ((np.arange(2 * w - 1) - (w - 1)) % w).astype(float)
    b.flags.writeable = False
    return tuple(b[w - 1 - p : 2 * w - 1 - p] for p in range(w))


def _exponent_numpy(buf: np.ndarray, w: int) -> float:
    """:func:`_exponent` with numpy calls instead of the loop (the uncompiled fallback).

    Same IEEE operations per slot (``buf[i] - t·slope``, then ``- base``; the newest slot
    set to ``base`` is its ``Y_n = 0``), and subtracting one ``base`` preserves the order, so
    ``max - base`` is the loop's ``hi``: equal floats (the unit tests compare the two).
    """
    n = w - 1
    s1 = float(buf[w + S1])
    m = s1 / n
    var = float(buf[w + S2]) / n - m * m
    if var <= 0.0:
        return 0.5
    pos = int(buf[w + POS])
    nw = pos - 1 if pos > 0 else w - 1
    base = float(buf[pos])
    slope = (float(buf[nw]) - base) / n
    y = buf[:w] - _offsets(w)[pos] * slope
    y[nw] = base
    y.sort()
    hi = y.item(-1) - base
    lo = y.item(0) - base
    r = (hi if hi > 0.0 else 0.0) - (lo if lo < 0.0 else 0.0)
    if r <= 0.0:
        return 0.5
    return math.log(r / math.sqrt(var)) / float(buf[w + LOGN])


def _step_numpy(buf: np.ndarray, w: int, lx: float) -> float:
    _advance(buf, w, lx)
    return _exponent_numpy(buf, w)


def python_kernels() -> Kernels:
    """The steps without numba: ``_advance`` as Python, the window pass with numpy calls."""
    return Kernels(_step_numpy, _advance, _exponent_numpy)


@lru_cache(maxsize=1)
def hurst_kernels() -> Kernels:
    """The steps compiled by numba (cached on disk), or :func:`python_kernels` without it.

    Compiled lazily, on the first Hurst built in a process (numba's import and the cache
    load take about 0.3 s; a first compile about 2 s). Both perform the same IEEE
    operations per slot (no fast-math), so the values do not depend on which one runs; the
    unit tests compare them on real candles. ``FOREXD_NO_JIT=1`` selects the fallback.
    """
    if os.environ.get("FOREXD_NO_JIT", "") not in ("", "0"):
        return python_kernels()
    try:
        from forex_diffusion.indicators import _hurst_jit

        return _hurst_jit.kernels()
    except Exception as exc:  # noqa: BLE001 - no numba, no writable cache, no compiler: same values, slower
        log.warning("Hurst runs its numpy steps (about 5x slower): numba unavailable: %s", exc)
        return python_kernels()


def window_returns(ring: list[float], start: int) -> list[float]:
    """The log returns of a full ring of log prices whose oldest is at ``start``, oldest first."""
    order = ring[start:] + ring[:start]
    return [order[i + 1] - order[i] for i in range(len(order) - 1)]


def resync_exponent(buf: np.ndarray, w: int, kernels: Kernels) -> float:
    """``H`` of the full window in ``buf`` after recomputing its sums exactly (``fsum``)."""
    rets = window_returns(buf[:w].tolist(), int(buf[w + POS]))
    buf[w + S1] = math.fsum(rets)
    buf[w + S2] = math.fsum([v * v for v in rets])
    return kernels.exponent(buf, w)


def resync_step(buf: np.ndarray, w: int, lx: float, kernels: Kernels) -> float:
    """``step`` with the exact resync of the window sums: every ``period`` updates."""
    kernels.advance(buf, w, lx)
    return resync_exponent(buf, w, kernels)


class Hurst(PeriodIndicator[float], ScalarIndicator[float]):
    """Hurst exponent by the classical single-scale rescaled range over ``period`` returns.

    With ``r_1..r_n`` the last ``n = period`` log returns, mean ``m`` and population
    standard deviation ``S``, the cumulative deviations are ``Y_t = sum_{i<=t} (r_i - m)``
    (``Y_0 = Y_n = 0``), ``R = max Y - min Y`` and ``H = ln(R / S) / ln(n)`` (Hurst 1951).
    The estimate is biased upwards for short windows (about 0.55-0.6 for independent
    returns at n = 100, Anis-Lloyd), so compare values of the same window length only.
    A window without variation has no exponent; 0.5 (no memory) is returned for it.

    ``Y_t`` is the distance of the log price ``L_t`` from the chord joining the window's
    first and last log prices: ``Y_t = (L_t - t·slope) - L_0``. The window's ``n + 1`` log
    prices sit in a ring; in steady state one compiled pass over it (numba, see
    :func:`hurst_kernels`) gives ``max Y`` and ``min Y``: O(``period``) per update, one call.
    ``m`` and ``S`` come from window sums kept in O(1) and recomputed exactly (``fsum``)
    every ``period`` updates. First value at bar ``period``.

    Parameters
    ----------
    period
        Number of log returns in the window (>= 8).

    Examples
    --------
    >>> h = Hurst(8)
    >>> out = [h.update(1.0 + 0.01 * i) for i in range(10)]  # a steady trend
    >>> out[7], round(out[8], 6)
    (None, 0.601125)
    """

    __slots__ = ("_buf", "_len", "_k")
    spec_name: ClassVar[str] = "hurst"
    min_period: ClassVar[int] = 8

    def __init__(self, period: int = 100) -> None:
        super().__init__(period)
        self._k = hurst_kernels()

    def _init_state(self) -> None:
        w = self.period + 1
        self._buf = np.zeros(w + LOGN + 1)  # ring of log prices; once full the window starts at POS
        self._buf[w + LOGN] = math.log(self.period)
        self._len = 0  # log prices held (<= w)
        self._ready_at = self.period + 1

    def _advance_partial(self, buf: np.ndarray, lx: float) -> None:
        """Add the log price ``lx`` to a window that is not yet full (``_len`` < w)."""
        w = self.period + 1
        k = self._len
        if k:
            r = lx - buf[w + LAST]
            buf[w + S1] += r
            buf[w + S2] += r * r
        buf[k] = lx
        buf[w + LAST] = lx

    def _push(self, x: float) -> float | None:
        n1 = self._n + 1
        self._n = n1
        lx = _log(x)
        w = self.period + 1
        buf = self._buf
        if self._len == w:
            if n1 % self.period:
                return self._k.step(buf, w, lx)
            return resync_step(buf, w, lx, self._k)
        self._advance_partial(buf, lx)
        self._len += 1
        if self._len < w:
            return None
        if n1 % self.period == 0:
            return resync_exponent(buf, w, self._k)
        return self._k.exponent(buf, w)

    def fused_part(self, v: str) -> Part:
        """The steady-state :meth:`_push` above as fused-step source lines (locals prefixed ``v``)."""
        p = self.period
        w = p + 1
        return Part(
            steady=w + 1,
            state=(),
            refs=((f"{v}buf", "_buf"), (f"{v}k", "_k"), (f"{v}step", "_k.step")),
            blocks=(
                (
                    "",
                    (  # Hurst._push with a full window: one compiled call
                        f"if n % {p}:",
                        f"    {v}out = {v}step({v}buf, {w}, log(c))",
                        "else:",
                        f"    {v}out = hurst_resync({v}buf, {w}, log(c), {v}k)",
                    ),
                ),
            ),
            outs=(f"{v}out",),
        )

    def _peek(self, x: float) -> float | None:
        w = self.period + 1
        if self._len + 1 < w:
            return None
        lx = _log(x)
        buf = self._buf.copy()
        if self._len == w:
            if (self._n + 1) % self.period:
                return self._k.step(buf, w, lx)
            return resync_step(buf, w, lx, self._k)
        self._advance_partial(buf, lx)
        if (self._n + 1) % self.period == 0:
            return resync_exponent(buf, w, self._k)
        return self._k.exponent(buf, w)

    def _get_state(self) -> dict[str, Any]:
        w = self.period + 1
        buf = self._buf
        lg = buf[:w].tolist()
        if self._len < w:
            logs = lg[: self._len]
        else:
            pos = int(buf[w + POS])
            logs = lg[pos:] + lg[:pos]
        return {"logs": logs, "s1": float(buf[w + S1]), "s2": float(buf[w + S2])}

    def _set_state(self, state: dict[str, Any]) -> None:
        logs = numbers(state["logs"], field="logs")
        w = self.period + 1
        self._init_state()
        buf = self._buf
        buf[: len(logs)] = logs
        buf[w + LAST] = logs[-1] if logs else 0.0
        buf[w + POS] = 0
        buf[w + S1] = number(state["s1"], field="s1")
        buf[w + S2] = number(state["s2"], field="s2")
        self._len = len(logs)
