"""Unknown extra fields are ignored and counted (B2 of RELIABILITY.md's bad-input catalogue).

Before: decoding dropped the fields no schema names and nothing noted them, so no one could
see that a producer sends fields the worker ignores (a producer on a newer schema, a typo such
as ``bidd``). Now, within ``with UnknownFields() as unknown:``, decoding notes how many
there were and the first few names; the decoded record is the same with or without them.

Property, for generated valid records of every topic with generated extra keys (names no
schema field has, any JSON values) shuffled in among their fields: the decoded record equals
the decode of the record without them, and ``unknown.count`` is the number of extra keys.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from forex_diffusion import wire
from forex_diffusion.domain import Candle
from forex_diffusion.drift.base import DriftEvent
from forex_diffusion.errors import RejectReason
from forex_diffusion.quality.trigger import RetrainRequest
from forex_diffusion.timeframes import Timeframe
from forex_diffusion.wire import UNKNOWN_NAMES_KEPT, UnknownFields

T0 = 1_399_248_000_000
YEAR_MS = 365 * 86_400_000
TIMEFRAMES = ("1m", "5m", "1h", "1d")


def _plain(x: Any) -> Any:
    """A decoded value comparable with ``==`` (the paths' prices as lists)."""
    if isinstance(x, tuple) and len(x) == 2 and hasattr(x[1], "tolist"):
        return (x[0], x[1].tolist())
    return x


DECODERS: dict[str, Callable[[bytes], Any]] = {
    "ticks": lambda raw: wire.decode_tick(raw),
    "candles": lambda raw: wire.decode_candle(raw),
    "indicators": wire.decode_indicators,
    "forecasts": wire.decode_forecast,
    "forecasts.paths": lambda raw: _plain(wire.decode_paths(raw)),
    "drift": wire.decode_drift,
    "retrain.requests": wire.decode_retrain_request,
    "models": wire.decode_model_outcome,
    "deadletter": wire.decode_dead_letter,
}

# -- valid records, generated ------------------------------------------------------------------

finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
price = st.floats(min_value=-wire.PRICE_MAX, max_value=wire.PRICE_MAX, allow_nan=False)
ts = st.integers(min_value=0, max_value=wire.TS_MAX)

ticks = st.fixed_dictionaries(
    {
        "v": st.just(1),
        "symbol": st.sampled_from(["EURUSD", "EUR/USD", "eur_usd", "GBPUSD"]),
        "ts": ts,
        "bid": price,
        "ask": price,
    },
    optional={
        "volume": st.none() | st.floats(min_value=0.0, max_value=wire.TICK_VOLUME_MAX),
        "tick_id": st.none() | st.integers(0, 2**63 - 1) | st.from_regex(r"[a-z0-9:]{1,20}", fullmatch=True),
    },
)


@st.composite
def candles(draw: st.DrawFn) -> dict[str, Any]:
    tf = Timeframe.parse(draw(st.sampled_from(TIMEFRAMES)))
    start, end = tf.bounds(draw(st.integers(min_value=2 * YEAR_MS, max_value=100 * YEAR_MS)))
    o, c = draw(st.floats(1.0, 1.5)), draw(st.floats(1.0, 1.5))
    lo = min(o, c) - draw(st.floats(0.0, 0.1))
    hi = max(o, c) + draw(st.floats(0.0, 0.1))
    candle = Candle(
        symbol="EURUSD",
        timeframe=tf.name,
        open_ms=start,
        close_ms=end,
        open=o,
        high=hi,
        low=lo,
        close=c,
        volume=draw(st.floats(0.0, 1e6)),
        tick_count=draw(st.integers(0, 10_000)),
        final=draw(st.booleans()),
        revision=draw(st.integers(0, 5)),
    )
    record: dict[str, Any] = json.loads(wire.encode_candle(candle))
    return record


retrain_requests = st.builds(
    RetrainRequest,
    request_id=st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True),
    symbol=st.sampled_from(["EURUSD", "GBPUSD", "USDJPY"]),
    timeframe=st.sampled_from(TIMEFRAMES),
    horizon=st.none() | st.integers(1, wire.HORIZON_MAX),
    reason=st.sampled_from(["drift", "manual", "schedule"]),
    requested_at_ms=ts,
    detail=st.text(alphabet=st.characters(codec="utf-8", categories=["L", "N", "Zs"]), max_size=40),
).map(lambda r: json.loads(wire.encode_retrain_request(r)))

drift_events = st.builds(
    DriftEvent,
    detector=st.sampled_from(["adwin:err", "page_hinkley", "ks"]),
    statistic=finite,
    threshold=finite,
    symbol=st.just("EURUSD"),
    timeframe=st.sampled_from(TIMEFRAMES),
    horizon=st.none() | st.integers(1, wire.HORIZON_MAX),
    ts_ms=ts,
).map(lambda ev: json.loads(wire.encode_drift(ev)))

model_outcomes = st.fixed_dictionaries(
    {
        "request_id": st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True),
        "key": st.just("EURUSD/1h/24"),
        "symbol": st.just("EURUSD"),
        "timeframe": st.sampled_from(TIMEFRAMES),
        "horizon": st.integers(0, wire.HORIZON_MAX),
        "version": st.none() | st.just("v4"),
        "status": st.sampled_from(["promoted", "shadow", "rejected", "failed"]),
        "reason": st.text(alphabet="abc =.:", max_size=40),
        "metrics": st.dictionaries(st.text(max_size=5), finite, max_size=3),
        "duration_s": st.floats(0.0, 1e9),
        "champion": st.none() | st.just("v3"),
        "artifact": st.none() | st.just("/m/v4.pt"),
        "sha256": st.none() | st.just("0" * 64),
        "finished_at_ms": ts,
    }
).map(lambda d: json.loads(wire.encode_model_outcome(d)))

_SAMPLE_CANDLE = Candle(
    symbol="EURUSD", timeframe="1m", open_ms=T0, close_ms=T0 + 60_000, open=1.1, high=1.2, low=1.0, close=1.15
)
_FORECAST: dict[str, Any] = {
    "symbol": "EURUSD",
    "timeframe": "1h",
    "as_of": T0,
    "as_of_ms": T0,
    "horizon": 2,
    "model_version": "v3",
    "last_close": 1.3,
    "levels": [0.05, 0.5, 0.95],
    "quantiles": [[1.0, 1.1, 1.2]] * 2,
    "mean": [1.2, 1.2],
    "p_up": [0.5, 0.4],
    "steps": 8,
    "samples": 100,
    "latency_s": 0.01,
    "rw_quantiles": [[1.0, 1.1, 1.2]] * 2,
    "degraded": False,
    "learner": [
        {"horizon": 1, "as_of_ms": T0, "scaled_return": 0.1, "log_return": 1e-4, "price": 1.3, "p_up": 0.52},
        {"horizon": 2, "as_of_ms": T0, "scaled_return": 0.2, "log_return": 2e-4, "price": 1.3, "p_up": 0.5},
    ],
    "touch": {"bands": ["+1pip"], "levels": [1.3001], "p": [[0.4, 0.5]], "rw_p": [[0.4, 0.5]]},
    "extremes": {"levels": [0.5], "max": [[1.31], [1.32]], "min": [[1.29], [1.28]]},
}
_PATHS_HEADER = {
    "symbol": "EURUSD",
    "timeframe": "1h",
    "as_of": T0,
    "horizon": 2,
    "model_version": "v3",
    "last_close": 1.3,
    "sigma": 0.001,
    "rw_weight": [0.0, 0.5],
    "samples": 100,
}
_DEAD_LETTER = wire.dead_letter_value(
    topic="fx.ticks", partition=0, offset=5, raw=b"{", key=b"K", reason=RejectReason.MALFORMED, error="x"
)

RECORDS: dict[str, st.SearchStrategy[dict[str, Any]]] = {
    "ticks": ticks,
    "candles": candles(),
    "indicators": st.dictionaries(st.from_regex(r"[a-z_0-9]{1,12}", fullmatch=True), st.none() | finite).map(
        lambda values: json.loads(wire.encode_indicators(_SAMPLE_CANDLE, values))
    ),
    "forecasts": st.just(json.loads(wire.encode_forecast(_FORECAST))),
    "forecasts.paths": st.just(json.loads(wire.encode_paths(_PATHS_HEADER, [[1.3, 1.31], [1.29, 1.28]]))),
    "drift": drift_events,
    "retrain.requests": retrain_requests,
    "models": model_outcomes,
    "deadletter": st.just(json.loads(_DEAD_LETTER)),
}

# -- extra keys --------------------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**18), 10**18)
    | finite
    | st.text(max_size=20),  # lone surrogates included: valid JSON text
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


def _extras(kind: str) -> st.SearchStrategy[dict[str, Any]]:
    known = {f.name for f in wire.SCHEMAS[kind].fields} | {"v"}
    names = st.text(max_size=24).filter(lambda n: n not in known)
    return st.dictionaries(names, json_values, max_size=6)


@st.composite
def records_with_extras(draw: st.DrawFn, kind: str) -> tuple[bytes, bytes, dict[str, Any]]:
    """A valid record of ``kind`` without and with extras (shuffled in among its fields)."""
    base = draw(RECORDS[kind])
    extras = draw(_extras(kind))
    pairs = draw(st.permutations([*base.items(), *extras.items()]))
    return json.dumps(base).encode(), json.dumps(dict(pairs)).encode(), extras


def _decoded(kind: str, raw: bytes) -> tuple[Any, UnknownFields]:
    with UnknownFields() as unknown:
        value = DECODERS[kind](raw)
    return value, unknown


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), kind=st.sampled_from(sorted(RECORDS)))
def test_extra_fields_change_nothing_decoded_and_are_counted_each(data: st.DataObject, kind: str) -> None:
    plain, extended, extras = data.draw(records_with_extras(kind))
    without, none = _decoded(kind, plain)
    with_extras, unknown = _decoded(kind, extended)
    assert with_extras == without
    assert (none.count, none.names) == (0, [])
    assert unknown.count == len(extras)
    assert len(unknown.names) == min(len(extras), UNKNOWN_NAMES_KEPT)
    assert set(unknown.names) <= {name[:64] for name in extras}


@settings(max_examples=30, deadline=None)
@given(
    top=st.dictionaries(st.sampled_from(["bidd", "x", "v2"]), json_values, max_size=3),
    in_learner=st.lists(
        st.dictionaries(st.sampled_from(["z", "extra"]), json_values, max_size=2), min_size=2, max_size=2
    ),
    in_touch=st.dictionaries(st.sampled_from(["note", "bands2"]), json_values, max_size=2),
)
def test_extra_fields_of_nested_records_are_counted_with_their_paths(
    top: dict[str, Any], in_learner: list[dict[str, Any]], in_touch: dict[str, Any]
) -> None:
    doc = json.loads(wire.encode_forecast(_FORECAST))
    expected = wire.decode_forecast(json.dumps(doc).encode())
    doc.update(top)
    for row, extra in zip(doc["learner"], in_learner, strict=True):
        row.update(extra)
    doc["touch"].update(in_touch)
    decoded, unknown = _decoded("forecasts", json.dumps(doc).encode())
    assert decoded == expected
    paths = [
        *top,
        *(f"learner[{i}].{n}" for i, e in enumerate(in_learner) for n in e),
        *(f"touch.{n}" for n in in_touch),
    ]
    assert unknown.count == len(paths)
    assert set(unknown.names) <= set(paths)
    assert len(unknown.names) == min(len(paths), UNKNOWN_NAMES_KEPT)


def test_the_version_is_no_unknown_field_and_nothing_is_noted_outside_the_scope() -> None:
    raw = b'{"v":1,"symbol":"EURUSD","ts":1399000000000,"bid":1.1,"ask":1.2}'
    _, unknown = _decoded("ticks", raw)
    assert unknown.count == 0
    outer = UnknownFields()
    with outer:
        pass
    wire.decode_tick(raw[:-1] + b',"bidd":1}')  # outside any scope: decoded, noted nowhere
    assert outer.count == 0


def test_scopes_nest_and_each_notes_only_its_own_records() -> None:
    extra = b'{"v":1,"symbol":"EURUSD","ts":1399000000000,"bid":1.1,"ask":1.2,"bidd":1,"aks":2}'
    with UnknownFields() as outer:
        wire.decode_tick(extra)
        with UnknownFields() as inner:
            wire.decode_tick(extra[:-9] + b"}")
        wire.decode_tick(extra)
    assert (outer.count, outer.names) == (4, ["bidd", "aks", "bidd"])
    assert (inner.count, inner.names) == (1, ["bidd"])


def test_a_long_hostile_name_is_kept_clipped() -> None:
    name = "\u202e\x1b[31m" + "n" * 10_000
    raw = json.dumps({"v": 1, "symbol": "EURUSD", "ts": T0, "bid": 1.1, "ask": 1.2, name: 1}).encode()
    _, unknown = _decoded("ticks", raw)
    assert unknown.count == 1
    assert unknown.names == [name[:64]]
