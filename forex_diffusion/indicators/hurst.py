"""Hurst exponent: rescaled-range (R/S) estimate over a rolling window of log returns."""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any, ClassVar

import numpy as np

from .base import ScalarIndicator, check_period

_log = math.log
_sqrt = math.sqrt
_mul = np.multiply
_sub = np.subtract

__all__ = ["Hurst"]


@lru_cache(maxsize=16)
def _offsets(period: int) -> tuple[np.ndarray, ...]:
    """Row ``p``: the window offset ``(i - p) mod (period + 1)`` of ring slot ``i``, as floats.

    Shared (read-only) by every Hurst of this period. Every row is a view of one array
    ``b[j] = (j - period) mod (period + 1)``: row ``p`` is ``b[period - p : 2 * period + 1 - p]``.
    """
    w = period + 1
    b = ((np.arange(2 * w - 1) - (w - 1)) % w).astype(float)
    b.flags.writeable = False
    return tuple(b[w - 1 - p : 2 * w - 1 - p] for p in range(w))


def window_returns(ring: list[float], start: int) -> list[float]:
    """The log returns of a full ring of log prices whose oldest is at ``start``, oldest first."""
    order = ring[start:] + ring[:start]
    return [order[i + 1] - order[i] for i in range(len(order) - 1)]


class Hurst(ScalarIndicator[float]):
    """Hurst exponent by the classical single-scale rescaled range over ``period`` returns.

    With ``r_1..r_n`` the last ``n = period`` log returns, mean ``m`` and population
    standard deviation ``S``, the cumulative deviations are ``Y_t = sum_{i<=t} (r_i - m)``
    (``Y_0 = Y_n = 0``), ``R = max Y - min Y`` and ``H = ln(R / S) / ln(n)`` (Hurst 1951).
    The estimate is biased upwards for short windows (about 0.55-0.6 for independent
    returns at n = 100, Anis-Lloyd), so compare values of the same window length only.
    A window without variation has no exponent; 0.5 (no memory) is returned for it.

    ``Y_t`` is the distance of the log price ``L_t`` from the chord joining the window's
    first and last log prices: ``Y_t = (L_t - t·slope) - L_0``. The window's ``n + 1`` log
    prices sit in a numpy ring; one pass ``ring - offset·slope`` (the offsets of every ring
    slot for the current start come from a shared table, so no slicing), the newest slot
    set to ``L_0`` (its ``Y_n`` is 0 by definition, not by rounding) and an in-place sort
    give ``max Y`` and ``min Y``: O(``period``) per update in three numpy calls. ``m`` and
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

    __slots__ = ("period", "_ring", "_lg", "_last", "_pos", "_len", "_off", "_tmp", "_sc", "_s1", "_s2", "_logn")
    _params: ClassVar[tuple[str, ...]] = ("period",)
    spec_name: ClassVar[str] = "hurst"

    def __init__(self, period: int = 100) -> None:
        self.period = check_period("period", period, 8)
        self._off = _offsets(period)
        self._tmp = np.empty(period + 1)
        self._sc = np.empty(())  # the chord slope as a 0-d array: a cheaper ufunc operand than a float
        self._logn = math.log(period)
        self._reset_bookkeeping()
        self._init_state()

    @property
    def columns(self) -> tuple[str, ...]:
        return (f"hurst_{self.period}",)

    def _init_state(self) -> None:
        w = self.period + 1
        self._ring = np.zeros(w)  # log prices in ring order; once full the window starts at _pos
        self._lg = [0.0] * w  # the same log prices as Python floats (scalar reads)
        self._last = 0.0  # the newest log price
        self._pos = 0  # slot of the oldest log price of the window
        self._len = 0  # log prices held (<= w)
        self._s1 = 0.0
        self._s2 = 0.0
        self._ready_at = self.period + 1

    def _exponent(self, ring: np.ndarray, start: int, newest: int, lx: float, s1: float, s2: float) -> float:
        """``H`` of the full window in ``ring`` (oldest at slot ``start``, ``lx`` at ``newest``)."""
        n = self.period
        m = s1 / n
        var = s2 / n - m * m
        if var <= 0.0:
            return 0.5
        base = self._lg[start]
        tmp = self._tmp
        sc = self._sc
        sc[()] = (lx - base) / n
        _mul(self._off[start], sc, tmp)
        _sub(ring, tmp, tmp)
        tmp[newest] = base  # Y_n = 0 exactly
        tmp.sort()
        hi = tmp.item(-1) - base
        lo = tmp.item(0) - base
        r = (hi if hi > 0.0 else 0.0) - (lo if lo < 0.0 else 0.0)
        if r <= 0.0:
            return 0.5
        return _log(r / _sqrt(var)) / self._logn

    def _push(self, x: float) -> float | None:
        n1 = self._n + 1
        self._n = n1
        lx = _log(x)
        w = self.period + 1
        ring = self._ring
        lg = self._lg
        k = self._len
        if k == 0:
            ring[0] = lx
            lg[0] = lx
            self._last = lx
            self._len = 1
            return None
        r = lx - self._last
        self._last = lx
        if k == w:
            newest = self._pos
            pos = newest + 1 if newest + 1 < w else 0
            o = lg[pos] - lg[newest]
            self._s1 += r - o
            self._s2 += r * r - o * o
            self._pos = pos
        else:
            newest = k
            pos = 0
            self._s1 += r
            self._s2 += r * r
            self._len = k + 1
        ring[newest] = lx
        lg[newest] = lx
        if k + 1 < w:
            return None
        if n1 % self.period == 0:  # exact resync of the window sums, amortised O(1)
            rets = window_returns(lg, pos)
            self._s1 = math.fsum(rets)
            self._s2 = math.fsum([v * v for v in rets])
        return self._exponent(ring, pos, newest, lx, self._s1, self._s2)

    def _peek(self, x: float) -> float | None:
        w = self.period + 1
        k = self._len
        if k + 1 < w:
            return None
        lx = _log(x)
        r = lx - self._last
        if k == w:
            newest = self._pos
            pos = newest + 1 if newest + 1 < w else 0
            o = self._lg[pos] - self._lg[newest]
            s1 = self._s1 + (r - o)  # the association of _push's +=
            s2 = self._s2 + (r * r - o * o)
        else:
            newest = k
            pos = 0
            s1 = self._s1 + r
            s2 = self._s2 + r * r
        ring = self._ring.copy()
        ring[newest] = lx
        if (self._n + 1) % self.period == 0:
            lg = list(self._lg)
            lg[newest] = lx
            rets = window_returns(lg, pos)
            s1 = math.fsum(rets)
            s2 = math.fsum([v * v for v in rets])
        return self._exponent(ring, pos, newest, lx, s1, s2)

    def _get_state(self) -> dict[str, Any]:
        lg = self._lg
        logs = lg[: self._len] if self._len < len(lg) else lg[self._pos :] + lg[: self._pos]
        return {"logs": logs, "s1": self._s1, "s2": self._s2}

    def _set_state(self, state: dict[str, Any]) -> None:
        logs = [float(v) for v in state["logs"]]
        w = self.period + 1
        self._ring = np.zeros(w)
        self._ring[: len(logs)] = logs
        self._lg = logs + [0.0] * (w - len(logs))
        self._last = logs[-1] if logs else 0.0
        self._pos = 0
        self._len = len(logs)
        self._s1 = float(state["s1"])
        self._s2 = float(state["s2"])
