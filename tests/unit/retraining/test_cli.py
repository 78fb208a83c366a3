"""``forexd retrain --local`` and ``forexd models list|promote|rollback|history|register``."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from forex_diffusion.diffusion import TrainResult
from forex_diffusion.storage import make_engine
from forex_diffusion.storage.model_registry import ModelKey
from retraining.registry import ModelRegistry
from streams.cli import app

from .conftest import HORIZON, tiny_job

runner = CliRunner()
KEY = ModelKey(symbol="EURUSD", timeframe="1h", horizon=HORIZON)


def test_retrain_local_prints_the_outcome_and_exits_by_status(sqlite_db: str, tmp_path: Path) -> None:
    cfg = tmp_path / "job.json"
    cfg.write_text(json.dumps(tiny_job().to_dict()))
    models = tmp_path / "models"
    args = [
        "retrain",
        "--local",
        "--symbol",
        "eurusd",
        "--timeframe",
        "1h",
        "--horizon",
        str(HORIZON),
        "--reason",
        "cli test",
        "--db",
        sqlite_db,
        "--model-dir",
        str(models),
        "--config",
        str(cfg),
        "--threads",
        "2",
    ]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    out = json.loads(res.output.strip().splitlines()[-1])
    assert out["status"] == "promoted" and out["key"] == "EURUSD/1h/12" and out["v"] == 1
    reg = ModelRegistry(make_engine(sqlite_db), models)
    assert reg.champion(KEY).version == out["version"]
    assert reg.get(out["version"]).request_id == out["request_id"]

    bad = runner.invoke(
        app,
        [
            "retrain",
            "--local",
            "--symbol",
            "EURUSD",
            "--timeframe",
            "1h",
            "--db",
            f"sqlite:///{tmp_path / 'empty.db'}",
            "--model-dir",
            str(models),
            "--config",
            str(cfg),
        ],
    )
    # a database file that does not exist (in a directory that does) is exit 66 on one line, as
    # `models list` on it: it made a new empty database and reported a failed job (exit 1)
    assert bad.exit_code == 66, bad.output
    assert bad.stderr.strip() == f"error: database file {tmp_path / 'empty.db'} does not exist: " + (
        "check --db or FOREXD_DATABASE_URL / FOREXD_DATA_DIR"
    )
    assert not (tmp_path / "empty.db").exists()


def test_models_commands_list_promote_rollback_history_register(tmp_path: Path, tiny_checkpoint: TrainResult) -> None:
    db = f"sqlite:///{tmp_path / 'reg.db'}"
    models = tmp_path / "models"
    common = ["--db", db, "--model-dir", str(models)]
    res = runner.invoke(app, ["models", "register", str(tiny_checkpoint.checkpoint), *common])
    assert res.exit_code == 0, res.output
    again = runner.invoke(app, ["models", "register", str(tiny_checkpoint.checkpoint), *common])
    assert again.exit_code == 2 and "already registered" in again.output
    reg = ModelRegistry(make_engine(db), models)
    (v,) = reg.list(KEY)
    assert v.version == tiny_checkpoint.version and reg.verify(v) and reg.challenger(KEY) is None
    assert runner.invoke(app, ["models", "promote", v.version, "--reason", "go", *common]).exit_code == 0
    listed = runner.invoke(app, ["models", "list", "--key", "EURUSD/1h/12", "--json", *common])
    assert listed.exit_code == 0
    rows = [json.loads(line) for line in listed.output.strip().splitlines()]
    assert [(r["version"], r["status"], r["aliases"]) for r in rows] == [(v.version, "promoted", "champion")]
    table = runner.invoke(app, ["models", "list", *common])
    assert v.version in table.output and "champion" in table.output
    rb = runner.invoke(app, ["models", "rollback", "EURUSD-1h-h12", *common])
    assert rb.exit_code == 2 and "no previous champion" in rb.output
    hist = runner.invoke(app, ["models", "history", "EURUSD/1h/12", *common])
    assert hist.exit_code == 0 and "manual: go" in hist.output
    assert runner.invoke(app, ["models", "promote", "nope", *common]).exit_code == 2
