"""Discovery of the indicator classes and the ``name_p1_p2`` spec tokens that build them.

A token names an indicator and its positional parameters, joined by ``_``:
``sma_20``, ``bb_20_2.5``, ``macd_12_26_9``, ``keltner_20_2_10``, ``stoch_14_3_3``.
Missing parameters take their defaults (``bb`` = ``bb_20_2``).
"""

from __future__ import annotations

import inspect
from typing import Any

from forex_diffusion.errors import ConfigError
from forex_diffusion.indicators.base import Indicator
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


def _convert(raw: str, default: Any, name: str, token: str) -> Any:
    try:
        if isinstance(default, bool):
            raise ValueError
        if isinstance(default, int):
            return int(raw)
        return float(raw)
    except ValueError as exc:
        raise ConfigError(f"indicator spec {token!r}: bad value {raw!r} for {name}") from exc


def build_indicator(token: str) -> Indicator[Any]:
    """Build an indicator from a spec token such as ``"bb_20_2.5"``.

    Examples
    --------
    >>> build_indicator("macd_5_35_5")
    MACD(fast=5, slow=35, signal=5)
    """
    parts = token.strip().lower().split("_")
    klass = INDICATOR_CLASSES.get(parts[0])
    if klass is None or not parts[0]:
        raise ConfigError(
            f"unknown indicator {parts[0]!r} in spec {token!r}; known: {', '.join(sorted(INDICATOR_CLASSES))}"
        )
    sig = inspect.signature(klass.__init__)
    names = list(klass._params)
    args = parts[1:]
    if len(args) > len(names):
        raise ConfigError(
            f"indicator spec {token!r}: {parts[0]} takes at most {len(names)} parameters ({', '.join(names)})"
        )
    kwargs = {n: _convert(a, sig.parameters[n].default, n, token) for n, a in zip(names, args, strict=False)}
    return klass(**kwargs)


def indicator_token(ind: Indicator[Any]) -> str:
    """Return the canonical spec token of an indicator (all parameters spelled out)."""
    vals = [f"{v:g}" if isinstance(v, float) else str(v) for v in ind.params().values()]
    return "_".join([type(ind).spec_name, *vals])  # type: ignore[attr-defined]
