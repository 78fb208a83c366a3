"""``forexd train``/``backtest``/``replay``/``report`` with hostile input: candles the stream
refuses, timeframes and integer options out of any bound, a closed standard error.

Before, an ``inf``/``nan``/negative close or high < low reached the model (``math domain
error`` traceback in ``forex_diffusion/diffusion/context.py``); now each such row is refused
with its reason as the candle agent refuses it, and dropped as the stream drops it.
"""

from __future__ import annotations

import csv
import math
import os
import shlex
import subprocess
import sys
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
    [
        ("\u00b2m", "'\u00b2m' is not a timeframe (its count is not in ASCII digits)"),
        ("9" * 5000 + "m", "(5001 characters) is not a timeframe: it is longer than a day"),
    ],
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


# --- integer options without a ceiling ---


@pytest.mark.parametrize(
    ("option", "value", "needle"),
    [
        ("--window", "999999999999999999999999999999", "--window must be at most 1000000"),  # was OverflowError
        ("--window", "1000001", "--window must be at most 1000000"),
        ("--fans", "99999", "--fans must be at most 50"),  # was every forecast drawn: seconds, megabytes
        ("--fans", "51", "--fans must be at most 50"),
    ],
)
def test_report_refuses_a_window_or_fans_past_its_ceiling_before_opening_the_database(
    tmp_path: Path, option: str, value: str, needle: str
) -> None:
    missing = tmp_path / "none.db"  # never opened: its absence would be exit 66
    res = runner.invoke(app, ["report", "--db", f"sqlite:///{missing}", "-o", str(tmp_path / "r.html"), option, value])
    _no_traceback(res)
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and needle in lines[0], res.stderr
    assert not missing.exists() and not (tmp_path / "r.html").exists()


@pytest.mark.parametrize(("option", "value"), [("--window", "1000000"), ("--fans", "50")])
def test_report_takes_its_ceilings(tmp_path: Path, option: str, value: str) -> None:
    missing = tmp_path / "none.db"
    res = runner.invoke(app, ["report", "--db", f"sqlite:///{missing}", "-o", str(tmp_path / "r.html"), option, value])
    assert res.exit_code == 66, res.output  # past the options: the database is looked for


_BIG = "99999999999999999999999999999"


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["train", "{f}", "--symbol", "EURUSD", "--timeframe", "1h", "--model-dir", "{d}/m", "--max-steps", _BIG],
         "--max-steps must be at most 9223372036854775807"),
        (["train", "{f}", "--symbol", "EURUSD", "--timeframe", "1h", "--model-dir", "{d}/m", "--keep", _BIG],
         "--keep must be at most 9223372036854775807"),
        (["train", "{f}", "--symbol", "EURUSD", "--timeframe", "1h", "--model-dir", "{d}/m", "--calib-windows", _BIG],
         "--calib-windows must be at most 9223372036854775807"),
        (["train", "{f}", "--symbol", "EURUSD", "--timeframe", "1h", "--model-dir", "{d}/m", "--max-minutes", "inf"],
         "--max-minutes must be a positive, finite number"),  # was "Infinity" in the manifest (not JSON)
        (["train", "{f}", "--symbol", "EURUSD", "--timeframe", "1h", "--model-dir", "{d}/m", "--max-minutes", "1e308"],
         "--max-minutes must be a positive, finite number"),  # x 60 s: inf
        (["backtest", "{f}", "--symbol", "EURUSD", "--timeframe", "1h", "--model", str(MODEL_1H), "-o", "{d}/o.csv",
          "--every", _BIG], "--every must be at most 9223372036854775807"),
        (["replay", "{f}", "-n", _BIG], "-n/--limit must be at most 9223372036854775807"),
        # a subnormal speed made every pacing delay infinite: the replay never ended
        (["replay", "{f}", "--speed", "1e-320"], "--speed must be at least 0.001"),
        (["replay", "{f}", "--speed", "0.0009"], "--speed must be at least 0.001"),
    ],
)  # fmt: skip
def test_integer_options_past_64_bits_are_usage_errors(
    tmp_path: Path, args: list[str], needle: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FOREXD_BROKER_URL", "kafka://127.0.0.1:1")  # replay: never reached
    f = _write(tmp_path / "c.csv", _rows(10))
    res = runner.invoke(app, [a.format(f=f, d=tmp_path) for a in args])
    _no_traceback(res)
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and needle in lines[0], res.stderr
    assert not (tmp_path / "m").exists() and not (tmp_path / "o.csv").exists()


# --- standard error closed (2>&-): sys.stderr is None ---


def _forexd_without_stderr(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the real console script with file descriptor 2 closed, as ``forexd ... 2>&-`` does."""
    exe = Path(sys.executable).with_name("forexd")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "streams.cli"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("FOREXD_")}
    line = " ".join(shlex.quote(a) for a in [*cmd, *args]) + " 2>&-"
    return subprocess.run(
        ["/bin/sh", "-c", line], stdout=subprocess.PIPE, text=True, env=env, cwd=tmp_path, timeout=240
    )


def test_candles_with_standard_error_closed_runs_to_completion(tmp_path: Path) -> None:
    """Before: progress_bar called sys.stderr.isatty() on None: exit 1, no file, no message."""
    ticks = tmp_path / "t.csv"
    ticks.write_text(
        "timestamp,symbol,bid,ask\n2014-05-01T00:00:00Z,EURUSD,1.1,1.1001\n2014-05-01T00:01:00Z,EURUSD,1.1002,1.1003\n"
    )
    res = _forexd_without_stderr(tmp_path, "candles", str(ticks), "-o", str(tmp_path / "closed.csv"))
    assert res.returncode == 0
    normal = runner.invoke(app, ["candles", str(ticks), "-o", str(tmp_path / "open.csv")])
    assert normal.exit_code == 0, normal.output
    assert (tmp_path / "closed.csv").read_text() == (tmp_path / "open.csv").read_text()


def test_an_error_with_standard_error_closed_keeps_its_exit_status(tmp_path: Path) -> None:
    res = _forexd_without_stderr(tmp_path, "candles", str(tmp_path / "missing.csv"), "-o", str(tmp_path / "o.csv"))
    assert res.returncode == 66  # nothing can be said; the status still says it


def test_backtest_with_standard_error_closed_writes_its_forecasts(tmp_path: Path) -> None:
    _needs_model()
    f = _write(tmp_path / "c.csv", _rows(120))
    args = ["--symbol", "EURUSD", "--timeframe", "1h", "--model", str(MODEL_1H), "--every", "40", "-n", "16",
            "--steps", "4", "--touch-bands", "none", "-o", str(tmp_path / "o.csv")]  # fmt: skip
    res = _forexd_without_stderr(tmp_path, "backtest", str(f), *args)
    assert res.returncode == 0
    assert "forecasts" in res.stdout and (tmp_path / "o.csv").stat().st_size > 0


# --- binary files: the layout error says the file is not text, not "quoted fields" ---


def _random_with_a_quote(seed: int) -> bytes:
    import random

    data = bytearray(random.Random(seed).randbytes(4096))
    data[:200] = data[:200].replace(b"\n", b"x").replace(b"\r", b"x")
    data[50] = ord('"')  # before: the first line's '"' gave "quoted fields are not read"
    return bytes(data)


_PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00\x90wS\xde" + bytes(64)


@pytest.mark.parametrize("command", ["candles", "indicators"])
@pytest.mark.parametrize(
    "content",
    [_random_with_a_quote(1), _random_with_a_quote(2), _PNG, b'"\x00\x01\x02' + bytes(200)],
    ids=["random1", "random2", "png", "nul-quote"],
)
def test_a_binary_file_is_said_not_to_be_text(tmp_path: Path, command: str, content: bytes) -> None:
    f = tmp_path / "blob.csv"
    f.write_bytes(content)
    res = runner.invoke(app, [command, str(f), "-o", str(tmp_path / "o.csv")])
    _no_traceback(res)
    assert res.exit_code == 65, res.output
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "it is not a text (CSV) file" in lines[0], res.stderr
    assert "quoted fields" not in res.stderr


def test_a_quoted_text_header_still_gets_the_quote_hint(tmp_path: Path) -> None:
    f = tmp_path / "q.csv"
    f.write_bytes(b'"D\xe9but","bid","ask"\n"2014-05-01",1.1,1.2\n')  # Latin-1 accent: text, not binary
    res = runner.invoke(app, ["candles", str(f), "-o", str(tmp_path / "o.csv")])
    assert res.exit_code == 65, res.output
    assert "quoted fields are not read" in res.stderr and "not a text" not in res.stderr
