"""Moving averages: simple (SMA) and exponential (EMA), TA-Lib conventions."""

from __future__ import annotations

import math
from collections import deque
from typing import Any, ClassVar

from forex_diffusion.indicators.base import PeriodIndicator, ScalarIndicator, cascade_ready_steps, check_period
from forex_diffusion.indicators.fusion import Part, ema_block, sma_lines
from forex_diffusion.state import number, numbers

__all__ = ["EMA", "SMA"]


class SMA(PeriodIndicator[float], ScalarIndicator[float]):
    """Simple moving average over the last ``period`` inputs (``period >= 1``).

    The window sum is kept relative to an anchor (a recent input) and recomputed
    exactly from the window every ``period`` updates, so rounding error stays bounded
    on endless streams. Equals TA-Lib ``SMA`` from its first value (bar ``period - 1``).

    Examples
    --------
    >>> sma = SMA(3)
    >>> [sma.update(x) for x in (1.0, 2.0, 3.0, 4.0)]
    [None, None, 2.0, 3.0]
    >>> sma.revise(7.0), sma.value, sma.committed_value
    (4.666666666666667, 4.666666666666667, 3.0)
    """

    __slots__ = ("_buf", "_anchor", "_sum")
    spec_name: ClassVar[str] = "sma"

    def __init__(self, period: int = 20) -> None:
        super().__init__(period)

    def _init_state(self) -> None:
        self._buf: deque[float] = deque(maxlen=self.period)
        self._anchor = 0.0
        self._sum = 0.0
        self._ready_at = self.period

    def _push(self, x: float) -> float | None:
        n = self._n + 1
        self._n = n
        p = self.period
        buf = self._buf
        if n == 1:
            self._anchor = x
        if n > p:
            self._sum += x - buf[0]
        else:
            self._sum += x - self._anchor
        buf.append(x)
        if n < p:
            return None
        if n % p == 0:  # exact resync, amortised O(1)
            self._anchor = x
            self._sum = math.fsum(buf) - p * x
        return self._anchor + self._sum / p

    def fused_part(self, v: str) -> Part:
        """The steady-state :meth:`_push` above as fused-step source lines (locals prefixed ``v``)."""
        p = self.period
        return Part(
            steady=p + 1,
            state=((f"{v}a", "_anchor"), (f"{v}s", "_sum")),
            refs=((f"{v}b", "_buf"),),
            blocks=(("", sma_lines(v, p, "c", "n")),),
            outs=(f"{v}out",),
        )

    def _peek(self, x: float) -> float | None:
        n = self._n + 1
        p = self.period
        if n < p:
            return None
        buf = self._buf
        if n % p == 0:  # the same exact resync as _push, so revise == update bit for bit
            window = list(buf)
            if n > p:
                del window[0]
            window.append(x)
            return x + (math.fsum(window) - p * x) / p
        s = self._sum + (x - buf[0] if n > p else x - self._anchor)
        return self._anchor + s / p

    def _get_state(self) -> dict[str, Any]:
        return {"buf": list(self._buf), "anchor": self._anchor, "sum": self._sum}

    def _set_state(self, state: dict[str, Any]) -> None:
        self._buf = deque(numbers(state["buf"], field="buf"), maxlen=self.period)
        self._anchor = number(state["anchor"], field="anchor")
        self._sum = number(state["sum"], field="sum")


class EMA(PeriodIndicator[float], ScalarIndicator[float]):
    """Exponential moving average of span ``period >= 1``, ``alpha = 2 / (period + 1)``, seeded like TA-Lib.

    The first value (bar ``period - 1``) is the SMA of the first ``period`` inputs; then
    ``ema += alpha * (x - ema)``. Equals TA-Lib ``EMA`` from its first value.
    ``is_ready`` once the seed's weight ``(1 - alpha)^k`` is at most the readiness
    tolerance.

    Examples
    --------
    >>> ema = EMA(3)
    >>> [ema.update(x) for x in (1.0, 2.0, 3.0, 5.0)]
    [None, None, 2.0, 3.5]
    """

    __slots__ = ("_k", "_sum", "_ema")
    spec_name: ClassVar[str] = "ema"

    def __init__(self, period: int = 20) -> None:
        self.period = check_period("period", period)
        self._k = 2.0 / (period + 1)
        self.reset()

    def _init_state(self) -> None:
        self._sum = 0.0
        self._ema = 0.0
        self._ready_at = self.period + (cascade_ready_steps([1.0 - self._k]) if self.period > 1 else 0)

    def _push(self, x: float) -> float | None:
        n = self._n + 1
        self._n = n
        p = self.period
        if n > p:
            e = self._ema
            e = (x - e) * self._k + e
            self._ema = e
            return e
        self._sum += x
        if n < p:
            return None
        e = self._sum / p
        self._ema = e
        return e

    def fused_part(self, v: str) -> Part:
        """The steady-state :meth:`_push` above as fused-step source lines (locals prefixed ``v``)."""
        p = self.period
        return Part(
            steady=p + 1, state=((f"ema{p}", "_ema"),), refs=(), blocks=(ema_block(p, self._k),), outs=(f"ema{p}",)
        )

    def _peek(self, x: float) -> float | None:
        n = self._n + 1
        p = self.period
        if n > p:
            e = self._ema
            return (x - e) * self._k + e
        if n < p:
            return None
        return (self._sum + x) / p

    def _get_state(self) -> dict[str, Any]:
        return {"sum": self._sum, "ema": self._ema}

    def _set_state(self, state: dict[str, Any]) -> None:
        self._sum = number(state["sum"], field="sum")
        self._ema = number(state["ema"], field="ema")
