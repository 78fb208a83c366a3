"""``forexd models list`` over registry rows holding any JSON in their metrics.

A row written by hand or by another program may hold a list, a string or a number where the
registry writes an object. Before, ``list`` and ``get`` of the registry raised on such a row
(``dict([1, 2])``: every lookup of the key failed), and the listing raised on a hold-out
that was no object or a ``symbols`` that was no list, and echoed a string score as given
(terminal escapes included).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from forex_diffusion.storage import make_engine
from forex_diffusion.storage.model_registry import ModelKey, ModelVersion, get_version, insert_version
from streams.cli import app

KEY = ModelKey(symbol="EURUSD", timeframe="1h", horizon=12)


@pytest.mark.parametrize(
    "metrics",
    [
        [1, 2],
        "text",
        7,
        None,
        {"holdout": [1, 2]},
        {"holdout": {"crps": "\x1b[2J", "skill": [1], "cover90": True}},
        {"symbols": 5},
        {"symbols": "EURUSD"},
        {"symbols": [["EURUSD"]]},
    ],
)
def test_models_list_shows_a_row_of_any_metrics_and_the_registry_reads_it(tmp_path: Path, metrics: Any) -> None:
    db = f"sqlite:///{tmp_path / 'reg.db'}"
    engine = make_engine(db)
    version = ModelVersion(version="v-row", key=KEY, artifact="x.pt", sha256="0" * 64, config_hash="c")
    insert_version(engine, version, now_ms=1_700_000_000_000)
    with engine.begin() as c:
        c.execute(sa.text("UPDATE model_versions SET metrics = :m"), {"m": json.dumps(metrics)})
    got = get_version(engine, "v-row")
    assert got is not None and isinstance(got.metrics, dict)
    res = CliRunner().invoke(app, ["models", "list", "--db", db])
    assert res.exit_code == 0, (res.output, res.exception)
    row = [ln for ln in res.stdout.splitlines() if ln.startswith("v-row")]
    assert len(row) == 1 and "\x1b" not in res.stdout, res.stdout
    if isinstance(metrics, dict) and "symbols" in metrics:
        assert "symbols=(malformed)" in row[0]
