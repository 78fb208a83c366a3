"""Table definitions. Times are epoch milliseconds (BigInteger): exact, portable, sortable."""

from __future__ import annotations

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
)

__all__ = ["NO_HORIZON", "candles", "drift_events", "forecasts", "metadata", "snapshots"]

metadata = MetaData()

candles = Table(
    "candles",
    metadata,
    Column("symbol", String(16), primary_key=True),
    Column("timeframe", String(8), primary_key=True),
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
    Column("symbol", String(16), primary_key=True),
    Column("timeframe", String(8), primary_key=True),
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
    Column("symbol", String(16), primary_key=True),
    Column("timeframe", String(8), primary_key=True),
    Column("ts_ms", BigInteger, primary_key=True),
    Column("detector", String(64), primary_key=True),
    Column("horizon", Integer, primary_key=True),
    Column("statistic", Float, nullable=False),
    Column("threshold", Float, nullable=False),
    Column("created_ms", BigInteger, nullable=False),
)

# Per-partition progress of a stateful consumer: the serialised state and the offset it
# reflects are written in one transaction, so a restart resumes exactly after it.
snapshots = Table(
    "state_snapshots",
    metadata,
    Column("consumer", String(64), primary_key=True),
    Column("topic", String(255), primary_key=True),
    Column("partition", Integer, primary_key=True),
    Column("offset", BigInteger, nullable=False),
    Column("state", Text, nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
    UniqueConstraint("consumer", "topic", "partition", name="uq_snapshot_key"),
)

from . import registry as _registry  # noqa: E402,F401  (register its tables)
