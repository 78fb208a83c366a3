"""Checkpoints: verified weights-only loading, retention, refusal of tampered files."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch

from forex_diffusion.diffusion import CheckpointManager, Predictor, TrainResult, load_checkpoint
from forex_diffusion.diffusion.checkpoint import _sha256
from forex_diffusion.errors import ArtifactError


def _copy(result: TrainResult, dest: Path) -> Path:
    pt = dest / result.checkpoint.name
    pt.write_bytes(result.checkpoint.read_bytes())
    pt.with_suffix(".json").write_text(result.checkpoint.with_suffix(".json").read_text())
    return pt


def test_round_trip_restores_every_tensor(tiny_model: TrainResult) -> None:
    state, manifest = load_checkpoint(tiny_model.checkpoint)
    assert manifest["version"] == tiny_model.version
    p = Predictor.load(tiny_model.checkpoint.with_suffix(".json"))
    for k, v in p.model.state_dict().items():
        assert torch.equal(v, state[k])


def test_corrupted_byte_is_refused_with_hash_error(tiny_model: TrainResult, tmp_path: Path) -> None:
    pt = _copy(tiny_model, tmp_path)
    raw = bytearray(pt.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    pt.write_bytes(bytes(raw))
    with pytest.raises(ArtifactError, match="sha256 mismatch"):
        Predictor.load(pt)


class _Evil:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (print, ("pwned",))


def test_pickle_bearing_checkpoint_is_refused_even_with_matching_hash(
    tiny_model: TrainResult, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pt = _copy(tiny_model, tmp_path)
    state = torch.load(pt, weights_only=True)
    state["evil"] = _Evil()  # type: ignore[assignment]
    torch.save(state, pt, pickle_module=pickle)
    manifest = json.loads(pt.with_suffix(".json").read_text())
    manifest["sha256"] = _sha256(pt)  # an attacker who also rewrote the manifest
    pt.with_suffix(".json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="weights-only"):
        Predictor.load(pt)
    assert "pwned" not in capsys.readouterr().out


def test_missing_manifest_and_truncated_file_are_refused(tiny_model: TrainResult, tmp_path: Path) -> None:
    pt = _copy(tiny_model, tmp_path)
    pt.with_suffix(".json").unlink()
    with pytest.raises(ArtifactError, match="manifest not found"):
        Predictor.load(pt)
    pt2 = _copy(tiny_model, tmp_path / ".." / tmp_path.name)
    pt2.write_bytes(pt2.read_bytes()[:100])
    with pytest.raises(ArtifactError):
        Predictor.load(pt2)


def test_manager_keeps_the_last_k_versions(tmp_path: Path) -> None:
    mgr = CheckpointManager(tmp_path, keep=2)
    paths = [mgr.save({"w": torch.full((2,), float(i))}, {"i": i}, key="EURUSD-1h-h24") for i in range(4)]
    kept = mgr.versions("EURUSD-1h-h24")
    assert kept == paths[2:]
    assert not paths[0].exists() and not paths[0].with_suffix(".json").exists()
    state, manifest = load_checkpoint(tmp_path / "EURUSD-1h-h24")  # key dir → newest
    assert manifest["i"] == 3 and state["w"].tolist() == [3.0, 3.0]
