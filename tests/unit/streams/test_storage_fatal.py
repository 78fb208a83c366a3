"""F14: a database that refuses writes for good is fatal after a bounded retry.

The checkpointing agents retry every failed checkpoint with backoff and pause consumption
meanwhile. A streak of *permanent* storage errors (read-only database, disk I/O error) that
lasts ``fatal_after_s`` and at least ``FATAL_MIN_ATTEMPTS`` checkpoints ends the process
with one CRITICAL line and exit code 74; transient errors (locked, connection lost) and
broker errors never do, and a successful checkpoint ends the streak.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine
from sqlalchemy.exc import OperationalError

from forex_diffusion.errors import ConfigError, PermanentStorageError, TransientStorageError
from forex_diffusion.storage import make_engine, save_progress
from forex_diffusion.storage.retry import classify, is_transient
from streams.progress import EXIT_STORAGE_FATAL, FATAL_MIN_ATTEMPTS, PartitionProgress
from streams.settings import Settings

SENTINEL = "__SENTINEL_7f3a__"


class Exited(BaseException):
    def __init__(self, code: int) -> None:
        self.code = code


@pytest.fixture
def exits(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """``os._exit`` in streams.progress raises :class:`Exited` instead (records the code)."""
    codes: list[int] = []

    def fake_exit(code: int) -> None:
        codes.append(code)
        raise Exited(code)

    monkeypatch.setattr("streams.progress.os._exit", fake_exit)
    return codes


def _progress(fatal_after_s: float, engine: Any = None) -> PartitionProgress:
    return PartitionProgress(
        consumer="test:ticks",
        topic="fx.ticks",
        engine=engine,
        snapshot=lambda p: {},
        restore=lambda p, s: None,
        drop=lambda p: None,
        fatal_after_s=fatal_after_s,
    )


def _readonly() -> PermanentStorageError:
    return PermanentStorageError("OperationalError: attempt to write a readonly database")


def test_a_write_to_a_read_only_sqlite_file_is_a_permanent_error_raised_at_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The real error SQLite raises on a file it opened read-only is not retried by db_retry:
    the checkpoint fails at once with a PermanentStorageError naming the cause."""
    db = tmp_path / "ro.db"
    make_engine(f"sqlite:///{db}").dispose()  # tables
    ro = make_engine(f"sqlite:///file:{db}?mode=ro&uri=true", create=False)
    with (
        caplog.at_level(logging.WARNING, logger="forex_diffusion.storage.retry"),
        pytest.raises(PermanentStorageError, match="attempt to write a readonly database"),
    ):
        save_progress(ro, consumer="c", topic="t", partition=0, offset=1, state={})
    # no retry with backoff: db_retry logs a db.retry line before each (counted, not timed)
    assert not [r for r in caplog.records if "db.retry" in r.getMessage()], caplog.text
    ro.dispose()


@pytest.mark.parametrize(
    ("text", "transient"),
    [
        ("attempt to write a readonly database", False),
        ("disk I/O error", False),
        ("database is locked", True),
        (
            'connection to server at "127.0.0.1", port 5432 failed: FATAL:  the database system is not yet '
            "accepting connections",
            True,
        ),
        ("FATAL:  the database system is in recovery mode", True),
        ("FATAL:  the database system is starting up", True),
    ],
)
def test_classification_of_the_errors_a_worker_meets(text: str, transient: bool) -> None:
    exc = OperationalError("INSERT", {}, sqlite3.OperationalError(text))
    assert is_transient(exc) is transient
    assert isinstance(classify(exc), TransientStorageError if transient else PermanentStorageError)


def test_permanent_errors_are_fatal_only_after_min_attempts(exits: list[int]) -> None:
    pp = _progress(0.0)
    for _ in range(FATAL_MIN_ATTEMPTS - 1):
        pp.checkpoint_failed(_readonly())
    assert exits == []
    with pytest.raises(Exited):
        pp.checkpoint_failed(_readonly())
    assert exits == [EXIT_STORAGE_FATAL] == [74]


def test_permanent_errors_are_fatal_only_after_the_time_budget(
    exits: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    # streams.progress's clock is the test's: the attempts within the budget do not depend on
    # the machine making them within 0.4 s of real time
    now = [1000.0]

    class Clock:
        def __getattr__(self, name: str) -> Any:
            return getattr(time, name)

        @staticmethod
        def monotonic() -> float:
            return now[0]

    monkeypatch.setattr("streams.progress.time", Clock())
    pp = _progress(0.4)
    for _ in range(FATAL_MIN_ATTEMPTS + 3):
        pp.checkpoint_failed(_readonly())
        now[0] += 0.01
    assert exits == []  # many attempts, but within the budget
    now[0] += 0.45
    with pytest.raises(Exited):
        pp.checkpoint_failed(_readonly())
    assert exits == [EXIT_STORAGE_FATAL]


def test_transient_or_broker_errors_and_a_checkpoint_end_the_streak(exits: list[int]) -> None:
    pp = _progress(0.0)
    for other in (
        TransientStorageError("OperationalError: database is locked"),
        TimeoutError("send"),
        RuntimeError("KafkaTimeoutError"),
    ):
        pp.checkpoint_failed(_readonly())
        pp.checkpoint_failed(_readonly())
        pp.checkpoint_failed(other)  # the database was reachable, or it was the broker
    for _ in range(50):  # a PostgreSQL outage: transient forever, never fatal
        pp.checkpoint_failed(TransientStorageError("OperationalError: connection refused"))
    pp.checkpoint_failed(_readonly())
    pp.checkpoint_failed(_readonly())
    asyncio.run(pp.persist({}))  # a checkpoint that succeeds
    pp.checkpoint_failed(_readonly())
    pp.checkpoint_failed(_readonly())
    assert exits == []
    with pytest.raises(Exited):
        pp.checkpoint_failed(_readonly())


def test_the_fatal_line_names_the_cause_and_the_database_without_its_password(
    exits: list[int],
    caplog: pytest.LogCaptureFixture,
) -> None:
    eng = create_engine(f"postgresql+psycopg2://forexd:{SENTINEL}@127.0.0.1:5432/fx")  # never connects
    pp = _progress(0.0, engine=eng)
    with caplog.at_level(logging.WARNING, logger="streams.progress"), pytest.raises(Exited):
        for _ in range(FATAL_MIN_ATTEMPTS):
            pp.checkpoint_failed(_readonly())
    crit = [r for r in caplog.records if r.levelno == logging.CRITICAL]
    assert len(crit) == 1
    msg = crit[0].getMessage()
    assert "storage.fatal" in msg and "attempt to write a readonly database" in msg
    assert "db=postgresql+psycopg2://forexd:***@127.0.0.1:5432/fx" in msg and f"attempts={FATAL_MIN_ATTEMPTS}" in msg
    assert SENTINEL not in caplog.text


def test_settings_read_the_budget_and_refuse_a_negative_one() -> None:
    assert Settings().db_fatal_after_s == 30.0
    assert Settings.from_env({"FOREXD_DB_FATAL_AFTER_S": "5"}).db_fatal_after_s == 5.0
    with pytest.raises(ConfigError):
        Settings(db_fatal_after_s=-1)


def test_the_fatal_exit_keeps_its_status_when_standard_error_is_closed(
    exits: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker started with ``2>&-`` has ``sys.stderr`` None: flushing it before ``os._exit``
    raised AttributeError, and the worker did not exit 74."""
    monkeypatch.setattr("sys.stderr", None)
    pp = _progress(0.0)
    for _ in range(FATAL_MIN_ATTEMPTS - 1):
        pp.checkpoint_failed(_readonly())
    with pytest.raises(Exited):
        pp.checkpoint_failed(_readonly())
    assert exits == [EXIT_STORAGE_FATAL]
