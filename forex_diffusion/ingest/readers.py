"""Readers for tick and candle files (CSV, optionally gzipped).

Layouts, detected from the header (or its absence):

ticks
    ``ts_ms,bid,ask[,…]`` (the normalised files in shared/data), generic
    ``timestamp,symbol,bid,ask[,volume]``, Dukascopy ``Gmt time,Ask,Bid,AskVolume,BidVolume``,
    HistData ASCII tick ``YYYYMMDD HHMMSSfff,bid,ask,vol`` (no header).
candles
    ``ts_ms,bid_open,…,ask_size`` (Lean minute/hour), ``date,pair,bid_open,…`` (Lean daily),
    ``ts_ms,open,high,low,close,volume``, generic ``timestamp,symbol,open,high,low,close[,volume]``,
    ``,Open,High,Low,Close,Volume`` (pandas export), Dukascopy ``Gmt time,Open,…``,
    HistData ASCII M1 ``YYYYMMDD HHMMSS;o;h;l;c;v`` and MetaTrader ``YYYY.MM.DD,HH:MM,o,h,l,c,v``
    (both without header).

A row that cannot be read is not fatal: it is returned in ``rejects`` with its line number
and reason, and the rest of the file is read. Values are only parsed here; the validator
(same as the stream's) decides what is acceptable.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import gzip
import io
import math
import os
import re
import time
import warnings
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from forex_diffusion.domain import PriceSide, Tick
from forex_diffusion.errors import DataFormatError, InputNotFoundError, RejectReason
from forex_diffusion.ingest.validation import EPOCH_FIRST_MS, MAX_TS_MS
from forex_diffusion.instruments import InstrumentRegistry

__all__ = [
    "EPOCH_END_MS",
    "EPOCH_FINE_FIRST_MS",
    "EPOCH_FIRST_MS",
    "FileReject",
    "GZIP_FLOOR_BYTES",
    "GZIP_RATIO_MAX",
    "LoadedFile",
    "WIRE_MAX_MS",
    "bar_spacing_ms",
    "columns",
    "check_price_scale",
    "epoch_ms",
    "file_timeframes",
    "iter_ticks",
    "oldest_first",
    "read_candle_series",
    "read_candles",
    "read_ticks",
    "select_series",
    "span_text",
    "symbol_from_path",
]

_NAN_WORDS = {"nan", "+nan", "-nan", "inf", "+inf", "-inf", "infinity", "+infinity", "-infinity"}
#: Most columns of a file (the widest supported layout, Lean minute bars, has 11): a header of
#: more is no price file (and pandas takes quadratic time over a header of many equal names).
COLUMNS_MAX = 256
#: Longest line read (a row of a supported layout is under 200 characters): a longer one is
#: refused as malformed, never parsed (a 10 MB "timestamp" took minutes in the date parser).
LINE_MAX = 10_000
_TIME_CHARS_MAX = 64  # longest timestamp field parsed ('2014-05-01T00:00:00.292000000+00:00' is 35)


@dataclass(frozen=True, slots=True)
class FileReject:
    """A row refused while reading: 1-based ``line``, reason, detail, the raw text, and the
    symbol the row names (as the reader names it; "" where it names none or is not known):
    a command that selects one series counts only the refused rows of that series."""

    line: int
    reason: RejectReason
    detail: str
    raw: str
    symbol: str = ""


@dataclass(slots=True)
class LoadedFile:
    """A parsed file: ``frame`` has canonical columns; ``rejects`` the unreadable rows."""

    frame: pd.DataFrame
    layout: str
    rejects: list[FileReject] = field(default_factory=list)


def symbol_from_path(path: str | Path, instruments: InstrumentRegistry | None = None) -> str | None:
    """Find a known symbol in a file name (``lean_oanda_eurusd_ticks…`` → ``EURUSD``)."""
    reg = instruments or InstrumentRegistry()
    for token in re.split(r"[^A-Za-z]+", Path(path).name):
        for i in range(0, max(0, len(token) - 5)):
            sym = reg.normalise(token[i : i + 6].upper())
            if sym:
                return sym
    return None


#: Most a gzip file may expand, as a multiple of its size on disk (and never refused below
#: :data:`GZIP_FLOOR_BYTES`). The bundled files expand 3.5× (daily bars) to 6.1× (FXCM ticks);
#: 4.3 MB of gzip held 1 GB of blank lines (230×) and took 8.5 GB to read. A larger ratio is
#: refused while decompressing, before the text is held.
GZIP_RATIO_MAX = 100
GZIP_FLOOR_BYTES = 16 * 2**20
_CHUNK = 2**20  # bytes decompressed at a time
#: What :func:`sniff_kind` and :func:`file_timeframes` read to see the header (not the file).
_HEAD_BYTES = 2**20


def _raw_bytes(p: Path, prefix: int | None = None) -> bytes | bytearray:
    """The file's bytes, gunzipped when it is gzip: all, or the first ``prefix`` of them.

    A gzip stream is decompressed in chunks and refused (``DataFormatError``) as soon as it
    passes :data:`GZIP_RATIO_MAX` times the file's size (:data:`GZIP_FLOOR_BYTES` at least).
    """
    try:
        f = p.open("rb")
    except FileNotFoundError:
        raise InputNotFoundError(f"{p}: no such file") from None
    except IsADirectoryError:
        raise InputNotFoundError(f"{p}: is a directory, not a file") from None
    except OSError as exc:
        raise InputNotFoundError(f"{p}: cannot be read ({exc.strerror or exc})") from None
    with f:
        try:
            magic = f.read(2)
            f.seek(0)
            if magic != b"\x1f\x8b":
                return f.read() if prefix is None else f.read(prefix)
            size = os.fstat(f.fileno()).st_size
        except OSError as exc:
            raise InputNotFoundError(f"{p}: cannot be read ({exc.strerror or exc})") from None
        cap = max(GZIP_RATIO_MAX * size, GZIP_FLOOR_BYTES)
        out = bytearray()
        try:
            with gzip.GzipFile(fileobj=f) as gz:
                while chunk := gz.read(_CHUNK):
                    out += chunk
                    if prefix is not None and len(out) >= prefix:
                        del out[prefix:]
                        break
                    if len(out) > cap:
                        raise DataFormatError(
                            f"{p}: expands to more than {cap:,} bytes, over {GZIP_RATIO_MAX}× its compressed size "
                            f"({size:,} bytes): a decompression bomb or not a data file; unzip it yourself if it "
                            "is genuine"
                        )
        except (OSError, EOFError, zlib.error) as exc:
            raise DataFormatError(f"{p}: corrupt gzip stream ({exc})") from exc
        return out


def _open_text(path: str | Path, *, prefix: int | None = None) -> str:
    """The file's text: gunzipped when it is gzip, decoded as UTF-8 (invalid bytes become
    U+FFFD, refused where they stand in a value), or as UTF-16 when it starts with that byte
    order mark; a UTF-8 byte order mark (Excel's "CSV UTF-8") is dropped. With ``prefix``,
    only the text of the first ``prefix`` bytes (enough for the header).

    Raises ``InputNotFoundError`` for a missing or unreadable path and ``DataFormatError``
    for a corrupt gzip stream, one that expands past :data:`GZIP_RATIO_MAX` (:func:`_raw_bytes`)
    or a file without any text.
    """
    p = Path(path)
    raw = _raw_bytes(p, prefix)
    whole = prefix is None or len(raw) < prefix
    if raw[:2] in (b"\xff\xfe", b"\xfe\xff"):  # UTF-16 with its byte order mark (Excel's "Unicode text")
        text = raw.decode("utf-16", errors="replace")
    else:
        text = raw.decode("utf-8", errors="replace")
    del raw
    text = text.removeprefix("\ufeff")
    if whole and not text.strip():
        raise DataFormatError(f"{p}: empty file (no header and no rows)")
    return text


_NEWLINE = re.compile(r"\r\n|\r|\n")  # what pandas' C parser ends a line on
#: Two line ends in a row (an empty line between them); a run of them is skipped at once.
# (a class repeated, not a group: sre kept state for each repeat of a group, 4.8 GB for 40 M)
_BLANK_RUN = re.compile(r"[\r\n]{3,}|\n\n|\r\r|\n\r")  # any run of 3 holds 2 ends; of 2, all but CRLF


def _lines(text: str) -> Iterator[tuple[int, str]]:
    """``(line number, line)`` of the lines of ``text`` (1-based, ended as :data:`_NEWLINE`
    ends them), without the empty lines inside it: a run of them costs one match, not an
    object per line (a gzip of a few hundred KB held 40 million). The line numbers count
    them. A text without one (every genuine file) is split at once.
    """
    # no two line ends in a row ("\r" first: a one-character search is 20 times faster)
    if "\n\n" not in text and ("\r" not in text or "\r\r" not in text and "\n\r" not in text):
        return enumerate(_NEWLINE.split(text), start=1)  # not through a generator: 10% of a read
    return _lines_between_blanks(text)


def _lines_between_blanks(text: str) -> Iterator[tuple[int, str]]:
    line, pos = 1, 0
    for m in _BLANK_RUN.finditer(text):
        rows = _NEWLINE.split(text[pos : m.start()])
        yield from enumerate(rows, start=line)
        run = m.group()
        ends = run.count("\n") + run.count("\r") - run.count("\r\n")
        line += len(rows) - 1 + ends
        pos = m.end()
    yield from enumerate(_NEWLINE.split(text[pos:]), start=line)


def _header_key(name: str) -> str:
    """A header field as the readers look it up: ``' BID '``, ``bid`` and ``<BID>`` are one column."""
    return name.strip().lower().strip("<>")


def _check_columns(first: str, sep: str, header: bool, path: object) -> None:
    """Refuse a first line of more than :data:`COLUMNS_MAX` fields, or a header naming one
    column twice (in any case: the readers look columns up case-insensitively, and took the last)."""
    fields = first.split(sep)
    if len(fields) > COLUMNS_MAX:
        what = "header" if header else "first row"
        raise DataFormatError(
            f"{path}: the {what} has {len(fields):,} fields, more than any price file (at most {COLUMNS_MAX})"
        )
    if not header:
        return
    seen: dict[str, str] = {}
    for name in fields:
        key = _header_key(name)
        if not key:  # an unnamed column (the pandas layout's index): named by no one
            continue
        if key in seen:
            raise DataFormatError(
                f"{path}: the header names column {key!r} twice ({seen[key].strip()!r} and {name.strip()!r}): "
                "remove or rename one"
            )
        seen[key] = name


def _read_frame(text: str, sep: str, header: bool, path: object = "<text>") -> pd.DataFrame:
    """Parse ``text`` with every value a string; the index is each row's 1-based line number.

    Quotes are plain characters (no supported layout quotes), so a row's fields are exactly
    its ``sep``-separated parts, as :func:`_bad_lines` counts them. Blank lines are skipped;
    a row with more fields than the header, or longer than :data:`LINE_MAX`, is skipped (and
    reported by :func:`_bad_lines`), one with fewer is kept with missing values (rows with more
    never reach pandas: it took a first row with an extra field for an index). The line numbers
    travel with the rows, so a skipped row never shifts the numbers of the rows after it.
    Raises ``DataFormatError`` for a header naming a column twice or a first line of more than
    :data:`COLUMNS_MAX` fields (:func:`_check_columns`).
    """
    head = _head(text)
    first = head if header else next((r for _, r in _lines(text) if r.strip() and len(r) <= LINE_MAX), "")
    _check_columns(first, sep, header, path)
    most = first.count(sep)  # separators of a full row; pandas mishandles rows with more
    body = [f"__line{sep}{head}"] if header else []
    body.extend(
        f"{i}{sep}{line}"
        for i, line in _lines(text)
        if line.strip() and not (header and i == 1) and line.count(sep) <= most and len(line) <= LINE_MAX
    )
    try:
        df = pd.read_csv(
            io.StringIO("\n".join(body)),
            sep=sep,
            header=0 if header else None,
            dtype=str,
            keep_default_na=False,
            skipinitialspace=True,
            on_bad_lines="skip",
            engine="c",
            quoting=csv.QUOTE_NONE,
            index_col=False,  # never guess an index (a first row with an extra field did)
        )
    except pd.errors.EmptyDataError:
        return pd.DataFrame()
    except pd.errors.ParserError as exc:
        raise DataFormatError(f"{path}: cannot parse CSV: {exc}") from exc
    first = df.columns[0]
    df.index = pd.Index(df[first].astype(np.int64).to_numpy(), name=None)
    df = df.drop(columns=first)
    df.columns = [str(c).strip() for c in df.columns] if header else [str(i) for i in range(len(df.columns))]
    return df


def _line_numbers(df: pd.DataFrame, header: bool) -> np.ndarray:
    """The 1-based file line of each row of a :func:`_read_frame` frame."""
    lines: np.ndarray = df.index.to_numpy(dtype=np.int64)
    return lines


def _bad_lines(text: str, sep: str, header: bool, ncols: int) -> list[FileReject]:
    """Lines whose field count differs from the header's, or longer than :data:`LINE_MAX`
    (pandas never sees them, or skips them)."""
    out = []
    for i, line in _lines(text):
        if header and i == 1 or not line.strip():
            continue
        if len(line) > LINE_MAX:
            out.append(FileReject(i, RejectReason.MALFORMED, f"a line of {len(line):,} characters", line[:200]))
        elif line.count(sep) + 1 != ncols:
            out.append(FileReject(i, RejectReason.MALFORMED, f"expected {ncols} fields", line[:200]))
    return out


#: What a number's or a time's cell may have around it: ASCII white space only (str.strip()
#: would also take U+0085 or U+00A0, and '1.1\x85' was read as 1.1).
_BLANKS = " \t\r\n\x0b\x0c"


class _Same(dict[str, str]):
    """One string object for equal reject details (a million rows of one bad value keep one)."""

    def __call__(self, detail: str) -> str:
        return self.setdefault(detail, detail)


def _numbers(col: pd.Series, name: str, lines: np.ndarray, rejects: list[FileReject], bad: np.ndarray) -> np.ndarray:
    s = col.str.strip(_BLANKS)
    vals: np.ndarray = pd.to_numeric(s, errors="coerce").to_numpy(dtype=float)
    odd = ~np.isfinite(vals)
    if odd.any():
        words = s.str.lower().isin(_NAN_WORDS).to_numpy()
        cells, same = s.to_numpy(dtype=object), _Same()  # not s.iloc[j]: 20 µs each, minutes for millions
        for j in np.flatnonzero(odd & ~words & ~bad):
            if np.isnan(vals[j]):
                reason, why = RejectReason.MALFORMED, "is not a number"
            else:  # '1e400': a number past the largest double, not infinity
                reason, why = RejectReason.OUT_OF_RANGE, "is out of range (beyond 1.8e308)"
            rejects.append(FileReject(int(lines[j]), reason, same(f"{name}={cells[j][:40]!r} {why}"), ""))
            bad[j] = True
        # literal nan/inf stay in the frame: the validator refuses them as non_finite
    return vals


#: The dates an epoch number may give (1971-01-01 to 2100-01-01, UTC, in ms). In seconds the
#: span is 3.15e7 to 4.1e9: less than a factor 1000 wide, so a number is a date of the span in
#: at most one of s, ms, us and ns (2099 in s, ~4.1e9, is below 1971 in ms, ~3.15e10; and so on
#: up the units), and :func:`epoch_ms` never has to guess. The span starts in 1971 so that
#: daily bars of the 1970s in epoch seconds are read; a YYYYMMDD number (20140501, below 3.15e7)
#: is still no epoch time. ``EPOCH_FIRST_MS`` is the candles' floor too
#: (:data:`forex_diffusion.ingest.validation.EPOCH_FIRST_MS`, defined there).
EPOCH_END_MS = 4_102_444_800_000
#: The wire's last time (9999-12-31T23:59:59.999Z, ``offline.TS_MAX``). A number that is a time
#: of the wire in a coarser unit is never read in a finer one: 253402300799000 is 9999-12-31 in
#: ms (a "no end" sentinel of many exports) and 1978-01-11 in us; it was read as the latter and
#: fed to forexd indicators out of order. So ms, us and ns read dates from 1978-01-11T21:31:40.800Z
#: (:data:`EPOCH_FINE_FIRST_MS`) on, seconds from 1971.
WIRE_MAX_MS = 253_402_300_799_999
EPOCH_FINE_FIRST_MS = WIRE_MAX_MS // 1000 + 1
_EPOCH_SCALES = (1000.0, 1.0, 1e-3, 1e-6)  # to ms from s, ms, us, ns
_UNITS = ("s", "ms", "us", "ns")
_NO_EPOCH = "is no epoch time (s, ms, us or ns) of 1971 to 2099; write other dates as text (YYYY-MM-DD)"


def _epoch_units(values: np.ndarray, text: pd.Series | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(ms, unit, shadow)``: each value in ms where it is a date of the span in a unit
    (``unit`` its index in :data:`_UNITS`, else -1), and ``shadow`` the index of the coarser unit
    in which that value is also a time of the wire (-1 where none: the value is read). With
    ``text``, the values as written: those in plain digits are cut to the ms from their digits
    (:func:`_epoch_digits_ms`), not from a float64."""
    given = np.asarray(values)
    v = given.astype(float)
    ms = np.zeros(len(v), dtype=np.int64)
    unit = np.full(len(v), -1, dtype=np.int64)
    shadow = np.full(len(v), -1, dtype=np.int64)
    with np.errstate(over="ignore", invalid="ignore"):
        for k, scale in enumerate(_EPOCH_SCALES):
            # cut to the ms, as a time written as text is (10:00:59.999999 is in the 10:00
            # minute; rounded, 1398938459999999 us was 10:01:00.000 and opened the next
            # candle); to the us first, so that a product one ulp short of a whole ms (1.234 s
            # is 1233.9999... ms) is not cut a ms short
            m = np.floor(np.round(v * scale, 3))
            ok = (m >= EPOCH_FIRST_MS) & (m < EPOCH_END_MS)  # nan and inf: never
            ms[ok] = m[ok].astype(np.int64)
            unit[ok] = k
            if k:
                coarser = v * _EPOCH_SCALES[k - 1]
                shadow[ok & (coarser <= WIRE_MAX_MS)] = k - 1
    if given.dtype.kind in "iu":  # integers as read (a column of them): us and ns cut exactly
        whole = given.astype(np.int64)  # float64 holds an ns epoch to ~256 ns only
        for k, per_ms in ((2, 1000), (3, 1_000_000)):
            at = unit == k
            ms[at] = whole[at] // per_ms
    elif text is not None and (unit >= 0).any():
        exact, known = _epoch_digits_ms(text, unit)
        ms[known] = exact[known]
    return ms, unit, shadow


# an epoch number in plain digits, with or without a decimal fraction ("1398938400.123")
_EPOCH_DIGITS = re.compile(r"\+?([0-9]{1,19})(?:\.([0-9]*))?")


def _epoch_digits_ms(text: pd.Series, unit: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(ms, known)``: the epochs of ``text`` written in plain digits (``known``) cut to the ms
    from their digits in their ``unit`` (an index of :data:`_UNITS`): a column that is not all
    integers (a decimal fraction, or one cell that is no number) is float64 to pandas, which holds
    an ns epoch to ~256 ns and a decimal fraction of a second to ~0.2 us, so 1398938459999999600 ns
    beside a blank cell was 10:01:00.000."""
    parts = text.reset_index(drop=True).str.fullmatch(_EPOCH_DIGITS.pattern)
    known = parts.to_numpy(dtype=bool, na_value=False) & (unit >= 0)
    ms = np.zeros(len(text), dtype=np.int64)
    if not known.any():
        return ms, known
    digits = text.reset_index(drop=True)[known].str.extract(_EPOCH_DIGITS)
    whole = pd.to_numeric(digits[0]).to_numpy(dtype=np.int64)  # at most 19 digits: below 2**63
    fraction = digits[1].fillna("").str[:3].str.ljust(3, "0").astype(np.int64).to_numpy()
    u = unit[known]
    ms[known] = np.select(
        [u == 0, u == 1, u == 2, u == 3],
        [whole * 1000 + fraction, whole, whole // 1000, whole // 1_000_000],
    )
    return ms, known


def epoch_ms(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Epoch numbers in ms, each read in the unit (s, ms, us or ns) in which it is a date
    from :data:`EPOCH_FIRST_MS` to :data:`EPOCH_END_MS` and that is not a time of the wire in
    the next coarser unit (:data:`WIRE_MAX_MS`): ``(ms, read)``, ``ms`` 0 where ``read`` is
    False (a date in no unit: 0, negative, 20140501, inf, nan; or 9999-12-31 in ms). A finer
    time is cut to its ms, as one written as text is (integers exactly; floats to float64's
    precision, about 256 ns for an ns epoch).

    >>> ms, read = epoch_ms(np.array([1398902400.0, 1398902400000.0, 1.3989024e18, 253402300799000.0, -5.0]))
    >>> ms.tolist(), read.tolist()
    ([1398902400000, 1398902400000, 1398902400000, 0, 0], [True, True, True, False, False])
    >>> epoch_ms(np.array([31536000.0, 315532799.0, 20140501.0]))[1].tolist()  # 1971, 1979 in s; YYYYMMDD
    [True, True, False]
    """
    ms, unit, shadow = _epoch_units(values)
    read = (unit >= 0) & (shadow < 0)
    ms[~read] = 0
    return ms, read


def _iso_ms(ms: int) -> str:
    return str(pd.Timestamp(ms, unit="ms", tz="UTC").strftime("%Y-%m-%d"))


def _timestamps(
    col: pd.Series,
    lines: np.ndarray,
    rejects: list[FileReject],
    bad: np.ndarray,
    *,
    fmt: str | None = None,
    tz: str = "UTC",
) -> np.ndarray:
    s = col.str.strip(_BLANKS)
    out = np.zeros(len(s), dtype=np.int64)
    long = (s.str.len() > _TIME_CHARS_MAX).to_numpy()  # no time: never parsed (dateutil is slow on them)
    cells, same = s.to_numpy(dtype=object), _Same()  # not s.iloc[j]: 20 µs each, minutes for millions
    for j in np.flatnonzero(long & ~bad):
        rejects.append(FileReject(int(lines[j]), RejectReason.BAD_TS, same(f"timestamp {cells[j][:40]!r}…"), ""))
    bad |= long
    s = s.mask(long, "")
    cells = s.to_numpy(dtype=object)
    # the column as one text: what almost no file has is looked for once, not in each cell
    column = s.str.cat(sep="\n")
    refused = _no_such_times(cells, column, lines, rejects, bad)
    s = s.mask(refused, "")  # decides no format nor order: never parsed
    cells = s.to_numpy(dtype=object)
    numeric = pd.to_numeric(s, errors="coerce")
    is_num = numeric.notna().to_numpy()
    if is_num.any():
        # a column of whole numbers stays int64 (pandas reads it so): an ns epoch cut exactly
        ms, unit, shadow = _epoch_units(numeric.to_numpy()[is_num], s[is_num])
        fits = (unit >= 0) & (shadow < 0)
        idx = np.flatnonzero(is_num)
        out[idx[fits]] = ms[fits]
        for i, j in enumerate(idx):
            if not fits[i] and not bad[j]:
                detail = f"timestamp {cells[j][:40]!r} {_NO_EPOCH}"
                if unit[i] >= 0:  # a date of the span in one unit, a wire time in the coarser one
                    fine, coarse = _UNITS[unit[i]], _UNITS[shadow[i]]
                    detail = (
                        f"timestamp {cells[j][:40]!r} is {_iso_ms(int(ms[i]))} in {fine} and a date after 2099 in "
                        f"{coarse}: ambiguous; write it as text (YYYY-MM-DD)"
                    )
                rejects.append(FileReject(int(lines[j]), RejectReason.BAD_TS, same(detail), ""))
                bad[j] = True
    # a time with no date ("now", "today", "00:00:01"): pandas dates it by the clock, so the
    # same file gave other candles each day; no date the stream could have sent
    undated = ~is_num & ~bad & s.str.fullmatch(_UNDATED).to_numpy(dtype=bool, na_value=False)
    for j in np.flatnonzero(undated):
        detail = f"timestamp {cells[j][:40]!r} is no date (a time alone, 'now' or 'today')"
        rejects.append(FileReject(int(lines[j]), RejectReason.BAD_TS, same(detail), ""))
    # a month or a week with no day ("2014-05", "05/2014", "2014-W18"): read as its first day
    # (a first row of them gave the column its format); no time a tick or a bar has
    part = ~is_num & ~bad & ~undated & s.str.fullmatch(_PART_OF_DATE).to_numpy(dtype=bool, na_value=False)
    for j in np.flatnonzero(part):
        detail = f"timestamp {cells[j][:40]!r} is no date (a month or a week, no day)"
        rejects.append(FileReject(int(lines[j]), RejectReason.BAD_TS, same(detail), ""))
    undated |= part
    bad |= undated
    rest = ~is_num & ~undated
    if rest.any():
        told_why: dict[int, str] = {}
        if fmt is None:
            # the column's format is its first date's (pandas took its first value's: a first
            # row that is no date had every row read alone, by dateutil, which reads 01/05 as
            # January and 13/05 as May in one file), its order of day and month the column's
            # (:func:`_in_format`); a first date of no format has each read alone, in one order
            # of day and month (:func:`_one_order`)
            column_fmt, first = _first_date_format(s[rest])
            if column_fmt is None:
                parsed = _to_utc(s[rest], "mixed", tz)
                parsed, told_why = _whole_dates(s[rest], parsed, lines[rest])
                parsed, order_why = _one_order(s[rest], parsed, lines[rest], tz)
                told_why.update(order_why)
            else:
                parsed, told_why = _in_format(s[rest], lines[rest], column_fmt, first, tz)
        else:
            parsed = _to_utc(s[rest], fmt, tz)
        if fmt is None and parsed.isna().any():
            # pandas reads a column in the format it infers from its first value: one row
            # written otherwise (isoformat's "…:01+00:00" among "…:01.997000+00:00", a "Z"
            # among offsets) made every other row no date. ISO 8601 text is unambiguous: its
            # full date-times are read in any of its forms (not d/m against m/d: a second guess
            # there would read one file's dates both ways; not a date alone or a part of one)
            again = parsed.isna() & s[rest].str.match(_ISO_DATE_TIME)  # never a part of one ("2014-05")
            if again.any():
                parsed = parsed.where(~again, _to_utc(s[rest][again], "ISO8601", tz))
        if fmt is None:
            # a weekday is in a column of no format, or of one that names it (a format's words
            # are none: :data:`_WORD`; ISO 8601's forms, read again below, have none)
            if (column_fmt is None or "%a" in column_fmt or "%A" in column_fmt) and _names_a_weekday(column):
                parsed, weekday_why = _weekdays_agree(s[rest], parsed, lines[rest], tz)
                told_why.update(weekday_why)
        ok = parsed.notna().to_numpy()
        ms = np.asarray(parsed.dt.as_unit("ms").array.asi8, dtype=np.int64)
        idx = np.flatnonzero(rest)
        out[idx] = ms
        no = idx[~ok]
        no = no[~bad[no]]
        said: dict[str, str] = {}  # one detail per distinct text (millions of rows may share one)
        for line, cell in zip(lines[no].tolist(), cells[no].tolist(), strict=True):
            if (why := told_why.get(int(line))) is not None:
                rejects.append(FileReject(int(line), RejectReason.BAD_TS, same(why), ""))
                continue
            if (told := said.get(cell)) is None:
                told = said[cell] = f"timestamp {cell[:40]!r} is no date" + (f" ({fmt})" if fmt else "")
            rejects.append(FileReject(int(line), RejectReason.BAD_TS, told, ""))
        bad[no] = True
    return out


# digits other than 0-9 (Arabic-Indic, full-width, Devanagari...): ``\d`` of a str pattern is
# any decimal digit. dateutil reads them, pandas' formats do not, and the order of day and month
# is decided from 0-9 only: ٠١/٠٥/٢٠١٤ was read month first beside a day-first 13/05/2014
_OTHER_DIGITS = re.compile(r"(?![0-9])\d")
# a time no epoch (Unix) time has: second 60 or more (a leap second; pandas read 23:59:60 as the
# next day's 00:00:00, on any day, but refused it in a column's first date), or hour 24
_NO_SUCH_TIME = re.compile(r"(?<![^T\s])(?:(24):00|[0-9]{1,2}:[0-9]{2}:(6[0-9]))(?![0-9])")
_SECOND_60 = re.compile(r"(?<![0-9])[0-9]{1,2}:[0-9]{2}:6[0-9](?![0-9])")  # as fast as its literal ":6"
_HOUR_24 = re.compile(r"24:00(?![0-9])")  # a literal first: fast (10:24:00 too, checked then)
# a zone written as GMT or UTC and a signed offset (GMT+2, UTC-05:00): dateutil reads its sign
# as POSIX does (GMT+2 two hours BEHIND), the opposite of "+02:00" beside it: one file had its
# rows four hours apart, silently; refused unless the offset is zero (GMT+0000 of a JS date)
_SIGNED_ZONE = re.compile(r"(?i)(?<![a-z])(gmt|utc)\s*([+-])\s*([0-9]{1,2})(?::?([0-9]{2}))?(?![0-9])")
# an ISO 8601 week date (2014-W18-4, 2014W184): read by neither pandas nor dateutil, refused
# saying which date it is
_WEEK_DATE = re.compile(r"(?<![0-9A-Za-z])([0-9]{4})-?W([0-9]{2})-?([1-7])(?![0-9])")


def _no_such_times(
    cells: np.ndarray, column: str, lines: np.ndarray, rejects: list[FileReject], bad: np.ndarray
) -> np.ndarray:
    """Refuse (in ``rejects``, marked in ``bad``; returned) the times of ``cells`` written in
    digits other than 0-9, at a second or an hour no epoch time has (:data:`_OTHER_DIGITS`,
    :data:`_NO_SUCH_TIME`), or as a week date (:data:`_WEEK_DATE`). ``column`` (the cells
    joined) is searched first, for what a whole column is searched fast (ASCII, ":6", "24:00",
    "W"): each cell only where that finds some."""
    refused = np.zeros(len(cells), dtype=bool)
    others = not column.isascii() and _OTHER_DIGITS.search(column) is not None
    late = ":6" in column and _SECOND_60.search(column) is not None
    weeks = "W" in column and _WEEK_DATE.search(column) is not None
    signed = _SIGNED_ZONE.search(column) is not None
    if not (
        others
        or late
        or weeks
        or signed
        or any(_NO_SUCH_TIME.match(column, m.start()) for m in _HOUR_24.finditer(column))
    ):
        return refused
    same = _Same()
    for j in np.flatnonzero(~bad):
        cell = cells[j]
        if not isinstance(cell, str) or not cell:
            continue
        if others and _OTHER_DIGITS.search(cell):
            detail = f"timestamp {cell[:40]!r} has digits other than 0-9: write its date and time with 0-9"
        elif weeks and (w := _WEEK_DATE.search(cell)) is not None:
            try:
                day = dt.date.fromisocalendar(int(w[1]), int(w[2]), int(w[3])).isoformat()
            except ValueError:  # week 53 of a year of 52, week 0
                day = "YYYY-MM-DD"
            detail = f"timestamp {cell[:40]!r} is a week date (year, week, weekday), not read: write its date as {day}"
        elif signed and (z := _SIGNED_ZONE.search(cell)) is not None and (int(z[3]) or int(z[4] or 0)):
            detail = (
                f"timestamp {cell[:40]!r} names its zone as {z[0].replace(' ', '')}, which is read with either sign "
                "(POSIX takes GMT+2 as two hours behind): write the offset as +HH:MM, e.g. "
                f"{'+' if z[2] == '+' else '-'}{int(z[3]):02d}:{int(z[4] or 0):02d}"
            )
        elif (m := _NO_SUCH_TIME.search(cell)) is None:
            continue
        elif m[1]:
            detail = f"timestamp {cell[:40]!r} has hour 24: write it as 00:00 of the next day"
        else:
            detail = (
                f"timestamp {cell[:40]!r} has second {m[2]} (a leap second), which no epoch (Unix) time has: "
                "drop the row, or write it as second 59"
            )
        rejects.append(FileReject(int(lines[j]), RejectReason.BAD_TS, same(detail), ""))
        refused[j] = True
    bad |= refused
    return refused


_WEEKDAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
# a weekday's name, whole or its first three letters (as dateutil and strptime's %a/%A read them)
_WEEKDAY = re.compile(r"(?i)(?<![a-z])(" + "|".join(f"{d[:3]}(?:{d[3:]})?" for d in _WEEKDAY_NAMES) + r")(?![a-z])")


def _names_a_weekday(column: str) -> bool:
    """Whether ``column`` (a column's cells joined) may name a weekday: seven plain searches
    of its lower case, much faster than one regular expression over it."""
    low = column.lower()
    return any(d[:3] in low for d in _WEEKDAY_NAMES)


def _weekdays_agree(
    values: pd.Series, parsed: pd.Series, lines: np.ndarray, tz: str
) -> tuple[pd.Series, dict[int, str]]:
    """``parsed`` with the dates whose weekday, as written, is not the day they are read as
    refused (NaT), and why, by line. Neither pandas nor dateutil checks a weekday against its
    date: "Mon 01/05/2014" was read as 1 May, a Thursday, and "Thursday 01/05/2014" of a file
    with no day past 12 as 5 January, a Sunday (the file's order is month first where none is
    sure: a weekday that disagrees says it is not). A time that names its zone is not checked
    (its day is that zone's)."""
    named = values.str.extract(_WEEKDAY, expand=False)
    check = named.notna().to_numpy(dtype=bool) & parsed.notna().to_numpy()
    if not check.any():
        return parsed, {}
    check &= ~values.str.contains(_ZONED).to_numpy(dtype=bool, na_value=False)
    said = np.full(len(values), -1, dtype=np.int64)  # Monday 0, as pandas' day_of_week
    days = {d[:3]: i for i, d in enumerate(_WEEKDAY_NAMES)}
    said[check] = named[check].str[:3].str.lower().map(days).to_numpy(dtype=np.int64)
    wall = parsed[check].dt.tz_convert(tz)  # its day where it was written
    wrong = np.flatnonzero(check)[wall.dt.day_of_week.to_numpy() != said[check]]
    if not len(wrong):
        return parsed, {}
    cells, same, why = values.to_numpy(dtype=object), _Same(), {}
    for k in wrong.tolist():
        read = parsed.iloc[k].tz_convert(tz).strftime("%A %Y-%m-%d")
        why[int(lines[k])] = same(
            f"timestamp {cells[k][:40]!r} names a {_WEEKDAY_NAMES[said[k]].title()} but is read as {read}: its "
            "weekday and its date disagree (are its day and month the other way round?)"
        )
    out = parsed.copy()
    out.iloc[wrong] = pd.NaT
    return out, why


# a time without a date, which pandas dates by the clock: a time of day alone ("00:00:01.250",
# "10:15 pm", "T10:15", with a zone: "10:15:00Z", "10:15 UTC", "10:15:00+05:30"), or one of the
# words it reads as the present
_UNDATED = re.compile(
    r"(?i)(?:T?[0-9]{1,2}:[0-9]{2}(?::[0-9]{2}(?:[.,][0-9]*)?)?\s*(?:[ap]\.?m\.?)?"
    r"(?:\s*(?:z|[+-][0-9]{2}(?::?[0-9]{2})?|utc|gmt))?|now|today|tomorrow|yesterday)"
)
# a date of three numbers, year first or last (2014-05-01, 2014/5/1, 01.05.14): a whole date
# (a word of its own: at the start or after a space, and at the end, before a space or an
# ISO "T". Joined to more, the numbers may be parts of something else: "10:00-1-10:00" holds
# 00-1-10 and "10:00-1/5/2014-10:00" 1/5/2014, and dateutil read both as 10:00 of the day they
# were read. Such a value is asked of dateutil whole, as one without three numbers is.)
_THREE_NUMBERS = re.compile(
    r"(?:^|(?<=\s))(?:[0-9]{4}[/.-][0-9]{1,2}[/.-][0-9]{1,2}|[0-9]{1,2}[/.-][0-9]{1,2}[/.-](?:[0-9]{4}|[0-9]{2}))(?=$|[\sT])"
)
# a format that names a day of a year: the others are a part of a date
_DAY_AND_YEAR = re.compile(r"(?=.*%[dj])(?=.*%[Yy])")
_PART_OF_DATE = re.compile(r"[0-9]{4}[-/.][0-9]{1,2}|[0-9]{1,2}[-/.][0-9]{4}|[0-9]{4}-?W[0-9]{2}")
# a directive of a strptime format ("%d", "%-d")
_DIRECTIVE = re.compile(r"%[-#]?.")
# a word that pandas' guess of a format keeps as written (all but the "T" of ISO 8601), though
# it may name one date or time only: a weekday ("Thu %m/%d/%Y", where "%a" would name any), an
# ordinal's ending ("%dst %B %Y"), a meridiem ("%m/%d/%Y %H:%M am", from "01/01/2000 01:00 am":
# its "12:30 am" was read as 12:30, each "pm" refused). In that format every date of another
# weekday, day or half of the day was refused or misread; read alone, dateutil reads each
_WORD = re.compile(r"[A-Za-z]")
# a guess that mixes a date's and a time's numbers: a part of a date beside a ':', or an hour
# beside a date's '/' or '-'. pandas guessed "%m:%M %Y/%H/%d" from "01:00 2000/1/13", and its
# column's "02:00 2000/1/1" was read as 1 February, 01:00
_MIXED_UP = re.compile(r"%[YymdbBj]:|:%[YymdbBj]|%[HI][/-]|[/-]%[HI]")
#: Distinct values :func:`_first_date_format` tries for the column's first date (then: none).
_FIRST_DATE_TRIES = 64
# a date of three numbers whose day and month may stand either way (01/05/2014, 2014.05.13,
# 5-1-14): the two that may be a month (the first two, or the last two after a 4-digit year);
# searched anywhere in a cell, as a time or a weekday may come first ("10:00 01/05/2014", "Thu
# 01/05/2014": matched at its start only, such a date decided no order and was read month first),
# its numbers apart by a space too ("13 1 00", "2 1 00": the second was read as 1 February), never
# a time's ("10:00 13 12 2000" is 13 December, not 00 and 13)
_DATE_SEP = r"(?:[/.-]| )"
_DAY_MONTH = re.compile(
    rf"(?<![0-9:])(?:[0-9]{{4}}{_DATE_SEP}(?P<ym>[0-9]{{1,2}}){_DATE_SEP}(?P<yd>[0-9]{{1,2}})"
    rf"|(?P<a>[0-9]{{1,2}}){_DATE_SEP}(?P<b>[0-9]{{1,2}}){_DATE_SEP}(?P<y>[0-9]{{2,4}}))(?![0-9:])"
)


def _first_date_format(values: pd.Series) -> tuple[str | None, int]:
    """The format of the first of ``values`` that is a date, as pandas infers it, and that
    date's position in ``values`` (None: that date has none pandas infers, or none of the first
    :data:`_FIRST_DATE_TRIES` distinct values is a date; -1: no position). A first value that
    is no date ("x", a cut line) decides nothing."""
    from pandas.tseries.api import guess_datetime_format

    tried: set[str] = set()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "Parsing dates in %d/%m/%Y format when dayfirst=False"
        for k, cell in enumerate(values):
            if not isinstance(cell, str) or not cell or cell in tried:
                continue
            if len(tried) >= _FIRST_DATE_TRIES:
                return None, -1
            tried.add(cell)
            guessed = guess_datetime_format(cell)
            if guessed is not None and _DAY_AND_YEAR.search(guessed) is None:
                continue  # a part of a date ("2014-05", "May 2014"): no format of the column's dates
            if guessed is not None and _WORD.search(_DIRECTIVE.sub(" ", guessed).replace("T", " ")):
                guessed = None  # "Thu %m/%d/%Y", "%H:%M am": the first date's own words, no format
            if guessed is not None and _MIXED_UP.search(guessed):
                guessed = None  # "%m:%M %Y/%H/%d" (from "01:00 2000/1/13"): each value read alone
            if guessed is not None:
                return str(guessed), k
            if _whole_date(cell):
                return None, k  # a date, of no format pandas infers: each value is read alone
    return None, -1


def _day_month(cell: str) -> tuple[int, int] | None:
    """The two numbers of ``cell`` that may be its day and its month, in the order written
    (:data:`_DAY_MONTH`; None for none, and for a date written year first: year, month, day in
    any separator, as ISO 8601's, never a day before its month: 2014/13/05 is no date)."""
    m = _DAY_MONTH.search(cell)
    if m is None or m["ym"] is not None:
        return None
    return int(m["a"]), int(m["b"])


def _sure_order(cell: str) -> bool | None:
    """Whether ``cell`` has its day first (True) or its month first (False) whichever way it
    is read: one of its two numbers is a day past 12 and the other a month; None otherwise."""
    nums = _day_month(cell)
    if nums is None:
        return None
    a, b = nums
    if 12 < a <= 31 and 1 <= b <= 12:
        return True
    if 12 < b <= 31 and 1 <= a <= 12:
        return False
    return None


def _weekday_order(cell: str) -> bool | None:
    """Whether the weekday ``cell`` names says its day comes first (True) or its month (False):
    its date falls on that weekday read in one order only (Thursday 01/05/2014 is 1 May; 5
    January 2014 was a Sunday); None where it names none, or the weekday is that of both
    orders or of neither. A year of two digits is strptime's (:data:`_POSIX_YEARS`)."""
    m = _DAY_MONTH.search(cell)
    w = _WEEKDAY.search(cell) if m is not None and m["ym"] is None else None
    if m is None or w is None:
        return None
    named = [d[:3] for d in _WEEKDAY_NAMES].index(w[1][:3].lower())
    year = int(m["y"])
    if len(m["y"]) == 2:
        year += 1900 if year >= _POSIX_YEARS[0] % 100 else 2000

    def falls(day: int, month: int) -> bool:
        try:
            return dt.date(year, month, day).weekday() == named
        except ValueError:
            return False

    day_first, month_first = falls(int(m["a"]), int(m["b"])), falls(int(m["b"]), int(m["a"]))
    return day_first if day_first != month_first else None


def _in_format(values: pd.Series, lines: np.ndarray, fmt: str, first: int, tz: str) -> tuple[pd.Series, dict[int, str]]:
    """``values`` read in the format ``fmt`` of the column's first date (at position
    ``first``), with why some are no date, by line.

    A format of day and month in numbers (``%m/%d/%Y``) is pandas' guess from the first date
    alone: 01/05/2014 is read month first, and a file of 01/05/2014 to 13/05/2014 had its
    dates of the 1st to the 12th read as January to December and 13/05/2014 refused. The order
    is the column's: that of the first date whose order is sure (a number past 12:
    :func:`_sure_order`; in a format with a weekday, a weekday: :func:`_weekday_order`), the
    first date's where none is; a date sure of the other order is refused (one file, one
    order). A date refused in that format says the order it was read in.
    """
    parsed = _to_utc(values, fmt, tz)
    if "%d" not in fmt or "%m" not in fmt or _day_month(values.iloc[first]) is None:
        return parsed, {}
    swapped = fmt.replace("%d", "\x00").replace("%m", "%d").replace("\x00", "%m")
    cells = values.to_numpy(dtype=object)
    decider, sure, other = first, _sure_order(values.iloc[first]), None
    if sure is None:
        # a date sure of its order is read in one order only: one more parse of the column, in
        # the other order, where its first date decides nothing; the first date read in one
        # order only whose numbers are sure of it decides (not one read in neither, another
        # format: "05/13/2014 10:00:00" among day-first "… 10:00" turned the file month first),
        # or, in a format with a weekday, one read both ways whose weekday is sure of it
        other = _to_utc(values, swapped, tz)
        one_way = parsed.notna().to_numpy() != other.notna().to_numpy()
        named = ("%a" in fmt or "%A" in fmt) & parsed.notna().to_numpy() & other.notna().to_numpy()
        for k in np.flatnonzero(one_way | named).tolist():
            if isinstance(cell := cells[k], str):
                said_order = _sure_order(cell) if one_way[k] else _weekday_order(cell)
                if said_order is not None:
                    decider, sure = k, said_order
                    break
    if sure is not None and sure != (fmt.index("%d") < fmt.index("%m")):
        fmt, swapped, parsed = swapped, fmt, _to_utc(values, swapped, tz) if other is None else other
    day_first = fmt.index("%d") < fmt.index("%m")
    order = ("day", "month") if day_first else ("month", "day")
    said = cells[decider][:40]
    as_read = (
        f"read {order[0]} first as the file's first date, {said!r}, was: {fmt}"
        if decider == first
        else f"read {order[0]} first as line {int(lines[decider])}'s {said!r} is: {fmt}"
    )
    why: dict[int, str] = {}
    same = _Same()
    refused = np.flatnonzero(parsed.isna().to_numpy())
    refused = np.array(
        [k for k in refused if isinstance(cells[k], str) and _day_month(cells[k]) is not None], dtype=int
    )
    if not len(refused):  # no date of two numbers that may be a day and a month: its order is no matter
        return parsed, why
    # in UTC (no clock change): read in the file's format, a date refused in ``tz`` is no date
    # of that zone (a time a clock change skips), not of the order; read in the other order
    # only, it is one of the other order; read in neither, it is none in either
    rows = values.iloc[refused]
    as_written = _to_utc(rows, fmt, "UTC").notna().to_numpy()
    other_way = _to_utc(rows, swapped, "UTC").notna().to_numpy()
    for k, in_fmt, in_other in zip(refused.tolist(), as_written.tolist(), other_way.tolist(), strict=True):
        cell = cells[k]
        if in_fmt:
            continue  # its zone's: said as any such time is
        if in_other and _sure_order(cell) is (not day_first):
            why[int(lines[k])] = same(
                f"timestamp {cell[:40]!r} has its {order[1]} first where line {int(lines[decider])} has its "
                f"{order[0]} first: one file, one order"
            )
        else:
            why[int(lines[k])] = same(f"timestamp {cell[:40]!r} is no date ({as_read})")
    return parsed, why


def _whole_date(cell: str) -> bool:
    """Whether dateutil reads ``cell`` as a date with its year, month and day (the same date
    whatever it would take from its default: "May 2014" is not one)."""
    from dateutil import parser

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # dateutil's UnknownTimezoneWarning ("10:15 EST")
            one, two = (parser.parse(cell, default=d) for d in (dt.datetime(2001, 2, 3), dt.datetime(2004, 5, 6)))
    except (ValueError, OverflowError, TypeError):
        return False
    return bool(one == two)


def _whole_dates(values: pd.Series, parsed: pd.Series, lines: np.ndarray) -> tuple[pd.Series, dict[int, str]]:
    """``parsed`` (values read one by one, by dateutil) with the values that are no whole
    date refused (NaT), and why, by line. Read alone, a value lacking a part of its date had
    that part filled in: "May 2014" was 1 May 2014 and "May 5" year 1, but "10:00 2014" was
    today's day and month of 2014 and "10:00 14th" the 14th of this month, so the same file
    gave other times each day. Every distinct value read is read again, once, as
    :func:`_whole_date` asks (:func:`_part_of_date`): this path reads each value alone
    already, and a column of one format never comes here."""
    read = parsed.notna().to_numpy()
    if not read.any():
        return parsed, {}
    cells = values.to_numpy(dtype=object)
    # a value holding a date of three numbers (2014-05-01, 01/05/14, 2014.5.1) has its year,
    # month and day: asked of dateutil only where it has none (most files: none at all)
    whole = values.str.contains(_THREE_NUMBERS).to_numpy(dtype=bool, na_value=False)
    seen: dict[str, bool] = {}
    partial = np.zeros(len(values), dtype=bool)
    for k in np.flatnonzero(read & ~whole):
        cell = cells[k]
        if (part := seen.get(cell)) is None:
            part = seen[cell] = _part_of_date(cell)
        partial[k] = part
    if not partial.any():
        return parsed, {}
    same, why = _Same(), {}
    for k in np.flatnonzero(partial):
        why[int(lines[k])] = same(
            f"timestamp {cells[k][:40]!r} is no date (its day, month or year is missing); write the whole date"
        )
    out = parsed.copy()
    out.iloc[partial] = pd.NaT
    return out, why


def _part_of_date(cell: str) -> bool:
    """Whether ``cell`` is no whole date as :func:`_whole_date` asks ("May 2014", "May 5",
    "10:00 14th"), with one parse for most dates. One that dateutil cannot read, though
    pandas did, is none either: pandas reads a quarter ("2014Q2") as its first day."""
    from dateutil import parser

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # dateutil's UnknownTimezoneWarning ("10:15 EST")
            one = parser.parse(cell, default=dt.datetime(2001, 2, 3))
            if one.year != 2001 and one.month != 2 and one.day != 3:
                return False  # no part of it is the default's
            two = parser.parse(cell, default=dt.datetime(2004, 5, 6))
    except (ValueError, OverflowError, TypeError):
        return True
    return bool(one.date() != two.date())


def _one_order(values: pd.Series, parsed: pd.Series, lines: np.ndarray, tz: str) -> tuple[pd.Series, dict[int, str]]:
    """``parsed`` (values read one by one, by dateutil) in one order of day and month, with
    the dates sure of the other order refused (NaT), and why, by line. Read alone, 01/05/2014
    is January and 13/05/2014 May: the order is that of the first date whose order is sure (a
    number past 12: :func:`_sure_order`; where none is, a weekday: :func:`_weekday_order`), as
    :func:`_in_format` decides it for a column of one format, and month first where none is
    (dateutil's); never both in one file. Where it is day first, the dates that may be read
    either way are read again, day first."""
    parts = values.str.extract(_DAY_MONTH)
    found = parts.notna().any(axis=1).to_numpy(dtype=bool) & parsed.notna().to_numpy()
    if not found.any():
        return parsed, {}
    parts = parts[found]
    a = pd.to_numeric(parts["ym"].fillna(parts["a"])).to_numpy()
    b = pd.to_numeric(parts["yd"].fillna(parts["b"])).to_numpy()
    where = np.flatnonzero(found)
    # a date written year first (2014-05-13, 2014/05/13, 2014.5.13) is year, month, day, as ISO
    # 8601's: it decides no order and is never read day first, and 2014/13/05 is no date
    iso = parts["ym"].notna().to_numpy(dtype=bool)
    why: dict[int, str] = {}
    for k in np.flatnonzero(iso & (a > 12)):
        why[int(lines[where[k]])] = (
            f"timestamp {values.iloc[where[k]][:40]!r} is no date (written year first: year, month, day; no month {a[k]})"
        )
    other = iso & (a > 12)
    sure_day = ~iso & (a > 12) & (a <= 31) & (b >= 1) & (b <= 12)
    sure_month = ~iso & (b > 12) & (b <= 31) & (a >= 1) & (a <= 12)
    deciding = np.flatnonzero(sure_day | sure_month)
    first, day_first = (int(deciding[0]), bool(sure_day[deciding[0]])) if len(deciding) else (-1, False)
    if first < 0:  # no number past 12: the first date whose weekday is sure of its order decides
        cells = values.to_numpy(dtype=object)
        for j in np.flatnonzero(~iso).tolist():
            if (said_order := _weekday_order(cells[where[j]])) is not None:
                first, day_first = j, said_order
                break
    out = parsed.copy()
    if first >= 0:
        wrong = sure_month if day_first else sure_day
        order = ("day", "month") if day_first else ("month", "day")
        for k in np.flatnonzero(wrong):
            why[int(lines[where[k]])] = (
                f"timestamp {values.iloc[where[k]][:40]!r} has its {order[1]} first where line "
                f"{int(lines[where[first]])} has its {order[0]} first: one file, one order"
            )
        other |= wrong
        either = ~iso & (a <= 12) & (b <= 12) & (a != b)  # read month first by dateutil
        if day_first and either.any():
            rows = where[either]
            out.iloc[rows] = _to_utc(values.iloc[rows], "mixed", tz, dayfirst=True).array
    out.iloc[where[other]] = pd.NaT
    return out, why


# a full ISO 8601 date and time (at least to the minute): read in any of its forms when the
# column's first value was written in another one
_ISO_DATE_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}")

# a time that names its zone: Z, an offset (+01:00, -0500, +02) or UTC/GMT at its end
_ZONED = re.compile(r"(?:[zZ]|[+-][0-9]{2}(?::?[0-9]{2})?|UTC|GMT)$")


# "a.m.", "P.M." (or "pm."): pandas reads "pm" and "PM", and "p.m." of no format, but not
# "P.M." (dateutil does): "13/05/2014 10:00 P.M." was refused, and with it the only date of
# its file that said its order, so its "01/05/2014 10:00 pm" was read as 5 January
_DOTTED_MERIDIEM = re.compile(r"(?i)(?<![a-z])([ap])(?:\.m\.?|m\.)(?![a-z])")


def _to_utc(values: pd.Series, fmt: str | None, tz: str, *, split: bool = True, dayfirst: bool = False) -> pd.Series:
    """Date-time strings as UTC times (NaT for those that are none); a time without a zone
    is in ``tz``. A column of several UTC offsets (local times across a DST change), which
    pandas refuses whole ("Mixed timezones detected"), is read time by time: the zoned ones
    to UTC, the others in ``tz``. With ``dayfirst``, the values of no format (``"mixed"``)
    that may be read either way are read day first. A dotted "a.m."/"P.M." is read as "AM"/"PM"
    (:data:`_DOTTED_MERIDIEM`)."""
    # only where a meridiem is read (in no format, or one with %p); plain searches first (a
    # regular expression over a column of a million times costs 0.4 s)
    column = values.str.cat(sep="\n") if fmt in (None, "mixed") or "%p" in fmt else ""
    if any(dot in column for dot in ("m.", "M.", ".m", ".M")) and _DOTTED_MERIDIEM.search(column) is not None:
        values = values.str.replace(_DOTTED_MERIDIEM, lambda m: f"{m[1].upper()}M", regex=True)
    with warnings.catch_warnings():
        # text that is no date at all ("x") makes pandas warn that it could not infer a
        # format and parses each value alone: those rows become NaT and are refused
        warnings.simplefilter("ignore", UserWarning)
        # a quarter ("2014Q2"), read as its first day and refused as a part of a date
        # (:func:`_whole_dates`): pandas' notice that it will stop reading it is no news to a user
        warnings.filterwarnings("ignore", r"Parsing .* as a quarterly string", DeprecationWarning)
        try:
            parsed = _posix_years(
                values, pd.to_datetime(values, format=fmt, errors="coerce", utc=False, dayfirst=dayfirst), fmt, dayfirst
            )
        except ValueError:
            parsed = None
        if parsed is None or parsed.dtype == object:  # several zones: no one dtype holds them
            if not split:  # the unzoned ones still hold zones: no time of them is trusted
                return pd.Series(pd.NaT, index=values.index, dtype="datetime64[ms, UTC]")
            zoned = values.str.contains(_ZONED).to_numpy()
            at = values.where(zoned, "")
            out = _posix_years(
                at, pd.to_datetime(at, format=fmt, errors="coerce", utc=True, dayfirst=dayfirst), fmt, dayfirst
            ).dt.as_unit("ms")
            naive = _to_utc(values.where(~zoned, ""), fmt, tz, split=False, dayfirst=dayfirst)
            return out.where(zoned, naive)
    if getattr(parsed.dt, "tz", None) is None:
        parsed = parsed.dt.tz_localize(tz, ambiguous="NaT", nonexistent="NaT")
    # in ms, as every time of the stream: two readings (one in ns, one of the year 999) are
    # then merged without a cast (that one overflowed the ns: a traceback)
    return parsed.dt.tz_convert("UTC").dt.as_unit("ms")


#: The years a year of two digits is read as (the POSIX rule of strptime's ``%y``, and pandas'):
#: 69 to 99 are 1969 to 1999, 00 to 68 are 2000 to 2068.
_POSIX_YEARS = (1969, 2068)


def _posix_years(values: pd.Series, parsed: pd.Series, fmt: str | None, dayfirst: bool) -> pd.Series:
    """``parsed`` (``values`` read by pandas in ``fmt``, ``dayfirst`` or not) with each year
    written in two digits read as strptime's ``%y`` reads it (:data:`_POSIX_YEARS`). A value
    of no format (``"mixed"``) is read by dateutil, which puts such a year within 50 years of
    the clock's (01/05/69 is 2069 read in 2026, and was 1969 read in 2018): the same file read
    differently from year to year. A year so read lies outside :data:`_POSIX_YEARS` only where
    the rules differ: those values (few or none) are read again by dateutil under the POSIX
    rule, and take its year where that is the only difference."""
    if fmt != "mixed" or parsed.dtype == object or not len(parsed):
        return parsed
    years = parsed.dt.year
    odd = (parsed.notna() & ((years < _POSIX_YEARS[0]) | (years > _POSIX_YEARS[1]))).to_numpy(dtype=bool)
    if not odd.any():
        return parsed
    from dateutil import parser

    class PosixYears(parser.parserinfo):  # type: ignore[misc]  # dateutil ships no types
        def convertyear(self, year: int, century_specified: bool = False) -> int:
            if year < 100 and not century_specified:
                return year + (1900 if year >= _POSIX_YEARS[0] % 100 else 2000)
            return int(year)

    info, out, said = PosixYears(), parsed.copy(), dict[str, dt.datetime | None]()
    cells = values.to_numpy(dtype=object)
    for k in np.flatnonzero(odd):
        cell = cells[k]
        if cell not in said:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # dateutil's UnknownTimezoneWarning ("10:15 EST")
                    said[cell] = parser.parse(cell, parserinfo=info, dayfirst=dayfirst)
            except (ValueError, OverflowError, TypeError):
                said[cell] = None  # pandas reads it (ISO 8601's forms), dateutil does not: as read
        was, again = out.iloc[k], said[cell]
        if again is None or (again.tzinfo is None) != (was.tz is None):
            continue
        posix = pd.Timestamp(again) if was.tz is None else pd.Timestamp(again).tz_convert(was.tz)
        if posix.year == was.year:
            continue
        try:
            # the same reading but for its century (not "0014 1 1": the year 14 to pandas, 2001 to dateutil)
            if posix.replace(year=was.year) == was.replace(nanosecond=0):
                out.iloc[k] = was.replace(year=posix.year)
        except ValueError:  # 29 February of a year that has none
            out.iloc[k] = pd.NaT
    return out


def _symbols(
    df: pd.DataFrame, col: str | None, symbol: str | None, path: str | Path, reg: InstrumentRegistry
) -> pd.Series:
    if col is not None:
        return df[col].str.strip()
    sym = symbol or symbol_from_path(path, reg)
    if sym is None:
        raise DataFormatError(f"{path}: the file names no symbol; pass one (--symbol)")
    return pd.Series([sym] * len(df), index=df.index, dtype=object)


def _dedup(rejects: list[FileReject]) -> list[FileReject]:
    seen: dict[int, FileReject] = {}
    for r in rejects:
        seen.setdefault(r.line, r)
    return sorted(seen.values(), key=lambda r: r.line)


def _head(text: str) -> str:
    """The first line (ended as :data:`_NEWLINE` ends lines: LF, CRLF or CR)."""
    m = _NEWLINE.search(text)
    return text[: m.start()] if m else text


def _col(cols: dict[str, str], path: object, head: str, *names: str) -> str:
    """The file's column for the first of ``names`` that ``cols`` (lower-case name → column)
    holds; ``DataFormatError`` naming the first when none is there."""
    for name in names:
        if name in cols:
            return cols[name]
    if len(cols) == 1 and (sep := next((c for c in (";", "\t", "|") if c in head), None)) is not None:
        # one column, its name the whole header: the file's fields are not separated by commas
        said = "tabs" if sep == "\t" else repr(sep)
        raise DataFormatError(
            f"{path}: its header is separated by {said}, not commas (header {head[:80]!r}): write the file with commas"
        )
    raise DataFormatError(f"{path}: no {names[0]!r} column (header {head[:80]!r})")


_Layout = tuple[tuple[str, ...] | re.Pattern[str], str, str, bool]
"""A file layout: what its header line starts with (any of these prefixes) or matches (the
pattern), in lower case; its name; its field separator; whether the first line is a header."""

_TICK_LAYOUTS: tuple[_Layout, ...] = (
    (("ts_ms",), "ts_ms", ",", True),
    (("timestamp",), "generic", ",", True),
    (("gmt time", "time (utc)"), "dukascopy", ",", True),
    (re.compile(r"^\d{8} \d{9},"), "histdata", ",", False),
)

_CANDLE_LAYOUTS: tuple[_Layout, ...] = (
    (("ts_ms",), "ts_ms", ",", True),
    (("date,pair",), "lean_daily", ",", True),
    (("timestamp", "time,", "datetime"), "generic", ",", True),
    (("symbol,timeframe,open_time",), "forexd", ",", True),
    ((",open",), "pandas", ",", True),
    (("gmt time", "time (utc)"), "dukascopy", ",", True),
    (("<date>",), "metatrader", ",", True),
    (re.compile(r"^\d{8} \d{6};"), "histdata", ";", False),
    (re.compile(r"^\d{4}\.\d{2}\.\d{2},\d{2}:\d{2}"), "metatrader", ",", False),
)


# Layouts whose columns are looked up by name, whatever their order: the first of these time
# columns the header names anywhere picks the layout (``bid,ask,ts_ms`` is the ts_ms layout)
_TICK_NAMED = (("ts_ms", "ts_ms"), ("timestamp", "generic"))
_CANDLE_NAMED = (("ts_ms", "ts_ms"), ("timestamp", "generic"), ("time", "generic"), ("datetime", "generic"))


def _looks_binary(head: str) -> bool:
    """Whether a first line is binary rather than text: a control character other than tab
    (NUL, the ``\x1a`` of PNG's signature, ZIP's ``\x03\x04``), or more than one character in
    eight undecodable (U+FFFD; a Latin-1 header's odd accent is not enough)."""
    if any((ord(ch) < 32 and ch not in "\t\r\n") or ch == "\x7f" for ch in head):
        return True
    return head.count("\ufffd") * 8 > len(head)


def _sniff(
    path: str | Path,
    head: str,
    layouts: tuple[_Layout, ...],
    what: str,
    named: tuple[tuple[str, str], ...] = (),
) -> tuple[str, str, bool]:
    """Return ``(layout, separator, has header)`` of the first of ``layouts`` whose test the
    header line ``head`` passes, else of the first of ``named`` whose time column the header
    names in another place (raises ``DataFormatError`` naming ``what`` when none does)."""
    low = ",".join(f.strip() for f in head.lower().split(","))  # ' ts_ms , bid ' is ts_ms,bid
    for test, layout, sep, header in layouts:
        if low.startswith(test) if isinstance(test, tuple) else test.match(low):
            return layout, sep, header
    fields = {_header_key(f) for f in low.split(",")}
    for column, layout in named:
        if column in fields:
            return layout, ",", True
    hint = ""
    if _looks_binary(head):  # before the quote hint: random bytes hold '"' too
        hint = (
            ": it is not a text (CSV) file: its first line holds control bytes or bytes that are not UTF-8"
            " (an image, a spreadsheet, compressed data?)"
        )
    elif '"' in head:
        hint = ": quoted fields are not read, save the file without quotes"
    elif not low:
        hint = ": the first line is blank, the file must start with its header or first row"
    raise DataFormatError(f"{path}: unrecognised {what} layout (header {head[:80]!r}){hint}")


def read_ticks(
    path: str | Path, *, symbol: str | None = None, tz: str = "UTC", instruments: InstrumentRegistry | None = None
) -> LoadedFile:
    """Read a tick file into columns ``line, ts_ms, symbol, bid, ask, volume``."""
    reg = instruments or InstrumentRegistry()
    text = _open_text(path)
    head = _head(text)
    layout, sep, header = _sniff(path, head, _TICK_LAYOUTS, "tick", _TICK_NAMED)
    df = _read_rows(text, sep, header, path)
    rejects = _bad_lines(text, sep, header, len(df.columns))
    lines = _line_numbers(df, header)
    bad = np.isin(lines, [r.line for r in rejects])  # fields missing: refused once, as malformed
    cols = {_header_key(c): c for c in df.columns}
    if layout == "ts_ms":
        ts = _timestamps(df[_col(cols, path, head, "ts_ms")], lines, rejects, bad)  # TS_MS too
        bid_c, ask_c, vol_c, sym_c = cols.get("bid"), cols.get("ask"), cols.get("volume"), cols.get("symbol")
    elif layout == "generic":
        ts = _timestamps(df[_col(cols, path, head, "timestamp")], lines, rejects, bad, tz=tz)
        bid_c, ask_c, vol_c, sym_c = cols.get("bid"), cols.get("ask"), cols.get("volume"), cols.get("symbol")
    elif layout == "dukascopy":
        tcol = df.columns[0]
        ts = _timestamps(df[tcol], lines, rejects, bad, fmt="%d.%m.%Y %H:%M:%S.%f", tz=tz)
        bid_c, ask_c, vol_c, sym_c = cols.get("bid"), cols.get("ask"), cols.get("bidvolume"), None
    else:  # histdata tick: 'YYYYMMDD HHMMSSfff', bid, ask, vol; EST-like New York time
        df.columns = ["time", "bid", "ask", "volume"][: len(df.columns)] + list(df.columns[4:])
        ts = _timestamps(
            df["time"], lines, rejects, bad, fmt="%Y%m%d %H%M%S%f", tz=tz if tz != "UTC" else "America/New_York"
        )
        bid_c, ask_c, vol_c, sym_c = "bid", "ask", "volume" if "volume" in df.columns else None, None
    missing = [name for name, c in (("bid", bid_c), ("ask", ask_c)) if c is None or c not in df.columns]
    if missing:  # a header of the layout's time column without the prices
        raise DataFormatError(f"{path}: no {' and no '.join(missing)} column in the tick file (header {head[:80]!r})")
    bid = _numbers(df[bid_c], "bid", lines, rejects, bad)
    ask = _numbers(df[ask_c], "ask", lines, rejects, bad)
    # nan/inf volumes stay: the validator refuses them (non_finite), they never count as 0
    vol = _numbers(df[vol_c], "volume", lines, rejects, bad) if vol_c else np.zeros(len(df))
    syms = _symbols(df, sym_c, symbol, path, reg)
    # canonical, as candles are: replay keys a record by it, and the worker refuses a key that
    # is not (eur/usd, EurUsd: key_mismatch); an unknown symbol stays as written
    syms = syms.map({s: reg.normalise(s) or s for s in syms.unique() if isinstance(s, str)})
    frame = pd.DataFrame({"line": lines, "ts_ms": ts, "symbol": syms.to_numpy(), "bid": bid, "ask": ask, "volume": vol})
    frame = frame[~bad].reset_index(drop=True)
    unread = _symbol_of_line(df, sym_c, sep, reg)
    return LoadedFile(frame, layout, _dedup(_with_symbols(rejects, lines, syms, unread)))


def _with_symbols(
    rejects: list[FileReject], lines: np.ndarray, syms: pd.Series, unread: Callable[[str], str] | None = None
) -> list[FileReject]:
    """``rejects`` each with the symbol its row names (``syms``, by row of ``lines``; for a
    line pandas never read, ``unread`` of its raw text; "" for a blank cell or none known): a
    caller that selects one series counts only its refused rows (the tick reader's had none,
    and ``forexd candles --symbol`` counted every symbol's)."""
    if not rejects:
        return rejects
    at = np.searchsorted(lines, [r.line for r in rejects])
    named = syms.to_numpy(dtype=object)
    out = []
    for r, i in zip(rejects, at.tolist(), strict=True):
        if i < len(lines) and lines[i] == r.line:
            symbol = str(named[i]) if isinstance(named[i], str) else ""
        else:  # a line of another field count: its symbol field, where it has one
            symbol = unread(r.raw) if unread is not None else ""
        out.append(dataclasses.replace(r, symbol=symbol))
    return out


def _symbol_of_line(
    df: pd.DataFrame, column: str | None, sep: str, reg: InstrumentRegistry
) -> Callable[[str], str] | None:
    """The symbol a raw line names in ``column`` (its field at that column's place, canonical
    where the registry knows it; "" when the line has no such field), or None for a file
    without a symbol column. A line with a field too many (``...,GBPUSD,1.687,1.6872,extra``)
    was counted as every symbol's refusal."""
    if column is None or column not in df.columns:
        return None
    at = list(df.columns).index(column)

    def symbol(raw: str) -> str:
        fields = raw.split(sep)
        if len(fields) <= at:
            return ""
        cell = fields[at].strip().strip('"').strip()
        return (reg.normalise(cell) or cell) if cell else ""

    return symbol


def columns(frame: pd.DataFrame, *names: str) -> Iterator[tuple[Any, ...]]:
    """Yield the rows of ``frame``'s columns ``names`` as tuples of plain Python values.

    >>> list(columns(pd.DataFrame({"a": [1, 2], "b": ["x", "y"]}), "b", "a"))
    [('x', 1), ('y', 2)]
    """
    return zip(*(frame[n].tolist() for n in names), strict=True)


def _read_rows(text: str, sep: str, header: bool, path: object) -> pd.DataFrame:
    """The file's rows as a frame; a file without any is refused."""
    df = _read_frame(text, sep, header, path)
    if df.empty:
        first = _head(text) if header else next((r for _, r in _lines(text) if r.strip()), "")
        bad = _bad_lines(text, sep, header, first.count(sep) + 1)
        why = ""
        if bad:  # every row refused: say why the first was
            more = f", and {len(bad) - 1:,} more" if len(bad) > 1 else ""
            why = f" (line {bad[0].line}: {bad[0].detail}{more})"
        raise DataFormatError(f"{path}: no rows{why}")
    return df


def iter_ticks(frame: pd.DataFrame) -> Iterator[Tick]:
    """Yield :class:`Tick` records from a :func:`read_ticks` frame."""
    for ts, sym, b, a, v in columns(frame, "ts_ms", "symbol", "bid", "ask", "volume"):
        yield Tick(symbol=sym, ts_ms=ts, bid=b, ask=a, volume=v)


_OHLC = ("open", "high", "low", "close")


def _mean(b: np.ndarray, a: np.ndarray) -> np.ndarray:
    """``(b + a) / 2`` element-wise, without overflow: where the sum passes the largest double
    (bid and ask of 1e308) it is ``b / 2 + a / 2`` (equal wherever both are exact), so the
    price stays the finite value written and is refused as out of range, not as ``inf``."""
    with np.errstate(over="ignore", invalid="ignore"):
        mid: np.ndarray = (b + a) / 2.0
        over = np.isinf(mid) & np.isfinite(b) & np.isfinite(a)
        if over.any():
            mid[over] = b[over] / 2.0 + a[over] / 2.0
    return mid


def read_candles(
    path: str | Path,
    *,
    symbol: str | None = None,
    price: PriceSide = "mid",
    tz: str = "UTC",
    instruments: InstrumentRegistry | None = None,
) -> LoadedFile:
    """Read a candle file into columns ``line, ts_ms, symbol, open, high, low, close, volume``.

    For files with bid and ask bars, ``price`` picks the side; ``mid`` averages the bid
    and ask fields (for high/low that is the mean of the extremes, an approximation of the
    mid bar's extremes, documented as such). ``ts_ms`` is the bar open time.
    """
    return _read_candles(path, _open_text(path), symbol=symbol, price=price, tz=tz, instruments=instruments)


def _read_candles(
    path: str | Path,
    text: str,
    *,
    symbol: str | None,
    price: PriceSide,
    tz: str,
    instruments: InstrumentRegistry | None,
) -> LoadedFile:
    """:func:`read_candles` of ``path``'s ``text`` (read once by the caller)."""
    reg = instruments or InstrumentRegistry()
    head = _head(text)
    layout, sep, header = _sniff(path, head, _CANDLE_LAYOUTS, "candle", _CANDLE_NAMED)
    df = _read_rows(text, sep, header, path)
    lines = _line_numbers(df, header)
    # a row with fields missing or extra: refused once, as malformed (extra ones were dropped unsaid)
    rejects = _bad_lines(text, sep, header, len(df.columns))
    bad = np.isin(lines, [r.line for r in rejects])
    cols = {_header_key(c): c for c in df.columns}
    sym_c: str | None = None
    if layout == "ts_ms":
        ts = _timestamps(df[_col(cols, path, head, "ts_ms")], lines, rejects, bad)  # TS_MS too
        sym_c = cols.get("symbol")
    elif layout == "lean_daily":
        ts = _timestamps(df[_col(cols, path, head, "date")], lines, rejects, bad, fmt="%Y-%m-%d", tz=tz)
        sym_c = _col(cols, path, head, "pair")
    elif layout == "generic":
        tcol = _col(cols, path, head, "timestamp", "time", "datetime")
        ts = _timestamps(df[tcol], lines, rejects, bad, tz=tz)
        sym_c = cols.get("symbol")
    elif layout == "forexd":  # what `forexd candles` writes
        ts = _timestamps(df[_col(cols, path, head, "open_time")], lines, rejects, bad, tz=tz)
        sym_c = _col(cols, path, head, "symbol")
    elif layout == "pandas":
        ts = _timestamps(df[df.columns[0]], lines, rejects, bad, tz=tz)
    elif layout == "dukascopy":
        ts = _timestamps(df[df.columns[0]], lines, rejects, bad, fmt="%d.%m.%Y %H:%M:%S.%f", tz=tz)
    elif layout == "histdata":
        names = ["time", "open", "high", "low", "close", "volume"]
        df.columns = names[: len(df.columns)] + [f"x{i}" for i in range(len(df.columns) - len(names))]
        cols = {c: c for c in df.columns}
        ts = _timestamps(
            df["time"], lines, rejects, bad, fmt="%Y%m%d %H%M%S", tz=tz if tz != "UTC" else "America/New_York"
        )
    else:  # metatrader
        if header:
            dcol, tcol = _col(cols, path, head, "date"), _col(cols, path, head, "time")
            stamp = df[dcol].str.strip() + " " + df[tcol].str.strip()
            rename: dict[str, str] = {cols[k]: k for k in ("open", "high", "low", "close") if k in cols}
            vol = cols.get("tickvol") or cols.get("vol") or cols.get("volume")
            if vol:
                rename[vol] = "volume"
            df = df.rename(columns=rename)
        else:
            names = ["date", "time", "open", "high", "low", "close", "volume"]
            df.columns = names[: len(df.columns)] + [f"x{i}" for i in range(len(df.columns) - len(names))]
            stamp = df["date"].str.strip() + " " + df["time"].str.strip()
        cols = {_header_key(c): c for c in df.columns}
        ts = _timestamps(stamp, lines, rejects, bad, fmt="%Y.%m.%d %H:%M", tz=tz)
    ohlc: dict[str, np.ndarray] = {}
    has_sides = "bid_open" in cols
    for k in _OHLC:
        if has_sides:
            b = _numbers(df[_col(cols, path, head, f"bid_{k}")], f"bid_{k}", lines, rejects, bad)
            a = _numbers(df[_col(cols, path, head, f"ask_{k}")], f"ask_{k}", lines, rejects, bad)
            ohlc[k] = b if price == "bid" else a if price == "ask" else _mean(b, a)
        else:
            ohlc[k] = _numbers(df[_col(cols, path, head, k)], k, lines, rejects, bad)
    vcol = cols.get("volume")
    if has_sides:
        vol_arr = np.zeros(len(df))
    elif vcol:
        # nan/inf volumes stay: the candle check refuses them (non_finite), as the stream's
        # decoder does; they were read as 0 and the candle admitted
        vol_arr = _numbers(df[vcol], "volume", lines, rejects, bad)
    else:
        vol_arr = np.zeros(len(df))
    syms = _symbols(df, sym_c, symbol, path, reg)
    # canonical, the column's or --symbol's (eur/usd): replay keys a record by it (key_mismatch)
    syms = syms.map({s: reg.normalise(s) or s for s in syms.unique() if isinstance(s, str)})
    frame = pd.DataFrame({"line": lines, "ts_ms": ts, "symbol": syms.to_numpy(), **ohlc, "volume": vol_arr})
    tf_c = cols.get("timeframe")
    series = df[tf_c].str.strip().to_numpy() if tf_c is not None else None
    keep = ~bad
    rejects = _with_symbols(rejects, lines, syms, _symbol_of_line(df, sym_c, sep, reg))
    frame = frame[keep].reset_index(drop=True)
    # a row the stream refuses does not decide the order (one atop or below a newest-first file
    # made every good row late): a time outside 1971..2100 (bad_ts later) or past the clock
    # (future_ts), prices that are not finite, not positive or not bounded by high and low
    t = frame["ts_ms"].to_numpy(dtype=np.int64)
    o, h, lo, c = (frame[k].to_numpy(dtype=float) for k in ("open", "high", "low", "close"))
    with np.errstate(invalid="ignore"):  # nan compares false
        finite = np.isfinite(o) & np.isfinite(h) & np.isfinite(lo) & np.isfinite(c)
        sound = finite & (lo > 0) & (h >= np.maximum(o, c)) & (lo <= np.minimum(o, c))
    counted = (t >= EPOCH_FIRST_MS) & (t < MAX_TS_MS) & (t <= time.time() * 1000) & sound
    frame = oldest_first(frame, None if series is None else series[keep], counted)
    return LoadedFile(frame, layout, _dedup(rejects))


def oldest_first(
    frame: pd.DataFrame, timeframes: np.ndarray | None = None, counted: np.ndarray | None = None
) -> pd.DataFrame:
    """``frame`` with each series written newest-first read oldest-first.

    A series (one symbol, and one timeframe where the file has that column: ``timeframes``,
    each by its canonical name, so ``60m``, ``1H`` and ``1h`` are one series) whose
    open times never rise from its first row to its last and fall at least once is a layout
    (vendors export newest-first), not a stream of late candles: its rows are reversed in
    place (the file's interleaving of series is kept; ``line`` still names each row's line).
    Any other order (shuffled, ascending with some late or repeated rows) is left as it is,
    for the candle agent's time rules to refuse what the stream would. Where ``counted`` is
    given, only its rows make the order and move (the others, times no bar has, are refused
    wherever they stand): one such row atop a newest-first file made every good row late.

    >>> f = pd.DataFrame({"line": [2, 3, 4], "ts_ms": [3, 2, 1], "symbol": ["EURUSD"] * 3})
    >>> oldest_first(f)["line"].tolist()
    [4, 3, 2]
    >>> oldest_first(f.assign(ts_ms=[3, 1, 2]))["line"].tolist()
    [2, 3, 4]
    """
    n = len(frame)
    if n < 2:
        return frame
    ts = frame["ts_ms"].to_numpy(dtype=np.int64)
    key = frame["symbol"].astype(str)
    if timeframes is not None:
        from forex_diffusion.timeframes import canonical_name

        tfs = pd.Series(timeframes, index=frame.index)
        # by its one name: a column of 60m, 1H and 1h was three series, and all but one row late
        tfs = tfs.map({v: canonical_name(v) if isinstance(v, str) else v for v in tfs.unique()})
        key = key + "\x00" + tfs.astype(str)
    codes, _ = pd.factorize(key)
    order = np.arange(n)
    reversed_any = False
    use = np.ones(n, dtype=bool) if counted is None else counted
    for code in np.unique(codes):
        pos = np.flatnonzero((codes == code) & use)
        t = ts[pos]
        if len(t) > 1 and t[0] > t[-1] and bool((np.diff(t) <= 0).all()):
            order[pos] = pos[::-1]
            reversed_any = True
    if not reversed_any:
        return frame
    return frame.iloc[order].reset_index(drop=True)


Layout = Literal["ticks", "candles"]


def sniff_kind(path: str | Path) -> Layout:
    """Whether a file holds ticks or candles, from its header."""
    head = _head(_open_text(path, prefix=_HEAD_BYTES)).lower()  # the header only: never the whole file
    if (
        "open" in head
        or "<date>" in head
        or re.match(r"^\d{8} \d{6};", head)
        or re.match(r"^\d{4}\.\d{2}\.\d{2},", head)
    ):
        return "candles"
    return "ticks"


# --- selecting one series of a candle file --------------------------------------------------


def file_timeframes(path: str | Path) -> pd.Series | None:
    """The ``timeframe`` column of a candle file, indexed by line number (as ``line`` of
    :func:`read_candles`), or None when the file has no such column."""
    if not _has_timeframes(_open_text(path, prefix=_HEAD_BYTES)):  # the header only: never the whole file
        return None
    return _timeframes(_open_text(path), path)


def _has_timeframes(text: str) -> bool:
    return "timeframe" in (_header_key(c) for c in _head(text).split(","))


def _timeframes(text: str, path: str | Path) -> pd.Series | None:
    """:func:`file_timeframes` of ``path``'s ``text``."""
    if not _has_timeframes(text):
        return None
    df = _read_frame(text, ",", True, path)
    col = {_header_key(c): c for c in df.columns}["timeframe"]
    return pd.Series(df[col].str.strip().to_numpy(), index=_line_numbers(df, True), name="timeframe")


def select_series(
    loaded: LoadedFile,
    path: str | Path,
    *,
    symbol: str | None = None,
    timeframe: str | None = None,
    one_symbol: bool = True,
    timeframes: pd.Series | None = None,
    instruments: InstrumentRegistry | None = None,
) -> LoadedFile:
    """Keep the rows of one symbol and one timeframe of a read candle file.

    A file holding several timeframes (``forexd candles --timeframes 1m,5m``) needs
    ``timeframe``; with ``one_symbol``, a file holding several symbols needs ``symbol``.
    ``timeframes`` is :func:`file_timeframes` of ``path`` (read when not given).

    Raises
    ------
    DataFormatError
        Several series and none chosen, or the chosen one is not in the file (the message
        lists what the file holds and the option to pass).
    """
    reg = instruments or InstrumentRegistry()
    frame = loaded.frame
    name = Path(path).name
    tfs = file_timeframes(path) if timeframes is None else timeframes
    if tfs is not None and len(frame):
        from forex_diffusion.timeframes import canonical_name

        row_tf = tfs.reindex(frame["line"].to_numpy())
        # a column written 1H or 60m holds the 1h candles train and backtest ask for by that name
        row_tf = row_tf.map({v: canonical_name(v) if isinstance(v, str) else v for v in row_tf.unique()}).to_numpy()
        held = sorted(set(row_tf.tolist()), key=str)
        if timeframe is None:
            if len(held) > 1:
                raise DataFormatError(
                    f"{name} holds several timeframes ({', '.join(map(str, held))}): pass --timeframe to choose one"
                )
        else:
            timeframe = canonical_name(timeframe)
            keep = row_tf == timeframe
            if not keep.any():
                raise DataFormatError(
                    f"{name} holds no {timeframe} candles (it holds "
                    f"{', '.join(map(str, held))}): pass one of those to --timeframe"
                )
            frame = frame[keep]
    held_syms = sorted(set(frame["symbol"].tolist()), key=str)
    rejects = loaded.rejects
    if symbol is not None:  # the rows the reader refused of the chosen symbol, or of none it could read
        want = reg.normalise(symbol) or reg.normalise(symbol.upper()) or symbol.upper()
        rejects = [r for r in rejects if r.symbol in ("", want)]
    if symbol is not None and held_syms != [symbol]:
        # rows named by the file (a symbol column, normalised by the reader): keep the chosen
        # one's, and the rows that name none (a blank cell: no other symbol's row), for the
        # caller to refuse as ``unknown_symbol`` with their lines -- they were dropped unsaid
        keep_s = (frame["symbol"] == want).to_numpy()
        blank = frame["symbol"].fillna("").astype(str).str.strip().eq("").to_numpy(dtype=bool)
        if not keep_s.any():
            named = [str(s) for s in held_syms if not pd.isna(s) and str(s).strip()]
            holds = ", ".join(n[:24] for n in named[:10]) + (f" and {len(named) - 10} more" if len(named) > 10 else "")
            holds += (" and " if named else "") + "rows without a symbol" if blank.any() else ""
            fix = f"write the pair in it, or remove the column (--symbol {want} then names every row)"
            if not named:
                raise DataFormatError(f"{name} holds no {want} candles: its symbol column is blank on every row; {fix}")
            if not any(reg.normalise(n) or (len(n) == 6 and n.isascii() and n.isalpha()) for n in named):
                # "1": no --symbol takes it, "pass one of those" was no advice
                raise DataFormatError(
                    f"{name} holds no {want} candles: its symbol column holds no symbol (it holds {holds}); {fix}"
                )
            raise DataFormatError(f"{name} holds no {want} candles (it holds {holds}): pass one of those to --symbol")
        frame = frame[keep_s | blank]
    elif one_symbol and len(held_syms) > 1:
        raise DataFormatError(
            f"{name} holds several symbols ({', '.join(map(str, held_syms))}): pass --symbol to choose one"
        )
    if len(frame) == len(loaded.frame) and len(rejects) == len(loaded.rejects):
        return loaded
    return LoadedFile(frame.reset_index(drop=True), loaded.layout, rejects)


def bar_spacing_ms(frame: pd.DataFrame) -> int | None:
    """The most common gap between consecutive bar opens of one series (None under 10 bars)."""
    ts = np.sort(frame["ts_ms"].to_numpy(dtype=np.int64))
    if len(ts) < 10:
        return None
    gaps = np.diff(ts)
    gaps = gaps[gaps > 0]
    if not len(gaps):
        return None
    values, counts = np.unique(gaps, return_counts=True)
    return int(values[np.argmax(counts)])


def check_price_scale(
    frame: pd.DataFrame, symbol: str, path: str | Path, instruments: InstrumentRegistry | None = None
) -> None:
    """Refuse prices that cannot be ``symbol``'s: the median close over the pip size must lie
    in ``[1e3, 1e6)`` (EURUSD ~1.1 / 0.0001, USDJPY ~150 / 0.01; EURUSD prices read as USDJPY
    give ~110, USDJPY prices read as EURUSD ~1.5e6).

    Raises
    ------
    DataFormatError
        The prices are off by orders of magnitude for the symbol's pip size.
    """
    reg = (instruments or InstrumentRegistry()).with_symbol(symbol)
    inst = reg.get(reg.normalise(symbol) or symbol.upper())
    close = frame["close"].to_numpy(dtype=float)
    close = close[np.isfinite(close)]
    if inst is None or not len(close):
        return
    with np.errstate(over="ignore"):
        median = float(np.median(close))
    if math.isinf(median):  # the mean of the two middle closes overflowed (1e308): without overflow
        mid = np.sort(close)[[(len(close) - 1) // 2, len(close) // 2]]
        median = float(_mean(mid[:1], mid[1:])[0])
    if not 1e3 <= median / inst.pip < 1e6:
        raise DataFormatError(
            f"{Path(path).name}: a median close of {median:g} is not a {inst.symbol} price "
            f"(pip {inst.pip:g}): pass the file's own --symbol"
        )


def read_candle_series(
    path: str | Path,
    *,
    symbol: str | None = None,
    timeframe: str | None = None,
    price: PriceSide = "mid",
    one_symbol: bool = True,
    tz: str = "UTC",
    instruments: InstrumentRegistry | None = None,
) -> LoadedFile:
    """Read a candle file and keep one series: :func:`read_candles` then :func:`select_series`.

    When ``timeframe`` is given and the file has no timeframe column, the bars' most common
    spacing must be that timeframe's duration (for daily bars: 23 to 25 hours).

    Raises
    ------
    DataFormatError
        As :func:`read_candles` and :func:`select_series`, or bars spaced unlike ``timeframe``.
    """
    from forex_diffusion.timeframes import Timeframe

    text = _open_text(path)  # read (and unzipped) once for both
    loaded = _read_candles(path, text, symbol=symbol, price=price, tz=tz, instruments=instruments)
    tfs = _timeframes(text, path)
    del text
    loaded = select_series(
        loaded, path, symbol=symbol, timeframe=timeframe, one_symbol=one_symbol, timeframes=tfs, instruments=instruments
    )
    if timeframe is not None and tfs is None:
        tf = Timeframe.parse(timeframe)
        # the symbol's own bars: a row that names none (kept, to be refused) is no bar of theirs
        named = loaded.frame["symbol"].fillna("").astype(str).str.strip().ne("").to_numpy(dtype=bool)
        spacing = bar_spacing_ms(loaded.frame[named])
        # daily bars are mostly a day apart, 23 or 25 hours across a clock change (days over
        # gaps, which are not the most common): hourly bars read as 1d were refused later for
        # "close times not strictly increasing", and weekly or monthly ones (or a day-first file
        # read month first: a bar a month) were taken, as ``forexd train`` took them
        daily = tf.is_daily and spacing is not None and 23 * 3_600_000 <= spacing <= 25 * 3_600_000
        if spacing is not None and spacing != tf.duration_ms and not daily:
            raise DataFormatError(
                f"{Path(path).name}: its bars are {span_text(spacing)} apart, not {timeframe}: "
                f"pass --timeframe {span_text(spacing)} (or the file of {timeframe} candles)"
            )
    return loaded


def span_text(ms: int) -> str:
    """``ms`` in the largest unit that divides it: ``3600000`` is ``1h``.

    >>> span_text(3_600_000), span_text(90_000), span_text(1500)
    ('1h', '90s', '1500ms')
    """
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"
