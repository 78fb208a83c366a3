"""Forecast quality report: stored candles, forecasts and model changes → one HTML page.

The page is self-contained (inline CSS and SVG charts, no scripts, no plotting library):

1. the candle closes of the period with forecast fan charts (5–95 % and 25–75 % bands,
   median) for a sample of ``as_of`` times, each against the realised path;
2. the rolling CRPS of the model and of the EWMA random-walk baseline stored in every
   forecast payload, and the rolling 50 %/90 % interval coverage;
3. the model changes of the series (registry alias history: registrations, promotions,
   rollbacks) and the drift events the candle agent stored (``drift_events``);
4. summary numbers: forecasts, realised steps, CRPS, skill vs the random walk, coverage;
5. reliability per horizon step group (``1``, ``2-4``, ``5-12``, ``13+``): for every
   quantile level τ the share of realised closes at or below the forecast's τ-quantile
   against τ (the diagonal is perfect calibration; the random walk's is drawn too), and the
   PIT histogram over the bins the quantile levels delimit (uniform density 1 when
   calibrated);
6. touch probabilities, for forecasts that carry them (``touch``): Brier score and skill
   against the random walk's touch probabilities per step group, and a reliability diagram
   (predicted probability bins against the observed touch frequency, model and random walk).

Step ``k`` of a forecast made at ``as_of`` is realised by the close of the ``k``-th stored
candle whose open time is at or after ``as_of`` (``as_of`` is the close time of the candle
the forecast was made on). Scores use :func:`~forex_diffusion.quality.evaluation.crps_quantiles`
and :func:`~forex_diffusion.quality.evaluation.summarize_forecasts`, so they equal the backtest's.

Use :func:`load_report` (database → :class:`ReportData`) then :func:`render_report`
(→ HTML string); every string placed in the page is escaped.

Stored rows are input like any other: a forecast row whose payload is not UTF-8, not JSON,
not an object, or whose fields are not the shape the forecast agent writes (quantiles of
another width, non-finite or non-numeric values, an ``as_of`` outside the calendar or unlike
its key) is skipped and counted by reason (:func:`check_payload`, ``ReportData.skipped``),
and so is a candle row the stream could not have written (``fetch_candles(checked=True)``).
A period with a start of more than :data:`FORECASTS_MAX` forecasts, :data:`STEPS_MAX` forecast
steps or :data:`CANDLES_MAX` candles is refused (:class:`~forex_diffusion.errors.ConfigError`):
one report holds them in memory. A period without a start is cut to its newest forecasts that
fit (whole ``as_of`` times; ``ReportData.cut_from_ms``, :func:`cut_message`).
"""

from __future__ import annotations

import html
import json
import logging
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import (
    Connection,
    Engine,
    LargeBinary,
    MetaData,
    Table,
    Text,
    case,
    cast,
    func,
    inspect,
    literal,
    select,
    type_coerce,
)
from sqlalchemy.types import NullType

from forex_diffusion.errors import ConfigError
from forex_diffusion.forecast.result import price_issue
from forex_diffusion.forecast.touch import TOUCH_COLUMNS, realised_touch, touch_reliability, touch_rows
from forex_diffusion.quality.evaluation import (
    QUANTILE_COLUMNS,
    QUANTILE_LEVELS,
    StepGroupSummary,
    crps_quantiles,
    interval_hits,
    skill_score,
    summarize_forecasts,
)
from forex_diffusion.quality.monitoring import DEFAULT_HORIZON_GROUPS, HorizonGroup
from forex_diffusion.storage.model_registry import alias_history, list_versions
from forex_diffusion.storage.repository import fetch_candles, number_or_null, stored_text
from forex_diffusion.storage.retry import db_retry
from forex_diffusion.storage.tables import NO_HORIZON, candles, forecasts
from forex_diffusion.timeframes import Timeframe, ms_to_datetime
from forex_diffusion.wire import FORECAST_STEPS_MAX, PRICE_MAX, TOUCH_BANDS_MAX, TS_MAX

__all__ = [
    "CANDLES_MAX",
    "FORECASTS_MAX",
    "PAYLOAD_CHARS_MAX",
    "STEPS_MAX",
    "DriftTable",
    "ModelChange",
    "Reliability",
    "ReportConfig",
    "ReportData",
    "Summary",
    "check_payload",
    "counts_message",
    "cut_message",
    "empty_message",
    "list_series",
    "load_report",
    "realise",
    "reliability",
    "render_report",
    "rolling_scores",
    "skipped_message",
    "summarize",
    "touch_realise",
]

logger = logging.getLogger(__name__)

_Q = list(QUANTILE_COLUMNS)  # pandas selects columns with a list
_RW = [f"rw_{n}" for n in _Q]
_TIME_COLUMNS = ("ts_ms", "event_ms", "at_ms", "time_ms", "detected_ms", "created_ms")

#: Most stored forecasts one report reads (its steps, with the payloads, are held in memory:
#: about 1 GB at 100,000 forecasts of 24 steps); past it the period is refused.
FORECASTS_MAX = 100_000
#: Most forecast steps one report holds (the rows of ``ReportData.steps``: about 0.5 GB at
#: 2,000,000; a forecast may carry up to 10,000 steps).
STEPS_MAX = 2_000_000
#: Most candles one report reads (the period's, with the context before and the steps after it).
CANDLES_MAX = 2_000_000
#: Longest payload text read (a forecast of the wire's 10,000 steps with its random walk and
#: touch probabilities is about 5 MB); a longer row is skipped unread (``oversize``).
PAYLOAD_CHARS_MAX = 16 * 2**20


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportConfig:
    """What to report on.

    Parameters
    ----------
    symbol, timeframe
        The series.
    from_ms, to_ms
        Forecasts with ``from_ms <= as_of_ms < to_ms`` (None: unbounded); candles of the
        same period are drawn.
    window
        Forecasts per rolling window of the CRPS and coverage charts.
    fans
        Number of sampled forecasts drawn as fan charts.
    """

    symbol: str
    timeframe: str
    from_ms: int | None = None
    to_ms: int | None = None
    window: int = 100
    fans: int = 6

    def __post_init__(self) -> None:
        Timeframe.parse(self.timeframe)
        if self.window < 1:
            raise ConfigError(f"window must be >= 1, got {self.window}")
        if self.fans < 0:
            raise ConfigError(f"fans must be >= 0, got {self.fans}")
        if self.from_ms is not None and self.to_ms is not None and self.from_ms >= self.to_ms:
            raise ConfigError("the period's start must be before its end")


@dataclass(frozen=True, slots=True)
class ModelChange:
    """One registry alias change of a model key serving the series."""

    ms: int
    key: str
    alias: str
    version: str
    event: str
    reason: str
    until_ms: int | None


@dataclass(frozen=True, slots=True)
class DriftTable:
    """Rows of the ``drift_events`` table in the period (columns as the table has them)."""

    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]
    time_column: str | None


@dataclass(frozen=True, slots=True)
class Summary:
    """Scores over every realised step: ``forecasts`` scored, and ``scores``, every step of
    them as one :class:`~forex_diffusion.quality.evaluation.StepGroupSummary` (its ``n`` counts
    the realised steps; ``skill = 1 - crps / rw_crps``; NaN scores when none is realised)."""

    forecasts: int
    scores: StepGroupSummary


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportData:
    """Everything :func:`render_report` draws.

    ``candles`` has columns ``open_ms, close_ms, close``; ``steps`` one row per
    ``(as_of, model_version, step)`` with ``q05…q95``, ``rw_q05…rw_q95``, ``realized``
    (NaN while unknown) and ``realized_ms``. ``drift`` is None when the database has no
    ``drift_events`` table. ``payloads`` are the checked forecasts (:func:`check_payload`),
    ``skipped`` counts the stored rows left out by reason.
    """

    config: ReportConfig
    candles: pd.DataFrame
    steps: pd.DataFrame
    changes: tuple[ModelChange, ...] = ()
    drift: DriftTable | None = None
    payloads: tuple[dict[str, Any], ...] = field(default=(), repr=False)
    #: stored rows left out, by reason (``forecast:<reason>``, ``candle:<reason>``)
    skipped: Mapping[str, int] = field(default_factory=dict)
    #: fields dropped from forecasts that are scored (``forecast:touch``: a touch field of another shape)
    dropped: Mapping[str, int] = field(default_factory=dict)
    #: the first ``as_of`` reported when the period had no start and held more forecasts, steps
    #: or candles than one report reads: the report is of the newest forecasts that fit
    cut_from_ms: int | None = None

    @property
    def empty(self) -> bool:
        """True when the period holds no forecast of the series."""
        return bool(self.steps.empty)


# -- loading --------------------------------------------------------------------------------


def _raw(conn: Connection, column: Any) -> Any:
    """``column``'s text as the driver gives it: on SQLite as bytes (``CAST AS BLOB``), so text
    that is not UTF-8 is skipped for its row instead of failing the query in sqlite3."""
    return cast(column, LargeBinary) if conn.dialect.name == "sqlite" else cast(column, Text)


def _log_skipped(what: str, skipped: Counter[str]) -> None:
    if skipped:
        logger.warning(
            "report.skipped %s=%d reasons=%s",
            what,
            skipped.total(),
            ",".join(f"{k}:{v}" for k, v in sorted(skipped.items())),
        )


@db_retry
def list_series(engine: Engine) -> list[tuple[str, str, int]]:
    """Return ``(symbol, timeframe, forecast rows)`` of every series with forecasts, most first.

    A series whose symbol or timeframe is not UTF-8 text (or no timeframe) is left out, logged.
    """
    with engine.connect() as conn:
        sym, tf = _raw(conn, forecasts.c.symbol), _raw(conn, forecasts.c.timeframe)
        q = select(sym, tf, func.count()).group_by(sym, tf)
        rows = list(conn.execute(q))
    out: list[tuple[str, str, int]] = []
    skipped: Counter[str] = Counter()
    for raw_sym, raw_tf, n in rows:
        symbol, timeframe = stored_text(raw_sym), stored_text(raw_tf)
        if symbol is None or timeframe is None:
            skipped["not_utf8"] += int(n)
            continue
        try:
            Timeframe.parse(timeframe)
        except ConfigError:
            skipped["timeframe"] += int(n)
            continue
        out.append((symbol, timeframe, int(n)))
    _log_skipped("forecast_rows", skipped)
    return sorted(out, key=lambda r: (-r[2], r[0], r[1]))


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool)


def _finite(x: Any) -> float | None:
    """``x`` as a finite float, or None (not a number, NaN, infinite, an integer past a double)."""
    if not _is_number(x):
        return None
    try:
        v = float(x)
    except OverflowError:
        return None
    return v if math.isfinite(v) else None


def _numbers(value: Any, ndim: int) -> np.ndarray | None:
    """``value`` as a float64 array of ``ndim`` dimensions when it is numbers nested that deep
    (JSON lists of equal length, or such an array; no strings, booleans or nulls), else None."""
    if isinstance(value, np.ndarray):
        ok = value.ndim == ndim and value.size > 0 and value.dtype.kind in "fiu"
        return value.astype(np.float64) if ok else None
    rows = value if ndim == 2 else [value]
    if not isinstance(rows, (list, tuple)) or not rows:
        return None
    width = len(rows[0]) if isinstance(rows[0], (list, tuple, np.ndarray)) else -1
    for r in rows:
        if not isinstance(r, (list, tuple, np.ndarray)) or len(r) != width or not all(_is_number(x) for x in r):
            return None
    try:
        arr = np.asarray(rows, dtype=np.float64)
    except OverflowError:  # an integer past a double (a 400-digit number)
        return None
    return arr if ndim == 2 else arr[0]


def _prices(a: np.ndarray) -> bool:
    """Whether every value of ``a`` is a price: finite, > 0 and at most the wire's ``PRICE_MAX``
    (a quantile of 1e308 made every mean of the report overflow to infinity)."""
    return price_issue("prices", a) is None


def _touch(t: Any, h: int) -> dict[str, Any] | None:
    """The ``touch`` field when it has the shape the forecast agent writes, else None."""
    if not isinstance(t, dict):
        return None
    bands = t.get("bands")
    if not (isinstance(bands, (list, tuple)) and 0 < len(bands) <= TOUCH_BANDS_MAX):
        return None
    if not all(isinstance(b, str) and 1 < len(b) <= 32 and b[0] in "+-" for b in bands):
        return None
    prob, rw, levels = _numbers(t.get("p"), 2), _numbers(t.get("rw_p"), 2), _numbers(t.get("levels"), 1)
    if prob is None or rw is None or levels is None:
        return None
    if prob.shape != rw.shape or prob.shape[0] != len(bands) or prob.shape[1] > h or levels.shape != (len(bands),):
        return None
    if not (np.isfinite(prob).all() and np.isfinite(rw).all() and np.isfinite(levels).all()):
        return None
    if prob.min() < 0 or prob.max() > 1 or rw.min() < 0 or rw.max() > 1:
        return None
    return {"bands": list(bands), "p": prob, "rw_p": rw, "levels": levels}


def check_payload(
    p: Any, *, as_of_ms: int | None = None, model_version: str | None = None
) -> tuple[dict[str, Any] | None, str | None]:
    """Check one stored forecast payload; return ``(payload, None)`` with its fields as the
    report reads them, ``(None, reason)`` when it cannot be scored, or ``(payload, "touch")``
    when only its ``touch`` field is unusable (dropped).

    ``as_of_ms`` and ``model_version`` are the row's key columns when known: the payload's own
    fields must agree. Reasons: ``not_object``, ``as_of`` (not an integer in the calendar,
    ``0..TS_MAX``, or unlike the key), ``model_version``, ``quantiles`` (not ``h`` x 11 prices:
    finite, > 0, at most ``PRICE_MAX``; ``1 <= h <= FORECAST_STEPS_MAX``), ``levels``,
    ``rw_quantiles`` (not prices of the quantiles' shape), ``last_close`` (not a finite price).
    """
    if not isinstance(p, dict):
        return None, "not_object"
    as_of = p.get("as_of_ms", as_of_ms)
    if (
        not isinstance(as_of, (int, np.integer))
        or isinstance(as_of, bool)
        or not 0 <= as_of <= TS_MAX
        or (as_of_ms is not None and as_of != as_of_ms)
    ):
        return None, "as_of"
    version = p.get("model_version", model_version if model_version is not None else "")
    if not isinstance(version, str) or (model_version is not None and version != model_version):
        return None, "model_version"
    q = _numbers(p.get("quantiles"), 2)
    if q is None or q.shape[1] != len(_Q) or not 1 <= q.shape[0] <= FORECAST_STEPS_MAX or not _prices(q):
        return None, "quantiles"
    levels: Any = p.get("levels", list(QUANTILE_LEVELS))
    lv = _numbers(levels, 1)
    if lv is None or lv.shape != (len(QUANTILE_LEVELS),) or not np.allclose(lv, QUANTILE_LEVELS):
        return None, "levels"
    raw_rw = p.get("rw_quantiles")
    rw = np.full_like(q, np.nan) if raw_rw is None else _numbers(raw_rw, 2)
    if rw is None or rw.shape != q.shape or (raw_rw is not None and not _prices(rw)):
        return None, "rw_quantiles"
    last = _finite(p["last_close"]) if "last_close" in p else math.nan
    if last is None or not (math.isnan(last) or 0 < last <= PRICE_MAX):
        return None, "last_close"
    out: dict[str, Any] = _Checked(
        {
            "as_of_ms": int(as_of),
            "model_version": version,
            "quantiles": q,
            "rw_quantiles": None if raw_rw is None else rw,
            "levels": tuple(float(x) for x in QUANTILE_LEVELS),
            "last_close": float(last),
        }
    )
    if p.get("touch") is None:
        return out, None
    touch = _touch(p["touch"], q.shape[0])
    if touch is None:
        return out, "touch"
    out["touch"] = touch
    return out, None


def _decode_payload(raw: Any) -> tuple[Any, str | None]:
    text = stored_text(raw)
    if text is None:
        return None, "not_utf8" if raw is not None else "not_json"
    try:
        return json.loads(text), None
    except ValueError:  # not JSON, truncated, an integer past 4,300 digits
        return None, "not_json"
    except RecursionError:  # nested 100,000 deep
        return None, "not_json"


def _period(cfg: ReportConfig) -> list[Any]:
    where = [forecasts.c.symbol == cfg.symbol, forecasts.c.timeframe == cfg.timeframe]
    if cfg.from_ms is not None:
        where.append(forecasts.c.as_of_ms >= cfg.from_ms)
    if cfg.to_ms is not None:
        where.append(forecasts.c.as_of_ms < cfg.to_ms)
    return where


class _Checked(dict):  # type: ignore[type-arg]
    """A payload :func:`check_payload` returned: :func:`realise` and :func:`touch_realise` take
    it as it is (the check runs once per stored row). JSON never makes one."""

    __slots__ = ()


@dataclass(slots=True)
class _Fetched:
    """The forecasts :func:`_fetch_payloads` read: the checked payloads (oldest first), the
    rows left out as ``(key as_of or None, reason)``, the ``touch`` fields dropped likewise,
    and ``cut``: the period had no start and held more than one report reads, so only the
    newest forecasts that fit are kept."""

    payloads: list[dict[str, Any]]
    skipped: list[tuple[int | None, str]]
    dropped: list[tuple[int | None, str]]
    cut: bool = False

    def since(self, start: int) -> None:
        """Keep the forecasts (and their counts) of ``as_of >= start`` only."""
        self.payloads = [p for p in self.payloads if p["as_of_ms"] >= start]
        self.skipped = [(a, r) for a, r in self.skipped if a is None or a >= start]
        self.dropped = [(a, r) for a, r in self.dropped if a is None or a >= start]
        self.cut = True


def _too_many_forecasts(cfg: ReportConfig, n: int) -> ConfigError:
    return ConfigError(
        f"the period holds {n:,} stored forecasts of {cfg.symbol} {cfg.timeframe}, more than the "
        f"{FORECASTS_MAX:,} one report reads: narrow it with --from/--to"
    )


def _too_many_steps(cfg: ReportConfig) -> ConfigError:
    return ConfigError(
        f"the period's stored forecasts of {cfg.symbol} {cfg.timeframe} hold more than the "
        f"{STEPS_MAX:,} forecast steps one report reads: narrow it with --from/--to"
    )


@db_retry
def _fetch_payloads(engine: Engine, cfg: ReportConfig) -> _Fetched:
    """The period's checked forecasts (:func:`check_payload`) and the rows skipped, by reason.

    With a period start (``cfg.from_ms``), raises :class:`ConfigError` when the period holds
    more than :data:`FORECASTS_MAX` rows (counted before any is read) or its forecasts more
    than :data:`STEPS_MAX` steps. Without one, the newest rows are read first (at most
    ``FORECASTS_MAX + 1``: ``LIMIT`` in SQL) and the forecasts kept are those of the newest
    ``as_of`` times whose rows and steps fit under both ceilings (``cut`` when some are left).
    """
    newest = cfg.from_ms is None
    where = _period(cfg)
    fetched = _Fetched([], [], [])
    steps = 0
    with engine.connect() as conn:
        sqlite = conn.dialect.name == "sqlite"
        if not newest:
            n = int(conn.execute(select(func.count()).select_from(forecasts).where(*where)).scalar_one())
            if n > FORECASTS_MAX:
                raise _too_many_forecasts(cfg, n)
        elif sqlite:  # a key time that is no number has no place among the newest: counted apart
            odd = ~func.typeof(forecasts.c.as_of_ms).in_(("integer", "real"))
            n_odd = int(conn.execute(select(func.count()).select_from(forecasts).where(*where, odd)).scalar_one())
            fetched.skipped.extend([(None, "as_of")] * n_odd)
            where.append(func.typeof(forecasts.c.as_of_ms).in_(("integer", "real")))
        raw = _raw(conn, forecasts.c.payload)
        q = select(
            number_or_null(conn, forecasts.c.as_of_ms),
            _raw(conn, forecasts.c.model_version),
            func.length(raw),
            case((func.length(raw) <= PAYLOAD_CHARS_MAX, raw), else_=literal(None)),
        ).where(*where)
        if newest:  # the primary key's order backwards: bounded, never a sort of the table
            keys = (forecasts.c.as_of_ms, forecasts.c.horizon, forecasts.c.model_version)
            q = q.order_by(*(k.desc() for k in keys)).limit(FORECASTS_MAX + 1)
        else:
            q = q.order_by(forecasts.c.as_of_ms, forecasts.c.horizon, forecasts.c.model_version)
        # newest first, one as_of at a time: a time's rows are kept together or not at all
        group: _Fetched = _Fetched([], [], [])
        group_key: Any = object()
        group_steps = rows = committed = 0
        result = conn.execution_options(yield_per=256).execute(q)
        try:
            for as_of, raw_version, size, text in result:
                key = as_of if type(as_of) is int else None
                if newest and as_of != group_key:
                    fetched.payloads.extend(group.payloads)
                    fetched.skipped.extend(group.skipped)
                    fetched.dropped.extend(group.dropped)
                    steps += group_steps
                    committed = rows
                    group, group_key, group_steps = _Fetched([], [], []), as_of, 0
                rows += 1
                into = group if newest else fetched
                payload, why = _read_row(as_of, raw_version, size, text)
                if payload is not None:
                    into.payloads.append(payload)
                    h = payload["quantiles"].shape[0]
                    if newest:
                        group_steps += h
                    else:
                        steps += h
                        if steps > STEPS_MAX:
                            raise _too_many_steps(cfg)
                    if why is not None:
                        into.dropped.append((key, why))
                elif why is not None:
                    into.skipped.append((key, why))
                if newest and (rows > FORECASTS_MAX or steps + group_steps > STEPS_MAX):
                    fetched.cut = True  # this time's rows do not fit: the report starts after it
                    break
            else:
                if newest:
                    fetched.payloads.extend(group.payloads)
                    fetched.skipped.extend(group.skipped)
                    fetched.dropped.extend(group.dropped)
        finally:
            result.close()
    if fetched.cut and not committed:  # the newest time alone holds more than one report reads
        raise _too_many_forecasts(cfg, rows) if rows > FORECASTS_MAX else _too_many_steps(cfg)
    if newest:
        fetched.payloads.reverse()
    return fetched


def _read_row(as_of: Any, raw_version: Any, size: Any, text: Any) -> tuple[dict[str, Any] | None, str | None]:
    """One stored forecast row checked: ``(payload, None)``, ``(payload, "touch")`` (its touch
    field dropped) or ``(None, reason)``."""
    version = stored_text(raw_version)
    if version is None:
        return None, "not_utf8"
    if type(as_of) is not int:
        return None, "as_of"
    if size is not None and size > PAYLOAD_CHARS_MAX:
        return None, "oversize"
    value, why = _decode_payload(text)
    if why is not None:
        return None, why
    return check_payload(value, as_of_ms=as_of, model_version=version)


def _candle_frame(items: Iterable[Any]) -> pd.DataFrame:
    rows = [(c.open_ms, c.close_ms, c.close) for c in items]
    frame = pd.DataFrame(rows, columns=["open_ms", "close_ms", "close"])
    return frame.drop_duplicates("open_ms").sort_values("open_ms", kind="stable").reset_index(drop=True)


def realise(payloads: Sequence[Any], candles: pd.DataFrame) -> pd.DataFrame:
    """Return one row per forecast step with its realised close (NaN where not yet known).

    Step ``k`` of the forecast at ``as_of`` is realised by the close of the ``k``-th
    candle (of ``candles``, ordered by ``open_ms``) opening at or after ``as_of``.
    Columns: ``as_of, model_version, step, last_close, q05…q95, rw_q05…rw_q95, realized,
    realized_ms`` (``realized_ms`` is NaN where not realised). A payload
    :func:`check_payload` refuses is left out (logged).
    """
    cols = ["as_of", "model_version", "step", "last_close", *_Q, *_RW, "realized", "realized_ms"]
    if not payloads:
        return pd.DataFrame({c: pd.Series(dtype="float64") for c in cols})
    opens = candles["open_ms"].to_numpy(dtype=np.int64)
    closes = candles["close"].to_numpy(dtype=np.float64)
    close_ms = candles["close_ms"].to_numpy(dtype=np.float64)
    parts: list[pd.DataFrame] = []
    skipped: Counter[str] = Counter()
    for raw in payloads:
        p, why = (raw, None) if type(raw) is _Checked else check_payload(raw)
        if p is None:
            skipped[why or "?"] += 1
            continue
        q = p["quantiles"]
        rw = np.full_like(q, np.nan) if p["rw_quantiles"] is None else p["rw_quantiles"]
        h = q.shape[0]
        as_of = p["as_of_ms"]
        idx = int(np.searchsorted(opens, as_of, side="left")) + np.arange(h)
        known = idx < len(opens)
        realized = np.where(known, closes[np.minimum(idx, len(opens) - 1)] if len(opens) else np.nan, np.nan)
        r_ms = np.where(known, close_ms[np.minimum(idx, len(opens) - 1)] if len(opens) else np.nan, np.nan)
        data: dict[str, Any] = {
            "as_of": as_of,
            "model_version": p["model_version"],
            "step": np.arange(1, h + 1),
            "last_close": p["last_close"],
        }
        for k, name in enumerate(_Q):
            data[name] = q[:, k]
        for k, name in enumerate(_RW):
            data[name] = rw[:, k]
        data["realized"] = realized
        data["realized_ms"] = r_ms
        parts.append(pd.DataFrame(data, columns=cols))
    _log_skipped("forecasts", skipped)
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype="float64") for c in cols})
    return pd.concat(parts, ignore_index=True)


def touch_realise(payloads: Sequence[Any], candles: pd.DataFrame) -> pd.DataFrame:
    """Touch rows (:data:`~forex_diffusion.forecast.touch.TOUCH_COLUMNS`) of the payloads that carry ``touch``.

    Steps are realised as in :func:`realise`; ``hit`` is NaN where the step is not yet known.
    A payload or a ``touch`` field :func:`check_payload` refuses is left out.
    """
    opens = candles["open_ms"].to_numpy(dtype=np.int64)
    closes = candles["close"].to_numpy(dtype=np.float64)
    parts: list[pd.DataFrame] = []
    for raw in payloads:
        p = raw if type(raw) is _Checked else check_payload(raw)[0]
        t = p.get("touch") if p is not None else None
        if p is None or t is None:
            continue
        prob, rw, levels, bands = t["p"], t["rw_p"], t["levels"], t["bands"]
        h = prob.shape[1]
        start = int(np.searchsorted(opens, p["as_of_ms"], side="left"))
        path = np.concatenate([[p["last_close"]], closes[start : start + h]])
        hit = realised_touch(path, np.array([0]), levels[None, :], [1 if b.startswith("+") else -1 for b in bands], h)
        parts.append(touch_rows(np.array([p["as_of_ms"]]), bands, levels[None, :], prob[None], rw[None], hit))
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype="float64") for c in TOUCH_COLUMNS})
    return pd.concat(parts, ignore_index=True)


def _model_changes(engine: Engine, cfg: ReportConfig) -> tuple[ModelChange, ...]:
    names = set(inspect(engine).get_table_names())
    if not {"model_versions", "model_alias_history"} <= names:
        return ()
    keys = {
        v.key for v in list_versions(engine) if v.key.symbol in (cfg.symbol, "*") and v.key.timeframe == cfg.timeframe
    }
    out: list[ModelChange] = []
    for key in sorted(keys, key=str):
        for ch in alias_history(engine, key):
            if cfg.to_ms is not None and ch.from_ms >= cfg.to_ms:
                continue
            if cfg.from_ms is not None and ch.to_ms is not None and ch.to_ms <= cfg.from_ms:
                continue
            if ch.alias == "champion":
                event = "rollback" if ch.reason.startswith("rollback") else "promotion"
            else:
                event = ch.alias
            out.append(
                ModelChange(
                    ms=ch.from_ms,
                    key=str(key),
                    alias=ch.alias,
                    version=ch.version,
                    event=event,
                    reason=ch.reason,
                    until_ms=ch.to_ms,
                )
            )
    return tuple(sorted(out, key=lambda c: (c.ms, c.key, c.alias)))


@db_retry
def _drift_events(engine: Engine, cfg: ReportConfig, limit: int = 500) -> DriftTable | None:
    if not inspect(engine).has_table("drift_events"):
        return None
    table = Table("drift_events", MetaData(), autoload_with=engine)
    cols = table.c
    q = select(table)
    if "symbol" in cols:
        q = q.where(cols["symbol"] == cfg.symbol)
    if "timeframe" in cols:
        q = q.where(cols["timeframe"] == cfg.timeframe)
    tcol = next((c for c in _TIME_COLUMNS if c in cols), None)
    if tcol is not None:
        if cfg.from_ms is not None:
            q = q.where(cols[tcol] >= cfg.from_ms)
        if cfg.to_ms is not None:
            q = q.where(cols[tcol] < cfg.to_ms)
        q = q.order_by(cols[tcol])
    q = q.limit(limit)
    with engine.connect() as conn:
        if conn.dialect.name == "sqlite":  # a value of any type, text not UTF-8 included: read as stored
            q = q.with_only_columns(*(_as_stored(c) for c in table.columns))
        rows = tuple(tuple(_shown(v) for v in r) for r in conn.execute(q))
    return DriftTable(columns=tuple(c.name for c in table.columns), rows=rows, time_column=tcol)


def _as_stored(column: Any) -> Any:
    """A SQLite column's value with no type processing: numbers as numbers, anything else as
    its bytes (text that is not UTF-8 would fail sqlite3's decoding of the whole query)."""
    raw = case((func.typeof(column).in_(("integer", "real", "null")), column), else_=cast(column, LargeBinary))
    return type_coerce(raw, NullType()).label(column.name)


def _shown(v: Any) -> Any:
    """A drift cell as the page shows it: bytes as text (undecodable bytes replaced)."""
    if isinstance(v, (bytes, bytearray, memoryview)):
        return bytes(v)[:200].decode("utf-8", "replace")
    return v


@db_retry
def _count_candles(engine: Engine, cfg: ReportConfig, start: int | None, end: int | None) -> int:
    q = (
        select(func.count())
        .select_from(candles)
        .where(candles.c.symbol == cfg.symbol, candles.c.timeframe == cfg.timeframe)
    )
    if start is not None:
        q = q.where(candles.c.open_ms >= start)
    if end is not None:
        q = q.where(candles.c.open_ms < end)
    with engine.connect() as conn:
        return int(conn.execute(q).scalar_one())


@db_retry
def _candle_cutoff(engine: Engine, cfg: ReportConfig, end: int) -> int:
    """The open time of the :data:`CANDLES_MAX`-th newest stored candle before ``end`` (``OFFSET``
    in SQL: the index read backwards, no row read)."""
    q = (
        select(candles.c.open_ms)
        .where(candles.c.symbol == cfg.symbol, candles.c.timeframe == cfg.timeframe, candles.c.open_ms < end)
        .order_by(candles.c.open_ms.desc())
        .offset(CANDLES_MAX - 1)
        .limit(1)
    )
    with engine.connect() as conn:
        value = conn.execute(q).scalar_one()
    return int(value)


def load_report(engine: Engine, config: ReportConfig) -> ReportData:
    """Read the period's forecasts, the candles that realise them, model changes and drift.

    A database without the project's tables reads as empty (nothing is created). Stored rows
    that are no forecast or no candle are skipped and counted (``ReportData.skipped``).

    Without ``config.from_ms``, a series of more forecasts, steps or candles than the ceilings
    is reported for its newest forecasts that fit (``ReportData.cut_from_ms``).

    Raises
    ------
    ConfigError
        The period (with a start) holds more than :data:`FORECASTS_MAX` forecasts,
        :data:`STEPS_MAX` steps or :data:`CANDLES_MAX` candles: narrow it; or, without a
        start, its newest ``as_of`` time alone does.
    """
    tables = set(inspect(engine).get_table_names())
    if not {"forecasts", "candles"} <= tables:
        empty = _candle_frame([])
        return ReportData(
            config=config,
            candles=empty,
            steps=realise([], empty),
            changes=_model_changes(engine, config),
            drift=_drift_events(engine, config),
        )
    fetched = _fetch_payloads(engine, config)
    start = config.from_ms
    if fetched.payloads and (start is None or fetched.payloads[0]["as_of_ms"] < start):
        start = fetched.payloads[0]["as_of_ms"]
    # the period's candles end at the period's end, or past the last forecast (then the steps after it)
    end = config.to_ms if config.to_ms is not None or not fetched.payloads else fetched.payloads[-1]["as_of_ms"] + 1
    n = _count_candles(engine, config, start, end)
    if n > CANDLES_MAX and config.from_ms is None and fetched.payloads:
        # no period start: the newest forecasts whose candles fit
        assert end is not None  # the period's end or past its last forecast
        cutoff = _candle_cutoff(engine, config, end)
        start = next(p["as_of_ms"] for p in fetched.payloads if p["as_of_ms"] >= cutoff)
        fetched.since(start)
        n = _count_candles(engine, config, start, end)
    if n > CANDLES_MAX:
        raise ConfigError(
            f"the period holds {n:,} stored candles of {config.symbol} {config.timeframe}, more than the "
            f"{CANDLES_MAX:,} one report reads: narrow it with --from/--to"
        )
    payloads = fetched.payloads
    bad_forecasts = Counter(r for _, r in fetched.skipped)
    dropped = Counter(r for _, r in fetched.dropped)
    _log_skipped("forecast_rows", bad_forecasts)
    _log_skipped("forecast_fields", dropped)
    max_h = max((p["quantiles"].shape[0] for p in payloads), default=0)
    bad_candles: Counter[str] = Counter()
    sym, tf = config.symbol, config.timeframe
    # context before the period (for the first fans), the period, and the steps after it
    before = (
        fetch_candles(engine, sym, tf, end_ms=start, limit=2 * max_h, checked=True, skipped=bad_candles)
        if start is not None and max_h
        else []
    )
    inside = fetch_candles(engine, sym, tf, start_ms=start, end_ms=end, checked=True, skipped=bad_candles)
    after = (
        fetch_candles(engine, sym, tf, start_ms=end, limit=max_h, checked=True, skipped=bad_candles)
        if end is not None and max_h
        else []
    )
    candle_frame = _candle_frame([*before, *inside, *after])
    steps = realise(payloads, candle_frame)
    skipped = {f"forecast:{k}": v for k, v in sorted(bad_forecasts.items())}
    skipped.update({f"candle:{k}": v for k, v in sorted(bad_candles.items())})
    return ReportData(
        config=config,
        candles=candle_frame,
        steps=steps,
        changes=_model_changes(engine, config),
        drift=_drift_events(engine, config),
        payloads=tuple(payloads),
        skipped=skipped,
        dropped={f"forecast:{k}": v for k, v in sorted(dropped.items())},
        cut_from_ms=start if fetched.cut and payloads else None,
    )


# -- scores ---------------------------------------------------------------------------------


def summarize(steps: pd.DataFrame) -> Summary:
    """Score every realised step of ``steps`` (a :func:`realise` frame) as one group."""
    if not len(steps):
        nan = math.nan
        return Summary(0, StepGroupSummary((1, 1), 0, nan, nan, nan, nan, nan, nan, nan))
    n_fc = int(steps.groupby(["as_of", "model_version"]).ngroups)
    h = max(int(steps["step"].max()), 1)
    return Summary(n_fc, summarize_forecasts(steps, [(1, h)])[0])


def rolling_scores(steps: pd.DataFrame, window: int) -> pd.DataFrame:
    """Rolling scores over the last ``window`` forecasts with a realised step, by ``as_of``.

    Returns columns ``as_of, crps, rw_crps, cover50, cover90, n`` where each value pools
    every realised step of the forecasts in the window (``n`` of them).
    """
    out_cols = ["as_of", "crps", "rw_crps", "cover50", "cover90", "n"]
    done = steps[np.isfinite(steps["realized"].to_numpy(dtype=np.float64))] if len(steps) else steps
    if done.empty:
        return pd.DataFrame({c: pd.Series(dtype="float64") for c in out_cols})
    y = done["realized"].to_numpy(dtype=np.float64)
    q = done[_Q].to_numpy(dtype=np.float64)
    rq = done[_RW].to_numpy(dtype=np.float64)
    in50, in90 = interval_hits(q, y, "50"), interval_hits(q, y, "90")
    assert in50 is not None and in90 is not None  # QUANTILE_LEVELS measure both intervals
    per = pd.DataFrame(
        {
            "as_of": done["as_of"].to_numpy(),
            "crps": crps_quantiles(q, y),
            "rw_crps": crps_quantiles(rq, y),
            "in50": in50.astype(float),
            "in90": in90.astype(float),
            "n": 1.0,
        }
    )
    by = per.groupby(["as_of"], sort=True).sum()
    roll = by.rolling(window, min_periods=1).sum()
    return pd.DataFrame(
        {
            "as_of": roll.index.to_numpy(dtype=np.int64),
            "crps": (roll["crps"] / roll["n"]).to_numpy(),
            "rw_crps": (roll["rw_crps"] / roll["n"]).to_numpy(),
            "cover50": (roll["in50"] / roll["n"]).to_numpy(),
            "cover90": (roll["in90"] / roll["n"]).to_numpy(),
            "n": roll["n"].to_numpy(),
        },
        columns=out_cols,
    )


@dataclass(frozen=True, slots=True)
class Reliability:
    """Calibration of the realised steps of one horizon group.

    ``below[k]`` is the share of realised closes at or below the forecast's quantile at
    ``levels[k]`` (``rw_below`` the same for the random walk); a calibrated forecast has
    ``below ≈ levels``. ``pit[j]`` is the share of closes in the ``j``-th of the
    ``len(levels) + 1`` bins the quantiles delimit (below the first, between neighbours,
    above the last); ``pit_density[j] = pit[j] / width[j]`` is 1 in every bin when calibrated.
    """

    group: str
    n: int
    levels: tuple[float, ...]
    below: tuple[float, ...]
    rw_below: tuple[float, ...]
    pit: tuple[float, ...]

    @property
    def widths(self) -> tuple[float, ...]:
        """Return the nominal probability of each PIT bin."""
        edges = (0.0, *self.levels, 1.0)
        return tuple(b - a for a, b in zip(edges[:-1], edges[1:], strict=True))

    @property
    def pit_density(self) -> tuple[float, ...]:
        """Return each PIT bin's share divided by its nominal probability."""
        return tuple(p / w for p, w in zip(self.pit, self.widths, strict=True))


def reliability(steps: pd.DataFrame, groups: Sequence[HorizonGroup] = DEFAULT_HORIZON_GROUPS) -> list[Reliability]:
    """Return the calibration of the realised steps of ``steps`` per horizon step group.

    Groups without a realised step are left out. A realised close equal to a quantile counts
    as at or below it.
    """
    out: list[Reliability] = []
    if steps.empty:
        return out
    done = steps[np.isfinite(steps["realized"].to_numpy(dtype=np.float64))]
    levels = tuple(float(x) for x in QUANTILE_LEVELS)
    for grp in groups:
        g = done[[grp.contains(int(k)) for k in done["step"]]] if len(done) else done
        if g.empty:
            continue
        y = g["realized"].to_numpy(dtype=np.float64)[:, None]
        q = np.sort(g[_Q].to_numpy(dtype=np.float64), axis=1)  # a crossed quantile set: sorted
        rq = g[_RW].to_numpy(dtype=np.float64)
        below = (y <= q).mean(axis=0)
        rw_ok = np.isfinite(rq).all(axis=1)
        rw_below = (
            (y[rw_ok] <= np.sort(rq[rw_ok], axis=1)).mean(axis=0) if rw_ok.any() else np.full(len(levels), np.nan)
        )
        bins = (y > q).sum(axis=1)  # 0: at or below the first quantile ... len(levels): above the last
        pit = np.bincount(bins, minlength=len(levels) + 1) / len(y)
        out.append(
            Reliability(
                group=grp.label,
                n=len(y),
                levels=levels,
                below=tuple(float(v) for v in below),
                rw_below=tuple(float(v) for v in rw_below),
                pit=tuple(float(v) for v in pit),
            )
        )
    return out


def _sample_fans(steps: pd.DataFrame, n: int) -> list[tuple[int, str]]:
    """Up to ``n`` evenly spaced ``(as_of, model_version)`` forecasts, fully realised ones first."""
    if steps.empty or n == 0:
        return []
    full = steps.groupby(["as_of", "model_version"])["realized"].apply(
        lambda s: bool(np.isfinite(s.to_numpy(dtype=np.float64)).all())
    )
    pool = list(full[full].index) or list(full.index)
    if len(pool) <= n:
        return [(int(a), str(v)) for a, v in pool]
    picks = np.linspace(0, len(pool) - 1, n).round().astype(int)
    return [(int(pool[i][0]), str(pool[i][1])) for i in picks]


# -- SVG ------------------------------------------------------------------------------------


def _e(text: Any) -> str:
    """Escape ``text`` for HTML/SVG text and attribute values."""
    return html.escape(str(text), quote=True)


def _fmt_time(ms: Any, spec: str = "%Y-%m-%d %H:%M") -> str:
    """Epoch milliseconds as ``YYYY-MM-DD HH:MM`` UTC; "–" for anything that is no time of
    the calendar (None, NaN, text, past year 9999 or before 1970: a stored row may hold it)."""
    v = _finite(ms)
    if v is None or not 0 <= v <= TS_MAX:
        return "–"
    return ms_to_datetime(int(v)).strftime(spec)


def _fmt(v: float, spec: str = ".4g") -> str:
    return "–" if v is None or not math.isfinite(v) else format(v, spec)


def _pct(v: float) -> str:
    return "–" if v is None or not math.isfinite(v) else f"{100 * v:.1f} %"


def _nice_ticks(lo: float, hi: float, n: int = 5) -> tuple[np.ndarray, int]:
    """Round tick values covering ``[lo, hi]`` and the decimals that print them."""
    span = hi - lo if hi > lo else abs(hi) or 1.0
    raw = span / max(n, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    ticks = np.arange(math.ceil(lo / step) * step, hi + step * 1e-9, step)
    return ticks, max(0, -math.floor(math.log10(step)) + (1 if step / mag == 2.5 else 0))


@dataclass(frozen=True, slots=True)
class _Frame:
    """Plot area of one chart: data ranges mapped to pixels."""

    width: int
    height: int
    x0: float
    x1: float
    y0: float
    y1: float
    left: int = 70
    right: int = 16
    top: int = 28
    bottom: int = 36

    def x(self, v: np.ndarray | float) -> np.ndarray:
        span = self.x1 - self.x0 or 1.0
        return self.left + (np.asarray(v, dtype=np.float64) - self.x0) / span * (self.width - self.left - self.right)

    def y(self, v: np.ndarray | float) -> np.ndarray:
        span = self.y1 - self.y0 or 1.0
        return self.top + (1.0 - (np.asarray(v, dtype=np.float64) - self.y0) / span) * (
            self.height - self.top - self.bottom
        )


def _frame(
    width: int, height: int, xs: Sequence[np.ndarray], ys: Sequence[np.ndarray], y_floor: float | None = None
) -> _Frame:
    xv = np.concatenate([np.asarray(a, dtype=np.float64).ravel() for a in xs] or [np.zeros(1)])
    yv = np.concatenate([np.asarray(a, dtype=np.float64).ravel() for a in ys] or [np.zeros(1)])
    xv, yv = xv[np.isfinite(xv)], yv[np.isfinite(yv)]
    x0, x1 = (float(xv.min()), float(xv.max())) if xv.size else (0.0, 1.0)
    y0, y1 = (float(yv.min()), float(yv.max())) if yv.size else (0.0, 1.0)
    if y_floor is not None:
        y0 = min(y0, y_floor)
    pad = 0.05 * (y1 - y0 or abs(y1) * 1e-4 or 1.0)
    return _Frame(width, height, x0, x1 if x1 > x0 else x0 + 1.0, y0 - pad, y1 + pad)


def _pts(f: _Frame, x: np.ndarray, y: np.ndarray) -> str:
    px, py = f.x(x), f.y(y)
    return " ".join(f"{a:.1f},{b:.1f}" for a, b in zip(px, py, strict=True) if math.isfinite(a) and math.isfinite(b))


def _line(
    f: _Frame, x: np.ndarray, y: np.ndarray, colour: str, width: float = 1.5, dash: str = "", title: str = ""
) -> str:
    ok = np.isfinite(np.asarray(x, dtype=np.float64)) & np.isfinite(np.asarray(y, dtype=np.float64))
    if ok.sum() < 1:
        return ""
    d = f' stroke-dasharray="{dash}"' if dash else ""
    t = f"<title>{_e(title)}</title>" if title else ""
    return (
        f'<polyline fill="none" stroke="{colour}" stroke-width="{width}"{d} '
        f'points="{_pts(f, np.asarray(x)[ok], np.asarray(y)[ok])}">{t}</polyline>'
    )


def _band(
    f: _Frame, x: np.ndarray, lo: np.ndarray, hi: np.ndarray, colour: str, opacity: float = 1.0, title: str = ""
) -> str:
    ok = np.isfinite(x) & np.isfinite(lo) & np.isfinite(hi)
    if ok.sum() < 1:
        return ""
    pts = _pts(f, np.concatenate([x[ok], x[ok][::-1]]), np.concatenate([hi[ok], lo[ok][::-1]]))
    t = f"<title>{_e(title)}</title>" if title else ""
    return f'<polygon fill="{colour}" fill-opacity="{opacity}" stroke="none" points="{pts}">{t}</polygon>'


def _vline(f: _Frame, x: float, colour: str, label: str = "", dash: str = "4 3") -> str:
    if not f.x0 <= x <= f.x1:
        return ""
    px = float(f.x(x))
    out = (
        f'<line x1="{px:.1f}" x2="{px:.1f}" y1="{f.top}" y2="{f.height - f.bottom}" stroke="{colour}" '
        f'stroke-width="1" stroke-dasharray="{dash}"><title>{_e(label)}</title></line>'
    )
    return out


def _axes(f: _Frame, *, y_fmt: str = "", y_pct: bool = False, time_x: bool = True) -> str:
    parts = [
        f'<rect x="{f.left}" y="{f.top}" width="{f.width - f.left - f.right}" '
        f'height="{f.height - f.top - f.bottom}" fill="#fff" stroke="#bbb"/>'
    ]
    ticks, dec = _nice_ticks(f.y0, f.y1, 5)
    for t in ticks:
        py = float(f.y(t))
        label = f"{100 * t:.0f}%" if y_pct else (format(t, y_fmt) if y_fmt else f"{t:.{dec}f}")
        parts.append(
            f'<line x1="{f.left}" x2="{f.width - f.right}" y1="{py:.1f}" y2="{py:.1f}" stroke="#eee"/>'
            f'<text x="{f.left - 6}" y="{py + 4:.1f}" text-anchor="end">{_e(label)}</text>'
        )
    n = max(3, (f.width - f.left - f.right) // 130)
    short = "%H:%M" if f.x1 - f.x0 < 36 * 3_600_000 else "%m-%d %H:%M"
    for i, t in enumerate(np.linspace(f.x0, f.x1, n)):
        px = float(f.x(t))
        if time_x:
            # an axis of forecasts near year 9999 is padded past the calendar: those ticks are "–"
            label = _fmt_time(t, "%Y-%m-%d %H:%M" if i == 0 else short)
        else:
            label = f"{t:g}"
        anchor = "start" if i == 0 else ("end" if i == n - 1 else "middle")
        parts.append(
            f'<line x1="{px:.1f}" x2="{px:.1f}" y1="{f.height - f.bottom}" '
            f'y2="{f.height - f.bottom + 4}" stroke="#888"/>'
            f'<text x="{px:.1f}" y="{f.height - f.bottom + 16}" text-anchor="{anchor}">{_e(label)}</text>'
        )
    return "".join(parts)


def _svg(
    f: _Frame, title: str, body: Sequence[str], legend: Sequence[tuple[str, str]] = (), css_class: str = "chart"
) -> str:
    leg = []
    x = f.left
    for colour, name in legend:
        leg.append(
            f'<rect x="{x}" y="{f.top - 16}" width="12" height="8" fill="{colour}"/>'
            f'<text x="{x + 16}" y="{f.top - 8}">{_e(name)}</text>'
        )
        x += 26 + 7 * len(name)
    return (
        f'<svg class="{css_class}" xmlns="http://www.w3.org/2000/svg" width="{f.width}" height="{f.height}" '
        f'viewBox="0 0 {f.width} {f.height}" role="img" aria-label="{_e(title)}">'
        f"<title>{_e(title)}</title>{''.join(body)}{''.join(leg)}</svg>"
    )


def _decimate(x: np.ndarray, y: np.ndarray, max_points: int = 1600) -> tuple[np.ndarray, np.ndarray]:
    """Keep each bucket's min and max (in time order) when there are more than ``max_points``."""
    n = len(x)
    if n <= max_points:
        return x, y
    buckets = np.array_split(np.arange(n), max_points // 2)
    keep: list[int] = []
    for b in buckets:
        i, j = b[np.argmin(y[b])], b[np.argmax(y[b])]
        keep.extend(sorted({int(i), int(j)}))
    idx = np.asarray(keep)
    return x[idx], y[idx]


_BAND90, _BAND50, _MEDIAN, _REAL, _PRICE, _RWC = "#c6dbef", "#6baed6", "#08306b", "#cb181d", "#444", "#777"


def _fan_geometry(data: ReportData, as_of: int, version: str) -> tuple[pd.DataFrame, np.ndarray]:
    g = data.steps[(data.steps["as_of"] == as_of) & (data.steps["model_version"] == version)].sort_values("step")
    dur = Timeframe.parse(data.config.timeframe).duration_ms
    nominal = as_of + g["step"].to_numpy(dtype=np.float64) * dur
    xs = np.where(np.isfinite(g["realized_ms"].to_numpy(dtype=np.float64)), g["realized_ms"], nominal)
    return g, xs.astype(np.float64)


def _fan_layers(f: _Frame, g: pd.DataFrame, xs: np.ndarray, as_of: int, *, realised: bool = True) -> list[str]:
    lc = float(g["last_close"].iloc[0]) if len(g) else math.nan
    x = np.concatenate([[as_of], xs])

    def col(name: str) -> np.ndarray:
        return np.concatenate([[lc], g[name].to_numpy(dtype=np.float64)])

    q25 = col("q20") + 0.5 * (col("q30") - col("q20"))
    q75 = col("q70") + 0.5 * (col("q80") - col("q70"))
    when = _fmt_time(as_of)
    out = [
        _band(f, x, col("q05"), col("q95"), _BAND90, 0.85, f"5–95 % forecast at {when}"),
        _band(f, x, q25, q75, _BAND50, 0.9, f"25–75 % forecast at {when}"),
        _line(f, x, col("q50"), _MEDIAN, 1.5, title=f"median forecast at {when}"),
    ]
    if realised:
        out.append(_line(f, x, col("realized"), _REAL, 1.5, title="realised closes"))
    return out


def _price_chart(data: ReportData, fans: list[tuple[int, str]]) -> str:
    c = data.candles
    cfg = data.config
    inside = c
    if cfg.from_ms is not None:
        inside = inside[inside["close_ms"] >= cfg.from_ms]
    if cfg.to_ms is not None:
        inside = inside[inside["open_ms"] < cfg.to_ms]
    x, y = _decimate(inside["close_ms"].to_numpy(dtype=np.float64), inside["close"].to_numpy(dtype=np.float64))
    geo = [_fan_geometry(data, a, v) for a, v in fans]
    fx = [x] + [gx for _, gx in geo]
    fy = [y] + [g[["q05", "q95"]].to_numpy() for g, _ in geo]
    f = _frame(960, 340, fx, fy)
    body = [_axes(f), _line(f, x, y, _PRICE, 1.0, title="candle closes")]
    for i, ((a, _v), (g, gx)) in enumerate(zip(fans, geo, strict=True), start=1):
        body.extend(_fan_layers(f, g, gx, a, realised=False))
        px = float(f.x(a))
        body.append(f'<text x="{px:.1f}" y="{f.top + 12}" text-anchor="middle" class="fanno">{i}</text>')
    body.extend(_change_marks(f, data))
    legend = [
        (_PRICE, "close"),
        (_BAND90, "5–95 %"),
        (_BAND50, "25–75 %"),
        (_MEDIAN, "median"),
        ("#2ca02c", "champion change"),
        ("#ff7f0e", "drift event"),
    ]
    title = f"{cfg.symbol} {cfg.timeframe} closes with sampled forecast fans"
    return _svg(f, title, body, legend)


def _fan_panel(data: ReportData, n: int, as_of: int, version: str) -> str:
    g, gx = _fan_geometry(data, as_of, version)
    c = data.candles
    h = len(g)
    ctx = c[c["close_ms"] <= as_of].tail(2 * h)
    cx, cy = ctx["close_ms"].to_numpy(dtype=np.float64), ctx["close"].to_numpy(dtype=np.float64)
    f = _frame(
        470, 260, [cx, gx, np.array([as_of])], [cy, g[["q05", "q95", "rw_q05", "rw_q95", "realized"]].to_numpy()]
    )
    body = [_axes(f), _line(f, cx, cy, _PRICE, 1.2, title="closes before as_of")]
    body.extend(_fan_layers(f, g, gx, as_of))
    for name in ("rw_q05", "rw_q95"):
        body.append(_line(f, gx, g[name].to_numpy(dtype=np.float64), _RWC, 1.0, "3 3", "random walk 5–95 %"))
    body.append(_vline(f, float(as_of), "#999", f"as_of {_fmt_time(as_of)}", dash="2 2"))
    title = f"{n}. as_of {_fmt_time(as_of)} UTC, {version}"
    legend = [(_BAND90, "5–95"), (_BAND50, "25–75"), (_MEDIAN, "median"), (_REAL, "realised"), (_RWC, "RW 5–95")]
    return f"<figure><figcaption>{_e(title)}</figcaption>{_svg(f, title, body, legend, 'fan')}</figure>"


def _change_marks(f: _Frame, data: ReportData) -> list[str]:
    out = [
        _vline(f, float(ch.ms), "#2ca02c", f"{ch.event}: {ch.version} ({ch.reason})")
        for ch in data.changes
        if ch.alias == "champion"
    ]
    d = data.drift
    if d is not None and d.time_column is not None:
        i = d.columns.index(d.time_column)
        out.extend(
            _vline(
                f,
                float(r[i]),
                "#ff7f0e",
                "drift: " + ", ".join(f"{k}={v}" for k, v in zip(d.columns, r, strict=True)),
                dash="1 3",
            )
            for r in d.rows
            if r[i] is not None
        )
    return out


def _rolling_charts(data: ReportData, roll: pd.DataFrame) -> str:
    if roll.empty:
        return "<p class='note'>No forecast step is realised yet by a stored candle: nothing to score.</p>"
    x = roll["as_of"].to_numpy(dtype=np.float64)
    w = data.config.window
    f = _frame(960, 260, [x], [roll["crps"].to_numpy(), roll["rw_crps"].to_numpy()], y_floor=0.0)
    body = [
        _axes(f, y_fmt=".2g"),
        _line(f, x, roll["rw_crps"].to_numpy(dtype=np.float64), _RWC, 1.5, "5 3", "random walk CRPS"),
        _line(f, x, roll["crps"].to_numpy(dtype=np.float64), _MEDIAN, 1.5, title="model CRPS"),
    ]
    body.extend(_change_marks(f, data))
    crps = _svg(f, f"Rolling CRPS over {w} forecasts", body, [(_MEDIAN, "model"), (_RWC, "random walk")])
    f2 = _Frame(960, 260, f.x0, f.x1, 0.0, 1.0)
    body2 = [
        _axes(f2, y_pct=True),
        _line(f2, np.array([f2.x0, f2.x1]), np.array([0.5, 0.5]), "#6baed6", 1, "4 4"),
        _line(f2, np.array([f2.x0, f2.x1]), np.array([0.9, 0.9]), "#08306b", 1, "4 4"),
        _line(f2, x, roll["cover50"].to_numpy(dtype=np.float64), "#6baed6", 1.8, title="50 % interval coverage"),
        _line(f2, x, roll["cover90"].to_numpy(dtype=np.float64), "#08306b", 1.8, title="90 % interval coverage"),
    ]
    body2.extend(_change_marks(f2, data))
    cov = _svg(
        f2,
        f"Rolling coverage over {w} forecasts",
        body2,
        [("#6baed6", "50 % interval (nominal dashed)"), ("#08306b", "90 % interval (nominal dashed)")],
    )
    return (
        f"<h3>Rolling CRPS (lower is better), {w} forecasts per window</h3>{crps}"
        f"<h3>Rolling interval coverage, {w} forecasts per window</h3>{cov}"
    )


def _reliability_charts(data: ReportData) -> str:
    rel = reliability(data.steps)
    if not rel:
        return "<p class='note'>No forecast step is realised yet by a stored candle: nothing to calibrate.</p>"
    figs = []
    for r in rel:
        lv = np.asarray(r.levels)
        f = _Frame(470, 260, 0.0, 1.0, 0.0, 1.0)
        body = [
            _axes(f, y_pct=True, time_x=False),
            _line(f, np.array([0.0, 1.0]), np.array([0.0, 1.0]), "#999", 1, "4 4", "perfect calibration"),
            _line(f, lv, np.asarray(r.rw_below), _RWC, 1.2, "3 3", "random walk"),
            _line(f, lv, np.asarray(r.below), _MEDIAN, 1.8, title="model"),
        ]
        body.extend(
            f'<circle cx="{float(f.x(a)):.1f}" cy="{float(f.y(b)):.1f}" r="2.5" fill="{_MEDIAN}">'
            f"<title>{_e(f'level {a:.2f}: {100 * b:.1f} % of closes at or below')}</title></circle>"
            for a, b in zip(lv, r.below, strict=True)
        )
        body.append(_axis_titles(f, "nominal quantile level", "closes at or below the quantile"))
        title = f"Steps {r.group}: share of closes at or below each forecast quantile ({r.n} steps)"
        cal = _svg(f, title, body, [(_MEDIAN, "model"), (_RWC, "random walk"), ("#999", "ideal")], "rel")
        dens = np.asarray(r.pit_density)
        edges = np.array([0.0, *r.levels, 1.0])
        f2 = _Frame(470, 260, 0.0, 1.0, 0.0, max(2.0, float(np.nanmax(dens)) * 1.1))
        bars = [_axes(f2, y_fmt=".1f", time_x=False)]
        for a, b, d, share in zip(edges[:-1], edges[1:], dens, r.pit, strict=True):
            x0, x1, y0, y1 = float(f2.x(a)), float(f2.x(b)), float(f2.y(d)), float(f2.y(0.0))
            bars.append(
                f'<rect x="{x0 + 0.5:.1f}" y="{y0:.1f}" width="{max(x1 - x0 - 1, 0.5):.1f}" '
                f'height="{max(y1 - y0, 0):.1f}" fill="{_BAND50}">'
                f"<title>{_e(f'PIT {a:.2f}–{b:.2f}: {100 * share:.1f} % of closes (nominal {100 * (b - a):.0f} %)')}"
                "</title></rect>"
            )
        bars.append(_line(f2, np.array([0.0, 1.0]), np.array([1.0, 1.0]), "#999", 1, "4 4", "uniform"))
        bars.append(_axis_titles(f2, "PIT (forecast CDF at the realised close)", "density (1 = calibrated)"))
        pit = _svg(
            f2,
            f"Steps {r.group}: PIT histogram ({r.n} steps)",
            bars,
            [(_BAND50, "share / bin width"), ("#999", "uniform")],
            "pit",
        )
        figs.append(
            f"<figure><figcaption>{_e(f'Steps {r.group}: reliability, {r.n} realised steps')}</figcaption>"
            f"{cal}</figure><figure><figcaption>{_e(f'Steps {r.group}: PIT histogram')}</figcaption>"
            f"{pit}</figure>"
        )
    rows = [(r.group, r.n, *(_pct(b) for b in r.below)) for r in rel]
    table = _table(
        ["steps", "realised", *(f"≤ {name}" for name in QUANTILE_COLUMNS)],
        rows,
        [False, True, *([True] * len(QUANTILE_LEVELS))],
    )
    return (
        "<p class='sub'>For each horizon step group: the share of realised closes at or below each "
        "forecast quantile against its nominal level (on the diagonal when calibrated; above it the "
        "quantiles are too high, below too low), and the PIT histogram (flat at 1 when calibrated; "
        "U-shaped: intervals too narrow; hump-shaped: too wide).</p>"
        f"<div class='fans'>{''.join(figs)}</div>{table}"
    )


def _touch_html(data: ReportData) -> str:
    t = touch_realise(data.payloads, data.candles)
    done = t[np.isfinite(t["hit"].to_numpy(dtype=np.float64))] if len(t) else t
    if done.empty:
        return (
            "<p class='note'>No realised touch probability: the forecasts carry no <code>touch</code> "
            "field (older records, or <code>FOREXD_TOUCH_BANDS=none</code>) or no step is realised yet.</p>"
        )
    rows = []
    for grp in DEFAULT_HORIZON_GROUPS:
        g = done[[grp.contains(int(k)) for k in done["step"]]]
        if g.empty:
            continue
        y = g["hit"].to_numpy(dtype=np.float64)
        b = float(np.mean((g["p"].to_numpy(dtype=np.float64) - y) ** 2))
        rb = float(np.mean((g["rw_p"].to_numpy(dtype=np.float64) - y) ** 2))
        rows.append((grp.label, len(g), _pct(float(y.mean())), _fmt(b), _fmt(rb), _pct(skill_score(b, rb))))
    table = _table(
        ["steps", "band-steps", "touched", "Brier", "RW Brier", "skill"], rows, [False, True, True, True, True, True]
    )
    rel, rw = touch_reliability(done), touch_reliability(done, column="rw_p")
    f = _Frame(470, 300, 0.0, 1.0, 0.0, 1.0)
    body = [
        _axes(f, y_pct=True, time_x=False),
        _line(f, np.array([0.0, 1.0]), np.array([0.0, 1.0]), "#999", 1, "4 4", "perfect calibration"),
        _line(f, rw["predicted"].to_numpy(), rw["observed"].to_numpy(), _RWC, 1.2, "3 3", "random walk"),
        _line(f, rel["predicted"].to_numpy(), rel["observed"].to_numpy(), _MEDIAN, 1.8, title="model"),
    ]
    body.extend(
        f'<circle cx="{float(f.x(a)):.1f}" cy="{float(f.y(b)):.1f}" r="{2 + min(4.0, math.log10(max(n, 1))):.1f}" '
        f'fill="{_MEDIAN}"><title>{_e(f"predicted {a:.3f}: touched {100 * b:.1f} % of {n} band-steps")}</title></circle>'
        for a, b, n in zip(rel["predicted"], rel["observed"], rel["n"], strict=True)
    )
    body.append(_axis_titles(f, "predicted touch probability (bin mean)", "observed touch frequency"))
    bands = ", ".join(sorted(set(done["band"].astype(str))))
    svg = _svg(
        f,
        f"Touch reliability ({len(done)} realised band-steps; bands {bands})",
        body,
        [(_MEDIAN, "model"), (_RWC, "random walk"), ("#999", "ideal")],
        "touchrel",
    )
    return (
        "<p class='sub'>Probability that a close of steps 1..h is at or beyond each band's level "
        f"(bands {_e(bands)}; close-based: intrabar highs and lows are not modelled). Brier score "
        "(lower is better) and skill 1 − Brier/Brier<sub>RW</sub> against the random walk's touch "
        "probabilities stored with each forecast; the reliability diagram bins the predicted "
        "probabilities in tenths (on the diagonal when calibrated).</p>"
        f"{table}<figure><figcaption>Touch reliability</figcaption>{svg}</figure>"
    )


def _axis_titles(f: _Frame, x_title: str, y_title: str) -> str:
    cx = (f.left + f.width - f.right) / 2
    cy = (f.top + f.height - f.bottom) / 2
    return (
        f'<text x="{cx:.1f}" y="{f.height - 4}" text-anchor="middle" class="axis">{_e(x_title)}</text>'
        f'<text x="12" y="{cy:.1f}" text-anchor="middle" class="axis" '
        f'transform="rotate(-90 12 {cy:.1f})">{_e(y_title)}</text>'
    )


# -- HTML -----------------------------------------------------------------------------------

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1000px;color:#222}
h1{font-size:22px;margin-bottom:4px} h2{font-size:18px;border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:28px}
h3{font-size:14px;margin:14px 0 4px;color:#444} .sub{color:#666;margin-top:0}
.cards{display:flex;flex-wrap:wrap;gap:10px} .card{border:1px solid #ddd;border-radius:6px;padding:8px 12px;min-width:130px}
.card b{display:block;font-size:20px} .card span{color:#666;font-size:12px}
table{border-collapse:collapse;margin:6px 0;font-size:13px} td,th{border:1px solid #ddd;padding:3px 8px;text-align:left}
th{background:#f5f5f5} td.num{text-align:right;font-variant-numeric:tabular-nums}
svg text{font-size:11px;fill:#333} svg .fanno{font-weight:bold;fill:#08306b}
.fans{display:grid;grid-template-columns:repeat(2,1fr);gap:8px} figure{margin:0} figcaption{font-size:12px;color:#444}
.note{color:#666;font-style:italic}
"""


def _table(head: Sequence[str], rows: Iterable[Sequence[Any]], num: Sequence[bool] | None = None) -> str:
    num = num or [False] * len(head)
    th = "".join(f"<th>{_e(h)}</th>" for h in head)
    trs = "".join(
        "<tr>" + "".join(f"<td{' class=num' if n else ''}>{_e(v)}</td>" for v, n in zip(r, num, strict=True)) + "</tr>"
        for r in rows
    )
    return f"<table><thead><tr>{th}</tr></thead><tbody>{trs}</tbody></table>"


def _summary_html(summary: Summary) -> str:
    s = summary.scores
    cards = [
        ("forecasts", str(summary.forecasts)),
        ("realised steps", str(s.n)),
        ("CRPS model", _fmt(s.crps)),
        ("CRPS random walk", _fmt(s.rw_crps)),
        ("CRPS skill vs RW", _pct(s.skill)),
        ("50 % coverage", _pct(s.cover50)),
        ("90 % coverage", _pct(s.cover90)),
        ("RW 90 % coverage", _pct(s.rw_cover90)),
    ]
    return (
        "<div class='cards'>"
        + "".join(f"<div class='card' data-metric='{_e(k)}'><b>{_e(v)}</b><span>{_e(k)}</span></div>" for k, v in cards)
        + "</div>"
    )


def _versions_html(steps: pd.DataFrame) -> str:
    rows = []
    for version, g in steps.groupby("model_version", sort=True):
        summary = summarize(g)
        s = summary.scores
        rows.append(
            (
                version,
                _fmt_time(g["as_of"].min()),
                _fmt_time(g["as_of"].max()),
                summary.forecasts,
                s.n,
                _fmt(s.crps),
                _fmt(s.rw_crps),
                _pct(s.skill),
                _pct(s.cover50),
                _pct(s.cover90),
            )
        )
    return _table(
        [
            "model version",
            "first as_of",
            "last as_of",
            "forecasts",
            "realised steps",
            "CRPS",
            "RW CRPS",
            "skill",
            "50 % cov.",
            "90 % cov.",
        ],
        rows,
        [False, False, False, True, True, True, True, True, True, True],
    )


def _changes_html(data: ReportData) -> str:
    if not data.changes:
        return "<p class='note'>No registry alias changes for this series in the period.</p>"
    rows = [
        (
            _fmt_time(c.ms),
            c.event,
            c.alias,
            c.key,
            c.version,
            c.reason,
            _fmt_time(c.until_ms) if c.until_ms else "current",
        )
        for c in data.changes
    ]
    return _table(["time (UTC)", "event", "alias", "model key", "version", "reason", "until"], rows)


def _drift_html(data: ReportData) -> str:
    d = data.drift
    if d is None:
        return "<p class='note'>The database has no <code>drift_events</code> table: drift events are not recorded here.</p>"
    if not d.rows:
        return "<p class='note'>No drift events for this series in the period.</p>"
    rows = [
        [
            _fmt_time(v)
            if c == d.time_column and v is not None
            else ("–" if v is None or (c == "horizon" and v == NO_HORIZON) else v)
            for c, v in zip(d.columns, r, strict=True)
        ]
        for r in d.rows
    ]
    return _table(list(d.columns), rows)


def render_report(data: ReportData, *, title: str | None = None) -> str:
    """Render ``data`` as a self-contained HTML page (inline CSS and SVG; every string escaped)."""
    cfg = data.config
    head = title or f"Forecast report: {cfg.symbol} {cfg.timeframe}"
    first_ms = cfg.from_ms if data.cut_from_ms is None else data.cut_from_ms
    period = (
        f"{_fmt_time(first_ms) if first_ms is not None else 'start'} → "
        f"{_fmt_time(cfg.to_ms) if cfg.to_ms is not None else 'end'} (UTC, as_of)"
    )
    parts = [
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{_e(head)}</title>"
        f"<style>{_CSS}</style></head><body><h1>{_e(head)}</h1><p class='sub'>Period {_e(period)}</p>"
    ]
    if data.cut_from_ms is not None:
        parts.append(f"<p class='note' id='cut'>The report shows {_e(cut_message(data))}.</p>")
    if data.empty:
        parts.append(f"<p class='note' id='empty'>{_e(empty_message(data))}</p></body></html>")
        return "".join(parts)
    s = summarize(data.steps)
    first, last = int(data.steps["as_of"].min()), int(data.steps["as_of"].max())
    parts.append(
        f"<h2>Summary</h2><p class='sub'>{s.forecasts} forecasts from {_e(_fmt_time(first))} to "
        f"{_e(_fmt_time(last))}; scores pool every realised step (step k is realised by the close of the "
        f"k-th candle after as_of). Skill is 1 − CRPS/CRPS<sub>RW</sub>; the random walk is the EWMA "
        f"baseline stored with each forecast.</p>{_summary_html(s)}"
    )
    if data.skipped or data.dropped:
        parts.append(f"<p class='note' id='skipped'>{_e(skipped_message(data))}</p>")
    parts.append(f"<h3>By model version</h3>{_versions_html(data.steps)}")
    fans = _sample_fans(data.steps, cfg.fans)
    parts.append(f"<h2>Price and forecasts</h2>{_price_chart(data, fans)}")
    if fans:
        parts.append(
            "<h3>Sampled forecasts against the realised path</h3><div class='fans'>"
            + "".join(_fan_panel(data, i, a, v) for i, (a, v) in enumerate(fans, start=1))
            + "</div>"
        )
    parts.append(f"<h2>Scores over time</h2>{_rolling_charts(data, rolling_scores(data.steps, cfg.window))}")
    parts.append(f"<h2>Reliability by horizon</h2>{_reliability_charts(data)}")
    parts.append(f"<h2>Touch probabilities</h2>{_touch_html(data)}")
    parts.append(f"<h2>Model changes</h2>{_changes_html(data)}<h2>Drift events</h2>{_drift_html(data)}")
    parts.append("</body></html>")
    return "".join(parts)


def empty_message(data: ReportData) -> str:
    """The sentence that explains an empty report."""
    cfg = data.config
    where = f"{cfg.symbol} {cfg.timeframe}"
    when = ""
    if cfg.from_ms is not None or cfg.to_ms is not None:
        when = (
            f" with as_of in [{_fmt_time(cfg.from_ms) if cfg.from_ms is not None else 'start'}, "
            f"{_fmt_time(cfg.to_ms) if cfg.to_ms is not None else 'end'})"
        )
    held = f" ({len(data.candles)} candles are stored there)" if len(data.candles) else ""
    bad = f" {skipped_message(data)}" if data.skipped or data.dropped else ""
    return f"No forecasts of {where}{when}{held}: nothing to report.{bad}"


def _plural(n: int, one: str, many: str) -> str:
    return f"{n:,} {one if n == 1 else many}"


def skipped_message(data: ReportData) -> str:
    """The sentence that counts the stored rows left out, by reason, and the fields dropped from
    forecasts that are scored ('' when none)."""
    parts = []
    if data.skipped:
        n = sum(data.skipped.values())
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(data.skipped.items()))
        parts.append(f"{_plural(n, 'stored row', 'stored rows')} left out as unreadable ({reasons})")
    if data.dropped:
        n = sum(data.dropped.values())
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(data.dropped.items()))
        parts.append(
            f"{_plural(n, 'touch field', 'touch fields')} dropped ({reasons}; "
            f"{'its forecast is' if n == 1 else 'their forecasts are'} scored without it)"
        )
    if not parts:
        return ""
    tail = "; the scores are of the others." if data.skipped else "."
    return "; ".join(parts) + tail


def counts_message(data: ReportData) -> str:
    """The command line's short count of rows left out and fields dropped ('' when none), e.g.
    ``, 2 stored rows left out, 1 touch field dropped``."""
    out = ""
    if data.skipped:
        out += f", {_plural(sum(data.skipped.values()), 'stored row', 'stored rows')} left out"
    if data.dropped:
        out += f", {_plural(sum(data.dropped.values()), 'touch field', 'touch fields')} dropped"
    return out


def cut_message(data: ReportData) -> str:
    """'' unless the period had no start and held more than one report reads; then the sentence
    that says the report is of the newest forecasts that fit."""
    if data.cut_from_ms is None:
        return ""
    n = summarize(data.steps).forecasts
    return (
        f"the last {_plural(n, 'forecast', 'forecasts')}, from {_fmt_time(data.cut_from_ms)}: "
        "give --from/--to for another period"
    )
