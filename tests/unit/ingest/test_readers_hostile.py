"""The tick and candle readers given hostile files: each is read as a user expects (a byte
order mark, CRLF, spaces around the header, UTF-16, a permuted header) or refused with one
``DataFormatError`` naming the problem, never a traceback from pandas or a ``KeyError``, and
never after minutes of parsing. Each test says what the reader did before its fix.
"""

from __future__ import annotations

import gzip
import itertools
import re
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from forex_diffusion.errors import DataFormatError, InputNotFoundError, RejectReason
from forex_diffusion.ingest.readers import (
    COLUMNS_MAX,
    LINE_MAX,
    LoadedFile,
    file_timeframes,
    read_candle_series,
    read_candles,
    read_ticks,
    sniff_kind,
)

Reader = Callable[..., LoadedFile]

# One file of every documented layout (the name carries the symbol where the file has none).
LAYOUTS: list[tuple[str, Reader, str, str]] = [
    ("ticks ts_ms", read_ticks, "eurusd_t.csv", "ts_ms,bid,ask\n1398902400292,1.38676,1.38686\n"),
    (
        "ticks generic",
        read_ticks,
        "t.csv",
        "timestamp,symbol,bid,ask,volume\n2014-05-01T00:00:00.292Z,EURUSD,1.38676,1.38686,1\n",
    ),
    (
        "ticks dukascopy",
        read_ticks,
        "EURUSD_Ticks.csv",
        "Gmt time,Ask,Bid,AskVolume,BidVolume\n01.05.2014 00:00:00.292,1.38686,1.38676,1.5,2.25\n",
    ),
    ("ticks histdata", read_ticks, "DAT_ASCII_EURUSD_T_201405.csv", "20140501 000000292,1.38676,1.38686,0\n"),
    (
        "candles ts_ms",
        read_candles,
        "eurusd_c.csv",
        "ts_ms,open,high,low,close,volume\n1451606400000,1.1,1.2,1.0,1.1,5\n",
    ),
    (
        "candles lean",
        read_candles,
        "eurusd_l.csv",
        "ts_ms,bid_open,bid_high,bid_low,bid_close,ask_open,ask_high,ask_low,ask_close\n"
        "1451606400000,1.1,1.2,1.0,1.1,1.2,1.3,1.1,1.2\n",
    ),
    (
        "candles lean daily",
        read_candles,
        "d.csv",
        "date,pair,bid_open,bid_high,bid_low,bid_close,ask_open,ask_high,ask_low,ask_close\n"
        "2016-01-01,EURUSD,1.1,1.2,1.0,1.1,1.2,1.3,1.1,1.2\n",
    ),
    (
        "candles generic",
        read_candles,
        "g.csv",
        "timestamp,symbol,open,high,low,close,volume\n2017-04-19 09:00:00,EURUSD,1.0716,1.0722,1.07083,1.07219,1413\n",
    ),
    (
        "candles forexd",
        read_candles,
        "f.csv",
        "symbol,timeframe,open_time,open,high,low,close,volume\nEURUSD,1h,2017-04-19T09:00:00Z,1.07,1.08,1.06,1.07,3\n",
    ),
    (
        "candles pandas",
        read_candles,
        "EURUSD_p.csv",
        ",Open,High,Low,Close,Volume\n2017-04-19 09:00:00,1.07,1.08,1.06,1.07,3\n",
    ),
    (
        "candles dukascopy",
        read_candles,
        "EURUSD_Candlestick_1_Hour_BID.csv",
        "Gmt time,Open,High,Low,Close,Volume\n19.04.2017 09:00:00.000,1.0716,1.0722,1.07083,1.07219,1413.5\n",
    ),
    (
        "candles metatrader header",
        read_candles,
        "EURUSD60.csv",
        "<DATE>,<TIME>,<OPEN>,<HIGH>,<LOW>,<CLOSE>,<TICKVOL>\n2017.04.19,09:00,1.0716,1.0722,1.07083,1.07219,1413\n",
    ),
    ("candles metatrader", read_candles, "EURUSD60.csv", "2017.04.19,09:00,1.0716,1.0722,1.07083,1.07219,1413\n"),
    (
        "candles histdata",
        read_candles,
        "DAT_ASCII_EURUSD_M1_201701.csv",
        "20170102 170000;1.051550;1.051970;1.051550;1.051900;0\n",
    ),
]
LAYOUT_IDS = [name for name, *_ in LAYOUTS]


def write(path: Path, data: bytes, *, gz: bool = False) -> Path:
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def same(a: LoadedFile, b: LoadedFile) -> None:
    assert a.layout == b.layout
    pd.testing.assert_frame_equal(a.frame, b.frame)
    assert a.rejects == b.rejects


# -- what a user's tools write --------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
@pytest.mark.parametrize(("layout", "reader", "name", "text"), LAYOUTS, ids=LAYOUT_IDS)
def test_a_utf8_byte_order_mark_is_dropped_in_every_layout(
    layout: str, reader: Reader, name: str, text: str, gz: bool, tmp_path: Path
) -> None:
    """Excel's "CSV UTF-8" starts the file with a BOM: it was refused as an unknown layout
    (header '\\ufeffts_ms,...')."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    plain = reader(write(tmp_path / "a" / name, text.encode()))
    assert len(plain.frame) == 1 and not plain.rejects
    same(reader(write(tmp_path / "b" / name, b"\xef\xbb\xbf" + text.encode(), gz=gz)), plain)


@pytest.mark.parametrize(
    ("ending", "encoding"),
    [("\r\n", "utf-8"), ("\r", "utf-8"), ("\n", "utf-16"), ("\r\n", "utf-16-le")],
    ids=["crlf", "cr", "utf-16", "utf-16-le-no-bom"],
)
@pytest.mark.parametrize(("layout", "reader", "name", "text"), LAYOUTS, ids=LAYOUT_IDS)
def test_line_endings_and_utf16_read_as_the_plain_file(
    layout: str, reader: Reader, name: str, text: str, ending: str, encoding: str, tmp_path: Path
) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    plain = reader(write(tmp_path / "a" / name, text.encode()))
    data = text.replace("\n", ending).encode(encoding)
    if encoding == "utf-16-le":  # UTF-16 without a byte order mark: not text we can read
        with pytest.raises(DataFormatError, match="unrecognised"):
            reader(write(tmp_path / "b" / name, data))
        return
    same(reader(write(tmp_path / "b" / name, data)), plain)


@pytest.mark.parametrize(("layout", "reader", "name", "text"), [x for x in LAYOUTS if "histdata" not in x[0]])
def test_spaces_around_the_header_fields_are_ignored(
    layout: str, reader: Reader, name: str, text: str, tmp_path: Path
) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    plain = reader(write(tmp_path / "a" / name, text.encode()))
    head, _, rest = text.partition("\n")
    if not head[0].isalpha() and head[0] not in "<,":
        return  # no header
    spaced = ",".join(f" {f} " for f in head.split(",")) + "\n" + rest
    same(reader(write(tmp_path / "b" / name, spaced.encode())), plain)


# -- refused on one clear line --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "column"),
    [
        ("ts_ms,BID,bid,ask\n1398902400292,1.1,1.2,1.3\n", "'bid' twice ('BID' and 'bid')"),
        ("ts_ms,bid,ask,bid\n1398902400292,1.1,1.2,1.3\n", "'bid' twice ('bid' and 'bid')"),
        ("TS_MS,bid,ask,ts_ms\n1398902400292,1.1,1.2,1\n", "'ts_ms' twice"),
        ("timestamp,symbol,bid,ask, Ask \n2014-05-01T00:00:00Z,EURUSD,1.1,1.2,1.3\n", "'ask' twice"),
    ],
)
def test_a_header_naming_a_column_twice_is_refused(text: str, column: str, tmp_path: Path) -> None:
    """``BID`` and ``bid``: the reader looks columns up in lower case and silently took the
    last one (here 1.2, not the 1.1 of the BID column)."""
    f = write(tmp_path / "eurusd.csv", text.encode())
    with pytest.raises(DataFormatError, match=re.escape(f"names column {column}")):
        read_ticks(f)


@pytest.mark.parametrize(
    "head",
    [
        "ts_ms,open,high,low,close,CLOSE",
        "<DATE>,<TIME>,<OPEN>,<HIGH>,<LOW>,<CLOSE>,close",
        "timestamp,Open,open,high,low,close",
    ],
)
def test_a_candle_header_naming_a_column_twice_is_refused(head: str, tmp_path: Path) -> None:
    f = write(
        tmp_path / "eurusd.csv", (head + "\n" + ",".join(["1451606400000"] + ["1.1"] * (head.count(",")))).encode()
    )
    with pytest.raises(DataFormatError, match="names column '(close|open)' twice"):
        read_candles(f)


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (b"", "empty file"),
        (b"\xef\xbb\xbf", "empty file"),  # a BOM alone: was 'unrecognised layout (header '\ufeff')'
        (b" \r\n\n\t\n", "empty file"),
        (b"ts_ms,bid,ask\n", "no rows"),
        (b"ts_ms,bid,ask\r\n\r\n", "no rows"),
        (b"\xef\xbb\xbfts_ms,bid,ask\n", "no rows"),
        (b"ts_ms,bid,ask\n1,2,3,4\n", r"no rows \(line 2: expected 3 fields\)"),
        (b"\nts_ms,bid,ask\n1398902400292,1.1,1.2\n", "the first line is blank"),
        (b'"ts_ms","bid","ask"\n1398902400292,1.1,1.2\n', "quoted fields are not read"),
        (b"ts_ms\x00,bid,ask\n1398902400292,1.1,1.2\n", "no 'ts_ms' column"),  # KeyError: 'ts_ms' before
        (b"ts_msec,bid,ask\n1398902400292,1.1,1.2\n", "no 'ts_ms' column"),  # KeyError before
        (b"timestamps,bid,ask\n2014-05-01T00:00:00Z,1.1,1.2\n", "no 'timestamp' column"),  # KeyError before
        (b"ts_ms,bid\xe9,ask\n1398902400292,1.1,1.2\n", "no bid column"),  # Latin-1 in a name
        (b"PK\x03\x04\x14\x00\x06\x00\x08\x00", "unrecognised tick layout"),  # an .xlsx
    ],
)
@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
def test_files_without_rows_or_with_an_unusable_header_are_one_data_format_error(
    data: bytes, says: str, gz: bool, tmp_path: Path
) -> None:
    f = write(tmp_path / "eurusd.csv", data, gz=gz)
    with pytest.raises(DataFormatError, match=says):
        read_ticks(f)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("date,pairs,open,high,low,close\n2016-01-01,EURUSD,1,1,1,1\n", "no 'pair' column"),
        ("<DATE>,<OPEN>,<HIGH>,<LOW>,<CLOSE>\n2017.04.19,1,1,1,1\n", "no 'time' column"),
        ("ts_ms,bid_open,bid_high,bid_low,bid_close\n1451606400000,1,1,1,1\n", "no 'ask_open' column"),
        ("symbol,timeframe,open_times,open,high,low,close\nEURUSD,1h,2017-01-01,1,1,1,1\n", "no 'open_time' column"),
        ("ts_ms,open,high,low\n1451606400000,1,1,1\n", "no 'close' column"),
        ("datetimes,open,high,low,close\n2017-01-01,1,1,1,1\n", "no 'timestamp' column"),
    ],
)
def test_a_candle_header_of_a_layout_without_its_columns_is_a_data_format_error(
    text: str, says: str, tmp_path: Path
) -> None:
    """Each passed the layout check (a prefix of the header) and then ended in ``KeyError``."""
    with pytest.raises(DataFormatError, match=says):
        read_candles(write(tmp_path / "eurusd.csv", text.encode()))


def test_a_missing_file_or_a_directory_is_input_not_found(tmp_path: Path) -> None:
    """A directory was an ``IsADirectoryError`` traceback from ``read_bytes``."""
    with pytest.raises(InputNotFoundError, match="no such file"):
        read_ticks(tmp_path / "missing.csv")
    with pytest.raises(InputNotFoundError, match="is a directory"):
        read_candles(tmp_path)


# -- bad rows: refused with their line, the rest read ----------------------------------------------


def test_latin1_and_nul_bytes_in_a_row_refuse_that_row_only(tmp_path: Path) -> None:
    data = (
        b"ts_ms,bid,ask\n"
        b"1398902400292,1.1,1.2\n"
        b"1398902400300,1.1\xe9,1.2\n"  # Latin-1 (not UTF-8)
        b"1398902400400,1.1\x00,1.2\n"
        b"\x00\x00\x00\x00\n"  # a block of zeros after a crash
        b"1398902400500,1.1,1.2\n"
    )
    lf = read_ticks(write(tmp_path / "eurusd.csv", data))
    assert lf.frame.line.tolist() == [2, 6]
    assert [(r.line, r.reason) for r in lf.rejects] == [(n, RejectReason.MALFORMED) for n in (3, 4, 5)]


@pytest.mark.parametrize("reader", [read_ticks, read_candles])
def test_a_10_mb_line_is_refused_at_once(reader: Reader, tmp_path: Path) -> None:
    """A 10 MB line of digits kept the date parser busy for many minutes (dateutil is
    quadratic in the digits); a header of a million equal names as long in pandas. A hang
    is pytest's timeout; the messages show both were refused unparsed."""
    lone = write(tmp_path / "eurusd.csv", b"ts_ms,bid,ask\n" + b"1" * 10_000_000 + b"\n")
    with pytest.raises(DataFormatError, match=r"no rows \(line 2: a line of 10,000,000 characters\)"):
        reader(lone)
    wide = write(tmp_path / "eurusd_w.csv", b"ts_ms" + b",a" * 1_000_000 + b"\n1,2\n")
    with pytest.raises(
        DataFormatError, match=f"the header has 1,000,001 fields, more than any price file \\(at most {COLUMNS_MAX}\\)"
    ):
        reader(wide)


def test_a_long_line_among_good_rows_is_refused_with_its_line(tmp_path: Path) -> None:
    text = "ts_ms,open,high,low,close\n1451606400000,1.1,1.2,1.0,1.1\n" + "1" * (LINE_MAX + 1) + "\n"
    text += "1451606460000,1.1,1.2,1.0,1.1\n"
    lf = read_candles(write(tmp_path / "eurusd.csv", text.encode()))
    assert lf.frame.line.tolist() == [2, 4]
    assert [(r.line, r.detail) for r in lf.rejects] == [(3, f"a line of {LINE_MAX + 1:,} characters")]


def test_an_overlong_timestamp_is_refused_unparsed(tmp_path: Path) -> None:
    """A guard beside ``LINE_MAX``: a timestamp longer than any time is refused unparsed (the
    date parser's format guess is quadratic in the digits: 100,000 took a second, 1,000,000
    minutes). Not failing before: lines of this length were parsed quickly enough."""
    text = "timestamp,symbol,bid,ask\n" + "".join(f"{'9' * 5000},EURUSD,1.1,1.2\n" for _ in range(50))
    text += "2014-05-01T00:00:00Z,EURUSD,1.1,1.2\n"
    lf = read_ticks(write(tmp_path / "t.csv", text.encode()))
    assert lf.frame.line.tolist() == [52] and {r.reason for r in lf.rejects} == {RejectReason.BAD_TS}
    assert len(lf.rejects) == 50


def test_a_candle_row_with_an_extra_field_is_refused_not_dropped(tmp_path: Path) -> None:
    """It was skipped without a word (ticks reported it; candles did not)."""
    text = (
        "ts_ms,open,high,low,close\n"
        "1451606400000,1.1,1.2,1.0,1.1\n"
        "1451606460000,1.1,1.2,1.0,1.1,9\n"
        "1451606520000,1.1,1.2\n"
        "1451606580000,1.1,1.2,1.0,1.1\n"
    )
    lf = read_candles(write(tmp_path / "eurusd.csv", text.encode()))
    assert lf.frame.line.tolist() == [2, 5]
    assert [(r.line, r.detail) for r in lf.rejects] == [(3, "expected 5 fields"), (4, "expected 5 fields")]


def test_histdata_candles_with_an_extra_column_are_read(tmp_path: Path) -> None:
    """``ValueError: Length mismatch`` (six names for seven columns) before."""
    f = write(tmp_path / "DAT_ASCII_EURUSD_M1_201701.csv", b"20170102 170000;1.05155;1.05197;1.05155;1.0519;0;x\n")
    lf = read_candles(f)
    assert lf.frame.close.tolist() == [1.0519]


def test_times_with_several_utc_offsets_are_each_read_in_utc(tmp_path: Path) -> None:
    """Local times across a DST change (+01:00, then +02:00) ended in pandas' ``ValueError:
    Mixed timezones detected`` (a traceback): each is now its own UTC time."""
    text = (
        "timestamp,symbol,bid,ask\n"
        "2014-03-30T01:59:00+01:00,EURUSD,1.1,1.2\n"
        "2014-03-30T03:00:00+02:00,EURUSD,1.1,1.2\n"
        "2014-03-30 01:30:00,EURUSD,1.1,1.2\n"  # no zone: in tz (UTC)
    )
    lf = read_ticks(write(tmp_path / "t.csv", text.encode()))
    minute = 60_000
    start = 1396141140000  # 2014-03-30T00:59:00Z
    assert lf.frame.ts_ms.tolist() == [start, start + minute, start + 31 * minute]


# -- properties -------------------------------------------------------------------------------------

TICK_COLUMNS = {"ts_ms": "1398902400292", "bid": "1.38676", "ask": "1.38686", "volume": "2", "symbol": "EURUSD"}
GENERIC_TICK = {"timestamp": "2014-05-01T00:00:00.292Z", "symbol": "EURUSD", "bid": "1.1", "ask": "1.2", "volume": "3"}
CANDLE_COLUMNS = {"ts_ms": "1451606400000", "open": "1.1", "high": "1.2", "low": "1.0", "close": "1.15", "volume": "7"}
GENERIC_CANDLE = {
    "time": "2017-04-19 09:00:00",
    "symbol": "EURUSD",
    "open": "1.1",
    "high": "1.2",
    "low": "1.0",
    "close": "1.1",
}


def recase(name: str, flips: list[bool]) -> str:
    return "".join(c.upper() if flip else c for c, flip in zip(name, itertools.cycle(flips), strict=False))


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(
    which=st.sampled_from(
        [
            (read_ticks, TICK_COLUMNS),
            (read_ticks, GENERIC_TICK),
            (read_candles, CANDLE_COLUMNS),
            (read_candles, GENERIC_CANDLE),
        ]
    ),
    data=st.data(),
    flips=st.lists(st.booleans(), min_size=1, max_size=8),
    pad=st.sampled_from(["", " ", "  "]),
    bom=st.booleans(),
    ending=st.sampled_from(["\n", "\r\n"]),
)
def test_any_order_and_case_of_a_named_header_reads_the_same_frame(
    which: tuple[Reader, dict[str, str]],
    data: st.DataObject,
    flips: list[bool],
    pad: str,
    bom: bool,
    ending: str,
    tmp_path: Path,
) -> None:
    """The layouts whose columns are looked up by name: ``bid,ask,ts_ms`` was refused as an
    unknown layout (the time column had to come first)."""
    reader, columns = which
    names = list(columns)
    order = data.draw(st.permutations(names))
    base = write(tmp_path / "eurusd_a.csv", (",".join(names) + "\n" + ",".join(columns.values()) + "\n").encode())
    text = ",".join(pad + recase(n, flips) + pad for n in order) + ending + ",".join(columns[n] for n in order) + ending
    other = write(tmp_path / "eurusd_b.csv", ("\ufeff" if bom else "").encode() + text.encode())
    same(reader(other), reader(base))


NAMES = [
    "ts_ms", "bid", "ask", "volume", "symbol", "timestamp", "open", "high", "low", "close", "Gmt time", "Ask",
    "date", "pair", "time", "datetime", "timeframe", "open_time", "<DATE>", "<TIME>", "<CLOSE>", "bid_open",
    "ask_close", "BID", "", " bid ", "\ufeff", "\x00", '"ts_ms"',
]  # fmt: skip
VALUES = [
    "1398902400292", "1.1", "EURUSD", "2014-05-01T00:00:00Z", "2014-05-01T00:00:00+02:00", "nan", "inf", "-1",
    "1e308", "", " ", "abc", "01.05.2014 00:00:00.292", "20140501 000000292", "2017.04.19", "09:00", "1m",
    "\x00", "é", "9" * 70, "1_000", "١٢٣",
]  # fmt: skip
PREFIXES = ["", "\ufeff", "20140501 000000292,", "20170102 170000;", "2017.04.19,09:00,", "Gmt time,", ",Open"]


@st.composite
def hostile_files(draw: st.DrawFn) -> bytes:
    field = st.one_of(st.sampled_from(VALUES), st.text(max_size=6))
    line = st.lists(field, max_size=7).map(",".join)
    head = draw(st.sampled_from(PREFIXES)) + ",".join(
        draw(st.lists(st.one_of(st.sampled_from(NAMES), st.text(max_size=5)), max_size=7))
    )
    ending = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    text = ending.join([head, *draw(st.lists(line, max_size=5))]) + draw(st.sampled_from(["", ending]))
    raw = text.encode(draw(st.sampled_from(["utf-8", "utf-16"])), errors="surrogatepass")
    if draw(st.booleans()):
        raw = draw(st.binary(max_size=40))
    return gzip.compress(raw) if draw(st.booleans()) else raw


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(data=hostile_files(), name=st.sampled_from(["eurusd.csv", "nosymbol.csv"]))
def test_any_file_is_read_or_refused_as_a_data_format_error(data: bytes, name: str, tmp_path: Path) -> None:
    """Found this way: mixed UTC offsets (``ValueError``), a prefix-only header (``KeyError``)."""
    path = write(tmp_path / name, data)
    for call in (
        read_ticks,
        read_candles,
        sniff_kind,
        file_timeframes,
        read_candle_series,
        lambda p: read_candle_series(p, symbol="EURUSD", timeframe="1m"),
    ):
        try:
            call(path)
        except DataFormatError as exc:
            assert "\n" not in str(exc)
