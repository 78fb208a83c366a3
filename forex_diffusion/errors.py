"""The project's exception tree.

Every error the project raises on purpose derives from :class:`ForexDiffusionError`::

    ForexDiffusionError
    ├── ConfigError              bad settings or parameters (raised at construction)
    ├── DataFormatError          a file or record that cannot be read at all
    ├── ValidationError          one input record refused; carries a :class:`RejectReason`
    ├── StorageError
    │   ├── TransientStorageError   retried with backoff (locked, connection lost)
    │   └── PermanentStorageError   never retried (integrity, schema, read-only)
    ├── ModelError
    │   └── ArtifactError          a checkpoint refused (hash mismatch, pickle, corrupt)
    └── RegistryError            an impossible registry operation (unknown version, ...)

Agents catch ``ForexDiffusionError`` per message (dead-letter, count, continue); anything
else is a bug and fails loudly.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "ArtifactError",
    "ConfigError",
    "DataFormatError",
    "ForexDiffusionError",
    "ModelError",
    "PermanentStorageError",
    "RegistryError",
    "RejectReason",
    "StorageError",
    "TransientStorageError",
    "ValidationError",
]


class RejectReason(StrEnum):
    """Why an input record was refused; a fixed, bounded set (safe as a metric label)."""

    MALFORMED = "malformed"
    SCHEMA = "schema"
    SCHEMA_VERSION = "schema_version"
    NON_FINITE = "non_finite"
    NON_POSITIVE = "non_positive"
    CROSSED = "crossed"
    WIDE_SPREAD = "wide_spread"
    PRECISION = "precision"
    UNKNOWN_SYMBOL = "unknown_symbol"
    DUPLICATE = "duplicate"
    LATE = "late"
    FUTURE_TS = "future_ts"
    BAD_TS = "bad_ts"
    KEY_MISMATCH = "key_mismatch"
    OVERSIZE = "oversize"
    INCONSISTENT = "inconsistent"
    SPIKE_UNCONFIRMED = "spike_unconfirmed"
    OFF_HOURS = "off_hours"
    #: a retrain request for a model key (timeframe, horizon) outside the configuration
    UNKNOWN_KEY = "unknown_key"
    #: a retrain request refused because the worker's bounded job queue is full
    QUEUE_FULL = "queue_full"
    OUT_OF_RANGE = "out_of_range"
    """A value outside the bounds its field allows (magnitude, length, time range)."""
    INTERNAL = "internal"
    """An unexpected exception while handling the record (a bug); the error names its type."""


class ForexDiffusionError(Exception):
    """Root of every error this project raises on purpose."""


class ConfigError(ForexDiffusionError, ValueError):
    """Invalid configuration or parameters."""


class DataFormatError(ForexDiffusionError, ValueError):
    """A file or record layout that cannot be read."""


class ValidationError(ForexDiffusionError, ValueError):
    """One input record refused, with a reason code and a human-readable detail."""

    def __init__(self, reason: RejectReason, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason.value}: {detail}" if detail else reason.value)


class StorageError(ForexDiffusionError):
    """A database operation failed."""


class TransientStorageError(StorageError):
    """A database failure worth retrying (lock, lost connection, server restarting)."""


class PermanentStorageError(StorageError):
    """A database failure that retrying cannot fix."""


class ModelError(ForexDiffusionError):
    """A model cannot be built, trained or used."""


class ArtifactError(ModelError):
    """A model artifact was refused: missing, corrupt, hash mismatch or unsafe content."""


class RegistryError(ForexDiffusionError):
    """An impossible model-registry operation."""
