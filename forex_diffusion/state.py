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
    "MAX_TIME_MS",
    "Stateful",
    "count",
    "finite",
    "is_envelope",
    "malformed",
    "number",
    "numbers",
    "rows",
    "time_ms",
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

#: the last event time a state may hold, epoch ms (9999-12-31T23:59:59.999Z: the wire's
#: ``TS_MAX``, the last instant a ``datetime`` holds)
MAX_TIME_MS = 253_402_300_799_999


#: the smallest price a state may hold. The wire takes any price in ``(0, 1e9]`` (1e9:
#: :data:`forex_diffusion.ingest.validation.MAX_PRICE`, which imports this module); over this
#: floor the ratio of two of them (a return) and its logarithm stay finite, where a denormal
#: last close restored made the next return inf and the state no longer JSON. No instrument
#: trades near it.
PRICE_FLOOR = 1e-250


def _name(field: str, what: str) -> str:
    return f"{field} {what}" if field else what


def number(
    x: Any, *, low: float = -MAX_MAGNITUDE, high: float = MAX_MAGNITUDE, above: bool = False, field: str = ""
) -> float:
    """A number of a state as a float: an ``int`` or ``float`` (not ``True``, a numeric string
    such as ``"1e400"`` or ``"nan"``, a list), finite, in ``[low, high]`` (``(low, high]`` when
    ``above``); otherwise ``ValueError`` or ``TypeError`` (a :class:`StateError` inside
    :func:`malformed`) naming ``field``, never the value (a checkpoint row is anyone's text).

    This is THE rule for a number read back from a state: every ``restore`` reads its numbers
    with it (or :func:`count`, :func:`numbers`), never with ``float()``, which takes ``"nan"``,
    ``"1e400"`` (inf) and ``True``.

    >>> number(2), number(0.5, low=0.0, above=True)
    (2.0, 0.5)
    >>> number(0.0, low=0.0, above=True, field="sigma")
    Traceback (most recent call last):
    ...
    ValueError: sigma outside (0.0, 1e+150]
    >>> number("1.5", field="sum")
    Traceback (most recent call last):
    ...
    TypeError: sum is not a number (a str)
    """
    if type(x) not in (int, float):
        raise TypeError(_name(field, f"is not a number (a {type(x).__name__})"))
    if not (low <= x <= high) or (above and x == low) or not math.isfinite(x):
        raise ValueError(_name(field, f"outside {'(' if above else '['}{low}, {high}]"))
    return float(x)


def price(x: Any, *, field: str = "") -> float:
    """A price of a state (a last close, a previous input of a return): :func:`number` in
    ``[PRICE_FLOOR, 1e9]``.

    >>> price(1.1)
    1.1
    >>> price(5e-324, field="last_close")
    Traceback (most recent call last):
    ...
    ValueError: last_close outside [1e-250, 1000000000.0]
    """
    return number(x, low=PRICE_FLOOR, high=1e9, field=field)


def numbers(xs: Any, *, field: str = "", **bounds: Any) -> list[float]:
    """A list of numbers of a state, each read by :func:`number` (``bounds``: its keywords).

    >>> numbers([1, 2.5], low=0.0)
    [1.0, 2.5]
    >>> numbers([1, True], field="buf")
    Traceback (most recent call last):
    ...
    TypeError: buf is not a number (a bool)
    """
    if type(xs) is not list:
        raise TypeError(_name(field, f"is not a list (a {type(xs).__name__})"))
    return [number(x, field=field, **bounds) for x in xs]


def rows(xs: Any, *, field: str = "", **bounds: Any) -> list[list[float]]:
    """A list of lists of numbers of a state (a table: quantiles per step), each list read by
    :func:`numbers` (``bounds``: its keywords). Not ``np.asarray(..., dtype=float)``, which
    takes ``"nan"``, ``"1e400"`` and ``True``; whether the rows are even is the caller's check.

    >>> rows([[1, 2.5], [3.0]], low=0.0)
    [[1.0, 2.5], [3.0]]
    >>> rows([[1.0, "1.5"]], field="quantiles")
    Traceback (most recent call last):
    ...
    TypeError: quantiles is not a number (a str)
    """
    if type(xs) is not list:
        raise TypeError(_name(field, f"is not a list (a {type(xs).__name__})"))
    return [numbers(x, field=field, **bounds) for x in xs]


def count(x: Any, *, low: int = 0, high: int = 2**62, field: str = "") -> int:
    """An integer of a state (not ``True``, 2.5 or '1') in ``[low, high]``; otherwise
    ``ValueError`` or ``TypeError`` (a :class:`StateError` inside :func:`malformed`) naming
    ``field``, never the value."""
    if type(x) is not int:
        raise TypeError(_name(field, f"is not an integer (a {type(x).__name__})"))
    if not (low <= x <= high):
        raise ValueError(_name(field, f"outside [{low}, {high}]"))
    return x


def time_ms(x: Any, *, field: str = "", low: int = 0) -> int:
    """An event time of a state, epoch ms: an integer in ``[low, MAX_TIME_MS]`` (the wire's
    time range), read by :func:`count`.

    >>> time_ms(1_399_000_000_000)
    1399000000000
    >>> time_ms(-1, field="ts_ms")
    Traceback (most recent call last):
    ...
    ValueError: ts_ms outside [0, 253402300799999]
    """
    return count(x, low=low, high=MAX_TIME_MS, field=field)


def finite(cls: Stateful | type[Stateful], state: Any) -> None:
    """Refuse (:class:`StateError`) a state holding a number that no series builds: nan,
    infinity, or a magnitude over :data:`MAX_MAGNITUDE` (anywhere in its plain structure);
    the error names where, never the value. Only ``int``/``float`` values are inspected: a
    number stored as a string is the business of the field that reads it (:func:`number`).

    >>> finite(Stateful, {"a": [1.0, {"b": 2**40}], "c": None})
    >>> finite(Stateful, {"a": [1.0, {"b": 1e308}]})
    Traceback (most recent call last):
    ...
    forex_diffusion.errors.StateError: malformed ... state: a[1].b is not finite or beyond 1e+150
    """
    stack: list[tuple[str, Any]] = [("", state)]
    while stack:
        where, node = stack.pop()
        if isinstance(node, dict):
            stack.extend((f"{where}.{str(k)[:40]}" if where else str(k)[:40], v) for k, v in node.items())
        elif isinstance(node, list | tuple):
            stack.extend((f"{where}[{i}]", v) for i, v in enumerate(node))
        elif type(node) in (int, float) and not (-MAX_MAGNITUDE <= node <= MAX_MAGNITUDE):
            what = f"{where or 'a number'} is not finite or beyond {MAX_MAGNITUDE:g}"
            raise StateError(f"malformed {getattr(cls, 'state_kind', '...')} state: {what}")
