"""The file readers' dates, series and timeframe names, after a fourth hostile review. Each
test names what the reader did before its fix:

1. a column whose first date has no format pandas infers is read value by value; a value
   lacking its day, month or year had it filled in from the clock: ``10:00 2014`` was read
   as today's day and month of 2014, ``10:00 14th`` as the 14th of this month, and a quarter
   (``2014Q2``) as its first day;
2. a newest-first candle file whose timeframe column writes one timeframe several ways
   (``60m``, ``1H``, ``1h``) was taken for several series: one candle kept, the rest late;
3. a day-first file whose first date may be read either way (01/05/2014) was read month
   first, its dates of the 1st to the 12th as January to December, and 13/05/2014 refused
   as "no date" without saying in which order it was read;
4. a timeframe ``0001M`` was refused with the advice to write ``0001m``, and ``1Ｍ`` (a
   full-width M) was echoed as ``1ｍ``, a name the user never wrote.
"""

from __future__ import annotations

import datetime as dt
import warnings
from pathlib import Path

import hypothesis.strategies as st
import numpy as np
import pandas as pd
import pytest
from dateutil import parser as dateutil_parser
from hypothesis import HealthCheck, given, settings

from forex_diffusion.errors import ConfigError, DataFormatError, RejectReason
from forex_diffusion.ingest.readers import (
    LoadedFile,
    _whole_date,
    oldest_first,
    read_candle_series,
    read_candles,
    read_ticks,
)
from forex_diffusion.timeframes import Timeframe

#: A first date of no format pandas infers (no zero padding, a 12-hour clock): the column is
#: read value by value, by dateutil.
NO_FORMAT = "5/1/2014 12:00:01 AM"


def _ticks(path: Path, stamps: list[str]) -> LoadedFile:
    rows = ["timestamp,symbol,bid,ask", *(f"{s},EURUSD,1.38676,1.38686" for s in stamps)]
    path.write_text("\n".join(rows) + "\n")
    return read_ticks(path)


def _ms(text: str) -> int:
    return int(pd.Timestamp(text, tz="UTC").value // 1_000_000)


def _read(loaded: LoadedFile) -> dict[int, int]:
    """Line → the ms of its time, for the rows read."""
    return dict(zip(loaded.frame["line"].tolist(), loaded.frame["ts_ms"].tolist(), strict=True))


def _refused(loaded: LoadedFile) -> dict[int, str]:
    return {r.line: r.detail for r in loaded.rejects if r.reason is RejectReason.BAD_TS}


# -- 1: no part of a date is taken from the clock ------------------------------------------------


@pytest.mark.parametrize(
    "partial",
    [
        "10:00 2014",  # was today's day and month of 2014
        "10:00 14th",  # the 14th of this month, this year
        "10:00 May",  # today's day of May, this year
        "10:00 May 5",  # May 5 of this year
        "10:00 May 2014",  # today's day of May 2014
        "10:00:30 Dec",
        "10am 14th",
        "2014Q2",  # a quarter: its first day
        "2Q2014",
        "2014-Q2",
        "10:00 1st",
        "10:00 5/1",
        "14th May",
        "May 2014 10:00",
        "Monday 10:00",
    ],
)
def test_a_date_missing_its_day_month_or_year_is_refused_not_filled_from_the_clock(
    tmp_path: Path, partial: str
) -> None:
    loaded = _ticks(tmp_path / "t.csv", [NO_FORMAT, partial, "5/2/2014 1:30:00 PM"])
    assert _read(loaded) == {2: _ms("2014-05-01 00:00:01"), 4: _ms("2014-05-02 13:30:00")}
    refused = _refused(loaded)
    assert list(refused) == [3]
    assert refused[3].startswith(f"timestamp {partial!r} is no date")


@pytest.mark.parametrize(
    ("whole", "instant"),
    [
        ("10:00 5/1/2014", "2014-05-01 10:00"),  # a time first, then the whole date
        ("10:00 AM 5/1/2014", "2014-05-01 10:00"),
        ("May 1st 2014 10:00 pm", "2014-05-01 22:00"),
        ("Thu 01 May 2014 10:00:00 +0100", "2014-05-01 09:00"),
        ("2014-05-01T10:00:00.123456789Z", "2014-05-01 10:00:00.123"),
        ("Dec 2014 5", "2014-12-05"),
        ("1 May 2014 10:00", "2014-05-01 10:00"),
    ],
)
def test_a_whole_date_among_dates_of_no_format_is_still_read(tmp_path: Path, whole: str, instant: str) -> None:
    loaded = _ticks(tmp_path / "t.csv", [NO_FORMAT, whole])
    assert _read(loaded) == {2: _ms("2014-05-01 00:00:01"), 3: _ms(instant)}
    assert loaded.rejects == []


_PIECES = [
    "10:00",
    "10:00:30",
    "10am",
    "9 PM",
    "T10:00",
    "1",
    "5",
    "05",
    "14",
    "14th",
    "1st",
    "31",
    "May",
    "Dec",
    "December",
    "Monday",
    "Mon",
    "2014",
    "0014",
    "2014Q2",
    "5/1",
    "1/5/2014",
    "13/5/2014",
    "5/13/2014",
    "2014/5/1",
    "2014-05-01",
    "Z",
    "UTC",
    "+05:00",
]


@st.composite
def _cells(draw: st.DrawFn) -> str:
    parts = draw(st.lists(st.sampled_from(_PIECES), min_size=1, max_size=4))
    seps = draw(st.lists(st.sampled_from([" ", "/", "-"]), min_size=len(parts), max_size=len(parts)))
    return "".join(sep + part for sep, part in zip(seps, parts, strict=True))[len(seps[0]) :]


def _dateutil_ms(cell: str, default: dt.datetime) -> int:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        when = dateutil_parser.parse(cell, default=default)
    when = when.replace(tzinfo=dt.UTC) if when.tzinfo is None else when.astimezone(dt.UTC)
    return int((when - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(milliseconds=1))


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cell=_cells())
def test_a_value_read_alone_is_read_the_same_whatever_the_day_it_is_read(tmp_path: Path, cell: str) -> None:
    """Property: a value the reader accepts among dates of no format is a whole date (read
    with any two defaults, dateutil gives one time: none of it comes from the clock), and it
    is read as that time."""
    loaded = _ticks(tmp_path / "t.csv", [NO_FORMAT, cell])
    read = _read(loaded)
    if 3 not in read:
        assert 3 in _refused(loaded)
        return
    assert _whole_date(cell), cell
    for default in (dt.datetime(2001, 2, 3), dt.datetime(2030, 11, 27)):
        assert read[3] == _dateutil_ms(cell, default), cell


# -- 2: one series, whatever its timeframe's spelling ---------------------------------------------


def _candle_file(path: Path, rows: list[tuple[str, str, str]]) -> Path:
    lines = ["timestamp,symbol,timeframe,open,high,low,close,volume"]
    lines += [f"{ts},{sym},{tf},1.1,1.2,1.0,1.15,10" for ts, sym, tf in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_newest_first_series_of_one_timeframe_spelt_three_ways_is_read_oldest_first(tmp_path: Path) -> None:
    """Before: 60m, 1H and 1h were three series; lines 2, 3 and 5 were read before line 4."""
    path = _candle_file(
        tmp_path / "c.csv",
        [
            ("2014-05-01 04:00", "EURUSD", "60m"),
            ("2014-05-01 03:00", "EURUSD", "1H"),
            ("2014-05-01 02:00", "EURUSD", "1h"),
            ("2014-05-01 01:00", "EURUSD", " 1h "),
        ],
    )
    frame = read_candles(path).frame
    assert frame["line"].tolist() == [5, 4, 3, 2]
    assert frame["ts_ms"].tolist() == [_ms(f"2014-05-01 0{h}:00") for h in (1, 2, 3, 4)]
    loaded = read_candle_series(path, timeframe="1h")
    assert loaded.frame["line"].tolist() == [5, 4, 3, 2] and loaded.rejects == []


def test_newest_first_series_are_told_apart_by_their_canonical_symbol_and_timeframe(tmp_path: Path) -> None:
    """Two series interleaved, each spelt two ways: each is reversed in its own rows."""
    path = _candle_file(
        tmp_path / "c.csv",
        [
            ("2014-05-01 02:00", "eur/usd", "1H"),
            ("2014-05-01 02:00", "GBPUSD", "60m"),
            ("2014-05-01 01:00", "EURUSD", "60m"),
            ("2014-05-01 01:00", "gbp/usd", "1h"),
        ],
    )
    frame = read_candles(path).frame
    assert frame["symbol"].tolist() == ["EURUSD", "GBPUSD", "EURUSD", "GBPUSD"]
    assert frame["line"].tolist() == [4, 5, 2, 3]


def test_oldest_first_groups_a_timeframe_column_by_its_canonical_name() -> None:
    f = pd.DataFrame({"line": [2, 3, 4], "ts_ms": [3, 2, 1], "symbol": ["EURUSD"] * 3})
    assert oldest_first(f, np.array(["60m", "1H", "1h"], dtype=object))["line"].tolist() == [4, 3, 2]
    # two timeframes that are not one: each series is in order, nothing moves
    assert oldest_first(f, np.array(["5m", "1h", "1h"], dtype=object))["line"].tolist() == [2, 4, 3]


# -- 3: the order of day and month is the file's, not its first date's ---------------------------


@pytest.mark.parametrize("time", ["", " 10:00:00", " 1:00:00 PM"], ids=["date", "date time", "no format"])
def test_a_day_first_file_whose_first_date_may_be_either_is_read_day_first(tmp_path: Path, time: str) -> None:
    """Before: 01/05/2014 to 12/05/2014 were read as January 5 to December 5, and 13/05/2014
    was refused as no date (with dates of no format: refused for its order)."""
    pad = "02d" if time != " 1:00:00 PM" else "d"
    stamps = [f"{day:{pad}}/05/2014{time}" for day in range(1, 14)]
    loaded = _ticks(tmp_path / "t.csv", stamps)
    assert loaded.rejects == []
    hour = {"": "00:00", " 10:00:00": "10:00", " 1:00:00 PM": "13:00"}[time]
    assert _read(loaded) == {day + 1: _ms(f"2014-05-{day:02d} {hour}") for day in range(1, 14)}


@pytest.mark.parametrize("pad", ["02d", "d"], ids=["one format", "no format"])
def test_a_date_of_the_other_order_than_the_files_first_sure_one_is_refused_naming_both(
    tmp_path: Path, pad: str
) -> None:
    suffix = "" if pad == "02d" else " 1:00:00 PM"
    stamps = [f"{1:{pad}}/05/2014{suffix}", f"{13:{pad}}/05/2014{suffix}", f"{5:{pad}}/13/2014{suffix}"]
    loaded = _ticks(tmp_path / "t.csv", stamps)
    hour = "00:00" if pad == "02d" else "13:00"
    assert _read(loaded) == {2: _ms(f"2014-05-01 {hour}"), 3: _ms(f"2014-05-13 {hour}")}
    assert _refused(loaded) == {
        4: f"timestamp {stamps[2]!r} has its month first where line 3 has its day first: one file, one order"
    }


def test_a_month_first_file_whose_first_date_may_be_either_stays_month_first(tmp_path: Path) -> None:
    loaded = _ticks(tmp_path / "t.csv", ["01/05/2014", "05/13/2014", "13/05/2014"])
    assert _read(loaded) == {2: _ms("2014-01-05"), 3: _ms("2014-05-13")}
    assert _refused(loaded) == {
        4: "timestamp '13/05/2014' has its day first where line 3 has its month first: one file, one order"
    }


def test_a_date_refused_where_no_date_decides_the_order_says_how_it_was_read(tmp_path: Path) -> None:
    loaded = _ticks(tmp_path / "t.csv", ["01/05/2014", "02/05/2014", "13/13/2014"])
    assert _read(loaded) == {2: _ms("2014-01-05"), 3: _ms("2014-02-05")}
    assert _refused(loaded) == {
        4: "timestamp '13/13/2014' is no date (read month first as the file's first date, '01/05/2014', was: %m/%d/%Y)"
    }


def test_a_date_refused_in_the_order_a_later_date_decided_names_that_date(tmp_path: Path) -> None:
    loaded = _ticks(tmp_path / "t.csv", ["01/05/2014", "13/05/2014", "05/32/2014"])
    assert _read(loaded) == {2: _ms("2014-05-01"), 3: _ms("2014-05-13")}
    assert _refused(loaded) == {
        4: "timestamp '05/32/2014' is no date (read day first as line 3's '13/05/2014' is: %d/%m/%Y)"
    }


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    days=st.lists(st.integers(1, 28), min_size=1, max_size=8),
    sure=st.integers(13, 28),
    month=st.integers(1, 12),
    day_first=st.booleans(),
    padded=st.booleans(),
    at=st.integers(0, 8),
)
def test_a_file_of_one_order_is_read_in_it_wherever_its_first_sure_date_stands(
    tmp_path: Path, days: list[int], sure: int, month: int, day_first: bool, padded: bool, at: int
) -> None:
    """Property: dates all written day first (or all month first), one of them sure of it,
    are each read as the date written, whatever the first date is and wherever the sure one is."""
    days.insert(min(at, len(days)), sure)
    pad, time = ("02d", " 10:00:00") if padded else ("d", " 10:00:00 AM")
    stamps = [(f"{d:{pad}}/{month:{pad}}/2014" if day_first else f"{month:{pad}}/{d:{pad}}/2014") + time for d in days]
    loaded = _ticks(tmp_path / "t.csv", stamps)
    assert loaded.rejects == []
    assert _read(loaded) == {k + 2: _ms(f"2014-{month:02d}-{d:02d} 10:00") for k, d in enumerate(days)}


# -- 4: a refused timeframe is advised by its one name and echoed as written ----------------------


@pytest.mark.parametrize(
    ("name", "advice"),
    [
        ("0001M", "write 1m for a minute"),
        ("1M", "write 1m for a minute"),
        ("05M", "write 5m for 5 minutes"),
        ("60M", "write 1h for 60 minutes"),
    ],
)
def test_a_month_timeframe_is_advised_by_the_canonical_name_of_its_minutes(name: str, advice: str) -> None:
    """Before: '0001M' was told to write 0001m, and 60M 60m."""
    with pytest.raises(ConfigError, match="M is a month in many tools") as info:
        Timeframe.parse(name)
    assert str(info.value).endswith(advice), str(info.value)


def test_a_month_timeframe_whose_minutes_are_no_timeframe_either_is_advised_no_timeframe() -> None:
    with pytest.raises(ConfigError, match="M is a month in many tools") as info:
        Timeframe.parse("7M")
    assert "write 7m" not in str(info.value)
    assert "7 minutes is no timeframe either" in str(info.value)


@pytest.mark.parametrize("name", ["1\uff2d", "1\uff28", "5W", "15MIN", "1\u0130"])
def test_a_refused_timeframe_is_echoed_as_written(name: str) -> None:
    """Before: '1Ｍ' was echoed '1ｍ' and '5W' '5w': the name lower-cased."""
    with pytest.raises(ConfigError) as info:
        Timeframe.parse(name)
    assert repr(name) in str(info.value), str(info.value)
    if name.lower() != name:
        assert repr(name.lower()) not in str(info.value)


# -- after the review of the fixes above ---------------------------------------------------------


@pytest.mark.parametrize("sep", ["/", ".", "-"])
def test_a_date_written_year_first_is_year_month_day_in_a_day_first_file(tmp_path: Path, sep: str) -> None:
    """The day-first re-read took 2014/05/02 (year first, another separator than ISO's dashes
    of two digits) for year, day, month: 5 February; and refused 2014/05/20 as of the other
    order."""
    stamps = ["01/05/14 10:00", "13/05/14 10:00", f"2014{sep}5{sep}2 10:00", f"2014{sep}05{sep}20 10:00"]
    loaded = _ticks(tmp_path / "t.csv", stamps)
    assert _refused(loaded) == {}
    assert list(_read(loaded).values()) == [_ms(f"2014-05-{d} 10:00") for d in ("01", "13", "02", "20")]


def test_one_year_first_typo_does_not_turn_a_year_month_day_column_around(tmp_path: Path) -> None:
    """2014/13/05 is read only as year, day, month: it was taken for the column's order, and
    every other date of the file read so (1 May as 5 January) or refused."""
    loaded = _ticks(tmp_path / "t.csv", ["2014/05/01", "2014/05/02", "2014/13/05", "2014/05/14"])
    assert list(_read(loaded).values()) == [_ms(f"2014-05-{d}") for d in ("01", "02", "14")]
    assert _refused(loaded) == {4: "timestamp '2014/13/05' is no date"}


def test_a_date_of_another_time_format_is_not_blamed_on_the_order(tmp_path: Path) -> None:
    """13/05/2014 10:00:00 among dates to the minute is read in neither order: it was said to
    have "its day first where line 2 has its month first". It decides no order (below): the
    file is read as its first date was, and the refusal says so."""
    loaded = _ticks(tmp_path / "t.csv", ["01/05/2014 10:00", "13/05/2014 10:00:00", "02/05/2014 10:00"])
    (why,) = _refused(loaded).values()
    assert "one order" not in why and "read month first as the file's first date" in why


def test_a_date_read_in_neither_order_does_not_turn_a_day_first_file_around(tmp_path: Path) -> None:
    """Review of the fix above, which let such a date decide: 05/13/2014 10:00:00 (month first,
    with seconds) among day-first dates to the minute turned the file month first, 1 to 12
    May read as 5 January to 5 December, and every date past the 12th refused."""
    days = [f"{d:02d}/05/2014 10:00" for d in range(1, 21)]
    loaded = _ticks(tmp_path / "t.csv", [*days[:3], "05/13/2014 10:00:00", *days[3:]])
    assert list(_read(loaded).values()) == [_ms(f"2014-05-{d:02d} 10:00") for d in range(1, 21)]
    assert list(_refused(loaded)) == [5]


def test_a_local_time_a_clock_change_skips_is_not_blamed_on_the_order(tmp_path: Path) -> None:
    """In New York, 09/03/2014 02:30 does not exist and 02/11/2014 01:30 is ambiguous: they
    were refused as read "day first as the file's first date was", as if the order were wrong."""
    src = tmp_path / "EURUSD.csv"
    src.write_text("timestamp,bid,ask\n13/03/2014 10:00,1.1,1.2\n09/03/2014 02:30,1.1,1.2\n02/11/2014 01:30,1.1,1.2\n")
    loaded = read_ticks(src, tz="America/New_York")
    assert list(_read(loaded).values()) == [_ms("2014-03-13 14:00")]
    assert all("first" not in why for why in _refused(loaded).values()), _refused(loaded)


@pytest.mark.parametrize(
    ("cell", "want"),
    [
        ("1398938459999999600", "2014-05-01 10:00:59.999"),  # ns: float64 made it 10:01:00.000
        ("1398938459999999", "2014-05-01 10:00:59.999"),  # us
        ("1398938400.9999", "2014-05-01 10:00:00.999"),  # s with a fraction
        ("300000000.000999481", "1979-07-05 05:20:00.000"),  # a fraction finer than a us
    ],
)
def test_an_epoch_beside_a_cell_that_is_no_number_is_cut_from_its_digits(tmp_path: Path, cell: str, want: str) -> None:
    """One cell that is no number ("x") makes pandas read the column as float64: an ns epoch
    was then rounded at ~256 ns, a decimal second at ~0.2 us, and 10:00:59.9999996 was 10:01."""
    src = tmp_path / "EURUSD.csv"
    src.write_text(f"ts_ms,bid,ask\n{cell},1.1,1.2\nx,1.1,1.2\n")
    loaded = read_ticks(src)
    assert loaded.frame["ts_ms"].tolist() == [_ms(want)]


@pytest.mark.parametrize(
    "last",
    [
        "2024-01-02T02:30:00Z,EURUSD,1.1,1.2,1.0,nan",  # non_finite
        "2024-01-02T02:30:00Z,EURUSD,1.1,1.0,1.2,1.1",  # high below low: inconsistent
        "2024-01-02T02:30:00Z,EURUSD,0,1.2,1.0,1.1",  # non_positive
        "2099-01-01T00:00:00Z,EURUSD,1.1,1.2,1.0,1.1",  # past the clock: future_ts
    ],
    ids=["nan", "inconsistent", "zero", "future"],
)
def test_a_row_the_stream_refuses_below_a_newest_first_file_does_not_make_the_good_rows_late(
    tmp_path: Path, last: str
) -> None:
    """Found by a hostile hunt: one such row at the bottom of a newest-first file broke its
    order, and the four good bars were read as written, three of them late."""
    rows = [f"2024-01-02T0{h}:00:00Z,EURUSD,1.1,1.2,1.0,1.1" for h in (3, 2, 1, 0)]
    src = tmp_path / "c.csv"
    src.write_text("\n".join(["timestamp,symbol,open,high,low,close", *rows, last]) + "\n")
    loaded = read_candles(src)
    assert loaded.frame["line"].tolist()[:4] == [5, 4, 3, 2]  # the good rows, oldest first


@pytest.mark.parametrize(("sep", "said"), [(";", "';'"), ("\t", "tabs"), ("|", "'|'")])
def test_a_file_separated_otherwise_than_by_commas_is_said_so(tmp_path: Path, sep: str, said: str) -> None:
    """It said "no 'timestamp' column (header 'timestamp;symbol;…')", of a header that starts
    with it."""
    src = tmp_path / "c.csv"
    rows = [["timestamp", "symbol", "open", "high", "low", "close"], ["2024-01-02T00:00:00Z", "EURUSD", *["1.1"] * 4]]
    src.write_text("".join(sep.join(r) + "\n" for r in rows))
    with pytest.raises(DataFormatError, match=f"its header is separated by {said}, not commas"):
        read_candles(src)
