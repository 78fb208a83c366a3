"""``ModelRegistry.import_artifact`` (``forexd models register``) of a checkpoint whose
manifest was written by someone hostile: refused before anything is copied or recorded."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from forex_diffusion.errors import ArtifactError, RegistryError
from forex_diffusion.storage import make_engine
from forex_diffusion.storage import model_registry as store
from retraining.registry import ModelRegistry

from .test_global_routing import fake_model

_DELETE = object()


def _edited(root: Path, field: str, value: Any) -> Path:
    pt: Path = fake_model(root, None, "v-import")
    js = pt.with_suffix(".json")
    manifest = json.loads(js.read_text())
    if value is _DELETE:
        del manifest[field]
    else:
        manifest[field] = value
    text = json.dumps(manifest)
    if isinstance(value, str) and value.isdigit():  # a number too long for Python's int(): write it as such
        text = text.replace(json.dumps(value), value)
    js.write_text(text)
    return pt


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("version", "../../etc", RegistryError),  # was refused only by the staging directory name check
        ("version", None, ArtifactError),  # was: registered as version 'None'; the loader refuses it now
        ("version", "a b", ArtifactError),  # fx.forecasts and fx.models refuse a version with a space
        ("version", "v" * 65, RegistryError),
        ("horizon", "x", ArtifactError),  # was: ValueError traceback from int()
        ("horizon", 12, ArtifactError),  # a key of the wrong horizon for the network
        ("symbols", 5, ArtifactError),  # was: copied into the model directory, then refused
        ("symbol", _DELETE, RegistryError),  # was: registered under the key NONE/1m/24
        ("timeframe", 5, ArtifactError),  # the inputs name their timeframe
        ("metrics", None, RegistryError),  # was: TypeError traceback after the copy
        ("metrics", [1], RegistryError),
        ("data_window", [1], RegistryError),  # was: AttributeError traceback after the copy
        ("extra_dim", "9" * 5000, ArtifactError),  # written as a number: ValueError from json (over 4,300 digits)
    ],
)
def test_a_hostile_manifest_is_refused_before_any_copy(
    tmp_path: Path, field: str, value: Any, error: type[Exception]
) -> None:
    eng = make_engine(f"sqlite:///{tmp_path / 'r.db'}")
    reg = ModelRegistry(eng, tmp_path / "models")
    with pytest.raises(error):
        reg.import_artifact(_edited(tmp_path / "src", field, value))
    assert not [p for p in (tmp_path / "models").rglob("*") if p.is_file()]
    assert store.list_versions(eng) == []


def test_a_manifest_without_horizon_takes_the_networks(tmp_path: Path) -> None:
    eng = make_engine(f"sqlite:///{tmp_path / 'r.db'}")
    v = ModelRegistry(eng, tmp_path / "models").import_artifact(_edited(tmp_path / "src", "horizon", _DELETE))
    assert v.key.horizon == 24 and v.version == "v-import"


def test_data_window_bounds_that_are_no_times_are_stored_as_unknown(tmp_path: Path) -> None:
    eng = make_engine(f"sqlite:///{tmp_path / 'r.db'}")
    pt = _edited(tmp_path / "src", "data_window", {"first_close_ms": "x", "last_close_ms": 10**30})
    v = ModelRegistry(eng, tmp_path / "models").import_artifact(pt)
    assert (v.data_first_ms, v.data_last_ms) == (None, None)


def test_register_with_a_key_takes_the_networks_horizon(tmp_path: Path) -> None:
    """``--key`` is checked against the network: a manifest without ``horizon`` was refused
    as forecasting 'None steps'."""
    from typer.testing import CliRunner

    from streams.cli import app

    pt = _edited(tmp_path / "src", "horizon", _DELETE)
    db = f"sqlite:///{tmp_path / 'r.db'}"
    args = ["models", "register", str(pt), "--db", db, "--model-dir", str(tmp_path / "models")]
    res = CliRunner().invoke(app, [*args, "--key", "*/1m/24"])
    assert res.exit_code == 0 and "registered v-import for */1m/24" in res.output, res.output
    res = CliRunner().invoke(app, [*args, "--key", "*/1m/12"])
    assert res.exit_code == 2 and "it forecasts 24 steps of 1m candles" in res.output, res.output
