"""The readers' epoch unit guess (s, ms, us, ns) and the numbers they refuse, at the edges.

An epoch number is read in the one unit in which it is a date from 1971 to 2099
(``readers.EPOCH_FIRST_MS`` .. ``EPOCH_END_MS``), or refused as ``bad_ts`` quoting the text as
written (and saying to write other dates as text). The span started in 1980, which refused the
daily bars of the 1970s in epoch seconds while the same dates as text were read. A number that
is a time of the wire (up to 9999-12-31) in the next coarser unit is not read in a finer one:
ms, us and ns read dates from 1978-01-11T21:31:40.800Z (``EPOCH_FINE_FIRST_MS``) on. Before, the unit came from the magnitude alone (s below 1e11, ms below 1e14, us below
1e17): 253402300799000, 9999-12-31 in ms, was read as microseconds, 1978-01-11, and fed to the
indicators out of order.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from forex_diffusion.errors import RejectReason
from forex_diffusion.ingest import readers
from forex_diffusion.ingest.readers import EPOCH_END_MS, EPOCH_FIRST_MS, epoch_ms, read_candles, read_ticks

WIRE_MAX_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z, the wire's TS_MAX
EPOCH_FINE_FIRST_MS = 253_402_300_800  # 1978-01-11T21:31:40.800Z: WIRE_MAX_MS / 1000, rounded up

YEAR_9999_MS = 253_402_300_799_000
UNITS = {"s": 1000.0, "ms": 1.0, "us": 1e-3, "ns": 1e-6}  # to ms


def _candles(path: Path, stamps: list[str]) -> Path:
    rows = ["timestamp,symbol,open,high,low,close,volume"]
    rows += [f"{t},EURUSD,1.1,1.2,1.0,1.15,1" for t in stamps]
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.mark.parametrize("read", ["candles", "ticks"])
def test_an_epoch_of_year_9999_in_ms_is_refused_quoting_it_not_read_as_1978(read: str, tmp_path: Path) -> None:
    """253402300799000 was read as microseconds (1978-01-11, ts_ms 253402300799)."""
    if read == "candles":
        loaded = read_candles(_candles(tmp_path / "c.csv", ["1398902400000", str(YEAR_9999_MS)]))
    else:
        src = tmp_path / "t.csv"
        src.write_text(f"timestamp,symbol,bid,ask\n1398902400000,EURUSD,1.1,1.1001\n{YEAR_9999_MS},EURUSD,1.1,1.1001\n")
        loaded = read_ticks(src)
    assert loaded.frame["ts_ms"].tolist() == [1_398_902_400_000]
    assert [(r.line, r.reason) for r in loaded.rejects] == [(3, RejectReason.BAD_TS)]
    assert "'253402300799000'" in loaded.rejects[0].detail
    assert "253402300799 " not in loaded.rejects[0].detail + " "


@pytest.mark.parametrize(
    "text",
    [
        "0",
        "-0",
        "-1",
        "-1398902400",
        "4102444800",  # 2100-01-01 in s: the end, excluded (and 1970-02-17 in ms)
        "4102444800000",  # 2100-01-01 in ms: the end, excluded (and 1970-02-17 in us)
        "4102444800000000",  # 2100-01-01 in us
        "4102444800000000000",  # 2100-01-01 in ns
        "31535999.999",  # a ms before 1971, in s
        "31535999999",  # a ms before 1971, in ms (2969 in s)
        "31535999999000",  # a ms before 1971, in us
        "31535999999000000",  # a ms before 1971, in ns
        "31535999",  # a second before 1971, in s
        "20140501",  # YYYYMMDD is no epoch (1970-08-22 in s)
        "20991231",  # nor is the last of the span (below 31536000, 1971-01-01 in s)
        "9.3e18",  # past int64 ns
        "1e308",
        "1e400",
        "inf",
        "-Infinity",
    ],
)
def test_an_epoch_that_is_a_plausible_date_in_no_unit_is_refused_as_written(text: str, tmp_path: Path) -> None:
    loaded = read_candles(_candles(tmp_path / "c.csv", ["1398902400000", text]))
    assert len(loaded.frame) == 1
    (r,) = loaded.rejects
    assert (r.line, r.reason) == (3, RejectReason.BAD_TS)
    assert r.detail == (
        f"timestamp {text!r} is no epoch time (s, ms, us or ns) of 1971 to 2099; write other dates as text (YYYY-MM-DD)"
    )


@pytest.mark.parametrize(
    ("text", "fine", "coarse", "date"),
    [
        (str(YEAR_9999_MS), "us", "ms", "1978-01-11"),  # 9999-12-31 in ms
        ("1e11", "ms", "s", "1973-03-03"),
        ("1e14", "us", "ms", "1973-03-03"),
        ("1e17", "ns", "us", "1973-03-03"),
        ("31536000000", "ms", "s", "1971-01-01"),
        ("253402300799", "ms", "s", "1978-01-11"),  # the last ms before the finer units' span
        ("253402300799999", "us", "ms", "1978-01-11"),
        ("253402300799999000", "ns", "us", "1978-01-11"),
    ],
)
def test_a_date_of_the_1970s_in_a_finer_unit_that_is_a_wire_time_in_a_coarser_one_is_refused_as_ambiguous(
    text: str, fine: str, coarse: str, date: str, tmp_path: Path
) -> None:
    loaded = read_candles(_candles(tmp_path / "c.csv", ["1398902400000", text]))
    assert len(loaded.frame) == 1
    (r,) = loaded.rejects
    assert (r.line, r.reason) == (3, RejectReason.BAD_TS)
    assert r.detail == (
        f"timestamp {text!r} is {date} in {fine} and a date after 2099 in {coarse}: ambiguous; "
        "write it as text (YYYY-MM-DD)"
    )


# the last ms of the span is left to the test of the ends: its us and ns may round past it
_DATE_MS = st.integers(min_value=EPOCH_FIRST_MS, max_value=EPOCH_END_MS - 2)


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("31536000", EPOCH_FIRST_MS),  # 1971-01-01 in s
        ("253402300800", EPOCH_FINE_FIRST_MS),  # the first ms of the finer units' span
        ("253402300800000", EPOCH_FINE_FIRST_MS),
        ("253402300800000000", EPOCH_FINE_FIRST_MS),
        ("315532799", 315_532_799_000),  # 1979-12-31T23:59:59 in s (refused before)
        ("86400000", 86_400_000_000),  # 1972-09-27 in s
        ("4102444799.999", EPOCH_END_MS - 1),
        ("4102444799999", EPOCH_END_MS - 1),
        ("4102444799999000", EPOCH_END_MS - 1),
        ("4102444799999000000", EPOCH_END_MS - 1),
    ],
)
def test_the_first_and_last_ms_of_the_span_are_read_in_every_unit(text: str, ms: int) -> None:
    got, read = epoch_ms(np.array([float(text)]))
    assert read.tolist() == [True] and got.tolist() == [ms]


def test_the_four_units_spans_do_not_overlap_at_any_boundary() -> None:
    """The last number read in one unit is below the first read in the next: 2099 in s
    (~4.1e9) < 1971 in ms (~3.15e10), and so on up to ns; just past each end, nothing is read."""
    spans = []
    for unit, scale in UNITS.items():
        first_ms = EPOCH_FIRST_MS if unit == "s" else EPOCH_FINE_FIRST_MS
        first, last = first_ms / scale, (EPOCH_END_MS - 1) / scale
        got, read = epoch_ms(np.array([first, last]))
        assert read.tolist() == [True, True], unit
        assert got.tolist() == [first_ms, EPOCH_END_MS - 1], unit
        spans.append((first, last))
    for (_, last), (first, _) in zip(spans, spans[1:], strict=False):
        assert last * 7 < first  # a wide gap: 4.1e9 vs 3.15e10 (2.5e11 for ms on) in each step
        gap = np.array([last * 1.001, last * 2, first / 2, first * 0.999])
        assert epoch_ms(gap)[1].tolist() == [False] * 4
    assert EPOCH_FIRST_MS == 31_536_000_000  # 1971-01-01T00:00Z
    assert EPOCH_FINE_FIRST_MS * 1000 == WIRE_MAX_MS + 1  # in the coarser unit: past 9999-12-31
    assert (readers.EPOCH_FINE_FIRST_MS, readers.WIRE_MAX_MS) == (EPOCH_FINE_FIRST_MS, WIRE_MAX_MS)
    assert spans[0][0] == 31_536_000 > 20_991_231  # every YYYYMMDD of 1971..2099 is below it


def test_daily_bars_of_the_1970s_in_epoch_seconds_read_as_the_same_dates_as_text(tmp_path: Path) -> None:
    """Before, 1971..1979 in epoch seconds were refused (the span began in 1980) while the
    same dates written as text were read."""
    days = ["1971-01-01", "1975-06-02", "1979-12-31"]
    secs = [str(int(np.datetime64(d, "s").astype(np.int64))) for d in days]
    as_text = read_candles(_candles(tmp_path / "t.csv", days))
    as_secs = read_candles(_candles(tmp_path / "s.csv", secs))
    assert not as_secs.rejects and not as_text.rejects
    assert as_secs.frame["ts_ms"].tolist() == as_text.frame["ts_ms"].tolist() == [int(s) * 1000 for s in secs]


@settings(max_examples=100)
@given(ms=_DATE_MS, unit=st.sampled_from(sorted(UNITS)), sub=st.integers(0, 999_999))
def test_a_date_from_1971_to_2099_reads_back_in_every_unit(ms: int, unit: str, sub: int) -> None:
    """Written in s, ms, us or ns, a date of the span is read as that date, cut to the ms (as
    a time written as text: before, a finer time was rounded, and 999.5 us past a minute was
    the next minute)."""
    if unit != "s":  # the finer units read from 1978-01-11 on
        ms = max(ms, EPOCH_FINE_FIRST_MS + 1)
    if unit == "s":
        text, want = f"{ms // 1000}.{ms % 1000:03d}", ms
    elif unit == "ms":
        text, want = str(ms), ms
    elif unit == "us":
        text, want = str(ms * 1000 + sub % 1000), ms
    else:
        text, want = str(ms * 1_000_000 + sub), ms
    got, read = epoch_ms(np.array([float(text)]))
    assert read.tolist() == [True]
    # float64 holds ns epochs to ~256 ns: one within that of the next ms may be read as it
    assert int(got[0]) - want in ((0, 1) if unit == "ns" else (0,))
    got, read = epoch_ms(np.array([int(text.split(".")[0])]))  # a column of integers: exact
    assert read.tolist() == [True] and int(got[0]) == (want if unit != "s" else want // 1000 * 1000)


@settings(max_examples=200)
@given(
    v=st.one_of(
        st.floats(allow_nan=True, allow_infinity=True),
        st.integers(min_value=-(10**20), max_value=10**20).map(float),
        st.sampled_from([1e11, 1e14, 1e17, 1e11 - 1, 1e14 - 1, 1e17 - 1, float(YEAR_9999_MS)]),
    )
)
def test_an_epoch_is_read_in_exactly_one_unit_or_not_at_all(v: float) -> None:
    """The units' spans do not overlap, so no number is a date of the span in two units, and a
    number read is one such date: never a silently misread year."""
    ms, read = epoch_ms(np.array([v]))
    fits = []
    scales = list(UNITS.values())
    with np.errstate(over="ignore", invalid="ignore"):
        for k, scale in enumerate(scales):
            m = np.floor(np.round(v * scale, 3))  # cut to the ms (after the us: float products)
            if EPOCH_FIRST_MS <= m < EPOCH_END_MS and not (k and v * scales[k - 1] <= WIRE_MAX_MS):
                fits.append(int(m))
    assert len(fits) <= 1
    assert read.tolist() == [bool(fits)]
    assert ms.tolist() == [fits[0] if fits else 0]


@settings(max_examples=60, deadline=None)
@given(ms=_DATE_MS, sub_ns=st.integers(0, 999_999), unit=st.sampled_from(["s", "us", "ns"]))
@example(ms=1_398_938_459_999, sub_ns=999_999, unit="us").via("a us before 10:01")
@example(ms=1_398_938_459_999, sub_ns=500_000, unit="ns").via("half a ms before 10:01")
def test_a_tick_written_in_epoch_units_falls_in_the_same_ms_and_candle_as_written_as_text(
    ms: int, sub_ns: int, unit: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The same instant written as text with its fraction and as an epoch number in s (with a
    decimal fraction), us or ns is the same ts_ms: text is cut to the ms, and epochs were
    rounded (1398938459999999 us, 10:00:59.999999, was 10:01:00.000: the next minute's candle)."""
    ms = max(ms, EPOCH_FINE_FIRST_MS + 1)
    ns = ms * 1_000_000 + sub_ns
    stamp = np.datetime64(ns, "ns").astype(str).replace("T", " ")  # 9 decimals: the text path cuts
    epoch = {"s": f"{ns // 10**9}.{ns % 10**9:09d}", "us": str(ns // 1000), "ns": str(ns)}[unit]
    tmp = tmp_path_factory.mktemp("epoch")
    got = {}
    for name, cell in (("text", stamp), ("epoch", epoch)):
        src = tmp / f"{name}.csv"
        src.write_text(f"timestamp,symbol,bid,ask\n{cell},EURUSD,1.1,1.1002\n1398902400000,EURUSD,1.1,1.1002\n")
        loaded = read_ticks(src)
        assert not loaded.rejects, (cell, loaded.rejects)
        got[name] = loaded.frame["ts_ms"].tolist()[0]
    assert got["text"] == ms
    # an s epoch with 9 decimals is a float: to ~0.25 us near 2099, so one ms early or late at a ms's edge
    assert got["epoch"] - ms in ((-1, 0, 1) if unit == "s" else (0,))


def test_a_tick_one_us_before_a_minute_in_epoch_us_stays_in_that_minute(tmp_path: Path) -> None:
    """1398938459999999 us is 2014-05-01T10:00:59.999999Z: read, before, as 10:01:00.000 (rounded)."""
    src = tmp_path / "t.csv"
    src.write_text(
        "timestamp,symbol,bid,ask\n1398938459999999,EURUSD,1.1,1.1002\n1398938459999999999,EURUSD,1.1,1.1002\n"
    )
    assert read_ticks(src).frame["ts_ms"].tolist() == [1_398_938_459_999, 1_398_938_459_999]


def test_mixed_units_in_one_file_are_each_read_as_their_date(tmp_path: Path) -> None:
    t = 1_398_902_400_000
    stamps = [str(t // 1000 + 60), str(t + 120_000), str((t + 180_000) * 1000), str((t + 240_000) * 1_000_000)]
    loaded = read_candles(_candles(tmp_path / "c.csv", stamps))
    assert loaded.rejects == []
    assert loaded.frame["ts_ms"].tolist() == [t + 60_000, t + 120_000, t + 180_000, t + 240_000]


# -- prices past the largest double --------------------------------------------------------------


def test_bid_and_ask_bars_of_1e308_average_to_1e308_without_overflow(tmp_path: Path) -> None:
    """The mid of bid and ask 1e308 overflowed to inf (numpy's RuntimeWarning on standard error,
    an error under this suite's filterwarnings) and the row was refused as non_finite 'inf'."""
    src = tmp_path / "eurusd_h1.csv"
    sides = "bid_open,bid_high,bid_low,bid_close,ask_open,ask_high,ask_low,ask_close"
    src.write_text(f"ts_ms,{sides}\n1398902400000,{','.join(['1e308'] * 8)}\n1398902460000,{','.join(['1.1'] * 8)}\n")
    loaded = read_candles(src)
    assert loaded.frame["close"].tolist() == [1e308, 1.1]
    assert loaded.rejects == []


@settings(max_examples=100)
@given(b=st.floats(allow_nan=False, allow_infinity=False), a=st.floats(allow_nan=False, allow_infinity=False))
def test_the_mid_of_two_finite_prices_is_finite_and_the_exact_mean_where_that_is_finite(b: float, a: float) -> None:
    from forex_diffusion.ingest.readers import _mean

    mid = _mean(np.array([b]), np.array([a]))[0]
    assert np.isfinite(mid)
    with np.errstate(over="ignore"):
        plain = (b + a) / 2.0
    if np.isfinite(plain):
        assert mid == plain


@pytest.mark.parametrize("text", ["1e400", "-1e400", "1E+999"])
def test_a_price_past_the_largest_double_is_out_of_range_as_written_not_inf(text: str, tmp_path: Path) -> None:
    """'1e400' parsed to inf and was refused as non_finite 'inf', a value the file does not hold."""
    src = tmp_path / "c.csv"
    src.write_text(f"timestamp,symbol,open,high,low,close\n1398902400000,EURUSD,1.1,{text},1.0,1.15\n")
    loaded = read_candles(src)
    (r,) = loaded.rejects
    assert r.reason is RejectReason.OUT_OF_RANGE
    assert f"high={text!r}" in r.detail


def test_a_candle_volume_of_nan_is_kept_for_the_candle_check_to_refuse_not_read_as_zero(tmp_path: Path) -> None:
    """A volume 'nan' or 'inf' was read as 0 and the candle admitted; the stream's decoder
    refuses it (non_finite)."""
    from forex_diffusion.offline import check_candle_rows

    src = _candles(tmp_path / "c.csv", ["1398902400000", "1398902460000"])
    src.write_text(src.read_text().replace(",1\n", ",nan\n", 1))
    kept, refused = check_candle_rows(read_candles(src).frame)
    assert [(r.line, r.reason) for r in refused] == [(2, RejectReason.NON_FINITE)]
    assert kept["volume"].tolist() == [1.0]


def test_the_price_scale_check_of_closes_of_1e308_names_them_without_overflow() -> None:
    """The median of two closes of 1e308 overflowed: numpy's RuntimeWarning on standard error
    (``forexd train``/``backtest``) and 'a median close of inf'."""
    import pandas as pd

    from forex_diffusion.errors import DataFormatError
    from forex_diffusion.ingest.readers import check_price_scale

    frame = pd.DataFrame({"close": [1e308, 1e308, 1.1, 1e308]})
    with pytest.raises(DataFormatError, match=r"a median close of 1e\+308 is not a EURUSD price"):
        check_price_scale(frame, "EURUSD", "eurusd.csv")
