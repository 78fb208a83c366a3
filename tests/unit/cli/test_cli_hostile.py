"""``forexd`` given hostile arguments: each is one ``error:`` line with its documented status,
refused before the expensive work, and leaves no file behind (the hostile sweep).

Cases already pinned by ``test_cli_errors.py`` are not repeated here; each test says what
the command did before its fix.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from forex_diffusion.indicators.base import PARAMETER_MAX as SPEC_PARAMETER_MAX
from streams.cli import app
from streams.commands._common import SEED_MAX, THREADS_MAX

from .test_cli_errors import DOWN, assert_one_line, runner

ROOT = Path(__file__).resolve().parents[3]
MODEL_1H = ROOT / "forex_diffusion" / "bundled" / "models" / "EURUSD-1h-h24"


def write_ticks(path: Path, n: int = 300) -> Path:
    path.write_text("ts_ms,bid,ask\n" + "".join(f"{1398902400000 + i * 1000},1.1,1.1001\n" for i in range(n)))
    return path


def write_candles(path: Path, n: int = 200) -> Path:
    rows = ["timestamp,symbol,open,high,low,close"]
    for i in range(n):
        p = 1.1 * (1 + 0.001 * ((i % 7) - 3))
        rows.append(f"{1_451_606_400_000 + i * 3_600_000},EURUSD,{p:.5f},{p * 1.001:.5f},{p * 0.999:.5f},{p:.5f}")
    path.write_text("\n".join(rows) + "\n")
    return path


# -- an output that is an input (or another output) --------------------------------------------


def _clobber_cases(tmp: Path) -> list[tuple[list[str], Path, str]]:
    """(arguments, the file they must leave untouched, what the refusal names it)."""
    ticks = write_ticks(tmp / "eurusd_ticks.csv")
    candles = write_candles(tmp / "eurusd_1h.csv")
    link = tmp / "link.csv"
    link.symlink_to(ticks.name)
    db = tmp / "forexd.db"
    db.write_bytes(b"SQLite format 3\x00" + b"\x00" * 84)  # a database the report must not overwrite
    out = tmp / "o.csv"
    out.write_text("keep\n")
    backtest = ["backtest", str(candles), "--symbol", "EURUSD", "--timeframe", "1h", "--model", str(tmp / "m.pt")]
    return [
        (["candles", str(ticks), "-o", str(ticks)], ticks, "it is the tick file"),
        (["candles", str(ticks), "-o", str(link)], ticks, "it is the tick file"),
        (["candles", str(ticks), "-o", str(out), "--rejects", str(ticks)], ticks, "it is the tick file"),
        (["candles", str(ticks), "-o", str(out), "--rejects", str(out)], out, "it is the -o file"),
        (["indicators", str(candles), "-o", str(candles)], candles, "it is the candle file"),
        ([*backtest, "-o", str(candles)], candles, "it is the candle file"),
        ([*backtest, "-o", str(out), "--plot", str(out)], out, "it is the -o file"),
        ([*backtest, "-o", str(tmp / "b.csv"), "--touch-output", str(candles)], candles, "it is the candle file"),
        (["report", "--db", f"sqlite:///{db}", "-o", str(db)], db, "it is the database file"),
        (["replay", str(ticks), "--rejects", str(ticks)], ticks, "it is the file to replay"),
    ]


def _model_copy(tmp: Path) -> tuple[Path, Path]:
    """A copy of the bundled 1h model's key directory, and its checkpoint."""
    import shutil

    key_dir = tmp / "EURUSD-1h-h24"
    shutil.copytree(MODEL_1H, key_dir)
    return key_dir, next(key_dir.glob("*.pt"))


@pytest.mark.parametrize("option", ["-o", "--plot", "--touch-output"])
@pytest.mark.parametrize("model_as", ["checkpoint", "manifest", "key directory"])
@pytest.mark.parametrize("target", ["pt", "json"])
def test_a_backtest_output_over_a_file_of_its_model_exits_73_and_keeps_the_model(
    option: str, model_as: str, target: str, tmp_path: Path
) -> None:
    """``backtest … --model M.pt -o M.pt`` wrote the CSV over the checkpoint (exit 0), and the
    next use of the model refused it (sha256 mismatch); ``--plot`` over its manifest the
    same (found by the review of the hostile sweep)."""
    key_dir, ckpt = _model_copy(tmp_path)
    kept = ckpt if target == "pt" else ckpt.with_suffix(".json")
    before = kept.read_bytes()
    model = {"checkpoint": ckpt, "manifest": ckpt.with_suffix(".json")}.get(model_as, key_dir)
    args = ["backtest", str(write_candles(tmp_path / "c.csv")), "--symbol", "EURUSD", "--timeframe", "1h"]
    extra = [] if option == "-o" else ["-o", str(tmp_path / "b.csv")]
    res = runner.invoke(app, [*args, "--model", str(model), *extra, option, str(kept)])
    assert res.exit_code == 73, res.output
    assert_one_line(res.stderr, "a file of the model")
    assert kept.read_bytes() == before


@pytest.mark.parametrize("case", range(10))
def test_an_output_naming_an_input_or_another_output_exits_73_and_keeps_the_file(
    case: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``candles X -o X`` (also through a link), ``indicators X -o X`` and ``backtest X -o X``
    replaced the input with their output and exited 0; ``-o F --rejects F`` kept only the
    rejects; ``report -o`` the SQLite file would write HTML over the database; ``replay
    X --rejects X`` replaced the published file with its rejects."""
    monkeypatch.setenv("FOREXD_BROKER_URL", DOWN)
    args, kept, says = _clobber_cases(tmp_path)[case]
    before = kept.read_bytes()
    res = runner.invoke(app, args)
    assert res.exit_code == 73, res.output
    assert_one_line(res.stderr, says)
    assert kept.read_bytes() == before


# -- inputs that are no regular file ------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        ["candles", "IN", "-o", "o.csv"],
        ["indicators", "IN", "-o", "o.csv"],
        ["backtest", "IN", "--symbol", "EURUSD", "--timeframe", "1h", "--model", "m.pt", "-o", "o.csv"],
        ["train", "IN", "--symbol", "EURUSD", "--timeframe", "1h", "--model-dir", "m"],
        ["replay", "IN"],
        ["retrain", "--symbol", "EURUSD", "--timeframe", "1h", "--local", "--config", "IN"],
    ],
)
def test_an_input_that_is_a_device_exits_66_at_once(
    command: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``forexd candles /dev/zero`` (and indicators, backtest, train) read without end, its
    memory growing, until killed. /dev/null stands in for it here (without the check it is
    read as an empty file, not refused; /dev/zero would exhaust memory)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FOREXD_BROKER_URL", DOWN)
    res = runner.invoke(app, ["/dev/null" if a == "IN" else a for a in command])
    assert res.exit_code == 66, res.output
    assert_one_line(res.stderr, "is not a regular file")
    assert not (tmp_path / "o.csv").exists()


@pytest.mark.timeout(60)  # without the check a second open blocks for ever: fail, do not hang the suite
@pytest.mark.parametrize(
    "command",
    [
        ["indicators", "IN", "-o", "o.csv"],
        ["backtest", "IN", "--symbol", "EURUSD", "--timeframe", "1h", "--model", str(MODEL_1H), "-o", "o.csv"],
        ["train", "IN", "--symbol", "EURUSD", "--timeframe", "1h", "--model-dir", "m"],
    ],
)
def test_a_pipe_to_a_command_that_reads_its_input_twice_exits_66_instead_of_blocking(
    command: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A command that opens its file more than once (to sniff its layout, then to read it)
    blocked for ever on a pipe: the second open of a FIFO waits for a writer that is gone."""
    import os

    monkeypatch.chdir(tmp_path)
    fifo = tmp_path / "in.fifo"
    os.mkfifo(fifo)
    res = runner.invoke(app, [str(fifo) if a == "IN" else a for a in command])
    assert res.exit_code == 66, res.output
    assert_one_line(res.stderr, "is a pipe, and this command reads it more than once")
    assert not (tmp_path / "o.csv").exists()


@pytest.mark.timeout(120)
def test_candles_reads_ticks_from_a_pipe_as_from_the_file(tmp_path: Path) -> None:
    """``forexd candles <(zcat ticks.csv.gz)`` (a pipe: process substitution, ``/dev/stdin``)
    worked before the sweep, which refused every input that is not a regular file; it reads
    its input once, so it takes a pipe again, with the candles of the file itself."""
    import os
    import subprocess
    import sys

    ticks = write_ticks(tmp_path / "eurusd_ticks.csv")
    fifo = tmp_path / "ticks.fifo"
    os.mkfifo(fifo)
    cli = [sys.executable, "-m", "streams.cli", "candles", "--symbol", "EURUSD"]
    writer = subprocess.Popen(["sh", "-c", f"cat '{ticks}' > '{fifo}'"])
    piped = subprocess.run(
        [*cli, str(fifo), "-o", str(tmp_path / "p.csv")], capture_output=True, text=True, timeout=100
    )
    writer.wait(timeout=30)
    assert piped.returncode == 0, piped.stderr
    direct = subprocess.run(
        [*cli, str(ticks), "-o", str(tmp_path / "d.csv")], capture_output=True, text=True, timeout=100
    )
    assert direct.returncode == 0, direct.stderr
    assert (tmp_path / "p.csv").read_text() == (tmp_path / "d.csv").read_text()
    assert len((tmp_path / "d.csv").read_text().splitlines()) > 1


# -- a candle file given as ticks ---------------------------------------------------------------


def test_candles_of_a_candle_file_is_one_line_65_not_a_key_error(tmp_path: Path) -> None:
    """``forexd candles CANDLES.csv`` ended in ``KeyError: 'bid'`` and a 45-line traceback."""
    res = runner.invoke(app, ["candles", str(write_candles(tmp_path / "c.csv")), "-o", str(tmp_path / "o.csv")])
    assert res.exit_code == 65, res.output
    assert_one_line(res.stderr, "holds candles, not ticks")
    assert not (tmp_path / "o.csv").exists()


# -- numbers past what the command can honour -------------------------------------------------


@pytest.mark.parametrize("value", ["100000", "99999999999999999999", str(THREADS_MAX + 1)])
@pytest.mark.parametrize(
    "command",
    [
        ["backtest", "missing.csv", "--symbol", "EURUSD", "--timeframe", "1h", "--model", "m.pt", "-o", "o.csv"],
        ["train", "missing.csv", "--symbol", "EURUSD", "--timeframe", "1h", "--model-dir", "m"],
        ["retrain", "--symbol", "EURUSD", "--timeframe", "1h"],
    ],
)
def test_threads_past_the_ceiling_is_a_usage_error_before_any_work(
    command: list[str], value: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``backtest --threads 100000`` died of a segfault (exit 139), ``train --threads 100000``
    of a MemoryError traceback, 99999999999999999999 of ``ValueError: Overflow``; retrain sent
    the value on. The input file is missing here: a usage error proves nothing was read."""
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, [*command, "--threads", value], env={"FOREXD_BROKER_URL": DOWN})
    assert res.exit_code == 2, res.output
    assert_one_line(res.stderr, f"--threads must be at most {THREADS_MAX}")


@pytest.mark.parametrize("value", ["99999999999999999999", str(SEED_MAX + 1), "-1"])
def test_train_seed_out_of_range_is_a_usage_error_before_reading(
    value: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--seed 99999999999999999999`` read the file and built the model, then torch.manual_seed
    raised ``ValueError: Overflow when unpacking long long`` (a 50-line traceback)."""
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, ["train", "missing.csv", "--symbol", "EURUSD", "--timeframe", "1h", "--model-dir", "m"])
    assert res.exit_code == 66  # the control: a fine seed gets as far as the file
    res = runner.invoke(
        app,
        ["train", "missing.csv", "--symbol", "EURUSD", "--timeframe", "1h", "--model-dir", "m", "--seed", value],
    )
    assert res.exit_code == 2, res.output
    assert_one_line(res.stderr, "--seed must be")


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(
    name=st.sampled_from(["sma", "ema", "hurst", "max", "min", "rv", "rsi", "atr", "donchian"]),
    period=st.integers(min_value=SPEC_PARAMETER_MAX + 1, max_value=10**30),
)
def test_indicators_refuse_any_period_past_the_ceiling_before_reading(name: str, period: int, tmp_path: Path) -> None:
    """``--spec sma_99999999999999999999`` ended in ``OverflowError`` (a 59-line traceback);
    ``hurst_10000000000`` tried to allocate 74.5 GiB, ``hurst_100000000`` took 800 MB. The
    file is missing: the refusal comes before it is looked at."""
    res = runner.invoke(app, ["indicators", str(tmp_path / "missing.csv"), "--spec", f"sma_5,{name}_{period}"])
    assert res.exit_code == 2, res.output
    assert_one_line(res.stderr, "'--spec'", f"{name}_{period}", f"at most {SPEC_PARAMETER_MAX}")


def test_indicators_a_period_at_the_ceiling_and_a_float_parameter_still_run(tmp_path: Path) -> None:
    out = tmp_path / "i.csv"
    spec = f"max_{SPEC_PARAMETER_MAX},bb_20_2.5"
    res = runner.invoke(app, ["indicators", str(write_candles(tmp_path / "c.csv", 30)), "--spec", spec, "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert len(out.read_text().splitlines()) == 31


def test_retrain_horizon_past_the_wire_ceiling_is_refused_before_the_broker() -> None:
    """``retrain --horizon 100000000`` went to the broker (a job no worker can run)."""
    res = runner.invoke(
        app,
        ["retrain", "--symbol", "EURUSD", "--timeframe", "1h", "--horizon", "100000000"],
        env={"FOREXD_BROKER_URL": DOWN},
    )
    assert res.exit_code == 2, res.output
    assert_one_line(res.stderr, "--horizon must be at most 10000")


# -- bad FOREXD_BROKER_URL ----------------------------------------------------------------------


@pytest.mark.parametrize("url", ["http://x:y", "kafka://127.0.0.1:99999", "kafka://127.0.0.1:0", "kafka://:9092"])
@pytest.mark.parametrize(
    "command",
    [["tail", "ticks"], ["replay", "TICKS"], ["retrain", "--symbol", "EURUSD", "--timeframe", "1h"]],
)
def test_a_broker_url_without_a_valid_port_exits_78_before_reading(
    command: list[str], url: str, tmp_path: Path
) -> None:
    """``FOREXD_BROKER_URL=http://x:y forexd tail ticks`` ended in ``ValueError: invalid literal
    for int()`` and ``kafka://127.0.0.1:99999`` in ``OverflowError: port must be 0-65535``
    (70-line tracebacks and an "Unclosed AIOKafkaConsumer"); replay read the whole file first."""
    args = [str(tmp_path / "missing.csv") if a == "TICKS" else a for a in command]
    res = runner.invoke(app, args, env={"FOREXD_BROKER_URL": url})
    assert res.exit_code == 78, res.output
    assert_one_line(res.stderr, "FOREXD_BROKER_URL=", "kafka://HOST:PORT")


# -- places that must not be created ------------------------------------------------------------


def test_retrain_local_on_a_database_in_a_missing_directory_exits_66_and_creates_nothing(tmp_path: Path) -> None:
    """``retrain --local --db sqlite:///typo/x.db`` made the directory and a 100 kB empty
    database, then failed as "not enough candles … 0 in the database" (exit 1)."""
    typo = tmp_path / "typo" / "x.db"
    res = runner.invoke(
        app,
        ["retrain", "--symbol", "EURUSD", "--timeframe", "1h", "--local", "--db", f"sqlite:///{typo}"],
        env={"FOREXD_MODEL_DIR": str(tmp_path / "m")},
    )
    assert res.exit_code == 66, res.output
    assert_one_line(res.stderr, "x.db does not exist")
    assert not typo.parent.exists()


def test_retrain_local_into_a_model_dir_that_is_a_file_exits_73_before_the_database(tmp_path: Path) -> None:
    """``retrain --local --model-dir FILE`` opened the database and ran the job first; the
    database here does not exist, so 73 (not 66) shows the model directory is checked first."""
    (tmp_path / "f").write_text("x")
    args = ["retrain", "--symbol", "EURUSD", "--timeframe", "1h", "--local", "--model-dir", str(tmp_path / "f")]
    res = runner.invoke(app, [*args, "--db", f"sqlite:///{tmp_path / 'none' / 'x.db'}"])
    assert res.exit_code == 73, res.output
    assert_one_line(res.stderr, "--model-dir", "is a file: pass a directory")


@pytest.mark.parametrize("under", [False, True])
def test_models_register_into_a_model_dir_that_is_a_file_exits_73_and_makes_no_registry(
    under: bool, tmp_path: Path
) -> None:
    """``models register CKPT --model-dir FILE`` created a 94 kB registry database, then failed
    with ``[Errno 20] Not a directory: '…/.staging/…'`` (exit 74)."""
    (tmp_path / "f").write_text("x")
    mdir = tmp_path / "f" / "sub" if under else tmp_path / "f"
    db = tmp_path / "reg.db"
    ckpt = next(MODEL_1H.glob("*.pt"))
    res = runner.invoke(app, ["models", "register", str(ckpt), "--db", f"sqlite:///{db}", "--model-dir", str(mdir)])
    assert res.exit_code == 73, res.output
    assert_one_line(res.stderr, "--model-dir", "a file: pass a directory")
    assert not db.exists()


@pytest.mark.parametrize("checkpoint", ["missing.pt", "/dev/null", "KEYDIR"])
def test_models_register_of_no_checkpoint_exits_2_and_makes_no_registry(checkpoint: str, tmp_path: Path) -> None:
    """``models register missing.pt --db sqlite:///new.db`` created the 94 kB registry
    database, then said "checkpoint file not found"; given a model key's directory it made
    the registry and the model directory, then failed with ``[Errno 2] … KEYDIR.pt``. Now
    refused before either is made, with exit 2 as a missing or corrupt ``backtest --model``."""
    db = tmp_path / "new.db"
    src = {"missing.pt": str(tmp_path / checkpoint), "KEYDIR": str(MODEL_1H)}.get(checkpoint, checkpoint)
    res = runner.invoke(app, ["models", "register", src, "--db", f"sqlite:///{db}", "--model-dir", str(tmp_path / "m")])
    assert res.exit_code == 2, res.output
    assert_one_line(
        res.stderr, "checkpoint", "a directory: pass one of its .pt files" if checkpoint == "KEYDIR" else ""
    )
    assert not db.exists()
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("alias", ["EURUSD/60m/24", "EURUSD/1H/24"])
def test_models_register_stores_a_timeframe_alias_as_the_stream_spells_it(alias: str, tmp_path: Path) -> None:
    """``--key EURUSD/60m/24`` was stored as typed: no worker (which looks up ``1h``) served it."""
    db = f"sqlite:///{tmp_path / 'reg.db'}"
    ckpt = next(MODEL_1H.glob("*.pt"))
    res = runner.invoke(
        app, ["models", "register", str(ckpt), "--key", alias, "--db", db, "--model-dir", str(tmp_path)]
    )
    assert res.exit_code == 0, res.output
    assert "for EURUSD/1h/24" in res.stdout
    listed = runner.invoke(app, ["models", "list", "--db", db, "--model-dir", str(tmp_path)])
    assert "EURUSD/1h/24" in listed.stdout and alias not in listed.stdout


def test_train_into_a_model_dir_under_a_file_exits_73_before_training(tmp_path: Path) -> None:
    """A --model-dir under a regular file passed the writability probe (the file is
    writable) and training began; it now names the file, before anything is read."""
    (tmp_path / "f").write_text("x")
    candles = write_candles(tmp_path / "c.csv")
    res = runner.invoke(
        app,
        ["train", str(candles), "--symbol", "EURUSD", "--timeframe", "1h", "--model-dir", str(tmp_path / "f" / "m")],
    )
    assert res.exit_code == 73, res.output
    assert_one_line(res.stderr, "is under", "a file: pass a directory")


# -- model keys and timeframes that name nothing ------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        ["models", "list", "--key", "EURUSD/1x/5"],
        ["models", "history", "EURUSD/0m/5"],
        ["models", "shadow", "EURUSD/99999d/5"],
        ["models", "rollback", "EURUSD-7x-h5"],
        ["models", "register", "CKPT", "--key", "EURUSD/1x/5"],
    ],
)
def test_a_model_key_of_an_unknown_timeframe_is_a_usage_error(command: list[str], tmp_path: Path) -> None:
    """``models list --key EURUSD/1x/5`` and ``history EURUSD/0m/5`` printed nothing with exit 0;
    ``models register CKPT --key EURUSD/1x/5`` registered the 1h model under that key."""
    db = tmp_path / "reg.db"
    db.touch()
    args = [str(MODEL_1H) if a == "CKPT" else a for a in command]
    res = runner.invoke(app, [*args, "--db", f"sqlite:///{db}", "--model-dir", str(tmp_path / "m")])
    assert res.exit_code == 2, res.output
    assert_one_line(res.stderr, "timeframe")
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("key", ["EURUSD/1m/24", "EURUSD/1h/5", "USDJPY/4h/24"])
def test_models_register_refuses_a_key_of_another_timeframe_or_horizon(key: str, tmp_path: Path) -> None:
    """``models register EURUSD-1h-h24 --key USDJPY/1m/5`` registered the 1h, 24-step model
    under the 1m, 5-step key (exit 0): the worker would serve it for those candles."""
    db = tmp_path / "reg.db"
    args = ["models", "register", str(next(MODEL_1H.glob("*.pt"))), "--key", key, "--db", f"sqlite:///{db}"]
    res = runner.invoke(app, [*args, "--model-dir", str(tmp_path / "m")])
    assert res.exit_code == 2, res.output
    assert_one_line(res.stderr, f"--key {key} does not fit", "24 steps of 1h candles")
    assert not db.exists()


def test_models_register_may_re_key_the_symbol_only(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'reg.db'}"
    ckpt = next(MODEL_1H.glob("*.pt"))
    args = ["models", "register", str(ckpt), "--key", "*/1h/24", "--db", db, "--model-dir", str(tmp_path / "m")]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "for */1h/24" in res.stdout


def test_report_of_an_unknown_timeframe_is_a_usage_error(tmp_path: Path) -> None:
    """``report --timeframe 1x`` opened the database and said "no stored forecasts at 1x" (exit 1)."""
    res = runner.invoke(
        app, ["report", "--db", f"sqlite:///{tmp_path / 'none.db'}", "-o", "r.html", "--timeframe", "1x"]
    )
    assert res.exit_code == 2, res.output
    assert_one_line(res.stderr, "unknown timeframe '1x'")


def test_backtest_plot_as_of_of_no_forecast_is_refused_before_writing_anything(tmp_path: Path) -> None:
    """``--plot-as-of 2030-01-01`` wrote the whole -o CSV, then failed as "no forecast at
    as_of=1893456000000" (exit 2): a failed run that left its output behind."""
    out, png = tmp_path / "b.csv", tmp_path / "p.png"
    args = ["backtest", str(write_candles(tmp_path / "c.csv", 80)), "--symbol", "EURUSD", "--timeframe", "1h"]
    res = runner.invoke(
        app,
        [*args, "--model", str(MODEL_1H), "-o", str(out), "--every", "8", "-n", "8", "--steps", "2"]
        + ["--plot", str(png), "--plot-as-of", "2030-01-01", "--touch-bands", "none"],
    )
    assert res.exit_code == 2, res.output
    assert_one_line(res.stderr, "'--plot-as-of'", "2030-01-01 is the as_of of no forecast")
    assert not out.exists() and not png.exists()
