"""Model registry tables and their transactional repository functions.

Four tables on the project's :data:`~forex_diffusion.storage.tables.metadata`:

``model_versions``
    One row per trained model version: key, artifact path (relative to the model
    directory), manifest sha256, config hash, training data window, metrics (JSON),
    status (``registered``, ``shadow``, ``promoted``, ``rejected``, ``rolled_back``, ``deleted``).
``model_aliases``
    The version pointers: ``(model_key, alias) -> version`` with alias ``champion``,
    ``challenger`` or ``shadow``. Promoting is updating one row.
``model_alias_history``
    Every pointer change: alias, key, version, ``from_ms``, ``to_ms`` (None while current),
    reason.
``shadow_scores``
    The realised live forecasts of a version in shadow, each beside the champion's on the
    same origin (issue 16).

Every write function here is ONE transaction: a crash (or a failed statement) leaves
either all of its effects or none. Artifact checks (does the file load?) are the caller's
job (:mod:`retraining.registry`); the functions that move an alias take a ``usable``
predicate and call it inside the transaction, so an alias never moves to a version the
caller cannot load.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any, Literal

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Connection,
    Engine,
    Float,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    and_,
    case,
    cast,
    func,
    inspect,
    select,
    type_coerce,
    update,
)
from sqlalchemy import types as sqltypes
from sqlalchemy.dialects import postgresql, sqlite

from forex_diffusion.domain import field_dict
from forex_diffusion.errors import ConfigError, DataFormatError, RegistryError
from forex_diffusion.storage.retry import db_retry
from forex_diffusion.storage.tables import forecasts, metadata, series_columns

__all__ = [
    "ALIASES",
    "STATUSES",
    "AliasChange",
    "ModelKey",
    "ModelVersion",
    "alias_history",
    "check_registry_schema",
    "get_aliases",
    "get_version",
    "insert_version",
    "list_versions",
    "mark_deleted",
    "model_alias_history",
    "model_aliases",
    "model_versions",
    "previous_champion",
    "promote_version",
    "referenced_versions",
    "reject_version",
    "row_names",
    "rollback_champion",
    "SHADOW_COLUMNS",
    "insert_shadow_scores",
    "read_shadow_scores",
    "shadow_scores",
    "start_shadow",
]

logger = logging.getLogger(__name__)

Status = Literal["registered", "shadow", "promoted", "rejected", "rolled_back", "deleted"]
Alias = Literal["champion", "challenger", "shadow"]
#: Version statuses.
STATUSES: tuple[str, ...] = ("registered", "shadow", "promoted", "rejected", "rolled_back", "deleted")
#: Alias names.
ALIASES: tuple[str, ...] = ("champion", "challenger", "shadow")

model_versions = Table(
    "model_versions",
    metadata,
    Column("version", String(64), primary_key=True),
    Column("model_key", String(64), nullable=False, index=True),
    *series_columns(primary_key=False),
    Column("horizon", Integer, nullable=False),
    Column("artifact", Text, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("config_hash", String(64), nullable=False),
    Column("data_first_ms", BigInteger),
    Column("data_last_ms", BigInteger),
    Column("metrics", JSON, nullable=False),
    Column("status", String(16), nullable=False),
    Column("reason", Text, nullable=False),
    Column("request_id", String(64)),
    Column("created_ms", BigInteger, nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
)

model_aliases = Table(
    "model_aliases",
    metadata,
    Column("model_key", String(64), primary_key=True),
    Column("alias", String(16), primary_key=True),
    Column("version", String(64), nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
)

model_alias_history = Table(
    "model_alias_history",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("alias", String(16), nullable=False),
    Column("model_key", String(64), nullable=False, index=True),
    Column("version", String(64), nullable=False),
    Column("from_ms", BigInteger, nullable=False),
    Column("to_ms", BigInteger),
    Column("reason", Text, nullable=False),
)

#: One row per realised forecast origin of a version in shadow (issue 16): its CRPS and the
#: serving champion's on the same origin and realised closes (means over the horizon's
#: steps), with the random walk's. Keyed by (version, as_of_ms): a replayed origin is
#: inserted once. Written in the candle agent's checkpoint transaction.
shadow_scores = Table(
    "shadow_scores",
    metadata,
    Column("version", String(64), primary_key=True),
    Column("as_of_ms", BigInteger, primary_key=True),
    Column("model_key", String(64), nullable=False, index=True),
    Column("champion_version", String(64), nullable=False),
    Column("steps", Integer, nullable=False),
    Column("crps", Float, nullable=False),
    Column("champion_crps", Float, nullable=False),
    Column("rw_crps", Float, nullable=False),
    Column("cover90", Float, nullable=False),
    Column("champion_cover90", Float, nullable=False),
    Column("realised_ms", BigInteger, nullable=False),
)
#: Columns of a ``shadow_scores`` row, in order.
SHADOW_COLUMNS: tuple[str, ...] = (
    "version",
    "as_of_ms",
    "model_key",
    "champion_version",
    "steps",
    "crps",
    "champion_crps",
    "rw_crps",
    "cover90",
    "champion_cover90",
    "realised_ms",
)

# Whole-string patterns, used with ``fullmatch`` (``$`` would accept a trailing newline)
# and ASCII classes (``\d`` would accept any Unicode digit).
_SYMBOL = re.compile(r"\*|[A-Z0-9]{2,16}")
_TIMEFRAME = re.compile(r"[0-9]{1,7}[a-zA-Z]{1,7}")  # the timeframe column is String(8)
#: Largest horizon (nine digits): fits the Integer column, and parse never converts a
#: longer digit run (``int()`` of over 4300 digits raises ValueError).
_HORIZON_DIGITS = 9
_HORIZON_MAX = 10**_HORIZON_DIGITS - 1
_KEY_SLASH = re.compile(r"([^/]+)/([^/]+)/h?([0-9]+)")
_KEY_DASH = re.compile(r"([^-]+)-([^-]+)-h([0-9]+)")


def _shown(text: str, limit: int = 40) -> str:
    """``repr(text)``, cut to about ``limit`` characters (an error message stays one short line)."""
    return repr(text) if len(text) <= limit else f"{text[:limit]!r}... ({len(text)} characters)"


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelKey:
    """The key a model serves: symbol (or ``*`` for every symbol), timeframe, horizon.

    Its text form is ``SYMBOL/timeframe/horizon`` (the retrain requests' key);
    :meth:`parse` also reads the checkpoint form ``SYMBOL-timeframe-hH``.

    >>> k = ModelKey.parse("EURUSD-1h-h24")
    >>> str(k), k.dir_name
    ('EURUSD/1h/24', 'EURUSD-1h-h24')
    >>> ModelKey.parse("*/1h/24").dir_name
    'ANY-1h-h24'
    """

    symbol: str
    timeframe: str
    horizon: int

    def __post_init__(self) -> None:
        if not isinstance(self.symbol, str) or not self.symbol.isascii():
            raise ConfigError(f"bad model key symbol {_shown(str(self.symbol))}")
        object.__setattr__(self, "symbol", self.symbol.upper())
        if not _SYMBOL.fullmatch(self.symbol):
            raise ConfigError(f"bad model key symbol {_shown(self.symbol)}")
        if not isinstance(self.timeframe, str) or not _TIMEFRAME.fullmatch(self.timeframe):
            raise ConfigError(f"bad model key timeframe {_shown(str(self.timeframe))}")
        if not isinstance(self.horizon, int) or isinstance(self.horizon, bool) or not 1 <= self.horizon <= _HORIZON_MAX:
            raise ConfigError(f"model key horizon must be an int in 1..{_HORIZON_MAX}, got {self.horizon!r}")

    def __str__(self) -> str:
        return f"{self.symbol}/{self.timeframe}/{self.horizon}"

    @property
    def dir_name(self) -> str:
        """Directory of its artifacts under the model directory (``*`` becomes ``ANY``)."""
        sym = "ANY" if self.symbol == "*" else self.symbol
        return f"{sym}-{self.timeframe}-h{self.horizon}"

    @property
    def is_symbol_set(self) -> bool:
        """Whether this is a global model's key (symbol ``SETxxxxxxxx``, a symbol set's hash)."""
        from forex_diffusion.instruments import is_symbol_set_key

        return is_symbol_set_key(self.symbol)

    @classmethod
    def for_symbols(cls, symbols: Iterable[str], timeframe: str, horizon: int) -> ModelKey:
        """The key of a global model over ``symbols`` (the set's hash, see
        :func:`~forex_diffusion.instruments.symbol_set_key`).

        >>> k = ModelKey.for_symbols(["GBPUSD", "EURUSD"], "1d", 10)
        >>> k.is_symbol_set, k == ModelKey.for_symbols(["EURUSD", "GBPUSD"], "1d", 10)
        (True, True)
        """
        from forex_diffusion.instruments import symbol_set_key

        return cls(symbol=symbol_set_key(symbols), timeframe=timeframe, horizon=horizon)

    @classmethod
    def parse(cls, text: str) -> ModelKey:
        """Read ``SYMBOL/tf/H`` or ``SYMBOL-tf-hH``.

        Raises
        ------
        ConfigError
            Any other text, a horizon of more than nine digits, or a part the key refuses.

        >>> ModelKey.parse("EURUSD/1h/0024")
        ModelKey(symbol='EURUSD', timeframe='1h', horizon=24)
        """
        t = text.strip()
        m = _KEY_SLASH.fullmatch(t) or _KEY_DASH.fullmatch(t)
        if m is None:
            raise ConfigError(f"bad model key {_shown(text)}: expected SYMBOL/timeframe/horizon")
        digits = m.group(3).lstrip("0") or "0"
        if len(digits) > _HORIZON_DIGITS:
            raise ConfigError(f"bad model key {_shown(text)}: the horizon must be at most {_HORIZON_MAX}")
        sym = "*" if m.group(1).upper() == "ANY" else m.group(1)
        return cls(symbol=sym, timeframe=m.group(2), horizon=int(digits))


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelVersion:
    """One registry row (``model_versions``)."""

    version: str
    key: ModelKey
    artifact: str
    sha256: str
    config_hash: str
    data_first_ms: int | None = None
    data_last_ms: int | None = None
    metrics: Mapping[str, Any] = field(default_factory=dict)
    status: Status = "registered"
    reason: str = ""
    request_id: str | None = None
    created_ms: int = 0
    updated_ms: int = 0

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ConfigError(f"status must be one of {STATUSES}, not {self.status!r}")
        if not isinstance(self.version, str) or not 1 <= len(self.version) <= 64 or not self.version.isprintable():
            # printable: a version is shown on terminals (no escapes, no bidirectional overrides)
            raise ConfigError(f"bad version id {_shown(str(self.version))}")

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-able form."""
        return {**_plain_record(self), "metrics": dict(self.metrics)}


@dataclass(frozen=True, slots=True, kw_only=True)
class AliasChange:
    """One ``model_alias_history`` row: ``alias`` of ``key`` pointed at ``version`` in ``[from_ms, to_ms)``."""

    alias: str
    key: ModelKey
    version: str
    from_ms: int
    to_ms: int | None
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-able form."""
        return _plain_record(self)


def _plain_record(rec: ModelVersion | AliasChange) -> dict[str, Any]:
    """A registry record's JSON-able form: its fields in order, the model key as its text."""
    return {**field_dict(rec), "key": str(rec.key)}


# -- reading rows that anyone may have written ----------------------------------------------
#
# A registry row may have been written by hand or by another program: SQLite keeps any value
# in any column (text in an integer column, bytes that are not UTF-8, a REAL for 2**70), and a
# table may even have been created with other column types. Every read here selects the raw
# values (:func:`_raw_columns`: on SQLite a text value comes back as its bytes, so one that is
# not UTF-8 no longer fails the whole query; on PostgreSQL every value comes back as text, so
# the driver never decodes a JSON value itself) and decodes them in Python, column by column:
#
# - ``metrics`` that are not a JSON object of at most :data:`METRICS_MAX_CHARS` characters and
#   :data:`METRICS_MAX_DEPTH` levels (not JSON, not UTF-8, a 5,000-digit number, nested too
#   deep) read as no metrics, as any other non-object JSON always did;
# - the informational columns (data window, request id, reason) read as absent;
# - any other column that holds no value of its kind makes the row unreadable: a listing
#   leaves it out (one warning per row), a lookup by id raises :class:`RegistryError` naming
#   the problem, and nothing is decided on it.

#: Longest ``metrics`` text read (the registry writes a few kilobytes).
METRICS_MAX_CHARS = 1 << 20
#: Deepest nesting of ``metrics`` read (the registry writes three levels).
METRICS_MAX_DEPTH = 32
#: Range of the BigInteger columns.
_INT64 = (-(2**63), 2**63 - 1)
_DECIMAL = re.compile(r"-?[0-9]{1,20}")
#: (database, what, row, problem) already logged: a listing a worker repeats says each once.
_SAID: set[tuple[str, ...]] = set()
_SAID_MAX = 10_000


class _Unreadable(Exception):
    """A column of a registry row holds no value of its kind (internal)."""


def _raw_columns(conn: Connection, table: Table, *names: str) -> list[Any]:
    """Select-list entries returning ``table``'s columns (all, or ``names``) as raw driver values,
    labelled with the column names: never decoded by the driver or by SQLAlchemy's types."""
    sqlite_db = conn.dialect.name == "sqlite"
    out = []
    for c in table.columns if not names else [table.c[n] for n in names]:
        # SQLite: a TEXT value as its bytes (pysqlite fails the fetch of text that is not
        # UTF-8); others (INTEGER, REAL, BLOB, NULL) as they are. Elsewhere: the value's text.
        expr = case((func.typeof(c) == "text", cast(c, LargeBinary)), else_=c) if sqlite_db else cast(c, Text)
        out.append(type_coerce(expr, sqltypes.NullType()).label(c.name))
    return out


def _as_text(value: Any, name: str) -> str:
    """A raw value as text (bytes must be UTF-8)."""
    if isinstance(value, bytes | bytearray | memoryview):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            raise _Unreadable(f"{name} is not UTF-8 text") from None
    if isinstance(value, str):
        return value
    raise _Unreadable(f"{name} is not text" if value is not None else f"{name} is NULL")


def _text(value: Any, name: str, *, max_len: int = 64) -> str:
    """A raw value of a text column: UTF-8, at most ``max_len`` characters, printable (it is
    shown on terminals: no escapes, no bidirectional overrides)."""
    text = _as_text(value, name)
    if len(text) > max_len:
        raise _Unreadable(f"{name} is over {max_len} characters")
    if not text.isprintable():
        raise _Unreadable(f"{name} {_shown(text)} holds control characters")
    return text


def _int(value: Any, name: str, *, lo: int = _INT64[0], hi: int = _INT64[1]) -> int:
    """A raw value of an integer column: an integer (or its decimal text) in ``lo..hi``; a
    REAL (``24.5``, or the 1.2e21 SQLite keeps for 2**70), a boolean or other text is none."""
    if isinstance(value, bytes | bytearray | memoryview | str):
        text = _as_text(value, name).strip()
        if not _DECIMAL.fullmatch(text):
            raise _Unreadable(f"{name} {_shown(text)} is not an integer")
        value = int(text)
    if value is None:
        raise _Unreadable(f"{name} is NULL")
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Unreadable(f"{name} {_shown(repr(value))} is not an integer")
    if not lo <= value <= hi:
        raise _Unreadable(f"{name} {value} is outside {lo}..{hi}")
    return value


def _float(value: Any, *, text: bool = False) -> float:
    """A raw value of a REAL column as a float; NaN when it is none (text, NULL, bytes: a
    score is stored as a number; SQLite keeps a number written as text as a REAL, so text read
    back is none, and a blob ``b'0'`` read as 0 let a hand-written row promote a shadow).

    ``text``: the value is the column's text (PostgreSQL, where :func:`_raw_columns` casts
    every column to text and a ``double precision`` column holds numbers only): a decimal
    number's text is read (``NaN`` and ``Infinity`` read as such, then refused by the
    caller's bounds). Before, every score read back from PostgreSQL was NaN, and every shadow
    there was rejected ``shadow_invalid``."""
    if text and isinstance(value, str):
        if not _REAL_TEXT.fullmatch(value):
            return math.nan
        return float(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return math.nan
    try:
        return float(value)
    except OverflowError:  # an integer past the floats
        return math.nan


def _depth(obj: Any) -> int:
    """Nesting depth of a decoded JSON value, counted up to just past :data:`METRICS_MAX_DEPTH`
    (iteratively: a deep value does not recurse)."""
    deepest, stack = 0, [(obj, 1)]
    while stack:
        x, d = stack.pop()
        if isinstance(x, dict | list):
            deepest = max(deepest, d)
            if d <= METRICS_MAX_DEPTH:
                stack.extend((v, d + 1) for v in (x.values() if isinstance(x, dict) else x))
    return deepest


def _metrics(value: Any) -> tuple[dict[str, Any], str | None]:
    """A raw ``metrics`` value as ``(metrics, problem)``: the JSON object it holds, else ``{}``
    and why (no problem for JSON that is no object: a number, a list, NULL)."""
    if value is None or isinstance(value, int | float):  # SQLite's NUMERIC affinity keeps '5' as 5
        return {}, None
    try:
        text = _as_text(value, "metrics")
    except _Unreadable as exc:
        return {}, str(exc)
    if len(text) > METRICS_MAX_CHARS:
        return {}, f"metrics over {METRICS_MAX_CHARS} characters"
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError) as exc:  # not JSON, a 5,000-digit number, nested too deep
        return {}, f"metrics are not JSON ({type(exc).__name__})"
    if not isinstance(obj, dict):
        return {}, None
    if _depth(obj) > METRICS_MAX_DEPTH:
        return {}, f"metrics nested over {METRICS_MAX_DEPTH} levels"
    return obj, None


def _text_or_none(value: Any) -> str | None:
    """A raw value as text (:func:`_as_text`), or None when it is none."""
    try:
        return _as_text(value, "value")
    except _Unreadable:
        return None


def _optional(decode: Callable[[], Any]) -> Any:
    """An informational column's value, else None."""
    try:
        return decode()
    except _Unreadable:
        return None


def _artifact(value: Any) -> str:
    """A raw ``artifact``: the relative path of a ``.pt`` file that stays under the model directory."""
    text = _text(value, "artifact", max_len=4096)
    path = PurePosixPath(text)
    if path.is_absolute() or ".." in path.parts or "\\" in text or path.suffix != ".pt":
        raise _Unreadable(f"artifact {_shown(text)} is not a relative .pt path under the model directory")
    return text


def _decode_version(r: Any) -> tuple[ModelVersion, str | None]:
    """A raw ``model_versions`` row as ``(version, why its metrics read as none or None)``.

    Raises
    ------
    _Unreadable
        A column makes the row unreadable.
    """
    m = r._mapping
    version = _text(m["version"], "version")
    model_key = _as_text(m["model_key"], "model_key")
    try:
        key = ModelKey(
            symbol=_text(m["symbol"], "symbol", max_len=16),
            timeframe=_text(m["timeframe"], "timeframe", max_len=8),
            horizon=_int(m["horizon"], "horizon", lo=1, hi=_HORIZON_MAX),
        )
    except ConfigError as exc:
        raise _Unreadable(str(exc)) from None
    if str(key) != model_key:
        raise _Unreadable(f"model_key {_shown(model_key)} is not its symbol/timeframe/horizon {key}")
    status = _text(m["status"], "status", max_len=16)
    if status not in STATUSES:
        raise _Unreadable(f"status {_shown(status)} is none of {', '.join(STATUSES)}")
    metrics, problem = _metrics(m["metrics"])
    reason = _text_or_none(m["reason"])
    v = ModelVersion(
        version=version,
        key=key,
        artifact=_artifact(m["artifact"]),
        sha256=_text(m["sha256"], "sha256"),
        config_hash=_text(m["config_hash"], "config_hash"),
        data_first_ms=_optional(lambda: _int(m["data_first_ms"], "data_first_ms")),
        data_last_ms=_optional(lambda: _int(m["data_last_ms"], "data_last_ms")),
        metrics=metrics,
        status=status,  # type: ignore[arg-type]  # one of STATUSES, checked above
        reason=reason if reason is not None else "",
        request_id=_optional(lambda: _text(m["request_id"], "request_id")),
        created_ms=_int(m["created_ms"], "created_ms"),
        updated_ms=_int(m["updated_ms"], "updated_ms"),
    )
    return v, problem


def _said_once(conn: Connection, *parts: str) -> bool:
    """True the first time ``parts`` are said of ``conn``'s database in this process."""
    item = (str(conn.engine.url), *parts)
    if item in _SAID:
        return False
    if len(_SAID) >= _SAID_MAX:
        _SAID.clear()
    _SAID.add(item)
    return True


def _row_id(r: Any, column: str = "version") -> str:
    """A raw row's id as a log line shows it (bounded, escaped)."""
    value = r._mapping[column]
    try:
        return _shown(_as_text(value, column))
    except _Unreadable:
        return _shown(repr(value))


def _read_versions(conn: Connection, q: Any) -> list[ModelVersion]:
    """The readable ``model_versions`` rows of ``q`` (a select of :func:`_raw_columns`): each
    unreadable one is left out, and logged once, as is each one whose metrics read as none."""
    out = []
    for r in conn.execute(q):
        try:
            v, problem = _decode_version(r)
        except _Unreadable as exc:
            if _said_once(conn, "model_versions", _row_id(r), str(exc)):
                logger.warning(
                    "registry.row_unreadable table=model_versions version=%s problem=%s: the row is ignored",
                    _row_id(r),
                    exc,
                )
            continue
        if problem is not None and _said_once(conn, "metrics", v.version, problem):
            logger.warning(
                "registry.metrics_unreadable version=%s problem=%s: read as no metrics", _shown(v.version), problem
            )
        out.append(v)
    return out


def _get(conn: Connection, version: str, *, lock: bool = False) -> ModelVersion | None:
    """``version``'s row, or None when there is none.

    Raises
    ------
    RegistryError
        The row is unreadable (the message names the column and the problem).
    """
    q = select(*_raw_columns(conn, model_versions)).where(model_versions.c.version == version)
    if lock:
        q = q.with_for_update()
    row = conn.execute(q).first()
    if row is None:
        return None
    try:
        return _decode_version(row)[0]
    except _Unreadable as exc:
        raise RegistryError(
            f"version {_shown(version)}: its registry row is unreadable ({exc}); fix or delete the row"
        ) from None


def _exists(conn: Connection, version: str) -> bool:
    """Whether a row of ``version`` exists, readable or not."""
    q = select(func.count()).select_from(model_versions).where(model_versions.c.version == version)
    return bool(conn.execute(q).scalar_one())


def _get_locked(conn: Connection, version: str) -> ModelVersion:
    """Return ``version``'s row locked for this transaction (``RegistryError`` when unknown or unreadable)."""
    v = _get(conn, version, lock=True)
    if v is None:
        shown = repr(version[:80]) if version.strip() else "(empty)"
        raise RegistryError(f"unknown version {shown}: see `forexd models list` for the versions")
    return v


def _version_id(value: Any) -> str | None:
    """A raw version id (of an alias or history row), or None when it is no readable one."""
    try:
        return _text(value, "version")
    except _Unreadable:
        return None


def _alias(conn: Connection, key: ModelKey, alias: str, *, lock: bool = False) -> str | None:
    """The version ``alias`` of ``key`` names, or None (also when the row names no readable
    version id: moving the alias replaces that row)."""
    a = model_aliases
    q = select(*_raw_columns(conn, a, "version")).where(a.c.model_key == str(key), a.c.alias == alias)
    if lock:
        q = q.with_for_update()
    row = conn.execute(q).first()
    return None if row is None else _version_id(row.version)


def _set_status(conn: Connection, version: str, status: str, reason: str, now_ms: int) -> None:
    conn.execute(
        update(model_versions)
        .where(model_versions.c.version == version)
        .values(status=status, reason=reason, updated_ms=now_ms)
    )


def _point(conn: Connection, key: ModelKey, alias: str, version: str | None, reason: str, now_ms: int) -> None:
    """Move (or with ``version=None`` drop) an alias and record the change in the history."""
    h = model_alias_history
    conn.execute(
        update(h).where(h.c.model_key == str(key), h.c.alias == alias, h.c.to_ms.is_(None)).values(to_ms=now_ms)
    )
    conn.execute(model_aliases.delete().where(model_aliases.c.model_key == str(key), model_aliases.c.alias == alias))
    if version is None:
        return
    conn.execute(model_aliases.insert().values(model_key=str(key), alias=alias, version=version, updated_ms=now_ms))
    conn.execute(
        h.insert().values(alias=alias, model_key=str(key), version=version, from_ms=now_ms, to_ms=None, reason=reason)
    )


def _previous_champion(conn: Connection, key: ModelKey) -> ModelVersion | None:
    """The last champion of ``key`` before the current one that a rollback may restore: a
    readable row of this key, neither rolled back nor deleted. A history row naming no
    readable version, or a version whose row is unreadable or of another key, is passed over
    (logged once): a rollback never restores what it cannot read."""
    current = _alias(conn, key, "champion")
    h = model_alias_history
    rows = conn.execute(
        select(*_raw_columns(conn, h, "version"))
        .where(h.c.model_key == str(key), h.c.alias == "champion", h.c.to_ms.is_not(None))
        .order_by(h.c.id.desc())
    ).all()
    for r in rows:
        version = _version_id(r.version)
        if version is None or version == current:
            continue
        try:
            v = _get(conn, version)
        except RegistryError as exc:
            if _said_once(conn, "previous", version, str(exc)):
                logger.warning("registry.previous_champion_skipped key=%s version=%s: %s", key, _shown(version), exc)
            continue
        if v is not None and v.key != key:
            if _said_once(conn, "previous-key", version, str(v.key)):
                logger.warning(
                    "registry.previous_champion_skipped key=%s version=%s: the row is of key %s",
                    key,
                    _shown(version),
                    v.key,
                )
            continue
        if v is not None and v.status not in ("rolled_back", "deleted"):
            return v
    return None


def _storable(metrics: Mapping[str, Any], version: str) -> dict[str, Any]:
    """``metrics`` as JSON every database stores and the registry reads back: non-finite
    numbers as null (PostgreSQL's ``json`` refuses ``NaN`` and ``Infinity``; an undefined
    score is one), keys as text.

    Raises
    ------
    RegistryError
        Metrics nested deeper than :data:`METRICS_MAX_DEPTH` (they would read back as none),
        or holding a value JSON cannot write (a 5,000-digit integer).
    """
    if _depth(dict(metrics)) > METRICS_MAX_DEPTH:
        raise RegistryError(f"version {_shown(version)}: its metrics are nested over {METRICS_MAX_DEPTH} levels")
    try:  # one pass of the C encoder and decoder (no Python recursion): NaN, Infinity -> null
        out = json.loads(json.dumps(metrics, default=str), parse_constant=lambda _: None)
    except (ValueError, TypeError, RecursionError) as exc:
        raise RegistryError(f"version {_shown(version)}: its metrics cannot be stored ({type(exc).__name__})") from None
    return out if isinstance(out, dict) else {}


@db_retry
def insert_version(engine: Engine, version: ModelVersion, *, challenger: bool = True, now_ms: int) -> ModelVersion:
    """Insert a ``registered`` version (and point ``challenger`` at it) in one transaction."""
    row = version.to_dict()
    row.pop("key")
    row["metrics"] = _storable(row["metrics"], version.version)  # a NaN score (undefined skill) is stored as null
    row.update(
        model_key=str(version.key),
        symbol=version.key.symbol,
        timeframe=version.key.timeframe,
        horizon=version.key.horizon,
        status="registered",
        created_ms=now_ms,
        updated_ms=now_ms,
    )
    with engine.begin() as conn:
        if _exists(conn, version.version):  # readable or not: its id is taken
            raise RegistryError(f"version {version.version} is already registered")
        conn.execute(model_versions.insert().values(**row))
        if challenger:
            _point(conn, version.key, "challenger", version.version, "registered", now_ms)
        out = _get(conn, version.version)
    assert out is not None
    logger.info("registry registered version=%s key=%s", version.version, version.key)
    return out


@db_retry
def get_version(engine: Engine, version: str) -> ModelVersion | None:
    """Return one version row, or None.

    Raises
    ------
    RegistryError
        The row is unreadable (see :func:`_decode_version`); the message names the problem.
    """
    with engine.connect() as conn:
        return _get(conn, version)


@db_retry
def list_versions(engine: Engine, key: ModelKey | None = None, *, include_deleted: bool = True) -> list[ModelVersion]:
    """Versions (of one key, or all), oldest first. An unreadable row is left out (logged once)."""
    mv = model_versions
    with engine.connect() as conn:
        q = select(*_raw_columns(conn, mv))
        if key is not None:
            q = q.where(mv.c.model_key == str(key))
        if not include_deleted:
            q = q.where(mv.c.status != "deleted")
        q = q.order_by(mv.c.model_key, mv.c.created_ms, mv.c.version)
        return _read_versions(conn, q)


@db_retry
def row_names(engine: Engine, key: ModelKey, *, include_deleted: bool = False) -> set[str]:
    """The version ids and artifact file stems of every row of ``key``, readable or not (each
    column that can be read): the files no row names are the ones :meth:`recover
    <retraining.registry.ModelRegistry.recover>` may remove. A row whose status reads
    ``deleted`` counts only with ``include_deleted``."""
    mv = model_versions
    out: set[str] = set()
    with engine.connect() as conn:
        q = select(*_raw_columns(conn, mv, "version", "artifact", "status")).where(mv.c.model_key == str(key))
        for r in conn.execute(q):
            if not include_deleted and _text_or_none(r.status) == "deleted":
                continue
            version, artifact = _text_or_none(r.version), _text_or_none(r.artifact)
            out |= {x for x in (version, artifact and PurePosixPath(artifact).stem) if x}
    return out


@db_retry
def get_aliases(engine: Engine, key: ModelKey) -> dict[str, str]:
    """Return ``{alias: version}`` of one key. A row naming an alias the registry does not
    know, or no readable version id, is left out (logged once)."""
    a = model_aliases
    with engine.connect() as conn:
        rows = conn.execute(select(*_raw_columns(conn, a, "alias", "version")).where(a.c.model_key == str(key)))
        out = {}
        for r in rows:
            alias, version = _text_or_none(r.alias), _version_id(r.version)
            if alias in ALIASES and version is not None:
                out[alias] = version
            elif _said_once(conn, "model_aliases", str(key), _row_id(r, "alias"), _row_id(r)):
                logger.warning(
                    "registry.row_unreadable table=model_aliases key=%s alias=%s version=%s: the row is ignored",
                    key,
                    _row_id(r, "alias"),
                    _row_id(r),
                )
        return out


@db_retry
def previous_champion(engine: Engine, key: ModelKey) -> ModelVersion | None:
    """The version a rollback of ``key`` would restore (the last champion before the current one
    that was neither rolled back nor deleted), or None."""
    with engine.connect() as conn:
        return _previous_champion(conn, key)


@db_retry
def alias_history(engine: Engine, key: ModelKey) -> list[AliasChange]:
    """Every alias change of ``key``, oldest first. A row naming an unknown alias, no readable
    version id or no time is left out (logged once); an unreadable reason reads as empty."""
    h = model_alias_history
    with engine.connect() as conn:
        rows = conn.execute(select(*_raw_columns(conn, h)).where(h.c.model_key == str(key)).order_by(h.c.id))
        out = []
        for r in rows:
            try:
                alias = _text(r.alias, "alias", max_len=16)
                if alias not in ALIASES:
                    raise _Unreadable(f"alias {_shown(alias)} is none of {', '.join(ALIASES)}")
                version = _text(r.version, "version")
                from_ms = _int(r.from_ms, "from_ms")
                to_ms = None if r.to_ms is None else _int(r.to_ms, "to_ms")
            except _Unreadable as exc:
                if _said_once(conn, "model_alias_history", str(key), _row_id(r, "id"), str(exc)):
                    logger.warning(
                        "registry.row_unreadable table=model_alias_history key=%s id=%s problem=%s: the row is ignored",
                        key,
                        _row_id(r, "id"),
                        exc,
                    )
                continue
            reason = _text_or_none(r.reason)
            out.append(
                AliasChange(alias=alias, key=key, version=version, from_ms=from_ms, to_ms=to_ms, reason=reason or "")
            )
        return out


def _check_usable(v: ModelVersion, usable: Callable[[ModelVersion], bool] | None) -> None:
    if v.status == "deleted":
        raise RegistryError(f"version {v.version} is deleted")
    if usable is not None and not usable(v):
        raise RegistryError(f"version {v.version}: its artifact does not load; alias not moved")


@db_retry
def promote_version(
    engine: Engine,
    version: str,
    *,
    reason: str,
    now_ms: int,
    usable: Callable[[ModelVersion], bool] | None = None,
    before_commit: Callable[[], None] | None = None,
    expect_status: str | None = None,
) -> ModelVersion:
    """Make ``version`` the champion of its key, in one transaction.

    The old champion keeps its status (``promoted``: it was one), its history row is
    closed; a challenger or shadow alias on ``version`` is dropped. Promoting the current
    champion again changes nothing, once ``usable`` says it still loads. With ``expect_status`` (e.g. ``shadow``), a version
    whose status is another one is returned unchanged (a decision already taken).

    Raises
    ------
    RegistryError
        Unknown or deleted version, or ``usable`` refuses it.
    """
    with engine.begin() as conn:
        v = _get_locked(conn, version)
        if expect_status is not None and v.status != expect_status:
            return v
        current = _alias(conn, v.key, "champion", lock=True)
        _check_usable(v, usable)  # the champion again too: "promoted" says it serves
        if current == version:
            return v
        _point(conn, v.key, "champion", version, reason, now_ms)
        if _alias(conn, v.key, "challenger") == version:
            _point(conn, v.key, "challenger", None, "promoted", now_ms)
        if _alias(conn, v.key, "shadow") == version:
            _point(conn, v.key, "shadow", None, "promoted", now_ms)
        _set_status(conn, version, "promoted", reason, now_ms)
        if before_commit is not None:
            before_commit()
        out = _get(conn, version)
    assert out is not None
    logger.info("registry promoted version=%s key=%s previous=%s reason=%s", version, v.key, current, reason)
    return out


@db_retry
def reject_version(
    engine: Engine, version: str, *, reason: str, now_ms: int, expect_status: str | None = None
) -> ModelVersion:
    """Mark a non-champion version ``rejected`` (it stays the challenger for inspection; a
    shadow alias on it is dropped). With ``expect_status``, a version whose status is
    another one is returned unchanged."""
    with engine.begin() as conn:
        v = _get_locked(conn, version)
        if expect_status is not None and v.status != expect_status:
            return v
        if _alias(conn, v.key, "champion") == version:
            raise RegistryError(f"version {version} is the champion of {v.key}; roll back instead")
        if _alias(conn, v.key, "shadow") == version:
            _point(conn, v.key, "shadow", None, "rejected", now_ms)
        _set_status(conn, version, "rejected", reason, now_ms)
        out = _get(conn, version)
    assert out is not None
    logger.info("registry rejected version=%s key=%s reason=%s", version, v.key, reason)
    return out


@db_retry
def rollback_champion(
    engine: Engine, key: ModelKey, *, reason: str, now_ms: int, usable: Callable[[ModelVersion], bool] | None = None
) -> tuple[ModelVersion, ModelVersion | None]:
    """Restore the previous champion of ``key`` in one transaction; return ``(restored, dropped)``.

    The dropped champion is marked ``rolled_back`` (a later rollback skips it). ``dropped``
    is None when the champion alias named no readable row (a row written by hand): rolling
    back from it is allowed, and is the way out.

    Raises
    ------
    RegistryError
        No champion, no previous champion, or the previous one's artifact does not load.
    """
    with engine.begin() as conn:
        current = _alias(conn, key, "champion", lock=True)
        a = model_aliases
        if (
            current is None
            and not conn.execute(
                select(func.count()).select_from(a).where(a.c.model_key == str(key), a.c.alias == "champion")
            ).scalar_one()
        ):  # (an alias row naming no readable version id is a champion to roll back from)
            raise RegistryError(f"{key} has no champion to roll back")
        prev = _previous_champion(conn, key)
        if prev is None:
            raise RegistryError(f"{key} has no previous champion to restore")
        _check_usable(prev, usable)
        _point(conn, key, "champion", prev.version, f"rollback: {reason}", now_ms)
        if current is not None:
            _set_status(conn, current, "rolled_back", reason, now_ms)
        _set_status(conn, prev.version, "promoted", f"restored by rollback: {reason}", now_ms)
        restored = _get(conn, prev.version)
        try:
            dropped = None if current is None else _get(conn, current)
        except RegistryError:  # its row is unreadable: it is dropped all the same
            dropped = None
    assert restored is not None
    logger.info("registry rollback key=%s restored=%s dropped=%s", key, prev.version, current)
    return restored, dropped


@db_retry
def referenced_versions(engine: Engine, versions: Iterable[str], *, since_ms: int) -> set[str]:
    """Those of ``versions`` that forecasts with ``as_of_ms >= since_ms`` name."""
    wanted = list(versions)
    if not wanted:
        return set()
    q = (
        select(forecasts.c.model_version)
        .distinct()
        .where(and_(forecasts.c.model_version.in_(wanted), forecasts.c.as_of_ms >= since_ms))
    )
    with engine.connect() as conn:
        return set(conn.execute(q).scalars())


@db_retry
def mark_deleted(engine: Engine, versions: Iterable[str], *, reason: str, now_ms: int) -> list[str]:
    """Mark versions ``deleted`` in one transaction; a version an alias points at is refused.

    Returns the versions marked (already deleted ones are skipped).
    """
    wanted = list(versions)
    out: list[str] = []
    with engine.begin() as conn:
        for version in wanted:
            try:
                v = _get(conn, version, lock=True)
            except RegistryError as exc:  # unreadable: nothing is decided on it
                logger.warning("registry.delete_skipped version=%s: %s", _shown(version), exc)
                continue
            if v is None or v.status == "deleted":
                continue
            a = model_aliases
            aliased = conn.execute(select(*_raw_columns(conn, a, "alias")).where(a.c.version == version)).first()
            if aliased is not None:
                name = _version_id(aliased.alias) or "alias"
                raise RegistryError(f"version {version} is the {name} of {v.key}; not deleted")
            _set_status(conn, version, "deleted", reason, now_ms)
            out.append(version)
    return out


@db_retry
def start_shadow(
    engine: Engine,
    version: str,
    *,
    reason: str,
    required: int,
    now_ms: int,
    usable: Callable[[ModelVersion], bool] | None = None,
    series: str | None = None,
) -> ModelVersion:
    """Put ``version`` in shadow for its key, in one transaction (issue 16).

    Its status becomes ``shadow``, the ``shadow`` alias points at it (the challenger alias
    stays), and its metrics gain ``shadow: {"required": N, "since_ms": now}``: the number of
    realised live forecasts after which the stream decides. A version already in shadow
    for the key is rejected (``superseded``). ``series`` (a global model's shadow: the one
    symbol of its set it runs on, since score rows are one per origin) is stored there
    as ``symbol``.

    Raises
    ------
    RegistryError
        Unknown or deleted version, the key's champion, ``required < 1``, or ``usable``
        refuses it.
    """
    if required < 1:
        raise RegistryError(f"a shadow needs at least 1 realised forecast, got {required}")
    with engine.begin() as conn:
        v = _get_locked(conn, version)
        if _alias(conn, v.key, "champion", lock=True) == version:
            raise RegistryError(f"version {version} is already the champion of {v.key}")
        _check_usable(v, usable)
        old = _alias(conn, v.key, "shadow", lock=True)
        if old is not None and old != version:
            _set_status(conn, old, "rejected", f"superseded: {version} entered shadow", now_ms)
        _point(conn, v.key, "shadow", version, reason, now_ms)
        shadow: dict[str, Any] = {"required": int(required), "since_ms": now_ms}
        if series is not None:
            shadow["symbol"] = series
        metrics = _storable({**v.metrics, "shadow": shadow}, version)
        conn.execute(
            update(model_versions)
            .where(model_versions.c.version == version)
            .values(metrics=metrics, status="shadow", reason=reason, updated_ms=now_ms)
        )
        out = _get(conn, version)
    assert out is not None
    logger.info("registry shadow version=%s key=%s required=%d superseded=%s", version, v.key, required, old)
    return out


def insert_shadow_scores(conn: Connection, rows: Iterable[Mapping[str, Any]]) -> None:
    """Insert realised shadow scores on ``conn`` (inside the caller's transaction); a row whose
    ``(version, as_of_ms)`` exists already is left as it is (first write wins)."""
    items = [{k: r[k] for k in SHADOW_COLUMNS} for r in rows]
    if not items:
        return
    if conn.dialect.name == "postgresql":
        stmt: Any = postgresql.insert(shadow_scores)
    elif conn.dialect.name == "sqlite":
        stmt = sqlite.insert(shadow_scores)
    else:
        raise NotImplementedError(f"dialect {conn.dialect.name} is not supported")
    conn.execute(stmt.on_conflict_do_nothing(index_elements=["version", "as_of_ms"]), items)


#: ``shadow_scores`` columns holding a CRPS (a score >= 0) and a coverage (a fraction in 0..1).
_SHADOW_CRPS = ("crps", "champion_crps", "rw_crps")
_SHADOW_COVER = ("cover90", "champion_cover90")


#: PostgreSQL's text of a ``double precision`` value (``float8out``).
_REAL_TEXT = re.compile(r"-?(?:\d+(?:\.\d*)?(?:e[-+]?\d+)?|Infinity)|NaN")


def _shadow_row(r: Any, *, text: bool = False) -> tuple[dict[str, Any], list[str]]:
    """A raw ``shadow_scores`` row: its scores as floats, each one that is no score of its kind
    (text, NULL, a negative CRPS, a coverage outside 0..1, a non-finite value) as NaN, so the
    shadow rule, which refuses non-finite scores, rejects rather than promotes on it; its
    other columns as read (None when unreadable). Returns the row and the columns made NaN.
    ``text``: the scores come as their text (PostgreSQL, :func:`_float`)."""
    m = r._mapping
    out: dict[str, Any] = {
        "version": _text_or_none(m["version"]),
        "model_key": _text_or_none(m["model_key"]),
        "champion_version": _text_or_none(m["champion_version"]),
        "as_of_ms": _optional(lambda: _int(m["as_of_ms"], "as_of_ms")),
        "steps": _optional(lambda: _int(m["steps"], "steps")),
        "realised_ms": _optional(lambda: _int(m["realised_ms"], "realised_ms")),
    }
    bad = []
    for name in (*_SHADOW_CRPS, *_SHADOW_COVER):
        x = _float(m[name], text=text)
        ok = math.isfinite(x) and (x >= 0 if name in _SHADOW_CRPS else 0 <= x <= 1)
        out[name] = x if ok else math.nan
        if not ok:
            bad.append(name)
    return {k: out[k] for k in SHADOW_COLUMNS}, bad


@db_retry
def read_shadow_scores(engine: Engine, version: str, *, limit: int | None = None) -> list[dict[str, Any]]:
    """The realised shadow scores of ``version``, oldest origin first (at most ``limit``).

    A score a row holds that is no score (a row written by hand) reads as NaN (logged once
    per row): the shadow's means are then NaN and the shadow rule rejects it
    (``shadow_invalid``); the same rows always give the same decision.
    """
    s = shadow_scores
    with engine.connect() as conn:
        q = select(*_raw_columns(conn, s)).where(s.c.version == version).order_by(s.c.as_of_ms)
        if limit is not None:
            q = q.limit(limit)
        out, text = [], conn.dialect.name == "postgresql"  # the scores' text (_raw_columns)
        for r in conn.execute(q):
            row, bad = _shadow_row(r, text=text)
            if bad and _said_once(conn, "shadow_scores", version, _row_id(r, "as_of_ms"), *bad):
                logger.warning(
                    "registry.shadow_score_unreadable version=%s as_of_ms=%s columns=%s: read as NaN",
                    _shown(version),
                    _row_id(r, "as_of_ms"),
                    ",".join(bad),
                )
            out.append(row)
        return out


# -- the tables a database holds -------------------------------------------------------------


def _family(t: Any) -> str:
    """A column type's family: json, int, real, text, or other (unknown to SQLAlchemy, BLOB)."""
    if isinstance(t, sqltypes.JSON):
        return "json"
    if isinstance(t, sqltypes.Integer):
        return "int"
    if isinstance(t, sqltypes.Float | sqltypes.Numeric):
        return "real"
    if isinstance(t, sqltypes.String):
        return "text"
    return "other"


#: Column type families a registry column may have in a database (besides ``other``): what
#: the registry writes must be stored and read back as written (a number in a text column
#: comes back as its text, which the reader takes; text in an integer column is refused by
#: SQLite's STRICT tables and rowid keys and by PostgreSQL, a REAL would read back no integer).
_FITS = {"text": {"text"}, "int": {"int", "text"}, "real": {"real", "int", "text"}, "json": {"json", "text"}}


def check_registry_schema(engine: Engine) -> None:
    """Refuse a database whose registry tables are not the registry's (created by another
    program, or by hand): a table lacking one of the registry's columns, or a column of a type
    that cannot hold what the registry writes (``version INTEGER PRIMARY KEY``, an integer
    ``metrics`` column of a STRICT table). A table that is missing is fine (it is created).

    Raises
    ------
    DataFormatError
        The table, the column and the problem, on one line.
    """
    insp = inspect(engine)
    names = set(insp.get_table_names())
    for table in (model_versions, model_aliases, model_alias_history, shadow_scores):
        if table.name not in names:
            continue
        have = {c["name"]: c["type"] for c in insp.get_columns(table.name)}
        for col in table.columns:
            if col.name not in have:
                raise DataFormatError(
                    f"the database's {table.name} table is not the model registry's (it has no {col.name} "
                    "column): point --db at a forexd database, or move that table away"
                )
            ours, theirs = _family(col.type), _family(have[col.name])
            if theirs != "other" and theirs not in _FITS[ours]:
                raise DataFormatError(
                    f"the database's {table.name} table is not the model registry's (its {col.name} column "
                    f"is {have[col.name]}, where the registry stores {ours}): point --db at a forexd "
                    "database, or move that table away"
                )
