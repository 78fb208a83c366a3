"""The free text of the retraining topics' records: ``fx.retrain.requests`` (``detail``) and
``fx.models`` (``request_id``, ``key``, ``symbol``, ``timeframe``, ``reason``, ``artifact``).

These are logged, printed by ``forexd retrain --wait`` and compared; a hostile producer could
put a NUL, a terminal escape (``ESC ] 0 ; title BEL``, ``ESC [ 2 J``, C1 ``CSI``), a forged log
line (CR/LF, U+2028), a bidi override (U+202E) or a lone surrogate (``"\\ud800"``: valid JSON
text, no UTF-8) in any of them. Before this change both decoders accepted all of these, and
``forexd retrain --wait`` printed the outcome's ``key`` and ``reason`` raw: escapes reached the
operator's terminal, and a lone surrogate raised ``UnicodeEncodeError`` out of the command.

Now decoding refuses such a record as ``schema`` (the dead-letter path), encoding writes U+FFFD
in place of such a character (encoding never fails), and:

1. every valid record round-trips (``decode(encode(x)) == x``);
2. any JSON object decodes to a record or raises ``ValidationError`` -- never another exception;
3. any record the core builds, whatever its text, encodes, and decodes to its text with each
   refused character replaced (and clipped to its field's length);
4. a hostile request is dead-lettered by the retrain agent with its reason, and the next good
   request runs; what a request brings to the database (``request_id``, the model key) fits
   the columns on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from forex_diffusion import wire
from forex_diffusion.errors import RejectReason, ValidationError
from forex_diffusion.quality.trigger import RetrainRequest
from forex_diffusion.storage import make_engine
from retraining.claims import JobClaims, claims_table
from retraining.jobs import JobOutcome, decode_outcome, decode_request, encode_outcome, encode_request, key_of

from .test_request_boundary import Jobs, _agent, _msg, _raw, _reasons, _sent, _until

SETTINGS = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)

# The characters free text refuses, written out here (not taken from forex_diffusion.wire): C0,
# DEL and C1 controls, line and paragraph separators, bidi embeddings/overrides/isolates, surrogates.
REFUSED = frozenset(
    chr(c)
    for c in (
        *range(0x00, 0x20),
        *range(0x7F, 0xA0),
        0x2028,
        0x2029,
        *range(0x202A, 0x202F),
        *range(0x2066, 0x206A),
        *range(0xD800, 0xE000),
    )
)
HOSTILE = {
    "nul": "a\x00b",
    "osc-title": "\x1b]0;pwned\x07",
    "clear-screen": "\x1b[2J\x1b[H",
    "c1-csi": "\x9b31m",
    "newline": "ok\nstatus=ok",
    "cr": "x\rforged",
    "tab": "a\tb",
    "del": "a\x7f",
    "nel": "a\x85b",
    "line-separator": "a\u2028b",
    "bidi-override": "\u202eevil",
    "bidi-isolate": "\u2066x\u2069",
    "lone-surrogate": "x\ud800",
    "low-surrogate": "\udfff",
}
FINE = [
    "",
    "better: crps 0.0012 < 0.0013",
    "é ü ß",
    "日本語",
    "😀 emoji",
    "/data/modèles/EURUSD-1h-h24/v7.pt",
    "\ufeff",
]

OUTCOME_TEXT = {"request_id": 64, "key": 64, "symbol": 32, "timeframe": 16, "reason": 2000, "artifact": 4096}
REQUEST = RetrainRequest(
    request_id="3f2a9c0d1e2b", symbol="EURUSD", timeframe="1h", horizon=24, reason="manual", requested_at_ms=0
)
OUTCOME = JobOutcome(
    request_id="3f2a9c0d1e2b",
    key="EURUSD/1h/24",
    symbol="EURUSD",
    timeframe="1h",
    horizon=24,
    version="EURUSD-1h-h24-v3",
    status="promoted",
    reason="better: crps 0.0012 < champion 0.0013",
    metrics={"crps": 0.0012, "n": 30},
    duration_s=12.5,
    champion="EURUSD-1h-h24-v3",
    artifact="/data/models/EURUSD-1h-h24/v3.pt",
    sha256="0" * 64,
    finished_at_ms=1_700_000_000_000,
)


def _request_raw(**change: Any) -> str:
    return json.dumps({**json.loads(encode_request(REQUEST)), **change})


def _outcome_raw(**change: Any) -> str:
    return json.dumps({**json.loads(encode_outcome(OUTCOME)), **change})


def _refused(decode: Any, raw: str | bytes) -> ValidationError:
    with pytest.raises(ValidationError) as ei:
        decode(raw)
    return ei.value


# -- regressions: each hostile text in each field -------------------------------------------------


@pytest.mark.parametrize("text", HOSTILE.values(), ids=HOSTILE.keys())
def test_a_request_detail_with_a_control_separator_bidi_or_surrogate_character_is_refused(text: str) -> None:
    """Before: ``decode_request`` returned the request with this ``detail`` as it came."""
    for raw in (_request_raw(detail=text), _request_raw(detail=text).encode()):
        exc = _refused(decode_request, raw)
        assert exc.reason is RejectReason.SCHEMA and exc.detail.startswith("detail: U+"), exc.detail
        assert REFUSED.isdisjoint(exc.detail), "the error names the character, never holds it"


@pytest.mark.parametrize("text", HOSTILE.values(), ids=HOSTILE.keys())
@pytest.mark.parametrize("field", sorted(OUTCOME_TEXT))
def test_an_outcome_with_a_control_separator_bidi_or_surrogate_character_is_refused(field: str, text: str) -> None:
    """Before: ``decode_outcome`` (what ``forexd retrain --wait`` reads) and the ``fx.models``
    agent's ``decode_model_outcome`` accepted it."""
    raw = _outcome_raw(**{field: text})
    for decode in (decode_outcome, wire.decode_model_outcome):
        exc = _refused(decode, raw)
        assert exc.reason is RejectReason.SCHEMA and exc.detail.startswith(f"{field}: U+"), exc.detail


@pytest.mark.parametrize("text", FINE)
def test_printable_text_of_any_script_is_accepted(text: str) -> None:
    assert decode_request(_request_raw(detail=text)).detail == text
    for field, n in OUTCOME_TEXT.items():
        assert getattr(decode_outcome(_outcome_raw(**{field: text[:n]})), field) == text[:n]


def test_each_free_text_field_is_bounded_and_a_huge_record_is_refused_before_parsing() -> None:
    assert decode_request(_request_raw(detail="d" * 500)).detail == "d" * 500
    assert _refused(decode_request, _request_raw(detail="d" * 501)).reason is RejectReason.OUT_OF_RANGE
    assert _refused(decode_request, _request_raw(detail="d" * 10_000_000)).reason is RejectReason.OVERSIZE
    for field, n in OUTCOME_TEXT.items():
        assert len(getattr(decode_outcome(_outcome_raw(**{field: "t" * n})), field)) == n
        assert _refused(decode_outcome, _outcome_raw(**{field: "t" * (n + 1)})).reason is RejectReason.OUT_OF_RANGE
    assert _refused(decode_outcome, _outcome_raw(reason="r" * 2_000_000)).reason is RejectReason.OVERSIZE


def test_what_retrain_wait_prints_of_a_hostile_outcome() -> None:
    """``forexd retrain --wait`` prints ``key`` and ``reason`` of the outcome it decoded.

    Before: a forged outcome with the awaited ``request_id`` and ``reason`` ``"\\ud800"``
    made the command die with ``UnicodeEncodeError`` (a traceback, exit 1), and one with
    ``ESC ] 0 ; … BEL`` retitled the operator's terminal. Now ``decode_outcome`` refuses both
    (``send_request`` skips a record it cannot decode and waits on)."""
    from streams.commands.retrain import _print

    for text in ("\ud800", "\x1b]0;pwned\x07", "\x9b2J"):
        assert _refused(decode_outcome, _outcome_raw(reason=text, key=text)).reason is RejectReason.SCHEMA
    out = _printed(decode_outcome(_outcome_raw(reason="not_better: é 😀")), _print)
    assert "reason: not_better: é 😀\n" in out


@pytest.mark.parametrize("metrics", [[1], "0", 5, None, True])
def test_an_outcome_whose_metrics_is_no_object_is_refused(metrics: Any) -> None:
    """Found by the property below. Before: ``decode_outcome`` accepted ``"metrics": [1]`` (the
    schema takes any JSON there) and ``JobOutcome.to_dict`` raised ``TypeError``/``ValueError``
    (``dict([1])``): ``forexd retrain --wait`` died with a traceback on printing such an
    outcome, and re-encoding it failed."""
    exc = _refused(decode_outcome, _outcome_raw(metrics=metrics))
    assert exc.reason is RejectReason.SCHEMA and "metrics" in exc.detail


def _printed(outcome: JobOutcome, print_: Any) -> str:
    """What ``print_`` writes for ``outcome`` on a strict UTF-8 standard output."""
    buf = io.BytesIO()
    stream = io.TextIOWrapper(buf, encoding="utf-8", errors="strict", write_through=True)
    with contextlib.redirect_stdout(stream):
        print_(outcome)
    return buf.getvalue().decode("utf-8")


# -- properties -------------------------------------------------------------------------------------

_OK_CHARS = st.characters(exclude_categories=(), exclude_characters=REFUSED)
ANY_CHARS = st.characters(exclude_categories=())  # surrogates included


def clean_text(max_size: int) -> st.SearchStrategy[str]:
    return st.text(_OK_CHARS, max_size=max_size)


def any_text(max_size: int) -> st.SearchStrategy[str]:
    """Text of any code point, mostly with refused ones."""
    return st.text(ANY_CHARS, max_size=max_size) | st.lists(
        st.sampled_from(sorted(REFUSED)) | _OK_CHARS, max_size=max_size
    ).map("".join)


TOKEN = st.from_regex(r"[\x21-\x7e]{1,128}", fullmatch=True)
TS = st.integers(0, wire.TS_MAX)
json_value = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=6), c, max_size=3),
    max_leaves=12,
)


def requests(detail: st.SearchStrategy[str]) -> st.SearchStrategy[RetrainRequest]:
    return st.builds(
        RetrainRequest,
        request_id=st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True),
        symbol=st.from_regex(r"[A-Z]{6}", fullmatch=True),
        timeframe=st.from_regex(r"[0-9]{1,4}[A-Za-z]{1,2}", fullmatch=True),
        horizon=st.none() | st.integers(1, wire.HORIZON_MAX),
        reason=st.sampled_from(["drift", "manual", "schedule"]),
        requested_at_ms=TS,
        detail=detail,
    )


def outcomes(text: Any) -> st.SearchStrategy[JobOutcome]:
    """Outcomes whose free-text fields are drawn from ``text(max_length)``."""
    return st.builds(
        JobOutcome,
        request_id=text(64),
        key=text(64),
        symbol=text(32),
        timeframe=text(16),
        horizon=st.integers(0, wire.HORIZON_MAX),
        version=st.none() | TOKEN,
        status=st.sampled_from(["promoted", "shadow", "rejected", "failed"]),
        reason=text(2000),
        metrics=st.dictionaries(st.text(max_size=8), json_value, max_size=4),
        duration_s=st.floats(0.0, 1e9),
        champion=st.none() | TOKEN,
        artifact=st.none() | text(4096),
        sha256=st.none() | st.from_regex(r"[0-9a-f]{64}", fullmatch=True),
        finished_at_ms=TS,
    )


@SETTINGS
@given(r=requests(clean_text(500)))
def test_a_valid_request_round_trips(r: RetrainRequest) -> None:
    assert decode_request(encode_request(r)) == r


@SETTINGS
@given(o=outcomes(clean_text))
def test_a_valid_outcome_round_trips(o: JobOutcome) -> None:
    assert decode_outcome(encode_outcome(o)) == o


def _shown(text: str, n: int) -> str:
    return "".join("\ufffd" if ch in REFUSED else ch for ch in text)[:n]


@SETTINGS
@given(r=requests(any_text(700)))
def test_any_request_detail_encodes_and_decodes_with_each_refused_character_replaced(r: RetrainRequest) -> None:
    raw = encode_request(r)
    assert raw.isascii()
    assert decode_request(raw).detail == _shown(r.detail, 500)


@SETTINGS
@given(o=outcomes(lambda n: any_text(n + 20)))
def test_any_outcome_text_encodes_and_decodes_with_each_refused_character_replaced(o: JobOutcome) -> None:
    """What the core builds (a refused request's outcome names what it was given; an
    artifact path is whatever the model directory is) is always published."""
    from streams.commands.retrain import _print

    got = decode_outcome(encode_outcome(o))
    for field, n in OUTCOME_TEXT.items():
        value = getattr(o, field)
        assert getattr(got, field) == (None if value is None else _shown(value, n)), field
    out = _printed(got, _print)  # strict UTF-8: a surrogate would raise here
    assert REFUSED.isdisjoint(out.replace("\n", "")), "a control character printed raw"


_REQUEST_BASE = json.loads(encode_request(REQUEST))
_OUTCOME_BASE = json.loads(encode_outcome(OUTCOME))


@st.composite
def json_objects(draw: st.DrawFn, base: dict[str, Any]) -> dict[str, Any]:
    """Any JSON object, or a valid record with some fields dropped or replaced by any JSON value
    or any text."""
    if draw(st.booleans()):
        return draw(st.dictionaries(st.text(max_size=12), json_value, max_size=8))
    doc = dict(base)
    for name in draw(st.lists(st.sampled_from(sorted(base)), min_size=1, max_size=4)):
        choice = draw(st.sampled_from(["drop", "json", "text"]))
        if choice == "drop":
            doc.pop(name, None)
        else:
            doc[name] = draw(json_value if choice == "json" else any_text(80))
    return doc


def _decodes_or_refuses(decode: Any, reencode: Any, doc: dict[str, Any], ensure_ascii: bool) -> None:
    raw = json.dumps(doc, ensure_ascii=ensure_ascii).encode("utf-8", "surrogatepass")
    try:
        rec = decode(raw)
    except ValidationError as exc:
        assert exc.reason is not RejectReason.INTERNAL, exc
        return
    assert decode(reencode(rec)) == rec


@SETTINGS
@given(doc=json_objects(_REQUEST_BASE), ensure_ascii=st.booleans())
def test_any_json_object_decodes_to_a_request_or_is_refused(doc: dict[str, Any], ensure_ascii: bool) -> None:
    _decodes_or_refuses(decode_request, encode_request, doc, ensure_ascii)


@SETTINGS
@given(doc=json_objects(_OUTCOME_BASE), ensure_ascii=st.booleans())
def test_any_json_object_decodes_to_an_outcome_or_is_refused(doc: dict[str, Any], ensure_ascii: bool) -> None:
    _decodes_or_refuses(decode_outcome, encode_outcome, doc, ensure_ascii)


# -- the retrain agent dead-letters a hostile request and goes on ---------------------------------


def test_a_request_with_hostile_text_is_dead_lettered_with_its_reason_and_the_next_request_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: the requests with an escape, a NUL or a lone surrogate in ``detail`` were
    queued and run (only the 501-character one was refused)."""
    jobs = Jobs()
    bad = [
        _raw(detail="\x1b]0;pwned\x07"),
        _raw(detail="a\x00b"),
        _raw(detail="x\ud800"),
        _raw(detail="\u202e"),
        _raw(detail="d" * 501),
    ]

    async def go() -> None:
        agent, topics = _agent(tmp_path, monkeypatch, jobs, timeframes=("1m", "1h"))
        for i, raw in enumerate(bad):
            await agent.handle(_msg(raw, i))  # never raises
        await agent.handle(_msg(_raw(request_id="good", detail="every 3600000 ms é"), 99))
        await _until(
            lambda: len(topics["deadletter"].sent) == len(bad) and len(topics["models"].sent) == 1,
            "dead letters and the good job",
            lambda: _sent(jobs, topics),
        )
        assert jobs.ran == ["good"]
        assert _reasons(topics["deadletter"]) == ["schema"] * 4 + ["out_of_range"]
        letters = [wire.decode_dead_letter(m["value"]) for m in topics["deadletter"].sent]
        assert [d["offset"] for d in letters] == list(range(len(bad)))
        assert [d["raw"] for d in letters] == bad  # the refused bytes, as they came
        assert all(d["error"].startswith("detail: U+") for d in letters[:4]), [d["error"] for d in letters]
        assert all(m["value"].isascii() for m in topics["deadletter"].sent)

    asyncio.run(go())


# -- what a request brings to the database ----------------------------------------------------------


def test_postgresql_refuses_a_nul_in_a_claim_so_decode_must_refuse_it_first(pg_url: str) -> None:
    """Why the request's text is checked at decode: its ``request_id`` and key go into
    ``retrain_claims`` (and ``model_versions``), and PostgreSQL refuses a NUL in text with a
    ``ValueError`` of the driver -- no ``StorageError``, so nothing of the job's would handle it."""
    engine = make_engine(pg_url)
    try:
        with pytest.raises(ValueError, match="NUL"):
            JobClaims(engine).acquire("EURUSD/1h/24", "r\x00")
        assert _refused(decode_request, _request_raw(request_id="r\x00")).reason is RejectReason.SCHEMA
    finally:
        engine.dispose()


@settings(SETTINGS, max_examples=60)
@given(
    request_id=st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True) | any_text(70),
    detail=any_text(40),
    horizon=st.none() | st.integers(-1, wire.HORIZON_MAX + 1),
)
def test_what_a_decoded_request_brings_to_the_database_fits_its_columns(
    db_url: str, request_id: str, detail: str, horizon: int | None
) -> None:
    raw = json.dumps({**_REQUEST_BASE, "request_id": request_id, "detail": detail, "horizon": horizon})
    try:
        r = decode_request(raw)
    except ValidationError:
        return
    engine = make_engine(db_url)
    try:
        claims = JobClaims(engine)
        key = str(key_of(r, 24))
        claim = claims.acquire(key, r.request_id)
        with engine.connect() as conn:
            stored = conn.execute(sa.select(claims_table.c.request_id).where(claims_table.c.key == key)).scalar_one()
        assert stored == r.request_id
        claims.release(claim)
    finally:
        engine.dispose()
