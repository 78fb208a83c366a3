"""The file readers' dates after a fifth review: inputs just outside what was catalogued.
Each test names what the reader did before its fix:

1. a date after its time or its weekday (``10:00 01/05/2014``, ``Thu 01/05/2014 10:00``)
   decided no order of day and month (the order was looked for at the cell's start only): a
   day-first file whose first date was one was read month first, 1 May as 5 January, and its
   13/05/2014 refused; the format pandas guessed from ``Thu 01/05/2014`` (``1st May 2014``)
   kept the word ``Thu`` (``st``), and every date of another weekday (day) was refused;
2. a date in digits other than 0-9 (``٠١/٠٥/٢٠١٤``, ``０１/０５/２٠١٤``) was read month
   first beside a day-first ``13/05/2014``: two orders in one file;
3. a year of two digits read value by value (by dateutil) was put within 50 years of the
   clock's year: ``13/5/69`` was 2069 read in 2026, 1969 read in 2018;
4. a leap second (``23:59:60``) was read as the next day's 00:00:00 on any day (and refused
   as the column's first date); ``P.M.`` (dotted, upper case) was refused, and with it the
   one date that said its file's order; a weekday that disagrees with its date was ignored
   (``Mon 01/05/2014`` read as Thursday 1 May), nor said the order of a file whose numbers
   do not (``Thursday 01/05/2014`` read as 5 January); and what the generated files below found:
   a format guessed with a time's numbers in a date's place, or with a word of the first date
   (``%H:%M am``), and a date whose numbers are apart by spaces, read month first;
5. the tick reader's refused rows named no symbol, so ``forexd candles --symbol`` could not
   leave other symbols' out.

And a property over generated files of one order: every row is read as the time it was
written from, or refused; never read as another time.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

import hypothesis.strategies as st
import numpy as np
import pandas as pd
import pytest
from dateutil import parser as dateutil_parser
from dateutil.parser import _parser as dateutil_internals
from hypothesis import HealthCheck, given, settings

from forex_diffusion.errors import RejectReason
from forex_diffusion.ingest.readers import LoadedFile, _in_format, read_candles, read_ticks
from tests.unit.ingest.test_readers_dates_4 import _ms, _read, _refused


def _ticks(path: Path, stamps: list[str], symbols: list[str] | None = None) -> LoadedFile:
    names = symbols or ["EURUSD"] * len(stamps)
    rows = ["timestamp,symbol,bid,ask", *(f"{s},{n},1.38676,1.38686" for s, n in zip(stamps, names, strict=True))]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return read_ticks(path)


def _assert_read_as_written(tmp_path: Path, stamps: list[str], expected: list[str]) -> None:
    loaded = _ticks(tmp_path / "t.csv", stamps)
    assert _read(loaded) == {i + 2: _ms(t) for i, t in enumerate(expected)}
    assert loaded.rejects == []


# -- 1: a time or a weekday before the date ---------------------------------------------------------


@pytest.mark.parametrize(
    ("stamps", "expected"),
    [
        # the first date may be read either way; a later one is sure to be day first
        (["10:00 01/05/2014", "10:00 02/05/2014", "10:00 13/05/2014"], ["2014-05-01", "2014-05-02", "2014-05-13"]),
        (["10:00 1/5/2014", "10:00 13/5/2014"], ["2014-05-01", "2014-05-13"]),
        (
            ["Thu 01/05/2014 10:00", "Fri 02/05/2014 10:00", "Tue 13/05/2014 10:00"],
            ["2014-05-01", "2014-05-02", "2014-05-13"],
        ),
        (["Thursday 01/05/2014 10:00", "Tuesday 13/05/2014 10:00"], ["2014-05-01", "2014-05-13"]),
        # month first, sure by a later date: unchanged
        (["10:00 05/01/2014", "10:00 05/13/2014"], ["2014-05-01", "2014-05-13"]),
        (["Thu 05/01/2014 10:00", "Tue 05/13/2014 10:00"], ["2014-05-01", "2014-05-13"]),
    ],
)
def test_a_date_after_its_time_or_weekday_is_read_in_its_files_order(
    tmp_path: Path, stamps: list[str], expected: list[str]
) -> None:
    """Before: the first file was read month first (1 May as 5 January) and 13/05 refused."""
    loaded = _ticks(tmp_path / "t.csv", stamps)
    assert _read(loaded) == {i + 2: _ms(f"{day} 10:00") for i, day in enumerate(expected)}
    assert loaded.rejects == []


@pytest.mark.parametrize(
    "stamps",
    [
        [
            "1st May 2014 10:00",
            "2nd May 2014 10:00",
            "3rd May 2014 10:00",
            "11th May 2014 10:00",
            "21st May 2014 10:00",
        ],
        ["May 1st 2014 10:00", "May 2nd 2014 10:00", "May 22nd 2014 10:00"],
        ["Thu 1 May 2014 10:00", "Fri 2 May 2014 10:00"],
    ],
)
def test_ordinal_days_and_weekdays_of_a_column_are_each_read(tmp_path: Path, stamps: list[str]) -> None:
    """Before: the format guessed from the first date kept its 'st' (its 'Thu'): the others
    were refused as no date (the third file was read already, by another path)."""
    loaded = _ticks(tmp_path / "t.csv", stamps)
    expected = {i + 2: _ms(dateutil_parser.parse(s).strftime("%Y-%m-%d %H:%M")) for i, s in enumerate(stamps)}
    assert _read(loaded) == expected
    assert loaded.rejects == []


def test_a_weekday_that_disagrees_with_its_date_is_refused_naming_both(tmp_path: Path) -> None:
    """Before: 'Mon 01/05/2014' was read as 1 May 2014, a Thursday, without a word."""
    loaded = _ticks(tmp_path / "t.csv", ["Mon 01/05/2014 10:00", "Tue 13/05/2014 10:00"])
    assert _read(loaded) == {3: _ms("2014-05-13 10:00")}
    why = _refused(loaded)[2]
    assert "'Mon 01/05/2014 10:00'" in why and "Monday" in why and "Thursday 2014-05-01" in why


@pytest.mark.parametrize(
    ("stamps", "expected"),
    [
        (["Thursday 01/05/2014 10:00", "Friday 02/05/2014 10:00"], ["2014-05-01", "2014-05-02"]),
        (
            ["Thu 01.05.14 10:00:00", "Mon 05.05.14 10:00:00", "Fri 02.05.14 10:00:00"],
            ["2014-05-01", "2014-05-05", "2014-05-02"],
        ),
        (["Thursday 05/01/2014 10:00", "Friday 05/02/2014 10:00"], ["2014-05-01", "2014-05-02"]),
        (["10:00 Sat 3/5/2014", "10:00 Thu 1/5/2014"], ["2014-05-03", "2014-05-01"]),
    ],
)
def test_weekdays_decide_the_order_of_a_file_with_no_day_past_12(
    tmp_path: Path, stamps: list[str], expected: list[str]
) -> None:
    """No number says the order; the weekdays do (1 May 2014 was a Thursday, 5 January a
    Sunday). Before: read month first, 'Thursday 01/05/2014' as 5 January."""
    loaded = _ticks(tmp_path / "t.csv", stamps)
    assert _read(loaded) == {i + 2: _ms(f"{day} 10:00") for i, day in enumerate(expected)}
    assert loaded.rejects == []


def test_weekdays_of_neither_order_are_refused_not_read_as_other_days(tmp_path: Path) -> None:
    """Monday is neither 1 May (a Thursday) nor 5 January 2014 (a Sunday): read month first
    as nothing says otherwise, each row is refused for its weekday, not read as a Sunday."""
    loaded = _ticks(tmp_path / "t.csv", ["Monday 01/05/2014 10:00", "Monday 02/05/2014 10:00"])
    assert _read(loaded) == {}
    refused = _refused(loaded)
    assert "names a Monday but is read as Sunday 2014-01-05" in refused[2]
    assert "day and month the other way round" in refused[3]


def test_a_weekday_decides_the_order_in_a_format_that_names_weekdays(tmp_path: Path) -> None:
    """A format with ``%a`` (pandas guesses none today from a date of two numbers that may be
    a day: it keeps the word, and the column is read value by value): read both ways, the
    weekday of the first date sure of it decides."""
    values = pd.Series(["Thu 01/05/2014 10:00", "Fri 02/05/2014 10:00"])
    parsed, why = _in_format(values, np.array([2, 3]), "%a %m/%d/%Y %H:%M", 0, "UTC")
    assert parsed.tolist() == [pd.Timestamp("2014-05-01 10:00", tz="UTC"), pd.Timestamp("2014-05-02 10:00", tz="UTC")]
    assert why == {}


@pytest.mark.parametrize(
    ("stamps", "expected"),
    [
        # pandas guessed "%m:%M %Y/%H/%d" from the first: the second was read as 1 February, 01:00
        (["01:00 2000/1/13", "02:00 2000/1/1"], ["2000-01-13 01:00", "2000-01-01 02:00"]),
        # pandas guessed "%m/%d/%Y %H:%M am": 12:30 am was read as 12:30, and 'pm' refused
        (
            ["01/01/2000 01:00 am", "13/01/2000 12:30 am", "14/01/2000 01:00 pm"],
            ["2000-01-01 01:00", "2000-01-13 00:30", "2000-01-14 13:00"],
        ),
        # numbers apart by spaces: the second was read as 1 February
        (["13 1 00 12:00 AM", "2 1 00 12:00 AM"], ["2000-01-13 00:00", "2000-01-02 00:00"]),
        (["10:00 13 12 2000", "10:00 1 12 2000"], ["2000-12-13 10:00", "2000-12-01 10:00"]),
    ],
)
def test_dates_the_generated_files_found_misread_are_read_as_written(
    tmp_path: Path, stamps: list[str], expected: list[str]
) -> None:
    _assert_read_as_written(tmp_path, stamps, expected)


# -- 2: digits other than 0-9 ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "other",
    [
        "٠١/٠٥/٢٠١٤ 10:00",  # Arabic-Indic
        "۰۱/۰۵/۲۰۱۴ 10:00",  # Extended Arabic-Indic (Persian)
        "０１/０５/２０１４ 10:00",  # full-width
        "०१/०५/२०१४ 10:00",  # Devanagari
        "01/05/2014 １0:00",  # one full-width digit in its time
    ],
)
@pytest.mark.parametrize("first", [True, False])
def test_a_date_in_digits_other_than_ascii_is_refused_saying_so(tmp_path: Path, other: str, first: bool) -> None:
    """Before: read by dateutil month first (5 January) beside the day-first 13/05/2014
    when first, refused as 'no date' when not."""
    stamps = [other, "13/05/2014 10:00"] if first else ["13/05/2014 10:00", other]
    loaded = _ticks(tmp_path / "t.csv", stamps)
    line = 2 if first else 3
    assert _read(loaded) == {5 - line: _ms("2014-05-13 10:00")}
    assert _refused(loaded) == {
        line: f"timestamp {other!r} has digits other than 0-9: write its date and time with 0-9"
    }


# -- 3: years of two digits ----------------------------------------------------------------------------


def _posix_year(yy: str) -> int:
    """The year strptime's %y reads (POSIX: 69-99 are 1969-1999, 00-68 are 2000-2068)."""
    return dt.datetime.strptime(yy, "%y").year


@pytest.mark.parametrize("clock_year", [2026, 1990, 2090])
def test_a_two_digit_year_is_read_as_strptime_reads_it_whatever_the_year_of_the_clock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clock_year: int
) -> None:
    """dateutil (which reads the values of no format pandas infers) takes the year of its
    clock when it is built, into ``DEFAULTPARSER.info``: set there, the same file read in
    1990, 2026 and 2090 gives the same years. Before: 13/5/69 was 2069 in 2026 (1969 in
    1990), 1/5/14 was 2114 in 2090."""
    info = dateutil_internals.DEFAULTPARSER.info
    monkeypatch.setattr(info, "_year", clock_year)
    monkeypatch.setattr(info, "_century", clock_year // 100 * 100)
    # the clock is the one pandas reads by: dateutil's own reading follows it
    assert dateutil_parser.parse("1/5/14").year == (2114 if clock_year == 2090 else 2014)
    stamps = ["1/5/14 10:00 AM", "13/5/69 10:00 AM", "1/5/68 10:00 PM", "2/5/99 10:00 AM", "3/5/00 10:00 AM"]
    loaded = _ticks(tmp_path / "t.csv", stamps)
    assert _read(loaded) == {
        2: _ms(f"{_posix_year('14')}-05-01 10:00"),
        3: _ms(f"{_posix_year('69')}-05-13 10:00"),
        4: _ms(f"{_posix_year('68')}-05-01 22:00"),
        5: _ms(f"{_posix_year('99')}-05-02 10:00"),
        6: _ms(f"{_posix_year('00')}-05-03 10:00"),
    }


def test_two_digit_years_read_in_a_format_and_alone_agree(tmp_path: Path) -> None:
    """A zero-padded column (one format) and an unpadded one (each value alone) give the
    same years. Before: 69 was 1969 in one and 2069 in the other (read in 2026)."""
    padded = _ticks(tmp_path / "a.csv", ["01/05/69 10:00", "13/05/69 10:00", "01/05/72 10:00"])
    alone = _ticks(tmp_path / "b.csv", ["1/5/69 10:00 AM", "13/5/69 10:00 AM", "1/5/72 10:00 AM"])
    assert list(_read(padded).values()) == list(_read(alone).values())
    assert _read(alone) == {2: _ms("1969-05-01 10:00"), 3: _ms("1969-05-13 10:00"), 4: _ms("1972-05-01 10:00")}


# -- 4: other forms ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stamps", "line", "why"),
    [
        (["2014-05-01 10:00:00", "2015-06-30 23:59:60"], 3, "has second 60 (a leap second)"),  # was 1 July 00:00
        (["2014-05-01 10:00:00", "2014-05-01 23:59:60"], 3, "has second 60 (a leap second)"),  # was 2 May 00:00
        (["2015-06-30 23:59:60Z", "2014-05-01 10:00:00Z"], 2, "has second 60 (a leap second)"),
        (["2014-05-01 10:00:00", "2014-05-01 24:00:00"], 3, "has hour 24: write it as 00:00 of the next day"),
        (["2014-05-01 24:00", "2014-05-01 10:00"], 2, "has hour 24: write it as 00:00 of the next day"),
    ],
)
def test_a_time_no_epoch_time_has_is_refused_naming_it(tmp_path: Path, stamps: list[str], line: int, why: str) -> None:
    loaded = _ticks(tmp_path / "t.csv", stamps)
    other = 5 - line
    assert _read(loaded) == {other: _ms(stamps[other - 2].removesuffix("Z"))}
    assert _refused(loaded)[line].startswith(f"timestamp {stamps[line - 2]!r} {why}")


def test_a_leap_second_in_a_candle_file_is_refused_not_read_as_the_next_day(tmp_path: Path) -> None:
    path = tmp_path / "eurusd_1m.csv"
    path.write_text(
        "timestamp,open,high,low,close,volume\n"
        "2015-06-30 23:58:00,1.1,1.2,1.0,1.15,1\n"
        "2015-06-30 23:59:60,1.1,1.2,1.0,1.15,1\n"
    )
    loaded = read_candles(path)
    assert loaded.frame["line"].tolist() == [2]
    assert [(r.line, r.reason) for r in loaded.rejects] == [(3, RejectReason.BAD_TS)]


@pytest.mark.parametrize(
    ("stamps", "expected"),
    [
        # a dotted or upper-case meridiem among others: before, 'P.M.' was refused, and 01/05 read as January
        (
            ["01/05/2014 10:00 pm", "13/05/2014 10:00 P.M.", "01/05/2014 12:00 am"],
            ["2014-05-01 22:00", "2014-05-13 22:00", "2014-05-01 00:00"],
        ),
        (
            ["13/05/2014 10:00 pm", "01/05/2014 10:00 p.m.", "01/05/2014 10:00 P.M."],
            ["2014-05-13 22:00", "2014-05-01 22:00", "2014-05-01 22:00"],
        ),
        (["01/05/2014 10:00 A.M.", "13/05/2014 12:30 p.m."], ["2014-05-01 10:00", "2014-05-13 12:30"]),
        (["01/05/2014 10:00 PM", "13/05/2014 12:00 AM"], ["2014-05-01 22:00", "2014-05-13 00:00"]),
    ],
)
def test_meridiems_in_any_case_with_or_without_dots_are_read(
    tmp_path: Path, stamps: list[str], expected: list[str]
) -> None:
    _assert_read_as_written(tmp_path, stamps, expected)


@pytest.mark.parametrize(
    ("stamps", "expected"),
    [
        # pinned: read right before and after
        (
            ["2014-05-01T10:00:00.123456789Z", "2014-05-01T10:00:00.999999999Z"],
            ["2014-05-01 10:00:00.123", "2014-05-01 10:00:00.999"],
        ),
        (["20140501 100000", "20140502 100000"], ["2014-05-01 10:00", "2014-05-02 10:00"]),
        (["20140501T100000", "20140502T100000"], ["2014-05-01 10:00", "2014-05-02 10:00"]),
        (["20140501 10:00", "20140502 10:00"], ["2014-05-01 10:00", "2014-05-02 10:00"]),
        (["01.05.2014 10:00", "13.05.2014 10:00"], ["2014-05-01 10:00", "2014-05-13 10:00"]),
        (["01-05-2014 10:00", "13-05-2014 10:00"], ["2014-05-01 10:00", "2014-05-13 10:00"]),
        (["2014/05/01 10:00", "2014/05/13 10:00"], ["2014-05-01 10:00", "2014-05-13 10:00"]),
        (["Thu 01 May 2014 10:00", "Tue 13 May 2014 10:00"], ["2014-05-01 10:00", "2014-05-13 10:00"]),
    ],
)
def test_other_written_forms_are_read_as_written(tmp_path: Path, stamps: list[str], expected: list[str]) -> None:
    _assert_read_as_written(tmp_path, stamps, expected)


@pytest.mark.parametrize(
    ("week_date", "day"),
    [
        ("2014-W18-4", "2014-05-01"),
        ("2014W184", "2014-05-01"),
        ("2014-W18-4T10:00", "2014-05-01"),
        ("2015-W53-7", "2016-01-03"),
        ("2014-W53-1", "YYYY-MM-DD"),
    ],
)
def test_an_iso_week_date_is_refused_saying_which_date_it_is(tmp_path: Path, week_date: str, day: str) -> None:
    """Before: refused as 'no date' (read by neither pandas nor dateutil), never said why."""
    loaded = _ticks(tmp_path / "t.csv", ["2014-05-01 10:00", week_date])
    assert _read(loaded) == {2: _ms("2014-05-01 10:00")}
    assert _refused(loaded)[3] == (
        f"timestamp {week_date!r} is a week date (year, week, weekday), not read: write its date as {day}"
    )


# -- 5: a refused tick names its symbol -----------------------------------------------------------------


def test_a_refused_tick_names_the_symbol_of_its_row(tmp_path: Path) -> None:
    """Before: every refused tick had symbol '', so a command choosing EURUSD could not tell
    GBPUSD's refused rows from its own."""
    path = tmp_path / "t.csv"
    path.write_text(
        "timestamp,symbol,bid,ask\n"
        "2014-05-01 10:00:00,EURUSD,1.3867,1.3868\n"
        "2014-05-01 10:00:01,GBPUSD,x,1.68\n"
        "notadate,gbp/usd,1.68,1.681\n"
        "2014-05-01 10:00:02,EURUSD,1.3867,nan\n"
        "2014-05-01 10:00:03,,1.3867,y\n"
        "2014-05-01 10:00:04,EURUSD\n"
    )
    loaded = read_ticks(path)
    assert [(r.line, r.symbol) for r in loaded.rejects] == [(3, "GBPUSD"), (4, "GBPUSD"), (6, ""), (7, "EURUSD")]


# -- the property: read as written, or refused -----------------------------------------------------------

_MERIDIEMS = ["AM", "am", "a.m.", "A.M."]


def _render(when: dt.datetime, form: dict[str, object]) -> str:
    """``when`` written in ``form`` (drawn by :func:`_forms`)."""
    pad = bool(form["pad"])
    d = f"{when.day:02d}" if pad else str(when.day)
    m = f"{when.month:02d}" if pad else str(when.month)
    if form["month"] != "num":
        m = when.strftime("%b" if form["month"] == "abbr" else "%B")
    y = f"{when.year:04d}" if form["year4"] else f"{when.year % 100:02d}"
    sep = str(form["sep"])
    order = form["order"]
    date = sep.join([d, m, y] if order == "dmy" else [m, d, y] if order == "mdy" else [f"{when.year:04d}", m, d])
    clock = form["clock"]
    if clock == "24h":
        time = f"{when.hour:02d}:{when.minute:02d}"
    elif clock == "24hs":
        time = f"{when.hour:02d}:{when.minute:02d}:{when.second:02d}"
        digits = int(str(form["fraction"]))
        if digits:
            time += "." + f"{when.microsecond:06d}"[:digits]
    else:
        meridiem = str(form["meridiem"])
        if when.hour >= 12:
            meridiem = meridiem.replace("a", "p").replace("A", "P")
        hour = (when.hour % 12) or 12
        time = f"{hour:02d}:{when.minute:02d} {meridiem}" if pad else f"{hour}:{when.minute:02d} {meridiem}"
    weekday = form["weekday"]
    day_name = "" if weekday == "" else when.strftime("%a" if weekday == "short" else "%A") + " "
    cell = (
        f"{day_name}{time} {date}" if form["time_first"] else f"{day_name}{date}{form['between']}{time}{form['zone']}"
    )
    return cell.lower() if form["case"] == "lower" else cell.upper() if form["case"] == "upper" else cell


@st.composite
def _forms(draw: st.DrawFn, *, weekday_and_numbers: bool = False) -> dict[str, object]:
    """A form of date and time; with ``weekday_and_numbers``, one with a weekday and day and
    month in numbers either way round."""
    order = draw(st.sampled_from(["dmy", "mdy"] if weekday_and_numbers else ["dmy", "mdy", "ymd"]))
    clock = draw(st.sampled_from(["24h", "24hs", "12h"]))
    time_first = draw(st.booleans())
    return {
        "order": order,
        "month": "num"
        if order == "ymd" or weekday_and_numbers
        else draw(st.sampled_from(["num", "num", "abbr", "full"])),
        "sep": draw(st.sampled_from(["/", "-", ".", " "] if order != "ymd" else ["/", "-", "."])),
        "pad": draw(st.booleans()),
        "year4": True if order == "ymd" else draw(st.booleans()),
        "clock": clock,
        "fraction": draw(st.sampled_from([0, 3, 6])),
        "meridiem": draw(st.sampled_from(_MERIDIEMS)),
        "weekday": draw(st.sampled_from(["short", "long"] if weekday_and_numbers else ["", "short", "long"])),
        "time_first": time_first,
        "between": "T" if order == "ymd" and clock != "12h" and draw(st.booleans()) else " ",
        "zone": draw(st.sampled_from(["", "Z", " UTC", "+00:00"])) if clock != "12h" and not time_first else "",
        "case": draw(st.sampled_from(["as", "lower", "upper"])),
    }


# 1971 to 2068: a year of two digits is one of them, and each is a time of the stream
_WHEN = st.datetimes(min_value=dt.datetime(1971, 1, 1), max_value=dt.datetime(2068, 12, 31, 23, 59, 59))


def _as_written(when: dt.datetime, form: dict[str, object]) -> int:
    """The ms of ``when`` as ``form`` writes it: to the minute, the second or the fraction
    written (cut to the ms, as the reader cuts any time)."""
    if form["clock"] != "24hs":
        when = when.replace(second=0, microsecond=0)
    else:
        digits = int(str(form["fraction"]))
        kept = int(f"{when.microsecond:06d}"[:digits].ljust(6, "0")) if digits else 0
        when = when.replace(microsecond=kept // 1000 * 1000)
    return int((when.replace(tzinfo=dt.UTC) - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(milliseconds=1))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    form=_forms(),
    whens=st.lists(_WHEN, min_size=1, max_size=6),
    sure=_WHEN.filter(lambda w: w.day > 12),
    at=st.integers(min_value=0, max_value=6),
)
def test_a_file_of_one_order_is_read_as_written_or_refused(
    tmp_path: Path, form: dict[str, object], whens: list[dt.datetime], sure: dt.datetime, at: int
) -> None:
    """Property: in a file written in one form (day, month or year first; the month a number
    or a name; any separator, padding, year of 2 or 4 digits, clock, fraction, weekday, zone,
    case, time before or after), with one date whose day is past 12 (so its order is known), each
    row is read as the time it was written from, or refused: never read as another time."""
    whens = [*whens[:at], sure, *whens[at:]]
    stamps = [_render(w, form) for w in whens]
    loaded = _ticks(tmp_path / "t.csv", stamps)
    for line, ms in _read(loaded).items():
        assert ms == _as_written(whens[line - 2], form), (stamps[line - 2], pd.Timestamp(ms, unit="ms"), stamps)
    assert set(_read(loaded)) | set(_refused(loaded)) == set(range(2, len(stamps) + 2))


def _instants(when: dt.datetime, tz: str) -> set[int]:
    """The ms of the wall time ``when`` in the zone ``tz``: one, two where a clock change
    repeats it, none where one skips it."""
    zone = ZoneInfo(tz)
    out = set()
    for fold in (0, 1):
        at = when.replace(tzinfo=zone, fold=fold)
        if at.astimezone(dt.UTC).astimezone(zone).replace(tzinfo=None) == when:  # not skipped
            out.add(int((at - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(milliseconds=1)))
    return out


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    form=_forms(),
    whens=st.lists(_WHEN, min_size=1, max_size=6),
    sure=_WHEN.filter(lambda w: w.day > 12),
    tz=st.sampled_from(["Europe/London", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata"]),
)
def test_a_file_of_local_times_is_read_as_written_or_refused(
    tmp_path: Path, form: dict[str, object], whens: list[dt.datetime], sure: dt.datetime, tz: str
) -> None:
    """Property: as above, the times in a zone (``tz``): each row is read as its wall time in
    that zone (either of the two where a clock change repeats it; a time that names its zone,
    in that zone), or refused; never as another time."""
    whens = [sure, *whens]
    stamps = [_render(w, form) for w in whens]
    path = tmp_path / "t.csv"
    path.write_text("timestamp,symbol,bid,ask\n" + "".join(f"{s},EURUSD,1.38676,1.38686\n" for s in stamps))
    loaded = read_ticks(path, tz=tz)
    for line, ms in _read(loaded).items():
        written = _as_written(whens[line - 2], form)
        if form["zone"]:
            assert ms == written, (stamps[line - 2], pd.Timestamp(ms, unit="ms"), stamps)
        else:
            wall = dt.datetime(1970, 1, 1) + dt.timedelta(milliseconds=written)
            assert ms in _instants(wall, tz), (stamps[line - 2], pd.Timestamp(ms, unit="ms"), tz, stamps)
    assert set(_read(loaded)) | set(_refused(loaded)) == set(range(2, len(stamps) + 2))


def _says_its_order(when: dt.datetime) -> bool:
    """Whether ``when``'s weekday is that of one of its two readings only (day and month read
    either way: a valid date, on another weekday, or none)."""
    try:
        swapped = when.replace(month=when.day, day=when.month)
    except ValueError:
        return True
    return swapped.weekday() != when.weekday()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    form=_forms(weekday_and_numbers=True),
    whens=st.lists(_WHEN.filter(lambda w: w.day <= 12), min_size=1, max_size=6),
)
def test_a_file_whose_weekdays_alone_say_its_order_is_read_as_written_or_refused(
    tmp_path: Path, form: dict[str, object], whens: list[dt.datetime]
) -> None:
    """Property: a file of dates in numbers none past the 12th, with their weekdays: where a
    weekday says the order (its date falls on it read one way only), each row is read as
    written or refused; never as another time."""
    stamps = [_render(w, form) for w in whens]
    loaded = _ticks(tmp_path / "t.csv", stamps)
    if any(_says_its_order(w) for w in whens):
        for line, ms in _read(loaded).items():
            assert ms == _as_written(whens[line - 2], form), (stamps[line - 2], pd.Timestamp(ms, unit="ms"), stamps)
    assert set(_read(loaded)) | set(_refused(loaded)) == set(range(2, len(stamps) + 2))


# -- a zone written GMT+N / UTC-N ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cell", "fix"),
    [
        ("2014-05-01 00:00:00 GMT+2", "+02:00"),
        ("2014-05-01 00:00:00 UTC-05:30", "-05:30"),
        ("2014-05-01 00:00:00 gmt +02", "+02:00"),
        ("2014-05-01 00:00:00 UTC+0200", "+02:00"),
    ],
)
def test_a_zone_written_gmt_or_utc_with_a_signed_offset_is_refused_not_read_with_the_other_sign(
    tmp_path: Path, cell: str, fix: str
) -> None:
    """Hostile review: GMT+2 was read two hours BEHIND UTC (dateutil's POSIX sign) while
    +02:00 in the same file was read ahead: rows four hours apart, silently. Refused, with
    the offset as +HH:MM; an offset of zero (GMT+0000 of a JS date) is no ambiguity."""
    loaded = _ticks(tmp_path / "t.csv", [cell, "2014-05-01 00:01:00 +02:00"])
    refused = _refused(loaded)
    assert list(refused) == [2] and "read with either sign" in refused[2] and f"e.g. {fix}" in refused[2]
    assert _read(loaded) == {3: _ms("2014-04-30 22:01")}
    zero = _ticks(tmp_path / "z.csv", ["2014-05-01 00:00:00 GMT+0000", "2014-05-01 00:01:00 GMT+0000"])
    assert _read(zero) == {2: _ms("2014-05-01 00:00"), 3: _ms("2014-05-01 00:01")} and zero.rejects == []
