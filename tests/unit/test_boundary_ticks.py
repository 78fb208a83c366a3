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

from forex_diffusion.errors import RejectReason
from forex_diffusion.offline import CandleRun, aggregate_ticks_file
from forex_diffusion.wire import encode_candle
from streams.cli import app

from ..hostile_ticks import (
    ASK,
    BID,
    DAY,
    HOSTILE,
    REAL,
    T_FIRST,
    T_LAST,
    TFS,
    YEAR,
    _real,
    clean_rows,
    mix,
    row,
    write,
)

runner = CliRunner()


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


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_each_hostile_row_is_refused_once_and_changes_no_candle(
    name: str, tmp_path: Path, clean_run: CandleRun
) -> None:
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
    res = runner.invoke(
        app, ["candles", str(write(tmp_path / "clean_eurusd.csv", clean)), "--timeframes", "1m,5m,1h", "-o", str(want)]
    )
    assert res.exit_code == 0, res.output
    rej = tmp_path / "rej.csv"
    res = runner.invoke(
        app,
        [
            "candles",
            str(write(tmp_path / "hostile_eurusd.csv", rows)),
            "--timeframes",
            "1m,5m,1h",
            "-o",
            str(got),
            "--rejects",
            str(rej),
        ],
    )
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
    res = runner.invoke(
        app, ["candles", str(write(tmp_path / "eurusd.csv", rows)), "-o", str(out), "--rejects", str(rej)]
    )
    assert res.exit_code == 0, res.output
    assert pd.read_csv(rej)[["line", "reason"]].values.tolist() == [[lines[0], "out_of_range"]]


def test_finding3_huge_and_negative_volumes_are_refused_on_arrival(tmp_path: Path, clean_run: CandleRun) -> None:
    clean = clean_rows()
    t = REAL[20][0]
    hostile = [(20, row(t, BID, ASK, "1e308")), (21, row(t + 1, BID, ASK, "1e308")), (22, row(t + 2, BID, ASK, "-5"))]
    rows, lines = mix(clean, hostile)
    run = run_core(write(tmp_path / "eurusd.csv", rows))
    assert_same_and_each_refused_once(run, clean_run, lines)
    assert {r.reason for r in run.rejects} == {RejectReason.OUT_OF_RANGE}


# -- property: generated hostile rows ------------------------------------------------------

_FAR_FUTURE = st.integers(T_LAST + 5 * DAY, 4_102_444_799_999)
_FAR_PAST = st.integers(946_684_800_000, T_FIRST - 5 * DAY)
_BAD_TS = st.one_of(
    _FAR_FUTURE,
    _FAR_PAST,
    st.integers(-(2**70), 946_684_799_999),
    st.integers(4_102_444_800_000, 2**70),
    st.sampled_from(["1e308", "-1e308", "inf", "-inf", "nan", "", "x", "9999-12-31", "1677-09-21", "0x10"]),
)
_EXTREME = [
    1e308,
    -1e308,
    1.7976931348623157e308,
    1e-308,
    5e-324,
    2.2250738585072014e-308,
    0.0,
    -0.0,
    math.nan,
    math.inf,
    -math.inf,
    1e304,
    -1e-308,
]
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
