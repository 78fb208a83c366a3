"""Fixtures of the fault-injection suite: worker environment, a private broker (in memory, or
durable on a local S3 server), settling.

``@pytest.mark.soak`` tests (the long form) run only when asked for with ``-m soak``
(``tests/conftest.py`` deselects them otherwise).
"""

from __future__ import annotations

import importlib.util
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from forex_diffusion.errors import ConfigError
from streams.broker import EmbeddedBroker, free_port

from .harness import SYMBOLS, TIMEFRAMES, LocalS3


@pytest.fixture
def fault_env(worker_env: dict[str, str]) -> dict[str, str]:
    """A tick-only worker on two symbols with frequent checkpoints."""
    return dict(
        worker_env,
        FOREXD_SYMBOLS=",".join(SYMBOLS),
        FOREXD_TIMEFRAMES=",".join(TIMEFRAMES),
        FOREXD_SNAPSHOT_INTERVAL_S="0.5",
        FOREXD_IDLE_CLOSE_S="3",
    )


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    """A private embedded broker on a fixed port, so a test can kill and restart it."""
    b = EmbeddedBroker(free_port(), log_path=tmp_path / "own-broker.log").start()
    yield b
    b.stop()


def _durable_unavailable() -> str | None:
    missing = [m for m in ("moto", "flask", "werkzeug", "boto3") if importlib.util.find_spec(m) is None]
    if missing:
        return (
            f"{', '.join(missing)} not installed: the durable-broker tests serve the broker's "
            "s3:// storage from moto (pip install -e '.[test]' installs moto[server])"
        )
    return None


def _unavailable(why: str) -> None:
    """Skip, or fail where the broker is required (CI sets FOREXD_TEST_REQUIRE_BROKER=1)."""
    if os.environ.get("FOREXD_TEST_REQUIRE_BROKER"):
        pytest.fail(f"the durable embedded broker is required here but unavailable: {why}")
    pytest.skip(why)


@pytest.fixture(scope="session")
def local_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalS3]:
    """One moto S3 server for the session; each durable broker gets its own bucket."""
    why = _durable_unavailable()
    if why is not None:
        _unavailable(why)
    try:
        s3 = LocalS3(tmp_path_factory.mktemp("s3") / "moto.log").start()
    except RuntimeError as exc:
        _unavailable(f"moto S3 server: {exc}")
    yield s3
    s3.stop()


@pytest.fixture
def durable_broker(local_s3: LocalS3, tmp_path: Path) -> Iterator[EmbeddedBroker]:
    """A private embedded broker on a fixed port whose log and committed offsets live in a
    fresh bucket of the local S3 server, so they survive ``kill -9`` and a restart."""
    url = local_s3.create_bucket(f"forexd-{uuid.uuid4().hex[:12]}")
    b = EmbeddedBroker(free_port(), storage_url=url, env=local_s3.env(), log_path=tmp_path / "durable-broker.log")
    try:
        b.start()
    except ConfigError as exc:
        _unavailable(f"embedded broker on s3 storage: {exc}")
    yield b
    b.stop()
