"""``read_candle_series`` wants daily bars about a day apart, as the commands do.

Its check took any most common spacing of 23 hours or more for ``timeframe="1d"``: weekly or
monthly bars (or a day-first file read month first: a bar a month) were read as daily. The
commands' ``check_spacing`` wants 23 to 25 hours; the reader now does too.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from forex_diffusion.errors import DataFormatError
from forex_diffusion.ingest.readers import read_candle_series
from tests.realdata import require

DAY = 86_400_000


def _bars(path: Path, every_ms: int, n: int = 30) -> Path:
    rows = [f"{1_400_025_600_000 + k * every_ms},1.1,1.2,1.0,1.1" for k in range(n)]
    path.write_text("ts_ms,open,high,low,close\n" + "\n".join(rows) + "\n")
    return path


@pytest.mark.parametrize(
    ("every", "said"), [(7 * DAY, "7d"), (30 * DAY, "30d"), (2 * DAY, "2d"), (12 * 3_600_000, "12h")]
)
def test_bars_not_a_day_apart_are_not_daily(tmp_path: Path, every: int, said: str) -> None:
    with pytest.raises(DataFormatError, match=f"its bars are {said} apart, not 1d"):
        read_candle_series(_bars(tmp_path / "b.csv", every), symbol="EURUSD", timeframe="1d")


@pytest.mark.parametrize("every", [DAY, 23 * 3_600_000, 25 * 3_600_000])
def test_bars_a_day_apart_across_a_clock_change_are_daily(tmp_path: Path, every: int) -> None:
    assert len(read_candle_series(_bars(tmp_path / "b.csv", every), symbol="EURUSD", timeframe="1d").frame) == 30


def test_the_bundled_daily_pairs_are_daily() -> None:
    frame = read_candle_series(require("lean_oanda_d1_4pairs.csv.gz"), symbol="GBPUSD", timeframe="1d").frame
    assert len(frame) > 2_000
