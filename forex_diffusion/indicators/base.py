"""The incremental-indicator base: bookkeeping, revision, readiness, snapshot/restore.

An indicator writes only its formula, as two methods on plain floats:

``_push(x)``
    commit one closed input and return the raw output (a float, a tuple of floats for
    composite indicators, or ``None`` while the output is undefined);
``_peek(x)``
    return the raw output *as if* ``x`` were the next closed input, without changing any
    state. This is what makes the revision of a forming candle exact: a forming candle
    never touches the committed state, so any number of revisions followed by the
    closed candle gives bit-for-bit the numbers of the closed candle alone.

The base class owns the rest: :meth:`Indicator.update`, :meth:`Indicator.revise`,
:attr:`Indicator.value`, :attr:`Indicator.is_ready`, :meth:`Indicator.reset`,
:meth:`Indicator.clone`, :meth:`Indicator.snapshot` / :meth:`Indicator.restore`.

Readiness
    ``value`` is defined from the first bar where TA-Lib defines it (its *lookback*).
    ``is_ready`` turns true later, when the weight the recursion still gives to the state
    it started from (the seed) is at most :data:`READY_TOLERANCE`; for windowed
    indicators (SMA, Donchian, ...) that is as soon as the window is full.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, Protocol, TypeVar, runtime_checkable

from forex_diffusion.errors import ConfigError, StateError
from forex_diffusion.indicators.fusion import Part
from forex_diffusion.state import count, finite, malformed, number, numbers, unwrap, wrap

__all__ = [
    "PARAMETER_MAX",
    "READY_TOLERANCE",
    "BarIndicator",
    "BarLike",
    "Indicator",
    "PeriodIndicator",
    "Raw",
    "ScalarIndicator",
    "SimpleBar",
    "cascade_ready_steps",
    "check_period",
    "wilder_ready_steps",
]

READY_TOLERANCE = 1e-6
"""Largest weight the initial (seed) state may still carry in a value that is ``is_ready``."""

V = TypeVar("V")
Raw = float | tuple[float, ...] | None
"""A raw output: one float, a tuple of floats (composite indicators) or None (undefined)."""


@runtime_checkable
class BarLike(Protocol):
    """Anything with ``high``, ``low`` and ``close`` floats (a :class:`~forex_diffusion.domain.Candle`)."""

    @property
    def high(self) -> float: ...

    @property
    def low(self) -> float: ...

    @property
    def close(self) -> float: ...


@dataclass(frozen=True, slots=True)
class SimpleBar:
    """A minimal bar for tests and batch use (``high``, ``low``, ``close``)."""

    high: float
    low: float
    close: float


#: Largest value of an indicator parameter: a period (``hurst_N`` allocates N floats at once;
#: ``sma_N`` with N past 2**63 failed with ``OverflowError``) or a multiplier. No indicator of
#: a candle series needs more; every entry point (a spec token, a constructor, a snapshot) is held to it.
PARAMETER_MAX = 100_000


def check_period(name: str, value: int, minimum: int = 1) -> int:
    """Validate an integer period parameter (``minimum`` .. :data:`PARAMETER_MAX`) and return it."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r:.40}")
    if value > PARAMETER_MAX:
        raise ConfigError(f"{name} may be at most {PARAMETER_MAX}, not {value!r:.40}")
    return value


def cascade_ready_steps(rates: Sequence[float], tol: float = READY_TOLERANCE) -> int:
    """Return how many steps a cascade of linear recursions needs to forget its seed.

    Stage ``i`` follows ``e_i <- r_i * e_i + (1 - r_i) * e_{i-1}`` (an EMA or Wilder
    average of the stage before it); every stage starts with unit error. The result is
    the first step count after which every ``e_i <= tol``.

    Parameters
    ----------
    rates
        Decay factors ``1 - alpha`` of the stages, upstream first.
    tol
        Largest seed weight accepted.

    Returns
    -------
    int
        The number of updates after the seed.

    Examples
    --------
    >>> cascade_ready_steps([13 / 14])  # Wilder(14): (13/14)^k <= 1e-6
    187
    """
    errs = [1.0] * len(rates)
    steps = 0
    while max(errs) > tol:
        steps += 1
        upstream = 0.0
        for i, r in enumerate(rates):
            errs[i] = r * errs[i] + (1.0 - r) * upstream
            upstream = errs[i]
        if steps > 10_000_000:  # pragma: no cover - rates validated to be < 1
            raise ConfigError("recursion does not forget its seed")
    return steps


def wilder_ready_steps(period: int, stages: int = 1) -> int:
    """Return how many steps ``stages`` chained Wilder averages of ``period`` need to forget
    their seed (:func:`cascade_ready_steps` of rate ``1 - 1/period`` each; 0 for period 1,
    which keeps no memory).

    Examples
    --------
    >>> wilder_ready_steps(14), wilder_ready_steps(1)
    (187, 0)
    """
    if period <= 1:
        return 0
    return cascade_ready_steps([1.0 - 1.0 / period] * stages)


class _NoForming:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<no forming input>"


_NO = _NoForming()


class Indicator(ABC, Generic[V]):
    """Base of every incremental indicator.

    Subclasses set ``_params`` (hyper-parameter names, stored under their own names in
    ``__init__``), ``columns`` (flat output names), implement ``_push``/``_peek`` and
    ``_get_state``/``_set_state`` and ``_init_state``, and call ``self.reset()`` at the end
    of ``__init__`` (it starts the bookkeeping and calls ``_init_state``).
    """

    __slots__ = ("_n", "_raw", "_fraw", "_ready_at")

    _params: ClassVar[tuple[str, ...]] = ()
    input_kind: ClassVar[str] = "scalar"
    #: a composite's public value type (a named tuple built from the raw tuple); None: the raw value
    composite: ClassVar[Callable[..., Any] | None] = None  # a class: a named tuple
    state_kind = "indicator"
    state_version = 1
    _n: int
    _raw: Raw
    _fraw: Raw | _NoForming
    _ready_at: int

    # ---- formula (subclasses) -------------------------------------------------------
    @abstractmethod
    def _init_state(self) -> None:
        """Reset the formula state to 'nothing seen'; set ``_ready_at``."""

    @abstractmethod
    def _push(self, x: Any) -> Raw:
        """Commit one closed input and return the raw output."""

    def fused_part(self, v: str) -> Part | None:
        """Return :meth:`_push` in steady state as the source lines of a bank's fused step, or None.

        A class with a part defines it beside its ``_push`` (same operations, same order:
        the values stay bit for bit); :mod:`.fused` assembles a bank's parts. None: the
        fused step calls ``_push``.
        """
        return None

    @abstractmethod
    def _peek(self, x: Any) -> Raw:
        """Return the raw output for ``x`` as the next input, changing nothing."""

    @abstractmethod
    def _get_state(self) -> dict[str, Any]:
        """Return the formula state as plain data."""

    @abstractmethod
    def _set_state(self, state: dict[str, Any]) -> None:
        """Load the formula state written by :meth:`_get_state`."""

    @property
    @abstractmethod
    def columns(self) -> tuple[str, ...]:
        """Flat output names, e.g. ``("bb_lower_20", "bb_middle_20", "bb_upper_20")``."""

    def _wrap(self, raw: Any) -> V:
        """Turn a defined raw output into the public value (a composite's named tuple)."""
        return raw if self.composite is None else self.composite(*raw)  # type: ignore[no-any-return]

    # ---- public surface ----------------------------------------------------------------
    def reset(self) -> None:
        """Forget every input; keep the parameters (constructors start here too)."""
        self._n = 0
        self._raw = None
        self._fraw = _NO
        self._init_state()

    def _step(self, x: Any) -> Raw:
        """Commit ``x`` and return the raw output (the bank's hot path)."""
        raw = self._push(x)
        self._raw = raw
        self._fraw = _NO
        return raw

    def _revise_raw(self, x: Any) -> Raw:
        """Return the raw output with ``x`` as the forming input (the bank's hot path)."""
        raw = self._peek(x)
        self._fraw = raw
        return raw

    @abstractmethod
    def _convert(self, x: Any) -> Any:
        """Turn a public input into what ``_push`` takes."""

    def update(self, x: Any) -> V | None:
        """Commit one closed input and return the new value (None while undefined)."""
        raw = self._step(self._convert(x))
        return None if raw is None else self._wrap(raw)

    def revise(self, x: Any) -> V | None:
        """Return the value with ``x`` as the forming (not yet closed) input.

        The committed state is untouched: the next :meth:`revise` replaces this one and
        the next :meth:`update` commits its own input as if no revision had happened.
        """
        raw = self._revise_raw(self._convert(x))
        return None if raw is None else self._wrap(raw)

    @property
    def value(self) -> V | None:
        """The latest value: the forming input's if one was revised since the last update."""
        raw = self._raw if self._fraw is _NO else self._fraw
        return None if raw is None else self._wrap(raw)

    @property
    def committed_value(self) -> V | None:
        """The value after the last closed input, ignoring any forming input."""
        return None if self._raw is None else self._wrap(self._raw)

    @property
    def count(self) -> int:
        """Number of closed inputs committed."""
        return self._n

    @property
    def is_defined(self) -> bool:
        """Whether the committed value is defined (TA-Lib's lookback has passed)."""
        return self._raw is not None

    @property
    def is_ready(self) -> bool:
        """Whether the value no longer depends on the stream start beyond the tolerance."""
        return self._n >= self._ready_at

    @property
    def ready_after(self) -> int:
        """Number of closed inputs after which :attr:`is_ready` is true."""
        return self._ready_at

    def params(self) -> dict[str, Any]:
        """Return the hyper-parameters, as given to ``__init__``."""
        return {name: getattr(self, name) for name in self._params}

    def clone(self) -> Indicator[V]:
        """Return a fresh, unfitted copy with the same parameters."""
        return type(self)(**self.params())

    def snapshot(self) -> dict[str, Any]:
        """Return the whole state as JSON-able plain data, in the envelope (:mod:`forex_diffusion.state`)."""
        state = {
            "type": type(self).__name__,
            "params": self.params(),
            "n": self._n,
            "raw": _raw_to_plain(self._raw),
            "state": self._get_state(),
        }
        return wrap(self, state)

    @classmethod
    def restore(cls, data: dict[str, Any]) -> Indicator[Any]:
        """Rebuild an indicator from :meth:`snapshot` output (any registered type; the layout
        before the envelope is read too)."""
        from forex_diffusion.indicators.catalogue import indicator_class

        state = unwrap(data, Indicator, legacy=_legacy)
        finite(Indicator, state)  # nan, inf or 1e308 in a sum: inf/nan on the next candle, no JSON
        with malformed(Indicator):
            klass = indicator_class(str(state.get("type")))
            if cls is not Indicator and not issubclass(klass, cls):
                raise StateError(f"snapshot of {klass.__name__} cannot restore a {cls.__name__}")
            ind = klass(**state["params"])
            ind._n = count(state["n"], field="n")  # -1 restored, then a window of -1 values: nan features
            ind._raw = _raw_from_plain(state["raw"])
            ind._fraw = _NO
            ind._set_state(state["state"])
        return ind

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}({args})"

    def __getstate__(self) -> dict[str, Any]:
        return self.snapshot()

    def __setstate__(self, state: dict[str, Any]) -> None:
        other = Indicator.restore(state)
        for klass in type(other).__mro__:
            for slot in getattr(klass, "__slots__", ()):
                if hasattr(other, slot):
                    object.__setattr__(self, slot, getattr(other, slot))


def _legacy(old: dict[str, Any]) -> dict[str, Any]:
    """The layout before the envelope: the same fields beside ``"version": 1``."""
    if old.get("version") != 1:
        raise StateError(f"unsupported indicator snapshot version {str(old.get('version'))[:20]}")
    return {k: v for k, v in old.items() if k != "version"}


def _raw_to_plain(raw: Raw) -> Any:
    return list(raw) if isinstance(raw, tuple) else raw


def _raw_from_plain(raw: Any) -> Raw:
    """The value a snapshot holds: None, a number, or a list of numbers (a composite value),
    each read by :func:`~forex_diffusion.state.number` ("nan", "1e400" or True is no number)."""
    if raw is None:
        return None
    if type(raw) is list:
        return tuple(numbers(raw, field="raw"))
    return number(raw, field="raw")


class PeriodIndicator(Indicator[V]):
    """An indicator of one integer ``period`` (>= ``min_period``) and, unless it names its
    own, one output column ``{spec_name}_{period}``.

    Mixed in before :class:`ScalarIndicator` or :class:`BarIndicator`; a subclass declares
    its default in its own ``__init__`` and calls ``super().__init__``, and its summary line
    says what its ``period`` counts and its bound (no ``Parameters`` section for the one name).
    """

    __slots__ = ("period",)
    _params: ClassVar[tuple[str, ...]] = ("period",)
    min_period: ClassVar[int] = 1
    spec_name: ClassVar[str]

    def __init__(self, period: int) -> None:
        self.period = check_period("period", period, self.min_period)
        self.reset()

    @property
    def columns(self) -> tuple[str, ...]:
        return (f"{self.spec_name}_{self.period}",)


class ScalarIndicator(Indicator[V]):
    """An indicator of one float per bar; a bar given to ``update`` is read at its close."""

    __slots__ = ()
    input_kind: ClassVar[str] = "scalar"

    def _convert(self, x: Any) -> float:
        if isinstance(x, (int, float)):
            v = float(x)
        else:
            v = float(x.close)
        if not math.isfinite(v):
            raise ConfigError(f"{type(self).__name__} input must be finite, got {v!r}")
        return v


class BarIndicator(Indicator[V]):
    """An indicator of the bar's high, low and close (any :class:`BarLike`)."""

    __slots__ = ()
    input_kind: ClassVar[str] = "bar"

    def _convert(self, x: Any) -> BarLike:
        if not isinstance(x, BarLike):
            raise ConfigError(f"{type(self).__name__} needs a bar with high/low/close, got {type(x).__name__}")
        return x
