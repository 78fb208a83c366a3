"""Storage: SQLAlchemy tables and repository functions (SQLite file by default, PostgreSQL by URL).

Every sink is keyed, so a replay or a redelivery overwrites and never duplicates.
Transient database errors are retried with bounded, jittered exponential backoff
(tenacity); permanent ones are raised at once.
"""

from __future__ import annotations

from forex_diffusion.storage.engine import make_engine, sqlite_url
from forex_diffusion.storage.repository import (
    Checkpoint,
    claim_progress,
    count_candles,
    fetch_candles,
    fetch_drift_events,
    fetch_forecasts,
    load_snapshot,
    save_progress,
    upsert_candles,
    upsert_drift_events,
    upsert_forecasts,
)
from forex_diffusion.storage.retry import classify, db_retry, is_transient
from forex_diffusion.storage.tables import (
    NO_HORIZON,
    candles,
    drift_events,
    forecasts,
    metadata,
    snapshot_parts,
    snapshots,
)

__all__ = [
    "NO_HORIZON",
    "Checkpoint",
    "candles",
    "claim_progress",
    "classify",
    "count_candles",
    "db_retry",
    "drift_events",
    "fetch_candles",
    "fetch_drift_events",
    "fetch_forecasts",
    "forecasts",
    "is_transient",
    "load_snapshot",
    "make_engine",
    "metadata",
    "save_progress",
    "snapshot_parts",
    "snapshots",
    "sqlite_url",
    "upsert_candles",
    "upsert_drift_events",
    "upsert_forecasts",
]
