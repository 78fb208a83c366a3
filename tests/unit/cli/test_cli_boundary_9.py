"""``forexd`` boundary hunt (9): each a failure of the command line left before, pinned.

1. ``train``/``backtest``/``indicators --timeframe 1d`` took any bars whose most common gap
   was 23 hours or more: weekly or monthly bars, and a daily file whose dates may be read
   either way (``01/05/2005`` … ``12/05/2005``) read month first, a bar a month. Daily bars
   are a day apart (a few days over weekends); bars further apart are refused, naming their
   spacing and, for dates that read either way, the order they were read in.
2. ``--db sqlite:///DIR`` (a directory) said "… a worker's database or a new file file"; a
   relative ``sqlite:///nonexistent/dir/x.db`` did not say it was relative.
3. ``backtest --from/--to`` wholly before the file's data said "no forecast in the span (…):
   widen --from/--to"; it now names the span and the data's.
4. A path past the system's limits (a 5,000-character ``--model-dir``, ``-o``, input file or
   SQLite file) said ``[Errno 36] File name too long`` (exit 74), naming no option.
5. ``indicators --symbol X`` refused a file holding no X row in the reader's words, other than
   ``train``/``backtest``'s: now one message from one place.
6. A path holding a newline was shown with a space in its place (``candle file h1 .csv does
   not exist``): a file never given.
"""

from __future__ import annotations

import datetime as dt
import math
import os
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from streams.cli import app

from .test_cli_boundary_3 import one_line
from .test_leftovers_8 import CHEAP, MODEL_1H, TINY, backtest, bars_file, model_of, tick_file, train

ROOT = Path(__file__).resolve().parents[3]
DAILY = ROOT / "tests" / "data" / "lean" / "lean_oanda_d1_4pairs.csv.gz"
runner = CliRunner()


def dated_file(path: Path, dates: Sequence[dt.date], fmt: str = "%Y-%m-%d") -> Path:
    """Daily-like EUR/USD bars, one per date, the date written in ``fmt``."""
    rows = ["timestamp,symbol,open,high,low,close"]
    for i, d in enumerate(dates):
        p = 1.1 * (1 + 0.002 * math.sin(i / 5) + 0.0007 * ((i * 7919) % 13 - 6) / 6)
        rows.append(f"{d.strftime(fmt)},EURUSD,{p:.5f},{p * 1.001:.5f},{p * 0.999:.5f},{p:.5f}")
    path.write_text("\n".join(rows) + "\n")
    return path


def run_1d(command: str, src: Path, tmp: Path) -> tuple[int, str]:
    """``command`` over ``src`` as ``--timeframe 1d``: exit status and standard error."""
    if command == "train":
        code, out, err = train(src, tmp / "models", *TINY, timeframe="1d")
        return code, out + err
    if command == "backtest":
        code, err = backtest(src, tmp / "bt.csv", *CHEAP, model=model_of(tmp, "1d"), timeframe="1d")
        return int(code), str(err)
    res = runner.invoke(app, ["indicators", str(src), "--timeframe", "1d", "-o", str(tmp / "i.csv")])
    return res.exit_code, res.stderr


COMMANDS = ["train", "backtest", "indicators"]
#: The 1st to the 12th of May of ten years: every date reads either way.
MAY_1_TO_12 = [dt.date(y, 5, d) for y in range(2005, 2015) for d in range(1, 13)]


# -- 1: daily bars are a day apart ---------------------------------------------------------------


@pytest.mark.parametrize("command", COMMANDS)
def test_daily_dates_read_month_first_as_monthly_bars_are_refused_naming_the_order(
    command: str, tmp_path: Path
) -> None:
    """Before: accepted as 1d, a bar a month (backtest exit 0, indicators exit 0)."""
    src = dated_file(tmp_path / "eurusd_d1.csv", MAY_1_TO_12, "%d/%m/%Y")
    code, err = run_1d(command, src, tmp_path)
    assert code == 65, err
    one_line(
        err,
        "eurusd_d1.csv: its bars are 31 days apart (the most common gap), not 1d",
        "its dates, such as '01/05/2005', were read month first (5 January 2005)",
        "read day first, they may be daily: write them as YYYY-MM-DD (2005-05-01)",
    )
    assert not (tmp_path / "bt.csv").exists() and not (tmp_path / "i.csv").exists()


@pytest.mark.parametrize("command", COMMANDS)
def test_weekly_bars_as_1d_are_refused_naming_their_spacing(command: str, tmp_path: Path) -> None:
    """Before: accepted as 1d. Dates written year first say nothing of an order."""
    src = dated_file(tmp_path / "eurusd_w1.csv", [dt.date(2014, 1, 6) + dt.timedelta(7 * i) for i in range(200)])
    code, err = run_1d(command, src, tmp_path)
    assert code == 65, err
    line = one_line(err, "eurusd_w1.csv: its bars are 7 days apart (the most common gap), not 1d")
    assert "read month first" not in line and "read day first" not in line


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(days=st.integers(min_value=2, max_value=400), n=st.integers(min_value=10, max_value=60))
def test_bars_further_apart_than_a_day_are_no_daily_bars(days: int, n: int, tmp_path: Path) -> None:
    """Of 10 bars or more, a most common gap of whole days past one is no daily file's."""
    src = dated_file(tmp_path / "eurusd.csv", [dt.date(2001, 1, 1) + dt.timedelta(days * i) for i in range(n)])
    res = runner.invoke(app, ["indicators", str(src), "--timeframe", "1d", "-o", str(tmp_path / "i.csv")])
    assert res.exit_code == 65, res.output
    one_line(res.stderr, f"its bars are {days} days apart (the most common gap), not 1d")


@pytest.mark.parametrize("symbol", ["EURUSD", "GBPUSD", "NZDUSD", "EURGBP"])
def test_real_daily_bars_are_still_daily(symbol: str) -> None:
    """The bundled Lean OANDA daily file (24 h apart, 2 to 7 days over weekends and holidays)."""
    from streams.commands.backtest import read_series

    loaded = read_series(DAILY, symbol, timeframe="1d", price="mid")
    assert len(loaded.frame) > 3000
    res = runner.invoke(app, ["indicators", str(DAILY), "--symbol", symbol, "--timeframe", "1d", "-o", os.devnull])
    assert res.exit_code == 0, res.output


def test_daily_bars_across_a_clock_change_of_25_hours_are_daily(tmp_path: Path) -> None:
    """Bars at 17:00 New York are 23 or 25 hours apart across a clock change: still daily."""
    from zoneinfo import ZoneInfo

    ny = ZoneInfo("America/New_York")
    days = [dt.date(2014, 10, 27) + dt.timedelta(i) for i in range(14)]
    stamps = [dt.datetime(d.year, d.month, d.day, 17, tzinfo=ny).astimezone(dt.UTC) for d in days]
    src = dated_file(tmp_path / "eurusd_d1.csv", stamps, "%Y-%m-%dT%H:%M:%SZ")
    res = runner.invoke(app, ["indicators", str(src), "--timeframe", "1d", "-o", str(tmp_path / "i.csv")])
    assert res.exit_code == 0, res.output


def test_a_few_weekly_bars_are_refused_and_a_long_weekend_is_not(tmp_path: Path) -> None:
    """Of fewer than 10 bars, a gap of a week is no daily file's; Easter's (Thursday to
    Tuesday, 5 days) is."""
    model = model_of(tmp_path, "1d")
    weekly = dated_file(tmp_path / "w.csv", [dt.date(2014, 1, 6) + dt.timedelta(7 * i) for i in range(3)])
    code, err = backtest(weekly, tmp_path / "bt.csv", model=model, timeframe="1d")
    assert code == 65, err
    one_line(err, "w.csv: its 3 bars are 7 days apart", "pass the file of 1d candles, at least 49 of them")
    easter = dated_file(tmp_path / "e.csv", [dt.date(2014, 4, 17), dt.date(2014, 4, 22)])  # Thursday, Tuesday
    code, err = backtest(easter, tmp_path / "bt.csv", model=model, timeframe="1d")
    assert code == 1, err
    one_line(err, "e.csv holds 2 1d candles")


# -- 2: the database forms ------------------------------------------------------------------------


def test_db_that_is_a_directory_is_said_without_a_doubled_word(tmp_path: Path) -> None:
    """Before: "point --db or FOREXD_DATABASE_URL at a worker's database or a new file file"."""
    res = runner.invoke(
        app,
        ["models", "register", str(next(MODEL_1H.glob("*.pt"))), "--db", f"sqlite:///{tmp_path}"]
        + ["--model-dir", str(tmp_path / "models")],
    )
    assert res.exit_code == 66, res.output
    line = one_line(res.stderr, f"database file {tmp_path} is a directory, not a file", "a worker's database")
    assert "file file" not in line
    assert not (tmp_path / "models").exists()


def test_db_of_a_relative_sqlite_path_says_it_is_relative(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: "database file nonexistent/dir/x.db does not exist", of a URL most likely meant
    as /nonexistent/dir/x.db (three slashes and a relative path)."""
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, ["models", "list", "--db", "sqlite:///nonexistent/dir/x.db"])
    assert res.exit_code == 66, res.output
    one_line(
        res.stderr,
        f"database file nonexistent/dir/x.db (relative to {tmp_path}: an absolute path takes four slashes, "
        "sqlite:////nonexistent/dir/x.db) does not exist",
    )
    assert not (tmp_path / "nonexistent").exists()


def test_db_url_with_a_password_never_prints_it() -> None:
    res = runner.invoke(app, ["models", "list", "--db", "postgresql+psycopg2://u:s3cretpw@127.0.0.1:1/db"])
    assert res.exit_code == 69, res.output
    line = one_line(res.stderr, "postgresql+psycopg2://u:***@127.0.0.1:1/db")
    assert "s3cretpw" not in res.output and "s3cretpw" not in line


# -- 3: a span wholly before the data --------------------------------------------------------------


@pytest.mark.parametrize("span", [["--from", "2010-01-01", "--to", "2010-02-01"], ["--to", "2010-02-01"]])
def test_backtest_span_before_the_data_names_both_spans(span: list[str], tmp_path: Path) -> None:
    """Before: exit 1, "no forecast in the span (…): widen --from/--to"."""
    src = bars_file(tmp_path / "eurusd.csv", 200)
    out = tmp_path / "bt.csv"
    code, err = backtest(src, out, *CHEAP, *span)
    assert code == 1, err
    line = one_line(
        err,
        f"{' '.join(span)} is before the data (eurusd.csv runs from 2016-01-01T00:00:00Z to 2016-01-09T07:00:00Z)",
        "choose a later --to",
    )
    assert "widen" not in line
    assert not out.exists()


def test_backtest_span_past_the_data_names_the_span(tmp_path: Path) -> None:
    src = bars_file(tmp_path / "eurusd.csv", 200)
    code, err = backtest(src, tmp_path / "bt.csv", *CHEAP, "--from", "2020-01-01", "--to", "2020-02-01")
    assert code == 1, err
    one_line(err, "--from 2020-01-01 --to 2020-02-01 is past the data (eurusd.csv runs from", "an earlier --from")


# -- 4: a path too long ----------------------------------------------------------------------------

LONG = "a" * 5000


def _too_long_cases(tmp: Path) -> list[tuple[list[str], int, str]]:
    src = bars_file(tmp / "eurusd.csv", 200)
    ticks = tick_file(tmp / "ticks.csv", "EURUSD")
    model = str(next(MODEL_1H.glob("*.pt")))
    long = str(tmp / LONG)
    bt = ["backtest", str(src), "--symbol", "EURUSD", "--timeframe", "1h"]
    tr = ["--symbol", "EURUSD", "--timeframe", "1h"]
    return [
        (["train", str(src), *tr, "--model-dir", long], 73, "--model-dir "),
        (["train", long + ".csv", *tr, "--model-dir", str(tmp / "m")], 66, "candle file "),
        ([*bt, "--model", model, "-o", long + ".csv"], 73, "cannot write -o "),
        ([*bt, "--model", model, "-o", str(tmp / "o.csv"), "--plot", long + ".png"], 73, "cannot write --plot "),
        ([*bt, "--model", long, "-o", str(tmp / "o.csv")], 2, "--model "),
        (["indicators", long + ".csv"], 66, "candle file "),
        (["indicators", str(src), "-o", long + ".csv"], 73, "cannot write -o "),
        (["candles", str(ticks), "--rejects", long + ".csv"], 73, "cannot write --rejects "),
        (["candles", long + ".csv"], 66, "tick file "),
        (["replay", long + ".csv"], 66, "input file "),
        (["report", "-o", long + ".html", "--db", f"sqlite:///{tmp / 'x.db'}"], 73, "cannot write -o "),
        (["models", "list", "--db", f"sqlite:///{long}.db"], 2, "database URL "),
    ]


@pytest.mark.parametrize("case", range(12))
def test_a_path_too_long_is_one_line_naming_the_option(case: int, tmp_path: Path) -> None:
    """Before: "[Errno 36] File name too long: '…'" (exit 74), naming no option."""
    args, status, said = _too_long_cases(tmp_path)[case]
    res = runner.invoke(app, args)
    assert res.exit_code == status, res.output
    line = one_line(res.stderr, said, " characters)", "a name in it is 5,0", "past the 255 a file name may have")
    assert "Errno" not in line and "choose a shorter path" in line
    assert len(line) < 600  # the path trimmed


def test_a_path_too_long_in_total_is_said_so(tmp_path: Path) -> None:
    deep = tmp_path.joinpath(*["b" * 200] * 30) / "i.csv"  # each name allowed, the path not
    res = runner.invoke(app, ["indicators", str(bars_file(tmp_path / "c.csv", 50)), "-o", str(deep)])
    assert res.exit_code == 73, res.output
    one_line(res.stderr, "cannot write -o ", "bytes long, past what the system takes in a path")


# -- 5: one message for no row of the symbol ------------------------------------------------------


def _no_rows_line(command: str, src: Path, tmp: Path) -> str:
    if command == "indicators":
        res = runner.invoke(app, ["indicators", str(src), "--symbol", "EURUSD", "-o", str(tmp / "i.csv")])
        code, err = res.exit_code, res.stderr
    elif command == "train":
        code, out, err = train(src, tmp / "m", *TINY)
    else:
        code, err = backtest(src, tmp / "bt.csv")
    assert code == 65, err
    return str(one_line(err))


@pytest.mark.parametrize(
    "symbol",
    ["", "1", lambda i: "" if i == 7 else "GBPUSD"],
    ids=["blank", "numbers", "other symbol and a blank"],
)
def test_no_rows_of_the_symbol_is_one_message_in_every_command(symbol: object, tmp_path: Path) -> None:
    """Before: indicators said "… is blank on every row; write …" and "(it holds 1); …" and
    "(it holds GBPUSD and rows without a symbol)", train and backtest "… is blank on every
    row: write …", "(it holds '1'): …" and "(it holds GBPUSD, and 1 rows without a symbol)"."""
    src = bars_file(tmp_path / "c.csv", 200, symbol=symbol)
    lines = {c: _no_rows_line(c, src, tmp_path) for c in COMMANDS}
    assert len(set(lines.values())) == 1, lines
    assert lines["indicators"].startswith("error: c.csv holds no EURUSD candles")


# -- 6: a path holding a newline or a byte that is not UTF-8 ---------------------------------------


@pytest.mark.parametrize(("name", "shown"), [("h1\n.csv", r"'h1\n.csv'"), ("h1\udcff.csv", r"'h1\udcff.csv'")])
def test_a_path_holding_a_newline_is_shown_quoted(name: str, shown: str, tmp_path: Path) -> None:
    """Before: "candle file …/h1 .csv does not exist": a space where the newline is."""
    res = runner.invoke(app, ["indicators", str(tmp_path / name)])
    assert res.exit_code == 66, res.output
    line = one_line(res.stderr, "candle file '", f"{shown[1:]} does not exist: check the path")
    assert " .csv" not in line


def test_an_output_named_with_a_newline_is_shown_quoted(tmp_path: Path) -> None:
    src = bars_file(tmp_path / "c.csv", 50)
    res = runner.invoke(app, ["indicators", str(src), "-o", str(tmp_path / "no\ndir" / "i.csv")])
    assert res.exit_code == 73, res.output
    one_line(res.stderr, r"no\ndir/i.csv'", r"directory '", "does not exist; create it or choose another -o")


# -- the input as an output, by any spelling: refused, the input intact ----------------------------


@pytest.mark.parametrize("spelling", ["same", "dot", "link", "dotdot"])
@pytest.mark.parametrize("option", ["-o", "--rejects"])
def test_candles_never_writes_over_its_input(spelling: str, option: str, tmp_path: Path) -> None:
    ticks = tick_file(tmp_path / "ticks.csv", "EURUSD")
    before = ticks.read_bytes()
    (tmp_path / "link.csv").symlink_to(ticks)
    out = {
        "same": str(ticks),
        "dot": f"{tmp_path}/./ticks.csv",
        "link": str(tmp_path / "link.csv"),
        "dotdot": f"{tmp_path}/../{tmp_path.name}/ticks.csv",
    }[spelling]
    res = runner.invoke(app, ["candles", str(ticks), option, out, *(["-o", os.devnull] if option != "-o" else [])])
    assert res.exit_code == 73, res.output
    one_line(res.stderr, "it is the tick file", f"choose another {option}")
    assert ticks.read_bytes() == before


# -- links that lead nowhere ------------------------------------------------------------------------


def test_an_output_that_is_a_symbolic_link_loop_is_refused_without_a_traceback(tmp_path: Path) -> None:
    """Before: a traceback, "RuntimeError: Symlink loop from '…/loop1'" (Path.resolve)."""
    (tmp_path / "loop1").symlink_to(tmp_path / "loop2")
    (tmp_path / "loop2").symlink_to(tmp_path / "loop1")
    src = bars_file(tmp_path / "c.csv", 50)
    for option in ("-o", "--rejects"):
        res = runner.invoke(app, ["indicators", str(src), option, str(tmp_path / "loop1")])
        assert res.exit_code == 73, res.output
        one_line(res.stderr, "loop1: it is a symbolic link loop", f"fix the link or choose another {option}")


def test_an_output_linked_into_a_missing_directory_is_refused_before_the_work(tmp_path: Path) -> None:
    """Before: exit 74 after the indicators were computed, "No such file or directory"."""
    (tmp_path / "out.csv").symlink_to(tmp_path / "nowhere" / "x.csv")
    res = runner.invoke(app, ["indicators", str(bars_file(tmp_path / "c.csv", 50)), "-o", str(tmp_path / "out.csv")])
    assert res.exit_code == 73, res.output
    one_line(res.stderr, f"it is a link to {tmp_path / 'nowhere' / 'x.csv'}, whose directory does not exist")
    assert not (tmp_path / "nowhere").exists()


def test_an_output_linked_to_a_new_file_is_still_written(tmp_path: Path) -> None:
    (tmp_path / "out.csv").symlink_to(tmp_path / "new.csv")
    res = runner.invoke(app, ["indicators", str(bars_file(tmp_path / "c.csv", 50)), "-o", str(tmp_path / "out.csv")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "new.csv").read_text().startswith("ts_ms,symbol,open")


@pytest.mark.parametrize("under", [False, True])
def test_a_model_dir_that_is_a_link_to_nothing_is_refused_before_training(under: bool, tmp_path: Path) -> None:
    """Before: the model trained, then "[Errno 17] File exists: 'md'" (exit 74)."""
    (tmp_path / "md").symlink_to(tmp_path / "nowhere")
    md = tmp_path / "md" / "sub" if under else tmp_path / "md"
    code, out, err = train(bars_file(tmp_path / "c.csv", 1000), md, *TINY)
    assert code == 73, out + err
    one_line(err, f"{tmp_path / 'md'} is a link to {tmp_path / 'nowhere'}, which does not exist: fix the link")
    assert not (tmp_path / "nowhere").exists()


def test_a_model_that_is_a_symbolic_link_loop_names_the_option(tmp_path: Path) -> None:
    """Before: "…/loop1: checkpoint file not found", naming no option, of a file that is there."""
    (tmp_path / "loop1").symlink_to(tmp_path / "loop2")
    (tmp_path / "loop2").symlink_to(tmp_path / "loop1")
    code, err = backtest(bars_file(tmp_path / "c.csv", 50), tmp_path / "bt.csv", model=tmp_path / "loop1")
    assert code == 2, err
    one_line(err, "--model ", "loop1 is a symbolic link loop (it cannot be resolved)")


@pytest.mark.parametrize("how", ["hard link", "symbolic link", "dot"])
def test_train_of_one_file_twice_by_another_name_is_refused(how: str, tmp_path: Path) -> None:
    """Before: a hard link to the file trained a global model of two copies of its series."""
    src = bars_file(tmp_path / "c.csv", 300)
    other = tmp_path / "d.csv"
    if how == "hard link":
        os.link(src, other)
    elif how == "symbolic link":
        other.symlink_to(src)
    else:
        other = Path(f"{tmp_path}/./c.csv")
    res = runner.invoke(
        app,
        ["train", str(src), str(other), "--symbol", "EURUSD", "--timeframe", "1h", *TINY]
        + ["--model-dir", str(tmp_path / "m")],
    )
    assert res.exit_code == 2, res.output
    one_line(res.stderr, "a candle file is given twice: name each file once")
    assert not (tmp_path / "m").exists()


# -- an output named as a directory -----------------------------------------------------------------


@pytest.mark.parametrize("ending", ["/", "/."])
@pytest.mark.parametrize(
    "command", ["candles -o", "candles --rejects", "indicators -o", "indicators --rejects", "backtest -o"]
)
def test_an_output_ending_as_a_directory_that_is_not_there_writes_no_file(
    command: str, ending: str, tmp_path: Path
) -> None:
    """Before: ``-o newdir/`` wrote a FILE named newdir (Path drops the '/'), exit 0."""
    name, option = command.split()
    src = tick_file(tmp_path / "ticks.csv", "EURUSD") if name == "candles" else bars_file(tmp_path / "c.csv", 200)
    args = [name, str(src), option, f"{tmp_path}/newdir{ending}"]
    if name == "backtest":
        args += ["--symbol", "EURUSD", "--timeframe", "1h", "--model", str(MODEL_1H), *CHEAP]
    elif option == "--rejects":
        args += ["-o", os.devnull]
    res = runner.invoke(app, args)
    assert res.exit_code == 2, res.output
    one_line(res.stderr, f"newdir{ending} ends as a directory's name does, and there is no such directory")
    assert not (tmp_path / "newdir").exists()


def test_an_output_naming_a_file_as_a_directory_never_writes_it(tmp_path: Path) -> None:
    """Before: ``-o old.csv/`` wrote over old.csv."""
    old = tmp_path / "old.csv"
    old.write_text("keep\n")
    res = runner.invoke(app, ["indicators", str(bars_file(tmp_path / "c.csv", 50)), "-o", f"{old}/"])
    assert res.exit_code == 2, res.output
    one_line(res.stderr, f"{old}/ ends as a directory's name does, and {old} is a file")
    assert old.read_text() == "keep\n"


def test_an_output_that_is_a_directory_by_its_ending_is_still_said_as_a_directory(tmp_path: Path) -> None:
    res = runner.invoke(app, ["indicators", str(bars_file(tmp_path / "c.csv", 50)), "-o", f"{tmp_path}/"])
    assert res.exit_code == 73, res.output
    one_line(res.stderr, "it is a directory; give -o a file name")
