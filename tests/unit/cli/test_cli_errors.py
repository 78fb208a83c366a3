"""``forexd``: every user error is one line on stderr with a documented exit status (issue 14).

The broker-down cases run the real console script in a subprocess (no traceback, no
"Unclosed AIOKafkaConsumer", bounded); the others use typer's runner on the same app.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from streams.cli import EXIT_CODES, app

ROOT = Path(__file__).resolve().parents[3]
FOREXD = Path(sys.executable).with_name("forexd")
MODEL_1H = ROOT / "forex_diffusion" / "bundled" / "models" / "EURUSD-1h-h24"
DOWN = "kafka://127.0.0.1:1"  # nothing listens on port 1: connection refused at once
runner = CliRunner()


def forexd(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run the installed ``forexd`` with a generous ceiling (a hang fails, slowness does not)."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("FOREXD_")}
    full.update(env or {})
    cmd = [str(FOREXD)] if FOREXD.exists() else [sys.executable, "-m", "streams.cli"]
    return subprocess.run([*cmd, *args], capture_output=True, text=True, env=full, timeout=240, cwd=cwd)


def assert_one_line(stderr: str, *needles: str) -> None:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: "), stderr
    for n in needles:
        assert n in lines[0], (n, stderr)
    assert "Traceback" not in stderr and "Unclosed" not in stderr


def write_candles(
    path: Path,
    *,
    symbol: str = "EURUSD",
    step_ms: int = 3_600_000,
    n: int = 200,
    price: float = 1.1,
    start_ms: int = 1_451_606_400_000,
) -> Path:
    rows = ["timestamp,symbol,open,high,low,close"]
    for i in range(n):
        p = price * (1 + 0.001 * ((i % 7) - 3))
        rows.append(f"{start_ms + i * step_ms},{symbol},{p:.5f},{p * 1.001:.5f},{p * 0.999:.5f},{p:.5f}")
    path.write_text("\n".join(rows) + "\n")
    return path


def write_forexd_candles(
    path: Path, timeframes: dict[str, int], symbols: tuple[str, ...] = ("EURUSD",), n: int = 60
) -> Path:
    """A file as ``forexd candles --timeframes …`` writes it (symbol,timeframe,open_time,…)."""
    rows = ["symbol,timeframe,open_time,open,high,low,close,tick_count,volume,spread_mean,spread_min,spread_max"]
    for sym in symbols:
        for tf, step in timeframes.items():
            for i in range(n):
                t = 1_399_248_000 + i * step  # 2014-05-05, seconds
                stamp = f"{t}"
                rows.append(f"{sym},{tf},{stamp},1.38718,1.3872,1.3871,1.38719,3,0.0,0.00016,0.00015,0.00018")
    path.write_text("\n".join(rows) + "\n")
    return path


# -- broker down: a subprocess each, bounded, one line, 69 with the address ----------------------


def test_tail_with_the_broker_down_exits_69_naming_the_address_without_unclosed_noise() -> None:
    res = forexd("tail", "fx.ticks", env={"FOREXD_BROKER_URL": DOWN})
    assert res.returncode == 69, res.stderr
    assert_one_line(res.stderr, "broker unreachable at kafka://127.0.0.1:1", "FOREXD_BROKER_URL")


def test_worker_with_the_broker_down_waits_then_exits_69_naming_the_address() -> None:
    res = forexd("worker", env={"FOREXD_BROKER_URL": DOWN, "FOREXD_BROKER_WAIT_S": "0"})
    assert res.returncode == 69, res.stderr
    assert_one_line(res.stderr, "broker unreachable at kafka://127.0.0.1:1", "FOREXD_BROKER_URL")
    waited = forexd("worker", env={"FOREXD_BROKER_URL": DOWN, "FOREXD_BROKER_WAIT_S": "1"})
    assert waited.returncode == 69 and "broker.wait address=127.0.0.1:1" in waited.stderr, waited.stderr
    assert "Traceback" not in waited.stderr and waited.stderr.strip().splitlines()[-1].startswith("error: ")


def test_replay_with_the_broker_down_exits_69_after_reading_the_file(tmp_path: Path) -> None:
    ticks = tmp_path / "eurusd_ticks.csv"
    ticks.write_text("ts_ms,bid,ask\n1398902400292,1.38676,1.38686\n1398902405000,1.38677,1.38687\n")
    res = forexd("replay", str(ticks), env={"FOREXD_BROKER_URL": DOWN})
    assert res.returncode == 69, res.stderr
    assert_one_line(res.stderr, "broker unreachable at kafka://127.0.0.1:1")


def test_replay_of_a_missing_file_exits_66(tmp_path: Path) -> None:
    res = forexd("replay", "missing.csv", env={"FOREXD_BROKER_URL": DOWN}, cwd=tmp_path)
    assert res.returncode == 66
    assert_one_line(res.stderr, "missing.csv does not exist")


def test_replay_with_a_speed_that_is_not_a_number_is_a_usage_error(tmp_path: Path) -> None:
    ticks = tmp_path / "eurusd_ticks.csv"
    ticks.write_text("ts_ms,bid,ask\n1398902400292,1.38676,1.38686\n")
    res = forexd("replay", str(ticks), "--speed", "abc")
    assert res.returncode == 2
    assert_one_line(res.stderr, "--speed", "'abc'", "forexd replay --help")


def test_worker_with_a_bad_partition_count_exits_78_before_starting() -> None:
    res = forexd("worker", env={"FOREXD_PARTITIONS": "abc"})
    assert res.returncode == 78
    assert_one_line(res.stderr, "FOREXD_PARTITIONS='abc'")


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_worker_with_a_non_finite_duration_exits_78_instead_of_spinning(value: str) -> None:
    """``nan`` passed every ``< 0`` check: FOREXD_BROKER_WAIT_S=nan made the broker wait endless."""
    from streams.settings import Settings

    with pytest.raises(Exception, match="FOREXD_IDLE_CLOSE_S"):
        Settings.from_env({"FOREXD_IDLE_CLOSE_S": value})
    res = forexd("worker", env={"FOREXD_BROKER_URL": DOWN, "FOREXD_BROKER_WAIT_S": value})
    assert res.returncode == 78, res.stderr
    assert_one_line(res.stderr, f"FOREXD_BROKER_WAIT_S={value!r}")


def test_a_misspelt_forexd_variable_is_warned_about_on_one_line() -> None:
    res = forexd("tail", "fx.ticks", env={"FOREXD_BROKER_URL": DOWN, "FOREXD_PARTITINS": "3"})
    warnings = [ln for ln in res.stderr.splitlines() if ln.startswith("warning:")]
    assert warnings == [
        "warning: unknown environment variable FOREXD_PARTITINS is ignored; did you mean FOREXD_PARTITIONS?"
    ]
    assert res.returncode == 69


def test_version_prints_the_package_version() -> None:
    from importlib.metadata import version

    res = forexd("--version")
    assert res.returncode == 0 and res.stdout.strip() == f"forexd {version('forex-diffusion-streaming')}"


def test_importing_the_cli_loads_no_heavy_library() -> None:
    """``forexd --help`` stays fast because no command module imports these at import time."""
    heavy = ["torch", "pandas", "faust", "aiokafka", "sqlalchemy", "numba", "scipy", "rich.progress"]
    code = f"import sys, streams.cli; print(','.join(m for m in {heavy!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == ""


# -- the rest through typer's runner ------------------------------------------------------------


def test_unknown_timeframe_is_a_usage_error(sample_ticks: Path) -> None:
    res = runner.invoke(app, ["candles", str(sample_ticks), "--timeframes", "7x"])
    assert res.exit_code == 2
    assert_one_line(res.stderr, "unknown timeframe '7x'")


def test_candles_to_a_missing_directory_exits_73_before_reading(tmp_path: Path) -> None:
    # the tick file does not parse: only a check made before reading can answer 73
    bad = tmp_path / "ticks.csv"
    bad.write_text("not a tick file\n")
    res = runner.invoke(app, ["candles", str(bad), "-o", "/no/such/dir/x.csv"])
    assert res.exit_code == 73
    assert_one_line(res.stderr, "/no/such/dir does not exist")


@pytest.mark.parametrize(
    "command",
    [
        ["candles"],
        ["indicators"],
        ["train", "--symbol", "EURUSD", "--timeframe", "1h", "--model-dir", "models"],
        ["backtest", "--symbol", "EURUSD", "--timeframe", "1h", "--model", "m.pt", "-o", "bt.csv"],
    ],
)
def test_a_missing_input_file_exits_66(command: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, [command[0], "missing.csv", *command[1:]])
    assert res.exit_code == 66, res.output
    assert_one_line(res.stderr, "missing.csv does not exist")


def test_report_on_a_missing_database_file_exits_66(tmp_path: Path) -> None:
    res = runner.invoke(app, ["report", "--db", f"sqlite:///{tmp_path / 'none.db'}", "-o", str(tmp_path / "r.html")])
    assert res.exit_code == 66
    assert_one_line(res.stderr, "none.db does not exist")


@pytest.mark.parametrize("command", [["report", "-o", "r.html"], ["models", "list"]])
def test_an_unreachable_database_exits_69_with_its_address_and_no_password(
    command: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    url = "postgresql+psycopg2://forexd:s3cret@127.0.0.1:1/forexd"
    res = runner.invoke(app, [*command, "--db", url])
    assert res.exit_code == 69, res.output
    assert_one_line(res.stderr, "database unreachable at postgresql+psycopg2://forexd:***@127.0.0.1:1/forexd")
    assert "s3cret" not in res.output


@pytest.mark.parametrize("value", ["nan", "0", "-1"])
def test_tail_with_a_timeout_that_is_no_duration_is_a_usage_error(value: str) -> None:
    res = runner.invoke(app, ["tail", "ticks", "--timeout", value])
    assert res.exit_code == 2
    assert_one_line(res.stderr, "--timeout must be a positive number of seconds")


def test_backtest_with_zero_threads_is_a_usage_error(tmp_path: Path) -> None:
    res = runner.invoke(
        app,
        [
            "backtest",
            str(write_candles(tmp_path / "c.csv")),
            "--symbol",
            "EURUSD",
            "--timeframe",
            "1h",
            "--model",
            "m.pt",
            "-o",
            str(tmp_path / "o.csv"),
            "--threads",
            "0",
        ],
    )
    assert res.exit_code == 2
    assert_one_line(res.stderr, "--threads must be at least 1")


def test_backtest_output_in_a_missing_directory_exits_73_before_loading_the_model(tmp_path: Path) -> None:
    # the model does not exist: answering 73 (not 2, "not found") proves -o is checked first
    res = runner.invoke(
        app,
        [
            "backtest",
            str(write_candles(tmp_path / "c.csv")),
            "--symbol",
            "EURUSD",
            "--timeframe",
            "1h",
            "--model",
            str(tmp_path / "missing.pt"),
            "-o",
            "/no/such/dir/x.csv",
        ],
    )
    assert res.exit_code == 73
    assert_one_line(res.stderr, "cannot write /no/such/dir/x.csv")


def _needs_model() -> None:
    if not MODEL_1H.is_dir():
        pytest.skip(f"bundled model {MODEL_1H} absent")


def test_backtest_refuses_a_model_of_another_timeframe(tmp_path: Path) -> None:
    _needs_model()
    minutes = write_candles(tmp_path / "m1.csv", step_ms=60_000)
    res = runner.invoke(
        app,
        [
            "backtest",
            str(minutes),
            "--symbol",
            "EURUSD",
            "--timeframe",
            "1m",
            "--model",
            str(MODEL_1H),
            "-o",
            str(tmp_path / "o.csv"),
        ],
    )
    assert res.exit_code == 65
    assert_one_line(res.stderr, "forecasts 1h candles, not 1m")


def test_backtest_refuses_a_model_of_another_price_scale(tmp_path: Path) -> None:
    _needs_model()
    yen = write_candles(tmp_path / "usdjpy.csv", symbol="USDJPY", price=150.0)
    res = runner.invoke(
        app,
        [
            "backtest",
            str(yen),
            "--symbol",
            "USDJPY",
            "--timeframe",
            "1h",
            "--model",
            str(MODEL_1H),
            "-o",
            str(tmp_path / "o.csv"),
        ],
    )
    assert res.exit_code == 65
    assert_one_line(res.stderr, "not on USDJPY's scale")


def test_backtest_refuses_prices_that_cannot_be_the_symbols(tmp_path: Path) -> None:
    _needs_model()
    yen_as_euro = write_candles(tmp_path / "c.csv", symbol="EURUSD", price=150.0)
    res = runner.invoke(
        app,
        [
            "backtest",
            str(yen_as_euro),
            "--symbol",
            "EURUSD",
            "--timeframe",
            "1h",
            "--model",
            str(MODEL_1H),
            "-o",
            str(tmp_path / "o.csv"),
        ],
    )
    assert res.exit_code == 65
    assert_one_line(res.stderr, "is not a EURUSD price")


def test_backtest_with_from_past_the_data_is_an_error_not_zero_forecasts(tmp_path: Path) -> None:
    _needs_model()
    res = runner.invoke(
        app,
        [
            "backtest",
            str(write_candles(tmp_path / "c.csv")),
            "--symbol",
            "EURUSD",
            "--timeframe",
            "1h",
            "--model",
            str(MODEL_1H),
            "--from",
            "2030-01-01",
            "-o",
            str(tmp_path / "o.csv"),
        ],
    )
    assert res.exit_code == 1
    assert_one_line(res.stderr, "--from 2030-01-01 is past the data")
    assert not (tmp_path / "o.csv").exists()


def test_backtest_refuses_bars_spaced_unlike_the_timeframe(tmp_path: Path) -> None:
    _needs_model()
    minutes = write_candles(tmp_path / "m1.csv", step_ms=60_000)
    res = runner.invoke(
        app,
        [
            "backtest",
            str(minutes),
            "--symbol",
            "EURUSD",
            "--timeframe",
            "1h",
            "--model",
            str(MODEL_1H),
            "-o",
            str(tmp_path / "o.csv"),
        ],
    )
    assert res.exit_code == 65
    assert_one_line(res.stderr, "bars are 1m apart, not 1h")


def test_a_file_of_several_timeframes_needs_timeframe(tmp_path: Path) -> None:
    multi = write_forexd_candles(tmp_path / "multi.csv", {"1m": 60, "5m": 300})
    res = runner.invoke(app, ["indicators", str(multi)])
    assert res.exit_code == 65
    assert_one_line(res.stderr, "holds several timeframes (1m, 5m)", "--timeframe")
    res = runner.invoke(
        app, ["train", str(multi), "--symbol", "EURUSD", "--timeframe", "1h", "--model-dir", str(tmp_path / "m")]
    )
    assert res.exit_code == 65
    assert_one_line(res.stderr, "holds no 1h candles (it holds 1m, 5m)")
    res = runner.invoke(app, ["replay", str(multi)], env={"FOREXD_BROKER_URL": DOWN})
    assert res.exit_code == 65  # refused before the broker is asked
    assert_one_line(res.stderr, "holds several timeframes")


def test_indicators_timeframe_selects_its_rows(tmp_path: Path) -> None:
    multi = write_forexd_candles(tmp_path / "multi.csv", {"1m": 60, "5m": 300}, n=40)
    out = tmp_path / "i.csv"
    res = runner.invoke(app, ["indicators", str(multi), "--timeframe", "5m", "--spec", "sma_5", "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert len(out.read_text().splitlines()) == 1 + 40


def test_symbol_selects_the_rows_of_a_file_of_several_symbols(tmp_path: Path) -> None:
    from forex_diffusion.errors import DataFormatError
    from forex_diffusion.ingest.readers import read_candle_series

    both = write_forexd_candles(tmp_path / "both.csv", {"1h": 3600}, symbols=("EURUSD", "GBPUSD"), n=30)
    loaded = read_candle_series(both, symbol="gbpusd", timeframe="1h")
    assert set(loaded.frame["symbol"]) == {"GBPUSD"} and len(loaded.frame) == 30
    with pytest.raises(DataFormatError, match="several symbols"):
        read_candle_series(both, timeframe="1h")
    with pytest.raises(DataFormatError, match="holds no USDJPY candles"):
        read_candle_series(both, symbol="USDJPY", timeframe="1h")


def test_worker_log_level_crit_and_the_old_loglevel_spelling(monkeypatch: pytest.MonkeyPatch) -> None:
    """``crit``, listed in the help, reaches faust as a level logging knows (it failed before)."""
    import logging

    import streams.launch

    seen: list[str] = []
    monkeypatch.setattr(streams.launch, "run_worker", lambda **kw: seen.append(kw["log_level"]))
    for args in (["--log-level", "crit"], ["--loglevel", "info"], []):
        res = runner.invoke(app, ["worker", *args], env={"FOREXD_PARTITIONS": "2"})
        assert res.exit_code == 0, res.output
    assert seen == ["critical", "info", "warning"]
    assert all(isinstance(logging.getLevelName(s.upper()), int) for s in seen)
    assert "--loglevel" not in runner.invoke(app, ["worker", "--help"]).output


def test_indicator_help_lists_the_cores_defaults() -> None:
    from forex_diffusion.indicators import DEFAULT_SPEC, INDICATOR_CLASSES
    from streams.commands.indicators import DEFAULT_SPEC_HELP, INDICATOR_NAMES_HELP

    assert DEFAULT_SPEC_HELP == ",".join(DEFAULT_SPEC)
    assert INDICATOR_NAMES_HELP == ", ".join(sorted(INDICATOR_CLASSES))


def test_indicators_write_prices_at_the_instruments_precision(tmp_path: Path) -> None:
    src = tmp_path / "eurusd.csv"
    src.write_text(
        "ts_ms,bid_open,bid_high,bid_low,bid_close,bid_size,ask_open,ask_high,ask_low,ask_close,ask_size\n"
        + "".join(
            f"{1_399_248_000_000 + i * 60_000},1.38682,1.38690,1.38680,1.38683,0,1.38684,1.38692,1.38682,1.38684,0\n"
            for i in range(30)
        )
    )
    out = tmp_path / "i.csv"
    res = runner.invoke(app, ["indicators", str(src), "--spec", "sma_5", "-o", str(out)])
    assert res.exit_code == 0, res.output
    row = out.read_text().splitlines()[1].split(",")
    assert row[2:6] == ["1.38683", "1.38691", "1.38681", "1.386835"]


def test_the_readme_exit_code_table_lists_every_mapped_code() -> None:
    text = (ROOT / "README.md").read_text()
    table = text[text.index("### Exit codes") :]
    documented = {int(m) for m in re.findall(r"^\| `(\d+)` \|", table, flags=re.M)}
    assert {code for _, code in EXIT_CODES} | {0, 2, 3, 74} <= documented


@pytest.mark.broker
def test_replay_publishes_only_the_chosen_timeframe_and_tail_reads_it(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    """With the broker up: ``--timeframe 5m`` of a two-timeframe file publishes its 5m rows only."""
    import json

    multi = write_forexd_candles(tmp_path / "multi.csv", {"1m": 60, "5m": 300}, n=12)
    env = {
        "FOREXD_BROKER_URL": f"kafka://{kafka_bootstrap}",
        "FOREXD_TOPIC_PREFIX": topic_prefix,
        "FOREXD_PARTITIONS": "1",
    }
    res = forexd("replay", str(multi), "--timeframe", "5m", env=env)
    assert res.returncode == 0, res.stderr
    assert res.stderr.strip().splitlines()[-1] == "published 12 records; refused 0 rows: none"
    res = forexd("tail", "candles", "--from-beginning", "-n", "12", "--timeout", "120", env=env)
    assert res.returncode == 0, res.stderr
    values = [json.loads(line)["value"] for line in res.stdout.splitlines()]
    assert len(values) == 12 and {v["timeframe"] for v in values} == {"5m"}


def test_retrain_refuses_a_symbol_that_is_no_pair_before_sending() -> None:
    """Review finding: ``--symbol EUR/XYZ`` was sent and failed at encoding as ``internal`` (65)."""
    res = runner.invoke(app, ["retrain", "--symbol", "EUR/XYZ1", "--timeframe", "1H"], env={"FOREXD_BROKER_URL": DOWN})
    assert res.exit_code == 2
    assert_one_line(res.stderr, "--symbol 'EUR/XYZ1' is no currency pair")


def test_retrain_sends_the_canonical_symbol_and_timeframe_spelling() -> None:
    """``EUR/USD`` and ``1H`` reach the broker form as ``EURUSD`` and ``1h`` (here: the broker is down)."""
    res = forexd("retrain", "--symbol", "EUR/USD", "--timeframe", "1H", env={"FOREXD_BROKER_URL": DOWN})
    assert res.returncode == 69, res.stderr
    assert_one_line(res.stderr, "broker unreachable")


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"FOREXD_MODELS": "1h:24,1h:6"}, "1h twice"),
        ({"FOREXD_MODELS": "1m:60", "FOREXD_HORIZON": "24"}, "FOREXD_MODELS replaces FOREXD_HORIZON"),
        # no CUDA here: "not available"; a machine with CUDA has no 100th device
        ({"FOREXD_DEVICE": "cuda:99"}, "FOREXD_DEVICE=cuda:99"),
    ],
)
def test_worker_with_bad_models_or_device_exits_78_on_one_line(env: dict[str, str], says: str) -> None:
    res = forexd("worker", env={"FOREXD_BROKER_URL": DOWN, "FOREXD_BROKER_WAIT_S": "0", **env})
    assert res.returncode == 78, res.stderr
    assert_one_line(res.stderr, says)


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--speed", "-1"),
        ("--speed", "0"),
        ("--speed", "nan"),
        ("--speed", "inf"),
        ("--duration", "-5"),
        ("--duration", "0"),
        ("--duration", "nan"),
        ("--metrics-port", "0"),
        ("--metrics-port", "70000"),
    ],
)
def test_demo_refuses_a_pace_duration_or_port_it_cannot_honour(option: str, value: str) -> None:
    """``--speed -1`` used to start the whole demo and replay at no pace at all (the broker,
    the worker and 111,408 ticks for nothing); ``--duration nan`` would never end."""
    res = runner.invoke(app, ["demo", option, value])
    assert res.exit_code == 2, res.output
    assert_one_line(res.stderr, option, "forexd demo --help")


@pytest.mark.parametrize(
    ("option", "value", "needle"),
    [
        ("-n", "100000000", "at most 10000"),
        ("-n", "1", "at least 2"),
        ("--steps", "5000", "at most 1000"),
    ],
)
def test_backtest_refuses_a_sampling_budget_out_of_bounds_before_reading(
    option: str, value: str, needle: str, tmp_path: Path
) -> None:
    """``-n 100000000`` was accepted and the first forecast was killed for memory (exit 137)."""
    candles = write_candles(tmp_path / "c.csv")
    args = ["backtest", str(candles), "--symbol", "EURUSD", "--timeframe", "1h", "--model", str(MODEL_1H)]
    res = runner.invoke(app, [*args, "-o", str(tmp_path / "bt.csv"), option, value])
    assert res.exit_code == 2, res.output
    assert_one_line(res.stderr, needle, "forexd backtest --help")
    assert not (tmp_path / "bt.csv").exists()


def test_backtest_refuses_more_steps_than_the_model_has_before_reading_the_candles(tmp_path: Path) -> None:
    """``--steps 500`` with a T = 200 model was refused only after the whole candle file was
    read, as ``sampling steps must be in 1..200``: the candle file here is garbage, so a
    refusal naming ``--steps`` proves the candles were never read."""
    garbage = tmp_path / "c.csv"
    garbage.write_text("not,a,candle,file\n1,2,3\n")
    args = ["backtest", str(garbage), "--symbol", "EURUSD", "--timeframe", "1h", "--model", str(MODEL_1H)]
    res = runner.invoke(app, [*args, "-o", str(tmp_path / "bt.csv"), "--steps", "500"])
    assert res.exit_code == 2, res.output
    assert_one_line(res.stderr, "'--steps'", "at most the model's 200", "forexd backtest --help")
    assert not (tmp_path / "bt.csv").exists()


@pytest.mark.parametrize("where", ["file", "under-a-file"])
def test_demo_refuses_a_data_dir_it_cannot_use_before_starting_anything(where: str, tmp_path: Path) -> None:
    """``--data-dir FILE`` started the live table and then failed as ``File exists``. Refused
    as an output that cannot be created (exit 73, as ``--model-dir``)."""
    (tmp_path / "f").write_text("x")
    path = tmp_path / "f" if where == "file" else tmp_path / "f" / "sub"
    res = runner.invoke(app, ["demo", "--data-dir", str(path), "--duration", "1"])
    assert res.exit_code == 73, res.output
    assert_one_line(res.stderr, "--data-dir", str(path))
    assert "starting embedded broker" not in res.stdout


@pytest.mark.parametrize(
    "command",
    [
        ["models", "list"],
        ["models", "history", "EURUSD/1m/5"],
        ["models", "shadow", "EURUSD/1m/5"],
        ["models", "promote", "v1"],
        ["models", "rollback", "EURUSD/1m/5"],
    ],
)
@pytest.mark.parametrize("scheme", ["sqlite", "sqlite+pysqlite"])
def test_models_on_a_mistyped_database_path_exits_66_and_creates_nothing(
    command: list[str], scheme: str, tmp_path: Path
) -> None:
    """``models list --db sqlite:///typo.db`` printed an empty table with exit 0 and left a
    new 94 kB database behind; only ``models register`` may start a registry."""
    typo = tmp_path / "typo.db"
    res = runner.invoke(app, [*command, "--db", f"{scheme}:///{typo}", "--model-dir", str(tmp_path / "m")])
    assert res.exit_code == 66, res.output
    assert_one_line(res.stderr, "typo.db does not exist")
    assert not typo.exists()


def test_models_list_on_an_existing_database_without_a_registry_is_an_empty_list(tmp_path: Path) -> None:
    """An existing file (a worker's database before any model was registered, or an empty
    one) still gets the registry's tables, as before: an empty list, exit 0."""
    (tmp_path / "worker.db").touch()
    res = runner.invoke(app, ["models", "list", "--db", f"sqlite:///{tmp_path / 'worker.db'}"])
    assert res.exit_code == 0, res.output
    assert "version" in res.output and res.stderr == ""
