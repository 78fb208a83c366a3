"""The fused step of an indicator bank: every member's steady state in one generated function.

Calling each member's ``_push`` costs a Python call, attribute loads and stores for every
state variable, a tuple per composite output and the bank's flattening of it: about half of
the bank's time per candle. Once every member is past its warm-up, the bank instead runs
one generated ``step(bar)`` whose source is every member's steady-state ``_push`` written
out (:class:`Part`) with the state in closure cells, the parameters as literals, and
sub-computations that are equal by construction computed once: the true range (ATR, ADX,
Keltner's ATR: they all hold the previous close) and an EMA of the close that two members
share (``ema_20`` and Keltner's middle line).

Exactness: a part performs the same floating-point operations, in the same order, as its
class's ``_push`` in steady state (including the periodic exact resyncs), so the values
are bit for bit those of the members fed one by one;
``tests/unit/indicators/test_fused.py`` checks this on real candles for every class. A
member without a part (:func:`part_of` returns None) is called through its ``_push``
inside the fused step.

State: while fused, the members' own attributes are stale; ``flush()`` writes the cells
back (the bank calls it before a revision, a snapshot or handing out its members) and
``load()`` reads them in (when the bank switches to the fused step). ``load`` checks that
shared values agree and that every counter is where the structure says; it returns False
otherwise and the bank keeps calling the members.

The generated source depends only on the spec, so it is compiled once per spec and shared
by every bank of that spec; a bank holds only its closures and cells.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from .base import Indicator
from .channels import Donchian, Keltner
from .hurst import Hurst, resync_step
from .momentum import MACD, RSI, Stochastic
from .moving import EMA, SMA
from .registry import build_indicator, indicator_token
from .trend import ADX
from .volatility import ATR, BollingerBands

__all__ = ["Kernel", "Part", "build_kernel", "part_of"]

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


def _f(x: float) -> str:
    """A float literal that reads back as exactly ``x``."""
    s = repr(float(x))
    if not math.isfinite(float(x)):  # pragma: no cover - parameters are validated finite
        raise ValueError(f"no literal for {x!r}")
    return s


_TRUE_RANGE: tuple[str, Lines] = (
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
"""The true range with the shared previous close ``pc`` (ATR._push's order of tests)."""


def _ema_block(period: int, k: float) -> tuple[str, Lines]:
    e = f"ema{period}"
    return (f"ema:{period}", (f"{e} = (c - {e}) * {_f(k)} + {e}",))


def _sma_lines(v: str, p: int, x: str, count: str) -> Lines:
    """SMA._push in steady state (input number > period); result in ``{v}out``."""
    return (
        f"{v}s += {x} - {v}b[0]",
        f"{v}b.append({x})",
        f"if {count} % {p} == 0:",
        f"    {v}a = {x}",
        f"    {v}s = fsum({v}b) - {p} * {x}",
        f"{v}out = {v}a + {v}s / {p}",
    )


def _sma(ind: SMA, v: str) -> Part:
    p = ind.period
    return Part(
        steady=p + 1,
        state=((f"{v}a", "_anchor"), (f"{v}s", "_sum")),
        refs=((f"{v}b", "_buf"),),
        blocks=(("", _sma_lines(v, p, "c", "n")),),
        outs=(f"{v}out",),
    )


def _ema(ind: EMA, v: str) -> Part:
    p = ind.period
    return Part(steady=p + 1, state=((f"ema{p}", "_ema"),), refs=(), blocks=(_ema_block(p, ind._k),), outs=(f"ema{p}",))


def _rsi(ind: RSI, v: str) -> Part:
    p = ind.period
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


def _atr(ind: ATR, v: str) -> Part:
    p = ind.period
    return Part(
        steady=p + 2,
        state=(("pc", "_pc"), (f"{v}atr", "_atr")),
        refs=(),
        blocks=(_TRUE_RANGE, ("", (f"{v}atr = ({v}atr * {p - 1} + tr) / {p}",))),
        outs=(f"{v}atr",),
    )


def _bbands(ind: BollingerBands, v: str) -> Part:
    p = ind.period
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
                    f"{v}sd = sqrt({v}var) * {_f(ind.k)} if {v}var > 0.0 else 0.0",
                    f"{v}mid = {v}a + {v}m",
                ),
            ),
        ),
        outs=(f"{v}mid - {v}sd", f"{v}mid", f"{v}mid + {v}sd"),
    )


def _macd(ind: MACD, v: str) -> Part:
    return Part(
        steady=ind.slow + ind.signal,
        state=((f"{v}fe", "_fe"), (f"{v}se", "_se"), (f"{v}sg", "_sig._ema")),
        refs=(),
        blocks=(
            (
                "",
                (
                    f"{v}fe = (c - {v}fe) * {_f(ind._kf)} + {v}fe",
                    f"{v}se = (c - {v}se) * {_f(ind._ks)} + {v}se",
                    f"{v}m = {v}fe - {v}se",
                    f"{v}sg = ({v}m - {v}sg) * {_f(ind._sig._k)} + {v}sg",
                ),
            ),
        ),
        outs=(f"{v}m", f"{v}sg", f"{v}m - {v}sg"),
        counters=(("_n", 0), ("_sig._n", -(ind.slow - 1))),
    )


def _extrema_lines(v: str, p: int) -> Lines:
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


def _donchian(ind: Donchian, v: str) -> Part:
    p = ind.period
    return Part(
        steady=p,
        state=(),
        refs=((f"{v}qh", "_hh._dq"), (f"{v}ql", "_ll._dq")),
        blocks=(("", _extrema_lines(v, p)),),
        outs=(f"{v}hh", f"{v}ll"),
        counters=(("_n", 0), ("_hh._n", 0), ("_ll._n", 0)),
    )


def _keltner(ind: Keltner, v: str) -> Part:
    p, ap = ind.period, ind.atr_period
    return Part(
        steady=max(p + 1, ap + 2),
        state=((f"ema{p}", "_ema._ema"), ("pc", "_atr._pc"), (f"{v}atr", "_atr._atr")),
        refs=(),
        blocks=(
            _ema_block(p, ind._ema._k),
            _TRUE_RANGE,
            (
                "",
                (
                    f"{v}atr = ({v}atr * {ap - 1} + tr) / {ap}",
                    f"{v}w = {_f(ind.multiplier)} * {v}atr",
                ),
            ),
        ),
        outs=(f"ema{p} - {v}w", f"ema{p}", f"ema{p} + {v}w"),
        counters=(("_n", 0), ("_ema._n", 0), ("_atr._n", 0)),
    )


def _stochastic(ind: Stochastic, v: str) -> Part:
    k, d, s = ind.k_period, ind.d_period, ind.smooth_k
    lines = [
        *_extrema_lines(v, k),
        f"{v}diff = ({v}hh - {v}ll) / 100.0",
        f"{v}k = (c - {v}ll) / {v}diff if {v}diff != 0.0 else 0.0",
    ]
    state = [(f"{v}da", "_ds._anchor"), (f"{v}ds", "_ds._sum")]
    refs = [(f"{v}qh", "_hh._dq"), (f"{v}ql", "_ll._dq"), (f"{v}db", "_ds._buf")]
    counters = [("_n", 0), ("_hh._n", 0), ("_ll._n", 0), ("_ds._n", -(k + s - 2))]
    if s > 1:
        lines += [*_sma_lines(f"{v}k", s, f"{v}k", f"(n - {k - 1})"), f"{v}k = {v}kout"]
        state += [(f"{v}ka", "_ks._anchor"), (f"{v}ks", "_ks._sum")]
        refs.append((f"{v}kb", "_ks._buf"))
        counters.append(("_ks._n", -(k - 1)))
    lines += _sma_lines(f"{v}d", d, f"{v}k", f"(n - {k + s - 2})")
    return Part(
        steady=k + s + d - 1,
        state=tuple(state),
        refs=tuple(refs),
        blocks=(("", tuple(lines)),),
        outs=(f"{v}k", f"{v}dout"),
        counters=tuple(counters),
    )


def _adx(ind: ADX, v: str) -> Part:
    p = ind.period
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
            _TRUE_RANGE,
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


def _hurst(ind: Hurst, v: str) -> Part:
    p = ind.period
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


_EMITTERS: dict[type[Any], Callable[[Any, str], Part]] = {
    SMA: _sma,
    EMA: _ema,
    RSI: _rsi,
    ATR: _atr,
    BollingerBands: _bbands,
    MACD: _macd,
    Donchian: _donchian,
    Keltner: _keltner,
    Stochastic: _stochastic,
    ADX: _adx,
    Hurst: _hurst,
}


def part_of(ind: Indicator[Any], prefix: str) -> Part | None:
    """Return the fused part of ``ind`` (locals prefixed ``prefix``), or None if it has none."""
    emit = _EMITTERS.get(type(ind))
    return None if emit is None else emit(ind, prefix)


_ENV: dict[str, Any] = {
    "fsum": math.fsum,
    "sqrt": math.sqrt,
    "log": math.log,
    "bb_resync": BollingerBands._resync,
    "hurst_resync": resync_step,
}


@dataclass(frozen=True, slots=True)
class Kernel:
    """One bank's fused step: closures over its members and its cells.

    Attributes
    ----------
    steady
        Input number from which every fused part is in steady state.
    load
        ``load() -> bool``: read the members' state into the cells (False: inconsistent).
    flush
        ``flush()``: write the cells back to the members if a step ran since the last flush.
    step_list
        ``step_list(bar) -> list``: commit ``bar``; the flat values (the bank's ``_update_list``).
    step_dict
        ``step_dict(bar) -> dict``: the same with the bank's redelivery check, as a dict.
    """

    steady: int
    load: Callable[[], bool]
    flush: Callable[[], None]
    step_list: Callable[[Any], list[float | None]]
    step_dict: Callable[[Any], dict[str, float | None]]


@lru_cache(maxsize=64)
def _factory(tokens: tuple[str, ...]) -> tuple[Callable[..., Any], int] | None:
    """Compile the kernel factory of a spec; None when no member has a part."""
    inds = [build_indicator(t) for t in tokens]
    parts = [part_of(ind, f"i{k}_") for k, ind in enumerate(inds)]
    if all(p is None for p in parts):
        return None
    steady = max(p.steady for p in parts if p is not None)
    cells: list[str] = ["n"]
    seen_state: set[str] = {"n"}
    load: list[str] = ["n = bank._count"]
    flush: list[str] = []
    body: list[str] = []
    emitted: set[str] = set()
    columns: list[str] = []
    outs: list[str] = []
    uses_bar = False
    for k, (ind, part) in enumerate(zip(inds, parts, strict=True)):
        obj = f"o{k}"
        columns += ind.columns
        if part is None:
            arg = "c" if ind.input_kind == "scalar" else "bar"
            body.append(f"r{k} = {obj}._push({arg})")
            if len(ind.columns) == 1:
                outs.append(f"r{k}")
            else:
                outs += [f"(None if r{k} is None else r{k}[{j}])" for j in range(len(ind.columns))]
            continue
        uses_bar = uses_bar or ind.input_kind == "bar"
        for local, path in part.state:
            if local in seen_state:
                load.append(f"if {obj}.{path} != {local}:")
                load.append("    return False")
            else:
                seen_state.add(local)
                cells.append(local)
                load.append(f"{local} = {obj}.{path}")
            flush.append(f"{obj}.{path} = {local}")
        for local, path in part.refs:
            cells.append(local)
            load.append(f"{local} = {obj}.{path}")
        for path, off in part.counters:
            load.append(f"if {obj}.{path} != n + {off}:")
            load.append("    return False")
            flush.append(f"{obj}.{path} = n + {off}")
        for key, lines in part.blocks:
            if key and key in emitted:
                continue
            if key:
                emitted.add(key)
            body += lines
        outs += part.outs
    head = ["c = bar.close"] + (["h = bar.high", "lo = bar.low"] if uses_bar else []) + ["n += 1"]
    nl = "nonlocal " + ", ".join(cells + ["dirty"])
    tail = [f"x{j} = {e}" for j, e in enumerate(outs)] + [
        "dirty = True",
        f"v = [{', '.join(f'x{j}' for j in range(len(outs)))}]",
        "bank._values = v",
        "bank._forming = None",
        "bank._count = n",
    ]
    fill = [f"d[{col!r}] = x{j}" for j, col in enumerate(columns)]  # a copy + stores beats a dict display

    def indent(lines: list[str], depth: int) -> list[str]:
        return [" " * (4 * depth) + ln for ln in lines]

    src = [
        f"def factory(bank, {', '.join(f'o{k}' for k in range(len(inds)))}):",
        *indent([f"{c} = None" for c in cells] + ["dirty = False"], 1),
        "    def load():",
        *indent([nl, *load, "dirty = False", "return True"], 2),
        "    def flush():",
        *indent([nl, "if dirty:", *indent([*flush, "dirty = False"], 1)], 2),
        "    def step_list(bar):",
        *indent([nl, *head, *body, *tail, "return v"], 2),
        "    def step_dict(bar):",
        *indent(
            [
                nl,
                "try:",
                "    om = bar.open_ms",
                "except AttributeError:",
                "    om = None",
                "if om is not None:",
                "    last = bank._last_open",
                "    if last is not None and om <= last:",
                "        return bank._redelivered(om)",
                "    bank._last_open = om",
                *head,
                *body,
                *tail,
                "d = BLANK.copy()",
                *fill,
                "return d",
            ],
            2,
        ),
        "    return load, flush, step_list, step_dict",
    ]
    env = dict(_ENV, BLANK=dict.fromkeys(columns))  # copied, never changed: shared by the spec's banks
    code = compile("\n".join(src) + "\n", f"<fused bank {','.join(tokens)}>", "exec")
    exec(code, env)  # noqa: S102 - generated from the parts above, no outside text
    return env["factory"], steady


def build_kernel(bank: Any, inds: list[Indicator[Any]]) -> Kernel | None:
    """Return the fused kernel of ``bank`` over its members ``inds`` (None: nothing to fuse)."""
    made = _factory(tuple(indicator_token(i) for i in inds))
    if made is None:
        return None
    factory, steady = made
    load, flush, step_list, step_dict = factory(bank, *inds)
    return Kernel(steady=steady, load=load, flush=flush, step_list=step_list, step_dict=step_dict)
