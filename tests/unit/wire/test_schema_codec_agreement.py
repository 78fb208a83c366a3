"""The published JSON Schemas refuse what the codec refuses, wherever JSON Schema can say it.

Review finding: with ``jsonschema.Draft202012Validator(wire.json_schema(kind))``, fx.models
``"metrics": null`` was schema-valid (the ``json`` kind had no type) but ``decode_record`` refused
it; so were a number past the largest double in an unbounded number field (``out_of_range``) and,
under Python's ``re`` (which ``jsonschema`` uses), a string with a trailing newline (``$`` matches
before it; the decoder's ``fullmatch`` does not). What no schema can say -- 24.0 is the integer
24 to JSON Schema, the codec wants ``24`` -- each schema's description states.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import jsonschema
import pytest

from forex_diffusion import wire
from forex_diffusion.errors import RejectReason, ValidationError
from tests.unit.wire.test_schemas import OUTCOME, encoded_samples

HOSTILE: list[Any] = [None, True, 0, 1, -1, 0.5, -0.5, "", "x", 10**400, -(10**400), 2**63, 1e308, [], {}, [None]]


def _mutations(obj: Any) -> Iterator[Any]:
    """``obj`` with one value anywhere in it (a field, an item, a map entry) replaced."""
    if isinstance(obj, dict):
        for name, value in obj.items():
            if name == "v":
                continue
            for h in [*HOSTILE, *([value + "\n"] if isinstance(value, str) else [])]:
                if h is not value:
                    yield {**obj, name: h}
            for inner in _mutations(value):
                yield {**obj, name: inner}
    elif isinstance(obj, list):
        for i, value in enumerate(obj[:3]):  # the first items stand for the rest
            for h in [*HOSTILE, *([value + "\n"] if isinstance(value, str) else [])]:
                yield [*obj[:i], h, *obj[i + 1 :]]
            for inner in _mutations(value):
                yield [*obj[:i], inner, *obj[i + 1 :]]


@pytest.mark.parametrize("kind", sorted(wire.SCHEMAS))
def test_a_schema_valid_record_is_decoded(kind: str) -> None:
    validator = jsonschema.Draft202012Validator(wire.json_schema(kind))
    checked = 0
    for value in encoded_samples()[kind]:
        for bad in _mutations(json.loads(value)):
            if not validator.is_valid(bad):
                continue
            checked += 1
            try:
                wire.decode_record(kind, json.dumps(bad), max_bytes=1 << 22)
            except ValidationError as exc:
                pytest.fail(f"schema-valid but refused ({exc.reason.value}: {exc}): {json.dumps(bad)[:300]}")
    assert checked > 5


@pytest.mark.parametrize("kind", sorted(wire.SCHEMAS))
def test_every_schema_refuses_null_where_the_codec_does(kind: str) -> None:
    schema = wire.json_schema(kind)
    validator = jsonschema.Draft202012Validator(schema)
    obj = json.loads(encoded_samples()[kind][0])
    for f in wire.SCHEMAS[kind].fields:
        if f.nullable or f.name not in obj:
            continue
        assert not validator.is_valid({**obj, f.name: None}), f.name
        with pytest.raises(ValidationError):
            wire.decode_record(kind, json.dumps({**obj, f.name: None}))


def test_models_metrics_null_is_refused_by_schema_and_codec() -> None:
    obj = json.loads(wire.encode_model_outcome(OUTCOME)) | {"metrics": None}
    assert not jsonschema.Draft202012Validator(wire.json_schema("models")).is_valid(obj)
    with pytest.raises(ValidationError) as ei:
        wire.decode_record("models", json.dumps(obj))
    assert ei.value.reason is RejectReason.SCHEMA


@pytest.mark.parametrize(
    "kind,change",
    [
        ("ticks", {"ts": 1399000000000.0}),
        ("ticks", {"v": 1.0}),
        ("ticks", {"ts": -0.0}),
        ("retrain.requests", {"horizon": 24.0}),
        ("candles", {"revision": 24.0}),
        ("candles", {"tick_count": -0.0}),
    ],
)
def test_an_integer_written_as_a_float_is_refused_and_every_schema_says_so(kind: str, change: dict[str, Any]) -> None:
    """JSON Schema cannot tell 24.0 from 24: the schema accepts it, so its description warns."""
    obj = json.loads(encoded_samples()[kind][0]) | change
    assert jsonschema.Draft202012Validator(wire.json_schema(kind)).is_valid(obj)  # the limit of JSON Schema
    with pytest.raises(ValidationError) as ei:
        wire.decode_record(kind, json.dumps(obj))
    assert ei.value.reason is RejectReason.SCHEMA
    for k in wire.SCHEMAS:
        assert "24, not 24.0" in wire.json_schema(k)["description"]
