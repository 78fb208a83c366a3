"""Retrain jobs on real hourly EUR/USD: promote, reject, fail cleanly; de-duplication; wire forms."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from forex_diffusion.errors import ConfigError, ValidationError
from forex_diffusion.storage import make_engine
from forex_diffusion.storage.model_registry import ModelKey
from retraining.jobs import (
    InFlight,
    JobConfig,
    JobOutcome,
    decode_outcome,
    decode_request,
    encode_outcome,
    encode_request,
    run_retrain,
)
from retraining.policy import PromotionPolicy
from retraining.registry import ModelRegistry

from .conftest import HORIZON, request, tiny_job

KEY = ModelKey(symbol="EURUSD", timeframe="1h", horizon=HORIZON)


def test_first_job_promotes_and_a_challenger_not_better_is_rejected_champion_unchanged(
    sqlite_db: str, tmp_path: Path
) -> None:
    engine = make_engine(sqlite_db)
    models = tmp_path / "models"
    stages: list[str] = []
    first = run_retrain(
        request("r1"),
        engine=engine,
        model_dir=models,
        config=tiny_job(),
        progress=lambda stage, _detail: stages.append(stage),
    )
    assert first.status == "promoted", first.reason
    assert first.reason.startswith("no_champion_beats_rw") and first.exit_code == 0
    assert stages[0] == "fetch" and "train" in stages and stages[-1] == "decide"
    ch = first.metrics["challenger"]
    assert ch["n"] >= 50 and ch["crps"] > 0 and 0.6 <= ch["cover90"] <= 1.0
    assert first.metrics["data"]["candles"] == 2400 + 240
    reg = ModelRegistry(engine, models)
    assert reg.champion(KEY).version == first.version == first.champion
    assert Path(first.artifact).is_file() and reg.verify(reg.get(first.version))

    # the same data and seed give a challenger no better than the champion: rejected
    second = run_retrain(request("r2"), engine=engine, model_dir=models, config=tiny_job())
    assert second.status == "rejected" and second.exit_code == 3
    assert second.reason.startswith("not_better"), second.reason
    assert second.metrics["champion_version"] == first.version
    assert reg.champion(KEY).version == first.version == second.champion
    assert reg.get(second.version).status == "rejected"
    assert reg.challenger(KEY).version == second.version

    # a challenger whose 90 % interval misses the policy's bounds is rejected too
    strict = tiny_job(policy=PromotionPolicy(min_improvement=-0.5, coverage90_bounds=(0.97, 1.0)))
    third = run_retrain(request("r3"), engine=engine, model_dir=models, config=strict)
    assert third.status == "rejected" and third.reason.startswith("coverage"), third.reason
    assert reg.champion(KEY).version == first.version
    # retention (keep_last=3 by default) deleted nothing yet; every live version loads
    assert all(reg.verify(v) for v in reg.list(KEY, include_deleted=False))

    back = JobOutcome.from_dict(json.loads(json.dumps(third.to_dict())))
    assert (
        back == replace(third, metrics=back.metrics)
        and back.metrics == json.loads(json.dumps(third.to_dict()))["metrics"]
    )
    assert decode_outcome(encode_outcome(third)).version == third.version


def test_job_without_candles_fails_and_leaves_nothing(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    out = run_retrain(request("r0"), engine=engine, model_dir=tmp_path / "m", config=tiny_job())
    assert out.status == "failed" and out.exit_code == 1 and out.version is None
    # the published reason is a code and the exception type (issue 13); the log has the text
    assert out.reason == "model: ModelError", out.reason
    assert "not enough candles" in caplog.text
    assert ModelRegistry(engine, tmp_path / "m").list() == []
    assert not list((tmp_path / "m").rglob("*.pt"))


def test_two_identical_requests_in_flight_give_one_job() -> None:
    flight = InFlight(default_horizon=HORIZON)
    a = request("a", horizon=None)  # the default horizon: the same key as an explicit 12
    b = request("b")
    started = [r.request_id for r in (a, b, a) if flight.admit(r)]
    assert started == ["a"] and flight.running() == {"EURUSD/1h/12": "a"}
    assert flight.admit(request("c", symbol="GBPUSD"))  # another key runs in parallel
    flight.done(b)  # not the running job: ignored
    assert flight.running()["EURUSD/1h/12"] == "a"
    flight.done(a)
    assert not flight.admit(a)  # a redelivered request that already ran is not run again
    assert flight.admit(b)


def test_job_config_refuses_unknown_or_request_owned_keys_and_round_trips() -> None:
    cfg = tiny_job()
    assert JobConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ConfigError, match="unknown TrainConfig keys"):
        JobConfig(train={"widht": 3})
    with pytest.raises(ConfigError, match="must not set"):
        JobConfig(train={"symbol": "EURUSD"})
    with pytest.raises(ConfigError, match="unknown JobConfig"):
        JobConfig.from_dict({"holdout": 3})
    with pytest.raises(ConfigError, match="exceed the horizon"):
        JobConfig(horizon=24, holdout_candles=24)


def test_request_wire_form_carries_the_schema_version() -> None:
    r = request("w", detail="drift on adwin")
    raw = encode_request(r)
    assert json.loads(raw)["v"] == 1 and decode_request(raw) == r
    with pytest.raises(ValidationError):
        decode_request(raw.replace(b'"v":1', b'"v":2'))
    with pytest.raises(ValidationError):
        decode_request(b'{"v":1,"symbol":"EURUSD"}')
