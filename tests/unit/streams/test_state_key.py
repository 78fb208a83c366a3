"""Issue 13, finding 7, the worker's side: where the state key comes from, and what a worker
does with a checkpointed state that fails its signature (stops loudly; never loads it)."""

from __future__ import annotations

import asyncio
import base64
import logging
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from faust.types import TP

import streams.progress as progress_mod
from forex_diffusion.errors import ArtifactError, ConfigError
from forex_diffusion.online import snapshot
from forex_diffusion.online.snapshot import dump_state, load_state
from forex_diffusion.storage import make_engine, save_progress
from streams.progress import EXIT_STATE_REFUSED, PartitionProgress
from streams.settings import Settings
from streams.state_key import KEY_FILE, install_state_key, load_or_create_key


@pytest.fixture(autouse=True)
def _restore_process_key() -> Iterator[None]:
    saved = snapshot._signing  # noqa: SLF001
    yield
    snapshot._signing = saved  # noqa: SLF001


def test_unset_key_is_generated_once_into_the_data_dir_with_mode_0600_and_reused(tmp_path: Path) -> None:
    s = Settings(data_dir=tmp_path / "var")
    install_state_key(s)
    path = tmp_path / "var" / KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    first = path.read_bytes()
    blob = dump_state({"n": 1})
    snapshot._signing = snapshot._Signing(b"z" * 32)  # noqa: SLF001 - "another process"
    install_state_key(s)  # the restarted worker
    assert path.read_bytes() == first and load_state(blob) == {"n": 1}
    assert [p.name for p in (tmp_path / "var").iterdir()] == [KEY_FILE]  # no temp file left


def test_the_key_setting_wins_and_workers_sharing_it_read_each_others_snapshots(tmp_path: Path) -> None:
    key = "k" * 40
    install_state_key(Settings(data_dir=tmp_path / "a", state_key=key))
    blob = dump_state({"n": 2})
    install_state_key(Settings(data_dir=tmp_path / "b", state_key=key))
    assert load_state(blob) == {"n": 2}
    assert not (tmp_path / "b" / KEY_FILE).exists()
    install_state_key(Settings(data_dir=tmp_path / "c"))  # a worker with its own generated key
    with pytest.raises(ArtifactError, match="another state key"):
        load_state(blob)


def test_a_key_file_others_can_read_is_refused(tmp_path: Path) -> None:
    load_or_create_key(tmp_path)
    (tmp_path / KEY_FILE).chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        load_or_create_key(tmp_path)


def _assign_expecting_exit(
    engine: Any, restore: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> PartitionProgress:
    """Assign partition 0 of ``fx.candles`` and expect the worker to stop with EXIT_STATE_REFUSED."""

    def exit_(code: int) -> None:
        raise SystemExit(code)

    monkeypatch.setattr(progress_mod.os, "_exit", exit_)
    pp = PartitionProgress(
        app=None,
        consumer="test:candles",
        topic="fx.candles",
        engine=engine,
        snapshot=lambda p: {},
        restore=restore,
        drop=lambda p: None,
    )
    with caplog.at_level(logging.ERROR), pytest.raises(SystemExit) as info:
        asyncio.run(pp.on_assigned(None, [TP("fx.candles", 0)]))
    assert info.value.code == EXIT_STATE_REFUSED
    return pp


def test_a_tampered_checkpoint_stops_the_worker_loudly_and_is_never_loaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Regression (issue 13 finding 7): a state row is restored only if its signature holds."""
    install_state_key(Settings(data_dir=tmp_path / "var"))
    blob = bytearray(dump_state({"learner": "weights"}))
    blob[-3] ^= 0x01  # someone with write access to the state table
    engine = make_engine(f"sqlite:///{tmp_path / 'p.db'}")
    save_progress(
        engine,
        consumer="test:candles",
        topic="fx.candles",
        partition=0,
        offset=7,
        state={"learners": base64.b64encode(bytes(blob)).decode()},
        candle_items=[],
        forecast_rows=[],
    )
    loaded: list[Any] = []

    def restore(partition: int, state: dict[str, Any]) -> None:  # what the candle agent's restore does
        loaded.append(load_state(base64.b64decode(state["learners"])))

    pp = _assign_expecting_exit(engine, restore, monkeypatch, caplog)
    assert loaded == [] and 0 not in pp.offsets
    assert "state.refused consumer=test:candles topic=fx.candles partition=0 offset=7" in caplog.text
    assert "signature mismatch" in caplog.text


@pytest.mark.parametrize(
    "state, raised",
    [
        ({"learners": "not base64 !"}, "Error"),  # a restore that fails with something else than ArtifactError
        ({}, "KeyError"),  # a snapshot of another version: a field is missing
    ],
)
def test_a_state_that_cannot_be_restored_stops_the_worker_instead_of_hanging(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    state: dict[str, Any],
    raised: str,
) -> None:
    """Review finding: only ArtifactError stopped the worker; any other failure left the partition
    marked as restoring for ever, and every record of it waited in ``restored()`` without end."""
    install_state_key(Settings(data_dir=tmp_path / "var"))
    engine = make_engine(f"sqlite:///{tmp_path / 'p.db'}")
    save_progress(
        engine,
        consumer="test:candles",
        topic="fx.candles",
        partition=0,
        offset=7,
        state=state,
        candle_items=[],
        forecast_rows=[],
    )

    def restore(partition: int, st: dict[str, Any]) -> None:
        load_state(base64.b64decode(st["learners"], validate=True))

    pp = _assign_expecting_exit(engine, restore, monkeypatch, caplog)
    assert 0 not in pp.offsets and raised in caplog.text
