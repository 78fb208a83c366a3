"""The instrument registry: known symbols, their pip size, and an explicit alias map.

Symbols are normalised only through the alias map (``EUR/USD``, ``EUR_USD``, ``eurusd``
→ ``EURUSD``, in any ASCII case); anything else is unknown and must never create state or metric labels.

Each instrument carries the range its price has traded in (``low``/``high``, rounded out
from the history since 1999); the validator refuses a price beyond a multiple of it
(``out_of_range``). A symbol the defaults do not know gets a wide range (1e-4 to 1e6).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from forex_diffusion.errors import ConfigError

__all__ = [
    "DEFAULT_INSTRUMENTS",
    "Instrument",
    "InstrumentRegistry",
    "is_symbol_set_key",
    "series_symbol",
    "symbol_set_key",
]


@dataclass(frozen=True, slots=True)
class Instrument:
    """A currency pair: six-letter ``symbol``, the size of one pip in price units, the quoted
    decimals and the range (``low``, ``high``) its price has traded in."""

    symbol: str
    pip: float
    decimals: int
    low: float = 1e-4
    high: float = 1e6

    @property
    def base(self) -> str:
        return self.symbol[:3]

    @property
    def quote(self) -> str:
        return self.symbol[3:]


# Traded range since 1999 (daily extremes), rounded outwards.
_RANGES: dict[str, tuple[float, float]] = {
    "EURUSD": (0.8, 1.65),
    "GBPUSD": (1.0, 2.15),
    "USDJPY": (75.0, 165.0),
    "USDCHF": (0.7, 1.85),
    "AUDUSD": (0.47, 1.11),
    "USDCAD": (0.9, 1.65),
    "NZDUSD": (0.39, 0.89),
    "EURGBP": (0.56, 0.99),
    "EURJPY": (88.0, 176.0),
    "EURCHF": (0.85, 1.69),
    "GBPJPY": (116.0, 252.0),
    "AUDJPY": (55.0, 108.0),
}


def _inst(symbol: str) -> Instrument:
    jpy = symbol.endswith("JPY")
    # Pip is 0.01 for JPY quotes, 0.0001 otherwise; feeds quote one extra (fractional) digit.
    low, high = _RANGES.get(symbol, (1e-4, 1e6))
    return Instrument(symbol, 0.01 if jpy else 0.0001, 3 if jpy else 5, low, high)


DEFAULT_INSTRUMENTS: tuple[Instrument, ...] = tuple(
    _inst(s)
    for s in (
        "EURUSD",
        "GBPUSD",
        "USDJPY",
        "USDCHF",
        "AUDUSD",
        "USDCAD",
        "NZDUSD",
        "EURGBP",
        "EURJPY",
        "EURCHF",
        "GBPJPY",
        "AUDJPY",
    )
)


class InstrumentRegistry:
    """Look up instruments by symbol or alias; unknown names give ``None``."""

    def __init__(self, instruments: Iterable[Instrument] = DEFAULT_INSTRUMENTS) -> None:
        self._by_symbol: dict[str, Instrument] = {}
        self._aliases: dict[str, str] = {}
        for inst in instruments:
            if len(inst.symbol) != 6 or not inst.symbol.isalpha() or not inst.symbol.isupper():
                raise ConfigError(f"symbol {inst.symbol!r} must be six upper-case letters")
            if not (0 < inst.low < inst.high < 1e12):
                raise ConfigError(f"price range of {inst.symbol} must satisfy 0 < low < high < 1e12")
            self._by_symbol[inst.symbol] = inst
            b, q = inst.base, inst.quote
            for form in (f"{b}{q}", f"{b}/{q}", f"{b}_{q}", f"{b}-{q}"):
                self._aliases[form] = inst.symbol
                self._aliases[form.lower()] = inst.symbol

    @classmethod
    def of(cls, symbols: Iterable[str]) -> InstrumentRegistry:
        """Registry of exactly these symbols (aliases accepted when defaults know them)."""
        defaults = {i.symbol: i for i in DEFAULT_INSTRUMENTS}
        insts = []
        for s in symbols:
            norm = InstrumentRegistry().normalise(s) or s.upper()
            insts.append(defaults.get(norm) or _inst(norm))
        return cls(insts)

    @property
    def symbols(self) -> tuple[str, ...]:
        return tuple(self._by_symbol)

    def normalise(self, name: str) -> str | None:
        """Return the canonical symbol for ``name``, or None when it is not known.

        An alias is known in any case (``Eur/Usd`` as ``EUR/USD`` and ``eur/usd``), but only
        in ASCII: ``'EURU\u017fD'.upper()`` is ``EURUSD``, and the long s is no letter of it.

        >>> InstrumentRegistry().normalise("Eur/Usd"), InstrumentRegistry().normalise("EURU\u017fD")
        ('EURUSD', None)
        """
        if not isinstance(name, str):
            return None
        canon = self._aliases.get(name)
        if canon is None and name.isascii():  # eur/usd and EUR/USD were known, Eur/Usd was not
            canon = self._aliases.get(name.upper())
        return canon

    def get(self, symbol: str) -> Instrument | None:
        return self._by_symbol.get(symbol)

    def __contains__(self, symbol: object) -> bool:
        return symbol in self._by_symbol

    def with_symbol(self, symbol: str) -> InstrumentRegistry:
        """A registry that also knows ``symbol`` (for offline commands naming it)."""
        norm = self.normalise(symbol)
        if norm is not None:
            return self
        return InstrumentRegistry([*self._by_symbol.values(), _inst(symbol.upper())])


def series_symbol(name: str) -> str:
    """The symbol of a global model's series name (``EURUSD@oanda`` → ``EURUSD``)."""
    return name.split("@", 1)[0].upper()


def symbol_set_key(symbols: Iterable[str]) -> str:
    """The model-key symbol of a global model over a set of symbols.

    ``SET`` and the first 8 hex digits (upper case) of the sha256 of the sorted, distinct
    symbols joined by commas: short, a safe path part, the same for the same set in any
    order. The set itself is in the model's manifest (``symbols``).

    >>> symbol_set_key(["GBPUSD", "EURUSD"]) == symbol_set_key(["eurusd", "GBPUSD", "EURUSD"])
    True
    >>> len(symbol_set_key(["EURUSD"]))
    11
    """
    import hashlib

    text = ",".join(sorted({s.upper() for s in symbols}))
    return "SET" + hashlib.sha256(text.encode()).hexdigest()[:8].upper()


def is_symbol_set_key(symbol: str) -> bool:
    """Whether a model-key symbol names a symbol set (:func:`symbol_set_key`)."""
    return len(symbol) == 11 and symbol.startswith("SET") and all(c in "0123456789ABCDEF" for c in symbol[3:])
