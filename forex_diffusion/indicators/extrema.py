"""Rolling maximum and minimum (monotonic deque: amortised O(1), revisable in O(1))."""

from __future__ import annotations

from abc import abstractmethod
from collections import deque
from typing import Any, ClassVar

from forex_diffusion.indicators.base import PeriodIndicator, ScalarIndicator
from forex_diffusion.state import count, number

__all__ = ["Max", "Min", "push_high_low"]


class _Extreme(PeriodIndicator[float], ScalarIndicator[float]):
    """What :class:`Max` and :class:`Min` share: the window, the deque, its state and its
    step; each names the comparison ``_drops(kept, x)`` that drops a kept input for ``x``.
    """

    __slots__ = ("_dq",)

    @staticmethod
    @abstractmethod
    def _drops(kept: float, x: float) -> bool:
        """Whether ``x`` arriving drops the kept input ``kept`` (it can no longer be the extreme)."""

    def __init__(self, period: int = 20) -> None:
        super().__init__(period)

    def _init_state(self) -> None:
        self._dq: deque[tuple[int, float]] = deque()
        self._ready_at = self.period

    def _get_state(self) -> dict[str, Any]:
        return {"dq": [[j, v] for j, v in self._dq]}

    def _set_state(self, state: dict[str, Any]) -> None:
        self._dq = deque((count(j, field="dq index"), number(v, field="dq value")) for j, v in state["dq"])

    def _push(self, x: float) -> float | None:
        i = self._n
        self._n = i + 1
        dq = self._dq
        drops = self._drops
        while dq and drops(dq[-1][1], x):
            dq.pop()
        dq.append((i, x))
        if dq[0][0] <= i - self.period:
            dq.popleft()
        if i + 1 < self.period:
            return None
        return dq[0][1]

    def _peek(self, x: float) -> float | None:
        i = self._n
        if i + 1 < self.period:
            return None
        dq = self._dq
        if not dq:
            return x
        j, m = dq[0]
        if j <= i - self.period:
            if len(dq) == 1:
                return x
            m = dq[1][1]
        return x if self._drops(m, x) else m


class Max(_Extreme):
    """Highest input over the last ``period`` inputs, the newest included (``period >= 1``; TA-Lib ``MAX``).

    A monotonic deque of ``(index, value)`` keeps only inputs that can still be the
    maximum; its front is the maximum. The maximum of the window with the oldest input
    dropped is the front or, when the front is leaving, the next entry, which is what
    makes :meth:`revise` O(1).

    Examples
    --------
    >>> m = Max(3)
    >>> [m.update(x) for x in (3.0, 1.0, 2.0, 0.5, 0.7)]
    [None, None, 3.0, 2.0, 2.0]
    """

    __slots__ = ()
    spec_name: ClassVar[str] = "max"

    @staticmethod
    def _drops(kept: float, x: float) -> bool:
        return kept <= x


class Min(_Extreme):
    """Lowest input over the last ``period`` inputs: :class:`Max` mirrored (TA-Lib ``MIN``).

    Examples
    --------
    >>> m = Min(2)
    >>> [m.update(x) for x in (3.0, 1.0, 2.0, 4.0)]
    [None, 1.0, 1.0, 2.0]
    """

    __slots__ = ()
    spec_name: ClassVar[str] = "min"

    @staticmethod
    def _drops(kept: float, x: float) -> bool:
        return kept >= x


def push_high_low(mx: Max, mn: Min, high: float, low: float) -> tuple[int, float, int, float]:
    """``mx._push(high)`` and ``mn._push(low)`` inlined; return ``(i, max, j, min)``.

    ``i`` and ``j`` are the inputs' indices (0-based); the max and min are the deques'
    fronts, defined once ``i + 1 >= period`` (Donchian's and Stochastic's high/low step).
    """
    p = mx.period
    i = mx._n
    mx._n = i + 1
    dq = mx._dq
    while dq and dq[-1][1] <= high:
        dq.pop()
    dq.append((i, high))
    if dq[0][0] <= i - p:
        dq.popleft()
    hh = dq[0][1]
    p = mn.period
    j = mn._n
    mn._n = j + 1
    dq = mn._dq
    while dq and dq[-1][1] >= low:
        dq.pop()
    dq.append((j, low))
    if dq[0][0] <= j - p:
        dq.popleft()
    return i, hh, j, dq[0][1]
