"""Jobs killed mid-training, mid-write and mid-promotion (F19) leave a consistent registry.

Each job runs in a child process (:func:`retraining.runner.run_job`) with a failpoint
armed; the child exits with 137 at that point, like a SIGKILL. Afterwards: no alias
points at a missing or unloadable file, nothing half-written loads, and the next request
succeeds (cleaning up what the dead job left).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from forex_diffusion.diffusion import load_checkpoint
from forex_diffusion.errors import ArtifactError
from forex_diffusion.storage import make_engine, upsert_candles
from forex_diffusion.storage.model_registry import ModelKey
from retraining.jobs import run_retrain
from retraining.registry import ModelRegistry
from retraining.runner import run_job

from .conftest import HORIZON, request, tiny_job

KEY = ModelKey(symbol="EURUSD", timeframe="1h", horizon=HORIZON)


def killed_job(db: str, models: Path, failpoint: str, request_id: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "FOREXD_FAILPOINT"}
    env.update(FOREXD_FAILPOINT=failpoint, FOREXD_LOG_LEVEL="WARNING")
    out = run_job(
        request(request_id), db_url=db, model_dir=models, config=tiny_job(), threads=1, timeout_s=120, env=env
    )
    assert out.status == "failed" and "status 137" in out.reason, out.reason
    assert out.version is None and out.key == str(KEY)


def assert_consistent(reg: ModelRegistry) -> None:
    """Aliases load; every registered live version loads; every loadable file is whole."""
    for alias in (reg.champion(KEY), reg.challenger(KEY)):
        if alias is not None:
            assert reg.verify(alias), alias.version
    for v in reg.list(KEY, include_deleted=False):
        assert reg.verify(v), v.version
    for pt in reg.key_dir(KEY).glob("*.pt") if reg.key_dir(KEY).is_dir() else ():
        try:
            _, manifest = load_checkpoint(pt)
        except ArtifactError:
            continue  # refused: a partial artifact never loads
        assert manifest["version"] == pt.stem


def next_request_succeeds(db: str, models: Path) -> None:
    reg = ModelRegistry(make_engine(db), models)
    out = run_retrain(request("next"), engine=reg.engine, model_dir=models, config=tiny_job())
    assert out.status == "promoted", out.reason
    assert reg.champion(KEY).version == out.version
    assert_consistent(reg)
    assert not list((models / ".staging").glob("*")) if (models / ".staging").exists() else True
    live = {Path(v.artifact).name for v in reg.list(KEY, include_deleted=False)}
    assert {p.name for p in reg.key_dir(KEY).glob("*.pt")} == live


def test_killed_mid_training_leaves_no_artifact_and_next_request_succeeds(sqlite_db: str, tmp_path: Path) -> None:
    models = tmp_path / "models"
    killed_job(sqlite_db, models, "retrain.training", "dead-train")
    reg = ModelRegistry(make_engine(sqlite_db), models)
    assert reg.list() == [] and reg.champion(KEY) is None
    assert not reg.key_dir(KEY).exists() or not any(reg.key_dir(KEY).iterdir())
    assert any((models / ".staging").iterdir())  # the dead job's staging directory is left ...
    next_request_succeeds(sqlite_db, models)  # ... and removed by the next job


def test_killed_mid_write_leaves_an_unloadable_partial_and_next_request_succeeds(
    sqlite_db: str, tmp_path: Path
) -> None:
    models = tmp_path / "models"
    killed_job(sqlite_db, models, "retrain.write", "dead-write")
    reg = ModelRegistry(make_engine(sqlite_db), models)
    assert reg.list() == []
    (partial,) = list(reg.key_dir(KEY).glob("*.pt"))
    assert not partial.with_suffix(".json").exists()
    with pytest.raises(ArtifactError, match="manifest not found"):
        load_checkpoint(partial)
    assert_consistent(reg)
    next_request_succeeds(sqlite_db, models)
    assert not partial.exists()


def test_killed_inside_the_promotion_transaction_changes_no_alias(
    db_url: str, tmp_path: Path, hourly_candles: list
) -> None:  # type: ignore[type-arg]
    engine = make_engine(db_url)
    upsert_candles(engine, hourly_candles)
    models = tmp_path / "models"
    killed_job(db_url, models, "registry.promote", "dead-promote")
    reg = ModelRegistry(engine, models)
    (v,) = reg.list(KEY)
    assert v.status == "registered" and reg.champion(KEY) is None  # the promotion rolled back whole
    assert reg.challenger(KEY).version == v.version
    assert [h.alias for h in reg.history(KEY)] == ["challenger"]
    assert_consistent(reg)
    next_request_succeeds(db_url, models)
