"""The hostile-row catalogue of issue 13 over real ticks, shared by the core, CLI and broker tests.

Real OANDA EUR/USD quotes of the bundled sample, and hostile rows to mix into them: far-future
and far-past timestamps, prices and volumes at the float limits, negative, zero, sub-normal
and non-finite values, rows with missing or extra fields.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from forex_diffusion.bundled import SAMPLE_TICKS

HEADER = "timestamp,symbol,bid,ask,volume"
DAY = 86_400_000
YEAR = 365 * DAY
TFS = ["1m", "5m", "1h"]


def _real(n: int, start: int = 0) -> list[tuple[int, str, str, str]]:
    df = pd.read_csv(SAMPLE_TICKS, dtype={"bid": str, "ask": str}).iloc[start : start + n]
    vols = [f"{(i % 7) * 0.25:g}" for i in range(len(df))]  # some volume, some 0
    return list(zip(df.ts_ms.tolist(), df.bid.tolist(), df.ask.tolist(), vols, strict=True))


REAL = _real(3_000)
T_FIRST, T_LAST = REAL[0][0], REAL[-1][0]


def row(ts: object, bid: object, ask: object, vol: object = "1") -> str:
    return f"{ts},EURUSD,{bid},{ask},{vol}"


def clean_rows(real: list[tuple[int, str, str, str]] = REAL) -> list[str]:
    return [row(t, b, a, v) for t, b, a, v in real]


def mix(clean: list[str], hostile: list[tuple[int, str]]) -> tuple[list[str], list[int]]:
    """Insert each ``(gap, row)`` before clean row ``gap`` (gap == len: at the end); return the
    rows and the 1-based file lines (header = line 1) of the hostile ones."""
    by_gap: dict[int, list[str]] = {}
    for gap, text in hostile:
        by_gap.setdefault(gap, []).append(text)
    out: list[str] = []
    lines: list[int] = []
    for i in range(len(clean) + 1):
        for text in by_gap.get(i, []):
            out.append(text)
            lines.append(len(out) + 1)
        if i < len(clean):
            out.append(clean[i])
    return out, lines


def write(path: Path, rows: list[str]) -> Path:
    path.write_text("\n".join([HEADER, *rows]) + "\n")
    return path


# -- the catalogue -------------------------------------------------------------------------

T_IN = T_FIRST + 60_000  # inside the file
BID, ASK = "1.38710", "1.38726"
HOSTILE: dict[str, str] = {
    # times
    "future_3y": row(T_IN + 3 * YEAR, BID, ASK),
    "future_3h": row(T_LAST + 3 * 3_600_000, BID, ASK),  # a local time taken for UTC
    "future_20min": row(T_LAST + 20 * 60_000, BID, ASK),
    "future_3_9_days": row(T_IN + 3 * DAY + 21 * 3_600_000, BID, ASK),
    "ts_text": row("x", BID, ASK),
    "future_2099": row(4_070_908_800_000, BID, ASK),
    "future_2200": row(7_258_118_400_000, BID, ASK),
    "future_iso_9999": row("9999-12-31T23:59:59Z", BID, ASK),
    "ts_1e308": row("1e308", BID, ASK),
    "ts_inf": row("inf", BID, ASK),
    "ts_nan": row("nan", BID, ASK),
    "ts_2_63": row(2**63, BID, ASK),
    "ts_minus_2_63": row(-(2**63) - 1, BID, ASK),
    "past_1970": row(0, BID, ASK),
    "past_1999": row(915_148_800_000, BID, ASK),
    "past_2005": row(1_104_537_600_000, BID, ASK),
    "past_iso_1900": row("1900-01-01T00:00:00Z", BID, ASK),
    "ts_negative": row(-1, BID, ASK),
    "ts_empty": row("", BID, ASK),
    # prices
    "price_1e308": row(T_IN, "1e308", "1e308"),
    "price_1e304": row(T_IN, "1e304", "1e304"),
    "price_max_float": row(T_IN, "1.7976931348623157e308", "1.7976931348623157e308"),
    "ask_1e308": row(T_IN, BID, "1e308"),
    "price_1e-308": row(T_IN, "1e-308", "1e-308"),
    "price_5e-324": row(T_IN, "5e-324", "5e-324"),
    "price_min_normal": row(T_IN, "2.2250738585072014e-308", "2.2250738585072014e-308"),
    "price_zero": row(T_IN, "0", "0"),
    "price_minus_zero": row(T_IN, "-0.0", ASK),
    "price_negative": row(T_IN, "-1.38710", ASK),
    "price_-1e308": row(T_IN, "-1e308", ASK),
    "price_nan": row(T_IN, "nan", ASK),
    "price_inf": row(T_IN, BID, "inf"),
    "price_-inf": row(T_IN, "-inf", ASK),
    "price_garbage": row(T_IN, "1.3.8", ASK),
    # volumes
    "volume_1e308": row(T_IN, BID, ASK, "1e308"),
    "volume_1e16": row(T_IN, BID, ASK, "1e16"),  # past the bound shared by the file reader and the wire
    "volume_max_float": row(T_IN, BID, ASK, "1.7976931348623157e308"),
    "volume_1e-308": row(T_IN, BID, ASK, "1e-308"),
    "volume_5e-324": row(T_IN, BID, ASK, "5e-324"),
    "volume_negative": row(T_IN, BID, ASK, "-1"),
    "volume_-1e308": row(T_IN, BID, ASK, "-1e308"),
    "volume_nan": row(T_IN, BID, ASK, "nan"),
    "volume_inf": row(T_IN, BID, ASK, "inf"),
    "volume_-inf": row(T_IN, BID, ASK, "-inf"),
    # layout
    "missing_volume": f"{T_IN},EURUSD,{BID},{ASK}",
    "missing_three": f"{T_IN},EURUSD",
    "only_ts": f"{T_IN}",
    "extra_field": row(T_IN, BID, ASK) + ",1",
    "extra_fields": row(T_IN, BID, ASK) + ",x,y,z",
    "quoted_comma": f'{T_IN},"EURUSD,{BID}",{ASK},1',
    "empty_fields": ",,,,",
}
