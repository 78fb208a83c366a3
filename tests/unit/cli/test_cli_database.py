"""``forexd`` given a database (``--db``, ``FOREXD_DATABASE_URL``, ``demo --data-dir``) it
cannot use, long echoed values, and a candle file through a pipe: each is one ``error:``
line with its documented status, before anything is written.

Each test says what the command did before its fix. Conventions (and the helpers) are
those of ``test_cli_errors.py`` and ``test_cli_hostile.py``.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from streams.cli import app
from streams.commands._common import LINE_CLIP, VALUE_CLIP, hide_password, one_line

from .test_cli_errors import DOWN, assert_one_line, forexd, runner
from .test_cli_hostile import write_candles, write_ticks
from .test_unreadable_files import as_a_user

ROOT = Path(__file__).resolve().parents[3]
CHECKPOINT = next((ROOT / "forex_diffusion" / "bundled" / "models" / "EURUSD-1h-h24").glob("*.pt"))

#: Every command that opens a database, with what it needs besides ``--db`` (``IN``: a candle file).
DB_COMMANDS = [
    ["models", "list"],
    ["models", "history", "EURUSD/1h/24"],
    ["models", "shadow", "EURUSD/1h/24"],
    ["models", "promote", "v1"],
    ["models", "rollback", "EURUSD/1h/24"],
    ["models", "register", str(CHECKPOINT)],
    ["report", "-o", "r.html"],
    ["retrain", "--symbol", "EURUSD", "--timeframe", "1h", "--local"],
    ["train", "IN", "--symbol", "EURUSD", "--timeframe", "1h"],
]
#: The commands that write to the database.
WRITERS = [c for c in DB_COMMANDS if c[:2] in (["models", "promote"], ["models", "rollback"], ["models", "register"])]
WRITERS.append(["retrain", "--symbol", "EURUSD", "--timeframe", "1h", "--local"])


def _ids(commands: list[list[str]]) -> list[str]:
    return [" ".join(c[:2]) for c in commands]


def run_db(command: list[str], url: str, tmp: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """``command --db url`` in ``tmp`` (its own data and model directory)."""
    monkeypatch.chdir(tmp)
    monkeypatch.setenv("FOREXD_DATA_DIR", str(tmp / "data"))
    candles = write_candles(tmp / "eurusd_1h.csv") if "IN" in command else None
    args = [str(candles) if a == "IN" else a for a in command]
    model_dir = [] if command[0] == "report" else ["--model-dir", str(tmp / "m")]
    return runner.invoke(app, [*args, "--db", url, *model_dir])


def foreign_db(path: Path) -> Path:
    """A SQLite database of another program: one table, none of forexd's."""
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE foo (x INTEGER)")
    return path


def tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def forexd_db(path: Path) -> Path:
    """A database with forexd's tables, as a worker leaves it."""
    from forex_diffusion.storage import make_engine

    make_engine(f"sqlite:///{path}").dispose()
    return path


# -- item 1: a file that is not a database, a database that is not forexd's ---------------------


@pytest.mark.parametrize("command", DB_COMMANDS, ids=_ids(DB_COMMANDS))
def test_a_file_that_is_no_database_exits_65_naming_it_and_is_left_as_it_was(
    command: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``forexd models list --db sqlite:///x.bin`` said ``error: DatabaseError: file is not
    a database`` with exit 74 (a storage failure), naming neither the file nor a fix."""
    binary = tmp_path / "x.bin"
    content = bytes(range(256)) * 16
    binary.write_bytes(content)
    res = run_db(command, f"sqlite:///{binary}", tmp_path, monkeypatch)
    assert res.exit_code == 65, res.output
    assert_one_line(res.stderr, f"sqlite:///{binary} is not a SQLite database", "--db")
    assert binary.read_bytes() == content


@pytest.mark.parametrize("command", DB_COMMANDS, ids=_ids(DB_COMMANDS))
def test_a_database_of_another_program_exits_65_and_gets_no_forexd_table(
    command: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``forexd report`` on another program's SQLite database said ``OperationalError: no such
    table: forecasts`` (exit 74); ``models list`` and ``retrain --local`` filled it with
    forexd's nine tables first (and retrain reported a failed job, exit 1)."""
    other = foreign_db(tmp_path / "other.db")
    res = run_db(command, f"sqlite:///{other}", tmp_path, monkeypatch)
    assert res.exit_code == 65, res.output
    assert_one_line(res.stderr, "other.db holds no forexd tables (it holds foo)", "worker's database")
    assert tables(other) == {"foo"}


@pytest.mark.parametrize(
    ("command", "table"),
    [
        (["report", "-o", "r.html"], "forecasts"),
        (["retrain", "--symbol", "EURUSD", "--timeframe", "1h", "--local"], "candles"),
    ],
)
def test_an_empty_database_holds_no_table_a_reading_command_needs(
    command: list[str], table: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``report`` on an empty SQLite file said ``OperationalError: no such table: forecasts``
    (exit 74); ``retrain --local`` filled it with tables and failed for want of candles."""
    empty = tmp_path / "empty.db"
    empty.touch()
    res = run_db(command, f"sqlite:///{empty}", tmp_path, monkeypatch)
    assert res.exit_code == 65, res.output
    assert_one_line(res.stderr, f"holds no forexd tables (no {table} table)", "point --db")
    assert empty.stat().st_size == 0


def test_a_damaged_database_exits_65(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file with SQLite's header and garbage after it (a truncated or overwritten copy)."""
    damaged = tmp_path / "damaged.db"
    damaged.write_bytes(b"SQLite format 3\x00" + bytes(range(256)) * 40)
    res = run_db(["models", "list"], f"sqlite:///{damaged}", tmp_path, monkeypatch)
    assert res.exit_code == 65, res.output
    assert_one_line(res.stderr, "cannot be read as a SQLite database")


# -- item 2: retrain --local on a database file that does not exist ----------------------------


@pytest.mark.parametrize(
    "command", [["retrain", "--symbol", "EURUSD", "--timeframe", "1h", "--local"], ["models", "list"]]
)
def test_a_missing_database_file_in_an_existing_directory_exits_66_and_creates_nothing(
    command: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``retrain --local --db sqlite:///dir/new.db`` (the directory there) made an empty
    100 kB database and reported ``failed`` (exit 1); now as ``models list`` on it."""
    missing = tmp_path / "new.db"
    res = run_db(command, f"sqlite:///{missing}", tmp_path, monkeypatch)
    assert res.exit_code == 66, res.output
    assert_one_line(res.stderr, f"database file {missing} does not exist")
    assert not missing.exists()


# -- other wrong databases ----------------------------------------------------------------------


@pytest.mark.parametrize("command", DB_COMMANDS, ids=_ids(DB_COMMANDS))
@pytest.mark.parametrize(
    ("make", "says"),
    [("directory", "is a directory"), ("device", "is not a regular file"), ("dangling link", "which does not exist")],
)
def test_a_database_path_that_is_no_file_exits_66(
    command: list[str], make: str, says: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A directory or ``/dev/null`` as the database said ``OperationalError: unable to open
    database file`` or ``disk I/O error`` (exit 74); a link to nothing was followed by
    ``models register``, which made a database wherever it pointed."""
    path = tmp_path / "db"
    if make == "directory":
        path.mkdir()
    elif make == "device":
        path = Path("/dev/null")
    else:
        path.symlink_to(tmp_path / "nowhere" / "x.db")
    res = run_db(command, f"sqlite:///{path}", tmp_path, monkeypatch)
    assert res.exit_code == 66, res.output
    assert_one_line(res.stderr, says)
    assert not (tmp_path / "nowhere").exists()


def test_an_unreadable_database_file_exits_66(tmp_path: Path) -> None:
    db = forexd_db(tmp_path / "forexd.db")
    db.chmod(0)
    res = as_a_user("models", "list", "--db", f"sqlite:///{db}", cwd=tmp_path)  # as root too (setpriv)
    assert res.returncode == 66, res.stderr
    assert_one_line(res.stderr, "is not readable")


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:", "sqlite+pysqlite://"])
@pytest.mark.parametrize("command", DB_COMMANDS, ids=_ids(DB_COMMANDS))
def test_an_in_memory_database_is_a_usage_error(
    command: list[str], url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``models register --db sqlite://`` said ``registered …`` (exit 0) into a database gone
    when the command ended; ``models list`` listed nothing, ``report`` said ``no such table``."""
    res = run_db(command, url, tmp_path, monkeypatch)
    assert res.exit_code == 2, res.output
    assert_one_line(res.stderr, "is an in-memory database, gone when the command ends")


@pytest.mark.parametrize("command", DB_COMMANDS, ids=_ids(DB_COMMANDS))
def test_an_empty_db_option_is_a_usage_error_not_the_default_database(
    command: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--db ""`` (an unset shell variable) silently meant the default database: here one
    with a registry, which ``models promote`` would have changed."""
    (tmp_path / "data").mkdir()
    forexd_db(tmp_path / "data" / "forexd.db")
    res = run_db(command, "", tmp_path, monkeypatch)
    assert res.exit_code == 2, res.output
    assert_one_line(res.stderr, "--db is empty")


@pytest.mark.parametrize("command", WRITERS, ids=_ids(WRITERS))
def test_a_read_only_database_exits_73_before_a_writing_command_works(
    command: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``retrain --local`` on a read-only database trained nothing, then reported a failed job
    (``storage: PermanentStorageError``, exit 1) after ``attempt to write a readonly database``."""
    db = forexd_db(tmp_path / "forexd.db")
    res = run_db(command, f"sqlite:///file:{db}?mode=ro&uri=true", tmp_path, monkeypatch)
    assert res.exit_code == 73, res.output
    assert_one_line(res.stderr, f"database file {db} is read-only, and this command writes to it")


@pytest.mark.parametrize("command", [["models", "list"], ["models", "history", "EURUSD/1h/24"]])
def test_a_read_only_database_is_still_read(
    command: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = forexd_db(tmp_path / "forexd.db")
    res = run_db(command, f"sqlite:///file:{db}?mode=ro&uri=true", tmp_path, monkeypatch)
    if command[1] == "history":  # read: the key has no version there (a mistyped key is exit 2)
        assert res.exit_code == 2, res.output
        assert_one_line(res.stderr, "unknown key EURUSD/1h/24: no registered version")
        return
    assert res.exit_code == 0, res.output
    assert res.stderr == ""


def test_models_history_says_what_it_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``models history`` of a key with no version printed nothing and exited 0, as for a key
    whose champion never changed: a mistyped key is now exit 2, one line; a key with versions
    but no alias change says so on stderr; a promoted one prints its history."""
    url = f"sqlite:///{forexd_db(tmp_path / 'forexd.db')}"
    assert run_db(["models", "register", str(CHECKPOINT)], url, tmp_path, monkeypatch).exit_code == 0
    res = run_db(["models", "history", "EURUSD/1h/42"], url, tmp_path, monkeypatch)
    assert res.exit_code == 2 and res.stdout == "", res.output
    assert_one_line(res.stderr, "unknown key EURUSD/1h/42: no registered version", "forexd models list")
    res = run_db(["models", "history", "EURUSD/1h/24"], url, tmp_path, monkeypatch)
    assert res.exit_code == 0 and res.stdout == "", res.output
    assert_one_line(res.stderr, "EURUSD/1h/24: no alias changes yet (1 version(s) registered)")
    listed = run_db(["models", "list", "--json"], url, tmp_path, monkeypatch)
    version = json.loads(listed.stdout.splitlines()[0])["version"]
    assert run_db(["models", "promote", version], url, tmp_path, monkeypatch).exit_code == 0
    res = run_db(["models", "history", "EURUSD/1h/24"], url, tmp_path, monkeypatch)
    assert res.exit_code == 0 and res.stderr == "" and res.stdout.startswith("champion") and version in res.stdout


def test_models_register_under_a_file_exits_73(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``models register --db sqlite:///FILE/x.db`` ended in ``[Errno 17] File exists`` (74)."""
    (tmp_path / "f").write_text("x")
    res = run_db(["models", "register", str(CHECKPOINT)], f"sqlite:///{tmp_path / 'f' / 'x.db'}", tmp_path, monkeypatch)
    assert res.exit_code == 73, res.output
    assert_one_line(res.stderr, "cannot create database file", "is a file")


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("mysql://u:s3cret@localhost/db", "needs a driver that is not installed"),
        ("nonsense://", "is not valid"),
        ("postgresql+psycopg2://u:s3cret@127.0.0.1:abc/db", "has a port that is no number"),
        ("postgresql+psycopg2://u:p@s3cret@127.0.0.1:1/db", "has an '@' in its user name or password"),
        ("forexd.db", "is no URL (a SQLite file: sqlite:////"),
        (" sqlite:///forexd.db", "has white space around it"),
        ("sqlite:///forexd.db?mode=ro", "the SQLite driver ignores mode without uri=true"),
    ],
)
def test_a_database_url_that_cannot_be_used_is_a_usage_error_without_its_password(
    url: str, says: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``user:p@s3cret@host`` was shown as ``user:***@s3cret@host`` and the driver's
    ``could not translate host name "s3cret@127.0.0.1"``: a part of the password. A path
    said only ``Could not parse SQLAlchemy URL``; ``?mode=ro`` without ``uri=true`` printed
    two multi-line warnings and opened the file for writing all the same."""
    res = run_db(["models", "list"], url, tmp_path, monkeypatch)
    assert res.exit_code == 2, res.output
    assert_one_line(res.stderr, says)
    assert "s3cret" not in res.output


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "postgresql+psycopg2://forexd:s3cret@127.0.0.1:1/forexd",
            "postgresql+psycopg2://forexd:***@127.0.0.1:1/forexd",
        ),
        ("postgresql://u:p@s3cret@host/db", "postgresql://u:***@host/db"),
        ("postgresql://host/db?user=u&password=s3cret", "postgresql://host/db?user=u&password=***"),
        (
            "postgresql://u:x@h/db?sslpassword=s3cret&sslmode=require",
            "postgresql://u:***@h/db?sslpassword=***&sslmode=require",
        ),
        ("u:s3cret@host", "***@host"),
        ("sqlite:////tmp/x.db", "sqlite:////tmp/x.db"),
        ("postgresql://host/db?options=a@b", "postgresql://host/db?options=a@b"),
    ],
)
def test_hide_password_hides_every_place_a_password_can_be(url: str, shown: str) -> None:
    assert hide_password(url) == shown


@pytest.mark.postgres
def test_a_postgres_database_of_another_program_exits_65_without_its_password(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``models list`` on a PostgreSQL schema of another program created forexd's tables in it."""
    import sqlalchemy as sa

    eng = sa.create_engine(pg_url)
    with eng.begin() as conn:
        conn.execute(sa.text("CREATE TABLE foo (x INTEGER)"))
    scheme, rest = pg_url.split("://", 1)
    user, at, host = rest.partition("@")
    url = f"{scheme}://{user.split(':', 1)[0]}:s3cret@{host}" if at else pg_url  # trust auth ignores it
    for command in (["models", "list"], ["report", "-o", "r.html"]):
        res = run_db(command, url, tmp_path, monkeypatch)
        assert res.exit_code == 65, res.output
        assert_one_line(res.stderr, "holds no forexd tables (it holds foo)")
        assert "s3cret" not in res.output
    with eng.connect() as conn:
        assert set(sa.inspect(conn).get_table_names()) == {"foo"}
    eng.dispose()


def test_the_worker_refuses_a_sqlite_database_it_cannot_use_before_waiting_for_the_broker(tmp_path: Path) -> None:
    """``FOREXD_DATABASE_URL=sqlite:///x.bin forexd worker`` waited for the broker, then ended
    in ``DatabaseError: file is not a database`` (74); ``sqlite://`` ran a worker whose every
    checkpoint failed (each connection a new empty database)."""
    binary = tmp_path / "x.bin"
    binary.write_bytes(bytes(range(256)))
    env = {"FOREXD_BROKER_URL": DOWN, "FOREXD_BROKER_WAIT_S": "0", "FOREXD_DATA_DIR": str(tmp_path)}
    res = forexd("worker", env={**env, "FOREXD_DATABASE_URL": f"sqlite:///{binary}"})
    assert res.returncode == 65, res.stderr
    assert_one_line(res.stderr, "is not a SQLite database", "point FOREXD_DATABASE_URL")
    memory = forexd("worker", env={**env, "FOREXD_DATABASE_URL": "sqlite://"})
    assert memory.returncode == 78, memory.stderr
    assert_one_line(memory.stderr, "in-memory database")


def test_demo_refuses_a_data_dir_whose_database_it_cannot_use_before_starting(tmp_path: Path) -> None:
    """The demo started its broker and worker, then said only that the worker exited with 65."""
    (tmp_path / "forexd.db").write_bytes(bytes(range(256)))
    res = runner.invoke(app, ["demo", "--data-dir", str(tmp_path), "--duration", "1"])
    assert res.exit_code == 65, res.output
    assert_one_line(res.stderr, "is not a SQLite database", "point --data-dir")
    assert not (tmp_path / "broker.log").exists()


def test_demo_data_dir_is_made_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``forexd demo --data-dir rel`` ran its worker in rel with FOREXD_DATA_DIR=rel: the
    worker kept its database in rel/rel and looked for its models in rel/rel/models (none:
    no forecast ever)."""
    from streams.commands.demo import _data_dir

    monkeypatch.chdir(tmp_path)
    got = _data_dir(Path("rel"), None)  # type: ignore[arg-type]
    assert got == tmp_path / "rel" and got.is_absolute() and got.is_dir()


# -- item 3: a huge echoed value is cut, on one line ---------------------------------------------


def _bounded(stderr: str) -> str:
    assert_one_line(stderr)
    line = stderr.strip()
    assert len(line) < LINE_CLIP + 200, len(line)
    return line


@pytest.mark.parametrize(
    ("args", "env", "says"),
    [
        (["retrain", "--symbol", "EURUSD", "--timeframe", "1h", "--horizon", "9" * 4000], {}, "(4000 characters)"),
        (["retrain", "--symbol", "X" * 1_000_000, "--timeframe", "1h"], {}, "(1000000 characters)"),
        (["retrain", "--symbol", "EUR USD " * 100_000, "--timeframe", "1h"], {}, "(800000 characters)"),
        (["tail", "ticks"], {"FOREXD_BROKER_URL": ",".join(["127.0.0.1:1"] * 10_000)}, "(119999 characters)"),
        (["models", "list", "--db", f"sqlite:////tmp/{'d' * 5000}.db"], {}, "characters)"),
        (["report", "-o", "r.html", "--timeframe", "1" * 100_000], {}, "(100000 characters)"),
    ],
    ids=["5000-digit number", "1 MB symbol", "symbol of words", "10,000 brokers", "db path", "timeframe"],
)
def test_an_error_line_cuts_a_huge_value_to_a_bounded_length(
    args: list[str], env: dict[str, str], says: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each of these was one line of the value's size: 4 kB, 1 MB, 800 kB, 189 kB."""
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, args, env=env)
    assert res.exit_code != 0, res.output
    line = _bounded(res.stderr)
    assert says in line and "..." in line, line[:300]


def test_report_cuts_a_huge_symbol_in_its_no_forecast_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``report --symbol <1 MB>`` said ``error: no stored forecasts of XXX…`` at 1 MB."""
    db = forexd_db(tmp_path / "forexd.db")
    res = run_db(["report", "-o", "r.html", "--symbol", "X" * 1_000_000], f"sqlite:///{db}", tmp_path, monkeypatch)
    assert res.exit_code == 1, res.output
    line = _bounded(res.stderr)
    assert "no stored forecasts of XXX" in line and "(1000000 characters): nothing to report" in line


def test_an_error_line_escapes_control_characters(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A path with an escape sequence reached the terminal raw (a colour, a cursor move, a
    right-to-left override could hide the rest of the line)."""
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, ["candles", "x\n\x1b[31mred\u202e\x7f.csv"])
    assert res.exit_code == 66, res.output
    assert_one_line(res.stderr, "x\\n\\x1b[31mred\\u202e\\x7f.csv' does not exist")
    assert "\x1b" not in res.stderr and "\u202e" not in res.stderr


def test_one_line_keeps_short_lines_and_bounds_long_ones() -> None:
    assert one_line("a  b\n\tc") == "a b c"
    assert one_line("the worker's 'x' and don't") == "the worker's 'x' and don't"
    cut = one_line(f"--symbol {'Y' * 5000!r} is no pair: fix it")
    assert cut == f"--symbol '{'Y' * (VALUE_CLIP - 2)}'... (5000 characters) is no pair: fix it"
    words = one_line("value " + "ab " * 100_000 + ": the fix")
    assert len(words) < LINE_CLIP + 100 and words.startswith("value ab ab") and words.endswith(": the fix")


# -- item 4: a candle file through a pipe ---------------------------------------------------------


def test_candles_of_a_candle_file_through_a_pipe_says_it_holds_candles(tmp_path: Path) -> None:
    """``cat candles.csv | forexd candles -`` said ``tick file - does not exist``, and
    ``forexd candles /dev/stdin`` (or ``<(cat candles.csv)``) ``no bid and no ask column in
    the tick file``: the file was read through the pipe before its layout was looked at."""
    candles = write_candles(tmp_path / "eurusd_1h.csv")
    cli = [sys.executable, "-m", "streams.cli", "candles"]
    for arg, named in (("-", "standard input"), ("/dev/stdin", "/dev/stdin")):
        with candles.open("rb") as fh:
            cat = subprocess.Popen(["cat"], stdin=fh, stdout=subprocess.PIPE)
            res = subprocess.run([*cli, arg, "-o", str(tmp_path / "o.csv")], stdin=cat.stdout, capture_output=True, text=True, timeout=120)  # fmt: skip
            cat.wait(timeout=30)
        assert res.returncode == 65, res.stderr
        assert_one_line(res.stderr, f"{named} holds candles, not ticks")
        assert not (tmp_path / "o.csv").exists()


def test_candles_reads_ticks_from_standard_input_as_from_the_file(tmp_path: Path) -> None:
    """``forexd candles -`` reads standard input (it was a file named ``-``)."""
    ticks = write_ticks(tmp_path / "eurusd_ticks.csv")
    piped = runner.invoke(app, ["candles", "-", "--symbol", "EURUSD"], input=ticks.read_bytes())
    direct = runner.invoke(app, ["candles", str(ticks), "--symbol", "EURUSD"])
    assert piped.exit_code == 0 and direct.exit_code == 0, piped.output
    assert piped.stdout == direct.stdout and len(piped.stdout.splitlines()) > 1
    bad = runner.invoke(app, ["candles", "-"], input=b"garbage\n")
    assert bad.exit_code == 65
    assert_one_line(bad.stderr, "standard input: unrecognised tick layout")


def test_candles_from_a_terminal_is_refused_instead_of_waiting(tmp_path: Path) -> None:
    """``forexd candles -`` typed at a terminal would wait for ticks typed by hand."""
    import pty

    main, tty = pty.openpty()
    try:
        res = subprocess.run(
            # a bound on a hang (it answers at once), far above the CLI's start on a busy machine
            [sys.executable, "-m", "streams.cli", "candles", "-"],
            stdin=tty,
            capture_output=True,
            text=True,
            timeout=240,
        )
    finally:
        os.close(main)
        os.close(tty)
    assert res.returncode == 66, res.stderr
    assert_one_line(res.stderr, "is standard input, and that is a terminal")


@pytest.mark.parametrize(
    "command",
    [
        ["indicators", "-", "-o", "o.csv"],
        ["backtest", "-", "--symbol", "EURUSD", "--timeframe", "1h", "--model", "m.pt", "-o", "o.csv"],
        ["train", "-", "--symbol", "EURUSD", "--timeframe", "1h", "--model-dir", "m"],
        ["replay", "-"],
    ],
    ids=lambda c: c[0],
)
def test_standard_input_to_a_command_that_reads_its_file_twice_is_refused_as_a_pipe(
    command: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``cat f.csv | forexd indicators -`` said ``candle file - does not exist``."""
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(
        app, command, input=write_candles(tmp_path / "c.csv").read_bytes(), env={"FOREXD_BROKER_URL": DOWN}
    )
    assert res.exit_code == 66, res.output
    assert_one_line(res.stderr, "- (standard input) is a pipe, and this command reads it more than once")
    assert not (tmp_path / "o.csv").exists()


def test_empty_standard_input_is_named_as_such_never_by_the_spool(tmp_path: Path) -> None:
    """The layout check ran outside the rewording: ``error: /tmp/forexd-candles-…/stdin: empty file``."""
    res = runner.invoke(app, ["candles", "-", "--symbol", "EURUSD"], input=b"")
    assert res.exit_code == 65
    assert_one_line(res.stderr, "standard input: empty file")
    assert "forexd-candles-" not in res.stderr


@pytest.mark.parametrize("command", DB_COMMANDS, ids=_ids(DB_COMMANDS))
@pytest.mark.parametrize("url", ["sqlite:///x%00y.db", "postgresql+psycopg2://u:s3%00cret@127.0.0.1:1/db"])
def test_a_nul_in_the_database_url_is_one_line(
    command: list[str], url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The drivers raise ValueError for a NUL deep in connect(), and Path.resolve() does for
    one in a SQLite path: each was a traceback (exit 1)."""
    res = run_db(command, url, tmp_path, monkeypatch)
    assert res.exit_code == 2, res.output
    assert_one_line(res.stderr, "holds a NUL character")
    assert "s3" not in res.stderr and "cret" not in res.stderr
