"""The readers' epoch unit guess (s, ms, us, ns) and the numbers they refuse, at the edges.

An epoch number is read in the one unit in which it is a date from 1980 to 2099
(``readers.EPOCH_FIRST_MS`` .. ``EPOCH_END_MS``), or refused as ``bad_ts`` quoting the text as
written. Before, the unit came from the magnitude alone (s below 1e11, ms below 1e14, us below
1e17): 253402300799000, 9999-12-31 in ms, was read as microseconds, 1978-01-11, and fed to the
indicators out of order.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from forex_diffusion.errors import RejectReason
from forex_diffusion.ingest.readers import EPOCH_END_MS, EPOCH_FIRST_MS, epoch_ms, read_candles, read_ticks

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
        "1e11",  # the old s/ms boundary: 1973 in ms
        "1e14",  # the old ms/us boundary: 1973 in us
        "1e17",  # the old us/ns boundary: 1973 in ns
        "4102444800000",  # 2100-01-01 in ms: the end, excluded
        "315532799999",  # a ms before 1980
        "20140501",  # YYYYMMDD is no epoch (1970-08-22 in s)
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
    assert repr(text) in r.detail and "1980 to 2099" in r.detail


# the last ms of the span is left to the test of the ends: its us and ns may round past it
_DATE_MS = st.integers(min_value=EPOCH_FIRST_MS, max_value=EPOCH_END_MS - 2)


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("315532800", EPOCH_FIRST_MS),
        ("315532800000", EPOCH_FIRST_MS),
        ("315532800000000", EPOCH_FIRST_MS),
        ("315532800000000000", EPOCH_FIRST_MS),
        ("4102444799.999", EPOCH_END_MS - 1),
        ("4102444799999", EPOCH_END_MS - 1),
        ("4102444799999000", EPOCH_END_MS - 1),
        ("4102444799999000000", EPOCH_END_MS - 1),
    ],
)
def test_the_first_and_last_ms_of_the_span_are_read_in_every_unit(text: str, ms: int) -> None:
    got, read = epoch_ms(np.array([float(text)]))
    assert read.tolist() == [True] and got.tolist() == [ms]


@settings(max_examples=100)
@given(ms=_DATE_MS, unit=st.sampled_from(sorted(UNITS)), sub=st.integers(0, 999_999))
def test_a_date_from_1980_to_2099_reads_back_in_every_unit(ms: int, unit: str, sub: int) -> None:
    """Written in s, ms, us or ns, a date of the span is read as that date (to the ms)."""
    if unit == "s":
        text, want = f"{ms // 1000}.{ms % 1000:03d}", ms
    elif unit == "ms":
        text, want = str(ms), ms
    elif unit == "us":
        text, want = str(ms * 1000 + sub % 1000), ms + (1 if sub % 1000 >= 500 else 0)
    else:
        text, want = str(ms * 1_000_000 + sub), ms + (1 if sub >= 500_000 else 0)
    got, read = epoch_ms(np.array([float(text)]))
    assert read.tolist() == [True]
    # float64 holds ns epochs to ~256 ns: a value within that of a half ms may round either way
    assert abs(int(got[0]) - want) <= (1 if unit in ("us", "ns") else 0)


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
    with np.errstate(over="ignore", invalid="ignore"):
        for scale in UNITS.values():
            m = np.round(v * scale)
            if EPOCH_FIRST_MS <= m < EPOCH_END_MS:
                fits.append(int(m))
    assert len(fits) <= 1
    assert read.tolist() == [bool(fits)]
    assert ms.tolist() == [fits[0] if fits else 0]


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
