"""A state that cannot be written as strict JSON stops the worker; it is never retried for ever.

Regression: a state holding NaN or Infinity (a checkpoint row with ``"1e400"`` restored as a
price made every later snapshot so) made ``save_progress``'s ``json.dumps(allow_nan=False)``
raise a bare ``ValueError``; the checkpoint path took it for a passing failure and retried it
for ever, with consumption paused and nothing logged above WARNING. ``save_progress`` now
refuses such a state with a :class:`StateError` (nothing written), and the checkpoint path
treats a StateError as it treats a state it cannot restore: one ERROR line, exit 65.
"""

from __future__ import annotations

import asyncio
import logging
import math
from pathlib import Path
from typing import Any

import pytest

from forex_diffusion.errors import StateError, TransientStorageError
from forex_diffusion.storage import load_snapshot, make_engine, save_progress
from streams.progress import EXIT_STATE_REFUSED, PartitionProgress
from tests.unit.streams import test_storage_fatal

Exited = test_storage_fatal.Exited
exits = test_storage_fatal.exits  # the fixture: os._exit in streams.progress records its code

KEY = {"consumer": "c", "topic": "t", "partition": 0}


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, {1, 2}])
@pytest.mark.parametrize("how", ["state", "parts"])
def test_save_progress_refuses_a_state_that_is_not_strict_json_and_writes_nothing(
    tmp_path: Path, bad: Any, how: str
) -> None:
    eng = make_engine(f"sqlite:///{tmp_path / 'fx.db'}")
    save_progress(eng, **KEY, offset=5, state={"EURUSD": {"x": 1.0}})
    state = {"EURUSD": {"x": [1.0, bad]}}
    kw: dict[str, Any] = {"state": state} if how == "state" else {"parts": state}
    with pytest.raises(StateError, match="not strict JSON") as info:
        save_progress(eng, **KEY, offset=9, **kw)
    assert str(info.value).startswith("checkpoint of c t[0]")  # where, never the values
    assert load_snapshot(eng, **KEY) == (5, {"EURUSD": {"x": 1.0}})  # nothing written
    eng.dispose()


def _progress(engine: Any, snapshot: Any) -> PartitionProgress:
    return PartitionProgress(
        consumer="test:ticks",
        topic="fx.ticks",
        engine=engine,
        snapshot=snapshot,
        restore=lambda p, s: None,
        drop=lambda p: None,
        fatal_after_s=30.0,
    )


def test_the_checkpoint_path_refuses_a_non_finite_state_with_a_state_error_and_exits_65(
    tmp_path: Path, exits: list[int], caplog: pytest.LogCaptureFixture
) -> None:
    """The worker's own path: capture, persist (save_progress in an executor), and what its
    consumer does with the failure (``checkpoint_failed``): exit 65 at once, not a retry."""
    eng = make_engine(f"sqlite:///{tmp_path / 'fx.db'}")
    pp = _progress(eng, lambda p: {"EURUSD": {"sum": math.inf}})
    pp.offsets[0] = 41
    pp.dirty.add(0)
    captured = pp.capture()
    with pytest.raises(StateError) as info:
        asyncio.run(pp.persist(captured))
    assert load_snapshot(eng, consumer="test:ticks", topic="fx.ticks", partition=0) is None
    with caplog.at_level(logging.ERROR, logger="streams.progress"), pytest.raises(Exited):
        pp.checkpoint_failed(info.value)
    assert exits == [EXIT_STATE_REFUSED] == [65]
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(lines) == 1 and "state.unwritable" in lines[0] and "StateError" in lines[0], lines
    eng.dispose()


def test_other_checkpoint_failures_are_still_retried(exits: list[int]) -> None:
    pp = _progress(None, lambda p: {})
    for exc in (TransientStorageError("OperationalError: database is locked"), TimeoutError("send"), ValueError("x")):
        pp.checkpoint_failed(exc)
    assert exits == []
