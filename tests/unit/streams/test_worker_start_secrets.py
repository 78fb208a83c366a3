"""The worker's start-time database wait: no password in any line it prints, and an answer
that waiting cannot cure is a configuration error.

- A password given as a query parameter (``?password=s3cret``) was printed by the worker's
  ``database.wait`` WARNING lines and its exit-69 line, and by the CRITICAL ``storage.fatal``
  line: SQLAlchemy's ``render_as_string(hide_password=True)`` hides only the one after
  ``user:``.
- A database the server does not have, and a connection option the server refuses
  (``?options=-c statement_timeout=x``), were reported as "database unreachable" (exit 69);
  they are a bad ``FOREXD_DATABASE_URL``: one line naming it, exit 78, no wait.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

from forex_diffusion.errors import PermanentStorageError
from streams.progress import EXIT_STORAGE_FATAL, FATAL_MIN_ATTEMPTS, PartitionProgress
from tests.unit.cli.test_db_wait import forexd

SECRET = "s3cret"


def _worker(broker_port: int, url: str, tmp_path: Path, wait_s: str = "1") -> subprocess.CompletedProcess[str]:
    return forexd(
        "worker",
        env={
            "FOREXD_BROKER_URL": f"kafka://127.0.0.1:{broker_port}",
            "FOREXD_DATABASE_URL": url,
            "FOREXD_DB_WAIT_S": wait_s,
            "FOREXD_DATA_DIR": str(tmp_path),
            "FOREXD_METRICS_PORT": "-1",
        },
    )


# -- a password as a query parameter ----------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql+psycopg2://forexd@127.0.0.1:1/forexd?password={SECRET}",
        f"postgresql+psycopg2://forexd:other@127.0.0.1:1/forexd?connect_timeout=5&password={SECRET}",
    ],
)
def test_worker_waiting_for_postgres_hides_a_password_given_as_a_query_parameter(
    broker_port: int, tmp_path: Path, url: str
) -> None:
    # the wait lines: the worker waits (10 minutes); its first database.wait line is read, then it is stopped
    # (a short wait made the test depend on the first attempt ending within it)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FOREXD_")}
    env.update(
        FOREXD_BROKER_URL=f"kafka://127.0.0.1:{broker_port}",
        FOREXD_DATABASE_URL=url,
        FOREXD_DB_WAIT_S="600",
        FOREXD_DATA_DIR=str(tmp_path),
        FOREXD_METRICS_PORT="-1",
    )
    exe = Path(sys.executable).with_name("forexd")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "streams.cli"]
    seen: list[str] = []
    with subprocess.Popen([*cmd, "worker"], stderr=subprocess.PIPE, text=True, env=env) as proc:
        try:
            assert proc.stderr is not None
            for line in proc.stderr:  # ends at the worker's exit: a worker that never waits fails below
                seen.append(line)
                if "database.wait" in line:
                    break
        finally:
            proc.kill()
    text = "".join(seen)
    waits = [ln for ln in seen if "database.wait" in ln]
    assert waits and all("password=***" in ln for ln in waits), text
    assert SECRET not in text and "other" not in text and "Traceback" not in text, text
    # the exit-69 line: no wait at all
    res = _worker(broker_port, url, tmp_path, wait_s="0")
    assert res.returncode == 69, res.stderr
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("error: database unreachable at postgresql+psycopg2://forexd"), res.stderr
    assert "password=***" in last, res.stderr
    leaked = [ln for ln in (res.stdout + res.stderr).splitlines() if SECRET in ln]
    assert not leaked, leaked
    assert "other" not in res.stderr and "Traceback" not in res.stderr, res.stderr


class Exited(BaseException):
    def __init__(self, code: int) -> None:
        self.code = code


def test_storage_fatal_line_hides_a_password_given_as_a_query_parameter(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def fake_exit(code: int) -> None:
        raise Exited(code)

    monkeypatch.setattr("streams.progress.os._exit", fake_exit)
    engine = create_engine(f"postgresql+psycopg2://forexd@127.0.0.1:1/forexd?password={SECRET}")  # never connects
    pp = PartitionProgress(
        consumer="test:ticks",
        topic="fx.ticks",
        engine=engine,
        snapshot=lambda p: {},
        restore=lambda p, s: None,
        drop=lambda p: None,
        fatal_after_s=0.0,
    )
    with caplog.at_level(logging.CRITICAL, logger="streams.progress"), pytest.raises(Exited) as exited:
        for _ in range(FATAL_MIN_ATTEMPTS):
            pp.checkpoint_failed(PermanentStorageError("OperationalError: attempt to write a readonly database"))
    assert exited.value.code == EXIT_STORAGE_FATAL
    fatal = [r.getMessage() for r in caplog.records if "storage.fatal" in r.getMessage()]
    assert len(fatal) == 1, caplog.text
    assert "db=postgresql+psycopg2://forexd@127.0.0.1:1/forexd?password=***" in fatal[0], fatal[0]
    assert SECRET not in caplog.text, caplog.text


# -- an answer waiting cannot cure: exit 78, one line, no wait ---------------------------------


def _one_error_line(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: ") and "FOREXD_DATABASE_URL" in lines[0], stderr
    return lines[0]


@pytest.mark.postgres
def test_worker_naming_a_database_the_server_lacks_exits_78_saying_createdb(
    broker_port: int, pg_base_url: str, tmp_path: Path
) -> None:
    url = make_url(pg_base_url).set(database="no_such_database_start78")
    res = _worker(broker_port, url.render_as_string(hide_password=False), tmp_path, wait_s="600")
    assert res.returncode == 78, res.stderr  # before: 69 "database unreachable"
    line = _one_error_line(res.stderr)  # no database.wait line: not waited for
    assert '"no_such_database_start78"' in line and "createdb" in line, line
    assert "unreachable" not in line, line


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("option", "says"),
    [
        ("options=-c%20statement_timeout%3Dx", 'invalid value for parameter "statement_timeout"'),
        ("options=-c%20no_such_setting_x%3D1", "unrecognized configuration parameter"),
        ("options=-c%20shared_buffers%3D1", "cannot be changed without restarting"),
    ],
)
def test_worker_with_a_connection_option_the_server_refuses_exits_78_naming_it(
    broker_port: int, pg_base_url: str, tmp_path: Path, option: str, says: str
) -> None:
    sep = "&" if "?" in pg_base_url else "?"
    res = _worker(broker_port, f"{pg_base_url}{sep}{option}&password={SECRET}", tmp_path, wait_s="600")
    assert res.returncode == 78, res.stderr  # before: 69 "database unreachable" (options), or a wait
    line = _one_error_line(res.stderr)
    assert "connection option" in line and says in line, line
    assert SECRET not in res.stderr, res.stderr


@pytest.mark.postgres
def test_worker_with_a_refused_login_exits_69_saying_so(broker_port: int, pg_base_url: str, tmp_path: Path) -> None:
    url = make_url(pg_base_url).set(username="no_such_role_start69", password=SECRET)
    res = _worker(broker_port, url.render_as_string(hide_password=False), tmp_path, wait_s="600")
    assert res.returncode == 69, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "refuses the login" in lines[0], res.stderr
    assert SECRET not in res.stderr, res.stderr


# -- the broker URL: a query is never echoed -------------------------------------------------


@pytest.mark.parametrize("url", [f"kafka://127.0.0.1:1?password={SECRET}", f"kafka://a:1,b:2?sasl_password={SECRET}"])
def test_worker_with_a_query_in_the_broker_url_exits_78_without_echoing_it(url: str, tmp_path: Path) -> None:
    """``FOREXD_BROKER_URL=kafka://host:port?password=s3cret`` was refused (78) with the whole URL
    echoed, the password in it."""
    res = forexd(
        "worker", env={"FOREXD_BROKER_URL": url, "FOREXD_BROKER_WAIT_S": "0", "FOREXD_DATA_DIR": str(tmp_path)}
    )
    assert res.returncode == 78, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: FOREXD_BROKER_URL="), res.stderr
    assert "?(not shown)" in lines[0] and SECRET not in res.stderr, res.stderr
