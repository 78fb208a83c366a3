"""Job settings written by hand (``forexd retrain --config FILE``, ``FOREXD_RETRAIN_JOB_CONFIG``)
are refused with one ``ConfigError`` naming the field, whatever JSON they hold.

Found attacking the commands: ``{"horizon": "x"}``, ``{"train": 5}``, ``{"train": {"lr": "x"}}``
and ``[1, 2]`` raised ``TypeError``/``AttributeError`` tracebacks from ``forexd retrain``, and a
worker took such a ``FOREXD_RETRAIN_JOB_CONFIG`` without a word until its first job.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from forex_diffusion.diffusion.training import TrainConfig
from forex_diffusion.errors import ConfigError
from retraining.jobs import JobConfig
from retraining.policy import PromotionPolicy
from streams.cli import app

FOREXD = Path(sys.executable).with_name("forexd")

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**12), 10**12) | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


def _fields(names: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    return st.dictionaries(st.sampled_from(names), json_values, max_size=4)


@settings(max_examples=300, deadline=None)
@given(data=_fields(["train", "horizon", "train_candles", "holdout_candles", "eval_every", "eval_samples", "policy"]))
def test_job_config_of_any_json_is_built_or_refused_with_a_config_error(data: dict[str, Any]) -> None:
    try:
        job = JobConfig.from_dict(data)
    except ConfigError:
        return
    assert JobConfig.from_dict(job.to_dict()) == job  # what is accepted is a real, round-tripping config


@settings(max_examples=300, deadline=None)
@given(data=_fields(["min_improvement", "coverage90_bounds", "min_skill_vs_rw", "min_windows"]))
def test_promotion_policy_of_any_json_is_built_or_refused_with_a_config_error(data: dict[str, Any]) -> None:
    try:
        policy = PromotionPolicy.from_dict(data)
    except ConfigError:
        return
    assert PromotionPolicy.from_dict(policy.to_dict()) == policy


@settings(max_examples=200, deadline=None)
@given(data=_fields(["lr", "width", "blocks", "max_minutes", "split", "schedule", "context", "inputs", "series"]))
def test_train_config_of_any_json_is_built_or_refused_with_a_config_error(data: dict[str, Any]) -> None:
    try:
        TrainConfig.from_dict({"symbol": "EURUSD", "timeframe": "1h", **data})
    except ConfigError:
        pass


@pytest.mark.parametrize(
    ("data", "says"),
    [
        ([1, 2], "JSON object"),
        ({"horizon": "x"}, "horizon must be int"),
        ({"horizon": True}, "horizon must be int"),
        ({"horizon": 2.5}, "horizon must be int"),
        ({"train": 5}, "train must be a JSON object"),
        ({"train": {"lr": "x"}}, "lr must be float"),
        ({"policy": {"coverage90_bounds": 0.9}}, "coverage90_bounds must be two numbers"),
        ({"policy": {"min_windows": "10"}}, "min_windows must be int"),
    ],
)
def test_the_refusal_names_the_field(data: Any, says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        JobConfig.from_dict(data)


def test_what_earlier_versions_accepted_is_still_read_the_same() -> None:
    """JSON writes whole numbers as ``2e4`` and flags as ``0``/``1``: such files and variables
    were accepted before the types were checked, and are read as the same values."""
    job = JobConfig.from_dict(
        MappingProxyType({"train": {"max_steps": 2e4, "compile": 0}, "audit_window_ms": 6.048e8, "horizon": 24.0})
    )
    assert (job.train["max_steps"], job.train["compile"], job.audit_window_ms, job.horizon) == (
        20000,
        False,
        604800000,
        24,
    )
    assert type(job.train["max_steps"]) is int and type(job.audit_window_ms) is int
    assert JobConfig.from_dict({"policy": PromotionPolicy()}).policy == PromotionPolicy()


@pytest.mark.parametrize(
    ("data", "says"),
    [
        ({"train": {"samples": 20000}}, "samples and val_samples must be in 2..10000"),
        ({"train": {"sample_steps": 201}}, "sample_steps must be in 1..200"),
        ({"eval_samples": 20000}, "eval_samples must be in 2..10000"),
        ({"eval_steps": 5000}, "eval_steps must be in 1..1000"),
    ],
)
def test_a_sampling_budget_no_forecast_could_use_is_refused_before_training(data: dict[str, Any], says: str) -> None:
    """A model trained with default samples or steps outside the forecaster's bounds would be
    registered and promoted, then fail every live forecast."""
    with pytest.raises(ConfigError, match=says):
        JobConfig.from_dict(data)


def _forexd(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("FOREXD_")} | env
    cmd = [str(FOREXD)] if FOREXD.exists() else [sys.executable, "-m", "streams.cli"]
    return subprocess.run([*cmd, *args], capture_output=True, text=True, env=full, timeout=240)


def _forexd_here(*args: str, env: dict[str, str]) -> tuple[int, str]:
    """The same command line run in this process (``forexd``'s own app and error handling, the
    caller's ``FOREXD_*`` variables unset): the exit status and standard error. A real process
    per case cost seconds of imports each; one per command below proves the process's view."""
    clean: dict[str, str | None] = {k: None for k in os.environ if k.startswith("FOREXD_")}
    res = CliRunner().invoke(app, list(args), env={**clean, **env})
    return res.exit_code, res.stderr


# a worker whose job settings were taken would wait for this broker: not for minutes
_NO_BROKER = {"FOREXD_BROKER_URL": "kafka://127.0.0.1:9", "FOREXD_BROKER_WAIT_S": "1", "FOREXD_METRICS_PORT": "-1"}

_BAD_JOB_CONFIGS = [
    "[1]",
    '{"horizon": "x"}',
    "nope",
    '{"train": {"lr": "x"}}',
    "[" * 5000 + "]" * 5000,
    '{"horizon": 1' + "0" * 5000 + "}",  # review: int()'s digit limit, a ValueError traceback (exit 1)
]


@pytest.mark.parametrize("value", _BAD_JOB_CONFIGS)
def test_a_retrain_worker_refuses_a_malformed_job_config_before_starting(value: str, tmp_path: Path) -> None:
    status, err = _forexd_here(
        "worker", "--role", "retrain", env={"FOREXD_RETRAIN_JOB_CONFIG": value, "FOREXD_DATA_DIR": str(tmp_path), **_NO_BROKER}
    )  # fmt: skip
    assert status == 78, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: FOREXD_RETRAIN_JOB_CONFIG"), err


def test_a_retrain_worker_process_refuses_a_malformed_job_config_in_one_line(tmp_path: Path) -> None:
    res = _forexd("worker", "--role", "retrain", env={"FOREXD_RETRAIN_JOB_CONFIG": _BAD_JOB_CONFIGS[4], **_NO_BROKER})
    assert res.returncode == 78, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: FOREXD_RETRAIN_JOB_CONFIG"), res.stderr


_NOT_JSON_OBJECTS = [
    (b"[1, 2]", "JSON list"),
    (b"\xff\xfe{}", "is not JSON"),
    (b"[" * 5000 + b"]" * 5000, "is not JSON"),
    (b'{"horizon": 1' + b"0" * 5000 + b"}", "is not JSON"),  # review: int()'s digit limit, a traceback
]


def _retrain_args(cfg: Path, tmp_path: Path) -> list[str]:
    return [
        "retrain", "--local", "--symbol", "EURUSD", "--timeframe", "1h", "--config", str(cfg),
        "--db", f"sqlite:///{tmp_path / 'r.db'}", "--model-dir", str(tmp_path / "m"),
    ]  # fmt: skip


@pytest.mark.parametrize(("content", "says"), _NOT_JSON_OBJECTS)
def test_retrain_with_a_config_file_that_is_no_json_object_exits_65(content: bytes, says: str, tmp_path: Path) -> None:
    cfg = tmp_path / "job.json"
    cfg.write_bytes(content)
    status, err = _forexd_here(*_retrain_args(cfg, tmp_path), env={"FOREXD_DATA_DIR": str(tmp_path)})
    assert status == 65, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and says in lines[0] and "Traceback" not in err, err


def test_a_retrain_process_with_a_config_file_that_is_no_json_object_exits_65_in_one_line(tmp_path: Path) -> None:
    cfg = tmp_path / "job.json"
    cfg.write_bytes(_NOT_JSON_OBJECTS[3][0])
    res = _forexd(*_retrain_args(cfg, tmp_path), env={"FOREXD_DATA_DIR": str(tmp_path)})
    assert res.returncode == 65, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "is not JSON" in lines[0] and "Traceback" not in res.stderr, res.stderr
