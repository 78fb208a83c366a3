"""One state envelope for every per-series state class.

A stateful class (aggregator, guards, indicator banks, feature builders, contexts, the
forecaster, the shadow tracker, the quality monitor, ...) follows one protocol,
:class:`Stateful`: it names its ``state_kind`` and ``state_version`` as class attributes;
its ``snapshot`` returns plain, JSON-able data in ONE envelope::

    {"kind": "candle_aggregator", "v": 1, "state": {...}}

and its ``restore`` reads that envelope back with :func:`unwrap`. A wrong kind, an unknown
version or a malformed state raises ONE error type, :class:`~forex_diffusion.errors.StateError`
(a :class:`~forex_diffusion.errors.ConfigError`), never a bare ``KeyError`` or ``TypeError``.

Checkpoints written before the envelope (the bare layouts, "version 0") stay readable: a
class passes ``legacy=`` to :func:`unwrap`, a function that turns the old layout into the
current state (or refuses it). Anything else is refused.

The signed binary states (the online learners and the drift monitor) keep their own signed
format (see :mod:`forex_diffusion.online.learners`): their signature check is the point.

>>> class Counter:
...     state_kind = "counter"
...     state_version = 1
...     def __init__(self) -> None:
...         self.n = 0
...     def snapshot(self) -> dict:
...         return wrap(self, {"n": self.n})
...     @classmethod
...     def restore(cls, data: object) -> "Counter":
...         state = unwrap(data, cls, legacy=lambda old: {"n": old["count"]})
...         c = cls()
...         with malformed(cls):
...             c.n = int(state["n"])
...         return c
>>> c = Counter(); c.n = 3
>>> c.snapshot()
{'kind': 'counter', 'v': 1, 'state': {'n': 3}}
>>> Counter.restore(c.snapshot()).n, Counter.restore({"count": 2}).n
(3, 2)
>>> Counter.restore({"kind": "counter", "v": 9, "state": {}})
Traceback (most recent call last):
...
forex_diffusion.errors.StateError: unsupported counter state version 9 (this build reads 1)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol, runtime_checkable

from forex_diffusion.errors import ConfigError, ForexDiffusionError, StateError

__all__ = [
    "ENVELOPE_KEYS",
    "MAX_MAGNITUDE",
    "Stateful",
    "count",
    "finite",
    "is_envelope",
    "malformed",
    "number",
    "unwrap",
    "wrap",
]

#: the keys of an envelope, and no others
ENVELOPE_KEYS = frozenset({"kind", "v", "state"})


@runtime_checkable
class Stateful(Protocol):
    """A class whose state snapshots into the envelope.

    ``snapshot(...)`` returns ``wrap(self, state)`` with a plain, JSON-able ``state``;
    ``restore`` (a classmethod that builds the object, or a method that loads into one made
    with the same settings) reads it with ``unwrap(data, cls)``. A restored object is
    independent of the one snapshotted and continues exactly as it would have.
    """

    #: names the state (a class attribute)
    state_kind: str
    #: the layout version this build writes and reads (a class attribute)
    state_version: int


def wrap(obj: Stateful | type[Stateful], state: Any) -> dict[str, Any]:
    """The envelope of ``state`` for ``obj`` (an instance or its class)."""
    return {"kind": obj.state_kind, "v": obj.state_version, "state": state}


def is_envelope(data: Any) -> bool:
    """Whether ``data`` has the envelope's layout (whatever its kind and version)."""
    return isinstance(data, dict) and data.keys() == ENVELOPE_KEYS


def unwrap(data: Any, cls: Stateful | type[Stateful], *, legacy: Callable[[Any], Any] | None = None) -> Any:
    """The state inside ``data``, an envelope written by ``cls`` (at its current version).

    ``legacy`` reads the layout used before the envelope (version 0): it gets any mapping
    that is not an envelope and returns the state in the current layout; a ``KeyError``,
    ``TypeError``, ``ValueError`` or ``IndexError`` it raises becomes a :class:`StateError`.
    Without ``legacy`` such data is refused.

    Raises
    ------
    StateError
        Another kind, another version, or not a state at all.
    """
    kind = cls.state_kind
    if is_envelope(data):
        if data["kind"] != kind:
            raise StateError(f"a {str(data['kind'])[:40]!r} state cannot restore a {kind}")
        v = data["v"]
        if type(v) is not int or v != cls.state_version:
            raise StateError(f"unsupported {kind} state version {str(v)[:20]} (this build reads {cls.state_version})")
        return data["state"]
    if legacy is not None and isinstance(data, dict):
        with malformed(cls, "old"):
            return legacy(data)
    raise StateError(f"not a {kind} state: {str(data)[:60]!r}")


@contextmanager
def malformed(cls: Stateful | type[Stateful], what: str = "") -> Iterator[None]:
    """Turn a ``KeyError``/``TypeError``/``ValueError``/``IndexError``/``AttributeError``/
    ``ArithmeticError`` (``OverflowError``: 10**400 read as a float or a length) met while
    reading a state, or a ``ConfigError`` of the settings it holds, into a :class:`StateError` naming
    the kind; the project's other errors (a signature's ``ArtifactError``) pass through."""
    try:
        yield
    except StateError:
        raise
    except ConfigError as exc:  # settings inside the state that its class refuses
        raise StateError(f"malformed {cls.state_kind} state: {str(exc)[:120]}") from exc
    except ForexDiffusionError:  # e.g. a signed part's ArtifactError: passed on as it is
        raise
    except (KeyError, TypeError, ValueError, IndexError, AttributeError, ArithmeticError) as exc:
        # ArithmeticError: an integer past a double or a C size (10**400 where a float or a
        # window length is read: OverflowError), a zero where a divisor is read
        label = f"{what} {cls.state_kind}" if what else cls.state_kind
        raise StateError(f"malformed {label} state: {type(exc).__name__}: {str(exc)[:80]}") from exc


#: the largest magnitude a number of a state may have: far above any price, volume, sum or
#: time a series builds, and small enough that its square and a sum of a few thousand of them
#: stay finite (1e308 read as a price made the next snapshot inf: not JSON)
MAX_MAGNITUDE = 1e150


def number(x: Any, *, low: float = -MAX_MAGNITUDE, high: float = MAX_MAGNITUDE, above: bool = False) -> float:
    """A number of a state as a float: an ``int`` or ``float`` (not ``True``, a string, a list),
    finite, in ``[low, high]`` (``(low, high]`` when ``above``); otherwise ``ValueError`` or
    ``TypeError`` (a :class:`StateError` inside :func:`malformed`).

    >>> number(2), number(0.5, low=0.0, above=True)
    (2.0, 0.5)
    >>> number(0.0, low=0.0, above=True)
    Traceback (most recent call last):
    ...
    ValueError: 0.0 outside (0.0, 1e+150]
    """
    if type(x) not in (int, float):
        raise TypeError(f"not a number: {str(x)[:20]!r}")
    if not (low <= x <= high) or (above and x == low) or not math.isfinite(x):
        raise ValueError(f"{str(x)[:20]} outside {'(' if above else '['}{low}, {high}]")
    return float(x)


def count(x: Any, *, low: int = 0, high: int = 2**62) -> int:
    """An integer of a state (not ``True``, 2.5 or '1') in ``[low, high]``; otherwise
    ``ValueError`` or ``TypeError`` (a :class:`StateError` inside :func:`malformed`)."""
    if type(x) is not int:
        raise TypeError(f"not an integer: {str(x)[:20]!r}")
    if not (low <= x <= high):
        raise ValueError(f"{str(x)[:20]} outside [{low}, {high}]")
    return x


def finite(cls: Stateful | type[Stateful], state: Any) -> None:
    """Refuse (:class:`StateError`) a state holding a number that no series builds: nan,
    infinity, or a magnitude over :data:`MAX_MAGNITUDE` (anywhere in its plain structure).

    >>> finite(Stateful, {"a": [1.0, {"b": 2**40}], "c": None})
    >>> finite(Stateful, {"a": [1.0, {"b": 1e308}]})
    Traceback (most recent call last):
    ...
    forex_diffusion.errors.StateError: malformed ... state: a number of magnitude 1e+308
    """
    stack = [state]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, list | tuple):
            stack.extend(node)
        elif type(node) in (int, float) and not (-MAX_MAGNITUDE <= node <= MAX_MAGNITUDE):
            what = "nan" if node != node else f"a number of magnitude {str(abs(node))[:12]}"
            raise StateError(f"malformed {getattr(cls, 'state_kind', '...')} state: {what}")
