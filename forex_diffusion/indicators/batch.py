"""Run an indicator bank over a candle frame, row by row (the CLI and the tests use it)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from forex_diffusion.errors import DataFormatError
from forex_diffusion.indicators.bank import BankSpec, IndicatorBank

__all__ = ["compute_indicators"]


class _Row:
    """A reusable bar view of one frame row (indicators copy the floats they keep)."""

    __slots__ = ("open_ms", "high", "low", "close")

    def __init__(self) -> None:
        self.open_ms = 0
        self.high = self.low = self.close = 0.0


def compute_indicators(
    frame: pd.DataFrame, spec: BankSpec | str | None = None, *, only_ready: bool = False
) -> pd.DataFrame:
    """Return ``frame`` with one column per indicator output, NaN while undefined.

    ``frame`` has ``high``, ``low``, ``close`` (and optionally ``ts_ms``, the bar open,
    and ``symbol``) in time order, as :func:`~forex_diffusion.ingest.readers.read_candles`
    returns. Each symbol gets its own :class:`IndicatorBank`, fed row by row through the
    same ``update`` path the stream uses, so the numbers are the stream's. Rows whose
    ``ts_ms`` does not advance are ignored by the bank (they repeat the previous values).

    Parameters
    ----------
    frame
        Candles of one or more symbols.
    spec
        Indicator set (None: the default).
    only_ready
        Blank (NaN) a column's values until its indicator :attr:`~.Indicator.is_ready`.

    Returns
    -------
    pandas.DataFrame
        A copy of ``frame`` with the indicator columns appended.
    """
    missing = {"high", "low", "close"} - set(frame.columns)
    if missing:
        raise DataFormatError(f"candle frame lacks column(s) {', '.join(sorted(missing))}")
    bank_spec = spec if isinstance(spec, BankSpec) else BankSpec.parse(spec)
    columns = list(IndicatorBank(bank_spec).columns)
    out = np.full((len(frame), len(columns)), np.nan)
    highs = frame["high"].to_numpy(dtype=float)
    lows = frame["low"].to_numpy(dtype=float)
    closes = frame["close"].to_numpy(dtype=float)
    times = frame["ts_ms"].to_numpy(dtype=np.int64) if "ts_ms" in frame.columns else None
    if "symbol" in frame.columns and len(frame):
        groups = list(frame.groupby("symbol", sort=False).indices.values())
    else:
        groups = [np.arange(len(frame))]
    for idx in groups:
        bank = IndicatorBank(bank_spec)
        row = _Row()
        rows: list[list[float | None]] = []
        hs, ls, cs = highs[idx].tolist(), lows[idx].tolist(), closes[idx].tolist()
        ts = times[idx].tolist() if times is not None else None
        last: int | None = None
        for k in range(len(idx)):
            row.high = hs[k]
            row.low = ls[k]
            row.close = cs[k]
            if ts is not None:
                t = ts[k]
                if last is not None and t <= last:
                    rows.append(bank._values)
                    continue
                last = t
            rows.append(bank._update_list(row))
        block = np.array([[np.nan if v is None else v for v in r] for r in rows], dtype=float)
        if only_ready and len(block):
            col = 0
            for ind in bank.indicators:
                w = len(ind.columns)
                block[: max(0, ind.ready_after - 1), col : col + w] = np.nan
                col += w
        if len(block):
            out[idx] = block
    result = frame.copy()
    for j, name in enumerate(columns):
        result[name] = out[:, j]
    return result
