"""Hurst exponent: rescaled-range (R/S) estimate over a rolling window of log returns."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np

from .base import ScalarIndicator, check_period

_log = math.log
_sqrt = math.sqrt
_mul = np.multiply
_sub = np.subtract

__all__ = ["Hurst"]


class Hurst(ScalarIndicator[float]):
    """Hurst exponent by the classical single-scale rescaled range over ``period`` returns.

    With ``r_1..r_n`` the last ``n = period`` log returns, mean ``m`` and population
    standard deviation ``S``, the cumulative deviations are ``Y_t = sum_{i<=t} (r_i - m)``
    (``Y_0 = Y_n = 0``), ``R = max Y - min Y`` and ``H = ln(R / S) / ln(n)`` (Hurst 1951).
    The estimate is biased upwards for short windows (about 0.55-0.6 for independent
    returns at n = 100, Anis-Lloyd), so compare values of the same window length only.
    A window without variation has no exponent; 0.5 (no memory) is returned for it.

    ``Y_t`` is the distance of the log price from the chord joining the window's first
    and last log prices, so the window is kept as log prices in a doubled numpy ring and
    ``R`` costs one vectorised pass: O(``period``) per update, a few µs at 100. ``m`` and
    ``S`` come from window sums in O(1). First value at bar ``period``.

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

    __slots__ = ("period", "_ring", "_lg", "_last", "_pos", "_len", "_ar", "_tmp", "_sc", "_s1", "_s2", "_logn")
    _params: ClassVar[tuple[str, ...]] = ("period",)
    spec_name: ClassVar[str] = "hurst"

    def __init__(self, period: int = 100) -> None:
        self.period = check_period("period", period, 8)
        self._ar = np.arange(period, dtype=float)
        self._tmp = np.empty(period)
        self._sc = np.empty(())  # the chord slope as a 0-d array: a cheaper ufunc operand than a float
        self._logn = math.log(period)
        self._reset_bookkeeping()
        self._init_state()

    @property
    def columns(self) -> tuple[str, ...]:
        return (f"hurst_{self.period}",)

    def _init_state(self) -> None:
        w = self.period + 1
        self._ring = np.zeros(2 * w)  # log prices, each written at i and i + w
        self._lg = [0.0] * w  # the same log prices as Python floats, at i (scalar reads)
        self._last = 0.0  # the newest log price
        self._pos = 0  # index of the oldest log price of the window
        self._len = 0  # log prices held (<= w)
        self._s1 = 0.0
        self._s2 = 0.0
        self._ready_at = self.period + 1

    def _exponent(self, head: np.ndarray, slope: float, s1: float, s2: float) -> float:
        """``H`` from the window's first ``n`` log prices and the chord slope ``m``."""
        n = self.period
        m = s1 / n
        var = s2 / n - m * m
        if var <= 0.0:
            return 0.5
        tmp = self._tmp
        sc = self._sc
        sc[()] = slope
        np.multiply(self._ar, sc, out=tmp)
        np.subtract(head, tmp, out=tmp)
        tmp.sort()
        base = float(head[0])
        hi = tmp.item(-1) - base
        lo = tmp.item(0) - base
        r = (hi if hi > 0.0 else 0.0) - (lo if lo < 0.0 else 0.0)  # Y_0 = Y_n = 0
        if r <= 0.0:
            return 0.5
        return math.log(r / math.sqrt(var)) / math.log(n)

    def _push(self, x: float) -> float | None:
        n1 = self._n + 1
        self._n = n1
        lx = _log(x)
        n = self.period
        w = n + 1
        ring = self._ring
        lg = self._lg
        k = self._len
        if k == 0:
            ring[0] = ring[w] = lx
            lg[0] = lx
            self._last = lx
            self._len = 1
            return None
        pos = self._pos
        r = lx - self._last
        self._last = lx
        if k == w:
            p1 = pos + 1 if pos + 1 < w else 0
            o = lg[p1] - lg[pos]
            self._s1 += r - o
            self._s2 += r * r - o * o
            ring[pos] = ring[pos + w] = lx
            lg[pos] = lx
            pos = p1
            self._pos = pos
        else:
            self._s1 += r
            self._s2 += r * r
            ring[k] = ring[k + w] = lx
            lg[k] = lx
            k += 1
            self._len = k
            if k < w:
                return None
        if n1 % n == 0:  # exact resync of the window sums, amortised O(1)
            rets = np.diff(ring[pos : pos + w]).tolist()
            self._s1 = math.fsum(rets)
            self._s2 = math.fsum([v * v for v in rets])
        # _exponent, inlined (same operations, same order)
        s1 = self._s1
        m = s1 / n
        var = self._s2 / n - m * m
        if var <= 0.0:
            return 0.5
        base = lg[pos]
        tmp = self._tmp
        sc = self._sc
        sc[()] = (lx - base) / n
        _mul(self._ar, sc, tmp)
        _sub(ring[pos : pos + n], tmp, tmp)
        tmp.sort()
        hi = tmp.item(-1) - base
        lo = tmp.item(0) - base
        rr = (hi if hi > 0.0 else 0.0) - (lo if lo < 0.0 else 0.0)  # Y_0 = Y_n = 0
        if rr <= 0.0:
            return 0.5
        return _log(rr / _sqrt(var)) / self._logn

    def _peek(self, x: float) -> float | None:
        w = self.period + 1
        k = self._len
        if k + 1 < w:
            return None
        n = self.period
        lx = math.log(x)
        ring = self._ring
        pos = self._pos
        last = float(ring[pos + k - 1])
        r = lx - last
        if k == w:
            start = pos + 1
            o = float(ring[pos + 1]) - float(ring[pos])
            s1 = self._s1 + (r - o)  # the association of _push's +=
            s2 = self._s2 + (r * r - o * o)
        else:
            start = pos
            s1 = self._s1 + r
            s2 = self._s2 + r * r
        head = ring[start : start + n]
        if (self._n + 1) % n == 0:
            rets = np.diff(np.append(head, lx)).tolist()
            s1 = math.fsum(rets)
            s2 = math.fsum([v * v for v in rets])
        return self._exponent(head, (lx - float(head[0])) / n, s1, s2)

    def _get_state(self) -> dict[str, Any]:
        pos = self._pos
        return {"logs": self._ring[pos : pos + self._len].tolist(), "s1": self._s1, "s2": self._s2}

    def _set_state(self, state: dict[str, Any]) -> None:
        logs = [float(v) for v in state["logs"]]
        w = self.period + 1
        self._ring = np.zeros(2 * w)
        self._ring[: len(logs)] = logs
        self._ring[w : w + len(logs)] = logs
        self._lg = logs + [0.0] * (w - len(logs))
        self._last = logs[-1] if logs else 0.0
        self._pos = 0
        self._len = len(logs)
        self._s1 = float(state["s1"])
        self._s2 = float(state["s2"])
