"""``forexd train``: trains on a real file and prints the checkpoint path last."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from forex_diffusion.diffusion import Predictor
from streams.cli import app

from .conftest import HOURLY


def test_train_cli_prints_the_checkpoint_path_as_last_line(tmp_path: Path, hourly: object) -> None:
    res = CliRunner().invoke(
        app,
        [
            "train",
            str(HOURLY),
            "--symbol",
            "EURUSD",
            "--timeframe",
            "1h",
            "--horizon",
            "6",
            "--until",
            "2008-06-01",
            "--split",
            "2008-03-01,2008-04-15",
            "--max-steps",
            "4",
            "--window",
            "12",
            "--width",
            "16",
            "--blocks",
            "1",
            "--calib-windows",
            "64",
            "--model-dir",
            str(tmp_path),
            "--device",
            "cpu",
            "--seed",
            "3",
        ],
    )
    assert res.exit_code == 0, res.output
    last = res.output.strip().splitlines()[-1]
    path = Path(last)
    assert path.is_file() and path.parent == tmp_path / "EURUSD-1h-h6"
    manifest = json.loads(path.with_suffix(".json").read_text())
    assert manifest["train_config"]["seed"] == 3 and manifest["metrics"]["steps"] == 4
    assert manifest["data_window"]["last_close_ms"] <= 1_212_278_400_000  # 2008-06-01
    assert Predictor.load(path).horizon == 6


def test_train_cli_reports_bad_split_without_a_traceback(tmp_path: Path, hourly: object) -> None:
    res = CliRunner().invoke(
        app,
        [
            "train",
            str(HOURLY),
            "--symbol",
            "EURUSD",
            "--timeframe",
            "1h",
            "--until",
            "2008-06-01",
            "--split",
            "2030-01-01,2031-01-01",
            "--model-dir",
            str(tmp_path),
        ],
    )
    assert res.exit_code == 2 and "split leaves" in res.output


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--width", "100000000", "width must be at most 4096"),
        ("--blocks", "100000", "blocks must be at most 64"),
        ("--window", "100000000", "window must be at most 10000"),
        ("--horizon", "100000000", "horizon must be at most 10000"),
    ],
)
def test_train_cli_refuses_sizes_no_machine_can_allocate(tmp_path: Path, option: str, value: str, message: str) -> None:
    """Before, --width 1e8 and --window 1e8 were allocation tracebacks (and --blocks 1e5 ran on)."""
    res = CliRunner().invoke(
        app,
        [
            "train",
            str(HOURLY),
            "--symbol",
            "EURUSD",
            "--timeframe",
            "1h",
            "--model-dir",
            str(tmp_path / "m"),
            "--max-steps",
            "2",
            option,
            value,
        ],
    )
    assert res.exit_code == 2 and message in res.output, res.output
    assert not (tmp_path / "m").exists() or not any((tmp_path / "m").rglob("*.pt"))


def test_the_training_horizon_bound_is_what_a_forecast_record_carries() -> None:
    from forex_diffusion.diffusion.denoiser import HORIZON_MAX
    from forex_diffusion.wire import FORECAST_STEPS_MAX

    assert HORIZON_MAX == FORECAST_STEPS_MAX
