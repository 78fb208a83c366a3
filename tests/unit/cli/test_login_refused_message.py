"""A PostgreSQL server that answered and refused the login (a role it does not have, a failed
password) was reported as ``database unreachable at …``, exit 69: the server was running, and
"unreachable" sent an operator to start it. The line now says what happened, from the
server's answer, with the fix; still exit 69 (README: "or the database refuses the login"),
one line, no password. (A database the server does not have was already exit 66, "does not
exist": ``test_cli_database_options``.)"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from streams.cli import app

runner = CliRunner()
SECRET = "s3cret-Pw"


@pytest.mark.postgres
@pytest.mark.parametrize("command", [["models", "list"], ["report", "-o", "r.html"], ["retrain", "--local"]])
def test_a_role_the_server_does_not_have_is_said_so_not_unreachable(
    pg_base_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: list[str]
) -> None:
    url = make_url(pg_base_url).set(username="no_such_role_login10", password=SECRET)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FOREXD_DATA_DIR", str(tmp_path / "data"))
    extra = ["--symbol", "EURUSD", "--timeframe", "1h", "--model-dir", str(tmp_path / "m")]
    argv = [*command, *(extra if command[0] == "retrain" else []), "--db", url.render_as_string(hide_password=False)]
    res = runner.invoke(app, argv)
    assert res.exit_code == 69, (res.exit_code, res.output)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    line = lines[0]
    assert line.startswith("error: database login failed at "), line
    assert 'role "no_such_role_login10" does not exist' in line and "create that role" in line, line
    assert "unreachable" not in line and "start it" not in line, line
    assert SECRET not in res.output and ":***@" in line, line


@pytest.mark.parametrize(
    ("said", "reason", "fix"),
    [
        (
            'connection to server at "db", port 5432 failed: FATAL:  password authentication failed for user "fx"',
            'password authentication failed for user "fx"',
            "check the password",
        ),
        (
            'connection to server at "db", port 5432 failed: FATAL:  no pg_hba.conf entry for host "10.0.0.9", '
            'user "fx", database "fx", no encryption',
            "no pg_hba.conf entry",
            "pg_hba.conf",
        ),
        (
            'connection to server at "db", port 5432 failed: FATAL:  permission denied for database "fx"',
            'permission denied for database "fx"',
            "grant the user CONNECT",
        ),
        (
            'connection to server at "db", port 5432 failed: fe_sendauth: no password supplied',
            "the server asks for a password, and the URL gives none",
            "add the password",
        ),
    ],
)
def test_each_refused_login_says_what_the_server_said_and_the_fix(said: str, reason: str, fix: str) -> None:
    from streams.commands._common import LoginRefusedError

    line = str(LoginRefusedError("postgresql+psycopg2://fx:***@db:5432/fx", said, "--db"))
    assert line.startswith("database login failed at postgresql+psycopg2://fx:***@db:5432/fx: "), line
    assert reason in line and fix in line and "the server refuses the login" in line, line
    assert "unreachable" not in line and "FATAL" not in line and "\n" not in line, line
