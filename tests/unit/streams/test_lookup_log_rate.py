"""A model lookup that fails with a bug logs its traceback once per series and error type.

A per-series model lookup that raised a bug (not a storage failure) was an internal error
logged at ERROR with its traceback -- at every batch, for every series: a bug that persists
flooded the log with one traceback per series per batch. Now the first failure of a series
and error type is logged with its traceback, the repeats are counted in
``contain.internal_errors`` (and logged at DEBUG), and a series that serves again is logged
in full when it fails again.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest

from .test_batch_scoring import WidePredictor, candle_agent, candle_messages

BATCHES = 6
PER_BATCH = 20
EVENT = "forecast.model_lookup_error"


def _tracebacks(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        r for r in caplog.records if r.levelno >= logging.ERROR and EVENT in r.getMessage() and r.exc_info is not None
    ]


def _run(tmp_path: Path, fail: Any) -> tuple[Any, int]:
    """Feed the sample's candles in :data:`BATCHES` batches; ``fail(n)`` gives the exception
    of the ``n``-th lookup (1-based), or None to serve. Return the agent and the lookups."""
    agent = candle_agent(tmp_path)
    pred, calls = WidePredictor(), {"n": 0}

    def predictor(symbol: str, timeframe: str) -> Any:
        calls["n"] += 1
        exc = fail(calls["n"])
        if exc is not None:
            raise exc
        return pred

    agent.models.predictor = predictor
    msgs = candle_messages(BATCHES * PER_BATCH)
    for i in range(BATCHES):
        asyncio.run(agent.handle_batch(msgs[i * PER_BATCH : (i + 1) * PER_BATCH]))
    return agent, calls["n"]


def test_a_lookup_failing_at_every_batch_logs_one_traceback_and_counts_every_failure(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="streams"):
        agent, lookups = _run(tmp_path, lambda n: KeyError("registry row"))
    assert lookups >= 3  # looked up again at each batch: the bug persists
    assert len(_tracebacks(caplog)) == 1
    assert "symbol=EURUSD" in _tracebacks(caplog)[0].getMessage()
    assert agent.contain.internal_errors == lookups  # every failure counted
    repeats = [r for r in caplog.records if EVENT in r.getMessage() and r.levelno == logging.DEBUG]
    assert len(repeats) == lookups - 1 and all(r.exc_info is None for r in repeats)


def test_another_error_type_of_the_series_logs_its_own_traceback(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def fail(n: int) -> Exception:
        return KeyError("row") if n % 2 else TypeError("column")

    with caplog.at_level(logging.ERROR, logger="streams"):
        agent, lookups = _run(tmp_path, fail)
    assert lookups >= 4
    assert sorted(r.getMessage().split("error=")[-1] for r in _tracebacks(caplog)) == ["KeyError", "TypeError"]
    assert agent.contain.internal_errors == lookups


def test_a_series_that_serves_again_logs_a_new_failure_in_full(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    outcomes: list[Exception | None] = [KeyError("a"), KeyError("a"), None, KeyError("b")]

    def fail(n: int) -> Exception | None:
        return outcomes[n - 1] if n <= len(outcomes) else None

    with caplog.at_level(logging.ERROR, logger="streams"):
        agent, lookups = _run(tmp_path, fail)
    assert lookups >= len(outcomes)
    shown = _tracebacks(caplog)
    assert [str(r.exc_info[1]) for r in shown if r.exc_info] == ["'a'", "'b'"]  # the relapse in full
    assert agent.contain.internal_errors == 3
