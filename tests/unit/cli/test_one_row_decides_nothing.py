"""One row written otherwise, or one row no bar has, decided how every other row was read
(found by an adversarial hunt with hand-made files):

* pandas reads a date column in the format it infers from its first value: a file written with
  ``datetime.isoformat()`` (no fraction when it is zero: row 1 ``…T00:00:01+00:00``, the rest
  ``…T00:00:01.997000+00:00``) had 599 of its 600 ticks refused as "no date", and a candle file
  whose first time was ``…T16:00:00Z`` and the rest ``… 17:00:00`` 199 of 200 (exit 0 both);
* a time without a date (``00:00:01``, ``now``, ``today``) was dated by the wall clock: the
  same file gave other candles each day;
* a 1969 row atop a newest-first candle file (refused itself, bad_ts) kept the file from being
  read oldest-first, and set the gate's bar spacing: its good rows were refused as late or
  "ahead of the series".
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from streams.cli import app

runner = CliRunner()
T0 = dt.datetime(2014, 5, 1, tzinfo=dt.UTC)


def _ticks(path: Path, stamps: list[str]) -> Path:
    rows = ["timestamp,symbol,bid,ask"]
    rows += [f"{s},EURUSD,{1.38676 + i * 1e-5:.5f},{1.38686 + i * 1e-5:.5f}" for i, s in enumerate(stamps)]
    path.write_text("\n".join(rows) + "\n")
    return path


def _candles_of(tmp: Path, src: Path) -> tuple[int, pd.DataFrame, pd.DataFrame]:
    out, rej = tmp / "out.csv", tmp / "rej.csv"
    res = runner.invoke(app, ["candles", str(src), "-o", str(out), "--rejects", str(rej), "--timeframes", "1m"])
    return res.exit_code, pd.read_csv(out) if out.exists() else pd.DataFrame(), pd.read_csv(rej)


def test_iso_times_written_in_several_forms_are_all_read(tmp_path: Path) -> None:
    times = [T0 + dt.timedelta(milliseconds=1000 if i == 0 else 1000 + i * 997) for i in range(600)]
    iso = _ticks(tmp_path / "iso.csv", [t.isoformat() for t in times])  # row 1: no fraction
    ms = _ticks(tmp_path / "ms.csv", [str(int(t.timestamp() * 1000)) for t in times])  # the same times in ms
    code, got, rejected = _candles_of(tmp_path, iso)
    assert code == 0 and rejected.empty
    _, want, _ = _candles_of(tmp_path, ms)
    assert got.to_csv() == want.to_csv() and got["tick_count"].sum() == 600
    # a Z, an offset, a space for the T: one time, three spellings
    z = _ticks(tmp_path / "z.csv", ["2014-05-01T00:00:01Z", "2014-05-01 00:00:02+00:00", "2014-05-01T00:00:03.5"])
    code, got, rejected = _candles_of(tmp_path, z)
    assert code == 0 and rejected.empty and got["tick_count"].tolist() == [3]


@pytest.mark.parametrize("undated", ["00:00:01.250", "now", "today", "Today", "10:15"])
def test_a_time_without_a_date_is_refused_not_dated_by_the_clock(tmp_path: Path, undated: str) -> None:
    stamps = [undated] + [f"2014-05-01T00:00:{s:02d}Z" for s in range(1, 30)]  # first: pandas guessed from it
    code, got, rejected = _candles_of(tmp_path, _ticks(tmp_path / "t.csv", stamps))
    assert code == 0 and got["tick_count"].sum() == 29 and got["open_time"].tolist() == ["2014-05-01T00:00:00Z"]
    assert rejected["line"].tolist() == [2] and rejected["reason"].tolist() == ["bad_ts"]
    assert "no date" in rejected["detail"][0]


def test_a_1969_row_atop_a_newest_first_file_leaves_the_others_read_oldest_first(tmp_path: Path) -> None:
    bars = [(T0 + dt.timedelta(days=40 * k)).strftime("%Y-%m-%dT%H:%M:%SZ") for k in range(12)]
    rows = ["timestamp,symbol,open,high,low,close,volume", "1969-12-31T23:59:00Z,EURUSD,1.05,1.051,1.049,1.05,1"]
    rows += [f"{b},EURUSD,1.05,1.051,1.049,1.05,1" for b in reversed(bars)]  # newest first, as vendors export
    src = tmp_path / "c.csv"
    src.write_text("\n".join(rows) + "\n")
    out, rej = tmp_path / "o.csv", tmp_path / "r.csv"
    res = runner.invoke(app, ["indicators", str(src), "--spec", "sma_3", "-o", str(out), "--rejects", str(rej)])
    assert res.exit_code == 0, res.stderr
    refused = pd.read_csv(rej)
    assert refused["line"].tolist() == [2] and refused["reason"].tolist() == ["bad_ts"]  # the 1969 row alone
    assert len(pd.read_csv(out)) == 12  # every good bar, oldest first (spaced 40 days: the gate's spacing)


def test_dates_without_a_four_digit_year_are_still_read(tmp_path: Path) -> None:
    """Only a time alone or a word for the present is undated: ``01-May-14 00:00:01`` (an
    Oracle or Excel export) is a date, read as before."""
    stamps = [f"01-May-14 00:00:{s:02d}" for s in range(1, 30)]
    code, got, rejected = _candles_of(tmp_path, _ticks(tmp_path / "t.csv", stamps))
    assert code == 0 and rejected.empty and got["open_time"].tolist() == ["2014-05-01T00:00:00Z"]


@pytest.mark.parametrize("part", ["2014-05-01", "2014-05", "2014-05-01 00", "2014"])
def test_a_part_of_a_date_time_among_full_ones_is_still_refused(tmp_path: Path, part: str) -> None:
    """The second, ISO 8601 reading takes full date-times only: a truncated row is not put at
    midnight inside real bars."""
    stamps = [f"2014-05-01 00:00:{s:02d}.123" for s in range(1, 30)]
    stamps[5] = part
    code, got, rejected = _candles_of(tmp_path, _ticks(tmp_path / "t.csv", stamps))
    assert code == 0 and got["tick_count"].sum() == 28
    assert rejected["line"].tolist() == [7] and rejected["reason"].tolist() == ["bad_ts"]
