"""The fused step of an indicator bank: every member's steady state in one generated function.

Calling each member's ``_push`` costs a Python call, attribute loads and stores for every
state variable, a tuple per composite output and the bank's flattening of it: about half of
the bank's time per candle. Once every member is past its warm-up, the bank instead runs
one generated ``step(bar)`` whose source is every member's steady-state ``_push`` written
out (:class:`~.fusion.Part`: each class writes its own in ``fused_part``, beside its
``_push``) with the state in closure cells, the parameters as literals, and
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

from forex_diffusion.indicators.base import Indicator
from forex_diffusion.indicators.catalogue import build_indicator, indicator_token
from forex_diffusion.indicators.fusion import Part
from forex_diffusion.indicators.hurst import resync_step
from forex_diffusion.indicators.volatility import BollingerBands

__all__ = ["Kernel", "Part", "build_kernel", "part_of"]


def part_of(ind: Indicator[Any], prefix: str) -> Part | None:
    """Return the fused part of ``ind`` (locals prefixed ``prefix``), or None if it has none.

    The part is the class's own ``fused_part``, written beside its ``_push``; a subclass
    that does not define its own has none (its ``_push`` may differ).
    """
    if "fused_part" not in type(ind).__dict__:
        return None
    return ind.fused_part(prefix)


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
