"""A series' first model lookup during a database outage is waited out, not let out (D16).

The candle agent asks its model book for the model serving each due series; the first time
for a series that asks the registry. While PostgreSQL is down that raises
``TransientStorageError``: it used to escape ``handle_batch`` and Faust stopped the worker.
Now the batch waits with the checkpoint's back-off and forecasts once the registry answers,
exactly what it forecasts with no outage.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import pytest

from forex_diffusion.errors import TransientStorageError

from .test_batch_scoring import WidePredictor, candle_agent, candle_messages

N_CANDLES = 120


def _run(tmp_path: Path, outage_lookups: int) -> tuple[list[Any], int]:
    agent = candle_agent(tmp_path)
    pred, calls = WidePredictor(), {"n": 0}

    def predictor(symbol: str, timeframe: str) -> Any:
        calls["n"] += 1
        if calls["n"] <= outage_lookups:
            raise TransientStorageError(f"OperationalError: connection refused (lookup {calls['n']})")
        return pred

    agent.models.predictor = predictor  # type: ignore[method-assign, assignment]
    msgs = candle_messages(N_CANDLES)
    asyncio.run(agent.handle_batch(msgs))
    forecasts = [json.loads(v) for kind, _k, v in agent.effects.out if kind == "forecasts"]
    return forecasts, len(agent.effects.dead)


def test_an_outage_at_the_first_lookup_delays_the_batch_and_changes_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    expected, dead = _run(tmp_path / "up", 0)
    assert expected and dead == 0
    with caplog.at_level(logging.WARNING, logger="streams.agents.forecasts"):
        got, dead = _run(tmp_path / "down", 2)
    assert dead == 0  # no record is blamed for the database
    failed = [r.getMessage() for r in caplog.records if "models.lookup_failed" in r.getMessage()]
    assert len(failed) == 2 and "attempt=2" in failed[1], failed
    strip = ("latency_s", "created_ms")
    assert [{k: v for k, v in f.items() if k not in strip} for f in got] == [
        {k: v for k, v in f.items() if k not in strip} for f in expected
    ]
