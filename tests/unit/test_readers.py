"""File readers: every documented layout, and bad rows refused without stopping."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from forex_diffusion.errors import DataFormatError, RejectReason
from forex_diffusion.ingest.readers import read_candles, read_ticks, sniff_kind, symbol_from_path

from ..realdata import DATA, require


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_bundled_sample_reads_with_symbol_from_file_name(sample_ticks: Path) -> None:
    lf = read_ticks(sample_ticks, symbol="EURUSD")
    assert lf.layout == "ts_ms" and not lf.rejects and len(lf.frame) == 111_408
    assert lf.frame.ts_ms.is_monotonic_increasing
    assert symbol_from_path("lean_oanda_eurusd_ticks_2014-05-01_15.csv.gz") == "EURUSD"
    assert symbol_from_path("DAT_ASCII_USDJPY_T_201301.csv") == "USDJPY"


def test_generic_tick_layout_with_iso_and_epoch_times(tmp_path: Path) -> None:
    p = write(
        tmp_path,
        "t.csv",
        "timestamp,symbol,bid,ask,volume\n"
        "2014-05-01T00:00:00.292Z,EURUSD,1.38676,1.38686,1\n"
        "1398902400920,EUR/USD,1.38676,1.38687,2\n",
    )
    lf = read_ticks(p)
    assert lf.frame.ts_ms.tolist() == [1398902400292, 1398902400920]
    # canonical in the reader (replay keys a record by it: the worker refuses an alias key)
    assert lf.frame.symbol.tolist() == ["EURUSD", "EURUSD"]
    assert lf.frame.volume.tolist() == [1.0, 2.0]


def test_dukascopy_and_histdata_tick_layouts(tmp_path: Path) -> None:
    d = write(
        tmp_path,
        "EURUSD_Ticks.csv",
        "Gmt time,Ask,Bid,AskVolume,BidVolume\n01.05.2014 00:00:00.292,1.38686,1.38676,1.5,2.25\n",
    )
    lf = read_ticks(d)
    assert (lf.layout, lf.frame.ts_ms[0], lf.frame.bid[0], lf.frame.ask[0]) == (
        "dukascopy",
        1398902400292,
        1.38676,
        1.38686,
    )
    h = write(tmp_path, "DAT_ASCII_EURUSD_T_201405.csv", "20140501 000000292,1.38676,1.38686,0\n")
    lf = read_ticks(h)
    # HistData times are New York local: 00:00 EDT = 04:00 UTC
    assert lf.layout == "histdata" and lf.frame.ts_ms[0] == 1398902400292 + 4 * 3_600_000


def test_bad_rows_are_refused_with_line_and_reason_the_rest_is_read(tmp_path: Path) -> None:
    p = write(
        tmp_path,
        "eurusd.csv",
        "ts_ms,bid,ask\n"
        "1398902400292,1.38676,1.38686\n"
        "1398902400300,abc,1.38686\n"
        "1398902400400,nan,1.38686\n"
        "1398902400500\n"
        "1398902400600,1.38677,1.38687\n",
    )
    lf = read_ticks(p)
    assert [(r.line, r.reason) for r in lf.rejects] == [(3, RejectReason.MALFORMED), (5, RejectReason.MALFORMED)]
    assert lf.frame.line.tolist() == [2, 4, 6]  # the literal nan stays for the validator (non_finite)


def test_gzip_and_unknown_layout(tmp_path: Path) -> None:
    p = tmp_path / "eurusd.csv.gz"
    p.write_bytes(gzip.compress(b"ts_ms,bid,ask\n1398902400292,1.38676,1.38686\n"))
    assert len(read_ticks(p).frame) == 1
    with pytest.raises(DataFormatError):
        read_ticks(write(tmp_path, "eurusd.txt", "hello,world\n1,2\n"))
    with pytest.raises(DataFormatError):
        read_ticks(write(tmp_path, "nosymbol.csv", "ts_ms,bid,ask\n1398902400292,1.1,1.2\n"))


def test_candle_layouts(tmp_path: Path) -> None:
    generic = write(
        tmp_path,
        "g.csv",
        "timestamp,symbol,open,high,low,close,volume\n2017-04-19 09:00:00,EURUSD,1.0716,1.0722,1.07083,1.07219,1413\n",
    )
    histdata = write(
        tmp_path, "DAT_ASCII_EURUSD_M1_201701.csv", "20170102 170000;1.051550;1.051970;1.051550;1.051900;0\n"
    )
    mt = write(tmp_path, "EURUSD60.csv", "2017.04.19,09:00,1.0716,1.0722,1.07083,1.07219,1413\n")
    duka = write(
        tmp_path,
        "EURUSD_Candlestick_1_Hour_BID.csv",
        "Gmt time,Open,High,Low,Close,Volume\n19.04.2017 09:00:00.000,1.0716,1.0722,1.07083,1.07219,1413.5\n",
    )
    expect = 1492592400000
    for path, layout in ((generic, "generic"), (mt, "metatrader"), (duka, "dukascopy")):
        lf = read_candles(path)
        assert lf.layout == layout and lf.frame.ts_ms[0] == expect and lf.frame.close[0] == 1.07219
        assert sniff_kind(path) == "candles"
    lf = read_candles(histdata)
    assert lf.layout == "histdata" and lf.frame.ts_ms[0] == 1483394400000  # 17:00 EST = 22:00 UTC


def test_shared_candle_files_read_both_sides() -> None:
    path = DATA / "lean_oanda_eurusd_h1_2007_2017.csv.gz"
    require(path.name)  # a bundled file: absent, the test fails
    bid = read_candles(path, price="bid").frame
    ask = read_candles(path, price="ask").frame
    mid = read_candles(path).frame
    assert len(bid) == 68_271 and (ask.close > bid.close).mean() > 0.99
    assert ((mid.close - (bid.close + ask.close) / 2).abs() < 1e-12).all()
    daily = read_candles(DATA / "lean_oanda_d1_4pairs.csv.gz", price="bid").frame
    assert set(daily.symbol) == {"EURGBP", "EURUSD", "GBPUSD", "NZDUSD"}


@pytest.mark.shared_data
def test_backtesting_package_file_reads_with_its_tick_volumes() -> None:
    bt = read_candles(require("backtesting-0.6.6_EURUSD_h1.csv"), symbol="EURUSD").frame
    assert len(bt) == 5000 and bt.volume.iloc[0] == 1413


def test_reads_back_what_forexd_candles_writes(sample_ticks: Path, tmp_path: Path) -> None:
    from forex_diffusion.offline import aggregate_ticks_file, write_candles_csv

    run = aggregate_ticks_file(sample_ticks, timeframes=["1m"])
    out = tmp_path / "c.csv"
    with out.open("w") as fh:
        write_candles_csv(run.candles, fh)
    lf = read_candles(out)
    assert lf.layout == "forexd" and len(lf.frame) == len(run.candles)
    assert lf.frame.ts_ms.tolist() == [c.open_ms for c in run.candles]
    assert lf.frame.close.tolist() == [c.close for c in run.candles]


@pytest.mark.parametrize(
    ("text", "missing"),
    [
        ("ts_ms,x\n1,2\n", "no bid and no ask column"),
        ("timestamp,symbol,x\n2017-01-01T00:00:00Z,EURUSD,2\n", "no bid and no ask column"),
        ("ts_ms,bid\n1,1.05\n", "no ask column"),
        ("20170101 000000000,1.05\n", "no ask column"),  # a HistData tick line without its ask
    ],
)
def test_a_tick_file_without_its_price_columns_is_a_data_format_error(text: str, missing: str, tmp_path: Path) -> None:
    """A tick header without ``bid``/``ask`` ended ``forexd candles`` in a ``KeyError: 'bid'``
    traceback (found by the command line's hostile sweep)."""
    f = tmp_path / "ticks.csv"
    f.write_text(text)
    with pytest.raises(DataFormatError, match=missing):
        read_ticks(f)


def test_an_upper_case_ts_ms_header_is_read_as_the_lower_case_one(tmp_path: Path) -> None:
    """``TS_MS,BID,ASK`` passed the layout check (case-insensitive) and then failed with
    ``KeyError: 'ts_ms'``, a traceback from ``forexd candles`` (found by the hostile pass)."""
    upper, lower = tmp_path / "u.csv", tmp_path / "l.csv"
    upper.write_text("TS_MS,BID,ASK\n1398902400292,1.38676,1.38686\n")
    lower.write_text("ts_ms,bid,ask\n1398902400292,1.38676,1.38686\n")
    assert read_ticks(upper, symbol="EURUSD").frame.equals(read_ticks(lower, symbol="EURUSD").frame)
    candles = "TS_MS,symbol,open,high,low,close\n1451606400000,EURUSD,1.1,1.2,1.0,1.1\n"
    (tmp_path / "c.csv").write_text(candles)
    assert len(read_candles(tmp_path / "c.csv").frame) == 1
