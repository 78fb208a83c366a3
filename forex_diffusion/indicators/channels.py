"""Price channels: Donchian (highest high / lowest low) and Keltner (EMA ± m · ATR)."""

from __future__ import annotations

import math
from typing import Any, ClassVar

from forex_diffusion.errors import ConfigError
from forex_diffusion.indicators.base import BarIndicator, BarLike, PeriodIndicator, check_period
from forex_diffusion.indicators.extrema import Max, Min, push_high_low
from forex_diffusion.indicators.fusion import TRUE_RANGE, Part, ema_block, extrema_lines, literal, true_range
from forex_diffusion.indicators.moving import EMA
from forex_diffusion.indicators.values import BandsValue, ChannelValue
from forex_diffusion.indicators.volatility import ATR

__all__ = ["Donchian", "Keltner"]


class Donchian(PeriodIndicator[ChannelValue], BarIndicator[ChannelValue]):
    """Donchian channel: highest high and lowest low of the last ``period`` bars (``period >= 1``).

    The current bar is included (as TA-Lib ``MAX``/``MIN`` and pandas ``rolling``).

    Examples
    --------
    >>> from forex_diffusion.indicators.base import SimpleBar as B
    >>> dc = Donchian(2)
    >>> [dc.update(b) for b in (B(2, 1, 1.5), B(3, 2, 2.5), B(2.5, 1.5, 2))]
    [None, ChannelValue(upper=3, lower=1), ChannelValue(upper=3, lower=1.5)]
    """

    __slots__ = ("_hh", "_ll")
    spec_name: ClassVar[str] = "donchian"
    composite = ChannelValue

    def __init__(self, period: int = 20) -> None:
        super().__init__(period)

    @property
    def columns(self) -> tuple[str, ...]:
        return (f"donchian_upper_{self.period}", f"donchian_lower_{self.period}")

    def _init_state(self) -> None:
        self._hh = Max(self.period)
        self._ll = Min(self.period)
        self._ready_at = self.period

    def _push(self, bar: BarLike) -> tuple[float, float] | None:
        self._n += 1
        i, hh, _, ll = push_high_low(self._hh, self._ll, bar.high, bar.low)
        if i + 1 < self.period:
            return None
        return (hh, ll)

    def fused_part(self, v: str) -> Part:
        """The steady-state :meth:`_push` above as fused-step source lines (locals prefixed ``v``)."""
        p = self.period
        return Part(
            steady=p,
            state=(),
            refs=((f"{v}qh", "_hh._dq"), (f"{v}ql", "_ll._dq")),
            blocks=(("", extrema_lines(v, p)),),
            outs=(f"{v}hh", f"{v}ll"),
            counters=(("_n", 0), ("_hh._n", 0), ("_ll._n", 0)),
        )

    def _peek(self, bar: BarLike) -> tuple[float, float] | None:
        hh = self._hh._peek(bar.high)
        if hh is None:
            return None
        return (hh, self._ll._peek(bar.low))  # type: ignore[return-value]

    def _get_state(self) -> dict[str, Any]:
        return {"hh": self._hh.snapshot(), "ll": self._ll.snapshot()}

    def _set_state(self, state: dict[str, Any]) -> None:
        self._hh = Max.restore(state["hh"])  # type: ignore[assignment]
        self._ll = Min.restore(state["ll"])  # type: ignore[assignment]


class Keltner(BarIndicator[BandsValue]):
    """Keltner channel: EMA(``period``) of the close ± ``multiplier`` · ATR(``atr_period``).

    The EMA and the ATR follow TA-Lib seeding (see :class:`EMA`, :class:`ATR`); the first
    value is at the bar where both are defined.

    Parameters
    ----------
    period
        EMA span of the middle line.
    multiplier
        Width in ATRs (> 0).
    atr_period
        Wilder length of the ATR.

    Examples
    --------
    >>> from forex_diffusion.indicators.base import SimpleBar as B
    >>> kc = Keltner(2, 2.0, 1)
    >>> [kc.update(b) for b in (B(2, 1, 1.5), B(3, 2, 2.5), B(3, 1, 2))]
    [None, BandsValue(lower=-1.0, middle=2.0, upper=5.0), BandsValue(lower=-2.0, middle=2.0, upper=6.0)]
    """

    __slots__ = ("period", "multiplier", "atr_period", "_ema", "_atr")
    _params: ClassVar[tuple[str, ...]] = ("period", "multiplier", "atr_period")
    spec_name: ClassVar[str] = "keltner"
    composite = BandsValue

    def __init__(self, period: int = 20, multiplier: float = 2.0, atr_period: int = 10) -> None:
        self.period = check_period("period", period)
        if not (isinstance(multiplier, (int, float)) and math.isfinite(multiplier) and multiplier > 0):
            raise ConfigError(f"multiplier must be a positive number, got {multiplier!r}")
        self.multiplier = float(multiplier)
        self.atr_period = check_period("atr_period", atr_period)
        self.reset()

    @property
    def columns(self) -> tuple[str, ...]:
        sfx = str(self.period)
        if self.multiplier != 2.0 or self.atr_period != 10:
            sfx += f"_{self.multiplier:g}_{self.atr_period}"
        return (f"keltner_lower_{sfx}", f"keltner_middle_{sfx}", f"keltner_upper_{sfx}")

    def _init_state(self) -> None:
        self._ema = EMA(self.period)
        self._atr = ATR(self.atr_period)
        self._ready_at = max(self._ema.ready_after, self._atr.ready_after)

    def _push(self, bar: BarLike) -> tuple[float, float, float] | None:
        self._n += 1
        em = self._ema
        at = self._atr
        en = em._n + 1
        an = at._n + 1
        if en > em.period and an > at.period + 1:  # steady state: both _push, inlined
            em._n = en
            e = em._ema
            md = (bar.close - e) * em._k + e
            em._ema = md
            at._n = an
            tr = true_range(bar.high, bar.low, at._pc)  # type: ignore[arg-type]  # set: an > 1
            at._pc = bar.close
            p = at.period
            a = (at._atr * (p - 1) + tr) / p
            at._atr = a
            w = self.multiplier * a
            return (md - w, md, md + w)
        return self._bands(self._ema._push(bar.close), self._atr._push(bar))

    def fused_part(self, v: str) -> Part:
        """The steady-state :meth:`_push` above as fused-step source lines (locals prefixed ``v``)."""
        p, ap = self.period, self.atr_period
        return Part(
            steady=max(p + 1, ap + 2),
            state=((f"ema{p}", "_ema._ema"), ("pc", "_atr._pc"), (f"{v}atr", "_atr._atr")),
            refs=(),
            blocks=(
                ema_block(p, self._ema._k),
                TRUE_RANGE,
                (
                    "",
                    (
                        f"{v}atr = ({v}atr * {ap - 1} + tr) / {ap}",
                        f"{v}w = {literal(self.multiplier)} * {v}atr",
                    ),
                ),
            ),
            outs=(f"ema{p} - {v}w", f"ema{p}", f"ema{p} + {v}w"),
            counters=(("_n", 0), ("_ema._n", 0), ("_atr._n", 0)),
        )

    def _peek(self, bar: BarLike) -> tuple[float, float, float] | None:
        return self._bands(self._ema._peek(bar.close), self._atr._peek(bar))

    def _bands(self, mid: float | None, atr: float | None) -> tuple[float, float, float] | None:
        """The channel around ``mid`` at ``multiplier`` ATRs (None while either is undefined)."""
        if mid is None or atr is None:
            return None
        w = self.multiplier * atr
        return (mid - w, mid, mid + w)

    def _get_state(self) -> dict[str, Any]:
        return {"ema": self._ema.snapshot(), "atr": self._atr.snapshot()}

    def _set_state(self, state: dict[str, Any]) -> None:
        self._ema = EMA.restore(state["ema"])  # type: ignore[assignment]
        self._atr = ATR.restore(state["atr"])  # type: ignore[assignment]
