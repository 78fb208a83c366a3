"""The project's exception tree.

Every error the project raises on purpose derives from :class:`ForexDiffusionError`::

    ForexDiffusionError
    ├── ConfigError              bad settings or parameters (raised at construction)
    │   ├── SettingsError          a ``FOREXD_*`` environment variable with a bad value
    │   └── StateError             a state snapshot refused: wrong kind or version, malformed
    ├── DataFormatError          a file or record that cannot be read at all
    │   └── InputNotFoundError     an input file that is missing or unreadable
    ├── ValidationError          one input record refused; carries a :class:`RejectReason`
    ├── StorageError
    │   ├── TransientStorageError   retried with backoff (locked, connection lost)
    │   ├── PermanentStorageError   never retried (integrity, schema, read-only)
    │   └── StaleOwnerError         a checkpoint of a partition claimed since by another worker
    ├── ModelError
    │   └── ArtifactError          a checkpoint refused (hash mismatch, pickle, corrupt)
    ├── RegistryError            an impossible registry operation (unknown version, ...)
    ├── OutputError              an output file that cannot be created
    └── ServiceUnavailableError  the broker or the database cannot be reached (with its address)

The ``forexd`` command line turns each branch into one line on standard error and a
documented exit status (``streams.cli.EXIT_CODES``).

Agents catch ``ForexDiffusionError`` per message (dead-letter, count, continue); anything
else is a bug and fails loudly.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any

__all__ = [
    "ArtifactError",
    "check_field_types",
    "ConfigError",
    "DataFormatError",
    "ForexDiffusionError",
    "InputNotFoundError",
    "ModelError",
    "OutputError",
    "PermanentStorageError",
    "RegistryError",
    "RejectReason",
    "ServiceUnavailableError",
    "SettingsError",
    "StaleOwnerError",
    "StateError",
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


class StaleOwnerError(StorageError):
    """A checkpoint refused: its partition was claimed since by a newer owner (fencing, issue 15).

    Never retried: the writer lost the partition; it drops the partition's state.
    """


class ModelError(ForexDiffusionError):
    """A model cannot be built, trained or used."""


class ArtifactError(ModelError):
    """A model artifact was refused: missing, corrupt, hash mismatch or unsafe content."""


class RegistryError(ForexDiffusionError):
    """An impossible model-registry operation."""


class SettingsError(ConfigError):
    """A ``FOREXD_*`` environment variable holds a value the settings refuse."""


class StateError(ConfigError):
    """A state snapshot that cannot be restored: another kind, an unknown version, a
    malformed layout, or one taken with other settings (see :mod:`forex_diffusion.state`)."""


class InputNotFoundError(DataFormatError):
    """An input file that does not exist or cannot be read."""


class OutputError(ForexDiffusionError):
    """An output file that cannot be created (missing directory, no permission)."""


class ServiceUnavailableError(ForexDiffusionError):
    """The broker or the database cannot be reached.

    ``service`` names it (``broker``, ``database``); ``address`` is where it was looked for,
    with any password already hidden.
    """

    def __init__(self, service: str, address: str, detail: str = "") -> None:
        self.service = service
        self.address = address
        self.detail = detail
        super().__init__(f"{service} unreachable at {address}" + (f" ({detail})" if detail else ""))


_PLAIN = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,)}


def check_field_types(cls: type, data: object, what: str) -> dict[str, Any]:
    """``data`` as the keyword arguments of the dataclass ``cls``, or :class:`ConfigError`.

    For configurations read from JSON (a file, an environment variable): ``data`` must be a
    mapping of ``cls``'s field names, and each field declared ``int``, ``float``, ``str`` or
    ``bool`` (or one of these ``| None``) must hold that type (``True`` is no number, ``1.5``
    no ``int``; a whole ``2e4`` is read as the ``int`` 20000 and ``0``/``1`` as a ``bool``, as
    JSON writes them); other fields are left to ``cls``. The message names ``what`` and the field.

    >>> from dataclasses import dataclass
    >>> @dataclass
    ... class C:
    ...     n: int
    ...     x: float | None = None
    >>> check_field_types(C, {"n": 3, "x": 1}, "C")
    {'n': 3, 'x': 1}
    >>> check_field_types(C, {"n": "3"}, "C")
    Traceback (most recent call last):
    ...
    forex_diffusion.errors.ConfigError: C: n must be int, got '3'
    """
    from dataclasses import fields

    if not isinstance(data, Mapping):
        raise ConfigError(f"{what} must be a JSON object of its fields, got {type(data).__name__}")
    known = {f.name: str(f.type) for f in fields(cls)}
    unknown = set(data) - set(known)
    if unknown:
        raise ConfigError(f"unknown {what} keys: {sorted(map(str, unknown))}")
    out = dict(data)
    for name, value in data.items():
        kind = known[name].removesuffix(" | None")
        if kind not in _PLAIN or (value is None and known[name].endswith(" | None")):
            continue
        if kind == "int" and isinstance(value, float) and value.is_integer():
            out[name] = value = int(value)  # JSON's 2e4: a whole number, read as before
        elif kind == "bool" and type(value) is int and value in (0, 1):
            out[name] = value = bool(value)  # 0 / 1, read as before
        if not isinstance(value, _PLAIN[kind]) or (kind != "bool" and isinstance(value, bool)):
            raise ConfigError(f"{what}: {name} must be {kind}, got {value!r:.40}")
    return out
