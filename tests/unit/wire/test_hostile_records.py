"""Hostile records at the wire boundary: what the field-by-field fuzzing (test_fuzz_topics.py)
did not reach.

Properties, over generated inputs:

1. Every topic decoder, given any Kafka value -- no value at all (a tombstone), any bytes, any
   JSON document (deeply nested, huge integers, a BOM, lone surrogates, NUL) -- returns a
   record that re-encodes to itself or raises ``ValidationError``; nothing else escapes.
2. A candle that ``decode_candle`` accepts fits the columns the checkpoint stores it in
   (``candles``: 32-bit INTEGER counts on PostgreSQL), so no accepted record can fail a
   checkpoint.
3. The dead letter of any refused message -- any key up to a broker's whole message, any
   value, any error text -- decodes as ``fx.deadletter`` with its reason and origin, and is a
   record the producer and the broker take (under ``RECORD_BYTES_MAX``).
4. An ``fx.retrain.requests`` or ``fx.models`` record that decodes holds no control, line
   separator, bidi or surrogate character in its text (what logs and ``forexd retrain --wait``
   show as it is); the properties of those records' codecs are in
   ``tests/unit/retraining/test_record_text.py``.

Then the regression cases, one per bug found, each saying what happened before its fix.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from types import SimpleNamespace
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from forex_diffusion import wire
from forex_diffusion.errors import RejectReason, ValidationError
from forex_diffusion.storage.engine import create_tables, make_engine
from forex_diffusion.storage.repository import save_progress
from forex_diffusion.storage.tables import candles as candles_table
from streams.agents.models import close_request
from streams.deadletter import DEAD_LETTER_KEY_MAX, Containment
from streams.settings import RECORD_BYTES_MAX

from .test_fuzz_topics import CANDLE, CLEAN_TICKS, DECODERS, REENCODERS, VALID, _run_ticks, _tick_state

SETTINGS = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)


def _decode_or_refuse(kind: str, raw: Any) -> Any:
    """Decode ``raw`` as topic ``kind``: the record (re-encoded to itself), or None when refused."""
    try:
        rec = DECODERS[kind](raw)
    except ValidationError as exc:
        assert exc.reason is not RejectReason.INTERNAL, exc
        return None
    again = DECODERS[kind](REENCODERS[kind](rec))
    assert again == rec or json.dumps(again, sort_keys=True) == json.dumps(rec, sort_keys=True)
    return rec


# -- 1. any Kafka value, any JSON document ------------------------------------------------------

HOSTILE_TEXT = st.sampled_from(["\ud800", "\udfff", "a\u0000b", "\u2028", "\x85", "\u202e", "\ufeff", "é", "😀"])
json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=10**300, max_value=10**4000),  # up to Python's 4,300-digit limit, and past it
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    HOSTILE_TEXT,
)
json_doc = st.recursive(
    json_leaf, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=6), c, max_size=4)
)


@st.composite
def kafka_value(draw: st.DrawFn, kind: str) -> bytes | None:
    """What a hostile producer can put in a record's value for topic ``kind``."""
    shape = draw(st.sampled_from(["tombstone", "bytes", "document", "field", "extra", "nested", "bom", "digits"]))
    if shape == "tombstone":
        return None
    if shape == "bytes":
        return draw(st.binary(max_size=256))
    if shape == "nested":  # far deeper than the interpreter's recursion limit
        depth = draw(st.integers(1_000, 200_000))
        o, c = draw(st.sampled_from([("[", "]"), ('{"a":', "}")]))
        return (o * depth + "1" + c * depth).encode()
    if shape == "digits":  # an integer past Python's int-from-text limit (ValueError, not JSONDecodeError)
        obj = dict(VALID[kind])
        name = draw(st.sampled_from(sorted(obj)))
        body = json.dumps({k: v for k, v in obj.items() if k != name})
        return (body[:-1] + f', "{name}": {"9" * draw(st.integers(4_301, 20_000))}}}').encode()
    if shape == "document":
        doc = draw(json_doc)
    elif shape == "extra":  # a valid record with an unknown field holding a hostile document (ignored)
        doc = {**VALID[kind], "x-" + draw(st.text(max_size=6)): draw(json_doc)}
    else:  # a valid record with one field (or the whole) replaced by a hostile document
        doc = dict(VALID[kind])
        doc[draw(st.sampled_from(sorted(doc)))] = draw(json_doc)
    raw = (
        json.dumps(doc).encode()
        if draw(st.booleans())
        else json.dumps(doc, ensure_ascii=False).encode("utf-8", "surrogatepass")
    )
    return b"\xef\xbb\xbf" + raw if shape == "bom" else raw


@pytest.mark.parametrize("kind", sorted(wire.SCHEMAS))
def test_any_kafka_value_decodes_to_a_record_that_round_trips_or_is_refused(kind: str) -> None:
    outcomes: Counter[bool] = Counter()

    def check(raw: bytes | None) -> None:
        outcomes[_decode_or_refuse(kind, raw) is not None] += 1

    SETTINGS(given(kafka_value(kind))(check))()
    assert outcomes[True] and outcomes[False], f"both accepted and refused values generated: {outcomes}"


# -- 2. an accepted record fits the store ---------------------------------------------------------


def _column_fits(col: sa.Column[Any], value: Any) -> bool:
    t = col.type
    if value is None:
        return bool(col.nullable)
    if isinstance(t, sa.BigInteger):
        return type(value) is int and INT64[0] <= value <= INT64[1]
    if isinstance(t, sa.Integer):
        return type(value) is int and INT32[0] <= value <= INT32[1]
    if isinstance(t, sa.Float):
        return isinstance(value, (int, float)) and math.isfinite(value)
    if isinstance(t, sa.String):
        return isinstance(value, str) and "\x00" not in value and (t.length is None or len(value) <= t.length)
    if isinstance(t, sa.Boolean):
        return type(value) is bool
    raise AssertionError(f"column type {t!r} not checked here")


COUNTS = st.one_of(
    st.sampled_from([0, 1, INT32[1], INT32[1] + 1, 2**53, 2**63]),
    st.integers(min_value=-1, max_value=2**64),
)


@SETTINGS
@given(tick_count=COUNTS, revision=COUNTS, volume=st.floats(min_value=0, max_value=1e30))
def test_a_candle_decode_accepts_fits_every_column_it_is_stored_in(
    tick_count: int, revision: int, volume: float
) -> None:
    raw = json.dumps({**VALID["candles"], "tick_count": tick_count, "revision": revision, "volume": volume}).encode()
    c = _decode_or_refuse("candles", raw)
    if c is not None:
        misfits = [col.name for col in candles_table.columns if not _column_fits(col, getattr(c, col.name))]
        assert misfits == [], f"accepted {c} does not fit the candles table's {misfits}"


# -- 3. a dead letter is always one the broker takes -----------------------------------------------


def _contain_one(key: bytes | None, value: bytes | None, error: Exception) -> tuple[bytes | None, bytes, Any]:
    sent: list[tuple[bytes | None, bytes, Any]] = []
    c = Containment(source="ticks", sink=lambda k, v, h: sent.append((k, v, h)))
    msg = SimpleNamespace(topic="fx.ticks", partition=3, offset=2**40, key=key, value=value)
    with c.record(msg):
        raise error
    assert len(sent) == 1, "dead-lettered once"
    return sent[0]


ERRORS = st.one_of(
    st.builds(ValidationError, st.sampled_from(list(RejectReason)), st.text(max_size=600) | HOSTILE_TEXT),
    st.builds(KeyError, st.text(max_size=50) | HOSTILE_TEXT),
    st.just(RecursionError("maximum recursion depth exceeded")),
)


@SETTINGS
@given(
    key_size=st.one_of(st.none(), st.integers(0, 64), st.sampled_from([DEAD_LETTER_KEY_MAX + 1, 1_048_000])),
    key_byte=st.binary(min_size=1, max_size=1),
    value=st.one_of(
        st.none(),
        st.binary(max_size=300),
        st.sampled_from([b"\x00", b"\x01", b"\xff", b'"', b"\\", "\u2028".encode()]).map(lambda b: b * 20_000),
    ),
    error=ERRORS,
)
def test_any_refused_message_gets_one_dead_letter_the_broker_takes(
    key_size: int | None, key_byte: bytes, value: bytes | None, error: Exception
) -> None:
    key = None if key_size is None else key_byte * key_size
    dl_key, dl_value, headers = _contain_one(key, value, error)
    size = len(dl_key or b"") + len(dl_value) + sum(len(k) + len(v) for k, v in headers)
    assert size < RECORD_BYTES_MAX, f"a dead letter of {size:,} bytes"
    d = wire.decode_dead_letter(dl_value)
    reason = error.reason if isinstance(error, ValidationError) else RejectReason.INTERNAL
    assert (d["source_topic"], d["partition"], d["offset"], d["reason"]) == ("fx.ticks", 3, 2**40, reason.value)
    assert d["size"] == len(value or b"")
    if key is not None:
        assert dl_key == key[:DEAD_LETTER_KEY_MAX]


# -- 4. the retraining records' text is text ---------------------------------------------------------

# C0, DEL, C1, line/paragraph separators, bidi embeddings/overrides/isolates, surrogates
_REFUSED_TEXT = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


@st.composite
def text_in_a_field(draw: st.DrawFn, kind: str) -> bytes:
    """A valid record of topic ``kind`` with one text field replaced by text of any code points."""
    doc = dict(VALID[kind])
    name = draw(st.sampled_from(sorted(k for k, v in doc.items() if isinstance(v, str) or v is None)))
    doc[name] = draw(st.text(st.characters(exclude_categories=()), max_size=12) | HOSTILE_TEXT)
    if draw(st.booleans()):
        return json.dumps(doc).encode()
    return json.dumps(doc, ensure_ascii=False).encode("utf-8", "surrogatepass")


@pytest.mark.parametrize("kind", ["retrain.requests", "models"])
def test_a_retraining_record_that_decodes_holds_only_printable_text(kind: str) -> None:
    """Before: ``"\ud800"``, NUL, ESC, CR/LF or U+202E in a request's ``detail`` or in an
    outcome's ``request_id``, ``key``, ``symbol``, ``timeframe``, ``reason`` or ``artifact``."""
    seen: Counter[bool] = Counter()

    def check(raw: bytes | None) -> None:
        rec = _decode_or_refuse(kind, raw)
        seen[rec is not None] += 1
        if rec is not None:
            fields = rec if isinstance(rec, dict) else rec.to_dict()
            for name, value in fields.items():
                if isinstance(value, str) and name != "metrics":
                    assert _REFUSED_TEXT.search(value) is None, (name, value)

    SETTINGS(given(kafka_value(kind) | text_in_a_field(kind))(check))()
    assert seen[True] and seen[False], seen


# -- regressions -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(wire.SCHEMAS))
def test_a_tombstone_is_refused_as_malformed_by_every_decoder(kind: str) -> None:
    """A Kafka record with a null value (a tombstone: Faust hands the agent ``None``).

    Before: ``decode_json`` called ``len(None)`` and every decoder raised ``TypeError``, which
    the tick, candle and retrain agents dead-lettered as an ``internal`` bug (logged at ERROR
    with a traceback), and which escaped the ``fx.models`` agent's loop (see the next test).
    """
    with pytest.raises(ValidationError) as exc:
        DECODERS[kind](None)  # type: ignore[arg-type]
    assert exc.value.reason is RejectReason.MALFORMED


def test_a_tombstone_on_fx_models_is_logged_and_the_agent_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    """Before: ``close_request`` (the ``fx.models`` agent's step) let the ``TypeError`` of a
    null value escape, out of the agent's ``async for`` loop: one tombstone stopped it."""
    agent = SimpleNamespace(forecasters={}, symbols={}, consumer=None)
    close_request(agent, None)  # type: ignore[arg-type]
    assert "models.refused reason=malformed" in caplog.text


class _Forecaster:
    """The part of a forecaster ``close_request`` uses: which requests it was told are done."""

    def __init__(self) -> None:
        self.closed: list[tuple[str, str]] = []

    def close_request(self, timeframe: str, request_id: str) -> None:
        self.closed.append((timeframe, request_id))


@pytest.mark.parametrize(
    "text",
    ["\x1b]0;pwned\x07", "a\x00b", "x\ud800", "ok\nmodels.refreshed versions={}", "\u202eevil", "\x9b2J"],
    ids=["osc", "nul", "surrogate", "newline", "bidi", "c1-csi"],
)
@pytest.mark.parametrize("field", ["request_id", "reason", "artifact", "key"])
def test_an_outcome_with_hostile_text_is_refused_and_logged_and_the_next_one_closes_its_request(
    field: str, text: str, caplog: pytest.LogCaptureFixture
) -> None:
    """An ``fx.models`` record with an escape, a NUL, a lone surrogate, a newline or a bidi
    override in a text field.

    Before: ``decode_model_outcome`` accepted it and ``close_request`` acted on it (a forged
    ``request_id`` with a NUL or an escape was compared and passed on as it came). Now it is
    refused as ``schema``, logged with a reason that names the character without holding it,
    and the agent takes the next record: a good outcome closes its request.
    """
    good = {**VALID["models"], "request_id": "r-good"}
    touched: list[tuple[int, str]] = []
    forecaster = _Forecaster()
    agent = SimpleNamespace(
        forecasters={"EURUSD": forecaster},
        symbols={0: {"EURUSD"}},
        consumer=SimpleNamespace(progress=SimpleNamespace(touch=lambda p, s: touched.append((p, s)))),
    )
    close_request(agent, json.dumps({**good, "request_id": "r-bad", field: text}).encode())  # type: ignore[arg-type]
    assert forecaster.closed == [] and touched == []
    refused = [r.getMessage() for r in caplog.records if r.getMessage().startswith("models.refused")]
    assert len(refused) == 1 and refused[0].startswith(f"models.refused reason=schema error={field}: U+"), refused
    assert _REFUSED_TEXT.search(refused[0]) is None, "the log line holds the hostile character"
    close_request(agent, json.dumps(good).encode())  # type: ignore[arg-type]
    assert forecaster.closed == [("1h", "r-good")] and touched == [(0, "EURUSD")]


def test_a_tombstone_among_ticks_is_one_malformed_dead_letter_and_changes_nothing(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Before: the tick agent dead-lettered the tombstone as ``internal`` (``TypeError at
    decode``), counting a bug; it now is ``malformed``, with no internal error."""
    clean = [
        SimpleNamespace(topic="fx.ticks", partition=0, offset=i, key=b"EURUSD", value=v)
        for i, v in enumerate(CLEAN_TICKS[:60])
    ]
    reference = _tick_state(_run_ticks(str(tmp_path_factory.mktemp("a")), clean))
    msgs = [*clean[:30], SimpleNamespace(topic="fx.ticks", partition=0, offset=30, key=b"EURUSD", value=None)]
    msgs += [SimpleNamespace(**{**vars(m), "offset": m.offset + 1}) for m in clean[30:]]
    agent = _run_ticks(str(tmp_path_factory.mktemp("b")), msgs)
    dead = [json.loads(v) for _k, v, _h in agent.effects.dead]
    assert [(d["offset"], d["reason"], d["raw"], d["size"]) for d in dead] == [(30, "malformed", "", 0)]
    assert agent.contain.internal_errors == 0
    assert _tick_state(agent) == reference
    assert agent.consumer.progress.offsets[0] == len(msgs) - 1


def _candle_raw(**counts: int) -> bytes:
    return wire.encode_unchecked("candles", {**wire.candle_to_wire(CANDLE), **counts})


@pytest.mark.parametrize("field", ["tick_count", "revision"])
def test_a_candle_count_past_32_bits_is_refused_and_one_at_the_bound_is_stored(field: str, db_url: str) -> None:
    """An ``fx.candles`` record with ``tick_count`` or ``revision`` of 2**31 (up to 2**53).

    Before: ``decode_candle`` accepted counts up to 2**53; the candle agent queued the candle
    for its checkpoint, and PostgreSQL refused the row (``NumericValueOutOfRange: integer out
    of range``, a ``PermanentStorageError``), failing every checkpoint of the partition until
    the worker exited with EXIT_STORAGE_FATAL -- and the restarted worker replayed the record.
    Now the bound is the column's: 2**31 - 1 is stored on SQLite and PostgreSQL, 2**31 is
    refused as ``out_of_range``.
    """
    for too_big in (2**31, 2**53):
        with pytest.raises(ValidationError) as exc:
            wire.decode_candle(_candle_raw(**{field: too_big}), key=b"EURUSD")
        assert exc.value.reason is RejectReason.OUT_OF_RANGE
    c = wire.decode_candle(_candle_raw(**{field: 2**31 - 1}), key=b"EURUSD")
    engine = make_engine(db_url)
    try:
        create_tables(engine)
        save_progress(engine, consumer="c", topic="fx.candles", partition=0, offset=0, parts={}, candle_items=[c])
        with engine.connect() as conn:
            stored = conn.execute(sa.select(candles_table.c[field])).scalar_one()
        assert stored == 2**31 - 1
    finally:
        engine.dispose()


def test_a_key_of_nearly_a_whole_message_gets_a_dead_letter_the_broker_takes() -> None:
    """A tick whose Kafka key is 1,048,000 bytes (with the value, under the broker's default
    ``message.max.bytes``, 1,048,588, so the broker took it).

    Before: the dead letter went out with the whole key beside its value and headers: a record
    over ``RECORD_BYTES_MAX`` (and over the producer's ``max_request_size``), refused at every
    checkpoint of the partition, so the stream stopped on one message. Now the dead letter's
    key is the first ``DEAD_LETTER_KEY_MAX`` bytes.
    """
    key = b"K" * 1_048_000
    dl_key, dl_value, headers = _contain_one(key, CLEAN_TICKS[0], ValidationError(RejectReason.KEY_MISMATCH, "x"))
    assert dl_key == key[:DEAD_LETTER_KEY_MAX]
    assert len(dl_key) + len(dl_value) + sum(len(k) + len(v) for k, v in headers) < RECORD_BYTES_MAX
    assert wire.decode_dead_letter(dl_value)["key"] == "K" * 64


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"[" * 100_000 + b"]" * 100_000, RejectReason.MALFORMED),  # RecursionError inside json
        (b'{"a":' * 50_000 + b"1" + b"}" * 50_000, RejectReason.MALFORMED),
        (b'{"ts":' + b"9" * 5_000 + b"}", RejectReason.MALFORMED),  # int() digit limit: ValueError
        (b"\xef\xbb\xbf" + CLEAN_TICKS[0], RejectReason.MALFORMED),  # a BOM
        (b'{"symbol":"EURUSD","ts":1399000000000,"bid":1e400,"ask":1.2}', RejectReason.NON_FINITE),
        (b'{"symbol":"EURUSD","ts":1399000000000,"bid":true,"ask":1.2}', RejectReason.SCHEMA),
        (b'{"symbol":"EUR\\u0000USD","ts":1399000000000,"bid":1.1,"ask":1.2}', RejectReason.SCHEMA),
        (b'{"symbol":"EURUSD","ts":1399000000000,"bid":1.1,"ask":1.2,"tick_id":"a\\u0000"}', RejectReason.SCHEMA),
        (b'{"symbol":"EURUSD","ts":-1,"bid":1.1,"ask":1.2}', RejectReason.BAD_TS),
        (b'{"symbol":"EURUSD","ts":1.4e12,"bid":1.1,"ask":1.2}', RejectReason.SCHEMA),
    ],
    ids=[
        "deep-array",
        "deep-object",
        "5000-digits",
        "bom",
        "1e400",
        "bool-price",
        "nul-symbol",
        "nul-id",
        "neg-ts",
        "float-ts",
    ],
)
def test_hostile_json_documents_held(raw: bytes, reason: RejectReason) -> None:
    """Attacks that held before this pass (kept so they keep holding)."""
    with pytest.raises(ValidationError) as exc:
        wire.decode_tick(raw, key=b"EURUSD", max_bytes=1 << 20)
    assert exc.value.reason is reason


def test_a_lone_surrogate_tick_id_round_trips_through_the_wire() -> None:
    """A tick id holding a lone surrogate (``"\\ud800"``, valid JSON text, not encodable as
    UTF-8) is accepted as any printable id, and every encoding of it stays ASCII JSON: the
    dead letter, the re-encoded tick (the quarantine's dead letter) and the checkpoint text."""
    raw = json.dumps({**VALID["ticks"], "tick_id": "x\ud800"}).encode()
    t = wire.decode_tick(raw, key=b"EURUSD")
    assert t.tick_id == "x\ud800"
    again = wire.encode_tick(t)
    assert again.isascii() and wire.decode_tick(again, key=b"EURUSD") == t
    _k, dl, _h = _contain_one(b"EURUSD", raw, ValidationError(RejectReason.DUPLICATE, f"tick {t.tick_id}"))
    assert dl.isascii() and wire.decode_dead_letter(dl)["error"] == "tick x\ud800"
