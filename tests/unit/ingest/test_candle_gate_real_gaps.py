"""The candle gate on real bars: no genuine gap of the bundled files is held for confirmation.

It also pins why the gate's reach cannot shrink (docs/reliability.md, "Candle times"): OANDA's
hourly EUR/USD has a genuine gap of 152 hours (2016-12-09 21:00 to 12-16 05:00 UTC, 105 hours of
open market), longer than a forged bar six days ahead on a weekday (about 97 open hours), so no
reach in wall or open-market time tells the two apart.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from forex_diffusion.domain import Candle
from forex_diffusion.ingest.candle_gate import CandleGate
from tests.realdata import real_path

HOUR = 3_600_000


def _series(name: str) -> dict[str, tuple[np.ndarray, int]]:
    """``{symbol: (open times in ms, bar length in ms)}`` of a bundled Lean file."""
    frame = pd.read_csv(real_path(name))
    if "date" in frame.columns:  # daily: the vendor's day label
        ms = pd.to_datetime(frame["date"], utc=True).map(lambda t: int(t.timestamp() * 1000))
        return {str(p): (ms[frame["pair"] == p].to_numpy(np.int64), 24 * HOUR) for p in frame["pair"].unique()}
    length = 60_000 if "_m1_" in name else HOUR
    return {"EURUSD": (frame["ts_ms"].to_numpy(np.int64), length)}


@pytest.mark.parametrize(
    "name",
    [
        "lean_oanda_eurusd_m1_2014-05-01_15.csv.gz",
        "lean_fxcm_eurusd_m1_2014-05-01_15.csv.gz",
        "lean_oanda_eurusd_h1_2007_2017.csv.gz",
        "lean_oanda_d1_4pairs.csv.gz",
    ],
)
def test_every_bar_of_a_real_file_passes_the_gate_at_once(name: str) -> None:
    gate = CandleGate()
    for symbol, (opens, length) in _series(name).items():
        last: int | None = None
        refused = []
        for t in opens.tolist():
            bar = Candle(
                symbol=symbol, timeframe="x", open_ms=t, close_ms=t + length, open=1.0, high=1.0, low=1.0, close=1.0
            )
            if (why := gate.check(bar, watermark_ms=last, now_ms=None)) is not None:
                refused.append((t, why.value))
            else:
                last = t
        assert refused == [], (symbol, refused[:5])
        assert len(opens) > 100


def test_a_genuine_gap_is_longer_than_six_days_of_wall_time() -> None:
    opens, _ = _series("lean_oanda_eurusd_h1_2007_2017.csv.gz")["EURUSD"]
    gaps = np.diff(np.sort(opens))
    assert gaps.max() == 152 * HOUR > 6 * 24 * HOUR
