"""Checkpoint retention asks the caller (the model registry) before deleting a version.

``forexd train --model-dir DIR`` on a directory a worker serves from must never delete a
version the registry names (the champion, a rollback target, a challenger), however old;
an unregistered old version is still pruned.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from forex_diffusion.diffusion import CheckpointManager, TrainResult, load_checkpoint
from forex_diffusion.storage import make_engine, sqlite_url
from forex_diffusion.storage.model_registry import ModelKey
from retraining.registry import ModelRegistry
from streams.cli import app

from .conftest import HOURLY

KEY = "EURUSD-1h-h24"


def _save(mgr: CheckpointManager, i: int) -> Path:
    return mgr.save({"w": torch.full((2,), float(i))}, {"i": i}, key=KEY)


def test_protected_versions_survive_retention_and_the_others_are_pruned(tmp_path: Path) -> None:
    asked: list[tuple[str, list[str]]] = []
    keep_me: set[str] = set()

    def protected(key: str, candidates: Sequence[str]) -> set[str]:
        asked.append((key, list(candidates)))
        return keep_me & set(candidates)

    mgr = CheckpointManager(tmp_path, keep=2, protected=protected)
    first = _save(mgr, 0)
    keep_me.add(first.stem)
    paths = [first] + [_save(mgr, i) for i in range(1, 5)]
    # the protected oldest stays besides the newest two; versions 1 and 2 went
    assert mgr.versions(KEY) == [paths[0], paths[3], paths[4]]
    assert not paths[1].exists() and not paths[1].with_suffix(".json").exists() and not paths[2].exists()
    assert load_checkpoint(paths[0])[1]["i"] == 0
    # asked with the key and exactly the versions about to go, oldest first
    assert asked[-1] == (KEY, [paths[0].stem, paths[2].stem])


def test_retention_deletes_nothing_when_the_protected_versions_are_unknown(tmp_path: Path) -> None:
    def broken(key: str, candidates: Sequence[str]) -> set[str]:
        raise ConnectionError("registry unreachable")

    mgr = CheckpointManager(tmp_path, keep=1, protected=broken)
    paths = [_save(mgr, i) for i in range(3)]
    assert mgr.versions(KEY) == paths


def test_forexd_train_into_a_serving_dir_keeps_the_registered_champion(
    tiny_model: TrainResult, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    serving = tmp_path / "models"
    url = sqlite_url(tmp_path / "forexd.db")
    reg = ModelRegistry(make_engine(url), serving)
    champion = reg.import_artifact(tiny_model.checkpoint)  # EURUSD-1h-h12
    reg.promote(champion.version, "test")
    state, manifest = load_checkpoint(tiny_model.checkpoint)
    unregistered = CheckpointManager(serving, keep=10).save(state, manifest, key="EURUSD-1h-h12")
    assert reg.path_of(champion).stem < unregistered.stem  # the champion is the oldest version
    # the registry is found as `forexd models` finds it: FOREXD_DATABASE_URL
    monkeypatch.setenv("FOREXD_DATABASE_URL", url)
    res = CliRunner().invoke(
        app,
        [
            "train",
            str(HOURLY),
            "--symbol",
            "EURUSD",
            "--timeframe",
            "1h",
            "--horizon",
            "12",
            "--until",
            "2008-06-01",
            "--split",
            "2008-03-01,2008-04-15",
            "--max-steps",
            "4",
            "--window",
            "12",
            "--width",
            "16",
            "--blocks",
            "1",
            "--calib-windows",
            "64",
            "--model-dir",
            str(serving),
            "--device",
            "cpu",
            "--keep",
            "1",
        ],
    )
    assert res.exit_code == 0, res.output
    new = Path(res.output.strip().splitlines()[-1])
    kept = CheckpointManager(serving).versions("EURUSD-1h-h12")
    assert kept == [reg.path_of(champion), new]
    assert not unregistered.exists() and not unregistered.with_suffix(".json").exists()
    assert reg.load(reg.get(champion.version)).version == champion.version  # still loads, hash intact
    assert reg.champion(ModelKey.parse("EURUSD-1h-h12")) == reg.get(champion.version)


def test_forexd_train_stops_before_training_when_the_named_registry_is_missing(tmp_path: Path) -> None:
    res = CliRunner().invoke(
        app,
        [
            "train",
            str(HOURLY),
            "--symbol",
            "EURUSD",
            "--timeframe",
            "1h",
            "--model-dir",
            str(tmp_path / "m"),
            "--db",
            sqlite_url(tmp_path / "nope.db"),
        ],
    )
    assert res.exit_code == 66 and "nope.db does not exist" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "m").exists() and not (tmp_path / "nope.db").exists()
