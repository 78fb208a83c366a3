"""Review of 2dd98e3 (CLI and reader boundaries): what it broke for files and models that
worked before it.

A. ``candles --symbol X`` on a file with a symbol column: a row with no symbol was refused and
   listed (``unknown_symbol``); since the selection it vanished, uncounted.
B. ``train``/``backtest --timeframe 1H`` (or ``60m``) on a file whose timeframe column says
   ``1H`` (``60m``) read it; the option is now ``1h`` and the file's column is compared as
   written: "holds no 1h candles (it holds 1H): pass one of those", and passing it says the same.
C. A model trained before with ``--timeframe 1M`` (then one minute: its manifest says ``1M``)
   cannot be loaded since ``1M`` is refused, and ``--timeframe 1M`` is refused too.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from forex_diffusion.errors import DataFormatError
from streams.cli import app

from .test_cli_boundary_3 import one_line
from .test_cli_boundary_4 import CHEAP, MODEL_1H, bars_file, ticks_file

runner = CliRunner()


# -- A: candles --symbol keeps a row without a symbol, to refuse it ------------------------------


@pytest.mark.parametrize("blank", ["", "  "])
def test_candles_symbol_still_refuses_and_lists_rows_without_a_symbol(blank: str, tmp_path: Path) -> None:
    """Before: 120 ticks read, the 60 without a symbol not in ``--rejects`` and not counted."""
    src = ticks_file(tmp_path / "t.csv", ["EURUSD", blank], n=120)
    out, rej = tmp_path / "c.csv", tmp_path / "rej.csv"
    res = runner.invoke(app, ["candles", str(src), "--symbol", "EURUSD", "-o", str(out), "--rejects", str(rej)])
    assert res.exit_code == 0, res.stderr
    assert "unknown_symbol=60" in res.stderr
    refused = pd.read_csv(rej)
    assert len(refused) == 60 and set(refused.reason) == {"unknown_symbol"}
    assert set(pd.read_csv(out).symbol) == {"EURUSD"}


def test_candles_symbol_of_another_symbol_still_drops_its_rows_uncounted(tmp_path: Path) -> None:
    """The selection itself is kept: another symbol's rows are not refusals."""
    src = ticks_file(tmp_path / "t.csv", ["EURUSD", "GBPUSD", ""], n=120)
    rej = tmp_path / "rej.csv"
    res = runner.invoke(
        app, ["candles", str(src), "--symbol", "EURUSD", "-o", str(tmp_path / "c.csv"), "--rejects", str(rej)]
    )
    assert res.exit_code == 0, res.stderr
    assert len(pd.read_csv(rej)) == 40  # the blank ones only


# -- B: a file's timeframe column written 1H or 60m ---------------------------------------------


@pytest.mark.parametrize(("column", "option"), [("1H", "1H"), ("60m", "60m"), ("1H", "1h")])
def test_backtest_reads_a_file_whose_timeframe_column_says_1H(column: str, option: str, tmp_path: Path) -> None:
    """Before: ``--timeframe 1H`` on a ``1H`` column was read (train trained); now exit 65,
    'holds no 1h candles (it holds 1H): pass one of those to --timeframe', whatever is passed."""
    src = bars_file(tmp_path / "bars.csv", n=300, tf_column=column)
    res = runner.invoke(
        app,
        ["backtest", str(src), "--symbol", "EURUSD", "--timeframe", option, "--model", str(MODEL_1H)]
        + ["-o", str(tmp_path / "bt.csv"), *CHEAP],
    )
    assert "holds no" not in res.stderr
    assert res.exit_code == 0, res.stderr


# -- C: a model trained before as 1M -----------------------------------------------------------


def _model_keyed_1M(tmp_path: Path) -> Path:
    """The bundled 1h model as ``train --timeframe 1M`` wrote one before 2dd98e3: its manifest
    (and train_config) say ``1M``, read then as one minute."""
    model = tmp_path / "EURUSD-1M-h24"
    shutil.copytree(MODEL_1H, model)
    (manifest,) = model.glob("*.json")
    doc = json.loads(manifest.read_text())
    doc["timeframe"], doc["key"] = "1M", "EURUSD-1M-h24"
    doc["train_config"]["timeframe"] = "1M"
    manifest.write_text(json.dumps(doc))
    return model


def test_a_model_trained_before_as_1M_still_backtests_minute_bars(tmp_path: Path) -> None:
    """Before: ``--timeframe 1M`` backtested it (exit 0). Now ``--timeframe 1m``: 'checkpoint
    does not match its manifest', and ``--timeframe 1M``: 'M is a month': no way to use it."""
    model = _model_keyed_1M(tmp_path)
    src = bars_file(tmp_path / "bars.csv", n=400, step=60_000)
    res = runner.invoke(
        app,
        ["backtest", str(src), "--symbol", "EURUSD", "--timeframe", "1m", "--model", str(model)]
        + ["-o", str(tmp_path / "bt.csv"), *CHEAP],
    )
    assert res.exit_code == 0, res.stderr


def test_a_model_trained_before_as_1M_is_refused_in_one_line(tmp_path: Path) -> None:
    """Whatever the routing decides, the refusal today is one line, no traceback."""
    model = _model_keyed_1M(tmp_path)
    src = bars_file(tmp_path / "bars.csv", n=400, step=60_000)
    res = runner.invoke(
        app,
        ["backtest", str(src), "--symbol", "EURUSD", "--timeframe", "1m", "--model", str(model)]
        + ["-o", str(tmp_path / "bt.csv"), *CHEAP],
    )
    if res.exit_code != 0:
        one_line(res.stderr)


def test_a_model_trained_before_as_1M_reads_as_the_minutes_it_meant(tmp_path: Path) -> None:
    """Its manifest is read with ``1m`` (the load, ``check_model_fits``); another timeframe's
    refusal then names one a user can pass."""
    from forex_diffusion.diffusion.checkpoint import read_manifest
    from streams.commands.backtest import check_model_fits

    (path,) = _model_keyed_1M(tmp_path).glob("*.json")
    manifest = read_manifest(path)
    assert (manifest["timeframe"], manifest["train_config"]["timeframe"]) == ("1m", "1m")
    check_model_fits(manifest, symbol="EURUSD", timeframe="1m")
    with pytest.raises(DataFormatError, match="forecasts 1m candles, not 5m"):
        check_model_fits(manifest, symbol="EURUSD", timeframe="5m")
