"""Numbers a hostile user gave that were taken, or refused late without naming the option:

* ``retrain --timeout inf`` (or ``1e400``) was taken: a ``--wait`` that never ends
  (``tail --timeout inf`` was already refused);
* ``retrain --local --max-minutes nan`` said ``TrainConfig: ConfigError: max_minutes must be > 0,
  got nan``, naming no option, and ``inf`` was taken (``train`` refuses both: "Infinity" in
  the manifest);
* ``train --width 0`` / ``--blocks 65`` were refused only after the candle file was read
  (``width must be in 1..4096``), and a missing file was said first.

Each is now a usage error (2) naming the option, before any work."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from streams.cli import app

runner = CliRunner()
_OFFLINE = {"FOREXD_BROKER_URL": "kafka://127.0.0.1:1", "FOREXD_BROKER_WAIT_S": "0", "FOREXD_DATABASE_URL": ""}


def _one_usage_line(res: Any, *says: str) -> None:
    assert res.exit_code == 2, (res.exit_code, res.output)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and all(s in lines[0] for s in says), lines


@pytest.mark.parametrize("value", ["inf", "1e400", "nan"])
def test_retrain_timeout_must_be_finite(value: str) -> None:
    res = runner.invoke(app, ["retrain", "--symbol", "EURUSD", "--timeframe", "1h", "--timeout", value], env=_OFFLINE)
    _one_usage_line(res, "--timeout must be a positive, finite number of seconds")


@pytest.mark.parametrize("value", ["nan", "inf", "1e308", "-1", "0"])
def test_retrain_local_max_minutes_is_checked_naming_the_option(tmp_path: Path, value: str) -> None:
    argv = ["retrain", "--local", "--symbol", "EURUSD", "--timeframe", "1h", "--max-minutes", value]
    res = runner.invoke(app, [*argv, "--db", f"sqlite:///{tmp_path / 'none.db'}"], env=_OFFLINE)
    _one_usage_line(res, "--max-minutes must be a positive, finite number of minutes")


@pytest.mark.parametrize(
    ("option", "value", "says"),
    [
        ("--width", "0", "--width must be at least 1"),
        ("--width", "-5", "--width must be at least 1"),
        ("--width", "4097", "--width must be at most 4096"),
        ("--blocks", "0", "--blocks must be at least 1"),
        ("--blocks", "65", "--blocks must be at most 64"),
    ],
)
def test_train_width_and_blocks_are_checked_before_the_file(tmp_path: Path, option: str, value: str, says: str) -> None:
    argv = ["train", str(tmp_path / "missing.csv"), "--symbol", "EURUSD", "--timeframe", "1h"]
    res = runner.invoke(app, [*argv, "--model-dir", str(tmp_path / "m"), option, value])
    _one_usage_line(res, says)
