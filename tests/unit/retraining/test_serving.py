"""The model book: champion from the registry, hot swap on refresh, a bad artifact never replaces a good one."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from forex_diffusion.bundled import MODELS
from forex_diffusion.forecast.forecaster import RandomWalkPredictor
from forex_diffusion.storage import make_engine
from forex_diffusion.storage.model_registry import ModelKey
from retraining.registry import ModelRegistry
from retraining.serving import ModelBook

M1 = sorted((MODELS / "EURUSD-1m-h24").glob("*.pt"))[-1]
H1 = sorted((MODELS / "EURUSD-1h-h24").glob("*.pt"))[-1]
KEY = ModelKey(symbol="EURUSD", timeframe="1m", horizon=24)


def test_champion_is_served_swapped_on_refresh_and_a_corrupt_one_is_refused(db_url: str, tmp_path: Path) -> None:
    eng = make_engine(db_url)
    models = tmp_path / "models"
    reg = ModelRegistry(eng, models)
    rejected: list[str] = []
    book = ModelBook(eng, horizon=24, model_dir=models, on_rejected=lambda v, e: rejected.append(v))
    assert isinstance(book.predictor("EURUSD", "1m"), RandomWalkPredictor)  # nothing registered yet

    a = reg.import_artifact(M1)
    reg.promote(a.version, "first champion")
    book.refresh()
    assert book.predictor("EURUSD", "1m").version == a.version

    b = reg.import_artifact(H1, key=KEY)
    reg.promote(b.version, "second champion")
    # the artifact is damaged after promotion, before the forecaster loads it
    path = reg.path_of(reg.get(b.version))
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    book.refresh()
    assert book.predictor("EURUSD", "1m").version == a.version  # the previous model keeps serving
    assert rejected == [b.version]

    # a rollback through the registry is picked up on the next refresh
    reg.rollback(KEY, reason="operator")
    assert book.refresh()[("EURUSD", "1m")] == a.version


def test_newest_checkpoint_in_model_dir_serves_without_a_registry(tmp_path: Path) -> None:
    models = tmp_path / "models" / "EURUSD-1m-h24"
    models.mkdir(parents=True)
    shutil.copy(M1, models / M1.name)
    shutil.copy(M1.with_suffix(".json"), models / M1.with_suffix(".json").name)
    book = ModelBook(None, horizon=24, model_dir=tmp_path / "models")
    assert book.predictor("EURUSD", "1m").version == M1.stem


@pytest.mark.parametrize("payload", [b"not a checkpoint", b"\x80\x04\x95" + b"\x00" * 64])
def test_unreadable_checkpoint_in_model_dir_falls_back_to_the_random_walk(tmp_path: Path, payload: bytes) -> None:
    models = tmp_path / "models" / "EURUSD-1m-h24"
    models.mkdir(parents=True)
    (models / "20260101T000000000000Z-deadbeef.pt").write_bytes(payload)
    book = ModelBook(None, horizon=24, model_dir=tmp_path / "models")
    assert isinstance(book.predictor("EURUSD", "1m"), RandomWalkPredictor)
    assert "20260101T000000000000Z-deadbeef" in book.rejected


def test_a_file_whose_registry_row_cannot_be_read_never_serves_as_a_found_checkpoint(
    db_url: str, tmp_path: Path
) -> None:
    """A rejected version whose row was damaged (a status no version has) dropped out of
    ``registry.list``, so the model book took its file for an unregistered checkpoint and
    served it (the hostile-registry review). Every row's names count, readable or not."""
    from sqlalchemy import text

    eng = make_engine(db_url)
    models = tmp_path / "models"
    reg = ModelRegistry(eng, models)
    v = reg.import_artifact(M1)
    reg.reject(v.version, "worse than the champion")
    book = ModelBook(eng, horizon=24, model_dir=models)
    assert isinstance(book.predictor("EURUSD", "1m"), RandomWalkPredictor)  # rejected: never a found file
    with eng.begin() as conn:
        conn.execute(text("UPDATE model_versions SET status = 'bogus' WHERE version = :v"), {"v": v.version})
    assert v.version not in {x.version for x in reg.list(KEY)}  # the row no longer reads
    book = ModelBook(eng, horizon=24, model_dir=models)
    assert isinstance(book.predictor("EURUSD", "1m"), RandomWalkPredictor)
