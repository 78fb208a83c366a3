"""A register that failed after its copy (the database went away between ``publish`` and the
row) leaves ``<version>.pt`` for ``recover()``; running the same register again once the
database is back publishes the same bytes again and registers (adversarial review: it was
refused, "already exists", and only a retrain job of the key or a hand-deleted file unblocked
it). Other bytes under that name are still never replaced."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import sqlalchemy.exc

from forex_diffusion.errors import ArtifactError
from forex_diffusion.storage import make_engine
from retraining.registry import ModelRegistry

from .test_global_routing import fake_model


def _down(*_a: object, **_k: object) -> None:
    raise sqlalchemy.exc.OperationalError("INSERT", {}, Exception("server closed the connection unexpectedly"))


def test_the_same_register_run_again_after_the_database_came_back_succeeds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = fake_model(tmp_path / "src", None, "v-retry")
    reg = ModelRegistry(make_engine(f"sqlite:///{tmp_path / 'r.db'}"), tmp_path / "models")
    with monkeypatch.context() as m:
        m.setattr(ModelRegistry, "register", _down)
        m.setattr("retraining.registry.store.row_names", _down)
        with pytest.raises(sqlalchemy.exc.OperationalError):
            reg.import_artifact(src)
    assert [p.name for p in (tmp_path / "models").rglob("*.pt")] == ["v-retry.pt"]  # left for recover()
    v = reg.import_artifact(src)
    assert v.version == "v-retry" and reg.verify(v)


def test_other_bytes_under_the_name_are_still_refused(tmp_path: Path) -> None:
    src = fake_model(tmp_path / "src", None, "v-one")
    reg = ModelRegistry(make_engine(f"sqlite:///{tmp_path / 'r.db'}"), tmp_path / "models")
    v = reg.import_artifact(src)
    stage = reg.staging_dir(v.key, "other")
    shutil.copyfile(src.with_suffix(".json"), stage / "v-one.json")
    (stage / "v-one.pt").write_bytes(src.read_bytes() + b"other")
    with pytest.raises(ArtifactError, match="other contents"):
        reg.publish(stage / "v-one.pt", v.key)
    assert reg.verify(v)
