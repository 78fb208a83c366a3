"""A state envelope of the right kind and version whose fields hold what no build wrote.

A checkpoint row may be written by hand or by someone hostile; ``load_snapshot`` refuses
what is not a JSON object (NaN and Infinity included), so what reaches a class's restore is
JSON: here a real snapshot of every stateful class of the core with one field at a time
replaced by an integer past a double or a C size (10**400, 2**70, 10**19). The restore
raises the one documented :class:`~forex_diffusion.errors.StateError` or restores; before,
``OverflowError`` escaped ``malformed()`` in the feature builder, quality monitor, series
context (10**19 as a window length, 10**400 as a float).
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from forex_diffusion.errors import StateError

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "contract"))
import test_stateful as contract  # noqa: E402  (the contract's cases: every stateful class of the core)

HOSTILE_INTS = (10**400, 2**70, 10**19, -(10**30))


def _leaves(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _leaves(v, (*path, k))
    elif isinstance(node, list) and node:
        for i, v in enumerate(node[:2]):
            yield from _leaves(v, (*path, i))
    elif path:
        yield path


def _set(root: Any, path: tuple[Any, ...], value: Any) -> None:
    for k in path[:-1]:
        root = root[k]
    root[path[-1]] = value


@pytest.mark.parametrize("name", sorted(contract.CASES))
def test_every_field_replaced_by_a_huge_integer_is_a_state_error_or_restores(name: str) -> None:
    case = contract.CASES[name]
    obj = case.make()
    contract._run(case, obj, case.inputs()[:200])  # noqa: SLF001
    data = contract._json(case.snap(obj))  # noqa: SLF001
    escaped: list[str] = []
    for path in list(_leaves(data["state"]))[:80]:
        for value in HOSTILE_INTS:
            bad = copy.deepcopy(data)
            _set(bad["state"], path, value)
            try:
                case.load(bad)
            except StateError:
                continue
            except Exception as exc:  # noqa: BLE001 - the finding is any other type
                escaped.append(f"{path} = {str(value)[:8]}: {type(exc).__name__}")
    assert escaped == []
