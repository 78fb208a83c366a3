"""A retrain job's outcome is announced when the champion lookup after its decision fails.

Regression pinned: the job promotes its challenger (stored, in one transaction), then looks
up the serving champion its outcome names. A database error in that lookup made the job
report ``failed: storage`` although the promotion had been stored, so fx.models announced a
failure for a promoted version. As in the shadow lane (``shadow.champion_unresolved``), the
outcome now goes out with its real status and no champion named, and the failure is logged.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from forex_diffusion.errors import TransientStorageError
from forex_diffusion.storage import make_engine
from forex_diffusion.storage.model_registry import ModelKey, ModelVersion
from retraining.jobs import run_retrain
from retraining.registry import ModelRegistry

from .conftest import HORIZON, request, tiny_job

KEY = ModelKey(symbol="EURUSD", timeframe="1h", horizon=HORIZON)


class LookupFailsAfterPromotion(ModelRegistry):
    """A registry whose champion lookups fail with a database error once a version is promoted."""

    promoted = False

    def promote(self, version: str, reason: str, *, expect_status: str | None = None) -> ModelVersion:
        out = super().promote(version, reason, expect_status=expect_status)
        self.promoted = True
        return out

    def resolve_champion(self, symbol: str, timeframe: str, horizon: int) -> ModelVersion | None:
        if self.promoted:
            raise TransientStorageError("database is locked")
        return super().resolve_champion(symbol, timeframe, horizon)

    def champion(self, key: ModelKey) -> ModelVersion | None:
        if self.promoted:
            raise TransientStorageError("database is locked")
        return super().champion(key)


def test_a_promotion_is_announced_without_a_champion_when_the_lookup_after_it_fails(
    sqlite_db: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    engine = make_engine(sqlite_db)
    models = tmp_path / "models"
    reg = LookupFailsAfterPromotion(engine, models)
    with caplog.at_level(logging.WARNING, logger="retraining.jobs"):
        out = run_retrain(request("r1"), engine=engine, model_dir=models, config=tiny_job(), registry=reg)
    assert out.status == "promoted" and out.exit_code == 0, out.reason
    assert out.champion is None and out.version is not None
    stored = ModelRegistry(engine, models)
    champion = stored.champion(KEY)
    assert stored.get(out.version).status == "promoted" and champion is not None and champion.version == out.version
    (line,) = [r.getMessage() for r in caplog.records if "champion_unresolved" in r.getMessage()]
    assert "request=r1" in line and "status=promoted" in line and "TransientStorageError" in line
