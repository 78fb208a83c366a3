"""Trend strength: ADX (Wilder), TA-Lib conventions."""

from __future__ import annotations

from typing import Any, ClassVar

from forex_diffusion.indicators.base import BarIndicator, BarLike, PeriodIndicator, wilder_ready_steps
from forex_diffusion.indicators.fusion import TRUE_RANGE, Part, true_range
from forex_diffusion.state import number

__all__ = ["ADX"]

_State = tuple[float, float, float, float, float, float, float, float]


class ADX(PeriodIndicator[float], BarIndicator[float]):
    """Average directional index of Wilder length ``period >= 2``, reproducing TA-Lib ``ADX`` step by step.

    Directional moves: ``up = high - prev_high``, ``down = prev_low - low``; +DM = up
    when ``up > down`` and ``up > 0``, -DM = down when ``down > up`` and ``down > 0``.
    TA-Lib seeds the smoothed sums of +DM, -DM and TR with plain sums over the first
    ``period - 1`` changes, then applies Wilder's running sum ``s = s - s/period + x``;
    DX = ``100 |+DI - -DI| / (+DI + -DI)``; the first ADX (bar ``2 * period - 1``) is the
    mean of the first ``period`` DX values, then ``adx = (adx * (period - 1) + dx) / period``
    (a step where TR or +DI + -DI is zero leaves ADX unchanged, as in TA-Lib).

    Examples
    --------
    >>> from forex_diffusion.indicators.base import SimpleBar as B
    >>> adx = ADX(2)
    >>> bars = [B(2, 1, 1.5), B(3, 2, 2.5), B(4, 3, 3.5), B(3.5, 2, 2.5)]
    >>> [adx.update(b) for b in bars]
    [None, None, None, 57.142857142857146]
    """

    __slots__ = ("_ph", "_pl", "_pc", "_pdm", "_mdm", "_tr", "_sdx", "_adx")
    spec_name: ClassVar[str] = "adx"
    min_period: ClassVar[int] = 2
    #: The formula state: each name's value is the slot ``_<name>``, a float.
    _state_names: ClassVar[tuple[str, ...]] = ("ph", "pl", "pc", "pdm", "mdm", "tr", "sdx", "adx")

    def __init__(self, period: int = 14) -> None:
        super().__init__(period)

    def _init_state(self) -> None:
        self._ph = self._pl = self._pc = 0.0
        self._pdm = self._mdm = self._tr = 0.0
        self._sdx = self._adx = 0.0
        self._ready_at = 2 * self.period + wilder_ready_steps(self.period, stages=2)

    def _next(self, h: float, lo: float, c: float, n: int) -> tuple[_State, float | None]:
        """Return the state after bar number ``n`` and its ADX (None before the first)."""
        p = self.period
        if n == 1:
            return (h, lo, c, 0.0, 0.0, 0.0, 0.0, 0.0), None
        ph, pl, pc = self._ph, self._pl, self._pc
        pdm, mdm, tr, sdx, adx = self._pdm, self._mdm, self._tr, self._sdx, self._adx
        up = h - ph
        down = pl - lo
        t = true_range(h, lo, pc)
        if n <= p:  # plain sums over the first period - 1 changes
            if down > 0 and up < down:
                mdm += down
            elif up > 0 and up > down:
                pdm += up
            return (h, lo, c, pdm, mdm, tr + t, sdx, adx), None
        mdm -= mdm / p
        pdm -= pdm / p
        if down > 0 and up < down:
            mdm += down
        elif up > 0 and up > down:
            pdm += up
        tr = tr - tr / p + t
        dx = None
        if tr != 0.0:
            mdi = 100.0 * (mdm / tr)
            pdi = 100.0 * (pdm / tr)
            s = mdi + pdi
            if s != 0.0:
                dx = 100.0 * (abs(mdi - pdi) / s)
        if n < 2 * p:
            if dx is not None:
                sdx += dx
            return (h, lo, c, pdm, mdm, tr, sdx, adx), None
        if n == 2 * p:
            if dx is not None:
                sdx += dx
            adx = sdx / p
        elif dx is not None:
            adx = (adx * (p - 1) + dx) / p
        return (h, lo, c, pdm, mdm, tr, sdx, adx), adx

    def _push(self, bar: BarLike) -> float | None:
        n = self._n + 1
        self._n = n
        state, adx = self._next(bar.high, bar.low, bar.close, n)
        self._ph, self._pl, self._pc, self._pdm, self._mdm, self._tr, self._sdx, self._adx = state
        return adx

    def fused_part(self, v: str) -> Part:
        """The steady-state :meth:`_push` above as fused-step source lines (locals prefixed ``v``)."""
        p = self.period
        return Part(
            steady=2 * p + 1,
            state=(
                (f"{v}ph", "_ph"),
                (f"{v}pl", "_pl"),
                ("pc", "_pc"),
                (f"{v}pdm", "_pdm"),
                (f"{v}mdm", "_mdm"),
                (f"{v}tr", "_tr"),
                (f"{v}adx", "_adx"),
            ),
            refs=(),
            blocks=(
                (
                    "",
                    (
                        f"{v}up = h - {v}ph",
                        f"{v}down = {v}pl - lo",
                        f"{v}ph = h",
                        f"{v}pl = lo",
                    ),
                ),
                TRUE_RANGE,
                (
                    "",
                    (
                        f"{v}mdm -= {v}mdm / {p}",
                        f"{v}pdm -= {v}pdm / {p}",
                        f"if {v}down > 0 and {v}up < {v}down:",
                        f"    {v}mdm += {v}down",
                        f"elif {v}up > 0 and {v}up > {v}down:",
                        f"    {v}pdm += {v}up",
                        f"{v}tr = {v}tr - {v}tr / {p} + tr",
                        f"if {v}tr != 0.0:",
                        f"    {v}mdi = 100.0 * ({v}mdm / {v}tr)",
                        f"    {v}pdi = 100.0 * ({v}pdm / {v}tr)",
                        f"    {v}sum = {v}mdi + {v}pdi",
                        f"    if {v}sum != 0.0:",
                        f"        {v}adx = ({v}adx * {p - 1} + 100.0 * (abs({v}mdi - {v}pdi) / {v}sum)) / {p}",
                    ),
                ),
            ),
            outs=(f"{v}adx",),
        )

    def _peek(self, bar: BarLike) -> float | None:
        return self._next(bar.high, bar.low, bar.close, self._n + 1)[1]

    def _get_state(self) -> dict[str, Any]:
        return {key: getattr(self, f"_{key}") for key in self._state_names}

    def _set_state(self, state: dict[str, Any]) -> None:
        for key in self._state_names:
            setattr(self, f"_{key}", number(state[key], field=key))
