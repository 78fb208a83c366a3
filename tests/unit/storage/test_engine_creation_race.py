"""Two processes creating the tables of one database at once both succeed.

``metadata.create_all`` checks for a table, then creates it; a concurrent creator in
between made a worker exit at start with "table candles already exists" (SQLite, seen when
the fault harness opened the worker's file while the worker started, under load).
"""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from forex_diffusion.storage import engine as engine_mod
from forex_diffusion.storage.engine import make_engine, sqlite_url


def test_a_table_created_between_check_and_create_is_not_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = sqlite_url(tmp_path / "race.db")
    real = engine_mod.metadata.create_all
    calls: list[int] = []

    def racing(bind: Any, **kw: Any) -> None:
        calls.append(1)
        if len(calls) == 1:  # the other process wins the race: our CREATE TABLE then fails
            other = sa.create_engine(url)
            real(other)
            other.dispose()
            with sa.create_engine(url).begin() as conn:
                conn.exec_driver_sql("CREATE TABLE candles (x INTEGER)")  # raises: already exists
        real(bind, **kw)

    monkeypatch.setattr(engine_mod.metadata, "create_all", racing)
    eng = make_engine(url)
    assert len(calls) == 2
    assert "candles" in sa.inspect(eng).get_table_names()


def _open(url: str, barrier: Any) -> None:
    barrier.wait(10)
    make_engine(url).dispose()


def test_processes_opening_a_new_database_at_once_all_start(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "many.db")
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(8)
    procs = [ctx.Process(target=_open, args=(url, barrier)) for _ in range(8)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0] * 8
    assert {"candles", "forecasts", "state_snapshots"} <= set(sa.inspect(sa.create_engine(url)).get_table_names())
