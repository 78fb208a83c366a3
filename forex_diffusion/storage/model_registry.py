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

import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Connection,
    Engine,
    Float,
    Integer,
    String,
    Table,
    Text,
    and_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from forex_diffusion.domain import field_dict
from forex_diffusion.errors import ConfigError, RegistryError
from forex_diffusion.storage.retry import db_retry
from forex_diffusion.storage.tables import forecasts, metadata, series_columns

__all__ = [
    "ALIASES",
    "STATUSES",
    "AliasChange",
    "ModelKey",
    "ModelVersion",
    "alias_history",
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
        if not self.version or len(self.version) > 64:
            raise ConfigError(f"bad version id {self.version!r}")

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


def _row_to_version(r: Any) -> ModelVersion:
    return ModelVersion(
        version=r.version,
        key=ModelKey(symbol=r.symbol, timeframe=r.timeframe, horizon=int(r.horizon)),
        artifact=r.artifact,
        sha256=r.sha256,
        config_hash=r.config_hash,
        data_first_ms=r.data_first_ms,
        data_last_ms=r.data_last_ms,
        # a row written by hand or another program may hold any JSON: only an object is metrics
        metrics=dict(r.metrics) if isinstance(r.metrics, Mapping) else {},
        status=r.status,
        reason=r.reason,
        request_id=r.request_id,
        created_ms=int(r.created_ms),
        updated_ms=int(r.updated_ms),
    )


def _get(conn: Connection, version: str, *, lock: bool = False) -> ModelVersion | None:
    q = select(model_versions).where(model_versions.c.version == version)
    if lock:
        q = q.with_for_update()
    row = conn.execute(q).first()
    return None if row is None else _row_to_version(row)


def _get_locked(conn: Connection, version: str) -> ModelVersion:
    """Return ``version``'s row locked for this transaction (``RegistryError`` when unknown)."""
    v = _get(conn, version, lock=True)
    if v is None:
        raise RegistryError(f"unknown version {version}")
    return v


def _alias(conn: Connection, key: ModelKey, alias: str, *, lock: bool = False) -> str | None:
    q = select(model_aliases.c.version).where(model_aliases.c.model_key == str(key), model_aliases.c.alias == alias)
    if lock:
        q = q.with_for_update()
    return conn.execute(q).scalar_one_or_none()


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
    current = _alias(conn, key, "champion")
    h = model_alias_history
    rows = conn.execute(
        select(h.c.version)
        .where(h.c.model_key == str(key), h.c.alias == "champion", h.c.to_ms.is_not(None))
        .order_by(h.c.id.desc())
    ).scalars()
    for version in rows:
        if version == current:
            continue
        v = _get(conn, version)
        if v is not None and v.status not in ("rolled_back", "deleted"):
            return v
    return None


@db_retry
def insert_version(engine: Engine, version: ModelVersion, *, challenger: bool = True, now_ms: int) -> ModelVersion:
    """Insert a ``registered`` version (and point ``challenger`` at it) in one transaction."""
    row = version.to_dict()
    row.pop("key")
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
        if _get(conn, version.version) is not None:
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
    """Return one version row, or None."""
    with engine.connect() as conn:
        return _get(conn, version)


@db_retry
def list_versions(engine: Engine, key: ModelKey | None = None, *, include_deleted: bool = True) -> list[ModelVersion]:
    """Versions (of one key, or all), oldest first."""
    q = select(model_versions)
    if key is not None:
        q = q.where(model_versions.c.model_key == str(key))
    if not include_deleted:
        q = q.where(model_versions.c.status != "deleted")
    q = q.order_by(model_versions.c.model_key, model_versions.c.created_ms, model_versions.c.version)
    with engine.connect() as conn:
        return [_row_to_version(r) for r in conn.execute(q)]


@db_retry
def get_aliases(engine: Engine, key: ModelKey) -> dict[str, str]:
    """Return ``{alias: version}`` of one key."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(model_aliases.c.alias, model_aliases.c.version).where(model_aliases.c.model_key == str(key))
        )
        return {r.alias: r.version for r in rows}


@db_retry
def previous_champion(engine: Engine, key: ModelKey) -> ModelVersion | None:
    """The version a rollback of ``key`` would restore (the last champion before the current one
    that was neither rolled back nor deleted), or None."""
    with engine.connect() as conn:
        return _previous_champion(conn, key)


@db_retry
def alias_history(engine: Engine, key: ModelKey) -> list[AliasChange]:
    """Every alias change of ``key``, oldest first."""
    h = model_alias_history
    with engine.connect() as conn:
        rows = conn.execute(select(h).where(h.c.model_key == str(key)).order_by(h.c.id))
        return [
            AliasChange(
                alias=r.alias,
                key=key,
                version=r.version,
                from_ms=int(r.from_ms),
                to_ms=None if r.to_ms is None else int(r.to_ms),
                reason=r.reason,
            )
            for r in rows
        ]


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
    champion again changes nothing. With ``expect_status`` (e.g. ``shadow``), a version
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
        if current == version:
            return v
        _check_usable(v, usable)
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
) -> tuple[ModelVersion, ModelVersion]:
    """Restore the previous champion of ``key`` in one transaction; return ``(restored, dropped)``.

    The dropped champion is marked ``rolled_back`` (a later rollback skips it).

    Raises
    ------
    RegistryError
        No champion, no previous champion, or the previous one's artifact does not load.
    """
    with engine.begin() as conn:
        current = _alias(conn, key, "champion", lock=True)
        if current is None:
            raise RegistryError(f"{key} has no champion to roll back")
        prev = _previous_champion(conn, key)
        if prev is None:
            raise RegistryError(f"{key} has no previous champion to restore")
        _check_usable(prev, usable)
        _point(conn, key, "champion", prev.version, f"rollback: {reason}", now_ms)
        _set_status(conn, current, "rolled_back", reason, now_ms)
        _set_status(conn, prev.version, "promoted", f"restored by rollback: {reason}", now_ms)
        restored, dropped = _get(conn, prev.version), _get(conn, current)
    assert restored is not None and dropped is not None
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
            v = _get(conn, version, lock=True)
            if v is None or v.status == "deleted":
                continue
            aliased = conn.execute(select(model_aliases.c.alias).where(model_aliases.c.version == version)).first()
            if aliased is not None:
                raise RegistryError(f"version {version} is the {aliased.alias} of {v.key}; not deleted")
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
) -> ModelVersion:
    """Put ``version`` in shadow for its key, in one transaction (issue 16).

    Its status becomes ``shadow``, the ``shadow`` alias points at it (the challenger alias
    stays), and its metrics gain ``shadow: {"required": N, "since_ms": now}``: the number of
    realised live forecasts after which the stream decides. A version already in shadow
    for the key is rejected (``superseded``).

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
        metrics = {**v.metrics, "shadow": {"required": int(required), "since_ms": now_ms}}
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


@db_retry
def read_shadow_scores(engine: Engine, version: str, *, limit: int | None = None) -> list[dict[str, Any]]:
    """The realised shadow scores of ``version``, oldest origin first (at most ``limit``)."""
    q = select(shadow_scores).where(shadow_scores.c.version == version).order_by(shadow_scores.c.as_of_ms)
    if limit is not None:
        q = q.limit(limit)
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(q)]
