"""``forexd models register`` of two versions whose files share a name (both ``model.pt``, as
two runs of ``forexd train -o`` in two folders write them).

The copy was published under the file's own name: the second register renamed its weights
over the first version's, the champion no longer matched its recorded sha256 and no worker
could load it, while ``forexd models promote`` of that champion still said "promoted" (a
champion promoted again was returned before its artifact was verified). Now a copy is named
by its version, publishing never replaces other bytes, and promoting the champion again verifies
it (publishing over other bytes: ``test_register_retry.py``).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from forex_diffusion.errors import RegistryError
from forex_diffusion.storage import make_engine
from retraining.registry import ModelRegistry
from streams.cli import app

from .test_global_routing import fake_model


def _as_model_pt(root: Path, version: str, *, bump: float) -> Path:
    """The bundled model as ``root/<version>/model.pt`` with its manifest, one weight moved by
    ``bump`` (a different network: a different sha256)."""
    src = fake_model(root / "src", None, version)
    d = root / version
    d.mkdir(parents=True)
    if bump:
        sd = torch.load(src, map_location="cpu", weights_only=True)
        name = next(k for k, v in sd.items() if v.is_floating_point() and v.numel() > 1)
        sd[name] = sd[name] + bump
        torch.save(sd, d / "model.pt")
    else:
        shutil.copyfile(src, d / "model.pt")
    manifest = json.loads(src.with_suffix(".json").read_text())
    manifest["sha256"] = hashlib.sha256((d / "model.pt").read_bytes()).hexdigest()  # the loader checks it
    (d / "model.json").write_text(json.dumps(manifest))
    return d / "model.pt"


def test_two_versions_called_model_pt_stay_two_loadable_artifacts(tmp_path: Path) -> None:
    reg = ModelRegistry(make_engine(f"sqlite:///{tmp_path / 'r.db'}"), tmp_path / "models")
    a = reg.import_artifact(_as_model_pt(tmp_path, "v-run-a", bump=0.0))
    reg.promote(a.version, "test")
    b = reg.import_artifact(_as_model_pt(tmp_path, "v-run-b", bump=0.5))
    assert a.sha256 != b.sha256
    assert reg.verify(a) and reg.verify(b)  # before: a's weights were b's
    assert {p.name for p in (tmp_path / "models" / a.key.dir_name).iterdir()} == {
        "v-run-a.pt",
        "v-run-a.json",
        "v-run-b.pt",
        "v-run-b.json",
    }
    assert reg.load(a).version == "v-run-a"


def test_promoting_a_champion_whose_file_was_damaged_is_refused(tmp_path: Path) -> None:
    db, models = tmp_path / "r.db", tmp_path / "models"
    reg = ModelRegistry(make_engine(f"sqlite:///{db}"), models)
    a = reg.import_artifact(fake_model(tmp_path / "src", None, "v-champ"))
    reg.promote(a.version, "test")
    reg.promote(a.version, "again")  # intact: promoting it again changes nothing
    with (models / a.artifact).open("r+b") as f:
        f.seek(100)
        f.write(b"\x00" * 16)
    with pytest.raises(RegistryError):
        reg.promote(a.version, "again")
    r = CliRunner().invoke(app, ["models", "promote", a.version, "--db", f"sqlite:///{db}", "--model-dir", str(models)])
    assert r.exit_code != 0
    assert "promoted" not in r.stdout
    assert "Traceback" not in r.output
