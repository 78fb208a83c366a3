"""A shadow version whose registry row holds any JSON under ``metrics.shadow``.

Review finding (after c9345d6, which made ``models list`` total over such rows): a
``required`` past SQLite's integers (``1e300``, ``10**30``, ``2**63``) raised
``OverflowError`` from the shadow-scores query and ``Infinity`` raised it from ``int()``:
``forexd models shadow`` ended in a traceback, and the worker's 15 s timer, whose
``ShadowLane.settle`` contains only the project's errors, let it out (a timer that raises
stops the worker). A ``since_ms`` that is no time raised ``TypeError`` (a traceback) or
``[Errno 75]`` in ``models shadow``. Now such a ``required`` is a version that never entered
shadow (``RegistryError``: settle logs it and goes on), and such a time shows as ``?``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from forex_diffusion.errors import RegistryError
from forex_diffusion.storage import make_engine
from forex_diffusion.storage.model_registry import ModelKey, ModelVersion, insert_version
from retraining.registry import ModelRegistry
from retraining.shadow_verdict import REQUIRED_MAX, shadow_state
from streams.cli import app

KEY = ModelKey(symbol="EURUSD", timeframe="1h", horizon=12)


def _registry(tmp_path: Path, shadow: Any) -> tuple[str, ModelRegistry]:
    """A registry holding one version in shadow whose ``metrics`` are ``{"shadow": shadow}``."""
    db = f"sqlite:///{tmp_path / 'reg.db'}"
    engine = make_engine(db)
    version = ModelVersion(version="v-row", key=KEY, artifact="x.pt", sha256="0" * 64, config_hash="c")
    insert_version(engine, version, now_ms=1_700_000_000_000)
    with engine.begin() as c:
        c.execute(
            sa.text("UPDATE model_versions SET metrics = :m, status = 'shadow'"), {"m": json.dumps({"shadow": shadow})}
        )
    return db, ModelRegistry(engine, tmp_path / "models")


@pytest.mark.parametrize("required", [1e300, 10**30, 2**63, REQUIRED_MAX + 1, float("inf"), float("-inf")])
def test_a_required_count_past_any_limit_is_a_version_never_in_shadow(tmp_path: Path, required: Any) -> None:
    _, reg = _registry(tmp_path, {"required": required})
    with pytest.raises(RegistryError, match="never entered shadow"):  # was OverflowError
        shadow_state(reg, "v-row")


@pytest.mark.parametrize("required", [1, 48, "48", 48.0, REQUIRED_MAX])
def test_a_required_count_a_worker_writes_is_read(tmp_path: Path, required: Any) -> None:
    _, reg = _registry(tmp_path, {"required": required})
    st = shadow_state(reg, "v-row")
    assert st.required == int(required) and st.state == "waiting" and st.realised == 0


@pytest.mark.parametrize(
    ("shadow", "since"),
    [
        ({"required": 5, "since_ms": "x"}, "?"),  # was TypeError, a traceback
        ({"required": 5, "since_ms": 1e20}, "?"),  # was 'error: [Errno 75] Value too large' (74)
        ({"required": 5, "since_ms": True}, "?"),
        ({"required": 5, "since_ms": 1_700_000_000_000}, "2023-11-14T22:13:20Z"),
        ({"required": 1e300}, None),  # was OverflowError, a traceback
    ],
)
def test_models_shadow_shows_a_row_of_any_shadow_metrics(tmp_path: Path, shadow: Any, since: str | None) -> None:
    db, _ = _registry(tmp_path, shadow)
    res = CliRunner().invoke(app, ["models", "shadow", "EURUSD/1h/12", "--db", db])
    if since is None:  # no count of forecasts: the command's one-line refusal
        assert res.exit_code not in (0, 1) and isinstance(res.exception, SystemExit), (res.output, res.exception)
        assert "never entered shadow" in res.output, res.output
        return
    assert res.exit_code == 0, (res.output, res.exception)
    assert f"since {since}  realised forecasts 0 of 5" in res.stdout, res.stdout
