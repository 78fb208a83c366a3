"""Prices in written files at the instrument's precision (no ``1.3868299999999998``).

A bid or ask price is quoted to the instrument's decimals (5, 3 for JPY quotes); a mid
price, the mean of two quotes, to one more. Indicator values and probabilities are not
prices and keep full precision.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from forex_diffusion.instruments import InstrumentRegistry

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["price_decimals", "price_text", "round_price_columns"]

_REGISTRY = InstrumentRegistry()


def price_decimals(symbol: str, price: str = "mid") -> int:
    """Decimals of ``symbol``'s ``price`` side (unknown symbols: 5, or 3 for ``…JPY``)."""
    canon = _REGISTRY.normalise(symbol) or _REGISTRY.normalise(symbol.upper())
    inst = _REGISTRY.get(canon) if canon else None
    if inst is not None:
        decimals = inst.decimals
    else:  # as the registry builds an unknown pair: 3 decimals for JPY quotes, else 5
        decimals = 3 if symbol.upper().endswith("JPY") else 5
    return decimals + 1 if price == "mid" else decimals


def price_text(x: float | None, decimals: int) -> str:
    """``x`` rounded to ``decimals`` in shortest round-trip form; ``None`` as empty text."""
    if x is None:
        return ""
    return repr(round(x, decimals))


def round_price_columns(
    frame: pd.DataFrame,
    columns: Sequence[str],
    *,
    symbol_column: str = "symbol",
    symbol: str | None = None,
    price: str = "mid",
) -> pd.DataFrame:
    """A copy of ``frame`` with ``columns`` rounded to each row's symbol precision."""
    out = frame.copy()
    cols = [c for c in columns if c in out.columns]
    if not cols or out.empty:
        return out
    if symbol is not None or symbol_column not in out.columns:
        groups = {symbol or "": out.index}
    else:
        groups = out.groupby(symbol_column, sort=False).groups
    for sym, idx in groups.items():
        d = price_decimals(str(sym), price) if sym else 5 + (price == "mid")
        out.loc[idx, cols] = out.loc[idx, cols].round(d)
    return out
