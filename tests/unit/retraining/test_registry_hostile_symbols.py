"""A global model's symbol set read from a hostile manifest or registry row serves nothing, never raises.

``ModelRegistry.symbols_of`` caught only OSError/ValueError: a manifest whose JSON was a list
raised AttributeError, ``"symbols": 5`` TypeError and 100,000 nested brackets RecursionError;
``ModelBook``'s reader of checkpoint files missed the last two. Each escaped through
``serving_models`` out of the candle agent's batch: one hostile file in the model directory,
or one hostile row, stopped every forecast. Now any value is either a tuple of canonical
symbols or refused (``ArtifactError``), logged and counted once per version, and the model
serves no symbol.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from forex_diffusion.errors import ArtifactError
from forex_diffusion.forecast.forecaster import RandomWalkPredictor
from forex_diffusion.instruments import symbol_set_key
from forex_diffusion.storage import make_engine
from forex_diffusion.storage.model_registry import ModelKey, ModelVersion
from retraining.registry import ModelRegistry, model_symbols
from retraining.serving import ModelBook
from streams.agents.book import serving_models
from tests.unit.streams.test_batch_scoring import candle_agent, candle_messages

from .test_global_routing import fake_model

HORIZON = 12
CANONICAL = re.compile(r"[A-Z]{6}")
DEEP = b"[" * 100_000 + b"]" * 100_000

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
    | st.sampled_from(["EURUSD", "eurusd", "GBPUSD", "EUR/USD", "EURUSDX", "ÉURUSD", "eurusı"]),
    lambda kids: st.lists(kids, max_size=5) | st.dictionaries(st.text(max_size=6), kids, max_size=5),
    max_leaves=20,
)
# what a manifest file may hold: an object with any ``symbols``, any JSON value, any bytes, deep nesting
manifest_bytes = st.one_of(
    json_values.map(lambda v: json.dumps({"format": 1, "symbols": v}).encode()),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=64),
    st.just(DEEP),
    st.just(b'{"symbols": ' + DEEP + b"}"),
    st.just(b'{"symbols": [' + b"9" * 5000 + b"]}"),
)


def _valid(names: object) -> bool:
    return isinstance(names, (tuple, frozenset)) and all(isinstance(s, str) and CANONICAL.fullmatch(s) for s in names)


@given(json_values)
def test_model_symbols_of_any_json_value_is_canonical_symbols_or_the_refusal(value: object) -> None:
    try:
        names = model_symbols(value, "manifest")
    except ArtifactError as exc:
        assert "symbols" in str(exc) and len(str(exc)) < 200
        return
    assert _valid(names) and list(names) == sorted(set(names))
    assert isinstance(value, list) and {str(x).upper() for x in value} == set(names)


def _version(metrics: dict[str, Any] | None = None) -> ModelVersion:
    key = ModelKey.for_symbols(["EURUSD", "GBPUSD"], "1m", 24)
    return ModelVersion(
        version="v-hostile",
        key=key,
        artifact=f"{key.dir_name}/v-hostile.pt",
        sha256="0" * 64,
        config_hash="x",
        metrics=metrics or {},
    )


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(raw=manifest_bytes)
def test_symbols_of_any_manifest_bytes_never_raises(tmp_path: Path, raw: bytes) -> None:
    reg = ModelRegistry(make_engine(f"sqlite:///{tmp_path / 'r.db'}"), tmp_path)
    refused: list[str] = []
    reg.on_refused = lambda version, exc: refused.append(version)
    v = _version()
    js = reg.path_of(v).with_suffix(".json")
    js.parent.mkdir(parents=True, exist_ok=True)
    js.write_bytes(raw)
    names = reg.symbols_of(v)
    assert _valid(names)
    assert reg.symbols_of(v) == names  # remembered: read and said once
    assert refused in ([], ["v-hostile"])
    assert (refused == []) == bool(names) or names == frozenset()


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(value=json_values)
def test_symbols_of_any_registry_row_symbols_never_raises(tmp_path: Path, value: object) -> None:
    reg = ModelRegistry(make_engine(f"sqlite:///{tmp_path / 'r.db'}"), tmp_path)
    names = reg.symbols_of(_version({"symbols": value}))
    assert _valid(names)
    if names:
        assert names == frozenset(model_symbols(value, "row"))


def test_a_manifest_that_is_a_fifo_is_refused_at_once_not_waited_on(tmp_path: Path) -> None:
    """Review finding: ``read_manifest`` opened a FIFO named ``*.json`` with a blocking open,
    which waits for a writer forever: the worker's model-book refresh (and with it the
    ``fx.models`` agent and its 15 s timer) hung. ``load_checkpoint`` refuses what is no
    regular file; so does this reader now, without blocking."""
    import contextlib
    import os
    import threading

    from retraining.registry import read_manifest

    fifo = tmp_path / "v.json"
    os.mkfifo(fifo)
    got: list[BaseException | dict[str, Any]] = []

    def read() -> None:
        try:
            got.append(read_manifest(fifo))
        except BaseException as exc:  # noqa: BLE001 - reported below
            got.append(exc)

    t = threading.Thread(target=read, daemon=True)
    t.start()
    t.join(30)  # a bound on a hang, not a timing: it answers at once
    if t.is_alive():
        # a writer, so the blocked open returns and the thread ends; opened without blocking, as
        # the reader may have ended just now (a blocking open would then wait for one forever)
        with contextlib.suppress(OSError):
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        t.join(30)
        pytest.fail("read_manifest blocked on a FIFO")
    assert len(got) == 1 and isinstance(got[0], ArtifactError) and "no regular file" in str(got[0]), got


@pytest.mark.parametrize(
    "raw",
    [b"[1, 2]", b'{"format": 1, "symbols": 5}', DEEP, b'{"symbols": ' + DEEP + b"}", b"\xff\xfe{"],
    ids=["list", "int-symbols", "deep", "deep-symbols", "not-utf8"],
)
def test_registry_routes_past_a_global_champion_whose_manifest_is_hostile(
    tmp_path: Path, raw: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    eng = make_engine(f"sqlite:///{tmp_path / 'r.db'}")
    reg = ModelRegistry(eng, tmp_path / "models")
    g = reg.import_artifact(fake_model(tmp_path / "src", ["EURUSD", "GBPUSD"], "v-global"))
    reg.promote(g.version, "test")
    star = reg.import_artifact(fake_model(tmp_path / "src", None, "v-star"), key=ModelKey.parse("*/1m/24"))
    reg.promote(star.version, "test")
    with eng.begin() as c:  # the row names no set: the manifest is read
        c.execute(sa.text("UPDATE model_versions SET metrics = :m"), {"m": json.dumps({})})
    reg.path_of(g).with_suffix(".json").write_bytes(raw)
    counted: list[str] = []
    book = ModelBook(eng, horizon=24, model_dir=tmp_path / "models", on_rejected=lambda v, e: counted.append(v))
    with caplog.at_level(logging.ERROR, logger="retraining.registry"):
        for _ in range(3):
            assert book.registry is not None
            champion = book.registry.resolve_champion("EURUSD", "1m", 24)
            assert champion is not None and champion.version == "v-star"  # the global model serves nothing
    said = [r.getMessage() for r in caplog.records if "symbols_refused" in r.getMessage()]
    assert len(said) == 1 and "version=v-global" in said[0], said
    assert counted == ["v-global"]


@pytest.mark.parametrize("metrics", [{"symbols": 5}, {"symbols": [[["EURUSD"]]]}, {"symbols": "EURUSD"}])
def test_a_registry_row_whose_symbols_are_hostile_serves_nothing(tmp_path: Path, metrics: dict[str, Any]) -> None:
    eng = make_engine(f"sqlite:///{tmp_path / 'r.db'}")
    reg = ModelRegistry(eng, tmp_path / "models")
    g = reg.import_artifact(fake_model(tmp_path / "src", ["EURUSD", "GBPUSD"], "v-global"))
    reg.promote(g.version, "test")
    with eng.begin() as c:
        c.execute(sa.text("UPDATE model_versions SET metrics = :m"), {"m": json.dumps(metrics)})
    assert reg.resolve_champion("EURUSD", "1m", 24) is None
    assert reg.symbols_of(reg.get("v-global")) == frozenset()


@pytest.mark.parametrize("raw", [b'{"format": 1, "symbols": 5}', DEEP, b'{"symbols": {"EURUSD": 1}}'])
def test_serving_models_forecasts_the_other_series_past_a_hostile_checkpoint_file(
    tmp_path: Path, raw: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    models = tmp_path / "models"
    own = fake_model(models, None, "20260101T000000000000Z-cccccccc", symbol="GBPUSD")
    hostile = fake_model(models, ["EURUSD", "USDJPY"], "20260101T000000000000Z-aaaaaaaa")
    hostile.with_suffix(".json").write_bytes(raw)
    counted: list[str] = []
    book = ModelBook(None, horizon=24, model_dir=models, on_rejected=lambda v, e: counted.append(v))
    series = {("EURUSD", "1m"), ("GBPUSD", "1m"), ("USDJPY", "1m")}
    with caplog.at_level(logging.ERROR, logger="retraining.serving"):
        got = asyncio.run(serving_models(SimpleNamespace(models=book), series))  # type: ignore[arg-type]
        book.refresh()
    assert got[("GBPUSD", "1m")].version == own.stem  # its own model, loaded
    assert isinstance(got[("EURUSD", "1m")], RandomWalkPredictor)
    assert isinstance(got[("USDJPY", "1m")], RandomWalkPredictor)
    assert counted == [hostile.stem]  # once, however often it is looked at
    said = [r.getMessage() for r in caplog.records if "symbols_refused" in r.getMessage()]
    assert len(said) == 1 and f"version={hostile.stem}" in said[0], said


def test_candle_agent_keeps_forecasting_with_a_hostile_global_manifest_in_its_model_dir(tmp_path: Path) -> None:
    agent = candle_agent(tmp_path)
    key = ModelKey(symbol=symbol_set_key(["EURUSD", "GBPUSD"]), timeframe="1m", horizon=HORIZON)
    d = tmp_path / "models" / key.dir_name
    d.mkdir(parents=True)
    (d / "20260101T000000000000Z-aaaaaaaa.pt").write_bytes(b"not a model")
    (d / "20260101T000000000000Z-aaaaaaaa.json").write_text(json.dumps({"format": 1, "symbols": 5}))
    asyncio.run(agent.handle_batch(candle_messages(120)))
    forecasts = [json.loads(v) for kind, _k, v in agent.effects.out if kind == "forecasts"]
    assert forecasts and {f["symbol"] for f in forecasts} == {"EURUSD"}
    assert agent.contain.internal_errors == 0 and not agent.effects.dead


def test_candle_agent_forecasts_the_other_series_when_one_lookup_fails_with_a_bug(tmp_path: Path) -> None:
    agent = candle_agent(tmp_path, ("EURUSD", "GBPUSD"))
    real = agent.models.predictor

    def predictor(symbol: str, timeframe: str) -> Any:
        if symbol == "GBPUSD":  # e.g. a registry row the storage layer cannot decode
            raise TypeError("cannot convert dictionary update sequence element #0 to a sequence")
        return real(symbol, timeframe)

    agent.models.predictor = predictor  # type: ignore[method-assign]
    msgs = candle_messages(120)
    other = [
        SimpleNamespace(**{**vars(m), "key": b"GBPUSD", "value": m.value.replace(b'"EURUSD"', b'"GBPUSD"')})
        for m in msgs
    ]
    assert all(b'"GBPUSD"' in m.value for m in other)
    pairs = [m for pair in zip(msgs, other, strict=True) for m in pair]
    batch = [SimpleNamespace(**{**vars(m), "offset": i}) for i, m in enumerate(pairs)]  # one partition's log
    asyncio.run(agent.handle_batch(batch))
    forecasts = [json.loads(v) for kind, _k, v in agent.effects.out if kind == "forecasts"]
    assert forecasts and {f["symbol"] for f in forecasts} == {"EURUSD"}
    assert agent.contain.internal_errors == 1 and not agent.effects.dead  # the batch's GBPUSD lookup


def test_the_registry_docstring_examples_run() -> None:
    import doctest

    import retraining.registry

    result = doctest.testmod(retraining.registry, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
