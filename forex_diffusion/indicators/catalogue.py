"""Discovery of the indicator classes and the ``name_p1_p2`` spec tokens that build them.

A token names an indicator and its positional parameters, joined by ``_``:
``sma_20``, ``bb_20_2.5``, ``macd_12_26_9``, ``keltner_20_2_10``, ``stoch_14_3_3``.
Missing parameters take their defaults (``bb`` = ``bb_20_2``).
"""

from __future__ import annotations

import inspect
import math
import re
from typing import Any

from forex_diffusion.errors import ConfigError
from forex_diffusion.indicators.base import PARAMETER_MAX, Indicator
from forex_diffusion.indicators.channels import Donchian, Keltner
from forex_diffusion.indicators.extrema import Max, Min
from forex_diffusion.indicators.hurst import Hurst
from forex_diffusion.indicators.momentum import MACD, RSI, Stochastic
from forex_diffusion.indicators.moving import EMA, SMA
from forex_diffusion.indicators.trend import ADX
from forex_diffusion.indicators.volatility import ATR, BollingerBands, RealisedVolatility

__all__ = ["INDICATOR_CLASSES", "build_indicator", "indicator_class", "indicator_token"]

INDICATOR_CLASSES: dict[str, type[Indicator[Any]]] = {
    klass.spec_name: klass
    for klass in (
        SMA,
        EMA,
        RSI,
        ATR,
        BollingerBands,
        MACD,
        Max,
        Min,
        Donchian,
        Keltner,
        Stochastic,
        ADX,
        RealisedVolatility,
        Hurst,
    )
}
"""Every indicator, by spec name."""

_BY_CLASS_NAME = {k.__name__: k for k in INDICATOR_CLASSES.values()}


def indicator_class(name: str) -> type[Indicator[Any]]:
    """Return the indicator class of a class name (``"SMA"``) or spec name (``"sma"``)."""
    klass = _BY_CLASS_NAME.get(name) or INDICATOR_CLASSES.get(name.lower())
    if klass is None:
        raise ConfigError(f"unknown indicator {name!r}; known: {', '.join(sorted(INDICATOR_CLASSES))}")
    return klass


# A parameter as written in a token: ASCII digits and a sign (a float also a point and an
# exponent). int()/float() take more: '١٢' (12), '1_0' (10), 'nan', 'inf', '1e400'.
_INT = re.compile(r"[+-]?[0-9]+")
_FLOAT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_CHARS_MAX = 40  # past every bound: a longer parameter is refused unread (int() takes 4,300 digits at most)
#: Smallest float parameter (a band's width in deviations or ATRs, ``bb_20_K``,
#: ``keltner_20_K``): ``bb_20_1e-320`` (a subnormal) was taken, and its bands were the middle
#: line under a column named ``bb_lower_20_9.99989e-321``.
MULTIPLIER_MIN = 0.01
#: Significant digits of a float parameter: the canonical token (and the column names) write
#: it with ``:g``, so ``bb_20_2.5000001`` named ``bb_20_2.5`` and was rebuilt as 2.5.
_DIGITS = 6


def _shown(token: str) -> str:
    """``token`` quoted for a message, cut at 80 characters."""
    return repr(token[:80]) + ("…" if len(token) > 80 else "")


def _convert(raw: str, default: Any, name: str, token: str) -> Any:
    """``raw`` as the type of ``default``: an int in ASCII digits, or a float in
    ``[MULTIPLIER_MIN, PARAMETER_MAX]`` of at most 6 significant digits (a period is bounded
    by :func:`check_period`)."""
    integer = isinstance(default, int) and not isinstance(default, bool)
    if not isinstance(default, bool) and len(raw) <= _CHARS_MAX and (_INT if integer else _FLOAT).fullmatch(raw):
        value = int(raw) if integer else float(raw)
        if integer:
            return value
        if not (math.isfinite(value) and abs(value) <= PARAMETER_MAX):
            raise ConfigError(f"indicator spec {_shown(token)}: {name} may be at most {PARAMETER_MAX}, not {raw}")
        if not value >= MULTIPLIER_MIN:
            raise ConfigError(f"indicator spec {_shown(token)}: {name} must be at least {MULTIPLIER_MIN:g}, not {raw}")
        if float(f"{value:.{_DIGITS}g}") != value:
            raise ConfigError(
                f"indicator spec {_shown(token)}: {name} may have at most {_DIGITS} significant digits, not {raw}"
            )
        return value
    what = "a whole number" if integer else "a number"
    raise ConfigError(
        f"indicator spec {_shown(token)}: bad value {raw[:_CHARS_MAX]!r} for {name} "
        f"({what} in ASCII digits, at most {PARAMETER_MAX})"
    )


def build_indicator(token: str) -> Indicator[Any]:
    """Build an indicator from a spec token such as ``"bb_20_2.5"``.

    Raises ``ConfigError`` naming the token for an unknown indicator, too many parameters, or
    a parameter that is no ASCII number, out of its range, or past :data:`PARAMETER_MAX`.

    Examples
    --------
    >>> build_indicator("macd_5_35_5")
    MACD(fast=5, slow=35, signal=5)
    """
    parts = token.strip().lower().split("_")
    klass = INDICATOR_CLASSES.get(parts[0])
    if klass is None or not parts[0]:
        raise ConfigError(
            f"unknown indicator {parts[0][:_CHARS_MAX]!r} in spec {_shown(token)}; known: {', '.join(sorted(INDICATOR_CLASSES))}"
        )
    sig = inspect.signature(klass.__init__)
    names = list(klass._params)
    args = parts[1:]
    if len(args) > len(names):
        raise ConfigError(
            f"indicator spec {_shown(token)}: {parts[0]} takes at most {len(names)} parameters ({', '.join(names)})"
        )
    kwargs = {n: _convert(a, sig.parameters[n].default, n, token) for n, a in zip(names, args, strict=False)}
    try:
        return klass(**kwargs)
    except ConfigError as exc:  # the constructor's own check (a period < 1 or past PARAMETER_MAX): name the token
        raise ConfigError(f"indicator spec {_shown(token)}: {exc}") from None


def indicator_token(ind: Indicator[Any]) -> str:
    """Return the canonical spec token of an indicator (all parameters spelled out)."""
    vals = [f"{v:g}" if isinstance(v, float) else str(v) for v in ind.params().values()]
    return "_".join([type(ind).spec_name, *vals])  # type: ignore[attr-defined]
