"""``forexd indicators`` and ``forexd candles`` just outside the bad-input catalogue: epoch
units at their edges, candles out of time order, files where every row is refused, prices
past the largest double; then a property over generated candle files (units mixed, BOM,
CRLF/CR, blank lines, quoted fields, thousands separators, odd numbers, duplicated and
back-in-time rows, several symbols) against an oracle built from the stream's own code:
the wire's ``decode_candle``, the candle agent's ``CandleGate``, its forecaster's rule for a
candle that does not open after the last, and ``IndicatorBank.update``.

Each regression test says what the command did before its fix.
"""

from __future__ import annotations

import io
import math
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from forex_diffusion.domain import Candle, Tick
from forex_diffusion.errors import RejectReason, ValidationError
from forex_diffusion.indicators import BankSpec, IndicatorBank
from forex_diffusion.ingest.candle_gate import CandleGate, CandleGateConfig
from forex_diffusion.ingest.readers import EPOCH_FINE_FIRST_MS, EPOCH_FIRST_MS
from forex_diffusion.instruments import InstrumentRegistry
from forex_diffusion.offline import TS_MAX, TS_MIN, check_candle_times, format_ms, gate_for_spacing
from forex_diffusion.wire import decode_candle, encode_unchecked
from streams.cli import app

from .test_cli_errors import assert_one_line, runner

HEADER = "timestamp,symbol,open,high,low,close,volume"
T0 = 1_398_902_400_000  # 2014-05-01T00:00:00Z
YEAR_9999_MS = 253_402_300_799_000


def rows_file(path: Path, rows: list[str], header: str = HEADER) -> Path:
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def bar(ts: int | str, close: float = 1.15, symbol: str = "EURUSD") -> str:
    return f"{ts},{symbol},1.1,1.2,1.0,{close},1"


def indicators(src: Path, tmp_path: Path, *extra: str, spec: str = "sma_2") -> tuple[int, str, Path, Path]:
    out, rej = tmp_path / "o.csv", tmp_path / "r.csv"
    res = runner.invoke(app, ["indicators", str(src), "--spec", spec, "-o", str(out), "--rejects", str(rej), *extra])
    return res.exit_code, res.stderr, out, rej


# -- 1. an epoch of a far-future date in ms is no 1978 date in us ---------------------------------


def test_indicators_refuse_a_year_9999_ms_epoch_as_bad_ts_quoting_it(tmp_path: Path) -> None:
    """253402300799000 (9999-12-31 in ms) was read as microseconds, 1978-01-11: written out as
    ts_ms 253402300799, between two 2014 candles, and fed to the indicators (rejected=0)."""
    src = rows_file(tmp_path / "c.csv", [bar(T0), bar(T0 + 60_000), bar(YEAR_9999_MS), bar(T0 + 120_000)])
    code, err, out, rej = indicators(src, tmp_path)
    assert code == 0, err
    assert pd.read_csv(out)["ts_ms"].tolist() == [T0, T0 + 60_000, T0 + 120_000]
    refused = pd.read_csv(rej)
    assert refused[["line", "reason"]].values.tolist() == [[4, "bad_ts"]]
    assert "'253402300799000'" in refused["detail"][0]
    assert "rejected=1 (bad_ts=1)" in err


def test_candles_reject_a_year_9999_ms_tick_quoting_the_value_as_written(tmp_path: Path) -> None:
    """forexd candles refused the tick, but as ``ts_ms=253402300799`` (the value misread as us)."""
    src = tmp_path / "eurusd_ticks.csv"
    src.write_text(f"ts_ms,bid,ask\n{T0},1.1,1.1001\n{YEAR_9999_MS},1.1,1.1001\n{T0 + 1000},1.1,1.1001\n")
    rej = tmp_path / "r.csv"
    res = runner.invoke(app, ["candles", str(src), "-o", str(tmp_path / "o.csv"), "--rejects", str(rej)])
    assert res.exit_code == 0, res.stderr
    (line, reason, detail) = pd.read_csv(rej).values.tolist()[0]
    assert (line, reason) == (3, "bad_ts")
    assert "'253402300799000'" in detail and "ts_ms=253402300799 " not in detail


# -- 2. candles out of time order are refused as the stream refuses them ----------------------


def test_indicators_refuse_duplicate_and_back_in_time_candles_and_compute_nothing_from_them(tmp_path: Path) -> None:
    """A candle repeating an open time, or opening before the last one, was written out and
    fed to the indicator bank (which ignored it, repeating its previous values): rejected=0."""
    rows = [bar(T0, 1.10), bar(T0 + 120_000, 1.12), bar(T0 + 60_000, 1.11), bar(T0 + 120_000, 1.19)]
    rows += [bar(T0 + 180_000, 1.14)]
    code, err, out, rej = indicators(rows_file(tmp_path / "c.csv", rows), tmp_path)
    assert code == 0, err
    got = pd.read_csv(out)
    assert got["ts_ms"].tolist() == [T0, T0 + 120_000, T0 + 180_000]
    assert got["sma_2"].tolist()[1:] == pytest.approx([1.11, 1.13])  # from the admitted closes only
    refused = pd.read_csv(rej)
    assert refused[["line", "reason"]].values.tolist() == [[4, "late"], [5, "duplicate"]]
    assert "rejected=2 (duplicate=1, late=1)" in err


def test_each_symbol_of_a_file_is_its_own_series_for_the_time_order(tmp_path: Path) -> None:
    rows = [bar(T0 + 60_000), bar(T0, symbol="GBPUSD", close=1.15), bar(T0 + 120_000), bar(T0, symbol="GBPUSD")]
    code, err, out, rej = indicators(rows_file(tmp_path / "c.csv", rows), tmp_path)
    assert code == 0, err
    assert pd.read_csv(out)["symbol"].tolist() == ["EURUSD", "GBPUSD", "EURUSD"]
    assert pd.read_csv(rej)[["line", "reason"]].values.tolist() == [[5, "duplicate"]]


def test_a_candle_closing_in_the_future_is_future_ts_as_the_candle_gate_says(tmp_path: Path) -> None:
    """A bar of 2099 (the clock has not reached it) went into the indicators."""
    future = EPOCH_FIRST_MS + (4_102_444_800_000 - EPOCH_FIRST_MS) - 60_000  # 2099-12-31T23:59Z
    code, err, out, rej = indicators(rows_file(tmp_path / "c.csv", [bar(T0), bar(future)]), tmp_path)
    assert code == 0, err
    assert pd.read_csv(out)["ts_ms"].tolist() == [T0]
    assert pd.read_csv(rej)[["line", "reason"]].values.tolist() == [[3, "future_ts"]]


def test_candles_past_a_gap_of_over_a_week_are_held_until_confirmed_as_the_gate_holds_them() -> None:
    """The gate's rule on a file: after a gap past ``max_ahead_ms``, the first ``confirm - 1``
    candles are future_ts and the one that confirms them is admitted."""
    week = 7 * 86_400_000
    ts = [T0, T0 + 60_000, T0 + week + 120_000, T0 + week + 180_000, T0 + week + 240_000, T0 + week + 300_000]
    frame = pd.DataFrame({"line": range(2, 8), "ts_ms": ts, "symbol": ["EURUSD"] * 6, "close": [1.1] * 6})
    kept, refused = check_candle_times(frame, gate=CandleGateConfig(confirm=3))
    assert kept["ts_ms"].tolist() == [T0, T0 + 60_000, T0 + week + 240_000, T0 + week + 300_000]
    assert [(r.line, r.reason) for r in refused] == [(4, RejectReason.FUTURE_TS), (5, RejectReason.FUTURE_TS)]


def test_monthly_bars_are_not_far_ahead_of_each_other(tmp_path: Path) -> None:
    """A guard on the gate: bars a month apart (no stream timeframe) would each be over a week
    past the one before and refused as future_ts; the gate widens to three of their spacings."""
    day = 86_400_000
    opens = [T0 + k * 30 * day for k in range(12)] + [T0 + 14 * 30 * day]  # a month missing too
    code, err, out, rej = indicators(rows_file(tmp_path / "c.csv", [bar(t) for t in opens]), tmp_path)
    assert code == 0, err
    assert pd.read_csv(out)["ts_ms"].tolist() == opens
    assert pd.read_csv(rej).empty


def test_the_candle_time_bounds_are_the_wires() -> None:
    from forex_diffusion import wire

    assert (TS_MIN, TS_MAX) == (wire.TS_MIN, wire.TS_MAX)


def test_a_date_before_1970_written_as_text_is_bad_ts_as_the_wire_says(tmp_path: Path) -> None:
    """'1969-12-31 23:59' was read as ts_ms -60000 and computed from (the wire refuses it)."""
    rows = ["1969-12-31 23:59,EURUSD,1.1,1.2,1.0,1.15,1", bar(T0)]
    code, err, out, rej = indicators(rows_file(tmp_path / "c.csv", rows), tmp_path)
    assert code == 0, err
    assert pd.read_csv(out)["ts_ms"].tolist() == [T0]
    assert pd.read_csv(rej)[["line", "reason"]].values.tolist() == [[2, "bad_ts"]]


# -- 3. every row refused: exit 65, as train and backtest ---------------------------------------


def test_indicators_exit_65_when_every_candle_is_refused_and_still_list_them(tmp_path: Path) -> None:
    """Every row refused gave exit 0, an output of the header alone and 'candles=0'."""
    rows = ["1398902400000,EURUSD,-1,1.2,1.0,1.15,1", "1398902460000,EURUSD,nan,1.2,1.0,1.15,1"]
    code, err, out, rej = indicators(rows_file(tmp_path / "c.csv", rows), tmp_path)
    assert code == 65
    assert_one_line(err, "every candle (2)", "non_finite=1, non_positive=1", "line 2")
    assert pd.read_csv(rej)["line"].tolist() == [2, 3]
    assert not out.exists()


def test_candles_exit_65_when_every_tick_is_refused_and_still_list_them(tmp_path: Path) -> None:
    """Every tick refused gave exit 0 and a candle file of the header alone."""
    src = tmp_path / "eurusd_ticks.csv"
    src.write_text(f"ts_ms,bid,ask\n{T0},-1,1.1\n{T0 + 1000},nan,1.1\n")
    out, rej = tmp_path / "o.csv", tmp_path / "r.csv"
    res = runner.invoke(app, ["candles", str(src), "-o", str(out), "--rejects", str(rej)])
    assert res.exit_code == 65
    assert_one_line(res.stderr, "every tick (2)", "non_finite=1, non_positive=1")
    assert pd.read_csv(rej)["line"].tolist() == [2, 3]
    assert not out.exists()


# -- 4. 1e308 -----------------------------------------------------------------------------------


def test_bid_ask_bars_of_1e308_are_out_of_range_with_no_warning_on_standard_error(tmp_path: Path) -> None:
    """numpy printed 'RuntimeWarning: overflow encountered in add' and the row was refused as
    non_finite 'open=inf'. Run as a process: the warning went to its standard error."""
    src = tmp_path / "eurusd_h1.csv"
    sides = "bid_open,bid_high,bid_low,bid_close,ask_open,ask_high,ask_low,ask_close"
    src.write_text(f"ts_ms,{sides}\n{T0},{','.join(['1e308'] * 8)}\n{T0 + 3_600_000},{','.join(['1.1'] * 8)}\n")
    rej = tmp_path / "r.csv"
    cmd = [sys.executable, "-m", "streams.cli", "indicators", str(src), "--spec", "sma_2"]
    res = subprocess.run(
        [*cmd, "-o", str(tmp_path / "o.csv"), "--rejects", str(rej)], capture_output=True, text=True, timeout=240
    )
    assert res.returncode == 0, res.stderr
    assert "Warning" not in res.stderr and "overflow" not in res.stderr, res.stderr
    (line, reason, detail) = pd.read_csv(rej).values.tolist()[0]
    assert (line, reason) == (2, "out_of_range") and "inf" not in detail


# -- 5. whole files the reader refuses: one line, exit 65 -----------------------------------------


@pytest.mark.parametrize(
    ("text", "says"),
    [
        (HEADER + "\n", "no rows"),
        ("\ufeff" + HEADER + "\r\n\r\n", "no rows"),
        ("timestamp,symbol,open,high,low,close,CLOSE\n" + bar(T0) + "\n", "twice"),
        (",".join(f"c{i}" for i in range(300)) + ",timestamp\n", "fields"),
        ('"timestamp","symbol","open","high","low","close"\n', "quoted"),
    ],
)
def test_a_file_with_no_readable_rows_is_one_line_65(text: str, says: str, tmp_path: Path) -> None:
    src = tmp_path / "c.csv"
    src.write_text(text)
    code, err, _, _ = indicators(src, tmp_path)
    assert code == 65
    assert_one_line(err, says)


# -- 6. the property: generated files against the stream's own code --------------------------------

SPEC = "sma_3,ema_3,rsi_3,atr_3,bb_3,stoch_3_2,adx_3,macd_2_4_2"
MINUTE = 60_000
REG = InstrumentRegistry()


@dataclass
class Row:
    """One generated row: its cells, and what the stream would make of it (``ok``: every field
    read as the generator meant; ``ts``/``prices``: the values)."""

    cells: list[str]
    ok: bool = True
    ts: int = 0
    symbol: str = ""
    prices: list[float] = field(default_factory=list)
    wide: bool = False  # more fields than the header


def _ts_text(ms: int, unit: str) -> str:
    if unit == "s":
        return str(ms // 1000)
    if unit == "ms":
        return str(ms)
    if unit == "us":
        return str(ms * 1000)
    if unit == "ns":
        return str(ms * 1_000_000)
    return format_ms(ms)  # ISO-8601 UTC


FINE_FIRST_MINUTE = -(-EPOCH_FINE_FIRST_MS // MINUTE) * MINUTE
GOOD_DATES = st.one_of(
    st.integers(-3, 40).map(lambda k: T0 + k * MINUTE),  # repeats and steps back come with it
    # the first whole minute every unit reads (1978-01-11T21:32; 1971-01-01 is read in s only,
    # a number of the 1970s in ms, us or ns being a wire time in the coarser unit), 2099-12-31T23:59;
    # fx.candles admits both (its floor is 1971-01-01, the readers')
    st.sampled_from([FINE_FIRST_MINUTE, 4_102_444_800_000 - MINUTE]),
)
BAD_STAMPS = st.sampled_from(
    [
        "0",
        "-0",
        "-60",
        str(EPOCH_FIRST_MS - MINUTE),  # 1970 in ms
        str(EPOCH_FIRST_MS // 1000 - 60),  # 1970 in s
        str(EPOCH_FIRST_MS),  # 1971 in ms: a wire time (2969) in s
        "1e11",
        "1e14",
        "1e17",
        str(YEAR_9999_MS),
        "4102444800000",
        "9.3e18",
        "nan",
        "",
        "x",
        "1e400",
        "Infinity",
        "1969-12-31T23:59:00Z",
        "0x1p40",
        "1_398_902_400_000",
    ]
)
# a price cell as written, and the number it is (None: not a number the file may hold)
ODD_PRICES: dict[str, float | None] = {
    "1e-320": 1e-320,
    "-0": -0.0,
    "0": 0.0,
    "nan": math.nan,
    "NaN": math.nan,
    "Infinity": math.inf,
    "-inf": -math.inf,
    "0x1p3": None,
    "1_000": None,
    "1 000": None,
    '"1.1"': None,
    "1e308": 1e308,
    "1e400": None,
    "\uff11.\uff11": None,  # fullwidth digits
    "": None,
    "1.2": 1.2,
    "0.9": 0.9,
    "+1.15": 1.15,
    " 1.15 ": 1.15,
    "1.1e0": 1.1,
    "1,100.5": None,  # a thousands separator: one field more
    "1.1\x00": None,
    "\u2028": None,  # a line separator to str.splitlines, not to a CSV reader
    "1.1\x85": None,
    "\x0c": None,
}
VOLUMES: dict[str, float | None] = {
    "1": 1.0,
    "0": 0.0,
    "2.5": 2.5,
    "": None,
    "nan": math.nan,
    "-1": -1.0,
    "1e308": 1e308,
}
SYMBOLS = ["EURUSD", "EURUSD", "EURUSD", "GBPUSD", "eurusd", "XYZ"]


@st.composite
def candle_rows(draw: st.DrawFn) -> Row:
    if draw(st.integers(0, 9)) == 0:
        ts_text, ts, ts_ok = draw(BAD_STAMPS), 0, False
    else:
        ts = draw(GOOD_DATES)
        ts_text, ts_ok = _ts_text(ts, draw(st.sampled_from(["s", "ms", "us", "ns", "iso"]))), True
    sym = draw(st.sampled_from(SYMBOLS))
    c = draw(st.integers(10_500, 11_500)) / 10_000
    texts = [f"{c:.4f}", f"{c + 0.001:.4f}", f"{c - 0.001:.4f}", f"{c:.4f}"]
    values: list[float | None] = [float(t) for t in texts]
    for k in range(4):
        if draw(st.integers(0, 11)) == 0:
            texts[k] = draw(st.sampled_from(sorted(ODD_PRICES)))
            values[k] = ODD_PRICES[texts[k]]
    vol = draw(st.sampled_from(sorted(VOLUMES))) if draw(st.integers(0, 4)) == 0 else "1"
    cells = [ts_text, sym, *texts, vol]
    row = Row(cells, ok=ts_ok and all(v is not None for v in values) and VOLUMES[vol] is not None)
    if row.ok:
        row.ts, row.symbol = ts, sym
        row.prices = [float(v) for v in values if v is not None] + [float(VOLUMES[vol] or 0.0)]
    nfields = len(row.cells)  # the header's
    shape = draw(st.integers(0, 19))
    if shape == 1 and any("," in cell for cell in row.cells):
        # a comma (thousands separator) making up for a missing field reads as seven shifted
        # fields, which no reader can tell from a good row: not generated (it failed once)
        shape = 2
    if shape == 0:  # a field more
        row.cells.append("x")
    elif shape == 1:  # a field less
        row.cells.pop()
    # more fields than the header: a comma in a cell (thousands separator) is one field more
    row.wide = ",".join(row.cells).count(",") + 1 > nfields
    if row.wide or shape == 1 or any("," in cell for cell in row.cells):
        row.ok = False  # a comma in a cell (thousands separator) or a field more or less: malformed
    return row


@dataclass
class Generated:
    text: str
    lines: dict[int, Row]  # file line (1-based) -> the row written there
    header: list[str]


@st.composite
def candle_files(draw: st.DrawFn) -> Generated:
    order = draw(st.permutations(range(7)))
    names = HEADER.split(",")
    header = [names[i] for i in order]
    if draw(st.booleans()):
        header = [h.upper() if draw(st.booleans()) else h for h in header]
    rows = draw(st.lists(candle_rows(), min_size=0, max_size=40))
    eol = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    lines = [("\ufeff" if draw(st.booleans()) else "") + ",".join(header)]
    where: dict[int, Row] = {}
    for row in rows:
        while draw(st.integers(0, 9)) == 0:
            lines.append(draw(st.sampled_from(["", "   ", "\t"])))  # blank lines: no rows
        n = len(row.cells)
        cells = [row.cells[order[i]] if order[i] < n else "" for i in range(min(n, 7))]
        if n < 7:  # a field less: the last of the header's order is missing
            cells = [row.cells[order[i]] for i in range(7) if order[i] < n]
        cells += row.cells[7:]
        lines.append(",".join(cells))
        where[len(lines)] = row
    text = eol.join(lines) + (eol if draw(st.booleans()) else "")
    return Generated(text, where, header)


def _oracle(gen: Generated, now_ms: int) -> tuple[list[tuple[int, Row]], dict[int, str]]:
    """The rows the candle agent hands to their series, in file order, and the reason of each
    row it refuses after decoding it (the reader's own refusals are not named here)."""
    last: dict[str, int] = {}
    taken: dict[str, set[int]] = {}
    admitted: list[tuple[int, Row]] = []
    reasons: dict[int, str] = {}
    decoded: list[tuple[int, Row, Candle]] = []
    for line, row in _oldest_first([(line, row) for line, row in gen.lines.items() if row.ok], now_ms):
        o, h, lo, c, v = row.prices
        record = {"symbol": row.symbol, "timeframe": "1m", "open_time": row.ts, "close_time": row.ts + MINUTE}
        record |= {"open": o, "high": h, "low": lo, "close": c, "volume": v}
        try:
            decoded.append((line, row, decode_candle(encode_unchecked("candles", record), instruments=REG)))
        except ValidationError as exc:
            reasons[line] = "unknown_symbol" if exc.reason is RejectReason.SCHEMA else exc.reason.value
    # the stream's gate; a file whose bars are spaced wider than two days gets a wider one
    gate = CandleGate(gate_for_spacing(np.array([c.open_ms for _, _, c in decoded], dtype=np.int64)))
    for line, row, candle in decoded:
        o, h, lo, c, v = row.prices
        sym = candle.symbol
        prev = last.get(sym)
        at_open = Candle(
            symbol=sym, timeframe="", open_ms=candle.open_ms, close_ms=candle.open_ms, open=o, high=h, low=lo, close=c
        )
        why = gate.check(at_open, watermark_ms=prev, now_ms=now_ms)
        if why is not None:
            reasons[line] = why.value
        elif prev is not None and candle.open_ms <= prev:
            reasons[line] = "duplicate" if candle.open_ms in taken[sym] else "late"
        else:
            last[sym] = candle.open_ms
            taken.setdefault(sym, set()).add(candle.open_ms)
            admitted.append((line, Row(row.cells, True, candle.open_ms, sym, [o, h, lo, c, v])))
    return admitted, reasons


def _oldest_first(rows: list[tuple[int, Row]], now_ms: int) -> list[tuple[int, Row]]:
    """The reader's layout rule: a series (one symbol as the reader names it) whose open times
    never rise from its first row to its last and fall at least once is read newest-first,
    reversed in its own places in the file. A row the stream refuses for its prices (not
    finite, not positive, not bounded by high and low) or its time (past the clock) takes no
    part: it stays where it stands."""

    def counted(row: Row) -> bool:
        o, h, lo, c, _ = row.prices
        finite = all(math.isfinite(x) for x in (o, h, lo, c))
        return finite and lo > 0 and h >= max(o, c) and lo <= min(o, c) and row.ts <= now_ms

    out = list(rows)
    series: dict[str, list[int]] = {}
    for i, (_, row) in enumerate(rows):
        if counted(row):
            series.setdefault(REG.normalise(row.symbol.strip()) or row.symbol.strip(), []).append(i)
    for pos in series.values():
        ts = [rows[i][1].ts for i in pos]
        if len(ts) > 1 and ts[0] > ts[-1] and all(b <= a for a, b in zip(ts, ts[1:], strict=False)):
            for i, j in zip(pos, reversed(pos), strict=True):
                out[i] = rows[j]
    return out


def _data_lines(text: str) -> list[int]:
    """The lines of rows (after the header, not blank), as the readers number them."""
    text = text.removeprefix("\ufeff")
    return [i for i, line in enumerate(re.split(r"\r\n|\r|\n", text), start=1) if i > 1 and line.strip()]


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(gen=candle_files())
def test_generated_files_never_traceback_conserve_rows_and_equal_the_streams_output(gen: Generated) -> None:
    """Every row is in the output or in --rejects with a reason (never both, never neither);
    the output is exactly the candles the stream's code admits, in order, with the indicator
    values an ``IndicatorBank`` fed those candles gives; every row refused is 65, one line."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "c.csv"
        src.write_bytes(gen.text.encode("utf-8"))
        out, rej = Path(tmp) / "o.csv", Path(tmp) / "r.csv"
        now = int(time.time() * 1000)
        res = runner.invoke(app, ["indicators", str(src), "--spec", SPEC, "-o", str(out), "--rejects", str(rej)])
        assert "Traceback" not in res.stderr and "Warning" not in res.stderr, res.stderr
        assert res.exit_code in (0, 65), (res.exit_code, res.stderr, res.exception)
        data = _data_lines(gen.text)
        assert sorted(data) == sorted(gen.lines)
        admitted, reasons = _oracle(gen, now)
        event(f"exit {res.exit_code}")
        for why in set(reasons.values()):
            event(f"refused {why}")
        if all(gen.lines[line].wide for line in data):  # no line is a row of the header's fields
            assert res.exit_code == 65  # the file is refused whole (the first bad line named)
            assert_one_line(res.stderr, "no rows")
            return
        refused = pd.read_csv(rej, keep_default_na=False)
        lines = refused["line"].tolist()
        assert len(lines) == len(set(lines)) and all(r for r in refused["reason"])
        assert set(lines) == set(data) - {line for line, _ in admitted}, refused
        for line, why in zip(lines, refused["reason"], strict=True):
            if line in reasons:
                assert why == reasons[line], (line, refused)
        if not admitted:
            assert res.exit_code == 65
            assert_one_line(res.stderr, "every candle")
            return
        assert res.exit_code == 0, res.stderr
        got = _exact_csv(out)
        assert len(got) + len(lines) == len(data)
        assert got["ts_ms"].tolist() == [row.ts for _, row in admitted]
        assert got["symbol"].tolist() == [row.symbol for _, row in admitted]
        assert got[["open", "high", "low", "close", "volume"]].values.tolist() == [row.prices for _, row in admitted]
        banks: dict[str, IndicatorBank] = {}
        spec = BankSpec.parse(SPEC)
        for i, (_, row) in enumerate(admitted):
            bank = banks.setdefault(row.symbol, IndicatorBank(spec))
            o, h, lo, c, _v = row.prices
            values = bank.update(
                Candle(symbol=row.symbol, timeframe="1m", open_ms=row.ts, close_ms=row.ts + MINUTE, open=o,
                       high=h, low=lo, close=c)
            )  # fmt: skip
            for name, want in values.items():
                have = got[name].iloc[i]
                assert (want is None and math.isnan(have)) or have == want, (i, name, have, want)


def _exact_csv(path: Path) -> pd.DataFrame:
    """A CSV with each number as Python's ``float`` reads its text (exact), empty as NaN."""
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    for name in frame.columns:
        if name != "symbol":
            frame[name] = [int(x) if name == "ts_ms" else float(x) if x else math.nan for x in frame[name]]
    return frame


def test_the_oracle_reads_csv_floats_back_exactly(tmp_path: Path) -> None:
    """The property compares written indicator values with ``==``: they round-trip."""
    values = [0.1 + 0.2, 1 / 3, 1e-7, 1.2345678901234567]
    pd.DataFrame({"x": values}).to_csv(tmp_path / "x.csv", index=False)
    assert _exact_csv(tmp_path / "x.csv")["x"].tolist() == values


# -- 7. the same property for forexd candles over generated tick files -----------------------------


@dataclass
class TickRow:
    cells: list[str]
    ok: bool = True
    tick: Tick | None = None
    wide: bool = False


@st.composite
def tick_rows(draw: st.DrawFn) -> TickRow:
    if draw(st.integers(0, 9)) == 0:
        ts_text, ts, ts_ok = draw(BAD_STAMPS), 0, False
    else:
        ts = draw(st.one_of(st.integers(-5, 300).map(lambda k: T0 + k * 1000), st.sampled_from([FINE_FIRST_MINUTE])))
        ts_text, ts_ok = _ts_text(ts, draw(st.sampled_from(["s", "ms", "us", "ns", "iso"]))), True
    sym = draw(st.sampled_from(SYMBOLS))
    bid = draw(st.integers(10_900, 11_100)) / 10_000
    texts = [f"{bid:.4f}", f"{bid + draw(st.integers(0, 3)) / 10_000:.4f}"]
    values: list[float | None] = [float(t) for t in texts]
    for k in range(2):
        if draw(st.integers(0, 11)) == 0:
            texts[k] = draw(st.sampled_from(sorted(ODD_PRICES)))
            values[k] = ODD_PRICES[texts[k]]
    vol = draw(st.sampled_from(sorted(VOLUMES))) if draw(st.integers(0, 4)) == 0 else "1"
    row = TickRow([ts_text, sym, *texts, vol])
    row.ok = ts_ok and all(v is not None for v in values) and VOLUMES[vol] is not None
    if row.ok:
        canon = REG.normalise(sym) or sym
        b, a = (float(v) for v in values if v is not None)
        row.tick = Tick(symbol=canon, ts_ms=ts, bid=b, ask=a, volume=float(VOLUMES[vol] or 0.0))
    nfields = len(row.cells)  # the header's
    shape = draw(st.integers(0, 19))
    if shape == 1 and any("," in cell for cell in row.cells):
        shape = 2  # shifted fields no reader can tell from a good row: as candle_rows
    if shape == 0:
        row.cells.append("x")
    elif shape == 1:
        row.cells.pop()
    # more fields than the header: a comma in a cell (thousands separator) is one field more
    row.wide = ",".join(row.cells).count(",") + 1 > nfields
    if row.wide or shape == 1 or any("," in cell for cell in row.cells):
        row.ok = False
    return row


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(
    rows=st.lists(tick_rows(), max_size=40),
    eol=st.sampled_from(["\n", "\r\n", "\r"]),
    bom=st.booleans(),
    blanks=st.lists(st.integers(0, 40), max_size=3),
)
def test_generated_tick_files_conserve_rows_and_give_the_tick_pipelines_candles(
    rows: list[TickRow], eol: str, bom: bool, blanks: list[int]
) -> None:
    """``forexd candles``: no traceback or warning; every row is in a candle (``tick_count``)
    or in --rejects, never both; the candles are those of the tick agent's pipeline fed the
    rows as they were written, byte for byte as ``write_candles_csv`` writes them; every row
    refused is 65, one line."""
    import tempfile

    from forex_diffusion.ingest.pipeline import TickPipeline
    from forex_diffusion.offline import write_candles_csv

    lines = [("\ufeff" if bom else "") + "timestamp,symbol,bid,ask,volume"]
    where: dict[int, TickRow] = {}
    for i, row in enumerate(rows):
        if i in blanks:
            lines.append("  ")
        lines.append(",".join(row.cells))
        where[len(lines)] = row
    text = eol.join(lines) + eol
    pipe = TickPipeline(timeframes=("1m",), instruments=REG)
    admitted: set[int] = set()
    expected: list[Candle] = []
    for line, row in where.items():
        if not row.ok or row.tick is None or REG.normalise(row.tick.symbol) is None:
            continue
        try:
            expected += pipe.process(row.tick, ref=line)
            admitted.add(line)
        except ValidationError:
            pass
        for q in pipe.take_quarantined():
            admitted.discard(q.ref)
    expected += pipe.flush()
    for q in pipe.take_quarantined():
        admitted.discard(q.ref)
    expected.sort(key=lambda c: (c.symbol, c.open_ms))
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "ticks.csv"
        src.write_bytes(text.encode("utf-8"))
        out, rej = Path(tmp) / "o.csv", Path(tmp) / "r.csv"
        res = runner.invoke(app, ["candles", str(src), "-o", str(out), "--rejects", str(rej)])
        assert "Traceback" not in res.stderr and "Warning" not in res.stderr, res.stderr
        assert res.exit_code in (0, 65), (res.exit_code, res.stderr, res.exception)
        data = _data_lines(text)
        assert sorted(data) == sorted(where)
        if all(where[line].wide for line in data):
            assert res.exit_code == 65
            assert_one_line(res.stderr, "no rows")
            return
        refused = pd.read_csv(rej, keep_default_na=False)["line"].tolist()
        assert len(refused) == len(set(refused))
        assert set(refused) == set(data) - admitted
        if not admitted:
            assert res.exit_code == 65
            assert_one_line(res.stderr, "every tick")
            return
        assert res.exit_code == 0, res.stderr
        buf = io.StringIO()
        write_candles_csv(expected, buf, price="mid")
        assert out.read_text() == buf.getvalue()
        assert sum(c.tick_count for c in expected) == len(admitted) == len(data) - len(refused)
