"""The indicator bank of one series (symbol, timeframe): a configured set, updated together.

Closed candles go to :meth:`IndicatorBank.update`, the forming one to
:meth:`IndicatorBank.revise`; both return flat ``{column: value | None}`` dicts whose
column names are those of ``forexd indicators`` (``bb_lower_20``, ``macd_signal_9``...).
A candle whose ``open_ms`` is not after the last committed one (a redelivery or a replay)
is ignored, so an at-least-once feed gives each candle once. :meth:`IndicatorBank.snapshot`
returns JSON-able, versioned plain data that :meth:`IndicatorBank.restore` turns back
into a bank that continues exactly as if it had never stopped. Once every member is past
its warm-up, closed candles go through one generated step (:mod:`.fused`) that gives the
members' values bit for bit.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, cast

from forex_diffusion.errors import ConfigError, StateError
from forex_diffusion.indicators.base import BarLike, Indicator
from forex_diffusion.indicators.catalogue import build_indicator, indicator_token
from forex_diffusion.indicators.fused import build_kernel
from forex_diffusion.state import count, finite, malformed, number, time_ms, unwrap, wrap

__all__ = ["DEFAULT_SPEC", "INDICATORS_MAX", "BankSpec", "IndicatorBank"]

log = logging.getLogger(__name__)

DEFAULT_SPEC: tuple[str, ...] = (
    "sma_20",
    "ema_20",
    "rsi_14",
    "atr_14",
    "bb_20",
    "macd_12_26_9",
    "donchian_20",
    "keltner_20",
    "stoch_14_3",
    "adx_14",
    "hurst_100",
)
"""The default set; its columns are those listed in ``forexd indicators --help``."""

#: Most indicators of one bank (the default set has 11; each token's parameters are held to
#: ``base.PARAMETER_MAX``, see :func:`~.catalogue.build_indicator`).
INDICATORS_MAX = 128

_NEVER = 1 << 62
_PICKLED = ("spec", "_inds", "_values", "_forming", "_count", "_last_open", "_ready", "duplicates")


@dataclass(frozen=True, slots=True, kw_only=True)
class BankSpec:
    """Which indicators a bank holds, as spec tokens (see :mod:`.registry`).

    Tokens are canonicalised (``bb_20`` → ``bb_20_2``); two indicators may not write the
    same column. ``ConfigError`` names the token of a bad one: an unknown indicator, a
    parameter that is no ASCII number or is past its bounds (at most
    :data:`~.base.PARAMETER_MAX`), or more than :data:`INDICATORS_MAX` tokens.

    Parameters
    ----------
    indicators
        Spec tokens such as ``("sma_20", "bb_20_2.5")``.
    """

    indicators: tuple[str, ...] = field(default=DEFAULT_SPEC)

    def __post_init__(self) -> None:
        if isinstance(self.indicators, str) or not isinstance(self.indicators, Iterable):
            raise ConfigError("BankSpec.indicators must be a sequence of spec tokens")
        tokens = tuple(str(t).strip() for t in self.indicators if str(t).strip())
        if not tokens:
            raise ConfigError("an indicator bank needs at least one indicator")
        if len(tokens) > INDICATORS_MAX:  # 5,000 took 14 s to build (the fused step's source grows with each)
            raise ConfigError(f"an indicator bank holds at most {INDICATORS_MAX} indicators, not {len(tokens):,}")
        built = [build_indicator(t) for t in tokens]
        canon = tuple(indicator_token(i) for i in built)
        seen: dict[str, str] = {}
        for tok, ind in zip(canon, built, strict=True):
            for col in ind.columns:
                if col in seen:
                    raise ConfigError(f"indicators {seen[col]!r} and {tok!r} both write column {col!r}")
                seen[col] = tok
        object.__setattr__(self, "indicators", canon)

    @classmethod
    def parse(cls, text: str | None) -> BankSpec:
        """Parse a comma-separated spec (``"sma_50,rsi_7"``); empty or None → the default."""
        if text is None or not text.strip() or text.strip().lower() == "default":
            return cls()
        return cls(indicators=tuple(text.split(",")))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BankSpec:
        """Build from plain data, rejecting unknown keys."""
        unknown = set(data) - {"indicators"}
        if unknown:
            raise ConfigError(f"unknown BankSpec field(s): {', '.join(sorted(unknown))}")
        return cls(indicators=tuple(data.get("indicators", DEFAULT_SPEC)))

    def build(self) -> list[Indicator[Any]]:
        """Return fresh indicators, in spec order."""
        return [build_indicator(t) for t in self.indicators]

    @property
    def columns(self) -> tuple[str, ...]:
        """Flat output columns, in spec order."""
        return tuple(c for ind in self.build() for c in ind.columns)

    def __str__(self) -> str:
        return ",".join(self.indicators)


@lru_cache(maxsize=64)
def _commit_factory(shape: tuple[tuple[bool, int], ...]) -> Callable[..., Callable[[Any, Any], list[float | None]]]:
    """Compile ``make(push0, push1, ...) -> commit`` for members of the given (scalar, width) shape.

    ``commit(bank, bar) -> values`` calls every ``_push`` unrolled in one function: the same
    calls, in the same order, as a loop over the members would make (so the same values),
    without the per-indicator loop, tuple unpacking and width tests. Compiled once per
    shape; a bank holds only the closure.
    """
    body = ["    def commit(bank, bar):", "        c = bar.close"]
    items = []
    for k, (scalar, width) in enumerate(shape):
        body.append(f"        r{k} = p{k}({'c' if scalar else 'bar'})")
        if width == 1:
            items.append(f"r{k}")
        else:
            items.append(f"*({(None,) * width!r} if r{k} is None else r{k})")
    body += [
        f"        out = [{', '.join(items)}]",
        "        bank._values = out",
        "        bank._forming = None",
        "        bank._count += 1",
        "        return out",
        "    return commit",
    ]
    env: dict[str, Any] = {}
    src = [f"def make({', '.join(f'p{k}' for k in range(len(shape)))}):", *body]
    exec("\n".join(src), env)  # noqa: S102 - generated from the shape above, no outside text
    return cast("Callable[..., Callable[[Any, Any], list[float | None]]]", env["make"])


def _compile_commit(plan: list[tuple[Any, Any, bool, int]]) -> Callable[[Any, Any], list[float | None]]:
    """Return ``commit(bank, bar) -> values`` over the ``_push`` of every member of ``plan``."""
    make = _commit_factory(tuple((scalar, width) for _, _, scalar, width in plan))
    return make(*(push for push, _, _, _ in plan))


class IndicatorBank:
    """The configured indicators of one (symbol, timeframe) series.

    Parameters
    ----------
    spec
        A :class:`BankSpec`, a comma-separated spec string, or None for the default set.

    Examples
    --------
    >>> from forex_diffusion.domain import Candle
    >>> bank = IndicatorBank("sma_2,rsi_2")
    >>> def bar(i, c):
    ...     return Candle(symbol="EURUSD", timeframe="1m", open_ms=i * 60_000,
    ...                   close_ms=(i + 1) * 60_000, open=c, high=c, low=c, close=c)
    >>> bank.update(bar(0, 1.0))
    {'sma_2': None, 'rsi_2': None}
    >>> bank.update(bar(1, 2.0))
    {'sma_2': 1.5, 'rsi_2': None}
    >>> bank.revise(bar(2, 1.5))
    {'sma_2': 1.75, 'rsi_2': 66.66666666666666}
    >>> bank.update(bar(2, 1.5)) == bank.values()
    True
    """

    state_kind = "indicator_bank"
    state_version = 1

    __slots__ = (
        "spec",
        "_inds",
        "_plan",
        "_columns",
        "_values",
        "_forming",
        "_count",
        "_last_open",
        "_ready",
        "_ready_at",
        "duplicates",
        "_commit",
        "_kernel",
        "_fuse_at",
        "_step_list",
        "_step_dict",
    )

    def __init__(self, spec: BankSpec | str | None = None) -> None:
        if spec is None or isinstance(spec, str):
            spec = BankSpec.parse(spec)
        if not isinstance(spec, BankSpec):
            raise ConfigError(f"spec must be a BankSpec, a string or None, not {type(spec).__name__}")
        self.spec = spec
        self._install(spec.build())

    def _install(self, inds: list[Indicator[Any]]) -> None:
        self._inds = inds
        self._plan = [(i._push, i._peek, i.input_kind == "scalar", len(i.columns)) for i in inds]
        self._commit = _compile_commit(self._plan)
        self._columns = tuple(c for i in inds for c in i.columns)
        self._ready_at = max(i.ready_after for i in inds)
        self._values: list[float | None] = [None] * len(self._columns)
        self._forming: list[float | None] | None = None
        self._count = 0
        self._last_open: int | None = None
        self._ready = False
        self.duplicates = 0
        self._kernel = build_kernel(self, inds)
        self._fuse_at = _NEVER if self._kernel is None else self._kernel.steady - 1
        self._step_list: Callable[[Any], list[float | None]] = self._generic_list
        self._step_dict: Callable[[Any], dict[str, float | None]] = self._generic_dict

    # ---- hot path ---------------------------------------------------------------------
    # Until every member is past its warm-up, a candle goes to each member's ``_push``
    # (``_commit``); from then on to the fused kernel (see :mod:`.fused`), which holds the
    # state in its cells. ``_sync`` writes that state back before anything reads a member.
    def _fuse(self) -> None:
        """Switch to the fused step when the next candle is in every member's steady state."""
        kernel = self._kernel
        if kernel is not None and self._count >= self._fuse_at and self._step_list is not kernel.step_list:
            if kernel.load():
                self._step_list = kernel.step_list
                self._step_dict = kernel.step_dict
            else:  # members disagree with their structure (a doctored snapshot): keep calling them
                log.warning("indicator bank %s: members inconsistent, fused step disabled", self.spec)
                self._kernel = None
                self._fuse_at = _NEVER

    def _sync(self) -> None:
        """Bring the members' own state up to date (after fused steps)."""
        if self._kernel is not None:
            self._kernel.flush()

    def _generic_list(self, bar: BarLike) -> list[float | None]:
        out = self._commit(self, bar)
        if self._count >= self._fuse_at:
            self._fuse()
        return out

    def _generic_dict(self, candle: BarLike) -> dict[str, float | None]:
        om = getattr(candle, "open_ms", None)
        last = self._last_open
        if om is not None and last is not None and om <= last:
            return self._redelivered(om)
        if om is not None:
            self._last_open = om
        return dict(zip(self._columns, self._generic_list(candle), strict=False))  # equal lengths by construction

    def _redelivered(self, om: int) -> dict[str, float | None]:
        self.duplicates += 1
        log.debug("indicator bank ignores candle open_ms=%s (last=%s)", om, self._last_open)
        return dict(zip(self._columns, self._values, strict=True))

    def _update_list(self, bar: BarLike) -> list[float | None]:
        """Commit ``bar`` for every indicator; return the flat values (no dict, no redelivery check)."""
        return self._step_list(bar)

    def _revise_list(self, bar: BarLike) -> list[float | None]:
        self._sync()
        c = bar.close
        out: list[float | None] = []
        ap = out.append
        ex = out.extend
        for _, peek, scalar, width in self._plan:
            r = peek(c) if scalar else peek(bar)
            if width == 1:
                ap(r)  # type: ignore[arg-type]
            elif r is None:
                ex((None,) * width)
            else:
                ex(r)  # type: ignore[arg-type]
        self._forming = out
        return out

    def _is_stale(self, bar: BarLike) -> bool:
        om = getattr(bar, "open_ms", None)
        last = self._last_open
        return om is not None and last is not None and om <= last

    def update(self, candle: BarLike) -> dict[str, float | None]:
        """Commit a closed candle and return every column's value (None while undefined).

        A candle that does not open after the last committed one is a redelivery: it is
        ignored (counted in ``duplicates``) and the current values are returned.
        """
        return self._step_dict(candle)

    def revise(self, candle: BarLike) -> dict[str, float | None]:
        """Return every column's value with ``candle`` as the forming candle; commits nothing.

        A forming candle that does not open after the last committed one is stale and
        ignored (the current values are returned).
        """
        if self._is_stale(candle):
            return self.values()
        return dict(zip(self._columns, self._revise_list(candle), strict=True))

    # ---- views ------------------------------------------------------------------------
    @property
    def columns(self) -> tuple[str, ...]:
        """Flat output column names, in spec order."""
        return self._columns

    @property
    def indicators(self) -> tuple[Indicator[Any], ...]:
        """The member indicators (read-only use: their own ``value`` is not maintained)."""
        self._sync()
        return tuple(self._inds)

    def values(self) -> dict[str, float | None]:
        """Return the latest values: the forming candle's if one was revised since the last update."""
        vals = self._values if self._forming is None else self._forming
        return dict(zip(self._columns, vals, strict=True))

    def committed_values(self) -> dict[str, float | None]:
        """Return the values after the last closed candle."""
        return dict(zip(self._columns, self._values, strict=True))

    @property
    def count(self) -> int:
        """Number of closed candles committed."""
        return self._count

    @property
    def last_open_ms(self) -> int | None:
        """Open time of the last committed candle (None before the first or without times)."""
        return self._last_open

    @property
    def is_ready(self) -> bool:
        """Whether every member indicator is ready (see :data:`~.base.READY_TOLERANCE`)."""
        if not self._ready and self._count >= self._ready_at:
            self._ready = True
        return self._ready

    @property
    def ready_after(self) -> int:
        """Closed candles needed before :attr:`is_ready`."""
        return self._ready_at

    def ready_columns(self) -> dict[str, bool]:
        """Return, per column, whether its indicator is ready."""
        return {c: self._count >= i.ready_after for i in self._inds for c in i.columns}

    def reset(self) -> None:
        """Forget every candle; keep the spec."""
        self._install(self.spec.build())

    # ---- persistence ------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """Return the whole bank as JSON-able, versioned plain data."""
        self._sync()
        state = {
            "spec": list(self.spec.indicators),
            "count": self._count,
            "last_open_ms": self._last_open,
            "duplicates": self.duplicates,
            "values": list(self._values),
            "indicators": [i.snapshot() for i in self._inds],
        }
        return wrap(self, state)

    @classmethod
    def restore(cls, data: dict[str, Any]) -> IndicatorBank:
        """Rebuild a bank from :meth:`snapshot` output (the layout before the envelope is read too)."""
        data = unwrap(data, cls, legacy=_legacy)
        finite(cls, data)  # nan, inf or 1e308 in a value: inf/nan on the next candle, no JSON
        with malformed(cls):
            return cls._load(data)

    @classmethod
    def _load(cls, data: dict[str, Any]) -> IndicatorBank:
        bank = cls(BankSpec(indicators=tuple(data["spec"])))
        inds = [Indicator.restore(d) for d in data["indicators"]]
        if [indicator_token(i) for i in inds] != list(bank.spec.indicators):
            raise StateError("IndicatorBank snapshot: indicators do not match its spec")
        bank._install(inds)
        bank._count = count(data["count"], field="count")
        last = data["last_open_ms"]
        bank._last_open = None if last is None else time_ms(last, field="last_open_ms")
        bank.duplicates = count(data.get("duplicates", 0), field="duplicates")
        vals = data["values"]
        if type(vals) is not list or len(vals) != len(bank._columns):
            raise StateError("IndicatorBank snapshot: wrong number of values")
        bank._values = [None if v is None else number(v, field="values") for v in vals]
        bank._fuse()
        return bank

    def __getstate__(self) -> dict[str, Any]:
        self._sync()
        return {k: getattr(self, k) for k in _PICKLED if hasattr(self, k)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        kept = {k: state[k] for k in _PICKLED[2:] if k in state}
        object.__setattr__(self, "spec", state["spec"])
        self._install(state["_inds"])
        for k, v in kept.items():
            object.__setattr__(self, k, v)
        self._fuse()

    def __repr__(self) -> str:
        return f"IndicatorBank(spec={str(self.spec)!r}, count={self._count})"


def _legacy(old: dict[str, Any]) -> dict[str, Any]:
    """The layout before the envelope: the same fields beside ``"type"`` and ``"version": 1``."""
    if old.get("type") != "IndicatorBank" or old.get("version") != 1:
        raise StateError(f"not an IndicatorBank snapshot of version 1: {str(old)[:60]!r}")
    return {k: v for k, v in old.items() if k not in ("type", "version")}
