"""Fixtures of the fault-injection suite: worker environment, a private broker, settling.

``@pytest.mark.soak`` tests (the long form) run only when asked for with ``-m soak``;
otherwise they are deselected here, so the default suite keeps the short form only.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.broker import EmbeddedBroker, free_port

from .harness import SYMBOLS, TIMEFRAMES


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if "soak" in (config.getoption("-m") or ""):
        return
    soak = [i for i in items if i.get_closest_marker("soak") is not None]
    if soak:
        config.hook.pytest_deselected(items=soak)
        items[:] = [i for i in items if i.get_closest_marker("soak") is None]


@pytest.fixture
def fault_env(worker_env: dict[str, str]) -> dict[str, str]:
    """A tick-only worker on two symbols with frequent checkpoints."""
    return dict(worker_env, FOREXD_SYMBOLS=",".join(SYMBOLS), FOREXD_TIMEFRAMES=",".join(TIMEFRAMES),
                FOREXD_SNAPSHOT_INTERVAL_S="0.5", FOREXD_IDLE_CLOSE_S="3")


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    """A private embedded broker on a fixed port, so a test can kill and restart it."""
    b = EmbeddedBroker(free_port(), log_path=tmp_path / "own-broker.log").start()
    yield b
    b.stop()

