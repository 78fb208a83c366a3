"""``forexd`` at its boundaries (4), each a failure found by a hunt with wrong arguments:

A. ``1M`` (a month in pandas, TradingView and vendors' files) was read as one minute, by every
   option, setting and decoder that parses a timeframe; ``H`` and ``D`` stay accepted.
B. ``forexd candles FILE --symbol X`` wrote every symbol of a file with a symbol column; it
   now keeps X's rows (any spelling), and says which symbols the file holds when X is not one.
C. ``backtest --plot chart.pdf`` wrote PNG bytes into chart.pdf; an output named for a format
   other than the one written (``report -o r.png``, ``-o x.json``, ``x.csv.gz``) is a usage
   error before any work, and ``backtest -o -`` wrote a file named ``-``.
D. ``train``/``backtest --timeframe 1d`` of an hourly file said "candles must have strictly
   increasing close times" (train) or "no forecast in the span", or forecast hourly bars as
   days (backtest); now: its bars are 1h apart, not 1d.
Also: ``--timeframe 1H``/``60m`` was not the 1h of the file's timeframe column, of the model
or of the stored forecasts ("holds no 1H candles (it holds 1h)"), and ``report --symbol
eurusd`` found no stored EURUSD.
"""

from __future__ import annotations

import io
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from forex_diffusion.domain import Candle
from forex_diffusion.errors import ConfigError, DataFormatError, RejectReason, ValidationError
from forex_diffusion.offline import aggregate_ticks_file
from forex_diffusion.timeframes import Timeframe, canonical_name, parse_timeframes
from streams.cli import app

from .test_cli_boundary_3 import one_line

ROOT = Path(__file__).resolve().parents[3]
FOREXD = Path(sys.executable).with_name("forexd")
MODEL_1H = ROOT / "forex_diffusion" / "bundled" / "models" / "EURUSD-1h-h24"
START_MS = 1_451_606_400_000  # 2016-01-01 00:00 UTC
HOUR = 3_600_000
DAY = 24 * HOUR
runner = CliRunner()
# one forecast of the bundled 1h model, cheaply
CHEAP = ["--every", "1000", "-n", "16", "--steps", "4", "--touch-bands", "none"]


def bars_file(
    path: Path, n: int = 200, *, step: int = HOUR, start: int = START_MS, tf_column: str | None = None
) -> Path:
    """``n`` bars ``step`` apart, EUR/USD-like: ``timestamp,symbol,open,high,low,close`` (with
    ``forexd candles``' ``symbol,timeframe,open_time,…`` layout when ``tf_column`` is given)."""
    head = "symbol,timeframe,open_time,open,high,low,close" if tf_column else "timestamp,symbol,open,high,low,close"
    rows = [head]
    for i in range(n):
        p = 1.1 * (1 + 0.002 * math.sin(i / 5) + 0.0007 * ((i * 7919) % 13 - 6) / 6)
        prices = f"{p:.5f},{p * 1.001:.5f},{p * 0.999:.5f},{p:.5f}"
        t = start + i * step
        if tf_column:
            iso = pd.Timestamp(t, unit="ms", tz="UTC").strftime("%Y-%m-%dT%H:%M:%SZ")
            rows.append(f"EURUSD,{tf_column},{iso},{prices}")
        else:
            rows.append(f"{t},EURUSD,{prices}")
    path.write_text("\n".join(rows) + "\n")
    return path


def ticks_file(path: Path, symbols: list[str], n: int = 240) -> Path:
    """``n`` ticks a second apart, row ``i`` of ``symbols[i % len]`` (its price on its own scale)."""
    scale = {"GBPUSD": 1.6, "USDJPY": 150.0}
    rows = ["timestamp,symbol,bid,ask"]
    for i in range(n):
        s = symbols[i % len(symbols)]
        p = scale.get(s.upper().replace("/", "").replace("_", ""), 1.1) * (1 + 1e-4 * math.sin(i / 7))
        iso = pd.Timestamp(START_MS + i * 1000, unit="ms", tz="UTC").strftime("%Y-%m-%dT%H:%M:%SZ")
        rows.append(f"{iso},{s},{p:.5f},{p * 1.0001:.5f}")
    path.write_text("\n".join(rows) + "\n")
    return path


# -- A: 1M is a month, never a minute ------------------------------------------------------------


@pytest.mark.parametrize("name", ["1M", "5M", " 15M ", "01M", "1440M"])
def test_an_uppercase_M_timeframe_is_refused_as_a_month_not_read_as_minutes(name: str) -> None:
    """Before: ``Timeframe.parse('1M')`` was 1m (the name lower-cased)."""
    with pytest.raises(ConfigError, match="M is a month in many tools") as info:
        Timeframe.parse(name)
    assert f"write {canonical_name(name.strip()[:-1] + 'm')} for" in str(info.value)
    with pytest.raises(ConfigError, match="month"):
        parse_timeframes(f"1m,{name}")


@pytest.mark.parametrize(("upper", "lower"), [("1H", "1h"), ("4H", "4h"), ("1D", "1d"), ("60m", "1h")])
def test_uppercase_H_and_D_stay_hours_and_days(upper: str, lower: str) -> None:
    assert Timeframe.parse(upper) == Timeframe.parse(lower)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="0123456789mMhHdD xw²", min_size=0, max_size=7))
def test_a_timeframe_name_is_a_timeframe_of_its_unit_or_a_config_error(name: str) -> None:
    """Property: ``parse`` returns the duration its digits and (case-folded) unit say, except
    for ``M``, which is never taken; anything else is a ConfigError, never another exception."""
    try:
        tf = Timeframe.parse(name)
    except ConfigError:
        return
    text = name.strip()
    assert not text.endswith("M")
    unit = {"m": 60_000, "h": HOUR, "d": DAY}[text[-1].lower()]
    assert tf.duration_ms == int(text[:-1]) * unit


@pytest.mark.parametrize(
    "args",
    [
        ["candles", "TICKS", "--timeframes", "1m,1M"],
        ["train", "BARS", "--symbol", "EURUSD", "--timeframe", "1M", "--model-dir", "MD"],
        ["backtest", "BARS", "--symbol", "EURUSD", "--timeframe", "1M", "--model", str(MODEL_1H), "-o", "OUT"],
        ["indicators", "BARS", "--timeframe", "1M"],
        ["report", "--db", "sqlite:///DB", "-o", "R", "--timeframe", "1M"],
        ["replay", "BARS", "--timeframe", "1M"],
    ],
    ids=["candles", "train", "backtest", "indicators", "report", "replay"],
)
def test_a_1M_timeframe_option_is_one_usage_line(args: list[str], tmp_path: Path) -> None:
    """Before: candles wrote 1m candles, train/backtest/indicators read 1m bars (exit 0)."""
    files = {
        "TICKS": str(ticks_file(tmp_path / "eurusd_ticks.csv", ["EURUSD"])),
        "BARS": str(bars_file(tmp_path / "bars.csv", 50, step=60_000)),
        "MD": str(tmp_path / "models"),
        "OUT": str(tmp_path / "bt.csv"),
        "R": str(tmp_path / "r.html"),
    }
    args = [files.get(a, a.replace("DB", str(tmp_path / "fx.db"))) for a in args]
    res = runner.invoke(app, args)
    assert res.exit_code == 2, res.output
    one_line(res.stderr, "1M", "M is a month", "write 1m for a minute")
    assert not any(tmp_path.glob("*.html")) and not (tmp_path / "bt.csv").exists()


@pytest.mark.parametrize(
    "env",
    [{"FOREXD_TIMEFRAMES": "1m,1M"}, {"FOREXD_FORECAST_TIMEFRAMES": "1M"}, {"FOREXD_MODELS": "1M:60"}],
)
def test_a_1M_timeframe_setting_is_a_configuration_error(env: dict[str, str]) -> None:
    from forex_diffusion.errors import SettingsError
    from streams.settings import Settings

    with pytest.raises(SettingsError, match="M is a month"):
        Settings.from_env(env)


def test_the_candle_decoder_refuses_a_1M_candle_even_without_a_timeframe_list() -> None:
    """Before: ``decode_candle`` with no configured list decoded ``"1M"`` as a 1m candle."""
    from forex_diffusion import wire

    t0 = 1_399_248_000_000
    candle = Candle(
        symbol="EURUSD", timeframe="1m", open_ms=t0, close_ms=t0 + 60_000, open=1.1, high=1.2, low=1.0, close=1.15
    )
    record = json.loads(wire.encode_candle(candle))
    assert wire.decode_candle(json.dumps(record)).timeframe == "1m"
    record["timeframe"] = "1M"
    for timeframes in (None, frozenset({"1m"})):
        with pytest.raises(ValidationError) as info:
            wire.decode_candle(json.dumps(record), timeframes=timeframes)
        assert info.value.reason is RejectReason.SCHEMA


# -- B: candles --symbol selects that symbol's rows ----------------------------------------------


@pytest.mark.parametrize(("symbol", "want"), [("EURUSD", "EURUSD"), ("eur/usd", "EURUSD"), ("GBP_USD", "GBPUSD")])
def test_candles_symbol_keeps_only_its_rows_of_a_file_of_several(symbol: str, want: str, tmp_path: Path) -> None:
    """Before: ``--symbol EURUSD`` on a file of EURUSD and GBPUSD rows wrote both."""
    src = ticks_file(tmp_path / "ticks.csv", ["EURUSD", "GBPUSD", "eur_usd", "USDJPY"])
    out = tmp_path / "c.csv"
    res = runner.invoke(app, ["candles", str(src), "--symbol", symbol, "-o", str(out)])
    assert res.exit_code == 0, res.output
    got = pd.read_csv(out)
    assert set(got.symbol) == {want}
    alone = tmp_path / "alone.csv"
    frame = pd.read_csv(src)
    keep = frame.symbol.str.upper().str.replace(r"[/_]", "", regex=True) == want
    frame[keep].to_csv(alone, index=False)
    expected = aggregate_ticks_file(alone).candles
    assert len(got) == len(expected) and got.close.tolist() == pytest.approx([c.close for c in expected], abs=1e-6)
    assert f"ticks={int(keep.sum())} " in res.stderr


def test_candles_without_symbol_writes_every_symbol(tmp_path: Path) -> None:
    src = ticks_file(tmp_path / "ticks.csv", ["EURUSD", "GBPUSD"])
    res = runner.invoke(app, ["candles", str(src)])
    assert res.exit_code == 0, res.output
    assert set(pd.read_csv(io.StringIO(res.stdout)).symbol) == {"EURUSD", "GBPUSD"}


def test_candles_symbol_the_file_does_not_hold_is_one_line_naming_what_it_holds(tmp_path: Path) -> None:
    """Before: exit 0 and the file's EURUSD and GBPUSD candles, none of USDJPY."""
    src = ticks_file(tmp_path / "ticks.csv", ["EURUSD", "GBPUSD", "eur/usd"])
    out = tmp_path / "c.csv"
    res = runner.invoke(app, ["candles", str(src), "--symbol", "USDJPY", "-o", str(out)])
    assert res.exit_code == 65, res.output
    one_line(res.stderr, "holds no USDJPY ticks", "(it holds EURUSD, GBPUSD)", "--symbol")
    assert not out.exists()


def test_candles_symbol_error_lists_a_bounded_number_of_symbols(tmp_path: Path) -> None:
    names = [f"{a}{b}USD" for a in "ABCDE" for b in ("AA", "BB", "CC")]  # 15 six-letter pairs
    src = ticks_file(tmp_path / "ticks.csv", names, n=60)
    res = runner.invoke(app, ["candles", str(src), "--symbol", "EURUSD"])
    assert res.exit_code == 65, res.output
    line = one_line(res.stderr, "holds no EURUSD ticks", "and 5 more")
    assert sum(n in line for n in names) == 10


@pytest.mark.parametrize(
    ("cells", "said"),
    [
        (["", "GBPUSD"], " (it holds GBPUSD and rows without a symbol): pass one of those to --symbol"),
        ([""], ": its symbol column is blank on every row; write the ticks' pair (EURUSD) in that column"),
    ],
)
def test_candles_symbol_error_names_rows_without_a_symbol_as_such(cells: list[str], said: str, tmp_path: Path) -> None:
    """A column blank on every row said "(it holds only rows without a symbol): pass one of
    those to --symbol", of which there is none."""
    src = ticks_file(tmp_path / "ticks.csv", cells, n=6)
    res = runner.invoke(app, ["candles", str(src), "--symbol", "EURUSD"])
    assert res.exit_code == 65, res.output
    one_line(res.stderr, f"holds no EURUSD ticks{said}")


def test_candles_symbol_of_standard_input_names_standard_input(tmp_path: Path) -> None:
    src = ticks_file(tmp_path / "ticks.csv", ["EURUSD", "GBPUSD"])
    env = {k: v for k, v in os.environ.items() if not k.startswith("FOREXD_")}
    cmd = [str(FOREXD)] if FOREXD.exists() else [sys.executable, "-m", "streams.cli"]
    with src.open("rb") as fh:
        res = subprocess.run(
            [*cmd, "candles", "-", "--symbol", "USDJPY"], stdin=fh, capture_output=True, text=True, env=env, timeout=120
        )
    assert res.returncode == 65, res.stderr
    one_line(res.stderr, "standard input holds no USDJPY ticks (it holds EURUSD, GBPUSD)")


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(
    rows=st.lists(st.sampled_from(["EURUSD", "eur/usd", "GBPUSD", "gbp_usd", "USDJPY"]), min_size=1, max_size=60),
    want=st.sampled_from(["EURUSD", "EUR/USD", "gbpusd", "USDJPY"]),
)
def test_the_candles_of_a_symbol_are_those_of_its_rows_alone(rows: list[str], want: str, tmp_path: Path) -> None:
    """Property: aggregating a file for ``symbol`` gives the candles of the file holding only
    that symbol's rows, or, when it holds none, a DataFormatError naming what it holds."""
    src = ticks_file(tmp_path / "mixed.csv", rows, n=len(rows))
    canon = want.upper().replace("/", "")
    mine = [i for i, s in enumerate(rows) if s.upper().replace("/", "").replace("_", "") == canon]
    if not mine:
        with pytest.raises(DataFormatError, match=f"holds no {canon} ticks"):
            aggregate_ticks_file(src, symbol=want)
        return
    lines = src.read_text().splitlines()
    alone = tmp_path / "alone.csv"
    alone.write_text("\n".join([lines[0], *(lines[i + 1] for i in mine)]) + "\n")
    got, expected = aggregate_ticks_file(src, symbol=want), aggregate_ticks_file(alone)
    assert got.candles == expected.candles
    assert got.ticks_read == len(mine)


# -- C: an output named for another format ---------------------------------------------------------


def _backtest(tmp_path: Path, *extra: str) -> list[str]:
    return [
        "backtest",
        str(bars_file(tmp_path / "h1.csv")),
        "--symbol",
        "EURUSD",
        "--timeframe",
        "1h",
        "--model",
        str(MODEL_1H),
        *CHEAP,
        *extra,
    ]


@pytest.mark.parametrize("name", ["chart.pdf", "chart.svg", "chart.JPG", "chart", "chart.png.txt", "-"])
def test_backtest_plot_not_named_png_is_a_usage_error_before_any_work(name: str, tmp_path: Path) -> None:
    """Before: ``--plot chart.pdf`` wrote PNG bytes into chart.pdf (exit 0)."""
    out = tmp_path / "bt.csv"
    plot = name if name == "-" else str(tmp_path / name)
    res = runner.invoke(app, _backtest(tmp_path, "-o", str(out), "--plot", plot))
    assert res.exit_code == 2, res.output
    one_line(res.stderr, "--plot", "PNG", "name a .png file" if name == "-" else "name the file .png")
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["h1.csv"]


def test_backtest_plot_named_png_in_any_case_is_written(tmp_path: Path) -> None:
    out, plot = tmp_path / "bt.csv", tmp_path / "Chart.PNG"
    res = runner.invoke(app, _backtest(tmp_path, "-o", str(out), "--plot", str(plot)))
    assert res.exit_code == 0, res.output
    assert plot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n") and out.exists()


@pytest.mark.parametrize(
    ("option", "name", "said"),
    [
        ("-o", "bt.json", "JSON"),
        ("-o", "bt.csv.gz", "gzip"),
        ("--touch-output", "t.png", "PNG"),
        ("-o", "bt.xlsx", "Excel"),
    ],
)
def test_backtest_csv_output_named_for_another_format_is_a_usage_error(
    option: str, name: str, said: str, tmp_path: Path
) -> None:
    outs = {"-o": str(tmp_path / "bt.csv"), option: str(tmp_path / name)}
    res = runner.invoke(app, _backtest(tmp_path, *(a for kv in outs.items() for a in kv)))
    assert res.exit_code == 2, res.output
    one_line(res.stderr, f"{option} writes CSV, not the {said} its name {name} says: name the file .csv")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["h1.csv"]


def test_backtest_output_dash_is_refused_not_written_as_a_file_named_dash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: ``backtest … -o -`` wrote its CSV to a file named ``-`` (exit 0, "-> -")."""
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, _backtest(tmp_path, "-o", "-"))
    assert res.exit_code == 2, res.output
    one_line(res.stderr, "-o writes CSV to a file, not to standard output (-o - would be a file named '-')")
    assert not (tmp_path / "-").exists()


@pytest.mark.parametrize(
    ("extra", "said"),
    [
        (["--touch-bands", "none", "--touch-output", "t.csv"], "--touch-output writes the rows of --touch-bands"),
        (["--plot-as-of", "2016-01-05"], "--plot-as-of chooses the forecast --plot draws: give --plot too"),
    ],
)
def test_backtest_output_option_whose_output_cannot_come_is_a_usage_error(
    extra: list[str], said: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: exit 0, the option ignored: no touch file (``--touch-bands none``), no chart."""
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, _backtest(tmp_path, "-o", "bt.csv", *extra))
    assert res.exit_code == 2, res.output
    one_line(res.stderr, said)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["h1.csv"]


@pytest.mark.parametrize("name", ["r.png", "r.pdf", "r.json", "r.CSV", "-"])
def test_report_output_named_for_another_format_is_a_usage_error_before_the_database(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: ``report -o r.png`` wrote HTML into r.png (here the missing database: exit 66)."""
    monkeypatch.chdir(tmp_path)
    db = tmp_path / "none.db"
    res = runner.invoke(app, ["report", "--db", f"sqlite:///{db}", "-o", name])
    assert res.exit_code == 2, res.output
    one_line(res.stderr, "-o", "HTML")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("args", "refused"),
    [
        (["-o", "c.json"], "-o writes CSV, not the JSON its name c.json says"),
        (["-o", "c.csv.gz"], "-o writes CSV, not the gzip its name c.csv.gz says"),
        (["-o", "c.csv", "--rejects", "r.pdf"], "--rejects writes CSV, not the PDF its name r.pdf says"),
        (["-o", "c.txt"], None),
        (["-o", "c"], None),
        (["-o", "c.TSV", "--rejects", "r.log"], None),
        (["-o", "-"], None),
    ],
)
def test_candles_outputs_named_for_another_format_are_refused_and_free_names_taken(
    args: list[str], refused: str | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    src = ticks_file(tmp_path / "eurusd_ticks.csv", ["EURUSD"])
    res = runner.invoke(app, ["candles", src.name, *args])
    if refused is None:
        assert res.exit_code == 0, res.output
        return
    assert res.exit_code == 2, res.output
    one_line(res.stderr, refused, "name the file .csv")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eurusd_ticks.csv"]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    stem=st.text(alphabet="abc.-_ ", min_size=1, max_size=6).filter(lambda s: s.strip(". ") != ""),
    suffix=st.sampled_from(
        [".png", ".PNG", ".pdf", ".csv", ".Csv", ".json", ".html", ".htm", ".gz", ".txt", ".dat", ""]
    ),
)
def test_an_output_name_is_refused_only_for_another_well_known_format(stem: str, suffix: str, tmp_path: Path) -> None:
    """Property: a CSV output is refused exactly when its name says PNG, PDF, JSON, HTML or
    gzip; an image output (``only``) unless it says PNG. Never another exception."""
    import typer

    from streams.commands._common import check_output_format

    path = tmp_path / f"x{stem}{suffix}"
    got = path.suffix.lower()
    for writes, ext, only, ok in (
        ("CSV", ".csv", False, got not in (".png", ".pdf", ".json", ".html", ".htm", ".gz")),
        ("PNG", ".png", True, got == ".png"),
        ("HTML", ".html", False, got not in (".png", ".pdf", ".json", ".csv", ".gz")),
    ):
        if ok:
            check_output_format(path, "-o", writes, ext, only=only)
        else:
            with pytest.raises(typer.BadParameter, match=f"name the file {ext}"):
                check_output_format(path, "-o", writes, ext, only=only)


@pytest.mark.skipif(not Path(os.devnull).exists(), reason="no /dev/null")
def test_a_device_takes_any_format() -> None:
    from streams.commands._common import check_output_format

    check_output_format(Path(os.devnull), "--plot", "PNG", ".png", only=True)


# -- D: bars spaced unlike --timeframe 1d ---------------------------------------------------------


def test_train_1d_on_an_hourly_file_says_the_bars_are_an_hour_apart(tmp_path: Path) -> None:
    """Before: exit 2, ``candles must have strictly increasing close times``."""
    src = bars_file(tmp_path / "eurusd_h1.csv", 300)
    md = tmp_path / "models"
    res = runner.invoke(
        app, ["train", str(src), "--symbol", "EURUSD", "--timeframe", "1d", "--model-dir", str(md), "--max-steps", "2"]
    )
    assert res.exit_code == 65, res.output
    one_line(res.stderr, "eurusd_h1.csv: its bars are 1h apart, not 1d: pass --timeframe 1h")
    assert not md.exists() or not any(md.rglob("*.pt"))


@pytest.fixture(scope="module")
def model_1d(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny 1d model (a few optimiser steps: only its timeframe matters here), trained with
    ``--timeframe 1D``: its key directory."""
    tmp = tmp_path_factory.mktemp("d1")
    src = bars_file(tmp / "eurusd_d1.csv", 1300, step=DAY, start=START_MS - 3 * 365 * DAY + 22 * HOUR)
    args = ["train", str(src), "--symbol", "EURUSD", "--timeframe", "1D", "--horizon", "2", "--window", "8"]
    tiny = {"--max-steps": "3", "--calib-windows": "64", "--width": "8", "--blocks": "1", "--model-dir": str(tmp / "m")}
    res = runner.invoke(app, args + [a for kv in tiny.items() for a in kv])
    assert res.exit_code == 0, res.output
    (key_dir,) = (tmp / "m").iterdir()
    return key_dir


def test_train_timeframe_1D_is_the_1d_of_the_model_key_and_manifest(model_1d: Path) -> None:
    """Before: ``--timeframe 1D`` trained a model keyed and described as 1D, which ``backtest
    --timeframe 1d`` then refused as a model of another timeframe."""
    assert model_1d.name == "EURUSD-1d-h2"
    (manifest,) = model_1d.glob("*.json")
    assert json.loads(manifest.read_text())["timeframe"] == "1d"


def test_backtest_1d_on_an_hourly_file_says_the_bars_are_an_hour_apart(model_1d: Path, tmp_path: Path) -> None:
    """Before: exit 1, "no forecast in the span" (on a longer file, exit 0: hourly bars
    forecast as days by the 1d model)."""
    src = bars_file(tmp_path / "eurusd_h1.csv", 300)
    out = tmp_path / "bt.csv"
    res = runner.invoke(
        app, ["backtest", str(src), "--symbol", "EURUSD", "--timeframe", "1d", "--model", str(model_1d), "-o", str(out)]
    )
    assert res.exit_code == 65, res.output
    one_line(res.stderr, "eurusd_h1.csv: its bars are 1h apart, not 1d: pass --timeframe 1h")
    assert not out.exists()


def test_backtest_1d_of_daily_bars_still_runs(model_1d: Path, tmp_path: Path) -> None:
    """Daily bars rolling at 17:00 New York time, Sunday to Thursday (weekend gaps of 72 hours,
    71 over the change to daylight-saving time) stay 1d bars."""
    days = pd.date_range("2015-01-04 17:00", periods=300, freq="D").tz_localize("America/New_York")  # a Sunday
    opens = [int(t.tz_convert("UTC").value // 1_000_000) for t in days if t.day_of_week not in (4, 5)][:200]
    frame = pd.read_csv(bars_file(tmp_path / "x.csv", 200))
    frame["timestamp"] = opens
    src = tmp_path / "eurusd_d1.csv"
    frame.to_csv(src, index=False)
    assert {b - a for a, b in zip(opens, opens[1:], strict=False)} == {DAY, 71 * HOUR, 72 * HOUR}
    out = tmp_path / "bt.csv"
    res = runner.invoke(
        app,
        ["backtest", str(src), "--symbol", "EURUSD", "--timeframe", "1d", "--model", str(model_1d), "-o", str(out)]
        + ["--every", "50", "-n", "16", "--steps", "4", "--touch-bands", "none"],
    )
    assert res.exit_code == 0, res.output
    assert len(pd.read_csv(out))


# -- Also: 1H and 60m are the 1h of files, models and stored forecasts ----------------------------


@pytest.mark.parametrize("written", ["1H", "60m"])
@pytest.mark.parametrize("tf_column", [None, "1h"])
def test_backtest_timeframe_1H_or_60m_is_the_1h_of_the_model_and_the_file(
    written: str, tf_column: str | None, tmp_path: Path
) -> None:
    """Before: exit 65, ``model EURUSD-1h-h24 forecasts 1h candles, not 1H``."""
    src = bars_file(tmp_path / "eurusd_h1.csv", 200, tf_column=tf_column)
    out = tmp_path / "bt.csv"
    args = ["backtest", str(src), "--symbol", "EURUSD", "--timeframe", written, "--model", str(MODEL_1H)]
    res = runner.invoke(app, [*args, "-o", str(out), *CHEAP])
    assert res.exit_code == 0, res.output
    assert set(pd.read_csv(out).timeframe) == {"1h"}


@pytest.mark.parametrize(("stored", "asked"), [("1H", "1h"), ("60m", "1h"), ("1D", "1d"), ("1h", "1H")])
def test_a_model_of_another_spelling_of_the_timeframe_fits(stored: str, asked: str) -> None:
    """Before: a model trained with ``--timeframe 1H`` (its manifest says 1H) was refused by
    ``backtest --timeframe 1h``: "model … forecasts 1H candles, not 1h"."""
    from streams.commands.backtest import check_model_fits

    check_model_fits({"key": "EURUSD-x-h2", "timeframe": stored, "symbol": "EURUSD"}, symbol="EURUSD", timeframe=asked)
    with pytest.raises(DataFormatError, match="forecasts 1M candles, not 1m"):
        check_model_fits({"key": "K", "timeframe": "1M", "symbol": "EURUSD"}, symbol="EURUSD", timeframe="1m")
    with pytest.raises(DataFormatError, match="forecasts 5m candles, not 1m"):
        check_model_fits({"key": "K", "timeframe": "5m", "symbol": "EURUSD"}, symbol="EURUSD", timeframe="1m")


def test_train_timeframe_1H_selects_the_1h_rows_of_a_file(tmp_path: Path) -> None:
    """Before: exit 65, ``eurusd_h1.csv holds no 1H candles (it holds 1h)``. The file is too
    short to train: the error past the selection says so."""
    src = bars_file(tmp_path / "eurusd_h1.csv", 60, tf_column="1h")
    res = runner.invoke(
        app, ["train", str(src), "--symbol", "EURUSD", "--timeframe", "1H", "--model-dir", str(tmp_path / "m")]
    )
    assert "holds no" not in res.stderr, res.stderr
    one_line(res.stderr, "not enough candles")


@pytest.fixture(scope="module")
def report_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from forex_diffusion.storage import make_engine, upsert_candles, upsert_forecasts

    levels = [0.05, 0.10, 0.20, 0.30, 0.40, 0.50, 0.60, 0.70, 0.80, 0.90, 0.95]
    t0 = 1_400_000_400_000  # on the hour
    rng = np.random.default_rng(3)
    closes = 1.1 + np.cumsum(rng.normal(0, 1e-4, 40))
    candles = [
        Candle(
            symbol="EURUSD",
            timeframe="1h",
            open_ms=t0 + i * HOUR,
            close_ms=t0 + (i + 1) * HOUR,
            open=float(c),
            high=float(c) + 2e-4,
            low=float(c) - 2e-4,
            close=float(c),
            volume=1.0,
            tick_count=1,
        )
        for i, c in enumerate(closes)
    ]
    spread = np.array(levels) - 0.5
    records = [
        {
            "symbol": "EURUSD",
            "timeframe": "1h",
            "as_of_ms": c.close_ms,
            "horizon": 2,
            "model_version": "v1",
            "last_close": c.close,
            "levels": levels,
            "quantiles": [[round(c.close + 4e-4 * k * x, 6) for x in spread] for k in (1, 2)],
            "rw_quantiles": [[round(c.close + 5e-4 * k * x, 6) for x in spread] for k in (1, 2)],
        }
        for c in candles[:30]
    ]
    path = tmp_path_factory.mktemp("report") / "fx.db"
    eng = make_engine(f"sqlite:///{path}")
    upsert_candles(eng, candles)
    upsert_forecasts(eng, records)
    eng.dispose()
    return path


@pytest.mark.parametrize(("symbol", "timeframe"), [("eurusd", "1H"), ("EUR/USD", "60m"), ("EURUSD", "1h")])
def test_report_symbol_and_timeframe_are_read_as_stored(
    symbol: str, timeframe: str, report_db: Path, tmp_path: Path
) -> None:
    """Before: exit 1, ``No forecasts of eurusd 1H: nothing to report``."""
    out = tmp_path / "r.html"
    res = runner.invoke(
        app, ["report", "--db", f"sqlite:///{report_db}", "-o", str(out), "--symbol", symbol, "--timeframe", timeframe]
    )
    assert res.exit_code == 0, res.output
    assert "report of EURUSD 1h: 30 forecasts" in res.stdout
    assert out.read_text(encoding="utf-8").lstrip().lower().startswith("<!doctype html")
