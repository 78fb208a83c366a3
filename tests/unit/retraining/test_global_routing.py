"""Routing with global models: a per-series model beats a global one, a global model serves only its set."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from forex_diffusion.bundled import MODELS
from forex_diffusion.forecast.forecaster import RandomWalkPredictor
from forex_diffusion.instruments import symbol_set_key
from forex_diffusion.storage import make_engine
from forex_diffusion.storage.model_registry import ModelKey
from retraining.registry import ModelRegistry
from retraining.serving import ModelBook
from streams.cli import app

M1 = sorted((MODELS / "EURUSD-1m-h24").glob("*.pt"))[-1]


def fake_model(root: Path, symbols: list[str] | None, version: str, *, symbol: str = "EURUSD") -> Path:
    """The bundled 1m model re-labelled: a global model over ``symbols`` (None: per-series ``symbol``)."""
    manifest = json.loads(M1.with_suffix(".json").read_text())
    if symbols is not None:
        symbol = symbol_set_key(symbols)
        manifest.update(symbols=sorted(symbols), series=sorted(symbols), series_embedding=0)
    key = ModelKey(symbol=symbol, timeframe="1m", horizon=24)
    d = root / key.dir_name
    d.mkdir(parents=True, exist_ok=True)
    manifest.update(symbol=symbol, key=key.dir_name, version=version, file=f"{version}.pt")
    shutil.copy(M1, d / f"{version}.pt")
    (d / f"{version}.json").write_text(json.dumps(manifest))
    return d / f"{version}.pt"


def test_symbol_set_key_is_a_short_safe_directory_name() -> None:
    key = ModelKey.for_symbols(["gbpusd", "EURUSD", "../x"], "1h", 24)
    assert key.is_symbol_set and len(key.dir_name) <= 24
    assert "/" not in key.dir_name and ".." not in key.dir_name
    assert ModelKey.parse(key.dir_name) == key == ModelKey.parse(str(key))
    assert key != ModelKey.for_symbols(["EURUSD", "GBPUSD"], "1h", 24)
    assert not ModelKey(symbol="EURUSD", timeframe="1h", horizon=24).is_symbol_set
    assert not ModelKey(symbol="*", timeframe="1h", horizon=24).is_symbol_set


def test_registry_routes_per_series_then_smallest_global_then_star(db_url: str, tmp_path: Path) -> None:
    eng = make_engine(db_url)
    models = tmp_path / "models"
    reg = ModelRegistry(eng, models)
    src = tmp_path / "src"
    book = ModelBook(eng, horizon=24, model_dir=models)

    big = reg.import_artifact(fake_model(src, ["EURUSD", "GBPUSD", "USDJPY"], "v-big"))
    reg.promote(big.version, "test")
    assert big.key.is_symbol_set and big.metrics["symbols"] == ["EURUSD", "GBPUSD", "USDJPY"]
    book.refresh()
    assert book.predictor("EURUSD", "1m").version == "v-big"
    assert book.predictor("USDJPY", "1m").version == "v-big"
    assert isinstance(book.predictor("AUDUSD", "1m"), RandomWalkPredictor)  # not in its set
    assert isinstance(book.predictor("EURUSD", "1h"), RandomWalkPredictor)  # other timeframe

    small = reg.import_artifact(fake_model(src, ["EURUSD", "GBPUSD"], "v-small"))
    reg.promote(small.version, "test")
    own = reg.import_artifact(fake_model(src, None, "v-own"))
    reg.promote(own.version, "test")
    star = reg.import_artifact(fake_model(src, None, "v-star"), key=ModelKey.parse("*/1m/24"))
    reg.promote(star.version, "test")
    served = book.refresh()
    assert served[("EURUSD", "1m")] == "v-own"  # the per-series model overrides the global ones
    assert served[("USDJPY", "1m")] == "v-big"
    assert served[("AUDUSD", "1m")] == "v-star"  # no global model covers it
    assert book.predictor("GBPUSD", "1m").version == "v-small"  # the smallest covering set
    assert reg.resolve_champion("GBPUSD", "1m", 24).version == "v-small"  # type: ignore[union-attr]
    # `forexd models list` names a global key's symbols
    res = CliRunner().invoke(app, ["models", "list", "--db", db_url, "--model-dir", str(models)])
    assert res.exit_code == 0, res.output
    small_row = next(line for line in res.output.splitlines() if line.startswith("v-small"))
    assert f"{small.key}" in small_row and small_row.endswith("symbols=EURUSD,GBPUSD")
    assert "symbols=" not in next(line for line in res.output.splitlines() if line.startswith("v-own"))


def test_model_dir_files_route_like_the_registry(tmp_path: Path) -> None:
    models = tmp_path / "models"
    fake_model(models, ["EURUSD", "GBPUSD", "USDJPY"], "20260101T000000000000Z-bbbbbbbb")
    fake_model(models, ["EURUSD", "GBPUSD"], "20260101T000000000000Z-aaaaaaaa")
    fake_model(models, None, "20260101T000000000000Z-cccccccc")
    book = ModelBook(None, horizon=24, model_dir=models)
    assert book.predictor("EURUSD", "1m").version.endswith("cccccccc")
    assert book.predictor("GBPUSD", "1m").version.endswith("aaaaaaaa")
    assert book.predictor("USDJPY", "1m").version.endswith("bbbbbbbb")
    assert isinstance(book.predictor("AUDUSD", "1m"), RandomWalkPredictor)


@pytest.mark.parametrize("bad", ["SET-1m-h24", "SETZZZZZZZZ-1m-h24"])
def test_directories_that_only_look_global_are_ignored(tmp_path: Path, bad: str) -> None:
    models = tmp_path / "models"
    pt = fake_model(models, ["EURUSD"], "20260101T000000000000Z-aaaaaaaa")
    shutil.move(str(pt.parent), str(models / bad))
    assert isinstance(ModelBook(None, horizon=24, model_dir=models).predictor("EURUSD", "1m"), RandomWalkPredictor)
