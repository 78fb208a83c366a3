"""The pieces of a fused step (see :mod:`.fused`): :class:`Part` and the source lines members share.

Each indicator class writes its own steady-state step as a :class:`Part` in its
``fused_part`` method, next to the ``_push`` it mirrors; :mod:`.fused` assembles a bank's
parts into one generated function. The line builders here are the sub-steps several
classes share (the true range, an EMA of the close, an SMA's steady push, a rolling
max/min), so each formula has one site.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["TRUE_RANGE", "Lines", "Part", "ema_block", "extrema_lines", "literal", "sma_lines", "true_range"]

Lines = tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Part:
    """One member's steady-state step, as source lines for the generated function.

    The lines read ``c``, ``h``, ``lo`` (the bar's close, high, low) and ``n`` (the number
    of closed candles including this one), and assign the locals named in ``outs``.

    Attributes
    ----------
    steady
        First input number (1-based) from which these lines equal ``_push``.
    state
        ``(local, attribute path)`` of immutable state (floats): loaded, flushed back.
    refs
        ``(local, attribute path)`` of mutable containers, shared by reference: loaded only.
    blocks
        ``(key, lines)`` in order; a non-empty key is emitted once per bank (shared work).
    outs
        One expression per output column.
    counters
        ``(attribute path of an _n, offset from n)``; checked on load, written on flush.
    """

    steady: int
    state: tuple[tuple[str, str], ...]
    refs: tuple[tuple[str, str], ...]
    blocks: tuple[tuple[str, Lines], ...]
    outs: tuple[str, ...]
    counters: tuple[tuple[str, int], ...] = (("_n", 0),)


def literal(x: float) -> str:
    """A float literal that reads back as exactly ``x``."""
    s = repr(float(x))
    if not math.isfinite(float(x)):  # pragma: no cover - parameters are validated finite
        raise ValueError(f"no literal for {x!r}")
    return s


TRUE_RANGE: tuple[str, Lines] = (
    "tr",
    (
        "tr = h - lo",
        "tr_v = h - pc if h > pc else pc - h",
        "if tr_v > tr:",
        "    tr = tr_v",
        "tr_v = lo - pc if lo > pc else pc - lo",
        "if tr_v > tr:",
        "    tr = tr_v",
        "pc = c",
    ),
)
"""The true range with the shared previous close ``pc`` (:func:`true_range`'s order of tests)."""


def true_range(high: float, low: float, prev_close: float) -> float:
    """The true range, ``max(high - low, |high - prev_close|, |low - prev_close|)``, as
    :data:`TRUE_RANGE` computes it (same tests, same order): the classes' own steps call it."""
    tr = high - low
    v = high - prev_close if high > prev_close else prev_close - high
    if v > tr:
        tr = v
    v = low - prev_close if low > prev_close else prev_close - low
    if v > tr:
        tr = v
    return tr


def ema_block(period: int, k: float) -> tuple[str, Lines]:
    e = f"ema{period}"
    return (f"ema:{period}", (f"{e} = (c - {e}) * {literal(k)} + {e}",))


def sma_lines(v: str, p: int, x: str, count: str) -> Lines:
    """SMA._push in steady state (input number > period); result in ``{v}out``."""
    return (
        f"{v}s += {x} - {v}b[0]",
        f"{v}b.append({x})",
        f"if {count} % {p} == 0:",
        f"    {v}a = {x}",
        f"    {v}s = fsum({v}b) - {p} * {x}",
        f"{v}out = {v}a + {v}s / {p}",
    )


def extrema_lines(v: str, p: int) -> Lines:
    """Max._push and Min._push of high and low (index ``n - 1``); fronts in ``{v}hh``, ``{v}ll``."""
    return (
        f"{v}i = n - 1",
        f"{v}q = {v}qh",
        f"while {v}q and {v}q[-1][1] <= h:",
        f"    {v}q.pop()",
        f"{v}q.append(({v}i, h))",
        f"if {v}q[0][0] <= {v}i - {p}:",
        f"    {v}q.popleft()",
        f"{v}hh = {v}q[0][1]",
        f"{v}q = {v}ql",
        f"while {v}q and {v}q[-1][1] >= lo:",
        f"    {v}q.pop()",
        f"{v}q.append(({v}i, lo))",
        f"if {v}q[0][0] <= {v}i - {p}:",
        f"    {v}q.popleft()",
        f"{v}ll = {v}q[0][1]",
    )
