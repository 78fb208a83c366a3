"""The wire format: one schema per topic, strict decoding, encoding that cannot fail.

Every topic's value is a JSON object described here, once: its fields with their types and
bounds (finite numbers within a magnitude, strings within a length and a character set, id
formats) and its schema version ``"v"`` (currently 1, written by :func:`encode_record` and
nowhere else). The JSON Schema files under ``docs/schemas/`` are generated from these
definitions (``python -m forex_diffusion.wire docs/schemas``).

Decoding never trusts its input. It refuses, with a
:class:`~forex_diffusion.errors.ValidationError` carrying a fixed reason:

- bytes that are not one UTF-8 JSON object, duplicate object keys, ``NaN``/``Infinity``
  literals and numbers that overflow to infinity (``malformed`` / ``non_finite``);
- a payload over ``max_bytes`` before parsing it (``oversize``);
- another schema version (``schema_version``);
- missing fields, wrong types (``true`` is not a number, ``1.0`` is not an integer),
  strings outside their character set (``schema``);
- values outside their bounds (``out_of_range``).

**Extra fields** are ignored (dropped from the decoded record): a version-1 producer may add
optional fields without breaking older consumers; a change of meaning bumps ``"v"``. They
still count towards ``max_bytes``. The generated JSON Schemas say so
(``additionalProperties: true``). Ignored is not unseen (B2): decoding within
``with UnknownFields() as unknown:`` notes them -- how many, and the first few names -- for
the worker to count and report; the decoded record is the same.

**Encoding** cannot fail on anything :func:`decode` or the core produced: non-finite floats of
computed fields (statistics, forecasts, metrics) are written as ``null``, free text is clipped
to its length and a character free text refuses (a control, line-separator, bidi or
surrogate character: ``_TEXT``) is written as U+FFFD; every encoded record is checked
against its schema, so a violation is a bug of the producer and raises ``ValidationError``
with reason ``internal``.

The tick and candle schemas bound values structurally (types, finite, a magnitude no
instrument reaches, epoch-ms times within year 0..9999); per-instrument plausibility (price
range, future timestamps, precision) is :mod:`forex_diffusion.ingest.validation`'s. Candles are
checked as bars here (OHLC order, ``open_time`` on the timeframe's grid, ``close_time`` its
end, overlapping 1971-01-01..2100-01-01, the span the offline readers take epoch bars from) because
every reader of ``fx.candles`` needs that.

>>> t = decode_tick(b'{"v":1,"symbol":"EUR/USD","ts":1399000000000,"bid":1.1,"ask":1.2}')
>>> (t.symbol, t.ts_ms)
('EURUSD', 1399000000000)
>>> decode_tick(encode_tick(t), key=b"EURUSD") == t
True
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import sys
from collections.abc import Mapping, Sequence
from contextvars import ContextVar, Token
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Literal

import numpy as np

from forex_diffusion.domain import Candle, Tick
from forex_diffusion.drift.base import DriftEvent
from forex_diffusion.errors import ConfigError, RejectReason, ValidationError
from forex_diffusion.ingest.validation import (
    EPOCH_FIRST_MS,
    MAX_CANDLE_VOLUME,
    MAX_PRICE,
    MAX_TICK_VOLUME,
    MAX_TS_MS,
    PRICE_RANGE_FACTOR,
    bar_in_span,
)
from forex_diffusion.instruments import InstrumentRegistry
from forex_diffusion.quality.trigger import RetrainRequest
from forex_diffusion.timeframes import Timeframe

__all__ = [
    "CANDLE_VOLUME_MAX",
    "DEFAULT_MAX_BYTES",
    "PATHS_MAX",
    "PATHS_RECORD_MAX_BYTES",
    "PATHS_SCALE",
    "PATHS_TEXT_MAX",
    "PRICE_MAX",
    "SCHEMAS",
    "SCHEMA_VERSION",
    "TICK_VOLUME_MAX",
    "jsonable",
    "TS_MAX",
    "UNCHECKED",
    "UNKNOWN_NAMES_KEPT",
    "Field",
    "RecordSchema",
    "UnknownFields",
    "candle_to_wire",
    "canonical_symbol",
    "decode_candle",
    "decode_dead_letter",
    "decode_drift",
    "decode_forecast",
    "decode_indicators",
    "decode_json",
    "decode_model_outcome",
    "decode_paths",
    "decode_record",
    "decode_retrain_request",
    "decode_tick",
    "dead_letter_value",
    "encode",
    "encode_candle",
    "encode_drift",
    "encode_forecast",
    "encode_indicators",
    "encode_model_outcome",
    "encode_paths",
    "encode_record",
    "encode_retrain_request",
    "encode_tick",
    "encode_unchecked",
    "json_schema",
    "write_schemas",
]

SCHEMA_VERSION: Final = 1
DEFAULT_MAX_BYTES: Final = 64 * 1024

# -- bounds ---------------------------------------------------------------------------------
PRICE_MAX: Final = MAX_PRICE  # 1e9, defined with the validator's bounds (the offline check reads it there)
"""Largest price magnitude on the wire (no instrument trades near it; per-instrument ranges
are the validator's)."""
TICK_VOLUME_MAX: Final = MAX_TICK_VOLUME  # the validator's default: a file and the stream agree
"""Largest volume of one tick: a candle's sum of 10^12 such ticks stays finite."""
CANDLE_VOLUME_MAX: Final = MAX_CANDLE_VOLUME  # 1e24
TS_MIN: Final = 0
TS_MAX: Final = 253_402_300_799_999
"""9999-12-31T23:59:59.999Z in epoch ms: the last instant a ``datetime`` can hold."""
INT32_MAX: Final = 2**31 - 1
INT64_MAX: Final = 2**63 - 1
HORIZON_MAX: Final = 100_000
FORECAST_STEPS_MAX: Final = 10_000
FORECAST_LEVELS_MAX: Final = 101
TOUCH_BANDS_MAX: Final = 32
MAX_JSON_DEPTH: Final = 8

_SYMBOL_IN = r"[A-Za-z0-9/_.:-]{1,32}"  # a symbol or an alias as a feed writes it
_SYMBOL = r"[A-Z]{6}"  # canonical
_TIMEFRAME = r"[0-9]{1,4}[A-Za-z]{1,2}"
_REQUEST_ID = r"[A-Za-z0-9_-]{1,64}"
_TOPIC = r"[A-Za-z0-9._-]{1,249}"
_TOKEN = r"[\x21-\x7e]{1,128}"  # printable ASCII, no space (versions, detector names)
_NO_CONTROL = r"[^\x00-\x1f\x7f]{1,128}"  # tick ids: file names may hold any printable text
_SHA256 = r"[0-9a-f]{64}"
# Free text (reasons, details, paths, ids echoed back) that logs and terminals show as it is:
# no C0/C1 control (NUL, TAB, CR/LF, ESC, CSI, NEL, ...: terminal escapes, forged log lines,
# and NUL, which PostgreSQL TEXT refuses), no line or paragraph separator, no bidi embedding,
# override or isolate (they reorder the line a terminal shows), no surrogate (a lone one is
# valid JSON text but no UTF-8: writing it to a log file, a terminal or a database raises).
_TEXT_REFUSED = r"\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff"
_TEXT = f"[^{_TEXT_REFUSED}]*"
_TEXT_REFUSED_RE = re.compile(f"[{_TEXT_REFUSED}]")
_NUMERIC = r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?"  # a price sent as a JSON string
_NUMERIC_MAX_LEN = 32

Kind = Literal["integer", "number", "price", "string", "id", "boolean", "array", "map", "object", "json"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Field:
    """One field of a record: its JSON type and bounds.

    ``kind`` is ``integer`` (a JSON integer, never a float or a boolean), ``number`` (an
    integer or a float, finite), ``price`` (a number, or a decimal number in a string, as
    feeds send exact prices), ``string``, ``id`` (a string, or a non-negative integer read as
    its decimal text), ``boolean``, ``array`` (of ``items``), ``map``
    (string keys to ``items``), ``object`` (a nested record of ``fields``) or ``json`` (any
    JSON value, depth-bounded, finite numbers). ``nullable`` allows ``null``. On encoding,
    ``non_finite_as_null`` writes a non-finite float of a computed field (a statistic, a
    forecast) as ``null``, and ``truncate`` clips free text to ``max_length``.
    """

    name: str
    kind: Kind
    required: bool = True
    nullable: bool = False
    minimum: float | None = None
    maximum: float | None = None
    max_length: int | None = None
    pattern: str | None = None
    enum: tuple[Any, ...] | None = None
    items: Field | None = None
    max_items: int | None = None
    fields: tuple[Field, ...] | None = None
    truncate: bool = False
    non_finite_as_null: bool = False
    out_of_bounds: RejectReason = RejectReason.OUT_OF_RANGE  # the reason a value past the bounds gets
    description: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordSchema:
    """The value of one topic: its fields, checked by :meth:`check`, exported by :meth:`json_schema`."""

    topic: str
    description: str
    fields: tuple[Field, ...]

    def check(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """Return the known fields of ``obj``, type- and bound-checked (extras dropped)."""
        return _check_fields(self.fields, obj, "")

    def json_schema(self) -> dict[str, Any]:
        """The JSON Schema (draft 2020-12) of this topic's value."""
        props: dict[str, Any] = {"v": {"const": SCHEMA_VERSION, "description": "schema version (absent is read as 1)"}}
        props.update({f.name: _field_schema(f) for f in self.fields})
        return {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": f"https://forexd.invalid/schemas/{self.topic}.v{SCHEMA_VERSION}.json",
            "title": f"{self.topic} value, schema version {SCHEMA_VERSION}",
            "description": f"{self.description} Unknown extra fields are ignored by forexd. {_INTEGER_NOTE}",
            "type": "object",
            "properties": props,
            "required": [f.name for f in self.fields if f.required],
            "additionalProperties": True,
        }


# -- checking ---------------------------------------------------------------------------------


def _fail(reason: RejectReason, path: str, what: str) -> ValidationError:
    return ValidationError(reason, f"{path}: {what}" if path else what)


def _check_fields(fields: Sequence[Field], obj: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in fields:
        path = f"{prefix}{f.name}"
        if f.name not in obj:
            if f.required:
                raise _fail(RejectReason.SCHEMA, path, "missing field")
            continue
        out[f.name] = _check(f, obj[f.name], path)
    extra = len(obj) - len(out) - (not prefix and "v" in obj)  # keys no field names ("v": the record's version)
    if extra > 0:
        _note_unknown(fields, obj, prefix, extra)
    return out


UNKNOWN_NAMES_KEPT: Final = 3
"""Most names of unknown fields an :class:`UnknownFields` keeps (it counts them all)."""
_UNKNOWN_NAME_MAX = 64  # characters of each name kept: a key may be as long as the record
_NOTING: ContextVar[UnknownFields | None] = ContextVar("forex_diffusion.wire.noting", default=None)


class UnknownFields:
    """Note the fields no schema names of the records decoded within ``with`` (B2).

    Decoding ignores them (the decoded record is the same with or without them); within
    ``with UnknownFields() as unknown:`` (in this thread or task) it also notes them here:
    ``count``, how many, and ``names``, the paths of the first :data:`UNKNOWN_NAMES_KEPT`
    (``bidd``; in a nested record ``touch.x``, ``learner[0].x``), each clipped to 64
    characters. Names are the producer's text: show them escaped. A record refused before all
    its fields were checked may leave some of its extras unnoted; one refused after them (an
    unknown symbol, a bar off its grid) leaves them noted: open a scope per record and report
    it once the record decoded, as the agents do. A scope may be re-entered; it ends with its
    outermost ``with``, and an asyncio task created within it notes nothing in it after that.
    Counting costs nothing per extra field: only the names kept are looked for.

    >>> with UnknownFields() as unknown:
    ...     t = decode_tick(b'{"v":1,"symbol":"EURUSD","ts":1399000000000,"bid":1.1,"ask":1.2,"bidd":1.1}')
    >>> (unknown.count, unknown.names, t == decode_tick(encode_tick(t)))
    (1, ['bidd'], True)
    """

    __slots__ = ("_tokens", "count", "names")

    def __init__(self) -> None:
        self.count = 0
        self.names: list[str] = []
        self._tokens: list[Token[UnknownFields | None]] = []  # one per ``with`` open: a scope may be re-entered

    def __enter__(self) -> UnknownFields:
        self._tokens.append(_NOTING.set(self))
        return self

    def __exit__(self, et: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._tokens:
            _NOTING.reset(self._tokens.pop())

    def note(self, path: str) -> None:
        """Count one unknown field at ``path``; keep its name if fewer are kept."""
        self.count += 1
        if len(self.names) < UNKNOWN_NAMES_KEPT:
            self.names.append(path[:_UNKNOWN_NAME_MAX])


def _note_unknown(fields: Sequence[Field], obj: Mapping[str, Any], prefix: str, extra: int) -> None:
    """Note the ``extra`` keys of ``obj`` that ``fields`` do not name where an :class:`UnknownFields`
    is open: counted at once, only the names kept looked for (a record may hold 100,000 of them)."""
    noting = _NOTING.get()
    if noting is None or not noting._tokens:  # none, or ended (a task created within it holds it still)
        return
    noting.count += extra
    room = UNKNOWN_NAMES_KEPT - len(noting.names)
    if room <= 0:
        return
    known = {f.name for f in fields}
    for name in obj:
        if name not in known and (prefix or name != "v"):
            noting.names.append(f"{prefix}{name[:_UNKNOWN_NAME_MAX]}"[:_UNKNOWN_NAME_MAX])
            room -= 1
            if room == 0:
                return


def _check(f: Field, x: Any, path: str) -> Any:  # noqa: C901 - one branch per kind, read top to bottom
    if x is None:
        if f.nullable:
            return None
        raise _fail(RejectReason.SCHEMA, path, "must not be null")
    k = f.kind
    if k == "integer":
        if type(x) is not int:
            raise _fail(RejectReason.SCHEMA, path, f"must be an integer, not {type(x).__name__}")
        _bounds(f, x, path)
    elif k in ("number", "price"):
        if type(x) is str and k == "price":
            x = _numeric_string(x, path)
        elif type(x) is not int and type(x) is not float:
            raise _fail(RejectReason.SCHEMA, path, f"must be a number, not {type(x).__name__}")
        try:
            x = float(x)
        except OverflowError:
            raise _fail(RejectReason.OUT_OF_RANGE, path, "integer too large") from None
        if not math.isfinite(x):
            raise _fail(RejectReason.NON_FINITE, path, "not finite")
        _bounds(f, x, path)
    elif k in ("string", "id"):
        if k == "id" and type(x) is int:
            if not 0 <= x <= INT64_MAX:
                raise _fail(RejectReason.OUT_OF_RANGE, path, "integer id outside [0, 2**63-1]")
            x = str(x)
        if type(x) is not str:
            raise _fail(RejectReason.SCHEMA, path, f"must be a string, not {type(x).__name__}")
        if f.max_length is not None and len(x) > f.max_length:
            raise _fail(RejectReason.OUT_OF_RANGE, path, f"longer than {f.max_length} characters")
        if f.pattern == _TEXT:  # the same test as the pattern, naming the character and where
            if (bad := _TEXT_REFUSED_RE.search(x)) is not None:
                what = f"U+{ord(bad.group()):04X} at {bad.start()}"
                raise _fail(RejectReason.SCHEMA, path, f"{what}: no control, separator, bidi or surrogate character")
        elif f.pattern is not None and re.fullmatch(f.pattern, x) is None:
            raise _fail(RejectReason.SCHEMA, path, f"{x[:32]!r} does not match {f.pattern}")
        if f.enum is not None and x not in f.enum:
            raise _fail(RejectReason.SCHEMA, path, f"{x[:32]!r} not one of {list(f.enum)}")
    elif k == "boolean":
        if type(x) is not bool:
            raise _fail(RejectReason.SCHEMA, path, f"must be a boolean, not {type(x).__name__}")
    elif k == "array":
        items = _container(f, x, path, list, "an array", "items")
        x = [_check(items, v, f"{path}[{i}]") for i, v in enumerate(x)]
    elif k == "map":
        items = _container(f, x, path, dict, "an object", "entries")
        for name in x:
            if re.fullmatch(_TOKEN, name) is None:
                raise _fail(RejectReason.SCHEMA, path, f"key {name[:32]!r} does not match {_TOKEN}")
        x = {name: _check(items, v, f"{path}.{name}") for name, v in x.items()}
    elif k == "object":
        if type(x) is not dict:
            raise _fail(RejectReason.SCHEMA, path, f"must be an object, not {type(x).__name__}")
        assert f.fields is not None
        x = _check_fields(f.fields, x, f"{path}.")
    elif k == "json":
        _check_json(x, path, 0)
    if f.enum is not None and k not in ("string", "id") and x not in f.enum:
        raise _fail(RejectReason.SCHEMA, path, f"not one of {list(f.enum)}")
    return x


def _container(f: Field, x: Any, path: str, typ: type[list[Any]] | type[dict[str, Any]], what: str, unit: str) -> Field:
    """Check ``x`` is a ``typ`` (``what``) of at most ``f.max_items`` ``unit``; return the items' field."""
    if type(x) is not typ:
        raise _fail(RejectReason.SCHEMA, path, f"must be {what}, not {type(x).__name__}")
    if f.max_items is not None and len(x) > f.max_items:
        raise _fail(RejectReason.OUT_OF_RANGE, path, f"more than {f.max_items} {unit}")
    assert f.items is not None
    return f.items


def _numeric_string(x: str, path: str) -> float:
    if len(x) > _NUMERIC_MAX_LEN:
        raise _fail(RejectReason.OUT_OF_RANGE, path, f"numeric string longer than {_NUMERIC_MAX_LEN}")
    if re.fullmatch(_NUMERIC, x) is None:
        low = x.strip().lower().lstrip("+-")
        if low in ("nan", "inf", "infinity"):
            raise _fail(RejectReason.NON_FINITE, path, "not finite")
        raise _fail(RejectReason.SCHEMA, path, f"{x[:32]!r} is not a decimal number")
    return float(x)


def _bounds(f: Field, x: float, path: str) -> None:
    if (f.minimum is not None and x < f.minimum) or (f.maximum is not None and x > f.maximum):
        lo = "-inf" if f.minimum is None else f"{f.minimum:g}"
        hi = "inf" if f.maximum is None else f"{f.maximum:g}"
        shown = f"{x:.6g}" if isinstance(x, float) else (str(x) if abs(x) < 10**30 else "a huge integer")
        raise _fail(f.out_of_bounds, path, f"{shown} outside [{lo}, {hi}]")


def _check_json(x: Any, path: str, depth: int) -> None:
    if depth > MAX_JSON_DEPTH:
        raise _fail(RejectReason.SCHEMA, path, f"nested deeper than {MAX_JSON_DEPTH}")
    if x is None or type(x) in (bool, str, int):
        return
    if type(x) is float:
        if not math.isfinite(x):
            raise _fail(RejectReason.NON_FINITE, path, "not finite")
        return
    if type(x) is list:
        for v in x:
            _check_json(v, path, depth + 1)
        return
    if type(x) is dict:
        for name, v in x.items():
            if type(name) is not str:
                raise _fail(RejectReason.SCHEMA, path, "object keys must be strings")
            _check_json(v, path, depth + 1)
        return
    raise _fail(RejectReason.SCHEMA, path, f"{type(x).__name__} is not JSON")


#: The largest finite double: an unbounded number past it is refused (an integer that does not
#: fit a float is ``out_of_range``, a literal that overflows ``non_finite``), so the schema says so.
_DOUBLE_MAX: Final = sys.float_info.max
#: Every JSON type but null: a field of kind ``json`` that is not nullable refuses null.
_NOT_NULL: Final = ["object", "array", "string", "number", "boolean"]
#: What the schemas cannot say (JSON Schema sees 24.0 as the integer 24), stated in each one.
_INTEGER_NOTE: Final = (
    "Integer fields (type integer, and v) must be written as JSON integers, without a fraction "
    "or an exponent: 24, not 24.0, 2.4e1 or -0.0; forexd refuses those (reason schema)."
)


def _anchored(pattern: str) -> str:
    r"""``pattern`` matching a whole string. ``(?!\n)`` after ``$``: Python's ``re`` (as the
    ``jsonschema`` package uses it) also matches ``$`` before a final newline, which the
    decoder's ``re.fullmatch`` refuses; in ECMA-262 regexes it changes nothing."""
    return rf"^(?:{pattern})$(?!\n)"


def _field_schema(f: Field) -> dict[str, Any]:  # noqa: C901 - one branch per kind, read top to bottom
    s: dict[str, Any]
    k = f.kind
    if k in ("integer", "number", "price"):
        s = {"type": "number" if k == "price" else k}
        floor, ceiling = f.minimum, f.maximum
        if k != "integer":  # finite: past the largest double is refused
            floor = -_DOUBLE_MAX if floor is None else floor
            ceiling = _DOUBLE_MAX if ceiling is None else ceiling
        if floor is not None:
            s["minimum"] = floor
        if ceiling is not None:
            s["maximum"] = ceiling
        if k == "price":  # a number, or its decimal text
            decimal = {
                "type": "string",
                "maxLength": _NUMERIC_MAX_LEN,
                "pattern": _anchored(_NUMERIC),
                "description": "a decimal number, within the same bounds",
            }
            s = {"anyOf": [s, decimal]}
    elif k in ("string", "id"):
        s = {"type": "string"}
        if f.max_length is not None:
            s["maxLength"] = f.max_length
        if f.pattern is not None:
            s["pattern"] = _anchored(f.pattern)
        if k == "id":
            s = {"anyOf": [s, {"type": "integer", "minimum": 0, "maximum": INT64_MAX}]}
    elif k == "boolean":
        s = {"type": "boolean"}
    elif k in ("array", "map"):
        assert f.items is not None
        items = _field_schema(f.items)
        if k == "array":
            s = {"type": "array", "items": items}
        else:  # an object of token keys
            s = {"type": "object", "propertyNames": {"pattern": _anchored(_TOKEN)}, "additionalProperties": items}
        if f.max_items is not None:
            s["maxItems" if k == "array" else "maxProperties"] = f.max_items
    elif k == "object":
        assert f.fields is not None
        s = {
            "type": "object",
            "properties": {g.name: _field_schema(g) for g in f.fields},
            "required": [g.name for g in f.fields if g.required],
            "additionalProperties": True,
        }
    else:  # json: null only where the field is nullable (wrapped below)
        s = {"type": _NOT_NULL, "description": f"any JSON value but null, nested at most {MAX_JSON_DEPTH} deep"}
    if f.enum is not None:
        s["enum"] = list(f.enum)
    if f.nullable:
        s = {"anyOf": [s, {"type": "null"}]}
    if f.description:
        s = {**s, "description": f.description} if "description" not in s else s
    return s


# -- topic schemas ---------------------------------------------------------------------------


def _ts(name: str, **kw: Any) -> Field:
    # a time outside the calendar is a bad timestamp, as the file readers and the validator say
    return Field(
        name=name,
        kind="integer",
        minimum=TS_MIN,
        maximum=TS_MAX,
        out_of_bounds=RejectReason.BAD_TS,
        description=kw.pop("description", "epoch milliseconds, UTC"),
        **kw,
    )


def _text(name: str, max_length: int, **kw: Any) -> Field:
    """Free text of at most ``max_length`` characters, none of them refused by :data:`_TEXT`
    (decoding refuses such a record as ``schema``; encoding writes U+FFFD in their place)."""
    return Field(name=name, kind="string", max_length=max_length, pattern=_TEXT, **kw)


def _num(name: str, **kw: Any) -> Field:
    """A computed float: nullable, non-finite written as null."""
    return Field(name=name, kind="number", nullable=True, non_finite_as_null=True, **kw)


_SYMBOL_IN_F = Field(
    name="symbol",
    kind="string",
    pattern=_SYMBOL_IN,
    description="the instrument, canonical (EURUSD) or an alias (EUR/USD, eur_usd)",
)
_SYMBOL_F = Field(name="symbol", kind="string", pattern=_SYMBOL, description="canonical symbol")
_TF_F = Field(name="timeframe", kind="string", pattern=_TIMEFRAME, description="e.g. 1m, 5m, 1h, 1d")
_TF_NULL_F = Field(name="timeframe", kind="string", pattern=_TIMEFRAME, nullable=True)
_HORIZON_F = Field(
    name="horizon",
    kind="integer",
    minimum=1,
    maximum=HORIZON_MAX,
    nullable=True,
    description="forecast steps (null: the worker's default)",
)
# no lower bound: a price <= 0 is the validator's ``non_positive`` (a file and the stream agree)
_PRICE_IN = {"kind": "price", "maximum": PRICE_MAX}
_QUANTILE_ROW = Field(name="row", kind="array", max_items=FORECAST_LEVELS_MAX, items=_num("q"))
_LEVELS = Field(
    name="levels",
    kind="array",
    max_items=FORECAST_LEVELS_MAX,
    items=Field(name="level", kind="number", minimum=0.0, maximum=1.0),
)


def _quantile_matrix(name: str, description: str) -> Field:
    """A ``[step][level]`` array of price quantiles (null: not finite)."""
    return Field(name=name, kind="array", max_items=FORECAST_STEPS_MAX, items=_QUANTILE_ROW, description=description)


_PROB_ROW = Field(
    name="row",
    kind="array",
    max_items=FORECAST_STEPS_MAX,
    items=Field(name="p", kind="number", minimum=0.0, maximum=1.0, nullable=True, non_finite_as_null=True),
)
_TOUCH_BAND = r"[+-][0-9.eE+-]{1,24}(pip|sigma|vol)"

_LEARNER = Field(
    name="prediction",
    kind="object",
    fields=(
        Field(name="horizon", kind="integer", minimum=1, maximum=HORIZON_MAX),
        _ts("as_of_ms"),
        _num("scaled_return"),
        _num("log_return"),
        _num("price"),
        _num("p_up"),
    ),
)

TICKS = RecordSchema(
    topic="fx.ticks",
    description="One quote: bid and ask of one instrument at one instant.",
    fields=(
        _SYMBOL_IN_F,
        _ts("ts", description="event time, epoch milliseconds, UTC"),
        Field(name="bid", **_PRICE_IN),  # type: ignore[arg-type]
        Field(name="ask", **_PRICE_IN),  # type: ignore[arg-type]
        Field(name="volume", kind="price", required=False, nullable=True, minimum=0.0, maximum=TICK_VOLUME_MAX),
        Field(
            name="tick_id",
            kind="id",
            required=False,
            nullable=True,
            max_length=128,
            pattern=_NO_CONTROL,
            description="producer's id of the tick (de-duplication); an integer is read as its decimal text",
        ),
    ),
)

CANDLES = RecordSchema(
    topic="fx.candles",
    description="One OHLC bar of one instrument and timeframe.",
    fields=(
        _SYMBOL_IN_F,
        _TF_F,
        _ts(
            "open_time",
            description="bar open, epoch ms UTC, on the timeframe's grid; a bar outside "
            f"1971-01-01..2100-01-01 ({EPOCH_FIRST_MS}..{MAX_TS_MS}) is refused (bad_ts)",
        ),
        _ts("close_time", description="bar end (exclusive), epoch ms UTC: open_time + timeframe"),
        Field(name="open", **_PRICE_IN),  # type: ignore[arg-type]
        Field(name="high", **_PRICE_IN),  # type: ignore[arg-type]
        Field(name="low", **_PRICE_IN),  # type: ignore[arg-type]
        Field(name="close", **_PRICE_IN),  # type: ignore[arg-type]
        Field(name="volume", kind="price", required=False, nullable=True, minimum=0.0, maximum=CANDLE_VOLUME_MAX),
        # counts within the store's INTEGER columns (PostgreSQL: 32-bit): a larger one would
        # fail every checkpoint of its partition, and exit the worker as a permanent storage error
        Field(name="tick_count", kind="integer", required=False, minimum=0, maximum=INT32_MAX),
        Field(name="spread_mean", kind="number", required=False, nullable=True, minimum=-PRICE_MAX, maximum=PRICE_MAX),
        Field(name="spread_min", kind="number", required=False, nullable=True, minimum=-PRICE_MAX, maximum=PRICE_MAX),
        Field(name="spread_max", kind="number", required=False, nullable=True, minimum=-PRICE_MAX, maximum=PRICE_MAX),
        Field(
            name="final", kind="boolean", required=False, description="false while the bar is forming (default true)"
        ),
        Field(name="revision", kind="integer", required=False, minimum=0, maximum=INT32_MAX),
    ),
)

INDICATORS = RecordSchema(
    topic="fx.indicators",
    description="Indicator values on one closed candle.",
    fields=(
        _SYMBOL_F,
        _TF_F,
        _ts("open_time"),
        _ts("close_time"),
        Field(
            name="values",
            kind="map",
            max_items=1024,
            items=_num("value"),
            description="indicator name -> value (null while warming up)",
        ),
    ),
)

#: What names one forecast on every forecast topic: its series and ``as_of``; then its horizon and model.
_FORECAST_ID = (_SYMBOL_F, _TF_F, _ts("as_of", description="close_time of the last closed candle, epoch ms"))
_FORECAST_MODEL = (
    Field(name="horizon", kind="integer", minimum=1, maximum=HORIZON_MAX),
    Field(name="model_version", kind="string", pattern=_TOKEN, max_length=128),
)

FORECASTS = RecordSchema(
    topic="fx.forecasts",
    description="A probabilistic forecast made on a closed candle.",
    fields=(
        *_FORECAST_ID,
        _ts("as_of_ms", description="same as as_of"),
        *_FORECAST_MODEL,
        _num("last_close"),
        _LEVELS,
        _quantile_matrix("quantiles", "[horizon][level] price quantiles (null: not finite)"),
        Field(name="mean", kind="array", max_items=FORECAST_STEPS_MAX, items=_num("m")),
        Field(name="p_up", kind="array", max_items=FORECAST_STEPS_MAX, items=_num("p")),
        Field(name="steps", kind="integer", minimum=0, maximum=INT32_MAX),
        Field(name="samples", kind="integer", minimum=0, maximum=INT32_MAX),
        _num("latency_s"),
        _quantile_matrix("rw_quantiles", "random-walk baseline quantiles"),
        Field(name="degraded", kind="boolean"),
        Field(
            name="learner", kind="array", max_items=1024, items=_LEARNER, description="the online learners' predictions"
        ),
        Field(
            name="touch",
            kind="object",
            required=False,
            fields=(
                Field(
                    name="bands",
                    kind="array",
                    max_items=TOUCH_BANDS_MAX,
                    items=Field(name="band", kind="string", pattern=_TOUCH_BAND, max_length=32),
                    description="band names: side, size, unit (pip, sigma: one-step EWMA volatility, "
                    "vol: sigma * sqrt(horizon)), e.g. +0.5vol, -20pip",
                ),
                Field(
                    name="levels",
                    kind="array",
                    max_items=TOUCH_BANDS_MAX,
                    items=_num("level"),
                    description="each band's price level",
                ),
                Field(
                    name="p",
                    kind="array",
                    max_items=TOUCH_BANDS_MAX,
                    items=_PROB_ROW,
                    description="[band][step] probability that a close of steps 1..h is at or beyond the level "
                    "(close-based; calibrated: blended with the random walk)",
                ),
                Field(
                    name="rw_p",
                    kind="array",
                    max_items=TOUCH_BANDS_MAX,
                    items=_PROB_ROW,
                    description="[band][step] the EWMA random walk's touch probability",
                ),
            ),
            description="touch probabilities of configured bands (optional)",
        ),
        Field(
            name="extremes",
            kind="object",
            required=False,
            fields=(
                _LEVELS,
                _quantile_matrix("max", "[step][level] quantiles of the highest close of steps 1..h"),
                _quantile_matrix("min", "[step][level] quantiles of the lowest close of steps 1..h"),
            ),
            description="running maximum and minimum quantiles (optional)",
        ),
    ),
)

# fx.forecasts.paths: sample paths as integers, ``round(ln(price / last_close) * scale)``
PATHS_MAX: Final = 10_000
"""Most sample paths one ``fx.forecasts.paths`` record carries."""
PATHS_SCALE: Final = 100_000
"""Units of the encoded paths per unit of log return: a unit is 1e-5 (0.11 pip at EUR/USD 1.10)."""
PATHS_SCALE_MAX: Final = 10**9
PATHS_DTYPES: Final = {"<i2": 2, "<i4": 4}  # little-endian int16 / int32 and their bytes
PATHS_TEXT_MAX: Final = 16 * 1024 * 1024
"""Most base64 characters of a record's ``paths`` (the schema's bound; the encoder checks it)."""
PATHS_HEADER_MAX_BYTES: Final = 512 * 1024
"""More than the bytes of everything else an encoded ``fx.forecasts.paths`` record holds: its
``rw_weight`` (at most ``FORECAST_STEPS_MAX`` floats of at most 24 characters) is 250 kB at most,
the other fields under 1 kB."""
PATHS_RECORD_MAX_BYTES: Final = PATHS_TEXT_MAX + PATHS_HEADER_MAX_BYTES
""":func:`decode_paths`' default ``max_bytes``: every record :func:`encode_paths` writes is under it."""

FORECAST_PATHS = RecordSchema(
    topic="fx.forecasts.paths",
    description="The sample paths of one fx.forecasts record (same key and identifiers), in a compact "
    "encoding: path i's price at step h+1 is last_close * exp(q[i, h] / scale), q the little-endian "
    "integers (dtype) of paths, base64, n_paths rows of horizon values. Quantisation: |ln(decoded / "
    "sampled)| <= 0.5 / scale (+1e-12), with scale 100000 a relative error <= 5e-6 (0.055 pip at "
    "EUR/USD 1.10). The paths are the model's (spread-calibrated) samples; the forecast's quantiles "
    "also apply its per-level scale and, like its touch probabilities, blend with the EWMA random "
    "walk with weight rw_weight per step. Decode with forex_diffusion.wire.decode_paths.",
    fields=(
        *_FORECAST_ID,
        *_FORECAST_MODEL,
        Field(
            name="last_close",
            kind="number",
            minimum=0.0,
            maximum=PRICE_MAX,
            description="reference price (the forecast's last close, > 0): the paths are log returns from it",
        ),
        _num("sigma", minimum=0.0, description="one-step EWMA volatility of the log price at as_of"),
        Field(
            name="rw_weight",
            kind="array",
            max_items=FORECAST_STEPS_MAX,
            items=_num("w", minimum=0.0, maximum=1.0),
            description="[horizon] weight of the EWMA random walk blended into the forecast at each step",
        ),
        Field(name="samples", kind="integer", minimum=0, maximum=INT32_MAX, description="paths sampled"),
        Field(name="n_paths", kind="integer", minimum=1, maximum=PATHS_MAX, description="paths carried (the first)"),
        Field(name="scale", kind="integer", minimum=1, maximum=PATHS_SCALE_MAX, description="units per log return"),
        Field(name="dtype", kind="string", enum=tuple(PATHS_DTYPES), description="<i2: int16, <i4: int32"),
        Field(
            name="paths",
            kind="string",
            max_length=PATHS_TEXT_MAX,
            pattern=r"[A-Za-z0-9+/]*={0,2}",
            description="base64 of n_paths x horizon integers (path-major): round(ln(price / last_close) * scale)",
        ),
    ),
)

DRIFT = RecordSchema(
    topic="fx.drift",
    description="A drift detection on one series.",
    fields=(
        Field(name="detector", kind="string", pattern=_TOKEN, max_length=128),
        _num("statistic"),
        _num("threshold"),
        _SYMBOL_F,
        _TF_F,
        Field(name="horizon", kind="integer", minimum=1, maximum=HORIZON_MAX, nullable=True),
        _ts("ts_ms"),
    ),
)

RETRAIN_REQUESTS = RecordSchema(
    topic="fx.retrain.requests",
    description="A request to retrain one model key.",
    fields=(
        Field(name="request_id", kind="string", pattern=_REQUEST_ID, max_length=64),
        _SYMBOL_F,
        _TF_F,
        _HORIZON_F,
        Field(name="reason", kind="string", enum=("drift", "manual", "schedule")),
        _ts("requested_at_ms"),
        # free text for whoever reads the request (``forexd retrain --reason``, the schedule's
        # ``every N ms``): a line's worth, clipped on encoding
        _text("detail", 500, required=False, truncate=True),
    ),
)

MODELS = RecordSchema(
    topic="fx.models",
    description="The outcome of a retrain job (model registered, promoted, rejected or failed).",
    fields=(
        # identifying text as the job reported it: a refused request's outcome names what it was
        # given (clipped), and readers only compare these to what they know -- or print them
        # (``forexd retrain --wait``), hence text (_TEXT). The lengths are what a valid
        # request holds (id 64, symbol 32, timeframe 16; a key is SYMBOL/tf/H of those, and
        # a global model's key is shorter): longer is no outcome of a request
        _text("request_id", 64, truncate=True),
        _text("key", 64, truncate=True, description="SYMBOL/timeframe/horizon"),
        _text("symbol", 32, truncate=True),
        _text("timeframe", 16, truncate=True),
        Field(name="horizon", kind="integer", minimum=0, maximum=HORIZON_MAX),
        Field(name="version", kind="string", pattern=_TOKEN, max_length=128, nullable=True),
        Field(name="status", kind="string", enum=("promoted", "shadow", "rejected", "failed")),
        # a decision's code and its numbers, or an error's type; clipped past 2000 (the bound
        # of version 1's records: a shorter one would refuse what older workers publish)
        _text("reason", 2000, truncate=True),
        Field(name="metrics", kind="json", description="evaluation metrics (non-finite values are null)"),
        Field(name="duration_s", kind="number", minimum=0.0, maximum=1e9),
        Field(name="champion", kind="string", pattern=_TOKEN, max_length=128, nullable=True),
        # an absolute path, for people (forecasters load from the registry): Linux's PATH_MAX
        _text("artifact", 4096, nullable=True),
        Field(name="sha256", kind="string", pattern=_SHA256, nullable=True),
        _ts("finished_at_ms"),
    ),
)

_RAW_MAX = 16 * 1024
DEADLETTER = RecordSchema(
    topic="fx.deadletter",
    description="A refused record: where it came from, why, its bytes.",
    fields=(
        Field(name="source_topic", kind="string", pattern=_TOPIC, max_length=249),
        Field(name="partition", kind="integer", minimum=-1, maximum=INT32_MAX),
        Field(name="offset", kind="integer", minimum=-1, maximum=INT64_MAX),
        Field(name="reason", kind="string", enum=tuple(r.value for r in RejectReason)),
        Field(
            name="error",
            kind="string",
            max_length=500,
            truncate=True,
            description="detail; for reason internal it starts with the exception type",
        ),
        Field(name="size", kind="integer", minimum=0, maximum=INT64_MAX, description="bytes of the original value"),
        Field(name="truncated", kind="boolean", description="raw holds only the first 16 KiB"),
        Field(name="raw", kind="string", max_length=4 * (_RAW_MAX // 3 + 1)),
        Field(name="raw_encoding", kind="string", enum=("utf-8", "base64")),
        Field(name="key", kind="string", required=False, max_length=64, truncate=True),
    ),
)

SCHEMAS: Final[dict[str, RecordSchema]] = {
    s.topic.removeprefix("fx."): s
    for s in (TICKS, CANDLES, INDICATORS, FORECASTS, FORECAST_PATHS, DRIFT, RETRAIN_REQUESTS, MODELS, DEADLETTER)
}
"""Topic kind (``ticks``, ``candles``, ..., the topic name without its prefix) → schema."""


# -- JSON in and out -------------------------------------------------------------------------


def _reject_constant(name: str) -> Any:
    raise ValidationError(RejectReason.NON_FINITE, f"JSON constant {name}")


def _parse_float(text: str) -> float:
    x = float(text)
    if not math.isfinite(x):
        raise ValidationError(RejectReason.NON_FINITE, f"number {text[:32]} overflows")
    return x


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        dup = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        raise ValidationError(RejectReason.MALFORMED, f"duplicate key {dup[:32]!r}")
    return obj


def decode_json(raw: bytes | str, *, max_bytes: int = DEFAULT_MAX_BYTES) -> dict[str, Any]:
    """Parse one JSON object strictly and check its schema version.

    Refuses no value at all (``None``: a Kafka tombstone) and anything but bytes or text,
    oversize input before parsing, bad UTF-8, duplicate keys, ``NaN``/``Infinity`` and
    overflowing numbers, anything but an object, and a ``"v"`` other than 1 (absent: 1).
    """
    if raw is None:  # a Kafka record with a null value (a tombstone): nothing to decode
        raise ValidationError(RejectReason.MALFORMED, "no value (a null record)")
    if not isinstance(raw, (bytes, bytearray, memoryview, str)):
        raise ValidationError(RejectReason.MALFORMED, f"a value of type {type(raw).__name__}, not bytes")
    if len(raw) > max_bytes:
        raise ValidationError(RejectReason.OVERSIZE, f"{len(raw)} bytes > {max_bytes}")
    try:
        text = bytes(raw).decode("utf-8") if isinstance(raw, (bytes, bytearray, memoryview)) else raw
        obj = json.loads(
            text, parse_constant=_reject_constant, parse_float=_parse_float, object_pairs_hook=_no_duplicates
        )
    except ValidationError:
        raise
    except (UnicodeDecodeError, ValueError, RecursionError, TypeError) as exc:
        raise ValidationError(RejectReason.MALFORMED, type(exc).__name__) from None
    if type(obj) is not dict:
        raise ValidationError(RejectReason.SCHEMA, f"expected an object, got {type(obj).__name__}")
    v = obj.get("v", SCHEMA_VERSION)
    if type(v) is not int:
        raise ValidationError(RejectReason.SCHEMA, "schema version 'v' must be an integer")
    if v != SCHEMA_VERSION:
        shown = v if abs(v) < 10**12 else "a huge integer"
        raise ValidationError(RejectReason.SCHEMA_VERSION, f"unsupported schema version {shown}")
    return obj


def decode_record(kind: str, raw: bytes | str, *, max_bytes: int = DEFAULT_MAX_BYTES) -> dict[str, Any]:
    """Decode the value of topic ``kind`` into its checked fields (no ``v``, extras dropped)."""
    return SCHEMAS[kind].check(decode_json(raw, max_bytes=max_bytes))


def encode(obj: Mapping[str, Any]) -> bytes:
    """Compact JSON of any mapping, refusing NaN/Infinity (no schema: for tests and tools)."""
    return json.dumps(obj, separators=(",", ":"), allow_nan=False).encode("utf-8")


def _sanitise(f: Field, x: Any) -> Any:
    if x is None:
        return None
    k = f.kind
    if isinstance(x, float) and not math.isfinite(x) and f.non_finite_as_null:
        return None
    if k == "string" and isinstance(x, str):
        if f.pattern == _TEXT:  # one for one, so that clipping cuts the same text
            x = _TEXT_REFUSED_RE.sub("\ufffd", x)
        return x[: f.max_length] if f.truncate and f.max_length is not None else x
    if k == "array" and isinstance(x, (list, tuple)) and f.items is not None:
        return [_sanitise(f.items, v) for v in x]
    if k == "map" and isinstance(x, Mapping) and f.items is not None:
        return {n: _sanitise(f.items, v) for n, v in x.items()}
    if k == "object" and isinstance(x, Mapping) and f.fields is not None:
        return {g.name: _sanitise(g, x[g.name]) for g in f.fields if g.name in x}
    if k == "json":
        return jsonable(x)
    return x


def jsonable(x: Any) -> Any:
    """``x`` with non-finite floats as ``None`` (JSON has no NaN), recursively; keys as text."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, Mapping):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    return x


def encode_record(kind: str, obj: Mapping[str, Any]) -> bytes:
    """Encode a value of topic ``kind`` with ``"v"``: the only place a schema version is written.

    Fields the schema does not name are not written. Non-finite floats of computed fields
    become null and free text is clipped (see :class:`Field`); the result is checked against
    the schema, so a record the core could not have produced raises ``ValidationError``
    (reason ``internal``).
    """
    schema = SCHEMAS[kind]
    out: dict[str, Any] = {"v": SCHEMA_VERSION}
    for f in schema.fields:
        if f.name in obj:
            out[f.name] = _sanitise(f, obj[f.name])
    try:
        schema.check(out)
    except ValidationError as exc:
        raise ValidationError(RejectReason.INTERNAL, f"encode {schema.topic}: {exc}") from None
    try:
        return json.dumps(out, separators=(",", ":"), allow_nan=False).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise ValidationError(RejectReason.INTERNAL, f"encode {schema.topic}: {type(exc).__name__}") from None


def encode_unchecked(kind: str, obj: Mapping[str, Any]) -> bytes:
    """Write a value of topic ``kind`` as a feed would, unchecked: for replaying files.

    A file may hold rows the stream refuses (non-finite, out of range); ``forexd replay``
    publishes them anyway so the worker dead-letters them with the same reasons as the
    offline commands. Non-finite floats are written as their text (``"nan"``).
    """
    out: dict[str, Any] = {"v": SCHEMA_VERSION}
    for name, x in obj.items():
        out[name] = str(x) if isinstance(x, float) and not math.isfinite(x) else x
    return json.dumps(out, separators=(",", ":"), allow_nan=False).encode("utf-8")


# -- fx.ticks --------------------------------------------------------------------------------


class _Unchecked:
    def __repr__(self) -> str:
        return "UNCHECKED"


UNCHECKED: Final = _Unchecked()
"""Default of ``key`` in :func:`decode_tick`/:func:`decode_candle`: no Kafka key to check
(files, tools). The agents pass the message's key, and a missing (None) key is refused."""

_DEFAULT_REGISTRY = InstrumentRegistry()


def canonical_symbol(name: str, key: bytes | str | None | _Unchecked, reg: InstrumentRegistry) -> str:
    """The canonical symbol of ``name`` (``unknown_symbol`` when ``reg`` knows none), checked
    against a record's Kafka ``key`` (B19): the key must be that symbol in UTF-8, else
    ``key_mismatch`` (a missing key too); :data:`UNCHECKED` checks none. What
    :func:`decode_tick` and :func:`decode_candle` ask of their ``key``, and the retrain agent
    of a request's.

    >>> canonical_symbol("eur/usd", b"EURUSD", InstrumentRegistry())
    'EURUSD'
    >>> canonical_symbol("EURUSD", b"GBPUSD", InstrumentRegistry())
    Traceback (most recent call last):
    ...
    forex_diffusion.errors.ValidationError: key_mismatch: key 'GBPUSD' is not the canonical symbol EURUSD
    """
    symbol = reg.normalise(name)
    if symbol is None:
        raise ValidationError(RejectReason.UNKNOWN_SYMBOL, f"symbol {name[:32]!r}")
    if key is UNCHECKED:
        return symbol
    if key is None:
        raise ValidationError(RejectReason.KEY_MISMATCH, f"no key (expected {symbol})")
    if isinstance(key, (bytes, bytearray, memoryview)):
        try:
            k = bytes(key).decode("utf-8")
        except UnicodeDecodeError:
            raise ValidationError(RejectReason.KEY_MISMATCH, f"key is not UTF-8 (expected {symbol})") from None
    else:
        k = str(key)
    if k != symbol:
        raise ValidationError(RejectReason.KEY_MISMATCH, f"key {k[:32]!r} is not the canonical symbol {symbol}")
    return symbol


def decode_tick(
    raw: bytes | str,
    *,
    key: bytes | str | None | _Unchecked = UNCHECKED,
    instruments: InstrumentRegistry | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> Tick:
    """Decode an ``fx.ticks`` value; ``key`` (when given) must be the canonical symbol."""
    d = decode_record("ticks", raw, max_bytes=max_bytes)
    symbol = canonical_symbol(d["symbol"], key, instruments or _DEFAULT_REGISTRY)
    tid = d.get("tick_id")
    return Tick(symbol=symbol, ts_ms=d["ts"], bid=d["bid"], ask=d["ask"], volume=d.get("volume") or 0.0, tick_id=tid)


def encode_tick(t: Tick) -> bytes:
    """Encode a tick for ``fx.ticks``."""
    obj: dict[str, Any] = {"symbol": t.symbol, "ts": t.ts_ms, "bid": t.bid, "ask": t.ask}
    if t.volume:
        obj["volume"] = t.volume
    if t.tick_id is not None:
        obj["tick_id"] = t.tick_id
    return encode_record("ticks", obj)


# -- fx.candles ------------------------------------------------------------------------------


#: The candle fields the topic names otherwise than :class:`~forex_diffusion.domain.Candle`.
_CANDLE_WIRE_NAMES = {"open_ms": "open_time", "close_ms": "close_time"}


def candle_to_wire(c: Candle) -> dict[str, Any]:
    """Plain dict of a candle in the topic's field names (without ``v``)."""
    return {_CANDLE_WIRE_NAMES.get(k, k): v for k, v in c.to_dict().items()}


def encode_candle(c: Candle) -> bytes:
    """Encode a candle for ``fx.candles`` (open/close times as epoch ms)."""
    return encode_record("candles", candle_to_wire(c))


_TIMEFRAMES: dict[str, Timeframe] = {}


def _timeframe(name: str) -> Timeframe:
    tf = _TIMEFRAMES.get(name)
    if tf is None:
        try:
            tf = Timeframe.parse(name)
        except (ConfigError, ValueError, KeyError):
            raise ValidationError(RejectReason.SCHEMA, f"timeframe {name!r} unknown") from None
        if len(_TIMEFRAMES) < 256:
            _TIMEFRAMES[name] = tf
    return tf


def decode_candle(
    raw: bytes | str,
    *,
    key: bytes | str | None | _Unchecked = UNCHECKED,
    instruments: InstrumentRegistry | None = None,
    timeframes: frozenset[str] | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> Candle:
    """Decode an ``fx.candles`` value and check it is a bar of its timeframe.

    Beyond the schema: prices > 0 (``non_positive``), low ≤ open, close ≤ high
    (``inconsistent``), prices within the instrument's traded range widened by
    :data:`~forex_diffusion.ingest.validation.PRICE_RANGE_FACTOR` (``out_of_range``), a bar that
    overlaps 1971-01-01 to 2100-01-01 (the span the offline readers take epoch bars from,
    :data:`~forex_diffusion.ingest.validation.EPOCH_FIRST_MS`; ticks start in 2000), ``open_time`` on the
    timeframe's grid and ``close_time`` its end (``bad_ts``), and the timeframe among
    ``timeframes`` when given (``schema``).
    """
    d = decode_record("candles", raw, max_bytes=max_bytes)
    symbol = canonical_symbol(d["symbol"], key, instruments or _DEFAULT_REGISTRY)
    name = d["timeframe"]
    if timeframes is not None and name not in timeframes:
        raise ValidationError(RejectReason.SCHEMA, f"timeframe {name!r} not configured")
    tf = _timeframe(name)
    o, h, lo, c = d["open"], d["high"], d["low"], d["close"]
    if not min(o, h, lo, c) > 0:
        raise ValidationError(RejectReason.NON_POSITIVE, "price <= 0")
    if not (lo <= min(o, c) and h >= max(o, c)):
        raise ValidationError(RejectReason.INCONSISTENT, "high/low do not bound open/close")
    inst = (instruments or _DEFAULT_REGISTRY).get(symbol)
    if inst is not None:  # as for ticks: within a sane multiple of the instrument's traded range
        f = PRICE_RANGE_FACTOR
        if lo < inst.low / f or h > inst.high * f:
            raise ValidationError(
                RejectReason.OUT_OF_RANGE,
                f"{symbol} prices [{lo:.6g}, {h:.6g}] outside [{inst.low / f:.6g}, {inst.high * f:.6g}]",
            )
    open_ms, close_ms = d["open_time"], d["close_time"]
    try:
        start, end = tf.bounds(open_ms)
    except (OverflowError, ValueError):
        raise ValidationError(RejectReason.OUT_OF_RANGE, f"open_time {open_ms} outside the calendar") from None
    # B18: a bar of 1970 (a unit error: seconds read as ms, or a forgery) is refused. The floor is
    # the offline readers' (daily bars of the 1970s are read by forexd train/backtest, so the stream
    # takes them too, and both give the same numbers); ticks start in 2000. A bar that straddles an
    # end, as a day bar rolling at 22:00 does, is kept
    if not bar_in_span(open_ms, end):
        raise ValidationError(
            RejectReason.BAD_TS,
            f"bar {open_ms}..{end} outside {EPOCH_FIRST_MS}..{MAX_TS_MS} (1971-01-01..2100-01-01)",
        )
    if start != open_ms:
        raise ValidationError(RejectReason.BAD_TS, f"open_time {open_ms} is not on the {tf.name} grid")
    if close_ms != end:
        raise ValidationError(RejectReason.BAD_TS, f"close_time {close_ms} != open_time + {tf.name} ({end})")
    return Candle(
        symbol=symbol,
        timeframe=tf.name,
        open_ms=open_ms,
        close_ms=close_ms,
        open=o,
        high=h,
        low=lo,
        close=c,
        volume=d.get("volume") or 0.0,
        tick_count=d.get("tick_count", 0),
        final=d.get("final", True),
        revision=d.get("revision", 0),
        spread_mean=d.get("spread_mean"),
        spread_min=d.get("spread_min"),
        spread_max=d.get("spread_max"),
    )


# -- the other topics --------------------------------------------------------------------------


def encode_indicators(c: Candle, values: Mapping[str, float | None]) -> bytes:
    """The ``fx.indicators`` value of the indicator ``values`` on candle ``c``."""
    return encode_record(
        "indicators",
        {
            "symbol": c.symbol,
            "timeframe": c.timeframe,
            "open_time": c.open_ms,
            "close_time": c.close_ms,
            "values": dict(values),
        },
    )


def decode_indicators(raw: bytes | str, *, max_bytes: int = DEFAULT_MAX_BYTES) -> dict[str, Any]:
    """Decode an ``fx.indicators`` value into its checked fields."""
    return decode_record("indicators", raw, max_bytes=max_bytes)


def encode_forecast(record: Mapping[str, Any]) -> bytes:
    """The ``fx.forecasts`` value of a forecast record (:func:`~forex_diffusion.forecast.forecaster.forecast_record`)."""
    return encode_record("forecasts", record)


def decode_forecast(raw: bytes | str, *, max_bytes: int = 4 * 1024 * 1024) -> dict[str, Any]:
    """Decode an ``fx.forecasts`` value into its checked fields."""
    return decode_record("forecasts", raw, max_bytes=max_bytes)


def encode_paths(
    header: Mapping[str, Any], prices: Any, *, scale: int = PATHS_SCALE, dtype: str | None = None
) -> bytes:
    """The ``fx.forecasts.paths`` value of sample paths ``prices [n_paths, horizon]`` (> 0, finite).

    ``header`` names the forecast as its ``fx.forecasts`` record does (``symbol``,
    ``timeframe``, ``as_of``, ``horizon``, ``model_version``, ``last_close``) and gives
    ``sigma``, ``rw_weight`` and ``samples``; ``n_paths``, ``scale`` and ``dtype`` are
    written here (other keys are ignored). Each price is stored as
    ``round(ln(price / last_close) * scale)``, int16 when every value fits, else int32 (or
    ``dtype``): with the default scale every positive finite price fits, so valid paths
    always encode. Paths that are not (non-finite, <= 0, the wrong shape), more paths than
    ``samples`` or an ``rw_weight`` of another length than ``horizon`` (what :func:`decode_paths`
    refuses) are a bug of the producer: ``ValidationError`` with reason ``internal``.

    >>> raw = encode_paths(
    ...     {"symbol": "EURUSD", "timeframe": "1m", "as_of": 1399000000000, "horizon": 2,
    ...      "model_version": "v1", "last_close": 1.1, "sigma": 1e-4, "rw_weight": [0.0, 0.5], "samples": 2},
    ...     np.array([[1.1001, 1.1003], [1.0998, 1.0991]]))
    >>> header, prices = decode_paths(raw)
    >>> header["n_paths"], header["dtype"], prices.shape
    (2, '<i2', (2, 2))
    >>> bool(np.all(np.abs(np.log(prices / [[1.1001, 1.1003], [1.0998, 1.0991]])) <= 0.5 / header["scale"] + 1e-12))
    True
    """
    try:
        p = np.asarray(prices, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValidationError(RejectReason.INTERNAL, "encode fx.forecasts.paths: paths are not an array") from None
    last = header.get("last_close")
    lc = float(last) if isinstance(last, (int, float)) else math.nan
    with np.errstate(all="ignore"):
        ok = (
            p.ndim == 2
            and 1 <= p.shape[0] <= PATHS_MAX
            and p.shape[1] == header.get("horizon")
            and 0.0 < lc <= PRICE_MAX
            and bool(np.all((p > 0.0) & (p <= PRICE_MAX)))
            and 1 <= scale <= PATHS_SCALE_MAX
        )
        if not ok:
            shape = getattr(p, "shape", None)
            raise ValidationError(
                RejectReason.INTERNAL, f"encode fx.forecasts.paths: paths {shape} not positive, finite"
            )
        # log of each side: finite for any positive double, so the difference never overflows
        q = np.rint((np.log(p) - math.log(lc)) * scale)
    rw, samples = header.get("rw_weight"), header.get("samples")
    if not (isinstance(rw, Sequence) and len(rw) == p.shape[1] and isinstance(samples, int) and p.shape[0] <= samples):
        # what decode_paths refuses as inconsistent: never written
        raise ValidationError(
            RejectReason.INTERNAL,
            f"encode fx.forecasts.paths: {p.shape[0]} paths of {samples!r} samples and an rw_weight of "
            f"{len(rw) if isinstance(rw, Sequence) else rw!r:.20} steps for horizon {p.shape[1]}",
        )
    big = float(np.max(np.abs(q)))
    dt = dtype or ("<i2" if big <= 2**15 - 1 else "<i4")
    if dt not in PATHS_DTYPES or big > 2 ** (8 * PATHS_DTYPES[dt] - 1) - 1:
        raise ValidationError(RejectReason.INTERNAL, f"encode fx.forecasts.paths: {big:.3g} does not fit {dt}")
    body = {
        **header,
        "n_paths": p.shape[0],
        "scale": scale,
        "dtype": dt,
        "paths": base64.b64encode(q.astype(dt).tobytes()).decode("ascii"),
    }
    return encode_record("forecasts.paths", body)


def decode_paths(raw: bytes | str, *, max_bytes: int = PATHS_RECORD_MAX_BYTES) -> tuple[dict[str, Any], np.ndarray]:
    """Decode an ``fx.forecasts.paths`` value: its fields but ``paths``, and the ``[n_paths, horizon]`` prices.

    The default ``max_bytes`` (:data:`PATHS_RECORD_MAX_BYTES`) is derived from the schema's
    bound on ``paths`` (:data:`PATHS_TEXT_MAX`), so it reads every record the encoder writes.

    Beyond the schema it refuses (``ValidationError``, never another exception): a
    ``last_close`` <= 0 (``non_positive``); a ``paths`` text whose length is not that of
    ``n_paths x horizon`` integers of ``dtype`` (``schema``, checked before decoding, so a
    huge count allocates nothing); text that is not base64 (``malformed``); an ``rw_weight``
    of another length than ``horizon`` or more paths than ``samples`` (``inconsistent``);
    prices that overflow (``non_finite``) or leave ``(0, PRICE_MAX]`` (``out_of_range``).
    """
    d = decode_record("forecasts.paths", raw, max_bytes=max_bytes)
    last, n, h, text = d["last_close"], d["n_paths"], d["horizon"], d.pop("paths")
    if not last > 0:
        raise ValidationError(RejectReason.NON_POSITIVE, "last_close <= 0")
    if len(d["rw_weight"]) != h or n > d["samples"]:
        raise ValidationError(
            RejectReason.INCONSISTENT,
            f"rw_weight of {len(d['rw_weight'])} steps, {n} of {d['samples']} paths for horizon {h}",
        )
    nbytes = n * h * PATHS_DTYPES[d["dtype"]]
    if len(text) != 4 * -(-nbytes // 3):
        raise ValidationError(
            RejectReason.SCHEMA,
            f"paths: {len(text)} base64 characters, {n} x {h} {d['dtype']} need {4 * -(-nbytes // 3)}",
        )
    try:
        buf = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValidationError(RejectReason.MALFORMED, "paths: not base64") from None
    if len(buf) != nbytes:
        raise ValidationError(RejectReason.SCHEMA, f"paths: {len(buf)} bytes, {nbytes} expected")
    q = np.frombuffer(buf, dtype=d["dtype"]).reshape(n, h)
    with np.errstate(over="ignore", under="ignore"):
        prices: np.ndarray = np.exp(math.log(last) + q / float(d["scale"]))  # exp(q) alone may overflow
    if not np.all(np.isfinite(prices)):
        raise ValidationError(RejectReason.NON_FINITE, "paths: a price overflows")
    top = PRICE_MAX * math.exp(1.0 / d["scale"])  # a price at PRICE_MAX, quantised up
    if not np.all((prices > 0.0) & (prices <= top)):
        raise ValidationError(RejectReason.OUT_OF_RANGE, f"paths: a price outside (0, {top:g}]")
    return d, prices


def encode_drift(ev: DriftEvent) -> bytes:
    """The ``fx.drift`` value of a detection."""
    return encode_record("drift", ev.to_dict())


def decode_drift(raw: bytes | str, *, max_bytes: int = DEFAULT_MAX_BYTES) -> dict[str, Any]:
    """Decode an ``fx.drift`` value (statistic/threshold null when they were not finite)."""
    return decode_record("drift", raw, max_bytes=max_bytes)


def encode_retrain_request(request: RetrainRequest) -> bytes:
    """The ``fx.retrain.requests`` value of a request."""
    return encode_record("retrain.requests", request.to_dict())


def decode_retrain_request(raw: bytes | str, *, max_bytes: int = DEFAULT_MAX_BYTES) -> RetrainRequest:
    """Decode an ``fx.retrain.requests`` value (``request_id`` ``[A-Za-z0-9_-]{1,64}``, canonical symbol)."""
    d = decode_record("retrain.requests", raw, max_bytes=max_bytes)
    try:
        return RetrainRequest.from_dict(d)
    except (ConfigError, TypeError, ValueError) as exc:
        raise ValidationError(RejectReason.SCHEMA, str(exc)[:200]) from None


def encode_model_outcome(outcome: Mapping[str, Any]) -> bytes:
    """The ``fx.models`` value of a job outcome (``JobOutcome.to_dict()``)."""
    return encode_record("models", outcome)


def decode_model_outcome(raw: bytes | str, *, max_bytes: int = DEFAULT_MAX_BYTES) -> dict[str, Any]:
    """Decode an ``fx.models`` value into its checked fields."""
    return decode_record("models", raw, max_bytes=max_bytes)


def dead_letter_value(
    *,
    topic: str,
    partition: int,
    offset: int,
    raw: bytes | None,
    key: bytes | None,
    reason: RejectReason,
    error: str,
) -> bytes:
    """The ``fx.deadletter`` value of a refused record (payloads over 16 KiB are clipped)."""
    raw = bytes(raw or b"")
    clipped = raw[:_RAW_MAX]
    body: dict[str, Any] = {
        "source_topic": topic if re.fullmatch(_TOPIC, topic) else "invalid-topic-name",
        "partition": partition if -1 <= partition <= INT32_MAX else -1,
        "offset": offset if -1 <= offset <= INT64_MAX else -1,
        "reason": reason.value,
        "error": error,
        "size": len(raw),
        "truncated": len(raw) > _RAW_MAX,
    }
    try:
        body["raw"] = clipped.decode("utf-8")
        body["raw_encoding"] = "utf-8"
    except UnicodeDecodeError:
        body["raw"] = base64.b64encode(clipped).decode("ascii")
        body["raw_encoding"] = "base64"
    if key is not None:
        body["key"] = bytes(key).decode("utf-8", "replace")
    return encode_record("deadletter", body)


def decode_dead_letter(raw: bytes | str, *, max_bytes: int = 256 * 1024) -> dict[str, Any]:
    """Decode an ``fx.deadletter`` value into its checked fields."""
    return decode_record("deadletter", raw, max_bytes=max_bytes)


# -- JSON Schema files -----------------------------------------------------------------------


def json_schema(kind: str) -> dict[str, Any]:
    """The JSON Schema of topic ``kind``'s value."""
    return SCHEMAS[kind].json_schema()


def write_schemas(directory: str | Path) -> list[Path]:
    """Write ``<topic>.schema.json`` for every topic into ``directory``; return the paths."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    paths = []
    for kind, schema in SCHEMAS.items():
        p = d / f"{schema.topic}.schema.json"
        p.write_text(json.dumps(json_schema(kind), indent=2, sort_keys=False) + "\n", encoding="utf-8")
        paths.append(p)
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m forex_diffusion.wire [DIR]``: write the JSON Schemas (default ``docs/schemas``).

    ``--help`` (or ``-h``) prints the usage; any other option, or more than one folder, is a
    usage error (exit 2) -- never a folder named after it.
    """
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m forex_diffusion.wire", description="Write the JSON Schemas of the topics' records."
    )
    parser.add_argument("dir", nargs="?", default="docs/schemas", help="output folder (default: docs/schemas)")
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    for p in write_schemas(args.dir):
        sys.stdout.write(f"{p}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
