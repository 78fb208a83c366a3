"""``forexd models list --json`` writes strict JSON: a NaN or infinite metric is null.

Regression pinned: a version whose stored metrics held NaN (a hold-out score undefined) or
an infinity was listed as ``NaN``/``Infinity``, which is no JSON (jq and JSON.parse refuse
the line). ``models shadow --json`` already wrote null; both now share one helper.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from forex_diffusion.storage import make_engine
from forex_diffusion.storage.model_registry import ModelKey, ModelVersion, insert_version
from streams.cli import app

KEY = ModelKey(symbol="EURUSD", timeframe="1h", horizon=12)


def strict(line: str) -> Any:
    def refuse(name: str) -> None:
        raise ValueError(f"{name} is not JSON")

    return json.loads(line, parse_constant=refuse)


def test_models_list_json_writes_non_finite_metrics_as_null(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'reg.db'}"
    metrics = {
        "holdout": {"crps": math.nan, "skill": math.inf, "cover90": 0.9},
        "per_step": [1.0, -math.inf, math.nan],
    }
    insert_version(
        make_engine(db),
        ModelVersion(version="v-nan", key=KEY, artifact="x.pt", sha256="0" * 64, config_hash="c", metrics=metrics),
        now_ms=1_700_000_000_000,
    )
    res = CliRunner().invoke(app, ["models", "list", "--json", "--db", db, "--model-dir", str(tmp_path / "m")])
    assert res.exit_code == 0, res.output
    (row,) = [strict(line) for line in res.stdout.strip().splitlines()]
    assert row["version"] == "v-nan" and row["aliases"] == "challenger"
    assert row["metrics"] == {"holdout": {"crps": None, "skill": None, "cover90": 0.9}, "per_step": [1.0, None, None]}
    table = CliRunner().invoke(app, ["models", "list", "--db", db, "--model-dir", str(tmp_path / "m")])
    assert table.exit_code == 0 and "v-nan" in table.stdout  # the table still shows the row
