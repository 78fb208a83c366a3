"""Long form (``-m soak``) of F18 and F19: model artifacts corrupted at rest, and retrain
jobs killed mid-write and mid-promotion, ≥ 20 cycles each, on SQLite and PostgreSQL.

F18: each cycle promotes a good copy of the bundled 1-minute model (the candle agent's model
book swaps it in), then a second copy that is damaged after its promotion, by one of
truncate / flipped byte / pickle-bearing ``.pt`` in place (manifest untouched or rewritten
to match) / manifest removed. The refresh refuses it, the good version keeps serving,
``forexd_model_artifacts_rejected_total`` rises by one, and a registry rollback restores a
champion that verifies.

F19: each cycle runs a real retrain job (tiny config of ``tests/unit/retraining``) in a
child process with the failpoint ``retrain.write`` or ``registry.promote`` armed, in turn;
the child dies with status 137 there. Then the next job (in process, as in test_crash.py)
must promote. After the kill and after the next job: the champion's artifact loads and
verifies, the book serves the registry's champion, and it never tried to load a partial file.
"""

from __future__ import annotations

import os
import random
import statistics
import time
from pathlib import Path

import pytest
import torch

from forex_diffusion.diffusion import load_checkpoint
from forex_diffusion.errors import ArtifactError
from forex_diffusion.storage import make_engine, upsert_candles
from forex_diffusion.storage.model_registry import ModelKey
from retraining.jobs import run_retrain
from retraining.policy import PromotionPolicy
from retraining.registry import STAGING, ModelRegistry
from retraining.runner import run_job
from retraining.serving import ModelBook

from ..unit.retraining.conftest import HORIZON, load_hourly_candles, request, tiny_job
from ..unit.retraining.test_artifact_faults import KEY as KEY_1M
from ..unit.retraining.test_artifact_faults import (
    KINDS,
    REFUSAL,
    candle_agent,
    corrupt,
    promote_copy,
    rejected_total,
)

pytestmark = [pytest.mark.soak]

CYCLES = 20
SEED = 18
KEY = ModelKey(symbol="EURUSD", timeframe="1h", horizon=HORIZON)
#: Every challenger that scores at all is promoted, so each job reaches the promotion.
ALWAYS = PromotionPolicy(min_improvement=-0.99, min_skill_vs_rw=-0.99, coverage90_bounds=(0.0, 1.0), min_windows=1)


def _db(url: str) -> str:
    return "postgresql" if url.startswith("postgresql") else "sqlite"


def _spread(xs: list[float]) -> str:
    return f"median {statistics.median(xs):.2f} s, max {max(xs):.2f} s"


@pytest.mark.timeout(900)
def test_soak_corrupt_champions_are_refused_and_the_previous_keeps_serving(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    engine = make_engine(db_url)
    reg = ModelRegistry(engine, tmp_path / "models")
    agent, metrics = candle_agent(engine, reg.model_dir)
    book = agent.models
    rng = random.Random(SEED)
    kinds: list[str] = []
    while len(kinds) < CYCLES:  # each kind equally often, in a shuffled order
        block = list(KINDS)
        rng.shuffle(block)
        kinds += block
    served: list[str] = []
    refused: list[str] = []
    per_cycle: list[float] = []
    for i, kind in enumerate(kinds[:CYCLES]):
        t0 = time.monotonic()
        good = promote_copy(reg, 2 * i + 1)
        if i == 0:
            book.predictor("EURUSD", "1m")
        assert book.refresh() == {("EURUSD", "1m"): good.version}, f"cycle {i}: {good.version} not swapped in"
        served.append(good.version)
        bad = promote_copy(reg, 2 * i + 2)
        refused.append(bad.version)
        what = corrupt(reg.path_of(bad), kind, rng)
        with pytest.raises(ArtifactError, match=REFUSAL[kind]):
            reg.load(bad)
        assert book.refresh() == {("EURUSD", "1m"): good.version}, f"cycle {i}: {what}"
        assert REFUSAL[kind] in book.rejected[bad.version], (i, what, book.rejected[bad.version])
        assert rejected_total(metrics) == i + 1, (i, what)
        assert reg.rollback(KEY_1M, f"corrupt artifact: {what}").version == good.version
        champion = reg.champion(KEY_1M)
        assert champion is not None and champion.version == good.version and reg.verify(champion)
        assert book.refresh() == {("EURUSD", "1m"): good.version}
        assert rejected_total(metrics) == i + 1
        per_cycle.append(time.monotonic() - t0)
    assert len(set(served)) == CYCLES and set(book.rejected) == set(refused)
    out = capsys.readouterr().out
    assert "pwned" not in out  # no pickle payload ever ran
    with capsys.disabled():
        print(
            f"\nsoak[F18 {_db(db_url)}]: cycles={CYCLES} corruptions="
            f"{ {k: kinds[:CYCLES].count(k) for k in KINDS} } rejected={int(rejected_total(metrics))} "
            f"versions_served={len(set(served))} per cycle {_spread(per_cycle)}"
        )


def _complete(reg: ModelRegistry, book: ModelBook) -> str:
    """The registry points to a complete version and the book serves exactly it; return it."""
    champion = reg.champion(KEY)
    assert champion is not None
    assert reg.verify(champion), champion.version
    _, manifest = load_checkpoint(reg.path_of(champion))
    assert manifest["version"] == champion.version and manifest["sha256"] == champion.sha256
    assert book.refresh() == {("EURUSD", "1h"): champion.version}
    assert book.rejected == {}, book.rejected  # the book never even tried a partial file
    for version, predictor in book._loaded.items():  # whatever it loaded is a registered, whole artifact
        assert predictor.manifest["sha256"] == reg.get(version).sha256
    return champion.version


@pytest.mark.timeout(1500)
def test_soak_retrain_killed_mid_write_and_mid_promotion(db_url: str, tmp_path: Path) -> None:
    torch.set_num_threads(1)
    engine = make_engine(db_url)
    upsert_candles(engine, load_hourly_candles())
    models = tmp_path / "models"
    reg = ModelRegistry(engine, models)
    book = ModelBook(engine, horizon=HORIZON, model_dir=models)
    cfg = tiny_job(policy=ALWAYS)
    env = {k: v for k, v in os.environ.items() if k != "FOREXD_FAILPOINT"}
    first = run_retrain(request("initial"), engine=engine, model_dir=models, config=cfg)
    assert first.status == "promoted", first.reason
    assert book.predictor("EURUSD", "1h").version == first.version
    served = [_complete(reg, book)]
    killed_s: list[float] = []
    next_s: list[float] = []
    cycle_s: list[float] = []
    fired = {"retrain.write": 0, "registry.promote": 0}
    partials = 0
    for i in range(CYCLES):
        point = ("retrain.write", "registry.promote")[i % 2]
        t0 = time.monotonic()
        before = reg.champion(KEY)
        assert before is not None
        rows_before = {v.version for v in reg.list(KEY)}
        files_before = {p.name for p in reg.key_dir(KEY).iterdir()}
        out = run_job(
            request(f"dead-{i}"),
            db_url=db_url,
            model_dir=models,
            config=cfg,
            threads=1,
            timeout_s=300,
            env=dict(env, FOREXD_FAILPOINT=point, FOREXD_LOG_LEVEL="WARNING"),
        )
        killed_s.append(time.monotonic() - t0)
        assert out.status == "failed" and "status 137" in out.reason, (i, point, out.reason)
        fired[point] += 1
        new_rows = {v.version for v in reg.list(KEY)} - rows_before
        new_files = {p.name for p in reg.key_dir(KEY).iterdir()} - files_before
        if point == "retrain.write":  # killed between the two renames: weights without manifest
            assert new_rows == set(), (i, new_rows)
            (partial,) = [reg.key_dir(KEY) / n for n in new_files]
            assert partial.suffix == ".pt" and not partial.with_suffix(".json").exists(), new_files
            with pytest.raises(ArtifactError, match="manifest not found"):
                load_checkpoint(partial)
            partials += 1
        else:  # killed inside the promotion transaction: registered challenger, no alias moved
            (v,) = [reg.get(x) for x in new_rows]
            challenger = reg.challenger(KEY)
            assert v.status == "registered" and challenger is not None and challenger.version == v.version
            assert reg.verify(v)  # published whole before the kill
        after_kill = reg.champion(KEY)
        assert after_kill is not None and after_kill.version == before.version
        assert _complete(reg, book) == before.version

        t1 = time.monotonic()
        nxt = run_retrain(request(f"next-{i}"), engine=engine, model_dir=models, config=cfg)
        next_s.append(time.monotonic() - t1)
        assert nxt.status == "promoted", (i, nxt.reason)
        assert _complete(reg, book) == nxt.version
        served.append(nxt.version)
        live = {Path(v.artifact).name for v in reg.list(KEY, include_deleted=False)}
        assert {p.name for p in reg.key_dir(KEY).glob("*.pt")} == live  # the partial is gone
        assert not any(p.suffix == ".tmp" for p in reg.key_dir(KEY).iterdir())
        assert not (models / STAGING).exists() or not any((models / STAGING).iterdir())
        cycle_s.append(time.monotonic() - t0)
    assert fired == {"retrain.write": CYCLES // 2, "registry.promote": CYCLES - CYCLES // 2}
    print(
        f"\nsoak[F19 {_db(db_url)}]: cycles={CYCLES} kills={fired} partial_artifacts_left={partials} "
        f"book_refusals={len(book.rejected)} versions_served={len(set(served))} killed job {_spread(killed_s)}, "
        f"next job {_spread(next_s)}, per cycle {_spread(cycle_s)}"
    )
