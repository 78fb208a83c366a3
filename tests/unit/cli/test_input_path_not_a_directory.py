"""An input path that goes on past a file as a directory's name does (``--model x.pt/``,
``candles ticks.csv/``, ``x.csv/.``) was read as the file itself, exit 0: ``Path`` drops the
``/``, where the system refuses the name ("Not a directory"). And ``x.csv/../y.csv`` was said
"does not exist". Every input path argument and option now refuses such a name: a usage
error (2), one line naming it and the file that is not a directory. A directory, where one
is taken (``--model DIR/``), still is."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from streams.cli import app

runner = CliRunner()

_BUNDLED = Path(__file__).resolve().parents[3] / "forex_diffusion" / "bundled" / "models" / "EURUSD-1h-h24"
_OFFLINE = {"FOREXD_BROKER_URL": "kafka://127.0.0.1:1", "FOREXD_BROKER_WAIT_S": "0", "FOREXD_DATABASE_URL": ""}


def _files(tmp: Path) -> tuple[Path, Path, Path]:
    ticks = tmp / "EURUSD_ticks.csv"
    ticks.write_text("ts_ms,bid,ask\n1398902400292,1.38676,1.38686\n1398902460920,1.38676,1.38687\n")
    candles = tmp / "c.csv"
    candles.write_text("timestamp,symbol,open,high,low,close\n2014-05-01T00:00:00Z,EURUSD,1.1,1.2,1.0,1.1\n")
    model = next(_BUNDLED.glob("*.pt"))
    return ticks, candles, model


def _argv(tmp: Path, command: str, ending: str) -> tuple[list[str], Path]:
    """The command line with one input given as ``<file><ending>``, and that file."""
    ticks, candles, model = _files(tmp)
    out = ["-o", str(tmp / "o.csv")]
    bt = ["--symbol", "EURUSD", "--timeframe", "1h"]
    db = f"sqlite:///{tmp / 'r.db'}"
    cases: dict[str, tuple[list[str], Path]] = {
        "candles": (["candles", f"{ticks}{ending}", *out], ticks),
        "indicators": (["indicators", f"{candles}{ending}", *out], candles),
        "backtest": (["backtest", f"{candles}{ending}", *bt, "--model", str(_BUNDLED), *out], candles),
        "backtest --model": (["backtest", str(candles), *bt, "--model", f"{model}{ending}", *out], model),
        "models register": (["models", "register", f"{model}{ending}", "--db", db], model),
        "train": (["train", str(candles), f"{candles}{ending}", *bt, "--model-dir", str(tmp / "m")], candles),
        "retrain --config": (
            ["retrain", "--local", *bt, "--config", f"{candles}{ending}", "--db", db],
            candles,
        ),
        "replay": (["replay", f"{ticks}{ending}"], ticks),
    }
    return cases[command]


COMMANDS = [
    "candles",
    "indicators",
    "backtest",
    "backtest --model",
    "models register",
    "train",
    "retrain --config",
    "replay",
]


@pytest.mark.parametrize("ending", ["/", "/.", "//"])
@pytest.mark.parametrize("command", COMMANDS)
def test_a_file_named_as_a_directory_is_a_usage_error(tmp_path: Path, command: str, ending: str) -> None:
    argv, file = _argv(tmp_path, command, ending)
    res = runner.invoke(app, argv, env=_OFFLINE)
    assert res.exit_code == 2, (res.exit_code, res.output)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert f"{file}{ending} ends as a directory's name does, and {file} is not a directory" in lines[0], lines[0]
    assert "Traceback" not in res.output
    assert not (tmp_path / "o.csv").exists() and not (tmp_path / "r.db").exists()


def test_a_name_going_on_under_a_file_is_said_so_not_missing(tmp_path: Path) -> None:
    ticks, _candles, _model = _files(tmp_path)
    res = runner.invoke(app, ["candles", f"{tmp_path / 'c.csv'}/../{ticks.name}", "-o", str(tmp_path / "o.csv")])
    assert res.exit_code == 2, (res.exit_code, res.output)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and f"goes on under {tmp_path / 'c.csv'}, which is not a directory" in lines[0], lines


def test_a_device_named_as_a_directory_is_a_usage_error(tmp_path: Path) -> None:
    _ticks, candles, _model = _files(tmp_path)
    argv = ["backtest", str(candles), "--symbol", "EURUSD", "--timeframe", "1h", "--model", "/dev/null/"]
    res = runner.invoke(app, [*argv, "-o", str(tmp_path / "o.csv")])
    assert res.exit_code == 2 and "/dev/null is not a directory" in res.stderr, (res.exit_code, res.stderr)
