"""A comma list with an empty item (``--timeframes 1m,,5m``, ``1m,``, ``,1m``, ``1m, ,5m``) was
taken as if the item were not there (exit 0): a typo, or an unset ``"$A,$B"``, went unnoticed.
Every comma-list option of every command now refuses it: a usage error (2), one line naming
the option, the value and which item is empty. Spaces around an item are still ignored, and
an item named twice keeps each option's own rule (README, "Command line")."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from streams.cli import app

runner = CliRunner()

_BUNDLED = Path(__file__).resolve().parents[3] / "forex_diffusion" / "bundled" / "models" / "EURUSD-1h-h24"


def _argv(tmp: Path, command: str) -> list[str]:
    ticks = tmp / "EURUSD_ticks.csv"
    ticks.write_text("ts_ms,bid,ask\n1398902400292,1.38676,1.38686\n1398902460920,1.38676,1.38687\n")
    candles = tmp / "c.csv"
    candles.write_text("timestamp,symbol,open,high,low,close\n2014-05-01T00:00:00Z,EURUSD,1.1,1.2,1.0,1.1\n")
    return {
        "candles": ["candles", str(ticks), "-o", str(tmp / "o.csv")],
        "indicators": ["indicators", str(candles), "-o", str(tmp / "o.csv")],
        "train": ["train", str(candles), "--timeframe", "1h", "--model-dir", str(tmp / "m")],
        "train --symbol": ["train", str(candles), "--timeframe", "1h", "--model-dir", str(tmp / "m")],
        "backtest": [
            "backtest",
            str(candles),
            "--symbol",
            "EURUSD",
            "--timeframe",
            "1h",
            "--model",
            str(_BUNDLED),
            "-o",
            str(tmp / "o.csv"),
        ],
    }[command]


CASES = [
    ("candles", "--timeframes", "1m,,5m", "item 2"),
    ("candles", "--timeframes", "1m,", "the last"),
    ("candles", "--timeframes", ",1m", "the first"),
    ("candles", "--timeframes", "1m, ,5m", "item 2"),
    ("indicators", "--spec", "sma_20,,ema_20", "item 2"),
    ("indicators", "--spec", "sma_20,", "the last"),
    ("train --symbol", "--symbol", "EURUSD,,GBPUSD", "item 2"),
    ("train --symbol", "--symbol", "EURUSD,", "the last"),
    ("train", "--inputs", "indicators,,mtf", "item 2"),
    ("train", "--split", "2014-05-01,,2014-05-02", "item 2"),
    ("backtest", "--touch-bands", "0.5vol,,1vol", "item 2"),
    ("backtest", "--touch-bands", "1vol,", "the last"),
]


@pytest.mark.parametrize(("command", "option", "value", "where"), CASES)
def test_an_empty_item_of_a_comma_list_is_a_usage_error_naming_it(
    tmp_path: Path, command: str, option: str, value: str, where: str
) -> None:
    argv = _argv(tmp_path, command)
    if command == "train":
        argv += ["--symbol", "EURUSD"]
    res = runner.invoke(app, [*argv, option, value])
    assert res.exit_code == 2, (res.exit_code, res.output)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert option in lines[0] and repr(value) in lines[0] and f"empty item ({where}" in lines[0], lines[0]
    assert "Traceback" not in res.output
    assert not (tmp_path / "o.csv").exists() and not (tmp_path / "m").exists()
