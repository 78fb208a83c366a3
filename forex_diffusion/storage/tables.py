"""Table definitions. Times are epoch milliseconds (BigInteger): exact, portable, sortable."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    event,
    inspect,
)
from sqlalchemy.exc import DBAPIError

__all__ = ["NO_HORIZON", "candles", "drift_events", "forecasts", "metadata", "snapshot_parts", "snapshots"]

metadata = MetaData()


def series_columns(*, primary_key: bool = True) -> tuple[Column[Any], Column[Any]]:
    """Fresh ``symbol`` and ``timeframe`` columns (a column belongs to one table): part of
    the primary key, or plain NOT NULL columns."""
    key: dict[str, Any] = {"primary_key": True} if primary_key else {"nullable": False}
    return Column("symbol", String(16), **key), Column("timeframe", String(8), **key)


def partition_columns() -> tuple[Column[Any], Column[Any], Column[Any]]:
    """Fresh ``consumer``, ``topic`` and ``partition`` key columns: a consumer's partition."""
    return (
        Column("consumer", String(64), primary_key=True),
        Column("topic", String(255), primary_key=True),
        Column("partition", Integer, primary_key=True),
    )


candles = Table(
    "candles",
    metadata,
    *series_columns(),
    Column("open_ms", BigInteger, primary_key=True),
    Column("close_ms", BigInteger, nullable=False),
    Column("open", Float, nullable=False),
    Column("high", Float, nullable=False),
    Column("low", Float, nullable=False),
    Column("close", Float, nullable=False),
    Column("volume", Float, nullable=False, default=0.0),
    Column("tick_count", Integer, nullable=False, default=0),
    Column("spread_mean", Float),
    Column("spread_min", Float),
    Column("spread_max", Float),
    Column("revision", Integer, nullable=False, default=0),
    Column("final", Boolean, nullable=False, default=True),
)

forecasts = Table(
    "forecasts",
    metadata,
    *series_columns(),
    Column("as_of_ms", BigInteger, primary_key=True),
    Column("horizon", Integer, primary_key=True),
    Column("model_version", String(64), primary_key=True),
    Column("payload", JSON, nullable=False),
    Column("created_ms", BigInteger, nullable=False),
)

#: ``drift_events.horizon`` of a detection on a signal without a horizon (feature drift):
#: a key column cannot be NULL, and horizons start at 1.
NO_HORIZON = 0

# The events the candle agent publishes on ``fx.drift`` (DESIGN.md), keyed by the series, the
# detector, the horizon and the event time, so a replay overwrites and never duplicates.
drift_events = Table(
    "drift_events",
    metadata,
    *series_columns(),
    Column("ts_ms", BigInteger, primary_key=True),
    Column("detector", String(64), primary_key=True),
    Column("horizon", Integer, primary_key=True),
    Column("statistic", Float, nullable=False),
    Column("threshold", Float, nullable=False),
    Column("created_ms", BigInteger, nullable=False),
)

# Per-partition progress of a stateful consumer: the offset processed last, the owner's
# epoch (fencing: a claim increments it, a write of an older owner is refused), and the
# fingerprint of the record at the offset (a reset log is told from the one checkpointed).
# The state lives in ``snapshot_parts``, one row per series, written with the offset in one
# transaction; ``state`` holds a whole state only in rows written before the parts existed
# (read as all parts, replaced by parts at the next checkpoint), else "".
snapshots = Table(
    "state_snapshots",
    metadata,
    *partition_columns(),
    Column("offset", BigInteger, nullable=False),
    Column("state", Text, nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
    Column("epoch", BigInteger, nullable=False, server_default="0"),
    Column("fingerprint", String(64)),
    UniqueConstraint("consumer", "topic", "partition", name="uq_snapshot_key"),
)

# One series' state of a partition's checkpoint (issue 15: a checkpoint writes the series it
# changed, not the whole partition).
snapshot_parts = Table(
    "snapshot_parts",
    metadata,
    *partition_columns(),
    Column("part", String(128), primary_key=True),
    Column("state", Text, nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
)

#: Columns added to ``state_snapshots`` after its first release: ``ALTER TABLE`` adds them to
#: a database created before (issue 15), at the ``create_all`` that every engine runs.
_ADDED_COLUMNS = (("epoch", "BIGINT NOT NULL DEFAULT 0"), ("fingerprint", "VARCHAR(64)"))


@event.listens_for(metadata, "after_create")
def _add_snapshot_columns(_target: Any, connection: Any, **_: Any) -> None:
    """Upgrade an existing ``state_snapshots`` table in place (idempotent, race tolerant)."""
    insp = inspect(connection)
    if not insp.has_table(snapshots.name):  # a create_all of other tables only
        return
    have = {c["name"] for c in insp.get_columns(snapshots.name)}
    for name, ddl in _ADDED_COLUMNS:
        if name in have:
            continue
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql(f"ALTER TABLE {snapshots.name} ADD COLUMN IF NOT EXISTS {name} {ddl}")
            continue
        try:
            connection.exec_driver_sql(f"ALTER TABLE {snapshots.name} ADD COLUMN {name} {ddl}")
        except DBAPIError as exc:  # another process added it since we looked
            if "duplicate column" not in str(exc.orig).lower():
                raise


from forex_diffusion.storage import model_registry as _registry  # noqa: E402,F401  (register its tables)
