"""A value whose numbers only look like a date beside a time is no whole date.

``10:00-1-10:00`` holds ``00-1-10``, three numbers joined as a date is written; the reader
took it for one and dateutil read the value as 10:00 of the day the file was read (found by
the property of ``test_readers_dates_4``, on the code before). A match beside a colon is part
of a time: such a value is asked of dateutil whole, as one without three numbers is.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from .test_readers_dates_4 import NO_FORMAT, _dateutil_ms, _read, _refused, _ticks


@pytest.mark.parametrize("cell", ["10:00-1-10:00", "10:00-01-14", "1:05/05/05:1", "23:59.12.12:00"])
def test_numbers_beside_a_time_are_not_read_from_the_clock(tmp_path: Path, cell: str) -> None:
    loaded = _ticks(tmp_path / "t.csv", [NO_FORMAT, cell])
    read = _read(loaded)
    if 3 not in read:
        assert 3 in _refused(loaded)
        return
    for default in (dt.datetime(2001, 2, 3), dt.datetime(2030, 11, 27)):
        assert read[3] == _dateutil_ms(cell, default), cell


def test_a_date_beside_a_time_is_still_read(tmp_path: Path) -> None:
    loaded = _ticks(tmp_path / "t.csv", [NO_FORMAT, "2014-05-01 10:00:00", "10:00 01/05/2014"])
    assert set(_read(loaded)) == {2, 3, 4}
