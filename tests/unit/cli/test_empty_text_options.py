"""An option given an empty text (``--from "$UNSET"``) was taken for the option not given:
``backtest --from ""`` scored the whole file, ``--touch-bands ""`` scored no touches (the
documented way is ``none``), ``train --until ""``, ``--split ""`` and ``--inputs ""`` were
ignored, and ``indicators --spec ""`` computed the default bank (found by an adversarial
hunt). Like an empty path, it is now a usage error (2), one line naming the option; an
empty environment variable is still no value."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from streams.cli import app

runner = CliRunner()

CASES = [
    ("backtest", "--from"),
    ("backtest", "--to"),
    ("backtest", "--plot-as-of"),
    ("backtest", "--touch-bands"),
    ("train", "--until"),
    ("train", "--split"),
    ("train", "--inputs"),
    ("indicators", "--spec"),
]


@pytest.mark.parametrize(("command", "option"), CASES)
def test_an_empty_text_option_is_a_usage_error(tmp_path: Path, command: str, option: str) -> None:
    src = tmp_path / "c.csv"
    src.write_text("timestamp,symbol,open,high,low,close\n2014-05-01T00:00:00Z,EURUSD,1.1,1.2,1.0,1.1\n")
    extra = {
        "backtest": [
            "--model",
            str(tmp_path),
            "--symbol",
            "EURUSD",
            "--timeframe",
            "1h",
            "-o",
            str(tmp_path / "o.csv"),
        ],
        "train": ["--symbol", "EURUSD", "--timeframe", "1h", "--model-dir", str(tmp_path / "m")],
    }.get(command, [])
    res = runner.invoke(app, [command, str(src), *extra, option, ""])
    assert res.exit_code == 2, (res.exit_code, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and option in lines[0] and "empty" in lines[0], res.stderr
    assert "Traceback" not in res.stderr


def test_an_empty_environment_variable_is_still_no_value(tmp_path: Path) -> None:
    res = runner.invoke(
        app, ["models", "list", "--db", f"sqlite:///{tmp_path / 'none.db'}"], env={"FOREXD_LOG_LEVEL": ""}
    )
    assert (
        "value is empty" not in res.stderr and "does not exist" in res.stderr
    )  # the option's default: the command ran (and said the database is missing)
