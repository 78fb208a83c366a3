"""Small hostile files must cost little: a gzip that expands past ``GZIP_RATIO_MAX`` times its
size is refused while it is decompressed, runs of blank lines cost no object per line, and a
command's read of a file unzips it once.

Before: ``_open_text`` ran ``gzip.decompress`` on the whole file (4.3 MB of gzip holding 1 GB
of blank lines: ``forexd candles`` killed at 120 s, 8.5 GB), the line splitter held a list
entry per blank line (40 M of them, 580 MB), and ``read_candle_series``, ``sniff_kind`` and
``file_timeframes`` each unzipped the whole file again. The caps are lowered here so that
nothing allocates more than a few MB.
"""

from __future__ import annotations

import gzip
import tracemalloc
from pathlib import Path

import pytest
from typer.testing import CliRunner

from forex_diffusion.errors import DataFormatError, RejectReason
from forex_diffusion.ingest import readers
from forex_diffusion.ingest.readers import read_candle_series, read_candles, read_ticks, sniff_kind
from streams.cli import app

RATIO = 100  # readers.GZIP_RATIO_MAX (literal here so the tests run, and fail, on the reader before it)
CHUNK = 2**20  # readers._CHUNK
LEAN = Path(__file__).resolve().parents[2] / "data" / "lean"
BOMB = r"expands to more than [\d,]+ bytes, over 100× its compressed size .*a decompression bomb or not a data file"


@pytest.fixture
def low_floor(monkeypatch: pytest.MonkeyPatch) -> None:
    """The floor under the ratio cap lowered to 64 KiB (16 MiB otherwise): a bomb of a few MB trips it."""
    monkeypatch.setattr(readers, "GZIP_FLOOR_BYTES", 64 * 1024, raising=False)


def bomb(path: Path, filler: bytes = b"\n", size: int = 4 * 2**20) -> Path:
    """A tick header and ``size`` bytes of ``filler`` (about 4 KB of gzip for 4 MB)."""
    path.write_bytes(gzip.compress(b"ts_ms,bid,ask\n" + filler * (size // len(filler)) + b"\n", compresslevel=9))
    return path


@pytest.mark.parametrize("filler", [b"\n", b"\x00", b"x,1,2\n"], ids=["blank lines", "one zero line", "bad rows"])
def test_a_gzip_bomb_is_refused_while_it_expands(filler: bytes, tmp_path: Path, low_floor: None) -> None:
    path = bomb(tmp_path / "eurusd.csv.gz", filler)
    assert path.stat().st_size * RATIO < 4 * 2**20  # past the cap: > 100×
    # refused, not read: how much is unzipped before the refusal is the next test's (bytes, not seconds)
    for read in (read_ticks, read_candles, read_candle_series):
        with pytest.raises(DataFormatError, match=BOMB):
            read(path, symbol="EURUSD")


def test_the_bomb_is_refused_before_it_is_all_unzipped(
    tmp_path: Path, low_floor: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At most the cap and one chunk are held: 64 MB of zeros (64 KB of gzip) is stopped at ~7 MB."""
    path = bomb(tmp_path / "eurusd.csv.gz", b"\x00", 64 * 2**20)
    cap = RATIO * path.stat().st_size
    assert cap < 16 * 2**20
    tracemalloc.start()
    try:
        with pytest.raises(DataFormatError, match=BOMB):
            read_ticks(path, symbol="EURUSD")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < cap + 4 * CHUNK, f"peak {peak:,} bytes for a cap of {cap:,}"


def test_the_command_says_so_in_one_line_exit_65(tmp_path: Path, low_floor: None) -> None:
    path = bomb(tmp_path / "eurusd.csv.gz")
    res = CliRunner().invoke(app, ["candles", str(path), "--symbol", "EURUSD", "-o", str(tmp_path / "o.csv")])
    assert res.exit_code == 65, res.output
    assert "unzip it yourself if it is genuine" in res.output and "Traceback" not in res.output


@pytest.mark.parametrize(
    "name", ["lean_fxcm_eurusd_m1_2014-05-01_15.csv.gz", "lean_oanda_d1_4pairs.csv.gz"], ids=["m1", "d1"]
)
def test_a_genuine_gzip_reads_with_no_floor(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The bundled files expand 3.5× to 6.1×: the ratio alone (floor 0) never refuses them."""
    path = LEAN / name
    want = read_candles(path)
    monkeypatch.setattr(readers, "GZIP_FLOOR_BYTES", 0, raising=False)
    got = read_candles(path)
    assert len(got.frame) > 1000 and got.frame.equals(want.frame) and got.rejects == want.rejects


def test_a_small_repetitive_gzip_is_under_the_floor(tmp_path: Path) -> None:
    """A small file may compress far more than 100× (the same row 100,000 times): under 16 MiB it is read."""
    row = b"1398902400292,1.38676,1.38686\n"
    path = tmp_path / "eurusd.csv.gz"
    path.write_bytes(gzip.compress(b"ts_ms,bid,ask\n" + row * 100_000))
    assert path.stat().st_size * RATIO < len(row) * 100_000
    assert len(read_ticks(path).frame) == 100_000


# -- blank lines ----------------------------------------------------------------------------------

CANDLE_HEAD = "ts_ms,open,high,low,close,volume"
GOOD = "1451606400000,1.1,1.2,1.0,1.1,5"
BAD = "1451606460000,1.1,x,1.0,1.1,5"  # high is not a number
SHORT = "1451606520000,1.1"  # fields missing


@pytest.mark.parametrize("end", ["\n", "\r\n", "\r"], ids=["LF", "CRLF", "CR"])
@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
def test_reject_line_numbers_count_runs_of_blank_lines(end: str, gz: bool, tmp_path: Path) -> None:
    lines = [
        CANDLE_HEAD,
        "",
        "",
        GOOD,
        BAD,
        *[""] * 1000,
        SHORT,
        "",
        "  ",
        BAD,
        "",
        "",
        "",
        GOOD.replace("00000", "80000"),
    ]
    data = (end.join(lines) + end + end).encode()
    path = tmp_path / "eurusd.csv"
    path.write_bytes(gzip.compress(data) if gz else data)
    lf = read_candles(path, symbol="EURUSD")
    assert lf.frame.line.tolist() == [4, 1013]
    assert [(r.line, r.reason) for r in lf.rejects] == [
        (5, RejectReason.MALFORMED),
        (1006, RejectReason.MALFORMED),
        (1009, RejectReason.MALFORMED),
    ]


def test_mixed_line_ends_around_blank_lines_keep_their_numbers(tmp_path: Path) -> None:
    """LF then CR is two ends (a blank line between), CR then LF one: each as pandas' C parser counts."""
    data = f"{CANDLE_HEAD}\r\n\r\n{GOOD}\n\r{BAD}\r\r\n\n{SHORT}\r\n{BAD}\n".encode()
    lf = read_candles(write_to(tmp_path, data), symbol="EURUSD")
    assert lf.frame.line.tolist() == [3]
    assert [r.line for r in lf.rejects] == [5, 8, 9]


def write_to(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "eurusd.csv"
    path.write_bytes(data)
    return path


def test_a_million_blank_lines_cost_no_list_of_them(tmp_path: Path) -> None:
    """The line splitter held one list entry per line (8 bytes each, and a Python loop over them)."""
    n = 3_000_000
    path = write_to(tmp_path, f"{CANDLE_HEAD}\n{GOOD}\n".encode() + b"\n" * n + f"{BAD}\n".encode())
    tracemalloc.start()
    try:
        lf = read_candles(path, symbol="EURUSD")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert [(r.line, r.reason) for r in lf.rejects] == [(n + 3, RejectReason.MALFORMED)]
    assert peak < 4 * n, f"peak {peak:,} bytes for a file of {n:,} blank lines"


# -- one read per command ------------------------------------------------------------------------


def test_a_candle_series_is_unzipped_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """read_candle_series read the file, then file_timeframes read it again; sniff_kind read all of it
    for its header."""
    text = "symbol,timeframe,open_time,open,high,low,close,volume\n"
    text += "".join(f"EURUSD,1m,{1451606400000 + 60_000 * i},1.1,1.2,1.0,1.1,5\n" for i in range(50))
    path = tmp_path / "eurusd.csv.gz"
    path.write_bytes(gzip.compress(text.encode()))
    whole: list[object] = []
    raw_bytes = readers._raw_bytes

    def counting(p: Path, prefix: int | None = None) -> bytes | bytearray:
        if prefix is None:
            whole.append(p)
        return raw_bytes(p, prefix)

    monkeypatch.setattr(readers, "_raw_bytes", counting)
    assert sniff_kind(path) == "candles" and not whole
    assert len(read_candle_series(path, timeframe="1m").frame) == 50
    assert len(whole) == 1


def test_the_constants_are_the_documented_ones() -> None:
    assert (readers.GZIP_RATIO_MAX, readers.GZIP_FLOOR_BYTES, readers._CHUNK) == (RATIO, 16 * 2**20, CHUNK)
