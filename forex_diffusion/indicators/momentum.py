"""Momentum: RSI (Wilder), MACD, Stochastic oscillator; TA-Lib conventions."""

from __future__ import annotations

from collections import deque
from typing import Any, ClassVar

from forex_diffusion.errors import ConfigError
from forex_diffusion.indicators.base import (
    BarIndicator,
    BarLike,
    PeriodIndicator,
    ScalarIndicator,
    cascade_ready_steps,
    check_period,
    wilder_ready_steps,
)
from forex_diffusion.indicators.extrema import Max, Min, push_high_low
from forex_diffusion.indicators.fusion import Part, extrema_lines, literal, sma_lines
from forex_diffusion.indicators.moving import EMA, SMA
from forex_diffusion.indicators.values import MACDValue, StochasticValue
from forex_diffusion.state import number, numbers

__all__ = ["MACD", "RSI", "Stochastic"]


class RSI(PeriodIndicator[float], ScalarIndicator[float]):
    """Relative strength index with Wilder's smoothing over ``period >= 2`` changes, TA-Lib conventions.

    The first value (bar ``period``) uses the plain means of the gains and losses of the
    first ``period`` changes; then ``avg = (avg * (period - 1) + x) / period``.
    ``RSI = 100 * gain / (gain + loss)``, and 0 when both are 0 (as TA-Lib).

    Examples
    --------
    >>> rsi = RSI(2)
    >>> [rsi.update(x) for x in (1.0, 2.0, 1.5, 2.5)]
    [None, None, 66.66666666666666, 85.71428571428571]
    """

    __slots__ = ("_prev", "_gain", "_loss")
    spec_name: ClassVar[str] = "rsi"
    min_period: ClassVar[int] = 2

    def __init__(self, period: int = 14) -> None:
        super().__init__(period)

    def _init_state(self) -> None:
        self._prev = 0.0
        self._gain = 0.0
        self._loss = 0.0
        p = self.period
        self._ready_at = p + 1 + wilder_ready_steps(p)

    def _push(self, x: float) -> float | None:
        n = self._n + 1
        self._n = n
        d = x - self._prev
        self._prev = x
        if n == 1:
            return None
        if n <= self.period:  # plain sums of the first period - 1 changes
            if d < 0:
                self._loss -= d
            else:
                self._gain += d
            return None
        self._gain, self._loss, rsi = self._smoothed(d, n)
        return rsi

    def _smoothed(self, d: float, n: int) -> tuple[float, float, float]:
        """Wilder's averages of gains and losses with the change ``d`` of input ``n`` (> period),
        and their RSI: at ``n = period + 1`` the first means, then the recursion."""
        p = self.period
        g = self._gain
        lo = self._loss
        if n > p + 1:
            g *= p - 1
            lo *= p - 1
        if d < 0:
            lo -= d
        else:
            g += d
        g /= p
        lo /= p
        t = g + lo
        return g, lo, 100.0 * (g / t) if t != 0.0 else 0.0

    def fused_part(self, v: str) -> Part:
        """The steady-state :meth:`_push` above as fused-step source lines (locals prefixed ``v``)."""
        p = self.period
        return Part(
            steady=p + 2,
            state=((f"{v}prev", "_prev"), (f"{v}g", "_gain"), (f"{v}l", "_loss")),
            refs=(),
            blocks=(
                (
                    "",
                    (
                        f"{v}d = c - {v}prev",
                        f"{v}prev = c",
                        f"{v}g *= {p - 1}",
                        f"{v}l *= {p - 1}",
                        f"if {v}d < 0:",
                        f"    {v}l -= {v}d",
                        "else:",
                        f"    {v}g += {v}d",
                        f"{v}g /= {p}",
                        f"{v}l /= {p}",
                        f"{v}t = {v}g + {v}l",
                        f"{v}out = 100.0 * ({v}g / {v}t) if {v}t != 0.0 else 0.0",
                    ),
                ),
            ),
            outs=(f"{v}out",),
        )

    def _peek(self, x: float) -> float | None:
        n = self._n + 1
        if n <= self.period:
            return None
        return self._smoothed(x - self._prev, n)[2]

    def _get_state(self) -> dict[str, Any]:
        return {"prev": self._prev, "gain": self._gain, "loss": self._loss}

    def _set_state(self, state: dict[str, Any]) -> None:
        self._prev = number(state["prev"], field="prev")
        self._gain = number(state["gain"], field="gain")
        self._loss = number(state["loss"], field="loss")


class MACD(ScalarIndicator[MACDValue]):
    """MACD: EMA(fast) - EMA(slow), its EMA(signal), and the histogram; TA-Lib seeding.

    As in TA-Lib, both EMAs start at bar ``slow - 1``: the slow one from the mean of the
    first ``slow`` inputs, the fast one from the mean of the last ``fast`` of them (not
    from the first ``fast`` inputs, which TA-Lib's stand-alone ``EMA`` would use). The
    signal is an EMA of the MACD line seeded by the mean of its first ``signal`` values,
    and all three outputs start at bar ``slow + signal - 2``. Equals TA-Lib ``MACD`` from
    its first value.

    Parameters
    ----------
    fast, slow, signal
        EMA spans; ``fast < slow``.

    Examples
    --------
    >>> m = MACD(2, 3, 2)
    >>> [m.update(x) for x in (1.0, 2.0, 3.0)]
    [None, None, None]
    >>> m.update(5.0)
    MACDValue(macd=0.6666666666666661, signal=0.583333333333333, histogram=0.08333333333333304)
    """

    __slots__ = ("fast", "slow", "signal", "_kf", "_ks", "_recent", "_ssum", "_fe", "_se", "_sig")
    _params: ClassVar[tuple[str, ...]] = ("fast", "slow", "signal")
    spec_name: ClassVar[str] = "macd"
    composite = MACDValue

    def __init__(self, fast: int = 12, slow: int = 26, signal: int = 9) -> None:
        self.fast = check_period("fast", fast)
        self.slow = check_period("slow", slow, 2)
        self.signal = check_period("signal", signal)
        if fast >= slow:
            raise ConfigError(f"fast ({fast}) must be shorter than slow ({slow})")
        self._kf = 2.0 / (fast + 1)
        self._ks = 2.0 / (slow + 1)
        self.reset()

    @property
    def columns(self) -> tuple[str, ...]:
        f, s, g = self.fast, self.slow, self.signal
        return (f"macd_{f}_{s}", f"macd_signal_{g}", f"macd_hist_{f}_{s}_{g}")

    def _init_state(self) -> None:
        self._recent: deque[float] = deque(maxlen=self.fast)
        self._ssum = 0.0
        self._fe = 0.0
        self._se = 0.0
        self._sig = EMA(self.signal)
        rates = [1.0 - self._ks, 1.0 - 2.0 / (self.signal + 1)]
        self._ready_at = self.slow + cascade_ready_steps(rates)

    def _lines(self, x: float, n: int) -> tuple[float, float] | None:
        """Fast and slow EMA after ``x`` as input number ``n``; None before ``slow``."""
        s = self.slow
        if n > s:
            fe = self._fe
            se = self._se
            return (x - fe) * self._kf + fe, (x - se) * self._ks + se
        if n < s:
            return None
        recent = list(self._recent)
        if len(recent) == self.fast:
            del recent[0]
        recent.append(x)
        total = 0.0
        for v in recent:  # left to right, as TA-Lib sums its seed
            total += v
        return total / self.fast, (self._ssum + x) / s

    def _push(self, x: float) -> tuple[float, float, float] | None:
        n = self._n + 1
        self._n = n
        if n > self.slow:  # steady state: _lines and the signal EMA's _push, inlined
            fe = self._fe
            fe = (x - fe) * self._kf + fe
            se = self._se
            se = (x - se) * self._ks + se
            self._fe = fe
            self._se = se
            m = fe - se
            sig_ema = self._sig
            k = sig_ema._n + 1
            if k > sig_ema.period:
                sig_ema._n = k
                e = sig_ema._ema
                e = (m - e) * sig_ema._k + e
                sig_ema._ema = e
                return (m, e, m - e)
            sig = sig_ema._push(m)
            if sig is None:
                return None
            return (m, sig, m - sig)
        lines = self._lines(x, n)
        if n <= self.slow:
            self._recent.append(x)
            self._ssum += x
        if lines is None:
            return None
        fe, se = lines
        self._fe = fe
        self._se = se
        m = fe - se
        sig = self._sig._push(m)
        if sig is None:
            return None
        return (m, sig, m - sig)

    def fused_part(self, v: str) -> Part:
        """The steady-state :meth:`_push` above as fused-step source lines (locals prefixed ``v``)."""
        return Part(
            steady=self.slow + self.signal,
            state=((f"{v}fe", "_fe"), (f"{v}se", "_se"), (f"{v}sg", "_sig._ema")),
            refs=(),
            blocks=(
                (
                    "",
                    (
                        f"{v}fe = (c - {v}fe) * {literal(self._kf)} + {v}fe",
                        f"{v}se = (c - {v}se) * {literal(self._ks)} + {v}se",
                        f"{v}m = {v}fe - {v}se",
                        f"{v}sg = ({v}m - {v}sg) * {literal(self._sig._k)} + {v}sg",
                    ),
                ),
            ),
            outs=(f"{v}m", f"{v}sg", f"{v}m - {v}sg"),
            counters=(("_n", 0), ("_sig._n", -(self.slow - 1))),
        )

    def _peek(self, x: float) -> tuple[float, float, float] | None:
        lines = self._lines(x, self._n + 1)
        if lines is None:
            return None
        m = lines[0] - lines[1]
        sig = self._sig._peek(m)
        if sig is None:
            return None
        return (m, sig, m - sig)

    def _get_state(self) -> dict[str, Any]:
        return {
            "recent": list(self._recent),
            "ssum": self._ssum,
            "fe": self._fe,
            "se": self._se,
            "sig": self._sig.snapshot(),
        }

    def _set_state(self, state: dict[str, Any]) -> None:
        self._recent = deque(numbers(state["recent"], field="recent"), maxlen=self.fast)
        self._ssum = number(state["ssum"], field="ssum")
        self._fe = number(state["fe"], field="fe")
        self._se = number(state["se"], field="se")
        sig = EMA.restore(state["sig"])
        assert isinstance(sig, EMA)
        self._sig = sig


class Stochastic(BarIndicator[StochasticValue]):
    """Stochastic oscillator %K / %D, TA-Lib conventions.

    Raw %K is ``100 * (close - LL) / (HH - LL)`` over the last ``k_period`` bars (0 when
    ``HH == LL``); %K is its SMA over ``smooth_k`` (1: the fast stochastic) and %D the SMA
    of %K over ``d_period``. With ``smooth_k=1`` it equals TA-Lib ``STOCHF(k, d, SMA)``;
    with ``smooth_k=3`` TA-Lib ``STOCH(k, 3, SMA, d, SMA)``, both from their first value.

    Parameters
    ----------
    k_period
        Look-back of the highest high / lowest low.
    d_period
        SMA length of %D.
    smooth_k
        SMA length applied to raw %K (1 = none).

    Examples
    --------
    >>> from forex_diffusion.indicators.base import SimpleBar as B
    >>> st = Stochastic(2, 2)
    >>> [st.update(b) for b in (B(2, 1, 1.5), B(3, 1, 2.5), B(3, 2, 2.0))]
    [None, None, StochasticValue(k=50.0, d=62.5)]
    """

    __slots__ = ("k_period", "d_period", "smooth_k", "_hh", "_ll", "_ks", "_ds")
    _params: ClassVar[tuple[str, ...]] = ("k_period", "d_period", "smooth_k")
    spec_name: ClassVar[str] = "stoch"
    composite = StochasticValue

    def __init__(self, k_period: int = 14, d_period: int = 3, smooth_k: int = 1) -> None:
        self.k_period = check_period("k_period", k_period)
        self.d_period = check_period("d_period", d_period)
        self.smooth_k = check_period("smooth_k", smooth_k)
        self.reset()

    @property
    def columns(self) -> tuple[str, ...]:
        k = f"{self.k_period}" if self.smooth_k == 1 else f"{self.k_period}_{self.smooth_k}"
        return (f"stoch_k_{k}", f"stoch_d_{self.d_period}")

    def _init_state(self) -> None:
        self._hh = Max(self.k_period)
        self._ll = Min(self.k_period)
        self._ks = SMA(self.smooth_k) if self.smooth_k > 1 else None
        self._ds = SMA(self.d_period)
        self._ready_at = self.k_period + self.smooth_k + self.d_period - 2

    @staticmethod
    def _raw_k(c: float, hh: float, ll: float) -> float:
        diff = (hh - ll) / 100.0
        return (c - ll) / diff if diff != 0.0 else 0.0

    def _push(self, bar: BarLike) -> tuple[float, float] | None:
        self._n += 1
        p = self.k_period
        i, hh, j, ll = push_high_low(self._hh, self._ll, bar.high, bar.low)
        if i + 1 < p or j + 1 < p:
            return None
        diff = (hh - ll) / 100.0  # _raw_k, inlined
        k: float | None = (bar.close - ll) / diff if diff != 0.0 else 0.0
        ks = self._ks
        if ks is not None:
            k = ks._push(k)  # type: ignore[arg-type]
            if k is None:
                return None
        d = self._ds._push(k)  # type: ignore[arg-type]
        if d is None:
            return None
        return (k, d)  # type: ignore[return-value]

    def fused_part(self, v: str) -> Part:
        """The steady-state :meth:`_push` above as fused-step source lines (locals prefixed ``v``)."""
        k, d, s = self.k_period, self.d_period, self.smooth_k
        lines = [
            *extrema_lines(v, k),
            f"{v}diff = ({v}hh - {v}ll) / 100.0",
            f"{v}k = (c - {v}ll) / {v}diff if {v}diff != 0.0 else 0.0",
        ]
        state = [(f"{v}da", "_ds._anchor"), (f"{v}ds", "_ds._sum")]
        refs = [(f"{v}qh", "_hh._dq"), (f"{v}ql", "_ll._dq"), (f"{v}db", "_ds._buf")]
        counters = [("_n", 0), ("_hh._n", 0), ("_ll._n", 0), ("_ds._n", -(k + s - 2))]
        if s > 1:
            lines += [*sma_lines(f"{v}k", s, f"{v}k", f"(n - {k - 1})"), f"{v}k = {v}kout"]
            state += [(f"{v}ka", "_ks._anchor"), (f"{v}ks", "_ks._sum")]
            refs.append((f"{v}kb", "_ks._buf"))
            counters.append(("_ks._n", -(k - 1)))
        lines += sma_lines(f"{v}d", d, f"{v}k", f"(n - {k + s - 2})")
        return Part(
            steady=k + s + d - 1,
            state=tuple(state),
            refs=tuple(refs),
            blocks=(("", tuple(lines)),),
            outs=(f"{v}k", f"{v}dout"),
            counters=tuple(counters),
        )

    def _peek(self, bar: BarLike) -> tuple[float, float] | None:
        hh = self._hh._peek(bar.high)
        ll = self._ll._peek(bar.low)
        if hh is None or ll is None:
            return None
        k: float | None = self._raw_k(bar.close, hh, ll)
        if self._ks is not None:
            k = self._ks._peek(k)  # type: ignore[arg-type]
            if k is None:
                return None
        d = self._ds._peek(k)  # type: ignore[arg-type]
        if d is None:
            return None
        return (k, d)  # type: ignore[return-value]

    def _get_state(self) -> dict[str, Any]:
        return {
            "hh": self._hh.snapshot(),
            "ll": self._ll.snapshot(),
            "ks": None if self._ks is None else self._ks.snapshot(),
            "ds": self._ds.snapshot(),
        }

    def _set_state(self, state: dict[str, Any]) -> None:
        self._hh = Max.restore(state["hh"])  # type: ignore[assignment]
        self._ll = Min.restore(state["ll"])  # type: ignore[assignment]
        self._ks = None if state["ks"] is None else SMA.restore(state["ks"])  # type: ignore[assignment]
        self._ds = SMA.restore(state["ds"])  # type: ignore[assignment]
