"""Repository functions: keyed upserts, windowed reads, atomic progress snapshots."""

from __future__ import annotations

import json
import logging
import math
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, overload

from sqlalchemy import (
    Connection,
    Engine,
    LargeBinary,
    Table,
    Text,
    and_,
    case,
    cast,
    delete,
    func,
    literal,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from forex_diffusion.domain import Candle
from forex_diffusion.errors import RejectReason, StaleOwnerError, StateError
from forex_diffusion.ingest.validation import MAX_CANDLE_VOLUME, MAX_PRICE, PRICE_RANGE_FACTOR, bar_in_span
from forex_diffusion.instruments import InstrumentRegistry
from forex_diffusion.storage.retry import db_retry
from forex_diffusion.storage.tables import NO_HORIZON, candles, drift_events, forecasts, snapshot_parts, snapshots
from forex_diffusion.timeframes import Timeframe

if TYPE_CHECKING:
    from forex_diffusion.drift.base import DriftEvent

__all__ = [
    "TS_MAX",
    "Checkpoint",
    "claim_progress",
    "count_candles",
    "fetch_candles",
    "fetch_drift_events",
    "fetch_forecasts",
    "load_snapshot",
    "number_or_null",
    "price_span",
    "save_progress",
    "stored_text",
    "upsert_candles",
    "upsert_drift_events",
    "upsert_forecasts",
]

log = logging.getLogger(__name__)

#: 9999-12-31T23:59:59.999Z in epoch ms (the wire's ``TS_MAX``): the last instant a ``datetime``
#: holds. A stored time outside ``0..TS_MAX`` is not one the stream writes.
TS_MAX = 253_402_300_799_999

_CANDLE_COLS = (
    "close_ms",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "tick_count",
    "spread_mean",
    "spread_min",
    "spread_max",
    "revision",
    "final",
)


def _insert(conn: Connection, table: Table) -> Any:
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    if conn.dialect.name == "sqlite":
        return sqlite.insert(table)
    raise NotImplementedError(f"dialect {conn.dialect.name} is not supported")


_ROWS_PER_STATEMENT = 1_000  # 15 candle columns x 1,000 rows: far below PostgreSQL's 65,535 parameters


def _execute_rows(conn: Connection, stmt: Any, rows: Sequence[dict[str, Any]]) -> None:
    """Execute the upsert ``stmt`` for ``rows`` (distinct keys: one statement may not update a
    row twice).

    On PostgreSQL as multi-row ``VALUES`` statements of at most ``_ROWS_PER_STATEMENT``
    rows, one round trip each. SQLAlchemy does not batch an ``ON CONFLICT DO UPDATE``
    executemany (no "insertmanyvalues" for upserts), and psycopg2's ``executemany`` sends one
    statement per row: a checkpoint of 300 candles took 120 s on a database 200 ms away (F15).
    On SQLite, in process and without round trips, as one executemany.
    """
    if conn.dialect.name != "postgresql":
        conn.execute(stmt, rows)
        return
    for i in range(0, len(rows), _ROWS_PER_STATEMENT):
        conn.execute(stmt.values(list(rows[i : i + _ROWS_PER_STATEMENT])))


def _upsert_candles(conn: Connection, items: Sequence[Candle]) -> None:
    if not items:
        return
    rows = list({(c.symbol, c.timeframe, c.open_ms): c.to_dict() for c in items}.values())
    stmt = _insert(conn, candles)
    stmt = stmt.on_conflict_do_update(
        index_elements=["symbol", "timeframe", "open_ms"],
        set_={k: stmt.excluded[k] for k in _CANDLE_COLS},
        # A final candle is immutable; a forming one only moves forward in revision.
        where=and_(candles.c.final.is_(False), candles.c.revision <= stmt.excluded.revision),
    )
    _execute_rows(conn, stmt, rows)


def _upsert_forecasts(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    if not rows:
        return
    now = int(time.time() * 1000)
    values = {  # one row per key, the last one given (as if written one after the other)
        (r["symbol"], r["timeframe"], int(r["as_of_ms"]), int(r["horizon"]), str(r["model_version"])): {
            "symbol": r["symbol"],
            "timeframe": r["timeframe"],
            "as_of_ms": int(r["as_of_ms"]),
            "horizon": int(r["horizon"]),
            "model_version": str(r["model_version"]),
            "payload": r,
            "created_ms": now,
        }
        for r in rows
    }
    stmt = _insert(conn, forecasts)
    stmt = stmt.on_conflict_do_update(
        index_elements=["symbol", "timeframe", "as_of_ms", "horizon", "model_version"],
        set_={"payload": stmt.excluded.payload},
    )
    _execute_rows(conn, stmt, list(values.values()))


def _upsert_drift(conn: Connection, items: Sequence[DriftEvent]) -> None:
    if not items:
        return
    now = int(time.time() * 1000)
    values = {  # one row per key, the last one given
        (e.symbol, e.timeframe, int(e.ts_ms), e.detector, NO_HORIZON if e.horizon is None else int(e.horizon)): {
            "symbol": e.symbol,
            "timeframe": e.timeframe,
            "ts_ms": int(e.ts_ms),
            "detector": e.detector,
            "horizon": NO_HORIZON if e.horizon is None else int(e.horizon),
            "statistic": float(e.statistic),
            "threshold": float(e.threshold),
            "created_ms": now,
        }
        for e in items
    }
    stmt = _insert(conn, drift_events)
    stmt = stmt.on_conflict_do_update(
        index_elements=["symbol", "timeframe", "ts_ms", "detector", "horizon"],
        set_={"statistic": stmt.excluded.statistic, "threshold": stmt.excluded.threshold},
    )
    _execute_rows(conn, stmt, list(values.values()))


@db_retry
def upsert_candles(engine: Engine, items: Iterable[Candle]) -> int:
    """Insert or update candles by ``(symbol, timeframe, open_ms)``; return how many were given."""
    batch = list(items)
    with engine.begin() as conn:
        _upsert_candles(conn, batch)
    return len(batch)


@db_retry
def upsert_forecasts(engine: Engine, rows: Iterable[dict[str, Any]]) -> int:
    """Insert or replace forecast records keyed by symbol/timeframe/as_of/horizon/model_version."""
    batch = list(rows)
    with engine.begin() as conn:
        _upsert_forecasts(conn, batch)
    return len(batch)


@db_retry
def upsert_drift_events(engine: Engine, items: Iterable[DriftEvent]) -> int:
    """Insert or update drift events keyed by symbol/timeframe/ts/detector/horizon; return how many were given.

    An event without a horizon is stored with ``horizon`` = :data:`~.tables.NO_HORIZON` (0).
    """
    batch = list(items)
    with engine.begin() as conn:
        _upsert_drift(conn, batch)
    return len(batch)


@dataclass(frozen=True)
class Checkpoint:
    """A partition's checkpoint as :func:`load_snapshot` (``detail=True``) reads it.

    ``parts`` holds one state per series (issue 15); ``state`` the whole state of a row
    written before the parts existed (then ``parts`` is empty), else None.
    """

    offset: int
    epoch: int = 0
    fingerprint: str | None = None
    state: dict[str, Any] | None = None
    parts: dict[str, Any] = field(default_factory=dict)


def _dumps(state: Any, where: str) -> str:
    """``state`` as strict JSON; a state that is not (NaN or Infinity inside, an object that
    is not plain data, a cycle) is a :class:`StateError` naming ``where``, never its values.

    Permanent: written again it fails again (consumption is paused meanwhile), so the worker
    must not retry it for ever as it did a bare ``ValueError`` (see ``streams.progress``,
    ``checkpoint_failed``)."""
    try:
        return json.dumps(state, separators=(",", ":"), allow_nan=False)
    except (ValueError, TypeError, RecursionError) as exc:
        raise StateError(
            f"checkpoint of {where} not written: its state is not strict JSON "
            f"({type(exc).__name__}: NaN, Infinity or not plain data)"
        ) from exc


def _key(table: Table, consumer: str, topic: str, partition: int) -> Any:
    return and_(table.c.consumer == consumer, table.c.topic == topic, table.c.partition == partition)


@db_retry
def claim_progress(engine: Engine, *, consumer: str, topic: str, partition: int) -> int:
    """Take ownership of a partition's checkpoint: increment its epoch, return the new one.

    Called when a worker is assigned the partition; its writes then carry this epoch, and
    :func:`save_progress` refuses those of any earlier owner (:class:`StaleOwnerError`). A
    partition never checkpointed gets a row with offset -1 (no checkpoint) and no state; parts
    left behind by a deleted row are deleted with it, so they never come back.
    """
    now = int(time.time() * 1000)
    key = _key(snapshots, consumer, topic, partition)
    with engine.begin() as conn:
        # a write first: it takes the row lock (PostgreSQL) or the write lock (SQLite) at once,
        # never a read lock that must be upgraded (SQLite answers that with "database is locked")
        if conn.execute(update(snapshots).where(key).values(epoch=snapshots.c.epoch + 1)).rowcount == 0:
            conn.execute(delete(snapshot_parts).where(_key(snapshot_parts, consumer, topic, partition)))
            stmt = _insert(conn, snapshots).values(
                consumer=consumer, topic=topic, partition=partition, offset=-1, state="", updated_ms=now, epoch=1
            )
            conn.execute(
                stmt.on_conflict_do_update(  # a concurrent claim inserted it first
                    index_elements=["consumer", "topic", "partition"], set_={"epoch": snapshots.c.epoch + 1}
                )
            )
        return int(conn.execute(select(snapshots.c.epoch).where(key)).scalar_one())


@db_retry
def save_progress(
    engine: Engine,
    *,
    consumer: str,
    topic: str,
    partition: int,
    offset: int,
    state: dict[str, Any] | None = None,
    parts: Mapping[str, Any] | None = None,
    removed: Iterable[str] = (),
    full: bool = False,
    epoch: int | None = None,
    fingerprint: str | None = None,
    candle_items: Sequence[Candle] = (),
    forecast_rows: Sequence[dict[str, Any]] = (),
    drift_items: Sequence[DriftEvent] = (),
    shadow_rows: Sequence[dict[str, Any]] = (),
) -> None:
    """Write effects (candles, forecasts, drift events, realised shadow scores) and the
    state/offset they reflect in ONE transaction.

    After a crash the consumer restores the state and resumes at ``offset + 1``; the
    effects it then re-applies are keyed upserts, so nothing is lost or doubled.

    The state is either ``state`` (one whole state in the partition's row) or ``parts``
    (issue 15): the series that changed since the last checkpoint, one row each; the series
    in ``removed`` are deleted, and with ``full`` every other part too (``parts`` is then
    the whole state). With ``epoch`` the write is fenced: a row claimed since by a newer owner
    (:func:`claim_progress`) refuses it with :class:`StaleOwnerError`, and nothing is written.
    A state or part that is not strict JSON (NaN, Infinity) is a :class:`StateError`, and
    nothing is written.
    """
    if (state is None) == (parts is None):
        raise TypeError("save_progress takes either state= or parts=")
    where = f"{consumer[:60]} {topic[:60]}[{partition}]"
    payload = "" if state is None else _dumps(state, where)
    rows = {k: _dumps(v, f"{where} part {str(k)[:60]}") for k, v in (parts or {}).items()}
    now = int(time.time() * 1000)
    with engine.begin() as conn:
        # the partition's row first: on PostgreSQL its lock orders this write against a claim
        values: dict[str, Any] = {"offset": offset, "state": payload, "updated_ms": now, "fingerprint": fingerprint}
        if epoch is not None:
            values["epoch"] = epoch
        stmt = _insert(conn, snapshots).values(consumer=consumer, topic=topic, partition=partition, **values)
        stmt = stmt.on_conflict_do_update(
            index_elements=["consumer", "topic", "partition"],
            set_={k: stmt.excluded[k] for k in values},
            where=None if epoch is None else snapshots.c.epoch <= epoch,
        )
        if conn.execute(stmt).rowcount == 0:
            stored = conn.execute(select(snapshots.c.epoch).where(_key(snapshots, consumer, topic, partition))).scalar()
            raise StaleOwnerError(
                f"checkpoint of {consumer} {topic}[{partition}] refused: owner epoch {epoch}, "
                f"the partition was claimed since (epoch {stored})"
            )
        where = _key(snapshot_parts, consumer, topic, partition)
        gone = list(removed)
        if state is not None or full:
            conn.execute(delete(snapshot_parts).where(where))
        elif gone:
            conn.execute(delete(snapshot_parts).where(where, snapshot_parts.c.part.in_(gone)))
        if rows:
            ins = _insert(conn, snapshot_parts)
            ins = ins.on_conflict_do_update(
                index_elements=["consumer", "topic", "partition", "part"],
                set_={"state": ins.excluded.state, "updated_ms": ins.excluded.updated_ms},
            )
            _execute_rows(
                conn,
                ins,
                [
                    {
                        "consumer": consumer,
                        "topic": topic,
                        "partition": partition,
                        "part": k,
                        "state": v,
                        "updated_ms": now,
                    }
                    for k, v in rows.items()
                ],
            )
        _upsert_candles(conn, candle_items)
        _upsert_forecasts(conn, forecast_rows)
        _upsert_drift(conn, drift_items)
        if shadow_rows:
            from forex_diffusion.storage.model_registry import insert_shadow_scores

            insert_shadow_scores(conn, shadow_rows)


@overload
def load_snapshot(
    engine: Engine, *, consumer: str, topic: str, partition: int, detail: Literal[False] = ...
) -> tuple[int, dict[str, Any]] | None: ...


@overload
def load_snapshot(
    engine: Engine, *, consumer: str, topic: str, partition: int, detail: Literal[True]
) -> Checkpoint | None: ...


@db_retry
def load_snapshot(
    engine: Engine, *, consumer: str, topic: str, partition: int, detail: bool = False
) -> tuple[int, dict[str, Any]] | Checkpoint | None:
    """Return ``(offset, state)`` stored by :func:`save_progress`, or None (never checkpointed).

    The state of a checkpoint written as parts is ``{series: state}``. With ``detail`` the
    :class:`Checkpoint` (epoch, fingerprint, whole state or parts) is returned.

    Raises
    ------
    StateError
        A row this build cannot read as a checkpoint (written by hand, by another program or
        cut short): an offset or epoch that is not an integer, a state that is not UTF-8 text,
        not JSON (truncated, NaN), nested past the recursion limit, or not a JSON object. Its
        text is never shown. The caller decides (the worker stops, docs/reliability.md).
    """
    where = f"{consumer} {topic}[{partition}]"
    with engine.connect() as conn:
        row = conn.execute(
            select(
                number_or_null(conn, snapshots.c.offset),
                _raw_text(conn, snapshots.c.state),
                number_or_null(conn, snapshots.c.epoch),
                _raw_text(conn, snapshots.c.fingerprint),
            ).where(_key(snapshots, consumer, topic, partition))
        ).first()
        if row is None:
            return None
        offset, raw, epoch, fingerprint = row
        if type(offset) is not int or type(epoch) is not int:  # NULL, text or real in a SQLite row
            raise StateError(f"checkpoint of {where}: offset or epoch is not an integer")
        if offset < 0:
            return None
        text = _state_text(raw, where)
        parts: dict[str, Any] = {}
        if not text:
            q = select(_raw_text(conn, snapshot_parts.c.part), _raw_text(conn, snapshot_parts.c.state)).where(
                _key(snapshot_parts, consumer, topic, partition)
            )
            for part, state in conn.execute(q.order_by(snapshot_parts.c.part)):
                name = _state_text(part, f"{where} part")
                parts[name] = _state_json(
                    _state_text(state, f"{where} part {name[:40]!r}"), f"{where} part {name[:40]!r}"
                )
    whole = _state_json(text, where) if text else None
    fp = None if fingerprint is None else _state_text(fingerprint, f"{where} fingerprint")
    if not detail:
        return offset, parts if whole is None else whole
    return Checkpoint(offset=offset, epoch=epoch, fingerprint=fp, state=whole, parts=parts)


def _raw_text(conn: Connection, column: Any) -> Any:
    """``column`` as the driver gives text: on SQLite as bytes (``CAST AS BLOB``), so a value
    that is not UTF-8 is refused by the caller for its row, not by sqlite3 for the query."""
    return cast(column, LargeBinary) if conn.dialect.name == "sqlite" else column


def number_or_null(conn: Connection, column: Any) -> Any:
    """``column`` where it holds a number, else NULL: SQLite stores any value in any column
    (text, a blob, text that is not UTF-8); only numbers reach Python. Labelled as the column."""
    if conn.dialect.name != "sqlite":
        return column
    return case((func.typeof(column).in_(("integer", "real")), column), else_=literal(None)).label(column.name)


def stored_text(raw: Any) -> str | None:
    """A stored text value (read as bytes on SQLite) as a string; None when it is not UTF-8
    text (a blob, a number, bytes that do not decode)."""
    if isinstance(raw, str):
        return raw
    if isinstance(raw, (bytes, bytearray, memoryview)):
        try:
            return bytes(raw).decode("utf-8")
        except UnicodeDecodeError:
            return None
    return None


def _state_text(raw: Any, where: str) -> str:
    text = stored_text(raw)
    if text is not None:
        return text
    if isinstance(raw, (bytes, bytearray, memoryview)):
        raise StateError(f"checkpoint of {where}: the stored text is not UTF-8")
    raise StateError(f"checkpoint of {where}: the stored state is not text ({type(raw).__name__})")


def _state_json(text: str, where: str) -> Any:
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except ValueError as exc:  # truncated, not JSON, NaN, an integer past 4,300 digits
        raise StateError(f"checkpoint of {where}: the state is not JSON ({str(exc)[:80]})") from None
    except RecursionError:  # 100,000 nested brackets: json's scanner recurses
        raise StateError(f"checkpoint of {where}: the state is nested too deep") from None
    if not isinstance(value, dict):
        raise StateError(f"checkpoint of {where}: the state is not a JSON object ({type(value).__name__})")
    return value


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # save_progress writes with allow_nan=False


_NUMERIC_CANDLE_COLS = ("open_ms", *(c for c in _CANDLE_COLS if c != "final"))


def _real(v: Any) -> bool:
    return type(v) in (int, float) and math.isfinite(v)


_NUMBER_TYPES = (int, float)
_INT32_MAX = 2**31 - 1  # a candle's tick count and revision on the wire
_INSTRUMENTS = InstrumentRegistry()  # the built-in instruments, as the wire's default
_UNKNOWN_RANGE = (1e-4, 1e6)  # a symbol no registry knows: the range forex_diffusion.instruments gives one


def _candle_problem(
    r: Any, tf: Timeframe, grid: int | None = None, span: tuple[float, float] | None = None
) -> RejectReason | None:
    """Why the stored row ``r`` is not a candle the stream could have written, or None.

    The checks of :func:`forex_diffusion.wire.decode_candle`: every column of its type (SQLite
    stores any value anywhere); open and close times within ``0..TS_MAX``, the bar overlapping
    1971-01-01..2100-01-01 (``EPOCH_FIRST_MS..MAX_TS_MS``), on the timeframe's grid and one bar
    apart; prices finite, > 0 and at most the wire's ``PRICE_MAX``, low <= open, close <= high,
    and within ``span`` (the instrument's range widened as the wire widens it: :func:`price_span`;
    None: not checked); volume in the wire's range; tick count and revision 32-bit counts;
    spreads finite and within ``±PRICE_MAX``. A row past the wire's bounds is one the stream
    cannot have written, and one the forecaster's state would refuse once a warm start took it
    into a series' history (every restart of its partition would then stop on that state).

    ``grid`` is :func:`_grid` of ``tf`` (worked out once per read, not per row): the bar's
    length of a timeframe whose bars are a fixed length, None for a daily one (its bars follow
    the day-roll hour and the zone's offsets: ``tf.bounds``).
    """
    open_ms, close_ms = r.open_ms, r.close_ms
    if type(open_ms) is not int or type(close_ms) is not int:
        return RejectReason.SCHEMA
    op, hi, lo, cl = r.open, r.high, r.low, r.close
    if not (
        type(op) in _NUMBER_TYPES
        and type(hi) in _NUMBER_TYPES
        and type(lo) in _NUMBER_TYPES
        and type(cl) in _NUMBER_TYPES
    ):
        return RejectReason.SCHEMA
    # a bar overlapping 1971-01-01..2100-01-01, as decode_candle asks of one on the wire
    if not (0 <= open_ms < close_ms <= TS_MAX and bar_in_span(open_ms, close_ms)):
        return RejectReason.BAD_TS
    if grid is not None:  # tf.bounds(open_ms) == (open_ms, close_ms), without a call per row
        if open_ms % grid or close_ms - open_ms != grid:
            return RejectReason.BAD_TS
    else:
        try:
            if tf.bounds(open_ms) != (open_ms, close_ms):
                return RejectReason.BAD_TS
        except (OverflowError, ValueError):
            return RejectReason.BAD_TS
    if not (math.isfinite(op) and math.isfinite(hi) and math.isfinite(lo) and math.isfinite(cl)):
        return RejectReason.NON_FINITE
    if not (op > 0 and hi > 0 and lo > 0 and cl > 0):
        return RejectReason.NON_POSITIVE
    if op > MAX_PRICE or hi > MAX_PRICE or lo > MAX_PRICE or cl > MAX_PRICE:
        return RejectReason.OUT_OF_RANGE
    if not (lo <= op and lo <= cl and hi >= op and hi >= cl):
        return RejectReason.INCONSISTENT
    if span is not None and (lo < span[0] or hi > span[1]):
        return RejectReason.OUT_OF_RANGE
    volume = r.volume
    if not (_real(volume) and 0 <= volume <= MAX_CANDLE_VOLUME):
        return RejectReason.OUT_OF_RANGE
    ticks, revision = r.tick_count, r.revision
    if type(ticks) is not int or ticks < 0 or type(revision) is not int or revision < 0:
        return RejectReason.SCHEMA
    if ticks > _INT32_MAX or revision > _INT32_MAX:
        return RejectReason.OUT_OF_RANGE
    for v in (r.spread_mean, r.spread_min, r.spread_max):
        if v is not None and not (type(v) in _NUMBER_TYPES and math.isfinite(v)):  # _real, inlined
            return RejectReason.NON_FINITE
        if v is not None and not -MAX_PRICE <= v <= MAX_PRICE:
            return RejectReason.OUT_OF_RANGE
    return None


def price_span(symbol: str, instruments: InstrumentRegistry | None = None) -> tuple[float, float]:
    """The prices a candle of ``symbol`` may have on the wire: its instrument's traded range
    widened by ``PRICE_RANGE_FACTOR`` (as :func:`forex_diffusion.wire.decode_candle`), from
    ``instruments`` (default: the built-in registry); for a symbol it does not know, the
    range the offline readers give one (``1e-4``..``1e6``, widened the same).

    >>> lo, hi = price_span("EURUSD")
    >>> lo < 1.1 < hi < 5000
    True
    """
    inst = (instruments or _INSTRUMENTS).get(symbol)
    low, high = _UNKNOWN_RANGE if inst is None else (inst.low, inst.high)
    return low / PRICE_RANGE_FACTOR, high * PRICE_RANGE_FACTOR


def _grid(tf: Timeframe) -> int | None:
    """The bar length :func:`_candle_problem` checks times against, None for a daily timeframe."""
    return None if tf.is_daily else tf.duration_ms


def _to_candle(r: Any, symbol: str, timeframe: str) -> Candle:
    return Candle(
        symbol=symbol,
        timeframe=timeframe,
        open_ms=r.open_ms,
        close_ms=r.close_ms,
        open=r.open,
        high=r.high,
        low=r.low,
        close=r.close,
        volume=r.volume,
        tick_count=r.tick_count,
        spread_mean=r.spread_mean,
        spread_min=r.spread_min,
        spread_max=r.spread_max,
        final=bool(r.final),
        revision=r.revision,
    )


def _checked_candle(r: Any, symbol: str, timeframe: str) -> Candle:
    """:func:`_to_candle` of a row :func:`_candle_problem` passed, its numbers as floats (one
    construction: ``float`` of a float is the same object)."""
    sm, smin, smax = r.spread_mean, r.spread_min, r.spread_max
    return Candle(
        symbol=symbol,
        timeframe=timeframe,
        open_ms=r.open_ms,
        close_ms=r.close_ms,
        open=float(r.open),
        high=float(r.high),
        low=float(r.low),
        close=float(r.close),
        volume=float(r.volume),
        tick_count=r.tick_count,
        spread_mean=None if sm is None else float(sm),
        spread_min=None if smin is None else float(smin),
        spread_max=None if smax is None else float(smax),
        final=bool(r.final),
        revision=r.revision,
    )


def _candle_columns(conn: Connection, checked: bool) -> list[Any]:
    """The candle columns to select; ``checked``: on SQLite a number column holding anything
    else (text, text that is not UTF-8, a blob) reads as NULL."""
    return [
        number_or_null(conn, c) if checked and c.name in _NUMERIC_CANDLE_COLS else c
        for c in candles.columns
        if c.name not in ("symbol", "timeframe")
    ]


@db_retry
def fetch_candles(
    engine: Engine,
    symbol: str,
    timeframe: str,
    *,
    start_ms: int | None = None,
    end_ms: int | None = None,
    limit: int | None = None,
    final_only: bool = True,
    checked: bool = False,
    skipped: Counter[str] | None = None,
    instruments: InstrumentRegistry | None = None,
) -> list[Candle]:
    """Candles of one series ordered by open time, within ``[start_ms, end_ms)``.

    With ``limit`` and no ``start_ms``, the most recent ``limit`` candles (the window an
    inference path needs) are returned, still oldest first.

    With ``checked`` (every reader that computes from the candles: warm start, the report), a
    stored row that is not a candle the stream could have written (a NaN, zero or text price,
    high below low, an open time off the timeframe's grid or a close time not one bar after
    it, a price outside the range ``instruments`` (default: the built-in registry) gives the
    symbol, ...: :func:`_candle_problem`) is skipped: counted by reason (a
    :class:`~forex_diffusion.errors.RejectReason` value) in ``skipped`` when given, and logged
    in one WARNING line per call. ``limit`` bounds the rows read, so fewer candles come back.
    On SQLite a row whose open time is not an integer is then not read at all (it would sort
    past every candle and crowd them out of a ``limit``).
    """
    tf = Timeframe.parse(timeframe) if checked else None
    with engine.connect() as conn:
        q = select(*_candle_columns(conn, checked)).where(candles.c.symbol == symbol, candles.c.timeframe == timeframe)
        if (
            checked and conn.dialect.name == "sqlite"
        ):  # a text or real open time: not a candle, sorts past every integer
            q = q.where(func.typeof(candles.c.open_ms) == "integer")
        if start_ms is not None:
            q = q.where(candles.c.open_ms >= start_ms)
        if end_ms is not None:
            q = q.where(candles.c.open_ms < end_ms)
        if final_only:
            q = q.where(candles.c.final.is_(True))
        if limit is not None and start_ms is None:
            q = q.order_by(candles.c.open_ms.desc()).limit(limit)
            rows = list(conn.execute(q))
            rows.reverse()
        else:
            q = q.order_by(candles.c.open_ms)
            if limit is not None:
                q = q.limit(limit)
            rows = list(conn.execute(q))
    out: list[Candle] = []
    bad: Counter[str] = Counter()
    if tf is None:
        out = [_to_candle(r, symbol, timeframe) for r in rows]
    else:
        grid, span = _grid(tf), price_span(symbol, instruments)  # per read, not per row
        for r in rows:
            why = _candle_problem(r, tf, grid, span)
            if why is None:
                out.append(_checked_candle(r, symbol, timeframe))
            else:
                bad[why.value] += 1
    if bad:
        log.warning(
            "storage.candles_skipped symbol=%s timeframe=%s skipped=%d reasons=%s",
            symbol[:32],
            timeframe[:8],
            bad.total(),
            ",".join(f"{k}:{v}" for k, v in sorted(bad.items())),
        )
        if skipped is not None:
            skipped.update(bad)
    return out


@db_retry
def count_candles(engine: Engine, symbol: str | None = None, timeframe: str | None = None) -> int:
    """Number of candle rows (optionally of one symbol/timeframe)."""
    q = select(func.count()).select_from(candles)
    if symbol is not None:
        q = q.where(candles.c.symbol == symbol)
    if timeframe is not None:
        q = q.where(candles.c.timeframe == timeframe)
    with engine.connect() as conn:
        return int(conn.execute(q).scalar_one())


@db_retry
def fetch_forecasts(engine: Engine, symbol: str | None = None, timeframe: str | None = None) -> list[dict[str, Any]]:
    """Stored forecast payloads ordered by as_of, horizon, model version.

    A row whose payload is not UTF-8 text, not JSON or not a JSON object (written by hand or
    by another program) is skipped, counted in one WARNING line.
    """
    with engine.connect() as conn:
        payload = (
            forecasts.c.payload
        )  # its text, never parsed by the JSON type (a row that is not JSON fails the query)
        q = select(_raw_text(conn, payload) if conn.dialect.name == "sqlite" else cast(payload, Text))
        if symbol is not None:
            q = q.where(forecasts.c.symbol == symbol)
        if timeframe is not None:
            q = q.where(forecasts.c.timeframe == timeframe)
        q = q.order_by(
            forecasts.c.symbol,
            forecasts.c.timeframe,
            forecasts.c.as_of_ms,
            forecasts.c.horizon,
            forecasts.c.model_version,
        )
        raw = [r[0] for r in conn.execute(q)]
    out: list[dict[str, Any]] = []
    bad = 0
    for value in raw:
        try:
            doc = json.loads(_state_text(value, "forecast"))
        except (StateError, ValueError, RecursionError):
            doc = None
        if isinstance(doc, dict):
            out.append(doc)
        else:
            bad += 1
    if bad:
        log.warning("storage.forecasts_skipped skipped=%d reason=not a JSON object", bad)
    return out


@db_retry
def fetch_drift_events(engine: Engine, symbol: str | None = None, timeframe: str | None = None) -> list[dict[str, Any]]:
    """Stored drift events (``ts_ms, symbol, timeframe, detector, horizon, statistic, threshold``)
    ordered by event time; ``horizon`` is None for an event without one."""
    t = drift_events
    q = select(t.c.ts_ms, t.c.symbol, t.c.timeframe, t.c.detector, t.c.horizon, t.c.statistic, t.c.threshold)
    if symbol is not None:
        q = q.where(t.c.symbol == symbol)
    if timeframe is not None:
        q = q.where(t.c.timeframe == timeframe)
    q = q.order_by(t.c.ts_ms, t.c.symbol, t.c.timeframe, t.c.detector, t.c.horizon)
    with engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(q)]
    for r in rows:
        r["horizon"] = None if r["horizon"] == NO_HORIZON else int(r["horizon"])
    return rows
