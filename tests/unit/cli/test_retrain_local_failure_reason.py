"""``forexd retrain --local`` whose job failed printed ``failed …``, ``reason: model: ModelError``
and the JSON outcome, exit 1: why it failed (``not enough candles for EURUSD/1h/24: 0 in the
database``) was only in a timestamped log line. The command now ends standard error with its own
line, ``error: retrain of KEY failed (CODE): <the job's error>`` (the job's outcome carries the
error to the process that ran it, never onto ``fx.models``); standard output and exit 1 are as
before."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from forex_diffusion.storage import make_engine, sqlite_url

ROOT = Path(__file__).resolve().parents[3]


def _retrain(tmp: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    db = tmp / "w.db"
    make_engine(sqlite_url(db)).dispose()  # a worker's database, with no candle in it
    env = {k: v for k, v in os.environ.items() if not k.startswith("FOREXD_")}
    env["FOREXD_DATA_DIR"] = str(tmp / "data")
    argv = ["retrain", "--local", "--symbol", "EURUSD", "--timeframe", "1h", "--db", sqlite_url(db)]
    return subprocess.run(
        [sys.executable, "-m", "streams.cli", *extra, *argv, "--model-dir", str(tmp / "m")],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=300,
        check=False,
    )


def test_a_failed_local_job_says_why_in_its_last_line_and_exits_1(tmp_path: Path) -> None:
    res = _retrain(tmp_path)
    assert res.returncode == 1, (res.returncode, res.stderr)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert lines[-1] == (
        "error: retrain of EURUSD/1h/24 failed (model: ModelError): not enough candles for EURUSD/1h/24: "
        "0 in the database"
    ), res.stderr
    assert "Traceback" not in res.stderr
    out_json = json.loads(res.stdout.splitlines()[-1])
    assert "error" not in out_json  # the fx.models value: never the error's text
    out = res.stdout.splitlines()  # unchanged: status, reason code, the outcome as JSON last
    assert out[0].startswith("failed key=EURUSD/1h/24 ") and out[1] == "reason: model: ModelError", out
    assert json.loads(out[-1])["status"] == "failed"


def test_at_log_level_info_the_log_line_stays_beside_the_error_line(tmp_path: Path) -> None:
    res = _retrain(tmp_path, "--log-level", "info")
    assert res.returncode == 1, (res.returncode, res.stderr)
    assert "ERROR retraining.jobs retrain failed" in res.stderr, res.stderr
    assert res.stderr.rstrip().splitlines()[-1].startswith("error: retrain of EURUSD/1h/24 failed (model: ModelError)")
