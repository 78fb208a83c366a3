"""``fx.models`` records the candle worker refuses are dead letters with their reason.

Before: the worker's ``fx.models`` agent only logged a refused outcome (``models.refused``) and
dropped it -- no dead letter, no count -- while every other input topic dead-letters what it
refuses; and it acted on any outcome that decoded: one for a symbol or a timeframe it does not
serve, keyed by another symbol, or with a request id no request can have, refreshed its model
book like a real one. Now each is dead-lettered once, with its reason, by the one builder
(:class:`~streams.deadletter.Containment`, counted as ``dead_letters_total{source="models"}``),
acknowledged before the next outcome is taken, and nothing else changes; the agent goes on.

The agent runs as Faust runs it, without a broker (``agent.test_context()``), on the worker's
own App.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from forex_diffusion.errors import RejectReason, ValidationError
from forex_diffusion.forecast.forecaster import SymbolForecaster
from forex_diffusion.quality.trigger import TriggerState
from forex_diffusion.wire import decode_dead_letter, decode_model_outcome, encode_model_outcome
from streams.app import Runtime, create_app
from streams.metrics import Metrics
from streams.settings import Settings

from ...waiting import until

GOOD: dict[str, Any] = {
    "v": 1,
    "request_id": "r-open",
    "key": "EURUSD/1m/24",
    "symbol": "EURUSD",
    "timeframe": "1m",
    "horizon": 24,
    "version": "v4",
    "status": "promoted",
    "reason": "better",
    "metrics": {"crps": 0.1},
    "duration_s": 12.5,
    "champion": "v4",
    "artifact": "/m/v4.pt",
    "sha256": "0" * 64,
    "finished_at_ms": 1_700_000_000_000,
}


def _doc(**changes: Any) -> bytes:
    return json.dumps({**GOOD, "request_id": "r-other", **changes}).encode()


# (value, key, reason): every kind of hostile record the worker may be sent on fx.models
HOSTILE: list[tuple[bytes | None, bytes | None, str]] = [
    (b"\x00\xff\xfe garbage \x80", b"EURUSD", "malformed"),
    (b"", b"EURUSD", "malformed"),
    (None, b"EURUSD", "malformed"),  # a tombstone
    (b'{"v":1,"request_id":"a"', b"EURUSD", "malformed"),
    (b'"\xed\xa0\x80"', b"EURUSD", "malformed"),  # a lone surrogate, UTF-8 encoded
    (b"[" * 100_000 + b"]" * 100_000, b"EURUSD", "oversize"),
    (b"[" * 5_000 + b"]" * 5_000, b"EURUSD", "malformed"),  # nested past the parser's recursion
    (_doc(filler="x" * 70_000), b"EURUSD", "oversize"),
    (b"[1, 2]", b"EURUSD", "schema"),
    (_doc(horizon="24"), b"EURUSD", "schema"),  # wrong JSON types
    (_doc(horizon=True), b"EURUSD", "schema"),
    (_doc(metrics=None), b"EURUSD", "schema"),
    (_doc(status="hacked"), b"EURUSD", "schema"),
    (_doc(request_id="r\x00nul"), b"EURUSD", "schema"),
    (_doc(symbol="EUR\ud800"), b"EURUSD", "schema"),  # a lone surrogate, as a JSON escape
    (_doc(reason="\u202eevil"), b"EURUSD", "schema"),
    (_doc(duration_s=1e400), b"EURUSD", "non_finite"),
    (_doc().replace(b'"duration_s": 12.5', b'"duration_s": NaN'), b"EURUSD", "non_finite"),
    (_doc().replace(b'"horizon": 24', b'"horizon": ' + b"9" * 5000), b"EURUSD", "malformed"),  # past int digits
    (_doc(v=2), b"EURUSD", "schema_version"),
    (_doc(symbol="ZZZZZZ", key="ZZZZZZ/1m/24"), b"ZZZZZZ", "unknown_symbol"),  # not served here
    (_doc(symbol="USDJPY", key="USDJPY/1m/24"), b"USDJPY", "unknown_symbol"),
    (_doc(timeframe="4h", key="EURUSD/4h/24"), b"EURUSD", "unknown_key"),  # not served here
    (_doc(request_id="../../etc/passwd"), b"EURUSD", "schema"),  # no request has that id
    (_doc(request_id="r-open"), b"USDJPY", "key_mismatch"),  # would close r-open
    (_doc(request_id="r-open"), None, "key_mismatch"),
]


def _worker(tmp_path: Path) -> Runtime:
    s = Settings(
        symbols=("EURUSD",),
        timeframes=("1m", "5m"),
        data_dir=tmp_path,
        model_dir=tmp_path / "models",
        status_interval_s=0,
    )
    rt = create_app(s, roles=("candles",), metrics=Metrics(s.symbols, timeframes=s.timeframes))
    rt.topics = {name: AckingTopic() for name in rt.topics}  # type: ignore[misc]
    return rt


class AckingTopic:
    """Records what is sent; the broker acknowledges at once."""

    def __init__(self) -> None:
        self.sent: list[tuple[bytes | None, bytes, Any]] = []

    async def send(self, *, key: Any = None, value: Any = None, headers: Any = None) -> asyncio.Future[None]:
        self.sent.append((key, value, headers))
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut


def _count_refreshes(ca: Any) -> list[int]:
    """A list that grows by one at each refresh of ``ca``'s model book."""
    calls: list[int] = []
    refresh = ca.models.refresh

    def counted() -> Any:
        calls.append(1)
        return refresh()

    ca.models.refresh = counted
    return calls


def _state(ca: Any) -> tuple[Any, ...]:
    """What an outcome may change: the forecasters' state, the series marked for a checkpoint."""
    p = ca.consumer.progress
    snap = {sym: json.dumps(f.snapshot(), sort_keys=True) for sym, f in ca.forecasters.items()}
    return snap, set(p.dirty), {k: set(v) for k, v in p.changed.items()}


@pytest.mark.asyncio
async def test_hostile_models_records_are_dead_letters_with_their_reason_and_change_nothing(tmp_path: Path) -> None:
    rt = _worker(tmp_path)
    ca = rt.candle_agent
    assert ca is not None
    f = ca.forecasters["EURUSD"] = SymbolForecaster("EURUSD", ca.config, book=ca.book)
    ca.symbols[0].add("EURUSD")
    f.series["1m"].trigger = TriggerState(open_requests={"EURUSD/1m/24": ("r-open", 1)})
    before = _state(ca)
    dead: list[tuple[bytes | None, bytes, Any]] = rt.topics["deadletter"].sent  # type: ignore[attr-defined]
    refreshed = _count_refreshes(ca)
    agent = rt.app.agents["forexd.models"]

    async with agent.test_context() as ctx:
        for value, key, _reason in HOSTILE:
            await ctx.put(value, key=key, partition=1)
        await until(lambda: len(dead) >= len(HOSTILE), 60, what="the dead letters", progress=lambda: len(dead))
        assert _state(ca) == before, "a refused outcome changed the candle agent's state"
        assert refreshed == [], "a refused outcome refreshed the model book"
        # an outcome of a request this worker did not open (forexd retrain, a shadow): no dead
        # letter, the book is refreshed, no forecaster changes
        await ctx.put(_doc(request_id="manual-1"), key=b"EURUSD", partition=1)
        await until(lambda: refreshed, 60, what="the book refreshed")
        assert _state(ca)[0] == before[0] and len(dead) == len(HOSTILE)
        await ctx.put(json.dumps(GOOD).encode(), key=b"EURUSD", partition=1)  # the agent goes on
        await until(lambda: not f.series["1m"].trigger.open_requests, 60, what="r-open finished")

    letters = [decode_dead_letter(v) for _k, v, _h in dead]
    got = [(d["offset"], d["reason"]) for d in letters]
    assert got == [(i, reason) for i, (_v, _k, reason) in enumerate(HOSTILE)], got
    topic = rt.settings.topic("models")
    for d, (_k, _v, headers), (value, key, reason) in zip(letters, dead, HOSTILE, strict=True):
        assert d["source_topic"] == topic and d["partition"] == 1 and d["error"], d
        assert d["size"] == len(value or b"") and dict(headers)["x-error-reason"] == reason.encode()
        assert d.get("key") == (None if key is None else key.decode())
        if value is not None and not d["truncated"] and d["raw_encoding"] == "utf-8":
            assert d["raw"].encode() == value
    assert [k for k, _v, _h in dead] == [k for _v, k, _r in HOSTILE]
    m = rt.metrics
    assert m is not None
    counted = {
        r: m.registry.get_sample_value("forexd_dead_letters_total", {"source": "models", "reason": r})
        for r in {r for _v, _k, r in HOSTILE}
    }
    assert counted == {r: float(sum(1 for *_x, q in HOSTILE if q == r)) for r in counted}
    assert ca.contain.refused == 0 and not ca.effects, "a models record went to the candles' effects"


@pytest.mark.asyncio
async def test_a_refused_outcome_does_not_refresh_the_model_book(tmp_path: Path) -> None:
    """Before: every fx.models record, refused or not, made the agent query the registry
    at once (``models.refreshed``): a flood of garbage was a flood of database reads."""
    rt = _worker(tmp_path)
    ca = rt.candle_agent
    assert ca is not None
    calls = _count_refreshes(ca)
    dead = rt.topics["deadletter"].sent  # type: ignore[attr-defined]
    async with rt.app.agents["forexd.models"].test_context() as ctx:
        for value, key, _reason in HOSTILE[:6]:
            await ctx.put(value, key=key, partition=0)
        await ctx.put(_doc(request_id="manual-2"), key=b"EURUSD", partition=0)
        await until(lambda: len(calls) >= 1, 60, what="the book refreshed", progress=lambda: len(dead))
    assert len(dead) == 6 and calls == [1]


# -- the decoder ---------------------------------------------------------------------------------

HOSTILE_TEXT = st.sampled_from(["\x00", "\ud800", "\udfff", "\x1b[2J", "\u202e", "\u2028", "\x9b", "a" * 5000])
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text() | HOSTILE_TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@st.composite
def outcome_documents(draw: st.DrawFn) -> bytes:
    """A valid outcome with fields removed, replaced by any JSON value or hostile text, or added."""
    doc: dict[str, Any] = dict(GOOD)
    for name in draw(st.lists(st.sampled_from(sorted(GOOD)), max_size=4, unique=True)):
        how = draw(st.integers(0, 2))
        if how == 0:
            del doc[name]
        else:
            doc[name] = draw(JSON_VALUES if how == 1 else HOSTILE_TEXT)
    if draw(st.booleans()):
        doc[draw(st.text(max_size=8))] = draw(JSON_VALUES)
    text = json.dumps(doc, ensure_ascii=draw(st.booleans()), allow_nan=True)
    return text.encode("utf-8", "surrogatepass")


@settings(
    max_examples=400,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.binary(max_size=2048) | outcome_documents() | st.just(b""))
def test_decode_model_outcome_of_any_bytes_is_an_outcome_or_a_validation_error_with_a_reason(raw: bytes) -> None:
    """Any bytes: a decoded outcome that re-encodes to itself, or ``ValidationError`` with a
    reason of the fixed set and a detail; never another exception."""
    try:
        out = decode_model_outcome(raw)
    except ValidationError as exc:
        assert isinstance(exc.reason, RejectReason) and exc.reason is not RejectReason.INTERNAL
        assert isinstance(exc.detail, str) and exc.detail
        return
    assert decode_model_outcome(encode_model_outcome(out)) == out


# -- the model book's refresh ------------------------------------------------------------------


def _timer(rt: Runtime, name: str) -> Any:
    """The function of the app's timer ``name``, as the timer calls it."""
    for task in rt.app._app_tasks:
        fn = task
        while hasattr(fn, "__wrapped__"):
            fn = fn.__wrapped__
        if fn.__name__ == name:
            return fn
    raise LookupError(name)


def _broken_refresh() -> Any:
    raise AttributeError("'list' object has no attribute 'get'")  # a manifest that is no JSON object


@pytest.mark.asyncio
async def test_a_refresh_that_fails_with_a_bug_is_logged_and_the_worker_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Before: only ``StorageError`` was caught around the model book's refresh; any other
    exception (``symbols_of`` reading a global model's manifest that is a JSON list) escaped
    the ``fx.models`` agent's loop -- no outcome was taken after it -- and the 15 s timer,
    which stopped the worker. Now it is logged at ERROR with its traceback and both go on."""
    rt = _worker(tmp_path)
    ca = rt.candle_agent
    assert ca is not None
    f = ca.forecasters["EURUSD"] = SymbolForecaster("EURUSD", ca.config, book=ca.book)
    ca.symbols[0].add("EURUSD")
    f.series["1m"].trigger = TriggerState(open_requests={"EURUSD/1m/24": ("r-open", 1)})
    ca.models.refresh = _broken_refresh  # type: ignore[method-assign]

    await _timer(rt, "refresh_models")()
    async with rt.app.agents["forexd.models"].test_context() as ctx:
        await ctx.put(_doc(request_id="manual-3"), key=b"EURUSD", partition=0)
        await ctx.put(json.dumps(GOOD).encode(), key=b"EURUSD", partition=0)
        await until(lambda: not f.series["1m"].trigger.open_requests, 60, what="r-open finished after the failure")
    errors = [r for r in caplog.records if r.getMessage().startswith("models.refresh_error")]
    assert len(errors) >= 2 and all(r.levelname == "ERROR" and r.exc_info for r in errors)
    assert rt.topics["deadletter"].sent == []  # type: ignore[attr-defined]


@pytest.mark.asyncio
async def test_a_shadow_settle_that_fails_with_a_bug_is_logged_and_the_timer_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Review finding: the 15 s timer caught a bug of the refresh (22d834b) but not of the
    shadows' settle after it, which contains only the project's errors (a hand-written
    registry row's ``shadow.required`` of 1e300 raised OverflowError there): it escaped the
    timer, which stops the worker. Now it is logged at ERROR with its traceback, counted as
    an internal error, and the timer returns."""
    rt = _worker(tmp_path)
    ca = rt.candle_agent
    assert ca is not None

    async def broken_settle(versions: Any = None) -> Any:
        raise OverflowError("Python int too large to convert to SQLite INTEGER")

    ca.shadow.settle = broken_settle  # type: ignore[method-assign]
    timer = _timer(rt, "refresh_models")
    await timer()
    await timer()  # the next tick runs too
    errors = [r for r in caplog.records if r.getMessage().startswith("models.settle_error")]
    assert len(errors) == 2 and all(r.levelname == "ERROR" and r.exc_info for r in errors), caplog.text


# -- the retrain agent's inputs: the same path (a characterisation: it already held) -------------------


@pytest.mark.asyncio
async def test_hostile_retrain_requests_are_dead_letters_with_their_reason_the_same_way(tmp_path: Path) -> None:
    """The other record this worker takes from someone else, ``fx.retrain.requests``: the same
    hostile bytes are each one dead letter with a reason of the fixed set (never ``internal``),
    counted under ``source="retrain_requests"``, and no job is queued."""
    s = Settings(symbols=("EURUSD",), timeframes=("1m", "5m"), data_dir=tmp_path, status_interval_s=0)
    rt = create_app(s, roles=("retrain",), metrics=Metrics(s.symbols, timeframes=s.timeframes))
    rt.topics = {name: AckingTopic() for name in rt.topics}  # type: ignore[misc]
    ra = rt.retrain_agent
    assert ra is not None
    request = {"v": 1, "request_id": "r1", "symbol": "EURUSD", "timeframe": "1m", "horizon": None}
    request |= {"reason": "manual", "requested_at_ms": 1_700_000_000_000}
    bad = [v for v, _k, _r in HOSTILE[:20]] + [
        json.dumps({**request, "symbol": "ZZZZZZ"}).encode(),
        json.dumps({**request, "timeframe": "4h"}).encode(),
        json.dumps({**request, "request_id": "../x"}).encode(),
        json.dumps({**request, "horizon": 10**6}).encode(),
    ]
    dead = rt.topics["deadletter"].sent  # type: ignore[attr-defined]
    async with ra.agent.test_context() as ctx:
        for v in bad:
            await ctx.put(v, key=b"EURUSD", partition=0)
        await until(lambda: len(dead) >= len(bad), 60, what="the dead letters", progress=lambda: len(dead))
    reasons = [decode_dead_letter(v)["reason"] for _k, v, _h in dead]
    assert len(reasons) == len(bad) and "internal" not in reasons, reasons
    assert reasons[-4:] == ["unknown_symbol", "unknown_key", "schema", "out_of_range"]
    m = rt.metrics
    assert m is not None
    total = sum(
        m.registry.get_sample_value("forexd_dead_letters_total", {"source": "retrain_requests", "reason": r}) or 0
        for r in set(reasons)
    )
    assert total == len(bad) and ra.queue.queued == 0 and ra.outbox.contain.internal_errors == 0
