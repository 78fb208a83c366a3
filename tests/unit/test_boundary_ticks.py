"""Issue 13, findings 1-3: hostile rows in a tick file change nothing but the reject list.

A ticks file (real OANDA EUR/USD quotes of the bundled sample) with hostile rows mixed in
must give exactly the candles of the file without them, exit 0, and one reject line per
hostile row: far-future and far-past timestamps, prices and volumes at the float limits,
negative, zero, sub-normal and non-finite values, rows with missing or extra fields.

Regressions pinned here (each failed on main before the fix):

* one tick dated three years after its neighbours moved the watermark and every later tick
  of the file was refused as ``late`` (finding 1);
* ``ts,1e304,1e304`` crashed ``forexd candles`` with an ``OverflowError`` (finding 2);
* two ticks with volume 1e308 gave a candle with ``volume=inf`` (finding 3);
* a row with extra fields shifted the line numbers of every later reject.
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from forex_diffusion.bundled import SAMPLE_TICKS
from forex_diffusion.codec import encode_candle
from forex_diffusion.errors import RejectReason
from forex_diffusion.offline import CandleRun, aggregate_ticks_file
from streams.cli import app

runner = CliRunner()
HEADER = "timestamp,symbol,bid,ask,volume"
DAY = 86_400_000
YEAR = 365 * DAY
TFS = ["1m", "5m", "1h"]


def _real(n: int, start: int = 0) -> list[tuple[int, str, str, str]]:
    df = pd.read_csv(SAMPLE_TICKS, dtype={"bid": str, "ask": str}).iloc[start:start + n]
    vols = [f"{(i % 7) * 0.25:g}" for i in range(len(df))]  # some volume, some 0
    return list(zip(df.ts_ms.tolist(), df.bid.tolist(), df.ask.tolist(), vols, strict=True))


REAL = _real(3_000)
T_FIRST, T_LAST = REAL[0][0], REAL[-1][0]


def row(ts: object, bid: object, ask: object, vol: object = "1") -> str:
    return f"{ts},EURUSD,{bid},{ask},{vol}"


def clean_rows(real: list[tuple[int, str, str, str]] = REAL) -> list[str]:
    return [row(t, b, a, v) for t, b, a, v in real]


def mix(clean: list[str], hostile: list[tuple[int, str]]) -> tuple[list[str], list[int]]:
    """Insert each ``(gap, row)`` before clean row ``gap`` (gap == len: at the end); return the
    rows and the 1-based file lines (header = line 1) of the hostile ones."""
    by_gap: dict[int, list[str]] = {}
    for gap, text in hostile:
        by_gap.setdefault(gap, []).append(text)
    out: list[str] = []
    lines: list[int] = []
    for i in range(len(clean) + 1):
        for text in by_gap.get(i, []):
            out.append(text)
            lines.append(len(out) + 1)
        if i < len(clean):
            out.append(clean[i])
    return out, lines


def write(path: Path, rows: list[str]) -> Path:
    path.write_text("\n".join([HEADER, *rows]) + "\n")
    return path


def run_core(path: Path) -> CandleRun:
    return aggregate_ticks_file(path, timeframes=TFS)


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory: pytest.TempPathFactory) -> CandleRun:
    return run_core(write(tmp_path_factory.mktemp("clean") / "eurusd_ticks.csv", clean_rows()))


def assert_same_and_each_refused_once(run: CandleRun, clean: CandleRun, lines: list[int]) -> None:
    assert run.candles == clean.candles
    refused = Counter(r.line for r in run.rejects)
    assert sorted(refused) == sorted(lines), (sorted(refused), sorted(lines))
    assert set(refused.values()) <= {1}
    assert all(isinstance(r.reason, RejectReason) for r in run.rejects)
    assert sum(run.counts.values()) == len(lines)
    for c in run.candles:
        assert math.isfinite(c.volume) and c.volume >= 0
        encode_candle(c)  # never fails at flush


# -- the catalogue -------------------------------------------------------------------------

_T = T_FIRST + 60_000  # inside the file
_B, _A = "1.38710", "1.38726"
HOSTILE: dict[str, str] = {
    # times
    "future_3y": row(_T + 3 * YEAR, _B, _A),
    "future_2099": row(4_070_908_800_000, _B, _A),
    "future_2200": row(7_258_118_400_000, _B, _A),
    "future_iso_9999": row("9999-12-31T23:59:59Z", _B, _A),
    "ts_1e308": row("1e308", _B, _A),
    "ts_inf": row("inf", _B, _A),
    "ts_nan": row("nan", _B, _A),
    "ts_2_63": row(2**63, _B, _A),
    "ts_minus_2_63": row(-(2**63) - 1, _B, _A),
    "past_1970": row(0, _B, _A),
    "past_1999": row(915_148_800_000, _B, _A),
    "past_2005": row(1_104_537_600_000, _B, _A),
    "past_iso_1900": row("1900-01-01T00:00:00Z", _B, _A),
    "ts_negative": row(-1, _B, _A),
    "ts_empty": row("", _B, _A),
    # prices
    "price_1e308": row(_T, "1e308", "1e308"),
    "price_1e304": row(_T, "1e304", "1e304"),
    "price_max_float": row(_T, "1.7976931348623157e308", "1.7976931348623157e308"),
    "ask_1e308": row(_T, _B, "1e308"),
    "price_1e-308": row(_T, "1e-308", "1e-308"),
    "price_5e-324": row(_T, "5e-324", "5e-324"),
    "price_min_normal": row(_T, "2.2250738585072014e-308", "2.2250738585072014e-308"),
    "price_zero": row(_T, "0", "0"),
    "price_minus_zero": row(_T, "-0.0", _A),
    "price_negative": row(_T, "-1.38710", _A),
    "price_-1e308": row(_T, "-1e308", _A),
    "price_nan": row(_T, "nan", _A),
    "price_inf": row(_T, _B, "inf"),
    "price_-inf": row(_T, "-inf", _A),
    "price_garbage": row(_T, "1.3.8", _A),
    # volumes
    "volume_1e308": row(_T, _B, _A, "1e308"),
    "volume_max_float": row(_T, _B, _A, "1.7976931348623157e308"),
    "volume_1e-308": row(_T, _B, _A, "1e-308"),
    "volume_5e-324": row(_T, _B, _A, "5e-324"),
    "volume_negative": row(_T, _B, _A, "-1"),
    "volume_-1e308": row(_T, _B, _A, "-1e308"),
    "volume_nan": row(_T, _B, _A, "nan"),
    "volume_inf": row(_T, _B, _A, "inf"),
    "volume_-inf": row(_T, _B, _A, "-inf"),
    # layout
    "missing_volume": f"{_T},EURUSD,{_B},{_A}",
    "missing_three": f"{_T},EURUSD",
    "only_ts": f"{_T}",
    "extra_field": row(_T, _B, _A) + ",1",
    "extra_fields": row(_T, _B, _A) + ",x,y,z",
    "quoted_comma": f'{_T},"EURUSD,{_B}",{_A},1',
    "empty_fields": ",,,,",
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_each_hostile_row_is_refused_once_and_changes_no_candle(name: str, tmp_path: Path, clean_run: CandleRun) -> None:
    clean = clean_rows()
    for gap in (0, 1_500, len(clean)):  # first row, middle, last row
        rows, lines = mix(clean, [(gap, HOSTILE[name])])
        run = run_core(write(tmp_path / f"eurusd_{gap}.csv", rows))
        assert_same_and_each_refused_once(run, clean_run, lines)


def test_cli_with_every_hostile_row_mixed_in_gives_the_clean_candles(tmp_path: Path) -> None:
    clean = clean_rows()
    step = len(clean) // len(HOSTILE)
    hostile = [(i * step, HOSTILE[k]) for i, k in enumerate(sorted(HOSTILE))]
    hostile[-1] = (len(clean), hostile[-1][1])  # and one after the last clean row
    rows, lines = mix(clean, hostile)
    want, got = tmp_path / "want.csv", tmp_path / "got.csv"
    res = runner.invoke(app, ["candles", str(write(tmp_path / "clean_eurusd.csv", clean)), "--timeframes", "1m,5m,1h", "-o", str(want)])
    assert res.exit_code == 0, res.output
    rej = tmp_path / "rej.csv"
    res = runner.invoke(app, ["candles", str(write(tmp_path / "hostile_eurusd.csv", rows)), "--timeframes", "1m,5m,1h",
                              "-o", str(got), "--rejects", str(rej)])
    assert res.exit_code == 0, res.output
    assert got.read_text() == want.read_text()
    refused = pd.read_csv(rej)
    assert sorted(refused.line.tolist()) == lines
    assert set(refused.reason) <= {r.value for r in RejectReason}


# -- the three findings, as reported ------------------------------------------------------


def test_finding1_one_tick_three_years_ahead_does_not_discard_the_rest_of_the_file(tmp_path: Path) -> None:
    real = _real(60_000)
    clean = clean_rows(real)
    far = row(real[999][0] + 3 * YEAR, real[999][1], real[999][2])
    rows, lines = mix(clean, [(1_000, far)])
    want = run_core(write(tmp_path / "clean_eurusd.csv", clean))
    got = run_core(write(tmp_path / "eurusd.csv", rows))
    assert len(got.candles) == len(want.candles) and got.candles == want.candles
    assert [(r.line, r.reason) for r in got.rejects] == [(lines[0], RejectReason.FUTURE_TS)]


def test_finding2_price_near_the_float_limit_is_refused_not_a_crash(tmp_path: Path, clean_run: CandleRun) -> None:
    clean = clean_rows()
    rows, lines = mix(clean, [(10, row(REAL[10][0], "1e304", "1e304"))])
    out = tmp_path / "out.csv"
    rej = tmp_path / "rej.csv"
    res = runner.invoke(app, ["candles", str(write(tmp_path / "eurusd.csv", rows)), "-o", str(out), "--rejects", str(rej)])
    assert res.exit_code == 0, res.output
    assert pd.read_csv(rej)[["line", "reason"]].values.tolist() == [[lines[0], "out_of_range"]]


def test_finding3_huge_and_negative_volumes_are_refused_on_arrival(tmp_path: Path, clean_run: CandleRun) -> None:
    clean = clean_rows()
    t = REAL[20][0]
    hostile = [(20, row(t, _B, _A, "1e308")), (21, row(t + 1, _B, _A, "1e308")), (22, row(t + 2, _B, _A, "-5"))]
    rows, lines = mix(clean, hostile)
    run = run_core(write(tmp_path / "eurusd.csv", rows))
    assert_same_and_each_refused_once(run, clean_run, lines)
    assert {r.reason for r in run.rejects} == {RejectReason.OUT_OF_RANGE}


# -- property: generated hostile rows ------------------------------------------------------

_FAR_FUTURE = st.integers(T_LAST + 5 * DAY, 4_102_444_799_999)
_FAR_PAST = st.integers(946_684_800_000, T_FIRST - 5 * DAY)
_BAD_TS = st.one_of(
    _FAR_FUTURE, _FAR_PAST,
    st.integers(-(2**70), 946_684_799_999), st.integers(4_102_444_800_000, 2**70),
    st.sampled_from(["1e308", "-1e308", "inf", "-inf", "nan", "", "x", "9999-12-31", "1677-09-21", "0x10"]),
)
_EXTREME = [1e308, -1e308, 1.7976931348623157e308, 1e-308, 5e-324, 2.2250738585072014e-308, 0.0, -0.0,
            math.nan, math.inf, -math.inf, 1e304, -1e-308]
_BAD_PRICE = st.one_of(
    st.sampled_from(_EXTREME),
    st.floats(min_value=1e3, allow_nan=False),  # beyond any EUR/USD range
    st.floats(max_value=1e-3, allow_nan=False, allow_infinity=True),  # tiny, zero, negative
    st.sampled_from(["", "abc", "1.2.3", "--1", "1e", "0x1p3", "١٫٢"]),
)
_BAD_VOLUME = st.one_of(
    st.sampled_from([1e308, -1e308, 1.7976931348623157e308, 1e-308, 5e-324, math.nan, math.inf, -math.inf, -1.0]),
    st.floats(min_value=1e16, allow_nan=False),
    st.floats(max_value=-1e-9, allow_nan=False),
    st.floats(min_value=5e-324, max_value=1e-12),
    st.sampled_from(["abc", "1,5", "1..0"]),
)


def _fmt(x: object) -> str:
    return repr(x) if isinstance(x, float) else str(x)


@st.composite
def hostile_row(draw: st.DrawFn, near: tuple[int, str, str, str]) -> str:
    ts, bid, ask, vol = near
    fields = [str(ts), "EURUSD", bid, ask, vol]
    kind = draw(st.sampled_from(["ts", "bid", "ask", "both", "volume", "missing", "extra"]))
    if kind == "ts":
        fields[0] = _fmt(draw(_BAD_TS))
    elif kind in ("bid", "ask", "both"):
        x = _fmt(draw(_BAD_PRICE))
        if kind != "ask":
            fields[2] = x
        if kind != "bid":
            fields[3] = x
    elif kind == "volume":
        fields[4] = _fmt(draw(_BAD_VOLUME))
    elif kind == "missing":
        fields = fields[: draw(st.integers(1, 4))]
    else:
        fields += [draw(st.sampled_from(["1", "", "x", "nan"])) for _ in range(draw(st.integers(1, 3)))]
    return ",".join(fields).replace("\n", " ")


@st.composite
def hostile_file(draw: st.DrawFn, n_clean: int) -> list[tuple[int, str]]:
    gaps = draw(st.lists(st.integers(0, n_clean), min_size=1, max_size=12, unique=True))
    return [(g, draw(hostile_row(REAL[min(g, n_clean - 1)]))) for g in gaps]


def _property(tmp_path: Path, clean_run: CandleRun, hostile: list[tuple[int, str]]) -> None:
    rows, lines = mix(clean_rows(), hostile)
    run = run_core(write(tmp_path / "eurusd_ticks.csv", rows))
    assert_same_and_each_refused_once(run, clean_run, lines)


_SETTINGS = {"deadline": None, "suppress_health_check": [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]}


@settings(max_examples=150, derandomize=True, **_SETTINGS)  # type: ignore[arg-type]
@given(hostile=hostile_file(len(REAL)))
def test_generated_hostile_rows_change_no_candle_and_are_each_refused_once(
    tmp_path: Path, clean_run: CandleRun, hostile: list[tuple[int, str]]
) -> None:
    _property(tmp_path, clean_run, hostile)


@pytest.mark.soak
@settings(max_examples=2_000, **_SETTINGS)  # type: ignore[arg-type]
@given(hostile=hostile_file(len(REAL)))
def test_soak_generated_hostile_rows_change_no_candle_and_are_each_refused_once(
    tmp_path: Path, clean_run: CandleRun, hostile: list[tuple[int, str]]
) -> None:
    _property(tmp_path, clean_run, hostile)
