"""``forexd worker`` says a refused login as ``forexd`` commands do: "database login failed at
…: role "x" does not exist: the server refuses the login (it is running): create that role,
or fix the user in FOREXD_DATABASE_URL". It said "database unreachable at …", which sends an
operator to start a server that is running."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from .test_worker_start_secrets import SECRET, _worker


@pytest.mark.postgres
def test_a_refused_login_is_said_as_one_and_names_the_fix(broker_port: int, pg_base_url: str, tmp_path: Path) -> None:
    url = make_url(pg_base_url).set(username="no_such_role_login", password=SECRET)
    res = _worker(broker_port, url.render_as_string(hide_password=False), tmp_path, wait_s="600")
    assert res.returncode == 69, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("error: database login failed at postgresql"), lines[0]
    assert 'role "no_such_role_login" does not exist' in lines[0], lines[0]
    assert "unreachable" not in lines[0] and "create that role, or fix the user in FOREXD_DATABASE_URL" in lines[0]
    assert SECRET not in res.stderr
