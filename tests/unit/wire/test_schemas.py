"""One schema per topic: the committed JSON Schemas are the generated ones, every encoded
record validates against its schema, and every schema-invalid record is refused by decode."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from forex_diffusion import wire
from forex_diffusion.domain import Candle, Tick
from forex_diffusion.drift import DriftEvent
from forex_diffusion.errors import RejectReason, ValidationError
from forex_diffusion.quality.trigger import RetrainRequest

SCHEMA_DIR = Path(__file__).resolve().parents[3] / "docs" / "schemas"
H = 3

TICK = Tick(symbol="EURUSD", ts_ms=1_399_000_000_000, bid=1.38727, ask=1.38729, volume=2.5, tick_id="f:2")
CANDLE = Candle(
    symbol="EURUSD",
    timeframe="1m",
    open_ms=60_000 * 23_316_667,
    close_ms=60_000 * 23_316_668,
    open=1.1,
    high=1.2,
    low=1.0,
    close=1.15,
    volume=3.0,
    tick_count=3,
    spread_mean=0.0001,
    spread_min=-0.00002,
    spread_max=0.0002,
    revision=3,
)
FORECAST: dict[str, Any] = {
    "v": 1,
    "symbol": "EURUSD",
    "timeframe": "1h",
    "as_of": 1_399_000_000_000,
    "as_of_ms": 1_399_000_000_000,
    "horizon": H,
    "model_version": "EURUSD-1h-24-v3",
    "last_close": 1.3,
    "levels": [0.05, 0.25, 0.5, 0.75, 0.95],
    "quantiles": [[1.0, 1.1, 1.2, 1.3, float("nan")]] * H,
    "mean": [1.2] * H,
    "p_up": [0.5, float("inf"), 0.4],
    "steps": 8,
    "samples": 100,
    "latency_s": 0.01,
    "rw_quantiles": [[1.0, 1.1, 1.2, 1.3, 1.4]] * H,
    "degraded": False,
    "learner": [
        {
            "horizon": 1,
            "as_of_ms": 1_399_000_000_000,
            "scaled_return": 0.1,
            "log_return": 1e-4,
            "price": 1.3,
            "p_up": 0.52,
        }
    ],
}
PATHS_HEADER: dict[str, Any] = {
    "symbol": "EURUSD",
    "timeframe": "1h",
    "as_of": 1_399_000_000_000,
    "horizon": H,
    "model_version": "EURUSD-1h-24-v3",
    "last_close": 1.3,
    "sigma": float("nan"),
    "rw_weight": [0.0, 0.5, float("nan")],
    "samples": 100,
}
DRIFT = DriftEvent(
    detector="adwin:learner_error",
    statistic=float("inf"),
    threshold=0.002,
    symbol="EURUSD",
    timeframe="1h",
    horizon=None,
    ts_ms=1_399_000_000_000,
)
REQUEST = RetrainRequest(
    request_id="3f2a9c0d1e2b3c4d5e6f7a8b",
    symbol="EURUSD",
    timeframe="1h",
    horizon=24,
    reason="drift",
    requested_at_ms=1_399_000_000_000,
    detail="x" * 900,
)
OUTCOME: dict[str, Any] = {
    "v": 1,
    "request_id": "../x",
    "key": "EUR/USD/1h/24",
    "symbol": "EUR/USD",
    "timeframe": "1h",
    "horizon": 24,
    "version": None,
    "status": "failed",
    "reason": "refused: " + "e" * 5000,
    "metrics": {"crps": float("nan"), "n": 3, "nested": {"a": [1.0, None]}},
    "duration_s": 0.5,
    "champion": None,
    "artifact": None,
    "sha256": None,
    "finished_at_ms": 1_399_000_000_000,
}


def encoded_samples() -> dict[str, list[bytes]]:
    """At least one record per topic, produced by the encoders (with values the core can produce)."""
    return {
        "ticks": [wire.encode_tick(TICK), wire.encode_tick(Tick(symbol="USDJPY", ts_ms=0, bid=86.6, ask=86.7))],
        "candles": [wire.encode_candle(CANDLE)],
        "indicators": [wire.encode_indicators(CANDLE, {"rsi_14": 55.0, "ema_20": None, "atr": float("nan")})],
        "forecasts": [wire.encode_forecast(FORECAST)],
        "forecasts.paths": [
            wire.encode_paths(PATHS_HEADER, [[1.3001, 1.2999, 1.31], [1.29, 1.28, 1.27]]),
            wire.encode_paths(PATHS_HEADER, [[1.3, 13.0, 0.13]]),  # beyond int16: int32
        ],
        "drift": [wire.encode_drift(DRIFT)],
        "retrain.requests": [wire.encode_retrain_request(REQUEST)],
        "models": [wire.encode_model_outcome(OUTCOME)],
        "deadletter": [
            wire.dead_letter_value(
                topic="fx.ticks",
                partition=0,
                offset=5,
                raw=b"\xff" * 20_000,
                key=b"\xfe",
                reason=RejectReason.MALFORMED,
                error="UnicodeDecodeError",
            ),
            wire.dead_letter_value(
                topic="fx.candles",
                partition=1,
                offset=0,
                raw=b"{}",
                key=None,
                reason=RejectReason.INTERNAL,
                error="KeyError at process: " + "k" * 900,
            ),
        ],
    }


def test_every_topic_has_a_schema_and_a_sample() -> None:
    assert (
        set(wire.SCHEMAS)
        == set(encoded_samples())
        == {
            "ticks",
            "candles",
            "indicators",
            "forecasts",
            "forecasts.paths",
            "drift",
            "retrain.requests",
            "models",
            "deadletter",
        }
    )


def test_committed_schema_files_equal_the_generated_ones(tmp_path: Path) -> None:
    written = wire.write_schemas(tmp_path)
    assert sorted(p.name for p in written) == sorted(p.name for p in SCHEMA_DIR.glob("*.schema.json")), (
        "run: python -m forex_diffusion.wire docs/schemas"
    )
    for p in written:
        assert (SCHEMA_DIR / p.name).read_text() == p.read_text(), f"{p.name} is stale: regenerate it"


@pytest.mark.parametrize("kind", sorted(wire.SCHEMAS))
def test_schemas_are_valid_json_schema(kind: str) -> None:
    jsonschema.Draft202012Validator.check_schema(wire.json_schema(kind))


@pytest.mark.parametrize("kind", sorted(wire.SCHEMAS))
def test_every_encoded_record_validates_and_decodes(kind: str) -> None:
    validator = jsonschema.Draft202012Validator(wire.json_schema(kind))
    for value in encoded_samples()[kind]:
        obj = json.loads(value)
        validator.validate(obj)
        assert obj["v"] == 1
        assert wire.decode_record(kind, value, max_bytes=1 << 20) == {k: v for k, v in obj.items() if k != "v"}


def test_encoding_maps_non_finite_computed_values_to_null_and_clips_text() -> None:
    f = json.loads(wire.encode_forecast(FORECAST))
    assert f["quantiles"][0][4] is None and f["p_up"][1] is None
    assert json.loads(wire.encode_drift(DRIFT))["statistic"] is None
    o = json.loads(wire.encode_model_outcome(OUTCOME))
    assert o["metrics"]["crps"] is None and len(o["reason"]) == 2000
    assert len(json.loads(wire.encode_retrain_request(REQUEST))["detail"]) == 500


def test_an_encoder_given_what_the_core_cannot_produce_raises_internal() -> None:
    with pytest.raises(ValidationError) as ei:
        wire.encode_candle(
            Candle(
                symbol="EURUSD",
                timeframe="1m",
                open_ms=0,
                close_ms=60_000,
                open=1.0,
                high=1.0,
                low=1.0,
                close=1.0,
                volume=float("inf"),
            )
        )
    assert ei.value.reason is RejectReason.INTERNAL


def _mutations(obj: dict[str, Any]) -> list[dict[str, Any]]:
    """Schema-invalid variants of a valid record: each field missing (if required), of the
    wrong type, or holding a hostile value."""
    hostile: list[Any] = [None, True, [], {}, "x" * 5000, "\u0000", -1, 10**30, -1e300, 1e300, "1e400", 0.5]
    out = []
    for name, value in obj.items():
        if name == "v":
            continue
        out.append({k: v for k, v in obj.items() if k != name})
        for h in hostile:
            if h != value:
                out.append({**obj, name: h})
    return out


@pytest.mark.parametrize("kind", sorted(wire.SCHEMAS))
def test_every_schema_invalid_record_is_refused_by_decode(kind: str) -> None:
    validator = jsonschema.Draft202012Validator(wire.json_schema(kind))
    checked = 0
    for value in encoded_samples()[kind]:
        for bad in _mutations(json.loads(value)):
            if validator.is_valid(bad):
                continue  # valid against the schema (decode may still refuse it on meaning)
            checked += 1
            with pytest.raises(ValidationError) as ei:
                wire.decode_record(kind, json.dumps(bad), max_bytes=1 << 20)
            assert ei.value.reason is not RejectReason.INTERNAL
    assert checked > 10


@pytest.mark.parametrize(
    "payload,reason",
    [
        (b'{"v":1,"symbol":"EURUSD","symbol":"USDJPY","ts":1,"bid":1.1,"ask":1.2}', RejectReason.MALFORMED),
        (b'{"v":1,"symbol":"EURUSD","ts":1,"bid":1e400,"ask":1.2}', RejectReason.NON_FINITE),
        (b'{"v":1,"symbol":"EURUSD","ts":1,"bid":-Infinity,"ask":1.2}', RejectReason.NON_FINITE),
        (b'{"v":1,"symbol":"EURUSD","ts":1,"bid":1e304,"ask":1.2}', RejectReason.OUT_OF_RANGE),
        (b'{"v":1,"symbol":"EURUSD","ts":1,"bid":1.1,"ask":1.2,"volume":1e308}', RejectReason.OUT_OF_RANGE),
        (b'{"v":1,"symbol":"EURUSD","ts":1,"bid":1.1,"ask":1.2,"volume":-1}', RejectReason.OUT_OF_RANGE),
        # a time outside the calendar: bad_ts, as the file readers and the validator say
        (b'{"v":1,"symbol":"EURUSD","ts":' + b"9" * 30 + b',"bid":1.1,"ask":1.2}', RejectReason.BAD_TS),
        (b'{"v":1,"symbol":"EURUSD","ts":' + b"9" * 5000 + b',"bid":1.1,"ask":1.2}', RejectReason.MALFORMED),
        (b'{"v":1,"symbol":"EUR\\u00dcSD","ts":1,"bid":1.1,"ask":1.2}', RejectReason.SCHEMA),
        (b'{"v":1,"symbol":"EURUSD","ts":1,"bid":1.1,"ask":1.2,"tick_id":"a\\nb"}', RejectReason.SCHEMA),
        (b"[" * 100_000, RejectReason.OVERSIZE),
        (b"[" * 5_000 + b"]" * 5_000, RejectReason.MALFORMED),
    ],
)
def test_decode_tick_refuses_hostile_values(payload: bytes, reason: RejectReason) -> None:
    with pytest.raises(ValidationError) as ei:
        wire.decode_tick(payload, max_bytes=64 * 1024)
    assert ei.value.reason is reason


@pytest.mark.parametrize(
    "change,reason",
    [
        ({"open_time": CANDLE.open_ms + 1, "close_time": CANDLE.close_ms + 1}, RejectReason.BAD_TS),  # off grid
        ({"close_time": CANDLE.close_ms + 60_000}, RejectReason.BAD_TS),  # close != open + timeframe
        ({"high": 1.12}, RejectReason.INCONSISTENT),
        ({"low": 0.0}, RejectReason.NON_POSITIVE),
        ({"timeframe": "7x"}, RejectReason.SCHEMA),
        ({"open_time": wire.TS_MAX + 1}, RejectReason.BAD_TS),
    ],
)
def test_decode_candle_checks_the_bar(change: dict[str, Any], reason: RejectReason) -> None:
    obj = {**json.loads(wire.encode_candle(CANDLE)), **change}
    with pytest.raises(ValidationError) as ei:
        wire.decode_candle(json.dumps(obj).encode(), key=b"EURUSD")
    assert ei.value.reason is reason


def test_decode_retrain_request_refuses_ids_outside_the_agreed_format() -> None:
    for rid in ("../", "*", "/", "x" * 10_000, "a b", ""):
        obj = {**json.loads(wire.encode_retrain_request(REQUEST)), "request_id": rid}
        with pytest.raises(ValidationError):
            wire.decode_retrain_request(json.dumps(obj))
    obj = {**json.loads(wire.encode_retrain_request(REQUEST)), "symbol": "EUR/USD"}
    with pytest.raises(ValidationError):
        wire.decode_retrain_request(json.dumps(obj))
    assert wire.decode_retrain_request(wire.encode_retrain_request(REQUEST)).request_id == REQUEST.request_id


def test_python_m_wire_writes_the_schemas(tmp_path: Path) -> None:
    assert wire.main([str(tmp_path)]) == 0
    assert len(list(tmp_path.glob("*.schema.json"))) == len(wire.SCHEMAS)


@pytest.mark.parametrize("args", [["--help"], ["--bogus"], ["a", "b"]])
def test_python_m_wire_takes_no_option_for_a_folder(
    args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``python -m forex_diffusion.wire --help`` wrote the nine schemas into a folder named ``--help``."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as ei:
        wire.main(args)
    assert ei.value.code == (0 if args == ["--help"] else 2)
    shown = capsys.readouterr()
    assert "usage: python -m forex_diffusion.wire" in shown.out + shown.err
    assert list(tmp_path.iterdir()) == []
