"""``forexd`` leftovers of the boundary hunts (8), each a failure left unfixed before:

1. ``train``/``backtest --symbol X`` of a candle file with rows whose symbol cell is blank
   dropped those rows unsaid (the reader's selection kept only X's); a row the reader could not
   read (a price that is no number) was dropped unsaid too. Now each is refused and counted on
   standard error with its line, as ``forexd indicators`` and ``forexd candles`` count them. A
   file whose symbol column is blank on every row said "holds no EURUSD candles (it holds ):
   pass one of those to --symbol".
2. ``candles``/``train``/``backtest --symbol X`` of a file whose symbol column holds numbers
   (``1``) advised "pass one of those to --symbol", of values no ``--symbol`` takes (and
   train/backtest of a column blank on every row said "it holds )"); the refusal now names
   what the column holds and the fix.
3. ``train``/``backtest --timeframe 1d`` of fewer than 10 hourly bars said "candles must have
   strictly increasing close times" (train) or "no forecast in the span …: widen --from/--to"
   (backtest); now, as for a longer file: its bars are 1h apart, with their count and the
   candles needed. Of too few bars of the right timeframe, backtest said "widen --from/--to",
   which cannot help: it now says the file is too short.
4. ``backtest --symbol 1`` (or ``é``) was refused after the model loaded, "symbol '1' must be
   six upper-case letters", naming no option; ``train --symbol 1`` read the file first and said
   "pass one of those"; ``train --symbol all`` of a symbol column holding ``1`` said the same
   usage error of a value never given. Now a usage error of ``--symbol``, or the file's column named.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from streams.cli import app

from .test_cli_boundary_3 import one_line

ROOT = Path(__file__).resolve().parents[3]
MODEL_1H = ROOT / "forex_diffusion" / "bundled" / "models" / "EURUSD-1h-h24"
START_MS = 1_451_606_400_000  # 2016-01-01 00:00 UTC
HOUR = 3_600_000
runner = CliRunner()
# one forecast of the bundled 1h model, cheaply
CHEAP = ["--every", "1000", "-n", "16", "--steps", "4", "--touch-bands", "none"]
# a tiny model: a few optimiser steps (only what the command reads and says matters here)
TINY = ["--horizon", "2", "--window", "8", "--max-steps", "2", "--calib-windows", "64", "--width", "8", "--blocks", "1"]


def bars_file(path: Path, n: int, *, symbol: object = "EURUSD") -> Path:
    """``n`` hourly EUR/USD-like bars, ``timestamp,symbol,open,high,low,close``; ``symbol`` is
    the cell of each row (a function of its index, or one text for all)."""
    rows = ["timestamp,symbol,open,high,low,close"]
    for i in range(n):
        p = 1.1 * (1 + 0.002 * math.sin(i / 5) + 0.0007 * ((i * 7919) % 13 - 6) / 6)
        sym = symbol(i) if callable(symbol) else symbol
        rows.append(f"{START_MS + i * HOUR},{sym},{p:.5f},{p * 1.001:.5f},{p * 0.999:.5f},{p:.5f}")
    path.write_text("\n".join(rows) + "\n")
    return path


def blank_at(*at: int) -> object:
    """A ``symbol`` of :func:`bars_file`: EURUSD, blank on the rows of index ``at``."""
    return lambda i: "" if i in at else "EURUSD"


def tick_file(path: Path, symbol: object) -> Path:
    rows = ["timestamp,symbol,bid,ask"]
    for i in range(120):
        sym = symbol(i) if callable(symbol) else symbol
        rows.append(f"{START_MS + i * 1000},{sym},1.1000{i % 10},1.1002{i % 10}")
    path.write_text("\n".join(rows) + "\n")
    return path


def model_of(tmp: Path, timeframe: str) -> Path:
    """A real checkpoint's key directory (a copy of the bundled 1h model) whose manifest names
    ``timeframe``: ``Predictor.load`` reads the manifest as written."""
    key_dir = tmp / f"model-{timeframe}"
    shutil.copytree(MODEL_1H, key_dir)
    manifest_path = next(key_dir.glob("*.json"))
    manifest = json.loads(manifest_path.read_text())
    manifest["timeframe"] = manifest["train_config"]["timeframe"] = timeframe
    manifest_path.write_text(json.dumps(manifest))
    return key_dir


def backtest(src: Path, out: Path, *args: str, model: Path = MODEL_1H, timeframe: str = "1h") -> tuple[int, str]:
    res = runner.invoke(
        app,
        ["backtest", str(src), "--symbol", "EURUSD", "--timeframe", timeframe, "--model", str(model), "-o", str(out)]
        + list(args),
    )
    return res.exit_code, res.stderr


def train(src: Path, md: Path, *args: str, symbol: str = "EURUSD", timeframe: str = "1h") -> tuple[int, str, str]:
    res = runner.invoke(
        app, ["train", str(src), "--symbol", symbol, "--timeframe", timeframe, "--model-dir", str(md), *args]
    )
    return res.exit_code, res.stdout, res.stderr


# -- 1: rows whose symbol is blank, and rows the reader refused, are counted --------------------


def test_backtest_counts_the_rows_whose_symbol_is_blank(tmp_path: Path) -> None:
    """Before: the 3 blank rows were dropped unsaid (no line on standard error, exit 0)."""
    src = bars_file(tmp_path / "eurusd.csv", 200, symbol=blank_at(7, 57, 107))
    code, err = backtest(src, tmp_path / "bt.csv", *CHEAP)
    assert code == 0, err
    assert "eurusd.csv EURUSD: refused 3 of 200 candles (unknown_symbol=3; first at line 9)" in err, err
    assert "Traceback" not in err


def test_train_counts_the_rows_whose_symbol_is_blank(tmp_path: Path) -> None:
    """Before: the 2 blank rows were dropped unsaid, and the model trained without a word."""
    src = bars_file(tmp_path / "eurusd.csv", 1000, symbol=blank_at(100, 300))
    md = tmp_path / "m"
    code, out, err = train(src, md, *TINY)
    assert code == 0, out + err
    assert "eurusd.csv EURUSD: refused 2 of 1000 candles (unknown_symbol=2; first at line 102)" in err, err
    assert any(md.rglob("*.pt"))


def test_global_train_over_all_symbols_of_a_file_with_blank_rows(tmp_path: Path) -> None:
    """Before: ``--symbol all`` of a file of EURUSD and GBPUSD rows with one blank row was
    refused, "names no symbols: pass --symbol"; now its two series train, and the blank row,
    no other symbol's, is counted as refused in each."""
    src = tmp_path / "pairs.csv"
    lines = bars_file(tmp_path / "one.csv", 1000).read_text().splitlines()
    gbp = [ln.replace(",EURUSD,", ",GBPUSD,") for ln in lines[1:]]
    eur = lines[1:]
    eur[300] = eur[300].replace(",EURUSD,", ",,")
    src.write_text("\n".join([lines[0], *eur, *gbp]) + "\n")
    md = tmp_path / "m"
    code, out, err = train(src, md, *TINY, symbol="all")
    assert code == 0, out + err
    assert "global model" in out and "EURUSD" in out and "GBPUSD" in out
    for sym, n in (("EURUSD", 1000), ("GBPUSD", 1001)):  # EURUSD's 999 rows, GBPUSD's 1000, and the blank one
        assert f"pairs.csv {sym}: refused 1 of {n} candles (unknown_symbol=1; first at line 302)" in err, err


def test_backtest_counts_a_row_the_reader_refused(tmp_path: Path) -> None:
    """Before: a row whose open was ``abc`` was dropped unsaid (no line, exit 0)."""
    src = bars_file(tmp_path / "eurusd.csv", 200)
    lines = src.read_text().splitlines()
    cells = lines[9].split(",")
    cells[2] = "abc"
    lines[9] = ",".join(cells)
    src.write_text("\n".join(lines) + "\n")
    code, err = backtest(src, tmp_path / "bt.csv", *CHEAP)
    assert code == 0, err
    assert "eurusd.csv EURUSD: refused 1 of 200 candles (malformed=1; first at line 10)" in err, err


@pytest.mark.parametrize("command", ["train", "backtest"])
def test_a_symbol_column_blank_on_every_row_is_said(command: str, tmp_path: Path) -> None:
    """Before: "holds no EURUSD candles (it holds ): pass one of those to --symbol"."""
    src = bars_file(tmp_path / "eurusd.csv", 200, symbol="")
    if command == "train":
        code, _, err = train(src, tmp_path / "m")
    else:
        code, err = backtest(src, tmp_path / "bt.csv")
    assert code == 65, err
    line = one_line(err, "eurusd.csv holds no EURUSD candles", "its symbol column is blank on every row")
    assert "write the pair in it, or remove the column (--symbol EURUSD then names every row)" in line
    assert "(it holds )" not in line


def test_blank_rows_beside_other_symbols_are_said_with_them(tmp_path: Path) -> None:
    """Before: "holds no EURUSD candles (it holds , GBPUSD)": a blank listed as a symbol."""
    src = bars_file(tmp_path / "gbpusd.csv", 200, symbol=lambda i: "" if i == 7 else "GBPUSD")
    code, err = backtest(src, tmp_path / "bt.csv")
    assert code == 65, err
    one_line(
        err, "gbpusd.csv holds no EURUSD candles (it holds GBPUSD, and 1 rows without a symbol): pass one of those"
    )


# -- 2: a symbol column of numbers names what it holds ------------------------------------------


@pytest.mark.parametrize("command", ["train", "backtest"])
def test_candle_file_whose_symbol_column_holds_numbers(command: str, tmp_path: Path) -> None:
    """Before: "holds no EURUSD candles (it holds 1): pass one of those to --symbol"."""
    src = bars_file(tmp_path / "eurusd.csv", 200, symbol="1")
    if command == "train":
        code, _, err = train(src, tmp_path / "m")
    else:
        code, err = backtest(src, tmp_path / "bt.csv")
    assert code == 65, err
    line = one_line(err, "eurusd.csv holds no EURUSD candles: its symbol column holds no symbol (it holds '1')")
    assert "pass one of those" not in line and "write the pair in it" in line


@pytest.mark.parametrize(
    ("symbol", "said"),
    [
        ("1", "its symbol column holds no symbol (it holds '1')"),
        (lambda i: str(i), "its symbol column holds no symbol (it holds '0', '1', '10', '100', '101' and 115 more)"),
    ],
)
def test_candles_symbol_over_a_column_of_no_symbol(symbol: object, said: str, tmp_path: Path) -> None:
    """Before: "holds no EURUSD ticks (it holds 1): pass one of those to --symbol": no --symbol
    takes 1. (A column blank on every row: test_cli_boundary_4.)"""
    src = tick_file(tmp_path / "ticks.csv", symbol)
    out = tmp_path / "c.csv"
    res = runner.invoke(app, ["candles", str(src), "--symbol", "eur/usd", "-o", str(out)])
    assert res.exit_code == 65, res.output
    line = one_line(res.stderr, "ticks.csv holds no EURUSD ticks", said)
    assert "pass one of those" not in line
    assert "write the ticks' pair (EURUSD) in that column, or remove the column (--symbol EURUSD" in line
    assert not out.exists()


def test_candles_symbol_over_a_column_of_other_symbols_still_lists_them(tmp_path: Path) -> None:
    src = tick_file(tmp_path / "ticks.csv", "GBPUSD")
    res = runner.invoke(app, ["candles", str(src), "--symbol", "EURUSD", "-o", str(tmp_path / "c.csv")])
    assert res.exit_code == 65, res.output
    one_line(res.stderr, "holds no EURUSD ticks (it holds GBPUSD): pass one of those to --symbol")


# -- 3: too few bars of a finer timeframe, and too few bars at all ------------------------------


@pytest.mark.parametrize("n", [2, 5, 9])
def test_backtest_1d_of_a_few_hourly_bars_names_their_spacing(n: int, tmp_path: Path) -> None:
    """Before: exit 1, "no forecast in the span (…; the model needs 48 candles of context
    before --from): widen --from/--to"."""
    src = bars_file(tmp_path / "eurusd_h1.csv", n)
    out = tmp_path / "bt.csv"
    code, err = backtest(src, out, model=model_of(tmp_path, "1d"), timeframe="1d")
    assert code == 65, err
    one_line(
        err,
        f"eurusd_h1.csv: its {n} bars are 1h apart, not 1d: pass --timeframe 1h",
        "(or the file of 1d candles, at least 49 of them)",
    )
    assert not out.exists()


def test_train_1d_of_a_few_hourly_bars_names_their_spacing(tmp_path: Path) -> None:
    """Before: exit 2, "candles must have strictly increasing close times"."""
    src = bars_file(tmp_path / "eurusd_h1.csv", 5)
    code, out, err = train(src, tmp_path / "m", timeframe="1d")
    assert code == 65, out + err
    one_line(err, "eurusd_h1.csv: its 5 bars are 1h apart, not 1d: pass --timeframe 1h", "at least 73 of them")


def test_backtest_of_too_few_bars_says_the_file_is_too_short(tmp_path: Path) -> None:
    """Before: "no forecast in the span (…): widen --from/--to", which no --from/--to helps."""
    src = bars_file(tmp_path / "eurusd_h1.csv", 5)
    code, err = backtest(src, tmp_path / "bt.csv")
    assert code == 1, err
    line = one_line(err, "eurusd_h1.csv holds 5 1h candles", "the model needs at least 49", "pass a longer file")
    assert "widen" not in line


def test_a_few_daily_bars_over_a_weekend_are_not_refused_for_their_spacing(tmp_path: Path) -> None:
    """Of fewer than 10 bars only a finer spacing is refused: 3 daily bars across a weekend
    (gaps of 1 and 3 days) are read as daily, and found too few."""
    src = tmp_path / "eurusd_d1.csv"
    rows = ["timestamp,symbol,open,high,low,close"]
    for day in (0, 1, 4):  # Thursday, Friday, Monday
        rows.append(f"{START_MS + day * 24 * HOUR},EURUSD,1.1,1.1011,1.0989,1.1")
    src.write_text("\n".join(rows) + "\n")
    code, err = backtest(src, tmp_path / "bt.csv", model=model_of(tmp_path, "1d"), timeframe="1d")
    assert code == 1, err
    one_line(err, "eurusd_d1.csv holds 3 1d candles", "at least 49")


# -- wrong values of the options ------------------------------------------------------------------


@pytest.mark.parametrize("symbol", ["1", "é", "EUR-US"])
def test_backtest_symbol_that_is_no_symbol_is_a_usage_error_naming_the_option(symbol: str, tmp_path: Path) -> None:
    """Before: exit 2, "symbol '1' must be six upper-case letters" after the model loaded, naming
    no option."""
    src = bars_file(tmp_path / "eurusd.csv", 200)
    res = runner.invoke(
        app,
        ["backtest", str(src), "--symbol", symbol, "--timeframe", "1h", "--model", str(MODEL_1H)]
        + ["-o", str(tmp_path / "bt.csv")],
    )
    assert res.exit_code == 2, res.output
    one_line(res.stderr, "Invalid value for '--symbol'", "must be six upper-case letters")


def test_train_symbol_that_is_no_symbol_is_a_usage_error_naming_the_option(tmp_path: Path) -> None:
    """Before: exit 65 after the file was read, "holds no 1 candles (it holds EURUSD): pass one
    of those to --symbol"."""
    src = bars_file(tmp_path / "eurusd.csv", 200)
    code, out, err = train(src, tmp_path / "m", symbol="1")
    assert code == 2, out + err
    one_line(err, "Invalid value for '--symbol'", "symbol '1' must be six upper-case letters")


def test_global_train_over_a_symbol_column_of_numbers_names_the_column(tmp_path: Path) -> None:
    """Before: exit 2, "symbol '1' must be six upper-case letters": a usage error for a value
    the file holds, not one given."""
    src = bars_file(tmp_path / "pairs.csv", 200, symbol=lambda i: "EURUSD" if i % 2 else "1")
    code, out, err = train(src, tmp_path / "m", symbol="all")
    assert code == 65, out + err
    one_line(err, "pairs.csv: its symbol column holds values that are no symbol ('1')", "--symbol A,B")


@pytest.mark.parametrize(
    ("symbol", "said"),
    [
        (blank_at(10, 50), None),
        ("", "its symbol column is blank on every row; write the pair in it"),
        ("1", "its symbol column holds no symbol (it holds '1'); write the pair in it"),
    ],
    ids=["blank rows", "all blank", "numbers"],
)
def test_indicators_symbol_counts_blank_rows_and_names_a_column_of_no_symbol(
    symbol: object, said: str | None, tmp_path: Path
) -> None:
    """``indicators --symbol EURUSD`` dropped the rows whose symbol is blank unsaid (the
    reader's ``select_series``: without ``--symbol`` they were refused as ``unknown_symbol``),
    and over a column of no symbol said "(it holds ): pass one of those to --symbol"."""
    src = bars_file(tmp_path / "c.csv", 120, symbol=symbol)
    out = tmp_path / "i.csv"
    res = runner.invoke(app, ["indicators", str(src), "--symbol", "EURUSD", "--spec", "sma_2", "-o", str(out)])
    if said is not None:
        assert res.exit_code == 65, res.output
        one_line(res.stderr, "c.csv holds no EURUSD candles: " + said)
        return
    assert res.exit_code == 0, res.output
    assert "candles=118 " in res.stderr and "rejected=2 (unknown_symbol=2)" in res.stderr, res.stderr
    plain = runner.invoke(app, ["indicators", str(src), "--spec", "sma_2", "-o", str(tmp_path / "j.csv")])
    assert plain.exit_code == 0 and out.read_text() == (tmp_path / "j.csv").read_text()  # as without --symbol


# -- found by a later hunt: backtest's own choices said as the checkpoint's, and its context ----


def test_backtest_device_cuda_without_cuda_is_said_as_the_device_not_the_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It said "checkpoint does not match its manifest (device 'cuda' requested but CUDA is not
    available)", after reading the file; ``train --device cuda`` said it right."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    src = bars_file(tmp_path / "c.csv", 60)
    code, err = backtest(src, tmp_path / "b.csv", "--device", "cuda", *CHEAP)
    assert code == 2, err
    line = one_line(err, "device 'cuda' requested but CUDA is not available")
    assert "checkpoint" not in line and "manifest" not in line


def test_backtest_no_forecast_in_the_span_names_the_context_the_model_needs(tmp_path: Path) -> None:
    """A model of window 8 needs 24 candles before its first forecast (its warm-up): the
    message said "the model needs 8 candles of context before --from" with 10 before it."""
    src = bars_file(tmp_path / "c.csv", 1000)
    md = tmp_path / "models"
    code, _, err = train(src, md, *TINY)
    assert code == 0, err
    model = next(md.rglob("*.pt"))
    from forex_diffusion.diffusion.predictor import Predictor

    spec = Predictor.load(model).context_spec
    assert spec.window == 8 < spec.ready_after
    code, err = backtest(
        src, tmp_path / "b.csv", *CHEAP, "--from", "2016-01-01T10:00", "--to", "2016-01-01T20:00", model=model
    )
    assert code == 1, err
    one_line(err, f"the model needs {spec.ready_after} candles of context before --from): widen --from/--to")


# -- review of the fixes above ---------------------------------------------------------------------


def test_blank_rows_between_a_symbols_bars_do_not_count_in_their_spacing(tmp_path: Path) -> None:
    """A blank row half an hour after each hourly bar made the bars "30m apart, not 1h: pass
    --timeframe 30m" in train, backtest and indicators: the blank rows, kept to be refused,
    were measured with the symbol's bars."""
    rows = ["timestamp,symbol,open,high,low,close"]
    for i in range(100):
        rows += [f"{START_MS + i * HOUR},EURUSD,1.1,1.2,1.0,1.1", f"{START_MS + i * HOUR + HOUR // 2},,1.1,1.2,1.0,1.1"]
    src = tmp_path / "c.csv"
    src.write_text("\n".join(rows) + "\n")
    res = runner.invoke(
        app,
        [
            "indicators",
            str(src),
            "--symbol",
            "EURUSD",
            "--timeframe",
            "1h",
            "--spec",
            "sma_2",
            "-o",
            str(tmp_path / "i.csv"),
        ],
    )
    assert res.exit_code == 0, res.stderr
    assert "candles=100 " in res.stderr and "unknown_symbol=100" in res.stderr, res.stderr
    from streams.commands.backtest import read_series

    assert len(read_series(src, "EURUSD", timeframe="1h", price="mid").frame) == 200


def test_a_refused_row_of_another_symbol_is_not_counted_as_the_chosen_ones(tmp_path: Path) -> None:
    """30 good EURUSD bars and a GBPUSD row whose open is no number: backtest and train said
    "EURUSD: refused 1 of 31 candles (malformed=1; first at line 32)"."""
    from streams.commands.backtest import read_series

    src = bars_file(tmp_path / "c.csv", 30)
    src.write_text(src.read_text() + f"{START_MS + 30 * HOUR},GBPUSD,x,1.3,1.2,1.25\n")
    assert read_series(src, "EURUSD", timeframe="1h", price="mid").rejects == []
    own = bars_file(tmp_path / "d.csv", 30)
    own.write_text(own.read_text() + f"{START_MS + 30 * HOUR},EURUSD,x,1.3,1.2,1.25\n")
    assert [r.line for r in read_series(own, "EURUSD", timeframe="1h", price="mid").rejects] == [32]


def test_refused_rows_of_another_symbol_are_not_counted_and_the_chosen_ones_are(tmp_path: Path) -> None:
    """A fresh-eye review: ``indicators --symbol EURUSD`` counted 70 GBPUSD rows whose open is
    no number as its own; ``backtest`` of a two-symbol file said nothing of a EURUSD row whose
    open is no number (the refused rows were counted only for a file of one series)."""
    rows = bars_file(tmp_path / "one.csv", 200).read_text().splitlines()
    rows[10] = rows[10].replace(",EURUSD,", ",EURUSD,abc,", 1).rsplit(",", 1)[0]  # line 11: open is no number
    other = [r.replace(",EURUSD,", ",GBPUSD,") for r in rows[1:]]
    other[5] = other[5].split(",GBPUSD,")[0] + ",GBPUSD,xyz,1.3,1.2,1.25"
    src = tmp_path / "two.csv"
    src.write_text("\n".join([*rows, *other]) + "\n")
    res = runner.invoke(
        app, ["indicators", str(src), "--symbol", "EURUSD", "--spec", "sma_2", "-o", str(tmp_path / "i.csv")]
    )
    assert res.exit_code == 0, res.stderr
    assert "rejected=1 (malformed=1)" in res.stderr, res.stderr
    code, err = backtest(src, tmp_path / "bt.csv", *CHEAP)
    assert code == 0, err
    assert "two.csv EURUSD: refused 1 of 200 candles (malformed=1; first at line 11)" in err, err
