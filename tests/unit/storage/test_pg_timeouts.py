"""Issue 15: every PostgreSQL engine bounds connecting, each statement and each lock wait, and
a statement cancelled by those bounds is a *transient* storage error (a consumer pauses and
retries, as in an outage) instead of a call that hangs for ever."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import OperationalError

from forex_diffusion.domain import Candle
from forex_diffusion.errors import PermanentStorageError, TransientStorageError
from forex_diffusion.storage import fetch_candles, load_snapshot, make_engine, save_progress
from forex_diffusion.storage.engine import postgres_connect_args
from forex_diffusion.storage.retry import classify, db_retry, is_transient

pytestmark = pytest.mark.postgres


def _candle(i: int) -> Candle:
    open_ms = 1_700_000_000_000 + 60_000 * i
    return Candle(
        symbol="EURUSD",
        timeframe="1m",
        open_ms=open_ms,
        close_ms=open_ms + 60_000,
        open=1.1,
        high=1.2,
        low=1.0,
        close=1.15,
        tick_count=3,
        revision=3,
    )


def _checkpoint(engine: sa.Engine, offset: int) -> None:
    """The write a ticks consumer makes at each checkpoint: candles and its offset, one transaction."""
    save_progress(
        engine,
        consumer="ticks",
        topic="fx.ticks",
        partition=0,
        offset=offset,
        state={"n": offset},
        candle_items=[_candle(offset)],
    )


@pytest.fixture
def engines(pg_url: str) -> Iterator[tuple[sa.Engine, sa.Engine]]:
    """A worker's engine with a 0.3 s lock timeout, and an operator's engine without bounds."""
    worker = make_engine(pg_url, lock_timeout_s=0.3, statement_timeout_s=0.5)
    other = make_engine(pg_url, create=False, lock_timeout_s=0, statement_timeout_s=0)
    yield worker, other
    worker.dispose()
    other.dispose()


def test_connect_args_keep_the_urls_own_options_and_let_them_win() -> None:
    args = postgres_connect_args(
        "postgresql://u@h/db?options=-csearch_path%3Ds1", statement_timeout_s=2.5, lock_timeout_s=0.25
    )
    assert args == {
        "options": "-c statement_timeout=2500 -c lock_timeout=250 -csearch_path=s1",
        "connect_timeout": 10,
    }
    # a tiny positive timeout is rounded up, never down to 0 ("no limit")
    assert postgres_connect_args(
        "postgresql://u@h/db", connect_timeout_s=0.4, statement_timeout_s=0.0001, lock_timeout_s=0.0004
    ) == {"options": "-c statement_timeout=1 -c lock_timeout=1", "connect_timeout": 1}
    # a connect_timeout in the URL is the operator's: not overridden
    assert "connect_timeout" not in postgres_connect_args("postgresql://u@h/db?connect_timeout=3")
    assert postgres_connect_args("postgresql://u@h/db", statement_timeout_s=0, lock_timeout_s=-1)["options"] == (
        "-c statement_timeout=0 -c lock_timeout=0"
    )


def test_each_connection_carries_the_timeouts_and_the_urls_search_path(engines: tuple[sa.Engine, sa.Engine]) -> None:
    worker, other = engines
    with worker.connect() as c:
        assert c.execute(sa.text("SHOW statement_timeout")).scalar() == "500ms"
        assert c.execute(sa.text("SHOW lock_timeout")).scalar() == "300ms"
        schema = c.execute(sa.text("SELECT current_schema()")).scalar()
    assert str(schema).startswith("t_")  # the pg_url fixture's own schema, from the URL's options
    with other.connect() as c:
        assert c.execute(sa.text("SHOW lock_timeout")).scalar() == "0"


def test_a_statement_past_the_statement_timeout_is_transient(engines: tuple[sa.Engine, sa.Engine]) -> None:
    worker, _ = engines
    with pytest.raises(OperationalError) as info, worker.connect() as c:
        c.execute(sa.text("SELECT pg_sleep(30)"))
    assert "statement timeout" in str(info.value.orig)
    assert is_transient(info.value)
    assert isinstance(classify(info.value), TransientStorageError)


def test_a_held_lock_fails_a_checkpoint_as_transient_and_it_resumes_once_released(
    engines: tuple[sa.Engine, sa.Engine],
) -> None:
    """Another session holds the snapshots table under ACCESS EXCLUSIVE: the checkpoint fails
    with the transient class after its retries (each attempt stops at the lock timeout, none
    hangs), nothing of it is stored, and the same checkpoint succeeds once the lock is gone."""
    worker, other = engines
    _checkpoint(worker, 1)
    holder = other.connect()
    tx = holder.begin()
    holder.execute(sa.text("LOCK TABLE state_snapshots IN ACCESS EXCLUSIVE MODE"))
    try:
        with pytest.raises(TransientStorageError, match="lock timeout"):
            _checkpoint(worker, 2)  # save_progress retries it (db_retry), each attempt bounded
        # the pool's connection that hit the timeout is usable again (no aborted transaction left)
        with worker.connect() as c:
            assert c.execute(sa.text("SELECT 1")).scalar() == 1
    finally:
        tx.rollback()
        holder.close()
    assert load_snapshot(worker, consumer="ticks", topic="fx.ticks", partition=0) == (1, {"n": 1})
    assert len(fetch_candles(worker, "EURUSD", "1m")) == 1  # the failed checkpoint wrote nothing
    _checkpoint(worker, 2)
    assert load_snapshot(worker, consumer="ticks", topic="fx.ticks", partition=0) == (2, {"n": 2})
    assert len(fetch_candles(worker, "EURUSD", "1m")) == 2


def test_a_lock_released_while_a_checkpoint_retries_lets_it_through(engines: tuple[sa.Engine, sa.Engine]) -> None:
    """The retrying checkpoint (save_progress's own db_retry) goes through once the holder
    releases the lock between two of its attempts: paused, then resumed, nothing lost."""
    worker, other = engines
    holder = other.connect()
    tx = holder.begin()
    holder.execute(sa.text("LOCK TABLE state_snapshots IN ACCESS EXCLUSIVE MODE"))
    attempts: list[int] = []
    release = threading.Event()

    def _release_after_first_timeout() -> None:
        release.wait(60)
        tx.rollback()
        holder.close()

    t = threading.Thread(target=_release_after_first_timeout)
    t.start()

    class _Watch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.getMessage().startswith("db.retry"):
                attempts.append(1)
                release.set()  # released only after one attempt met the lock timeout

    handler = _Watch()
    logging.getLogger("forex_diffusion.storage.retry").addHandler(handler)
    try:
        _checkpoint(worker, 7)
    finally:
        logging.getLogger("forex_diffusion.storage.retry").removeHandler(handler)
        release.set()
        t.join(60)
    assert attempts, "the checkpoint never met the lock"
    assert load_snapshot(worker, consumer="ticks", topic="fx.ticks", partition=0) == (7, {"n": 7})


def test_a_permanent_error_stays_permanent(engines: tuple[sa.Engine, sa.Engine]) -> None:
    worker, _ = engines
    with pytest.raises(PermanentStorageError), worker.connect() as c:
        db_retry(lambda: c.execute(sa.text("SELECT * FROM no_such_table_here")))()
