"""Fuzzing the topics (issue 13): hostile values, shapes, bytes and keys on every topic.

1. Every topic decoder, given valid records mutated field by field (±inf, nan, -0.0, 1e±308,
   sub-normals, huge integers, long strings up to 1 MB, unicode, wrong types, missing and
   extra fields, duplicate keys), truncated or byte-flipped, returns a record or raises the
   project's ``ValidationError`` -- nothing else escapes. What it returns re-encodes without
   error and decodes to itself.
2. The tick and candle agents' in-process path (decode → validate → core → encode), given
   clean records with refused ones (and wrong keys: null, alias, another symbol) mixed in,
   ends in the state of the clean records alone, and dead-letters every refused record
   exactly once, with its reason.

The default run is derandomized and takes seconds; ``-m soak`` runs 100,000 examples per
topic decoder (and 2,000 per agent) and prints the figures.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections import Counter
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from forex_diffusion import wire
from forex_diffusion.bundled import SAMPLE_TICKS
from forex_diffusion.domain import Candle, Tick
from forex_diffusion.drift import DriftEvent
from forex_diffusion.errors import ModelError, RejectReason, ValidationError
from forex_diffusion.ingest.readers import read_ticks
from forex_diffusion.instruments import InstrumentRegistry
from forex_diffusion.quality.trigger import RetrainRequest
from streams.agents.candles import CandleAgent
from streams.agents.ticks import TickAgent
from streams.app import Runtime
from streams.settings import Settings

DEFAULT_DECODER_EXAMPLES = 400
DEFAULT_AGENT_EXAMPLES = 25
SOAK_DECODER_EXAMPLES = 100_000
SOAK_AGENT_EXAMPLES = 2_000
MAX_BYTES = 2 * 1024 * 1024  # lets 1 MB strings reach the parser

T0 = 1_399_248_000_000
CANDLE = Candle(
    symbol="EURUSD",
    timeframe="1m",
    open_ms=T0,
    close_ms=T0 + 60_000,
    open=1.1,
    high=1.2,
    low=1.0,
    close=1.15,
    volume=3.0,
    tick_count=3,
    spread_mean=0.0001,
    spread_min=0.0,
    spread_max=0.0002,
)
VALID: dict[str, dict[str, Any]] = {
    "ticks": json.loads(
        wire.encode_tick(Tick(symbol="EURUSD", ts_ms=T0, bid=1.3872, ask=1.3873, volume=2.0, tick_id="f:2"))
    ),
    "candles": json.loads(wire.encode_candle(CANDLE)),
    "indicators": json.loads(wire.encode_indicators(CANDLE, {"rsi_14": 55.0, "ema_20": None})),
    "forecasts": {
        "v": 1,
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
            {"horizon": 1, "as_of_ms": T0, "scaled_return": 0.1, "log_return": 1e-4, "price": 1.3, "p_up": 0.52}
        ],
    },
    "forecasts.paths": json.loads(
        wire.encode_paths(
            {
                "symbol": "EURUSD",
                "timeframe": "1h",
                "as_of": T0,
                "horizon": 2,
                "model_version": "v3",
                "last_close": 1.3,
                "sigma": 0.001,
                "rw_weight": [0.0, 0.5],
                "samples": 100,
            },
            [[1.3, 1.31], [1.29, 1.28], [1.3001, 1.2999]],
        )
    ),
    "drift": json.loads(
        wire.encode_drift(
            DriftEvent(
                detector="adwin:err",
                statistic=0.3,
                threshold=0.002,
                symbol="EURUSD",
                timeframe="1h",
                horizon=24,
                ts_ms=T0,
            )
        )
    ),
    "retrain.requests": json.loads(
        wire.encode_retrain_request(
            RetrainRequest(
                request_id="3f2a9c0d1e2b",
                symbol="EURUSD",
                timeframe="1h",
                horizon=24,
                reason="drift",
                requested_at_ms=T0,
            )
        )
    ),
    "models": {
        "v": 1,
        "request_id": "3f2a9c0d1e2b",
        "key": "EURUSD/1h/24",
        "symbol": "EURUSD",
        "timeframe": "1h",
        "horizon": 24,
        "version": "v4",
        "status": "promoted",
        "reason": "better",
        "metrics": {"crps": 0.1},
        "duration_s": 12.5,
        "champion": "v4",
        "artifact": "/m/v4.pt",
        "sha256": "0" * 64,
        "finished_at_ms": T0,
    },
    "deadletter": json.loads(
        wire.dead_letter_value(
            topic="fx.ticks",
            partition=0,
            offset=5,
            raw=b"{",
            key=b"K",
            reason=RejectReason.MALFORMED,
            error="JSONDecodeError",
        )
    ),
}


def _plain_paths(header: dict[str, Any], prices: Any) -> dict[str, Any]:
    """A decoded paths record as plain data (comparable with ``==``)."""
    return {**header, "prices": prices.tolist()}


# a decoder per topic, as the consumers call it (the ticks/candles ones with the key checked)
DECODERS: dict[str, Callable[[bytes], Any]] = {
    "ticks": lambda raw: wire.decode_tick(raw, key=b"EURUSD", max_bytes=MAX_BYTES),
    "candles": lambda raw: wire.decode_candle(
        raw, key=b"EURUSD", max_bytes=MAX_BYTES, timeframes=frozenset({"1m", "1h"})
    ),
    "indicators": lambda raw: wire.decode_indicators(raw, max_bytes=MAX_BYTES),
    "forecasts": lambda raw: wire.decode_forecast(raw, max_bytes=MAX_BYTES),
    "forecasts.paths": lambda raw: _plain_paths(*wire.decode_paths(raw, max_bytes=MAX_BYTES)),
    "drift": lambda raw: wire.decode_drift(raw, max_bytes=MAX_BYTES),
    "retrain.requests": lambda raw: wire.decode_retrain_request(raw, max_bytes=MAX_BYTES),
    "models": lambda raw: wire.decode_model_outcome(raw, max_bytes=MAX_BYTES),
    "deadletter": lambda raw: wire.decode_dead_letter(raw, max_bytes=MAX_BYTES),
}
REENCODERS: dict[str, Callable[[Any], bytes]] = {
    "ticks": wire.encode_tick,
    "candles": wire.encode_candle,
    "indicators": lambda d: wire.encode_record("indicators", d),
    "forecasts": wire.encode_forecast,
    "forecasts.paths": lambda d: wire.encode_paths(d, d["prices"], scale=d["scale"], dtype=d["dtype"]),
    "drift": lambda d: wire.encode_record("drift", d),
    "retrain.requests": wire.encode_retrain_request,
    "models": wire.encode_model_outcome,
    "deadletter": lambda d: wire.encode_record("deadletter", d),
}

HOSTILE_NUMBERS = [
    math.inf,
    -math.inf,
    math.nan,
    -0.0,
    0.0,
    1e308,
    -1e308,
    1e-308,
    5e-324,
    1e304,
    1e9,
    1e12 + 1,
    2**53 + 1,
    2**63,
    -(2**63) - 1,
    10**30,
    -1,
    0,
    1,
]
LONG = [0, 1, 32, 33, 64, 65, 129, 500, 501, 10_000, 1_000_000]

hostile_value = st.one_of(
    st.sampled_from(HOSTILE_NUMBERS),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.text(max_size=40),
    st.sampled_from(LONG).map(lambda n: "x" * n),
    st.sampled_from(
        [
            "nan",
            "NaN",
            "inf",
            "-Infinity",
            "1e400",
            "1e304",
            "-0",
            "0x10",
            " 1.1",
            "１.５",
            "EUR/USD",
            "eurusd",
            "USDJPY",
            "XAUUSD",
            "../../x",
            "*",
            "\u0000",
            "\ud800",
            "é",
            "😀" * 40,
            "1m",
            "1M",
        ]
    ),
    st.booleans(),
    st.none(),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


def _dumps(obj: Any) -> str:
    return json.dumps(obj, allow_nan=True)  # NaN/Infinity literals, like a careless producer


@st.composite
def mutated(draw: st.DrawFn, kind: str) -> bytes:
    """A valid record of ``kind`` with one or more mutations, as bytes."""
    obj = json.loads(json.dumps(VALID[kind]))
    text: str | None = None
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["set", "set", "set", "drop", "extra", "dup", "nested"]))
        names = sorted(obj) if isinstance(obj, dict) and obj else ["v"]
        name = draw(st.sampled_from(names))
        if op == "set":
            obj[name] = draw(hostile_value)
        elif op == "drop":
            obj.pop(name, None)
        elif op == "extra":
            obj[draw(st.text(min_size=1, max_size=8))] = draw(hostile_value)
        elif op == "nested" and isinstance(obj.get(name), (list, dict)):
            inner = obj[name]
            if isinstance(inner, list) and inner:
                inner[draw(st.integers(0, len(inner) - 1))] = draw(hostile_value)
            elif isinstance(inner, dict) and inner:
                inner[draw(st.sampled_from(sorted(inner)))] = draw(hostile_value)
        elif op == "dup":
            body = _dumps(obj)
            text = body[:-1] + (", " if len(obj) else "") + f"{json.dumps(name)}: {_dumps(draw(hostile_value))}}}"
    raw = (text if text is not None else _dumps(obj)).encode("utf-8", "surrogatepass")
    cut = draw(st.sampled_from(["none", "none", "none", "truncate", "flip", "garbage"]))
    if cut == "truncate":
        raw = raw[: draw(st.integers(0, max(0, len(raw) - 1)))]
    elif cut == "flip" and raw:
        b = bytearray(raw)
        for _ in range(draw(st.integers(1, 4))):
            b[draw(st.integers(0, len(b) - 1))] = draw(st.integers(0, 255))
        raw = bytes(b)
    elif cut == "garbage":
        raw = draw(st.binary(max_size=64))
    return raw


def _decoder_property(kind: str, seen: Counter[str]) -> Callable[[bytes], None]:
    def check(raw: bytes) -> None:
        seen[kind] += 1
        try:
            rec = DECODERS[kind](raw)
        except ValidationError as exc:
            assert exc.reason is not RejectReason.INTERNAL
            seen[f"{kind}:refused"] += 1
            return
        # accepted: it re-encodes (encode cannot fail on what decode produced) to itself
        again = DECODERS[kind](REENCODERS[kind](rec))
        assert again == rec or (isinstance(rec, dict) and _same_json(again, rec))

    return check


def _same_json(a: Any, b: Any) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


SEEN: Counter[str] = Counter()


def _run_decoder_fuzz(kind: str, examples: int, derandomize: bool) -> None:
    prop = _decoder_property(kind, SEEN)
    test = settings(
        max_examples=examples,
        deadline=None,
        derandomize=derandomize,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )(given(mutated(kind))(prop))
    test()


@pytest.mark.parametrize("kind", sorted(wire.SCHEMAS))
def test_topic_decoder_lets_nothing_but_validation_errors_escape(kind: str) -> None:
    _run_decoder_fuzz(kind, DEFAULT_DECODER_EXAMPLES, derandomize=True)


@pytest.mark.soak
@pytest.mark.parametrize("kind", sorted(wire.SCHEMAS))
def test_topic_decoder_soak(kind: str) -> None:
    before = SEEN[kind]
    _run_decoder_fuzz(kind, SOAK_DECODER_EXAMPLES, derandomize=False)
    print(f"\nfuzz {kind}: {SEEN[kind] - before} cases, {SEEN[f'{kind}:refused']} refused")  # noqa: T201


# -- the agents' in-process path -------------------------------------------------------------------


def _runtime(tmp: str) -> Runtime:
    from pathlib import Path

    s = Settings(
        symbols=("EURUSD",),
        timeframes=("1m",),
        forecast_timeframes=("1m",),
        data_dir=Path(tmp),
        model_dir=Path(tmp) / "models",
        status_interval_s=0,
    )
    return Runtime(
        settings=s,
        app=SimpleNamespace(consumer=None),
        topics={},
        instruments=InstrumentRegistry.of(s.symbols),
        engine=None,
    )


_TICKS = read_ticks(SAMPLE_TICKS).frame.iloc[:240]
CLEAN_TICKS = [
    wire.encode_tick(Tick(symbol="EURUSD", ts_ms=t, bid=b, ask=a))
    for t, b, a in zip(_TICKS.ts_ms.tolist(), _TICKS.bid.tolist(), _TICKS.ask.tolist(), strict=True)
]
CLEAN_CANDLES = [
    wire.encode_candle(
        Candle(
            symbol="EURUSD",
            timeframe="1m",
            open_ms=T0 + i * 60_000,
            close_ms=T0 + (i + 1) * 60_000,
            open=1.3 + i * 1e-4,
            high=1.3 + i * 1e-4 + 2e-4,
            low=1.3 + i * 1e-4 - 2e-4,
            close=1.3 + (i + 1) * 1e-4,
            volume=1.0,
            tick_count=4,
        )
    )
    for i in range(40)
]
KEYS = st.sampled_from([None, b"EUR/USD", b"eurusd", b"USDJPY", b"", b"\xff"])


@st.composite
def refused_record(draw: st.DrawFn, kind: str) -> tuple[bytes | None, bytes, RejectReason]:
    """A (key, value) that the decoder refuses, with the reason it gives: a mutated value
    under the right key, or a clean value under a wrong key."""
    if draw(st.booleans()):
        clean = CLEAN_TICKS if kind == "ticks" else CLEAN_CANDLES
        key, raw = draw(KEYS), draw(st.sampled_from(clean))
    else:
        key, raw = b"EURUSD", draw(mutated(kind))
    try:
        (wire.decode_tick if kind == "ticks" else wire.decode_candle)(raw, key=key, max_bytes=64 * 1024)
    except ValidationError as exc:
        return key, raw, exc.reason
    from hypothesis import assume

    assume(False)  # the mutation left a valid record: not a refused one
    raise AssertionError  # unreachable


def _messages(
    topic: str, clean: list[bytes], bad: list[tuple[int, tuple[bytes | None, bytes, RejectReason]]]
) -> tuple[list[SimpleNamespace], dict[int, RejectReason]]:
    msgs, expected = [], {}
    slots = sorted(bad, key=lambda x: x[0])
    j = 0
    for i, value in enumerate(clean):
        while j < len(slots) and slots[j][0] <= i:
            key, raw, reason = slots[j][1]
            expected[len(msgs)] = reason
            msgs.append(SimpleNamespace(topic=topic, partition=0, offset=len(msgs), key=key, value=raw))
            j += 1
        msgs.append(SimpleNamespace(topic=topic, partition=0, offset=len(msgs), key=b"EURUSD", value=value))
    return msgs, expected


def _tick_state(agent: TickAgent) -> Any:
    return [c for e in agent.effects.parts.values() for c in e.candles] + agent.pipeline.flush()


def _run_ticks(tmp: str, msgs: list[SimpleNamespace]) -> TickAgent:
    agent = TickAgent(_runtime(tmp))

    async def go() -> None:
        for m in msgs:
            await agent.handle(m)

    asyncio.run(go())
    return agent


def _no_forecast(reqs: Any, **kw: Any) -> Any:
    raise ModelError("no model in this test")


def _run_candles(tmp: str, msgs: list[SimpleNamespace]) -> CandleAgent:
    agent = CandleAgent(_runtime(tmp))
    model = SimpleNamespace(context_spec=None, version="none", forecast=_no_forecast)
    agent.models.predictor = lambda sym, tf: model  # type: ignore[method-assign]

    async def go() -> None:
        for i in range(0, len(msgs), 16):
            await agent.handle_batch(msgs[i : i + 16])

    asyncio.run(go())
    return agent


def _candle_state(agent: CandleAgent) -> Any:
    f = agent.forecasters["EURUSD"]
    return (
        dict(f.last_open),
        [c.key for e in agent.effects.parts.values() for c in e.candles],
        [(k, v) for k, _key, v in agent.effects.out],
    )


def _agent_property(kind: str, tmp_factory: Callable[[], str]) -> Callable[..., None]:
    topic = f"fx.{kind}"
    clean_values = CLEAN_TICKS if kind == "ticks" else CLEAN_CANDLES
    run = _run_ticks if kind == "ticks" else _run_candles
    state = _tick_state if kind == "ticks" else _candle_state
    reference = state(run(tmp_factory(), _messages(topic, clean_values, [])[0]))

    def check(bad: list[tuple[int, tuple[bytes | None, bytes, RejectReason]]]) -> None:
        SEEN[f"agent:{kind}"] += 1
        msgs, expected = _messages(topic, clean_values, bad)
        agent = run(tmp_factory(), msgs)
        dead = [json.loads(v) for _k, v, _h in agent.effects.dead]
        assert sorted((d["offset"], d["reason"]) for d in dead) == sorted((o, r.value) for o, r in expected.items()), (
            "every refused record dead-lettered once, with its reason"
        )
        assert state(agent) == reference, "the state is the clean records' state"
        assert agent.consumer.progress.offsets[0] == len(msgs) - 1

    return check


def _run_agent_fuzz(kind: str, examples: int, derandomize: bool, tmp_factory: Callable[[], str]) -> None:
    n = len(CLEAN_TICKS if kind == "ticks" else CLEAN_CANDLES)
    bad = st.lists(st.tuples(st.integers(0, n), refused_record(kind)), min_size=1, max_size=6)
    test = settings(
        max_examples=examples,
        deadline=None,
        derandomize=derandomize,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )(given(bad)(_agent_property(kind, tmp_factory)))
    test()


@pytest.mark.parametrize("kind", ["ticks", "candles"])
def test_agent_path_refuses_bad_records_once_and_keeps_the_clean_state(
    kind: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    _run_agent_fuzz(kind, DEFAULT_AGENT_EXAMPLES, True, lambda: str(tmp_path_factory.mktemp("a")))


@pytest.mark.soak
@pytest.mark.parametrize("kind", ["ticks", "candles"])
def test_agent_path_soak(kind: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    before = SEEN[f"agent:{kind}"]
    _run_agent_fuzz(kind, SOAK_AGENT_EXAMPLES, False, lambda: str(tmp_path_factory.mktemp("a")))
    print(f"\nfuzz agent {kind}: {SEEN[f'agent:{kind}'] - before} cases")  # noqa: T201
