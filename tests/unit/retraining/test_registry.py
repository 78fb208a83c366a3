"""Model registry on SQLite and PostgreSQL: promotion, rollback, history, retention, artifact checks."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from forex_diffusion.diffusion import TrainResult, load_checkpoint
from forex_diffusion.errors import ArtifactError, RegistryError
from forex_diffusion.storage import make_engine, upsert_forecasts
from forex_diffusion.storage.model_registry import ModelKey, ModelVersion
from retraining.registry import ModelRegistry, select_retained

from .conftest import HORIZON, ms, stage_copy

KEY = ModelKey(symbol="EURUSD", timeframe="1h", horizon=HORIZON)
T0 = ms(2016, 7, 1)


def make_registry(url: str, root: Path) -> ModelRegistry:
    ticks = itertools.count()
    return ModelRegistry(make_engine(url), root, clock=lambda: T0 + 1000 * next(ticks))


def add_versions(reg: ModelRegistry, tiny: TrainResult, n: int, key: ModelKey = KEY) -> list[ModelVersion]:
    out = []
    for i in range(n):
        staged = stage_copy(tiny, reg.model_dir / ".staging" / "test", f"v{i:02d}")
        final = reg.publish(staged, key)
        out.append(reg.register(final, key=key, metrics={"i": i}, request_id=f"req{i}"))
    return out


def assert_aliases_load(reg: ModelRegistry, key: ModelKey, *, challenger: bool = True) -> None:
    """No alias points at a missing, corrupt or deleted version."""
    for v in (reg.champion(key), reg.challenger(key) if challenger else None):
        if v is not None:
            assert v.status != "deleted"
            assert reg.verify(v), v.version


def test_promote_then_rollback_restores_previous_champion_and_records_history(
    db_url: str, tmp_path: Path, tiny_checkpoint: TrainResult
) -> None:
    reg = make_registry(db_url, tmp_path / "models")
    v = add_versions(reg, tiny_checkpoint, 3)
    assert reg.challenger(KEY).version == "v02" and reg.champion(KEY) is None
    for x in v:
        reg.promote(x.version, f"test {x.version}")
    assert reg.champion(KEY).version == "v02" and reg.challenger(KEY) is None
    assert reg.promote("v02", "again").version == "v02"  # idempotent, no new history row
    assert reg.previous_champion(KEY).version == "v01"

    restored = reg.rollback(KEY, "bad live scores")
    assert restored.version == "v01" and reg.champion(KEY).version == "v01"
    assert reg.get("v02").status == "rolled_back"
    # a second rollback skips the rolled-back version and restores the one before
    assert reg.rollback(KEY).version == "v00"
    with pytest.raises(RegistryError, match="no previous champion"):
        reg.rollback(KEY)
    assert reg.champion(KEY).version == "v00"

    champ_hist = [(h.version, h.to_ms is None) for h in reg.history(KEY) if h.alias == "champion"]
    assert champ_hist == [("v00", False), ("v01", False), ("v02", False), ("v01", False), ("v00", True)]
    reasons = [h.reason for h in reg.history(KEY) if h.alias == "champion"]
    assert reasons[3] == "rollback: bad live scores"
    hist = reg.history(KEY)
    assert all(a.from_ms <= (a.to_ms if a.to_ms is not None else a.from_ms) for a in hist)
    assert_aliases_load(reg, KEY)


def test_retention_keeps_champion_previous_challenger_audited_and_last_k(
    db_url: str, tmp_path: Path, tiny_checkpoint: TrainResult
) -> None:
    reg = make_registry(db_url, tmp_path / "models")
    v = add_versions(reg, tiny_checkpoint, 10)
    reg.promote("v02", "first")
    reg.promote("v05", "second")  # champion v05, previous v02; challenger = last registered v09
    now = reg._clock()
    upsert_forecasts(
        reg.engine,
        [
            {
                "symbol": "EURUSD",
                "timeframe": "1h",
                "as_of_ms": now - 3_600_000,
                "horizon": HORIZON,
                "model_version": "v03",
            },  # inside the audit window
            {
                "symbol": "EURUSD",
                "timeframe": "1h",
                "as_of_ms": now - 30 * 86_400_000,
                "horizon": HORIZON,
                "model_version": "v04",
            },  # outside it
        ],
    )
    result = reg.apply_retention(KEY, keep_last=2, audit_window_ms=86_400_000)
    kept = {"v02", "v03", "v05", "v08", "v09"}
    assert set(result.kept) == kept
    assert set(result.deleted) == {"v00", "v01", "v04", "v06", "v07"}
    for x in reg.list(KEY):
        pt = reg.path_of(x)
        if x.version in kept:
            assert x.status != "deleted" and load_checkpoint(pt)[1]["version"] == x.version
        else:
            assert x.status == "deleted" and not pt.exists() and not pt.with_suffix(".json").exists()
    assert sorted(p.stem for p in reg.key_dir(KEY).glob("*.pt")) == sorted(kept)
    # idempotent: nothing more to delete; a deleted version cannot be promoted
    assert reg.apply_retention(KEY, keep_last=2, audit_window_ms=86_400_000).deleted == ()
    with pytest.raises(RegistryError, match="deleted"):
        reg.promote("v00", "resurrect")
    assert_aliases_load(reg, KEY)
    assert len(v) == 10


def test_select_retained_is_pure_and_never_returns_deleted_versions() -> None:
    vs = [
        ModelVersion(
            version=f"v{i}",
            key=KEY,
            artifact="x",
            sha256="s",
            config_hash="c",
            created_ms=i,
            status="deleted" if i == 4 else "registered",
        )
        for i in range(6)
    ]
    keep = select_retained(vs, champion="v0", previous=None, challenger="v4", referenced=["v1", "zz"], keep_last=2)
    assert keep == {"v0", "v1", "v3", "v5"}
    assert select_retained(vs, champion=None, previous=None, challenger=None, referenced=(), keep_last=0) == set()


def test_corrupt_or_missing_artifact_is_never_promoted_or_restored(
    db_url: str, tmp_path: Path, tiny_checkpoint: TrainResult
) -> None:
    reg = make_registry(db_url, tmp_path / "models")
    add_versions(reg, tiny_checkpoint, 3)
    reg.promote("v00", "first")
    reg.promote("v01", "second")
    # F18: a flipped byte in a registered artifact
    pt = reg.path_of(reg.get("v02"))
    data = bytearray(pt.read_bytes())
    data[len(data) // 2] ^= 0xFF
    pt.write_bytes(bytes(data))
    with pytest.raises(RegistryError, match="does not load"):
        reg.promote("v02", "corrupt")
    with pytest.raises(ArtifactError):
        reg.load(reg.get("v02"))
    assert reg.champion(KEY).version == "v01"
    # the previous champion's file vanished: rollback refuses, champion unchanged
    reg.path_of(reg.get("v00")).unlink()
    with pytest.raises(RegistryError, match="does not load"):
        reg.rollback(KEY)
    assert reg.champion(KEY).version == "v01" and reg.get("v01").status == "promoted"
    with pytest.raises(RegistryError, match="unknown version"):
        reg.promote("nope", "x")
    assert_aliases_load(reg, KEY, challenger=False)  # the challenger v02 was corrupted on purpose


def test_wildcard_champion_serves_symbols_without_their_own(
    db_url: str, tmp_path: Path, tiny_checkpoint: TrainResult
) -> None:
    reg = make_registry(db_url, tmp_path / "models")
    star = ModelKey.parse("*/1h/12")
    (w,) = add_versions(reg, tiny_checkpoint, 1, key=star)
    reg.promote(w.version, "shared model")
    assert reg.path_of(w).parent.name == "ANY-1h-h12"
    assert reg.resolve_champion("GBPUSD", "1h", 12).version == w.version
    assert reg.resolve_champion("GBPUSD", "1h", 24) is None
    staged = stage_copy(tiny_checkpoint, tmp_path / "s", "own")
    own = reg.register(reg.publish(staged, KEY), key=KEY, metrics={})
    reg.promote(own.version, "own")
    assert reg.resolve_champion("EURUSD", "1h", 12).version == "own"
    assert reg.resolve_champion("USDJPY", "1h", 12).version == w.version


def test_recover_removes_staging_temp_and_unregistered_files_only(
    db_url: str, tmp_path: Path, tiny_checkpoint: TrainResult
) -> None:
    reg = make_registry(db_url, tmp_path / "models")
    (kept,) = add_versions(reg, tiny_checkpoint, 1)
    stage = reg.staging_dir(KEY, "dead-job")
    (stage / "half.tmp").write_bytes(b"x")
    orphan = stage_copy(tiny_checkpoint, reg.key_dir(KEY), "orphan")  # complete but never registered
    half = reg.key_dir(KEY) / "half.pt"  # weights without manifest (killed mid-write)
    half.write_bytes(b"partial")
    (reg.key_dir(KEY) / "x.json.tmp").write_text("{")
    other = reg.staging_dir(ModelKey.parse("GBPUSD/1h/12"), "other-job")
    removed = {p.name for p in reg.recover(KEY)}
    assert removed == {stage.name, "orphan.pt", "orphan.json", "half.pt", "x.json.tmp"}
    assert not orphan.exists() and not stage.exists() and other.exists()
    assert reg.verify(kept) and sorted(p.name for p in reg.key_dir(KEY).iterdir()) == ["v00.json", "v00.pt"]
