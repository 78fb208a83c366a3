"""F18 through the serving path: a corrupt champion is refused, the previous one keeps serving,
and ``forexd_model_artifacts_rejected_total`` counts it.

The model book is the candle agent's own (:class:`streams.agents.candles.CandleAgent` builds
it and wires its refusals to the worker's :class:`streams.metrics.Metrics`), on a real
registry (SQLite or PostgreSQL) holding copies of the bundled 1-minute model. Each
corruption is applied to the newest champion's files after its promotion (promotion
verifies the artifact, so this is damage or tampering at rest).
"""

from __future__ import annotations

import hashlib
import json
import pickle
import random
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from forex_diffusion.bundled import MODELS
from forex_diffusion.errors import ArtifactError
from forex_diffusion.forecast.forecaster import RandomWalkPredictor
from forex_diffusion.instruments import InstrumentRegistry
from forex_diffusion.storage import make_engine
from forex_diffusion.storage.model_registry import ModelKey, ModelVersion
from retraining.registry import ModelRegistry
from streams.agents.candles import CandleAgent
from streams.app import Runtime
from streams.metrics import Metrics
from streams.settings import Settings

M1 = sorted((MODELS / "EURUSD-1m-h24").glob("*.pt"))[-1]
KEY = ModelKey(symbol="EURUSD", timeframe="1m", horizon=24)
REJECTED = "forexd_model_artifacts_rejected_total"

#: Corruptions of F18, and the loader's refusal each must meet.
REFUSAL = {
    "truncate": "sha256 mismatch",
    "flip": "sha256 mismatch",
    "pickle": "sha256 mismatch",  # a pickle-bearing .pt dropped in place, manifest untouched
    "pickle_rehashed": "weights-only",  # ... and the manifest's sha256 rewritten to match it
    "manifest_removed": "manifest not found",
}
KINDS = tuple(REFUSAL)


class _Evil:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (print, ("pwned",))


def corrupt(pt: Path, kind: str, rng: random.Random) -> str:
    """Damage the checkpoint ``pt`` (and its manifest) as ``kind`` says; return what was done."""
    raw = pt.read_bytes()
    if kind == "truncate":
        keep = rng.randrange(0, len(raw))
        pt.write_bytes(raw[:keep])
        return f"truncated to {keep} of {len(raw)} bytes"
    if kind == "flip":
        at, mask = rng.randrange(len(raw)), rng.randrange(1, 256)
        data = bytearray(raw)
        data[at] ^= mask
        pt.write_bytes(bytes(data))
        return f"byte {at} xor {mask:#04x}"
    if kind in ("pickle", "pickle_rehashed"):
        state = torch.load(pt, map_location="cpu", weights_only=True)
        state["evil"] = _Evil()
        torch.save(state, pt, pickle_module=pickle)
        if kind == "pickle_rehashed":
            js = pt.with_suffix(".json")
            manifest = json.loads(js.read_text())
            manifest["sha256"] = hashlib.sha256(pt.read_bytes()).hexdigest()
            js.write_text(json.dumps(manifest))
        return kind
    if kind == "manifest_removed":
        pt.with_suffix(".json").unlink()
        return kind
    raise ValueError(kind)


def version_name(i: int) -> str:
    """A registry-style version (``YYYYmmddTHHMMSSffffffZ-hash``) that sorts with ``i``."""
    return f"20260101T000000{i:06d}Z-{hashlib.sha256(M1.read_bytes()).hexdigest()[:8]}"


def stage_version(src: Path, dest: Path, version: str) -> Path:
    """Copy ``src`` and its manifest to ``dest/<version>.pt`` (the manifest renamed to ``version``)."""
    dest.mkdir(parents=True, exist_ok=True)
    pt = dest / f"{version}.pt"
    shutil.copyfile(src, pt)
    manifest = json.loads(src.with_suffix(".json").read_text())
    manifest["version"], manifest["file"] = version, pt.name
    pt.with_suffix(".json").write_text(json.dumps(manifest))
    return pt


def promote_copy(reg: ModelRegistry, i: int) -> ModelVersion:
    """Publish, register and promote a copy of the bundled model as version ``i``."""
    staged = stage_version(M1, reg.model_dir / ".staging" / "test", version_name(i))
    v = reg.register(reg.publish(staged, KEY), key=KEY, metrics={})
    return reg.promote(v.version, f"test {i}")


def candle_agent(engine: object, models: Path) -> tuple[CandleAgent, Metrics]:
    """The candle agent of a worker on EURUSD/1m, horizon 24, with its metrics."""
    s = Settings(symbols=("EURUSD",), timeframes=("1m",), data_dir=models.parent, model_dir=models, status_interval_s=0)
    metrics = Metrics(s.symbols, timeframes=s.timeframes)
    rt = Runtime(
        settings=s,
        app=SimpleNamespace(consumer=None),
        topics={},
        instruments=InstrumentRegistry.of(s.symbols),
        engine=engine,
        metrics=metrics,
    )
    return CandleAgent(rt), metrics


def rejected_total(metrics: Metrics) -> float:
    value = metrics.registry.get_sample_value(REJECTED)
    assert value is not None, f"{REJECTED} is not exported"
    return value


@pytest.mark.parametrize("kind", KINDS)
def test_corrupt_champion_is_refused_previous_keeps_serving_and_alert_counts(
    kind: str, db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    engine = make_engine(db_url)
    models = tmp_path / "models"
    reg = ModelRegistry(engine, models)
    agent, metrics = candle_agent(engine, models)
    book = agent.models
    a = promote_copy(reg, 1)
    assert book.predictor("EURUSD", "1m").version == a.version
    assert rejected_total(metrics) == 0

    b = promote_copy(reg, 2)  # verified at promotion, damaged afterwards
    done = corrupt(reg.path_of(b), kind, random.Random(kind))
    assert not reg.verify(b)
    with pytest.raises(ArtifactError, match=REFUSAL[kind]):
        reg.load(b)

    assert book.refresh() == {("EURUSD", "1m"): a.version}, done  # the previous version keeps serving
    assert rejected_total(metrics) == 1
    assert set(book.rejected) == {b.version} and REFUSAL[kind] in book.rejected[b.version]
    assert book.refresh() == {("EURUSD", "1m"): a.version}
    assert rejected_total(metrics) == 1  # an artifact is counted once, not once per refresh
    assert "pwned" not in capsys.readouterr().out  # nothing in the pickle ran

    c = promote_copy(reg, 3)  # the next good champion is swapped in
    assert book.refresh() == {("EURUSD", "1m"): c.version}
    assert rejected_total(metrics) == 1


def test_a_version_the_registry_knows_serves_only_as_champion(db_url: str, tmp_path: Path) -> None:
    """With no champion the book serves the newest file of the key directory (a bundled
    model), but never a version the registry holds unpromoted: a challenger left by a job
    killed inside its promotion (F19), or one the policy rejected."""
    engine = make_engine(db_url)
    models = tmp_path / "models"
    reg = ModelRegistry(engine, models)
    staged = stage_version(M1, models / ".staging" / "test", version_name(5))
    challenger = reg.register(reg.publish(staged, KEY), key=KEY, metrics={}, challenger=True)
    agent, metrics = candle_agent(engine, models)
    assert isinstance(agent.models.predictor("EURUSD", "1m"), RandomWalkPredictor)
    reg.reject(challenger.version, "not better")
    agent.models.refresh()
    assert isinstance(agent.models.predictor("EURUSD", "1m"), RandomWalkPredictor)
    bundled = stage_version(M1, reg.key_dir(KEY), version_name(1))  # older, unregistered: a bundled model
    agent, _ = candle_agent(engine, models)
    assert agent.models.predictor("EURUSD", "1m").version == bundled.stem
    reg.promote(reg.register(bundled, key=KEY, metrics={}).version, "registered the bundled model")
    assert agent.models.refresh() == {("EURUSD", "1m"): bundled.stem}
    assert rejected_total(metrics) == 0
