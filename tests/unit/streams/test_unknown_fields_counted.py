"""The input agents count the unknown fields of the records they decode (B2), and go on.

Before: ``fx.ticks``, ``fx.candles``, ``fx.retrain.requests`` and ``fx.models`` records with
fields no schema names were processed with those fields silently dropped: an SRE could not see
that a producer sends fields the worker ignores (a newer schema, a typo such as ``bidd``). Now
each agent counts them in ``forexd_unknown_fields_total{topic}`` (never by field name: names
are the producer's text) and logs ``wire.unknown_fields`` naming a few of them, escaped, at
most once a minute per topic. The record is processed as without them. A record its decoder
refuses is a dead letter as before, and its fields are not counted.

The tick and candle agents run in process (their ``handle``/``handle_batch``, no broker), as
``tests/unit/streams/test_containment.py`` drives them.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from forex_diffusion.wire import encode_candle
from streams import metrics as metrics_module
from streams.agents.candles import CandleAgent
from streams.agents.models import OutcomeInbox
from streams.agents.retrain import RetrainAgent
from streams.agents.ticks import TickAgent
from streams.metrics import Metrics
from streams.settings import Settings
from tests.unit.streams.test_containment import (
    _NO_MODEL,
    _candle_msgs,
    _candles,
    _dead,
    _feed_candles,
    _feed_ticks,
    _runtime,
    _state,
    _tick_msgs,
)

UNKNOWN = "forexd_unknown_fields_total"
HOSTILE_NAME = "\u202e\x1b[2J" + "n" * 500  # a bidi override, a terminal escape, and long


def _with_extras(value: bytes, **extras: Any) -> bytes:
    return json.dumps({**json.loads(value), **extras}).encode()


def _counted(m: Metrics | None, topic: str) -> float:
    assert m is not None
    return m.registry.get_sample_value(UNKNOWN, {"topic": topic}) or 0.0


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("wire.unknown_fields")]


class FrozenClock:
    """A monotonic clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _tick_agent(tmp_path: Path, **kw: Any) -> TickAgent:
    rt = _runtime(tmp_path)
    rt.metrics = Metrics(rt.settings.symbols, timeframes=rt.settings.timeframes, **kw)
    return TickAgent(rt)


def _candle_agent(tmp_path: Path) -> CandleAgent:
    rt = _runtime(tmp_path, forecast_timeframes=("1m",))
    rt.metrics = Metrics(rt.settings.symbols, timeframes=rt.settings.timeframes)
    agent = CandleAgent(rt)
    agent.models.predictor = lambda symbol, timeframe: _NO_MODEL  # type: ignore[method-assign]
    return agent


def test_ticks_with_unknown_fields_are_processed_as_without_and_their_fields_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clean = _tick_msgs()
    extended = [SimpleNamespace(**vars(m)) for m in clean]
    extended[3].value = _with_extras(clean[3].value, bidd=1.1, **{HOSTILE_NAME: "q"})
    extended[7].value = _with_extras(clean[7].value, x=None, y=[1, {"z": 2}])
    plain, agent = _tick_agent(tmp_path / "a"), _tick_agent(tmp_path / "b")
    _feed_ticks(plain, clean)
    with caplog.at_level(logging.WARNING, logger="streams.metrics"):
        _feed_ticks(agent, extended)
    assert _state(agent) == _state(plain), "the extra fields changed what the ticks made"
    assert _dead(agent) == []
    assert _counted(agent.rt.metrics, "fx.ticks") == 4.0  # 1 + 3 fields
    assert _counted(plain.rt.metrics, "fx.ticks") == 0.0
    warnings = _warnings(caplog)  # the second record's, within the minute, is counted, not logged
    assert warnings and "topic=fx.ticks" in warnings[0] and "fields='bidd','\\u202e\\x1b[2Jnnn" in warnings[0]
    for w in warnings:  # the producer's text escaped and clipped
        assert "\x1b" not in w and "\u202e" not in w and "n" * 40 not in w


def test_candles_with_unknown_fields_are_processed_as_without_and_their_fields_counted(tmp_path: Path) -> None:
    cs = _candles(12)
    values = {i: _with_extras(encode_candle(cs[i]), bidd=1, note="x") for i in (2, 5, 9)}
    plain, agent = _candle_agent(tmp_path / "a"), _candle_agent(tmp_path / "b")
    _feed_candles(plain, _candle_msgs(cs))
    _feed_candles(agent, _candle_msgs(cs, values=values))
    assert [c.key for c in agent.effects.at(0).candles] == [c.key for c in plain.effects.at(0).candles]
    assert agent.forecasters["EURUSD"].last_open == plain.forecasters["EURUSD"].last_open
    assert _dead(agent) == []
    assert _counted(agent.rt.metrics, "fx.candles") == 6.0
    assert _counted(plain.rt.metrics, "fx.candles") == 0.0


def test_a_record_its_decoder_refuses_is_a_dead_letter_and_its_unknown_fields_are_not_counted(tmp_path: Path) -> None:
    cs = _candles(6)
    broken = json.loads(encode_candle(cs[2]))
    del broken["close"]  # missing field: refused (schema)
    inconsistent = {**json.loads(encode_candle(cs[3])), "high": 0.5}  # below low: refused (inconsistent)
    values = {2: json.dumps({**broken, "bidd": 1}).encode(), 3: json.dumps({**inconsistent, "x": 1}).encode()}
    agent = _candle_agent(tmp_path)
    _feed_candles(agent, _candle_msgs(cs, values=values))
    assert [(d["offset"], d["reason"]) for d in _dead(agent)] == [(2, "schema"), (3, "inconsistent")]
    assert _counted(agent.rt.metrics, "fx.candles") == 0.0


def test_the_warning_is_rate_limited_per_topic_and_says_how_many_records_it_stands_for(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FrozenClock()
    msgs = _tick_msgs()[:60]
    for m in msgs:
        m.value = _with_extras(m.value, bidd=1)
    agent = _tick_agent(tmp_path, monotonic=clock)
    with caplog.at_level(logging.WARNING, logger="streams.metrics"):
        _feed_ticks(agent, msgs[:50])
        assert len(_warnings(caplog)) == 1
        clock.now += metrics_module.UNKNOWN_FIELDS_WARN_INTERVAL_S
        _feed_ticks(agent, msgs[50:])
    warnings = _warnings(caplog)
    assert len(warnings) == 2
    assert " records=1:" in warnings[0] and " records=50:" in warnings[1]
    assert _counted(agent.rt.metrics, "fx.ticks") == 60.0


class FakeTopic:
    """Records what an agent sends; the broker acknowledges at once."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    async def send(self, *, key: Any = None, value: Any = None, headers: Any = None) -> asyncio.Future[None]:
        self.sent.append(value)
        acked: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        acked.set_result(None)
        return acked


def test_retrain_requests_unknown_fields_are_counted_when_the_request_decodes(tmp_path: Path) -> None:
    s = Settings(data_dir=tmp_path, symbols=("EURUSD",), timeframes=("1h",), forecast_timeframes=("1h",))
    dead = FakeTopic()
    rt = SimpleNamespace(settings=s, metrics=Metrics(s.symbols, timeframes=s.timeframes), app=None, topics={})
    rt.topics = {"deadletter": dead, "models": FakeTopic()}
    agent = RetrainAgent(rt)  # type: ignore[arg-type]
    base = {
        "v": 1,
        "request_id": "r1",
        "symbol": "EURUSD",
        "timeframe": "4h",  # not served here: refused after decoding (unknown_key), no job runs
        "horizon": None,
        "reason": "manual",
        "requested_at_ms": 1_399_248_000_000,
    }
    values = [
        json.dumps(base).encode(),
        json.dumps({**base, "requested_by": "sre", "prio": 1}).encode(),
        json.dumps({**base, "reason": "bogus", "typo": 1}).encode(),  # refused by its decoder (schema)
    ]

    async def go() -> None:
        for i, v in enumerate(values):
            msg = SimpleNamespace(topic="fx.retrain.requests", partition=0, offset=i, key=b"EURUSD", value=v)
            await agent.handle(msg)

    asyncio.run(go())
    assert [json.loads(v)["reason"] for v in dead.sent] == ["unknown_key", "unknown_key", "schema"]
    assert _counted(rt.metrics, "fx.retrain.requests") == 2.0


def test_model_outcomes_unknown_fields_are_counted_and_the_outcome_handled(tmp_path: Path) -> None:
    agent = _candle_agent(tmp_path)
    inbox = OutcomeInbox(agent)
    outcome = {
        "v": 1,
        "request_id": "r1",
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

    async def go() -> list[bool]:
        out = []
        for i, doc in enumerate([outcome, {**outcome, "host": "gpu-3"}]):
            msg = SimpleNamespace(
                topic="fx.models", partition=0, offset=i, key=b"EURUSD", value=json.dumps(doc).encode()
            )
            out.append(await inbox.handle(msg))
        return out

    assert asyncio.run(go()) == [True, True]
    assert _counted(agent.rt.metrics, "fx.models") == 1.0
