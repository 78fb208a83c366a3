"""Files the user cannot read: an input is exit 66 (a model, exit 2), an output the user may write
but not read is written.

typer's ``Path`` parameters check ``os.access(R_OK)`` by default, and that check ran before
the commands' own: an unreadable input was ``Invalid value for 'file': path ... is not
readable`` with exit 2 instead of the README's 66, and ``-o`` to a write-only file was refused
as "not readable". As root every file is readable, so these tests run the command with the
two capabilities that let root pass permissions dropped (``setpriv``), as any user runs it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from .test_cli_errors import FOREXD, MODEL_1H, assert_one_line, write_candles

CHECKPOINT = next(MODEL_1H.glob("*.pt"))


def as_a_user(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``forexd ARGS`` bound by file permissions: as root, without CAP_DAC_OVERRIDE and
    CAP_DAC_READ_SEARCH (the only way root meets a file of mode 000)."""
    prefix: list[str] = []
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("root reads every file, and setpriv (util-linux) is not here to drop that")
        prefix = [setpriv, "--bounding-set", "-dac_override,-dac_read_search"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("FOREXD_")}
    env["FOREXD_BROKER_URL"] = "kafka://127.0.0.1:1"
    return subprocess.run([*prefix, str(FOREXD), *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=240)


def _files(tmp: Path) -> dict[str, Path]:
    ticks = tmp / "eurusd_ticks.csv"
    ticks.write_text("ts_ms,bid,ask\n" + "".join(f"{1398902400000 + i * 1000},1.1,1.1001\n" for i in range(300)))
    candles = write_candles(tmp / "eurusd_1h.csv", n=300)
    model = tmp / "model"
    model.mkdir()
    for f in (CHECKPOINT, CHECKPOINT.with_suffix(".json")):
        shutil.copy(f, model / f.name)
    config = tmp / "job.json"
    config.write_text("{}")
    return {"ticks": ticks, "candles": candles, "pt": model / CHECKPOINT.name, "config": config}


@pytest.mark.parametrize(
    ("locked", "args", "code", "says"),
    [
        ("ticks", ["candles", "{ticks}"], 66, "is not readable"),
        ("candles", ["indicators", "{candles}"], 66, "is not readable"),
        ("ticks", ["replay", "{ticks}"], 66, "is not readable"),
        ("candles", ["train", "{candles}", "--symbol", "EURUSD", "--timeframe", "1h", "--model-dir", "m"], 66,
         "is not readable"),
        ("candles", ["backtest", "{candles}", "--symbol", "EURUSD", "--timeframe", "1h", "--model", "{pt}", "-o",
                     "o.csv"], 66, "is not readable"),
        # a model that cannot be read is refused as a model (exit 2, as a missing or corrupt one), not
        # '[Errno 13] Permission denied' with the storage-failure status 74
        ("pt", ["backtest", "{candles}", "--symbol", "EURUSD", "--timeframe", "1h", "--model", "{pt}", "-o",
                "o.csv"], 2, "unreadable checkpoint (Permission denied)"),
        ("pt", ["models", "register", "{pt}", "--db", "sqlite:///r.db", "--model-dir", "m"], 2,
         "unreadable checkpoint (Permission denied)"),
        ("config", ["retrain", "--symbol", "EURUSD", "--timeframe", "1h", "--local", "--config", "{config}", "--db",
                    "sqlite:///r.db"], 66, "is not readable"),
    ],
)  # fmt: skip
def test_an_input_the_user_cannot_read_is_one_line_with_its_status(
    locked: str, args: list[str], code: int, says: str, tmp_path: Path
) -> None:
    files = _files(tmp_path)
    files[locked].chmod(0)
    res = as_a_user(*[a.format(**files) for a in args], cwd=tmp_path)
    assert res.returncode == code, res.stderr
    assert_one_line(res.stderr, says)
    assert not (tmp_path / "o.csv").exists() and not (tmp_path / "m").exists()


def test_an_output_the_user_may_write_but_not_read_is_written(tmp_path: Path) -> None:
    files = _files(tmp_path)
    out = tmp_path / "out.csv"
    out.write_text("")
    out.chmod(0o200)  # write-only: typer refused it as 'not readable' (exit 2)
    res = as_a_user("candles", str(files["ticks"]), "--symbol", "EURUSD", "-o", str(out), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    out.chmod(0o600)
    assert out.read_text().count("EURUSD") == 5  # five one-minute candles
