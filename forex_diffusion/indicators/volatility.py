"""Volatility: ATR (Wilder), Bollinger Bands, realised volatility of log returns."""

from __future__ import annotations

import math
from collections import deque
from typing import Any, ClassVar

from forex_diffusion.indicators.base import (
    BarIndicator,
    BarLike,
    PeriodIndicator,
    ScalarIndicator,
    check_period,
    wilder_ready_steps,
)
from forex_diffusion.indicators.fusion import TRUE_RANGE, Part, literal, true_range
from forex_diffusion.indicators.values import BandsValue
from forex_diffusion.state import PRICE_FLOOR, number, numbers

__all__ = ["ATR", "BollingerBands", "RealisedVolatility"]


_sqrt = math.sqrt


def _fmt(x: float) -> str:
    return f"{x:g}"


class ATR(PeriodIndicator[float], BarIndicator[float]):
    """Average true range with Wilder's smoothing of length ``period >= 1``, TA-Lib conventions.

    The true range needs the previous close, so the first one is at bar 1; the first ATR
    (bar ``period``) is the mean of the first ``period`` true ranges, then
    ``atr = (atr * (period - 1) + tr) / period``. Equals TA-Lib ``ATR`` from its first value.

    Examples
    --------
    >>> from forex_diffusion.indicators.base import SimpleBar as B
    >>> atr = ATR(2)
    >>> [atr.update(b) for b in (B(2, 1, 1.5), B(3, 2, 2.5), B(3, 1, 2), B(2.5, 2, 2.2))]
    [None, None, 1.75, 1.125]
    """

    __slots__ = ("_pc", "_sum", "_atr")
    spec_name: ClassVar[str] = "atr"

    def __init__(self, period: int = 14) -> None:
        super().__init__(period)

    def _init_state(self) -> None:
        self._pc: float | None = None
        self._sum = 0.0
        self._atr = 0.0
        p = self.period
        self._ready_at = p + 1 + wilder_ready_steps(p)

    def _push(self, bar: BarLike) -> float | None:
        n = self._n + 1
        self._n = n
        pc = self._pc
        self._pc = bar.close
        if pc is None:
            return None
        tr = true_range(bar.high, bar.low, pc)
        p = self.period
        if n > p + 1:
            a = (self._atr * (p - 1) + tr) / p
            self._atr = a
            return a
        self._sum += tr
        if n <= p:
            return None
        a = self._sum / p
        self._atr = a
        return a

    def fused_part(self, v: str) -> Part:
        """The steady-state :meth:`_push` above as fused-step source lines (locals prefixed ``v``)."""
        p = self.period
        return Part(
            steady=p + 2,
            state=(("pc", "_pc"), (f"{v}atr", "_atr")),
            refs=(),
            blocks=(TRUE_RANGE, ("", (f"{v}atr = ({v}atr * {p - 1} + tr) / {p}",))),
            outs=(f"{v}atr",),
        )

    def _peek(self, bar: BarLike) -> float | None:
        n = self._n + 1
        pc = self._pc
        p = self.period
        if pc is None or n <= p:
            return None
        tr = true_range(bar.high, bar.low, pc)
        if n > p + 1:
            return (self._atr * (p - 1) + tr) / p
        return (self._sum + tr) / p

    def _get_state(self) -> dict[str, Any]:
        return {"pc": self._pc, "sum": self._sum, "atr": self._atr}

    def _set_state(self, state: dict[str, Any]) -> None:
        # a previous close once a bar was pushed (the fused step reads it), a true range >= 0
        self._pc = None if state["pc"] is None else number(state["pc"], field="pc")
        if (self._pc is None) != (self._n == 0):
            raise ValueError("an ATR state whose previous close does not match its count")
        self._sum = number(state["sum"], low=0.0, field="sum")
        self._atr = number(state["atr"], low=0.0, field="atr")


class BollingerBands(ScalarIndicator[BandsValue]):
    """Bollinger Bands: SMA(``period``) ± ``k`` · population standard deviation.

    Window sums of ``x - a`` and ``(x - a)^2`` are kept relative to an anchor ``a`` (a
    recent input) and recomputed exactly every ``period`` updates: no catastrophic
    cancellation at FX price levels, bounded rounding on endless streams. Equals TA-Lib
    ``BBANDS(period, k, k, SMA)`` from its first value.

    Parameters
    ----------
    period
        Window length (>= 2).
    k
        Width in standard deviations (> 0).

    Examples
    --------
    >>> bb = BollingerBands(3, 2.0)
    >>> bb.update(1.0), bb.update(2.0), bb.update(3.0)  # doctest: +ELLIPSIS
    (None, None, BandsValue(lower=0.367..., middle=2.0, upper=3.632...))
    """

    __slots__ = ("period", "k", "_buf", "_anchor", "_s1", "_s2")
    _params: ClassVar[tuple[str, ...]] = ("period", "k")
    spec_name: ClassVar[str] = "bb"
    composite = BandsValue

    def __init__(self, period: int = 20, k: float = 2.0) -> None:
        self.period = check_period("period", period, 2)
        if not (isinstance(k, (int, float)) and math.isfinite(k) and k > 0):
            from forex_diffusion.errors import ConfigError

            raise ConfigError(f"k must be a positive number, got {k!r}")
        self.k = float(k)
        self.reset()

    @property
    def columns(self) -> tuple[str, ...]:
        sfx = f"{self.period}" if self.k == 2.0 else f"{self.period}_{_fmt(self.k)}"
        return (f"bb_lower_{sfx}", f"bb_middle_{sfx}", f"bb_upper_{sfx}")

    def _init_state(self) -> None:
        self._buf: deque[float] = deque(maxlen=self.period)
        self._anchor = 0.0
        self._s1 = 0.0
        self._s2 = 0.0
        self._ready_at = self.period

    def _bands(self, a: float, s1: float, s2: float) -> tuple[float, float, float]:
        p = self.period
        m = s1 / p
        var = s2 / p - m * m
        sd = math.sqrt(var) * self.k if var > 0.0 else 0.0
        mid = a + m
        return (mid - sd, mid, mid + sd)

    def _resync(self, window: Any, a: float) -> tuple[float, float]:
        d = [v - a for v in window]
        return math.fsum(d), math.fsum([v * v for v in d])

    def _push(self, x: float) -> tuple[float, float, float] | None:
        n = self._n + 1
        self._n = n
        p = self.period
        buf = self._buf
        if n > p and n % p:  # steady state, no resync: the sums and _bands, inlined
            a = self._anchor
            o = buf[0] - a
            d = x - a
            s1 = self._s1 + (d - o)
            s2 = self._s2 + (d * d - o * o)
            self._s1 = s1
            self._s2 = s2
            buf.append(x)
            m = s1 / p
            var = s2 / p - m * m
            sd = _sqrt(var) * self.k if var > 0.0 else 0.0
            mid = a + m
            return (mid - sd, mid, mid + sd)
        if n == 1:
            self._anchor = x
        a = self._anchor
        if n > p:
            o = buf[0] - a
            d = x - a
            self._s1 += d - o
            self._s2 += d * d - o * o
        else:
            d = x - a
            self._s1 += d
            self._s2 += d * d
        buf.append(x)
        if n < p:
            return None
        if n % p == 0:
            a = x
            self._anchor = a
            self._s1, self._s2 = self._resync(buf, a)
        return self._bands(a, self._s1, self._s2)

    def fused_part(self, v: str) -> Part:
        """The steady-state :meth:`_push` above as fused-step source lines (locals prefixed ``v``)."""
        p = self.period
        return Part(
            steady=p + 1,
            state=((f"{v}a", "_anchor"), (f"{v}s1", "_s1"), (f"{v}s2", "_s2")),
            refs=((f"{v}b", "_buf"),),
            blocks=(
                (
                    "",
                    (
                        f"if n % {p}:",
                        f"    {v}o = {v}b[0] - {v}a",
                        f"    {v}d = c - {v}a",
                        f"    {v}s1 = {v}s1 + ({v}d - {v}o)",
                        f"    {v}s2 = {v}s2 + ({v}d * {v}d - {v}o * {v}o)",
                        f"    {v}b.append(c)",
                        "else:",
                        f"    {v}b.append(c)",
                        f"    {v}a = c",
                        f"    {v}s1, {v}s2 = bb_resync(None, {v}b, c)",
                        f"{v}m = {v}s1 / {p}",
                        f"{v}var = {v}s2 / {p} - {v}m * {v}m",
                        f"{v}sd = sqrt({v}var) * {literal(self.k)} if {v}var > 0.0 else 0.0",
                        f"{v}mid = {v}a + {v}m",
                    ),
                ),
            ),
            outs=(f"{v}mid - {v}sd", f"{v}mid", f"{v}mid + {v}sd"),
        )

    def _peek(self, x: float) -> tuple[float, float, float] | None:
        n = self._n + 1
        p = self.period
        if n < p:
            return None
        buf = self._buf
        if n % p == 0:
            window = list(buf)
            if n > p:
                del window[0]
            window.append(x)
            s1, s2 = self._resync(window, x)
            return self._bands(x, s1, s2)
        a = self._anchor
        d = x - a
        if n > p:
            o = buf[0] - a
            return self._bands(a, self._s1 + (d - o), self._s2 + (d * d - o * o))  # as _push's +=
        return self._bands(a, self._s1 + d, self._s2 + d * d)

    def _get_state(self) -> dict[str, Any]:
        return {"buf": list(self._buf), "anchor": self._anchor, "s1": self._s1, "s2": self._s2}

    def _set_state(self, state: dict[str, Any]) -> None:
        self._buf = deque(numbers(state["buf"], low=0.0, field="buf"), maxlen=self.period)
        self._anchor = number(
            state["anchor"], low=0.0, field="anchor"
        )  # a price the sums are taken around (0: none yet)
        self._s1 = number(state["s1"], field="s1")
        self._s2 = number(state["s2"], low=0.0, field="s2")  # a sum of squares


class RealisedVolatility(PeriodIndicator[float], ScalarIndicator[float]):
    """Rolling realised volatility: root mean square of the last ``period >= 1`` log returns.

    ``rv = sqrt(sum(r_i^2) / period)`` with ``r_i = ln(c_i / c_{i-1})``: a per-bar figure
    (multiply by ``sqrt(bars per year)`` to annualise); the returns are not demeaned, as
    usual for realised variance. First value at bar ``period``.

    Examples
    --------
    >>> rv = RealisedVolatility(2)
    >>> [round(v, 6) if v is not None else None for v in map(rv.update, (1.0, 1.01, 1.0, 1.0))]
    [None, None, 0.00995, 0.007036]
    """

    __slots__ = ("_prev", "_buf", "_sum")
    spec_name: ClassVar[str] = "rv"

    def __init__(self, period: int = 20) -> None:
        super().__init__(period)

    def _init_state(self) -> None:
        self._prev: float | None = None
        self._buf: deque[float] = deque(maxlen=self.period)
        self._sum = 0.0
        self._ready_at = self.period + 1

    def _push(self, x: float) -> float | None:
        self._n += 1
        prev = self._prev
        self._prev = x
        if prev is None:
            return None
        r = math.log(x / prev)
        q = r * r
        buf = self._buf
        p = self.period
        m = len(buf)
        if m == p:
            self._sum += q - buf[0]
        else:
            self._sum += q
        buf.append(q)
        if m + 1 < p:
            return None
        if self._n % p == 0:
            self._sum = math.fsum(buf)
        s = self._sum
        return math.sqrt(s / p) if s > 0.0 else 0.0

    def _peek(self, x: float) -> float | None:
        prev = self._prev
        if prev is None:
            return None
        buf = self._buf
        p = self.period
        m = len(buf)
        if m + 1 < p:
            return None
        r = math.log(x / prev)
        q = r * r
        if (self._n + 1) % p == 0:
            window = list(buf)
            if m == p:
                del window[0]
            window.append(q)
            s = math.fsum(window)
        else:
            s = self._sum + (q - buf[0] if m == p else q)
        return math.sqrt(s / p) if s > 0.0 else 0.0

    def _get_state(self) -> dict[str, Any]:
        return {"prev": self._prev, "buf": list(self._buf), "sum": self._sum}

    def _set_state(self, state: dict[str, Any]) -> None:
        # a previous price > 0 (the next divides by it and takes a logarithm), squares >= 0
        # (not capped at a price's 1e9: the indicator takes any positive series; a denormal made
        # the next return inf)
        prev = state["prev"]
        self._prev = None if prev is None else number(prev, low=PRICE_FLOOR, field="prev")
        self._buf = deque(numbers(state["buf"], low=0.0, field="buf"), maxlen=self.period)
        self._sum = number(state["sum"], low=0.0, field="sum")
