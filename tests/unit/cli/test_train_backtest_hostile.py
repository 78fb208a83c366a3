"""``forexd train``/``backtest``/``replay``/``report`` with hostile input: candles the stream
refuses, timeframes and integer options out of any bound, a closed standard error.

Before, an ``inf``/``nan``/negative close or high < low reached the model (``math domain
error`` traceback in ``forex_diffusion/diffusion/context.py``); now each such row is refused
with its reason as the candle agent refuses it, and dropped as the stream drops it.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from streams.cli import app

ROOT = Path(__file__).resolve().parents[3]
MODEL_1H = ROOT / "forex_diffusion" / "bundled" / "models" / "EURUSD-1h-h24"
START_MS = 1_451_606_400_000  # 2016-01-01
HOUR = 3_600_000
runner = CliRunner()


def _rows(n: int) -> list[list[str]]:
    rows = []
    for i in range(n):
        p = 1.1 * (1 + 0.002 * math.sin(i / 5) + 0.0007 * ((i * 7919) % 13 - 6) / 6)
        rows.append(
            [str(START_MS + i * HOUR), "EURUSD", f"{p:.5f}", f"{p * 1.001:.5f}", f"{p * 0.999:.5f}", f"{p:.5f}"]
        )
    return rows


def _write(path: Path, rows: list[list[str]]) -> Path:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["timestamp", "symbol", "open", "high", "low", "close"])
        w.writerows(rows)
    return path


def _hostile(rows: list[list[str]], kind: str, at: tuple[int, ...]) -> list[list[str]]:
    out = [list(r) for r in rows]
    for i in at:
        if kind == "high<low":
            out[i][3], out[i][4] = out[i][4], out[i][3]
        else:
            out[i][5] = kind
    return out


def _needs_model() -> None:
    if not MODEL_1H.is_dir():
        pytest.skip(f"bundled model {MODEL_1H} absent")


def _no_traceback(res: object) -> None:
    text = getattr(res, "stderr", "") + getattr(res, "stdout", "")
    assert "Traceback" not in text and "domain error" not in text, text
    assert getattr(res, "exception", None) is None or isinstance(res.exception, SystemExit), repr(res.exception)  # type: ignore[attr-defined]


BAD = [
    ("inf", (150,), "non_finite=1"),
    ("nan", (150,), "non_finite=1"),
    ("-1.1", (150,), "non_positive=1"),
    ("high<low", (150, 151), "inconsistent=2"),
]


@pytest.mark.parametrize(("kind", "at", "summary"), BAD)
def test_backtest_refuses_candles_the_stream_refuses_and_gives_the_streams_numbers(
    tmp_path: Path, kind: str, at: tuple[int, ...], summary: str
) -> None:
    """A refused row is dropped as the candle agent drops it: the output equals that of the
    file without the row (the forecaster never sees a dead-lettered candle)."""
    _needs_model()
    rows = _rows(300)
    hostile = _write(tmp_path / "bad.csv", _hostile(rows, kind, at))
    clean = _write(tmp_path / "clean.csv", [r for i, r in enumerate(rows) if i not in at])
    args = ["--symbol", "EURUSD", "--timeframe", "1h", "--model", str(MODEL_1H), "--every", "25", "-n", "16",
            "--steps", "4", "--touch-bands", "none"]  # fmt: skip
    bad = runner.invoke(app, ["backtest", str(hostile), *args, "-o", str(tmp_path / "bad_out.csv")])
    _no_traceback(bad)
    assert bad.exit_code == 0, bad.output
    assert f"refused {len(at)} of 300 candles ({summary}; first at line {at[0] + 2})" in bad.stderr
    good = runner.invoke(app, ["backtest", str(clean), *args, "-o", str(tmp_path / "clean_out.csv")])
    assert good.exit_code == 0, good.output
    assert (tmp_path / "bad_out.csv").read_text() == (tmp_path / "clean_out.csv").read_text()


def test_backtest_of_a_file_every_candle_of_which_is_refused_says_so(tmp_path: Path) -> None:
    _needs_model()
    rows = _hostile(_rows(60), "inf", tuple(range(60)))
    res = runner.invoke(
        app,
        [
            "backtest",
            str(_write(tmp_path / "c.csv", rows)),
            "--symbol",
            "EURUSD",
            "--timeframe",
            "1h",
            "--model",
            str(MODEL_1H),
            "-o",
            str(tmp_path / "o.csv"),
        ],  # fmt: skip
    )
    _no_traceback(res)
    assert res.exit_code == 65, res.output
    assert "every candle (60) is one the stream refuses (non_finite=60; first at line 2)" in res.stderr
    assert not (tmp_path / "o.csv").exists()


TRAIN_ARGS = ["--symbol", "EURUSD", "--timeframe", "1h", "--horizon", "4", "--split", "2016-01-31,2016-02-04",
              "--max-steps", "2", "--window", "12", "--width", "16", "--blocks", "1", "--calib-windows", "16",
              "--device", "cpu", "--max-minutes", "5"]  # fmt: skip


@pytest.mark.parametrize(("kind", "at", "summary"), [BAD[0], BAD[3]])
def test_train_refuses_candles_the_stream_refuses(tmp_path: Path, kind: str, at: tuple[int, ...], summary: str) -> None:
    """Before: ``math domain error`` traceback (inf) or a model trained on a bar high < low."""
    rows = _hostile(_rows(900), kind, at)
    res = runner.invoke(
        app, ["train", str(_write(tmp_path / "c.csv", rows)), *TRAIN_ARGS, "--model-dir", str(tmp_path / "m")]
    )
    _no_traceback(res)
    assert res.exit_code == 0, res.output
    assert f"refused {len(at)} of 900 candles ({summary}; first at line {at[0] + 2})" in res.stderr
    assert Path(res.stdout.strip().splitlines()[-1]).is_file()


def test_train_of_a_global_model_refuses_candles_the_stream_refuses(tmp_path: Path) -> None:
    rows = _rows(900)
    a = _write(tmp_path / "a.csv", _hostile(rows, "inf", (300,)))
    b = _write(tmp_path / "b.csv", rows)
    res = runner.invoke(app, ["train", str(a), str(b), *TRAIN_ARGS, "--model-dir", str(tmp_path / "m")])
    _no_traceback(res)
    assert res.exit_code == 0, res.output
    assert "a.csv EURUSD: refused 1 of 900 candles (non_finite=1; first at line 302)" in res.stderr


# --- --timeframe: '²m' (str.isdigit() true, int() refuses) and 5,000 digits (int()'s limit) ---

_TIMEFRAME_COMMANDS = {
    "train": ["train", "{f}", "--symbol", "EURUSD", "--model-dir", "{d}/m"],
    "backtest": ["backtest", "{f}", "--symbol", "EURUSD", "--model", str(MODEL_1H), "-o", "{d}/o.csv"],
    "replay": ["replay", "{f}"],
}


@pytest.mark.parametrize("command", sorted(_TIMEFRAME_COMMANDS))
@pytest.mark.parametrize(
    ("value", "needle"),
    [("\u00b2m", "unknown timeframe '\u00b2m'"), ("9" * 5000 + "m", "(5001 characters) is longer than a day")],
)
def test_a_timeframe_of_non_ascii_digits_or_5000_digits_is_a_usage_error(
    tmp_path: Path, command: str, value: str, needle: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FOREXD_BROKER_URL", "kafka://127.0.0.1:1")  # replay: never reached
    f = _write(tmp_path / "c.csv", _rows(10))
    args = [a.format(f=f, d=tmp_path) for a in _TIMEFRAME_COMMANDS[command]]
    res = runner.invoke(app, [*args, "--timeframe", value])
    _no_traceback(res)
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], res.stderr
