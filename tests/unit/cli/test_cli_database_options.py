"""A database URL whose address or connection options are wrong is a usage error naming the
option (exit 2 for a command's ``--db``, 78 for the worker's ``FOREXD_DATABASE_URL``), not
"database unreachable" (69), which sends an operator to look at the network.

Before: ``?sslmode=bogus``, ``?foo=bar``, ``?keepalives=abc``, ``?options=-c
statement_timeout=x``, a port of 99999 and a non-ASCII host were each "database unreachable
at ..." with exit 69; ``?connect_timeout=abc`` passed the check (its connection overrode the
URL's timeout) and then failed the command as ``error: OperationalError: ...`` (exit 74); a
port of 0 was dropped by SQLAlchemy, which connected to 5432; ``postgresql+asyncpg://`` was
taken for a blocking driver. Against the real PostgreSQL (``pg_url``).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from forex_diffusion.errors import ConfigError
from forex_diffusion.storage import make_engine, sqlite_url
from forex_diffusion.storage.engine import check_url_options, is_option_error
from streams.cli import app
from streams.settings import Settings

from .test_cli_database import run_db
from .test_cli_errors import DOWN, assert_one_line, forexd, runner


def _with(pg_url: str, option: str) -> str:
    """``pg_url`` (its schema in ``options=-csearch_path%3D...``) with ``option`` added."""
    if option.startswith("options="):  # one options parameter: the new -c before the search path
        return pg_url.replace("options=", f"{option}%20", 1)
    return f"{pg_url}&{option}"


def _with_password(url: str, password: str) -> str:
    scheme, rest = url.split("://", 1)
    userinfo, at, host = rest.rpartition("@")
    user = userinfo.split(":", 1)[0] if at else ""
    return f"{scheme}://{user}:{password}@{host}" if at else url  # trust auth ignores the password


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("option", "says"),
    [
        ("sslmode=bogus", "has option sslmode='bogus', which takes one of disable, allow"),
        ("gssencmode=x", "has option gssencmode='x'"),
        ("connect_timeout=abc", "has option connect_timeout='abc', which takes a whole number"),  # was exit 74
        ("connect_timeout=99999999999", "has option connect_timeout='99999999999'"),
        ("keepalives=abc", "has option keepalives='abc', which takes a whole number"),
        ("foo=bar", "has option foo, which is no libpq connection option"),
        # refused by the server, not libpq: the database answered
        ("options=-c%20statement_timeout%3Dx", 'refused (connection to server at "127.0.0.1"'),
        ("options=-c%20no_such_parameter%3D1", 'unrecognized configuration parameter "no_such_parameter"'),
        # TLS the URL asks for and this (test) server does not offer: the server answered
        ("sslmode=require", "does not support SSL, but SSL was required"),
        ("channel_binding=require", "channel binding required"),
    ],
)
def test_a_connection_option_refused_is_a_usage_error_naming_it(
    pg_url: str, option: str, says: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = _with_password(_with(pg_url, option), "s3cret")
    res = run_db(["models", "list"], url, tmp_path, monkeypatch)
    assert res.exit_code == 2, res.output
    assert_one_line(res.stderr, says, "fix --db or FOREXD_DATABASE_URL")
    assert "unreachable" not in res.stderr and "s3cret" not in res.output


@pytest.mark.parametrize(
    ("url", "says"),
    [
        # libpq: 'invalid port number: "99999"', called unreachable
        ("postgresql+psycopg2://u:s3cret@127.0.0.1:99999/db", "has port 99999, not a TCP port (1..65535)"),
        # SQLAlchemy dropped the 0 and connected to 5432: another server than the one written
        ("postgresql+psycopg2://u:s3cret@127.0.0.1:0/db", "has port 0, not a TCP port"),
        # libpq does not encode an internationalised name: "could not translate host name", 69
        ("postgresql+psycopg2://u:s3cret@bücher.example/db", "(written xn--bcher-kva.example)"),
        ("postgresql+asyncpg://u:s3cret@127.0.0.1/db", "names the asyncio driver asyncpg"),
        ("sqlite+aiosqlite:///forexd.db", "names the asyncio driver aiosqlite"),
    ],
)
def test_an_address_no_driver_can_use_is_a_usage_error_before_any_connection(
    url: str, says: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    res = run_db(["models", "list"], url, tmp_path, monkeypatch)
    assert res.exit_code == 2, res.output
    assert_one_line(res.stderr, says)
    assert "unreachable" not in res.stderr and "s3cret" not in res.output


def test_a_server_that_does_not_answer_stays_unreachable_exit_69(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    res = run_db(
        ["models", "list"], "postgresql+psycopg2://u:s3cret@127.0.0.1:1/db?sslmode=disable", tmp_path, monkeypatch
    )
    assert res.exit_code == 69, res.output
    assert_one_line(
        res.stderr, "database unreachable at postgresql+psycopg2://u:***@127.0.0.1:1/db", "Connection refused"
    )
    assert "s3cret" not in res.output


@pytest.mark.postgres
@pytest.mark.parametrize(
    "option",
    ["sslmode=disable", "connect_timeout=%205", "connect_timeout=-1", "target_session_attrs=any", "application_name=x"],
)
def test_valid_options_are_taken(pg_url: str, option: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    res = run_db(["models", "list"], _with(pg_url, option), tmp_path, monkeypatch)
    assert res.exit_code == 0, res.output


@pytest.mark.postgres
def test_a_refused_option_value_that_is_the_password_is_not_echoed(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server echoes the value it refuses ('invalid value for parameter ...: "x"')."""
    url = _with_password(_with(pg_url, "options=-c%20statement_timeout%3Ds3cretpw"), "s3cretpw")
    res = run_db(["models", "list"], url, tmp_path, monkeypatch)
    assert res.exit_code == 2, res.output
    assert_one_line(res.stderr, 'invalid value for parameter "statement_timeout": "***"')
    assert "s3cretpw" not in res.stderr.replace("statement_timeout%3Ds3cretpw", "")  # the URL shows its options


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("postgresql+psycopg2://u:s3cret@127.0.0.1:5432/db?sslmode=bogus", "has option sslmode='bogus'"),
        ("postgresql+psycopg2://u:s3cret@127.0.0.1:5432/db?foo=bar", "has option foo"),
        ("postgresql+psycopg2://u:s3cret@127.0.0.1:99999/db", "has port 99999"),
        # a .env file written on Windows: database "db\r" does not exist, reported as unreachable
        ("postgresql+psycopg2://u:s3cret@127.0.0.1:5432/db\r", "database_url has white space around it"),
        # the worker's wait echoed 'could not translate host name "s3cret@127.0.0.1"': a part of the password
        ("postgresql+psycopg2://u:p@s3cret@127.0.0.1:5432/db", "has an '@' in its user name or password"),
        # review: then ':' after the '@' made the rest the port, and int()'s error echoed it
        # ("invalid literal for int() with base 10: 's3cret@127.0.0.1:5432'"), here and for --db
        ("postgresql+psycopg2://u:p@ss:s3cret@127.0.0.1:5432/db", "has a port that is no number"),
        ("postgresql+psycopg2://u:p@s3cret:9@127.0.0.1/db", "has a port that is no number"),
    ],
)
def test_the_worker_refuses_them_at_start_exit_78(url: str, says: str) -> None:
    """The worker waited for the broker, then FOREXD_DB_WAIT_S, then exited 69 "unreachable"."""
    res = forexd("worker", env={"FOREXD_BROKER_URL": DOWN, "FOREXD_BROKER_WAIT_S": "0", "FOREXD_DATABASE_URL": url})
    assert res.returncode == 78, res.stderr
    assert_one_line(res.stderr, says, "fix FOREXD_DATABASE_URL")
    assert "s3cret" not in res.stderr


@pytest.mark.parametrize(
    "url",
    ["postgresql+psycopg2://u:p@ss:s3cret@127.0.0.1:5432/db", "postgresql+psycopg2://u:p@s3cret:9@127.0.0.1/db"],
)
def test_db_with_a_password_holding_at_and_colon_is_refused_without_echoing_it(url: str) -> None:
    """Review finding: the usage error quoted int()'s message on the text after the password's
    '@' ('s3cret@127.0.0.1:5432'), a part of the password."""
    res = runner.invoke(app, ["models", "list", "--db", url])
    assert res.exit_code == 2, res.output
    assert_one_line(res.stderr, "has a port that is no number", "%40")
    assert "s3cret" not in res.output


def test_is_option_error_tells_a_refused_option_from_a_server_that_does_not_answer() -> None:
    refused = [
        'connection to server at "h", port 5432 failed: root certificate file "/x" does not exist',
        'invalid sslmode value: "bogus"',
        'invalid dsn: invalid connection option "foo"',
        'connection to server at "h", port 5432 failed: invalid integer value "abc" for connection option "keepalives"',
        'invalid port number: "99999"',
        'connection to server at "h", port 5432 failed: FATAL:  invalid value for parameter "statement_timeout": "x"',
        'connection to server at "h", port 5432 failed: FATAL:  unrecognized configuration parameter "foo"',
    ]
    down = [
        'connection to server at "127.0.0.1", port 1 failed: Connection refused',
        'could not translate host name "db" to address: Name or service not known',
        'connection to server at "h", port 5432 failed: timeout expired',
        "server closed the connection unexpectedly",
    ]
    assert all(is_option_error(Exception(m)) for m in refused)
    assert not any(is_option_error(Exception(m)) for m in down)


@settings(max_examples=300, deadline=None)
@given(
    name=st.sampled_from(["sslmode", "connect_timeout", "keepalives", "port", "foo", "options", "application_name"])
    | st.text(max_size=12),
    value=st.text(max_size=16),
    port=st.integers(-5, 10**6),
)
def test_any_option_or_port_is_accepted_or_one_config_error(name: str, value: str, port: int) -> None:
    """``check_url_options`` never raises another exception, whatever the URL holds."""
    from urllib.parse import quote

    url = f"postgresql+psycopg2://u@h:{port}/db?{quote(name)}={quote(value)}"
    try:
        check_url_options(url)
    except ConfigError as exc:
        assert "\n" not in str(exc), exc
        return
    assert 1 <= port <= 65535


def test_settings_with_a_good_postgres_url_are_built() -> None:
    url = "postgresql+psycopg2://u:p%25w@db.example:5432/fx?sslmode=require&connect_timeout=5&options=-csearch_path%3Dx"
    assert Settings(database_url=url).database_url == url


@pytest.mark.postgres
def test_a_database_the_server_does_not_have_exits_66_naming_it(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server answered 'database "x" does not exist': it was "database unreachable ...;
    start it" (69), as a missing SQLite file is 66 ("does not exist")."""
    scheme_host, _, rest = pg_url.rpartition("/")
    url = _with_password(f"{scheme_host}/no_such_db_{tmp_path.name[-8:]}?{rest.split('?', 1)[1]}", "s3cret")
    for command in (["models", "list"], ["report", "-o", "r.html"]):
        res = run_db(command, url, tmp_path, monkeypatch)
        assert res.exit_code == 66, res.output
        assert_one_line(res.stderr, '"no_such_db_', "does not exist on the server of", "create it")
        assert "unreachable" not in res.stderr and "s3cret" not in res.output


@pytest.mark.postgres
def test_a_login_the_server_refuses_says_so_not_start_it(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scheme, rest = pg_url.split("://", 1)
    url = f"{scheme}://no_such_role_x:s3cret@{rest.rpartition('@')[2]}"
    res = run_db(["models", "list"], url, tmp_path, monkeypatch)
    assert res.exit_code == 69, res.output
    assert_one_line(res.stderr, 'role "no_such_role_x" does not exist', "the server refuses the login")
    assert "start it" not in res.stderr and "s3cret" not in res.output


@pytest.mark.parametrize("name", ["50%41", "a?b", "a#b", "100%"])
def test_a_data_dir_with_percent_question_or_hash_keeps_its_database_file(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``FOREXD_DATA_DIR=/data/50%41`` opened ``/data/50A/forexd.db`` (SQLAlchemy decodes
    ``%41``), and ``/data/a?b`` opened ``/data/a`` with a query: another file than the
    worker's (``models list`` said it did not exist, exit 66; ``/data/a`` "is a directory")."""
    data = tmp_path / name
    data.mkdir()
    settings_url = Settings(data_dir=data).db_url
    assert make_url(settings_url).database == str(data / "forexd.db")
    assert make_url(sqlite_url(data / "forexd.db")).database == str(data / "forexd.db")
    make_engine(sqlite_url(data / "forexd.db")).dispose()  # the project's tables, in that file
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FOREXD_DATA_DIR", str(data))
    res = runner.invoke(app, ["models", "list"])
    assert res.exit_code == 0, res.output


def test_the_url_suggested_for_a_path_opens_that_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``--db /data/a?b/x.db`` suggested ``sqlite:////data/a?b/x.db``, which opens ``/data/a``."""
    res = run_db(["models", "list"], str(tmp_path / "a?b" / "x.db"), tmp_path, monkeypatch)
    assert res.exit_code == 2, res.output
    assert_one_line(res.stderr, "is no URL (a SQLite file: sqlite:///")
    suggested = res.stderr.split("(a SQLite file: ", 1)[1].split(")", 1)[0]
    assert make_url(suggested).database == str((tmp_path / "a?b" / "x.db").resolve())


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+psycopg2://u@127.0.0.1/db?plugin=my_plugin",  # SQLAlchemy's own parameter, never libpq's
        "postgresql+psycopg://u@127.0.0.1/db?sslkeylogfile=/tmp/keys",  # PostgreSQL 18's libpq: psycopg's may have it
    ],
)
def test_options_that_are_not_psycopg2s_libpq_names_are_left_to_their_reader(url: str) -> None:
    """The static name check asks psycopg2's bundled libpq, so it applies to psycopg2 URLs'
    libpq options only: it refused SQLAlchemy's ``plugin`` and newer libpq options under psycopg."""
    check_url_options(url)


@pytest.mark.parametrize(
    "query",
    ["pass%77ord=s3cretpw", "PASSWORD=s3cretpw", "dbname=x%20password%3Ds3cretpw"],
    ids=["encoded-name", "upper-case", "in-a-value"],
)
def test_a_password_in_a_percent_encoded_query_is_never_echoed(query: str, tmp_path: Path) -> None:
    """SQLAlchemy decodes a query's names: ``?pass%77ord=`` is the driver's ``password``, and a
    value may hold a libpq connection string. The masking matched the literal text only, so
    the exit-69 line showed the password (found in the hostile review)."""
    res = CliRunner().invoke(
        app, ["report", "--db", f"postgresql+psycopg2://u@127.0.0.1:1/db?{query}", "-o", str(tmp_path / "r.html")]
    )
    assert res.exit_code in (2, 69), res.output
    assert "s3cretpw" not in res.output and "***" in res.output, res.output
