"""``forexd`` at its boundaries (3): failed writes name their file (or standard output) and
the fix; a bad FOREXD_LOG_LEVEL is a configuration error (78); an empty path is a usage error;
``/dev/null`` may take two outputs; a model directory without a checkpoint, a non-finite touch
band, a device as --model and a symbolic link loop are each said as what they are; ``tail``
checks its topic before it connects.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from streams.cli import app

ROOT = Path(__file__).resolve().parents[3]
FOREXD = Path(sys.executable).with_name("forexd")
MODEL_1H = ROOT / "forex_diffusion" / "bundled" / "models" / "EURUSD-1h-h24"
START_MS = 1_451_606_400_000  # 2016-01-01
HOUR = 3_600_000
FULL = Path("/dev/full")
runner = CliRunner()

needs_dev_full = pytest.mark.skipif(not FULL.exists(), reason="no /dev/full")


def forexd(*args: str, env: dict[str, str] | None = None, **kw: object) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("FOREXD_")}
    full.update(env or {})
    cmd = [str(FOREXD)] if FOREXD.exists() else [sys.executable, "-m", "streams.cli"]
    kw.setdefault("stdout", subprocess.PIPE)
    return subprocess.run([*cmd, *args], stderr=subprocess.PIPE, text=True, env=full, timeout=120, **kw)  # type: ignore[call-overload,no-any-return]


def one_line(stderr: str, *needles: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: "), stderr
    for n in needles:
        assert n in lines[0], (n, stderr)
    assert "Traceback" not in stderr
    return lines[0]


def h1_file(path: Path, n: int = 200) -> Path:
    rows = ["timestamp,symbol,open,high,low,close"]
    for i in range(n):
        p = 1.1 * (1 + 0.002 * math.sin(i / 5) + 0.0007 * ((i * 7919) % 13 - 6) / 6)
        rows.append(f"{START_MS + i * HOUR},EURUSD,{p:.5f},{p * 1.001:.5f},{p * 0.999:.5f},{p:.5f}")
    path.write_text("\n".join(rows) + "\n")
    return path


def tick_file(path: Path) -> Path:
    rows = ["ts_ms,bid,ask"] + [f"{START_MS + i * 1000},1.1000{i % 10},1.1002{i % 10}" for i in range(120)]
    path.write_text("\n".join(rows) + "\n")
    return path


# -- 3: a failed write names its file or standard output, and the fix (exit 74) -------------------


@needs_dev_full
@pytest.mark.parametrize("option", ["-o", "--plot", "--touch-output"])
def test_backtest_output_that_cannot_be_written_is_named_with_its_fix(tmp_path: Path, option: str) -> None:
    """Before: ``error: [Errno 28] No space left on device``, no file, no fix. One forecast
    (``--every 1000``, 16 samples, 4 steps) keeps it cheap."""
    if not MODEL_1H.is_dir():
        pytest.skip(f"bundled model {MODEL_1H} absent")
    outs = {"-o": str(tmp_path / "bt.csv"), option: str(FULL)}
    args = [a for kv in outs.items() for a in kv]
    res = runner.invoke(
        app,
        [
            "backtest",
            str(h1_file(tmp_path / "h1.csv")),
            "--symbol",
            "EURUSD",
            "--timeframe",
            "1h",
            "--model",
            str(MODEL_1H),
            "--every",
            "1000",
            "-n",
            "16",
            "--steps",
            "4",
            *args,
        ],  # fmt: skip
    )
    assert res.exit_code == 74, res.output
    one_line(
        res.stderr, f"cannot write /dev/full: No space left on device; free space there or choose another {option}"
    )


@needs_dev_full
def test_standard_output_that_cannot_be_written_is_named_with_its_fix() -> None:
    """Every writer of standard output (a CSV to ``-o -``, echo, rich) goes through it."""
    from streams.commands._common import guard_stdout

    with FULL.open("w") as fh:
        out = guard_stdout(fh)
        out.write("symbol,timeframe\n" * 10)
        with pytest.raises(OSError) as caught:
            out.flush()
    assert str(caught.value) == (
        "cannot write standard output: No space left on device; free space there or redirect standard output elsewhere"
    )


@needs_dev_full
@pytest.mark.parametrize("args", [["--version"], ["--help"]])
def test_version_and_help_onto_a_full_device_say_standard_output_once(args: list[str]) -> None:
    with FULL.open("w") as full:
        res = forexd(*args, stdout=full)
    assert res.returncode == 74, res.stderr
    one_line(res.stderr, "cannot write standard output: No space left on device; free space there or redirect")


# -- 4: a bad FOREXD_LOG_LEVEL is a setting's error (78), the option's a usage error (2) ----------


@pytest.mark.parametrize(("raw", "shown"), [("bogus", "'bogus'"), ("\udcff", "'\\xff'")])
def test_a_bad_log_level_variable_is_one_line_naming_it_exit_78(tmp_path: Path, raw: str, shown: str) -> None:
    """Before: exit 2, ``Invalid value for '--log-level' (env var: …): '\\udcff' …``."""
    res = runner.invoke(app, ["candles", str(tmp_path / "none.csv")], env={"FOREXD_LOG_LEVEL": raw})
    assert res.exit_code == 78, res.output
    one_line(res.stderr, f"FOREXD_LOG_LEVEL={shown} is not a log level", "unset it")


def test_a_bad_log_level_option_stays_a_usage_error_with_its_bytes_shown(tmp_path: Path) -> None:
    res = runner.invoke(app, ["--log-level", "\udcff", "candles", str(tmp_path / "none.csv")])
    assert res.exit_code == 2, res.output
    line = one_line(res.stderr, "'\\xff' is not a log level")
    assert "\\udcff" not in line


# -- 5: an empty path (argument or option, any command) is a usage error naming it ----------------

EMPTY_PATHS = [
    (
        ["train", "{h1}", "--symbol", "EURUSD", "--timeframe", "1h", "--model-dir", "", "--max-steps", "1"],
        "'--model-dir'",
    ),
    (["candles", "", "--symbol", "EURUSD"], "'file'"),
    (["candles", "{ticks}", "--symbol", "EURUSD", "-o", ""], "'--output'"),
    (["candles", "{ticks}", "--symbol", "EURUSD", "--rejects", ""], "'--rejects'"),
    (["indicators", "", "-o", "{out}"], "'file'"),
    (["backtest", "{h1}", "--symbol", "EURUSD", "--timeframe", "1h", "--model", "", "-o", "{out}"], "'--model'"),
    (["backtest", "{h1}", "--symbol", "EURUSD", "--timeframe", "1h", "--model", "{model}", "-o", ""], "'--output'"),
]


@pytest.mark.parametrize(("args", "named"), EMPTY_PATHS, ids=[" ".join(a[:1] + [n]) for a, n in EMPTY_PATHS])
def test_an_empty_path_is_a_usage_error_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], named: str
) -> None:
    """Before: ``Path("")`` is ``Path(".")``: ``train --model-dir ""`` wrote under the working
    directory (exit 0), ``candles ""`` was ``tick file . is a directory`` (66), ``-o ""``
    ``cannot write .: it is a directory`` (73)."""
    monkeypatch.chdir(tmp_path)
    values = {"h1": str(h1_file(tmp_path / "h1.csv")), "ticks": str(tick_file(tmp_path / "t.csv")),
              "out": str(tmp_path / "out.csv"), "model": str(MODEL_1H)}  # fmt: skip
    res = runner.invoke(app, [a.format(**values) for a in args])
    assert res.exit_code == 2, res.output
    one_line(res.stderr, named, "the path is empty")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["h1.csv", "t.csv"]  # nothing written


# -- 6: /dev/null may take both outputs -----------------------------------------------------------


@pytest.mark.skipif(not Path(os.devnull).exists(), reason="no /dev/null")
def test_both_outputs_may_be_discarded_into_dev_null(tmp_path: Path) -> None:
    """Before: exit 73, ``cannot write /dev/null: it is the -o file /dev/null``."""
    res = runner.invoke(
        app,
        [
            "candles",
            str(tick_file(tmp_path / "t.csv")),
            "--symbol",
            "EURUSD",
            "-o",
            os.devnull,
            "--rejects",
            os.devnull,
        ],
    )
    assert res.exit_code == 0, res.output
    assert "error" not in res.stderr


def test_two_outputs_onto_one_regular_file_are_still_refused(tmp_path: Path) -> None:
    out = tmp_path / "o.csv"
    res = runner.invoke(
        app,
        ["candles", str(tick_file(tmp_path / "t.csv")), "--symbol", "EURUSD", "-o", str(out), "--rejects", str(out)],
    )
    assert res.exit_code == 73, res.output
    one_line(res.stderr, f"cannot write {out}: it is the -o file")


# -- 7: a model directory without a checkpoint is said so --------------------------------------


def test_a_model_directory_without_a_checkpoint_is_said_so_not_a_file_of_the_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: ``cd DIR && backtest … --model DIR -o bt.csv`` with bt.csv there was exit 73
    ``cannot write bt.csv: it is a file of the model DIR/bt.csv``."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bt.csv").write_text("old\n")
    res = runner.invoke(
        app,
        [
            "backtest",
            str(h1_file(tmp_path / "h1.csv")),
            "--symbol",
            "EURUSD",
            "--timeframe",
            "1h",
            "--model",
            str(tmp_path),
            "-o",
            "bt.csv",
        ],  # fmt: skip
    )
    assert res.exit_code == 2, res.output
    one_line(res.stderr, f"{tmp_path}: no checkpoint in this directory")
    assert (tmp_path / "bt.csv").read_text() == "old\n"


# -- 8: each refusal says what the value is ----------------------------------------------------


def test_an_infinite_touch_band_is_said_to_be_not_finite(tmp_path: Path) -> None:
    """Before: ``size must be > 0`` of ``1e400pip`` (it reads as infinity)."""
    res = runner.invoke(
        app,
        [
            "backtest",
            str(h1_file(tmp_path / "h1.csv")),
            "--symbol",
            "EURUSD",
            "--timeframe",
            "1h",
            "--model",
            str(MODEL_1H),
            "-o",
            str(tmp_path / "bt.csv"),
            "--touch-bands",
            "1vol,+1e400pip",
        ],  # fmt: skip
    )
    assert res.exit_code == 2, res.output
    one_line(res.stderr, "touch band '+1e400pip': size is not finite")


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="no /dev/zero")
def test_a_device_as_model_is_said_to_be_no_regular_file(tmp_path: Path) -> None:
    """Before: ``/dev/zero: checkpoint file not found``."""
    res = runner.invoke(
        app,
        [
            "backtest",
            str(h1_file(tmp_path / "h1.csv")),
            "--symbol",
            "EURUSD",
            "--timeframe",
            "1h",
            "--model",
            "/dev/zero",
            "-o",
            str(tmp_path / "bt.csv"),
        ],  # fmt: skip
    )
    assert res.exit_code == 2, res.output
    one_line(res.stderr, "--model /dev/zero is not a regular file")


def test_a_symbolic_link_loop_is_said_to_be_one(tmp_path: Path) -> None:
    """Before: ``tick file loop1 does not exist: check the path``."""
    (tmp_path / "loop1").symlink_to(tmp_path / "loop2")
    (tmp_path / "loop2").symlink_to(tmp_path / "loop1")
    res = runner.invoke(app, ["candles", str(tmp_path / "loop1"), "--symbol", "EURUSD"])
    assert res.exit_code == 66, res.output
    one_line(res.stderr, "loop1 is a symbolic link loop (it cannot be resolved)")


# -- tail checks its topic before it connects ----------------------------------------------------


@pytest.mark.parametrize(
    ("topic", "said"),
    [
        ("", "names no topic"),
        ("fx.", "names no topic"),
        ("..", "names no topic"),
        ("../x", "holds characters no Kafka topic may"),
        ("fx.cand les", "holds characters no Kafka topic may"),
        ("candl\u00e9s", "holds characters no Kafka topic may"),
        ("a" * 300, "Kafka takes at most 249"),
    ],  # fmt: skip
    ids=["empty", "prefix only", "dotdot", "path", "space", "not ascii", "300 characters"],
)
def test_tail_refuses_a_topic_no_kafka_topic_can_be_before_it_connects(topic: str, said: str) -> None:
    """Before: each was asked of the broker (here one that refuses at once: exit 69)."""
    res = runner.invoke(app, ["tail", topic, "--timeout", "1"], env={"FOREXD_BROKER_URL": "kafka://127.0.0.1:1"})
    assert res.exit_code == 2, res.output
    one_line(res.stderr, "Invalid value for 'TOPIC'", said)


def test_tail_refuses_a_topic_its_prefix_makes_too_long(tmp_path: Path) -> None:
    env = {"FOREXD_BROKER_URL": "kafka://127.0.0.1:1", "FOREXD_TOPIC_PREFIX": "p" * 200}
    res = runner.invoke(app, ["tail", "c" * 47, "--timeout", "1"], env=env)
    assert res.exit_code == 2, res.output
    one_line(res.stderr, "makes a topic of 250 characters: Kafka takes at most 249")


@needs_dev_full
def test_a_rejects_file_that_cannot_be_written_is_named_with_its_fix() -> None:
    """``replay --rejects`` writes through it (before: the bare ``[Errno 28]``)."""
    from forex_diffusion.errors import RejectReason
    from streams.commands._common import write_rejects

    class Row:
        line, reason, detail, raw = 2, RejectReason.MALFORMED, "x" * 10_000, ""

    with pytest.raises(OSError) as caught:
        write_rejects([Row()], FULL)
    assert (
        str(caught.value)
        == "cannot write /dev/full: No space left on device; free space there or choose another --rejects"
    )
