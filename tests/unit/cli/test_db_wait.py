"""Issue 15: a worker that starts while its PostgreSQL does not answer waits for it (one WARNING
``database.wait`` line per attempt), then exits 69 with one line naming the address; an
error that waiting cannot cure (a database that does not exist) is not waited for."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

FOREXD = Path(sys.executable).with_name("forexd")


def forexd(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("FOREXD_")}
    full.update(env)
    cmd = [str(FOREXD)] if FOREXD.exists() else [sys.executable, "-m", "streams.cli"]
    return subprocess.run([*cmd, *args], capture_output=True, text=True, env=full, timeout=240)


def first_wait_lines(env: dict[str, str]) -> list[str]:
    """The standard error of ``forexd worker`` under ``env`` up to and including its first
    ``database.wait`` line (or to its exit, for a worker that never waits); the worker is then
    stopped. Read line by line, not after a wait of so many seconds: how long the worker takes
    to get there is the machine's speed."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("FOREXD_")}
    full.update(env)
    cmd = [str(FOREXD)] if FOREXD.exists() else [sys.executable, "-m", "streams.cli"]
    seen: list[str] = []
    with subprocess.Popen([*cmd, "worker"], stderr=subprocess.PIPE, text=True, env=full) as proc:
        try:
            assert proc.stderr is not None
            for line in proc.stderr:  # ends at the worker's exit
                seen.append(line)
                if "database.wait" in line:
                    break
        finally:
            proc.kill()
    return seen


def test_worker_with_postgres_down_waits_with_warnings_then_exits_69(broker_port: int, tmp_path: Path) -> None:
    env = {
        "FOREXD_BROKER_URL": f"kafka://127.0.0.1:{broker_port}",
        "FOREXD_DATABASE_URL": "postgresql+psycopg2://forexd:secret@127.0.0.1:1/forexd",
        "FOREXD_DATA_DIR": str(tmp_path),
    }
    # the wait lines: a worker waiting 10 minutes, stopped at its first database.wait line (with
    # FOREXD_DB_WAIT_S=1 a first attempt slower than 1 s on a busy machine printed none)
    seen = first_wait_lines({**env, "FOREXD_DB_WAIT_S": "600"})
    waits = [ln for ln in seen if "database.wait" in ln]
    assert waits and all("url=postgresql+psycopg2://forexd:***@127.0.0.1:1/forexd" in ln for ln in waits), seen
    assert "Connection refused" in waits[0] or "connection refused" in waits[0].lower(), seen
    assert not any("secret" in ln or "Traceback" in ln for ln in seen), seen
    # the end of the wait: one attempt (FOREXD_DB_WAIT_S=0), then exit 69 with one line
    res = forexd("worker", env={**env, "FOREXD_DB_WAIT_S": "0"})
    assert res.returncode == 69, res.stderr
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("error: database unreachable at postgresql+psycopg2://forexd:***@127.0.0.1:1/forexd"), (
        res.stderr
    )
    assert "secret" not in res.stderr and "Traceback" not in res.stderr


@pytest.mark.postgres
def test_worker_naming_a_missing_database_exits_78_at_once(broker_port: int, pg_base_url: str, tmp_path: Path) -> None:
    url = make_url(pg_base_url).set(database="no_such_database_issue15", query={})
    res = forexd(
        "worker",
        env={
            "FOREXD_BROKER_URL": f"kafka://127.0.0.1:{broker_port}",
            "FOREXD_DATABASE_URL": url.render_as_string(hide_password=False),
            "FOREXD_DB_WAIT_S": "600",  # never reached: a missing database is not waited for
            "FOREXD_DATA_DIR": str(tmp_path),
        },
    )
    # a configuration error (exit 78, "create it"), not "unreachable ...; start it" (69)
    assert res.returncode == 78, res.stderr
    assert "database.wait" not in res.stderr, res.stderr
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "no_such_database_issue15" in last and "createdb" in last, res.stderr
    assert "Traceback" not in res.stderr


def test_worker_naming_a_driver_that_is_not_installed_exits_78_in_one_line(broker_port: int, tmp_path: Path) -> None:
    res = forexd(
        "worker",
        env={
            "FOREXD_BROKER_URL": f"kafka://127.0.0.1:{broker_port}",
            # SQLAlchemy 2.1 reads a bare postgresql:// as psycopg (3), which this project does not install
            "FOREXD_DATABASE_URL": "postgresql+psycopg://forexd:secret@127.0.0.1:1/forexd",
            "FOREXD_DATA_DIR": str(tmp_path),
        },
    )
    assert res.returncode == 78, res.stderr
    assert "Traceback" not in res.stderr and "secret" not in res.stderr, res.stderr
    assert res.stderr.strip().splitlines()[-1].startswith("error: "), res.stderr


@pytest.mark.postgres
def test_the_timeout_settings_are_checked_and_reach_every_connection(pg_url: str) -> None:
    from sqlalchemy import text

    from forex_diffusion.errors import SettingsError
    from streams.settings import Settings

    with pytest.raises(SettingsError, match="db_lock_timeout_s must be >= 0"):
        Settings.from_env({"FOREXD_DB_LOCK_TIMEOUT_S": "-1"})
    with pytest.raises(SettingsError, match="FOREXD_DB_STATEMENT_TIMEOUT_S"):
        Settings.from_env({"FOREXD_DB_STATEMENT_TIMEOUT_S": "nan"})
    with pytest.raises(SettingsError, match="at most 2,147,483 s"):  # PostgreSQL would refuse every connection
        Settings.from_env({"FOREXD_DB_LOCK_TIMEOUT_S": "1e308"})
    Settings.from_env({"FOREXD_DB_LOCK_TIMEOUT_S": "2147483"})  # the longest PostgreSQL takes
    s = Settings.from_env(
        {"FOREXD_DATABASE_URL": pg_url, "FOREXD_DB_STATEMENT_TIMEOUT_S": "2.5", "FOREXD_DB_LOCK_TIMEOUT_S": "0"}
    )
    eng = s.make_db_engine(create=False)
    try:
        with eng.connect() as c:
            assert c.execute(text("SHOW statement_timeout")).scalar() == "2500ms"
            assert c.execute(text("SHOW lock_timeout")).scalar() == "0"  # 0: no limit
    finally:
        eng.dispose()
